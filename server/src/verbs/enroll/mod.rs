//! `enroll` (docs/authentication.md#apkam-enrollment, docs/authentication.md#enrollment-states,
//! docs/authentication.md#onboarding; the reference's `enroll_verb_handler.dart`): the owner's
//! APKAM enrollments, one record each under `<id>.new.enrollments.__manage@<me>`, never
//! committed, and what `pkam:enrollmentId:<id>:<sig>` is checked against.
//!
//! Three parts, because only the connection knows who is asking ([`session`]):
//! - [`screen`] runs on the connection before the key store is asked: the checks the reference
//!   makes before it touches its key store for `request` (parameters, then the per-connection
//!   request limit) and the refusal to `revoke` the connection's own enrollment without `force`.
//! - [`enroll`] runs in the key store ([`operations`]): `request` (approved at once for a cram
//!   owner; pending for a pkam owner, or for anyone with a valid passcode: [`super::otp`],
//!   [`penalty`]), `approve`, `deny`, `revoke`, `unrevoke` (limited by the approver's own
//!   enrollment), `delete`, `list` and `fetch`.
//! - [`settle`] runs on the connection with the key store's answer: a `request` makes the
//!   connection that enrollment, `revoke:force` of its own enrollment closes it in 10 s, and a
//!   revoke closes the revoked enrollment's connections on every node.
//!
//! The parameters each operation needs are checked in [`params`]; the record, its status and
//! the keys written for it are [`record`], where [`apkam_key`] reads what `pkam` checks.
//!
//! # Format
//! ```text
//! enroll:request:{"appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw"},"apkamPublicKey":"MIIB…"}
//! data:{"enrollmentId":"<uuid>","status":"approved"}           (cram owner: approved at once)
//! enroll:approve|deny|revoke|unrevoke:{"enrollmentId":"<id>",…}
//! data:{"status":"approved|denied|revoked|approved","enrollmentId":"<id>"}
//! enroll:list[:{"enrollmentStatusFilter":["approved"]}]
//! data:{"<id>.new.enrollments.__manage@alice":{"appName":…,"deviceName":…,"namespace":{…},"encryptedAPKAMSymmetricKey":null,"status":"approved"}}
//! enroll:fetch:{"enrollmentId":"<id>"}
//! data:{"appName":…,"deviceName":…,"namespace":{…},"encryptedAPKAMSymmetricKey":null,"status":"approved"}
//! ```
//! A cram owner's request gets `"__manage":"rw"` and `"*":"rw"` added to its namespaces; its APKAM
//! key also becomes `privatekey:at_pkam_publickey` (for clients that still use legacy pkam), and
//! its encrypted default keys are kept under `<id>.default_enc_private_key.__manage@<me>` and
//! `<id>.default_self_enc_key.__manage@<me>` as `{"value":…}`, uncommitted.
//!
//! # Errors
//! As the reference words them. `AtEnrollmentException`s are AT0011 but keep the connection
//! open (unlike other AT0011s, [`AtError::keeping_open`]):
//! `error:AT0011-Exception: invalid otp. Cannot process enroll request` (unauthenticated; the
//! owner's connection reads `Internal server exception : …`), `… is mandatory for enroll:…`,
//! `Enrollment requests have exceeded the limit within the specified time frame`,
//! `Another enrollment with id <id> exists with the app name: <a> and device name: <d> in <state> state`,
//! `Failed to <op> enrollment id: <id>. Cannot <op> a <state> enrollment. Only … can be …`.
//! A missing or expired enrollment is the handler's colon form ([`AtError::set_by_handler`]),
//! `error:AT0028:enrollment_id: <id> is expired or invalid`. Missing parameters are AT0022
//! `Enroll parameters not provided`; parameters that are not JSON are AT0011 and close the
//! connection, as the reference's unexpected `FormatException` does.
//!
//! A pending request answers `data:{"enrollmentId":"<id>","status":"pending"}` and is announced
//! to approvers (docs/authentication.md#pending-requests-and-approval).
//!
//! The session id of the requesting connection is not kept (the record's `sessionId` is empty).

mod operations;
mod params;
mod penalty;
mod record;
mod session;

use std::time::Duration;

