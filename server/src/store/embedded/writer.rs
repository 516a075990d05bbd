//! The writer thread: the only writer of the database, so its read-modify-writes are atomic
//! without locks and commit ids are handed out in the order writes are applied.
//!
//! # Group commit
//! It takes whatever queued up (at most [`GROUP_MAX`]), applies it, makes it durable with ONE
//! journal fsync, publishes the new durable snapshot, and only then answers every caller. An
//! acknowledged write survives `kill -9`; under load one fsync serves many writes.
//!
//! # Changes: decided on what the writer last wrote, staged into one batch per group
//! A [`Job::Change`] (a key's read-modify-write: nearly every write) is decided against the
//! writer's [`Hot`] state, what it last wrote of each recent key (record and commit id) and of
//! each atSign's commit counter, and staged into the group's batch, committed once. Before,
//! each change searched three memtables (about 2.5 µs each: they hold every version written
//! since their last flush) and committed its own batch (one journal `write` each). Measured
//! on `server-bench` (writer thread's CPU time over updates): about 30 µs per update before,
//! 22 µs after, and one journal `write` per group instead of one per update.
//!
//! A key changed twice in one group commits the staged batch before its second change, so a
//! batch never holds two writes of one row (fjall applies a batch's items in order today, but
//! does not promise what one row written twice in a batch becomes).
//!
//! Notification log writes ([`Job::Stage`]) are staged into the same batch: each names the
//! rows it reads (its id in the log's index), and one that reads a row a staged write of the
//! group touched commits the batch first, so it reads what that write did. Before, each was a
//! batch of its own, one journal `write` each (a notification costs the sender's node two:
//! queued, then delivered); in a flood of notifications those `write`s were about a quarter
//! of the writer's busy time (perf trace: 7 per fsync, now 2).
//!
//! Every other write ([`Job::Other`]: provisioning, access counters, compaction, import) first
//! commits the staged batch, then runs as its own batch on the live tree; those that touch key
//! rows ([`Kind::KeyRows`]) make the writer forget its hot state. The hot state is the
//! writer's alone and every write goes through the writer, so it cannot go stale otherwise.

use std::collections::{HashMap, HashSet};

use at_common::metadata::now_ms;
use at_common::AtSign;
use tokio::sync::oneshot;

use super::{be_u64, commit_row, encode_commit, row, Shared};
use crate::store::encoding::{decode_record, encode_record};
use crate::store::{is_committed, Change, CommitOp, Mutation, Record, StoreError, Written};

/// The most writes one group (one fsync) takes.
const GROUP_MAX: usize = 512;
/// The most one generation of the hot state holds (records as stored, plus their rows); the
/// hot state holds at most two (see [`Hot`]).
const HOT_GENERATION_BYTES: usize = 32 * 1024 * 1024;

/// One write for the writer thread.
pub(super) enum Job {
    /// A read-modify-write of `key` of `atsign`; answered after the fsync of its group.
    Change {
        atsign: AtSign,
        key: String,
        change: Change,
        done: oneshot::Sender<Result<Written, StoreError>>,
    },
    /// A write staged into the group's batch, answered after the group's fsync (a
    /// [`Kind::Durable`] write). `reads`: the rows it reads (and writes); `stage` stages its
    /// rows, returning whether it staged any and how to answer its caller. It stages nothing
    /// if it fails.
    Stage { reads: Vec<Vec<u8>>, stage: Stager },
    /// Any other write: `run` applies it as its own batch, returning whether it wrote anything
    /// and how to answer its caller.
    Other { kind: Kind, run: Apply },
}

/// What a [`Job::Other`] is, for the writer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Answered after the group's fsync, and failed if it fails; touches no key rows.
    Durable,
    /// Like `Durable`, and it touches key rows or the commit log: the hot state is forgotten.
    KeyRows,
    /// Counters: answered after the group's fsync, but not failed by it.
    Statistics,
}

/// Applies a [`Job::Other`]; says whether it wrote anything and how to answer its caller.
pub(super) type Apply = Box<dyn FnOnce(&Shared) -> (bool, Reply) + Send>;

