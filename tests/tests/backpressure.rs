//! Backpressure: a client that sends requests but does not read the answers makes neither the
//! atServer nor the atDirectory buffer them without bound, and loses nothing; a monitor that
//! does not read is dropped once its queue is full (it reconnects and replays). Other clients
//! are served meanwhile. Over TLS against the real binaries.
//!
//! Bounds (`at_common::backlog`): past 1 MiB unread the connection stops reading requests
//! until the client has read down to 256 KiB; the monitor queue holds 1 024 lines (its
//! memory is bounded by that count, so the monitor test checks the drop, not the memory: the
//! notifications themselves are stored).

use std::time::{Duration, Instant};

use at_tests::bench::rss_bytes;
use at_tests::client::Client;
use at_tests::servers::{directory, Cluster};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";
const AT_BOB: &str = "\n@bob@";
/// How much more memory the server may use while a client is behind: the pause mark, the
/// kernel's buffers it no longer drains, and slack for the allocator; far below what the
/// flood would cost unbounded (40 MB here).
const GROWTH: u64 = 16 * 1024 * 1024;

/// One atServer hosting @alice and @bob, each with an owner connection.
fn node(dir: &TempDir) -> (Cluster, at_tests::servers::Server, Vec<String>) {
    let cluster = Cluster::start(dir.path());
    let (mut server, secrets) = cluster.server_hosting("node", &["@alice", "@bob"], "");
    server.start();
    (cluster, server, secrets)
}

fn owner(
    server: &at_tests::servers::Server,
    ca: &std::path::Path,
    n: u16,
    atsign: &str,
    secret: &str,
) -> Client {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port + n));
    let mut client = Client::tls_named(addr, ca, "127.0.0.1");
    client.expect(b"@");
    client.cram_in(atsign, secret);
    client
}

#[test]
fn a_client_that_does_not_read_its_replies_is_not_read_from_and_loses_nothing() {
    let dir = TempDir::new("backpressure-replies");
    let (cluster, server, secrets) = node(&dir);
    let ca = cluster.ca();
    let mut alice = owner(&server, &ca, 0, "@alice", &secrets[0]);
    let value = "v".repeat(100_000);
    alice.ask(&format!("update:big@alice {value}\n"), "data:0\n@alice@");
    let before = rss_bytes(server.pid()).expect("rss");

    // 400 lookups of a 100 KB value, pipelined, none read: 40 MB of replies.
    const COUNT: usize = 400;
    let requests = "llookup:big@alice\n".repeat(COUNT);
    assert!(alice.try_send(requests.as_bytes(), Duration::from_secs(10)));
    std::thread::sleep(Duration::from_secs(2));
    let behind = rss_bytes(server.pid()).expect("rss");
    assert!(
        behind < before + GROWTH,
        "grew from {before} to {behind} bytes with a client behind"
    );
    // Another atSign is served meanwhile.
    let mut bob = owner(&server, &ca, 1, "@bob", &secrets[1]);
    bob.ask("update:k@bob v\n", "data:0\n@bob@");

    // Once the client reads, every reply comes, in order.
    let want = format!("data:{value}{AT_ALICE}");
    let mut got: Vec<u8> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < COUNT * want.len() && Instant::now() < deadline {
        got.extend(alice.read_for(Duration::from_millis(100)));
    }
    assert_eq!(
        got.len(),
        COUNT * want.len(),
        "all replies, and nothing else"
    );
    assert!(
        got.chunks(want.len()).all(|reply| reply == want.as_bytes()),
        "each reply whole, in order"
    );
    alice.ask("noop:0\n", "data:ok\n@alice@");
    let _ = AT_BOB;
}

#[test]
fn a_monitor_that_does_not_read_is_dropped_and_its_connection_closed() {
    let dir = TempDir::new("backpressure-monitor");
    let (cluster, server, secrets) = node(&dir);
    let ca = cluster.ca();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let mut monitor = Client::tls_small_window(addr, &ca, "127.0.0.1", 64 * 1024);
    monitor.expect(b"@");
    monitor.cram_in("@alice", &secrets[0]);
    monitor.send(b"monitor\nnoop:0\n");
    assert_eq!(monitor.next_line(), "data:ok\n");

    // More than the server's socket buffer (up to 4 MB), the pause mark (1 MiB) and the queue
    // (1 024 lines, 10 MB here) hold: 2 000 notifications of 10 KB; never read (the monitor's
    // own receive window is small and fixed).
    const COUNT: usize = 2_000;
    let mut bob = owner(&server, &ca, 1, "@bob", &secrets[1]);
    let value = "n".repeat(10_000);
    let mut last = String::new();
    for n in 0..COUNT {
        let sent = bob.reply_to(&format!("notify:update:@alice:n{n}.x@bob:{value}"), AT_BOB);
        last = sent.strip_prefix("data:").expect("an id").to_string();
    }
    // All delivered (each notification arrives after the one before) before the monitor
    // reads anything.
    let status = format!("notify:status:{last}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while bob.reply_to(&status, AT_BOB) != "data:delivered" {
        assert!(Instant::now() < deadline, "not all delivered");
        std::thread::sleep(Duration::from_millis(200));
    }
    // What was queued is still there to read, then the connection is closed: the monitor
    // was dropped before it had all of them.
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !monitor.is_closed() && Instant::now() < deadline {
        shown.extend(monitor.read_for(Duration::from_millis(200)));
    }
    assert!(monitor.is_closed(), "the monitor's connection stays open");
    let count = String::from_utf8_lossy(&shown)
        .matches("notification: ")
        .count();
    assert!(count < COUNT, "all {count} notifications were shown");
    // @alice herself is served as before, and a new monitor replays from the store.
    let mut again = owner(&server, &ca, 0, "@alice", &secrets[0]);
    again.send(b"monitor:0 n1999\\.\n");
    // (The stats notification may come first: it is shown to every monitor.)
    let mut line = again.next_line();
    for _ in 0..3 {
        if !line.contains("\"id\":\"-1\"") {
            break;
        }
        line = again.next_line();
    }
    assert!(
        line.contains("\"key\":\"@alice:n1999.x@bob\""),
        "{line:.200}"
    );
}

#[test]
fn a_directory_client_that_does_not_read_its_answers_is_not_read_from() {
    let dir = TempDir::new("backpressure-directory");
    let running = directory(&dir.path().join("directory"), None, false);
    let ca = dir.path().join("directory/tls/ca.pem");
    let mut client = Client::tls(running.addr, &ca);
    client.expect(b"@");
    let before = rss_bytes(running.pid()).expect("rss");
    // Empty lines: each answered `null` at once and never throttled; 2 MB of them asks for
    // 14 MB of answers.
    const COUNT: usize = 2_000_000;
    let requests = "\n".repeat(COUNT);
    let _ = client.try_send(requests.as_bytes(), Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let behind = rss_bytes(running.pid()).expect("rss");
    assert!(
        behind < before + GROWTH,
        "grew from {before} to {behind} bytes with a client behind"
    );
    // Others are answered meanwhile.
    let mut other = Client::tls(running.addr, &ca);
    other.expect(b"@");
    other.ask("\n", "null\r\n@");
}
