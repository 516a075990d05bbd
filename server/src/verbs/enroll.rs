//! `enroll` (docs/authentication.md#apkam-enrollment, docs/authentication.md#enrollment-states,
//! docs/authentication.md#onboarding; the reference's `enroll_verb_handler.dart`): the owner's
//! APKAM enrollments, one record each under `<id>.new.enrollments.__manage@<me>`, never
//! committed, and what `pkam:enrollmentId:<id>:<sig>` is checked against.
//!
//! Three parts, because only the connection knows who is asking:
//! - [`screen`] runs on the connection before the key store is asked: the checks the reference
//!   makes before it touches its key store for `request` (parameters, the per-connection request
//!   limit, the OTP of an unauthenticated request) and its refusal to `revoke` the connection's
//!   own enrollment without `force`. Only a cram owner's `request` gets through.
//! - [`enroll`] runs in the key store: the auto-approved `request` of a cram owner (onboarding),
//!   `approve`, `deny`, `revoke`, `unrevoke`, `list` and `fetch`.
//! - [`settle`] runs on the connection with the key store's answer: a `request` makes the
//!   connection that enrollment, and `revoke:force` of its own enrollment closes it in 10 s.
//!
//! [`apkam_key`] reads an enrollment's key and status for `pkam`.
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
//! open (unlike other AT0011s), so they are replies here, not errors:
//! `error:AT0011-Exception: invalid otp. Cannot process enroll request` (unauthenticated; the
//! owner's connection reads `Internal server exception : …`), `… is mandatory for enroll:…`,
//! `Enrollment requests have exceeded the limit within the specified time frame`,
//! `Another enrollment with id <id> exists with the app name: <a> and device name: <d> in <state> state`,
//! `Failed to <op> enrollment id: <id>. Cannot <op> a <state> enrollment. Only … can be …`.
//! A missing or expired enrollment is the handler's colon form,
//! `error:AT0028:enrollment_id: <id> is expired or invalid`. Missing parameters are AT0022
//! `Enroll parameters not provided`; parameters that are not JSON are AT0011 and close the
//! connection, as the reference's unexpected `FormatException` does.
//!
//! # Not served
//! Pending enrollments: an unauthenticated `request` needs an OTP, and this server hands out
//! none (`otp` is not served), so it is always refused as an invalid OTP; a `request` on a
//! pkam-authenticated connection (pending in the reference, with a notification to approvers)
//! is refused as `invalid command`, and so is `delete`. Approvals are not limited by the
//! approver's own enrollment namespaces, connections of a revoked enrollment other than the
//! revoking one stay open, and the key store is not told the connection's session id, so the
//! record's `sessionId` is empty.

use std::time::Duration;

use at_common::error::{AtError, ErrorCode};
use at_common::limits::{instant_after, time_out_of_range};
use at_common::metadata::{EpochMillis, Metadata};
use at_common::reply::Reply;
use at_common::verb::{json_string, Enroll, EnrollOp, EnrollParams, EnrollmentStatus, Namespaces};
use at_common::AtSign;
use serde::Deserialize;

use super::is_active;
use crate::access::{self, Asker};
use crate::reserved::{self, PKAM_PUBLIC_KEY};
use crate::store::{CommitOp, Mutation, Record, Store, StoreError};

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

