//! The embedded backend: one redb database file, `<data_dir>/atserver.redb`, for every atSign
//! the node hosts.
//!
//! # Layout
//! Every table's key starts with the atSign, so one atSign's rows are one contiguous range:
//! `(atsign, …)` up to (not including) `(atsign + "\0", …)`, the next string in byte order.
//! Listing keys is a range scan and removing an atSign is a range delete.
//!
//! | table            | key                        | value                                   |
//! |------------------|----------------------------|-----------------------------------------|
//! | `records`        | `(atsign, key)`            | JSON `{"v": value, "m": metadata}`      |
//! | `commits`        | `(atsign, commit_id)`      | `(key, op code, op time ms)`            |
//! | `commit_index`   | `(atsign, key)`            | the key's (only) commit id              |
//! | `next_commit_id` | `atsign`                   | the id the next commit gets             |
//! | `atsigns`        | `atsign`                   | JSON [`AtSignInfo`]                     |
//! | `access`         | `(atsign, kind, from)`     | count                                   |
//!
//! Records are JSON, not MessagePack: `Metadata`'s serde shape is defined by its JSON form
//! (timestamps as text, lenient deserializers that read through `serde_json::Value`), so a
//! binary format would save little and cost a second, untested encoding of it. Nulls are left
//! out, so a record is about as long as its `llookup:meta` answer.
//!
//! # Durability and blocking
//! Every write is one redb write transaction committed with the default
//! `Durability::Immediate`: when a method returns, its write (record and commit entry
//! together) is on disk and survives `kill -9`. The one exception is the access counters,
//! committed with `Durability::None`: a crash may lose the last counts, and a lookup does not
//! pay an fsync for its statistics. redb is synchronous, so each call runs on tokio's blocking
//! pool (`spawn_blocking`) and never stalls the async workers; redb serialises writers itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use at_common::metadata::{EpochMillis, Metadata};
use at_common::AtSign;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::{
    is_committed, AccessKind, AtSignInfo, Backend, CommitEntry, CommitOp, Record, StoreError,
};

/// The database file, under the data directory.
pub const FILE_NAME: &str = "atserver.redb";

const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
const COMMITS: TableDefinition<(&str, u64), (&str, u8, i64)> = TableDefinition::new("commits");
const COMMIT_INDEX: TableDefinition<(&str, &str), u64> = TableDefinition::new("commit_index");
const NEXT_COMMIT_ID: TableDefinition<&str, u64> = TableDefinition::new("next_commit_id");
const ATSIGNS: TableDefinition<&str, &[u8]> = TableDefinition::new("atsigns");
const ACCESS: TableDefinition<(&str, u8, &str), u64> = TableDefinition::new("access");

/// redb's several error types all become [`StoreError::Embedded`].
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Embedded(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Every this-many access-counter commits, one is durable: non-durable commits cannot free
/// pages until a durable one follows, so a node that only answers lookups must not pile them up.
const ACCESS_DURABLE_EVERY: u64 = 256;

/// The open database; cloned cheaply into each blocking task.
pub struct Embedded {
    db: Arc<Database>,
    /// Key writes (put/remove) go to the group-commit thread; `None` once closing.
    writes: Option<std::sync::mpsc::Sender<Write>>,
    /// The group-commit thread, joined on drop so the file is closed when the store is.
    writer: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    /// Access-counter commits so far, to make every [`ACCESS_DURABLE_EVERY`]th durable.
    access_commits: AtomicU64,
}

impl Embedded {
    /// Opens (or creates) `<dir>/atserver.redb`, creating `dir` and every table. Blocking: after
    /// a crash redb repairs the file here.
    pub fn open(dir: &Path) -> Result<Embedded, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Embedded(Box::new(e.into())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)?;
        let txn = db.begin_write()?;
        txn.open_table(RECORDS)?;
        txn.open_table(COMMITS)?;
        txn.open_table(COMMIT_INDEX)?;
        txn.open_table(NEXT_COMMIT_ID)?;
        txn.open_table(ATSIGNS)?;
        txn.open_table(ACCESS)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (writes, queue) = std::sync::mpsc::channel();
        let writer_db = Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("atserver-store-writer".into())
            .spawn(move || group_commit(&writer_db, &queue))
            .map_err(|e| StoreError::Embedded(Box::new(e.into())))?;
        Ok(Embedded {
            db,
            writes: Some(writes),
            writer: Some(writer),
            path,
            access_commits: AtomicU64::new(0),
        })
    }

    /// Runs `f` on the blocking pool with the database.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db)).await?
    }
}

