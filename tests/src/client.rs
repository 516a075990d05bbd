//! A blocking protocol client for tests: TLS verified against a CA file (or plain TCP), exact-byte
//! expectations, and a deadline on every read.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// How long `expect` waits for bytes that should come at once.
pub const PROMPT_WAIT: Duration = Duration::from_secs(10);
/// How often reads wake up to check their deadline.
const TICK: Duration = Duration::from_millis(20);

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One client connection.
pub struct Client {
    stream: Box<dyn Stream>,
    /// Bytes received and not yet consumed by an expectation.
    pending: Vec<u8>,
    closed: bool,
    /// The TCP socket under `stream`, for its options.
    tcp: Option<TcpStream>,
    /// The client's own end of the TCP connection.
    local: SocketAddr,
}

impl Client {
    /// Connects with TLS to `addr`, trusting only the CA in `ca_file`, for host name `localhost`.
    pub fn tls(addr: SocketAddr, ca_file: &Path) -> Client {
        Client::tls_named(addr, ca_file, "localhost")
    }

    /// Connects with TLS to `addr` for the server name `name` (sent as SNI and verified).
    pub fn tls_named(addr: SocketAddr, ca_file: &Path, name: &str) -> Client {
        Client::try_tls_named(addr, ca_file, name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::tls_named`], or why the TLS handshake failed (refused name, closed, silent).
    pub fn try_tls_named(addr: SocketAddr, ca_file: &Path, name: &str) -> Result<Client, String> {
        Client::try_tls_as(addr, ca_file, name, None)
    }

    /// [`Client::tls_named`], presenting the certificate chain `cert_file` (key `key_file`) as
    /// a client certificate, as an atServer connecting to another does.
    pub fn tls_with_certificate(
        addr: SocketAddr,
        ca_file: &Path,
        name: &str,
        cert_file: &Path,
        key_file: &Path,
    ) -> Client {
        Client::try_tls_as(addr, ca_file, name, Some((cert_file, key_file)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::tls_named`] from the local address `source` (any of 127.0.0.0/8 on
    /// loopback), as a client on another host would come: for what the server decides by
    /// the client's address.
    pub fn tls_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        ca_file: &Path,
        name: &str,
    ) -> Client {
        Client::try_tls_from(Some((source, None)), addr, ca_file, name, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::tls_named`] with a small, fixed TCP receive window (`window` bytes, no
    /// autotuning): a client that stops reading then holds little in its kernel buffers, so
    /// the server's own bounds are what is tested.
    pub fn tls_small_window(addr: SocketAddr, ca_file: &Path, name: &str, window: usize) -> Client {
        let source = std::net::IpAddr::from([127, 0, 0, 1]);
        Client::try_tls_from(Some((source, Some(window))), addr, ca_file, name, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_tls_as(
        addr: SocketAddr,
        ca_file: &Path,
        name: &str,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Client, String> {
        Client::try_tls_from(None, addr, ca_file, name, identity)
    }

    fn try_tls_from(
        source: Option<(std::net::IpAddr, Option<usize>)>,
        addr: SocketAddr,
        ca_file: &Path,
        name: &str,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Client, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
            roots.add(cert.expect("CA certificate")).expect("usable CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let chain = CertificateDer::pem_file_iter(cert_file)
                    .expect("certificate file")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certificates");
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_file).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate")
            }
        };
        let name = ServerName::try_from(name.to_string()).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
        let tcp = match source {
            Some((source, window)) => connect_from(source, window, addr),
            None => connect(addr),
        };
        let socket = tcp.try_clone().ok();
        let local = tcp.local_addr().expect("local address");
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // Finish the handshake now, so a refused certificate fails here and not in a later read.
        let deadline = Instant::now() + PROMPT_WAIT;
        while stream.conn.is_handshaking() {
            match stream.conn.complete_io(&mut stream.sock) {
                Ok((0, 0)) if stream.conn.is_handshaking() => {
                    return Err("TLS handshake: closed by the server".into())
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(format!("TLS handshake: {e}")),
            }
        }
        let mut client = Client::over(Box::new(stream), local);
        client.tcp = socket;
        Ok(client)
    }

    /// Authenticates as `atsign` with CRAM (`from:` then `cram:<sha512 hex of secret +
    /// challenge>`), as an owner onboarding does; asserts `data:success`.
    pub fn cram_in(&mut self, atsign: &str, secret: &str) {
        self.send(format!("from:{atsign}\n").as_bytes());
        let reply = self.read_until(b"\n@");
        let challenge = reply
            .strip_prefix("data:")
            .and_then(|r| r.strip_suffix("\n@"))
            .unwrap_or_else(|| panic!("from: {reply:?}"));
        let hex = cram_digest(secret, challenge);
        self.ask(
            &format!("cram:{hex}\n"),
            &format!("data:success\n{atsign}@"),
        );
    }

    /// Connects with plain TCP.
    pub fn plain(addr: SocketAddr) -> Client {
        let tcp = connect(addr);
        let socket = tcp.try_clone().ok();
        let local = tcp.local_addr().expect("local address");
        let mut client = Client::over(Box::new(tcp), local);
        client.tcp = socket;
        client
    }

    fn over(stream: Box<dyn Stream>, local: SocketAddr) -> Client {
        Client {
            stream,
            pending: Vec::new(),
            closed: false,
            tcp: None,
            local,
        }
    }

    /// The client's own address: the server sees the connection coming from here.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// Sends raw bytes, giving up after `within` if the server stops taking them (it
    /// stopped reading): whether all went.
    pub fn try_send(&mut self, bytes: &[u8], within: Duration) -> bool {
        if let Some(tcp) = &self.tcp {
            tcp.set_write_timeout(Some(within)).expect("write timeout");
        }
        let sent = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush());
        if let Some(tcp) = &self.tcp {
            tcp.set_write_timeout(None).expect("write timeout");
        }
        sent.is_ok()
    }

    /// Asserts that exactly `want` arrives next (within [`PROMPT_WAIT`]) and consumes it.
    pub fn expect(&mut self, want: &[u8]) {
        if let Err(e) = self.try_expect(want, PROMPT_WAIT) {
            panic!("{e}");
        }
    }

    /// Whether exactly `want` arrives next within `within` (consumed if so), or what came.
    pub fn try_expect(&mut self, want: &[u8], within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.pending.len() < want.len() && !self.closed && Instant::now() < deadline {
            self.fill();
        }
        let got = &self.pending[..self.pending.len().min(want.len())];
        if got != want {
            return Err(format!(
                "expected {:?}, got {:?} (closed: {})",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&self.pending),
                self.closed
            ));
        }
        self.pending.drain(..want.len());
        Ok(())
    }

    /// Reads until the received bytes end with `suffix` (a prompt) and returns them, consumed.
    pub fn read_until(&mut self, suffix: &[u8]) -> String {
        self.try_read_until(suffix, PROMPT_WAIT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::read_until`] within `within`, or what came instead (and whether it closed).
    pub fn try_read_until(&mut self, suffix: &[u8], within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        while !self.pending.ends_with(suffix) && !self.closed && Instant::now() < deadline {
            self.fill();
        }
        if !self.pending.ends_with(suffix) {
            return Err(format!(
                "expected a reply ending {:?}, got {:?} (closed: {})",
                String::from_utf8_lossy(suffix),
                String::from_utf8_lossy(&self.pending),
                self.closed
            ));
        }
        Ok(String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned())
    }

    /// Sends `line` and asserts the exact reply, like a transcript line pair.
    pub fn ask(&mut self, line: &str, want: &str) {
        self.send(line.as_bytes());
        self.expect(want.as_bytes());
    }

    /// Everything that arrives within `window` (the connection may close meanwhile).
    /// Sends `line` (a `\n` is added) and returns the reply without `prompt`, within 15 s.
    pub fn reply_to(&mut self, line: &str, prompt: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        let reply = self
            .try_read_until(prompt.as_bytes(), Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        reply.strip_suffix(prompt).unwrap_or(&reply).to_string()
    }

    /// What a monitor connection sends next, up to a `\n` (one line, or several that came
    /// together), within 10 s.
    pub fn next_line(&mut self) -> String {
        self.try_read_until(b"\n", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no notification: {e}"))
    }

    pub fn read_for(&mut self, window: Duration) -> Vec<u8> {
        let deadline = Instant::now() + window;
        while !self.closed && Instant::now() < deadline {
            self.fill();
        }
        std::mem::take(&mut self.pending)
    }

    /// Asserts that nothing arrives within `window` and the connection stays open.
    pub fn expect_silence(&mut self, window: Duration) {
        let got = self.read_for(window);
        assert!(
            got.is_empty(),
            "expected silence, got {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(!self.closed, "expected the connection to stay open");
    }

    /// Asserts that the server closes the connection within `within`, sending nothing more.
    pub fn expect_closed(&mut self, within: Duration) {
        let got = self.read_for(within);
        assert!(
            got.is_empty(),
            "expected a silent close, got {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            self.closed,
            "expected the connection to be closed within {within:?}"
        );
    }

    /// Whether the server has closed the connection (as seen so far).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// One read of at most [`TICK`].
    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            // A reset, or TLS ended without close_notify: closed either way.
            Err(_) => self.closed = true,
        }
    }
}

/// The `cram:` proof: lowercase hex SHA-512 of secret + challenge (docs/authentication.md#cram).
pub fn cram_digest(secret: &str, challenge: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA512,
        format!("{secret}{challenge}").as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&addr, PROMPT_WAIT).expect("connect");
    tcp.set_read_timeout(Some(TICK)).expect("read timeout");
    tcp.set_nodelay(true).expect("nodelay");
    tcp
}

/// [`connect`] from the local address `source`, with a fixed receive buffer of `window`
/// bytes if given (std cannot do either before connecting).
fn connect_from(source: std::net::IpAddr, window: Option<usize>, addr: SocketAddr) -> TcpStream {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
    if let Some(window) = window {
        socket.set_recv_buffer_size(window).expect("receive buffer");
    }
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address");
    socket
        .connect_timeout(&addr.into(), PROMPT_WAIT)
        .expect("connect");
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(TICK)).expect("read timeout");
    tcp.set_nodelay(true).expect("nodelay");
    tcp
}

/// A monitor line with its time replaced by `<time>`, to compare the rest exactly.
pub fn line_without_time(line: &str) -> String {
    let at = line.find("\"epochMillis\":").expect("epochMillis") + "\"epochMillis\":".len();
    let end = at + line[at..].find(',').expect("after epochMillis");
    assert!(line[at..end].parse::<i64>().is_ok(), "{line}");
    format!("{}<time>{}", &line[..at], &line[end..])
}
