//! An atServer on Redis while Redis crashes and comes back, under a steady stream of writes:
//! Redis (with `appendfsync always`) is SIGKILLed mid-load and restarted.
//!
//! - every write the server acknowledged (`data:<commitId>`) is there afterwards, with its value;
//! - during the outage clients get `error:AT0002-…` (the reference then closes the
//!   connection), never a hang or anything else;
//! - the node recovers by itself: once Redis is back, new connections authenticate and write;
//! - while Redis stays down, every command (a write, a read) fails "within about a second
//!   with `error:AT0002-…` (which closes the connection)" (README, nodes on Redis).

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

/// A node on `redis` hosting @alice on a port of its own, with its files under `dir`,
/// serving: the process, @alice's address, the CA to trust and @alice's CRAM secret.
fn start_node(
    redis: &RedisServer,
    dir: &TempDir,
) -> (Running, std::net::SocketAddr, std::path::PathBuf, String) {
    let (config, addr, secret) = provision_node(redis, dir);
    let server = serve(&config);
    (server, addr, dir.path().join("server/tls/ca.pem"), secret)
}

/// `at-server serve` with `config`, once it listens.
fn serve(config: &str) -> Running {
    Running::start(
        &workspace_binary("at-server"),
        &["--config", config, "serve"],
        &[("AT_SERVER_LOG", "error")],
        false,
    )
}

/// The configuration of a node on `redis` with its files under `dir`, and @alice provisioned
/// there: the configuration file, @alice's address and her CRAM secret.
fn provision_node(redis: &RedisServer, dir: &TempDir) -> (String, std::net::SocketAddr, String) {
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
    (config, ([127, 0, 0, 1], port).into(), secret)
}

/// How long Redis stays away while a node or a directory starts.
const AWAY: Duration = Duration::from_secs(3);

/// A node started before its Redis (a fresh Kubernetes install, Redis still waiting for its
/// volume) waits for it instead of exiting, then serves; so does the directory.
#[test]
fn a_node_and_a_directory_started_before_their_redis_wait_for_it() {
    let dir = TempDir::new("redis-late");
    let mut redis = RedisServer::start_durable();
    let (config, addr, secret) = provision_node(&redis, &dir);
    redis.kill();
    let redis_url = redis.url();
    let started = Instant::now();
    let back = std::thread::spawn(move || {
        std::thread::sleep(AWAY);
        redis.restart();
        redis
    });
    // `Running::start` returns at the `listening on` line, printed once the store is open.
    let server = serve(&config);
    assert!(
        started.elapsed() >= AWAY,
        "it listened before Redis was back"
    );
    let redis = back.join().expect("redis restarted");
    let ca = dir.path().join("server/tls/ca.pem");
    let mut client = connect(addr, &ca, &secret).expect("serves once Redis is back");
    client.send(b"update:late@alice ok\n");
    assert!(client.read_until(b"@alice@").starts_with("data:"));
    drop(client);
    server.stop();

    let mut redis = redis;
    redis.kill();
    let started = Instant::now();
    let back = std::thread::spawn(move || {
        std::thread::sleep(AWAY);
        redis.restart();
        redis
    });
    let directory_dir = TempDir::new("redis-late-directory");
    let directory = at_tests::servers::directory(directory_dir.path(), Some(&redis_url), false);
    assert!(
        started.elapsed() >= AWAY,
        "the directory listened before Redis was back"
    );
    let _redis = back.join().expect("redis restarted");
    directory.stop();
}

#[test]
fn acknowledged_writes_survive_a_redis_crash_and_the_node_recovers_by_itself() {
    let mut redis = RedisServer::start_durable();
    let dir = TempDir::new("redis-faults");
    let (_server, addr, ca, secret) = start_node(&redis, &dir);

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

/// "About a second", with room for a loaded machine: well under the 5 s Redis response
/// timeout a command would otherwise wait out, and the 15 s a hung one would take here.
const ABOUT_A_SECOND: Duration = Duration::from_secs(3);

#[test]
fn while_redis_is_down_each_command_fails_with_at0002_within_about_a_second_and_closes() {
    let mut redis = RedisServer::start_durable();
    let dir = TempDir::new("redis-down");
    let (_server, addr, ca, secret) = start_node(&redis, &dir);
    // Owner connections made while Redis is up (logging in needs it).
    let mut clients: Vec<Client> = (0..4)
        .map(|_| connect(addr, &ca, &secret).expect("an owner connection"))
        .collect();
    clients[0].send(b"update:key@alice before\n");
    assert!(clients[0].read_until(b"@alice@").starts_with("data:"));

    redis.kill();
    // One command per connection, one after another, while Redis stays down: the first
    // finds the connection broken, the later ones wait for reconnection attempts.
    let commands = [
        "update:key@alice during",
        "llookup:key@alice",
        "update:other@alice x",
        "scan",
    ];
    for (client, command) in clients.iter_mut().zip(commands) {
        let start = Instant::now();
        client.send(format!("{command}\n").as_bytes());
        let reply = client
            .try_read_until(b"@alice@", REPLY_BOUND)
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        let took = start.elapsed();
        eprintln!("{command} -> {took:?}");
        assert_eq!(
            reply, "error:AT0002-DataStore exception : Internal server error\n@alice@",
            "{command}"
        );
        client.expect_closed(Duration::from_secs(5));
        assert!(took < ABOUT_A_SECOND, "{command}: answered after {took:?}");
    }
}
