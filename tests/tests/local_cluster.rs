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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::http::request;
use at_tests::local_cluster::{node_ip, text, LocalCluster};
use at_tests::process::{run, workspace_binary};
use support::{update, PROPAGATION};

/// What the tests ask of a cluster beyond what [`LocalCluster`] does.
trait Checks {
    fn provision(&self, n: u16, atsign: &str) -> (String, String);
    fn owner(&self, addr: SocketAddr, name: &str, atsign: &str, secret: &str) -> Client;
    fn assert_ready(&self);
    fn assert_status_all_ready(&self);
    fn down_and_check(&self, ports: &[SocketAddr]);
    fn pids(&self) -> Vec<(String, u32)>;
}

impl Checks for LocalCluster {
    /// The pids the script recorded, by component.
    fn pids(&self) -> Vec<(String, u32)> {
        ["redis", "directory", "node1", "node2", "node3"]
            .iter()
            .map(|name| (name.to_string(), self.pid(name).unwrap()))
            .collect()
    }

    /// `at-server --config <dir>/node<n>.toml provision <atsign>`: (address, CRAM secret).
    fn provision(&self, n: u16, atsign: &str) -> (String, String) {
        let config = self.node_config(n);
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

#[test]
fn the_local_cluster_serves_an_atsign_on_every_node_and_stops_cleanly() {
    let started = Instant::now();
    let cluster = LocalCluster::up("local-cluster", 4, &[]).unwrap();
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
        4,
        &[("LOCAL_CLUSTER_SNI_DOMAIN", support::DOMAIN)],
    )
    .unwrap();
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
        cluster.base().saturating_add(1).to_string(),
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
