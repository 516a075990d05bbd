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
use at_tests::redis_cluster::RedisCluster;
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
    /// When each of `acked` was acknowledged.
    acked_at: Vec<Instant>,
    /// Replies that were AT0002.
    datastore_errors: usize,
    /// When each failed write was sent, and how long its AT0002 took.
    failed: Vec<(Instant, Duration)>,
    /// The longest any reply took.
    slowest: Duration,
    /// Why connecting failed otherwise, and how often.
    refused: std::collections::BTreeMap<String, usize>,
}

/// Between the test and [`write_steadily`]'s thread.
#[derive(Default)]
struct Progress {
    /// Set by the test: the writer stops.
    stop: AtomicBool,
    /// Writes acknowledged so far.
    acked: std::sync::atomic::AtomicUsize,
}

impl Progress {
    /// Waits until `more` writes are acknowledged after this call (panics past [`RECOVERY`]).
    fn wait_for_acks(&self, more: usize) {
        let target = self.acked.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + RECOVERY;
        while self.acked.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged in {RECOVERY:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The writer: one `update` of @alice's at a time (values `size` bytes long) until `stop`,
/// reconnecting whenever the server closes on AT0002; panics on any other reply, or none
/// within [`REPLY_BOUND`].
fn write_steadily(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    secret: &str,
    progress: &Arc<Progress>,
    size: usize,
) -> std::thread::JoinHandle<Seen> {
    let (progress, ca, secret) = (Arc::clone(progress), ca.to_path_buf(), secret.to_string());
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut client: Option<Client> = None;
        // Bounded: at most this many writes whatever the timing.
        for i in 0..50_000 {
            if progress.stop.load(Ordering::SeqCst) {
                break;
            }
            let Some(open) = client.as_mut() else {
                match connect(addr, &ca, &secret) {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        if e.starts_with("error:AT0002") {
                            seen.datastore_errors += 1;
                        } else {
                            *seen.refused.entry(e).or_default() += 1;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                continue;
            };
            let (key, value) = (format!("k{i}@alice"), format!("{i:0size$}"));
            open.send(format!("update:{key} {value}\n").as_bytes());
            let sent = Instant::now();
            let reply = open
                .try_read_until(b"@alice@", REPLY_BOUND)
                .unwrap_or_else(|e| panic!("update {key}: no reply in {REPLY_BOUND:?}: {e}"));
            seen.slowest = seen.slowest.max(sent.elapsed());
            if reply.starts_with("data:") {
                seen.acked.push((key, value));
                seen.acked_at.push(Instant::now());
                progress.acked.fetch_add(1, Ordering::SeqCst);
            } else if reply.starts_with("error:AT0002-") {
                seen.datastore_errors += 1;
                seen.failed.push((sent, sent.elapsed()));
                client = None;
            } else {
                panic!("update {key}: {reply:?}");
            }
        }
        seen
    })
}

/// Which of `acked` a new owner connection does not read back as written.
fn missing(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    secret: &str,
    acked: &[(String, String)],
) -> Vec<String> {
    let deadline = Instant::now() + RECOVERY;
    let mut client = loop {
        match connect(addr, ca, secret) {
            Ok(client) => break client,
            Err(e) => {
                assert!(Instant::now() < deadline, "not recovered: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // Asked 100 at a time (the server answers lines in order): thousands of keys, quickly.
    let mut gone = Vec::new();
    for batch in acked.chunks(100) {
        let asked: String = batch
            .iter()
            .map(|(key, _)| format!("llookup:{key}\n"))
            .collect();
        client.send(asked.as_bytes());
        // Replies may arrive several in one read: split at the prompts.
        let mut replies = String::new();
        while replies.matches("@alice@").count() < batch.len() {
            replies.push_str(&client.read_until(b"@alice@"));
        }
        for ((key, value), reply) in batch.iter().zip(replies.split_inclusive("@alice@")) {
            if reply != format!("data:{value}\n@alice@") {
                gone.push(key.clone());
            }
        }
    }
    gone
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
    let store = format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    provision_node_on(&store, dir)
}

/// [`provision_node`] on the Redis that `store` (a `[store]` section) names.
fn provision_node_on(store: &str, dir: &TempDir) -> (String, std::net::SocketAddr, String) {
    let port = at_tests::free_port();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\n\
             public_host = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\n\
             port_range_start = {port}\nport_range_len = 1\n{store}",
            dir.path().display(),
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

    let progress = Arc::new(Progress::default());
    let writer = write_steadily(addr, &ca, &secret, &progress, 10);
    std::thread::sleep(Duration::from_millis(1500));
    redis.kill();
    // Longer than the node's Redis connect and response timeouts, so requests fail rather
    // than wait it out.
    std::thread::sleep(Duration::from_millis(6000));
    redis.restart();
    // Writes go on until the node has recovered and acknowledged more.
    std::thread::sleep(Duration::from_millis(3000));
    progress.stop.store(true, Ordering::SeqCst);
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

    assert!(
        seen.acked.len() > 10,
        "{} writes acknowledged",
        seen.acked.len()
    );
    // Recovered by itself: a new connection authenticates, reads everything and writes.
    assert_eq!(
        missing(addr, &ca, &secret, &seen.acked),
        Vec::<String>::new()
    );
    let mut client = connect(addr, &ca, &secret).expect("serves");
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

/// What happened to a node's writes across a failover of the master of @alice's slot.
struct Failover {
    seen: Seen,
    /// The acknowledged writes a new connection does not read back.
    lost: Vec<String>,
    /// When the replica was stopped (its master's replication cut just after), and when
    /// the master was killed.
    paused_at: Instant,
    killed_at: Instant,
}

/// A node on a Redis Cluster (three masters, three replicas) with `redis_wait_replicas =
/// wait`, written to steadily, while the master of @alice's slot fails in the worst way: its
/// replica first falls behind (stopped, its replication link cut, so the master's later
/// writes reach no replica), then the master is `kill -9`ed, the replica resumes and is
/// promoted, and the old master is started again (it rejoins as the new master's replica).
fn failover_under_writes(wait: u32) -> Failover {
    failover_on(RedisCluster::start(), wait)
}

/// [`failover_under_writes`] on `cluster`.
fn failover_on(mut cluster: RedisCluster, wait: u32) -> Failover {
    let dir = TempDir::new("redis-failover");
    let store = format!(
        "{}redis_wait_replicas = {wait}\nredis_wait_timeout_ms = 300\n",
        cluster.store_section()
    );
    let (config, addr, secret) = provision_node_on(&store, &dir);
    let _server = serve(&config);
    let ca = dir.path().join("server/tls/ca.pem");
    let progress = Arc::new(Progress::default());
    let writer = write_steadily(addr, &ca, &secret, &progress, 10);

    std::thread::sleep(Duration::from_millis(1000));
    let slot = "{@alice}";
    let master = cluster.master_of(slot);
    let replica = cluster.replicas_of(master)[0];
    let paused_at = Instant::now();
    cluster.pause(replica);
    cluster.cut_replication(master);
    std::thread::sleep(Duration::from_millis(1000));
    cluster.kill(master);
    let killed_at = Instant::now();
    cluster.resume(replica);
    let promoted = cluster.wait_until_serving(slot, Duration::from_secs(30));
    assert_eq!(promoted, replica, "the replica took over");
    eprintln!("replica promoted {:?} after the kill", killed_at.elapsed());
    cluster.restart(master);
    // Writes go on until the old master copies the new one and more were acknowledged.
    let deadline = Instant::now() + RECOVERY;
    while !cluster.replicas_of(promoted).contains(&master) {
        assert!(Instant::now() < deadline, "the old master never rejoined");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "old master rejoined {:?} after the kill",
        killed_at.elapsed()
    );
    progress.wait_for_acks(20);
    progress.stop.store(true, Ordering::SeqCst);
    let seen = writer.join().expect("writer");
    let lost = missing(addr, &ca, &secret, &seen.acked);
    Failover {
        seen,
        lost,
        paused_at,
        killed_at,
    }
}

impl Failover {
    /// Acknowledged writes in `[from, to)`.
    fn acked_between(&self, from: Instant, to: Instant) -> usize {
        self.seen
            .acked_at
            .iter()
            .filter(|&&at| from <= at && at < to)
            .count()
    }

    /// From the kill to the first write acknowledged after it: how long the node could not
    /// write @alice's data.
    fn window(&self) -> Option<Duration> {
        let first = self.seen.acked_at.iter().find(|&&at| at > self.killed_at)?;
        Some(*first - self.killed_at)
    }

    fn report(&self, wait: u32) {
        eprintln!(
            "redis_wait_replicas = {wait}: {} writes acknowledged ({} while the replica was \
             cut off), {} AT0002, connections refused {:?}, {} lost; no write acknowledged \
             for {:?} after the kill; slowest reply {:?}",
            self.seen.acked.len(),
            self.acked_between(self.paused_at, self.killed_at),
            self.seen.datastore_errors,
            self.seen.refused,
            self.lost.len(),
            self.window(),
            self.seen.slowest,
        );
        let since_kill: Vec<String> = self
            .seen
            .failed
            .iter()
            .map(|(sent, took)| {
                let sent = sent.saturating_duration_since(self.killed_at).as_millis();
                format!("{sent} ms +{} ms", took.as_millis())
            })
            .collect();
        eprintln!("AT0002 (sent after the kill, took): {since_kill:?}");
    }
}

/// With `store.redis_wait_replicas = 1` an acknowledged write is on a replica: a master's
/// `kill -9` loses none, even one whose replica had fallen behind (its writes then fail,
/// AT0002, rather than being acknowledged); the node carries on by itself, no reply waits
/// longer than a bound, and nothing but AT0002 is answered.
#[test]
fn waiting_for_a_replica_no_acknowledged_write_is_lost_when_a_cluster_master_is_killed() {
    let failover = failover_under_writes(1);
    failover.report(1);
    assert_eq!(
        failover.lost,
        Vec::<String>::new(),
        "acknowledged, then lost"
    );
    assert_eq!(
        failover.acked_between(
            failover.paused_at + Duration::from_millis(500),
            failover.killed_at
        ),
        0,
        "acknowledged while no replica could have it"
    );
    assert!(failover.seen.datastore_errors > 0, "the failover was seen");
    assert!(
        failover.window().is_some(),
        "writes resumed after the failover"
    );
}

/// The same on a cluster spoken to only over TLS (clients, replication, bus): the node's
/// reconnections to the promoted replica and to the restarted master are TLS handshakes.
#[test]
fn over_tls_waiting_for_a_replica_no_acknowledged_write_is_lost_when_a_cluster_master_is_killed() {
    let files_dir = TempDir::new("redis-failover-tls");
    let files = at_tests::redis::TlsFiles::make(files_dir.path());
    let failover = failover_on(RedisCluster::start_tls(&files), 1);
    failover.report(1);
    assert_eq!(
        failover.lost,
        Vec::<String>::new(),
        "acknowledged, then lost"
    );
    assert!(failover.seen.datastore_errors > 0, "the failover was seen");
    assert!(
        failover.window().is_some(),
        "writes resumed after the failover"
    );
}

/// Without waiting (the default), what a master acknowledged but had not passed on to its
/// replica is lost when it is killed: here, everything written while the replica was cut
/// off. What the README says an acknowledged write is worth on a cluster.
#[test]
fn without_waiting_a_killed_cluster_master_loses_what_its_replica_had_not_received() {
    let failover = failover_under_writes(0);
    failover.report(0);
    let lagging = failover.acked_between(failover.paused_at, failover.killed_at);
    assert!(lagging > 0, "writes went on while the replica was cut off");
    assert!(!failover.lost.is_empty(), "the cut-off writes were lost");
    assert!(
        failover.lost.len() <= lagging,
        "only what the replica missed: {} lost, {lagging} written meanwhile",
        failover.lost.len()
    );
    assert!(
        failover.window().is_some(),
        "writes resumed after the failover"
    );
}

/// Slots moved by `redis-cli --cluster reshard` while a node writes: every slot of the
/// master holding @alice's, her data among them, goes to another master, key by key, as the
/// node goes on writing. The node follows `ASK`/`MOVED` (and `TRYAGAIN` while her keys are
/// split between the two masters) by itself: every write is acknowledged, none lost.
#[test]
fn slots_resharded_under_writes_lose_nothing_and_fail_nothing() {
    let cluster = RedisCluster::start();
    let dir = TempDir::new("redis-reshard");
    let (config, addr, secret) = provision_node_on(&cluster.store_section(), &dir);
    let _server = serve(&config);
    let ca = dir.path().join("server/tls/ca.pem");
    let progress = Arc::new(Progress::default());
    // Values of 1 KiB, so moving @alice's keys takes a while to write under.
    let writer = write_steadily(addr, &ca, &secret, &progress, 1024);
    progress.wait_for_acks(200);

    let from = cluster.master_of("{@alice}");
    let to = cluster
        .master_ports()
        .into_iter()
        .find(|&port| port != from)
        .expect("another master");
    let started = Instant::now();
    let before = progress.acked.load(Ordering::SeqCst);
    let resharding = cluster.reshard_all(from, to);
    let slots = resharding.slots;
    resharding.finish(Duration::from_secs(120));
    let took = started.elapsed();
    let during = progress.acked.load(Ordering::SeqCst) - before;
    assert_eq!(cluster.master_of("{@alice}"), to, "@alice's slot moved");
    progress.wait_for_acks(50);
    progress.stop.store(true, Ordering::SeqCst);
    let seen = writer.join().expect("writer");
    eprintln!(
        "{slots} slots moved in {took:?}; {during} writes acknowledged meanwhile, {} in all, \
         {} AT0002, connections refused {:?}; slowest reply {:?}",
        seen.acked.len(),
        seen.datastore_errors,
        seen.refused,
        seen.slowest
    );
    assert!(during > 0, "the node wrote while slots moved");
    assert_eq!(seen.datastore_errors, 0, "a write failed");
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
    assert_eq!(
        missing(addr, &ca, &secret, &seen.acked),
        Vec::<String>::new()
    );
}
