//! `deploy/local-cluster.sh`, the Helm chart's topology as local processes: one Redis, one
//! directory and three atServer nodes on it, one cluster CA.
//!
//! - `up` starts all five and returns once each is ready; `status` sees them;
//! - an atSign provisioned through node 1 is in the directory at node 1's address of its own
//!   port, and is served on that port by every node (each on its own loopback address), with
//!   TLS verified against the cluster CA; a write through node 2 is read through node 3;
//! - the directory's status API reaches it (directory → node over TLS, trusting the CA);
//! - with `LOCAL_CLUSTER_SNI_DOMAIN`, the directory hands out SNI names and every node's shared
//!   port routes them;
//! - `down` stops every process it started.
//!
//! Needs `redis-server` on the PATH. Runs the debug binaries the other tests use
//! (`AT_SERVER_BIN`, `AT_DIRECTORY_BIN`), on free ports (`LOCAL_CLUSTER_*_PORT`).

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::http::request;
use at_tests::process::{run, workspace_binary};
use at_tests::TempDir;
use support::{update, PROPAGATION};

/// Node `n`'s loopback address (as the script assigns them).
fn node_ip(n: u16) -> String {
    format!("127.0.0.{n}")
}

/// `count` consecutive ports, from `first` on, that each of `ips` can bind right now.
fn bindable(first: u16, count: u16, ips: &[String]) -> bool {
    (0..count).all(|i| {
        first.checked_add(i).is_some_and(|port| {
            ips.iter()
                .all(|ip| TcpListener::bind((ip.as_str(), port)).is_ok())
        })
    })
}

/// Ports each cluster gets: 4 for the directory and nodes, 4 HTTP, Redis, 4 for atSigns.
const BLOCK: u16 = 16;

/// The first of [`BLOCK`] consecutive loopback ports free on all three nodes' addresses, and
/// never handed out before in this process (the tests run in parallel). Taken below the
/// kernel's ephemeral range, from a random start, as [`at_tests::free_port`] takes its ports.
fn free_block() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = (32_768 - FIRST) / BLOCK as u32;
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(u32::from(at_tests::free_port())));
    let ips: Vec<String> = (1..=3).map(node_ip).collect();
    for _ in 0..BLOCKS {
        let block = next.fetch_add(1, Ordering::Relaxed) % BLOCKS;
        let first = (FIRST + block * u32::from(BLOCK)) as u16;
        if bindable(first, BLOCK, &ips) {
            return first;
        }
    }
    panic!("no {BLOCK} consecutive free loopback ports");
}

/// A cluster made by the script in a temp dir; `down` when dropped, even after a failure.
struct LocalCluster {
    dir: TempDir,
    env: Vec<(String, String)>,
    base: u16,
    metrics: u16,
}

