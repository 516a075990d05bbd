//! What @bob's and @alice's clients see of each other is the same whether the two atSigns are
//! on one node, on two nodes sharing one Redis (or one Redis Cluster), or on two servers
//! talking over a pol link (on their embedded stores, or each on a Redis of its own)
//! (`at_tests::scenes`): every scenario below runs in all five and asserts the same exact
//! bytes, those of the two-server (reference) topology.
//!
//! - a block list refuses @bob's lookups, scans and notifications, on a new link and on one
//!   already open, until the block is removed;
//! - cached copies follow the owner's updates and deletes (`ccd`), also with a `ttr`; a
//!   notification with a value and `ttr`, and an update's autoNotify, create cached copies;
//! - a notification id sent twice is shown once;
//! - the shapes of autoNotify update and delete notifications; an `update:meta` notification
//!   carries no value;
//! - `strategy:latest` never marks a delivered notification expired;
//! - signing public keys are served before any contact; unknown atSigns are AT0007;
//! - another atSign's reset (new public key) is noticed on the next new link.
//!
//! Each topology's test runs every scenario in order on one scene (distinct key names) and
//! fails at the end with the list of scenarios that failed, so one run reports them all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use at_tests::client::{line_without_time, Client};
use at_tests::scenes::{Monitor, Scene, AT_ALICE, AT_BOB};

/// A scenario: a name saying what it shows, and the steps.
type Scenario = (&'static str, fn(&mut Scene));

/// In order: signing keys first (before any other contact), the public-key change last.
const SCENARIOS: &[Scenario] = &[
    (
        "signing public keys are served before any contact",
        signing_public_keys_are_served_before_any_contact,
    ),
    (
        "a blocked atSign's lookup and scan are refused",
        a_blocked_atsigns_lookup_and_scan_are_refused,
    ),
    (
        "a blocked atSign's notification waits until unblocked",
        a_blocked_atsigns_notification_waits_until_unblocked,
    ),
    (
        "a block refuses lookups on a link already open",
        a_block_refuses_lookups_on_a_link_already_open,
    ),
    (
        "a block holds notifications on a link already open",
        a_block_holds_notifications_on_a_link_already_open,
    ),
    (
        "cached copies follow the owner's updates and deletes",
        cached_copies_follow_the_owners_updates_and_deletes,
    ),
    (
        "cached copies with a ttr follow the owner's changes",
        cached_copies_with_a_ttr_follow_the_owners_changes,
    ),
    (
        "a delete without ccd leaves the cached copy",
        a_delete_without_ccd_leaves_the_cached_copy,
    ),
    (
        "a notification with a value and ttr is cached",
        a_notification_with_a_value_and_ttr_is_cached,
    ),
    (
        "an update's autoNotify is cached",
        an_updates_auto_notify_is_cached,
    ),
    (
        "a resent notification id is shown once",
        a_resent_notification_id_is_shown_once,
    ),
    (
        "update and delete notifications have the reference shape",
        update_and_delete_notifications_have_the_reference_shape,
    ),
    (
        "an update:meta notification carries no value",
        an_update_meta_notification_carries_no_value,
    ),
    (
        "strategy latest never expires a delivered notification",
        strategy_latest_never_expires_a_delivered_notification,
    ),
    (
        "unknown atSigns are not found, in plain words",
        unknown_atsigns_are_not_found_in_plain_words,
    ),
    (
        "a reset of the other atSign is noticed on a new link",
        a_reset_of_the_other_atsign_is_noticed_on_a_new_link,
    ),
];

#[test]
fn atsigns_on_one_node_look_as_on_two_servers() {
    run_all(Scene::one_node());
}

#[test]
fn atsigns_on_two_nodes_on_one_redis_look_as_on_two_servers() {
    run_all(Scene::two_nodes_on_one_redis());
}

/// The same two nodes on a Redis Cluster: one atSign's keys on one master, the registry and
/// channels on others; notifications and provisioning travel between the nodes over sharded
/// pub/sub.
#[test]
fn atsigns_on_two_nodes_on_one_redis_cluster_look_as_on_two_servers() {
    run_all(Scene::two_nodes_on_one_redis_cluster());
}

#[test]
fn atsigns_on_two_servers_behave_as_the_reference() {
    run_all(Scene::two_servers());
}

#[test]
fn atsigns_on_two_servers_each_on_its_own_redis_behave_as_the_reference() {
    run_all(Scene::two_servers_each_on_its_own_redis());
}

/// Runs every scenario on `scene`; fails with the names of those that failed (each failure's
/// panic message is printed as it happens).
fn run_all(mut scene: Scene) {
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, scenario) in SCENARIOS {
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(&mut scene)));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        eprintln!(
            "{}: {name}: {verdict} ({:.1?})",
            scene.topology,
            began.elapsed()
        );
        if outcome.is_err() {
            failed.push(*name);
            // It may have left replies unread, or @bob blocked.
            scene.reconnect();
            scene.alice.reply_to("config:block:remove:@bob", AT_ALICE);
        }
    }
    eprintln!(
        "{}: all scenarios in {:.1?}",
        scene.topology,
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{}: {} of {} scenarios failed: {failed:#?}",
        scene.topology,
        failed.len(),
        SCENARIOS.len()
    );
}

