//! Links to other atServers are kept for reuse, "at most `outbound_max_limit` per node (least
//! recently used closed)" (README, "Between atServers").
//!
//! @alice's server runs with `outbound_max_limit = 2`; @p1, @p2 and @p3 live on fake servers
//! (`at_tests::fake_peer`) that answer `plookup` and count the connections they accept and the
//! ones @alice's server closes. A lookup on a link already open reuses it (no new
//! connection); a third link closes the least recently used of the two open ones, not the
//! oldest one made, and leaves the other open.

use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::fake_peer::{self, Answer, FakePeer};
use at_tests::servers::Cluster;
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";

/// A fake server for `atsign` that answers `lookup:all:<key>` with a public key's value.
fn answering(
    cluster: &Cluster,
    tls: &std::sync::Arc<rustls::ServerConfig>,
    atsign: &str,
) -> FakePeer {
    let owner = atsign.to_string();
    let peer = FakePeer::start(
        tls.clone(),
        fake_peer::welcoming(atsign, move |line| match line.strip_prefix("lookup:all:") {
            Some(key) => Answer::Reply(format!(
                "data:{{\"key\":\"public:{key}\",\"data\":\"value of {key}\",\"metaData\":{{}}}}"
            )),
            None => Answer::Reply(format!(
                "error:AT0003-Invalid syntax : {owner} fakes lookups"
            )),
        }),
    );
    cluster.register(atsign, peer.addr);
    peer
}

/// `plookup:<key>` on @alice's connection answers the fake's value.
fn plookup(alice: &mut Client, key: &str) {
    assert_eq!(
        alice.reply_to(&format!("plookup:{key}"), AT_ALICE),
        format!("data:value of {key}"),
        "plookup:{key}"
    );
}

/// Waits (at most 10 s) until `check` holds.
fn within_10_s(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn past_outbound_max_limit_the_least_recently_used_link_is_closed() {
    let dir = TempDir::new("peer-links");
    let cluster = Cluster::start(dir.path());
    let (mut server, secret) = cluster.server(
        "a",
        "@alice",
        "outbound_max_limit = 2\npeer_timeout_millis = 3000",
    );
    server.start();
    let tls = fake_peer::tls_of(&server.tls_dir());
    let [p1, p2, p3] = ["@p1", "@p2", "@p3"].map(|atsign| answering(&cluster, &tls, atsign));
    let mut alice = server.connect(&cluster.ca());
    alice.cram_in("@alice", &secret);
    let links = |peer: &FakePeer| (peer.accepted(), peer.closed_by_client());

    plookup(&mut alice, "k1@p1");
    plookup(&mut alice, "k1@p2");
    // Reused: no new connection; @p1's link is now the most recently used.
    plookup(&mut alice, "k2@p1");
    assert_eq!((links(&p1), links(&p2)), ((1, 0), (1, 0)));

    // A third link: @p2's, the least recently used, is closed; @p1's stays.
    plookup(&mut alice, "k1@p3");
    within_10_s("@p2's link closed", || p2.closed_by_client() == 1);
    assert_eq!((links(&p1), links(&p3)), ((1, 0), (1, 0)));
    plookup(&mut alice, "k3@p1");
    assert_eq!(links(&p1), (1, 0), "@p1's link was kept and reused");

    // @p2 again: a new link, and now @p3's is the least recently used.
    plookup(&mut alice, "k2@p2");
    assert_eq!(links(&p2), (2, 1));
    within_10_s("@p3's link closed", || p3.closed_by_client() == 1);
    assert_eq!(links(&p1), (1, 0));
    assert_eq!(
        alice.reply_to("stats:2", AT_ALICE),
        "data: [{\"id\":\"2\",\"name\":\"activeOutboundConnections\",\"value\":\"2\"}]"
    );
}
