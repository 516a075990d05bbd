//! Throttling of failed cram/pkam proofs over real TLS, against the real binary: the first
//! failures are answered at once with the reference's bytes and keep the connection open;
//! later ones wait longer each time, the last allowed closes the connection, and an atSign's
//! failures per minute from one address are bounded across connections, without keeping the
//! owner out from another address.

mod support;

use std::time::{Duration, Instant};

use at_tests::client::Client;
use support::*;

const WRONG_CRAM: &str = "error:AT0401-Exception: Authentication Failed\n@";
const WRONG_PKAM: &str = "error:AT0401-Exception: pkam authentication failed\n@";
const TOO_MANY: &str =
    "error:AT0028-Exception: Too many failed authentication attempts; try again later\n@";

/// Two failures free, then 400 ms, 800 ms, 800 ms…; the 5th closes. No per-atSign bound.
const PER_CONNECTION: &str = "auth_failures_before_delay = 2\nauth_failure_delay_millis = 400\n\
    auth_failure_max_delay_millis = 800\nauth_failures_before_close = 5\n\
    auth_failures_per_atsign_per_minute = 0\n";

/// A bound of 3 failures per minute for the atSign, and no per-connection delay.
const PER_ATSIGN: &str = "auth_failures_before_delay = 100\nauth_failures_before_close = 0\n\
    auth_failures_per_atsign_per_minute = 3\n";

/// Well under the smallest configured delay: what "answered at once" allows.
const AT_ONCE: Duration = Duration::from_millis(300);

/// `from:@alice` then a wrong cram; returns how long the cram's answer took.
fn fail_cram(client: &mut Client, want: &str) -> Duration {
    let challenge = from_alice(client);
    let start = Instant::now();
    client.ask(
        &format!("cram:{}\n", cram_digest("not-the-secret", &challenge)),
        want,
    );
    start.elapsed()
}

fn fail_pkam(client: &mut Client) -> Duration {
    from_alice(client);
    let start = Instant::now();
    client.ask("pkam:AAAA\n", WRONG_PKAM);
    start.elapsed()
}

/// Installs the test pkam public key, so that a wrong signature is checked as such.
fn install_pkam_key(node: &Node) {
    let mut owner = cram_in(node);
    owner.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PKAM_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
}

fn good_cram(node: &Node, client: &mut Client, want: &str) {
    let challenge = from_alice(client);
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        want,
    );
}

fn with_the_defaults_a_first_failure_is_answered_at_once_and_a_correct_cram_then_works(
    backend: Backend,
) {
    let node = Node::start(backend);
    install_pkam_key(&node);
    let mut client = node.client();
    assert!(fail_cram(&mut client, WRONG_CRAM) < AT_ONCE);
    client.expect_silence(Duration::from_millis(200));
    assert!(fail_pkam(&mut client) < AT_ONCE);
    good_cram(&node, &mut client, "data:success\n@alice@");
    client.ask("config:block:show\n", "data:null\n@alice@");
}

fn repeated_failures_wait_longer_each_time_then_the_connection_closes(backend: Backend) {
    let mut node = Node::start(backend);
    node.reconfigure(PER_CONNECTION);
    install_pkam_key(&node);
    let mut client = node.client();
    assert!(fail_cram(&mut client, WRONG_CRAM) < AT_ONCE);
    assert!(fail_pkam(&mut client) < AT_ONCE);
    let third = fail_cram(&mut client, WRONG_CRAM);
    assert!(third >= Duration::from_millis(400), "{third:?}");
    let fourth = fail_pkam(&mut client);
    assert!(fourth >= Duration::from_millis(800), "{fourth:?}");
    // The 5th failure is still answered, after the (capped) delay, then the connection closes.
    let fifth = fail_cram(&mut client, WRONG_CRAM);
    assert!(
        fifth >= Duration::from_millis(800) && fifth < Duration::from_millis(1600),
        "{fifth:?}"
    );
    client.expect_closed(Duration::from_secs(5));

    // The count is per connection: a new one starts afresh.
    let mut fresh = node.client();
    assert!(fail_cram(&mut fresh, WRONG_CRAM) < AT_ONCE);
    good_cram(&node, &mut fresh, "data:success\n@alice@");
}

