//! @alice and @bob, each with a CRAM-authenticated owner connection, in the three topologies
//! an atServer deployment puts two atSigns in; clients must not be able to tell them apart:
//!
//! - [`Scene::one_node`]: one `at-server` hosting both (embedded store), one `at-directory`;
//! - [`Scene::two_nodes_on_one_redis`]: two nodes sharing one `redis-server`, both atSigns on
//!   it, routed by SNI; @alice's connections go to node 0, @bob's to node 1;
//!   [`Scene::two_nodes_on_one_redis_cluster`]: the same on a Redis Cluster, and
//!   [`Scene::two_nodes_on_one_redis_cluster_over_tls`] on one reached only over TLS;
//! - [`Scene::two_servers`]: two independent servers (their own embedded stores, one cluster
//!   CA, pol and mutual TLS between them): [`AliceAndBob`];
//! - [`Scene::two_servers_each_on_its_own_redis`]: the same, each server on a Redis of its own.
//!
//! Every server gets the same [`OPTIONS`]. [`Monitor`] reads a `monitor` connection line by
//! line.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::process::{run, workspace_binary, Running};
use crate::redis::{RedisServer, TlsFiles};
use crate::redis_cluster::RedisCluster;
use crate::servers::{directory_with_env, provisioned, AliceAndBob, Cluster, Store};
use crate::TempDir;

/// The prompt of @alice's owner connections.
pub const AT_ALICE: &str = "\n@alice@";
/// The prompt of @bob's owner connections.
pub const AT_BOB: &str = "\n@bob@";

/// Top-level TOML every server of every scene gets: links to other servers idle out after a
/// second (a scenario forces a new link by waiting), undelivered notifications are retried
/// within a second, and a silent peer costs at most 3 s.
pub const OPTIONS: &str = "outbound_idle_time_millis = 1000\n\
                           notification_retry_max_millis = 1000\n\
                           peer_timeout_millis = 3000";

/// How long an atSign's connection may take to be served (a node learns of atSigns
/// provisioned through another one within this).
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// Where one atSign's owner connections go, and how they log in.
#[derive(Clone)]
struct Door {
    atsign: &'static str,
    addr: SocketAddr,
    ca: PathBuf,
    /// TLS server name (SNI): `127.0.0.1` on a per-atSign port, `<label>.<domain>` otherwise.
    name: String,
    secret: String,
}

