//! The owner's side of a running atServer for the wire tests: a node hosting `@alice`, and a
//! client that authenticates with digests and signatures computed here with `ring`.
//!
//! # Both backends
//! Every test that is not about one store in particular runs twice: on the embedded store and
//! on a real `redis-server` the test starts for itself ([`RedisServer`], on a free loopback
//! port, killed with the node). A test is written once, as a function taking a [`Backend`];
//! [`both_backends!`](crate::both_backends) at the end of its file makes the two `#[test]`s,
//! `embedded::<name>` and `redis::<name>` (so `cargo test -p at-server -- redis::` runs the
//! Redis half). Every configuration the tests write ends with the backend's `[store]` section
//! ([`write_config`]), so `serve` and the admin commands (`provision`, …) reach the same store.
//! Tests that are only about one backend are plain `#[test]`s, with a comment saying why.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use at_tests::client::Client;
pub use at_tests::free_port;
use at_tests::process::{self, Running};
use at_tests::redis::RedisServer;
use at_tests::TempDir;

/// Which store the atServer under test uses.
#[derive(Clone)]
pub enum Backend {
    /// fjall under the node's data dir (the default).
    Embedded,
    /// A `redis-server` of the test's own, kept running as long as a clone of this is held.
    Redis(Arc<RedisServer>),
}

impl Backend {
    pub fn embedded() -> Backend {
        Backend::Embedded
    }

    /// Starts a `redis-server` for this test.
    pub fn redis() -> Backend {
        Backend::Redis(Arc::new(RedisServer::start()))
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Backend::Redis(_))
    }

    /// The TOML that selects this backend; empty for the embedded store (the default). A
    /// table, so it must come after every top-level setting: see [`write_config`].
    pub fn store_section(&self) -> String {
        match self {
            Backend::Embedded => String::new(),
            Backend::Redis(redis) => format!(
                "\n[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                redis.url()
            ),
        }
    }

    /// Asserts that a node whose `data_dir` is `data_dir` really keeps its data where this
    /// backend says: on Redis, no embedded store was created beside it.
    pub fn check_used(&self, data_dir: &Path) {
        let embedded = data_dir.join("store");
        assert_eq!(
            embedded.exists(),
            !self.is_redis(),
            "{} after provisioning",
            embedded.display()
        );
    }
}

/// Writes `<dir>/server.toml`: the top-level `settings`, then `backend`'s store section.
/// Returns the file's path as a `--config` argument.
pub fn write_config(dir: &Path, settings: &str, backend: &Backend) -> String {
    let file = dir.join("server.toml");
    std::fs::write(&file, format!("{settings}{}", backend.store_section())).unwrap();
    file.display().to_string()
}

