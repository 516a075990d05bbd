//! The owner's side of an atServer over real TLS, against the real binary: provision, connect
//! to the atSign's own port, authenticate, and the errors on the way. Digests are computed here
//! with `ring`, independently of the server's code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use at_tests::client::Client;
use at_tests::process::{self, Running};
use at_tests::TempDir;

struct Node {
    dir: TempDir,
    port: u16,
    cram_secret: String,
    running: Option<Running>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    /// A node hosting `@alice` on a port of its own, serving.
    fn start() -> Node {
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

    fn config_arg(&self) -> String {
        self.dir.path().join("server.toml").display().to_string()
    }

    fn admin(&self, args: &[&str]) -> std::process::Output {
        let config = self.config_arg();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        process::run(Path::new(env!("CARGO_BIN_EXE_at-server")), &all, &[])
    }

    fn restart(&mut self) {
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

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("server/tls/ca.pem")
    }

    /// A TLS client on `@alice`'s own port that has read the `@` prompt.
    fn client(&self) -> Client {
        let mut client = Client::tls(([127, 0, 0, 1], self.port).into(), &self.ca_file());
        client.expect(b"@");
        client
    }
}

/// `from:@alice`; returns the challenge text (the reply without `data:` and the prompt).
fn from_alice(client: &mut Client) -> String {
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

fn cram_digest(secret: &str, challenge: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA512,
        format!("{secret}{challenge}").as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cram_with_the_provisioned_secret_authenticates_the_owner() {
    let node = Node::start();
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
}

#[test]
fn wrong_cram_is_at0401_and_the_connection_stays_open() {
    let node = Node::start();
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest("not-the-secret", &challenge)),
        "error:AT0401-Exception: Authentication Failed\n@",
    );
    // The challenge was spent: even the right digest for it now fails.
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "error:AT0401-Exception: from verb must precede the proof\n@",
    );
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
}

#[test]
fn owner_verbs_before_authentication_are_at0401() {
    let node = Node::start();
    let mut client = node.client();
    for line in [
        "llookup:public:phone@alice\n",
        "update:public:phone@alice 123\n",
        "stats\n",
        "sync:from:-1:limit:10\n",
    ] {
        client.ask(
            line,
            "error:AT0401-Exception: Command cannot be executed without auth\n@",
        );
    }
}

#[test]
fn unknown_verbs_are_at0003_worded_by_authentication_state() {
    let node = Node::start();
    let mut client = node.client();
    client.ask("hello\n", "error:AT0003-Exception: invalid command\n@");
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
    client.ask(
        "hello\n",
        "error:AT0003-Invalid syntax : invalid command\n@alice@",
    );
}

#[test]
fn overlong_line_is_at0005_and_closes() {
    let node = Node::start();
    let mut client = node.client();
    client.send("x".repeat(1001).as_bytes());
    client.expect(b"error:AT0005-Exception: line longer than 1000 bytes\n@");
    client.expect_closed(Duration::from_secs(5));
}

#[test]
fn invalid_utf8_is_at0003_and_closes() {
    let node = Node::start();
    let mut client = node.client();
    client.send(b"from:@\xff\xfe\n");
    client.expect(b"error:AT0003-Exception: command is not valid UTF-8\n@");
    client.expect_closed(Duration::from_secs(5));
}

#[test]
fn exit_closes_without_a_reply() {
    let node = Node::start();
    let mut client = node.client();
    client.send(b"@exit\n");
    client.expect_closed(Duration::from_secs(5));
}

#[test]
fn a_connection_for_an_unknown_server_name_is_closed() {
    let node = Node::start();
    let shared = node.running.as_ref().unwrap().addr;
    // The shared port routes by SNI; `localhost` names no hosted atSign.
    let mut client = Client::tls(shared, &node.ca_file());
    client.expect_closed(Duration::from_secs(5));
}

#[test]
fn the_shared_port_routes_each_atsign_by_its_sni_name() {
    let dir = TempDir::new("server-sni");
    let config = format!(
        "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\n\
         listen = \"127.0.0.1:0\"\npublic_port = 6464\nsni_domain = \"atsign.test\"\n",
        dir.path().display()
    );
    let config_file = dir.path().join("server.toml");
    std::fs::write(&config_file, config).unwrap();
    let config_file = config_file.display().to_string();
    let binary = Path::new(env!("CARGO_BIN_EXE_at-server"));
    for atsign in ["@alice", "@bob"] {
        assert!(process::run(
            binary,
            &["--config", &config_file, "provision", atsign],
            &[]
        )
        .status
        .success());
    }
    let list = process::run(binary, &["--config", &config_file, "list"], &[]);
    let list = String::from_utf8(list.stdout).unwrap();
    let running = Running::start(
        binary,
        &["--config", &config_file, "serve"],
        &[("AT_SERVER_LOG", "warn")],
        false,
    );
    let ca = dir.path().join("server/tls/ca.pem");
    for line in list.lines() {
        // `@alice teapot <label>.atsign.test:6464`: connect by that name to the shared port.
        let mut fields = line.split(' ');
        let (atsign, _, address) = (
            fields.next().unwrap(),
            fields.next(),
            fields.next().unwrap(),
        );
        let host = address.rsplit_once(':').unwrap().0;
        let mut client = Client::tls_named(running.addr, &ca, host);
        client.expect(b"@");
        client.send(format!("from:{atsign}\n").as_bytes());
        let reply = client.read_until(b"\n@");
        assert!(
            reply.starts_with("data:_") && reply.contains(&format!("{atsign}:")),
            "{reply}"
        );
    }
}

