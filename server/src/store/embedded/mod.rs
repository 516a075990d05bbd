//! The embedded backend: one fjall database (an LSM tree with a write-ahead journal) in
//! `<data_dir>/store/`, for every atSign the node hosts.
//!
//! # Layout
//! Every key starts with the atSign and a NUL byte (which no atSign contains), so one atSign's
//! rows are one prefix: listing keys is a prefix scan and removing an atSign a prefix delete.
//!
//! | keyspace        | key                            | value                               |
//! |-----------------|--------------------------------|-------------------------------------|
//! | `records`       | `atsign \0 key`                | JSON `{"v": value, "m": metadata}`  |
//! | `commits`       | `atsign \0 commit_id (BE u64)` | op code, op time (BE i64), key      |
//! | `commit_index`  | `atsign \0 key`                | the key's (only) commit id          |
//! | `next_commit`   | `atsign`                       | the id the next commit gets         |
//! | `atsigns`       | `atsign`                       | JSON [`AtSignInfo`]                 |
//! | `access`        | `atsign \0 kind from`          | count (BE u64)                      |
//! | `notifications` | `atsign \0 log at_ms(BE) id`   | expires_ms (BE u64), body           |
//! | `notification_ids` | `atsign \0 log id`          | at_ms (BE u64)                      |
//!
//! Records are encoded as every backend encodes them ([`super::encoding`]).
//!
//! # Writes: one thread, group commit
//! Every write goes to one writer thread ([`writer`]), which is therefore the only writer: its
//! read-modify-writes ([`Change`]) are atomic without locks, and commit ids are handed out in
//! the order writes are applied. Everything that queued meanwhile is made durable with ONE
//! journal fsync before any of it is answered. An acknowledged write survives `kill -9`; under
//! load one fsync serves many writes (measured: redb's copy-on-write commit cost ~10 ms per
//! group of 50 here, this ~1 ms). One writer per CPU, by atSign, was tried and measured no
//! faster on 2 cores, so it stays one.
//!
//! # Reads: only what is durable
//! Readers never see the live tree: the writer takes a snapshot, fsyncs the journal (which
//! holds everything the snapshot holds), and only then publishes that snapshot; every read uses
//! the latest published one. So no reader can see (and a `sync` client can never receive) a
//! write that a crash could still take back, which would let its commit id be handed out again.
//! Point reads run inline (memtable or block cache, microseconds); scans run on tokio's
//! blocking pool.

use std::path::Path;
use std::sync::{Arc, RwLock};

use at_common::metadata::EpochMillis;
use at_common::AtSign;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use super::encoding::{decode_record, encode_record};
use super::{
    AccessKind, AtSignDump, AtSignInfo, Backend, Change, CommitEntry, CommitOp, NotificationLog,
    NotificationLogs, NotificationRow, Provisioning, Record, Records, StoreError, Written,
};

mod writer;

use writer::{Job, Kind};

/// The database directory, under the data directory.
pub const DIR_NAME: &str = "store";

/// Block cache of the database: enough for the hot keys of many atSigns, small next to a node.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The keyspaces, and the newest durable snapshot that readers use.
struct Shared {
    db: Database,
    records: Keyspace,
    commits: Keyspace,
    commit_index: Keyspace,
    next_commit: Keyspace,
    atsigns: Keyspace,
    access: Keyspace,
    notifications: Keyspace,
    notification_ids: Keyspace,
    durable: RwLock<Arc<Snapshot>>,
    /// Set when the writer thread stopped for good ([`writer::run`]): why.
    failure: std::sync::OnceLock<String>,
}

impl Shared {
    /// Opens (or creates) `<dir>/store/`, creating `dir`.
    fn open(dir: &Path) -> Result<Shared, StoreError> {
        let path = dir.join(DIR_NAME);
        std::fs::create_dir_all(&path)?;
        let db = match Database::builder(&path).cache_size(CACHE_BYTES).open() {
            Err(fjall::Error::Locked) => return Err(StoreError::Locked(path)),
            other => other?,
        };
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(Shared {
            records: keyspace("records")?,
            commits: keyspace("commits")?,
            commit_index: keyspace("commit_index")?,
            next_commit: keyspace("next_commit")?,
            atsigns: keyspace("atsigns")?,
            access: keyspace("access")?,
            notifications: keyspace("notifications")?,
            notification_ids: keyspace("notification_ids")?,
            durable: RwLock::new(Arc::new(db.snapshot())),
            failure: std::sync::OnceLock::new(),
            db,
        })
    }

