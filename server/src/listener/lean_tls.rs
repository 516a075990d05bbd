//! The server side of a TLS connection that holds no buffer while it is idle.
//!
//! A node holds tens of thousands of connections that are idle for days (every device's
//! monitor), so what each one keeps while idle is what sizes a node. rustls's buffered
//! connection (under `tokio-rustls`) keeps a 4 KiB receive buffer for the connection's life.
//! Here rustls's unbuffered API does the TLS and this stream owns the buffers: TLS bytes
//! received and not yet processed, TLS bytes not yet sent, and plaintext not yet read. Each is
//! released as soon as it is empty, so an idle connection holds rustls's state (keys and
//! handshake outcome) and the socket, and nothing else.
//!
//! Reads from the socket go into a buffer on the stack first (at most one TLS record's worth,
//! [`READ_CHUNK`]) and only what arrived is copied to the heap. Outgoing TLS bytes wait here,
//! at most [`OUTGOING_HIGH`] of them before a write waits for the socket (the plaintext layer
//! above bounds its own queue).
//!
//! The unbuffered API does not say which server name (SNI) the client asked for, which routes
//! the connection to its atSign; [`accept`] reads the ClientHello with rustls's `Acceptor`
//! first for that, then hands the same bytes to the unbuffered connection.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::pki_types::CertificateDer;
use rustls::server::{Acceptor, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What one read from the socket takes at most: one whole TLS record (16 KiB of data and
/// 256 bytes of overhead at most) and a little more.
const READ_CHUNK: usize = 18 * 1024;

/// Received TLS bytes held at most: a handshake message of 64 KiB (the bound rustls's own
/// buffered connection sets) split over records, and one read more. Past it the connection
/// fails: the peer is sending a message no client needs.
const MAX_INCOMING: usize = 64 * 1024 + READ_CHUNK;

/// TLS bytes queued for the socket past which a write waits for the socket to take some.
const OUTGOING_HIGH: usize = 64 * 1024;

/// Plaintext encrypted per write at most: four full records.
const WRITE_CHUNK: usize = 64 * 1024;

/// An established server-side TLS connection over TCP.
pub struct LeanTls {
    tcp: TcpStream,
    tls: UnbufferedServerConnection,
    /// The server name the client asked for, if any.
    server_name: Option<String>,
    /// TLS bytes received and not yet processed (at most part of one record once processed).
    incoming: Vec<u8>,
    /// TLS bytes for the peer; `outgoing[sent..]` are not yet written.
    outgoing: Vec<u8>,
    sent: usize,
    /// Application data decrypted and not yet read; `plaintext[taken..]` are still to read.
    plaintext: Vec<u8>,
    taken: usize,
    /// The peer closed its side (close_notify or end of stream): reads see the end.
    peer_closed: bool,
    /// This side's close_notify is queued.
    closing: bool,
}

/// What [`LeanTls::process`] does once the connection is open.
enum Then<'a> {
    /// Nothing: only the received records are processed.
    Nothing,
    /// Encrypts this application data.
    Encrypt(&'a [u8]),
    /// Queues a close_notify alert.
    CloseNotify,
}

/// Where processing the received records stopped.
enum Reached {
    /// The handshake needs more bytes from the peer.
    NeedInput,
    /// The connection is open for application data; this many bytes were encrypted.
    Open(usize),
    /// Both sides closed: nothing more can be sent.
    Closed,
}

/// TLS server handshake over `tcp` with `config`. The caller bounds it in time.
pub async fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<LeanTls> {
    let mut stream = LeanTls {
        tcp,
        tls: UnbufferedServerConnection::new(config).map_err(invalid)?,
        server_name: None,
        incoming: Vec::new(),
        outgoing: Vec::new(),
        sent: 0,
        plaintext: Vec::new(),
        taken: 0,
        peer_closed: false,
        closing: false,
    };
    stream.server_name = stream.client_hello().await?;
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

impl LeanTls {
    /// Reads until a whole ClientHello has arrived, and says which server name it asks for.
    /// What is read stays in `incoming`, for the unbuffered connection to process. rustls's
    /// `Acceptor` bounds what it takes (64 KiB for a handshake message) and rejects what is
    /// not TLS.
    async fn client_hello(&mut self) -> io::Result<Option<String>> {
        let mut acceptor = Acceptor::default();
        loop {
            let start = self.incoming.len();
            if std::future::poll_fn(|cx| self.poll_receive(cx)).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut rest = &self.incoming[start..];
            while !rest.is_empty() && acceptor.read_tls(&mut rest)? > 0 {}
            match acceptor.accept() {
                Ok(None) => continue,
                Ok(Some(accepted)) => {
                    return Ok(accepted.client_hello().server_name().map(str::to_string))
                }
                Err((error, _alert)) => return Err(invalid(error)),
            }
        }
    }

    /// The server name (SNI) the client asked for.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The client's certificate chain, when it presented one (verified by the handshake).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.peer_certificates()
    }

    /// Processes the received records until the connection waits for the outside: more
    /// bytes from the peer, or the application (then does `then`). Handshake records to send
    /// and decrypted data are queued on the way.
    fn process(&mut self, then: Then<'_>) -> io::Result<Reached> {
        loop {
            let status = self.tls.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let state = status.state.map_err(invalid)?;
            let reached = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        if self.taken == self.plaintext.len() {
                            self.plaintext.clear();
                            self.taken = 0;
                        }
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let start = self.outgoing.len();
                    let mut room = 1024;
                    loop {
                        self.outgoing.resize(start + room, 0);
                        match encode.encode(&mut self.outgoing[start..]) {
                            Ok(n) => break self.outgoing.truncate(start + n),
                            Err(EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) => room = required_size,
                            Err(error) => return Err(invalid(error)),
                        }
                    }
                    None
                }
                // Queued here, in order, to be written before anything encrypted later.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::BlockedHandshake => Some(Reached::NeedInput),
                ConnectionState::Closed => Some(Reached::Closed),
                ConnectionState::WriteTraffic(mut open) => {
                    let written = match then {
                        Then::Nothing => 0,
                        Then::Encrypt(data) => {
                            let room = data.len() + 64;
                            queue(&mut self.outgoing, room, |space| open.encrypt(data, space))?;
                            data.len()
                        }
                        Then::CloseNotify => {
                            queue(&mut self.outgoing, 64, |space| {
                                open.queue_close_notify(space)
                            })?;
                            0
                        }
                    };
                    Some(Reached::Open(written))
                }
                // Early data is not enabled, and later states are not known to this code.
                _ => return Err(invalid("unexpected TLS connection state")),
            };
            self.incoming.drain(..discard);
            if self.incoming.is_empty() {
                self.incoming = Vec::new();
            }
            if let Some(reached) = reached {
                return Ok(reached);
            }
        }
    }

    /// Runs the handshake to the point where application data may flow, everything the
    /// server has to say in it sent.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.process(Then::Nothing)? {
                Reached::Open(_) => return self.poll_send(cx),
                Reached::Closed => {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()))
                }
                Reached::NeedInput => {
                    ready!(self.poll_send(cx))?;
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
    }

    /// Reads what the socket has (one chunk) onto `incoming`: how many bytes, 0 at its end.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
        if self.incoming.len() + read.filled().len() > MAX_INCOMING {
            return Poll::Ready(Err(invalid("TLS message too large")));
        }
        self.incoming.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    }

    /// Writes the queued TLS bytes, releasing the queue once it is all sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for LeanTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.plaintext.len() {
                let n = buf.remaining().min(this.plaintext.len() - this.taken);
                buf.put_slice(&this.plaintext[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if let Reached::Closed = this.process(Then::Nothing)? {
                this.peer_closed = true;
            }
            // What the records called for (a key update's answer, an alert) goes out now; a
            // socket that cannot take it yet wakes this task when it can.
            if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
            if this.taken < this.plaintext.len() || this.peer_closed {
                continue;
            }
            if ready!(this.poll_receive(cx))? == 0 {
                this.peer_closed = true;
            }
        }
    }
}