/// How a [`Job::Other`]'s caller is answered, given the outcome of its group's fsync.
pub(super) type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Stages a [`Job::Stage`] into the group's batch; says whether it staged anything and how
/// to answer its caller.
pub(super) type Stager =
    Box<dyn FnOnce(&Shared, &mut fjall::OwnedWriteBatch) -> (bool, Reply) + Send>;

/// Runs the writer until every sender of `queue` is gone (the store closing); the writes
/// already queued are finished first.
///
/// A panic here (inside the database, or in a bug of ours around it) stops the writer for
/// good: the database may be half-way through a write, and only a restart (journal replay)
/// makes it whole. The reason is kept in `shared` ([`Shared::failure`]): the store then
/// answers every call with an error, `/readyz` says so, and the node exits non-zero so that
/// it is restarted. A panic in one write's own decision (its `change`) is not this: that
/// write alone fails ([`Writer::stage`]).
pub(super) fn run(shared: &Shared, queue: &std::sync::mpsc::Receiver<Job>) {
    let mut writer = Writer::new(shared);
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while let Ok(first) = queue.recv() {
            writer.apply(first);
            for _ in 1..GROUP_MAX {
                match queue.try_recv() {
                    Ok(next) => writer.apply(next),
                    Err(_) => break,
                }
            }
            writer.finish_group();
        }
    }));
    if let Err(panic) = served {
        let why = at_common::config::panic_message(panic.as_ref());
        tracing::error!(%why, "the store's writer stopped; the node must restart");
        shared.fail(format!("the store's writer stopped: {why}"));
    }
}

/// The writer's state across and within groups.
struct Writer<'a> {
    shared: &'a Shared,
    hot: Hot,
    /// The group's staged writes, committed as one batch.
    batch: fjall::OwnedWriteBatch,
    /// What each staged change wrote, and its caller.
    staged: Vec<(Written, oneshot::Sender<Result<Written, StoreError>>)>,
    /// The callers of the staged [`Job::Stage`] writes.
    staged_others: Vec<Reply>,
    /// The rows the staged writes read or wrote: record rows, notification ids. (The same
    /// bytes in two tables at worst commit a batch early.)
    staged_rows: HashSet<Vec<u8>>,
    /// Every caller of the group, answered after its fsync.
    answers: Vec<Answer>,
    /// Whether the group wrote anything (and so needs an fsync).
    wrote: bool,
}

/// A caller waiting for its group's fsync.
enum Answer {
    Change(
        oneshot::Sender<Result<Written, StoreError>>,
        Result<Written, StoreError>,
    ),
    Other(Kind, Reply),
}