/// The parameters of `cmd`, with what its operation requires checked as the reference's
/// `_validateParams` does; `list` may have none.
fn checked_params(cmd: &Enroll) -> Step<EnrollParams> {
    let params = match cmd.read_params() {
        Ok(Some(params)) => params,
        Ok(None) if cmd.operation == EnrollOp::List => EnrollParams::default(),
        Ok(None) => {
            return Err(AtError::with_detail(
                ErrorCode::IllegalArguments,
                "Enroll parameters not provided",
            ))
        }
        Err(error) => {
            return Err(AtError::with_detail(
                ErrorCode::InternalServerException,
                format!("FormatException: {error}"),
            ))
        }
    };
    let missing = |field: &Option<String>| field.as_deref().is_none_or(str::is_empty);
    let require = |field: &Option<String>, message: &str| match missing(field) {
        true => Err(refuse(message)),
        false => Ok(()),
    };
    match cmd.operation {
        EnrollOp::Request => {
            require(&params.app_name, "appName is mandatory for enroll:request")?;
            require(
                &params.device_name,
                "deviceName is mandatory for enroll:request",
            )?;
            require(
                &params.apkam_public_key,
                "apkam public key is mandatory for enroll:request",
            )?;
            if params.otp.is_some() {
                require(
                    &params.encrypted_apkam_symmetric_key,
                    "encrypted apkam symmetric key is mandatory for new client enroll:request",
                )?;
                if params.namespaces.as_ref().is_none_or(Namespaces::is_empty) {
                    return Err(refuse(
                        "At least one namespace must be specified for new client enroll:request",
                    ));
                }
            }
        }
        EnrollOp::Approve => {
            require(
                &params.enrollment_id,
                "enrollmentId is mandatory for enroll:approve",
            )?;
            require(
                &params.encrypted_default_encryption_private_key,
                "encryptedDefaultEncryptionPrivateKey is mandatory for enroll:approve",
            )?;
            require(
                &params.encrypted_default_self_encryption_key,
                "encryptedDefaultSelfEncryptionKey is mandatory for enroll:approve",
            )?;
        }
        EnrollOp::Deny | EnrollOp::Revoke | EnrollOp::Unrevoke => require(
            &params.enrollment_id,
            "enrollmentId is mandatory for enroll:revoke/enroll:deny",
        )?,
        EnrollOp::List | EnrollOp::Fetch | EnrollOp::Delete => {}
    }
    Ok(params)
}

/// What the connection answers itself before the key store sees `cmd` from `who`: `None` to
/// go on to the key store. `admit_request` is the connection's request limit, asked once for a
/// `request` whose parameters are good (in the reference's order: parameters, limit, OTP).
pub fn screen(
    cmd: &Enroll,
    who: &Asker,
    admit_request: impl FnOnce() -> bool,
) -> Option<Result<Reply, AtError>> {
    match screen_step(cmd, who, admit_request) {
        Ok(()) => None,
        Err(error) => Some(Err(error)),
    }
}

fn screen_step(cmd: &Enroll, who: &Asker, admit_request: impl FnOnce() -> bool) -> Step<()> {
    match cmd.operation {
        EnrollOp::Request => {
            checked_params(cmd)?;
            if !admit_request() {
                return Err(refuse(
                    "Enrollment requests have exceeded the limit within the specified time frame",
                ));
            }
            access::enroll_request(who)
        }
        EnrollOp::Revoke => {
            let params = checked_params(cmd)?;
            access::revoke(who, params.enrollment_id.as_deref(), cmd.force)
        }
        _ => Ok(()),
    }
}

/// The key store's answer to `cmd` from `who`, as the connection passes it on.
#[derive(Debug)]
pub struct Settled {
    pub result: Result<Reply, AtError>,
    /// The enrollment the connection now acts as (its approved `request`).
    pub enrollment_id: Option<String>,
    /// Close the connection after this long (it revoked its own enrollment with `force`).
    pub close_after: Option<Duration>,
}

/// What the connection does with the key store's `result` for `cmd` from `who`.
pub fn settle(cmd: &Enroll, who: &Asker, result: Result<Reply, AtError>) -> Settled {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answered {
        enrollment_id: Option<String>,
        status: Option<String>,
    }
    let answered = match &result {
        Ok(Reply::Data(json)) => serde_json::from_str::<Answered>(json).ok(),
        _ => None,
    };
    let mut settled = Settled {
        result,
        enrollment_id: None,
        close_after: None,
    };
    let Some(Answered {
        enrollment_id: Some(id),
        status: Some(status),
    }) = answered
    else {
        return settled;
    };
    match cmd.operation {
        EnrollOp::Request if status == EnrollmentStatus::Approved.as_str() => {
            settled.enrollment_id = Some(id);
        }
        EnrollOp::Revoke
            if cmd.force
                && status == EnrollmentStatus::Revoked.as_str()
                && who.enrollment() == Some(id.as_str()) =>
        {
            settled.result = Ok(Reply::Data(format!(
                r#"{{"status":"revoked","enrollmentId":{},"message":"Enrollment is revoked. Closing the connection in 10 seconds"}}"#,
                json_string(&id)
            )));
            settled.close_after = Some(REVOKED_SELF_CLOSE_AFTER);
        }
        _ => {}
    }
    settled
}

