//! APKAM devices end to end, over real TLS against the real binary, as `at_activate` drives
//! them and the reference atServer (Dart at_server 3.0.52) answers
//! (docs/authentication.md#apkam-enrollment, docs/authentication.md#enrollment-states):
//!
//! 1. the first device onboards with cram: its `enroll:request` is approved at once, and it
//!    logs in with `pkam:enrollmentId:<id1>:<sig>`;
//! 2. it hands out a one-time password (`otp:get`) and sets a semi-permanent one (`otp:put`);
//! 3. it watches for requests with `monitor:selfNotifications`;
//! 4. a second device, not logged in, asks with the OTP: pending, and the first device's
//!    monitor gets the reference's notice; the OTP is spent;
//! 5. the second device cannot log in while pending (AT0026);
//! 6. the first device approves it, leaving it its encrypted default keys;
//! 7. the second device logs in and may use its own namespace only (AT0009 elsewhere; scan,
//!    monitor and `enroll:list` leave out what is not its);
//! 8. it reads the encrypted default keys its approver left (`keys:get`);
//! 9. revoked by the first device, its open connections are closed and its pkam is AT0027;
//! 10. unrevoke, delete, fetch; a denied request (AT0025) and wrong passcodes;
//! 11. a first device that revoked itself cannot log in the legacy way either, until a cram
//!     owner unrevokes it.
//!
//! Every signature is made here with `ring`: the first device's with the test key in
//! `common/testdata/auth`, the second device's with the pair in `testdata/` beside this file
//! (its README says how it was made). Each test runs on both backends
//! (`support::both_backends`).

mod support;

use std::time::Duration;

use at_tests::apkam::{is_uuid, pkam_signature, without_id_and_time, MonitorLines};
use at_tests::client::{Client, PROMPT_WAIT};
use support::*;

const SECOND_PUBLIC: &str = include_str!("testdata/second_device_rsa_public_spki.b64");
const SECOND_PRIVATE: &str = include_str!("testdata/second_device_rsa_private_pkcs8.b64");

/// How long a revoked device's connections may stay open after the revocation's answer.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
/// How long an enrollment notice may take to reach a monitor.
const NOTICE_WITHIN: Duration = Duration::from_secs(10);

const INVALID_OTP: &str = "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@";
const SUCCESS: &str = "data:success\n@alice@";

/// The first device's onboarding request, with its encrypted default keys `P1` and `S1`.
fn first_request() -> String {
    format!(
        r#"enroll:request:{{"appName":"wavi","deviceName":"first","namespaces":{{"wavi":"rw"}},"apkamPublicKey":"{}","encryptedDefaultEncryptionPrivateKey":"P1","encryptedDefaultSelfEncryptionKey":"S1"}}"#,
        PKAM_PUBLIC.trim()
    ) + "\n"
}

/// A new device's request for app `buzz` as `device`, with `passcode` and the second key.
fn device_request(passcode: &str, device: &str) -> String {
    format!(
        r#"enroll:request:{{"appName":"buzz","deviceName":"{device}","namespaces":{{"buzz":"rw"}},"otp":"{passcode}","apkamPublicKey":"{}","encryptedAPKAMSymmetricKey":"SYM"}}"#,
        SECOND_PUBLIC.trim()
    ) + "\n"
}

