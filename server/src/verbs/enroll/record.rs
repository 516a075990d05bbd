//! An enrollment's record: its JSON under `<id>.new.enrollments.__manage@<me>`, its status now,
//! and the keys the server writes for it; and what `pkam` checks ([`apkam_key`]).

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::verb::{json_string, EnrollParams, EnrollmentStatus, Namespaces};
use at_common::AtSign;
use serde::Deserialize;

use crate::access::Grant;
use crate::lifetime::is_active;
use crate::reserved;
use crate::store::{Record, Store, StoreError};

/// One enrollment as stored: the reference's `EnrollDataStoreValue`, in its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Enrollment {
    #[serde(default)]
    pub(super) session_id: String,
    pub(super) app_name: String,
    pub(super) device_name: String,
    #[serde(default)]
    pub(super) namespaces: Namespaces,
    pub(super) apkam_public_key: String,
    #[serde(default = "new_enrollment")]
    pub(super) request_type: String,
    pub(super) approval: Approval,
    #[serde(rename = "encryptedAPKAMSymmetricKey", default)]
    pub(super) encrypted_apkam_symmetric_key: Option<String>,
    #[serde(default)]
    pub(super) apkam_keys_expiry_in_millis: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct Approval {
    pub(super) state: EnrollmentStatus,
}

fn new_enrollment() -> String {
    "newEnrollment".to_string()
}

impl Enrollment {
    /// A new enrollment as `params` ask for it (their namespaces, key and symmetric key), in
    /// `state`.
    pub(super) fn requested(params: &EnrollParams, state: EnrollmentStatus) -> Enrollment {
        Enrollment {
            session_id: String::new(),
            app_name: params.app_name.clone().unwrap_or_default(),
            device_name: params.device_name.clone().unwrap_or_default(),
            namespaces: params.namespaces.clone().unwrap_or_default(),
            apkam_public_key: params.apkam_public_key.clone().unwrap_or_default(),
            request_type: new_enrollment(),
            approval: Approval { state },
            encrypted_apkam_symmetric_key: params.encrypted_apkam_symmetric_key.clone(),
            apkam_keys_expiry_in_millis: params.apkam_keys_expiry_in_millis.unwrap_or(0),
        }
    }

    pub(super) fn to_json(&self) -> String {
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
    pub(super) fn summary(&self, status: EnrollmentStatus) -> String {
        format!(
            r#"{{"appName":{},"deviceName":{},"namespace":{},"encryptedAPKAMSymmetricKey":{},"status":"{status}"}}"#,
            json_string(&self.app_name),
            json_string(&self.device_name),
            self.namespaces.to_json(),
            optional(self.encrypted_apkam_symmetric_key.as_deref()),
        )
    }

    pub(super) fn parse(key: &str, record: &Record) -> Result<Enrollment, AtError> {
        let text = record.value.as_deref().unwrap_or_default();
        serde_json::from_str(text).map_err(|error| {
            StoreError::Corrupt(format!("enrollment record {key}: {error}")).into()
        })
    }
}

/// A JSON string, or `null`.
pub(super) fn optional(text: Option<&str>) -> String {
    text.map_or_else(|| "null".to_string(), json_string)
}

/// The status of a stored enrollment at `now`: a record past its time reads as expired.
pub(super) fn status_at(
    enrollment: &Enrollment,
    record: &Record,
    now: EpochMillis,
) -> EnrollmentStatus {
    if is_active(&record.metadata, now) {
        enrollment.approval.state
    } else {
        EnrollmentStatus::Expired
    }
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

/// What enrollment `id` of `me` lets its device do now ([`Grant`]), read before each command
/// of a connection that logged in with it, as the reference does. An enrollment that is gone
/// or expired ends the connection: `error:AT0028:The enrollment id: <id> is expired. Closing
/// the connection`, then closed. One denied or revoked is still read (it grants nothing; a
/// revoke closes its connections itself).
pub async fn grant(
    store: &Store,
    me: &AtSign,
    id: &str,
    now: EpochMillis,
) -> Result<Grant, AtError> {
    let key = reserved::enrollment(id, me);
    let ended = || {
        AtError::set_by_handler(
            at_common::error::ErrorCode::TooManyRequests,
            format!("The enrollment id: {id} is expired. Closing the connection"),
        )
        .closing()
    };
    let Some(record) = store.get(me, &key).await? else {
        return Err(ended());
    };
    let enrollment = Enrollment::parse(&key, &record)?;
    match status_at(&enrollment, &record, now) {
        EnrollmentStatus::Expired => Err(ended()),
        status => Ok(Grant {
            enrollment: id.to_string(),
            approved: status == EnrollmentStatus::Approved,
            namespaces: enrollment.namespaces,
            expires_at: record.metadata.expires_at,
        }),
    }
}
