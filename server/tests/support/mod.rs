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
