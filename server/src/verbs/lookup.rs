//! `lookup` of `me`'s own keys (docs/protocol.md#lookup): by the owner, by another atSign's
//! server (pol), and by anyone without authentication. Lookups of another atSign's keys (cache,
//! then its server) are [`super::remote`]'s.
//!
//! # Format
//! As llookup ([`super::llookup`]); a value starting `atsign://` names another key of `me`, whose
//! value is returned instead, following at most [`DEPTH_OF_RESOLUTION`] such references.
//! Every lookup bumps the key's access counter (stats `topKeys`), except for hidden `_` keys.
//!
//! # Errors
//! AT0015 for a key that does not exist.

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::Lookup;
use at_common::AtSign;

use super::llookup::render;
use super::{active_or_expire, get_active, key_not_found};
use crate::store::{AccessKind, Store};

/// How many `atsign://` references a lookup follows (`lookup.depth_of_resolution`).
pub const DEPTH_OF_RESOLUTION: usize = 3;

const REFERENCE: &str = "atsign://";

/// `lookup[:meta|:all]:<key>@<me>` on an owner connection: reads `<key>@me`, or else the
/// reference's `@me:<key>@me`. `cmd.owner` must be `me` (the caller routes other owners to
/// the peer link); any other owner reads as a missing key.
pub async fn lookup_owner(
    store: &Store,
    me: &AtSign,
    cmd: &Lookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let plain = format!("{}{me}", cmd.key).to_lowercase();
    if cmd.owner != *me {
        return Err(key_not_found(&plain));
    }
    let shared = format!("{me}:{plain}");
    let key = if store.get(me, &plain).await?.is_some() {
        plain
    } else {
        shared
    };
    read(store, me, &key, cmd, now_ms).await
}

/// `lookup[:meta|:all]:<key>@<me>` from anyone (no authentication): reads `public:<key>@me`.
pub async fn lookup_public(
    store: &Store,
    me: &AtSign,
    cmd: &Lookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let key = format!("public:{}{me}", cmd.key).to_lowercase();
    if cmd.owner != *me {
        return Err(key_not_found(&key));
    }
    read(store, me, &key, cmd, now_ms).await
}

/// `lookup[:meta|:all]:<key>@<me>` by @peer's server (pol): reads `@peer:<key>@me`, what
/// `me` shared with @peer.
pub async fn lookup_peer(
    store: &Store,
    me: &AtSign,
    peer: &AtSign,
    cmd: &Lookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let key = format!("{peer}:{}{me}", cmd.key).to_lowercase();
    if cmd.owner != *me {
        return Err(key_not_found(&key));
    }
    read(store, me, &key, cmd, now_ms).await
}

async fn read(
    store: &Store,
    me: &AtSign,
    key: &str,
    cmd: &Lookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let Some(record) = store.get(me, key).await? else {
        return Err(key_not_found(key));
    };
    if !cmd.key.starts_with('_') {
        store.record_access(me, AccessKind::Key, key).await?;
    }
    let Some(mut record) = active_or_expire(store, me, key, record, now_ms).await? else {
        return Ok(Reply::Null);
    };
    if let Some(value) = record.value.take() {
        record.value = Some(resolve(store, me, value, now_ms).await?);
    }
    Ok(render(key, &record, cmd.op))
}

/// Follows `atsign://<key>` references among `me`'s keys; a reference to a key that is
/// missing or inactive is returned as it is.
async fn resolve(
    store: &Store,
    me: &AtSign,
    mut value: String,
    now_ms: EpochMillis,
) -> Result<String, AtError> {
    for _ in 0..DEPTH_OF_RESOLUTION {
        let Some(target) = value.strip_prefix(REFERENCE) else {
            break;
        };
        let mut target = target.trim().to_lowercase();
        if !target.contains('@') {
            target.push_str(me.as_str());
        }
        match get_active(store, me, &target, now_ms)
            .await?
            .and_then(|r| r.value)
        {
            Some(next) => value = next,
            None => break,
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn owner(f: &Fixture, line: &str) -> String {
        let result = match command(line) {
            Command::Lookup(cmd) => lookup_owner(&f.store, &f.me, &cmd, NOW).await,
            Command::Update(cmd) => update(&f.store, &f.me, &cmd, NOW).await,
            other => panic!("not a lookup: {other:?}"),
        };
        wire(&f.me, result)
    }

    async fn public(f: &Fixture, line: &str) -> String {
        let Command::Lookup(cmd) = command(line) else {
            panic!("not a lookup")
        };
        wire(&f.me, lookup_public(&f.store, &f.me, &cmd, NOW).await)
    }

    #[tokio::test]
    async fn owner_lookup_reads_self_key_then_self_shared_key() {
        let f = fixture().await;
        owner(&f, "update:phone@alice 1").await;
        owner(&f, "update:@alice:email@alice 2").await;
        assert_eq!(owner(&f, "lookup:phone@alice").await, "data:1\n@alice@");
        assert_eq!(owner(&f, "lookup:email@alice").await, "data:2\n@alice@");
        assert_eq!(
            owner(&f, "lookup:fax@alice").await,
            "error:AT0015-key not found : @alice:fax@alice does not exist in keystore\n@alice@"
        );
        let top = f
            .store
            .top_accesses(&f.me, AccessKind::Key, 5)
            .await
            .unwrap();
        assert_eq!(top.len(), 2, "{top:?}");
    }

    #[tokio::test]
    async fn references_are_resolved_three_deep() {
        let f = fixture().await;
        owner(&f, "update:ka@alice atsign://kb@alice").await;
        owner(&f, "update:kb@alice atsign://kc").await;
        owner(&f, "update:kc@alice atsign://kd@alice").await;
        owner(&f, "update:kd@alice atsign://ke@alice").await;
        owner(&f, "update:ke@alice end").await;
        assert_eq!(
            owner(&f, "lookup:kc@alice").await,
            "data:end\n@alice@",
            "two hops"
        );
        assert_eq!(
            owner(&f, "lookup:ka@alice").await,
            "data:atsign://ke@alice\n@alice@",
            "stops after three"
        );
        assert_eq!(
            owner(&f, "lookup:all:kd@alice")
                .await
                .split("\"metaData\"")
                .next(),
            Some("data:{\"key\":\"kd@alice\",\"data\":\"end\",")
        );
    }

    #[tokio::test]
    async fn public_lookup_reads_only_public_keys() {
        let f = fixture().await;
        owner(&f, "update:public:publickey@alice MIIB").await;
        owner(&f, "update:secret@alice s").await;
        assert_eq!(
            public(&f, "lookup:publickey@alice").await,
            "data:MIIB\n@alice@"
        );
        assert_eq!(
            public(&f, "lookup:secret@alice").await,
            "error:AT0015-key not found : public:secret@alice does not exist in keystore\n@alice@"
        );
        let meta = public(&f, "lookup:meta:publickey@alice").await;
        assert!(meta.starts_with("data:{\"createdBy\":\"@alice\""), "{meta}");
    }
}
