//! Server-to-server over real TLS: two atServers, each with its own store and its own
//! certificate issued by one cluster CA (`at-server ca-create`), found through one atDirectory.
//! @alice lives on server A, @bob on server B.
//!
//! - @bob's `lookup:phone@alice` goes from B to A as `from:@bob` + `pol`; A checks the claim by
//!   calling back B (`lookup:_<session>@bob`, `lookup:signing_publickey@bob`) and serves
//!   `@bob:phone@alice`; B caches it (`ttr`), serves the cache, `bypassCache` goes to A again;
//! - `scan:@alice` lists, over the same pol link, what @alice shared with @bob;
//! - `plookup` reads A's public keys without pol and caches them;
//! - `from:@bob` without a client certificate naming @bob's server is AT0401; a forged `pol`
//!   (a certificate, but nobody signed the challenge) is refused with AT0401, connection open;
//! - with A stopped, a lookup is AT0007 and B's client connection stays open.
//!
//! All of it twice: each server on its embedded store, and each on a Redis of its own.

use std::time::Duration;

use at_tests::client::{line_without_time, Client};
use at_tests::servers::{eventually, AliceAndBob, Cluster, Store};
use at_tests::TempDir;

/// Server settings of this test: quick to give up on a peer, quick to retry a delivery.
const QUICK: &str = "peer_timeout_millis = 3000\nnotification_retry_max_millis = 1000";

#[test]
fn atsigns_on_two_servers_share_keys_over_pol_on_embedded_stores() {
    atsigns_on_two_servers_share_keys_over_pol(Store::Embedded);
}

#[test]
fn atsigns_on_two_servers_share_keys_over_pol_each_on_its_own_redis() {
    atsigns_on_two_servers_share_keys_over_pol(Store::OwnRedis);
}