/// Runs each named test function (`fn name(backend: Backend)`) once per backend, as
/// `embedded::<name>` and `redis::<name>`. Attributes written before a name (such as
/// `#[ignore = "…"]`) go on both; `redis #[…]` after a name goes on the Redis one only.
#[macro_export]
macro_rules! both_backends {
    ($($(#[$both:meta])* $name:ident $(redis #[$redis:meta])?),+ $(,)?) => {
        mod embedded {
            $(
                $(#[$both])*
                #[test]
                fn $name() {
                    super::$name(super::support::Backend::embedded())
                }
            )+
        }
        mod redis {
            $(
                $(#[$both])*
                $(#[$redis])?
                #[test]
                fn $name() {
                    super::$name(super::support::Backend::redis())
                }
            )+
        }
    };
}

pub struct Node {
    pub dir: TempDir,
    pub port: u16,
    pub cram_secret: String,
    pub running: Option<Running>,
    /// The configuration's top-level settings; the file is these plus the backend's section.
    settings: String,
    /// Last, so that a Redis outlives the server process using it.
    pub backend: Backend,
}

impl Node {
    /// A node hosting `@alice` on a port of its own, on `backend`, serving.
    pub fn start(backend: Backend) -> Node {
        Node::start_with_buffer_limit(backend, 1000)
    }

    /// A node like [`Node::start`] whose line limit (`buffer_limit`) is `limit` bytes.
    pub fn start_with_buffer_limit(backend: Backend, limit: usize) -> Node {
        let dir = TempDir::new("server-owner");
        let port = free_port();
        let settings = format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\npublic_host = \"127.0.0.1\"\n\
             listen = \"127.0.0.1:0\"\nport_range_start = {port}\nport_range_len = 1\nbuffer_limit = {limit}\n\
             enroll_passcode_wait_millis = 10\n",
            dir.path().display()
        );
        write_config(dir.path(), &settings, &backend);
        let mut node = Node {
            dir,
            port,
            cram_secret: String::new(),
            running: None,
            settings,
            backend,
        };
        let out = node.admin(&["provision", "@alice"]);
        assert!(out.status.success(), "{out:?}");
        let out = String::from_utf8(out.stdout).unwrap();
        node.cram_secret = out
            .lines()
            .nth(1)
            .unwrap()
            .strip_prefix("cram secret: ")
            .unwrap()
            .to_string();
        node.restart();
        node.backend.check_used(&node.dir.path().join("server"));
        node
    }

    /// Appends `extra` (top-level TOML lines) to the node's configuration, then restarts it.
    pub fn reconfigure(&mut self, extra: &str) {
        self.settings.push_str(extra);
        write_config(self.dir.path(), &self.settings, &self.backend);
        self.restart();
    }

    pub fn config_arg(&self) -> String {
        self.dir.path().join("server.toml").display().to_string()
    }

    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        let config = self.config_arg();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        process::run(Path::new(env!("CARGO_BIN_EXE_at-server")), &all, &[])
    }

    pub fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        let config = self.config_arg();
        self.running = Some(Running::start(
            Path::new(env!("CARGO_BIN_EXE_at-server")),
            &["--config", &config, "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        ));
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("server/tls/ca.pem")
    }

    /// A TLS client on `@alice`'s own port that has read the `@` prompt.
    pub fn client(&self) -> Client {
        let mut client = Client::tls(([127, 0, 0, 1], self.port).into(), &self.ca_file());
        client.expect(b"@");
        client
    }
}

/// `from:@alice`; returns the challenge text (the reply without `data:` and the prompt).
pub fn from_alice(client: &mut Client) -> String {
    client.send(b"from:@alice\n");
    let reply = client.read_until(b"\n@");
    let challenge = reply
        .strip_prefix("data:")
        .unwrap()
        .strip_suffix("\n@")
        .unwrap()
        .to_string();
    let (session, nonce) = challenge
        .split_once("@alice:")
        .expect("sessionId@alice:nonce");
    assert!(
        session.starts_with('_') && session.len() == 37,
        "{challenge}"
    );
    assert_eq!(nonce.len(), 36, "{challenge}");
    challenge
}

pub use at_tests::client::cram_digest;

pub const PKAM_PUBLIC: &str = include_str!("../../../common/testdata/auth/rsa_public_spki.b64");
pub const PKAM_PRIVATE: &str = include_str!("../../../common/testdata/auth/rsa_private_pkcs8.b64");

/// RSA PKCS#1 v1.5 SHA-256 of `challenge` with the test key (made by openssl), base64: what
/// an SDK's pkam sends, computed here with ring rather than with the server's code.
pub fn pkam_signature(challenge: &str) -> String {
    at_tests::apkam::pkam_signature(PKAM_PRIVATE, challenge)
}

pub fn cram_in(node: &Node) -> Client {
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
    client
}

pub fn pkam_in(node: &Node) -> Client {
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&challenge)),
        "data:success\n@alice@",
    );
    client
}

/// Sends `from:<atsign>` as another atSign's server would, but without the client certificate
/// such a server presents: past the block list (which would close with AT0013), it is refused
/// for the missing certificate (AT0401), and the connection stays open.
pub fn from_peer(client: &mut Client, atsign: &str) {
    client.ask(
        &format!("from:{atsign}\n"),
        "error:AT0401-Exception: Certificate Verification Failed\n@",
    );
}

/// A TLS connection to `@alice`'s port that can shut down its write side and read on, which
/// the harness [`Client`] cannot: for half-close tests. Every read has a deadline.
pub struct HalfCloser {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    received: Vec<u8>,
    closed: bool,
}

impl HalfCloser {
    /// Connects, completes the handshake and reads the `@` prompt.
    pub fn connect(node: &Node) -> HalfCloser {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(node.ca_file()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], node.port).into(),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut half = HalfCloser {
            stream: rustls::StreamOwned::new(conn, tcp),
            received: Vec::new(),
            closed: false,
        };
        half.read_until(b"@", std::time::Duration::from_secs(10));
        assert_eq!(half.take(), b"@");
        half
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Says "nothing more from me" the TLS way (close_notify), then shuts down the TCP write
    /// side; reading goes on.
    pub fn shut_down_writing(&mut self) {
        self.stream.conn.send_close_notify();
        while self.stream.conn.wants_write() {
            self.stream.conn.write_tls(&mut self.stream.sock).unwrap();
        }
        self.stream
            .sock
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
    }

    /// Shuts down the TCP write side without a TLS close_notify first, as a client that drops
    /// its TLS layer would; reading goes on.
    pub fn shut_down_tcp_writing(&mut self) {
        self.stream
            .sock
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
    }

    /// Reads until what was received ends with `suffix`, the server closes, or `within` passes.
    pub fn read_until(&mut self, suffix: &[u8], within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self.received.ends_with(suffix)
            && !self.closed
            && std::time::Instant::now() < deadline
        {
            self.fill();
        }
    }

    /// Reads until the server closes or `within` passes; returns whether it closed.
    pub fn wait_closed(&mut self, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while !self.closed && std::time::Instant::now() < deadline {
            self.fill();
        }
        self.closed
    }

    /// The bytes received and not yet taken.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    fn fill(&mut self) {
        use std::io::{ErrorKind, Read};
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.received.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // A reset, or TLS ended without close_notify: closed either way.
            Err(_) => self.closed = true,
        }
    }
}

/// The connection still answers: `noop:0` replies `data:ok` with `prompt`.
pub fn still_open(client: &mut Client, prompt: &str) {
    client.ask("noop:0\n", &format!("data:ok\n{prompt}"));
}
