//! APKAM devices on a cluster: three `at-server` nodes on one real `redis-server`, the first
//! device on node A and the second on nodes B and C (docs/authentication.md#pending-requests-and-approval,
//! docs/authentication.md#revocation):
//!
//! - the second device's request, made on B, reaches the first device's
//!   `monitor:selfNotifications` on A as the reference's notice;
//! - approved on A, the second device logs in on B and watches on C;
//! - revoked on A, its connections on B and C (its monitor too) are closed within seconds, and
//!   its pkam is refused (AT0027).
//!
//! Signatures are made here with `ring`: the first device's with the test key in
//! `common/testdata/auth`, the second's with the pair in `server/tests/testdata` (its README
//! says how it was made). The single-node flow in all its steps: `server/tests/devices.rs`.

mod support;

use std::time::{Duration, Instant};

use at_tests::apkam::{is_uuid, pkam_signature, without_id_and_time, MonitorLines};
use at_tests::client::{Client, PROMPT_WAIT};
use at_tests::redis::RedisServer;
use at_tests::TempDir;
use support::{Node, PROPAGATION};

const FIRST_PUBLIC: &str = include_str!("../../common/testdata/auth/rsa_public_spki.b64");
const FIRST_PRIVATE: &str = include_str!("../../common/testdata/auth/rsa_private_pkcs8.b64");
const SECOND_PUBLIC: &str =
    include_str!("../../server/tests/testdata/second_device_rsa_public_spki.b64");
const SECOND_PRIVATE: &str =
    include_str!("../../server/tests/testdata/second_device_rsa_private_pkcs8.b64");

/// How long a revoked device's connections on another node may stay open.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
const SUCCESS: &str = "data:success\n@alice@";