fn atsigns_on_two_servers_share_keys_over_pol(store: Store) {
    let dir = TempDir::new("peers");
    let AliceAndBob {
        cluster: _cluster,
        ca,
        mut a,
        mut b,
        alice_secret: _,
        bob_secret,
        mut alice,
        mut bob,
    } = AliceAndBob::start_on(dir.path(), QUICK, QUICK, store);
    let (at_alice, at_bob) = ("\n@alice@", "\n@bob@");

    assert!(alice
        .reply_to("update:ttr:-1:@bob:phone@alice 123", at_alice)
        .starts_with("data:"));
    assert!(alice
        .reply_to("update:public:location@alice paris", at_alice)
        .starts_with("data:"));

    // From B to A with pol; A calls B back to check the signature.
    assert_eq!(bob.reply_to("lookup:phone@alice", at_bob), "data:123");
    assert_eq!(
        bob.reply_to("llookup:cached:@bob:phone@alice", at_bob),
        "data:123",
        "ttr -1: cached on B"
    );
    let all = bob.reply_to("lookup:all:phone@alice", at_bob);
    assert!(
        all.starts_with(
            r#"data:{"key":"@bob:phone@alice","data":"123","metaData":{"createdBy":"@alice""#
        ),
        "{all}"
    );
    // What A lists to @bob: what @alice shared with him, asked over the same pol link.
    assert_eq!(
        bob.reply_to("scan:@alice", at_bob),
        "data:[\"phone@alice\"]"
    );
    assert_eq!(bob.reply_to("scan:@alice fax", at_bob), "data:[]");
    let signing_key = bob.reply_to("llookup:public:signing_publickey@bob", at_bob);
    assert!(
        signing_key.starts_with("data:MII"),
        "B made @bob's signing key: {signing_key}"
    );

    // The cache answers until bypassed. Meanwhile @bob blocks @alice, so that the autoNotify
    // of her new value cannot refresh his copy first (it is retried until he unblocks her).
    assert_eq!(
        bob.reply_to("config:block:add:@alice", at_bob),
        "data:success"
    );
    assert!(alice
        .reply_to("update:ttr:-1:@bob:phone@alice 456", at_alice)
        .starts_with("data:"));
    assert_eq!(bob.reply_to("lookup:phone@alice", at_bob), "data:123");
    assert_eq!(
        bob.reply_to("lookup:bypassCache:true:phone@alice", at_bob),
        "data:456"
    );
    assert_eq!(bob.reply_to("lookup:phone@alice", at_bob), "data:456");
    assert_eq!(
        bob.reply_to("config:block:remove:@alice", at_bob),
        "data:success"
    );

    // Public keys: no pol, cached for a day.
    assert_eq!(bob.reply_to("plookup:location@alice", at_bob), "data:paris");
    assert_eq!(
        bob.reply_to("llookup:cached:public:location@alice", at_bob),
        "data:paris"
    );
    // B keeps both links to A open: @bob's pol'd one and the anonymous one for plookup.
    assert_eq!(
        bob.reply_to("stats:2", at_bob),
        "data: [{\"id\":\"2\",\"name\":\"activeOutboundConnections\",\"value\":\"2\"}]"
    );
    // What A does not have, in A's words.
    assert_eq!(
        bob.reply_to("lookup:fax@alice", at_bob),
        "error:AT0015-key not found : Exception: @bob:fax@alice does not exist in keystore"
    );

    // Claiming to be @bob without a certificate for @bob's server.
    let mut stranger = a.connect(&ca);
    assert_eq!(
        stranger.reply_to("from:@bob", "\n@"),
        "error:AT0401-Exception: Certificate Verification Failed"
    );
    // With one (here: B's own), but without @bob's server's signature.
    let b_tls = b.tls_dir();
    let mut forger = Client::tls_with_certificate(
        a.addr(),
        &ca,
        "127.0.0.1",
        &b_tls.join("cert.pem"),
        &b_tls.join("key.pem"),
    );
    forger.expect(b"@");
    let proof = forger.reply_to("from:@bob", "\n@");
    assert!(proof.starts_with("data:proof:_"), "{proof}");
    assert_eq!(
        forger.reply_to("pol", "\n@"),
        "error:AT0401-Exception: Pol Authentication Failed"
    );
    // Still open, still unauthenticated: only public keys.
    assert_eq!(
        forger.reply_to("lookup:location@alice", "\n@"),
        "data:paris"
    );
    assert_eq!(
        forger.reply_to("lookup:phone@alice", "\n@"),
        "error:AT0015-Exception: public:phone@alice does not exist in keystore"
    );

    // Notifications from A reach @bob's monitor on B. The two updates above told @bob too
    // (autoNotify), in the background: let them arrive first.
    eventually(|| {
        let received = bob.reply_to("notify:list:phone", at_bob);
        received.matches("\"key\":\"@bob:phone@alice\"").count() == 2
    });
    let mut monitor = b.connect(&ca);
    monitor.cram_in("@bob", &bob_secret);
    monitor.send(b"monitor\n");
    assert_eq!(
        alice.reply_to(
            "notify:id:hello-1:update:messageType:text:@bob:hello",
            at_alice
        ),
        "data:hello-1"
    );
    assert_eq!(
        line_without_time(&monitor.next_line()),
        "notification: {\"id\":\"hello-1\",\"from\":\"@alice\",\"to\":\"@bob\",\"key\":\"@bob:hello\",\
         \"value\":null,\"operation\":\"update\",\"epochMillis\":<time>,\"messageType\":\"MessageType.text\",\
         \"isEncrypted\":false,\"metadata\":{\"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":null,\
         \"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
    );
    eventually(|| alice.reply_to("notify:status:hello-1", at_alice) == "data:delivered");

    // autoNotify: @alice's update reaches @bob's monitor and refreshes B's cached copy ...
    assert!(alice
        .reply_to("update:ttr:-1:ccd:true:@bob:phone@alice 789", at_alice)
        .starts_with("data:"));
    let line = monitor.next_line();
    assert!(
        line.contains("\"from\":\"@alice\",\"to\":\"@bob\",\"key\":\"@bob:phone@alice\",\"value\":\"789\",\"operation\":\"update\""),
        "{line}"
    );
    eventually(|| bob.reply_to("llookup:cached:@bob:phone@alice", at_bob) == "data:789");
    // ... and its delete (ccd) removes the copy.
    assert!(alice
        .reply_to("delete:@bob:phone@alice", at_alice)
        .starts_with("data:"));
    let line = monitor.next_line();
    assert!(
        line.contains("\"key\":\"@bob:phone@alice\",\"value\":null,\"operation\":\"delete\""),
        "{line}"
    );
    eventually(|| {
        bob.reply_to("llookup:cached:@bob:phone@alice", at_bob)
            == "error:AT0015-key not found : cached:@bob:phone@alice does not exist in keystore"
    });

    // B is down when @alice notifies: queued, delivered once B is back.
    drop(monitor);
    b.stop();
    assert_eq!(
        alice.reply_to(
            "notify:id:later-1:update:messageType:text:@bob:later",
            at_alice
        ),
        "data:later-1"
    );
    // strategy:latest: of what waits for B from one notifier, only the newest goes.
    for n in 1..=3 {
        let line = format!(
            "notify:id:latest-{n}:update:messageType:text:strategy:latest:notifier:app:@bob:latest{n}"
        );
        assert_eq!(alice.reply_to(&line, at_alice), format!("data:latest-{n}"));
    }
    // One already being sent when a newer one came is expired once its attempt fails.
    for superseded in ["latest-1", "latest-2"] {
        let status = format!("notify:status:{superseded}");
        eventually(|| alice.reply_to(&status, at_alice) == "data:expired");
    }
    std::thread::sleep(Duration::from_millis(700));
    let status = alice.reply_to("notify:status:later-1", at_alice);
    assert!(
        status == "data:errored" || status == "data:queued",
        "{status}"
    );
    b.start();
    eventually(|| alice.reply_to("notify:status:later-1", at_alice) == "data:delivered");
    eventually(|| alice.reply_to("notify:status:latest-3", at_alice) == "data:delivered");
    let mut monitor = b.connect(&ca);
    monitor.cram_in("@bob", &bob_secret);
    monitor.send(b"monitor:0 late\n");
    // Both replayed (they may come in one read), the superseded ones not at all.
    let mut replayed = String::new();
    while replayed.lines().count() < 2 {
        replayed.push_str(&monitor.next_line());
    }
    let ids: Vec<&str> = replayed
        .lines()
        .map(|line| {
            let at = line.find("\"id\":\"").expect("an id") + 6;
            &line[at..at + line[at..].find('"').unwrap()]
        })
        .collect();
    assert_eq!(ids, ["later-1", "latest-3"], "{replayed}");
    monitor.expect_silence(Duration::from_millis(300));
    let mut bob = b.connect(&ca);
    bob.cram_in("@bob", &bob_secret);

    // A goes away: B says so and keeps the client's connection; the cache still answers.
    assert!(alice
        .reply_to("update:ttr:-1:@bob:phone@alice 999", at_alice)
        .starts_with("data:"));
    assert_eq!(
        bob.reply_to("lookup:bypassCache:true:phone@alice", at_bob),
        "data:999"
    );
    a.stop();
    let down = bob.reply_to("lookup:bypassCache:true:phone@alice", at_bob);
    assert!(down.starts_with("error:AT0007-"), "{down}");
    assert_eq!(
        bob.reply_to("lookup:phone@alice", at_bob),
        "data:999",
        "cache"
    );
    assert_eq!(bob.reply_to("noop:0", at_bob), "data:ok");
    b.stop();
}