impl<'a> Writer<'a> {
    fn new(shared: &'a Shared) -> Writer<'a> {
        Writer {
            shared,
            hot: Hot::default(),
            batch: shared.db.batch(),
            staged: Vec::new(),
            staged_others: Vec::new(),
            staged_rows: HashSet::new(),
            answers: Vec::new(),
            wrote: false,
        }
    }

    fn apply(&mut self, job: Job) {
        match job {
            Job::Change {
                atsign,
                key,
                change,
                done,
            } => match self.stage(&atsign, &key, &change) {
                // A Keep too: it was decided on staged writes, which may yet fail.
                Ok(written) => self.staged.push((written, done)),
                Err(e) => self.answers.push(Answer::Change(done, Err(e))),
            },
            Job::Stage { reads, stage } => {
                if reads.iter().any(|row| self.staged_rows.contains(row)) {
                    self.commit_staged();
                }
                match stage(self.shared, &mut self.batch) {
                    (true, reply) => {
                        self.staged_rows.extend(reads);
                        self.staged_others.push(reply);
                    }
                    // Failed, or nothing to write: answered with the group.
                    (false, reply) => self.answers.push(Answer::Other(Kind::Durable, reply)),
                }
            }
            Job::Other { kind, run } => {
                self.commit_staged();
                let (wrote, reply) = run(self.shared);
                self.wrote |= wrote;
                if kind == Kind::KeyRows {
                    self.hot.forget();
                }
                self.answers.push(Answer::Other(kind, reply));
            }
        }
    }

    /// Decides `change` of `key` and stages its rows: record, and for a committed key class
    /// its commit entry (dropping the key's older one), index row and the atSign's counter.
    /// Everything that can fail happens before anything is staged.
    fn stage(
        &mut self,
        atsign: &AtSign,
        key: &str,
        change: &Change,
    ) -> Result<Written, StoreError> {
        let record_row = row(atsign, key.as_bytes());
        if self.staged_rows.contains(&record_row) {
            self.commit_staged();
        }
        let committed = is_committed(key);
        let next_id = match committed {
            true => Some(self.hot.next_id(self.shared, atsign)?),
            false => None,
        };
        let state = self.hot.key(self.shared, &record_row, committed)?;
        // The caller's decision, run here: a panic in it fails this write only.
        let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            change(state.record.as_ref())
        }))
        .map_err(|panic| {
            let why = at_common::config::panic_message(panic.as_ref());
            tracing::error!(%why, "a write's change panicked; nothing of it was written");
            StoreError::Corrupt(format!("a write's change panicked: {why}"))
        })?;
        let (record, op) = match decided.map_err(StoreError::Refused)? {
            Mutation::Keep => {
                return Ok(Written {
                    changed: false,
                    commit_id: None,
                })
            }
            Mutation::Put { record, op } => (Some(record), op),
            Mutation::Remove { commit } => (None, commit.then_some(CommitOp::Delete)),
        };
        let encoded = record.as_ref().map(encode_record).transpose()?;
        let size = std::mem::size_of::<KeyState>()
            + record_row.len()
            + encoded.as_ref().map_or(0, Vec::len);

        let shared = self.shared;
        match encoded {
            Some(bytes) => self
                .batch
                .insert(&shared.records, record_row.clone(), bytes),
            None => self.batch.remove(&shared.records, record_row.clone()),
        }
        let commit_id = match (op, next_id) {
            (Some(op), Some(id)) => {
                if let Some(older) = state.commit_id {
                    self.batch
                        .remove(&shared.commits, commit_row(atsign, older));
                }
                self.batch
                    .insert(&shared.commit_index, record_row.clone(), id.to_be_bytes());
                self.batch.insert(
                    &shared.commits,
                    commit_row(atsign, id),
                    encode_commit(op, now_ms(), key),
                );
                state.commit_id = Some(id);
                Some(id)
            }
            _ => None,
        };
        state.record = record;
        if commit_id.is_some() {
            self.hot.took_id(atsign);
        }
        self.hot.resize(&record_row, size);
        self.staged_rows.insert(record_row);
        Ok(Written {
            changed: true,
            commit_id,
        })
    }

    /// Commits the staged batch (with the counters it advanced) into the tree, not yet
    /// durably; its callers then wait for the group's fsync. If it fails, they fail, and the
    /// hot state (which holds their writes) is forgotten.
    fn commit_staged(&mut self) {
        if self.staged.is_empty() && self.staged_others.is_empty() {
            return;
        }
        for (atsign, next) in self.hot.take_advanced() {
            self.batch.insert(
                &self.shared.next_commit,
                atsign.as_str(),
                next.to_be_bytes(),
            );
        }
        let batch = std::mem::replace(&mut self.batch, self.shared.db.batch());
        let has_rows = !batch.is_empty();
        self.staged_rows.clear();
        let committed = batch.commit().map_err(|e| {
            tracing::error!(error = %e, "store journal write failed; refusing further writes");
            e.to_string()
        });
        if committed.is_err() {
            self.hot.forget();
        }
        self.wrote |= has_rows && committed.is_ok();
        for (written, done) in self.staged.drain(..) {
            let outcome = match &committed {
                Ok(()) => Ok(written),
                Err(e) => Err(StoreError::Fsync(e.clone())),
            };
            self.answers.push(Answer::Change(done, outcome));
        }
        for reply in self.staged_others.drain(..) {
            match &committed {
                Ok(()) => self.answers.push(Answer::Other(Kind::Durable, reply)),
                Err(e) => reply(Err(StoreError::Fsync(e.clone()))),
            }
        }
    }

    /// Commits what is staged, makes the group durable with one fsync, publishes it to
    /// readers, answers every caller, and trims the hot state. A failed fsync fails every
    /// durable write of the group (fjall then refuses further writes: a disk that loses
    /// fsyncs is not trusted).
    fn finish_group(&mut self) {
        self.commit_staged();
        // Counters-only groups are published (and so made durable) too, to be seen at once.
        let fsync = match std::mem::take(&mut self.wrote) {
            true => self.shared.persist_and_publish().map_err(|e| {
                tracing::error!(error = %e, "store fsync failed; refusing further writes");
                self.hot.forget();
                e.to_string()
            }),
            false => Ok(()),
        };
        for answer in self.answers.drain(..) {
            match answer {
                Answer::Change(done, outcome) => {
                    let outcome = match &fsync {
                        Err(e) => Err(StoreError::Fsync(e.clone())),
                        Ok(()) => outcome,
                    };
                    let _ = done.send(outcome);
                }
                Answer::Other(kind, reply) => reply(match (&fsync, kind) {
                    (Err(e), Kind::Durable | Kind::KeyRows) => Err(StoreError::Fsync(e.clone())),
                    _ => Ok(()),
                }),
            }
        }
        if self.hot.bytes > HOT_GENERATION_BYTES {
            self.hot.rotate();
        }
    }
}

