//! The HTTP probes and metrics (`metrics_listen`) of both binaries, on Redis: `/healthz` answers
//! while the process runs; `/readyz` follows the store (503 once Redis is gone, 200 again once
//! it is back); the atServer's `/metrics` moves by exactly what a scripted workload implies;
//! `log.format = "json"` makes every log line one JSON object, and no line of a node's log,
//! through logins, a failed proof, writes, a Redis outage and a stop, shows a CRAM secret, a
//! stored value or the Redis URL (README: "Values, CRAM secrets and Redis URLs are never
//! logged").

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
        "metrics_listen = \"127.0.0.1:0\"\nreadiness_grace_millis = 1500",
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

    // Redis gone: still ready for the grace period (a blip must not take every node out),
    // then not ready; alive throughout.
    redis.kill();
    let blip = request(node.metrics(), "GET", "/readyz").unwrap();
    let first_failure = Instant::now();
    assert_eq!(blip.status, 200, "{}", blip.text());
    assert!(
        blip.text().starts_with("ready: store failing for "),
        "{}",
        blip.text()
    );
    let why = until_status(&node, "/readyz", 503);
    assert!(why.starts_with("not ready: store: "), "{why}");
    assert!(
        first_failure.elapsed() >= Duration::from_millis(1400),
        "503 after {:?}, inside the 1.5 s grace",
        first_failure.elapsed()
    );
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
    let directory = at_tests::servers::directory_with_env(
        dir.path(),
        Some(&redis.url()),
        true,
        &[("AT_DIRECTORY__READINESS_GRACE_MILLIS", "1000")],
    );
    let http = directory.metrics.expect("metrics address");
    assert_eq!(request(http, "GET", "/healthz").unwrap().text(), "ok\n");
    assert_eq!(until_status_at(http, "/readyz", 200), "ready\n");
    redis.kill();
    let blip = request(http, "GET", "/readyz").unwrap();
    assert_eq!(blip.status, 200, "{}", blip.text());
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

