//! Another atSign's encryption public key changed (docs/storage.md#public-key-change): @bob
//! reset his atSign and onboarded again with a new key pair. What `me` shared with him under the
//! old key can no longer be read by him, and clients only cut a new shared key when they find
//! none. So, as the reference's cache manager does, when a fetched `publickey@bob` differs from
//! the cached one:
//!
//! 1. an event is stored for clients at `<now µs>.events.__atserver@me`:
//!    `{"category":"atProtocol","name":"atsign_pk_changed","data":{"atSign":"@bob"}}`;
//! 2. the same goes to `me`'s `:selfNotifications` monitors as the atServer's own notice
//!    (kept 5 minutes);
//! 3. `shared_key.bob@me` (`me`'s copy of the key shared with @bob) is renamed
//!    `shared_key.bob.until.<now ms>@me`, so clients cut and share a new one;
//! 4. the cached key is replaced (ttr −1, created now: when this server learned of it).
//!
//! The cached key is written last: if anything before fails, the next fetch finds the change
//! again.

use at_common::error::AtError;
use at_common::metadata::{EpochMillis, Metadata};
use at_common::verb::{MessageType, Operation};
use at_common::AtSign;

use super::cache::Cached;
use crate::notifications::{self, Monitors, Notification, NotificationMetadata};
use crate::reserved;
use crate::store::{CommitOp, Mutation, Record, Store};

/// How long the notification about the change is kept.
const NOTIFICATION_TTL_MS: i64 = 5 * 60 * 1000;

/// Handles a change of `other`'s public key from `cached` (what `cached_key` holds) to
/// `fetched`, if it is one: a real new value, different from a real old one. Otherwise nothing
/// is written.
pub async fn handle(
    store: &Store,
    monitors: &Monitors,
    me: &AtSign,
    other: &AtSign,
    (cached_key, cached): (&str, &Record),
    fetched: &Record,
    now: EpochMillis,
) -> Result<(), AtError> {
    let changed = match (&cached.value, &fetched.value) {
        (Some(old), Some(new)) => new != "null" && old != new,
        _ => false,
    };
    if !changed {
        return Ok(());
    }
    tracing::warn!(%me, %other, "another atSign's public key changed");
    record_event(store, monitors, me, other, now).await?;
    retire_shared_key(store, me, other, now).await?;
    let mut metadata = fetched.metadata.clone();
    metadata.ttr = Some(-1);
    metadata.refresh_at = None;
    metadata.created_at = Some(now);
    metadata.updated_at = Some(now);
    super::cache::put_copy(store, me, cached_key, fetched.value.clone(), metadata).await
}

/// Takes in `other`'s server's `reply` to the first question of a new link
/// ([`crate::peer::link`]: `lookup:all:publickey@other`): a key is cached, or handled as a change
/// if it differs from the cached one; no key is fine.
pub async fn learn(
    store: &Store,
    monitors: &Monitors,
    me: &AtSign,
    other: &AtSign,
    reply: &str,
    now: EpochMillis,
) -> Result<(), AtError> {
    let Some(fetched) = super::fetch::read_lookup_all(reply)? else {
        return Ok(());
    };
    let cached_key = reserved::cached_encryption_public_key(other);
    super::cache::keep(
        store,
        monitors,
        me,
        &cached_key,
        &fetched,
        Cached::Public,
        now,
    )
    .await?;
    Ok(())
}

/// The event's key (a self key of `me`) and value.
fn event(me: &AtSign, other: &AtSign, now: EpochMillis) -> (String, String) {
    let micros = now.saturating_mul(1000);
    let key = reserved::key_change_event(micros, me);
    // In the reference's field order (a JSON map would sort them).
    let atsign = serde_json::Value::from(other.as_str());
    let value = format!(
        r#"{{"category":"atProtocol","name":"atsign_pk_changed","data":{{"atSign":{atsign}}}}}"#
    );
    (key, value)
}

/// Steps 1 and 2: the event, stored and told to `me`'s monitors.
async fn record_event(
    store: &Store,
    monitors: &Monitors,
    me: &AtSign,
    other: &AtSign,
    now: EpochMillis,
) -> Result<(), AtError> {
    let (key, value) = event(me, other, now);
    let record = Record {
        value: Some(value.clone()),
        metadata: Metadata {
            created_by: Some(me.clone()),
            created_at: Some(now),
            updated_at: Some(now),
            version: Some(0),
            status: Some("active".to_string()),
            ..Metadata::default()
        },
    };
    store.put(me, &key, &record, CommitOp::UpdateAll).await?;
    let notification = Notification {
        id: uuid::Uuid::new_v4().to_string(),
        from: me.clone(),
        to: me.clone(),
        key,
        value: Some(value),
        operation: Operation::Update,
        epoch_millis: now,
        message_type: MessageType::Key,
        is_encrypted: false,
        metadata: Some(NotificationMetadata::default()),
    };
    let expires = now.saturating_add(NOTIFICATION_TTL_MS);
    notifications::store_to_self(store, me, &notification, expires).await?;
    monitors.publish_to_self(me, &notification).await;
    Ok(())
}

/// Step 3: `shared_key.<other>@me` becomes `shared_key.<other>.until.<now>@me`, if it exists.
async fn retire_shared_key(
    store: &Store,
    me: &AtSign,
    other: &AtSign,
    now: EpochMillis,
) -> Result<(), AtError> {
    let name = other.as_str().trim_start_matches('@');
    let current = reserved::shared_key(name, me);
    // What the removal took (the store may run the change more than once; the last counts).
    let taken = std::sync::Arc::new(std::sync::Mutex::new(None));
    let taking = std::sync::Arc::clone(&taken);
    store
        .modify(me, &current, move |existing| {
            let mut taking = taking.lock().unwrap_or_else(|e| e.into_inner());
            *taking = existing.cloned();
            Ok(match existing {
                Some(_) => Mutation::Remove { commit: true },
                None => Mutation::Keep,
            })
        })
        .await?;
    let taken = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(record) = taken {
        let retired = reserved::retired_shared_key(name, now, me);
        store
            .put(me, &retired, &record, CommitOp::UpdateAll)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_is_the_references() {
        let (me, bob) = ("@alice".parse().unwrap(), "@bob".parse().unwrap());
        let (key, value) = event(&me, &bob, 1_729_733_702_123);
        assert_eq!(key, "1729733702123000.events.__atserver@alice");
        assert_eq!(
            value,
            r#"{"category":"atProtocol","name":"atsign_pk_changed","data":{"atSign":"@bob"}}"#
        );
    }
}
