//! `update` and `update:meta` (docs/protocol.md#update, docs/storage.md#commit-log): the owner
//! writes a key's value and metadata.
//! `update:json` ([`super::update_json`]) writes through [`write`] too.
//!
//! The stored key is the canonical wire form, lower-cased, owned by `me` ([`super::owned_key`]).
//! Metadata is merged into what is stored: fields the command leaves out keep their values,
//! `createdAt`/`createdBy` are kept, `updatedAt` is now, `version` counts up from 0, `status` is
//! `active`, and `expiresAt`/`availableAt`/`refreshAt` follow from ttl/ttb (ms) and ttr (seconds); with both
//! ttb and ttl, the ttl counts from availableAt, as in the reference.
//! The reply is the commit id, `data:-1` for key classes that are never committed
//! ([`crate::store::is_committed`], e.g. `privatekey:at_pkam_publickey`).
//!
//! # Errors
//! AT0016 for a key of another atSign, a cached or local key, or one longer than 248 characters;
//! AT0015 for `update:meta` of a key that does not exist.

use at_common::error::{AtError, ErrorCode};
use at_common::key::{AtKey, KeyKind};
use at_common::metadata::{EpochMillis, Metadata, MetadataUpdate};
use at_common::reply::Reply;
use at_common::verb::{Update, UpdateMeta};
use at_common::AtSign;

use super::{key_not_found, owned_key};
use crate::store::{CommitOp, Mutation, Record, Store};

/// `update[:<metadata>]:<key> <value>`: stores value and merged metadata; commit op `*`.
pub async fn update(
    store: &Store,
    me: &AtSign,
    cmd: &Update,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    write(
        store,
        me,
        &cmd.key,
        Some(cmd.value.clone()),
        &cmd.meta,
        now_ms,
    )
    .await
}

/// What `update` and `update:json` share: checks `key`, then stores `value` with `meta` merged
/// into the metadata already there, in one read-modify-write; commit op `*`.
pub(crate) async fn write(
    store: &Store,
    me: &AtSign,
    key: &AtKey,
    value: Option<String>,
    meta: &MetadataUpdate,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    refuse_unwritable(key)?;
    let key = owned_key(key, me, "update")?;
    let (meta, me_) = (meta.clone(), me.clone());
    let written = store
        .modify(me, &key, move |existing| {
            let record = Record {
                value: value.clone(),
                metadata: Metadata::updated(
                    existing.map(|r| r.metadata.clone()),
                    &meta,
                    &me_,
                    now_ms,
                )?,
            };
            Ok(Mutation::put(record, CommitOp::UpdateAll))
        })
        .await?;
    Ok(commit_reply(written.commit_id))
}

/// `update:meta:<key><metadata>`: merges metadata into an existing key, keeping its value;
/// commit op `#`.
pub async fn update_meta(
    store: &Store,
    me: &AtSign,
    cmd: &UpdateMeta,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    refuse_unwritable(&cmd.key)?;
    let key = owned_key(&cmd.key, me, "update")?;
    let (meta, me_, key_) = (cmd.meta.clone(), me.clone(), key.clone());
    let written = store
        .modify(me, &key, move |existing| {
            let Some(existing) = existing else {
                return Err(key_not_found(&key_));
            };
            let record = Record {
                metadata: Metadata::updated(Some(existing.metadata.clone()), &meta, &me_, now_ms)?,
                value: existing.value.clone(),
            };
            Ok(Mutation::put(record, CommitOp::UpdateMeta))
        })
        .await?;
    Ok(commit_reply(written.commit_id))
}

/// `data:<commitId>`, or `data:-1` for a key that is not committed.
fn commit_reply(commit_id: Option<u64>) -> Reply {
    Reply::Data(commit_id.map_or_else(|| "-1".to_string(), |id| id.to_string()))
}