impl Door {
    /// A new CRAM-authenticated connection, retried (bounded) until the atSign is served.
    fn owner(&self) -> Client {
        let deadline = Instant::now() + SERVED_WITHIN;
        loop {
            let attempt =
                Client::try_tls_named(self.addr, &self.ca, &self.name).and_then(|mut client| {
                    client.try_expect(b"@", Duration::from_secs(5))?;
                    Ok(client)
                });
            match attempt {
                Ok(mut client) => {
                    client.cram_in(self.atsign, &self.secret);
                    return client;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("{} not served within {SERVED_WITHIN:?}: {e}", self.atsign)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// @alice and @bob in one topology, with an owner connection each.
pub struct Scene {
    /// Which topology: `one_node`, `two_nodes_on_one_redis`, `two_nodes_on_one_redis_cluster`
    /// (`…_over_tls`), `two_servers` or `two_servers_each_on_its_own_redis`.
    pub topology: &'static str,
    /// @alice's owner connection (prompt [`AT_ALICE`]).
    pub alice: Client,
    /// @bob's owner connection (prompt [`AT_BOB`]).
    pub bob: Client,
    doors: [Door; 2],
    /// The directory's address and CA, where it shares the nodes' Redis (or Redis Cluster).
    shared_directory: Option<(SocketAddr, PathBuf)>,
    /// Processes (and what owns them), stopped when dropped, before `_dir` is removed.
    _running: Vec<Box<dyn Any>>,
    _dir: TempDir,
}

impl Scene {
    /// One `at-server` hosting @alice and @bob on ports of their own, its embedded store, and
    /// one `at-directory`.
    pub fn one_node() -> Scene {
        let dir = TempDir::new("scene-one-node");
        let cluster = Cluster::start(dir.path());
        let ca = cluster.ca();
        let (mut server, secrets) = cluster.server_hosting("node", &["@alice", "@bob"], OPTIONS);
        server.start();
        let door = |n: u16, atsign: &'static str| Door {
            atsign,
            addr: SocketAddr::from(([127, 0, 0, 1], server.port + n)),
            ca: ca.clone(),
            name: "127.0.0.1".into(),
            secret: secrets[usize::from(n)].clone(),
        };
        let doors = [door(0, "@alice"), door(1, "@bob")];
        Scene::new(
            "one_node",
            doors,
            vec![Box::new(server), Box::new(cluster)],
            dir,
        )
    }

    /// Two `at-server` nodes on one `redis-server`, routed by SNI, and one `at-directory` on
    /// that Redis; @alice and @bob provisioned through node 0; @alice's connections go to
    /// node 0, @bob's to node 1.
    pub fn two_nodes_on_one_redis() -> Scene {
        let redis = RedisServer::start();
        let store = format!("backend = \"redis\"\nredis_url = \"{}\"\n", redis.url());
        Scene::two_nodes_sharing("two_nodes_on_one_redis", &store, Box::new(redis))
    }

    /// [`Scene::two_nodes_on_one_redis`] on a Redis Cluster (three masters, three replicas)
    /// instead: the nodes and the directory configured with `redis_cluster`.
    pub fn two_nodes_on_one_redis_cluster() -> Scene {
        let cluster = RedisCluster::start();
        let store = cluster
            .store_section()
            .trim_start_matches("[store]\n")
            .to_string();
        Scene::two_nodes_sharing("two_nodes_on_one_redis_cluster", &store, Box::new(cluster))
    }

    /// [`Scene::two_nodes_on_one_redis_cluster`] on a cluster spoken to only over TLS
    /// ([`RedisCluster::start_tls`]): `rediss://` seeds, its CA in `redis_ca_file` and the
    /// client certificate its nodes require, for the nodes and the directory alike.
    pub fn two_nodes_on_one_redis_cluster_over_tls() -> Scene {
        let files = TempDir::new("redis-cluster-tls-files");
        let cluster = RedisCluster::start_tls(&TlsFiles::make(files.path()));
        let store = cluster
            .store_section()
            .trim_start_matches("[store]\n")
            .to_string();
        // The cluster is dropped (its processes killed) before its certificates' directory.
        Scene::two_nodes_sharing(
            "two_nodes_on_one_redis_cluster_over_tls",
            &store,
            Box::new((cluster, files)),
        )
    }

    /// Two nodes and the directory on the Redis `store` names (the lines of a `[store]`
    /// section), which `redis` keeps running.
    fn two_nodes_sharing(topology: &'static str, store: &str, redis: Box<dyn Any>) -> Scene {
        let dir = TempDir::new("scene-redis");
        let directory_config = dir.path().join("directory.toml");
        std::fs::write(&directory_config, format!("[store]\n{store}")).unwrap();
        let directory_config = directory_config.display().to_string();
        let directory_data = dir.path().join("directory-process");
        let directory = directory_with_env(
            &directory_data,
            None,
            false,
            &[("AT_DIRECTORY_CONFIG", &directory_config)],
        );
        let directory_ca = directory_data.join("tls/ca.pem");
        let nodes: Vec<(Running, PathBuf, PathBuf)> = (0..2)
            .map(|n| redis_node(dir.path(), n, store, directory.addr, &directory_ca))
            .collect();
        let provision = |atsign: &str| -> (String, String) {
            let config = nodes[0].1.display().to_string();
            let out = run(
                &workspace_binary("at-server"),
                &["--config", &config, "provision", atsign],
                &[],
            );
            assert!(out.status.success(), "provision {atsign}: {out:?}");
            let out = String::from_utf8(out.stdout).unwrap();
            let (address, secret) = provisioned(&out, atsign);
            let host = address
                .rsplit_once(':')
                .map_or(address.as_str(), |(host, _)| host);
            (host.to_string(), secret)
        };
        let door = |atsign: &'static str, node: &(Running, PathBuf, PathBuf)| {
            let (name, secret) = provision(atsign);
            Door {
                atsign,
                addr: node.0.addr,
                ca: node.2.clone(),
                name,
                secret,
            }
        };
        let doors = [door("@alice", &nodes[0]), door("@bob", &nodes[1])];
        let shared_directory = Some((directory.addr, directory_ca.clone()));
        let mut running: Vec<Box<dyn Any>> = nodes
            .into_iter()
            .map(|(node, _, _)| Box::new(node) as Box<dyn Any>)
            .collect();
        running.push(Box::new(directory));
        running.push(redis);
        let mut scene = Scene::new(topology, doors, running, dir);
        scene.shared_directory = shared_directory;
        scene
    }

    /// Two independent servers, @alice on A and @bob on B: [`AliceAndBob`].
    pub fn two_servers() -> Scene {
        Scene::two_servers_on(Store::Embedded, "two_servers")
    }

    /// [`Scene::two_servers`], each server on a `redis-server` of its own.
    pub fn two_servers_each_on_its_own_redis() -> Scene {
        Scene::two_servers_on(Store::OwnRedis, "two_servers_each_on_its_own_redis")
    }

    fn two_servers_on(store: Store, topology: &'static str) -> Scene {
        let dir = TempDir::new("scene-two-servers");
        let AliceAndBob {
            cluster,
            ca,
            a,
            b,
            alice_secret,
            bob_secret,
            alice,
            bob,
        } = AliceAndBob::start_on(dir.path(), OPTIONS, OPTIONS, store);
        let door = |atsign: &'static str, port: u16, secret: String| Door {
            atsign,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ca: ca.clone(),
            name: "127.0.0.1".into(),
            secret,
        };
        let doors = [
            door("@alice", a.port, alice_secret),
            door("@bob", b.port, bob_secret),
        ];
        Scene {
            topology,
            alice,
            bob,
            doors,
            shared_directory: None,
            _running: vec![Box::new(a), Box::new(b), Box::new(cluster)],
            _dir: dir,
        }
    }

    fn new(
        topology: &'static str,
        doors: [Door; 2],
        running: Vec<Box<dyn Any>>,
        dir: TempDir,
    ) -> Scene {
        Scene {
            topology,
            alice: doors[0].owner(),
            bob: doors[1].owner(),
            doors,
            shared_directory: None,
            _running: running,
            _dir: dir,
        }
    }

    /// A connection to the directory, past its `@` prompt, in the topologies whose directory
    /// keeps its entries in the nodes' Redis (or Redis Cluster); panics in the others.
    pub fn shared_directory(&self) -> Client {
        let (addr, ca) = self
            .shared_directory
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no directory on a shared Redis", self.topology));
        let mut client = Client::tls(*addr, ca);
        client.expect(b"@");
        client
    }

    /// Another owner connection of `atsign` (`@alice` or `@bob`), CRAM-authenticated, to the
    /// node its owner connection is on.
    pub fn owner(&self, atsign: &str) -> Client {
        self.doors
            .iter()
            .find(|door| door.atsign == atsign)
            .unwrap_or_else(|| panic!("no {atsign} in this scene"))
            .owner()
    }

    /// A `monitor` connection of `atsign`, subscribed.
    pub fn monitor(&self, atsign: &str) -> Monitor {
        Monitor::start(self.owner(atsign))
    }

    /// Replaces both owner connections with new ones (after a scenario left replies unread).
    pub fn reconnect(&mut self) {
        self.alice = self.owner("@alice");
        self.bob = self.owner("@bob");
    }
}

/// Starts node `n` of a Redis scene under `dir`, its store and the directory's on the Redis
/// `store` names (the lines of a `[store]` section); its process, configuration file and TLS CA.
fn redis_node(
    dir: &Path,
    n: usize,
    store: &str,
    directory: SocketAddr,
    directory_ca: &Path,
) -> (Running, PathBuf, PathBuf) {
    let data = dir.join(format!("node{n}"));
    std::fs::create_dir_all(&data).unwrap();
    let config = data.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndirectory_data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\
             public_port = 6464\nsni_domain = \"atsign.test\"\ndirectory = \"{directory}\"\n\
             directory_ca_file = {:?}\n{OPTIONS}\n\
             [store]\n{store}[directory_store]\n{store}",
            data.display().to_string(),
            dir.join("directory").display().to_string(),
            directory_ca.display().to_string(),
        ),
    )
    .unwrap();
    let running = Running::start(
        &workspace_binary("at-server"),
        &["--config", &config.display().to_string(), "serve"],
        &[("AT_SERVER_LOG", "warn")],
        false,
    );
    (running, config, data.join("tls/ca.pem"))
}

