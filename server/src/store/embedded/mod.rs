//! The embedded backend: one fjall database (an LSM tree with a write-ahead journal) in
//! `<data_dir>/store/`, for every atSign the node hosts.
//!
//! # Layout
//! Every key starts with the atSign and a NUL byte (which no atSign contains), so one atSign's
//! rows are one prefix: listing keys is a prefix scan and removing an atSign a prefix delete.
//!
//! | keyspace        | key                            | value                               |
//! |-----------------|--------------------------------|-------------------------------------|
//! | `records`       | `atsign \0 key`                | the record ([`super::encoding`])    |
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
//!
//! # Files
//! This file: opening the database, the writer's handle and the published snapshot. [`rows`]:
//! how rows are keyed and encoded; [`writer`]: the writer thread; one file per concern of the
//! store: [`provisioning`], [`records`], [`notification_logs`], [`leases`], [`backend`].

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

mod backend;
mod leases;
mod notification_logs;
mod provisioning;
mod records;
mod rows;
mod writer;

use rows::*;
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

/// Answers a write's caller with `result`, once its group's fsync is done: the fsync's
/// failure, if it failed.
fn after_fsync<T: Send + 'static>(
    done: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
) -> writer::Reply {
    Box::new(move |fsync: Result<(), StoreError>| {
        let _ = done.send(fsync.and(result));
    })
}

/// The embedded store's leases.
#[derive(Default)]
struct HeldLeases(std::sync::Mutex<LeaseTable>);

/// Leases by atSign and name, until when.
#[derive(Default)]
struct LeaseTable {
    held: std::collections::HashMap<(AtSign, String), std::time::Instant>,
    /// The table is swept of expired leases when it reaches this size: a sweep on every
    /// take made each take cost every lease held (thousands, while a backlog of
    /// notifications waits for a slow peer).
    sweep_at: usize,
}

/// The least [`LeaseTable::sweep_at`].
const LEASE_SWEEP_MIN: usize = 64;

impl HeldLeases {
    /// Takes `name` of `atsign` until `ttl` from now, unless held; says whether it did.
    fn take(&self, atsign: &AtSign, name: &str, ttl: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Expired leases go (a holder normally drops its lease; one that died does not), so
        // the table holds at most twice what is being done.
        if table.held.len() >= table.sweep_at {
            table.held.retain(|_, until| *until > now);
            table.sweep_at = table.held.len().saturating_mul(2).max(LEASE_SWEEP_MIN);
        }
        let key = (atsign.clone(), name.to_string());
        if table.held.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        table.held.insert(key, now.checked_add(ttl).unwrap_or(now));
        true
    }

    fn drop(&self, atsign: &AtSign, name: &str) {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        table.held.remove(&(atsign.clone(), name.to_string()));
    }
}

/// The stored bytes of records, read and written around the writer thread: for tests that
/// need a record as an older version of the server wrote it (legacy JSON).
#[cfg(test)]
pub(crate) struct RawRecords(Arc<Shared>);

#[cfg(test)]
impl RawRecords {
    /// Writes `bytes` as the stored record of `key`, durable and visible to readers. Only
    /// while nothing else writes, and before the store has read or written the key (its
    /// writer remembers the keys it has seen).
    pub(crate) fn put(&self, atsign: &AtSign, key: &str, bytes: &[u8]) {
        self.0
            .records
            .insert(row(atsign, key.as_bytes()), bytes)
            .expect("raw insert");
        self.0.persist_and_publish().expect("persist");
    }

    /// The stored bytes of `key`, as written so far.
    pub(crate) fn get(&self, atsign: &AtSign, key: &str) -> Option<Vec<u8>> {
        self.0
            .records
            .get(row(atsign, key.as_bytes()))
            .expect("raw read")
            .map(|bytes| bytes.to_vec())
    }
}

impl Embedded {
    /// See [`RawRecords`].
    #[cfg(test)]
    pub(crate) fn raw_records(&self) -> RawRecords {
        RawRecords(Arc::clone(&self.shared))
    }

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

