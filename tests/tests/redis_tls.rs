//! Redis over TLS, as managed Redis services offer it (encryption in transit, optionally
//! client certificates): a real `redis-server` serving TLS with a CA of its own and requiring
//! client certificates, and the real `at-server` configured with `rediss://`,
//! `redis_ca_file` and a client certificate.
//!
//! - provisioning, logging in, writing and reading all go through the TLS port (the only one
//!   the configuration names);
//! - without the Redis's CA the node refuses to start, saying why: the Redis certificate is
//!   not trusted, and nothing falls back to plain TCP;
//! - without a client certificate the Redis refuses the node.
//!
//! And a Redis Cluster spoken to only over TLS (clients, replication and its bus; every
//! connection presenting a certificate of its CA), named by `rediss://` seeds:
//!
//! - two nodes and the directory on it serve @alice and @bob to each other;
//! - `at-server migrate` copies atSigns from a node's embedded store into it
//!   (`--to-redis-cluster`, with `--to-redis-ca-file` and a client certificate) and back
//!   (the cluster as the node's store, `--redis-cluster`), and a node on each side serves
//!   every key, commit entry and notification as the first node did;
//! - without its CA a node refuses to start on it.

use std::net::SocketAddr;
use std::path::Path;

use at_tests::client::Client;
use at_tests::process::{run, workspace_binary, Running};
use at_tests::redis::TlsFiles;
use at_tests::redis_cluster::RedisCluster;
use at_tests::scenes::Scene;
use at_tests::servers::{eventually, Cluster, Store};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";
const AT_BOB: &str = "\n@bob@";

#[test]
fn an_atserver_keeps_its_atsigns_in_a_redis_reached_over_tls_with_a_client_certificate() {
    let dir = TempDir::new("redis-tls");
    let cluster = Cluster::start(dir.path());
    let (mut server, secrets) =
        cluster.server_hosting_on("node", &["@alice"], "", Store::OwnRedisOverTls);
    server.start();
    let mut alice = server.connect(&cluster.ca());
    alice.cram_in("@alice", &secrets[0]);
    let written = alice.reply_to("update:phone@alice +1 555", AT_ALICE);
    assert!(written.starts_with("data:"), "{written}");
    assert_eq!(
        alice.reply_to("llookup:phone@alice", AT_ALICE),
        "data:+1 555"
    );
    server.stop();
    // And it is there after a restart: the data lives in that Redis, not beside the node.
    server.start();
    let mut alice = server.connect(&cluster.ca());
    alice.cram_in("@alice", &secrets[0]);
    assert_eq!(
        alice.reply_to("llookup:phone@alice", AT_ALICE),
        "data:+1 555"
    );
}