fn a_correct_proof_after_failures_works_and_clears_the_count(backend: Backend) {
    let mut node = Node::start(backend);
    node.reconfigure(PER_CONNECTION);
    // The atSign's first login makes its signing keys (RSA, up to a second); the logins
    // timed below are not its first.
    good_cram(&node, &mut node.client(), "data:success\n@alice@");
    let mut client = node.client();
    fail_cram(&mut client, WRONG_CRAM);
    fail_cram(&mut client, WRONG_CRAM);
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:{}\n", pkam_signature(&challenge)),
        "error:AT0401-Exception: pkam publickey not found\n@",
    );
    // That was the 3rd failure in a row; a correct cram after it is answered at once too.
    let start = Instant::now();
    good_cram(&node, &mut client, "data:success\n@alice@");
    assert!(start.elapsed() < AT_ONCE);
    // Counting starts over: two more failures are answered at once again (and, as in the
    // reference, a failed proof does not take back the owner's authentication).
    for _ in 0..2 {
        client.send(b"from:@alice\n");
        let challenge = client.read_until(b"\n@alice@");
        let challenge = challenge
            .strip_prefix("data:")
            .and_then(|c| c.strip_suffix("\n@alice@"))
            .expect("a challenge")
            .to_string();
        let start = Instant::now();
        client.ask(
            &format!("cram:{}\n", cram_digest("not-the-secret", &challenge)),
            "error:AT0401-Client authentication failed : Authentication Failed\n@alice@",
        );
        assert!(start.elapsed() < AT_ONCE);
    }
}

fn an_atsigns_failures_per_minute_from_one_address_are_bounded_across_connections(
    backend: Backend,
) {
    let mut node = Node::start(backend);
    node.reconfigure(PER_ATSIGN);
    // Already authenticated before the failures: not affected by them.
    let mut owner = cram_in(&node);
    // Successful proofs do not count against the bound.
    drop(cram_in(&node));
    for _ in 0..3 {
        let mut guesser = node.client();
        fail_cram(&mut guesser, WRONG_CRAM);
    }
    // The budget of this address is spent: even the right digest is refused, unchecked, and
    // the connection stays open. A proof without a challenge is not checked at all.
    let mut late = node.client();
    good_cram(&node, &mut late, TOO_MANY);
    late.ask("pkam:AAAA\n", WRONG_PKAM);
    late.expect_silence(Duration::from_millis(200));
    owner.ask("config:block:show\n", "data:null\n@alice@");

    // From another address the owner's correct proof is checked, and works.
    let mut elsewhere = from_address(&node, [127, 0, 0, 2]);
    good_cram(&node, &mut elsewhere, "data:success\n@alice@");
}

/// Proofs that answer no challenge (a `cram:` without `from`) spend no budget: they cannot be
/// used to keep the owner out, not even from the owner's own address.
fn proofs_without_a_challenge_cost_no_budget(backend: Backend) {
    let mut node = Node::start(backend);
    node.reconfigure(PER_ATSIGN);
    let mut guesser = from_address(&node, [127, 0, 0, 3]);
    for _ in 0..10 {
        guesser.ask("cram:0123\n", WRONG_CRAM);
    }
    let mut owner = from_address(&node, [127, 0, 0, 3]);
    good_cram(&node, &mut owner, "data:success\n@alice@");
}

/// A TLS client of @alice's port from the loopback address `ip`, past the `@` prompt.
fn from_address(node: &Node, ip: [u8; 4]) -> Client {
    let addr = ([127, 0, 0, 1], node.port).into();
    let mut client = Client::tls_from(ip.into(), addr, &node.ca_file(), "localhost");
    client.expect(b"@");
    client
}

both_backends! {
    with_the_defaults_a_first_failure_is_answered_at_once_and_a_correct_cram_then_works,
    repeated_failures_wait_longer_each_time_then_the_connection_closes,
    a_correct_proof_after_failures_works_and_clears_the_count,
    an_atsigns_failures_per_minute_from_one_address_are_bounded_across_connections,
    proofs_without_a_challenge_cost_no_budget,
}
