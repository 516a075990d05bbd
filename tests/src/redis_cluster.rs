//! A real Redis Cluster for a test: three masters and three replicas, each a `redis-server
//! --cluster-enabled yes` on free loopback ports (client and bus), joined by `redis-cli
//! --cluster create`; every process killed when dropped. [`RedisCluster::start_tls`] starts
//! one spoken to only over TLS: clients, replication and the cluster bus.
//!
//! Started in a few seconds, so a test binary starts one and shares it between its cases
//! (a key prefix per case keeps them apart) rather than one per case.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::TlsFiles;
use crate::TempDir;

/// Masters, and replicas per master (`--cluster-replicas`).
const MASTERS: usize = 3;
const REPLICAS_PER_MASTER: usize = 1;

/// How long the whole start may take before the test fails, saying which step hung.
const START_WITHIN: Duration = Duration::from_secs(30);

/// A running Redis Cluster on loopback.
pub struct RedisCluster {
    nodes: Vec<Node>,
    /// How `redis-cli` (and any client) reaches its nodes.
    access: Access,
    dir: TempDir,
}

/// What a client of the cluster needs besides a node's port.
struct Access {
    /// What clients (and replicas, `masterauth`) must `AUTH` with, if anything.
    password: Option<String>,
    /// Over TLS only: the CA the nodes' certificates chain to, and the client certificate and
    /// key they require (the nodes also present these to each other).
    tls: Option<ClientTls>,
}

struct ClientTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The nodes' own certificate and key (for 127.0.0.1).
    server: (PathBuf, PathBuf),
}