/// One key write waiting for the group-commit thread, and where its result goes.
struct Write {
    op: WriteOp,
    done: tokio::sync::oneshot::Sender<Result<Option<u64>, StoreError>>,
}

/// A key write: the record and its commit entry, or the removal and its `-` entry.
enum WriteOp {
    Put {
        atsign: AtSign,
        key: String,
        bytes: Vec<u8>,
        op: Option<CommitOp>,
    },
    Remove {
        atsign: AtSign,
        key: String,
        commit: bool,
    },
}

/// The most writes one transaction takes.
const GROUP_MAX: usize = 256;

/// Group commit: the writes that queued up while the last transaction was being made durable
/// go into the next one, and each is acknowledged only after that transaction's commit (one
/// fsync for all of them). An acknowledged write is as durable as with one transaction each;
/// under load far fewer fsyncs are paid. If any write of a group fails, the group is redone one
/// write per transaction, so one bad write cannot fail the others.
fn group_commit(db: &Database, queue: &std::sync::mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let together = (|| {
            let txn = db.begin_write()?;
            let ids = group
                .iter()
                .map(|write| apply(&txn, &write.op))
                .collect::<Result<Vec<_>, StoreError>>()?;
            txn.commit()?;
            Ok::<_, StoreError>(ids)
        })();
        match together {
            Ok(ids) => {
                for (write, id) in group.into_iter().zip(ids) {
                    let _ = write.done.send(Ok(id));
                }
            }
            Err(_) => {
                for write in group {
                    let alone = (|| {
                        let txn = db.begin_write()?;
                        let id = apply(&txn, &write.op)?;
                        txn.commit()?;
                        Ok(id)
                    })();
                    let _ = write.done.send(alone);
                }
            }
        }
    }
}

/// One write inside `txn`; its commit id when the key class is committed.
fn apply(txn: &redb::WriteTransaction, op: &WriteOp) -> Result<Option<u64>, StoreError> {
    match op {
        WriteOp::Put {
            atsign,
            key,
            bytes,
            op,
        } => {
            let (a, k) = (atsign.as_str(), key.as_str());
            txn.open_table(RECORDS)?.insert((a, k), bytes.as_slice())?;
            match op {
                Some(op) if is_committed(k) => Ok(Some(append_commit(txn, a, k, *op)?)),
                _ => Ok(None),
            }
        }
        WriteOp::Remove {
            atsign,
            key,
            commit,
        } => {
            let (a, k) = (atsign.as_str(), key.as_str());
            txn.open_table(RECORDS)?.remove((a, k))?;
            if *commit && is_committed(k) {
                Ok(Some(append_commit(txn, a, k, CommitOp::Delete)?))
            } else {
                Ok(None)
            }
        }
    }
}

impl Embedded {
    /// Queues a key write for the group-commit thread and waits until it is durable.
    async fn write(&self, op: WriteOp) -> Result<Option<u64>, StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.writes
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("the store is closing".into()))?
            .send(Write { op, done })
            .map_err(|_| StoreError::Corrupt("the store's writer thread has stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::Corrupt("the store's writer thread has stopped".into()))?
    }
}

impl Drop for Embedded {
    /// Ends the writer thread (it finishes the writes already queued) and waits for it, so
    /// the database file is closed once the store is dropped and can be opened again at once.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The first string after every `(atsign, …)` key: the exclusive upper bound of its range.
fn end_of(atsign: &str) -> String {
    format!("{atsign}\0")
}

fn now_ms() -> EpochMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as EpochMillis)
        .unwrap_or(0)
}

fn op_code(op: CommitOp) -> u8 {
    match op {
        CommitOp::Update => 0,
        CommitOp::UpdateMeta => 1,
        CommitOp::UpdateAll => 2,
        CommitOp::Delete => 3,
    }
}

fn op_from_code(code: u8) -> Result<CommitOp, StoreError> {
    Ok(match code {
        0 => CommitOp::Update,
        1 => CommitOp::UpdateMeta,
        2 => CommitOp::UpdateAll,
        3 => CommitOp::Delete,
        other => return Err(StoreError::Corrupt(format!("commit op code {other}"))),
    })
}

fn kind_code(kind: AccessKind) -> u8 {
    match kind {
        AccessKind::AtSign => 0,
        AccessKind::Key => 1,
    }
}

