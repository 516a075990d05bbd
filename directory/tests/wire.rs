//! The atDirectory on the wire: the real binary, real TLS, exact bytes; every test runs
//! against the embedded store and against a real `redis-server`.

mod support;

use std::time::{Duration, Instant};

use at_tests::client::Client;
use support::{sample, Backend, Directory};

const ALICE: (&str, &str) = ("@alice", "alice.example.com:25000");

fn hit_is_answered_with_host_port_crlf_and_prompt(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("alice\n", "alice.example.com:25000\r\n@");
}

fn leading_at_and_case_do_not_matter(backend: Backend) {
    let dir = Directory::start(backend, "", &[("@Alice", "alice.example.com:25000")]);
    let mut client = dir.client();
    for line in ["@alice\n", "ALICE\n", "@AlIcE\r\n", "  alice  \n"] {
        client.ask(line, "alice.example.com:25000\r\n@");
    }
}

fn unknown_atsign_is_answered_null(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("nobody\n", "null\r\n@");
    // The connection stays usable after a miss.
    client.ask("alice\n", "alice.example.com:25000\r\n@");
}

fn many_lookups_share_one_connection(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE, ("bob🛠", "vip.ve.atsign.zone:25003")]);
    let mut client = dir.client();
    for _ in 0..20 {
        client.ask("alice\n", "alice.example.com:25000\r\n@");
        client.ask("bob🛠\n", "vip.ve.atsign.zone:25003\r\n@");
    }
}

fn repeated_misses_are_delayed_then_the_connection_is_closed(backend: Backend) {
    // TEST_CONFIG sets miss_delay_ms = 400 (the shipped default is the reference's 3000).
    let delay = Duration::from_millis(400);
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("ghost1\n", "null\r\n@");
    // Hits in between do not reset the count.
    client.ask("alice\n", "alice.example.com:25000\r\n@");

    let asked = Instant::now();
    client.send(b"ghost2\n");
    client.expect_silence(delay / 2);
    client.expect(b"null\r\n@");
    assert!(
        asked.elapsed() >= delay,
        "second miss answered after {:?}",
        asked.elapsed()
    );

    let asked = Instant::now();
    client.send(b"ghost3\n");
    client.expect_closed(Duration::from_secs(10));
    assert!(
        asked.elapsed() >= delay,
        "third miss closed after {:?}",
        asked.elapsed()
    );
}

fn invalid_atsigns_count_as_misses(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("!!not an atsign!!\n", "null\r\n@");
    client.ask("al:ice\n", "null\r\n@");
    client.send(b"from:@alice\n");
    client.expect_closed(Duration::from_secs(10));
    let metrics = dir.metrics();
    assert_eq!(
        sample(&metrics, "atdirectory_lookups_total{result=\"invalid\"}"),
        3.0
    );
}

/// The C SDK checks its directory connection with an empty line and a 3 s read timeout: each
/// is answered without the misses' delay, however many (three misses would close the
/// connection), and none counts as a miss.
fn empty_lines_are_answered_at_once_and_are_no_misses(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    for _ in 0..5 {
        client.ask("\n", "null\r\n@");
        client.ask("  \r\n", "null\r\n@");
    }
    client.ask("alice\n", "alice.example.com:25000\r\n@");
    let metrics = dir.metrics();
    assert_eq!(
        sample(&metrics, "atdirectory_lookups_total{result=\"empty\"}"),
        10.0
    );
    assert_eq!(
        sample(&metrics, "atdirectory_lookups_total{result=\"miss\"}"),
        0.0
    );
}

fn exit_closes_the_connection_without_an_answer(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("alice\n", "alice.example.com:25000\r\n@");
    client.send(b"@exit\n");
    client.expect_closed(Duration::from_secs(5));
}

fn overlong_line_closes_the_connection(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    // 255 bytes is the limit: still answered (not an atSign, so null).
    let mut client = dir.client();
    client.ask(&format!("{}\n", "a".repeat(255)), "null\r\n@");
    // One byte more and the connection is closed, even before the newline arrives.
    let mut client = dir.client();
    client.send("b".repeat(256).as_bytes());
    client.expect_closed(Duration::from_secs(5));
}

