//! A key's lifetime as reads see it (docs/storage.md#key-lifetime): born at `availableAt`,
//! gone at `expiresAt`. A read that finds an expired key removes it, with the same commit entry
//! the expiry job writes; the job ([`crate::maintenance`]) removes through [`expire`] too.

use at_common::error::AtError;
use at_common::metadata::{EpochMillis, Metadata};
use at_common::AtSign;

use crate::store::{Mutation, Record, Store, StoreError};

/// Whether a record is live at `now`: born (`availableAt <= now`) and not expired
/// (`expiresAt > now`). Inactive keys read as `data:null` and are left out of scans.
pub fn is_active(metadata: &Metadata, now: EpochMillis) -> bool {
    let born = metadata.available_at.is_none_or(|at| at <= now);
    let alive = metadata.expires_at.is_none_or(|at| at > now);
    born && alive
}

/// Whether a record has expired at `now` (and may be removed by whoever reads it).
pub fn is_expired(metadata: &Metadata, now: EpochMillis) -> bool {
    metadata.expires_at.is_some_and(|at| at <= now)
}

/// The record under `key` if there is one and it is active; an expired one is removed on the
/// way (see [`expire`]).
pub async fn get_active(
    store: &Store,
    me: &AtSign,
    key: &str,
    now: EpochMillis,
) -> Result<Option<Record>, AtError> {
    match store.get(me, key).await? {
        Some(record) => active_or_expire(store, me, key, record, now).await,
        None => Ok(None),
    }
}

/// `record` (just read under `key`) if it is active now; an expired one is removed.
pub async fn active_or_expire(
    store: &Store,
    me: &AtSign,
    key: &str,
    record: Record,
    now: EpochMillis,
) -> Result<Option<Record>, AtError> {
    if is_active(&record.metadata, now) {
        return Ok(Some(record));
    }
    if is_expired(&record.metadata, now) {
        expire(store, me, key, now).await?;
    }
    Ok(None)
}

/// Removes `key` if the record stored under it has expired at `now`, with a `-` commit entry
/// as the reference's expiry job writes, so synced clients drop it too. The one removal rule
/// for reads and for [`crate::maintenance`]. Expiry is checked again inside the write, since
/// an update may have replaced the record the caller read. Returns whether it removed the key.
pub async fn expire(
    store: &Store,
    me: &AtSign,
    key: &str,
    now: EpochMillis,
) -> Result<bool, StoreError> {
    let written = store
        .modify(me, key, move |current| {
            let expired = current.is_some_and(|current| is_expired(&current.metadata, now));
            Ok(if expired {
                Mutation::Remove { commit: true }
            } else {
                Mutation::Keep
            })
        })
        .await?;
    Ok(written.changed)
}
