//! Notifications to another atServer that cannot be delivered at once (README, "Between
//! atServers"): they are "stored as `queued` in the sender's log (so they survive restarts)",
//! and "retried with a backoff doubling from 0.5 s to `notification_retry_max_millis` until
//! their `ttln` (or 30 attempts)".
//!
//! - Against a fake recipient server that lets @alice in and refuses every `notify:` (an
//!   error reply), counting them: the waits between attempts grow to the cap and stay there,
//!   never beyond it; the first retry comes 0.5 s after the first attempt (ignored: it comes
//!   after 1 s); after 30 attempts there is no 31st and `notify:status` says `errored`.
//! - Between two real servers (each on its embedded store, and each on a Redis of its own),
//!   with the recipient's server stopped: a notification whose `ttln` passes undelivered reads
//!   `expired` (not before) and is never delivered once the recipient is back, while one sent
//!   beside it without a short ttln is; and one queued when the sender's server is killed and
//!   restarted is delivered by the restarted server, once; and one whose id is sent again
//!   before it was delivered is still delivered, once, as first sent (ignored: it never is).

use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::fake_peer::{self, Answer, FakePeer};
use at_tests::servers::{eventually, AliceAndBob, Cluster, Server, Store};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";
const AT_BOB: &str = "\n@bob@";

/// @alice on a real server, and @rcpt on a fake one that refuses every notification.
struct Refusing {
    alice: Client,
    rcpt: FakePeer,
    _server: Server,
    _cluster: Cluster,
    _dir: TempDir,
}

impl Refusing {
    /// Starts it; `settings` are @alice's server's top-level options.
    fn start(label: &str, settings: &str) -> Refusing {
        let dir = TempDir::new(label);
        let cluster = Cluster::start(dir.path());
        let (mut server, secret) = cluster.server("a", "@alice", settings);
        server.start();
        let rcpt = FakePeer::start(
            fake_peer::tls_of(&server.tls_dir()),
            fake_peer::welcoming("@rcpt", |line| {
                Answer::Reply(format!(
                    "error:AT0003-Invalid syntax : this test refuses {}",
                    line.split(':').next().unwrap_or("")
                ))
            }),
        );
        cluster.register("@rcpt", rcpt.addr);
        let mut alice = server.connect(&cluster.ca());
        alice.cram_in("@alice", &secret);
        Refusing {
            alice,
            rcpt,
            _server: server,
            _cluster: cluster,
            _dir: dir,
        }
    }

    /// Sends notification `id` to @rcpt.
    fn notify(&mut self, id: &str) {
        let line = format!("notify:id:{id}:update:messageType:text:@rcpt:hello");
        assert_eq!(self.alice.reply_to(&line, AT_ALICE), format!("data:{id}"));
    }

    /// When each delivery attempt reached @rcpt's server.
    fn attempts(&self) -> Vec<Instant> {
        self.rcpt.arrivals(|line| line.starts_with("notify:"))
    }

