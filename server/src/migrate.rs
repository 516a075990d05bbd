//! `at-server migrate`: copies atSigns, with everything stored for them (keys, metadata,
//! commit log with its ids, the commit counter, access counters, provisioning record), from
//! the node's configured store to another store, of either backend. A copy: the source keeps
//! its data, and the directory entry stays as it is (the atSign keeps its address).
//!
//! Run it with nothing writing to those atSigns (the node stopped, or on its way to being
//! switched to the other store): an export reads the atSign one read after another, so a write
//! made meanwhile may be half in the copy. An embedded store is locked while a node serves it,
//! so for the embedded side this holds by itself.

use std::path::Path;

use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
use at_common::AtSign;

use crate::store::{self, Store, StoreError};

/// The store `target` names: a `redis://`/`rediss://` URL, or the data directory of an
/// embedded store. `redis` gives a Redis target's other options, as a node's `store` section
/// would (`key_prefix`, `redis_ca_file`, `redis_client_*_file`, `redis_password_file`); a
/// `rediss://` target without `redis_ca_file` is verified against the system's roots.
pub async fn open_target(target: &str, redis: StoreConfig) -> Result<Store, String> {
    if target.starts_with("redis://") || target.starts_with("rediss://") {
        let config = StoreConfig {
            backend: BackendKind::Redis,
            redis_url: Some(Secret::new(target)),
            ..redis
        };
        config.validate()?;
        return store::open(&config, Path::new(""))
            .await
            .map_err(|e| e.to_string());
    }
    if redis != StoreConfig::default() {
        return Err("the --to-redis-* and --to-key-prefix options need a redis:// target".into());
    }
    store::open(&StoreConfig::default(), Path::new(target))
        .await
        .map_err(|e| e.to_string())
}

/// Copies `atsigns` (every atSign of `from` when empty) into `to`. One line of output per
/// atSign; `Err` carries the output too when any of them failed (the others are copied).
pub async fn migrate(from: &Store, to: &Store, atsigns: &[AtSign]) -> Result<String, String> {
    let atsigns = match atsigns.is_empty() {
        true => from.list_atsigns().await.map_err(|e| e.to_string())?,
        false => atsigns.to_vec(),
    };
    let mut output = String::new();
    let mut failed = 0;
    for atsign in &atsigns {
        let line = match copy(from, to, atsign).await {
            Ok(line) => line,
            Err(error) => {
                failed += 1;
                format!("{atsign}: not migrated: {error}")
            }
        };
        output.push_str(&line);
        output.push('\n');
    }
    match failed {
        0 => Ok(output),
        n => Err(format!(
            "{output}{n} of {} atSigns not migrated",
            atsigns.len()
        )),
    }
}

