//! How a write stamps a key's metadata: its version, who wrote it and when, and the instants
//! its times lead to (docs/protocol.md#update, docs/storage.md#key-lifetime). One place for
//! every writer: the owner's `update`, cached copies from peers, keys the server writes itself.

use super::{EpochMillis, Metadata, MetadataUpdate};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::limits::{instant_after, time_out_of_range};

impl Metadata {
    /// `existing` written again by `by` at `now`: version up (0 for a new key), created once,
    /// updated now, active. Its times and their instants are kept as they were.
    pub fn rewritten(existing: Option<Metadata>, by: &AtSign, now: EpochMillis) -> Metadata {
        let mut metadata = existing.unwrap_or_default();
        metadata.version = Some(metadata.version.map_or(0, |v| v + 1));
        metadata.created_by.get_or_insert_with(|| by.clone());
        metadata.created_at.get_or_insert(now);
        metadata.updated_by = Some(by.clone());
        metadata.updated_at = Some(now);
        metadata.status = Some("active".to_string());
        metadata
    }

    /// The stored metadata after `update` of `existing` by `by` at `now`: [`Self::rewritten`],
    /// the fragment applied, and the instants computed again from its times. As the
    /// reference's metadata builder, a key's life (ttl) starts when it is born (ttb).
    ///
    /// # Errors
    /// AT0003 when a time leads past any date ([`instant_after`]): refused, never wrapped.
    pub fn updated(
        existing: Option<Metadata>,
        update: &MetadataUpdate,
        by: &AtSign,
        now: EpochMillis,
    ) -> Result<Metadata, AtError> {
        let mut metadata = Metadata::rewritten(existing, by, now);
        metadata.apply(update);
        let after = |name: &str, value: i64, ms: Option<i64>, from: EpochMillis| {
            ms.and_then(|ms| instant_after(from, ms)).ok_or_else(|| {
                time_out_of_range(name, value, if name == "ttr" { "s" } else { "ms" })
            })
        };
        let ttb = metadata.ttb.filter(|&ttb| ttb > 0);
        metadata.available_at = ttb
            .map(|ttb| after("ttb", ttb, Some(ttb), now))
            .transpose()?;
        let birth = metadata.available_at.unwrap_or(now);
        metadata.expires_at = match metadata.ttl.filter(|&ttl| ttl > 0) {
            Some(ttl) => Some(after("ttl", ttl, Some(ttl), birth)?),
            None => None,
        };
        metadata.refresh_at = match metadata.ttr.filter(|&ttr| ttr > 0) {
            Some(ttr) => Some(after("ttr", ttr, ttr.checked_mul(1000), now)?),
            None => None,
        };
        if metadata.ttr.is_some() {
            metadata.ccd.get_or_insert(false);
        }
        Ok(metadata)
    }
}