fn invalid_utf8_closes_the_connection(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.send(b"\xff\xfe\xfd\x00garbage\n");
    client.expect_closed(Duration::from_secs(5));
    // The server is unharmed.
    dir.client().ask("alice\n", "alice.example.com:25000\r\n@");
}

fn idle_connection_is_closed_after_the_idle_timeout(backend: Backend) {
    let dir = Directory::start(backend, "idle_timeout_ms = 300\n", &[ALICE]);
    let mut client = dir.client();
    client.ask("alice\n", "alice.example.com:25000\r\n@");
    let since = Instant::now();
    client.expect_closed(Duration::from_secs(10));
    assert!(
        since.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        since.elapsed()
    );
}

fn activity_keeps_a_connection_open(backend: Backend) {
    let dir = Directory::start(backend, "idle_timeout_ms = 600\n", &[ALICE]);
    let mut client = dir.client();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(200));
        client.ask("alice\n", "alice.example.com:25000\r\n@");
    }
}

fn registrations_survive_a_restart(backend: Backend) {
    let mut dir = Directory::start(backend, "", &[ALICE]);
    let out = dir.admin(&["register", "bob", "bob.example.com:6464"]);
    assert!(out.status.success(), "{out:?}");
    dir.restart();
    let mut client = dir.client();
    client.ask("alice\n", "alice.example.com:25000\r\n@");
    client.ask("bob\n", "bob.example.com:6464\r\n@");
}

fn registration_made_while_serving_is_visible_at_once(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("carol\n", "null\r\n@");
    let out = dir.admin(&["register", "@carol", "carol.example.com:1234"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "registered @carol at carol.example.com:1234\n"
    );
    client.ask("carol\n", "carol.example.com:1234\r\n@");
    // Moving an atSign replaces its address.
    assert!(dir
        .admin(&["register", "carol", "moved.example.com:99"])
        .status
        .success());
    answers_within_a_second(
        &dir,
        "carol\n",
        "moved.example.com:99\r\n@",
        "carol.example.com:1234\r\n@",
    );
}

/// A serving embedded store re-reads its log at least once a second on hits (at once on
/// misses), so a change made by another process may take that long to replace a known answer.
fn answers_within_a_second(dir: &Directory, line: &str, want: &str, until_then: &str) {
    let mut client = dir.client();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        client.send(line.as_bytes());
        let answer = client.read_for(Duration::from_millis(200));
        if answer == want.as_bytes() {
            return;
        }
        assert_eq!(String::from_utf8_lossy(&answer), until_then);
        assert!(Instant::now() < deadline, "{want:?} never showed up");
    }
}