/// What the writer last wrote: recent keys and commit counters. Always what the live tree
/// holds plus what is staged, since every write goes through the writer.
///
/// Keys are kept in two generations, a cheap approximation of least-recently-written: a full
/// `keys` becomes `older` (dropping the generation before), and a key found in `older` moves
/// back to `keys`. So a working set up to two generations stays held, and one that outgrows
/// them costs tree reads only for the keys that fell out. (Forgetting everything at the
/// limit, as before, made every key be read back from the tree again: on `server-bench`, 50
/// atSigns × 1 000 keys, 22 300 updates a second against 27 800 with two generations.)
#[derive(Default)]
struct Hot {
    /// By record row (`atsign \0 key`): written in this generation.
    keys: HashMap<Vec<u8>, KeyState>,
    /// Written in the generation before, and not since.
    older: HashMap<Vec<u8>, KeyState>,
    /// The id each atSign's next commit gets, and whether the staged batch advanced it.
    next_ids: HashMap<AtSign, (u64, bool)>,
    /// The atSigns whose counter the staged batch advanced.
    advanced: Vec<AtSign>,
    /// About what `keys` holds on the heap.
    bytes: usize,
    /// Keys read from the tree because neither generation held them.
    misses: u64,
}

/// One key as last written.
#[derive(Default)]
struct KeyState {
    record: Option<Record>,
    /// Its entry in the commit log (kept after a delete: the `-` entry).
    commit_id: Option<u64>,
    /// Its share of [`Hot::bytes`].
    size: usize,
}

impl Hot {
    /// The key at `record_row`, read from the tree if not held.
    fn key(
        &mut self,
        shared: &Shared,
        record_row: &[u8],
        committed: bool,
    ) -> Result<&mut KeyState, StoreError> {
        if !self.keys.contains_key(record_row) {
            if let Some((row, state)) = self.older.remove_entry(record_row) {
                self.bytes += state.size;
                self.keys.insert(row, state);
                return Ok(self.keys.get_mut(record_row).expect("inserted above"));
            }
            self.misses += 1;
            let record = shared
                .records
                .get(record_row)?
                .map(|bytes| decode_record(&bytes))
                .transpose()?;
            let commit_id = match committed {
                true => shared
                    .commit_index
                    .get(record_row)?
                    .map(|bytes| be_u64(&bytes))
                    .transpose()?,
                false => None,
            };
            let state = KeyState {
                record,
                commit_id,
                size: 0,
            };
            self.keys.insert(record_row.to_vec(), state);
        }
        Ok(self.keys.get_mut(record_row).expect("inserted above"))
    }