/// The stored form of a [`Record`]: short field names, metadata without nulls.
#[derive(Serialize)]
struct RecordOut<'a> {
    v: Option<&'a str>,
    m: serde_json::Value,
}

#[derive(Deserialize)]
struct RecordIn {
    v: Option<String>,
    #[serde(default)]
    m: Metadata,
}

fn encode_record(record: &Record) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(&RecordOut {
        v: record.value.as_deref(),
        m: record.metadata.to_value_without_nulls(),
    })?)
}

fn decode_record(bytes: &[u8]) -> Result<Record, StoreError> {
    let stored: RecordIn = serde_json::from_slice(bytes)?;
    Ok(Record {
        value: stored.v,
        metadata: stored.m,
    })
}

/// Adds the entry `op` for `key` inside `txn`, dropping the key's older entry; returns its id.
fn append_commit(
    txn: &WriteTransaction,
    atsign: &str,
    key: &str,
    op: CommitOp,
) -> Result<u64, StoreError> {
    let mut next = txn.open_table(NEXT_COMMIT_ID)?;
    let id = next.get(atsign)?.map(|g| g.value()).unwrap_or(0);
    next.insert(atsign, id + 1)?;
    let mut index = txn.open_table(COMMIT_INDEX)?;
    let older = index.insert((atsign, key), id)?.map(|g| g.value());
    let mut commits = txn.open_table(COMMITS)?;
    if let Some(older) = older {
        commits.remove((atsign, older))?;
    }
    commits.insert((atsign, id), (key, op_code(op), now_ms()))?;
    Ok(id)
}

#[async_trait::async_trait]
impl Backend for Embedded {
    async fn create_atsign(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        let atsign = atsign.clone();
        let bytes = serde_json::to_vec(info)?;
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(ATSIGNS)?;
                if table.get(atsign.as_str())?.is_some() {
                    return Err(StoreError::AtSignExists(atsign));
                }
                table.insert(atsign.as_str(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignInfo>, StoreError> {
        let atsign = atsign.clone();
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ATSIGNS)?;
            let found = table.get(atsign.as_str())?;
            Ok(match found {
                Some(bytes) => Some(serde_json::from_slice(bytes.value())?),
                None => None,
            })
        })
        .await
    }

