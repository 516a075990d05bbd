//! Hostile input from an owner, an anonymous client or another atSign cannot stop a node or
//! poison a record: over TLS against the real binary hosting @alice and @bob, on the embedded
//! store and on Redis. Each hostile request gets its documented error, and afterwards both
//! atSigns still read and write.
//!
//! - keys and ids far past any stored key's length (70 000 characters) are refused by the
//!   grammar (AT0016 for keys, AT0003 for ids), whoever sends them, before a store sees them;
//! - a time that leads past any date (`ttl:9223372036854775807`) is refused (AT0003), never
//!   wrapped, so no record holds a date it cannot read back; `scan` and `sync` keep working;
//! - what another atSign makes @bob store is bounded and lower-cased: a key too long to cache
//!   is refused by @bob's server, a far-off time too, a `ttln` is cut to 30 days, and a
//!   cached copy of a mixed-case key is stored lower-cased, so @bob's owner can delete it;
//! - a flooding sender is paced, never refused, and another sender is not held behind it;
//! - unfinished requests share the node's `buffer_budget`: once clients holding long partial
//!   lines fill it, another long line is refused (AT0005, closed) while short commands are
//!   served as ever, and a line that ends gives its room back.

use std::time::Duration;

use at_tests::client::Client;
use at_tests::servers::{eventually, Cluster, Server, Store};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";
const AT_BOB: &str = "\n@bob@";
/// Far longer than any key or id, and than the 64 KiB an embedded store's key may have.
const HUGE: usize = 70_000;

/// One node hosting @alice and @bob with a line limit that lets huge keys through the codec,
/// with an owner connection of each.
struct Scene {
    alice: Client,
    bob: Client,
    server: Server,
    ca: std::path::PathBuf,
    secrets: Vec<String>,
    _cluster: Cluster,
    _dir: TempDir,
}

impl Scene {
    fn start(store: Store) -> Scene {
        Scene::start_with(store, "")
    }

    /// [`Scene::start`] with `more` top-level options.
    fn start_with(store: Store, more: &str) -> Scene {
        let dir = TempDir::new("hostile-input");
        let cluster = Cluster::start(dir.path());
        let extra = format!(
            "buffer_limit = 300000\noutbound_idle_time_millis = 1000\n\
             notification_retry_max_millis = 1000\n{more}"
        );
        let (mut server, secrets) =
            cluster.server_hosting_on("node", &["@alice", "@bob"], &extra, store);
        server.start();
        let ca = cluster.ca();
        let mut alice = server.connect(&ca);
        alice.cram_in("@alice", &secrets[0]);
        let mut bob = connect_to(&server, 1, &ca);
        bob.cram_in("@bob", &secrets[1]);
        Scene {
            alice,
            bob,
            server,
            ca,
            secrets,
            _cluster: cluster,
            _dir: dir,
        }
    }

    /// An unauthenticated connection to @alice's server.
    fn anyone(&self) -> Client {
        self.server.connect(&self.ca)
    }

    /// Both atSigns still write and read, each on a new connection too.
    fn both_still_serve(&mut self, round: &str) {
        for (n, atsign, prompt) in [(0, "@alice", AT_ALICE), (1, "@bob", AT_BOB)] {
            let mut fresh = connect_to(&self.server, n, &self.ca);
            fresh.cram_in(atsign, &self.secrets[n as usize]);
            let key = format!("probe.{round}{atsign}");
            let written = fresh.reply_to(&format!("update:{key} {round}"), prompt);
            assert!(written.starts_with("data:"), "{atsign} {round}: {written}");
            assert_eq!(
                fresh.reply_to(&format!("llookup:{key}"), prompt),
                format!("data:{round}")
            );
        }
        for (client, prompt) in [(&mut self.alice, AT_ALICE), (&mut self.bob, AT_BOB)] {
            assert!(client.reply_to("scan", prompt).starts_with("data:["));
            assert!(client
                .reply_to("sync:from:-1:limit:10", prompt)
                .starts_with("data:"));
        }
    }
}

/// A connection to the `n`th atSign's own port, past the `@` prompt.
fn connect_to(server: &Server, n: u16, ca: &std::path::Path) -> Client {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port + n));
    let mut client = Client::tls_named(addr, ca, "127.0.0.1");
    client.expect(b"@");
    client
}