/// The reference's key-type check: cached copies and local keys are not the owner's to write.
fn refuse_unwritable(key: &AtKey) -> Result<(), AtError> {
    let key_type = match (&key.kind, key.cached) {
        (KeyKind::Public, true) => "cachedPublicKey",
        (KeyKind::Shared(_), true) => "cachedSharedKey",
        (KeyKind::Local, _) => "localKey",
        _ => return Ok(()),
    };
    Err(AtError::with_detail(
        ErrorCode::InvalidKey,
        format!("You may not update keys of type KeyType.{key_type}"),
    ))
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, NOW};

    async fn run(f: &crate::verbs::testing::Fixture, line: &str, now: i64) -> String {
        let result = match command(line) {
            Command::Update(cmd) => update(&f.store, &f.me, &cmd, now).await,
            Command::UpdateMeta(cmd) => update_meta(&f.store, &f.me, &cmd, now).await,
            other => panic!("not an update: {other:?}"),
        };
        wire(&f.me, result)
    }

    #[tokio::test]
    async fn update_replies_commit_ids_from_zero_and_counts_versions() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "update:public:Phone.wavi@alice 123", NOW).await,
            "data:0\n@alice@"
        );
        assert_eq!(
            run(&f, "update:public:phone.wavi@alice 456", NOW + 5).await,
            "data:1\n@alice@"
        );
        assert_eq!(
            run(&f, "update:@bob:phone@alice x", NOW).await,
            "data:2\n@alice@"
        );
        let record = f
            .store
            .get(&f.me, "public:phone.wavi@alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.value.as_deref(), Some("456"));
        let m = &record.metadata;
        assert_eq!(m.version, Some(1));
        assert_eq!(m.created_at, Some(NOW));
        assert_eq!(m.updated_at, Some(NOW + 5));
        assert_eq!(m.created_by, Some(f.me.clone()));
        assert_eq!(m.status.as_deref(), Some("active"));
        let log = f.store.commits_since(&f.me, None, 10).await.unwrap();
        assert!(log.iter().all(|e| e.op == CommitOp::UpdateAll));
    }

    #[tokio::test]
    async fn update_without_owner_stores_under_me() {
        let f = fixture().await;
        assert_eq!(run(&f, "update:phone 1", NOW).await, "data:0\n@alice@");
        assert!(f.store.get(&f.me, "phone@alice").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn uncommitted_key_classes_reply_minus_one() {
        let f = fixture().await;
        for line in [
            "update:privatekey:at_pkam_publickey MIIBIjAN",
            "update:public:_other@alice x",
            "update:public:_hidden@alice x",
        ] {
            assert_eq!(run(&f, line, NOW).await, "data:-1\n@alice@", "{line}");
        }
        let pkam = f
            .store
            .get(&f.me, "privatekey:at_pkam_publickey")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pkam.value.as_deref(), Some("MIIBIjAN"));
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), None);
    }

    #[tokio::test]
    async fn update_for_another_atsign_is_at0016() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "update:phone@bob 1", NOW).await,
            "error:AT0016-Invalid key : Invalid update command - sharedBy atsign @bob should be same as current atsign @alice\n@alice@"
        );
    }

    #[tokio::test]
    async fn update_of_cached_key_is_at0016() {
        let f = fixture().await;
        let cmd = Update {
            meta: MetadataUpdate::default(),
            key: AtKey::parse("cached:public:phone@alice").unwrap(),
            value: "1".into(),
        };
        assert_eq!(
            wire(&f.me, update(&f.store, &f.me, &cmd, NOW).await),
            "error:AT0016-Invalid key : You may not update keys of type KeyType.cachedPublicKey\n@alice@"
        );
    }

    #[tokio::test]
    async fn over_long_key_is_at0016() {
        let f = fixture().await;
        let name = "k".repeat(242); // 242 + "@alice" = 248: allowed
        assert_eq!(
            run(&f, &format!("update:{name} 1"), NOW).await,
            "data:0\n@alice@"
        );
        let reply = run(&f, &format!("update:{name}x 1"), NOW).await;
        assert!(reply.starts_with("error:AT0016-Invalid key : "), "{reply}");
    }

    #[tokio::test]
    async fn ttl_ttb_ttr_set_the_times() {
        let f = fixture().await;
        run(&f, "update:ttl:1000:ttb:2000:ttr:3:public:t@alice v", NOW).await;
        let m = f
            .store
            .get(&f.me, "public:t@alice")
            .await
            .unwrap()
            .unwrap()
            .metadata;
        // The ttl counts from birth (the reference's builder): not dead before it is born.
        assert_eq!(m.expires_at, Some(NOW + 2000 + 1000));
        assert_eq!(m.available_at, Some(NOW + 2000));
        assert_eq!(m.refresh_at, Some(NOW + 3000));
        assert_eq!(m.ccd, Some(false));
        assert_eq!((m.ttl, m.ttb, m.ttr), (Some(1000), Some(2000), Some(3)));
    }

    #[tokio::test]
    async fn update_meta_keeps_value_and_commits_hash() {
        let f = fixture().await;
        run(&f, "update:public:mm@alice v", NOW).await;
        assert_eq!(
            run(&f, "update:meta:public:mm@alice:isBinary:true", NOW + 1).await,
            "data:1\n@alice@"
        );
        let record = f
            .store
            .get(&f.me, "public:mm@alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.value.as_deref(), Some("v"));
        assert_eq!(record.metadata.is_binary, Some(true));
        assert_eq!(record.metadata.version, Some(1));
        let log = f.store.commits_since(&f.me, Some(0), 10).await.unwrap();
        assert_eq!(log[0].op, CommitOp::UpdateMeta);
    }

    #[tokio::test]
    async fn update_meta_of_missing_key_is_at0015() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "update:meta:public:mm@alice:isBinary:true", NOW).await,
            "error:AT0015-key not found : public:mm@alice does not exist in keystore\n@alice@"
        );
    }
}