use at_common::error::{AtError, ErrorCode};
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::{Enroll, EnrollOp};
use at_common::AtSign;

use super::otp;
use crate::access::{self, Asker, Grant, Requested};
use crate::notifications::Monitors;
use crate::store::Store;
use operations::{change, delete, fetch, list, pending, request};
use params::checked_params;
pub use penalty::PasscodePenalty;
pub use record::{apkam_key, grant, ApkamKey};
pub use session::{screen, settle, Settled};

/// How long the connection that revoked its own enrollment (with `force`) stays open.
pub const REVOKED_SELF_CLOSE_AFTER: Duration = Duration::from_secs(10);

/// A step of an `enroll` command: its refusals are [`AtError`]s that say themselves whether
/// the connection stays open.
type Step<T> = Result<T, AtError>;

/// The reference's `AtEnrollmentException`: AT0011 that leaves the connection open.
fn enrollment_exception(message: impl Into<String>) -> AtError {
    AtError::with_detail(ErrorCode::InternalServerException, message).keeping_open()
}

/// The handler-set AT0028 for an enrollment that is not there (or no longer).
fn expired_or_invalid(id: &str) -> AtError {
    AtError::set_by_handler(
        ErrorCode::TooManyRequests,
        format!("enrollment_id: {id} is expired or invalid"),
    )
}

fn refuse(message: impl Into<String>) -> AtError {
    enrollment_exception(message)
}

/// Who asks an `enroll` in the key store, and what the key store lends it.
pub struct Asking<'a> {
    pub asker: &'a Asker,
    /// What the enrollment the owner logged in with allows now, if it logged in with one.
    pub grant: Option<&'a Grant>,
    /// Where the notice of a pending request goes.
    pub monitors: &'a Monitors,
    pub penalty: &'a PasscodePenalty,
}

/// `enroll:<op>` in the key store of `me`, asked as [`Asking`] says: a `request` is approved at
/// once for a cram owner, pending for a pkam owner, and pending for anyone else who brings a
/// valid passcode; the other operations are the owner's, limited by its enrollment.
pub async fn enroll(
    store: &Store,
    me: &AtSign,
    cmd: &Enroll,
    asking: &Asking<'_>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let owner = matches!(asking.asker, Asker::Owner { .. });
    if !owner && cmd.operation != EnrollOp::Request {
        // The connection answers these before they get here; refused the same way if not.
        return Err(AtError::with_detail(
            ErrorCode::Unauthenticated,
            format!("Cannot {} enrollment without authentication", cmd.operation),
        ));
    }
    let params = checked_params(cmd)?;
    match cmd.operation {
        EnrollOp::Request => match access::enroll_request(asking.asker) {
            Requested::Approved => request(store, me, &params, now).await,
            Requested::Pending => pending(store, asking.monitors, me, &params, now).await,
            Requested::WithPasscode => {
                if !otp::redeem(store, me, params.otp.as_deref(), now).await? {
                    let wait = asking.penalty.wrong(me, std::time::Instant::now());
                    tokio::time::sleep(wait).await;
                    return Err(refuse("invalid otp. Cannot process enroll request"));
                }
                asking.penalty.right(me, std::time::Instant::now());
                pending(store, asking.monitors, me, &params, now).await
            }
        },
        EnrollOp::Approve | EnrollOp::Deny | EnrollOp::Revoke | EnrollOp::Unrevoke => {
            change(store, me, cmd.operation, &params, asking.grant, now).await
        }
        EnrollOp::Delete => delete(store, me, &params, now).await,
        EnrollOp::List => list(store, me, &params, asking.grant, now).await,
        EnrollOp::Fetch => fetch(store, me, &params, now).await,
    }
}

#[cfg(test)]
mod tests {
    use at_common::verb::{Command, EnrollmentStatus};

    use crate::access::OwnerAuth;

    use super::*;
    use crate::access::Asker;
    use crate::reserved;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::written;

    fn enroll_cmd(line: &str) -> Enroll {
        match command(line) {
            Command::Enroll(e) => e,
            other => panic!("not enroll: {other:?}"),
        }
    }

    fn cram() -> Asker {
        Asker::Owner {
            via: OwnerAuth::Cram,
            enrollment: None,
        }
    }

