//! The HTTP probes and metrics (`metrics_listen`) of both binaries, on Redis: `/healthz` answers
//! while the process runs; `/readyz` follows the store (503 once Redis is gone, 200 again once
//! it is back); the atServer's `/metrics` counts the open protocol connections.

mod support;

use std::time::{Duration, Instant};

use at_tests::http::request;
use at_tests::redis::RedisServer;
use at_tests::TempDir;
use support::Node;

/// Polls `path` on `addr` until it answers `status`, for at most 10 s; the last body.
fn until_status_at(addr: std::net::SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = request(addr, "GET", path).expect("HTTP");
        if response.status == status {
            return response.text();
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {} ({}) after 10 s",
            response.status,
            response.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn until_status(node: &Node, path: &str, status: u16) -> String {
    until_status_at(node.metrics(), path, status)
}

/// The value of the unlabelled metric `name` in a Prometheus text body.
fn metric(body: &str, name: &str) -> i64 {
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{body}"))
}

#[test]
fn probes_follow_the_store_and_metrics_count_connections() {
    let dir = TempDir::new("probes");
    let mut redis = RedisServer::start();
    let node = Node::start_with(
        dir.path(),
        0,
        Some(&redis),
        "metrics_listen = \"127.0.0.1:0\"",
    );
    let (host, secret) = node.provision("@alice");

    let health = request(node.metrics(), "GET", "/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(until_status(&node, "/readyz", 200), "ready\n");

    let before = metric(
        &until_status(&node, "/metrics", 200),
        "atserver_connections",
    );
    let alice = node.owner("@alice", &host, &secret);
    let during = metric(
        &until_status(&node, "/metrics", 200),
        "atserver_connections",
    );
    assert_eq!(during, before + 1, "one more connection open");
    let body = until_status(&node, "/metrics", 200);
    assert_eq!(metric(&body, "atserver_keystores"), 1, "{body}");
    drop(alice);

    // Redis gone: not ready (within the probe's 1 s bound), still alive.
    redis.kill();
    let why = until_status(&node, "/readyz", 503);
    assert!(why.starts_with("not ready: store: "), "{why}");
    assert_eq!(
        request(node.metrics(), "GET", "/healthz").unwrap().status,
        200
    );
    let started = Instant::now();
    let _ = request(node.metrics(), "GET", "/readyz").unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readyz waited {:?}",
        started.elapsed()
    );

    // Back: ready again.
    redis.restart();
    assert_eq!(until_status(&node, "/readyz", 200), "ready\n");
}

#[test]
fn the_directory_is_ready_while_its_store_answers() {
    let dir = TempDir::new("directory-probes");
    let mut redis = RedisServer::start();
    let directory = at_tests::process::Running::start(
        &at_tests::process::workspace_binary("at-directory"),
        &[
            "--data-dir",
            &dir.path().display().to_string(),
            "--redis",
            &redis.url(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[("AT_DIRECTORY_LOG", "error")],
        true,
    );
    let http = directory.metrics.expect("metrics address");
    assert_eq!(request(http, "GET", "/healthz").unwrap().text(), "ok\n");
    assert_eq!(until_status_at(http, "/readyz", 200), "ready\n");
    redis.kill();
    assert!(until_status_at(http, "/readyz", 503).starts_with("not ready: store: "));
    assert_eq!(request(http, "GET", "/healthz").unwrap().status, 200);
    redis.restart();
    assert_eq!(until_status_at(http, "/readyz", 200), "ready\n");
}