    /// Records that the writer stopped for good, and why (the first reason is kept).
    fn fail(&self, why: String) {
        let _ = self.failure.set(why);
    }

    /// The newest durable snapshot.
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.durable.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes everything applied so far durable and visible to readers.
    fn persist_and_publish(&self) -> Result<(), fjall::Error> {
        let snapshot = Arc::new(self.db.snapshot());
        // fdatasync: the journal's bytes and its length, what a replay needs (as Redis's
        // `appendfsync always` and PostgreSQL's WAL); not timestamps.
        self.db.persist(PersistMode::SyncData)?;
        *self.durable.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        Ok(())
    }
}

/// The open database.
pub struct Embedded {
    shared: Arc<Shared>,
    /// Writes go to the writer thread; `None` once closing.
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    /// The writer thread, joined on drop so the database is closed when the store is.
    writer: Option<std::thread::JoinHandle<()>>,
    /// Leases held ([`super::Leases::take_lease`]), by atSign and name, until when. In memory: one
    /// process has the store open, so its own tasks are all that can contend.
    leases: HeldLeases,
}

/// The embedded store's leases.
#[derive(Default)]
struct HeldLeases(
    std::sync::Mutex<std::collections::HashMap<(AtSign, String), std::time::Instant>>,
);

impl HeldLeases {
    /// Takes `name` of `atsign` until `ttl` from now, unless held; says whether it did.
    fn take(&self, atsign: &AtSign, name: &str, ttl: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Expired leases go, so the table holds only what is being done.
        held.retain(|_, until| *until > now);
        let key = (atsign.clone(), name.to_string());
        if held.contains_key(&key) {
            return false;
        }
        held.insert(key, now.checked_add(ttl).unwrap_or(now));
        true
    }

    fn drop(&self, atsign: &AtSign, name: &str) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&(atsign.clone(), name.to_string()));
    }
}

impl Embedded {
    /// Opens (or creates) `<dir>/store/`, creating `dir`. Blocking: after a crash fjall replays
    /// its journal here. [`StoreError::Locked`] if another process has it open.
    pub fn open(dir: &Path) -> Result<Embedded, StoreError> {
        let shared = Arc::new(Shared::open(dir)?);
        let (jobs, queue) = std::sync::mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("atserver-store-writer".into())
            .spawn(move || writer::run(&writer_shared, &queue))?;
        Ok(Embedded {
            shared,
            jobs: Some(jobs),
            writer: Some(writer),
            leases: HeldLeases::default(),
        })
    }

    /// Queues `job` for the writer thread.
    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| self.gone())
    }

    /// Why the writer no longer answers: it stopped for good, or the store is closing.
    fn gone(&self) -> StoreError {
        match self.shared.failure.get() {
            Some(why) => StoreError::Failed(why.clone()),
            None => StoreError::Closed,
        }
    }

    /// Queues `write` for the writer thread and waits for its answer (after the fsync of its
    /// group, which fails it unless it is [`Kind::Statistics`]).
    async fn write<T: Send + 'static>(
        &self,
        kind: Kind,
        write: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Other {
            kind,
            run: Box::new(move |shared| {
                let result = write(shared);
                let ok = result.is_ok();
                let reply: writer::Reply = Box::new(move |fsync: Result<(), StoreError>| {
                    let _ = done.send(fsync.and(result));
                });
                (ok, reply)
            }),
        })?;
        answer.await.map_err(|_| self.gone())?
    }

    /// Writes `atsign`'s provisioning record: a new one (`existing` false, else
    /// [`StoreError::AtSignExists`]) or a replacement (`existing` true, else
    /// [`StoreError::NoSuchAtSign`]).
    async fn write_info(
        &self,
        atsign: &AtSign,
        info: &AtSignInfo,
        existing: bool,
    ) -> Result<(), StoreError> {
        let atsign = atsign.clone();
        let bytes = serde_json::to_vec(info)?;
        self.write(Kind::Durable, move |shared| {
            let name = atsign.as_str().as_bytes();
            match (shared.atsigns.get(name)?.is_some(), existing) {
                (true, false) => return Err(StoreError::AtSignExists(atsign)),
                (false, true) => return Err(StoreError::NoSuchAtSign(atsign)),
                _ => {}
            }
            shared.atsigns.insert(name, bytes)?;
            Ok(())
        })
        .await
    }

    /// Runs `read` over the newest durable snapshot on the blocking pool (for scans).
    async fn scan<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Shared, &Snapshot) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || read(&shared, &shared.snapshot())).await?
    }
}

