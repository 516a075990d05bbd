//! Several `at-server` nodes over one real `redis-server`, as the Helm chart runs them behind
//! one shared SNI port: any node serves any atSign.
//!
//! - an atSign provisioned through one node is served by the others at once, and one
//!   deprovisioned through a node stops being served by all of them;
//! - a write acknowledged on one node is read on another at once;
//! - concurrent writers on different nodes get distinct, per-connection increasing commit ids,
//!   and every acknowledged write is in the one commit log.
//!
//! Not here yet: monitor connections on one node receiving notifications made on another
//! (notifications are issue 6).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::process::{run, workspace_binary, Running};
use at_tests::redis::RedisServer;
use at_tests::TempDir;

const DOMAIN: &str = "atsign.test";
/// How long a change made through one node may take to show on another.
const PROPAGATION: Duration = Duration::from_secs(10);

/// One node: its configuration file and, while serving, its process.
struct Node {
    config: PathBuf,
    ca: PathBuf,
    running: Running,
}

impl Node {
    /// Starts a node with its own data dir, on `redis`, registering atSigns in `directory`.
    fn start(dir: &Path, n: usize, redis: &RedisServer) -> Node {
        let data = dir.join(format!("node{n}"));
        std::fs::create_dir_all(&data).unwrap();
        let config = data.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\ndirectory_data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\
                 public_port = 6464\nsni_domain = \"{DOMAIN}\"\n\
                 [store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                data.display(),
                dir.join("directory").display(),
                redis.url()
            ),
        )
        .unwrap();
        let running = Running::start(
            &workspace_binary("at-server"),
            &["--config", &config.display().to_string(), "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        );
        Node {
            ca: data.join("tls/ca.pem"),
            config,
            running,
        }
    }

    /// Runs an admin command through this node (its admin socket).
    fn admin(&self, args: &[&str]) -> String {
        let config = self.config.display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        let out = run(&workspace_binary("at-server"), &all, &[]);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Provisions `atsign` here; returns its TLS host name and CRAM secret.
    fn provision(&self, atsign: &str) -> (String, String) {
        let out = self.admin(&["provision", atsign]);
        let mut lines = out.lines();
        let address = lines
            .next()
            .and_then(|l| l.strip_prefix(&format!("provisioned {atsign} at ")))
            .unwrap_or_else(|| panic!("{out}"));
        let host = address.rsplit_once(':').unwrap().0.to_string();
        let secret = lines
            .next()
            .and_then(|l| l.strip_prefix("cram secret: "))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string();
        (host, secret)
    }

    fn try_connect(&self, host: &str) -> Result<Client, String> {
        let mut client = Client::try_tls_named(self.running.addr, &self.ca, host)?;
        client.try_expect(b"@", Duration::from_secs(5))?;
        Ok(client)
    }

    /// An owner connection for `atsign`, retried until this node serves it (bounded).
    fn owner(&self, atsign: &str, host: &str, secret: &str) -> Client {
        let deadline = Instant::now() + PROPAGATION;
        loop {
            match self.try_connect(host) {
                Ok(mut client) => {
                    client.cram_in(atsign, secret);
                    return client;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{atsign} not served within {PROPAGATION:?}: {e}"),
            }
        }
    }
}

/// `update:<key> <value>` on `client` (authenticated as `atsign`); the commit id.
fn update(client: &mut Client, atsign: &str, key: &str, value: &str) -> u64 {
    client.send(format!("update:{key} {value}\n").as_bytes());
    let prompt = format!("\n{atsign}@");
    let reply = client.read_until(prompt.as_bytes());
    reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix(&prompt))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("update:{key}: {reply:?}"))
}

#[test]
fn nodes_on_one_redis_serve_every_atsign_with_one_commit_log() {
    let redis = RedisServer::start();
    let dir = TempDir::new("cluster");
    let nodes: Vec<Node> = (0..3).map(|n| Node::start(dir.path(), n, &redis)).collect();

    // Provisioned through node 0 while all three serve: nodes 1 and 2 serve it too.
    let (host, secret) = nodes[0].provision("@alice");
    let mut on_1 = nodes[1].owner("@alice", &host, &secret);
    let mut on_2 = nodes[2].owner("@alice", &host, &secret);

    // A write acknowledged on node 1 is read on node 2 at once.
    let first = update(&mut on_1, "@alice", "phone@alice", "+1-555");
    assert_eq!(first, 0);
    on_2.ask("llookup:phone@alice\n", "data:+1-555\n@alice@");

    // Concurrent writers on two nodes, each also writing one key the other writes.
    const WRITES: usize = 50;
    let writers: Vec<_> = [on_1, on_2]
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..WRITES {
                    ids.push(update(
                        &mut client,
                        "@alice",
                        &format!("n{n}k{i}@alice"),
                        "v",
                    ));
                    ids.push(update(
                        &mut client,
                        "@alice",
                        "both@alice",
                        &format!("{n}.{i}"),
                    ));
                }
                ids
            })
        })
        .collect();
    let mut all = vec![first];
    for writer in writers {
        let ids = writer.join().expect("writer");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "commit ids increase on each connection: {ids:?}"
        );
        all.extend(ids);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (0..=(4 * WRITES) as u64).collect();
    assert_eq!(all, expected, "every id given exactly once, none skipped");

    // Node 0 sees the one log: the last id, and every key.
    let mut on_0 = nodes[0].owner("@alice", &host, &secret);
    on_0.ask(
        "stats:3\n",
        &format!(
            "data: [{{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"{}\"}}]\n@alice@",
            4 * WRITES
        ),
    );
    for n in 0..2 {
        on_0.ask(
            &format!("llookup:n{n}k{}@alice\n", WRITES - 1),
            "data:v\n@alice@",
        );
    }

    // Deprovisioned through node 2: no node serves it any more.
    nodes[2].admin(&["deprovision", "@alice"]);
    for node in &nodes {
        let deadline = Instant::now() + PROPAGATION;
        while node.try_connect(&host).is_ok() {
            assert!(
                Instant::now() < deadline,
                "a node still serves @alice after deprovisioning"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // And one provisioned through node 1 is served by node 0.
    let (bob_host, bob_secret) = nodes[1].provision("@bob");
    let mut bob = nodes[0].owner("@bob", &bob_host, &bob_secret);
    assert_eq!(update(&mut bob, "@bob", "phone@bob", "1"), 0);
}
