//! Several `at-server` nodes and one `at-directory` over one real `redis-server` (or a real
//! Redis Cluster), as the Helm chart runs them behind one shared SNI port: any node serves any
//! atSign.
//!
//! - an atSign provisioned through a node is in the directory at once, at its SNI name;
//! - an atSign provisioned through one node is served by the others at once, and one
//!   deprovisioned through a node stops being served by all of them;
//! - a write acknowledged on one node is read on another at once;
//! - concurrent writers on different nodes get distinct, per-connection increasing commit ids,
//!   and every acknowledged write is in the one commit log;
//! - an atSign suspended through one node is refused on every node, its connections on other
//!   nodes closed at once, until resumed through any node.
//!
//! A monitor on one node hearing a notification sent through another: `notifications.rs`.

mod support;

use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::redis::RedisServer;
use at_tests::redis_cluster::RedisCluster;
use at_tests::TempDir;
use support::{directory, directory_on, store_lines, update, Node, PROPAGATION};

#[test]
fn nodes_on_one_redis_serve_every_atsign_with_one_commit_log() {
    let redis = RedisServer::start();
    let dir = TempDir::new("cluster");
    let nodes: Vec<Node> = (0..3)
        .map(|n| Node::start(dir.path(), n, Some(&redis)))
        .collect();
    let (directory, directory_ca) = directory(dir.path(), &redis);
    serve_every_atsign_with_one_commit_log(&nodes, &directory, &directory_ca);
}

/// The same three nodes and directory on a Redis Cluster (three masters, three replicas):
/// @alice's and @bob's keys, the registry, the labels and the channels in slots of their own.
#[test]
fn nodes_on_one_redis_cluster_serve_every_atsign_with_one_commit_log() {
    let cluster = RedisCluster::start();
    let store = store_lines(&cluster);
    let dir = TempDir::new("cluster-on-redis-cluster");
    let nodes: Vec<Node> = (0..3)
        .map(|n| Node::start_on(dir.path(), n, &store))
        .collect();
    let (directory, directory_ca) = directory_on(dir.path(), &store);
    serve_every_atsign_with_one_commit_log(&nodes, &directory, &directory_ca);
}

/// What the module says, on `nodes` (three) and `directory` sharing one store.
fn serve_every_atsign_with_one_commit_log(
    nodes: &[Node],
    directory: &at_tests::process::Running,
    directory_ca: &std::path::Path,
) {
    // Provisioned through node 0 while all three serve: in the directory at once, at the
    // shared SNI port's name, and nodes 1 and 2 serve it too.
    let (host, secret) = nodes[0].provision("@alice");
    let mut lookup = Client::tls(directory.addr, directory_ca);
    lookup.expect(b"@");
    lookup.ask("alice\n", &format!("{host}:6464\r\n@"));
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

    // Deprovisioned through node 2: gone from the directory, and no node serves it any more.
    nodes[2].admin(&["deprovision", "@alice"]);
    lookup.ask("alice\n", "null\r\n@");
    for node in nodes {
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

/// `suspend` through one node reaches every node on the store: an owner connected to another
/// node is told (AT0024) and closed at once, and no node lets anyone in until `resume`.
#[test]
fn a_suspension_made_through_one_node_holds_on_every_node() {
    let redis = RedisServer::start();
    let dir = TempDir::new("cluster-suspend");
    let nodes: Vec<Node> = (0..2)
        .map(|n| Node::start(dir.path(), n, Some(&redis)))
        .collect();
    let (host, secret) = nodes[0].provision("@alice");
    let mut on_1 = nodes[1].owner("@alice", &host, &secret);
    update(&mut on_1, "@alice", "kept@alice", "yes");

    assert_eq!(nodes[0].admin(&["suspend", "@alice"]), "suspended @alice\n");
    // Told on node 1 within the propagation bound (a pub/sub message away).
    let told = on_1
        .try_read_until(b"@alice@", PROPAGATION)
        .expect("node 1's owner connection is told");
    assert_eq!(
        told,
        "error:AT0024-Server is paused : @alice is suspended\n@alice@"
    );
    on_1.expect_closed(Duration::from_secs(5));
    for node in &nodes {
        let mut client = node.try_connect(&host).expect("TLS and the prompt");
        client.send(b"from:@alice\n");
        assert_eq!(
            client.read_until(b"\n@"),
            "error:AT0024-Exception: @alice is suspended\n@"
        );
    }

    assert_eq!(nodes[1].admin(&["resume", "@alice"]), "resumed @alice\n");
    // Node 0 heard of it too: it lets the owner in again.
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let mut client = nodes[0].try_connect(&host).expect("TLS and the prompt");
        client.send(b"from:@alice\n");
        let reply = client.read_until(b"\n@");
        if reply.starts_with("data:") {
            break;
        }
        assert!(Instant::now() < deadline, "node 0 still refuses: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut owner = nodes[0].owner("@alice", &host, &secret);
    owner.ask("llookup:kept@alice\n", "data:yes\n@alice@");
}
