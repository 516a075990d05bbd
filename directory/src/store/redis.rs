//! The Redis backend: one Redis, or a Redis Cluster, shared by every directory replica.
//!
//! # Format
//! The reference root's layout, so an existing root's Redis can be served as it is: key = the
//! atSign without `@`, lower-cased (`alice`), value = `host:port`. An optional key prefix lets
//! one Redis hold several deployments. The connection is multiplexed (concurrent lookups share
//! it and are pipelined) and re-established by itself after Redis restarts.
//!
//! On a cluster every key is its own slot (the reference layout has no hash tags), so every
//! command names one key, but for `MGET` (which the client splits by slot), a batch of writes
//! is one pipeline per slot, and listing scans every master.

use at_common::redis_client::{RedisClient, RedisConnection, WaitReplicas, Writes};
use at_common::{Address, AtSign};
use redis::AsyncCommands;

use super::{Backend, StoreError};

/// Registrations in Redis.
pub struct RedisBackend {
    conn: RedisConnection,
    /// Where registrations are written, and what each waits for.
    writes: Writes,
    prefix: String,
}

impl RedisBackend {
    /// Connects to `url` (without TLS files: see [`RedisBackend::connect_client`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBackend, StoreError> {
        Self::connect_client(RedisClient::Single(redis::Client::open(url)?), prefix, None).await
    }

    /// Connects with `client` (`StoreConfig::redis_client`, which carries the TLS settings);
    /// fails now rather than at the first lookup if Redis is unreachable. With `wait`, a
    /// registration is acknowledged once that many replicas hold it.
    pub async fn connect_client(
        client: RedisClient,
        prefix: &str,
        wait: Option<WaitReplicas>,
    ) -> Result<RedisBackend, StoreError> {
        let mut conn = client
            .connect(Default::default(), Default::default())
            .await?;
        // A Redis that wants a password we lack answers NOAUTH only to a command: find out now.
        let () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map(|_: String| ())?;
        let writes = client
            .writes(&conn, wait, Default::default(), Default::default())
            .await?;
        Ok(RedisBackend {
            conn,
            writes,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, atsign: &AtSign) -> String {
        format!("{}{}", self.prefix, atsign.name())
    }
}

/// Whether failing to reach Redis may pass by itself: Redis not listening yet (a fresh install
/// whose Redis waits for its volume, a Redis restarting), a name that does not resolve yet, a
/// timeout. A refused password, a refused certificate or a malformed reply will not mend by
/// waiting.
pub fn may_pass(error: &redis::RedisError) -> bool {
    use std::error::Error;
    if !error.is_io_error() {
        return false;
    }
    // The crate keeps the I/O error behind an `Arc`. TLS failures (a certificate that does not
    // verify) come as I/O errors of kind InvalidData.
    let io = error
        .source()
        .and_then(|e| e.downcast_ref::<std::sync::Arc<dyn Error + Send + Sync>>())
        .and_then(|e| e.downcast_ref::<std::io::Error>());
    !io.is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
        )
    })
}

/// First and longest pause between attempts of [`until_reachable`].
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
const LONGEST_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `attempt` until it succeeds or fails with an error `may_pass` says waiting will not
/// mend, pausing longer each time (up to 5 s) and logging each failure. For `serve`, so a node
/// started before its Redis (a fresh Kubernetes install) waits for it rather than exiting into
/// a crash-loop back-off; its probes are not answered meanwhile, which its startup probe allows.
/// One-off commands open the store once and fail at once.
pub async fn until_reachable<
    T,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
