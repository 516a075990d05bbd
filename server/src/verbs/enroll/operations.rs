//! The operations the key store runs: `request` (a cram owner's, approved at once), `approve`,
//! `deny`, `revoke`, `unrevoke`, `list` and `fetch`.

use at_common::error::{AtError, ErrorCode};
use at_common::limits::{instant_after, time_out_of_range};
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::{
    json_string, EnrollOp, EnrollParams, EnrollmentStatus, MessageType, Namespaces, Operation,
};
use at_common::AtSign;

use super::record::{optional, status_at, Enrollment};
use super::{enrollment_exception, expired_or_invalid, refuse, Step};
use crate::access::Grant;
use crate::notifications::{self, Monitors, Notification};
use crate::reserved::{self, PKAM_PUBLIC_KEY};
use crate::store::{Mutation, Store, StoreError};
use crate::verbs::{put_uncommitted, written};

/// How long a request waits for an approver (the reference's `enrollmentExpiryInHours`, 48).
pub const PENDING_FOR_MS: i64 = 48 * 60 * 60 * 1000;
/// How long the notice of a request is kept for monitors that come later.
const NOTICE_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// Every enrollment of `me`, by key, with its status now.
pub(super) async fn all(
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
pub(super) async fn request(
    store: &Store,
    me: &AtSign,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<Reply> {
    let mut enrollment = Enrollment::requested(params, EnrollmentStatus::Approved);
    refuse_duplicate(store, me, &enrollment, now).await?;
    let id = uuid::Uuid::new_v4().to_string();
    enrollment.namespaces.set(reserved::MANAGE_NAMESPACE, "rw");
    enrollment.namespaces.set("*", "rw");
    enrollment.encrypted_apkam_symmetric_key = None;
    store_encryption_keys(store, me, &id, params, now).await?;
    // Clients that still use legacy pkam sign with the same key.
    let key = enrollment.apkam_public_key.clone();
    put_uncommitted(store, me, PKAM_PUBLIC_KEY, key, now).await?;
    put_uncommitted(
        store,
        me,
        &reserved::enrollment(&id, me),
        enrollment.to_json(),
        now,
    )
    .await?;
    tracing::info!(atsign = %me, enrollment = %id, "enrollment approved on a cram connection");
    Ok(requested(&id, EnrollmentStatus::Approved))
}

/// What a `request` answers: `{"enrollmentId":"<id>","status":"approved|pending"}`.
fn requested(id: &str, status: EnrollmentStatus) -> Reply {
    Reply::Data(format!(
        r#"{{"enrollmentId":{},"status":"{status}"}}"#,
        json_string(id)
    ))
}

/// Refuses a request for an app and device that already have a pending or approved
/// enrollment, in the reference's words.
async fn refuse_duplicate(
    store: &Store,
    me: &AtSign,
    asked: &Enrollment,
    now: EpochMillis,
) -> Step<()> {
    let (app_name, device_name) = (&asked.app_name, &asked.device_name);
    for (key, other, status) in all(store, me, now).await? {
        let live = matches!(
            status,
            EnrollmentStatus::Approved | EnrollmentStatus::Pending
        );
        if live && other.app_name == *app_name && other.device_name == *device_name {
            let id = key.split('.').next().unwrap_or_default();
            return Err(refuse(format!(
                "Another enrollment with id {id} exists with the app name: {app_name} and device name: {device_name} in {status} state"
            )));
        }
    }
    Ok(())
}

/// A request that waits for an approver (from a new device with a passcode, or from a device
/// logged in with pkam): kept [`PENDING_FOR_MS`], and announced to the approvers' monitors
/// ([`notice`]).
pub(super) async fn pending(
    store: &Store,
    monitors: &Monitors,
    me: &AtSign,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<Reply> {
    let enrollment = Enrollment::requested(params, EnrollmentStatus::Pending);
    refuse_duplicate(store, me, &enrollment, now).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let key = reserved::enrollment(&id, me);
    let mut record = written(None, enrollment.to_json(), me, now);
    record.metadata.ttl = Some(PENDING_FOR_MS);
    record.metadata.expires_at = Some(now.saturating_add(PENDING_FOR_MS));
    store.put_uncommitted(me, &key, &record).await?;
    notice(store, monitors, me, &key, params, now).await?;
    tracing::info!(atsign = %me, enrollment = %id, "enrollment request pending approval");
    Ok(requested(&id, EnrollmentStatus::Pending))
}

/// The notice of a pending request to the atSign's approvers: a self notification (24 h)
/// whose key is the enrollment's and whose value carries what an approver shows and needs,
/// for `monitor:selfNotifications` connections that may manage enrollments, on every node.
async fn notice(
    store: &Store,
    monitors: &Monitors,
    me: &AtSign,
    key: &str,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<()> {
    let symmetric = optional(params.encrypted_apkam_symmetric_key.as_deref());
    let namespaces = params
        .namespaces
        .as_ref()
        .map_or_else(|| "null".to_string(), |ns| ns.to_json());
    let value = format!(
        r#"{{"encryptedApkamSymmetricKey":{symmetric},"encryptedAPKAMSymmetricKey":{symmetric},"appName":{},"deviceName":{},"namespace":{namespaces}}}"#,
        optional(params.app_name.as_deref()),
        optional(params.device_name.as_deref()),
    );
    let notification = Notification {
        id: uuid::Uuid::new_v4().to_string(),
        from: me.clone(),
        to: me.clone(),
        key: key.to_string(),
        value: Some(value),
        operation: Operation::Update,
        epoch_millis: now,
        message_type: MessageType::Key,
        is_encrypted: false,
        metadata: None,
    };
    let expires = now.saturating_add(NOTICE_FOR_MS);
    notifications::store_to_self(store, me, &notification, expires).await?;
    monitors.publish_to_self(me, &notification).await;
    Ok(())
}

/// The encrypted default keys the approving client sent, kept for the enrolled app.
pub(super) async fn store_encryption_keys(
    store: &Store,
    me: &AtSign,
    id: &str,
    params: &EnrollParams,
    now: EpochMillis,
) -> Result<(), StoreError> {
    for (name, value) in [
        (
            reserved::DEFAULT_ENC_PRIVATE_KEY,
            &params.encrypted_default_encryption_private_key,
        ),
        (
            reserved::DEFAULT_SELF_ENC_KEY,
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
pub(super) async fn change(
    store: &Store,
    me: &AtSign,
    op: EnrollOp,
    params: &EnrollParams,
    approver: Option<&Grant>,
    now: EpochMillis,
) -> Step<Reply> {
    let id = params.enrollment_id.clone().unwrap_or_default();
    let approver = approver.cloned();
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
            if let Some(reason) = approver
                .as_ref()
                .and_then(|a| refused_approver(a, &enrollment.namespaces))
            {
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
    match op {
        EnrollOp::Approve => approved(store, me, &id, &key, params, now).await?,
        EnrollOp::Revoke => legacy_key_with(store, me, &id, &key, false, now).await?,
        EnrollOp::Unrevoke => legacy_key_with(store, me, &id, &key, true, now).await?,
        _ => {}
    }
    Ok(Reply::Data(format!(
        r#"{{"status":"{target}","enrollmentId":{}}}"#,
        json_string(&id)
    )))
}

/// The legacy pkam key (`privatekey:at_pkam_publickey`) follows the enrollment whose key it is
/// (the first device's: onboarding writes both): revoked, it is put aside under
/// `<id>.legacy_pkam_publickey.__manage@me`, so the revoked device cannot log in the legacy way
/// either; unrevoked (`restore`), it is put back.
async fn legacy_key_with(
    store: &Store,
    me: &AtSign,
    id: &str,
    key: &str,
    restore: bool,
    now: EpochMillis,
) -> Step<()> {
    let aside = reserved::enrollment_secret(id, reserved::LEGACY_PKAM_KEY_ASIDE, me);
    if restore {
        if let Some(kept) = store.get(me, &aside).await?.and_then(|r| r.value) {
            put_uncommitted(store, me, PKAM_PUBLIC_KEY, kept, now).await?;
            store.remove_uncommitted(me, &aside).await?;
        }
        return Ok(());
    }
    let Some(record) = store.get(me, key).await? else {
        return Ok(());
    };
    let enrollment = Enrollment::parse(key, &record)?;
    let legacy = store.get(me, PKAM_PUBLIC_KEY).await?.and_then(|r| r.value);
    if legacy.as_deref() == Some(enrollment.apkam_public_key.as_str()) {
        put_uncommitted(store, me, &aside, enrollment.apkam_public_key, now).await?;
        store.remove_uncommitted(me, PKAM_PUBLIC_KEY).await?;
        tracing::info!(atsign = %me, enrollment = %id, "legacy pkam key put aside with its revoked enrollment");
    }
    Ok(())
}

/// Why a device logged in with `approver` may not act on an enrollment for `namespaces`, if
/// it may not: it must hold `__manage`, and cover each namespace with `rw` (or `r` for one
/// asked as `r`), as the reference checks.
fn refused_approver(approver: &Grant, namespaces: &Namespaces) -> Option<&'static str> {
    if approver
        .namespaces
        .get(reserved::MANAGE_NAMESPACE)
        .is_none()
    {
        return Some(r#"The approving enrollment does not have access to "__manage" namespace"#);
    }
    let covered = namespaces
        .0
        .iter()
        .all(|(namespace, access)| approver.approves(namespace, access));
    (!covered).then_some("Client is not authorized for namespaces in the enrollment request")
}

/// Why `op` may not change an enrollment in `status`, if it may not.
pub(super) fn refused_transition(op: EnrollOp, status: EnrollmentStatus) -> Option<String> {
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
/// and the encrypted default keys of the approving client, none of them committed.
pub(super) async fn approved(
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
    // Not committed, as the reference: a device's key must not sync to clients.
    put_uncommitted(store, me, &public, value, now).await?;
    store_encryption_keys(store, me, id, params, now).await?;
    Ok(())
}

/// `enroll:list`: every enrollment whose status passes the filter (all when there is none); a
/// device whose enrollment does not hold `__manage` lists only its own (unfiltered, unless
/// expired), as the reference does.
pub(super) async fn list(
    store: &Store,
    me: &AtSign,
    params: &EnrollParams,
    lister: Option<&Grant>,
    now: EpochMillis,
) -> Step<Reply> {
    let filter = params
        .enrollment_status_filter
        .clone()
        .unwrap_or_else(|| EnrollmentStatus::ALL.to_vec());
    let only = lister
        .filter(|grant| grant.namespaces.get(reserved::MANAGE_NAMESPACE).is_none())
        .map(|grant| reserved::enrollment(&grant.enrollment, me));
    let entries: Vec<String> = all(store, me, now)
        .await?
        .into_iter()
        .filter(|(key, _, status)| match &only {
            Some(own) => key == own && *status != EnrollmentStatus::Expired,
            None => filter.contains(status),
        })
        .map(|(key, enrollment, status)| {
            format!("{}:{}", json_string(&key), enrollment.summary(status))
        })
        .collect();
    Ok(Reply::Data(format!("{{{}}}", entries.join(","))))
}

/// `enroll:fetch`: one enrollment; AT0015 when there is no such enrollment.
pub(super) async fn fetch(
    store: &Store,
    me: &AtSign,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<Reply> {
    let id = params.enrollment_id.as_deref().unwrap_or("null");
    let key = reserved::enrollment(id, me);
    let Some(record) = store.get(me, &key).await? else {
        return Err(no_such_record(&key));
    };
    let enrollment = Enrollment::parse(&key, &record)?;
    let status = status_at(&enrollment, &record, now);
    Ok(Reply::Data(enrollment.summary(status)))
}

/// The reference's miss of an enrollment record that is not there at all (`fetch`, `delete`):
/// its key store's `KeyNotFoundException`.
fn no_such_record(key: &str) -> AtError {
    AtError::with_detail(
        ErrorCode::KeyNotFound,
        format!("{key} does not exist in keystore"),
    )
}

/// `enroll:delete`: removes a denied or revoked enrollment's record (and the keys kept for
/// it); `{"enrollmentId":"<id>","status":"deleted"}`. One that is not there is AT0015, one past
/// its time AT0028, as the reference answers.
pub(super) async fn delete(
    store: &Store,
    me: &AtSign,
    params: &EnrollParams,
    now: EpochMillis,
) -> Step<Reply> {
    let id = params.enrollment_id.clone().unwrap_or_default();
    let key = reserved::enrollment(&id, me);
    let (id_, key_) = (id.clone(), key.clone());
    store
        .modify(me, &key, move |existing| {
            let Some(record) = existing else {
                return Err(no_such_record(&key_));
            };
            let status = status_at(&Enrollment::parse(&key_, record)?, record, now);
            match status {
                EnrollmentStatus::Expired => Err(expired_or_invalid(&id_)),
                EnrollmentStatus::Denied | EnrollmentStatus::Revoked => {
                    Ok(Mutation::Remove { commit: false })
                }
                other => Err(enrollment_exception(format!(
                    "Failed to delete enrollment id: {id_} | Cause: Cannot delete {other} enrollments. Only denied and revoked enrollments can be deleted"
                ))),
            }
        })
        .await?;
    for name in reserved::ENROLLMENT_SECRETS {
        store
            .remove_uncommitted(me, &reserved::enrollment_secret(&id, name, me))
            .await?;
    }
    Ok(Reply::Data(format!(
        r#"{{"enrollmentId":{},"status":"deleted"}}"#,
        json_string(&id)
    )))
}
