//! `Store`: where registrations (atSign → `host:port`) are kept, behind one small trait.
//!
//! Two backends: [`embedded`] (an append-only log on local disk, the default; survives a
//! restart and is shared with the admin commands of the same machine) and [`redis`] (one
//! Redis or a Redis Cluster shared by every directory replica, laid out as the reference root
//! lays it out). Callers hold a [`Store`] and never name a backend; [`open`] is the only place
//! that chooses one.

pub mod embedded;
pub mod redis;

use std::path::Path;
use std::sync::Arc;

use at_common::config::{Backend as BackendKind, StoreConfig};
use at_common::{Address, AtSign};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// What every backend does. Object-safe, so a [`Store`] can hold any of them.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The registered address of `atsign`, if any.
    async fn get(&self, atsign: &AtSign) -> Result<Option<Address>, StoreError>;
    /// Registers (or moves) `atsign`; durable once this returns.
    async fn put(&self, atsign: &AtSign, address: &Address) -> Result<(), StoreError>;
    /// Registers every one of `entries`, durable once this returns; a backend writes them
    /// together (one append and one fsync, one pipeline) where it can. Not atomic: on an
    /// error, some may be registered.
    async fn put_many(&self, entries: &[(AtSign, Address)]) -> Result<(), StoreError> {
        for (atsign, address) in entries {
            self.put(atsign, address).await?;
        }
        Ok(())
    }
    /// Forgets `atsign`; `false` if it was not registered.
    async fn remove(&self, atsign: &AtSign) -> Result<bool, StoreError>;
    /// Every registration, sorted by atSign.
    async fn list(&self) -> Result<Vec<(AtSign, Address)>, StoreError>;
}

/// A cheap-to-clone handle over the configured backend.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    pub fn new(backend: impl Backend + 'static) -> Store {
        Store(Arc::new(backend))
    }

    pub async fn get(&self, atsign: &AtSign) -> Result<Option<Address>, StoreError> {
        self.0.get(atsign).await
    }

    pub async fn put(&self, atsign: &AtSign, address: &Address) -> Result<(), StoreError> {
        self.0.put(atsign, address).await
    }

    pub async fn put_many(&self, entries: &[(AtSign, Address)]) -> Result<(), StoreError> {
        self.0.put_many(entries).await
    }

    pub async fn remove(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        self.0.remove(atsign).await
    }

    pub async fn list(&self) -> Result<Vec<(AtSign, Address)>, StoreError> {
        self.0.list().await
    }
}

/// Opens the backend `config` names; the embedded one lives under `data_dir`.
pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
    match config.backend {
        BackendKind::Embedded => Ok(Store::new(embedded::Embedded::open(data_dir)?)),
        BackendKind::Redis => {
            let client = config.redis_client()?;
            Ok(Store::new(
                redis::RedisBackend::connect_client(
                    client,
                    &config.key_prefix,
                    config.redis_wait(),
                )
                .await?,
            ))
        }
    }
}

/// [`open`] for `serve`: a Redis that is not reachable yet is waited for
/// ([`redis::until_reachable`]).
pub async fn open_when_reachable(
    config: &StoreConfig,
    data_dir: &Path,
) -> Result<Store, StoreError> {
    redis::until_reachable(
        || open(config, data_dir),
        |error| matches!(error, StoreError::Redis(error) if redis::may_pass(error)),
    )
    .await
}

/// One suite every backend must pass (garage's `db/test.rs` pattern); each backend's tests call it.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    pub fn sign(s: &str) -> AtSign {
        AtSign::parse(s).expect("test atSign")
    }

    pub fn addr(s: &str) -> Address {
        Address::parse(s).expect("test address")
    }

    pub async fn run(store: &Store) {
        assert_eq!(store.get(&sign("alice")).await.unwrap(), None);
        assert!(!store.remove(&sign("alice")).await.unwrap());

        store
            .put(&sign("alice"), &addr("a.example:1"))
            .await
            .unwrap();
        store
            .put(&sign("bob🛠"), &addr("b.example:2"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&sign("@Alice")).await.unwrap(),
            Some(addr("a.example:1"))
        );
        assert_eq!(
            store.get(&sign("bob🛠")).await.unwrap(),
            Some(addr("b.example:2"))
        );

        store
            .put(&sign("alice"), &addr("moved.example:3"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&sign("alice")).await.unwrap(),
            Some(addr("moved.example:3"))
        );
        assert_eq!(
            store.list().await.unwrap(),
            vec![
                (sign("alice"), addr("moved.example:3")),
                (sign("bob🛠"), addr("b.example:2"))
            ]
        );

        assert!(store.remove(&sign("alice")).await.unwrap());
        assert_eq!(store.get(&sign("alice")).await.unwrap(), None);
        assert_eq!(
            store.list().await.unwrap(),
            vec![(sign("bob🛠"), addr("b.example:2"))]
        );

        // A batch registers each of its entries, moving those already there.
        let batch: Vec<_> = (0..3)
            .map(|i| {
                (
                    sign(&format!("batch{i}")),
                    addr(&format!("h{i}.example:{}", i + 1)),
                )
            })
            .chain([(sign("bob🛠"), addr("b.example:4"))])
            .collect();
        store.put_many(&batch).await.unwrap();
        store.put_many(&[]).await.unwrap();
        let mut all = store.list().await.unwrap();
        all.sort();
        let mut expected = batch.clone();
        expected.sort();
        assert_eq!(all, expected);
    }
}