>(
    mut attempt: impl FnMut() -> F,
    may_pass: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt().await {
            Err(error) if may_pass(&error) => {
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "Redis not reachable yet; waiting for it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            done => return done,
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn get(&self, atsign: &AtSign) -> Result<Option<Address>, StoreError> {
        let value: Option<String> = self.conn.clone().get(self.key(atsign)).await?;
        // A value that is not `host:port` was not written by us; treat it as no registration.
        Ok(value.and_then(|v| Address::parse(&v).ok()))
    }

    async fn put(&self, atsign: &AtSign, address: &Address) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.set(self.key(atsign), address.to_string());
        self.writes.write(&pipe).await?;
        Ok(())
    }

    async fn put_many(&self, entries: &[(AtSign, Address)]) -> Result<(), StoreError> {
        // One pipeline per slot on a cluster (a pipeline goes to one node); one in all on one Redis.
        let mut pipes: std::collections::HashMap<_, redis::Pipeline> = Default::default();
        for (atsign, address) in entries {
            let key = self.key(atsign);
            let slot = match self.conn {
                RedisConnection::Cluster(_) => Some(redis::cluster_routing::Slot::for_key(&key)),
                RedisConnection::Single(_) => None,
            };
            pipes
                .entry(slot)
                .or_default()
                .set(key, address.to_string())
                .ignore();
        }
        let sent = pipes.values().map(|pipe| self.writes.write(pipe));
        futures_util::future::try_join_all(sent).await?;
        Ok(())
    }

    async fn remove(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.del(self.key(atsign));
        let replies = self.writes.write(&pipe).await?;
        Ok(matches!(replies.first(), Some(redis::Value::Int(n)) if *n > 0))
    }

    async fn list(&self) -> Result<Vec<(AtSign, Address)>, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut keys = conn.scan_match(&pattern).await?;
        keys.sort();
        keys.dedup();
        let mut all = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
            for (key, value) in chunk.iter().zip(values) {
                // Other keys may share the Redis (the reference root keeps `ping`); skip what is not ours.
                let name = &key[self.prefix.len()..];
                if let (Ok(sign), Some(Ok(addr))) =
                    (AtSign::parse(name), value.map(|v| Address::parse(&v)))
                {
                    all.push((sign, addr));
                }
            }
        }
        all.sort();
        Ok(all)
    }
}