const PKAM_PUBLIC: &str = include_str!("../../common/testdata/auth/rsa_public_spki.b64");
const PKAM_PRIVATE: &str = include_str!("../../common/testdata/auth/rsa_private_pkcs8.b64");

/// RSA PKCS#1 v1.5 SHA-256 of `challenge` with the test key (made by openssl), base64: what
/// an SDK's pkam sends, computed here with ring rather than with the server's code.
fn pkam_signature(challenge: &str) -> String {
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

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn std_base64_encode(bytes: &[u8]) -> String {
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

fn std_base64_decode(text: &str) -> Vec<u8> {
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

fn cram_in(node: &Node) -> Client {
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
    client
}

fn pkam_in(node: &Node) -> Client {
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&challenge)),
        "data:success\n@alice@",
    );
    client
}

#[test]
fn onboarding_as_real_clients_run_it_then_pkam_and_cram_disabled() {
    let node = Node::start();
    let mut owner = cram_in(&node);
    owner.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PKAM_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
    let mut owner = pkam_in(&node);
    owner.ask(
        "update:public:publickey@alice MIIBIjANBgkq-encryption-key\n",
        "data:0\n@alice@",
    );
    owner.ask("delete:privatekey:at_secret\n", "data:-1\n@alice@");

    // CRAM is gone for good; PKAM still works.
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "error:AT0401-Exception: Authentication Failed\n@",
    );
    pkam_in(&node);

    // What the status check of at_server_status looks at, unauthenticated.
    let mut anyone = node.client();
    anyone.ask("scan\n", "data:[\"publickey@alice\"]\n@");
    anyone.ask(
        "lookup:publickey@alice\n",
        "data:MIIBIjANBgkq-encryption-key\n@",
    );
}

#[test]
fn wrong_pkam_signature_is_at0401_and_the_connection_stays_open() {
    let node = Node::start();
    let mut owner = cram_in(&node);
    owner.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PKAM_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&format!("{challenge}x"))),
        "error:AT0401-Exception: pkam authentication failed\n@",
    );
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&challenge)),
        "data:success\n@alice@",
    );
}

#[test]
fn owner_keys_round_trip_and_missing_keys_are_at0015() {
    let node = Node::start();
    let mut owner = cram_in(&node);
    owner.ask("update:phone.wavi@alice +44 1234\n", "data:0\n@alice@");
    owner.ask(
        "update:public:location.wavi@alice London\n",
        "data:1\n@alice@",
    );
    owner.ask(
        "update:@bob:phone.wavi@alice encrypted-for-bob\n",
        "data:2\n@alice@",
    );
    owner.ask("llookup:phone.wavi@alice\n", "data:+44 1234\n@alice@");
    owner.ask(
        "llookup:public:location.wavi@alice\n",
        "data:London\n@alice@",
    );
    owner.ask(
        "llookup:@bob:phone.wavi@alice\n",
        "data:encrypted-for-bob\n@alice@",
    );
    owner.ask(
        "llookup:nothing.wavi@alice\n",
        "error:AT0015-key not found : nothing.wavi@alice does not exist in keystore\n@alice@",
    );
    owner.ask("delete:phone.wavi@alice\n", "data:3\n@alice@");
    owner.ask(
        "llookup:phone.wavi@alice\n",
        "error:AT0015-key not found : phone.wavi@alice does not exist in keystore\n@alice@",
    );
    // Anyone sees the public key only.
    let mut anyone = node.client();
    anyone.ask("scan\n", "data:[\"location.wavi@alice\"]\n@");
    anyone.ask("lookup:location.wavi@alice\n", "data:London\n@");
}

#[test]
fn an_acknowledged_write_survives_kill_9() {
    let mut node = Node::start();
    let mut owner = cram_in(&node);
    owner.ask(
        "update:public:durable@alice still-here\n",
        "data:0\n@alice@",
    );
    // SIGKILL, no shutdown of any kind, right after the acknowledgement.
    node.running.take().unwrap().stop();
    node.restart();
    let mut anyone = node.client();
    anyone.ask("lookup:durable@alice\n", "data:still-here\n@");
}
