//! SIGTERM, as Kubernetes stops a pod during a rolling update: the node stops accepting,
//! answers the command each connection has in flight, closes every connection and exits within
//! its grace period; every write it acknowledged is there after a restart.

mod support;

use std::time::{Duration, Instant};

use at_tests::TempDir;
use support::Node;

const GRACE: &str = "shutdown_grace_millis = 5000";

#[test]
fn sigterm_answers_what_is_in_flight_loses_no_acknowledged_write_and_exits() {
    let dir = TempDir::new("shutdown");
    let mut node = Node::start_with(dir.path(), 0, None, GRACE);
    let (host, secret) = node.provision("@alice");
    let mut writer = node.owner("@alice", &host, &secret);
    let mut idle = node.owner("@alice", &host, &secret);
    // A command that takes 1.5 s, in flight when the signal comes: its reply still arrives.
    let mut slow = node.owner("@alice", &host, &secret);
    slow.send(b"noop:1500\n");
    std::thread::sleep(Duration::from_millis(200));

    // A burst of writes in one go; SIGTERM once the first is answered.
    let burst: String = (0..300)
        .map(|i| format!("update:public:k{i}@alice v{i}\n"))
        .collect();
    writer.send(burst.as_bytes());
    let mut replies = writer
        .try_read_until(b"\n@alice@", Duration::from_secs(10))
        .expect("a first reply");
    let signalled = Instant::now();
    node.process().terminate();
    slow.expect(b"data:ok\n@alice@");
    slow.expect_closed(Duration::from_secs(5));

    // The rest of what arrives before the close: whole replies only.
    replies.push_str(&String::from_utf8(writer.read_for(Duration::from_secs(8))).unwrap());
    assert!(writer.is_closed(), "the writing connection was closed");
    let acknowledged: Vec<&str> = replies
        .strip_suffix("\n@alice@")
        .unwrap_or_else(|| panic!("a reply cut short: {replies:?}"))
        .split("\n@alice@")
        .collect();
    for (i, reply) in acknowledged.iter().enumerate() {
        assert!(
            reply
                .strip_prefix("data:")
                .is_some_and(|id| id.parse::<u64>().is_ok()),
            "reply {i}: {reply:?}"
        );
    }
    idle.expect_closed(Duration::from_secs(5));

    let status = node
        .process()
        .wait_exit(Duration::from_secs(7))
        .expect("exited within the grace period");
    assert!(status.success(), "{status:?}");
    // Once every connection closed, not at the end of the 5 s grace period.
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "exited after {:?}",
        signalled.elapsed()
    );

    // Every acknowledged write survived; nothing that was not answered is required.
    let node = Node::start_with(dir.path(), 0, None, GRACE);
    let mut reader = node.owner("@alice", &host, &secret);
    for i in 0..acknowledged.len() {
        reader.ask(
            &format!("llookup:public:k{i}@alice\n"),
            &format!("data:v{i}\n@alice@"),
        );
    }
    eprintln!(
        "{} of 300 writes acknowledged before the close",
        acknowledged.len()
    );
}
