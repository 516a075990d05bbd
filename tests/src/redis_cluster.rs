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
        let dir = TempDir::new("redis-cluster");
        let deadline = Instant::now() + START_WITHIN;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        // One at a time into `cluster`, so a failed start still kills those already running.
        for n in 0..MASTERS * (1 + REPLICAS_PER_MASTER) {
            let node_dir = cluster.dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            cluster.nodes.push(start_node(&node_dir, deadline));
        }
        let mut create = Command::new("redis-cli");
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
        for node in &cluster.nodes {
            while !cluster_state_ok(node.port) {
                assert!(
                    Instant::now() < deadline,
                    "node on port {} never said cluster_state:ok",
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

/// Starts one cluster node in `dir` on free client and bus ports (retried if one was taken).
fn start_node(dir: &Path, deadline: Instant) -> Node {
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
            if crate::redis::ping(port, None) {
                return Node { child, port };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(Instant::now() < deadline, "a cluster node did not start");
    }
}

/// Whether the node on `port` answers `CLUSTER INFO` with `cluster_state:ok`.
fn cluster_state_ok(port: u16) -> bool {
    Command::new("redis-cli")
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
