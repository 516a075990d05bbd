//! A real Redis Cluster for a test: three masters and three replicas, each a `redis-server
//! --cluster-enabled yes` on free loopback ports (client and bus), joined by `redis-cli
//! --cluster create`; every process killed when dropped.
//!
//! Started in a few seconds, so a test binary starts one and shares it between its cases
//! (a key prefix per case keeps them apart) rather than one per case.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// Masters, and replicas per master (`--cluster-replicas`).
const MASTERS: usize = 3;
const REPLICAS_PER_MASTER: usize = 1;

/// How long the whole start may take before the test fails, saying which step hung.
const START_WITHIN: Duration = Duration::from_secs(30);

/// A running Redis Cluster on loopback.
pub struct RedisCluster {
    nodes: Vec<Node>,
    /// What clients (and replicas, `masterauth`) must `AUTH` with, if anything.
    password: Option<String>,
    dir: TempDir,
}

/// One `redis-server` of the cluster.
struct Node {
    child: Child,
    port: u16,
}

impl RedisCluster {
    /// Starts six nodes without persistence (as [`crate::redis::RedisServer::start`]), joins
    /// them into one cluster and waits until every node says `cluster_state:ok`. Panics, with
    /// what `redis-cli` said, if that takes longer than 30 s.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(None)
    }

    /// [`RedisCluster::start`], every node requiring `password` (`requirepass`, and
    /// `masterauth` for its replica); [`RedisCluster::urls`] do not carry it.
    pub fn start_with_password(password: &str) -> RedisCluster {
        RedisCluster::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> RedisCluster {
        let dir = TempDir::new("redis-cluster");
        let deadline = Instant::now() + START_WITHIN;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            password: password.map(str::to_string),
            dir,
        };
        // One at a time into `cluster`, so a failed start still kills those already running.
        for n in 0..MASTERS * (1 + REPLICAS_PER_MASTER) {
            let node_dir = cluster.dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            cluster
                .nodes
                .push(start_node(&node_dir, deadline, password));
        }
        let mut create = redis_cli(password);
        create.arg("--cluster").arg("create");
        create.args(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port)),
        );
        create.args([
            "--cluster-replicas",
            &REPLICAS_PER_MASTER.to_string(),
            "--cluster-yes",
        ]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed (apt-get install -y redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Ready when every node says so and sees every replica as one (a node learns the
        // roles `--cluster create` assigned by gossip, a moment later).
        for node in &cluster.nodes {
            while !cluster_state_ok(node.port, password)
                || sees_replicas(node.port, password) < cluster.nodes.len() - MASTERS
            {
                assert!(
                    Instant::now() < deadline,
                    "node on port {} never said cluster_state:ok with every replica known",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// One seed URL per node (`redis://127.0.0.1:<port>`), as `store.redis_cluster` lists them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The `[store]` lines of a configuration on this cluster (TOML).
    pub fn store_section(&self) -> String {
        let urls: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        format!(
            "[store]\nbackend = \"redis\"\nredis_cluster = [{}]\n",
            urls.join(", ")
        )
    }
}

impl RedisCluster {
    /// Moves the slot of `key` (a key or a sharded channel name) to another master, with its
    /// keys, as `redis-cli --cluster reshard` moves slots; returns the master's port it left.
    /// Redis then ends the sharded subscriptions of that slot on the old master.
    pub fn move_slot_of(&self, key: &str) -> u16 {
        let any = self.nodes[0].port;
        let slot: u16 = cli(any, self.password.as_deref(), &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number");
        let nodes = cli(any, self.password.as_deref(), &["cluster", "nodes"]);
        let masters: Vec<(String, u16, bool)> = nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // Masters serving slots (a replica may still look like a master without).
                if !fields.get(2)?.contains("master") || fields.len() <= 8 {
                    return None;
                }
                let port = fields[1]
                    .split('@')
                    .next()?
                    .rsplit_once(':')?
                    .1
                    .parse()
                    .ok()?;
                let owns = fields[8..].iter().any(|range| {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    matches!((first.parse::<u16>(), last.parse::<u16>()),
                        (Ok(first), Ok(last)) if (first..=last).contains(&slot))
                });
                Some((fields[0].to_string(), port, owns))
            })
            .collect();
        let (from_id, from) = masters
            .iter()
            .find(|m| m.2)
            .map(|m| (m.0.clone(), m.1))
            .expect("an owner");
        let (to_id, to) = masters
            .iter()
            .find(|m| !m.2)
            .map(|m| (m.0.clone(), m.1))
            .expect("another master");
        let slot = slot.to_string();
        cli(
            to,
            self.password.as_deref(),
            &["cluster", "setslot", &slot, "importing", &from_id],
        );
        cli(
            from,
            self.password.as_deref(),
            &["cluster", "setslot", &slot, "migrating", &to_id],
        );
        loop {
            let keys = cli(
                from,
                self.password.as_deref(),
                &["cluster", "getkeysinslot", &slot, "100"],
            );
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut migrate = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000"];
            if let Some(password) = &self.password {
                migrate.extend(["auth", password]);
            }
            migrate.push("keys");
            migrate.extend(keys);
            cli(from, self.password.as_deref(), &migrate);
        }
        for (_, port, _) in &masters {
            cli(
                *port,
                self.password.as_deref(),
                &["cluster", "setslot", &slot, "node", &to_id],
            );
        }
        from
    }

    /// Subscribers of the sharded channel `channel` on the whole cluster: `PUBSUB
    /// SHARDNUMSUB` summed over every node (each counts only its own connections).
    pub fn shard_subscribers(&self, channel: &str) -> usize {
        self.nodes
            .iter()
            .map(|node| {
                let out = cli(
                    node.port,
                    self.password.as_deref(),
                    &["pubsub", "shardnumsub", channel],
                );
                // `--raw`: the channel's name, then its count, one per line.
                out.lines()
                    .nth(1)
                    .and_then(|count| count.trim().parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("PUBSUB SHARDNUMSUB answered {out:?}"))
            })
            .sum()
    }

    /// Closes every pub/sub connection of every node (`CLIENT KILL TYPE pubsub`), as a
    /// restart or a network cut would.
    pub fn kill_subscribers(&self) {
        for node in &self.nodes {
            cli(
                node.port,
                self.password.as_deref(),
                &["client", "kill", "type", "pubsub"],
            );
        }
    }
}

/// `redis-cli`, authenticating with `password` if any (through the environment, so it is not
/// in the arguments and `redis-cli` does not warn).
fn redis_cli(password: Option<&str>) -> Command {
    let mut cli = Command::new("redis-cli");
    if let Some(password) = password {
        cli.env("REDISCLI_AUTH", password);
    }
    cli
}

/// `redis-cli -p <port> <args>`'s output (raw); panics if it cannot run or fails.
fn cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let out = redis_cli(password)
        .args(["--raw", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed (apt-get install -y redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let refused = text.starts_with("ERR") || text.starts_with("(error)");
    assert!(
        out.status.success() && !refused,
        "redis-cli {args:?}: {text}"
    );
    text
}

/// Starts one cluster node in `dir` on free client and bus ports (retried if one was taken).
fn start_node(dir: &Path, deadline: Instant, password: Option<&str>) -> Node {
    loop {
        let (port, bus) = (crate::free_port(), crate::free_port());
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
            ])
            .args(["--cluster-config-file", "nodes.conf"])
            // Short, so a later failover test does not wait long for a replica's promotion.
            .args(["--cluster-node-timeout", "2000"])
            .args(["--save", "", "--appendonly", "no"])
            .args(password.map_or_else(Vec::new, |password| {
                vec!["--requirepass", password, "--masterauth", password]
            }))
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install -y redis-server)");
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // a port was taken: try others
            }
            if crate::redis::ping(port, password) {
                return Node { child, port };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(Instant::now() < deadline, "a cluster node did not start");
    }
}

/// How many replicas the node on `port` knows of (`CLUSTER NODES`).
fn sees_replicas(port: u16, password: Option<&str>) -> usize {
    cli(port, password, &["cluster", "nodes"])
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|f| f.contains("slave"))
        })
        .count()
}

/// Whether the node on `port` answers `CLUSTER INFO` with `cluster_state:ok`.
fn cluster_state_ok(port: u16, password: Option<&str>) -> bool {
    redis_cli(password)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "cluster",
            "info",
        ])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}