    /// Queues `stage` for the writer thread, to be staged into its group's batch, and waits
    /// for its answer (after the group's fsync). `reads`: every row `stage` reads, so that it
    /// reads what the group's staged writes did to them ([`writer::Job::Stage`]). On an error
    /// `stage` must have staged nothing.
    async fn stage<T: Send + 'static>(
        &self,
        reads: Vec<Vec<u8>>,
        stage: impl FnOnce(&Shared, &mut fjall::OwnedWriteBatch) -> Result<T, StoreError>
            + Send
            + 'static,
    ) -> Result<T, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Stage {
            reads,
            stage: Box::new(move |shared, batch| {
                let before = batch.len();
                let result = stage(shared, batch);
                let staged = result.is_ok() && batch.len() > before;
                (staged, after_fsync(done, result))
            }),
        })?;
        answer.await.map_err(|_| self.gone())?
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
                (ok, after_fsync(done, result))
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use at_tests::TempDir;

    use super::*;
    use crate::store::{conformance, Store};

    /// Leases that expire unheld (their holder died) are swept, not on every take: the
    /// table never holds much more than twice the leases live.
    #[test]
    fn expired_leases_are_swept_and_the_table_stays_bounded() {
        let leases = HeldLeases::default();
        let a = AtSign::parse("@a").unwrap();
        let brief = std::time::Duration::from_millis(1);
        for round in 0..10 {
            for n in 0..1_000 {
                assert!(leases.take(&a, &format!("{round}:{n}"), brief));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let held = leases.0.lock().unwrap().held.len();
        assert!(held <= 2_000, "{held} leases in the table");
    }

    fn open(dir: &Path) -> Store {
        Store::new(Embedded::open(dir).expect("open embedded store"))
    }

    conformance::cases!({
        let dir = TempDir::new("store-conformance");
        let store = open(dir.path());
        (dir, store)
    });

    /// A store written before MessagePack holds records as JSON: they are served, and a
    /// write of one stores it in the new form; both read back after a restart.
    #[tokio::test]
    async fn records_stored_as_json_are_served_and_rewritten_in_messagepack() {
        use crate::store::encoding::{encode_record_json, MSGPACK_MARKER};
        let dir = TempDir::new("store-legacy-json");
        let backend = Embedded::open(dir.path()).unwrap();
        let raw = backend.raw_records();
        let store = Store::new(backend);
        let alice = conformance::sign("alice");
        store
            .create_atsign(&alice, &conformance::info("alice"))
            .await
            .unwrap();
        let legacy = conformance::legacy_records(&alice);
        for (key, record) in &legacy {
            raw.put(&alice, key, &encode_record_json(record).unwrap());
        }
        conformance::serves_legacy_records(&store, &alice).await;
        let first = |bytes: Option<Vec<u8>>| bytes.expect("stored")[0];
        assert_eq!(first(raw.get(&alice, &legacy[0].0)), MSGPACK_MARKER);
        for (key, _) in &legacy[1..] {
            assert_eq!(first(raw.get(&alice, key)), b'{', "{key} left as it was");
        }
        let rewritten = store.get(&alice, &legacy[0].0).await.unwrap();
        drop((raw, store));

        let store = open(dir.path());
        assert_eq!(store.get(&alice, &legacy[0].0).await.unwrap(), rewritten);
        for (key, record) in &legacy[1..] {
            assert_eq!(store.get(&alice, key).await.unwrap().as_ref(), Some(record));
        }
    }

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

    /// Notification writes of one group share its batch; one that reads what another of
    /// the group wrote (the same id) reads it: the second write of an id replaces the first
    /// row, and a removal of a row staged in the group removes it.
    #[tokio::test]
    async fn notification_writes_of_one_group_see_each_other() {
        use crate::store::{NotificationLog::Received, NotificationLogs};
        let dir = TempDir::new("store-staged-notifications");
        let store = Embedded::open(dir.path()).unwrap();
        let alice = conformance::sign("alice");
        let row = |id: &str, at_ms| conformance::notification(id, at_ms, i64::MAX);
        // While the writer holds this job, the others queue: they make one group with it.
        let hold = store.write(Kind::Durable, |_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        });
        let (x1, x2, y) = (row("x", 1), row("x", 2), row("y", 3));
        let (held, first, again, other, removed) = tokio::join!(
            hold,
            store.put_notification(&alice, Received, &x1),
            store.put_notification(&alice, Received, &x2),
            store.put_notification(&alice, Received, &y),
            store.remove_notification(&alice, Received, "y"),
        );
        held.unwrap();
        first.unwrap();
        again.unwrap();
        other.unwrap();
        assert!(removed.unwrap(), "y was there to remove");
        let rows = store
            .notifications(&alice, Received, None, usize::MAX)
            .await
            .unwrap();
        let kept: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.at_ms)).collect();
        assert_eq!(kept, [("x", 2)]);
        let x = store.get_notification(&alice, Received, "x").await.unwrap();
        assert_eq!(x.map(|r| r.at_ms), Some(2));
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
