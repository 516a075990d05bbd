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
    _running: Running,
}

impl Dev {
    fn start(label: &str) -> Dev {
        let dir = TempDir::new(label);
        let data = dir.path().join("dev");
        let (directory_port, first_port, http_port) = (free_port(), free_port(), free_port());
        let running = Running::start(
            Path::new(env!("CARGO_BIN_EXE_at-server")),
            &[
                "--data-dir",
                &data.display().to_string(),
                "dev",
                "--directory-port",
                &directory_port.to_string(),
                "--first-port",
                &first_port.to_string(),
                "--http-port",
                &http_port.to_string(),
            ],
            &[("AT_SERVER_LOG", "warn")],
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
            _running: running,
        }
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