/// `at-server <args>` with `config`, its standard error collected line by line.
struct Logged {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Logged {
    fn start(config: &std::path::Path, args: &[&str]) -> Logged {
        use std::io::BufRead;
        let mut child =
            std::process::Command::new(at_tests::process::workspace_binary("at-server"))
                .arg("--config")
                .arg(config)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .env_remove("AT_SERVER_LOG")
                .spawn()
                .expect("at-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                into.lock().unwrap().push(line);
            }
        });
        Logged {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits (at most 30 s) for it to exit, then returns everything it logged.
    fn finish(mut self) -> (std::process::ExitStatus, String, Vec<String>) {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "at-server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        self.reader.take().unwrap().join().expect("log reader");
        let lines = self.lines.lock().unwrap().clone();
        (status, stdout, lines)
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to @alice's own port, past the `@` prompt, retried (bounded) until served.
fn alice_connection(port: u16, ca: &std::path::Path) -> at_tests::client::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !listening || !ca.exists() {
            // Not serving yet (it makes its CA on its first start).
            assert!(Instant::now() < deadline, "@alice's port {port} not served");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let attempt =
            at_tests::client::Client::try_tls_named(([127, 0, 0, 1], port).into(), ca, "127.0.0.1")
                .and_then(|mut client| {
                    client.try_expect(b"@", Duration::from_secs(5))?;
                    Ok(client)
                });
        match attempt {
            Ok(client) => return client,
            Err(e) => assert!(Instant::now() < deadline, "@alice not served: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn logs_are_json_lines_that_never_show_secrets_values_or_the_redis_url() {
    const PASSWORD: &str = "redis-pw-0d6f2c";
    const VALUE: &str = "stored-value-9b1e44";
    let dir = TempDir::new("json-logs");
    let mut redis = RedisServer::start_durable_with_password(PASSWORD);
    let port = at_tests::free_port();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndirectory_data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\
             public_host = \"127.0.0.1\"\nport_range_start = {port}\nport_range_len = 1\n\
             [log]\nformat = \"json\"\nlevel = \"info,at_server=debug\"\n\
             [store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            dir.path().join("server").display().to_string(),
            dir.path().join("directory").display().to_string(),
            redis.url(),
        ),
    )
    .unwrap();

    let (status, printed, mut logged) = Logged::start(&config, &["provision", "@alice"]).finish();
    assert!(status.success(), "provision: {logged:?}");
    let (_, secret) = at_tests::servers::provisioned(&printed, "@alice");

    let node = Logged::start(&config, &["serve"]);
    let ca = dir.path().join("server/tls/ca.pem");
    let mut alice = alice_connection(port, &ca);
    alice.cram_in("@alice", &secret);
    // A failed proof, a write, reads.
    let mut wrong = alice_connection(port, &ca);
    wrong.send(b"from:@alice\n");
    wrong.read_until(b"\n@");
    let bad = at_tests::client::cram_digest("not-the-secret", "x");
    let refused = wrong.reply_to(&format!("cram:{bad}"), "\n@");
    assert!(refused.starts_with("error:AT0401-"), "{refused}");
    let reply = alice.reply_to(&format!("update:public:k@alice {VALUE}"), "\n@alice@");
    assert!(reply.starts_with("data:"), "{reply}");
    assert_eq!(
        alice.reply_to("llookup:public:k@alice", "\n@alice@"),
        format!("data:{VALUE}")
    );
    // Redis goes away: the store failure is logged (and answered AT0002), then comes back.
    redis.kill();
    alice.send(format!("update:public:k2@alice {VALUE}\n").as_bytes());
    let failed = alice
        .try_read_until(b"@alice@", Duration::from_secs(20))
        .expect("an answer while Redis is down");
    assert!(failed.starts_with("error:AT0002-"), "{failed}");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = alice_connection(port, &ca);
        again.send(b"from:@alice\n");
        if let Ok(reply) = again.try_read_until(b"\n@", Duration::from_secs(5)) {
            if let Some(challenge) = reply
                .strip_prefix("data:")
                .and_then(|r| r.strip_suffix("\n@"))
            {
                let digest = at_tests::client::cram_digest(&secret, challenge);
                again.send(format!("cram:{digest}\n").as_bytes());
                let answer = again.try_read_until(b"@", Duration::from_secs(5));
                if answer.as_deref() == Ok("data:success\n@alice@") {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "not recovered from the Redis outage"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    at_tests::process::run(
        std::path::Path::new("kill"),
        &["-TERM", &node.child.id().to_string()],
        &[],
    );
    let (status, _, served) = node.finish();
    assert!(status.success(), "{status:?}");
    logged.extend(served);

    let levels: Vec<String> = logged
        .iter()
        .map(|line| {
            let object: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
            for field in ["timestamp", "level", "target"] {
                assert!(object.get(field).is_some(), "no {field}: {line}");
            }
            object["level"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert!(
        levels.iter().any(|l| l == "ERROR") && levels.iter().any(|l| l == "DEBUG"),
        "the outage (ERROR) and the commands (DEBUG) were logged: {levels:?}"
    );
    let url = redis.url();
    let plain_url = url.replace(&format!(":{PASSWORD}@"), "");
    for (what, needle) in [
        ("the CRAM secret", secret.as_str()),
        ("a stored value", VALUE),
        ("the Redis password", PASSWORD),
        ("the Redis URL", url.as_str()),
        ("the Redis URL without its password", plain_url.as_str()),
    ] {
        if let Some(line) = logged.iter().find(|line| line.contains(needle)) {
            panic!("{what} is logged: {line}");
        }
    }
    eprintln!("{} log lines checked", logged.len());
}

#[test]
fn logs_are_text_unless_json_is_configured() {
    let dir = TempDir::new("text-logs");
    let json = first_log_line(dir.path(), "[log]\nformat = \"json\"\nlevel = \"info\"");
    let object: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(object["level"], "INFO", "{json}");
    let text = first_log_line(dir.path(), "[log]\nlevel = \"info\"");
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err() && text.contains("INFO"),
        "{text}"
    );
}
