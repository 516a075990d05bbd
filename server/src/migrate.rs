//! `at-server migrate`: copies atSigns, with everything stored for them (keys, metadata,
//! commit log with its ids, the commit counter, access counters, notification logs,
//! provisioning record), from the node's configured store to another store: embedded, one
//! Redis or a Redis Cluster, on either side. A copy: the source keeps its data, and the
//! directory entry stays as it is (the atSign keeps its address). The key layout is the same
//! on one Redis and on a cluster; what differs is the client, which on a cluster sends each
//! atSign's writes to the master of its slot.
//!
//! Run it with nothing writing to those atSigns (the node stopped, or on its way to being
//! switched to the other store): an export reads the atSign one read after another, so a write
//! made meanwhile may be half in the copy. An embedded store is locked while a node serves it,
//! so for the embedded side this holds by itself.

use std::path::{Path, PathBuf};

use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
use at_common::AtSign;

use crate::store::{self, Store, StoreError};

/// Where `migrate` copies to, as its command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The data directory of an embedded store.
    Embedded(PathBuf),
    /// One Redis, by its `redis://`/`rediss://` URL.
    Redis(Secret),
    /// A Redis Cluster, by the URLs of some of its nodes (as `store.redis_cluster`).
    RedisCluster(Vec<Secret>),
}

impl Target {
    /// What `--to` names: a `redis://`/`rediss://` URL is one Redis, anything else the data
    /// directory of an embedded store.
    pub fn named(to: &str) -> Target {
        if to.starts_with("redis://") || to.starts_with("rediss://") {
            Target::Redis(Secret::new(to))
        } else {
            Target::Embedded(PathBuf::from(to))
        }
    }
}

/// The store `target` names. `redis` gives a Redis or Redis Cluster target's other options,
/// as a node's `store` section would (`key_prefix`, `redis_ca_file`, `redis_client_*_file`,
/// `redis_password_file`); a `rediss://` target without `redis_ca_file` is verified against
/// the system's roots.
pub async fn open_target(target: Target, redis: StoreConfig) -> Result<Store, String> {
    let config = match target {
        Target::Embedded(dir) => {
            if redis != StoreConfig::default() {
                return Err(
                    "the --to-redis-* and --to-key-prefix options need a redis:// target \
                     or --to-redis-cluster"
                        .into(),
                );
            }
            return store::open(&StoreConfig::default(), &dir)
                .await
                .map_err(|e| e.to_string());
        }
        Target::Redis(url) => StoreConfig {
            backend: BackendKind::Redis,
            redis_url: Some(url),
            ..redis
        },
        Target::RedisCluster(seeds) => {
            // The message names no URL: one may hold a password.
            if seeds.is_empty() || seeds.iter().any(|url| url.expose().trim().is_empty()) {
                return Err("--to-redis-cluster: an empty URL".into());
            }
            StoreConfig {
                backend: BackendKind::Redis,
                redis_cluster: seeds,
                ..redis
            }
        }
    };
    config.validate()?;
    open(&config, Path::new("")).await
}

/// The store `config` names (the node's own `store`, the source of a migration), refusing a
/// single Redis that is a node of a Redis Cluster: written through one node, every atSign
/// whose slot is elsewhere would fail with `MOVED`, after some were copied.
pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, String> {
    if config.backend == BackendKind::Redis && config.redis_cluster.is_empty() {
        refuse_cluster_node(config).await?;
    }
    store::open(config, data_dir)
        .await
        .map_err(|e| e.to_string())
}

