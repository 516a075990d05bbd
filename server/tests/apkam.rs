//! APKAM over real TLS, against the real binary: a cram-authenticated `enroll:request` is
//! approved at once (onboarding: docs/authentication.md#apkam-enrollment,
//! docs/authentication.md#onboarding), and `pkam:enrollmentId:<id>:<sig>` then verifies against
//! that enrollment's key, with the reference's refusals for enrollments that are not approved
//! (docs/authentication.md#enrollment-states). Signatures are made here with `ring`,
//! independently of the server's code.

mod support;

use std::time::Duration;

use at_tests::client::Client;
use support::*;

const OTHER_PUBLIC: &str = include_str!("../../common/testdata/auth/rsa_other_public_spki.b64");

/// `enroll:request` for app `wavi` on `device`, with the test APKAM key.
fn request_line(device: &str) -> String {
    format!(
        r#"enroll:request:{{"appName":"wavi","deviceName":"{device}","namespaces":{{"wavi":"rw"}},"apkamPublicKey":"{}"}}"#,
        PKAM_PUBLIC.trim()
    ) + "\n"
}

/// Sends an `enroll:request` on a cram connection; returns the approved enrollment id.
fn enroll(client: &mut Client, device: &str) -> String {
    client.send(request_line(device).as_bytes());
    let reply = client.read_until(b"\n@alice@");
    let id = reply
        .strip_prefix(r#"data:{"enrollmentId":""#)
        .and_then(|rest| rest.strip_suffix("\",\"status\":\"approved\"}\n@alice@"))
        .unwrap_or_else(|| panic!("not an approval: {reply:?}"));
    assert_eq!(id.len(), 36, "a uuid: {reply:?}");
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "{reply:?}"
    );
    id.to_string()
}

/// A new connection: `from`, then `pkam` with enrollment `id` signed by the test APKAM key.
fn apkam(node: &Node, id: &str, want: &str) -> Client {
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!("pkam:enrollmentId:{id}:{}\n", pkam_signature(&challenge)),
        want,
    );
    client
}

fn cram_enroll_request_then_pkam_with_the_enrollment_id_authenticates(backend: Backend) {
    let node = Node::start(backend);
    let mut cram = cram_in(&node);
    let id = enroll(&mut cram, "pixel");

    let mut client = apkam(&node, &id, "data:success\n@alice@");
    client.ask(
        "llookup:public:nothing@alice\n",
        "error:AT0015-key not found : public:nothing@alice does not exist in keystore\n@alice@",
    );

    // The form the client builder sends, with the algorithm prefixes.
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    client.ask(
        &format!(
            "pkam:signingAlgo:rsa2048:hashingAlgo:sha256:enrollmentId:{id}:{}\n",
            pkam_signature(&challenge)
        ),
        "data:success\n@alice@",
    );
}

fn the_enrollment_key_is_checked_not_the_legacy_pkam_key(backend: Backend) {
    let node = Node::start(backend);
    let mut cram = cram_in(&node);
    let id = enroll(&mut cram, "pixel");
    // The approved key is also the legacy pkam key, for clients that do not send the id.
    drop(pkam_in(&node));
    // Replace the legacy key: legacy pkam fails, APKAM with the enrollment still succeeds.
    cram.ask(
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            OTHER_PUBLIC.trim()
        ),
        "data:-1\n@alice@",
    );
    let mut legacy = node.client();
    let challenge = from_alice(&mut legacy);
    legacy.ask(
        &format!("pkam:{}\n", pkam_signature(&challenge)),
        "error:AT0401-Exception: pkam authentication failed\n@",
    );
    apkam(&node, &id, "data:success\n@alice@");
}

fn an_unknown_enrollment_id_is_at0028_and_the_challenge_can_still_be_answered(backend: Backend) {
    let node = Node::start(backend);
    let mut cram = cram_in(&node);
    let id = enroll(&mut cram, "pixel");
    let mut client = node.client();
    let challenge = from_alice(&mut client);
    let signature = pkam_signature(&challenge);
    client.ask(
        &format!("pkam:enrollmentId:0e0e0e0e-no-such-enrollment:{signature}\n"),
        "error:AT0028:enrollment_id: 0e0e0e0e-no-such-enrollment is expired or invalid\n@",
    );
    still_open(&mut client, "@");
    // The refusal looked at no signature, so the challenge is still good, as in the reference.
    client.ask(
        &format!("pkam:enrollmentId:{id}:{signature}\n"),
        "data:success\n@alice@",
    );
}

