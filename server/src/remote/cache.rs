//! Cached copies of other atSigns' keys (docs/storage.md#cached-keys): `cached:@me:<key>@other`
//! for what @other shared with `me`, `cached:public:<key>@other` for @other's public keys.
//!
//! - Kept when the owner gave the key a ttr: refreshed after `ttr` seconds (`refreshAt`),
//!   forever for `-1`. A shared key without ttr (or 0) is not cached. A public key without ttr
//!   is cached anyway for 24 hours (ttl), as the reference does; `publickey@…` forever.
//! - Served while active (ttb/ttl) and fresh (`ttr` −1, or `now <= refreshAt`); otherwise the
//!   owner's server is asked again.
//! - Removed when the owner says the key is gone; `cached:public:publickey@…` is kept (the
//!   reference never drops a known public key on a failed lookup).
//! - A fetched encryption public key (`publickey@…`) that differs from the cached one is a
//!   reset of its atSign: [`key_change`] tells the owner's clients.
//! - Cached keys are committed like any key, so the owner's clients sync them; the owner cannot
//!   update them (`update` refuses cached keys).

use at_common::error::AtError;
use at_common::limits::{instant_after, MAX_DATE_MS};
use at_common::metadata::{EpochMillis, Metadata, MetadataUpdate};
use at_common::AtSign;

use super::key_change;
use crate::lifetime::get_active;
use crate::notifications::Monitors;
use crate::store::{CommitOp, Mutation, Record, Store};

/// How long a public key without ttr stays cached.
const PUBLIC_WITHOUT_TTR_MS: i64 = 24 * 60 * 60 * 1000;

/// Which kind of cached copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// `cached:@me:<key>@other`.
    Shared,
    /// `cached:public:<key>@other`.
    Public,
}

/// The cached record under `cached_key` if it may be served at `now`.
pub async fn fresh(
    store: &Store,
    me: &AtSign,
    cached_key: &str,
    now: EpochMillis,
) -> Result<Option<Record>, AtError> {
    let Some(record) = get_active(store, me, cached_key, now).await? else {
        return Ok(None);
    };
    let metadata = &record.metadata;
    let fresh = metadata.ttr == Some(-1) || metadata.refresh_at.is_some_and(|at| now <= at);
    Ok(fresh.then_some(record))
}

/// Stores `fetched` (just read from its owner's server) as `cached_key`, if the rules above
/// say it is cached; says whether it was.
pub async fn keep(
    store: &Store,
    monitors: &Monitors,
    me: &AtSign,
    cached_key: &str,
    fetched: &Record,
    kind: Cached,
    now: EpochMillis,
) -> Result<bool, AtError> {
    // A known encryption public key is kept as it is, unless it changed.
    if kind == Cached::Public {
        if let Some(other) = encryption_key_owner(cached_key) {
            if let Some(cached) = store.get(me, cached_key).await? {
                let cached = (cached_key, &cached);
                key_change::handle(store, monitors, me, &other, cached, fetched, now).await?;
                return Ok(true);
            }
        }
    }
    let mut metadata = fetched.metadata.clone();
    match (metadata.ttr.filter(|&ttr| ttr != 0), kind) {
        (Some(_), _) => {}
        (None, Cached::Public) if is_public_encryption_key(cached_key) => metadata.ttr = Some(-1),
        (None, Cached::Public) => {
            metadata.ttl = Some(PUBLIC_WITHOUT_TTR_MS);
            metadata.expires_at = Some(now + PUBLIC_WITHOUT_TTR_MS);
            // Served for as long as it lives.
            metadata.refresh_at = metadata.expires_at;
        }
        (None, Cached::Shared) => return Ok(false),
    }
    if let Some(ttr) = metadata.ttr.filter(|&ttr| ttr > 0) {
        // The owner's ttr, whatever it is: one past any date means never refreshed.
        let after = ttr.saturating_mul(1000);
        metadata.refresh_at = Some(instant_after(now, after).unwrap_or(MAX_DATE_MS));
    }
    if metadata.ttr == Some(-1) {
        metadata.refresh_at = None;
    }
    put_copy(store, me, cached_key, fetched.value.clone(), metadata).await?;
    Ok(true)
}