    /// `line` asked by `asker` (logged in with `grant`), no wait after a wrong passcode.
    async fn ask(f: &Fixture, asker: &Asker, grant: Option<&Grant>, line: &str) -> String {
        let monitors = Monitors::start(f.store.clone());
        let penalty = PasscodePenalty::new(Duration::ZERO);
        let asking = Asking {
            asker,
            grant,
            monitors: &monitors,
            penalty: &penalty,
        };
        let result = enroll(&f.store, &f.me, &enroll_cmd(line), &asking, NOW).await;
        match asker {
            Asker::Owner { .. } => wire(&f.me, result),
            _ => stranger_wire(Some(result)),
        }
    }

    async fn run(f: &Fixture, line: &str) -> String {
        ask(f, &cram(), None, line).await
    }

    const REQUEST: &str = r#"enroll:request:{"appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw"},"encryptedDefaultEncryptionPrivateKey":"ENC_PRIV","encryptedDefaultSelfEncryptionKey":"ENC_SELF","apkamPublicKey":"MIIBkey"}"#;

    /// A cram owner's request; returns the new enrollment id.
    async fn enrolled(f: &Fixture) -> String {
        let reply = run(f, REQUEST).await;
        let id = reply
            .strip_prefix(r#"data:{"enrollmentId":""#)
            .and_then(|r| r.strip_suffix("\",\"status\":\"approved\"}\n@alice@"))
            .unwrap_or_else(|| panic!("{reply}"));
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().to_string(), id);
        id.to_string()
    }