// ---- what the scenarios assert ----------------------------------------------------------

/// @bob's request to @alice after she blocked him: her server refuses his `from`.
const REFUSED: &str = "error:AT0008-Handshake failure : handshake with @alice failed: \
                       from answered \"error:AT0013-Exception: Unable to connect\"";

/// How long a notification that should not come is waited for.
const SILENCE: Duration = Duration::from_secs(2);
/// How long something that happens in the background (a delivery, a cache write) may take.
const PATIENCE: Duration = Duration::from_secs(10);

fn alice(scene: &mut Scene, line: &str) -> String {
    scene.alice.reply_to(line, AT_ALICE)
}

fn bob(scene: &mut Scene, line: &str) -> String {
    scene.bob.reply_to(line, AT_BOB)
}

/// Asserts a commit id (`data:<n>`), the answer to an update or delete.
fn committed(reply: String) {
    let n = reply
        .strip_prefix("data:")
        .and_then(|n| n.parse::<u64>().ok());
    assert!(n.is_some(), "expected a commit id, got {reply:?}");
}

/// The id of `data:<id>`, the answer to a notify.
fn notified(reply: String) -> String {
    reply
        .strip_prefix("data:")
        .filter(|id| !id.is_empty() && !id.contains(':'))
        .unwrap_or_else(|| panic!("expected a notification id, got {reply:?}"))
        .to_string()
}

/// Asks `line` on `client` until it answers `want`; panics with the last answer after
/// [`PATIENCE`].
fn eventually_answers(client: &mut Client, prompt: &str, line: &str, want: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = client.reply_to(line, prompt);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line}: expected {want:?} within {PATIENCE:?}, still {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A monitor line with its random parts (`id`, `epochMillis`) masked.
fn masked(line: &str) -> String {
    let line = line_without_time(line);
    let prefix = "notification: {\"id\":\"";
    let rest = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("not a notification: {line}"));
    let end = rest.find('"').expect("the id's end");
    format!("{prefix}<id>{}", &rest[end..])
}

/// The first notification of `key` with `operation` on `monitor`, skipping others.
fn notification_of(monitor: &mut Monitor, key: &str, operation: &str) -> String {
    let wanted = format!("\"key\":\"{key}\",");
    let op = format!("\"operation\":\"{operation}\"");
    monitor
        .find(PATIENCE, |line| {
            line.contains(&wanted) && line.contains(&op)
        })
        .unwrap_or_else(|| panic!("no {operation} notification of {key} within {PATIENCE:?}"))
}