fn unregister_and_list(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE, ("bob", "bob.example.com:1")]);
    let out = dir.admin(&["list"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "@alice alice.example.com:25000\n@bob bob.example.com:1\n"
    );
    let out = dir.admin(&["unregister", "@bob"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unregistered @bob\n");
    let out = dir.admin(&["unregister", "@bob"]);
    assert!(!out.status.success(), "unregistering twice must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("@bob is not registered"),
        "{out:?}"
    );
    answers_within_a_second(&dir, "bob\n", "null\r\n@", "bob.example.com:1\r\n@");
    assert_eq!(
        String::from_utf8_lossy(&dir.admin(&["list"]).stdout),
        "@alice alice.example.com:25000\n"
    );
}

fn admin_commands_refuse_malformed_input(backend: Backend) {
    let dir = Directory::start(backend, "", &[]);
    for args in [
        &["register", "al ice", "a.example:1"][..],
        &["register", "@alice", "no-port"][..],
        &["register", "@alice", "a.example:70000"][..],
        &["register", "@alice", "[::1]:64"][..],
    ] {
        let out = dir.admin(args);
        assert!(!out.status.success(), "{args:?} was accepted");
    }
    assert_eq!(String::from_utf8_lossy(&dir.admin(&["list"]).stdout), "");
}

fn connections_past_the_limit_are_told_at0012_and_closed(backend: Backend) {
    let dir = Directory::start(backend, "max_connections = 2\n", &[ALICE]);
    let mut first = dir.client();
    let _second = dir.client();
    let mut third = Client::tls(dir.running().addr, &dir.ca_file());
    third.expect(b"error:AT0012-Inbound connection limit exceeded\n");
    third.expect_closed(Duration::from_secs(5));
    // A slot frees up when a connection ends.
    first.send(b"@exit\n");
    first.expect_closed(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = Client::tls(dir.running().addr, &dir.ca_file());
        let greeting = next.read_for(Duration::from_millis(300));
        if greeting == b"@" {
            next.ask("alice\n", "alice.example.com:25000\r\n@");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot never freed: {:?}",
            String::from_utf8_lossy(&greeting)
        );
    }
    let metrics = dir.metrics();
    assert!(sample(&metrics, "atdirectory_connections_rejected_total") >= 1.0);
}

fn metrics_count_connections_and_lookups_by_result(backend: Backend) {
    let dir = Directory::start(backend, "", &[ALICE]);
    let mut client = dir.client();
    client.ask("alice\n", "alice.example.com:25000\r\n@");
    client.ask("alice\n", "alice.example.com:25000\r\n@");
    client.ask("nobody\n", "null\r\n@");
    let metrics = dir.metrics();
    assert_eq!(
        sample(&metrics, "atdirectory_lookups_total{result=\"hit\"}"),
        2.0
    );
    assert_eq!(
        sample(&metrics, "atdirectory_lookups_total{result=\"miss\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "atdirectory_lookups_total{result=\"invalid\"}"),
        0.0
    );
    assert_eq!(sample(&metrics, "atdirectory_connections"), 1.0);
    assert_eq!(
        sample(&metrics, "atdirectory_lookup_duration_seconds_count"),
        3.0
    );
}

fn plain_tcp_only_when_configured(backend: Backend) {
    let dir = Directory::start(backend.clone(), "", &[ALICE]);
    // A plain client talking to the TLS listener gets no prompt.
    let mut plain = Client::plain(dir.running().addr);
    plain.send(b"alice\n");
    let got = plain.read_for(Duration::from_millis(500));
    assert!(
        !got.starts_with(b"@"),
        "TLS listener answered plain text: {got:?}"
    );

    let dir = Directory::start(backend, "[tls]\nplain = true\n", &[ALICE]);
    let mut plain = Client::plain(dir.running().addr);
    plain.expect(b"@");
    plain.ask("alice\n", "alice.example.com:25000\r\n@");
}

fn configured_certificate_is_used_as_is(backend: Backend) {
    // Let one directory make a CA and leaf, then hand that pair to a second one.
    let first = Directory::start(backend.clone(), "", &[]);
    let tls = first.data.path().join("data/tls");
    let extra = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        tls.join("cert.pem").display(),
        tls.join("key.pem").display()
    );
    let second = Directory::start(backend, &extra, &[ALICE]);
    assert!(
        !second.ca_file().exists(),
        "a certificate was generated despite the configured one"
    );
    let mut client = Client::tls(second.running().addr, &first.ca_file());
    client.expect(b"@");
    client.ask("alice\n", "alice.example.com:25000\r\n@");
}

for_each_backend! {
    hit_is_answered_with_host_port_crlf_and_prompt,
    leading_at_and_case_do_not_matter,
    unknown_atsign_is_answered_null,
    many_lookups_share_one_connection,
    repeated_misses_are_delayed_then_the_connection_is_closed,
    invalid_atsigns_count_as_misses,
    empty_lines_are_answered_at_once_and_are_no_misses,
    exit_closes_the_connection_without_an_answer,
    overlong_line_closes_the_connection,
    invalid_utf8_closes_the_connection,
    idle_connection_is_closed_after_the_idle_timeout,
    activity_keeps_a_connection_open,
    registrations_survive_a_restart,
    registration_made_while_serving_is_visible_at_once,
    unregister_and_list,
    admin_commands_refuse_malformed_input,
    connections_past_the_limit_are_told_at0012_and_closed,
    metrics_count_connections_and_lookups_by_result,
    plain_tcp_only_when_configured,
    configured_certificate_is_used_as_is,
}