    /// Stores an enrollment record in `state` as a pending request from another device would.
    async fn seeded(f: &Fixture, id: &str, state: &str, expires_at: Option<i64>) {
        let json = format!(
            r#"{{"sessionId":"_s","appName":"buzz","deviceName":"phone","namespaces":{{"buzz":"rw"}},"apkamPublicKey":"MIIBother","requestType":"newEnrollment","approval":{{"state":"{state}"}},"encryptedAPKAMSymmetricKey":"SYM","apkamKeysExpiryInMillis":0}}"#
        );
        let mut record = written(None, json, &f.me, NOW - 10);
        record.metadata.expires_at = expires_at;
        f.store
            .put_uncommitted(&f.me, &reserved::enrollment(id, &f.me), &record)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn cram_request_is_approved_with_manage_and_all_namespaces_and_never_committed() {
        let f = fixture().await;
        let id = enrolled(&f).await;
        let key = format!("{id}.new.enrollments.__manage@alice");
        let record = f.store.get(&f.me, &key).await.unwrap().unwrap();
        assert_eq!(
            record.value.unwrap(),
            r#"{"sessionId":"","appName":"wavi","deviceName":"pixel","namespaces":{"wavi":"rw","__manage":"rw","*":"rw"},"apkamPublicKey":"MIIBkey","requestType":"newEnrollment","approval":{"state":"approved"},"encryptedAPKAMSymmetricKey":null,"apkamKeysExpiryInMillis":0}"#
        );
        let value = |key: String| {
            let store = f.store.clone();
            let me = f.me.clone();
            async move { store.get(&me, &key).await.unwrap().unwrap().value.unwrap() }
        };
        assert_eq!(
            value(format!("{id}.default_enc_private_key.__manage@alice")).await,
            r#"{"value":"ENC_PRIV"}"#
        );
        assert_eq!(
            value(format!("{id}.default_self_enc_key.__manage@alice")).await,
            r#"{"value":"ENC_SELF"}"#
        );
        assert_eq!(
            value("privatekey:at_pkam_publickey".into()).await,
            "MIIBkey"
        );
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), None);
        assert_eq!(
            apkam_key(&f.store, &f.me, &id, NOW).await.unwrap(),
            Some(ApkamKey {
                status: EnrollmentStatus::Approved,
                public_key: "MIIBkey".into()
            })
        );
        assert_eq!(apkam_key(&f.store, &f.me, "nope", NOW).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_second_live_request_for_the_same_app_and_device_is_refused() {
        let f = fixture().await;
        let id = enrolled(&f).await;
        assert_eq!(
            run(&f, REQUEST).await,
            format!("error:AT0011-Internal server exception : Another enrollment with id {id} exists with the app name: wavi and device name: pixel in approved state\n@alice@")
        );
    }

    #[tokio::test]
    async fn missing_or_bad_parameters_in_the_reference_words() {
        let f = fixture().await;
        for (line, want) in [
            ("enroll:request", "error:AT0022-Illegal arguments : Enroll parameters not provided\n@alice@"),
            (r#"enroll:request:{"deviceName":"d","apkamPublicKey":"k"}"#, "error:AT0011-Internal server exception : appName is mandatory for enroll:request\n@alice@"),
            (r#"enroll:request:{"appName":"a","deviceName":"","apkamPublicKey":"k"}"#, "error:AT0011-Internal server exception : deviceName is mandatory for enroll:request\n@alice@"),
            (r#"enroll:request:{"appName":"a","deviceName":"d"}"#, "error:AT0011-Internal server exception : apkam public key is mandatory for enroll:request\n@alice@"),
            (r#"enroll:approve:{"enrollmentId":"1"}"#, "error:AT0011-Internal server exception : encryptedDefaultEncryptionPrivateKey is mandatory for enroll:approve\n@alice@"),
            (r#"enroll:deny:{}"#, "error:AT0011-Internal server exception : enrollmentId is mandatory for enroll:revoke/enroll:deny\n@alice@"),
            ("enroll:fetch", "error:AT0022-Illegal arguments : Enroll parameters not provided\n@alice@"),
        ] {
            assert_eq!(run(&f, line).await, want, "{line}");
        }
        // Refused parameters are AT0011s that keep the connection open; JSON that does not
        // parse is an AT0011 that closes.
        let monitors = Monitors::start(f.store.clone());
        let penalty = PasscodePenalty::default();
        let asking = Asking {
            asker: &cram(),
            grant: None,
            monitors: &monitors,
            penalty: &penalty,
        };
        let kept = enroll(
            &f.store,
            &f.me,
            &enroll_cmd(r#"enroll:deny:{}"#),
            &asking,
            NOW,
        )
        .await;
        assert!(kept.is_err_and(|e| !e.closes_connection()));
        let bad = enroll(
            &f.store,
            &f.me,
            &enroll_cmd("enroll:list:{bad"),
            &asking,
            NOW,
        )
        .await
        .unwrap_err();
        assert_eq!(bad.code(), ErrorCode::InternalServerException);
        assert!(bad.closes_connection());
        assert!(bad.message().starts_with("FormatException: "), "{bad:?}");
    }

    #[tokio::test]
    async fn unknown_enrollment_is_the_handler_at0028() {
        let f = fixture().await;
        for op in ["deny", "revoke", "unrevoke"] {
            assert_eq!(
                run(
                    &f,
                    &format!(r#"enroll:{op}:{{"enrollmentId":"feay891281821899090eye"}}"#)
                )
                .await,
                "error:AT0028:enrollment_id: feay891281821899090eye is expired or invalid\n@alice@"
            );
        }
        assert_eq!(
            run(&f, r#"enroll:approve:{"enrollmentId":"x1","encryptedDefaultEncryptionPrivateKey":"p","encryptedDefaultSelfEncryptionKey":"s"}"#).await,
            "error:AT0028:enrollment_id: x1 is expired or invalid\n@alice@"
        );
        assert_eq!(
            run(&f, r#"enroll:fetch:{"enrollmentId":"x1"}"#).await,
            "error:AT0015-key not found : x1.new.enrollments.__manage@alice does not exist in keystore\n@alice@"
        );
    }

    #[tokio::test]
    async fn revoke_unrevoke_and_the_states_each_operation_needs() {
        let f = fixture().await;
        let id = enrolled(&f).await;
        let op = |name: &str| {
            format!(
                r#"enroll:{name}:{{"enrollmentId":"{id}","encryptedDefaultEncryptionPrivateKey":"p","encryptedDefaultSelfEncryptionKey":"s"}}"#
            )
        };
        assert_eq!(
            run(&f, &op("approve")).await,
            format!("error:AT0011-Internal server exception : Failed to approve enrollment id: {id}. Cannot approve a approved enrollment. Only pending enrollments can be approved\n@alice@")
        );
        assert_eq!(
            run(&f, &op("unrevoke")).await,
            format!("error:AT0011-Internal server exception : Failed to unrevoke enrollment id: {id}. Cannot un-revoke a approved enrollment. Only revoked enrollments can be un-revoked\n@alice@")
        );
        assert_eq!(
            run(&f, &op("revoke")).await,
            format!("data:{{\"status\":\"revoked\",\"enrollmentId\":\"{id}\"}}\n@alice@")
        );
        assert_eq!(
            apkam_key(&f.store, &f.me, &id, NOW)
                .await
                .unwrap()
                .unwrap()
                .status,
            EnrollmentStatus::Revoked
        );
        assert_eq!(
            run(&f, &op("revoke")).await,
            format!("error:AT0011-Internal server exception : Failed to revoke enrollment id: {id}. Cannot revoke a revoked enrollment. Only approved enrollments can be revoked\n@alice@")
        );
        assert_eq!(
            run(&f, &op("unrevoke")).await,
            format!("data:{{\"status\":\"approved\",\"enrollmentId\":\"{id}\"}}\n@alice@")
        );
        assert_eq!(
            run(&f, &op("deny")).await,
            format!("data:{{\"status\":\"denied\",\"enrollmentId\":\"{id}\"}}\n@alice@")
        );
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), None);
    }

    #[tokio::test]
    async fn approving_a_pending_request_publishes_its_key() {
        let f = fixture().await;
        seeded(&f, "p1", "pending", Some(NOW + 1_000)).await;
        assert_eq!(
            run(&f, r#"enroll:approve:{"enrollmentId":"p1","encryptedDefaultEncryptionPrivateKey":"P","encryptedDefaultSelfEncryptionKey":"S"}"#).await,
            "data:{\"status\":\"approved\",\"enrollmentId\":\"p1\"}\n@alice@"
        );
        let record = f
            .store
            .get(&f.me, &reserved::enrollment("p1", &f.me))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.metadata.expires_at, None,
            "approval keeps it for ever"
        );
        let public = f
            .store
            .get(&f.me, "public:buzz.phone.pkam.__pkams.__public_keys@alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(public.value.unwrap(), r#"{"apkamPublicKey":"MIIBother"}"#);
        assert_eq!(
            f.store.last_commit_id(&f.me).await.unwrap(),
            None,
            "a device's key does not sync to clients"
        );
        let private = f
            .store
            .get(&f.me, "p1.default_enc_private_key.__manage@alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(private.value.unwrap(), r#"{"value":"P"}"#);
    }

    #[tokio::test]
    async fn an_expired_pending_request_cannot_be_approved() {
        let f = fixture().await;
        seeded(&f, "old", "pending", Some(NOW - 1)).await;
        assert_eq!(
            run(&f, r#"enroll:deny:{"enrollmentId":"old"}"#).await,
            "error:AT0028:enrollment_id: old is expired or invalid\n@alice@"
        );
        assert_eq!(
            apkam_key(&f.store, &f.me, "old", NOW)
                .await
                .unwrap()
                .unwrap()
                .status,
            EnrollmentStatus::Expired
        );
    }

    #[tokio::test]
    async fn list_and_fetch_show_each_enrollment_with_its_status() {
        let f = fixture().await;
        let id = enrolled(&f).await;
        seeded(&f, "0-denied", "denied", None).await;
        let mine = format!(
            r#""{id}.new.enrollments.__manage@alice":{{"appName":"wavi","deviceName":"pixel","namespace":{{"wavi":"rw","__manage":"rw","*":"rw"}},"encryptedAPKAMSymmetricKey":null,"status":"approved"}}"#
        );
        let denied = r#""0-denied.new.enrollments.__manage@alice":{"appName":"buzz","deviceName":"phone","namespace":{"buzz":"rw"},"encryptedAPKAMSymmetricKey":"SYM","status":"denied"}"#;
        assert_eq!(
            run(&f, "enroll:list").await,
            format!("data:{{{denied},{mine}}}\n@alice@")
        );
        assert_eq!(
            run(&f, r#"enroll:list:{"enrollmentStatusFilter":["approved"]}"#).await,
            format!("data:{{{mine}}}\n@alice@")
        );
        assert_eq!(
            run(&f, r#"enroll:list:{"enrollmentStatusFilter":["pending"]}"#).await,
            "data:{}\n@alice@"
        );
        assert_eq!(
            run(&f, &format!(r#"enroll:fetch:{{"enrollmentId":"{id}"}}"#)).await,
            r#"data:{"appName":"wavi","deviceName":"pixel","namespace":{"wavi":"rw","__manage":"rw","*":"rw"},"encryptedAPKAMSymmetricKey":null,"status":"approved"}
@alice@"#
        );
    }

    const PENDING: &str = r#"enroll:request:{"appName":"buzz","deviceName":"phone","namespaces":{"buzz":"rw"},"otp":"OTP":"apkamPublicKey":"MIIBother","encryptedAPKAMSymmetricKey":"SYM"}"#;

    /// The owner's `otp:get` or `otp:put`; what it answered.
    async fn passcode(f: &Fixture, line: &str) -> String {
        let Command::Otp(cmd) = command(line) else {
            unreachable!("{line}")
        };
        match crate::verbs::otp(&f.store, &f.me, &cmd, None, NOW)
            .await
            .unwrap()
        {
            Reply::Data(answer) => answer,
            other => panic!("{other:?}"),
        }
    }

    /// A new device's request with `otp` (in place of `OTP`); the reply.
    async fn request_with(f: &Fixture, otp: &str) -> String {
        let line = PENDING.replace(r#""otp":"OTP":"#, &format!(r#""otp":"{otp}","#));
        ask(f, &Asker::Anyone, None, &line).await
    }

    fn pending_id(reply: &str) -> String {
        reply
            .strip_prefix(r#"data:{"enrollmentId":""#)
            .and_then(|r| r.split_once("\",\"status\":\"pending\"}\n@"))
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("{reply}"))
            .to_string()
    }

    #[tokio::test]
    async fn a_new_device_with_a_passcode_makes_a_pending_request_with_a_notice_for_approvers() {
        let f = fixture().await;
        assert_eq!(
            request_with(&f, "NOSUCH1").await,
            "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@"
        );
        let otp = passcode(&f, "otp:get").await;
        let id = pending_id(&request_with(&f, &otp).await);
        let key = format!("{id}.new.enrollments.__manage@alice");
        let record = f.store.get(&f.me, &key).await.unwrap().unwrap();
        assert_eq!(
            record.value.unwrap(),
            r#"{"sessionId":"","appName":"buzz","deviceName":"phone","namespaces":{"buzz":"rw"},"apkamPublicKey":"MIIBother","requestType":"newEnrollment","approval":{"state":"pending"},"encryptedAPKAMSymmetricKey":"SYM","apkamKeysExpiryInMillis":0}"#
        );
        assert_eq!(record.metadata.expires_at, Some(NOW + 48 * 3600 * 1000));
        // The OTP is spent; the same app and device cannot ask twice while one is pending.
        assert_eq!(
            request_with(&f, &otp).await,
            "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@"
        );
        passcode(&f, "otp:put:ABC123").await;
        assert_eq!(
            request_with(&f, "abc123").await,
            format!("error:AT0011-Exception: Another enrollment with id {id} exists with the app name: buzz and device name: phone in pending state\n@")
        );
        // The notice: a self notification an approver's monitor replays.
        let monitors = Monitors::start(f.store.clone());
        let view = crate::notifications::MonitorView {
            self_notifications: true,
            ..Default::default()
        };
        let lines: Vec<_> =
            futures_util::StreamExt::collect(monitors.replay(&f.me, 0, view, NOW)).await;
        let notice = String::from_utf8(lines[0].to_vec()).unwrap();
        assert!(
            notice.contains(&format!(
                r#""from":"@alice","to":"@alice","key":"{key}","value":"{{\"encryptedApkamSymmetricKey\":\"SYM\",\"encryptedAPKAMSymmetricKey\":\"SYM\",\"appName\":\"buzz\",\"deviceName\":\"phone\",\"namespace\":{{\"buzz\":\"rw\"}}}}","operation":"update""#
            )),
            "{notice}"
        );
        // A monitor that does not ask for self notifications does not see it.
        let plain = crate::notifications::MonitorView::default();
        let none: Vec<_> =
            futures_util::StreamExt::collect(monitors.replay(&f.me, 0, plain, NOW)).await;
        assert!(none.is_empty());
    }

    fn device(namespaces: &[(&str, &str)]) -> Grant {
        Grant::approved("dev", namespaces)
    }

    #[tokio::test]
    async fn approvers_need_manage_and_the_namespaces_asked_for() {
        let f = fixture().await;
        let pkam = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: Some("dev".into()),
        };
        passcode(&f, "otp:put:ABC123").await;
        let id = pending_id(&request_with(&f, "ABC123").await);
        let approve = format!(
            r#"enroll:approve:{{"enrollmentId":"{id}","encryptedDefaultEncryptionPrivateKey":"P","encryptedDefaultSelfEncryptionKey":"S"}}"#
        );
        let wavi = device(&[("wavi", "rw"), ("__manage", "rw")]);
        assert_eq!(
            ask(&f, &pkam, Some(&wavi), &approve).await,
            format!("error:AT0011-Internal server exception : Failed to approve enrollment id: {id}. Client is not authorized for namespaces in the enrollment request\n@alice@")
        );
        let unmanaged = device(&[("buzz", "rw")]);
        assert_eq!(
            ask(&f, &pkam, Some(&unmanaged), &approve).await,
            format!("error:AT0011-Internal server exception : Failed to approve enrollment id: {id}. The approving enrollment does not have access to \"__manage\" namespace\n@alice@")
        );
        // A device without __manage lists only itself.
        assert_eq!(
            ask(&f, &pkam, Some(&unmanaged), "enroll:list").await,
            "data:{}\n@alice@"
        );
        // The first namespace covering `buzz` decides: `r` does not approve `rw`, `*` does.
        let reader = device(&[("buzz", "r"), ("__manage", "r"), ("*", "rw")]);
        assert!(ask(&f, &pkam, Some(&reader), &approve)
            .await
            .contains("Client is not authorized for namespaces"));
        let manager = device(&[("__manage", "r"), ("*", "rw")]);
        assert_eq!(
            ask(&f, &pkam, Some(&manager), &approve).await,
            format!("data:{{\"status\":\"approved\",\"enrollmentId\":\"{id}\"}}\n@alice@")
        );
        // A pkam owner's own request is pending too.
        let again = r#"enroll:request:{"appName":"wavi","deviceName":"tab","namespaces":{"wavi":"r"},"apkamPublicKey":"k","encryptedAPKAMSymmetricKey":"s"}"#;
        let reply = ask(&f, &pkam, Some(&manager), again).await;
        assert!(reply.contains(r#""status":"pending"}"#), "{reply}");
    }

    #[tokio::test]
    async fn only_denied_or_revoked_enrollments_are_deleted() {
        let f = fixture().await;
        let id = enrolled(&f).await;
        let delete = format!(r#"enroll:delete:{{"enrollmentId":"{id}"}}"#);
        assert_eq!(
            run(&f, &delete).await,
            format!("error:AT0011-Internal server exception : Failed to delete enrollment id: {id} | Cause: Cannot delete approved enrollments. Only denied and revoked enrollments can be deleted\n@alice@")
        );
        run(&f, &format!(r#"enroll:revoke:{{"enrollmentId":"{id}"}}"#)).await;
        assert_eq!(
            run(&f, &delete).await,
            format!("data:{{\"enrollmentId\":\"{id}\",\"status\":\"deleted\"}}\n@alice@")
        );
        assert_eq!(
            run(&f, &delete).await,
            format!("error:AT0015-key not found : {id}.new.enrollments.__manage@alice does not exist in keystore\n@alice@")
        );
    }

    #[tokio::test]
    async fn strangers_are_refused_everything_but_a_request() {
        let f = fixture().await;
        let stranger = ask(&f, &Asker::Anyone, None, "enroll:list").await;
        assert_eq!(
            stranger,
            "error:AT0401-Exception: Cannot list enrollment without authentication\n@"
        );
        let request = ask(&f, &Asker::Anyone, None, REQUEST).await;
        assert_eq!(
            request,
            "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@"
        );
        assert!(f.store.keys(&f.me, "").await.unwrap().is_empty());
    }

    fn stranger_wire(result: Option<Result<Reply, AtError>>) -> String {
        let reply = result.expect("answered").unwrap_or_else(Reply::Error);
        let bytes = reply.render(
            &at_common::reply::Prompt::Unauthenticated,
            at_common::reply::ErrorStyle::Legacy,
        );
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn screen_checks_a_requests_parameters_and_limit_before_the_key_store() {
        let request = enroll_cmd(REQUEST);
        let cram = cram();
        assert!(screen(&request, &cram, || true).is_none());
        assert!(screen(&request, &Asker::Anyone, || true).is_none());
        let otp_without_key = enroll_cmd(
            r#"enroll:request:{"appName":"a","deviceName":"d","otp":"123456","apkamPublicKey":"k"}"#,
        );
        assert_eq!(
            stranger_wire(screen(&otp_without_key, &Asker::Anyone, || panic!("not asked"))),
            "error:AT0011-Exception: encrypted apkam symmetric key is mandatory for new client enroll:request\n@"
        );
        assert_eq!(
            stranger_wire(screen(&request, &cram, || false)),
            "error:AT0011-Exception: Enrollment requests have exceeded the limit within the specified time frame\n@"
        );
        // Other operations go on to the key store.
        assert!(screen(&enroll_cmd("enroll:list"), &cram, || panic!("not asked")).is_none());
    }

    #[test]
    fn screen_refuses_to_revoke_the_connections_own_enrollment_without_force() {
        let me = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: Some("e1".into()),
        };
        let own = enroll_cmd(r#"enroll:revoke:{"enrollmentId":"e1"}"#);
        let error = screen(&own, &me, || true).unwrap().unwrap_err();
        assert_eq!(error.code(), ErrorCode::EnrollmentRevoked);
        assert_eq!(
            error.message(),
            "Current client cannot revoke its own enrollment"
        );
        assert!(!error.closes_connection());
        let forced = enroll_cmd(r#"enroll:revoke:force:{"enrollmentId":"e1"}"#);
        assert!(screen(&forced, &me, || true).is_none());
        let other = enroll_cmd(r#"enroll:revoke:{"enrollmentId":"e2"}"#);
        assert!(screen(&other, &me, || true).is_none());
    }

    #[test]
    fn settle_remembers_an_approved_request_and_closes_after_revoking_itself() {
        let cram = Asker::Owner {
            via: OwnerAuth::Cram,
            enrollment: None,
        };
        let reply = || {
            Ok(Reply::Data(
                r#"{"enrollmentId":"e1","status":"approved"}"#.into(),
            ))
        };
        let settled = settle(&enroll_cmd(REQUEST), &cram, reply());
        assert_eq!(settled.enrollment_id.as_deref(), Some("e1"));
        assert_eq!(settled.result, reply());
        assert_eq!(settled.close_after, None);
        // An approval of another enrollment does not make the connection that enrollment.
        let approve = enroll_cmd(r#"enroll:approve:{"enrollmentId":"e1"}"#);
        let approved = Ok(Reply::Data(
            r#"{"status":"approved","enrollmentId":"e1"}"#.into(),
        ));
        assert_eq!(settle(&approve, &cram, approved).enrollment_id, None);

        let me = Asker::Owner {
            via: OwnerAuth::Cram,
            enrollment: Some("e1".into()),
        };
        let revoked = || {
            Ok(Reply::Data(
                r#"{"status":"revoked","enrollmentId":"e1"}"#.into(),
            ))
        };
        let forced = enroll_cmd(r#"enroll:revoke:force:{"enrollmentId":"e1"}"#);
        let settled = settle(&forced, &me, revoked());
        assert_eq!(
            settled.result,
            Ok(Reply::Data(
                r#"{"status":"revoked","enrollmentId":"e1","message":"Enrollment is revoked. Closing the connection in 10 seconds"}"#.into()
            ))
        );
        assert_eq!(settled.close_after, Some(Duration::from_secs(10)));
        // Revoking another enrollment with force does not close this connection.
        let settled = settle(&forced, &cram, revoked());
        assert_eq!((settled.result, settled.close_after), (revoked(), None));
    }
}
