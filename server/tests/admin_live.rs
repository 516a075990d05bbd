//! `provision | deprovision | list` while the node serves: the CLI hands them to the running
//! server over its admin socket (the embedded store is the server's alone), and the server
//! serves the change at once: a new atSign's SNI name and own port answer, a removed one's stop.
//! On Redis the socket is used the same way; without one, the CLI opens the shared Redis itself.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::process::{self, Running};
use at_tests::TempDir;
use support::{cram_digest, free_port, write_config, Backend};

struct LiveNode {
    dir: TempDir,
    running: Running,
    own_port: u16,
    /// Last, so that a Redis outlives the server process using it.
    backend: Backend,
}

impl LiveNode {
    /// Serving, with nothing provisioned: SNI names under `atsign.test`, and a one-port range.
    fn start(backend: Backend) -> LiveNode {
        let dir = TempDir::new("server-admin-live");
        let own_port = free_port();
        let settings = format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\n\
             public_host = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\npublic_port = 6464\n\
             sni_domain = \"atsign.test\"\nport_range_start = {own_port}\nport_range_len = 1\n",
            dir.path().display()
        );
        let config = write_config(dir.path(), &settings, &backend);
        let running = Running::start(
            Path::new(env!("CARGO_BIN_EXE_at-server")),
            &["--config", &config, "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        );
        LiveNode {
            dir,
            running,
            own_port,
            backend,
        }
    }

    fn admin(&self, args: &[&str]) -> String {
        let config = self.dir.path().join("server.toml").display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        let out = process::run(Path::new(env!("CARGO_BIN_EXE_at-server")), &all, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("server/tls/ca.pem")
    }

    fn by_sni(&self, host: &str) -> Client {
        Client::tls_named(self.running.addr, &self.ca(), host)
    }

    fn own_port(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.own_port))
    }
}

/// `provisioned @bob at <host>:6464` and `cram secret: <secret>` → (host, secret).
fn provisioned(out: &str, atsign: &str) -> (String, String) {
    let mut lines = out.lines();
    let first = lines.next().unwrap();
    let address = first
        .strip_prefix(&format!("provisioned {atsign} at "))
        .unwrap_or_else(|| panic!("{out}"));
    let host = address.strip_suffix(":6464").unwrap().to_string();
    let secret = lines.next().unwrap().strip_prefix("cram secret: ").unwrap();
    (host, secret.to_string())
}

fn cram_as_bob(client: &mut Client, secret: &str) {
    client.expect(b"@");
    client.send(b"from:@bob\n");
    let reply = client.read_until(b"\n@");
    let challenge = reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix("\n@"))
        .unwrap();
    client.ask(
        &format!("cram:{}\n", cram_digest(secret, challenge)),
        "data:success\n@bob@",
    );
}

