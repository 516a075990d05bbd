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

use at_tests::process::{run, workspace_binary};
use at_tests::servers::{Cluster, Store};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";

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