/// Waits past the links' idle time (`outbound_idle_time_millis`, 1 s, checked every 250 ms),
/// so that the next request between the two servers opens a new link.
fn links_idle_out() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn has_id(line: &str, id: &str) -> bool {
    line.contains(&format!("\"id\":\"{id}\""))
}

// ---- E: signing keys ----------------------------------------------------------------------

/// Another atSign (and anyone) reads @alice's signing public key, as her owner does, before
/// the two ever talked: what a pol check needs. (The reference makes the pair at start-up;
/// this server when the owner first logs in, which the scene's owners have.)
fn signing_public_keys_are_served_before_any_contact(scene: &mut Scene) {
    let seen_by_bob = bob(scene, "plookup:signing_publickey@alice");
    assert!(
        seen_by_bob.starts_with("data:MII"),
        "a base64 RSA public key (SPKI): {seen_by_bob}"
    );
    assert_eq!(
        alice(scene, "llookup:public:signing_publickey@alice"),
        seen_by_bob
    );
}

// ---- A: block list --------------------------------------------------------------------------

/// Blocked on a new link: @bob's `from` is refused, and the lookup and scan that needed it.
fn a_blocked_atsigns_lookup_and_scan_are_refused(scene: &mut Scene) {
    links_idle_out();
    committed(alice(scene, "update:@bob:k0.x@alice v0"));
    assert_eq!(alice(scene, "config:block:add:@bob"), "data:success");
    let refused = (bob(scene, "lookup:k0.x@alice"), bob(scene, "scan:@alice"));
    assert_eq!(refused, (REFUSED.to_string(), REFUSED.to_string()));
    assert_eq!(alice(scene, "config:block:remove:@bob"), "data:success");
    assert_eq!(bob(scene, "lookup:k0.x@alice"), "data:v0");
}

/// A blocked atSign's notification is not shown, listed or delivered; once unblocked it is
/// delivered, once.
fn a_blocked_atsigns_notification_waits_until_unblocked(scene: &mut Scene) {
    links_idle_out();
    let mut monitor = scene.monitor("@alice");
    assert_eq!(alice(scene, "config:block:add:@bob"), "data:success");
    let id = notified(bob(scene, "notify:update:@alice:n0.x@bob:v0"));
    held(scene, &mut monitor, &id, "n0.x@bob");
    assert_eq!(alice(scene, "config:block:remove:@bob"), "data:success");
    delivered_once(scene, &mut monitor, &id);
}

/// Blocked after @bob's link to @alice opened: the same refusal as on a new link.
fn a_block_refuses_lookups_on_a_link_already_open(scene: &mut Scene) {
    assert_eq!(bob(scene, "lookup:k0.x@alice"), "data:v0");
    assert_eq!(alice(scene, "config:block:add:@bob"), "data:success");
    // Within the link's idle time (1 s): the link @bob's lookup just used.
    assert_eq!(bob(scene, "lookup:k0.x@alice"), REFUSED);
    assert_eq!(alice(scene, "config:block:remove:@bob"), "data:success");
    assert_eq!(bob(scene, "lookup:k0.x@alice"), "data:v0");
}

/// Blocked after @bob's link to @alice opened: his notification waits as on a new link.
fn a_block_holds_notifications_on_a_link_already_open(scene: &mut Scene) {
    let mut monitor = scene.monitor("@alice");
    assert_eq!(bob(scene, "lookup:k0.x@alice"), "data:v0");
    assert_eq!(alice(scene, "config:block:add:@bob"), "data:success");
    let id = notified(bob(scene, "notify:update:@alice:n1.x@bob:v1"));
    held(scene, &mut monitor, &id, "n1.x@bob");
    assert_eq!(alice(scene, "config:block:remove:@bob"), "data:success");
    delivered_once(scene, &mut monitor, &id);
}