/// One enrollment as stored: the reference's `EnrollDataStoreValue`, in its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Enrollment {
    #[serde(default)]
    session_id: String,
    app_name: String,
    device_name: String,
    #[serde(default)]
    namespaces: Namespaces,
    apkam_public_key: String,
    #[serde(default = "new_enrollment")]
    request_type: String,
    approval: Approval,
    #[serde(rename = "encryptedAPKAMSymmetricKey", default)]
    encrypted_apkam_symmetric_key: Option<String>,
    #[serde(default)]
    apkam_keys_expiry_in_millis: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Approval {
    state: EnrollmentStatus,
}

fn new_enrollment() -> String {
    "newEnrollment".to_string()
}

impl Enrollment {
    fn to_json(&self) -> String {
        format!(
            r#"{{"sessionId":{},"appName":{},"deviceName":{},"namespaces":{},"apkamPublicKey":{},"requestType":{},"approval":{{"state":"{}"}},"encryptedAPKAMSymmetricKey":{},"apkamKeysExpiryInMillis":{}}}"#,
            json_string(&self.session_id),
            json_string(&self.app_name),
            json_string(&self.device_name),
            self.namespaces.to_json(),
            json_string(&self.apkam_public_key),
            json_string(&self.request_type),
            self.approval.state,
            optional(self.encrypted_apkam_symmetric_key.as_deref()),
            self.apkam_keys_expiry_in_millis,
        )
    }

    /// What `list` and `fetch` show of it.
    fn summary(&self, status: EnrollmentStatus) -> String {
        format!(
            r#"{{"appName":{},"deviceName":{},"namespace":{},"encryptedAPKAMSymmetricKey":{},"status":"{status}"}}"#,
            json_string(&self.app_name),
            json_string(&self.device_name),
            self.namespaces.to_json(),
            optional(self.encrypted_apkam_symmetric_key.as_deref()),
        )
    }

    fn parse(key: &str, record: &Record) -> Result<Enrollment, AtError> {
        let text = record.value.as_deref().unwrap_or_default();
        serde_json::from_str(text).map_err(|error| {
            StoreError::Corrupt(format!("enrollment record {key}: {error}")).into()
        })
    }
}

/// A JSON string, or `null`.
fn optional(text: Option<&str>) -> String {
    text.map_or_else(|| "null".to_string(), json_string)
}

/// The status of a stored enrollment at `now`: a record past its time reads as expired.
fn status_at(enrollment: &Enrollment, record: &Record, now: EpochMillis) -> EnrollmentStatus {
    if is_active(&record.metadata, now) {
        enrollment.approval.state
    } else {
        EnrollmentStatus::Expired
    }
}

/// `value` as a key the server writes: created when first written, updated now; its times
/// and their instants kept.
fn written(existing: Option<&Record>, value: String, me: &AtSign, now: EpochMillis) -> Record {
    Record {
        value: Some(value),
        metadata: Metadata::rewritten(existing.map(|r| r.metadata.clone()), me, now),
    }
}

/// Stores `value` under `key` with no commit entry (the reference's `skipCommit`).
async fn put_uncommitted(
    store: &Store,
    me: &AtSign,
    key: &str,
    value: String,
    now: EpochMillis,
) -> Result<(), StoreError> {
    let me_ = me.clone();
    store
        .modify(me, key, move |existing| {
            Ok(Mutation::Put {
                record: written(existing, value.clone(), &me_, now),
                op: None,
            })
        })
        .await
        .map(|_| ())
}

/// `enroll:<op>` in the key store of `me`. `owner`: the connection is the owner's; only a
/// cram owner's `request` is let through by [`screen`].
pub async fn enroll(
    store: &Store,
    me: &AtSign,
    cmd: &Enroll,
    owner: bool,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    run(store, me, cmd, owner, now).await
}

async fn run(
    store: &Store,
    me: &AtSign,
    cmd: &Enroll,
    owner: bool,
    now: EpochMillis,
) -> Step<Reply> {
    if !owner {
        // The connection answers these before they get here; refused the same way if not.
        return Err(match cmd.operation {
            EnrollOp::Request => refuse("invalid otp. Cannot process enroll request"),
            op => AtError::with_detail(
                ErrorCode::Unauthenticated,
                format!("Cannot {op} enrollment without authentication"),
            ),
        });
    }
    let params = checked_params(cmd)?;
    match cmd.operation {
        EnrollOp::Request => request(store, me, &params, now).await,
        EnrollOp::Approve | EnrollOp::Deny | EnrollOp::Revoke | EnrollOp::Unrevoke => {
            change(store, me, cmd.operation, &params, now).await
        }
        EnrollOp::List => list(store, me, &params, now).await,
        EnrollOp::Fetch => fetch(store, me, &params, now).await,
        EnrollOp::Delete => Err(AtError::syntax("invalid command")),
    }
}