fn revoked_denied_and_unrevoked_enrollments_at_pkam(backend: Backend) {
    let node = Node::start(backend);
    let mut enrolling = cram_in(&node);
    let id = enroll(&mut enrolling, "pixel");
    let mut owner = cram_in(&node);
    let by_id = |op: &str| format!(r#"enroll:{op}:{{"enrollmentId":"{id}"}}"#) + "\n";

    owner.ask(
        &by_id("revoke"),
        &format!("data:{{\"status\":\"revoked\",\"enrollmentId\":\"{id}\"}}\n@alice@"),
    );
    apkam(
        &node,
        &id,
        &format!("error:AT0027:enrollment_id: {id} is revoked\n@"),
    );
    owner.ask(
        &by_id("unrevoke"),
        &format!("data:{{\"status\":\"approved\",\"enrollmentId\":\"{id}\"}}\n@alice@"),
    );
    apkam(&node, &id, "data:success\n@alice@");
    owner.ask(
        &by_id("deny"),
        &format!("data:{{\"status\":\"denied\",\"enrollmentId\":\"{id}\"}}\n@alice@"),
    );
    let mut client = apkam(
        &node,
        &id,
        &format!("error:AT0025:enrollment_id: {id} is denied\n@"),
    );
    still_open(&mut client, "@");
    owner.ask(
        &by_id("revoke"),
        &format!("error:AT0011-Internal server exception : Failed to revoke enrollment id: {id}. Cannot revoke a denied enrollment. Only approved enrollments can be revoked\n@alice@"),
    );
    owner.ask(
        "enroll:deny:{\"enrollmentId\":\"feay891281821899090eye\"}\n",
        "error:AT0028:enrollment_id: feay891281821899090eye is expired or invalid\n@alice@",
    );
}

fn the_requesting_connection_is_that_enrollment_and_may_revoke_it_only_with_force(
    backend: Backend,
) {
    let node = Node::start(backend);
    let mut cram = cram_in(&node);
    let id = enroll(&mut cram, "pixel");
    cram.ask(
        &(format!(r#"enroll:revoke:{{"enrollmentId":"{id}"}}"#) + "\n"),
        "error:AT0031-Cannot revoke self enrollment : Current client cannot revoke its own enrollment\n@alice@",
    );
    cram.ask(
        &(format!(r#"enroll:revoke:force:{{"enrollmentId":"{id}"}}"#) + "\n"),
        &format!("data:{{\"status\":\"revoked\",\"enrollmentId\":\"{id}\",\"message\":\"Enrollment is revoked. Closing the connection in 10 seconds\"}}\n@alice@"),
    );
    still_open(&mut cram, "@alice@");
    cram.expect_closed(Duration::from_secs(15));
    apkam(
        &node,
        &id,
        &format!("error:AT0027:enrollment_id: {id} is revoked\n@"),
    );
}

fn json_errors_for_new_clients_read_as_the_reference_functional_tests(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    client.send(b"from:@alice:clientConfig:{\"version\":\"3.0.60\"}\n");
    let challenge = client.read_until(b"\n@");
    let challenge = challenge
        .strip_prefix("data:")
        .and_then(|c| c.strip_suffix("\n@"))
        .unwrap()
        .to_string();
    client.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "data:success\n@alice@",
    );
    let id = enroll(&mut client, "pixel");
    client.ask(
        &(format!(r#"enroll:revoke:{{"enrollmentId":"{id}"}}"#) + "\n"),
        "error:{\"errorCode\":\"AT0031\",\"errorDescription\":\"Cannot revoke self enrollment : Current client cannot revoke its own enrollment\"}\n@alice@",
    );
    client.ask(
        &request_line("pixel"),
        &format!("error:{{\"errorCode\":\"AT0011\",\"errorDescription\":\"Internal server exception : Another enrollment with id {id} exists with the app name: wavi and device name: pixel in approved state\"}}\n@alice@"),
    );
}

fn list_and_fetch_show_the_approved_enrollment(backend: Backend) {
    let node = Node::start(backend);
    let mut cram = cram_in(&node);
    let id = enroll(&mut cram, "pixel");
    let mut owner = apkam(&node, &id, "data:success\n@alice@");
    let summary = r#"{"appName":"wavi","deviceName":"pixel","namespace":{"wavi":"rw","__manage":"rw","*":"rw"},"encryptedAPKAMSymmetricKey":null,"status":"approved"}"#;
    owner.ask(
        "enroll:list\n",
        &format!("data:{{\"{id}.new.enrollments.__manage@alice\":{summary}}}\n@alice@"),
    );
    owner.ask(
        "enroll:list:{\"enrollmentStatusFilter\":[\"revoked\",\"denied\"]}\n",
        "data:{}\n@alice@",
    );
    owner.ask(
        &(format!(r#"enroll:fetch:{{"enrollmentId":"{id}"}}"#) + "\n"),
        &format!("data:{summary}\n@alice@"),
    );
    // Enrollment records are never synced to clients.
    owner.ask("sync:from:-1:limit:10\n", "data:[]\n@alice@");
}

fn without_authentication_a_request_needs_an_otp_and_the_rest_needs_the_owner(backend: Backend) {
    let node = Node::start(backend);
    let mut client = node.client();
    client.ask(
        &request_line("pixel"),
        "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@",
    );
    client.ask(
        &(r#"enroll:request:{"appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw"},"otp":"ABC123","apkamPublicKey":"k","encryptedAPKAMSymmetricKey":"s"}"#.to_string() + "\n"),
        "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@",
    );
    client.ask(
        "enroll:list\n",
        "error:AT0401-Exception: Cannot list enrollment without authentication\n@",
    );
    client.ask(
        "enroll:revoke:{\"enrollmentid\":\"x\"}\n",
        "error:AT0401-Exception: Cannot revoke enrollment without authentication\n@",
    );
    client.ask(
        "enroll:request\n",
        "error:AT0022-Exception: Enroll parameters not provided\n@",
    );
    client.ask(
        "enroll:request:{\"deviceName\":\"d\"}\n",
        "error:AT0011-Exception: appName is mandatory for enroll:request\n@",
    );
    client.ask(
        "enroll:nope\n",
        "error:AT0003-Exception: Invalid syntax. enroll:request:{\"appName\":\"wavi\",\"deviceName\":\"iPhone\",\"namespaces\":{\"wavi\":\"rw\"},\"otp\":\"<otp>\":\"apkamPublicKey\":\"<public_key>\"}\n@",
    );
    still_open(&mut client, "@");
    // Five requests an hour per connection; the sixth is refused before its OTP is looked at.
    for _ in 0..3 {
        client.ask(
            &request_line("pixel"),
            "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@",
        );
    }
    client.ask(
        &request_line("pixel"),
        "error:AT0011-Exception: Enrollment requests have exceeded the limit within the specified time frame\n@",
    );
    // Parameters that are not JSON: an unexpected exception, which closes the connection.
    let mut other = node.client();
    other.send(b"enroll:request:{not json\n");
    let reply = other.read_until(b"\n@");
    assert!(
        reply.starts_with("error:AT0011-Exception: FormatException: "),
        "{reply:?}"
    );
    other.expect_closed(Duration::from_secs(5));
}

fn full_onboarding_with_enroll_then_the_cram_secret_is_deleted(backend: Backend) {
    // A real request carries the encrypted default keys: larger than the test's usual limit.
    let node = Node::start_with_buffer_limit(backend, 20_000);
    let mut cram = cram_in(&node);
    let encrypted = "QUJD".repeat(600);
    let line = format!(
        r#"enroll:request:{{"appName":"wavi","deviceName":"pixel","namespaces":{{"wavi":"rw"}},"apkamPublicKey":"{}","encryptedDefaultEncryptionPrivateKey":"{encrypted}","encryptedDefaultSelfEncryptionKey":"{encrypted}","encryptedAPKAMSymmetricKey":"{encrypted}"}}"#,
        PKAM_PUBLIC.trim()
    ) + "\n";
    cram.send(line.as_bytes());
    let reply = cram.read_until(b"\n@alice@");
    let id = reply
        .strip_prefix(r#"data:{"enrollmentId":""#)
        .and_then(|rest| rest.strip_suffix("\",\"status\":\"approved\"}\n@alice@"))
        .unwrap_or_else(|| panic!("{reply:?}"))
        .to_string();

    let mut owner = apkam(&node, &id, "data:success\n@alice@");
    owner.ask(
        &format!("update:public:publickey@alice {}\n", OTHER_PUBLIC.trim()),
        "data:0\n@alice@",
    );
    owner.ask("delete:privatekey:at_secret\n", "data:-1\n@alice@");
    let mut late = node.client();
    let challenge = from_alice(&mut late);
    late.ask(
        &format!("cram:{}\n", cram_digest(&node.cram_secret, &challenge)),
        "error:AT0401-Exception: Authentication Failed\n@",
    );
    apkam(&node, &id, "data:success\n@alice@");
    drop(pkam_in(&node));
}

fn enroll_inside_a_batch_is_refused_and_enrolls_nothing(backend: Backend) {
    let node = Node::start(backend);
    let mut cram = cram_in(&node);
    // The connection's checks (how it logged in, request limits) do not run for a batch
    // entry, so a batch may not enroll: answered as the verbs the connection answers itself.
    let request = request_line("tablet");
    let request = request.trim_end().replace('"', "\\\"");
    cram.ask(
        &format!("batch:[{{\"id\":1,\"command\":\"{request}\"}}]\n"),
        "data:[{\"id\":1,\"response\":{\"error_code\":\"AT0011\",\"error_message\":\"Internal server exception\"}}]\n@alice@",
    );
    cram.ask("enroll:list\n", "data:{}\n@alice@");
    still_open(&mut cram, "@alice@");
}

both_backends! {
    cram_enroll_request_then_pkam_with_the_enrollment_id_authenticates,
    the_enrollment_key_is_checked_not_the_legacy_pkam_key,
    an_unknown_enrollment_id_is_at0028_and_the_challenge_can_still_be_answered,
    revoked_denied_and_unrevoked_enrollments_at_pkam,
    the_requesting_connection_is_that_enrollment_and_may_revoke_it_only_with_force,
    json_errors_for_new_clients_read_as_the_reference_functional_tests,
    list_and_fetch_show_the_approved_enrollment,
    without_authentication_a_request_needs_an_otp_and_the_rest_needs_the_owner,
    full_onboarding_with_enroll_then_the_cram_secret_is_deleted,
    enroll_inside_a_batch_is_refused_and_enrolls_nothing,
}
