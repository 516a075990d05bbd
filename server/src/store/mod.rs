//! `Store`: every hosted atSign's keys, commit log, provisioning record and access counters.
//!
//! One store holds all atSigns of a node (one database, not one per atSign); every data method
//! is scoped by an [`AtSign`]. Backends: [`embedded`] (fjall on local disk, the default) and
//! [`redis`] (shared by every node of a cluster). Callers hold a [`Store`] and never name a
//! backend; [`open`] is the only place that chooses one.
//!
//! A backend implements one object-safe trait per concern: [`Provisioning`], [`Records`]
//! (records, commit log, access counters), [`NotificationLogs`] and [`Leases`], and [`Backend`]
//! for what it answers for itself. A test's fake implements only the concern it fakes, over a
//! real store for the rest ([`Store::with_records`]). The contract of each method is on the
//! matching [`Store`] method, the one place keys are bounded and operations counted; what is
//! built on the primitives (`put`, `remove`, exporting an atSign, expiring notifications) is
//! built there once for every backend.
//!
//! # Keys are stored as given
//! The store does not lower-case or otherwise canonicalise keys: the verb handlers pass the
//! canonical form (docs/storage.md#keys: lower-cased, `public:phone.wavi@alice`), and the store
//! keeps exactly those bytes. Whether a key is committed is decided by [`is_committed`] alone.
//!
//! # Commit log (docs/storage.md#commit-log)
//! Per atSign, commit ids start at 0, strictly increase and are never reused (the counter
//! survives [`Store::compact_commits`]; it goes only with [`Store::remove_atsign`]). Only the
//! latest entry per key is kept. A write and its commit entry land in one transaction. The log
//! is bounded by age ([`Store::compact_commits`]) and by size ([`Store::trim_commits`]).

pub mod embedded;
pub mod encoding;
pub mod feed;
pub mod redis;

#[cfg(test)]
pub(crate) mod conformance;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use at_common::config::{Backend as BackendKind, StoreConfig};
use at_common::error::AtError;
use at_common::limits::MAX_STORE_KEY_BYTES;
use at_common::metadata::{EpochMillis, Metadata};
use at_common::AtSign;
use serde::{Deserialize, Serialize};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (I/O, corruption, poisoned after a failed fsync).
    #[error("embedded store: {0}")]
    Embedded(#[from] fjall::Error),
    /// The embedded database is locked by another process (a running `at-server serve`).
    #[error("the store in {0} is in use by another process (is `at-server serve` running on it?)")]
    Locked(PathBuf),
    /// A file of the store could not be read or written.
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value could not be encoded or decoded.
    #[error("stored value: {0}")]
    Encoding(#[from] serde_json::Error),
    /// [`Store::create_atsign`] for an atSign that is already provisioned.
    #[error("{0} already exists")]
    AtSignExists(AtSign),
    /// [`Store::set_atsign_info`] for an atSign that is not provisioned.
    #[error("{0} does not exist")]
    NoSuchAtSign(AtSign),
    /// Stored bytes that do not decode (an unknown op code, a malformed atSign).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The blocking task that ran the call did not finish (panicked or runtime shut down).
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The store is closing, or its writer thread has stopped.
    #[error("the store is closed")]
    Closed,
    /// The store can never answer again without a restart ([`Backend::failure`]).
    #[error("{0}")]
    Failed(String),
    /// The journal could not be made durable; the write may be lost, and the store refuses
    /// further writes.
    #[error("store fsync failed: {0}")]
    Fsync(String),
    /// A [`Change`] refused the write with this protocol error; nothing was written.
    #[error("refused: {0:?}")]
    Refused(AtError),
    /// Redis failed or is unreachable (the connection is re-established by itself).
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A read-modify-write kept losing to concurrent writers of the same key.
    #[error("contended: {0}")]
    Contended(String),
}

/// One stored key: its value and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The value, as text (binary values are base64 by client convention); `None` for a key
    /// that has metadata only.
    pub value: Option<String>,
    pub metadata: Metadata,
}