impl AsyncWrite for LeanTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outgoing.len() - this.sent >= OUTGOING_HIGH {
            ready!(this.poll_send(cx))?;
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        let written = match this.process(Then::Encrypt(data))? {
            Reached::Open(n) => n,
            Reached::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Reached::NeedInput => return Poll::Ready(Err(invalid("TLS handshake not complete"))),
        };
        if let Poll::Ready(Err(error)) = this.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    /// Sends close_notify (once), then shuts the socket's writing side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.process(Then::CloseNotify)?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// Appends what `write` puts into the space it is given to `outgoing`, with `room` bytes of
/// space at first and as much as it asks for if that is too little.
fn queue(
    outgoing: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    let start = outgoing.len();
    loop {
        outgoing.resize(start + room, 0);
        match write(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(error) => {
                outgoing.truncate(start);
                return Err(invalid(error));
            }
        }
    }
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use at_common::config::TlsConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::client::TlsStream;

    use super::*;

    /// A listener on loopback with a self-signed certificate (made in `dir`), and a client
    /// configuration trusting it.
    async fn serving(
        dir: &Path,
    ) -> (
        TcpListener,
        Arc<rustls::ServerConfig>,
        tokio_rustls::TlsConnector,
    ) {
        let (server, source) =
            at_common::tls::server_config_verifying_clients(&TlsConfig::default(), dir, &[])
                .expect("server config")
                .expect("TLS on");
        let at_common::tls::CertSource::SelfSigned { ca_file } = source else {
            panic!("self-signed expected");
        };
        let client = at_common::tls::client_config(&[ca_file]).expect("client config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        (
            listener,
            server,
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    async fn connect(
        listener: &TcpListener,
        server: &Arc<rustls::ServerConfig>,
        connector: &tokio_rustls::TlsConnector,
        name: &str,
    ) -> (LeanTls, TlsStream<TcpStream>) {
        let addr = listener.local_addr().expect("addr");
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let client = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            connector
                .connect(name, tcp)
                .await
                .expect("client handshake")
        };
        let server = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            accept(tcp, Arc::clone(server))
                .await
                .expect("server handshake")
        };
        tokio::join!(server, client)
    }

    fn holds_nothing(stream: &LeanTls) -> bool {
        stream.incoming.capacity() == 0
            && stream.outgoing.capacity() == 0
            && stream.plaintext.capacity() == 0
    }

    #[actix_rt::test]
    async fn data_crosses_both_ways_whole_and_an_idle_stream_holds_no_buffer() {
        let dir = at_tests::TempDir::new("lean-tls");
        let (listener, server, connector) = serving(dir.path()).await;
        let (mut server, mut client) = connect(&listener, &server, &connector, "localhost").await;
        assert!(holds_nothing(&server), "after the handshake");

        // More than one record, and more than one write's chunk, each way.
        let request: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (_, received) = tokio::join!(
            async { client.write_all(&request).await.expect("client write") },
            async {
                let mut received = vec![0; request.len()];
                server.read_exact(&mut received).await.expect("server read");
                received
            }
        );
        assert!(received == request, "the server read what the client wrote");
        let reply: Vec<u8> = received.iter().rev().copied().collect();
        let (_, echoed) = tokio::join!(
            async {
                server.write_all(&reply).await.expect("server write");
                server.flush().await.expect("server flush");
            },
            async {
                let mut echoed = vec![0; reply.len()];
                client.read_exact(&mut echoed).await.expect("client read");
                echoed
            }
        );
        assert!(echoed == reply, "the client read what the server wrote");
        assert!(holds_nothing(&server), "once everything is read and sent");
    }

    #[actix_rt::test]
    async fn the_server_name_asked_for_is_known_and_none_without_one() {
        let dir = at_tests::TempDir::new("lean-tls");
        let (listener, server, connector) = serving(dir.path()).await;
        let (by_name, _client) = connect(&listener, &server, &connector, "localhost").await;
        assert_eq!(by_name.server_name(), Some("localhost"));
        // Connecting by IP address sends no SNI.
        let (by_address, _client) = connect(&listener, &server, &connector, "127.0.0.1").await;
        assert_eq!(by_address.server_name(), None);
        assert!(
            by_address.peer_certificates().is_none(),
            "no client certificate"
        );
    }

    /// `writer` writes `line` and shuts its side; `reader` reads to its end, which must be
    /// clean (close_notify, not an error), and gets `line`.
    async fn ends_cleanly(
        mut writer: impl AsyncWrite + Unpin,
        mut reader: impl AsyncRead + Unpin,
        line: &[u8],
    ) {
        writer.write_all(line).await.expect("write");
        writer.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.expect("a clean end");
        assert_eq!(got, line);
    }

    #[actix_rt::test]
    async fn closing_either_side_is_a_clean_end_for_the_other() {
        let dir = at_tests::TempDir::new("lean-tls");
        let (listener, server, connector) = serving(dir.path()).await;
        let (server_side, client) = connect(&listener, &server, &connector, "localhost").await;
        ends_cleanly(server_side, client, b"bye\n").await;
        let (server_side, client) = connect(&listener, &server, &connector, "localhost").await;
        ends_cleanly(client, server_side, b"last\n").await;
    }

    #[actix_rt::test]
    async fn a_client_hello_past_the_handshake_bound_fails_the_handshake() {
        let dir = at_tests::TempDir::new("lean-tls");
        let (listener, server, _) = serving(dir.path()).await;
        let addr = listener.local_addr().expect("addr");
        let flood = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            // A ClientHello that says it is 1 MiB long, sent in full-size handshake records.
            let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x10, 0x00, 0x00];
            first.resize(5 + 0x4000, 0);
            let _ = tcp.write_all(&first).await;
            let mut more = vec![0x16, 0x03, 0x01, 0x40, 0x00];
            more.resize(5 + 0x4000, 0);
            for _ in 0..64 {
                if tcp.write_all(&more).await.is_err() {
                    break;
                }
            }
        });
        let (tcp, _) = listener.accept().await.expect("accept");
        let bound = std::time::Duration::from_secs(10);
        let handshake = tokio::time::timeout(bound, accept(tcp, server)).await;
        assert!(
            matches!(handshake, Ok(Err(_))),
            "refused before 1 MiB arrives, not waited for"
        );
        flood.abort();
    }
}