/// A connection to `node` for `host` that has read the `@` prompt, retried until the node
/// serves the atSign (bounded).
fn connect(node: &Node, host: &str) -> Client {
    let deadline = Instant::now() + PROPAGATION;
    loop {
        match node.try_connect(host) {
            Ok(client) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "{host} not served: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// `from:@alice`, then pkam as enrollment `id` signed with `private`; asserts `want`.
fn pkam(client: &mut Client, id: &str, private: &str, want: &str) {
    client.send(b"from:@alice\n");
    let reply = client.read_until(b"\n@");
    let challenge = reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix("\n@"))
        .unwrap_or_else(|| panic!("from: {reply:?}"));
    client.ask(
        &format!(
            "pkam:enrollmentId:{id}:{}\n",
            pkam_signature(private, challenge)
        ),
        want,
    );
}

/// The id of `data:{"enrollmentId":"<id>","status":"<status>"}<prompt>`, a uuid.
fn enrollment_id(reply: &str, status: &str, prompt: &str) -> String {
    let id = reply
        .strip_prefix(r#"data:{"enrollmentId":""#)
        .and_then(|rest| rest.strip_suffix(&format!(r#"","status":"{status}"}}{prompt}"#)))
        .unwrap_or_else(|| panic!("not {status}: {reply:?}"));
    assert!(is_uuid(id), "{reply:?}");
    id.to_string()
}

/// A monitor of the device logged in as `id` on `node`, subscribed once a `noop` after it is
/// answered (on a monitor, without a prompt).
fn monitor(node: &Node, host: &str, id: &str, private: &str, command: &str) -> MonitorLines {
    let mut client = connect(node, host);
    pkam(&mut client, id, private, SUCCESS);
    client.send(format!("{command}\nnoop:0\n").as_bytes());
    let mut lines = MonitorLines::new(client);
    assert_eq!(lines.next_notification(PROMPT_WAIT), "data:ok\n");
    lines
}

#[test]
fn a_request_on_one_node_is_announced_on_another_and_revoking_there_closes_it() {
    let redis = RedisServer::start();
    let dir = TempDir::new("devices-cluster");
    let nodes: Vec<Node> = (0..3)
        .map(|n| Node::start(dir.path(), n, Some(&redis)))
        .collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let (host, secret) = a.provision("@alice");

    // The first device onboards on A and watches for requests there.
    let mut cram = a.owner("@alice", &host, &secret);
    cram.send(
        (format!(
            r#"enroll:request:{{"appName":"wavi","deviceName":"first","namespaces":{{"wavi":"rw"}},"apkamPublicKey":"{}","encryptedDefaultEncryptionPrivateKey":"P1","encryptedDefaultSelfEncryptionKey":"S1"}}"#,
            FIRST_PUBLIC.trim()
        ) + "\n")
            .as_bytes(),
    );
    let id1 = enrollment_id(&cram.read_until(b"\n@alice@"), "approved", "\n@alice@");
    let mut first = connect(a, &host);
    pkam(&mut first, &id1, FIRST_PRIVATE, SUCCESS);
    first.send(b"otp:get\n");
    let otp = first.read_until(b"\n@alice@");
    let otp = otp
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix("\n@alice@"))
        .unwrap_or_else(|| panic!("otp:get: {otp:?}"))
        .to_string();
    let mut approvers = monitor(a, &host, &id1, FIRST_PRIVATE, "monitor:selfNotifications");

    // The second device asks on B; the notice reaches A.
    let mut second = connect(b, &host);
    second.send(
        (format!(
            r#"enroll:request:{{"appName":"buzz","deviceName":"second","namespaces":{{"buzz":"rw"}},"otp":"{otp}","apkamPublicKey":"{}","encryptedAPKAMSymmetricKey":"SYM"}}"#,
            SECOND_PUBLIC.trim()
        ) + "\n")
            .as_bytes(),
    );
    let id2 = enrollment_id(&second.read_until(b"\n@"), "pending", "\n@");
    assert_eq!(
        without_id_and_time(&approvers.next_notification(PROPAGATION)),
        format!(
            r#"notification: {{"id":"<id>","from":"@alice","to":"@alice","key":"{id2}.new.enrollments.__manage@alice","value":"{{\"encryptedApkamSymmetricKey\":\"SYM\",\"encryptedAPKAMSymmetricKey\":\"SYM\",\"appName\":\"buzz\",\"deviceName\":\"second\",\"namespace\":{{\"buzz\":\"rw\"}}}}","operation":"update","epochMillis":<time>,"messageType":"MessageType.key","isEncrypted":false,"metadata":null}}"#
        ) + "\n"
    );
    pkam(
        &mut second,
        &id2,
        SECOND_PRIVATE,
        &format!("error:AT0026:enrollment_id: {id2} is pending\n@"),
    );

    // Approved on A: the second device logs in on B, and watches on C.
    first.ask(
        &(format!(
            r#"enroll:approve:{{"enrollmentId":"{id2}","encryptedDefaultEncryptionPrivateKey":"P2","encryptedDefaultSelfEncryptionKey":"S2"}}"#
        ) + "\n"),
        &format!("data:{{\"status\":\"approved\",\"enrollmentId\":\"{id2}\"}}\n@alice@"),
    );
    pkam(&mut second, &id2, SECOND_PRIVATE, SUCCESS);
    second.send(b"update:phone.buzz@alice 123\n");
    let commit = second.read_until(b"\n@alice@");
    assert!(
        commit
            .strip_prefix("data:")
            .and_then(|rest| rest.strip_suffix("\n@alice@"))
            .is_some_and(|id| id.parse::<u64>().is_ok()),
        "{commit:?}"
    );
    let mut watching = monitor(c, &host, &id2, SECOND_PRIVATE, "monitor");

    // Revoked on A: closed on B and C within seconds, and refused there.
    first.ask(
        &(format!(r#"enroll:revoke:{{"enrollmentId":"{id2}"}}"#) + "\n"),
        &format!("data:{{\"status\":\"revoked\",\"enrollmentId\":\"{id2}\"}}\n@alice@"),
    );
    second.expect_closed(CLOSED_WITHIN);
    watching.expect_closed(CLOSED_WITHIN);
    let mut again = connect(c, &host);
    pkam(
        &mut again,
        &id2,
        SECOND_PRIVATE,
        &format!("error:AT0027:enrollment_id: {id2} is revoked\n@"),
    );
    // The first device's connections on A stay.
    first.ask("noop:0\n", "data:ok\n@alice@");
}