/// @bob's notification `id` (of `key`) is not on @alice's monitor for [`SILENCE`], not in
/// her list, and not delivered.
fn held(scene: &mut Scene, monitor: &mut Monitor, id: &str, key: &str) {
    let from_bob: Vec<String> = monitor
        .lines_for(SILENCE)
        .into_iter()
        .filter(|line| line.contains("\"from\":\"@bob\""))
        .collect();
    assert_eq!(
        from_bob,
        Vec::<String>::new(),
        "shown to @alice while blocked"
    );
    let listed = alice(scene, "notify:list");
    assert!(!listed.contains(key), "listed while blocked: {listed}");
    let status = bob(scene, &format!("notify:status:{id}"));
    assert_ne!(status, "data:delivered", "delivered while blocked");
}

/// @bob's notification `id` is delivered and shown once on `monitor`.
fn delivered_once(scene: &mut Scene, monitor: &mut Monitor, id: &str) {
    eventually_answers(
        &mut scene.bob,
        AT_BOB,
        &format!("notify:status:{id}"),
        "data:delivered",
    );
    assert!(
        monitor.find(PATIENCE, |line| has_id(line, id)).is_some(),
        "{id} not shown once delivered"
    );
    let again = monitor.lines_for(Duration::from_millis(500));
    assert!(
        !again.iter().any(|line| has_id(line, id)),
        "{id} shown twice: {again:?}"
    );
}

// ---- B: cached copies ---------------------------------------------------------------------

/// @bob's lookups follow @alice's update and delete of a key cached forever with `ccd`.
fn cached_copies_follow_the_owners_updates_and_deletes(scene: &mut Scene) {
    follows(scene, "ttr:-1", "k1.test");
}

/// The same with `ttr:1000`.
fn cached_copies_with_a_ttr_follow_the_owners_changes(scene: &mut Scene) {
    follows(scene, "ttr:1000", "k2.test");
}

fn follows(scene: &mut Scene, ttr: &str, name: &str) {
    let key = format!("@bob:{name}@alice");
    let lookup = format!("lookup:{name}@alice");
    committed(alice(scene, &format!("update:{ttr}:ccd:true:{key} v1")));
    assert_eq!(bob(scene, &lookup), "data:v1");
    committed(alice(scene, &format!("update:{ttr}:ccd:true:{key} v2")));
    eventually_answers(&mut scene.bob, AT_BOB, &lookup, "data:v2");
    committed(alice(scene, &format!("delete:{key}")));
    eventually_answers(
        &mut scene.bob,
        AT_BOB,
        &lookup,
        &format!("error:AT0015-key not found : Exception: {key} does not exist in keystore"),
    );
}

/// Without `ccd`, @alice's delete (which @bob is told of) leaves @bob's cached copy.
fn a_delete_without_ccd_leaves_the_cached_copy(scene: &mut Scene) {
    let mut monitor = scene.monitor("@bob");
    committed(alice(
        scene,
        "update:ttr:-1:ccd:false:@bob:k3.test@alice v3",
    ));
    assert_eq!(bob(scene, "lookup:k3.test@alice"), "data:v3");
    committed(alice(scene, "delete:@bob:k3.test@alice"));
    notification_of(&mut monitor, "@bob:k3.test@alice", "delete");
    assert_eq!(
        (
            bob(scene, "llookup:cached:@bob:k3.test@alice"),
            bob(scene, "lookup:k3.test@alice"),
        ),
        ("data:v3".to_string(), "data:v3".to_string())
    );
}

/// A notification carrying a value and a `ttr` leaves @bob a cached copy.
fn a_notification_with_a_value_and_ttr_is_cached(scene: &mut Scene) {
    notified(alice(
        scene,
        "notify:update:ttr:-1:ccd:true:@bob:n7.x@alice:nv7",
    ));
    eventually_answers(
        &mut scene.bob,
        AT_BOB,
        "llookup:cached:@bob:n7.x@alice",
        "data:nv7",
    );
}

/// The autoNotify of an update with a `ttr` leaves @bob a cached copy, unasked.
fn an_updates_auto_notify_is_cached(scene: &mut Scene) {
    committed(alice(scene, "update:ttr:-1:@bob:k5.x@alice v5"));
    eventually_answers(
        &mut scene.bob,
        AT_BOB,
        "llookup:cached:@bob:k5.x@alice",
        "data:v5",
    );
}