fn huge_keys_and_ids_are_refused_whoever_sends_them(scene: &mut Scene) {
    let key = "k".repeat(HUGE);
    let too_long = format!(
        "error:AT0016-Invalid key : Key length {} exceeds the maximum allowed length of 255",
        HUGE + "@alice".len()
    );
    // Before authentication errors read `Exception:` (the reference's two error forms).
    let mut anyone = scene.anyone();
    anyone.ask(
        &format!("lookup:{key}@alice\n"),
        &format!("{}\n@", too_long.replace("Invalid key :", "Exception:")),
    );
    for line in [
        format!("llookup:{key}@alice"),
        format!("update:{key}@alice v"),
        format!("delete:{key}@alice"),
        format!("notify:update:@bob:{key}@alice:v"),
    ] {
        let reply = scene.alice.reply_to(&line, AT_ALICE);
        assert_eq!(reply, too_long, "{}", &line[..12]);
    }
    let id = "a".repeat(HUGE);
    for line in [
        format!("notify:remove:{id}"),
        format!("notify:status:{id}"),
        format!("notify:id:{id}:update:@bob:key@alice:v"),
    ] {
        let reply = scene.alice.reply_to(&line, AT_ALICE);
        assert_eq!(
            reply,
            "error:AT0003-Invalid syntax : an id is at most 255 characters",
            "{}",
            &line[..12]
        );
    }
    // Parameters that cannot be an enrollment's are refused as malformed JSON is: AT0011,
    // which closes the connection.
    let approve = format!("enroll:approve:{{\"enrollmentId\":\"{id}\"}}");
    scene.alice.ask(
        &format!("{approve}\n"),
        "error:AT0011-Internal server exception : \
         FormatException: enrollmentId is at most 255 characters\n@alice@",
    );
    scene.alice.expect_closed(Duration::from_secs(5));
    scene.alice = connect_to(&scene.server, 0, &scene.ca);
    scene.alice.cram_in("@alice", &scene.secrets[0]);
    let mut anyone = scene.anyone();
    anyone.send(b"from:@alice\n");
    let _challenge = anyone.read_until(b"\n@");
    anyone.ask(
        &format!("pkam:enrollmentId:{id}:c2ln\n"),
        "error:AT0003-Exception: an id is at most 255 characters\n@",
    );
    scene.both_still_serve("keys");
}

fn times_past_any_date_are_refused_never_wrapped(scene: &mut Scene) {
    assert_eq!(
        scene
            .alice
            .reply_to("update:ttl:9223372036854775807:n2@alice v", AT_ALICE),
        "error:AT0003-Invalid syntax : ttl of 9223372036854775807 ms is out of range"
    );
    // Within the grammar's bound, but past any date once added to the clock.
    assert_eq!(
        scene
            .alice
            .reply_to("update:ttl:8640000000000000:n3@alice v", AT_ALICE),
        "error:AT0003-Invalid syntax : ttl of 8640000000000000 ms is out of range"
    );
    assert_eq!(
        scene
            .alice
            .reply_to("update:ttr:8640000000000:n4@alice v", AT_ALICE),
        "error:AT0003-Invalid syntax : ttr of 8640000000000 s is out of range"
    );
    assert_eq!(
        scene.alice.reply_to("llookup:n2@alice", AT_ALICE),
        "error:AT0015-key not found : n2@alice does not exist in keystore"
    );
    scene.both_still_serve("times");
}

