//! The HTTP probes and metrics (`metrics_listen`) of both binaries, on Redis: `/healthz` answers
//! while the process runs; `/readyz` follows the store (503 once Redis is gone, 200 again once
//! it is back); the atServer's `/metrics` moves by exactly what a scripted workload implies;
//! `log.format = "json"` makes every log line one JSON object.

mod support;

use std::collections::HashMap;
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

/// Every sample of a Prometheus text body: `name{labels}` → value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// How much `series` grew from `before` to `after` (absent counts as 0).
fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
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

    // A scripted workload on one owner connection; the counters move by exactly as much.
    let mut alice = node.owner("@alice", &host, &secret);
    let before = samples(&until_status(&node, "/metrics", 200));
    assert_eq!(before["atserver_connections{state=\"owner\"}"], 1.0);
    let mut sent = 0;
    let mut send = |line: &str, reply_prefix: &str| {
        alice.send(format!("{line}\n").as_bytes());
        sent += line.len() + 1;
        let reply = alice.read_until(b"\n@alice@");
        assert!(reply.starts_with(reply_prefix), "{line}: {reply}");
    };
    for i in 0..3 {
        send(&format!("update:public:k{i}@alice v"), "data:");
    }
    send("llookup:public:k0@alice", "data:v");
    send("llookup:public:k1@alice", "data:v");
    send("llookup:public:nope@alice", "error:AT0015-");
    send("bogus", "error:AT0003-");
    let after = samples(&until_status(&node, "/metrics", 200));
    let commands = |verb: &str, result: &str| {
        format!("atserver_commands_total{{result=\"{result}\",verb=\"{verb}\"}}")
    };
    assert_eq!(grew(&before, &after, &commands("update", "ok")), 3.0);
    assert_eq!(grew(&before, &after, &commands("llookup", "ok")), 2.0);
    assert_eq!(grew(&before, &after, &commands("llookup", "AT0015")), 1.0);
    assert_eq!(grew(&before, &after, &commands("invalid", "AT0003")), 1.0);
    let updates = "atserver_command_duration_seconds_count{verb=\"update\"}";
    assert_eq!(grew(&before, &after, updates), 3.0);
    let bytes_in = "atserver_bytes_total{direction=\"in\"}";
    assert_eq!(grew(&before, &after, bytes_in), sent as f64);
    let writes = "atserver_store_operations_total{backend=\"redis\",kind=\"write\"}";
    assert!(grew(&before, &after, writes) >= 3.0);
    assert_eq!(after["atserver_keystores"], 1.0);
    assert_eq!(after["atserver_atsigns"], 1.0);
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(5);
    let owners = "atserver_connections{state=\"owner\"}";
    while samples(&until_status(&node, "/metrics", 200))[owners] != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the closed connection is still counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

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
    let directory = at_tests::servers::directory(dir.path(), Some(&redis.url()), true);
    let http = directory.metrics.expect("metrics address");
    assert_eq!(request(http, "GET", "/healthz").unwrap().text(), "ok\n");
    assert_eq!(until_status_at(http, "/readyz", 200), "ready\n");
    redis.kill();
    assert!(until_status_at(http, "/readyz", 503).starts_with("not ready: store: "));
    assert_eq!(request(http, "GET", "/healthz").unwrap().status, 200);
    redis.restart();
    assert_eq!(until_status_at(http, "/readyz", 200), "ready\n");
}

/// The first line the atServer writes to stderr when started with `extra` configuration.
fn first_log_line(dir: &std::path::Path, extra: &str) -> String {
    use std::io::BufRead;
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndirectory_data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\
             public_host = \"127.0.0.1\"\nport_range_start = {}\nport_range_len = 1\n{extra}\n",
            dir.join("server").display().to_string(),
            dir.join("directory").display().to_string(),
            at_tests::free_port(),
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(at_tests::process::workspace_binary("at-server"))
        .args(["--config", &config.display().to_string(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .env_remove("AT_SERVER_LOG")
        .spawn()
        .expect("at-server");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a log line");
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn logs_are_one_json_object_per_line_when_configured() {
    let dir = TempDir::new("json-logs");
    let json = first_log_line(dir.path(), "[log]\nformat = \"json\"\nlevel = \"info\"");
    assert!(
        json.starts_with('{') && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert!(json.contains("\"level\":\"INFO\""), "{json}");
    let text = first_log_line(dir.path(), "[log]\nlevel = \"info\"");
    assert!(!text.starts_with('{') && text.contains("INFO"), "{text}");
}