impl LocalCluster {
    /// Runs `up` with ports of its own (and `extra` environment) and asserts it succeeded.
    fn up(label: &str, extra: &[(&str, &str)]) -> LocalCluster {
        let redis = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        assert!(
            redis.is_ok_and(|status| status.success()),
            "redis-server is not installed (apt-get install redis-server)"
        );
        // Directory on 127.0.0.1:base, node n on 127.0.0.n:base+n; their HTTP ports on
        // 127.0.0.1 from base+4; Redis on base+8; the atSigns' ports from base+9.
        let base = free_block();
        let (metrics, redis_port, atsigns) = (base + 4, base + 8, base + 9);
        let mut env: Vec<(String, String)> = [
            (
                "AT_SERVER_BIN",
                workspace_binary("at-server").display().to_string(),
            ),
            (
                "AT_DIRECTORY_BIN",
                workspace_binary("at-directory").display().to_string(),
            ),
            ("LOCAL_CLUSTER_BASE_PORT", base.to_string()),
            ("LOCAL_CLUSTER_METRICS_BASE_PORT", metrics.to_string()),
            ("LOCAL_CLUSTER_REDIS_PORT", redis_port.to_string()),
            ("LOCAL_CLUSTER_ATSIGN_PORT", atsigns.to_string()),
            ("LOCAL_CLUSTER_ATSIGN_PORTS", "4".to_string()),
            ("LOCAL_CLUSTER_LOG", "warn".to_string()),
            ("LOCAL_CLUSTER_START_TIMEOUT", "30".to_string()),
            ("LOCAL_CLUSTER_STOP_TIMEOUT", "25".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cluster = LocalCluster {
            dir: TempDir::new(label),
            env,
            base,
            metrics,
        };
        let started = Instant::now();
        let out = cluster.script("up");
        assert!(
            out.status.success(),
            "up failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        eprintln!("{label}: up in {:?}", started.elapsed());
        cluster
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `bash deploy/local-cluster.sh <command> <dir>`, from the repository root.
    fn script(&self, command: &str) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Command::new("bash")
            .arg(root.join("deploy/local-cluster.sh"))
            .arg(command)
            .arg(self.path())
            .current_dir(&root)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/local-cluster.sh")
    }

    fn ca(&self) -> PathBuf {
        self.path().join("ca/ca.pem")
    }

    fn directory(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base))
    }

    /// Node `n`'s shared (SNI) port.
    fn node(&self, n: u16) -> SocketAddr {
        format!("{}:{}", node_ip(n), self.base + n).parse().unwrap()
    }

    /// The HTTP port of the directory (0) or of node `n`.
    fn metrics(&self, n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics + n))
    }

    /// The pids the script recorded, by component.
    fn pids(&self) -> Vec<(String, u32)> {
        ["redis", "directory", "node1", "node2", "node3"]
            .iter()
            .map(|name| {
                let file = self.path().join(format!("run/{name}.pid"));
                let pid = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                (name.to_string(), pid.trim().parse().expect("pid"))
            })
            .collect()
    }

    /// `at-server --config <dir>/node<n>.toml provision <atsign>`: (address, CRAM secret).
    fn provision(&self, n: u16, atsign: &str) -> (String, String) {
        let config = self.path().join(format!("node{n}.toml"));
        let out = run(
            &workspace_binary("at-server"),
            &[
                "--config",
                &config.display().to_string(),
                "provision",
                atsign,
            ],
            &[],
        );
        assert!(out.status.success(), "provision: {out:?}");
        at_tests::servers::provisioned(&text(&out.stdout), atsign)
    }

    /// An owner connection to `addr` (TLS name `name`, trusting the cluster CA), retried until
    /// the node serves the atSign (it follows provisioning through Redis).
    fn owner(&self, addr: SocketAddr, name: &str, atsign: &str, secret: &str) -> Client {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            let attempt = Client::try_tls_named(addr, &self.ca(), name).and_then(|mut client| {
                client.try_expect(b"@", Duration::from_secs(5))?;
                Ok(client)
            });
            match attempt {
                Ok(mut client) => {
                    client.cram_in(atsign, secret);
                    return client;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "{atsign} not served on {addr} ({name}) within {PROPAGATION:?}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// `/readyz` answers 200 on the directory and every node.
    fn assert_ready(&self) {
        for n in 0..=3 {
            let response = request(self.metrics(n), "GET", "/readyz").expect("/readyz");
            assert_eq!(
                (response.status, response.text().as_str()),
                (200, "ready\n"),
                "/readyz of {}",
                if n == 0 {
                    "the directory".into()
                } else {
                    format!("node {n}")
                }
            );
        }
    }

    /// `status` lists five processes, all ready.
    fn assert_status_all_ready(&self) {
        let out = self.script("status");
        assert!(out.status.success(), "status: {out:?}");
        let stdout = text(&out.stdout);
        let ready = stdout
            .lines()
            .filter(|line| line.trim_end().ends_with(" yes"))
            .count();
        assert_eq!(ready, 5, "status:\n{stdout}");
    }

    /// Runs `down`, and asserts that every recorded process is gone and its port closed.
    fn down_and_check(&self, ports: &[SocketAddr]) {
        let pids = self.pids();
        let started = Instant::now();
        let out = self.script("down");
        assert!(
            out.status.success(),
            "down failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        eprintln!("down in {:?}", started.elapsed());
        for (name, pid) in pids {
            assert!(!alive(pid), "{name} (pid {pid}) still runs after down");
        }
        for addr in ports {
            assert!(
                std::net::TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_err(),
                "{addr} still accepts after down"
            );
        }
        let status = text(&self.script("status").stdout);
        assert!(status.contains("nothing running"), "{status}");
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // After a failed assertion too: no process outlives the test.
        let _ = self.script("down");
    }
}

/// Whether `pid` runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_local_cluster_serves_an_atsign_on_every_node_and_stops_cleanly() {
    let started = Instant::now();
    let cluster = LocalCluster::up("local-cluster", &[]);
    cluster.assert_ready();
    cluster.assert_status_all_ready();

    // Provisioned through node 1: the directory hands out node 1's address of @alice's port.
    let (address, secret) = cluster.provision(1, "@alice");
    let port: u16 = address
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("address {address}"));
    let mut lookup = Client::tls(cluster.directory(), &cluster.ca());
    lookup.expect(b"@");
    lookup.ask("alice\n", &format!("{address}\r\n@"));

    // Every node serves it on that port of its own address, with a certificate for it.
    let at = |n: u16| -> SocketAddr { format!("{}:{port}", node_ip(n)).parse().unwrap() };
    let mut on_2 = cluster.owner(at(2), &node_ip(2), "@alice", &secret);
    let mut on_3 = cluster.owner(at(3), &node_ip(3), "@alice", &secret);
    let mut on_1 = cluster.owner(at(1), &node_ip(1), "@alice", &secret);
    let id = update(&mut on_2, "@alice", "phone@alice", "+1-555");
    on_3.ask("llookup:phone@alice\n", "data:+1-555\n@alice@");
    on_1.ask("llookup:phone@alice\n", "data:+1-555\n@alice@");
    let next = update(&mut on_3, "@alice", "email@alice", "alice@example.com");
    assert!(next > id, "commit ids increase across nodes: {id}, {next}");
    on_2.ask("llookup:email@alice\n", "data:alice@example.com\n@alice@");

    // The status API: directory → node 1 over TLS (trusting the cluster CA), not onboarded.
    let status = request(cluster.metrics(0), "GET", "/api/status/@alice").expect("status API");
    assert_eq!(status.status, 418, "{}", status.text());
    assert!(
        status.text().contains("\"serverStatus\":\"teapot\""),
        "{}",
        status.text()
    );
    cluster.assert_ready();

    drop((on_1, on_2, on_3, lookup));
    let mut ports: Vec<SocketAddr> = (1..=3).map(at).collect();
    ports.extend((1..=3).map(|n| cluster.node(n)));
    ports.push(cluster.directory());
    cluster.down_and_check(&ports);
    eprintln!("whole test: {:?}", started.elapsed());
}

#[test]
fn with_an_sni_domain_the_directory_hands_out_names_every_node_routes() {
    let cluster = LocalCluster::up(
        "local-cluster-sni",
        &[("LOCAL_CLUSTER_SNI_DOMAIN", support::DOMAIN)],
    );
    cluster.assert_ready();

    // Provisioned through node 2: `<uuid>.<domain>:<node 1's shared port>`.
    let (address, secret) = cluster.provision(2, "@bob");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    assert!(
        host.ends_with(&format!(".{}", support::DOMAIN)),
        "{address}"
    );
    assert_eq!(
        port,
        cluster.base.saturating_add(1).to_string(),
        "{address}"
    );
    let mut lookup = Client::tls(cluster.directory(), &cluster.ca());
    lookup.expect(b"@");
    lookup.ask("bob\n", &format!("{address}\r\n@"));

    // Each node's shared port routes the name (no DNS needed: connected to by address).
    let mut on_1 = cluster.owner(cluster.node(1), host, "@bob", &secret);
    let mut on_3 = cluster.owner(cluster.node(3), host, "@bob", &secret);
    update(&mut on_3, "@bob", "phone@bob", "42");
    on_1.ask("llookup:phone@bob\n", "data:42\n@bob@");

    drop((on_1, on_3, lookup));
    let ports: Vec<SocketAddr> = (1..=3).map(|n| cluster.node(n)).collect();
    cluster.down_and_check(&ports);
}