    /// Waits (at most `within`) until `count` attempts arrived; their arrival times.
    fn wait_for_attempts(&self, count: usize, within: Duration) -> Vec<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let attempts = self.attempts();
            if attempts.len() >= count {
                return attempts;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} attempts within {within:?}: {:?}",
                attempts.len(),
                self.rcpt.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The waits between consecutive attempts.
fn gaps(attempts: &[Instant]) -> Vec<Duration> {
    attempts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Slack for a wait to end late on a loaded machine (timers never end early).
const LATE: Duration = Duration::from_millis(700);

#[test]
fn delivery_waits_grow_to_notification_retry_max_millis_and_stay_there() {
    let cap = Duration::from_millis(2000);
    let mut scene = Refusing::start(
        "retry-cap",
        &format!(
            "notification_retry_max_millis = {}\npeer_timeout_millis = 3000",
            cap.as_millis()
        ),
    );
    scene.notify("r-1");
    let gaps = gaps(&scene.wait_for_attempts(4, Duration::from_secs(30)));
    eprintln!("waits between attempts: {gaps:?}");
    for (k, gap) in gaps.iter().enumerate() {
        assert!(
            *gap <= cap + LATE,
            "wait {k} ({gap:?}) beyond the cap: {gaps:?}"
        );
    }
    // Doubled before reaching the cap (whether the first wait is 0.5 s or 1 s); then the cap.
    assert!(
        gaps[1].as_secs_f64() >= 1.6 * gaps[0].as_secs_f64(),
        "the second wait is not about twice the first: {gaps:?}"
    );
    for gap in &gaps[2..] {
        assert!(
            *gap + Duration::from_millis(20) >= cap,
            "not at the cap: {gaps:?}"
        );
    }
    // Every attempt is the same notification.
    let lines = scene.rcpt.lines();
    let sent: Vec<&String> = lines.iter().filter(|l| l.starts_with("notify:")).collect();
    assert!(
        sent.iter().all(|l| l.starts_with("notify:id:r-1:")),
        "{sent:?}"
    );
}

/// The README's schedule exactly: 0.5 s, 1 s, 2 s, 4 s (cap 4 s).
#[test]
fn the_first_retry_comes_half_a_second_after_the_first_attempt_then_doubles() {
    let mut scene = Refusing::start(
        "retry-schedule",
        "notification_retry_max_millis = 4000\npeer_timeout_millis = 3000",
    );
    scene.notify("r-1");
    let gaps = gaps(&scene.wait_for_attempts(5, Duration::from_secs(30)));
    let schedule = [500, 1000, 2000, 4000].map(Duration::from_millis);
    for (k, (gap, planned)) in gaps.iter().zip(schedule).enumerate() {
        let slack = (planned / 4).max(Duration::from_millis(300));
        assert!(
            *gap + Duration::from_millis(20) >= planned && *gap <= planned + slack,
            "wait {k}: {gap:?}, planned {planned:?}; all: {gaps:?}"
        );
    }
}

#[test]
fn delivery_is_given_up_after_30_attempts() {
    let cap = Duration::from_millis(50);
    let mut scene = Refusing::start(
        "retry-give-up",
        &format!(
            "notification_retry_max_millis = {}\npeer_timeout_millis = 3000",
            cap.as_millis()
        ),
    );
    scene.notify("r-1");
    scene.wait_for_attempts(30, Duration::from_secs(60));
    // Sixty times the cap: a 31st attempt would have come.
    std::thread::sleep(cap * 60);
    assert_eq!(scene.attempts().len(), 30, "{:?}", scene.rcpt.lines());
    assert_eq!(
        scene.alice.reply_to("notify:status:r-1", AT_ALICE),
        "data:errored"
    );
}

/// A new owner connection of @bob to B, trusting `scene.ca`.
fn bob_on(scene: &AliceAndBob) -> Client {
    let mut bob = scene.b.connect(&scene.ca);
    bob.cram_in("@bob", &scene.bob_secret);
    bob
}

const QUICK: &str = "peer_timeout_millis = 3000\nnotification_retry_max_millis = 1000";

fn a_notification_whose_ttln_passes_undelivered_expires(store: Store) {
    let dir = TempDir::new("retry-ttln");
    let mut scene = AliceAndBob::start_on(dir.path(), QUICK, QUICK, store);
    scene.b.stop();
    let ttln = Duration::from_millis(2500);
    let sent = Instant::now();
    let short = format!(
        "notify:id:short-1:update:messageType:text:ttln:{}:@bob:short",
        ttln.as_millis()
    );
    assert_eq!(scene.alice.reply_to(&short, AT_ALICE), "data:short-1");
    let long = "notify:id:long-1:update:messageType:text:@bob:long";
    assert_eq!(scene.alice.reply_to(long, AT_ALICE), "data:long-1");
    let status = scene.alice.reply_to("notify:status:short-1", AT_ALICE);
    if sent.elapsed() < ttln {
        assert!(
            status == "data:queued" || status == "data:errored",
            "before its ttln: {status}"
        );
    }
    let deadline = sent + ttln + Duration::from_secs(15);
    while scene.alice.reply_to("notify:status:short-1", AT_ALICE) != "data:expired" {
        assert!(Instant::now() < deadline, "short-1 did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent.elapsed() >= ttln, "expired after {:?}", sent.elapsed());

    // B is back: what was still due arrives, what expired never does.
    scene.b.start();
    eventually(|| scene.alice.reply_to("notify:status:long-1", AT_ALICE) == "data:delivered");
    // Two more retry periods for anything else to arrive.
    std::thread::sleep(Duration::from_millis(2000));
    let mut bob = bob_on(&scene);
    let received = bob.reply_to("notify:list", AT_BOB);
    assert!(received.contains("\"id\":\"long-1\""), "{received}");
    assert!(!received.contains("short-1"), "{received}");
    assert_eq!(
        scene.alice.reply_to("notify:status:short-1", AT_ALICE),
        "data:expired"
    );
}

#[test]
fn a_notification_whose_ttln_passes_undelivered_expires_on_embedded_stores() {
    a_notification_whose_ttln_passes_undelivered_expires(Store::Embedded);
}

#[test]
fn a_notification_whose_ttln_passes_undelivered_expires_each_on_its_own_redis() {
    a_notification_whose_ttln_passes_undelivered_expires(Store::OwnRedis);
}

fn a_queued_notification_survives_a_restart_of_the_senders_server(store: Store) {
    let dir = TempDir::new("retry-restart");
    // A delivery attempt holds a lease for six peer timeouts (in Redis on that store); one
    // left by a server killed mid-attempt delays the next attempt until it expires.
    let peer_timeout = Duration::from_millis(1000);
    let settings = format!(
        "peer_timeout_millis = {}\nnotification_retry_max_millis = 1000",
        peer_timeout.as_millis()
    );
    let mut scene = AliceAndBob::start_on(dir.path(), &settings, &settings, store);
    scene.b.stop();
    let line = "notify:id:kept-1:update:messageType:text:@bob:kept";
    assert_eq!(scene.alice.reply_to(line, AT_ALICE), "data:kept-1");
    // Its first attempt failed (B is down): queued in the sender's log, undelivered.
    eventually(|| scene.alice.reply_to("notify:status:kept-1", AT_ALICE) == "data:errored");
    // The sender's server dies (SIGKILL) with it undelivered; the recipient comes back while
    // it is down, so only the restarted sender can deliver it.
    scene.a.stop();
    scene.b.start();
    scene.a.start();
    let mut alice = scene.a.connect(&scene.ca);
    alice.cram_in("@alice", &scene.alice_secret);
    let within = peer_timeout * 6 + Duration::from_secs(10);
    let deadline = Instant::now() + within;
    while alice.reply_to("notify:status:kept-1", AT_ALICE) != "data:delivered" {
        assert!(Instant::now() < deadline, "not delivered within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let received = bob_on(&scene).reply_to("notify:list", AT_BOB);
    assert_eq!(
        received.matches("\"id\":\"kept-1\"").count(),
        1,
        "{received}"
    );
}

#[test]
fn a_queued_notification_survives_a_restart_of_the_senders_server_on_embedded_stores() {
    a_queued_notification_survives_a_restart_of_the_senders_server(Store::Embedded);
}

#[test]
fn a_queued_notification_survives_a_restart_of_the_senders_server_each_on_its_own_redis() {
    a_queued_notification_survives_a_restart_of_the_senders_server(Store::OwnRedis);
}

/// "A notification sent again with the same id is shown and listed once, as first sent"
/// (`cross_atsign.rs`, which resends it once the first was shown), here resent before the
/// first was delivered: the recipient's server is down for both sends. It must still be
/// delivered (it is queued: retried until its ttln), once, as first sent.
#[test]
fn a_notification_id_resent_before_delivery_arrives_once_as_first_sent() {
    let dir = TempDir::new("retry-resent");
    let mut scene = AliceAndBob::start(dir.path(), QUICK, QUICK);
    scene.b.stop();
    for value in ["one", "two"] {
        let line = format!("notify:id:same-1:update:@bob:n3.x@alice:{value}");
        assert_eq!(scene.alice.reply_to(&line, AT_ALICE), "data:same-1");
    }
    scene.b.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = scene.alice.reply_to("notify:status:same-1", AT_ALICE);
        if status == "data:delivered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered 15 s after the recipient came back (retries every 1 s): {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = bob_on(&scene).reply_to("notify:list:n3", AT_BOB);
    assert_eq!(listed.matches("\"id\":\"same-1\"").count(), 1, "{listed}");
    assert!(listed.contains("\"value\":\"one\""), "{listed}");
}
