//! `at-server dev`, the README's run command: a directory and an atServer in one process, a demo
//! atSign provisioned, reachable through the directory over TLS.
//!
//! Embedded store only, by design: `dev` is the no-Redis mode (it takes no store settings).

mod support;

use std::path::Path;

use at_tests::client::Client;
use at_tests::process::Running;
use at_tests::TempDir;
use support::free_port;

/// Waits (bounded) until something accepts connections on the loopback `port`.
fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `at-server dev` on free ports, in a fresh data dir, with all three listening.
struct Dev {
    _dir: TempDir,
    data: std::path::PathBuf,
    directory_port: u16,
    first_port: u16,
    http_port: u16,
    running: Running,
}

impl Dev {
    fn start(label: &str) -> Dev {
        Dev::start_with(label, &[], &[])
    }

    /// [`Dev::start`] with more arguments to `dev` and environment variables `envs`.
    fn start_with(label: &str, more: &[&str], envs: &[(&str, &str)]) -> Dev {
        let dir = TempDir::new(label);
        let data = dir.path().join("dev");
        // Room for two atSigns' own ports from first_port.
        let (directory_port, http_port) = (free_port(), free_port());
        let first_port = at_tests::free_ports(2);
        let (data_arg, directory_arg) = (data.display().to_string(), directory_port.to_string());
        let (first_arg, http_arg) = (first_port.to_string(), http_port.to_string());
        let mut args = vec![
            "--data-dir",
            &data_arg,
            "dev",
            "--directory-port",
            &directory_arg,
            "--first-port",
            &first_arg,
            "--http-port",
            &http_arg,
        ];
        args.extend_from_slice(more);
        let running = Running::start(
            Path::new(env!("CARGO_BIN_EXE_at-server")),
            &args,
            &[&[("AT_SERVER_LOG", "warn")], envs].concat(),
            false,
        );
        // The servers print `listening on` in either order: wait for each port given.
        for port in [directory_port, first_port, http_port] {
            wait_for_port(port);
        }
        Dev {
            _dir: dir,
            data,
            directory_port,
            first_port,
            http_port,
            running,
        }
    }

    /// The CRAM secret dev printed for `atsign`.
    fn cram_secret(&self, atsign: &str) -> &str {
        self.running
            .printed
            .iter()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(&format!("{atsign} cram secret (until onboarded): "))
            })
            .unwrap_or_else(|| panic!("no cram secret in {:?}", self.running.printed))
    }

    /// An owner connection of the demo atSign `atsign` (on its own port, the n-th of the
    /// range), logged in with the CRAM secret dev printed for it.
    fn owner(&self, atsign: &str, n: u16) -> Client {
        let secret = self.cram_secret(atsign);
        let ca = self.data.join("tls/ca.pem");
        let mut owner = Client::tls(([127, 0, 0, 1], self.first_port + n).into(), &ca);
        owner.expect(b"@");
        owner.cram_in(atsign, secret);
        owner
    }
}

#[test]
fn dev_serves_a_demo_atsign_found_through_its_directory() {
    let dev = Dev::start("server-dev");
    let (directory_port, first_port) = (dev.directory_port, dev.first_port);
    let ca = dev.data.join("tls/ca.pem");
    let mut directory = Client::tls(([127, 0, 0, 1], directory_port).into(), &ca);
    directory.expect(b"@");
    directory.ask("alice\n", &format!("127.0.0.1:{first_port}\r\n@"));

    // The same CA serves the atServer, at the address the directory gave.
    let mut server = Client::tls(([127, 0, 0, 1], first_port).into(), &ca);
    server.expect(b"@");
    server.send(b"from:@alice\n");
    let reply = server.read_until(b"\n@");
    assert!(
        reply.starts_with("data:_") && reply.contains("@alice:"),
        "{reply}"
    );

    // A second atSign, added while dev runs with the command it printed: served at once on
    // the next port, and in the directory.
    let hint = dev
        .running
        .printed
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix("another atSign, while this runs: ")
        })
        .unwrap_or_else(|| panic!("no hint in {:?}", dev.running.printed));
    let data = dev.data.display().to_string();
    assert!(
        hint.ends_with(&format!("--data-dir {data} provision @bob")),
        "{hint}"
    );
    // Only the data directory: dev left its settings there.
    let out = at_tests::process::run(
        Path::new(env!("CARGO_BIN_EXE_at-server")),
        &["--data-dir", &data, "provision", "@bob"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let bob_port = first_port + 1;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("provisioned @bob at 127.0.0.1:{bob_port}\n")),
        "{out:?}"
    );
    directory.ask("bob\n", &format!("127.0.0.1:{bob_port}\r\n@"));
    let mut bob = Client::tls(([127, 0, 0, 1], bob_port).into(), &ca);
    bob.expect(b"@");
}

