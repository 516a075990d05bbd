//! Pipelined peer links (README, "Between atServers"; docs/notifications.md#pipelined-peer-links):
//! a pol link writes several requests before their replies only to a server whose `info`
//! announces `"features":["pipelining"]`, matches the replies to them in order, and our server
//! receiving them keeps what its monitors see in the order sent.
//!
//! - A fake server answering `info` as the reference does (no `features`) and each `notify`
//!   slowly: however many notifications @alice's server has for it at once, it never receives
//!   a request before it answered the previous one.
//! - A fake server announcing pipelining, answering slowly, with an error for some
//!   notifications (chosen by id): it does receive requests before answering the previous
//!   ones, and each notification's status on @alice's server is the one its own reply gave.
//! - Two real servers: a burst of notifications from @alice's connections on A reaches @bob's
//!   monitor on B once each, each sender's in the order sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::fake_peer::{self, Answer, FakePeer};
use at_tests::servers::{AliceAndBob, Cluster, Server};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";

/// Owner connections sending at once, and notifications each.
const SENDERS: usize = 6;
const EACH: usize = 5;

/// @alice on a real server, and `peer` (on a fake server answering by `rest`).
struct Scene {
    alice: Vec<Client>,
    peer: FakePeer,
    _server: Server,
    _cluster: Cluster,
    _dir: TempDir,
}

