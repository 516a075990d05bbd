//! `update:json` (docs/protocol.md#update): `update` with the key, value and metadata given as
//! one JSON object, as at_commons' `UpdateParams` writes it. It stores through
//! [`super::update::write`], so the key checks, the metadata merge and the reply are those of
//! `update`.
//!
//! # Format
//! ```text
//! update:json:{"atKey":"phone.wavi","value":"123","sharedBy":"@alice","sharedWith":"@bob",
//!              "metadata":{"ttl":60000,"isPublic":false,"isEncrypted":true,…}}
//! ```
//! The stored key is `[public:][<sharedWith>:]<atKey><sharedBy>`, as the reference builds it;
//! `public:` comes from `metadata.isPublic`, and a missing `sharedBy` means `me` (as `update`
//! without an owner). Of the metadata, only what a client may set is taken (ttl, ttb, ttr, ccd,
//! isBinary, isEncrypted and the texts of the update fragment); the server's own fields
//! (createdAt, version, …) are ignored. Fields left out keep their stored values.
//!
//! # Errors
//! AT0016 `You may not update keys of type KeyType.invalidKey` for a key that does not parse,
//! and every error of `update`. AT0003 for a value that is neither a string nor null: the
//! reference fails on it with a Dart type error (AT0010 and a runtime message), which no
//! client can rely on. JSON that does not parse is refused by the grammar (AT0003).

use at_common::error::{AtError, ErrorCode};
use at_common::key::AtKey;
use at_common::metadata::{EpochMillis, Metadata, MetadataUpdate};
use at_common::reply::Reply;
use at_common::verb::UpdateJson;
use at_common::AtSign;
use serde_json::Value;

use super::update::write;
use crate::store::Store;

/// `update:json:<json>`: replies `data:<commitId>` as `update` does.
pub async fn update_json(
    store: &Store,
    me: &AtSign,
    cmd: &UpdateJson,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let key = stored_key(cmd)?;
    let value = match &cmd.value {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        _ => {
            return Err(AtError::syntax(
                "update:json value must be a string or null",
            ))
        }
    };
    let meta = cmd.metadata.as_ref().map(fragment).unwrap_or_default();
    meta.validate()?;
    write(store, me, &key, value, &meta, now_ms).await
}

/// The key the JSON names, parsed as `update`'s key is.
fn stored_key(cmd: &UpdateJson) -> Result<AtKey, AtError> {
    let atsign = |text: &str| AtSign::parse(text).map(|a| a.to_string());
    let mut wire = String::new();
    if cmd.is_public() {
        wire.push_str("public:");
    }
    if let Some(with) = cmd.shared_with.as_deref().filter(|w| !w.is_empty()) {
        wire.push_str(&atsign(with).map_err(|_| invalid_key())?);
        wire.push(':');
    }
    wire.push_str(&cmd.at_key);
    if let Some(by) = cmd.shared_by.as_deref().filter(|b| !b.is_empty()) {
        wire.push_str(&atsign(by).map_err(|_| invalid_key())?);
    }
    AtKey::parse(&wire).map_err(|_| invalid_key())
}

/// The reference's refusal of a key that matches no key type.
fn invalid_key() -> AtError {
    AtError::with_detail(
        ErrorCode::InvalidKey,
        "You may not update keys of type KeyType.invalidKey",
    )
}