/// One `redis-server` of the cluster.
struct Node {
    /// `None` once killed ([`RedisCluster::kill`]) and not restarted.
    child: Option<Child>,
    port: u16,
    /// Its cluster bus port and its directory (`nodes.conf`), to start it again as itself.
    bus: u16,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes without persistence (as [`crate::redis::RedisServer::start`]), joins
    /// them into one cluster and waits until every node says `cluster_state:ok`. Panics, with
    /// what `redis-cli` said, if that takes longer than 30 s.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(None, None)
    }

    /// [`RedisCluster::start`], every node requiring `password` (`requirepass`, and
    /// `masterauth` for its replica); [`RedisCluster::urls`] do not carry it.
    pub fn start_with_password(password: &str) -> RedisCluster {
        RedisCluster::start_with(Some(password), None)
    }

    /// [`RedisCluster::start`] with TLS only, as a managed cluster with encryption in transit:
    /// no plain port (`--port 0`), clients, replicas (`tls-replication`) and the cluster bus
    /// (`tls-cluster`) on TLS with the server certificate of `files`, and every connection
    /// made to present a certificate of its CA (`tls-auth-clients yes`). [`RedisCluster::urls`]
    /// are then `rediss://`. The nodes read `files` while they run: keep them until it is
    /// dropped.
    pub fn start_tls(files: &TlsFiles) -> RedisCluster {
        RedisCluster::start_with(None, Some(files))
    }

    fn start_with(password: Option<&str>, tls: Option<&TlsFiles>) -> RedisCluster {
        let dir = TempDir::new("redis-cluster");
        let deadline = Instant::now() + START_WITHIN;
        let access = Access {
            password: password.map(str::to_string),
            tls: tls.map(|files| ClientTls {
                ca: files.ca.clone(),
                cert: files.client.0.clone(),
                key: files.client.1.clone(),
                server: files.server.clone(),
            }),
        };
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            access,
            dir,
        };
        // One at a time into `cluster`, so a failed start still kills those already running.
        for n in 0..MASTERS * (1 + REPLICAS_PER_MASTER) {
            let node_dir = cluster.dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            cluster
                .nodes
                .push(start_node(&node_dir, deadline, &cluster.access));
        }
        let mut create = cluster.access.redis_cli();
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
            while !cluster_state_ok(node.port, &cluster.access)
                || sees_replicas(node.port, &cluster.access) < cluster.nodes.len() - MASTERS
            {
                assert!(
                    Instant::now() < deadline,
                    "node on port {} never said cluster_state:ok with every replica known",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // And every replica copying its master (a write that waits for one must find it).
        for node in &cluster.nodes {
            while online_replicas(node.port, &cluster.access) < REPLICAS_PER_MASTER
                && is_master(node.port, &cluster.access)
            {
                assert!(
                    Instant::now() < deadline,
                    "the replica of the master on port {} never came online",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// One seed URL per node (`redis://127.0.0.1:<port>`, `rediss://` over TLS), as
    /// `store.redis_cluster` lists them.
    pub fn urls(&self) -> Vec<String> {
        let scheme = match self.access.tls {
            Some(_) => "rediss",
            None => "redis",
        };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The `[store]` lines of a configuration on this cluster (TOML); over TLS with the CA
    /// and the client certificate.
    pub fn store_section(&self) -> String {
        let urls: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        let mut section = format!(
            "[store]\nbackend = \"redis\"\nredis_cluster = [{}]\n",
            urls.join(", ")
        );
        if let Some(tls) = &self.access.tls {
            let path = |p: &Path| format!("{:?}", p.display().to_string());
            section.push_str(&format!(
                "redis_ca_file = {}\nredis_client_cert_file = {}\nredis_client_key_file = {}\n",
                path(&tls.ca),
                path(&tls.cert),
                path(&tls.key)
            ));
        }
        section
    }

    /// `redis-cli` on the node at `port` (over TLS, with the CA and client certificate, if
    /// the cluster is): its raw output; panics if it fails.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, &self.access, args)
    }

    /// The ports of its nodes, masters and replicas, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}

impl RedisCluster {
    /// Moves the slot of `key` (a key or a sharded channel name) to another master, with its
    /// keys, as `redis-cli --cluster reshard` moves slots; returns the master's port it left.
    /// Redis then ends the sharded subscriptions of that slot on the old master.
    pub fn move_slot_of(&self, key: &str) -> u16 {
        let any = self.nodes[0].port;
        let slot: u16 = cli(any, &self.access, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number");
        let nodes = cli(any, &self.access, &["cluster", "nodes"]);
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
            &self.access,
            &["cluster", "setslot", &slot, "importing", &from_id],
        );
        cli(
            from,
            &self.access,
            &["cluster", "setslot", &slot, "migrating", &to_id],
        );
        loop {
            let keys = cli(
                from,
                &self.access,
                &["cluster", "getkeysinslot", &slot, "100"],
            );
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut migrate = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000"];
            if let Some(password) = &self.access.password {
                migrate.extend(["auth", password]);
            }
            migrate.push("keys");
            migrate.extend(keys);
            cli(from, &self.access, &migrate);
        }
        for (_, port, _) in &masters {
            cli(
                *port,
                &self.access,
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
                let out = cli(node.port, &self.access, &["pubsub", "shardnumsub", channel]);
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
                &self.access,
                &["client", "kill", "type", "pubsub"],
            );
        }
    }
}

impl Access {
    /// `redis-cli`, authenticating with the password if any (through the environment, so it
    /// is not in the arguments and `redis-cli` does not warn), over TLS if the cluster is.
    fn redis_cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        if let Some(password) = &self.password {
            cli.env("REDISCLI_AUTH", password);
        }
        if let Some(tls) = &self.tls {
            cli.arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.cert)
                .arg("--key")
                .arg(&tls.key);
        }
        cli
    }
}

/// `redis-cli -p <port> <args>`'s output (raw); panics if it cannot run or fails.
fn cli(port: u16, access: &Access, args: &[&str]) -> String {
    let out = access
        .redis_cli()
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
fn start_node(dir: &Path, deadline: Instant, access: &Access) -> Node {
    loop {
        let (port, bus) = (crate::free_port(), crate::free_port());
        if let Some(node) = start_node_on(dir, port, bus, deadline, access) {
            return node;
        }
        assert!(Instant::now() < deadline, "a cluster node did not start");
    }
}

/// Starts one cluster node in `dir` on `port` and `bus`: `None` if it exited (a port was
/// taken) or did not answer by `deadline`.
fn start_node_on(
    dir: &Path,
    port: u16,
    bus: u16,
    deadline: Instant,
    access: &Access,
) -> Option<Node> {
    let password = access.password.as_deref();
    let mut server = Command::new("redis-server");
    server.args(["--bind", "127.0.0.1"]);
    match &access.tls {
        None => server.args(["--port", &port.to_string()]),
        // The cluster then announces the TLS port, and its nodes reach each other on TLS.
        Some(tls) => server
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&tls.server.0)
            .arg("--tls-key-file")
            .arg(&tls.server.1)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args(["--tls-auth-clients", "yes"])
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"]),
    };
    let mut child = server
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
        ])
        .args(["--cluster-config-file", "nodes.conf"])
        // Short, so a failover test does not wait long for a replica's promotion.
        .args(["--cluster-node-timeout", "2000"])
        .args(["--save", "", "--appendonly", "no"])
        // A replica (re)joining is copied at once, not after Redis's default 5 s wait for
        // others to share the copy.
        .args(["--repl-diskless-sync-delay", "0"])
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
            return None;
        }
        let up = match access.tls {
            None => crate::redis::ping(port, password),
            Some(_) => pings_over_tls(port, access),
        };
        if up {
            return Some(Node {
                child: Some(child),
                port,
                bus,
                dir: dir.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Whether the node on `port` answers `redis-cli --tls ping` (its TLS port up, its
/// certificate and ours accepted).
fn pings_over_tls(port: u16, access: &Access) -> bool {
    access
        .redis_cli()
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"PONG"))
}

/// How many replicas the node on `port` knows of (`CLUSTER NODES`).
fn sees_replicas(port: u16, access: &Access) -> usize {
    cli(port, access, &["cluster", "nodes"])
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|f| f.contains("slave"))
        })
        .count()
}