async fn copy(from: &Store, to: &Store, atsign: &AtSign) -> Result<String, StoreError> {
    let dump = from
        .export_atsign(atsign)
        .await?
        .ok_or_else(|| StoreError::NoSuchAtSign(atsign.clone()))?;
    to.import_atsign(&dump).await?;
    Ok(format!(
        "migrated {atsign}: {} keys, {} commit entries (next id {})",
        dump.records.len(),
        dump.commits.len(),
        dump.next_commit
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use at_tests::redis::RedisServer;
    use at_tests::TempDir;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_atsign_goes_from_embedded_to_redis_and_back_unchanged() {
        let redis = RedisServer::start();
        let (dir, back) = (TempDir::new("migrate-from"), TempDir::new("migrate-back"));
        let embedded = store::open(&StoreConfig::default(), dir.path())
            .await
            .unwrap();
        let alice = conformance::sign("alice");
        conformance::populate(&embedded, &alice).await;
        let original = embedded.export_atsign(&alice).await.unwrap().unwrap();

        let prefixed = StoreConfig {
            key_prefix: "m:".into(),
            ..StoreConfig::default()
        };
        let shared = open_target(&redis.url(), prefixed.clone()).await.unwrap();
        let out = migrate(&embedded, &shared, &[]).await.unwrap();
        assert_eq!(
            out,
            "migrated @alice: 3 keys, 3 commit entries (next id 5)\n"
        );
        assert_eq!(
            shared.export_atsign(&alice).await.unwrap().as_ref(),
            Some(&original)
        );
        // Again: the target has it, so this one fails, and says so.
        let again = migrate(&embedded, &shared, std::slice::from_ref(&alice))
            .await
            .unwrap_err();
        assert!(
            again.starts_with("@alice: not migrated: @alice already exists"),
            "{again}"
        );

        let target = back.path().display().to_string();
        let refused = open_target(&target, prefixed).await.err().unwrap();
        assert!(refused.contains("need a redis:// target"), "{refused}");
        let returned = open_target(&target, StoreConfig::default()).await.unwrap();
        migrate(&shared, &returned, std::slice::from_ref(&alice))
            .await
            .unwrap();
        assert_eq!(
            returned.export_atsign(&alice).await.unwrap(),
            Some(original)
        );
        let missing = migrate(&shared, &returned, &[conformance::sign("nobody")]).await;
        assert!(missing.unwrap_err().contains("@nobody does not exist"));
    }

    /// Stores written before MessagePack hold records as JSON beside new ones: `migrate`
    /// copies both, each way, and writes every record in the stored form.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_in_both_forms_migrate_both_ways() {
        use crate::store::embedded::Embedded;
        use crate::store::encoding::{encode_record_json, MSGPACK_MARKER};
        use ::redis::AsyncCommands;

        let redis = RedisServer::start();
        let (dir, back) = (
            TempDir::new("migrate-legacy"),
            TempDir::new("migrate-legacy-back"),
        );
        let backend = Embedded::open(dir.path()).unwrap();
        let raw = backend.raw_records();
        let embedded = Store::new(backend);
        let alice = conformance::sign("alice");
        conformance::populate(&embedded, &alice).await;
        for (key, record) in conformance::legacy_records(&alice) {
            raw.put(&alice, &key, &encode_record_json(&record).unwrap());
        }
        let original = embedded.export_atsign(&alice).await.unwrap().unwrap();
        assert_eq!(original.records.len(), 6, "3 new, 3 legacy");

        let shared = open_target(&redis.url(), StoreConfig::default())
            .await
            .unwrap();
        migrate(&embedded, &shared, &[]).await.unwrap();
        assert_eq!(
            shared.export_atsign(&alice).await.unwrap().as_ref(),
            Some(&original)
        );
        let mut conn = ::redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let stored: Vec<(String, Vec<u8>)> =
            conn.hgetall("atserver:{@alice}:records").await.unwrap();
        assert_eq!(stored.len(), 6);
        for (key, bytes) in &stored {
            assert_eq!(bytes[0], MSGPACK_MARKER, "{key}");
        }

        // From a Redis holding legacy records (for @bob) back to an embedded store.
        let bob = conformance::sign("bob");
        conformance::populate(&shared, &bob).await;
        for (key, record) in conformance::legacy_records(&bob) {
            let () = conn
                .hset(
                    "atserver:{@bob}:records",
                    key,
                    encode_record_json(&record).unwrap(),
                )
                .await
                .unwrap();
        }
        let bobs = shared.export_atsign(&bob).await.unwrap().unwrap();
        assert_eq!(bobs.records.len(), 6, "3 new, 3 legacy");
        let backend = Embedded::open(back.path()).unwrap();
        let raw_back = backend.raw_records();
        let returned = Store::new(backend);
        migrate(&shared, &returned, std::slice::from_ref(&bob))
            .await
            .unwrap();
        assert_eq!(
            returned.export_atsign(&bob).await.unwrap(),
            Some(bobs.clone())
        );
        for (key, _) in &bobs.records {
            assert_eq!(raw_back.get(&bob, key).unwrap()[0], MSGPACK_MARKER, "{key}");
        }
    }
}