fn what_another_atsign_makes_bob_store_is_bounded_and_lower_cased(scene: &mut Scene) {
    // Too long to cache at @bob's (`cached:@bob:<key>@alice` past 255): refused there, so
    // never delivered; nothing of it is stored.
    let long = "l".repeat(240);
    let id = notified(scene.alice.reply_to(
        &format!("notify:update:ttr:-1:@bob:{long}@alice:v"),
        AT_ALICE,
    ));
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(
        scene
            .alice
            .reply_to(&format!("notify:status:{id}"), AT_ALICE),
        "data:delivered"
    );
    // A ttl that is a time but leads past any date at @bob's: refused there too.
    let id = notified(scene.alice.reply_to(
        "notify:update:ttr:-1:ttl:8640000000000000:@bob:far.k@alice:v",
        AT_ALICE,
    ));
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(
        scene
            .alice
            .reply_to(&format!("notify:status:{id}"), AT_ALICE),
        "data:delivered"
    );
    assert_eq!(
        scene
            .bob
            .reply_to("llookup:cached:@bob:far.k@alice", AT_BOB),
        "error:AT0015-key not found : cached:@bob:far.k@alice does not exist in keystore"
    );
    // A ttln past 30 days is kept 30 days.
    let id = notified(scene.alice.reply_to(
        "notify:update:ttln:18446744073709551615:@bob:ttln.k@alice:v",
        AT_ALICE,
    ));
    let fetch = format!("notify:fetch:{id}");
    eventually(|| scene.bob.reply_to(&fetch, AT_BOB).contains("\"expiresAt\""));
    let fetched = scene.bob.reply_to(&fetch, AT_BOB);
    let expires = fetched
        .split("\"expiresAt\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{fetched}"));
    let expires = at_common::metadata::parse_timestamp(expires).expect("a timestamp");
    let thirty_days = 30 * 24 * 60 * 60 * 1000;
    let now = at_common::metadata::now_ms();
    assert!(
        expires <= now + thirty_days && expires > now + thirty_days - 600_000,
        "{fetched}"
    );
    // A mixed-case key is cached lower-cased, and @bob's owner can delete the copy.
    notified(
        scene
            .alice
            .reply_to("notify:update:ttr:-1:@bob:MiXeD.k@alice:v", AT_ALICE),
    );
    let cached = "llookup:cached:@bob:mixed.k@alice";
    eventually(|| scene.bob.reply_to(cached, AT_BOB) == "data:v");
    assert!(scene
        .bob
        .reply_to("delete:cached:@bob:mixed.k@alice", AT_BOB)
        .starts_with("data:"));
    assert_eq!(
        scene.bob.reply_to(cached, AT_BOB),
        "error:AT0015-key not found : cached:@bob:mixed.k@alice does not exist in keystore"
    );
    assert!(!scene.bob.reply_to("scan", AT_BOB).contains("mixed"));
    scene.both_still_serve("peers");
}

fn notified(reply: String) -> String {
    reply
        .strip_prefix("data:")
        .unwrap_or_else(|| panic!("expected a notification id, got {reply:.100}"))
        .to_string()
}

/// Three clients each start a long line; the third does not fit in the node's budget.
#[test]
fn unfinished_lines_are_bounded_node_wide_and_short_commands_are_not() {
    // 64 KiB of each line are free; 240 000 bytes beyond that are the whole node's.
    let mut scene = Scene::start_with(Store::Embedded, "buffer_budget = 240000\n");
    let part = vec![b'x'; 64 * 1024 + 100_000];
    let mut first = scene.anyone();
    first.send(&part);
    let mut second = scene.anyone();
    second.send(&part);
    // Both are held (200 000 charged): neither is answered nor closed.
    first.expect_silence(Duration::from_millis(300));
    second.expect_silence(Duration::from_millis(300));
    let mut third = scene.anyone();
    third.send(&part);
    assert_eq!(
        third.read_until(b"\n@"),
        "error:AT0005-Exception: the server's request buffers are full; send it again later\n@"
    );
    third.expect_closed(Duration::from_secs(5));
    // Short commands, old and new connections, are served as ever.
    scene.both_still_serve("budget");
    // The first line ends (an unknown command: answered, kept open) and gives its room back.
    first.send(b"\n");
    assert!(first.read_until(b"\n@").starts_with("error:AT0003"));
    let mut fourth = scene.anyone();
    fourth.send(&part);
    fourth.expect_silence(Duration::from_millis(300));
    drop(second);
}

fn all(store: Store) {
    let mut scene = Scene::start(store);
    huge_keys_and_ids_are_refused_whoever_sends_them(&mut scene);
    times_past_any_date_are_refused_never_wrapped(&mut scene);
    what_another_atsign_makes_bob_store_is_bounded_and_lower_cased(&mut scene);
}