// ---- C: one notification per id -------------------------------------------------------------

/// A notification sent again with the same id, once the first was shown, is shown and listed
/// once, as first sent. (Sent again before the first was delivered, the sender's log holds the
/// second in its place: `notification_retries.rs`,
/// `a_notification_id_resent_before_delivery_arrives_once_as_first_sent`, ignored: it is
/// never delivered, and here, sent at once, the second's value was sometimes the one shown.)
fn a_resent_notification_id_is_shown_once(scene: &mut Scene) {
    const ID: &str = "5b0f7b5e-3c1a-4d2e-9f00-0c0ffee00003";
    let mut monitor = scene.monitor("@bob");
    let first = alice(scene, &format!("notify:id:{ID}:update:@bob:n3.x@alice:one"));
    assert_eq!(first, format!("data:{ID}"));
    let shown = monitor
        .find(PATIENCE, |line| has_id(line, ID))
        .unwrap_or_else(|| panic!("{ID} not shown"));
    assert!(shown.contains("\"value\":\"one\""), "{shown}");
    let second = alice(scene, &format!("notify:id:{ID}:update:@bob:n3.x@alice:two"));
    assert_eq!(second, format!("data:{ID}"));
    let again: Vec<String> = monitor
        .lines_for(SILENCE)
        .into_iter()
        .filter(|line| has_id(line, ID))
        .collect();
    assert_eq!(again, Vec::<String>::new(), "shown twice");
    let listed = bob(scene, "notify:list:n3");
    assert_eq!(
        listed.matches(&format!("\"id\":\"{ID}\"")).count(),
        1,
        "{listed}"
    );
    assert!(listed.contains("\"value\":\"one\""), "{listed}");
}

// ---- D, G: shapes -------------------------------------------------------------------------

/// What @bob's monitor shows of @alice's update and delete of a key shared with him.
fn update_and_delete_notifications_have_the_reference_shape(scene: &mut Scene) {
    let mut monitor = scene.monitor("@bob");
    committed(alice(scene, "update:@bob:k4.x@alice v4"));
    assert_eq!(
        masked(&notification_of(&mut monitor, "@bob:k4.x@alice", "update")),
        "notification: {\"id\":\"<id>\",\"from\":\"@alice\",\"to\":\"@bob\",\
         \"key\":\"@bob:k4.x@alice\",\"value\":\"v4\",\"operation\":\"update\",\
         \"epochMillis\":<time>,\"messageType\":\"MessageType.key\",\"isEncrypted\":false,\
         \"metadata\":{\"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":null,\
         \"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
    );
    committed(alice(scene, "delete:@bob:k4.x@alice"));
    assert_eq!(
        masked(&notification_of(&mut monitor, "@bob:k4.x@alice", "delete")),
        "notification: {\"id\":\"<id>\",\"from\":\"@alice\",\"to\":\"@bob\",\
         \"key\":\"@bob:k4.x@alice\",\"value\":null,\"operation\":\"delete\",\
         \"epochMillis\":<time>,\"messageType\":\"MessageType.key\",\"isEncrypted\":true,\
         \"metadata\":{\"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":null,\
         \"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
    );
}

/// `update:meta` tells @bob that the key changed, without a value (the reference's).
fn an_update_meta_notification_carries_no_value(scene: &mut Scene) {
    let mut monitor = scene.monitor("@bob");
    committed(alice(scene, "update:@bob:k8.x@alice v8"));
    let first = notification_of(&mut monitor, "@bob:k8.x@alice", "update");
    assert!(first.contains("\"value\":\"v8\""), "{first}");
    committed(alice(scene, "update:meta:@bob:k8.x@alice:ttl:600000"));
    assert_eq!(
        masked(&notification_of(&mut monitor, "@bob:k8.x@alice", "update")),
        "notification: {\"id\":\"<id>\",\"from\":\"@alice\",\"to\":\"@bob\",\
         \"key\":\"@bob:k8.x@alice\",\"value\":null,\"operation\":\"update\",\
         \"epochMillis\":<time>,\"messageType\":\"MessageType.key\",\"isEncrypted\":false,\
         \"metadata\":{\"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":null,\
         \"skeEncKeyName\":null,\"skeEncAlgo\":null,\"sharedKeyEnc\":null}}\n"
    );
}