/// How many replicas of the node on `port` are online (`INFO replication`).
fn online_replicas(port: u16, access: &Access) -> usize {
    cli(port, access, &["info", "replication"])
        .lines()
        .filter(|line| line.starts_with("slave") && line.contains("state=online"))
        .count()
}

fn is_master(port: u16, access: &Access) -> bool {
    cli(port, access, &["info", "replication"]).contains("role:master")
}

/// Whether the node on `port` answers `CLUSTER INFO` with `cluster_state:ok`.
fn cluster_state_ok(port: u16, access: &Access) -> bool {
    access
        .redis_cli()
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
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Failures, for failover tests: which node serves what, and stopping, killing and
/// restarting one.
impl RedisCluster {
    /// The port of the master serving the slot of `key` (a key or a sharded channel name).
    pub fn master_of(&self, key: &str) -> u16 {
        self.try_master_of(key).expect("a master serves every slot")
    }

    /// [`RedisCluster::master_of`], if a master that has not failed serves it.
    fn try_master_of(&self, key: &str) -> Option<u16> {
        let slot = self.slot_of(key);
        self.masters()
            .into_iter()
            .find(|m| m.slots.iter().any(|range| range.contains(&slot)))
            .map(|m| m.port)
    }

    /// The ports of the masters serving slots, as the cluster sees them now.
    pub fn master_ports(&self) -> Vec<u16> {
        self.masters().into_iter().map(|m| m.port).collect()
    }

    /// The ports of the replicas of the master on `master`, as the cluster sees them now.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        let id = self
            .masters()
            .into_iter()
            .find(|m| m.port == master)
            .map(|m| m.id)
            .expect("a master");
        self.cluster_nodes()
            .iter()
            .filter(|fields| fields.get(2).is_some_and(|f| f.contains("slave")))
            .filter(|fields| fields.get(3) == Some(&id))
            .filter_map(|fields| node_port(&fields[1]))
            .collect()
    }

    /// Stops the node on `port` (`SIGSTOP`) without closing its connections: a replica
    /// that falls behind, a master that hangs. [`RedisCluster::resume`] undoes it.
    pub fn pause(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    pub fn resume(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    /// Starts `redis-cli --cluster reshard`, moving every slot of the master on `from`, with
    /// its keys, to the master on `to`, and returns it running: the caller serves meanwhile,
    /// then waits for it ([`Resharding::finish`]).
    pub fn reshard_all(&self, from: u16, to: u16) -> Resharding {
        let masters = self.masters();
        let id_of = |port: u16| {
            masters
                .iter()
                .find(|m| m.port == port)
                .map(|m| m.id.clone())
                .unwrap_or_else(|| panic!("no master on {port}"))
        };
        let slots: usize = masters
            .iter()
            .find(|m| m.port == from)
            .map(|m| m.slots.iter().map(|r| r.clone().count()).sum())
            .expect("a master");
        // Into a file: it prints a line per slot, more than a pipe holds unread.
        let log = self.dir.path().join(format!("reshard-{from}-{to}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let child = self
            .access
            .redis_cli()
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id_of(from)])
            .args(["--cluster-to", &id_of(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("a log file"))
            .stderr(out)
            .spawn()
            .expect("redis-cli must be installed (apt-get install -y redis-tools)");
        Resharding { child, slots, log }
    }

    /// Closes the replication links of the master on `port` (`CLIENT KILL TYPE replica`):
    /// with its replicas paused, it then writes what no replica will ever receive.
    pub fn cut_replication(&self, master: u16) {
        cli(master, &self.access, &["client", "kill", "type", "replica"]);
    }

    /// `kill -9` of the node on `port`: what its clients had not been sent is lost.
    pub fn kill(&mut self, port: u16) {
        let node = self.node(port);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node killed on `port` again, as itself (its `nodes.conf`), on the same
    /// ports; with no persistence it comes back empty, and rejoins as a replica of the
    /// master that took its slots (which it then copies). Waits until it answers.
    pub fn restart(&mut self, port: u16) {
        let deadline = Instant::now() + START_WITHIN;
        let (dir, bus) = {
            let node = self.node(port);
            assert!(node.child.is_none(), "node {port} is running");
            (node.dir.clone(), node.bus)
        };
        let started = start_node_on(&dir, port, bus, deadline, &self.access)
            .unwrap_or_else(|| panic!("node {port} did not start again"));
        self.node(port).child = started.child;
    }

    /// Waits until every running node says `cluster_state:ok` and the master of `key`'s slot
    /// answers as one; panics after `within`. Returns that master's port.
    pub fn wait_until_serving(&self, key: &str, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            let running = self.nodes.iter().filter(|n| n.child.is_some());
            let ok = running
                .clone()
                .all(|n| cluster_state_ok(n.port, &self.access));
            if let Some(master) = self.try_master_of(key).filter(|_| ok) {
                if self
                    .nodes
                    .iter()
                    .any(|n| n.port == master && n.child.is_some())
                {
                    return master;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not serve {key} again within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn node(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on {port}"))
    }

    fn signal(&self, port: u16, signal: &str) {
        let node = self.nodes.iter().find(|n| n.port == port).expect("a node");
        let pid = node.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn slot_of(&self, key: &str) -> u16 {
        cli(self.any_port(), &self.access, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number")
    }

    /// A running node to ask.
    fn any_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .expect("a running node")
    }

    /// `CLUSTER NODES`, as a running node sees it: one line's fields per node.
    fn cluster_nodes(&self) -> Vec<Vec<String>> {
        cli(self.any_port(), &self.access, &["cluster", "nodes"])
            .lines()
            .map(|line| line.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// The masters serving slots (a node that failed or has none is left out).
    fn masters(&self) -> Vec<Master> {
        self.cluster_nodes()
            .into_iter()
            .filter(|fields| fields.len() > 8)
            .filter(|fields| fields[2].contains("master") && !fields[2].contains("fail"))
            .filter_map(|fields| {
                let slots = fields[8..]
                    .iter()
                    .filter(|range| !range.starts_with('['))
                    .filter_map(|range| {
                        let (first, last) = range.split_once('-').unwrap_or((range, range));
                        Some(first.parse().ok()?..=last.parse().ok()?)
                    })
                    .collect();
                Some(Master {
                    port: node_port(&fields[1])?,
                    id: fields[0].clone(),
                    slots,
                })
            })
            .collect()
    }
}

/// A `redis-cli --cluster reshard` under way ([`RedisCluster::reshard_all`]).
pub struct Resharding {
    child: Child,
    /// How many slots it moves.
    pub slots: usize,
    /// What it printed.
    log: PathBuf,
}

impl Resharding {
    /// Waits for it to end (panics, with its output, if it failed or took over `within`).
    pub fn finish(mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.child.try_wait().expect("redis-cli").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("resharding took over {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().expect("redis-cli");
        let printed = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String = printed
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(status.success(), "redis-cli --cluster reshard: {tail}");
    }

    /// Whether it is still moving slots.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("redis-cli").is_none()
    }
}

/// A master, from `CLUSTER NODES`.
struct Master {
    id: String,
    port: u16,
    slots: Vec<std::ops::RangeInclusive<u16>>,
}

/// The client port of a `CLUSTER NODES` address, `host:port@bus[,hostname]`.
fn node_port(address: &str) -> Option<u16> {
    address.split('@').next()?.rsplit_once(':')?.1.parse().ok()
}