impl Scene {
    fn start(
        label: &str,
        peer: &str,
        rest: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> Scene {
        let dir = TempDir::new(label);
        let cluster = Cluster::start(dir.path());
        let (mut server, secret) = cluster.server("a", "@alice", "peer_timeout_millis = 5000");
        server.start();
        let fake = FakePeer::start(
            fake_peer::tls_of(&server.tls_dir()),
            fake_peer::welcoming(peer, rest),
        );
        cluster.register(peer, fake.addr);
        let alice = (0..SENDERS)
            .map(|_| {
                let mut alice = server.connect(&cluster.ca());
                alice.cram_in("@alice", &secret);
                alice
            })
            .collect();
        Scene {
            alice,
            peer: fake,
            _server: server,
            _cluster: cluster,
            _dir: dir,
        }
    }

    /// Every connection sends its notifications to `to` (ids `n<k>`), as fast as they are
    /// accepted; their ids.
    fn notify_all(&mut self, to: &str) -> Vec<String> {
        std::thread::scope(|scope| {
            let senders: Vec<_> = self
                .alice
                .iter_mut()
                .enumerate()
                .map(|(c, alice)| {
                    scope.spawn(move || {
                        (0..EACH)
                            .map(|n| {
                                let id = format!("n{}", c * EACH + n);
                                let line =
                                    format!("notify:id:{id}:update:messageType:text:{to}:hi-{id}");
                                assert_eq!(alice.reply_to(&line, AT_ALICE), format!("data:{id}"));
                                id
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            senders
                .into_iter()
                .flat_map(|sender| sender.join().unwrap())
                .collect()
        })
    }

    /// `notify:status` of `id` on @alice's server, once it is no longer `queued` (at most 15 s).
    fn settled_status(&mut self, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.alice[0].reply_to(&format!("notify:status:{id}"), AT_ALICE);
            if status != "data:queued" || Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn notify_lines(&self) -> Vec<String> {
        let lines = self.peer.lines();
        lines
            .into_iter()
            .filter(|l| l.starts_with("notify:"))
            .collect()
    }
}

/// The id in a `notify:id:<id>:…` line.
fn id_of(line: &str) -> &str {
    line.strip_prefix("notify:id:")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("")
}

#[test]
fn a_peer_that_does_not_announce_pipelining_never_gets_two_requests_at_once() {
    let mut scene = Scene::start("pipelining-reference", "@ref", |line| {
        if line == "info:brief" {
            // The reference's: no features.
            return Answer::Reply(
                "data:{\"version\":\"3.0.52\",\"uptimeAsMillis\":1000,\"apkam_metadata\":{}}"
                    .into(),
            );
        }
        if line.starts_with("notify:") {
            return Answer::After(Duration::from_millis(20), "data:success".into());
        }
        Answer::Reply("error:AT0003-Invalid syntax : not in this test".into())
    });
    let ids = scene.notify_all("@ref");
    for id in &ids {
        assert_eq!(scene.settled_status(id), "data:delivered", "{id}");
    }
    let mut arrived: Vec<String> = scene
        .notify_lines()
        .iter()
        .map(|l| id_of(l).to_string())
        .collect();
    arrived.sort();
    let mut sent = ids.clone();
    sent.sort();
    assert_eq!(arrived, sent, "each notification once");
    assert_eq!(
        scene.peer.overlapping(),
        0,
        "a request arrived before the previous one was answered: {:?}",
        scene.peer.lines()
    );
    // It was asked once whether it pipelines, on its one link.
    let asked = scene
        .peer
        .lines()
        .iter()
        .filter(|l| *l == "info:brief")
        .count();
    assert_eq!((asked, scene.peer.accepted()), (1, 1));
}

#[test]
fn a_pipelining_peer_gets_requests_in_flight_and_each_reply_answers_its_own() {
    // Notifications whose number ends in 3 or 7 are refused.
    let refused = |id: &str| id.ends_with('3') || id.ends_with('7');
    let mut scene = Scene::start("pipelining-peer", "@pipe", move |line| {
        if line == "info:brief" {
            return Answer::Reply(
                "data:{\"version\":\"0.1.0\",\"uptimeAsMillis\":1000,\"features\":[\"pipelining\"]}"
                    .into(),
            );
        }
        if line.starts_with("notify:") {
            let id = id_of(line);
            let reply = match refused(id) {
                true => format!("error:AT0003-Invalid syntax : this test refuses {id}"),
                false => "data:success".to_string(),
            };
            return Answer::After(Duration::from_millis(20), reply);
        }
        Answer::Reply("error:AT0003-Invalid syntax : not in this test".into())
    });
    let ids = scene.notify_all("@pipe");
    for id in &ids {
        let want = match refused(id) {
            true => "data:errored",
            false => "data:delivered",
        };
        assert_eq!(scene.settled_status(id), want, "{id}");
    }
    assert!(
        scene.peer.overlapping() > 0,
        "no request arrived before the previous reply: not pipelined: {:?}",
        scene.peer.lines()
    );
    // The replies never got out of step: one link, never closed for a mismatch; each
    // delivered notification was sent once (the refused ones are retried).
    assert_eq!(scene.peer.accepted(), 1);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in scene.notify_lines() {
        *counts.entry(id_of(&line).to_string()).or_default() += 1;
    }
    for id in ids.iter().filter(|id| !refused(id)) {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
}

#[test]
fn a_burst_between_two_servers_reaches_the_monitor_once_each_in_order_per_sender() {
    let dir = TempDir::new("pipelining-two-servers");
    let mut ab = AliceAndBob::start(dir.path(), "", "peer_notifications_per_second = 0");
    ab.bob.send(b"monitor\n");
    let mut senders: Vec<Client> = (0..SENDERS)
        .map(|_| {
            let mut alice = ab.a.connect(&ab.ca);
            alice.cram_in("@alice", &ab.alice_secret);
            alice
        })
        .collect();
    const BURST: usize = 40;
    std::thread::scope(|scope| {
        for (c, alice) in senders.iter_mut().enumerate() {
            scope.spawn(move || {
                for n in 0..BURST {
                    let id = format!("s{c}-{n}");
                    let line = format!("notify:id:{id}:update:messageType:text:@bob:hi");
                    assert_eq!(alice.reply_to(&line, AT_ALICE), format!("data:{id}"));
                }
            });
        }
    });
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); SENDERS];
    let mut total = 0;
    while total < SENDERS * BURST {
        // One line, or several that came together.
        let chunk = ab
            .bob
            .try_read_until(b"\n", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{total} of {} arrived: {e}", SENDERS * BURST));
        for line in chunk.lines() {
            let Some(rest) = line.strip_prefix("notification: {\"id\":\"s") else {
                continue;
            };
            let id = &rest[..rest.find('"').expect("the id's end")];
            let (c, n) = id.split_once('-').expect("s<c>-<n>");
            seen[c.parse::<usize>().unwrap()].push(n.parse().unwrap());
            total += 1;
        }
    }
    for (c, arrived) in seen.iter().enumerate() {
        assert_eq!(
            *arrived,
            (0..BURST).collect::<Vec<_>>(),
            "sender {c}'s notifications"
        );
    }
    // Nothing more: each arrived once.
    let more = ab.bob.read_for(Duration::from_millis(500));
    assert!(
        !String::from_utf8_lossy(&more).contains("notification: {\"id\":\"s"),
        "{}",
        String::from_utf8_lossy(&more)
    );
}
