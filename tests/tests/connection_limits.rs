//! Fair connection limits, over TLS against the real binary hosting @alice and @bob: one
//! source, one atSign's owner or a crowd of unauthenticated connections cannot take the room
//! the others need.
//!
//! - one source address holds at most `unauthenticated_per_source_limit` unauthenticated
//!   connections; the next gets `error:AT0012-Inbound connection limit exceeded` and is closed,
//!   while another address is served;
//! - a full unauthenticated pool makes room for a newcomer by closing its oldest member, so
//!   the owner still gets in and authenticates;
//! - an atSign's owner connections are bounded per atSign (`inbound_max_limit`): a full pool
//!   of connections in use refuses the next owner (AT0012), one idle 5 s gives way, and the
//!   other atSign is not affected;
//! - a node whose limit is held by one atSign's connections still admits another atSign's
//!   owner: the largest pool's idlest member (idle 5 s) gives way to it;
//! - an unauthenticated connection is closed after `inbound_idle_time_millis`; an
//!   authenticated one is not.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use at_tests::client::Client;
use at_tests::servers::{Cluster, Server};
use at_tests::TempDir;

const LIMIT_LINE: &str = "error:AT0012-Inbound connection limit exceeded\n";

struct Scene {
    server: Server,
    ca: std::path::PathBuf,
    secrets: Vec<String>,
    _cluster: Cluster,
    _dir: TempDir,
}

impl Scene {
    fn start(label: &str, extra: &str) -> Scene {
        let dir = TempDir::new(label);
        let cluster = Cluster::start(dir.path());
        let (mut server, secrets) = cluster.server_hosting("node", &["@alice", "@bob"], extra);
        server.start();
        Scene {
            ca: cluster.ca(),
            server,
            secrets,
            _cluster: cluster,
            _dir: dir,
        }
    }

    /// A connection to the `n`th atSign's port from `source`, as it arrives (the `@` prompt,
    /// or the limit line, is for the caller to read).
    fn connect(&self, n: u16, source: [u8; 4]) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.server.port + n));
        Client::tls_from(IpAddr::from(source), addr, &self.ca, "127.0.0.1")
    }

    /// An owner connection of @alice (n 0) or @bob (n 1), logged in.
    fn owner(&self, n: u16, source: [u8; 4]) -> Client {
        let mut client = self.connect(n, source);
        client.expect(b"@");
        let atsign = ["@alice", "@bob"][usize::from(n)];
        client.cram_in(atsign, &self.secrets[usize::from(n)]);
        client
    }
}

impl Scene {
    /// The `n`th atSign's owner connects and proves itself, and is refused for `why` (AT0012)
    /// and closed.
    fn refused_after_proof(&self, n: u16, why: &str) {
        let atsign = ["@alice", "@bob"][usize::from(n)];
        let mut client = self.connect(n, [127, 0, 0, 1]);
        client.expect(b"@");
        client.send(format!("from:{atsign}\n").as_bytes());
        let challenge = client.read_until(b"\n@");
        let challenge = challenge
            .strip_prefix("data:")
            .and_then(|c| c.strip_suffix("\n@"))
            .expect("a challenge")
            .to_string();
        let digest = at_tests::client::cram_digest(&self.secrets[usize::from(n)], &challenge);
        client.send(format!("cram:{digest}\n").as_bytes());
        client.expect(
            format!("error:AT0012-Inbound connection limit exceeded : {why}\n{atsign}@").as_bytes(),
        );
        client.expect_closed(Duration::from_secs(5));
    }
}

fn refused(client: &mut Client) {
    client.expect(LIMIT_LINE.as_bytes());
    client.expect_closed(Duration::from_secs(5));
}

#[test]
fn one_source_holds_its_share_of_unauthenticated_connections_and_others_are_served() {
    let scene = Scene::start("limits-source", "unauthenticated_per_source_limit = 3\n");
    let held: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = scene.connect(0, [127, 0, 0, 1]);
            c.expect(b"@");
            c
        })
        .collect();
    refused(&mut scene.connect(0, [127, 0, 0, 1]));
    // Another address is served, and its owner logs in.
    let mut owner = scene.owner(0, [127, 0, 0, 2]);
    owner.ask("noop:0\n", "data:ok\n@alice@");
    drop(held);
}