/// The client-settable part of JSON metadata, as the `:ttl:…` fragment of `update` would say it.
fn fragment(metadata: &Metadata) -> MetadataUpdate {
    MetadataUpdate {
        ttl: metadata.ttl,
        ttb: metadata.ttb,
        ttr: metadata.ttr,
        ccd: metadata.ccd,
        data_signature: metadata.data_signature.clone(),
        shared_key_status: metadata.shared_key_status.clone(),
        is_binary: metadata.is_binary,
        is_encrypted: metadata.is_encrypted,
        shared_key_enc: metadata.shared_key_enc.clone(),
        pub_key_cs: metadata.pub_key_cs.clone(),
        encoding: metadata.encoding.clone(),
        enc_key_name: metadata.enc_key_name.clone(),
        enc_algo: metadata.enc_algo.clone(),
        iv_nonce: metadata.iv_nonce.clone(),
        ske_enc_key_name: metadata.ske_enc_key_name.clone(),
        ske_enc_algo: metadata.ske_enc_algo.clone(),
    }
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::store::CommitOp;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};

    async fn run(f: &Fixture, line: &str, now: i64) -> String {
        let Command::UpdateJson(cmd) = command(line) else {
            panic!("not update:json: {line}")
        };
        wire(&f.me, update_json(&f.store, &f.me, &cmd, now).await)
    }

    async fn stored(f: &Fixture, key: &str) -> crate::store::Record {
        f.store.get(&f.me, key).await.unwrap().expect(key)
    }

    #[tokio::test]
    async fn keys_are_built_from_sharedwith_atkey_sharedby_and_ispublic() {
        let f = fixture().await;
        for (json, key, reply) in [
            (
                r#"{"atKey":"Phone.wavi","value":"1","sharedBy":"@alice"}"#,
                "phone.wavi@alice",
                "data:0\n@alice@",
            ),
            (
                r#"{"atKey":"phone","value":"2","sharedWith":"bob"}"#,
                "@bob:phone@alice",
                "data:1\n@alice@",
            ),
            (
                r#"{"atKey":"phone","value":"3","metadata":{"isPublic":true}}"#,
                "public:phone@alice",
                "data:2\n@alice@",
            ),
            (
                r#"{"atKey":"_hidden","value":"4","metadata":{"isPublic":true}}"#,
                "public:_hidden@alice",
                "data:-1\n@alice@",
            ),
        ] {
            assert_eq!(
                run(&f, &format!("update:json:{json}"), NOW).await,
                reply,
                "{json}"
            );
            assert!(f.store.get(&f.me, key).await.unwrap().is_some(), "{key}");
        }
        let log = f.store.commits_since(&f.me, None, 10).await.unwrap();
        assert!(log.iter().all(|e| e.op == CommitOp::UpdateAll));
    }

    #[tokio::test]
    async fn metadata_is_merged_as_update_merges_it() {
        let f = fixture().await;
        run(&f, r#"update:json:{"atKey":"k","value":"a","metadata":{"ttr":-1,"isEncrypted":true,"ivNonce":"iv","createdAt":"2000-01-01 00:00:00.000Z","version":9}}"#, NOW).await;
        run(
            &f,
            r#"update:json:{"atKey":"k","value":"b","metadata":{"ttl":1000}}"#,
            NOW + 5,
        )
        .await;
        let record = stored(&f, "k@alice").await;
        assert_eq!(record.value.as_deref(), Some("b"));
        let m = record.metadata;
        // Kept from the first update; the server's own fields are not the client's to set.
        assert_eq!(
            (m.ttr, m.ccd, m.is_encrypted),
            (Some(-1), Some(false), Some(true))
        );
        assert_eq!(m.iv_nonce.as_deref(), Some("iv"));
        assert_eq!(
            (m.created_at, m.updated_at, m.version),
            (Some(NOW), Some(NOW + 5), Some(1))
        );
        assert_eq!((m.ttl, m.expires_at), (Some(1000), Some(NOW + 5 + 1000)));
    }

    #[tokio::test]
    async fn a_null_or_missing_value_stores_no_value() {
        let f = fixture().await;
        assert_eq!(
            run(&f, r#"update:json:{"atKey":"k","value":null}"#, NOW).await,
            "data:0\n@alice@"
        );
        assert_eq!(
            run(&f, r#"update:json:{"atKey":"j"}"#, NOW).await,
            "data:1\n@alice@"
        );
        assert_eq!(stored(&f, "k@alice").await.value, None);
        assert_eq!(stored(&f, "j@alice").await.value, None);
    }

    #[tokio::test]
    async fn bad_keys_values_and_metadata_are_refused() {
        let f = fixture().await;
        for (json, reply) in [
            (r#"{"atKey":"k","value":"1","sharedBy":"@bob"}"#, "error:AT0016-Invalid key : Invalid update command - sharedBy atsign @bob should be same as current atsign @alice"),
            (r#"{"atKey":"","value":"1"}"#, "error:AT0016-Invalid key : You may not update keys of type KeyType.invalidKey"),
            (r#"{"atKey":"a b","value":"1"}"#, "error:AT0016-Invalid key : You may not update keys of type KeyType.invalidKey"),
            (r#"{"atKey":"k","value":"1","sharedWith":"@"}"#, "error:AT0016-Invalid key : You may not update keys of type KeyType.invalidKey"),
            (r#"{"atKey":"cached:public:k@bob","value":"1"}"#, "error:AT0016-Invalid key : You may not update keys of type KeyType.cachedPublicKey"),
            (r#"{"atKey":"k","value":true}"#, "error:AT0003-Invalid syntax : update:json value must be a string or null"),
            (r#"{"atKey":"k","value":"1","metadata":{"ttb":-1}}"#, "error:AT0003-Invalid syntax : Valid value for TTB should be greater than or equal to 0"),
        ] {
            assert_eq!(run(&f, &format!("update:json:{json}"), NOW).await, format!("{reply}\n@alice@"), "{json}");
        }
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), None);
    }
}