/// What another atSign sends @alice is kept within her quota, the oldest going first.
fn received_notifications_are_kept_within_the_quota(store: Store) {
    let mut scene = Scene::start_with(
        store,
        "received_notifications_max = 50\nmaintenance_interval_secs = 1\ncached_keys_max = 5\n",
    );
    let mut last = String::new();
    for n in 0..200 {
        last = notified(
            scene
                .bob
                .reply_to(&format!("notify:update:@alice:q{n}.x@bob:v{n}"), AT_BOB),
        );
    }
    let status = format!("notify:status:{last}");
    eventually(|| scene.bob.reply_to(&status, AT_BOB) == "data:delivered");
    let kept = |scene: &mut Scene| {
        let listed = scene.alice.reply_to("notify:list:q", AT_ALICE);
        listed.matches("\"id\":").count()
    };
    eventually(|| kept(&mut scene) == 50);
    let listed = scene.alice.reply_to("notify:list:q", AT_ALICE);
    // Which notifications are kept: q<n>.x@bob for each n listed.
    let kept_n: Vec<u32> = listed
        .split("q")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with(".x@bob")
                .then(|| digits.parse().ok())?
        })
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect();
    assert_eq!(kept_n.len(), 50, "{listed}");
    // The oldest went first. Received in the same millisecond, notifications are ordered by
    // their (random) ids, so around q150 a few may have gone in another order.
    assert_eq!(kept_n.last(), Some(&199), "{kept_n:?}");
    assert!(kept_n[0] >= 130, "the oldest went first: {kept_n:?}");

    // Cached copies made by @bob's notifications: 5 at most; an existing one still follows.
    for n in 0..10 {
        let line = format!("notify:update:ttr:-1:@alice:c{n}.x@bob:v{n}");
        last = notified(scene.bob.reply_to(&line, AT_BOB));
    }
    let status = format!("notify:status:{last}");
    eventually(|| scene.bob.reply_to(&status, AT_BOB) == "data:delivered");
    let cached = |scene: &mut Scene| {
        let scan = scene.alice.reply_to("scan", AT_ALICE);
        scan.matches("cached:@alice:c").count()
    };
    assert_eq!(cached(&mut scene), 5);
    let again = notified(
        scene
            .bob
            .reply_to("notify:update:ttr:-1:@alice:c0.x@bob:newer", AT_BOB),
    );
    let status = format!("notify:status:{again}");
    eventually(|| scene.bob.reply_to(&status, AT_BOB) == "data:delivered");
    assert_eq!(
        scene
            .alice
            .reply_to("llookup:cached:@alice:c0.x@bob", AT_ALICE),
        "data:newer"
    );
    assert_eq!(cached(&mut scene), 5);
    scene.both_still_serve("quota");
}

#[test]
fn received_notifications_are_kept_within_the_quota_on_the_embedded_store() {
    received_notifications_are_kept_within_the_quota(Store::Embedded);
}

#[test]
fn received_notifications_are_kept_within_the_quota_on_redis() {
    received_notifications_are_kept_within_the_quota(Store::OwnRedis);
}

#[test]
fn hostile_input_on_the_embedded_store() {
    all(Store::Embedded);
}

#[test]
fn hostile_input_on_redis() {
    all(Store::OwnRedis);
}

/// One atSign notifying as fast as it can is paced (`peer_notifications_*`): its notifications
/// are all delivered, none refused, but past its burst only at its pace; another sender's
/// notification meanwhile is not held behind them.
#[test]
fn a_flooding_sender_is_paced_and_others_are_not_held_behind_it() {
    let mut scene = Scene::start_with(
        Store::Embedded,
        "peer_notifications_per_second = 5\npeer_notifications_burst = 5\n",
    );
    let started = std::time::Instant::now();
    let ids: Vec<String> = (0..40)
        .map(|n| {
            notified(
                scene
                    .alice
                    .reply_to(&format!("notify:update:@bob:f{n}.x@alice:v"), AT_ALICE),
            )
        })
        .collect();
    let other = notified(
        scene
            .bob
            .reply_to("notify:update:@alice:other.x@bob:v", AT_BOB),
    );
    let other_status = format!("notify:status:{other}");
    eventually(|| scene.bob.reply_to(&other_status, AT_BOB) == "data:delivered");
    let last_status = format!("notify:status:{}", ids[39]);
    assert_ne!(
        scene.alice.reply_to(&last_status, AT_ALICE),
        "data:delivered",
        "@bob's one notification arrived while @alice's were still being paced"
    );
    // 5 at once, then 35 at 5 a second: the last no sooner than 7 s after the first.
    eventually(|| scene.alice.reply_to(&last_status, AT_ALICE) == "data:delivered");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(6_900),
        "all 40 within {took:?}"
    );
    let listed = scene.bob.reply_to("notify:list:f", AT_BOB);
    assert_eq!(listed.matches("\"id\":").count(), 40, "{listed:.300}");
    scene.both_still_serve("paced");
}