/// `Err` when the single Redis of `config` says `cluster_enabled:1`. A Redis that cannot be
/// asked (unreachable, `INFO` not allowed) passes: opening the store reports the first, and
/// the second is no cluster node this can tell.
async fn refuse_cluster_node(config: &StoreConfig) -> Result<(), String> {
    let at_common::redis_client::RedisClient::Single(client) =
        config.redis_client().map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let ask = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(info)
    };
    // Bounded: an unreachable Redis is for opening the store to report, once.
    let info = tokio::time::timeout(std::time::Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten();
    if info.is_some_and(|info| info.lines().any(|l| l.trim() == "cluster_enabled:1")) {
        return Err(
            "the Redis named by one URL is a node of a Redis Cluster: name the cluster \
             (--redis-cluster or store.redis_cluster for the node's store, \
             --to-redis-cluster for the target)"
                .into(),
        );
    }
    Ok(())
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
    use crate::store::{conformance, AtSignDump};
    use at_tests::redis::RedisServer;
    use at_tests::redis_cluster::RedisCluster;
    use at_tests::TempDir;

    /// A Redis Cluster target with `key_prefix`.
    async fn on_cluster(cluster: &RedisCluster, key_prefix: &str) -> Result<Store, String> {
        let seeds = cluster.urls().into_iter().map(Secret::new).collect();
        let prefixed = StoreConfig {
            key_prefix: key_prefix.into(),
            ..StoreConfig::default()
        };
        open_target(Target::RedisCluster(seeds), prefixed).await
    }

    /// Six atSigns, so their slots fall on more than one master.
    const ATSIGNS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

    /// What [`conformance::populate`] stores for each of [`ATSIGNS`] in `store`, exported.
    async fn populated(store: &Store) -> Vec<AtSignDump> {
        let mut dumps = Vec::new();
        for name in ATSIGNS {
            let atsign = conformance::sign(name);
            conformance::populate(store, &atsign).await;
            let dump = store.export_atsign(&atsign).await.unwrap().unwrap();
            // Every part is there to be lost: records, commits, the counter past a removed
            // key, access counters, both notification logs, the provisioning record.
            assert_eq!(
                (dump.records.len(), dump.commits.len(), dump.next_commit),
                (3, 3, 5)
            );
            assert_eq!((dump.access.len(), dump.notifications.len()), (3, 2));
            assert_eq!(dump.info, conformance::info("dump"));
            dumps.push(dump);
        }
        dumps
    }

    /// `to` holds each of `dumps` exactly.
    async fn holds(to: &Store, dumps: &[AtSignDump]) {
        let mut listed = to.list_atsigns().await.unwrap();
        listed.sort();
        let mut expected: Vec<AtSign> = dumps.iter().map(|d| d.atsign.clone()).collect();
        expected.sort();
        assert_eq!(listed, expected);
        for dump in dumps {
            assert_eq!(
                to.export_atsign(&dump.atsign).await.unwrap().as_ref(),
                Some(dump),
                "{}",
                dump.atsign
            );
        }
    }

    /// How many of the cluster's masters hold keys (`DBSIZE`).
    fn masters_holding_keys(cluster: &RedisCluster) -> usize {
        cluster
            .ports()
            .into_iter()
            .filter(|port| cluster.cli(*port, &["role"]).starts_with("master"))
            .filter(|port| cluster.cli(*port, &["dbsize"]).trim() != "0")
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn atsigns_go_from_embedded_to_a_redis_cluster_and_back_unchanged() {
        let cluster = RedisCluster::start();
        let (dir, back) = (
            TempDir::new("migrate-to-cluster"),
            TempDir::new("migrate-back"),
        );
        let embedded = store::open(&StoreConfig::default(), dir.path())
            .await
            .unwrap();
        let originals = populated(&embedded).await;

        let sharded = on_cluster(&cluster, "m:").await.unwrap();
        let out = migrate(&embedded, &sharded, &[]).await.unwrap();
        assert_eq!(
            out.lines().count(),
            ATSIGNS.len(),
            "one line per atSign: {out}"
        );
        for name in ATSIGNS {
            let line = format!("migrated @{name}: 3 keys, 3 commit entries (next id 5)");
            assert!(out.lines().any(|l| l == line), "{line} in {out}");
        }
        holds(&sharded, &originals).await;
        // Spread by slot over the masters, as a node on the cluster writes them.
        assert!(masters_holding_keys(&cluster) >= 2);
        // A second handle (another node) reads the same, with nothing cached.
        holds(&on_cluster(&cluster, "m:").await.unwrap(), &originals).await;

        let back = Target::Embedded(back.path().to_path_buf());
        let returned = open_target(back, StoreConfig::default()).await.unwrap();
        migrate(&sharded, &returned, &[]).await.unwrap();
        holds(&returned, &originals).await;
        // Another prefix of the same cluster is another deployment: nothing there.
        let other = on_cluster(&cluster, "other:").await.unwrap();
        assert_eq!(other.list_atsigns().await.unwrap(), []);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn atsigns_go_from_one_redis_to_a_redis_cluster_and_back_unchanged() {
        let (redis, cluster) = (RedisServer::start(), RedisCluster::start());
        let single = open_target(Target::named(&redis.url()), StoreConfig::default())
            .await
            .unwrap();
        let originals = populated(&single).await;
        let sharded = on_cluster(&cluster, "").await.unwrap();
        migrate(&single, &sharded, &[]).await.unwrap();
        holds(&sharded, &originals).await;
        assert!(masters_holding_keys(&cluster) >= 2);

        let prefixed = StoreConfig {
            key_prefix: "back:".into(),
            ..StoreConfig::default()
        };
        let returned = open_target(Target::named(&redis.url()), prefixed)
            .await
            .unwrap();
        migrate(&sharded, &returned, &[]).await.unwrap();
        holds(&returned, &originals).await;
    }

    /// One Redis and a cluster must be named as what they are: a cluster's node as one Redis
    /// would answer `MOVED` for most atSigns, after the others were copied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_named_as_one_redis_or_one_redis_named_as_a_cluster_is_refused() {
        let (redis, cluster) = (RedisServer::start(), RedisCluster::start());
        let node = Target::named(&cluster.urls()[0]);
        let refused = open_target(node, StoreConfig::default()).await.err();
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("--to-redis-cluster")),
            "{refused:?}"
        );
        let as_source = StoreConfig {
            backend: BackendKind::Redis,
            redis_url: Some(Secret::new(cluster.urls()[0].clone())),
            ..StoreConfig::default()
        };
        let refused = open(&as_source, Path::new("")).await.err();
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("store.redis_cluster")),
            "{refused:?}"
        );
        let single = Target::RedisCluster(vec![Secret::new(redis.url())]);
        assert!(open_target(single, StoreConfig::default()).await.is_err());
        for seeds in [vec![], vec![Secret::new("")]] {
            let refused = open_target(Target::RedisCluster(seeds), StoreConfig::default()).await;
            assert_eq!(
                refused.err().as_deref(),
                Some("--to-redis-cluster: an empty URL")
            );
        }
        let mixed = vec![
            Secret::new(cluster.urls()[0].clone()),
            Secret::new(cluster.urls()[1].replace("redis://", "rediss://")),
        ];
        let refused = open_target(Target::RedisCluster(mixed), StoreConfig::default()).await;
        assert!(refused.err().is_some_and(|e| e.contains("mixes")));
        // Nothing was written anywhere on the way.
        assert_eq!(masters_holding_keys(&cluster), 0);
    }

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
        let shared = open_target(Target::named(&redis.url()), prefixed.clone())
            .await
            .unwrap();
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
        let refused = open_target(Target::named(&target), prefixed)
            .await
            .err()
            .unwrap();
        assert!(refused.contains("need a redis:// target"), "{refused}");
        let returned = open_target(Target::named(&target), StoreConfig::default())
            .await
            .unwrap();
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

        let shared = open_target(Target::named(&redis.url()), StoreConfig::default())
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
