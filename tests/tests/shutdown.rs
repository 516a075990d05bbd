//! SIGTERM, as Kubernetes stops a pod during a rolling update: the node stops accepting (a new
//! connection is refused while a command in flight still runs), answers the command each
//! connection has in flight, closes every connection and exits within its grace period; every
//! write it acknowledged is there after a restart. A command still running when
//! `shutdown_grace_millis` ends is cut off: no reply, the connection closed, the node gone.

mod support;

use std::net::TcpStream;
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

#[test]
fn after_sigterm_new_connections_are_refused_while_a_command_in_flight_finishes() {
    let dir = TempDir::new("shutdown-refuse");
    let mut node = Node::start_with(dir.path(), 0, None, GRACE);
    let (host, secret) = node.provision("@alice");
    let addr = node.addr();
    let mut slow = node.owner("@alice", &host, &secret);
    slow.send(b"noop:3000\n");
    std::thread::sleep(Duration::from_millis(200));
    node.process().terminate();
    // The listener closes at once: connecting is refused (not accepted and left hanging). A
    // connect that reached the listen backlog just before it closed is reset instead.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break
            }
            Err(e) => panic!("connecting after SIGTERM: {e}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "still accepting 2 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // Refused while the node still ran the command in flight, which is then answered.
    assert!(
        node.process().wait_exit(Duration::ZERO).is_none(),
        "exited before answering the command in flight"
    );
    slow.expect(b"data:ok\n@alice@");
    slow.expect_closed(Duration::from_secs(5));
    let status = node
        .process()
        .wait_exit(Duration::from_secs(10))
        .expect("exited after its last connection closed");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_command_still_running_when_the_grace_period_ends_is_cut_off() {
    let dir = TempDir::new("shutdown-grace");
    let grace = Duration::from_millis(1000);
    let setting = format!("shutdown_grace_millis = {}", grace.as_millis());
    let mut node = Node::start_with(dir.path(), 0, None, &setting);
    let (host, secret) = node.provision("@alice");
    let mut slow = node.owner("@alice", &host, &secret);
    // 5 s, the longest noop: far longer than the grace period.
    slow.send(b"noop:5000\n");
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    node.process().terminate();
    // Closed without the reply: the node did not wait for the command to end.
    slow.expect_closed(Duration::from_secs(10));
    node.process()
        .wait_exit(Duration::from_secs(10))
        .expect("exited once the grace period was over");
    // Not before the grace period was over: the command in flight was given that long.
    let took = signalled.elapsed();
    assert!(
        took + Duration::from_millis(50) >= grace,
        "exited {took:?} after SIGTERM, within a grace period of {grace:?}"
    );
}

/// With `shutdown_pause_millis`, SIGTERM first turns readiness off while the node keeps
/// serving: a client that connects during the pause (one the load balancer sent before it
/// saw the pod go unready) logs in and is answered; only after the pause is connecting
/// refused, and the node drains and exits as before.
#[test]
fn with_a_pause_sigterm_turns_readiness_off_and_keeps_serving_until_the_pause_ends() {
    let dir = TempDir::new("shutdown-pause");
    let pause = Duration::from_millis(3000);
    let setting = format!(
        "{GRACE}\nshutdown_pause_millis = {}\nmetrics_listen = \"127.0.0.1:0\"",
        pause.as_millis()
    );
    let mut node = Node::start_with(dir.path(), 0, None, &setting);
    let (host, secret) = node.provision("@alice");
    let ready = at_tests::http::request(node.metrics(), "GET", "/readyz").unwrap();
    assert_eq!((ready.status, ready.text()), (200, "ready\n".to_string()));
    let mut before = node.owner("@alice", &host, &secret);
    let signalled = Instant::now();
    node.process().terminate();
    // Readiness goes off at once...
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ready = at_tests::http::request(node.metrics(), "GET", "/readyz").unwrap();
        if ready.status == 503 {
            assert_eq!(ready.text(), "not ready: shutting down\n");
            break;
        }
        assert!(Instant::now() < deadline, "still ready 2 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...while both an open connection and a new one are served.
    before.ask("update:public:during@alice v\n", "data:");
    let mut during = node.owner("@alice", &host, &secret);
    during.ask("llookup:public:during@alice\n", "data:v\n@alice@");
    assert!(
        signalled.elapsed() < pause,
        "the checks took longer than the pause ({:?}); nothing was shown",
        signalled.elapsed()
    );
    // After the pause, connecting is refused and the node exits.
    let addr = node.addr();
    let deadline = signalled + pause + Duration::from_secs(3);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connecting after the pause: {e}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting after the pause");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert!(
        signalled.elapsed() >= pause,
        "refused after {:?}, before the pause ended",
        signalled.elapsed()
    );
    let status = node
        .process()
        .wait_exit(Duration::from_secs(10))
        .expect("exited after the pause and the drain");
    assert!(status.success(), "{status:?}");
}

/// The directory too: with `shutdown_pause_millis`, SIGTERM turns `/readyz` to 503 at once while
/// it keeps answering lookups, new connections included, until the pause ends; then it stops
/// accepting, closes its connections once their lookup in flight is answered (an idle one at
/// once, not at the end of `shutdown_grace_millis`) and exits cleanly.
#[test]
fn the_directory_keeps_answering_through_its_pause() {
    let dir = TempDir::new("shutdown-directory-pause");
    let pause = Duration::from_millis(3000);
    let millis = pause.as_millis().to_string();
    let mut directory = at_tests::servers::directory_with_env(
        dir.path(),
        None,
        true,
        &[("AT_DIRECTORY__SHUTDOWN_PAUSE_MILLIS", &millis)],
    );
    let http = directory.metrics.expect("the HTTP listener");
    let ca = dir.path().join("tls/ca.pem");
    let lookup = |addr| {
        let mut client = at_tests::client::Client::tls_named(addr, &ca, "localhost");
        client.expect(b"@");
        client.ask("alice\n", "null\r\n@");
    };
    lookup(directory.addr);
    // A client connected before and idle through it all: drained after the pause.
    let mut held = at_tests::client::Client::tls_named(directory.addr, &ca, "localhost");
    held.expect(b"@");
    let signalled = Instant::now();
    directory.terminate();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ready = at_tests::http::request(http, "GET", "/readyz").unwrap();
        if ready.status == 503 {
            assert_eq!(ready.text(), "not ready: shutting down\n");
            break;
        }
        assert!(Instant::now() < deadline, "still ready 2 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    lookup(directory.addr);
    assert!(
        signalled.elapsed() < pause,
        "the checks took longer than the pause ({:?})",
        signalled.elapsed()
    );
    held.ask("alice\n", "null\r\n@");
    let status = directory
        .wait_exit(pause + Duration::from_secs(10))
        .expect("exited after the pause");
    assert!(status.success(), "{status:?}");
    let exited = signalled.elapsed();
    assert!(
        exited >= pause,
        "exited after {exited:?}, before the pause ended"
    );
    // The idle connection was closed by the drain, not waited for until the grace ran out.
    held.expect_closed(Duration::from_secs(1));
    assert!(
        exited < pause + Duration::from_millis(2500),
        "exited {exited:?} after SIGTERM: the drain waited for an idle connection"
    );
    assert!(
        TcpStream::connect_timeout(&directory.addr, Duration::from_secs(2)).is_err(),
        "nothing listens once it has exited"
    );
}