/// `enroll:<op>:{"enrollmentId":"<id>"}`.
fn by_id(op: &str, id: &str) -> String {
    format!(r#"enroll:{op}:{{"enrollmentId":"{id}"}}"#) + "\n"
}

/// `data:{"status":"<status>","enrollmentId":"<id>"}` with the owner's prompt.
fn changed(status: &str, id: &str) -> String {
    format!(r#"data:{{"status":"{status}","enrollmentId":"{id}"}}"#) + "\n@alice@"
}

/// `data:{"enrollmentId":"<id>","status":"deleted"}` with the owner's prompt.
fn deleted(id: &str) -> String {
    format!(r#"data:{{"enrollmentId":"{id}","status":"deleted"}}"#) + "\n@alice@"
}

fn assert_uuid(id: &str, context: &str) {
    assert!(is_uuid(id), "not a uuid in {context:?}");
}

/// The id of `data:{"enrollmentId":"<id>","status":"<status>"}<prompt>`, a uuid.
fn enrollment_id(reply: &str, status: &str, prompt: &str) -> String {
    let id = reply
        .strip_prefix(r#"data:{"enrollmentId":""#)
        .and_then(|rest| rest.strip_suffix(&format!(r#"","status":"{status}"}}{prompt}"#)))
        .unwrap_or_else(|| panic!("not {status}: {reply:?}"));
    assert_uuid(id, reply);
    id.to_string()
}

/// Step 1: cram, then the first device's request, approved at once; its enrollment id.
fn onboard_first_device(node: &Node) -> String {
    let mut cram = cram_in(node);
    cram.send(first_request().as_bytes());
    enrollment_id(&cram.read_until(b"\n@alice@"), "approved", "\n@alice@")
}

/// `from:@alice`, then pkam as enrollment `id` signed with `private`; asserts `want`.
fn pkam_as(client: &mut Client, id: &str, private: &str, want: &str) {
    let challenge = from_alice(client);
    client.ask(
        &format!(
            "pkam:enrollmentId:{id}:{}\n",
            pkam_signature(private, &challenge)
        ),
        want,
    );
}

/// A new connection that tried to log in as enrollment `id`; `want` was the answer.
fn login(node: &Node, id: &str, private: &str, want: &str) -> Client {
    let mut client = node.client();
    pkam_as(&mut client, id, private, want);
    client
}

/// Step 2: `otp:get`: 6 characters of `A–Z` and `1–9` without `O`, at least one a digit.
fn new_otp(client: &mut Client) -> String {
    let reply = client.read_after("otp:get\n");
    let otp = reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix("\n@alice@"))
        .unwrap_or_else(|| panic!("otp:get: {reply:?}"));
    let allowed = |c: u8| (c.is_ascii_uppercase() && c != b'O') || (b'1'..=b'9').contains(&c);
    assert!(
        otp.len() == 6 && otp.bytes().all(allowed) && otp.bytes().any(|c| c.is_ascii_digit()),
        "otp:get: {reply:?}"
    );
    otp.to_string()
}

/// Step 3: a device logged in as `id` runs `command` (a `monitor`), and is subscribed once a
/// `noop` after it is answered (later commands wait for the subscription; on a monitor the
/// answer has no prompt).
fn monitor(node: &Node, id: &str, private: &str, command: &str) -> MonitorLines {
    let mut client = login(node, id, private, SUCCESS);
    client.send(format!("{command}\nnoop:0\n").as_bytes());
    let mut lines = MonitorLines::new(client);
    assert_eq!(lines.next_notification(PROMPT_WAIT), "data:ok\n");
    lines
}

/// Step 4: a new device's request with `passcode` on a connection of its own, not logged in:
/// pending. The connection and the enrollment id.
fn request_pending(node: &Node, passcode: &str, device: &str) -> (Client, String) {
    let mut client = node.client();
    client.send(device_request(passcode, device).as_bytes());
    let id = enrollment_id(&client.read_until(b"\n@"), "pending", "\n@");
    (client, id)
}

/// The notice of `id`'s request from `device` on an approver's monitor, with `<id>` for the
/// notification's own id and `<time>` for its epochMillis ([`without_id_and_time`]).
fn notice(id: &str, device: &str) -> String {
    format!(
        r#"notification: {{"id":"<id>","from":"@alice","to":"@alice","key":"{id}.new.enrollments.__manage@alice","value":"{{\"encryptedApkamSymmetricKey\":\"SYM\",\"encryptedAPKAMSymmetricKey\":\"SYM\",\"appName\":\"buzz\",\"deviceName\":\"{device}\",\"namespace\":{{\"buzz\":\"rw\"}}}}","operation":"update","epochMillis":<time>,"messageType":"MessageType.key","isEncrypted":false,"metadata":null}}"#
    ) + "\n"
}

/// Step 6: the approval of `id`, leaving it the encrypted default keys `P2` and `S2`.
fn approve(client: &mut Client, id: &str) {
    client.ask(
        &(format!(
            r#"enroll:approve:{{"enrollmentId":"{id}","encryptedDefaultEncryptionPrivateKey":"P2","encryptedDefaultSelfEncryptionKey":"S2"}}"#
        ) + "\n"),
        &changed("approved", id),
    );
}

/// `update:<key> <value>` by the owner; the commit id.
fn update(client: &mut Client, key: &str, value: &str) -> u64 {
    let reply = client.read_after(&format!("update:{key} {value}\n"));
    reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix("\n@alice@"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("update:{key}: {reply:?}"))
}

/// The keys of a `scan` reply (`data:[…]`).
fn scanned(client: &mut Client) -> Vec<String> {
    let reply = client.read_after("scan\n");
    let json = reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix("\n@alice@"))
        .unwrap_or_else(|| panic!("scan: {reply:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("scan: {e}: {reply:?}"))
}

trait ReadAfter {
    /// Sends `line` and returns the whole reply, up to the owner's prompt.
    fn read_after(&mut self, line: &str) -> String;
}

impl ReadAfter for Client {
    fn read_after(&mut self, line: &str) -> String {
        self.send(line.as_bytes());
        self.read_until(b"\n@alice@")
    }
}

/// Steps 1, 2, 4 and 6 in short: the first device logged in, and the second device approved
/// and logged in; (first device, second device, second device's enrollment id).
fn two_devices(node: &Node) -> (Client, Client, String) {
    let id1 = onboard_first_device(node);
    let mut first = login(node, &id1, PKAM_PRIVATE, SUCCESS);
    let otp = new_otp(&mut first);
    let (_, id2) = request_pending(node, &otp, "second");
    approve(&mut first, &id2);
    let second = login(node, &id2, SECOND_PRIVATE, SUCCESS);
    (first, second, id2)
}

/// Steps 1–7, 9 and 10: the second device's whole life, as `at_activate` and an approving app
/// drive it.
fn a_second_device_enrolls_with_an_otp_is_approved_limited_and_revoked(backend: Backend) {
    let node = Node::start(backend);
    // 1. Onboarding, then the first device's own login.
    let id1 = onboard_first_device(&node);
    let mut first = login(&node, &id1, PKAM_PRIVATE, SUCCESS);
    // 2. Passcodes.
    let otp = new_otp(&mut first);
    first.ask("otp:put:ABC123\n", "data:ok\n@alice@");
    // 3. The first device holds __manage: it watches for requests.
    let mut approvers = monitor(&node, &id1, PKAM_PRIVATE, "monitor:selfNotifications");

    // 4. The new device asks with the OTP, without logging in: pending, and announced.
    let (mut second, id2) = request_pending(&node, &otp, "second");
    assert_eq!(
        without_id_and_time(&approvers.next_notification(NOTICE_WITHIN)),
        notice(&id2, "second")
    );
    // The OTP is spent: another device cannot use it again.
    let mut late = node.client();
    late.ask(&device_request(&otp, "other"), INVALID_OTP);
    still_open(&mut late, "@");

    // 5. Not while pending; the connection stays open.
    pkam_as(
        &mut second,
        &id2,
        SECOND_PRIVATE,
        &format!("error:AT0026:enrollment_id: {id2} is pending\n@"),
    );
    still_open(&mut second, "@");

    // 6. Approved by the first device.
    approve(&mut first, &id2);

    // 7. The second device logs in on the connection it asked on, and may use `buzz` only.
    pkam_as(&mut second, &id2, SECOND_PRIVATE, SUCCESS);
    let buzz = update(&mut second, "phone.buzz@alice", "123");
    second.ask("llookup:phone.buzz@alice\n", "data:123\n@alice@");
    let wavi = update(&mut first, "phone.wavi@alice", "9");
    assert!(wavi > buzz, "commit ids {buzz} then {wavi}");
    let refused = |verb: &str, key: &str| {
        format!("error:AT0009-UnAuthorized client in request : Connection with enrollment ID {id2} is not authorized to {verb} key: {key}\n@alice@")
    };
    second.ask(
        "llookup:phone.wavi@alice\n",
        &refused("llookup", "phone.wavi@alice"),
    );
    second.ask(
        "update:x.wavi@alice 1\n",
        &refused("update", "x.wavi@alice"),
    );
    second.ask(
        "delete:phone.wavi@alice\n",
        &refused("delete", "phone.wavi@alice"),
    );
    second.ask(
        "notify:update:@bob:x.wavi@alice:v\n",
        &refused("notify", "@bob:x.wavi@alice"),
    );
    // Nor may it make its key the legacy pkam key (which would log it in without limits).
    second.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            SECOND_PUBLIC.trim()
        ),
        &refused("update", "privatekey:at_pkam_publickey"),
    );
    still_open(&mut second, "@alice@");
    first.ask("llookup:phone.wavi@alice\n", "data:9\n@alice@");
    first.ask(
        "llookup:x.wavi@alice\n",
        "error:AT0015-key not found : x.wavi@alice does not exist in keystore\n@alice@",
    );
    // Its monitor hears of `buzz` keys only: of two notifications to @alice, the `wavi` one,
    // sent first, never reaches it.
    let mut buzz_monitor = monitor(&node, &id2, SECOND_PRIVATE, "monitor");
    for (id, key) in [("n-wavi", "x.wavi"), ("n-buzz", "x.buzz")] {
        first.ask(
            &format!("notify:id:{id}:update:@alice:{key}@alice:v\n"),
            &format!("data:{id}\n@alice@"),
        );
    }
    let heard = buzz_monitor.next_notification(NOTICE_WITHIN);
    assert!(
        heard.starts_with("notification: {\"id\":\"n-buzz\",\"from\":\"@alice\",\"to\":\"@alice\",\"key\":\"@alice:x.buzz@alice\","),
        "{heard:?}"
    );
    for id in ["n-wavi", "n-buzz"] {
        let line = approvers.next_notification(NOTICE_WITHIN);
        assert!(
            line.starts_with(&format!("notification: {{\"id\":\"{id}\",")),
            "{line:?}"
        );
    }
    // Without __manage it lists only its own enrollment.
    second.ask(
        "enroll:list\n",
        &format!("data:{{\"{id2}.new.enrollments.__manage@alice\":{{\"appName\":\"buzz\",\"deviceName\":\"second\",\"namespace\":{{\"buzz\":\"rw\"}},\"encryptedAPKAMSymmetricKey\":\"SYM\",\"status\":\"approved\"}}}}\n@alice@"),
    );

    // 9. Revoked by the first device: the second device's connections, its monitor too, are
    // closed without a word, and its pkam is refused.
    first.ask(&by_id("revoke", &id2), &changed("revoked", &id2));
    second.expect_closed(CLOSED_WITHIN);
    buzz_monitor.expect_closed(CLOSED_WITHIN);
    login(
        &node,
        &id2,
        SECOND_PRIVATE,
        &format!("error:AT0027:enrollment_id: {id2} is revoked\n@"),
    );
    still_open(&mut first, "@alice@");

    // 10. Unrevoked: it logs in again. Revoked again, then deleted: gone.
    first.ask(&by_id("unrevoke", &id2), &changed("approved", &id2));
    let mut back = login(&node, &id2, SECOND_PRIVATE, SUCCESS);
    back.ask("llookup:phone.buzz@alice\n", "data:123\n@alice@");
    first.ask(&by_id("revoke", &id2), &changed("revoked", &id2));
    back.expect_closed(CLOSED_WITHIN);
    first.ask(&by_id("delete", &id2), &deleted(&id2));
    // The reference's fetch lets its key store's miss through.
    first.ask(
        &by_id("fetch", &id2),
        &format!("error:AT0015-key not found : {id2}.new.enrollments.__manage@alice does not exist in keystore\n@alice@"),
    );
    login(
        &node,
        &id2,
        SECOND_PRIVATE,
        &format!("error:AT0028:enrollment_id: {id2} is expired or invalid\n@"),
    );
    still_open(&mut first, "@alice@");
}

/// Step 7, `scan`: the first device (`*`) sees every key; the second only public keys and its
/// own namespace's, as the reference's scan filters an enrollment's keys (keys in `__manage`,
/// the enrollment records and the encrypted default keys left for devices, are left out too).
fn a_device_scan_lists_only_public_keys_and_its_own_namespace(backend: Backend) {
    let node = Node::start(backend);
    let (mut first, mut second, _) = two_devices(&node);
    update(&mut second, "phone.buzz@alice", "123");
    update(&mut first, "phone.wavi@alice", "9");
    let everything = scanned(&mut first);
    for key in ["phone.wavi@alice", "phone.buzz@alice"] {
        assert!(everything.contains(&key.to_string()), "{everything:?}");
    }
    let mine: Vec<String> = everything
        .iter()
        .filter(|key| key.starts_with("public:") || key.ends_with(".buzz@alice"))
        .cloned()
        .collect();
    assert_eq!(
        mine,
        [
            "phone.buzz@alice",
            "public:buzz.second.pkam.__pkams.__public_keys@alice",
            "public:signing_publickey@alice"
        ]
    );
    assert_eq!(scanned(&mut second), mine);
}

/// Step 10: a request with the semi-permanent passcode (good again and again, unlike an OTP),
/// denied; wrong passcodes.
fn a_request_with_the_semi_permanent_passcode_is_denied_and_wrong_ones_are_refused(
    backend: Backend,
) {
    let node = Node::start(backend);
    let id1 = onboard_first_device(&node);
    let mut first = login(&node, &id1, PKAM_PRIVATE, SUCCESS);
    first.ask("otp:put:ABC123\n", "data:ok\n@alice@");
    let mut approvers = monitor(&node, &id1, PKAM_PRIVATE, "monitor:selfNotifications");

    // Wrong passcodes: refused, the connection kept (each waits a little longer:
    // enroll_passcode_wait_millis is 10 ms on the test nodes).
    let mut wrong = node.client();
    wrong.ask(&device_request("XYZ789", "third"), INVALID_OTP);
    wrong.ask(&device_request("ABC124", "third"), INVALID_OTP);
    still_open(&mut wrong, "@");

    let (mut third, id3) = request_pending(&node, "ABC123", "third");
    assert_eq!(
        without_id_and_time(&approvers.next_notification(NOTICE_WITHIN)),
        notice(&id3, "third")
    );
    let (_, id4) = request_pending(&node, "ABC123", "fourth");
    assert_eq!(
        without_id_and_time(&approvers.next_notification(NOTICE_WITHIN)),
        notice(&id4, "fourth")
    );

    first.ask(&by_id("deny", &id3), &changed("denied", &id3));
    pkam_as(
        &mut third,
        &id3,
        SECOND_PRIVATE,
        &format!("error:AT0025:enrollment_id: {id3} is denied\n@"),
    );
    still_open(&mut third, "@");
    first.ask(
        &(format!(
            r#"enroll:approve:{{"enrollmentId":"{id3}","encryptedDefaultEncryptionPrivateKey":"P2","encryptedDefaultSelfEncryptionKey":"S2"}}"#
        ) + "\n"),
        &format!("error:AT0011-Internal server exception : Failed to approve enrollment id: {id3}. Cannot approve a denied enrollment. Only pending enrollments can be approved\n@alice@"),
    );
    // The other request is still pending.
    first.ask(
        &by_id("fetch", &id4),
        "data:{\"appName\":\"buzz\",\"deviceName\":\"fourth\",\"namespace\":{\"buzz\":\"rw\"},\"encryptedAPKAMSymmetricKey\":\"SYM\",\"status\":\"pending\"}\n@alice@",
    );
    first.ask(&by_id("delete", &id3), &deleted(&id3));
}

/// Step 8, written last: the `keys` verb was being written on `main` alongside these tests
/// (docs/authentication.md#keys). The approved device reads, by name, the encrypted default
/// keys its approver left it.
fn the_approved_device_reads_the_default_keys_its_approver_left(backend: Backend) {
    let node = Node::start(backend);
    let (_, mut second, id2) = two_devices(&node);
    second.ask(
        &format!("keys:get:keyName:{id2}.default_enc_private_key.__manage@alice\n"),
        "data:{\"value\":\"P2\"}\n@alice@",
    );
    second.ask(
        &format!("keys:get:keyName:{id2}.default_self_enc_key.__manage@alice\n"),
        "data:{\"value\":\"S2\"}\n@alice@",
    );
}

/// Step 11: the first device revokes itself (`force`): its other connections close at once, and
/// its key, the legacy pkam key too, no longer logs in, until a cram owner unrevokes it.
fn a_first_device_revoked_with_force_loses_legacy_pkam_until_unrevoked(backend: Backend) {
    let node = Node::start(backend);
    let id1 = onboard_first_device(&node);
    drop(pkam_in(&node));
    let mut first = login(&node, &id1, PKAM_PRIVATE, SUCCESS);
    let mut watching = monitor(&node, &id1, PKAM_PRIVATE, "monitor:selfNotifications");

    first.ask(
        &(format!(r#"enroll:revoke:force:{{"enrollmentId":"{id1}"}}"#) + "\n"),
        &format!("data:{{\"status\":\"revoked\",\"enrollmentId\":\"{id1}\",\"message\":\"Enrollment is revoked. Closing the connection in 10 seconds\"}}\n@alice@"),
    );
    watching.expect_closed(CLOSED_WITHIN);
    let mut legacy = node.client();
    let challenge = from_alice(&mut legacy);
    legacy.ask(
        &format!("pkam:{}\n", pkam_signature(PKAM_PRIVATE, &challenge)),
        "error:AT0401-Exception: pkam publickey not found\n@",
    );
    still_open(&mut legacy, "@");
    login(
        &node,
        &id1,
        PKAM_PRIVATE,
        &format!("error:AT0027:enrollment_id: {id1} is revoked\n@"),
    );

    // cram still works (the secret was not deleted): the owner unrevokes it.
    let mut cram = cram_in(&node);
    cram.ask(&by_id("unrevoke", &id1), &changed("approved", &id1));
    drop(pkam_in(&node));
    login(&node, &id1, PKAM_PRIVATE, SUCCESS);
}

both_backends! {
    a_second_device_enrolls_with_an_otp_is_approved_limited_and_revoked,
    a_device_scan_lists_only_public_keys_and_its_own_namespace,
    a_request_with_the_semi_permanent_passcode_is_denied_and_wrong_ones_are_refused,
    the_approved_device_reads_the_default_keys_its_approver_left,
    a_first_device_revoked_with_force_loses_legacy_pkam_until_unrevoked,
}
