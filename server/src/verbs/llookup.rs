//! `llookup` (docs/protocol.md#llookup, docs/storage.md#metadata-json): the owner reads any key
//! of its own store exactly as stored, including cached copies and other atSigns' shared keys;
//! no reference is resolved.
//!
//! # Format
//! `data:<value>`; `meta` → `data:` + metadata JSON without nulls; `all` →
//! `data:{"key":"<key>","data":"<value>","metaData":{…}}`. A key that is not yet available (ttb)
//! or has expired (ttl) reads `data:null`; an expired one is removed on the way.
//!
//! # Errors
//! AT0015 `key not found : <key> does not exist in keystore` for a missing key (clients rely on
//! the code, docs/clients.md#framing).

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::{Llookup, LookupOp};
use at_common::AtSign;

use super::{active_or_expire, key_not_found};
use crate::store::{Record, Store};

/// `llookup[:meta|:all]:<key>`.
pub async fn llookup(
    store: &Store,
    me: &AtSign,
    cmd: &Llookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let key = cmd.key.to_string().to_lowercase();
    // One read: a missing key is AT0015, an inactive one `data:null`.
    let Some(record) = store.get(me, &key).await? else {
        return Err(key_not_found(&key));
    };
    Ok(
        match active_or_expire(store, me, &key, record, now_ms).await? {
            Some(record) => render(&key, &record, cmd.op),
            None => Reply::Null,
        },
    )
}

/// The reply to a lookup of any kind that found `record` under `key` (`key` is what `all`
/// reports). A record without a value reads `data:null`.
pub(crate) fn render(key: &str, record: &Record, op: Option<LookupOp>) -> Reply {
    match op {
        None => match &record.value {
            Some(value) => Reply::Data(value.clone()),
            None => Reply::Null,
        },
        Some(LookupOp::Meta) => Reply::Data(record.metadata.to_json_without_nulls()),
        Some(LookupOp::All) => {
            let mut json = format!("{{\"key\":{}", json_string(key));
            if let Some(value) = &record.value {
                json.push_str(&format!(",\"data\":{}", json_string(value)));
            }
            json.push_str(&format!(
                ",\"metaData\":{}}}",
                record.metadata.to_json_without_nulls()
            ));
            Reply::Data(json)
        }
    }
}

/// `text` as a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn run(f: &Fixture, line: &str, now: i64) -> String {
        let result = match command(line) {
            Command::Llookup(cmd) => llookup(&f.store, &f.me, &cmd, now).await,
            Command::Update(cmd) => update(&f.store, &f.me, &cmd, now).await,
            other => panic!("not an llookup: {other:?}"),
        };
        wire(&f.me, result)
    }

    #[tokio::test]
    async fn llookup_returns_the_value_as_stored() {
        let f = fixture().await;
        run(&f, "update:public:phone.wavi@alice +1 555 atsign://x", NOW).await;
        assert_eq!(
            run(&f, "llookup:public:Phone.wavi@alice", NOW).await,
            "data:+1 555 atsign://x\n@alice@"
        );
    }

    #[tokio::test]
    async fn llookup_meta_and_all_give_json_without_nulls() {
        let f = fixture().await;
        run(&f, "update:ttr:-1:@bob:k.app@alice v\"1", NOW).await;
        let meta = "{\"createdBy\":\"@alice\",\"updatedBy\":\"@alice\",\
                    \"createdAt\":\"2024-10-24 01:35:02.123Z\",\"updatedAt\":\"2024-10-24 01:35:02.123Z\",\
                    \"status\":\"active\",\"version\":0,\"ttr\":-1,\"ccd\":false}";
        assert_eq!(
            run(&f, "llookup:meta:@bob:k.app@alice", NOW).await,
            format!("data:{meta}\n@alice@")
        );
        assert_eq!(
            run(&f, "llookup:all:@bob:k.app@alice", NOW).await,
            format!("data:{{\"key\":\"@bob:k.app@alice\",\"data\":\"v\\\"1\",\"metaData\":{meta}}}\n@alice@")
        );
    }

    #[tokio::test]
    async fn llookup_of_missing_key_replies_at0015() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "llookup:nothing@alice", NOW).await,
            "error:AT0015-key not found : nothing@alice does not exist in keystore\n@alice@"
        );
    }

    #[tokio::test]
    async fn expired_key_reads_null_then_is_gone() {
        let f = fixture().await;
        run(&f, "update:ttl:1000:soon@alice v", NOW).await;
        assert_eq!(
            run(&f, "llookup:soon@alice", NOW + 999).await,
            "data:v\n@alice@"
        );
        assert_eq!(
            run(&f, "llookup:soon@alice", NOW + 1000).await,
            "data:null\n@alice@"
        );
        assert!(f.store.get(&f.me, "soon@alice").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unborn_key_reads_null_and_stays() {
        let f = fixture().await;
        run(&f, "update:ttb:1000:later@alice v", NOW).await;
        assert_eq!(
            run(&f, "llookup:later@alice", NOW + 999).await,
            "data:null\n@alice@"
        );
        assert_eq!(
            run(&f, "llookup:later@alice", NOW + 1000).await,
            "data:v\n@alice@"
        );
    }

    #[tokio::test]
    async fn llookup_reads_cached_keys_of_other_atsigns() {
        let f = fixture().await;
        let record = Record {
            value: Some("1".into()),
            metadata: Default::default(),
        };
        f.store
            .put(
                &f.me,
                "cached:public:phone@bob",
                &record,
                crate::store::CommitOp::UpdateAll,
            )
            .await
            .unwrap();
        assert_eq!(
            run(&f, "llookup:cached:public:phone@bob", NOW).await,
            "data:1\n@alice@"
        );
    }
}