/// The write a [`Change`] decides on, given what is stored under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, one per write: boxing would only cost
pub enum Mutation {
    /// Store `record`; with `op`, also a commit entry (if [`is_committed`] says the key is).
    Put {
        record: Record,
        op: Option<CommitOp>,
    },
    /// Delete the key; with `commit`, also a `-` entry (if the key class is committed), even
    /// when there was nothing to delete.
    Remove { commit: bool },
    /// Write nothing.
    Keep,
}

impl Mutation {
    /// Store `record` with the commit entry `op`.
    pub fn put(record: Record, op: CommitOp) -> Mutation {
        Mutation::Put {
            record,
            op: Some(op),
        }
    }
}

/// What [`Store::modify`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Whether the change wrote anything (`false` for [`Mutation::Keep`]).
    pub changed: bool,
    /// The write's commit entry, if it made one.
    pub commit_id: Option<u64>,
}

/// A read-modify-write of one key: sees the stored record (`None` if there is none) and
/// decides the [`Mutation`], or refuses with the protocol error to answer. `Fn`, not `FnOnce`:
/// a backend with optimistic transactions may run it again.
pub type Change = Box<dyn Fn(Option<&Record>) -> Result<Mutation, AtError> + Send + Sync>;

/// What a commit entry did to its key; `symbol` is its wire form in `sync` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitOp {
    /// `+`: a new key with value only.
    Update,
    /// `#`: metadata only (`update:meta`).
    UpdateMeta,
    /// `*`: value and metadata.
    UpdateAll,
    /// `-`: the key was deleted.
    Delete,
}

impl CommitOp {
    /// The reference's one-character form: `+`, `#`, `*`, `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            CommitOp::Update => "+",
            CommitOp::UpdateMeta => "#",
            CommitOp::UpdateAll => "*",
            CommitOp::Delete => "-",
        }
    }
}

/// One entry of an atSign's commit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEntry {
    pub commit_id: u64,
    pub key: String,
    pub op: CommitOp,
    /// When the store wrote the entry, ms since the epoch (UTC).
    pub op_time_ms: EpochMillis,
}

/// Where an atSign is in its life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AtSignStatus {
    /// Provisioned, waiting for its owner to onboard with the CRAM secret.
    New,
    /// Onboarded; served normally.
    Active,
}

/// How an atSign was provisioned on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtSignInfo {
    pub status: AtSignStatus,
    /// When it was provisioned, ms since the epoch.
    pub created_ms: EpochMillis,
    /// The TLS server name (SNI) its clients connect with.
    pub sni_label: String,
    /// The CRAM secret for onboarding; cleared once the owner has a PKAM key.
    pub cram_secret: Option<String>,
    /// Its own port, when the node serves a per-atSign port range (clients without SNI).
    #[serde(default)]
    pub port: Option<u16>,
    /// Suspended by the operator (`at-server suspend`): its data is kept, nothing is served
    /// until `resume`. Beside `status`, which it does not change, so resuming returns the
    /// atSign to where it was in its life.
    #[serde(default)]
    pub suspended: bool,
}

/// Which access counter [`Store::record_access`] bumps (`stats` topAtSigns / topKeys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// Counted by the atSign that asked (`from` is `@bob`).
    AtSign,
    /// Counted by the key that was asked for.
    Key,
}

/// `false` for the key classes that are never written to the commit log
/// (docs/storage.md#commit-log):
/// `private:`, `privatekey:`, `local:`, and hidden `public:_…` keys, except `public:__…`,
/// which is hidden but synced. The one place this rule lives.
pub fn is_committed(key: &str) -> bool {
    let hidden_public = key.starts_with("public:_") && !key.starts_with("public:__");
    !(key.starts_with("private:")
        || key.starts_with("privatekey:")
        || key.starts_with("local:")
        || hidden_public)
}