/// Stores `value` with `metadata` as the cached copy `cached_key` (committed, so the owner's
/// clients sync it).
pub(super) async fn put_copy(
    store: &Store,
    me: &AtSign,
    cached_key: &str,
    value: Option<String>,
    metadata: Metadata,
) -> Result<(), AtError> {
    let record = Record { value, metadata };
    store
        .put(me, cached_key, &record, CommitOp::UpdateAll)
        .await?;
    Ok(())
}

/// Removes the cached copy `cached_key` (its owner says the key is gone), with a commit entry
/// so synced clients drop it too; says whether there was one.
pub async fn drop(store: &Store, me: &AtSign, cached_key: &str) -> Result<bool, AtError> {
    if is_public_encryption_key(cached_key) {
        return Ok(false);
    }
    let written = store
        .modify(me, cached_key, |current| {
            Ok(match current {
                Some(_) => Mutation::Remove { commit: true },
                None => Mutation::Keep,
            })
        })
        .await?;
    Ok(written.changed)
}

/// A notification from `from` with a ttr (docs/notifications.md#receiving): caches its key as
/// `cached_key`, with the notification's metadata merged into any cached copy; without a value,
/// only the metadata of an existing copy changes. Only `from`'s own keys are cached: a server
/// cannot plant copies of another atSign's keys.
pub async fn keep_notified(
    store: &Store,
    me: &AtSign,
    cached_key: &str,
    value: Option<String>,
    meta: &MetadataUpdate,
    from: &AtSign,
    now: EpochMillis,
) -> Result<(), AtError> {
    if !cached_key.ends_with(from.as_str()) || !cached_key.starts_with(&format!("cached:{me}:")) {
        return Ok(());
    }
    let (meta, from) = (meta.clone(), from.clone());
    store
        .modify(me, cached_key, move |existing| {
            if value.is_none() && existing.is_none() {
                return Ok(Mutation::Keep);
            }
            let metadata =
                Metadata::updated(existing.map(|r| r.metadata.clone()), &meta, &from, now)?;
            let value = value
                .clone()
                .or_else(|| existing.and_then(|r| r.value.clone()));
            Ok(Mutation::put(
                Record { value, metadata },
                CommitOp::UpdateAll,
            ))
        })
        .await?;
    Ok(())
}

/// Whether another atSign's notification may keep `cached_key` for `me`: an existing copy
/// always (it follows its key), a new one while `me` holds fewer than `max` cached keys (what
/// others can make an atSign store is bounded).
pub async fn room_for(
    store: &Store,
    me: &AtSign,
    cached_key: &str,
    max: usize,
) -> Result<bool, AtError> {
    if store.get(me, cached_key).await?.is_some() {
        return Ok(true);
    }
    let held = store.keys(me, "cached:").await?.len();
    if held >= max {
        tracing::info!(%me, held, "cached keys at their quota; a notification's copy is not kept");
        return Ok(false);
    }
    Ok(true)
}

/// A delete notification: drops the cached copy if it was cached with `ccd` (cascade delete).
pub async fn drop_if_cascading(
    store: &Store,
    me: &AtSign,
    cached_key: &str,
) -> Result<bool, AtError> {
    let written = store
        .modify(me, cached_key, |current| {
            Ok(match current {
                Some(record) if record.metadata.ccd == Some(true) => {
                    Mutation::Remove { commit: true }
                }
                _ => Mutation::Keep,
            })
        })
        .await?;
    Ok(written.changed)
}

/// `cached:public:publickey@…`: another atSign's encryption public key.
fn is_public_encryption_key(cached_key: &str) -> bool {
    cached_key
        .strip_prefix(crate::reserved::CACHED_ENCRYPTION_PUBLIC_KEY)
        .is_some_and(|owner| owner.starts_with('@'))
}

/// Whose encryption public key `cached_key` is, if it is one.
fn encryption_key_owner(cached_key: &str) -> Option<AtSign> {
    cached_key
        .strip_prefix(crate::reserved::CACHED_ENCRYPTION_PUBLIC_KEY)
        .filter(|owner| owner.starts_with('@'))?
        .parse()
        .ok()
}