/// `peer_client_cert_file`: B presents that certificate to A instead of the one it serves. One
/// that does not name B's host gets `from:@bob` refused by A; one that does (from the same
/// CA) lets @bob read what @alice shared.
#[test]
fn a_node_presents_its_own_peer_client_certificate_when_given_one() {
    let dir = TempDir::new("peers-client-cert");
    let cluster = Cluster::start(dir.path());
    let (ca, ca_key) = (cluster.ca(), dir.path().join("ca/ca-key.pem"));
    let issue = |name: &str, host: &str| {
        let out = dir.path().join(name);
        at_common::tls::issue(&out, &[host.to_string()], &ca, &ca_key).unwrap();
        out
    };
    let (wrong, right) = (
        issue("wrong", "elsewhere.example"),
        issue("right", "127.0.0.1"),
    );
    let with_client = |files: &std::path::Path| {
        format!(
            // (A short drain: A's links to B would hold B's restart for the default grace.)
            "{QUICK}\nshutdown_grace_millis = 1000\n\
             peer_client_cert_file = \"{}\"\npeer_client_key_file = \"{}\"",
            files.join("cert.pem").display(),
            files.join("key.pem").display()
        )
    };
    let (mut a, alice_secret) = cluster.server("a", "@alice", QUICK);
    let (mut b, bob_secret) = cluster.server("b", "@bob", &with_client(&wrong));
    a.start();
    b.start();
    let mut alice = a.connect(&ca);
    alice.cram_in("@alice", &alice_secret);
    assert!(alice
        .reply_to("update:@bob:phone@alice 123", "\n@alice@")
        .starts_with("data:"));

    let mut bob = b.connect(&ca);
    bob.cram_in("@bob", &bob_secret);
    let refused = bob.reply_to("lookup:phone@alice", "\n@bob@");
    assert!(
        refused.starts_with("error:"),
        "A refused B's client certificate: {refused}"
    );
    drop(bob);

    b.stop();
    let config = std::fs::read_to_string(b.config_path()).unwrap();
    let wrong_dir = wrong.display().to_string();
    std::fs::write(
        b.config_path(),
        config.replace(&wrong_dir, &right.display().to_string()),
    )
    .unwrap();
    b.start();
    let mut bob = b.connect(&ca);
    bob.cram_in("@bob", &bob_secret);
    assert_eq!(bob.reply_to("lookup:phone@alice", "\n@bob@"), "data:123");
}