    /// Sets what the key at `record_row` accounts for.
    fn resize(&mut self, record_row: &[u8], size: usize) {
        if let Some(state) = self.keys.get_mut(record_row) {
            self.bytes = self.bytes - state.size + size;
            state.size = size;
        }
    }

    /// The id `atsign`'s next commit gets, read from the tree if not held.
    fn next_id(&mut self, shared: &Shared, atsign: &AtSign) -> Result<u64, StoreError> {
        if let Some((next, _)) = self.next_ids.get(atsign) {
            return Ok(*next);
        }
        let next = match shared.next_commit.get(atsign.as_str())? {
            Some(bytes) => be_u64(&bytes)?,
            None => 0,
        };
        self.next_ids.insert(atsign.clone(), (next, false));
        Ok(next)
    }

    /// `atsign`'s next id was used (it was read by [`Hot::next_id`] just before).
    fn took_id(&mut self, atsign: &AtSign) {
        if let Some((next, advanced)) = self.next_ids.get_mut(atsign) {
            *next += 1;
            if !std::mem::replace(advanced, true) {
                self.advanced.push(atsign.clone());
            }
        }
    }

    /// The counters the staged batch advanced, to be written with it.
    fn take_advanced(&mut self) -> Vec<(AtSign, u64)> {
        let mut out = Vec::with_capacity(self.advanced.len());
        for atsign in self.advanced.drain(..) {
            if let Some((next, advanced)) = self.next_ids.get_mut(&atsign) {
                *advanced = false;
                out.push((atsign, *next));
            }
        }
        out
    }

    /// Starts a new generation; the one before the last is dropped.
    fn rotate(&mut self) {
        self.older = std::mem::take(&mut self.keys);
        self.bytes = 0;
    }

    fn forget(&mut self) {
        *self = Hot::default();
    }
}

#[cfg(test)]
mod tests {
    use at_common::error::{AtError, ErrorCode};
    use at_tests::TempDir;
    use fjall::Readable;

    use super::super::decode_commit;
    use super::*;
    use crate::store::conformance::{record, sign};

    type Answer = oneshot::Receiver<Result<Written, StoreError>>;

    /// A change of `key` to `value`, appended to what it sees (`seen|value`).
    fn append(atsign: &AtSign, key: &str, value: &str) -> (Job, Answer) {
        let value = value.to_string();
        let (done, answer) = oneshot::channel();
        let change: Change = Box::new(move |current| {
            let seen = current.and_then(|r| r.value.clone());
            let next = seen.map_or(value.clone(), |seen| format!("{seen}|{value}"));
            Ok(Mutation::put(record(&next, 0), CommitOp::Update))
        });
        let job = Job::Change {
            atsign: atsign.clone(),
            key: key.to_string(),
            change,
            done,
        };
        (job, answer)
    }

    fn value(shared: &Shared, atsign: &AtSign, key: &str) -> Option<String> {
        let bytes = shared
            .snapshot()
            .get(&shared.records, row(atsign, key.as_bytes()));
        let bytes = bytes.expect("read")?;
        decode_record(&bytes).expect("decode").value
    }

    fn log(shared: &Shared, atsign: &AtSign) -> Vec<(u64, String)> {
        let rows = row(atsign, b"");
        shared
            .snapshot()
            .prefix(&shared.commits, &rows)
            .map(|guard| {
                let (row, value) = guard.into_inner().expect("read");
                let id = be_u64(&row[rows.len()..]).expect("id");
                (id, decode_commit(id, &value).expect("entry").key)
            })
            .collect()
    }

    fn commit_id(answer: Answer) -> Option<u64> {
        answer
            .blocking_recv()
            .expect("answered")
            .expect("written")
            .commit_id
    }