// ---- H: strategy:latest ---------------------------------------------------------------------

/// Two notifications of one notifier in quick succession: the first may be superseded while
/// it waits, but once @bob was shown it, it is `delivered`, never `expired`.
fn strategy_latest_never_expires_a_delivered_notification(scene: &mut Scene) {
    const ROUNDS: usize = 6;
    let mut monitor = scene.monitor("@bob");
    let send = |scene: &mut Scene, value: &str| {
        notified(alice(
            scene,
            &format!(
                "notify:update:strategy:latest:latestN:1:notifier:appx:@bob:s1.x@alice:{value}"
            ),
        ))
    };
    let mut first_shown = 0;
    for _ in 0..ROUNDS {
        let first = send(scene, "v1");
        let second = send(scene, "v2");
        // Every line up to the second's, and a moment after it (they may come in any order).
        let first_seen = std::cell::Cell::new(false);
        let shown = monitor.find(PATIENCE, |line| {
            first_seen.set(first_seen.get() || has_id(line, &first));
            has_id(line, &second)
        });
        assert!(shown.is_some(), "the newest ({second}) not shown");
        let late = monitor.lines_for(Duration::from_millis(300));
        let first_seen = first_seen.get() || late.iter().any(|line| has_id(line, &first));
        if first_seen {
            first_shown += 1;
            // Its status may lag the monitor a moment; `expired` is final.
            eventually_answers(
                &mut scene.alice,
                AT_ALICE,
                &format!("notify:status:{first}"),
                "data:delivered",
            );
        }
        eventually_answers(
            &mut scene.alice,
            AT_ALICE,
            &format!("notify:status:{second}"),
            "data:delivered",
        );
    }
    eprintln!(
        "{}: strategy latest: first shown in {first_shown} of {ROUNDS} rounds",
        scene.topology
    );
}

// ---- F: unknown atSigns ---------------------------------------------------------------------

/// An atSign the directory does not know: AT0007, naming it, and nothing of the servers'
/// addresses or TLS.
fn unknown_atsigns_are_not_found_in_plain_words(scene: &mut Scene) {
    let not_found = "error:AT0007-Secondary server not found : \
                     Unable to find secondary address for atSign:nobody";
    assert_eq!(
        (
            alice(scene, "lookup:kk.x@nobody"),
            alice(scene, "plookup:kk@nobody"),
            alice(scene, "scan:@nobody"),
        ),
        (
            not_found.to_string(),
            not_found.to_string(),
            not_found.to_string()
        )
    );
}

// ---- I: the other atSign resets -----------------------------------------------------------

/// @bob replaces his public key; @alice's next new link to him (the old one idled out)
/// fetches it first and replaces her cached copy.
fn a_reset_of_the_other_atsign_is_noticed_on_a_new_link(scene: &mut Scene) {
    committed(bob(scene, "update:public:publickey@bob KEY-1"));
    committed(bob(scene, "update:@alice:k9.x@bob v9"));
    assert_eq!(
        alice(scene, "plookup:bypassCache:true:publickey@bob"),
        "data:KEY-1"
    );
    assert_eq!(
        alice(scene, "llookup:cached:public:publickey@bob"),
        "data:KEY-1"
    );
    committed(bob(scene, "update:public:publickey@bob KEY-2"));
    links_idle_out();
    assert_eq!(alice(scene, "lookup:k9.x@bob"), "data:v9");
    assert_eq!(
        alice(scene, "llookup:cached:public:publickey@bob"),
        "data:KEY-2"
    );
}