#[test]
fn dev_serves_the_status_api_for_its_demo_atsign() {
    let dev = Dev::start("server-dev-status");
    let first_port = dev.first_port;
    // Provisioned, serving, not onboarded: the README's curl example answers 418.
    let response = at_tests::http::request(
        ([127, 0, 0, 1], dev.http_port).into(),
        "GET",
        "/api/status/@alice",
    )
    .expect("status API answers");
    assert_eq!(response.status, 418, "{}", response.text());
    assert_eq!(
        response.text(),
        format!(
            "{{\"atSign\":\"@alice\",\"serverLocation\":\"127.0.0.1:{first_port}\",\"rootStatus\":\"found\",\"serverStatus\":\"teapot\",\"status\":\"teapot\",\"httpStatus\":418}}"
        )
    );
}

/// The dev node hosts every `--atsign` given, and they reach each other; it trusts its own CA
/// for its directory, so a lookup of an atSign nobody registered gets the reference's words,
/// not a TLS error with internal addresses; its shared listener is where `AT_SERVER__LISTEN`
/// says.
#[test]
fn dev_hosts_several_atsigns_finds_others_through_its_own_directory_and_listens_where_told() {
    let shared_port = free_port();
    let listen = format!("127.0.0.1:{shared_port}");
    let dev = Dev::start_with(
        "server-dev-peers",
        &["--atsign", "@alice", "--atsign", "@bob"],
        &[("AT_SERVER__LISTEN", &listen)],
    );
    wait_for_port(shared_port);
    let mut alice = dev.owner("@alice", 0);
    let mut bob = dev.owner("@bob", 1);
    alice.ask("update:@bob:k.dev@alice hi\n", "data:0\n@alice@");
    bob.ask("lookup:k.dev@alice\n", "data:hi\n@bob@");
    let unknown = "error:AT0007-Secondary server not found : \
                   Unable to find secondary address for atSign:nobody\n@alice@";
    for line in [
        "lookup:kk.x@nobody\n",
        "plookup:kk@nobody\n",
        "scan:@nobody\n",
    ] {
        alice.ask(line, unknown);
    }
}

/// The README's first run: dev with two atSigns, and the Python SDK example
/// (`docs/examples/share.py`) onboarding both with the secrets dev printed, @alice sharing a
/// value with @bob and @bob reading it from his own atServer. Run twice, as a newcomer might:
/// the second run finds both onboarded and shares again.
#[test]
fn the_readme_first_run_onboards_two_atsigns_that_share_a_value() {
    let Some(python) = at_tests::python_sdk() else {
        return;
    };
    let dev = Dev::start_with(
        "server-dev-first-run",
        &["--atsign", "@alice", "--atsign", "@bob"],
        &[],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/share.py");
    let home = dev.data.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ca = dev.data.join("tls/ca.pem");
    let root = std::path::PathBuf::from(format!("127.0.0.1:{}", dev.directory_port));
    let envs = [
        ("HOME", home.as_path()),
        ("SSL_CERT_FILE", ca.as_path()),
        ("AT_ROOT", root.as_path()),
    ];
    let args = [
        "@alice",
        dev.cram_secret("@alice"),
        "@bob",
        dev.cram_secret("@bob"),
    ];
    let want = "@alice onboarded\n@bob onboarded\n\
                @alice shared @bob:phone.demo@alice with @bob\n@bob reads +1 555 0100\n";
    for run in ["first", "second"] {
        let (ok, stdout, stderr) = at_tests::run_python(
            &python,
            &script,
            &args,
            &envs,
            std::time::Duration::from_secs(120),
        );
        assert!(ok, "{run} run: {stdout}\n{stderr}");
        assert_eq!(stdout, want, "{run} run; stderr:\n{stderr}");
    }
}
