//! An atServer on Redis while Redis crashes and comes back, under a steady stream of writes:
//! Redis (with `appendfsync always`) is SIGKILLed mid-load and restarted.
//!
//! - every write the server acknowledged (`data:<commitId>`) is there afterwards, with its value;
//! - during the outage clients get `error:AT0002-…` (the reference then closes the
//!   connection), never a hang or anything else;
//! - the node recovers by itself: once Redis is back, new connections authenticate and write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::process::{run, workspace_binary, Running};
use at_tests::redis::RedisServer;
use at_tests::TempDir;

/// Longest any single reply may take, outage or not: past it the server hung.
const REPLY_BOUND: Duration = Duration::from_secs(15);
/// Longest the node may take to serve again once Redis is back.
const RECOVERY: Duration = Duration::from_secs(20);

/// What the writer saw.
#[derive(Default)]
struct Seen {
    /// (key, value) of every acknowledged write.
    acked: Vec<(String, String)>,
    /// Replies that were AT0002.
    datastore_errors: usize,
}

/// One owner connection, or why not (refused, closed, AT0002 while authenticating).
fn connect(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    secret: &str,
) -> Result<Client, String> {
    let mut client = Client::try_tls_named(addr, ca, "127.0.0.1")?;
    client.try_expect(b"@", REPLY_BOUND)?;
    client.send(b"from:@alice\n");
    let reply = client.try_read_until(b"@", REPLY_BOUND)?;
    let challenge = reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix("\n@"))
        .ok_or(reply.clone())?;
    let hex = at_tests::client::cram_digest(secret, challenge);
    client.send(format!("cram:{hex}\n").as_bytes());
    let reply = client.try_read_until(b"@", REPLY_BOUND)?;
    match reply.as_str() {
        "data:success\n@alice@" => Ok(client),
        other => Err(other.to_string()),
    }
}

#[test]
fn acknowledged_writes_survive_a_redis_crash_and_the_node_recovers_by_itself() {
    let mut redis = RedisServer::start_durable();
    let dir = TempDir::new("redis-faults");
    let port = at_tests::free_port();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\n\
             public_host = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\n\
             port_range_start = {port}\nport_range_len = 1\n\
             [store]\nbackend = \"redis\"\nredis_url = \"{1}\"\n",
            dir.path().display(),
            redis.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let out = run(
        &workspace_binary("at-server"),
        &["--config", &config, "provision", "@alice"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let secret = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("cram secret: "))
        .expect("cram secret")
        .to_string();
    let _server = Running::start(
        &workspace_binary("at-server"),
        &["--config", &config, "serve"],
        &[("AT_SERVER_LOG", "error")],
        false,
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let ca = dir.path().join("server/tls/ca.pem");

    // The writer: one write at a time, reconnecting whenever the server closes on AT0002.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, ca, secret) = (Arc::clone(&stop), ca.clone(), secret.clone());
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut client: Option<Client> = None;
            // Bounded: at most this many writes whatever the timing.
            for i in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Some(open) = client.as_mut() else {
                    match connect(addr, &ca, &secret) {
                        Ok(c) => client = Some(c),
                        Err(e) => {
                            if e.starts_with("error:AT0002") {
                                seen.datastore_errors += 1;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    continue;
                };
                let (key, value) = (format!("k{i}@alice"), format!("v{i}"));
                open.send(format!("update:{key} {value}\n").as_bytes());
                let reply = open
                    .try_read_until(b"@alice@", REPLY_BOUND)
                    .unwrap_or_else(|e| panic!("update {key}: no reply in {REPLY_BOUND:?}: {e}"));
                if reply.starts_with("data:") {
                    seen.acked.push((key, value));
                } else if reply.starts_with("error:AT0002-") {
                    seen.datastore_errors += 1;
                    client = None;
                } else {
                    panic!("update {key}: {reply:?}");
                }
            }
            seen
        })
    };

    std::thread::sleep(Duration::from_millis(1500));
    redis.kill();
    // Longer than the node's Redis connect and response timeouts, so requests fail rather
    // than wait it out.
    std::thread::sleep(Duration::from_millis(6000));
    redis.restart();
    // Writes go on until the node has recovered and acknowledged more.
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::SeqCst);
    let seen = writer.join().expect("writer");
    eprintln!(
        "{} writes acknowledged, {} AT0002 during the outage",
        seen.acked.len(),
        seen.datastore_errors
    );
    assert!(
        seen.datastore_errors > 0,
        "the outage was seen as AT0002 ({} writes acknowledged)",
        seen.acked.len()
    );

    // Recovered by itself: a new connection authenticates, reads everything and writes.
    let deadline = Instant::now() + RECOVERY;
    let mut client = loop {
        match connect(addr, &ca, &secret) {
            Ok(client) => break client,
            Err(e) => {
                assert!(Instant::now() < deadline, "not recovered: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(
        seen.acked.len() > 10,
        "{} writes acknowledged",
        seen.acked.len()
    );
    for (key, value) in &seen.acked {
        client.ask(
            &format!("llookup:{key}\n"),
            &format!("data:{value}\n@alice@"),
        );
    }
    client.send(b"update:after@alice ok\n");
    let reply = client.read_until(b"@alice@");
    assert!(reply.starts_with("data:"), "{reply}");
}