/// Escapes Redis glob characters so a prefix matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, Store};
    use at_tests::redis::RedisServer;

    #[actix_rt::test]
    async fn redis_backend_passes_the_conformance_suite() {
        let redis = RedisServer::start();
        let store = Store::new(RedisBackend::connect(&redis.url(), "").await.unwrap());
        conformance::run(&store).await;
    }

    /// `store.redis_cluster`: the same suite on a real three-master cluster, every write
    /// waiting for a replica (`store.redis_wait_replicas`), and a batch spread over every
    /// master comes back whole from `list` (a `SCAN` of each master). With the replica of a
    /// registration's master stopped, registering fails instead of being acknowledged.
    #[actix_rt::test]
    async fn a_redis_cluster_passes_the_conformance_suite() {
        use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
        let cluster = at_tests::redis_cluster::RedisCluster::start();
        let dir = at_tests::TempDir::new("directory-redis-cluster");
        let config = StoreConfig {
            backend: BackendKind::Redis,
            redis_cluster: cluster.urls().into_iter().map(Secret::new).collect(),
            key_prefix: "dir:".into(),
            redis_wait_replicas: 1,
            // Long enough that a loaded machine's replica answers the writes that should pass.
            redis_wait_timeout_ms: 2000,
            ..StoreConfig::default()
        };
        assert!(config.validate().is_ok());
        let store = crate::store::open(&config, dir.path()).await.unwrap();
        conformance::run(&store).await;
        let batch: Vec<_> = (0..200)
            .map(|i| {
                (
                    AtSign::parse(&format!("spread{i}")).unwrap(),
                    Address::parse(&format!("h{i}.example:{}", i + 1)).unwrap(),
                )
            })
            .collect();
        store.put_many(&batch).await.unwrap();
        let listed = store.list().await.unwrap();
        for entry in &batch {
            assert!(listed.contains(entry), "{entry:?} not listed");
        }
        assert_eq!(
            listed.len(),
            batch.len() + 4,
            "the suite's four, and the batch"
        );
        let alice = AtSign::parse("alice").unwrap();
        let replica = cluster.replicas_of(cluster.master_of("dir:alice"))[0];
        cluster.pause(replica);
        let address = Address::parse("stopped.example:1").unwrap();
        let refused = store.put(&alice, &address).await;
        cluster.resume(replica);
        assert!(refused.is_err(), "acknowledged with no replica to hold it");
        store
            .put(&alice, &address)
            .await
            .expect("the replica is back");
    }

    /// `store.redis_password_file` applies to every node of a cluster (and to the nodes the
    /// client learns of from the seeds), as to one Redis; and, as for one Redis, a refused
    /// password is not waited out while an unreachable cluster is.
    #[actix_rt::test]
    async fn a_redis_cluster_takes_its_password_from_the_file() {
        use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
        let cluster = at_tests::redis_cluster::RedisCluster::start_with_password("p@ss:w/rd#1");
        let dir = at_tests::TempDir::new("directory-redis-cluster-password");
        let file = dir.path().join("password");
        std::fs::write(&file, "p@ss:w/rd#1\n").unwrap();
        let config = StoreConfig {
            backend: BackendKind::Redis,
            redis_cluster: cluster.urls().into_iter().map(Secret::new).collect(),
            redis_password_file: Some(file),
            ..StoreConfig::default()
        };
        assert!(config.validate().is_ok());
        let store = crate::store::open(&config, dir.path()).await.unwrap();
        conformance::run(&store).await;
        // Refused for want of a password: not worth waiting for (`serve` stops, saying so;
        // the cluster client hands the node's NOAUTH over as it is).
        let without = StoreConfig {
            redis_password_file: None,
            ..config.clone()
        };
        match crate::store::open(&without, dir.path()).await {
            Err(StoreError::Redis(error)) => assert!(!may_pass(&error), "{error}"),
            other => panic!("{:?}", other.err()),
        }
        // A cluster none of whose seeds answers yet is worth waiting for.
        let nobody = StoreConfig {
            redis_cluster: vec![Secret::new(format!(
                "redis://127.0.0.1:{}",
                at_tests::free_port()
            ))],
            ..config
        };
        match crate::store::open(&nobody, dir.path()).await {
            Err(StoreError::Redis(error)) => assert!(may_pass(&error), "{error}"),
            other => panic!("{:?}", other.err()),
        }
    }

    #[actix_rt::test]
    async fn keys_are_laid_out_as_the_reference_root_lays_them_out() {
        let redis = RedisServer::start();
        let backend = RedisBackend::connect(&redis.url(), "").await.unwrap();
        let mut raw = backend.conn.clone();
        // What the reference root's tooling writes: the atSign without `@`, value host:port.
        let () = raw.set("alice🛠", "vip.ve.atsign.zone:25000").await.unwrap();
        let () = raw.set("ping", "pong").await.unwrap();
        let alice = AtSign::parse("@alice🛠").unwrap();
        assert_eq!(
            backend.get(&alice).await.unwrap(),
            Some(Address::parse("vip.ve.atsign.zone:25000").unwrap())
        );
        // `ping` is not a registration, so `list` leaves it out.
        assert_eq!(backend.list().await.unwrap().len(), 1);
        backend
            .put(
                &AtSign::parse("bob").unwrap(),
                &Address::parse("b.example:1").unwrap(),
            )
            .await
            .unwrap();
        let stored: String = raw.get("bob").await.unwrap();
        assert_eq!(stored, "b.example:1");
    }

    /// A Redis reached over TLS with a CA of its own and a client certificate, configured as
    /// an operator would (`rediss://`, `redis_ca_file`, `redis_client_*_file`).
    #[actix_rt::test]
    async fn redis_over_tls_with_a_client_certificate_passes_the_conformance_suite() {
        use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
        use at_tests::redis::TlsFiles;
        let dir = at_tests::TempDir::new("directory-redis-tls");
        let files = TlsFiles::make(dir.path());
        let redis = RedisServer::start_tls_verifying_clients(&files);
        let port = redis.tls_port().unwrap();
        let config = StoreConfig {
            backend: BackendKind::Redis,
            redis_url: Some(Secret::new(format!("rediss://127.0.0.1:{port}"))),
            redis_ca_file: Some(files.ca.clone()),
            redis_client_cert_file: Some(files.client.0.clone()),
            redis_client_key_file: Some(files.client.1.clone()),
            ..StoreConfig::default()
        };
        assert!(config.validate().is_ok());
        let store = crate::store::open(&config, dir.path()).await.unwrap();
        conformance::run(&store).await;
        // Without the client certificate the Redis refuses the connection.
        let anonymous = StoreConfig {
            redis_client_cert_file: None,
            redis_client_key_file: None,
            ..config
        };
        assert!(crate::store::open(&anonymous, dir.path()).await.is_err());
    }

    /// `store.redis_password_file`: the password from a mounted file (its newline ignored), not
    /// from the URL (where `@`, `:`, `/` and `#` would need escaping).
    #[actix_rt::test]
    async fn the_password_comes_from_a_file() {
        use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
        let dir = at_tests::TempDir::new("directory-redis-password-file");
        let redis = RedisServer::start_durable_with_password("p@ss:w/rd#1");
        let file = dir.path().join("password");
        std::fs::write(&file, "p@ss:w/rd#1\n").unwrap();
        let config = StoreConfig {
            backend: BackendKind::Redis,
            redis_url: Some(Secret::new(format!("redis://127.0.0.1:{}", redis.port()))),
            redis_password_file: Some(file.clone()),
            ..StoreConfig::default()
        };
        assert!(config.validate().is_ok());
        let store = crate::store::open(&config, dir.path()).await.unwrap();
        let alice = AtSign::parse("alice").unwrap();
        store
            .put(&alice, &Address::parse("h.example:1").unwrap())
            .await
            .unwrap();
        assert!(store.get(&alice).await.unwrap().is_some());
        // Without the file, or with another password in it, the Redis refuses us.
        let without = StoreConfig {
            redis_password_file: None,
            ..config.clone()
        };
        // (NOAUTH comes only in answer to a command: opening pings to find out at start.)
        assert!(crate::store::open(&without, dir.path()).await.is_err());
        std::fs::write(&file, "wrong\n").unwrap();
        assert!(crate::store::open(&config, dir.path()).await.is_err());
        // A missing file stops the start, naming the file.
        std::fs::remove_file(&file).unwrap();
        let missing = crate::store::open(&config, dir.path()).await.err().unwrap();
        assert!(missing.to_string().contains("password"), "{missing}");
    }

    /// What `serve` waits out and what it does not: Redis not up yet passes; a refused
    /// certificate or password does not.
    #[actix_rt::test]
    async fn only_an_unreachable_redis_is_worth_waiting_for() {
        use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
        use at_tests::redis::TlsFiles;
        let open = |config: StoreConfig| async move {
            let dir = at_tests::TempDir::new("directory-redis-may-pass");
            match crate::store::open(&config, dir.path()).await {
                Err(StoreError::Redis(error)) => error,
                other => panic!("{config:?}: {:?}", other.err()),
            }
        };
        let redis_config = |url: String| StoreConfig {
            backend: BackendKind::Redis,
            redis_url: Some(Secret::new(url)),
            ..StoreConfig::default()
        };
        let nobody = at_tests::free_port();
        let down = open(redis_config(format!("redis://127.0.0.1:{nobody}"))).await;
        assert!(may_pass(&down), "{down}");

        let locked = RedisServer::start_durable_with_password("pw");
        let no_password = open(redis_config(format!("redis://127.0.0.1:{}", locked.port()))).await;
        assert!(!may_pass(&no_password), "{no_password}");
        let wrong = open(redis_config(format!(
            "redis://:nope@127.0.0.1:{}",
            locked.port()
        )))
        .await;
        assert!(!may_pass(&wrong), "{wrong}");

        let dir = at_tests::TempDir::new("directory-redis-may-pass-tls");
        let files = TlsFiles::make(dir.path());
        let tls = RedisServer::start_tls_verifying_clients(&files);
        // Verified against the system's roots, which do not know the test CA.
        let untrusted = open(redis_config(format!(
            "rediss://127.0.0.1:{}",
            tls.tls_port().unwrap()
        )))
        .await;
        assert!(!may_pass(&untrusted), "{untrusted}");
    }

    #[actix_rt::test]
    async fn a_key_prefix_keeps_deployments_apart() {
        let redis = RedisServer::start();
        let blue = Store::new(RedisBackend::connect(&redis.url(), "blue:").await.unwrap());
        let green = Store::new(RedisBackend::connect(&redis.url(), "green:").await.unwrap());
        let alice = AtSign::parse("alice").unwrap();
        blue.put(&alice, &Address::parse("blue.example:1").unwrap())
            .await
            .unwrap();
        assert_eq!(green.get(&alice).await.unwrap(), None);
        assert!(green.list().await.unwrap().is_empty());
        assert_eq!(blue.list().await.unwrap().len(), 1);
    }
}