#[test]
fn a_full_unauthenticated_pool_makes_room_for_a_newcomer_by_closing_its_oldest() {
    let scene = Scene::start("limits-pool", "unauthenticated_max_limit = 4\n");
    let mut oldest = scene.connect(0, [127, 0, 0, 1]);
    oldest.expect(b"@");
    let _others: Vec<Client> = (2..5)
        .map(|n| {
            let mut c = scene.connect(0, [127, 0, 0, n]);
            c.expect(b"@");
            c
        })
        .collect();
    // The owner comes fifth: in, and logged in.
    let mut owner = scene.owner(0, [127, 0, 0, 9]);
    owner.ask("noop:0\n", "data:ok\n@alice@");
    oldest.expect_closed(Duration::from_secs(5));
}

#[test]
fn an_atsigns_owner_connections_are_bounded_per_atsign_and_idle_ones_give_way() {
    let scene = Scene::start("limits-owner", "inbound_max_limit = 2\n");
    let mut first = scene.owner(0, [127, 0, 0, 1]);
    let mut second = scene.owner(0, [127, 0, 0, 1]);
    // Both just used: the third owner connection is refused after its proof.
    scene.refused_after_proof(0, "an atSign's connections are all in use");
    // @bob's owner pool is his own.
    let mut bob = scene.owner(1, [127, 0, 0, 1]);
    bob.ask("noop:0\n", "data:ok\n@bob@");
    // Once one of @alice's has been idle past 5 s, a newcomer takes its place.
    std::thread::sleep(Duration::from_secs(6));
    second.ask("noop:0\n", "data:ok\n@alice@");
    let mut fourth = scene.owner(0, [127, 0, 0, 1]);
    fourth.ask("noop:0\n", "data:ok\n@alice@");
    first.expect_closed(Duration::from_secs(5));
    second.ask("noop:0\n", "data:ok\n@alice@");
}

/// The node's limit (4 here; one place kept for connections proving themselves) is held by
/// @alice's connections: @bob, under his own limit, still connects; his proof is refused while
/// all of hers are in use, and once one has been idle 5 s it gives way to him.
#[test]
fn a_full_node_admits_an_atsign_under_its_own_limit_once_the_largest_pool_has_an_idle_member() {
    let scene = Scene::start(
        "limits-node",
        "max_connections = 4\nunauthenticated_max_limit = 1\ninbound_max_limit = 10\n",
    );
    let mut alices: Vec<Client> = (0..3).map(|_| scene.owner(0, [127, 0, 0, 1])).collect();
    scene.refused_after_proof(1, "the node's connections are all in use");
    std::thread::sleep(Duration::from_secs(6));
    for alice in &mut alices[1..] {
        alice.ask("noop:0\n", "data:ok\n@alice@");
    }
    let mut bob = scene.owner(1, [127, 0, 0, 1]);
    bob.ask("noop:0\n", "data:ok\n@bob@");
    alices[0].expect_closed(Duration::from_secs(5));
    for alice in &mut alices[1..] {
        alice.ask("noop:0\n", "data:ok\n@alice@");
    }
}

/// An authenticated connection has its own, longer idle limit: one that keeps asking stays,
/// one that goes quiet is closed once past it.
#[test]
fn an_authenticated_connection_is_closed_after_its_own_longer_idle_limit() {
    let scene = Scene::start(
        "limits-idle-owner",
        "inbound_idle_time_millis = 300\nauthenticated_idle_time_millis = 1500\n",
    );
    let mut quiet = scene.owner(0, [127, 0, 0, 1]);
    let mut busy = scene.owner(0, [127, 0, 0, 1]);
    // Past the unauthenticated limit, within the authenticated one: both still answer.
    std::thread::sleep(Duration::from_millis(700));
    quiet.ask("noop:0\n", "data:ok\n@alice@");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(400));
        busy.ask("noop:0\n", "data:ok\n@alice@");
    }
    quiet.expect_closed(Duration::from_secs(5));
    busy.ask("noop:0\n", "data:ok\n@alice@");
}

#[test]
fn an_unauthenticated_connection_is_closed_when_idle_an_authenticated_one_is_not() {
    let scene = Scene::start("limits-idle", "inbound_idle_time_millis = 500\n");
    let mut anonymous = scene.connect(0, [127, 0, 0, 1]);
    anonymous.expect(b"@");
    let mut owner = scene.owner(0, [127, 0, 0, 1]);
    anonymous.expect_closed(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    owner.ask("noop:0\n", "data:ok\n@alice@");
}