/// A `monitor` connection, read one notification line at a time.
pub struct Monitor {
    client: Client,
    /// Lines received and not yet taken, each with its `\n`.
    lines: VecDeque<String>,
}

impl Monitor {
    /// Sends `monitor` on `client` (an owner connection) and waits until it is subscribed
    /// (a `noop:0` sent after it is answered).
    pub fn start(mut client: Client) -> Monitor {
        client.send(b"monitor\nnoop:0\n");
        let mut monitor = Monitor {
            client,
            lines: VecDeque::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            monitor.fill(deadline.saturating_duration_since(Instant::now()));
            if let Some(at) = monitor.lines.iter().position(|l| l == "data:ok\n") {
                monitor.lines.remove(at);
                return monitor;
            }
            assert!(Instant::now() < deadline, "monitor not subscribed in 10 s");
        }
    }

    /// Reads what arrives within `within` (at least one line, if any comes) into `lines`.
    fn fill(&mut self, within: Duration) {
        if let Ok(text) = self.client.try_read_until(b"\n", within) {
            self.lines
                .extend(text.split_inclusive('\n').map(str::to_string));
        }
    }

    /// The first line (skipping others) that `wanted` accepts, within `within`; `None` if
    /// none came.
    pub fn find(&mut self, within: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(line) = self.lines.pop_front() {
                if wanted(&line) {
                    return Some(line);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.fill(left);
        }
    }

    /// Every line that arrives within `window` (and what was already received).
    pub fn lines_for(&mut self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.lines.drain(..).collect();
            }
            self.fill(left);
        }
    }
}