/// Which atSigns are hosted here, and how each was provisioned.
#[async_trait::async_trait]
pub trait Provisioning: Send + Sync {
    async fn create_atsign(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError>;

    async fn get_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignInfo>, StoreError>;

    async fn set_atsign_info(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError>;

    async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError>;

    async fn list_atsigns(&self) -> Result<Vec<AtSign>, StoreError>;

    /// The atSign whose TLS server name has `label` ([`AtSignInfo::sni_label`]). The default
    /// looks at every atSign; a backend with an index answers at once.
    async fn atsign_by_label(&self, label: &str) -> Result<Option<AtSign>, StoreError> {
        for atsign in self.list_atsigns().await? {
            if self
                .get_atsign(&atsign)
                .await?
                .is_some_and(|info| info.sni_label == label)
            {
                return Ok(Some(atsign));
            }
        }
        Ok(None)
    }

    /// Writes everything of one atSign exactly as `dump` holds it (commit ids and times
    /// included), atomically; [`StoreError::AtSignExists`] if the atSign is here already.
    async fn import_atsign(&self, dump: &AtSignDump) -> Result<(), StoreError>;

    /// Changes to the set of atSigns made through any handle on this store, for a node that
    /// shares it with other nodes; `None` when nothing else can change it (embedded). Must be
    /// called inside a tokio runtime.
    fn watch_atsigns(&self) -> Option<tokio::sync::mpsc::Receiver<AtSignsEvent>> {
        None
    }
}

/// An atSign's keys and their records, its commit log, and its access counters.
#[async_trait::async_trait]
pub trait Records: Send + Sync {
    async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<Record>, StoreError>;

    async fn modify(
        &self,
        atsign: &AtSign,
        key: &str,
        change: Change,
    ) -> Result<Written, StoreError>;

    async fn keys(&self, atsign: &AtSign, prefix: &str) -> Result<Vec<String>, StoreError>;

    async fn commits_since(
        &self,
        atsign: &AtSign,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CommitEntry>, StoreError>;

    async fn last_commit_id(&self, atsign: &AtSign) -> Result<Option<u64>, StoreError>;

    async fn compact_commits(
        &self,
        atsign: &AtSign,
        older_than_ms: EpochMillis,
    ) -> Result<usize, StoreError>;

    async fn trim_commits(&self, atsign: &AtSign, keep: usize) -> Result<usize, StoreError>;

    /// Adds `count` to the `kind` counter of `from` in `atsign`'s stats.
    async fn record_access(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        from: &str,
        count: u64,
    ) -> Result<(), StoreError>;

    async fn top_accesses(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        n: usize,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

/// An atSign's two notification logs, and telling every node of a new notification.
#[async_trait::async_trait]
pub trait NotificationLogs: Send + Sync {
    /// Stores `row` in `atsign`'s `log`, replacing the row with the same id.
    async fn put_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        row: &NotificationRow,
    ) -> Result<(), StoreError>;

    /// At most `limit` rows of `log` stored after `after_ms` (`None`: from the start), in
    /// order (time, then id). Expired rows not yet removed are included: callers filter.
    async fn notifications(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        after_ms: Option<EpochMillis>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError>;

    async fn get_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<Option<NotificationRow>, StoreError>;

    /// `false` if there was no such row.
    async fn remove_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<bool, StoreError>;

    /// Sends `payload` (a notification for `atsign`) to every node that follows `atsign`
    /// ([`NotificationLogs::watch_notifications`]), this one included; `false` when the store is not
    /// shared (embedded), so the caller delivers on this node alone.
    async fn publish_notification(
        &self,
        _atsign: &AtSign,
        _payload: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// What [`NotificationLogs::publish_notification`] sends, from every node, for the atSigns
    /// the node follows ([`feed::Follows`]); `None` when the store is not shared. Must be
    /// called inside a tokio runtime, once per node: it opens the node's subscription.
    fn watch_notifications(&self) -> Option<feed::NotificationWatch> {
        None
    }
}

/// Short exclusive rights shared by every node of the store: one taker at a time.
#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// Takes the lease `name` of `atsign` for `ttl` if nobody (no node, no other task) holds
    /// it: an exclusive right, for a while, to do one thing (deliver one notification, or
    /// expire it); says whether it did.
    async fn take_lease(
        &self,
        atsign: &AtSign,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Gives up the lease `name` of `atsign` before its time is up.
    async fn drop_lease(&self, atsign: &AtSign, name: &str) -> Result<(), StoreError>;
}

/// A whole backend: every concern, and what it answers for itself (its name in metrics,
/// readiness, a failure it cannot recover from, its size).
#[async_trait::async_trait]
pub trait Backend: Provisioning + Records + NotificationLogs + Leases {
    async fn storage_size(&self) -> Result<u64, StoreError>;

    /// The backend's name in metrics (`embedded`, `redis`).
    fn name(&self) -> &'static str;

    /// Whether the store answers now (readiness). Local stores always do.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Why the store can never answer again without a restart (its writer stopped), if so:
    /// the node then exits. A store that is only unreachable for now (Redis down) is not this.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Which of an atSign's two notification logs: what it received, or what it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationLog {
    Received,
    Sent,
}

impl NotificationLog {
    pub const BOTH: [NotificationLog; 2] = [NotificationLog::Received, NotificationLog::Sent];

    /// Its name in stored keys.
    pub fn name(self) -> &'static str {
        match self {
            NotificationLog::Received => "received",
            NotificationLog::Sent => "sent",
        }
    }
}

/// One stored notification: what the store orders and expires it by, and its body, which the
/// notifications code encodes and the store never reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: String,
    /// When it was stored, ms since the epoch: the log's order (then the id), and what
    /// `monitor:<epochMillis>` replays after.
    pub at_ms: EpochMillis,
    /// When it expires, ms since the epoch.
    pub expires_ms: EpochMillis,
    pub body: Vec<u8>,
}

/// Everything stored for one atSign, to copy it between stores ([`Store::export_atsign`],
/// [`Provisioning::import_atsign`]): what `at-server migrate` moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtSignDump {
    pub atsign: AtSign,
    pub info: AtSignInfo,
    /// Every key with its record, in key order.
    pub records: Vec<(String, Record)>,
    /// The commit log, in id order.
    pub commits: Vec<CommitEntry>,
    /// The id the next commit gets (one past the highest ever given, even if compacted away).
    pub next_commit: u64,
    /// The `stats` access counters.
    pub access: Vec<(AccessKind, String, u64)>,
    /// Both notification logs, each in its order.
    pub notifications: Vec<(NotificationLog, NotificationRow)>,
}

/// What [`Store::watch_atsigns`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtSignsEvent {
    /// This atSign was provisioned, changed or removed: look at it again.
    Changed(AtSign),
    /// Events may have been missed (the first subscription, a reconnect): look at them all.
    Resync,
}

/// A cheap-to-clone handle over the configured backend; `Send + Sync`, usable from any thread.
/// Every method is durable once it returns `Ok`.
///
/// Every key, key prefix, notification id and lease name is checked against
/// [`MAX_STORE_KEY_BYTES`] before a backend sees it ([`StoreError::Refused`], AT0016): the
/// grammar refuses longer ones already, and no caller can hand a backend a key it asserts on.
#[derive(Clone)]
pub struct Store {
    /// Every concern; provisioning and leases are asked here.
    backend: Arc<dyn Backend>,
    /// The backend's records and notification logs, unless a test put a fake in their place.
    records: Arc<dyn Records>,
    notifications: Arc<dyn NotificationLogs>,
    accesses: Arc<Mutex<Accesses>>,
}

/// Access counts not yet written ([`Store::record_access`]).
#[derive(Default)]
struct Accesses {
    pending: HashMap<(AtSign, AccessKind, String), u64>,
    since: Option<std::time::Instant>,
}

/// Access counts are written when this many distinct counters wait…
const ACCESS_BATCH: usize = 1000;
/// …or the oldest has waited this long.
const ACCESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a key (or prefix, id, lease name) longer than any a backend is given.
fn bounded(key: &str) -> Result<(), StoreError> {
    if key.len() <= MAX_STORE_KEY_BYTES {
        return Ok(());
    }
    tracing::warn!(
        bytes = key.len(),
        "a key past the store's bound reached the store"
    );
    Err(StoreError::Refused(AtError::with_detail(
        at_common::error::ErrorCode::InvalidKey,
        format!(
            "Key length {} exceeds the maximum allowed length of {}",
            key.chars().count(),
            at_common::limits::MAX_CACHED_KEY_CHARS
        ),
    )))
}

impl Store {
    pub fn new(backend: impl Backend + 'static) -> Store {
        let backend = Arc::new(backend);
        Store {
            records: backend.clone(),
            notifications: backend.clone(),
            backend,
            accesses: Arc::default(),
        }
    }

    /// This store with its records (keys, commit log, access counters) served by `records`
    /// instead: for a test whose fake fails or shapes that one concern.
    #[cfg(test)]
    pub fn with_records(mut self, records: impl Records + 'static) -> Store {
        self.records = Arc::new(records);
        self
    }

    /// This store with its notification logs served by `notifications` instead (as
    /// [`Store::with_records`]).
    #[cfg(test)]
    pub fn with_notifications(mut self, notifications: impl NotificationLogs + 'static) -> Store {
        self.notifications = Arc::new(notifications);
        self
    }

    /// Provisions `atsign`; [`StoreError::AtSignExists`] if it already is.
    pub async fn create_atsign(
        &self,
        atsign: &AtSign,
        info: &AtSignInfo,
    ) -> Result<(), StoreError> {
        self.backend.create_atsign(atsign, info).await
    }

    /// How `atsign` was provisioned, `None` if it is not hosted here.
    pub async fn get_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignInfo>, StoreError> {
        self.backend.get_atsign(atsign).await
    }

    /// Replaces the provisioning record; [`StoreError::NoSuchAtSign`] if there is none.
    pub async fn set_atsign_info(
        &self,
        atsign: &AtSign,
        info: &AtSignInfo,
    ) -> Result<(), StoreError> {
        self.backend.set_atsign_info(atsign, info).await
    }

    /// Deletes `atsign` and everything it owns: keys, commit log and its id counter (a
    /// re-provisioned atSign starts again at 0), access counters. `false` if it was not
    /// provisioned (its data, if any, is removed all the same).
    pub async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        {
            // Counts waiting in memory go with it, not written back after.
            let mut accesses = self.accesses.lock().unwrap_or_else(|e| e.into_inner());
            accesses.pending.retain(|(of, _, _), _| of != atsign);
        }
        self.backend.remove_atsign(atsign).await
    }

    /// Every provisioned atSign, sorted.
    pub async fn list_atsigns(&self) -> Result<Vec<AtSign>, StoreError> {
        self.backend.list_atsigns().await
    }

    /// The record stored under `key`. Data methods do not check that `atsign` is provisioned.
    pub async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<Record>, StoreError> {
        bounded(key)?;
        self.counted("read", self.records.get(atsign, key).await)
    }

    /// Counts one key read or write (and its failure) in the store metrics.
    fn counted<T>(&self, kind: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let m = crate::metrics::metrics();
        let backend = self.backend.name();
        m.store_operations.with_label_values(&[backend, kind]).inc();
        if result.is_err() {
            m.store_errors.with_label_values(&[backend]).inc();
        }
        result
    }

    /// Changes `key` by `change`, which sees what is stored now and decides the write
    /// ([`Mutation`]); reading and writing are one atomic step, whatever else writes the atSign
    /// meanwhile (a backend may call `change` more than once, e.g. to retry after a conflict).
    /// Says whether anything was written and the commit id of the write, if it made a commit
    /// entry. An error that `change` returns comes back as [`StoreError::Refused`] and nothing
    /// is written.
    pub async fn modify(
        &self,
        atsign: &AtSign,
        key: &str,
        change: impl Fn(Option<&Record>) -> Result<Mutation, AtError> + Send + Sync + 'static,
    ) -> Result<Written, StoreError> {
        bounded(key)?;
        let written = self.records.modify(atsign, key, Box::new(change)).await;
        self.counted("write", written)
    }

    /// Stores `record` under `key` (replacing any) and, unless [`is_committed`] says no, adds a
    /// commit entry `op` in the same transaction. Returns the commit id, `None` if uncommitted.
    pub async fn put(
        &self,
        atsign: &AtSign,
        key: &str,
        record: &Record,
        op: CommitOp,
    ) -> Result<Option<u64>, StoreError> {
        let record = record.clone();
        self.modify(atsign, key, move |_| Ok(Mutation::put(record.clone(), op)))
            .await
            .map(|written| written.commit_id)
    }

    /// Stores `record` without a commit entry, whatever the key: the reference's `skipCommit`
    /// writes (enrollments, OTPs, block list).
    pub async fn put_uncommitted(
        &self,
        atsign: &AtSign,
        key: &str,
        record: &Record,
    ) -> Result<(), StoreError> {
        let record = record.clone();
        self.modify(atsign, key, move |_| {
            Ok(Mutation::Put {
                record: record.clone(),
                op: None,
            })
        })
        .await
        .map(|_| ())
    }

    /// Deletes `key` and, for committed key classes, adds a `-` entry even if the key did not
    /// exist (the reference answers `data:<commitId>` anyway). Returns that commit id.
    pub async fn remove(&self, atsign: &AtSign, key: &str) -> Result<Option<u64>, StoreError> {
        self.modify(atsign, key, |_| Ok(Mutation::Remove { commit: true }))
            .await
            .map(|written| written.commit_id)
    }

    /// Deletes `key` without a commit entry (the counterpart of [`Store::put_uncommitted`]).
    pub async fn remove_uncommitted(&self, atsign: &AtSign, key: &str) -> Result<(), StoreError> {
        self.modify(atsign, key, |_| Ok(Mutation::Remove { commit: false }))
            .await
            .map(|_| ())
    }

    /// The keys of `atsign` that start with `prefix` (`""` for all), sorted bytewise.
    pub async fn keys(&self, atsign: &AtSign, prefix: &str) -> Result<Vec<String>, StoreError> {
        bounded(prefix)?;
        self.records.keys(atsign, prefix).await
    }

    /// At most `limit` entries with a commit id greater than `after` (`None`: from the start),
    /// in commit id order.
    pub async fn commits_since(
        &self,
        atsign: &AtSign,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CommitEntry>, StoreError> {
        self.records.commits_since(atsign, after, limit).await
    }

    /// The highest commit id ever given out for `atsign` (even if compacted away since),
    /// `None` before its first commit.
    pub async fn last_commit_id(&self, atsign: &AtSign) -> Result<Option<u64>, StoreError> {
        self.records.last_commit_id(atsign).await
    }

    /// Drops commit entries written before `older_than_ms`; returns how many. Ids are not
    /// reused afterwards. A backend may stop at the first entry, in id order, that is not old
    /// enough: ids follow write time, so only a clock stepped back delays some entries.
    pub async fn compact_commits(
        &self,
        atsign: &AtSign,
        older_than_ms: EpochMillis,
    ) -> Result<usize, StoreError> {
        self.records.compact_commits(atsign, older_than_ms).await
    }

    /// Drops the oldest commit entries of `atsign` beyond the newest `keep`; returns how many.
    /// Ids are not reused afterwards.
    pub async fn trim_commits(&self, atsign: &AtSign, keep: usize) -> Result<usize, StoreError> {
        self.records.trim_commits(atsign, keep).await
    }

    /// Adds one to the `kind` counter of `from` (an atSign or a key) in `atsign`'s stats.
    ///
    /// Counted in memory and written in batches ([`ACCESS_BATCH`] counters, or every
    /// [`ACCESS_EVERY`]), not one durable write each: an unauthenticated lookup must not cost
    /// an fsync. A crash loses at most the counts of one batch; `stats` counts are approximate.
    pub async fn record_access(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        from: &str,
    ) -> Result<(), StoreError> {
        bounded(from)?;
        let due = {
            let mut accesses = self.accesses.lock().unwrap_or_else(|e| e.into_inner());
            *accesses
                .pending
                .entry((atsign.clone(), kind, from.to_string()))
                .or_default() += 1;
            let since = *accesses.since.get_or_insert_with(std::time::Instant::now);
            accesses.pending.len() >= ACCESS_BATCH || since.elapsed() >= ACCESS_EVERY
        };
        if due {
            self.write_accesses().await?;
        }
        Ok(())
    }

    /// Writes the access counts waiting in memory; what a node does before it closes its store.
    pub async fn write_accesses(&self) -> Result<(), StoreError> {
        let pending = {
            let mut accesses = self.accesses.lock().unwrap_or_else(|e| e.into_inner());
            accesses.since = None;
            std::mem::take(&mut accesses.pending)
        };
        for ((atsign, kind, from), count) in pending {
            self.records
                .record_access(&atsign, kind, &from, count)
                .await?;
        }
        Ok(())
    }

    /// The `n` largest `kind` counters, largest first (ties by name).
    pub async fn top_accesses(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        n: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.write_accesses().await?;
        self.records.top_accesses(atsign, kind, n).await
    }

    /// Whether the store answers now: `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }

    /// See [`Backend::failure`].
    pub fn failure(&self) -> Option<String> {
        self.backend.failure()
    }

    /// Bytes used by the whole store (stats `secondaryStorageSize`).
    pub async fn storage_size(&self) -> Result<u64, StoreError> {
        self.backend.storage_size().await
    }

    /// Everything stored for `atsign`, or `None` if it is not provisioned here. Read with the
    /// ordinary reads, one after another: writes made meanwhile may be half in, so export an
    /// atSign while nothing writes to it (`at-server migrate` runs with the node stopped).
    pub async fn export_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignDump>, StoreError> {
        let Some(info) = self.get_atsign(atsign).await? else {
            return Ok(None);
        };
        let mut records = Vec::new();
        for key in self.keys(atsign, "").await? {
            if let Some(record) = self.get(atsign, &key).await? {
                records.push((key, record));
            }
        }
        let mut access = Vec::new();
        for kind in [AccessKind::AtSign, AccessKind::Key] {
            for (from, count) in self.top_accesses(atsign, kind, usize::MAX).await? {
                access.push((kind, from, count));
            }
        }
        let mut notifications = Vec::new();
        for log in NotificationLog::BOTH {
            for row in self.notifications(atsign, log, None, usize::MAX).await? {
                notifications.push((log, row));
            }
        }
        Ok(Some(AtSignDump {
            atsign: atsign.clone(),
            info,
            records,
            commits: self.commits_since(atsign, None, usize::MAX).await?,
            next_commit: self.last_commit_id(atsign).await?.map_or(0, |id| id + 1),
            access,
            notifications,
        }))
    }

    /// See [`NotificationLogs::put_notification`].
    pub async fn put_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        row: &NotificationRow,
    ) -> Result<(), StoreError> {
        bounded(&row.id)?;
        self.notifications.put_notification(atsign, log, row).await
    }

    /// See [`NotificationLogs::notifications`].
    pub async fn notifications(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        after_ms: Option<EpochMillis>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        self.notifications
            .notifications(atsign, log, after_ms, limit)
            .await
    }

    pub async fn get_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<Option<NotificationRow>, StoreError> {
        bounded(id)?;
        self.notifications.get_notification(atsign, log, id).await
    }

    pub async fn remove_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<bool, StoreError> {
        bounded(id)?;
        self.notifications
            .remove_notification(atsign, log, id)
            .await
    }

    /// Removes up to `limit` rows of `atsign` (both logs) expired at `now_ms`; how many went.
    /// Reads each log whole: notification logs are short-lived (their rows expire).
    pub async fn expire_notifications(
        &self,
        atsign: &AtSign,
        now_ms: EpochMillis,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for log in NotificationLog::BOTH {
            for row in self.notifications(atsign, log, None, usize::MAX).await? {
                if removed == limit {
                    return Ok(removed);
                }
                if row.expires_ms <= now_ms
                    && self.remove_notification(atsign, log, &row.id).await?
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// See [`NotificationLogs::publish_notification`].
    pub async fn publish_notification(
        &self,
        atsign: &AtSign,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        self.notifications
            .publish_notification(atsign, payload)
            .await
    }

    /// See [`NotificationLogs::watch_notifications`].
    pub fn watch_notifications(&self) -> Option<feed::NotificationWatch> {
        self.notifications.watch_notifications()
    }

    /// See [`Leases::take_lease`].
    pub async fn take_lease(
        &self,
        atsign: &AtSign,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        bounded(name)?;
        self.backend.take_lease(atsign, name, ttl).await
    }

    /// See [`Leases::drop_lease`].
    pub async fn drop_lease(&self, atsign: &AtSign, name: &str) -> Result<(), StoreError> {
        bounded(name)?;
        self.backend.drop_lease(atsign, name).await
    }

    /// See [`Provisioning::atsign_by_label`].
    pub async fn atsign_by_label(&self, label: &str) -> Result<Option<AtSign>, StoreError> {
        self.backend.atsign_by_label(label).await
    }

    /// See [`Provisioning::import_atsign`].
    pub async fn import_atsign(&self, dump: &AtSignDump) -> Result<(), StoreError> {
        self.backend.import_atsign(dump).await
    }

    /// See [`Provisioning::watch_atsigns`].
    pub fn watch_atsigns(&self) -> Option<tokio::sync::mpsc::Receiver<AtSignsEvent>> {
        self.backend.watch_atsigns()
    }
}

/// Opens the backend `config` names; the embedded one is `<data_dir>/store/`.
pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
    match config.backend {
        BackendKind::Embedded => {
            let dir = data_dir.to_path_buf();
            let backend =
                tokio::task::spawn_blocking(move || embedded::Embedded::open(&dir)).await??;
            Ok(Store::new(backend))
        }
        BackendKind::Redis => {
            let client = config.redis_client()?;
            let backend =
                redis::RedisStore::connect_client(client, &config.key_prefix, config.redis_wait())
                    .await?;
            Ok(Store::new(backend))
        }
    }
}

/// [`open`] for `serve`: a Redis that is not reachable yet is waited for (see
/// `at_directory::store::redis::until_reachable`).
pub async fn open_when_reachable(
    config: &StoreConfig,
    data_dir: &Path,
) -> Result<Store, StoreError> {
    use at_directory::store::redis::{may_pass, until_reachable};
    until_reachable(
        || open(config, data_dir),
        |error| matches!(error, StoreError::Redis(error) if may_pass(error)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_rule_follows_the_reference() {
        for key in [
            "public:phone.wavi@alice",
            "public:__hidden.wavi@alice",
            "phone.wavi@alice",
            "@bob:phone.wavi@alice",
            "cached:@alice:phone@bob",
            "shared_key.bob@alice",
        ] {
            assert!(is_committed(key), "{key}");
        }
        for key in [
            "private:secret@alice",
            "privatekey:at_pkam_publickey",
            "public:_hidden@alice",
            "local:draft@alice",
        ] {
            assert!(!is_committed(key), "{key}");
        }
    }

    #[test]
    fn op_symbols() {
        let symbols: Vec<_> = [
            CommitOp::Update,
            CommitOp::UpdateMeta,
            CommitOp::UpdateAll,
            CommitOp::Delete,
        ]
        .map(CommitOp::symbol)
        .into();
        assert_eq!(symbols, ["+", "#", "*", "-"]);
    }
}