    async fn set_atsign_info(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        let atsign = atsign.clone();
        let bytes = serde_json::to_vec(info)?;
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(ATSIGNS)?;
                if table.get(atsign.as_str())?.is_none() {
                    return Err(StoreError::NoSuchAtSign(atsign));
                }
                table.insert(atsign.as_str(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        let atsign = atsign.clone();
        self.run(move |db| {
            let a = atsign.as_str();
            let end = end_of(a);
            let e = end.as_str();
            let txn = db.begin_write()?;
            let existed = {
                txn.open_table(RECORDS)?
                    .retain_in((a, "")..(e, ""), |_, _| false)?;
                txn.open_table(COMMIT_INDEX)?
                    .retain_in((a, "")..(e, ""), |_, _| false)?;
                txn.open_table(COMMITS)?
                    .retain_in((a, 0u64)..(e, 0u64), |_, _| false)?;
                txn.open_table(ACCESS)?
                    .retain_in((a, 0u8, "")..(e, 0u8, ""), |_, _| false)?;
                txn.open_table(NEXT_COMMIT_ID)?.remove(a)?;
                let mut atsigns = txn.open_table(ATSIGNS)?;
                let existed = atsigns.remove(a)?.is_some();
                existed
            };
            txn.commit()?;
            Ok(existed)
        })
        .await
    }

    async fn list_atsigns(&self) -> Result<Vec<AtSign>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ATSIGNS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (name, _) = row?;
                let atsign = AtSign::parse(name.value())
                    .map_err(|e| StoreError::Corrupt(format!("atSign {:?}: {e}", name.value())))?;
                out.push(atsign);
            }
            Ok(out)
        })
        .await
    }

    async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<Record>, StoreError> {
        let atsign = atsign.clone();
        let key = key.to_string();
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(RECORDS)?;
            let found = table.get((atsign.as_str(), key.as_str()))?;
            found.map(|bytes| decode_record(bytes.value())).transpose()
        })
        .await
    }

    async fn put(
        &self,
        atsign: &AtSign,
        key: &str,
        record: &Record,
        op: Option<CommitOp>,
    ) -> Result<Option<u64>, StoreError> {
        let bytes = encode_record(record)?;
        self.write(WriteOp::Put {
            atsign: atsign.clone(),
            key: key.to_string(),
            bytes,
            op,
        })
        .await
    }

    async fn remove(
        &self,
        atsign: &AtSign,
        key: &str,
        commit: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.write(WriteOp::Remove {
            atsign: atsign.clone(),
            key: key.to_string(),
            commit,
        })
        .await
    }

    async fn keys(&self, atsign: &AtSign, prefix: &str) -> Result<Vec<String>, StoreError> {
        let atsign = atsign.clone();
        let prefix = prefix.to_string();
        self.run(move |db| {
            let a = atsign.as_str();
            let end = end_of(a);
            let txn = db.begin_read()?;
            let table = txn.open_table(RECORDS)?;
            let mut out = Vec::new();
            for row in table.range((a, prefix.as_str())..(end.as_str(), ""))? {
                let (k, _) = row?;
                let (_, key) = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                out.push(key.to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn commits_since(
        &self,
        atsign: &AtSign,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CommitEntry>, StoreError> {
        let atsign = atsign.clone();
        self.run(move |db| {
            let a = atsign.as_str();
            let end = end_of(a);
            let Some(first) = after.map_or(Some(0), |after| after.checked_add(1)) else {
                return Ok(Vec::new());
            };
            let txn = db.begin_read()?;
            let table = txn.open_table(COMMITS)?;
            let mut out = Vec::new();
            for row in table.range((a, first)..(end.as_str(), 0u64))?.take(limit) {
                let (k, v) = row?;
                let (_, commit_id) = k.value();
                let (key, op, op_time_ms) = v.value();
                out.push(CommitEntry {
                    commit_id,
                    key: key.to_string(),
                    op: op_from_code(op)?,
                    op_time_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn last_commit_id(&self, atsign: &AtSign) -> Result<Option<u64>, StoreError> {
        let atsign = atsign.clone();
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(NEXT_COMMIT_ID)?;
            let next = table.get(atsign.as_str())?.map(|g| g.value());
            Ok(next.and_then(|n| n.checked_sub(1)))
        })
        .await
    }

    async fn compact_commits(
        &self,
        atsign: &AtSign,
        older_than_ms: EpochMillis,
    ) -> Result<usize, StoreError> {
        let atsign = atsign.clone();
        self.run(move |db| {
            let a = atsign.as_str();
            let end = end_of(a);
            let txn = db.begin_write()?;
            let dropped = {
                let mut commits = txn.open_table(COMMITS)?;
                let mut old = Vec::new();
                for row in commits.range((a, 0u64)..(end.as_str(), 0u64))? {
                    let (k, v) = row?;
                    let (key, _, op_time_ms) = v.value();
                    if op_time_ms < older_than_ms {
                        old.push((k.value().1, key.to_string()));
                    }
                }
                let mut index = txn.open_table(COMMIT_INDEX)?;
                for (id, key) in &old {
                    commits.remove((a, *id))?;
                    index.remove((a, key.as_str()))?;
                }
                old.len()
            };
            txn.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn record_access(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        from: &str,
    ) -> Result<(), StoreError> {
        let atsign = atsign.clone();
        let from = from.to_string();
        let n = self.access_commits.fetch_add(1, Ordering::Relaxed);
        let durable = (n + 1).is_multiple_of(ACCESS_DURABLE_EVERY);
        self.run(move |db| {
            let key = (atsign.as_str(), kind_code(kind), from.as_str());
            let mut txn = db.begin_write()?;
            if !durable {
                txn.set_durability(Durability::None)?;
            }
            {
                let mut table = txn.open_table(ACCESS)?;
                let count = table.get(key)?.map(|g| g.value()).unwrap_or(0);
                table.insert(key, count + 1)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn top_accesses(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        n: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let atsign = atsign.clone();
        self.run(move |db| {
            let a = atsign.as_str();
            let code = kind_code(kind);
            let txn = db.begin_read()?;
            let table = txn.open_table(ACCESS)?;
            let mut all = Vec::new();
            for row in table.range((a, code, "")..(a, code + 1, ""))? {
                let (k, v) = row?;
                all.push((k.value().2.to_string(), v.value()));
            }
            all.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            all.truncate(n);
            Ok(all)
        })
        .await
    }

    async fn storage_size(&self) -> Result<u64, StoreError> {
        let path = self.path.clone();
        self.run(move |_| {
            std::fs::metadata(&path)
                .map(|m| m.len())
                .map_err(|e| StoreError::Embedded(Box::new(e.into())))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use at_tests::TempDir;

    use super::*;
    use crate::store::{conformance, Store};

    fn open(dir: &Path) -> Store {
        Store::new(Embedded::open(dir).expect("open embedded store"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite() {
        let dir = TempDir::new("store-conformance");
        conformance::run(&open(dir.path())).await;
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = TempDir::new("store-reopen");
        let alice = conformance::sign("alice");
        {
            let store = open(dir.path());
            store
                .create_atsign(&alice, &conformance::info("alice"))
                .await
                .unwrap();
            let record = conformance::record("v", 1);
            assert_eq!(
                store
                    .put(&alice, "phone@alice", &record, CommitOp::UpdateAll)
                    .await
                    .unwrap(),
                Some(0)
            );
        }
        let store = open(dir.path());
        assert_eq!(store.list_atsigns().await.unwrap(), vec![alice.clone()]);
        assert_eq!(
            store.get(&alice, "phone@alice").await.unwrap(),
            Some(conformance::record("v", 1))
        );
        assert_eq!(store.last_commit_id(&alice).await.unwrap(), Some(0));
        assert_eq!(
            store
                .put(
                    &alice,
                    "email@alice",
                    &conformance::record("w", 2),
                    CommitOp::Update
                )
                .await
                .unwrap(),
            Some(1),
            "the counter continues after a restart"
        );
        assert!(store.storage_size().await.unwrap() > 0);
        assert!(dir.path().join(FILE_NAME).exists());
    }

    #[tokio::test]
    async fn access_counts_survive_reopening() {
        let dir = TempDir::new("store-access");
        let alice = conformance::sign("alice");
        {
            let store = open(dir.path());
            for _ in 0..ACCESS_DURABLE_EVERY + 3 {
                store
                    .record_access(&alice, AccessKind::AtSign, "@bob")
                    .await
                    .unwrap();
            }
        }
        let store = open(dir.path());
        let top = store
            .top_accesses(&alice, AccessKind::AtSign, 1)
            .await
            .unwrap();
        assert!(top[0].1 >= ACCESS_DURABLE_EVERY, "{top:?}");
    }

    /// Set in the child process of `acknowledged_writes_survive_kill`: the directory to write to.
    const CHILD_DIR: &str = "AT_STORE_DURABILITY_CHILD_DIR";
    const THIS_TEST: &str = "store::embedded::tests::acknowledged_writes_survive_kill";

    /// The parent re-runs this test binary as a child that writes records as fast as it can and
    /// prints `acked <id>` after each `put` returns; it is SIGKILLed mid-stream. Every id the
    /// child printed must be there after reopening.
    #[tokio::test]
    async fn acknowledged_writes_survive_kill() {
        let alice = conformance::sign("alice");
        if let Ok(dir) = std::env::var(CHILD_DIR) {
            let store = open(Path::new(&dir));
            // Bounded, so a child whose parent died does not write forever.
            for i in 0u64..100_000 {
                let key = format!("k{i}@alice");
                let id = store
                    .put(
                        &alice,
                        &key,
                        &conformance::record(&i.to_string(), 0),
                        CommitOp::Update,
                    )
                    .await
                    .unwrap()
                    .unwrap();
                println!("acked {id} {key}");
            }
            return;
        }

        let dir = TempDir::new("store-durability");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", THIS_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        while acked.len() < 40 {
            let line = lines.next().expect("child output ended early").unwrap();
            if let Some(rest) = line.strip_prefix("acked ") {
                acked.push(rest.to_string());
            }
        }
        child.kill().expect("SIGKILL the child");
        // What the child printed before it died is still in the pipe: acknowledged too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("acked ") {
                acked.push(rest.to_string());
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the child was killed, not finished: {status}"
        );

        let store = open(dir.path());
        let entries = store.commits_since(&alice, None, usize::MAX).await.unwrap();
        for ack in &acked {
            let (id, key) = ack.split_once(' ').unwrap();
            let id: u64 = id.parse().unwrap();
            assert!(
                store.get(&alice, key).await.unwrap().is_some(),
                "acknowledged {key} lost"
            );
            assert!(
                entries.iter().any(|e| e.commit_id == id && e.key == key),
                "acknowledged commit {id} lost"
            );
        }
    }
}