/// Polls until nothing accepts on `addr` (the listener is closed asynchronously).
fn refused_within(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn atsigns_provisioned_and_removed_while_serving_are_served_and_stopped_at_once(backend: Backend) {
    let node = LiveNode::start(backend);
    assert_eq!(node.admin(&["list"]), "");

    let (host, secret) = provisioned(&node.admin(&["provision", "@bob"]), "@bob");
    assert!(host.ends_with(".atsign.test"), "{host}");
    assert_eq!(node.admin(&["list"]), format!("@bob teapot {host}:6464\n"));
    // Served at once, by its SNI name and on its own port.
    let mut bob = node.by_sni(&host);
    cram_as_bob(&mut bob, &secret);
    bob.ask("update:public:x@bob 1\n", "data:0\n@bob@");
    let mut own = Client::tls_named(node.own_port(), &node.ca(), "127.0.0.1");
    cram_as_bob(&mut own, &secret);
    own.ask("llookup:public:x@bob\n", "data:1\n@bob@");

    // Provisioning it twice is refused by the server, with the CLI's usual error.
    let config = node.dir.path().join("server.toml").display().to_string();
    let again = process::run(
        Path::new(env!("CARGO_BIN_EXE_at-server")),
        &["--config", &config, "provision", "@bob"],
        &[],
    );
    assert!(!again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stderr).trim_end(),
        "at-server: @bob is already provisioned on this node"
    );

    assert_eq!(node.admin(&["deprovision", "@bob"]), "deprovisioned @bob\n");
    assert_eq!(node.admin(&["list"]), "");
    assert!(
        refused_within(node.own_port(), Duration::from_secs(5)),
        "the deprovisioned atSign's port still accepts"
    );
    // Its SNI name is no longer served: closed without a prompt.
    let mut gone = node.by_sni(&host);
    gone.expect_closed(Duration::from_secs(5));
    // A connection left open gets errors, and writes nothing for the removed atSign.
    bob.send(b"update:public:y@bob 2\n");
    let reply = bob.read_until(b"@");
    assert!(reply.starts_with("error:"), "{reply}");

    // Provisioned again: a new secret, and none of the old data.
    let (host, secret) = provisioned(&node.admin(&["provision", "@bob"]), "@bob");
    let mut fresh = node.by_sni(&host);
    cram_as_bob(&mut fresh, &secret);
    fresh.ask(
        "llookup:public:x@bob\n",
        "error:AT0015-key not found : public:x@bob does not exist in keystore\n@bob@",
    );
}

fn without_a_server_even_after_kill_9_the_cli_opens_the_store_itself(backend: Backend) {
    let node = LiveNode::start(backend);
    let LiveNode {
        dir,
        running,
        backend: _backend,
        ..
    } = node;
    running.stop();
    let config = dir.path().join("server.toml").display().to_string();
    let binary = Path::new(env!("CARGO_BIN_EXE_at-server"));
    // Killed (-9): its socket file is left behind, stale; the CLI sees nobody answers on it.
    assert!(dir.path().join("server/admin.sock").exists());
    let out = process::run(binary, &["--config", &config, "provision", "@carol"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = process::run(binary, &["--config", &config, "list"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("@carol teapot "));
}

fn a_node_whose_admin_socket_cannot_be_bound_still_serves(backend: Backend) {
    // A Unix socket path is limited to 107 bytes: this data directory is too deep for one.
    let dir = TempDir::new("server-admin-deep");
    let deep = dir.path().join("d".repeat(120));
    let own_port = free_port();
    let settings = format!(
        "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{1}/directory\"\n\
         public_host = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\n\
         port_range_start = {own_port}\nport_range_len = 1\n",
        deep.display(),
        dir.path().display()
    );
    let config_file = write_config(dir.path(), &settings, &backend);
    let binary = Path::new(env!("CARGO_BIN_EXE_at-server"));
    let out = process::run(
        binary,
        &["--config", &config_file, "provision", "@bob"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let _running = Running::start(
        binary,
        &["--config", &config_file, "serve"],
        &[("AT_SERVER_LOG", "error")],
        false,
    );
    let ca = deep.join("server/tls/ca.pem");
    let mut bob = Client::tls_named(
        SocketAddr::from(([127, 0, 0, 1], own_port)),
        &ca,
        "127.0.0.1",
    );
    bob.expect(b"@");
    bob.ask("noop:0\n", "data:ok\n@");
    let out = process::run(binary, &["--config", &config_file, "list"], &[]);
    match backend {
        // Without the socket, admin commands meet the embedded store in use, and say so.
        Backend::Embedded => {
            assert!(!out.status.success());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("in use by another process"), "{stderr}");
        }
        // Redis is shared: the CLI opens it beside the server, as another node would.
        Backend::Redis(_) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("@bob teapot 127.0.0.1:{own_port}\n")
            );
        }
    }
}

both_backends! {
    atsigns_provisioned_and_removed_while_serving_are_served_and_stopped_at_once,
    without_a_server_even_after_kill_9_the_cli_opens_the_store_itself,
    a_node_whose_admin_socket_cannot_be_bound_still_serves,
}