/// The node's configuration with one line of its `[store]` section changed.
fn config_with(config: &std::path::Path, edit: impl Fn(&str) -> Option<String>) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .filter_map(|line| match edit(line) {
            Some(changed) => (!changed.is_empty()).then_some(changed),
            None => Some(line.to_string()),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn without_the_redis_ca_or_a_client_certificate_the_node_does_not_start() {
    let dir = TempDir::new("redis-tls-refused");
    let cluster = Cluster::start(dir.path());
    let (server, _) = cluster.server_hosting_on("node", &["@alice"], "", Store::OwnRedisOverTls);
    let config = server.config_path();
    for (case, edit) in [
        (
            "no redis_ca_file (the system's roots do not know this CA)",
            Box::new(|line: &str| line.starts_with("redis_ca_file").then(String::new))
                as Box<dyn Fn(&str) -> Option<String>>,
        ),
        (
            "no client certificate",
            Box::new(|line: &str| line.starts_with("redis_client_").then(String::new)),
        ),
    ] {
        let changed = dir.path().join("changed.toml");
        std::fs::write(&changed, config_with(&config, edit)).unwrap();
        let out = run(
            &workspace_binary("at-server"),
            &["--config", &changed.display().to_string(), "list"],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case}: {out:?}");
        assert!(
            stderr.to_lowercase().contains("redis")
                || stderr.to_lowercase().contains("certificate")
                || stderr.to_lowercase().contains("tls"),
            "{case}: says why: {stderr}"
        );
    }
}

#[test]
fn two_nodes_and_the_directory_serve_atsigns_from_a_redis_cluster_over_tls() {
    let mut scene = Scene::two_nodes_on_one_redis_cluster_over_tls();
    let shared = scene
        .alice
        .reply_to("update:@bob:plan@alice meet at noon", AT_ALICE);
    assert!(shared.starts_with("data:"), "{shared}");
    let public = scene
        .alice
        .reply_to("update:public:phone@alice +1 555", AT_ALICE);
    assert!(public.starts_with("data:"), "{public}");
    // @bob's connection is on the other node.
    assert_eq!(
        scene.bob.reply_to("lookup:plan@alice", AT_BOB),
        "data:meet at noon"
    );
    assert_eq!(
        scene.bob.reply_to("plookup:phone@alice", AT_BOB),
        "data:+1 555"
    );
    // The directory reads the entries provisioning wrote into the cluster.
    let mut directory = scene.shared_directory();
    directory.send(b"alice\n");
    let found = directory.read_until(b"\r\n@");
    assert!(found.ends_with(".atsign.test:6464\r\n@"), "{found:?}");
    directory.ask("nobody\n", "null\r\n@");
}

/// What @alice's and @bob's clients see of their data: the commit logs (keys, values,
/// metadata, ids), the keys, @bob's received notifications and the status of @alice's sent
/// one.
fn seen(alice: &mut Client, bob: &mut Client, sent: &str) -> Vec<String> {
    vec![
        alice.reply_to("sync:from:-1:limit:100", AT_ALICE),
        alice.reply_to("scan", AT_ALICE),
        alice.reply_to(&format!("notify:status:{sent}"), AT_ALICE),
        bob.reply_to("sync:from:-1:limit:100", AT_BOB),
        bob.reply_to("scan", AT_BOB),
        bob.reply_to("notify:list", AT_BOB),
    ]
}

/// @alice's and @bob's owner connections to the node serving them on `port` and `port + 1`.
fn owners(port: u16, ca: &Path, secrets: &[String]) -> (Client, Client) {
    let connect = |n: u16, atsign: &str, secret: &str| {
        let addr = SocketAddr::from(([127, 0, 0, 1], port + n));
        let mut client = Client::tls_named(addr, ca, "127.0.0.1");
        client.expect(b"@");
        client.cram_in(atsign, secret);
        client
    };
    (
        connect(0, "@alice", &secrets[0]),
        connect(1, "@bob", &secrets[1]),
    )
}

/// `at-server serve` with the configuration `config`.
fn serve(config: &Path) -> Running {
    Running::start(
        &workspace_binary("at-server"),
        &["--config", &config.display().to_string(), "serve"],
        &[("AT_SERVER_LOG", "warn")],
        false,
    )
}

#[test]
fn migrate_copies_atsigns_into_a_redis_cluster_over_tls_and_back_unchanged() {
    let dir = TempDir::new("redis-cluster-tls-migrate");
    let files = TlsFiles::make(&dir.path().join("redis-tls"));
    let redis = RedisCluster::start_tls(&files);
    let cluster = Cluster::start(dir.path());
    let ca = cluster.ca();
    let (mut server, secrets) = cluster.server_hosting("node", &["@alice", "@bob"], "");
    server.start();
    let (mut alice, mut bob) = owners(server.port, &ca, &secrets);
    for update in [
        "update:phone@alice +1 555",
        "update:public:email@alice alice@example.com",
        "update:@bob:plan@alice meet at noon",
        "update:ttl:600000:temporary@alice soon gone",
        "update:gone@alice 1",
    ] {
        let reply = alice.reply_to(update, AT_ALICE);
        assert!(reply.starts_with("data:"), "{update}: {reply}");
    }
    assert!(alice
        .reply_to("delete:gone@alice", AT_ALICE)
        .starts_with("data:"));
    let sent = alice.reply_to("notify:update:@bob:news@alice:hello bob", AT_ALICE);
    let sent = sent.strip_prefix("data:").expect("a notification id");
    eventually(|| bob.reply_to("notify:list", AT_BOB).contains("hello bob"));
    let before = seen(&mut alice, &mut bob, sent);
    assert!(
        before[0].contains("+1 555") && before[0].contains("gone@alice"),
        "{}",
        before[0]
    );
    server.stop();

    let config = server.config_path();
    let path = |p: &Path| p.display().to_string();
    let seeds = redis.urls().join(",");
    let out = run(
        &workspace_binary("at-server"),
        &[
            "--config",
            &path(&config),
            "migrate",
            "--to-redis-cluster",
            &seeds,
            "--to-redis-ca-file",
            &path(&files.ca),
            "--to-redis-client-cert-file",
            &path(&files.client.0),
            "--to-redis-client-key-file",
            &path(&files.client.1),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let migrated: Vec<&str> = stdout.lines().collect();
    assert_eq!(migrated.len(), 2, "{stdout}");
    assert!(migrated.iter().any(|l| l.starts_with("migrated @alice: ")));
    assert!(migrated.iter().any(|l| l.starts_with("migrated @bob: ")));

    // A node on the cluster (the same node, its store switched) serves them as they were:
    // from the cluster, the embedded store being gone.
    let embedded = server.tls_dir().with_file_name("store");
    std::fs::remove_dir_all(&embedded).expect("the embedded store");
    let text = std::fs::read_to_string(&config).unwrap();
    let on_cluster = dir.path().join("on-cluster.toml");
    std::fs::write(&on_cluster, format!("{text}\n{}", redis.store_section())).unwrap();
    let node = serve(&on_cluster);
    let (mut alice, mut bob) = owners(server.port, &ca, &secrets);
    assert_eq!(seen(&mut alice, &mut bob, sent), before);
    node.stop();

    // Back, the cluster named as the node's store (`--redis-cluster`, its TLS files from the
    // environment), into a new data directory; a node there serves them as they were too.
    let back = dir.path().join("back");
    let store_files = [
        ("AT_SERVER__STORE__REDIS_CA_FILE", path(&files.ca)),
        (
            "AT_SERVER__STORE__REDIS_CLIENT_CERT_FILE",
            path(&files.client.0),
        ),
        (
            "AT_SERVER__STORE__REDIS_CLIENT_KEY_FILE",
            path(&files.client.1),
        ),
    ];
    let envs: Vec<(&str, &str)> = store_files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(
        &workspace_binary("at-server"),
        &[
            "--config",
            &path(&config),
            "--redis-cluster",
            &seeds,
            "migrate",
            "--to",
            &path(&back),
        ],
        &envs,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let returned = dir.path().join("returned.toml");
    let moved: Vec<String> = text
        .lines()
        .map(|line| match line.starts_with("data_dir =") {
            true => format!("data_dir = {:?}", path(&back)),
            false => line.to_string(),
        })
        .collect();
    std::fs::write(&returned, moved.join("\n")).unwrap();
    let node = serve(&returned);
    let (mut alice, mut bob) = owners(server.port, &ca, &secrets);
    assert_eq!(seen(&mut alice, &mut bob, sent), before);
    node.stop();

    // Without the cluster's CA, its certificates are not trusted: nothing starts.
    let untrusted = dir.path().join("untrusted.toml");
    let section = redis.store_section();
    let section: Vec<&str> = section
        .lines()
        .filter(|l| !l.starts_with("redis_ca_file"))
        .collect();
    std::fs::write(&untrusted, format!("{text}\n{}\n", section.join("\n"))).unwrap();
    let out = run(
        &workspace_binary("at-server"),
        &["--config", &path(&untrusted), "list"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("certificate") || stderr.contains("tls"),
        "says why: {stderr}"
    );
}
