//! What the atSign's devices may do, as the key store last read it: the enrollment of a
//! device's connection is read before each of its commands ([`crate::access::Grant`]), and
//! reading it from the store each time cost a device's `llookup` a fifth more CPU. A grant
//! read here is used for [`FRESH_FOR`]; an enrollment changed through this key store, or
//! revoked on any node (the nodes' bus, [`crate::notifications::EnrollmentEnded`]), is read
//! again at once, and one whose keys expire is refused at that instant whatever was read.
//! What else could change a grant (a revoke whose bus message a node missed) is seen within
//! [`FRESH_FOR`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::AtSign;

use crate::access::Grant;
use crate::store::Store;

/// How long a grant read from the store is used without reading it again.
pub const FRESH_FOR: Duration = Duration::from_secs(2);
/// Grants kept at most (an atSign has a device or a few each): past it the oldest go.
const KEPT: usize = 256;

/// The grants of one atSign's enrollments, by enrollment id.
#[derive(Default)]
pub struct Grants {
    read: Mutex<HashMap<String, (Grant, Instant)>>,
}

impl Grants {
    /// Enrollment `id`'s grant now: the one read less than [`FRESH_FOR`] ago unless its keys
    /// have expired, else read from the store (an enrollment gone or expired is the error that
    /// ends the connection, [`crate::verbs::grant`]).
    pub async fn of(
        &self,
        store: &Store,
        me: &AtSign,
        id: &str,
        now: EpochMillis,
    ) -> Result<Grant, AtError> {
        let fresh = self.lock().get(id).and_then(|(grant, at)| {
            let expired = grant.expires_at.is_some_and(|at| at <= now);
            (at.elapsed() < FRESH_FOR && !expired).then(|| grant.clone())
        });
        if let Some(grant) = fresh {
            return Ok(grant);
        }
        let grant = crate::verbs::grant(store, me, id, now).await?;
        let mut read = self.lock();
        if read.len() >= KEPT {
            read.retain(|_, (_, at)| at.elapsed() < FRESH_FOR);
            if read.len() >= KEPT {
                read.clear();
            }
        }
        read.insert(id.to_string(), (grant.clone(), Instant::now()));
        Ok(grant)
    }

    /// Read every grant again at next use (an enrollment changed).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// Read enrollment `id`'s grant again at next use.
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Grant, Instant)>> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Record;
    use at_common::metadata::Metadata;
    use at_tests::TempDir;

    fn enrollment(state: &str, expires_at: Option<EpochMillis>) -> Record {
        let json = format!(
            r#"{{"sessionId":"","appName":"buzz","deviceName":"d","namespaces":{{"buzz":"rw"}},"apkamPublicKey":"k","requestType":"newEnrollment","approval":{{"state":"{state}"}},"encryptedAPKAMSymmetricKey":null,"apkamKeysExpiryInMillis":0}}"#
        );
        Record {
            value: Some(json),
            metadata: Metadata {
                expires_at,
                ..Metadata::default()
            },
        }
    }

    #[tokio::test]
    async fn a_grant_is_read_again_when_forgotten_and_refused_once_expired() {
        let dir = TempDir::new("grants");
        let store = Store::new(crate::store::embedded::Embedded::open(dir.path()).unwrap());
        let me = AtSign::parse("@alice").unwrap();
        let key = crate::reserved::enrollment("e1", &me);
        let now = 1_000_000;
        store
            .put_uncommitted(&me, &key, &enrollment("approved", Some(now + 100)))
            .await
            .unwrap();
        let grants = Grants::default();
        assert!(grants.of(&store, &me, "e1", now).await.unwrap().approved);

        // Revoked in the store: the grant read stands until forgotten (a revoke says so).
        store
            .put_uncommitted(&me, &key, &enrollment("revoked", Some(now + 100)))
            .await
            .unwrap();
        assert!(grants.of(&store, &me, "e1", now).await.unwrap().approved);
        grants.forget("e1");
        assert!(!grants.of(&store, &me, "e1", now).await.unwrap().approved);

        // Past its keys' expiry it is refused at once, whatever was read.
        store
            .put_uncommitted(&me, &key, &enrollment("approved", Some(now + 100)))
            .await
            .unwrap();
        grants.forget_all();
        assert!(grants.of(&store, &me, "e1", now).await.is_ok());
        let ended = grants.of(&store, &me, "e1", now + 100).await.unwrap_err();
        assert!(ended.closes_connection(), "{ended:?}");
    }
}