/// Every enrollment of `me`, by key, with its status now.
async fn all(
    store: &Store,
    me: &AtSign,
    now: EpochMillis,
) -> Step<Vec<(String, Enrollment, EnrollmentStatus)>> {
    let suffix = reserved::enrollment("", me);
    let mut found = Vec::new();
    for key in store.keys(me, "").await? {
        if !key.ends_with(&suffix) || key.len() == suffix.len() {
            continue;
        }
        if let Some(record) = store.get(me, &key).await? {
            let enrollment = Enrollment::parse(&key, &record)?;
            let status = status_at(&enrollment, &record, now);
            found.push((key, enrollment, status));
        }
    }
    Ok(found)
}

/// A cram owner's request (onboarding): approved at once.
async fn request(
    store: &Store,
    me: &AtSign,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<Reply> {
    let app_name = params.app_name.clone().unwrap_or_default();
    let device_name = params.device_name.clone().unwrap_or_default();
    let apkam_public_key = params.apkam_public_key.clone().unwrap_or_default();
    for (key, other, status) in all(store, me, now).await? {
        let live = matches!(
            status,
            EnrollmentStatus::Approved | EnrollmentStatus::Pending
        );
        if live && other.app_name == app_name && other.device_name == device_name {
            let id = key.split('.').next().unwrap_or_default();
            return Err(refuse(format!(
                "Another enrollment with id {id} exists with the app name: {app_name} and device name: {device_name} in {status} state"
            )));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut namespaces = params.namespaces.clone().unwrap_or_default();
    namespaces.set(reserved::MANAGE_NAMESPACE, "rw");
    namespaces.set("*", "rw");
    let enrollment = Enrollment {
        session_id: String::new(),
        app_name,
        device_name,
        namespaces,
        apkam_public_key: apkam_public_key.clone(),
        request_type: new_enrollment(),
        approval: Approval {
            state: EnrollmentStatus::Approved,
        },
        encrypted_apkam_symmetric_key: None,
        apkam_keys_expiry_in_millis: params.apkam_keys_expiry_in_millis.unwrap_or(0),
    };
    store_encryption_keys(store, me, &id, params, now).await?;
    // Clients that still use legacy pkam sign with the same key.
    put_uncommitted(store, me, PKAM_PUBLIC_KEY, apkam_public_key, now).await?;
    put_uncommitted(
        store,
        me,
        &reserved::enrollment(&id, me),
        enrollment.to_json(),
        now,
    )
    .await?;
    tracing::info!(atsign = %me, enrollment = %id, "enrollment approved on a cram connection");
    Ok(Reply::Data(format!(
        r#"{{"enrollmentId":{},"status":"approved"}}"#,
        json_string(&id)
    )))
}

/// The encrypted default keys the approving client sent, kept for the enrolled app.
async fn store_encryption_keys(
    store: &Store,
    me: &AtSign,
    id: &str,
    params: &EnrollParams,
    now: EpochMillis,
) -> Result<(), StoreError> {
    for (name, value) in [
        (
            "default_enc_private_key",
            &params.encrypted_default_encryption_private_key,
        ),
        (
            "default_self_enc_key",
            &params.encrypted_default_self_encryption_key,
        ),
    ] {
        let key = reserved::enrollment_secret(id, name, me);
        let json = format!(r#"{{"value":{}}}"#, optional(value.as_deref()));
        put_uncommitted(store, me, &key, json, now).await?;
    }
    Ok(())
}

/// `approve`, `deny`, `revoke` and `unrevoke` of an existing enrollment.
async fn change(
    store: &Store,
    me: &AtSign,
    op: EnrollOp,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<Reply> {
    let id = params.enrollment_id.clone().unwrap_or_default();
    let key = reserved::enrollment(&id, me);
    let target = match op {
        EnrollOp::Approve | EnrollOp::Unrevoke => EnrollmentStatus::Approved,
        EnrollOp::Deny => EnrollmentStatus::Denied,
        _ => EnrollmentStatus::Revoked,
    };
    let (id_, key_, me_) = (id.clone(), key.clone(), me.clone());
    // Checked and written in one step of the store, so two owners' changes cannot interleave.
    let changed = store
        .modify(me, &key, move |existing| {
            let Some(record) = existing else {
                return Err(expired_or_invalid(&id_));
            };
            let mut enrollment = Enrollment::parse(&key_, record)?;
            let status = status_at(&enrollment, record, now);
            if status == EnrollmentStatus::Expired {
                return Err(expired_or_invalid(&id_));
            }
            if let Some(reason) = refused_transition(op, status) {
                return Err(enrollment_exception(format!(
                    "Failed to {op} enrollment id: {id_}. {reason}"
                )));
            }
            enrollment.approval.state = target;
            let mut updated = written(Some(record), enrollment.to_json(), &me_, now);
            if op == EnrollOp::Approve {
                // An approved enrollment lives as long as its APKAM keys may (for ever: 0).
                let ttl = Some(enrollment.apkam_keys_expiry_in_millis).filter(|&t| t > 0);
                updated.metadata.ttl = ttl;
                updated.metadata.expires_at =
                    match ttl {
                        Some(ttl) => Some(instant_after(now, ttl).ok_or_else(|| {
                            time_out_of_range("apkamKeysExpiryInMillis", ttl, "ms")
                        })?),
                        None => None,
                    };
            }
            Ok(Mutation::Put {
                record: updated,
                op: None,
            })
        })
        .await;
    match changed {
        Ok(_) => {}
        Err(error) => return Err(error.into()),
    }
    if op == EnrollOp::Approve {
        approved(store, me, &id, &key, params, now).await?;
    }
    Ok(Reply::Data(format!(
        r#"{{"status":"{target}","enrollmentId":{}}}"#,
        json_string(&id)
    )))
}

/// Why `op` may not change an enrollment in `status`, if it may not.
fn refused_transition(op: EnrollOp, status: EnrollmentStatus) -> Option<String> {
    let (needed, verb, plural) = match op {
        EnrollOp::Approve => (EnrollmentStatus::Pending, "approve", "pending"),
        EnrollOp::Revoke => (EnrollmentStatus::Approved, "revoke", "approved"),
        EnrollOp::Unrevoke => (EnrollmentStatus::Revoked, "un-revoke", "revoked"),
        _ => return None,
    };
    let done = match op {
        EnrollOp::Approve => "approved",
        EnrollOp::Revoke => "revoked",
        _ => "un-revoked",
    };
    (status != needed).then(|| {
        format!("Cannot {verb} a {status} enrollment. Only {plural} enrollments can be {done}")
    })
}

/// What approval publishes: the APKAM key under `public:<app>.<device>.pkam.__pkams.__public_keys`
/// (committed, as any public key) and the encrypted default keys of the approving client.
async fn approved(
    store: &Store,
    me: &AtSign,
    id: &str,
    key: &str,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<()> {
    let Some(record) = store.get(me, key).await? else {
        return Ok(());
    };
    let enrollment = Enrollment::parse(key, &record)?;
    let public = format!(
        "public:{}.{}.pkam.__pkams.__public_keys{me}",
        enrollment.app_name, enrollment.device_name
    )
    .to_lowercase();
    let value = format!(
        r#"{{"apkamPublicKey":{}}}"#,
        json_string(&enrollment.apkam_public_key)
    );
    let me_ = me.clone();
    store
        .modify(me, &public, move |existing| {
            let op = match existing {
                Some(_) => CommitOp::UpdateAll,
                None => CommitOp::Update,
            };
            Ok(Mutation::put(
                written(existing, value.clone(), &me_, now),
                op,
            ))
        })
        .await?;
    store_encryption_keys(store, me, id, params, now).await?;
    Ok(())
}

/// `enroll:list`: every enrollment whose status passes the filter (all when there is none).
async fn list(store: &Store, me: &AtSign, params: &EnrollParams, now: EpochMillis) -> Step<Reply> {
    let filter = params
        .enrollment_status_filter
        .clone()
        .unwrap_or_else(|| EnrollmentStatus::ALL.to_vec());
    let entries: Vec<String> = all(store, me, now)
        .await?
        .into_iter()
        .filter(|(_, _, status)| filter.contains(status))
        .map(|(key, enrollment, status)| {
            format!("{}:{}", json_string(&key), enrollment.summary(status))
        })
        .collect();
    Ok(Reply::Data(format!("{{{}}}", entries.join(","))))
}

/// `enroll:fetch`: one enrollment; AT0015 when there is no such enrollment.
async fn fetch(store: &Store, me: &AtSign, params: &EnrollParams, now: EpochMillis) -> Step<Reply> {
    let id = params.enrollment_id.as_deref().unwrap_or("null");
    let key = reserved::enrollment(id, me);
    let Some(record) = store.get(me, &key).await? else {
        return Err(AtError::with_detail(
            ErrorCode::KeyNotFound,
            format!("An Enrollment with Id: {id} does not exist or has expired."),
        ));
    };
    let enrollment = Enrollment::parse(&key, &record)?;
    let status = status_at(&enrollment, &record, now);
    Ok(Reply::Data(enrollment.summary(status)))
}

/// What `pkam:enrollmentId:<id>:…` is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApkamKey {
    /// The enrollment's status now (a record past its time is expired).
    pub status: EnrollmentStatus,
    /// Its APKAM public key.
    pub public_key: String,
}

/// The key and status of enrollment `id` of `me`, `None` when there is no such enrollment.
pub async fn apkam_key(
    store: &Store,
    me: &AtSign,
    id: &str,
    now: EpochMillis,
) -> Result<Option<ApkamKey>, AtError> {
    let key = reserved::enrollment(id, me);
    let Some(record) = store.get(me, &key).await? else {
        return Ok(None);
    };
    let enrollment = Enrollment::parse(&key, &record)?;
    Ok(Some(ApkamKey {
        status: status_at(&enrollment, &record, now),
        public_key: enrollment.apkam_public_key,
    }))
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use crate::connection::auth_state::OwnerAuth;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};

    fn enroll_cmd(line: &str) -> Enroll {
        match command(line) {
            Command::Enroll(e) => e,
            other => panic!("not enroll: {other:?}"),
        }
    }

    async fn run(f: &Fixture, line: &str) -> String {
        wire(
            &f.me,
            enroll(&f.store, &f.me, &enroll_cmd(line), true, NOW).await,
        )
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
        let kept = enroll(&f.store, &f.me, &enroll_cmd(r#"enroll:deny:{}"#), true, NOW).await;
        assert!(kept.is_err_and(|e| !e.closes_connection()));
        let bad = enroll(&f.store, &f.me, &enroll_cmd("enroll:list:{bad"), true, NOW)
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
            "error:AT0015-key not found : An Enrollment with Id: x1 does not exist or has expired.\n@alice@"
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
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), Some(0));
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

    #[tokio::test]
    async fn delete_is_not_served_and_strangers_are_refused() {
        let f = fixture().await;
        assert_eq!(
            run(&f, r#"enroll:delete:{"enrollmentId":"1"}"#).await,
            "error:AT0003-Invalid syntax : invalid command\n@alice@"
        );
        let stranger = enroll(&f.store, &f.me, &enroll_cmd("enroll:list"), false, NOW).await;
        assert_eq!(stranger.unwrap_err().code(), ErrorCode::Unauthenticated);
        let request = enroll(&f.store, &f.me, &enroll_cmd(REQUEST), false, NOW).await;
        assert!(request.is_err_and(|e| !e.closes_connection()));
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
    fn screen_lets_only_a_cram_owner_request_through() {
        let request = enroll_cmd(REQUEST);
        let cram = Asker::Owner {
            via: OwnerAuth::Cram,
            enrollment: None,
        };
        assert!(screen(&request, &cram, || true).is_none());
        assert_eq!(
            stranger_wire(screen(&request, &Asker::Anyone, || true)),
            "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@"
        );
        let with_otp = enroll_cmd(
            r#"enroll:request:{"appName":"a","deviceName":"d","namespaces":{"wavi":"rw"},"otp":"123456","apkamPublicKey":"k","encryptedAPKAMSymmetricKey":"s"}"#,
        );
        assert_eq!(
            stranger_wire(screen(&with_otp, &Asker::Anyone, || true)),
            "error:AT0011-Exception: invalid otp. Cannot process enroll request\n@"
        );
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
        let pkam = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: None,
        };
        let refused = screen(&request, &pkam, || true).unwrap().unwrap_err();
        assert_eq!(refused, AtError::syntax("invalid command"));
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