impl Drop for Embedded {
    /// Ends the writer thread (it finishes the writes already queued) and waits for it, so the
    /// database is closed once the store is dropped and can be opened again at once.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// `atsign \0`: the prefix of every row of `atsign`.
fn prefix(atsign: &AtSign) -> Vec<u8> {
    let mut out = Vec::with_capacity(atsign.as_str().len() + 1);
    out.extend_from_slice(atsign.as_str().as_bytes());
    out.push(0);
    out
}

/// `atsign \0 tail`.
fn row(atsign: &AtSign, tail: &[u8]) -> Vec<u8> {
    let mut out = prefix(atsign);
    out.extend_from_slice(tail);
    out
}

fn commit_row(atsign: &AtSign, id: u64) -> Vec<u8> {
    row(atsign, &id.to_be_bytes())
}

fn access_row(atsign: &AtSign, kind: AccessKind, from: &str) -> Vec<u8> {
    let mut out = prefix(atsign);
    out.push(kind_code(kind));
    out.extend_from_slice(from.as_bytes());
    out
}

fn log_code(log: NotificationLog) -> u8 {
    match log {
        NotificationLog::Received => 0,
        NotificationLog::Sent => 1,
    }
}

/// `atsign \0 log`: the prefix of one notification log's rows (and of its id index).
fn log_prefix(atsign: &AtSign, log: NotificationLog) -> Vec<u8> {
    let mut out = prefix(atsign);
    out.push(log_code(log));
    out
}

fn notification_row_key(
    atsign: &AtSign,
    log: NotificationLog,
    at_ms: EpochMillis,
    id: &str,
) -> Vec<u8> {
    let mut out = log_prefix(atsign, log);
    out.extend_from_slice(&(at_ms as u64).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

fn notification_id_key(atsign: &AtSign, log: NotificationLog, id: &str) -> Vec<u8> {
    let mut out = log_prefix(atsign, log);
    out.extend_from_slice(id.as_bytes());
    out
}

/// A row from its key (past the log prefix: at_ms, id) and value (expires_ms, body).
fn decode_notification(key_tail: &[u8], value: &[u8]) -> Result<NotificationRow, StoreError> {
    let corrupt = || StoreError::Corrupt("a notification row".into());
    let (at, id) = key_tail.split_at_checked(8).ok_or_else(corrupt)?;
    let (expires, body) = value.split_at_checked(8).ok_or_else(corrupt)?;
    Ok(NotificationRow {
        id: String::from_utf8(id.to_vec()).map_err(|_| corrupt())?,
        at_ms: be_u64(at)? as EpochMillis,
        expires_ms: be_u64(expires)? as EpochMillis,
        body: body.to_vec(),
    })
}

/// Adds `row` to `batch`, dropping the row its id had (it may have another time).
fn put_notification_row(
    shared: &Shared,
    batch: &mut fjall::OwnedWriteBatch,
    atsign: &AtSign,
    log: NotificationLog,
    row: &NotificationRow,
) -> Result<(), StoreError> {
    let id_key = notification_id_key(atsign, log, &row.id);
    if let Some(at) = shared.notification_ids.get(&id_key)? {
        let old = notification_row_key(atsign, log, be_u64(&at)? as EpochMillis, &row.id);
        batch.remove(&shared.notifications, old);
    }
    let mut value = (row.expires_ms as u64).to_be_bytes().to_vec();
    value.extend_from_slice(&row.body);
    batch.insert(
        &shared.notifications,
        notification_row_key(atsign, log, row.at_ms, &row.id),
        value,
    );
    batch.insert(
        &shared.notification_ids,
        id_key,
        (row.at_ms as u64).to_be_bytes(),
    );
    Ok(())
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{} bytes for a u64", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
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

/// A commit entry's value: op code, op time, key.
fn encode_commit(op: CommitOp, op_time_ms: EpochMillis, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.push(op_code(op));
    out.extend_from_slice(&op_time_ms.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn decode_commit(commit_id: u64, bytes: &[u8]) -> Result<CommitEntry, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("commit entry {commit_id}"));
    let (&code, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let (time, key) = rest.split_at_checked(8).ok_or_else(corrupt)?;
    Ok(CommitEntry {
        commit_id,
        key: String::from_utf8(key.to_vec()).map_err(|_| corrupt())?,
        op: op_from_code(code)?,
        op_time_ms: be_u64(time)? as EpochMillis,
    })
}

/// Drops the commit entry stored at `entry_row` (of `key`) and the key's index row, into
/// `batch`. Only for the writer, on the live tree: there the index row points at this entry.
fn drop_commit(
    shared: &Shared,
    batch: &mut fjall::OwnedWriteBatch,
    atsign: &AtSign,
    entry_row: fjall::UserKey,
    key: &str,
) {
    batch.remove(&shared.commits, entry_row);
    batch.remove(&shared.commit_index, row(atsign, key.as_bytes()));
}

/// Removes every row under `prefix` from `keyspace` into `batch`.
fn remove_prefix(
    batch: &mut fjall::OwnedWriteBatch,
    keyspace: &Keyspace,
    prefix: &[u8],
) -> Result<(), StoreError> {
    for guard in keyspace.prefix(prefix) {
        batch.remove(keyspace, guard.key()?);
    }
    Ok(())
}

#[async_trait::async_trait]
impl Provisioning for Embedded {
    async fn create_atsign(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        self.write_info(atsign, info, false).await
    }

    async fn get_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignInfo>, StoreError> {
        let found = self
            .shared
            .snapshot()
            .get(&self.shared.atsigns, atsign.as_str())?;
        Ok(match found {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        })
    }

    async fn set_atsign_info(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        self.write_info(atsign, info, true).await
    }

    async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        let atsign = atsign.clone();
        self.write(Kind::KeyRows, move |shared| {
            let name = atsign.as_str().as_bytes();
            let rows = prefix(&atsign);
            let existed = shared.atsigns.get(name)?.is_some();
            let mut batch = shared.db.batch();
            for keyspace in [
                &shared.records,
                &shared.commits,
                &shared.commit_index,
                &shared.access,
                &shared.notifications,
                &shared.notification_ids,
            ] {
                remove_prefix(&mut batch, keyspace, &rows)?;
            }
            batch.remove(&shared.next_commit, name);
            batch.remove(&shared.atsigns, name);
            batch.commit()?;
            Ok(existed)
        })
        .await
    }

    async fn list_atsigns(&self) -> Result<Vec<AtSign>, StoreError> {
        self.scan(|shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.iter(&shared.atsigns) {
                let name = guard.key()?;
                let name = String::from_utf8_lossy(&name);
                let atsign = AtSign::parse(&name)
                    .map_err(|e| StoreError::Corrupt(format!("atSign {name:?}: {e}")))?;
                out.push(atsign);
            }
            Ok(out)
        })
        .await
    }

    async fn import_atsign(&self, dump: &AtSignDump) -> Result<(), StoreError> {
        let dump = dump.clone();
        let info = serde_json::to_vec(&dump.info)?;
        self.write(Kind::KeyRows, move |shared| {
            let atsign = &dump.atsign;
            let name = atsign.as_str().as_bytes();
            if shared.atsigns.get(name)?.is_some() {
                return Err(StoreError::AtSignExists(atsign.clone()));
            }
            let mut batch = shared.db.batch();
            batch.insert(&shared.atsigns, name, info);
            for (key, record) in &dump.records {
                batch.insert(
                    &shared.records,
                    row(atsign, key.as_bytes()),
                    encode_record(record)?,
                );
            }
            for entry in &dump.commits {
                batch.insert(
                    &shared.commits,
                    commit_row(atsign, entry.commit_id),
                    encode_commit(entry.op, entry.op_time_ms, &entry.key),
                );
                batch.insert(
                    &shared.commit_index,
                    row(atsign, entry.key.as_bytes()),
                    entry.commit_id.to_be_bytes(),
                );
            }
            if dump.next_commit > 0 {
                batch.insert(&shared.next_commit, name, dump.next_commit.to_be_bytes());
            }
            for (kind, from, count) in &dump.access {
                batch.insert(
                    &shared.access,
                    access_row(atsign, *kind, from),
                    count.to_be_bytes(),
                );
            }
            for (log, row) in &dump.notifications {
                put_notification_row(shared, &mut batch, atsign, *log, row)?;
            }
            batch.commit()?;
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl Records for Embedded {
    async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<Record>, StoreError> {
        let found = self
            .shared
            .snapshot()
            .get(&self.shared.records, row(atsign, key.as_bytes()))?;
        found.map(|bytes| decode_record(&bytes)).transpose()
    }

    async fn modify(
        &self,
        atsign: &AtSign,
        key: &str,
        change: Change,
    ) -> Result<Written, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Change {
            atsign: atsign.clone(),
            key: key.to_string(),
            change,
            done,
        })?;
        answer.await.map_err(|_| self.gone())?
    }

    async fn keys(&self, atsign: &AtSign, prefix_of_key: &str) -> Result<Vec<String>, StoreError> {
        let rows = prefix(atsign);
        let wanted = row(atsign, prefix_of_key.as_bytes());
        self.scan(move |shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.prefix(&shared.records, &wanted) {
                let row = guard.key()?;
                let key = String::from_utf8(row[rows.len()..].to_vec())
                    .map_err(|_| StoreError::Corrupt("a key that is not UTF-8".into()))?;
                out.push(key);
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
        let Some(first) = after.map_or(Some(0), |after| after.checked_add(1)) else {
            return Ok(Vec::new());
        };
        let (from, to) = (commit_row(atsign, first), commit_row(atsign, u64::MAX));
        let rows = prefix(atsign).len();
        self.scan(move |shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.range(&shared.commits, from..=to).take(limit) {
                let (row, value) = guard.into_inner()?;
                out.push(decode_commit(be_u64(&row[rows..])?, &value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn last_commit_id(&self, atsign: &AtSign) -> Result<Option<u64>, StoreError> {
        let next = self
            .shared
            .snapshot()
            .get(&self.shared.next_commit, atsign.as_str())?;
        match next {
            Some(bytes) => Ok(be_u64(&bytes)?.checked_sub(1)),
            None => Ok(None),
        }
    }

    async fn compact_commits(
        &self,
        atsign: &AtSign,
        older_than_ms: EpochMillis,
    ) -> Result<usize, StoreError> {
        // Most calls find nothing old: a look at the oldest entry then spares the writer (and
        // its fsync) the job.
        let oldest = self.commits_since(atsign, None, 1).await?;
        if oldest.first().is_none_or(|e| e.op_time_ms >= older_than_ms) {
            return Ok(0);
        }
        let atsign = atsign.clone();
        self.write(Kind::KeyRows, move |shared| {
            let rows = prefix(&atsign);
            let mut batch = shared.db.batch();
            let mut dropped = 0;
            // Id order is write order: stopping at the first young entry keeps the
            // writer's work to what it drops, however long the log.
            for guard in shared.commits.prefix(&rows) {
                let (row, value) = guard.into_inner()?;
                let entry = decode_commit(be_u64(&row[rows.len()..])?, &value)?;
                if entry.op_time_ms >= older_than_ms {
                    break;
                }
                drop_commit(shared, &mut batch, &atsign, row, &entry.key);
                dropped += 1;
            }
            batch.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn trim_commits(&self, atsign: &AtSign, keep: usize) -> Result<usize, StoreError> {
        // Counting happens on a snapshot, off the writer: the newest entry that has to go.
        let rows = prefix(atsign);
        let last_dropped = self
            .scan(move |shared, snapshot| {
                match snapshot.prefix(&shared.commits, &rows).rev().nth(keep) {
                    Some(guard) => Ok(Some(be_u64(&guard.key()?[rows.len()..])?)),
                    None => Ok(None),
                }
            })
            .await?;
        let Some(last_dropped) = last_dropped else {
            return Ok(0);
        };
        let atsign = atsign.clone();
        self.write(Kind::KeyRows, move |shared| {
            let (from, to) = (commit_row(&atsign, 0), commit_row(&atsign, last_dropped));
            let rows = prefix(&atsign).len();
            let mut batch = shared.db.batch();
            let mut dropped = 0;
            // Writes since the count only add newer ids (or drop older entries of their
            // key), so everything up to `last_dropped` still has to go.
            for guard in shared.commits.range(from..=to) {
                let (row, value) = guard.into_inner()?;
                let entry = decode_commit(be_u64(&row[rows..])?, &value)?;
                drop_commit(shared, &mut batch, &atsign, row, &entry.key);
                dropped += 1;
            }
            batch.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn record_access(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        from: &str,
        count: u64,
    ) -> Result<(), StoreError> {
        let counter = access_row(atsign, kind, from);
        // Statistics: a failed fsync is not this caller's error (the count may be lost).
        self.write(Kind::Statistics, move |shared| {
            let stored = match shared.access.get(&counter)? {
                Some(bytes) => be_u64(&bytes)?,
                None => 0,
            };
            let total = stored.saturating_add(count);
            shared.access.insert(counter, total.to_be_bytes())?;
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
        let wanted = access_row(atsign, kind, "");
        self.scan(move |shared, snapshot| {
            let mut all = Vec::new();
            for guard in snapshot.prefix(&shared.access, &wanted) {
                let (row, count) = guard.into_inner()?;
                let from = String::from_utf8_lossy(&row[wanted.len()..]).into_owned();
                all.push((from, be_u64(&count)?));
            }
            all.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            all.truncate(n);
            Ok(all)
        })
        .await
    }
}

#[async_trait::async_trait]
impl NotificationLogs for Embedded {
    async fn put_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        row: &NotificationRow,
    ) -> Result<(), StoreError> {
        let (atsign, row) = (atsign.clone(), row.clone());
        self.write(Kind::Durable, move |shared| {
            let mut batch = shared.db.batch();
            put_notification_row(shared, &mut batch, &atsign, log, &row)?;
            batch.commit()?;
            Ok(())
        })
        .await
    }

    async fn notifications(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        after_ms: Option<EpochMillis>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = log_prefix(atsign, log);
        // Rows at `after_ms` itself are not after it: start at the next millisecond. Rows are
        // never before the epoch, so a negative `after_ms` is the start.
        let from = match after_ms {
            Some(after) if after >= 0 => {
                let mut from = rows.clone();
                from.extend_from_slice(&(after as u64).saturating_add(1).to_be_bytes());
                from
            }
            _ => rows.clone(),
        };
        let mut to = rows.clone();
        to.push(0xff);
        self.scan(move |shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.range(&shared.notifications, from..to).take(limit) {
                let (key, value) = guard.into_inner()?;
                out.push(decode_notification(&key[rows.len()..], &value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<Option<NotificationRow>, StoreError> {
        let snapshot = self.shared.snapshot();
        let Some(at) = snapshot.get(
            &self.shared.notification_ids,
            notification_id_key(atsign, log, id),
        )?
        else {
            return Ok(None);
        };
        let at_ms = be_u64(&at)? as EpochMillis;
        let key = notification_row_key(atsign, log, at_ms, id);
        let Some(value) = snapshot.get(&self.shared.notifications, &key)? else {
            return Ok(None);
        };
        decode_notification(&key[log_prefix(atsign, log).len()..], &value).map(Some)
    }

    async fn remove_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (atsign, id) = (atsign.clone(), id.to_string());
        self.write(Kind::Durable, move |shared| {
            let id_key = notification_id_key(&atsign, log, &id);
            let Some(at) = shared.notification_ids.get(&id_key)? else {
                return Ok(false);
            };
            let mut batch = shared.db.batch();
            batch.remove(
                &shared.notifications,
                notification_row_key(&atsign, log, be_u64(&at)? as EpochMillis, &id),
            );
            batch.remove(&shared.notification_ids, id_key);
            batch.commit()?;
            Ok(true)
        })
        .await
    }
}

#[async_trait::async_trait]
impl super::Leases for Embedded {
    async fn take_lease(
        &self,
        atsign: &AtSign,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.leases.take(atsign, name, ttl))
    }

    async fn drop_lease(&self, atsign: &AtSign, name: &str) -> Result<(), StoreError> {
        self.leases.drop(atsign, name);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self.failure() {
            Some(why) => Err(StoreError::Failed(why)),
            None => Ok(()),
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    async fn storage_size(&self) -> Result<u64, StoreError> {
        self.scan(|shared, _| Ok(shared.db.disk_space()?)).await
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

    conformance::cases!({
        let dir = TempDir::new("store-conformance");
        let store = open(dir.path());
        (dir, store)
    });

    /// A panic in one write's decision fails that write only; the store keeps serving.
    #[tokio::test]
    async fn a_panicking_change_fails_its_write_only() {
        let dir = TempDir::new("store-panicking-change");
        let store = open(dir.path());
        let alice = conformance::sign("alice");
        let failed = store.modify(&alice, "k@alice", |_| panic!("a bug")).await;
        assert!(
            matches!(&failed, Err(StoreError::Corrupt(why)) if why.contains("a bug")),
            "{failed:?}"
        );
        let record = conformance::record("v", 1);
        store
            .put(&alice, "k@alice", &record, CommitOp::UpdateAll)
            .await
            .unwrap();
        assert_eq!(store.get(&alice, "k@alice").await.unwrap(), Some(record));
        assert!(store.ping().await.is_ok());
        assert_eq!(store.failure(), None);
    }

    /// A panic inside the writer itself stops it for good: every call then fails with the
    /// reason, the ping too (readiness), and `failure` names it (the node exits on it).
    #[tokio::test]
    async fn a_writer_that_panicked_says_so_instead_of_serving_errors_silently() {
        let dir = TempDir::new("store-writer-panic");
        let embedded = Embedded::open(dir.path()).unwrap();
        embedded
            .send(Job::Other {
                kind: Kind::Durable,
                run: Box::new(|_| panic!("inside the database")),
            })
            .unwrap();
        let store = Store::new(embedded);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.failure().is_none() {
            assert!(std::time::Instant::now() < deadline, "no failure reported");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let why = store.failure().unwrap();
        assert!(why.contains("inside the database"), "{why}");
        assert!(matches!(store.ping().await, Err(StoreError::Failed(_))));
        let alice = conformance::sign("alice");
        let record = conformance::record("v", 1);
        let refused = store
            .put(&alice, "k@alice", &record, CommitOp::UpdateAll)
            .await;
        assert!(matches!(refused, Err(StoreError::Failed(_))), "{refused:?}");
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
        assert!(dir.path().join(DIR_NAME).is_dir());
    }

    #[tokio::test]
    async fn access_counts_survive_reopening() {
        let dir = TempDir::new("store-access");
        let alice = conformance::sign("alice");
        {
            let store = open(dir.path());
            for _ in 0..5 {
                store
                    .record_access(&alice, AccessKind::AtSign, "@bob")
                    .await
                    .unwrap();
            }
            // What a node does when it closes (the counts are batched in memory).
            store.write_accesses().await.unwrap();
        }
        let store = open(dir.path());
        let top = store
            .top_accesses(&alice, AccessKind::AtSign, 1)
            .await
            .unwrap();
        assert_eq!(
            top,
            vec![("@bob".to_string(), 5)],
            "a clean close keeps every count"
        );
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
