//! A fake atServer for tests: a loopback TLS listener (with a certificate the real servers
//! trust, e.g. one of theirs issued by the cluster CA) that answers each request line by a
//! script and records what it was sent, when, and how its connections ended. Registered in
//! the directory ([`crate::servers::Cluster::register`]), it stands in for another atSign's
//! server, so a test can count delivery attempts or watch links open and close.
//!
//! Every connection runs on a thread of its own with a 30 s read timeout; the listener stops
//! accepting when the peer is dropped. Requests are answered one after the other; just before
//! writing each reply the fake looks whether the next request has already arrived, which it
//! counts ([`FakePeer::overlapping`]): a client that waits for each reply never makes it count,
//! one that pipelines (given replies slow enough, [`Answer::After`]) does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What the fake server does with one request line.
pub enum Answer {
    /// Writes these bytes (a reply and its prompt).
    Reply(String),
    /// Writes these bytes after this long.
    After(Duration, String),
    /// Writes nothing.
    Silence,
    /// Closes the connection.
    Close,
}

/// One connection's script: each request line (without `\n`) → what to do.
pub type Session = Box<dyn FnMut(&str) -> Answer + Send>;

/// Makes the script of each new connection.
pub type Script = Arc<dyn Fn() -> Session + Send + Sync>;

/// A fake atServer listening on a loopback port.
pub struct FakePeer {
    pub addr: SocketAddr,
    /// Every request line, with when it arrived, over all connections.
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    accepted: Arc<AtomicUsize>,
    /// Connections the other side closed.
    closed_by_client: Arc<AtomicUsize>,
    /// Requests that arrived before the reply to the previous one on their connection was
    /// written.
    overlapping: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// The TLS of a server whose certificate and key are `cert.pem` and `key.pem` in `tls_dir`
/// (e.g. a real atServer's, issued by the cluster CA for 127.0.0.1).
pub fn tls_of(tls_dir: &Path) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(tls_dir.join("cert.pem"))
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(tls_dir.join("key.pem")).expect("key file");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server TLS");
    Arc::new(config)
}

/// The script of an atServer for `atsign` (`@rcpt`) that lets any atSign in (`from` gets a
/// proof, `pol` the prompt of the claimed atSign, no call back), answers the public-key check
/// every new link makes first as a server without one does, and hands every other line to
/// `rest`, whose reply gets the connection's prompt appended.
pub fn welcoming(atsign: &str, rest: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Script {
    let atsign = atsign.to_string();
    let rest = Arc::new(rest);
    Arc::new(move || {
        let (atsign, rest) = (atsign.clone(), rest.clone());
        let mut claimed = String::new();
        Box::new(move |line: &str| {
            if let Some(from) = line.strip_prefix("from:") {
                claimed = from.to_string();
                return Answer::Reply(format!("data:proof:_fake-session{from}:challenge-1\n@"));
            }
            if line == "pol" {
                return Answer::Reply(format!("{claimed}@"));
            }
            if line == format!("lookup:all:publickey{atsign}") {
                return Answer::Reply(format!(
                    "error:AT0015-key not found : public:publickey{atsign} does not exist in \
                     keystore\n@"
                ));
            }
            match rest(line) {
                Answer::Reply(reply) => Answer::Reply(format!("{reply}\n{claimed}@")),
                Answer::After(wait, reply) => Answer::After(wait, format!("{reply}\n{claimed}@")),
                other => other,
            }
        })
    })
}

impl FakePeer {
    pub fn start(tls: Arc<rustls::ServerConfig>, script: Script) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake peer");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let peer = FakePeer {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            accepted: Arc::default(),
            closed_by_client: Arc::default(),
            overlapping: Arc::default(),
            stop: Arc::default(),
        };
        let (received, accepted, closed, stop) = (
            peer.received.clone(),
            peer.accepted.clone(),
            peer.closed_by_client.clone(),
            peer.stop.clone(),
        );
        let overlapping = peer.overlapping.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let (tls, session) = (tls.clone(), script());
                        let (received, closed) = (received.clone(), closed.clone());
                        let overlapping = overlapping.clone();
                        std::thread::spawn(move || {
                            if serve(tcp, tls, session, &received, &overlapping) {
                                closed.fetch_add(1, Ordering::SeqCst);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        peer
    }

    /// Every request line received, in order.
    pub fn lines(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// When each line `wanted` accepts arrived, in order.
    pub fn arrivals(&self, wanted: impl Fn(&str) -> bool) -> Vec<Instant> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| wanted(line))
            .map(|(at, _)| *at)
            .collect()
    }

    /// Connections accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests that arrived, over all connections, while the reply to the one before them on
    /// the same connection was not written yet: 0 for a client with one request in flight.
    pub fn overlapping(&self) -> usize {
        self.overlapping.load(Ordering::SeqCst)
    }

    /// Connections the other side (the real server) closed.
    pub fn closed_by_client(&self) -> usize {
        self.closed_by_client.load(Ordering::SeqCst)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves one connection by `script`; whether the other side closed it.
fn serve(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    mut script: Session,
    received: &Mutex<Vec<(Instant, String)>>,
    overlapping: &AtomicUsize,
) -> bool {
    let _ = tcp.set_nonblocking(false);
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = rustls::ServerConnection::new(tls).expect("TLS server");
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut buffer = Vec::new();
    loop {
        let line = loop {
            if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                break String::from_utf8_lossy(&line[..end]).trim_end().to_string();
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                // A reset, or TLS ended without close_notify: the other side went away.
                Err(_) => return true,
            }
        };
        received
            .lock()
            .unwrap()
            .push((Instant::now(), line.clone()));
        let reply = match script(&line) {
            Answer::Reply(reply) => Some(reply),
            Answer::After(wait, reply) => {
                std::thread::sleep(wait);
                Some(reply)
            }
            Answer::Silence => None,
            Answer::Close => {
                stream.conn.send_close_notify();
                let _ = stream.flush();
                return false;
            }
        };
        if let Some(reply) = reply {
            if arrived_meanwhile(&mut stream, &mut buffer) {
                overlapping.fetch_add(1, Ordering::SeqCst);
            }
            if stream.write_all(reply.as_bytes()).is_err() || stream.flush().is_err() {
                return true;
            }
        }
    }
}

/// Whether more of the request stream is already here (read into `buffer`), without waiting.
fn arrived_meanwhile(
    stream: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    buffer: &mut Vec<u8>,
) -> bool {
    if stream.sock.set_nonblocking(true).is_ok() {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            buffer.extend_from_slice(&chunk[..n]);
        }
        let _ = stream.sock.set_nonblocking(false);
    }
    !buffer.is_empty()
}
