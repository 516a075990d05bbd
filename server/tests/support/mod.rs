//! The owner's side of a running atServer for the wire tests: a node hosting `@alice`, and a
//! client that authenticates with digests and signatures computed here with `ring`.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use at_tests::client::Client;
pub use at_tests::free_port;
use at_tests::process::{self, Running};
use at_tests::TempDir;

pub struct Node {
    pub dir: TempDir,
    pub port: u16,
    pub cram_secret: String,
    pub running: Option<Running>,
}

impl Node {
    /// A node hosting `@alice` on a port of its own, serving.
    pub fn start() -> Node {
        let dir = TempDir::new("server-owner");
        let port = free_port();
        let config = format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\npublic_host = \"127.0.0.1\"\n\
             listen = \"127.0.0.1:0\"\nport_range_start = {port}\nport_range_len = 1\nbuffer_limit = 1000\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("server.toml"), config).unwrap();
        let mut node = Node {
            dir,
            port,
            cram_secret: String::new(),
            running: None,
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
        node
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

pub fn cram_digest(secret: &str, challenge: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA512,
        format!("{secret}{challenge}").as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub const PKAM_PUBLIC: &str = include_str!("../../../common/testdata/auth/rsa_public_spki.b64");
pub const PKAM_PRIVATE: &str = include_str!("../../../common/testdata/auth/rsa_private_pkcs8.b64");

/// RSA PKCS#1 v1.5 SHA-256 of `challenge` with the test key (made by openssl), base64: what
/// an SDK's pkam sends, computed here with ring rather than with the server's code.
pub fn pkam_signature(challenge: &str) -> String {
    let der = std_base64_decode(PKAM_PRIVATE.trim());
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        challenge.as_bytes(),
        &mut signature,
    )
    .unwrap();
    std_base64_encode(&signature)
}

pub const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn std_base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn std_base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        n = (n << 6) | B64.iter().position(|b| *b == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
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

impl Node {
    /// Appends `extra` (TOML lines) to the node's configuration, then restarts it.
    pub fn reconfigure(&mut self, extra: &str) {
        let path = self.dir.path().join("server.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str(extra);
        std::fs::write(&path, config).unwrap();
        self.restart();
    }
}

/// Sends `from:<atsign>` as another atSign's server would and asserts the `proof:` reply.
pub fn from_peer(client: &mut Client, atsign: &str) {
    client.send(format!("from:{atsign}\n").as_bytes());
    let reply = client.read_until(b"\n@");
    assert!(
        reply.starts_with("data:proof:_") && reply.contains(&format!("{atsign}:")),
        "{reply}"
    );
}

impl Node {
    /// A node like [`Node::start`] whose line limit (`buffer_limit`) is `limit` bytes.
    pub fn start_with_buffer_limit(limit: usize) -> Node {
        let mut node = Node::start();
        let file = node.dir.path().join("server.toml");
        let config = std::fs::read_to_string(&file).unwrap();
        assert!(config.contains("buffer_limit = 1000\n"), "{config}");
        let config = config.replace(
            "buffer_limit = 1000\n",
            &format!("buffer_limit = {limit}\n"),
        );
        std::fs::write(&file, config).unwrap();
        node.restart();
        node
    }
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