    #[test]
    fn a_key_changed_twice_in_one_group_sees_its_first_change() {
        let dir = TempDir::new("writer-twice");
        let shared = Shared::open(dir.path()).expect("open");
        let mut writer = Writer::new(&shared);
        let a = sign("twice");
        let (first, first_id) = append(&a, "k@twice", "v1");
        let (second, second_id) = append(&a, "k@twice", "v2");
        let (other, other_id) = append(&a, "j@twice", "w1");
        for job in [first, second, other] {
            writer.apply(job);
        }
        assert_eq!(
            value(&shared, &a, "k@twice"),
            None,
            "not visible before the fsync"
        );
        writer.finish_group();

        assert_eq!(
            [
                commit_id(first_id),
                commit_id(second_id),
                commit_id(other_id)
            ],
            [Some(0), Some(1), Some(2)]
        );
        assert_eq!(value(&shared, &a, "k@twice").as_deref(), Some("v1|v2"));
        assert_eq!(
            log(&shared, &a),
            [(1, "k@twice".to_string()), (2, "j@twice".to_string())],
            "only the latest entry of k"
        );

        // A writer started afresh (as after a restart) reads the counter and entries back.
        let mut fresh = Writer::new(&shared);
        let (again, again_id) = append(&a, "k@twice", "v3");
        fresh.apply(again);
        fresh.finish_group();
        assert_eq!(commit_id(again_id), Some(3));
        assert_eq!(value(&shared, &a, "k@twice").as_deref(), Some("v1|v2|v3"));
        assert_eq!(
            log(&shared, &a),
            [(2, "j@twice".to_string()), (3, "k@twice".to_string())]
        );
    }

    #[test]
    fn a_key_written_in_either_generation_is_not_read_back() {
        let dir = TempDir::new("writer-generations");
        let shared = Shared::open(dir.path()).expect("open");
        let mut writer = Writer::new(&shared);
        let a = sign("generations");
        let write = |writer: &mut Writer, key: &str, value: &str| {
            let (job, answer) = append(&a, key, value);
            writer.apply(job);
            writer.finish_group();
            commit_id(answer)
        };
        write(&mut writer, "k@generations", "v1");
        write(&mut writer, "j@generations", "w1");
        assert_eq!(writer.hot.misses, 2, "new keys are looked up once");

        writer.hot.rotate();
        // k, found in the older generation, moves to the new one: the next rotation keeps it.
        write(&mut writer, "k@generations", "v2");
        writer.hot.rotate();
        write(&mut writer, "k@generations", "v3");
        assert_eq!(writer.hot.misses, 2, "held keys are not read from the tree");
        // j was not written for two rotations: it is read back, and is what was written.
        writer.hot.rotate();
        writer.hot.rotate();
        assert_eq!(write(&mut writer, "j@generations", "w2"), Some(4));
        assert_eq!(writer.hot.misses, 3);
        assert_eq!(
            value(&shared, &a, "k@generations").as_deref(),
            Some("v1|v2|v3")
        );
        assert_eq!(
            value(&shared, &a, "j@generations").as_deref(),
            Some("w1|w2")
        );
        assert_eq!(
            log(&shared, &a),
            [
                (3, "k@generations".to_string()),
                (4, "j@generations".to_string())
            ]
        );
    }

    #[test]
    fn a_refused_change_leaves_the_rest_of_its_group() {
        let dir = TempDir::new("writer-refused");
        let shared = Shared::open(dir.path()).expect("open");
        let mut writer = Writer::new(&shared);
        let a = sign("refused");
        let (refused_done, refused) = oneshot::channel();
        let (before, before_id) = append(&a, "k@refused", "v1");
        let (after, after_id) = append(&a, "k@refused", "v2");
        writer.apply(before);
        writer.apply(Job::Change {
            atsign: a.clone(),
            key: "k@refused".into(),
            change: Box::new(|_| Err(AtError::new(ErrorCode::KeyNotFound))),
            done: refused_done,
        });
        writer.apply(after);
        writer.finish_group();
        assert!(matches!(
            refused.blocking_recv().expect("answered"),
            Err(StoreError::Refused(_))
        ));
        assert_eq!(
            [commit_id(before_id), commit_id(after_id)],
            [Some(0), Some(1)]
        );
        assert_eq!(value(&shared, &a, "k@refused").as_deref(), Some("v1|v2"));
    }
}
