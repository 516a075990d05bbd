//! The embedded backend: an append-only log on local disk, read into memory.
//!
//! # Format
//! `<data_dir>/registrations.log`, one record a line, readable with `cat`:
//! `+ @alice host:port` registers (or moves) an atSign, `- @alice` forgets it.
//!
//! # Why a log and not a database file
//! The admin commands (`at-directory register …`) run as separate processes while `serve` is
//! running, and both must see one store. Writers take an exclusive lock on
//! `registrations.lock`, append a record and `fsync` it before returning, so a write that
//! reported success survives a crash. Readers need no lock: they follow the log from the
//! offset they last read, like `tail -f`, and re-read it whole when it was replaced by
//! compaction (a new inode). A crash in the middle of an append leaves a line without its
//! `\n`; readers ignore it and the next writer cuts it off, since nobody was told it succeeded.
//!
//! Lookups are answered from memory. A serving process looks at the file at most once a
//! second on hits, and on every miss, so a registration made by an admin command is visible
//! to the very next lookup of that atSign.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use at_common::{Address, AtSign};

use super::{Backend, StoreError};

const LOG_FILE: &str = "registrations.log";
const LOCK_FILE: &str = "registrations.lock";
/// How stale a hit may be: another process's change shows up within this.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Compact on open once the log holds this many more records than live registrations.
const COMPACT_SLACK: u64 = 1024;

/// The log and the in-memory view of it.
pub struct Embedded {
    dir: PathBuf,
    log: PathBuf,
    lock: PathBuf,
    view: RwLock<View>,
    /// When the file was last looked at, in milliseconds since `born`.
    last_check_ms: AtomicU64,
    born: Instant,
}

/// What has been read of the log so far.
#[derive(Default)]
struct View {
    entries: HashMap<AtSign, Address>,
    /// (device, inode) of the file read, `None` while there is no file.
    file: Option<(u64, u64)>,
    /// Bytes of complete records read.
    offset: u64,
    /// Records read, live or not, to know when compaction pays.
    records: u64,
}

impl Embedded {
    /// Opens (or creates) the store in `dir`, compacting the log if it has grown mostly dead.
    pub fn open(dir: &Path) -> io::Result<Embedded> {
        fs::create_dir_all(dir)?;
        let store = Embedded {
            dir: dir.to_path_buf(),
            log: dir.join(LOG_FILE),
            lock: dir.join(LOCK_FILE),
            view: RwLock::new(View::default()),
            last_check_ms: AtomicU64::new(0),
            born: Instant::now(),
        };
        store.refresh()?;
        store.compact_if_mostly_dead()?;
        Ok(store)
    }

    fn get_now(&self, atsign: &AtSign) -> io::Result<Option<Address>> {
        let now_ms = self.born.elapsed().as_millis() as u64;
        let last = self.last_check_ms.load(Ordering::Relaxed);
        let checked = now_ms.saturating_sub(last) >= RECHECK_EVERY.as_millis() as u64;
        if checked {
            self.last_check_ms.store(now_ms, Ordering::Relaxed);
            self.refresh()?;
        }
        if let Some(found) = self.read_view().entries.get(atsign) {
            return Ok(Some(found.clone()));
        }
        if checked {
            return Ok(None);
        }
        // A miss may be a registration another process has just made.
        self.refresh()?;
        Ok(self.read_view().entries.get(atsign).cloned())
    }

    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        // A panic while holding the lock cannot leave the view half-updated in a way that
        // matters (the next refresh re-reads the file), so a poisoned lock is still usable.
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the view up to date with the file.
    fn refresh(&self) -> io::Result<()> {
        let on_disk = match fs::metadata(&self.log) {
            Ok(meta) => Some(((meta.dev(), meta.ino()), meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let seen = {
            let view = self.read_view();
            (view.file, view.offset)
        };
        match on_disk {
            None if seen.0.is_none() => return Ok(()),
            Some((id, len)) if (Some(id), len) == seen => return Ok(()),
            _ => {}
        }
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        let mut file = match File::open(&self.log) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                *view = View::default();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Identity and length of the file actually opened, not of what the path named a moment ago.
        let meta = file.metadata()?;
        let id = Some((meta.dev(), meta.ino()));
        if view.file != id || meta.len() < view.offset {
            *view = View {
                file: id,
                ..View::default()
            };
        }
        file.seek(SeekFrom::Start(view.offset))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)?;
        let complete = fresh.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in fresh[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            view.apply(line);
        }
        view.offset += complete as u64;
        Ok(())
    }

    /// Under the writers' lock: brings the view up to date, lets `decide` pick a record to
    /// append (or none), appends it durably. Returns whether a record was written.
    fn write_locked(&self, decide: impl FnOnce(&View) -> Option<String>) -> io::Result<bool> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        lock.lock()?;
        self.refresh()?;
        let Some(record) = decide(&self.read_view()) else {
            return Ok(false);
        };
        let mut log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.log)?;
        let was_empty = cut_torn_tail(&mut log)?;
        log.write_all(record.as_bytes())?;
        log.sync_data()?;
        if was_empty {
            // The file may be new: make its directory entry durable too.
            File::open(&self.dir)?.sync_all()?;
        }
        drop(log);
        self.refresh()?;
        Ok(true)
    }

    /// Rewrites the log with only live registrations when dead records dominate.
    fn compact_if_mostly_dead(&self) -> io::Result<()> {
        let (records, live) = {
            let view = self.read_view();
            (view.records, view.entries.len() as u64)
        };
        if records <= 2 * live + COMPACT_SLACK {
            return Ok(());
        }
        self.compact()
    }

    /// Rewrites the log with one `+` record per live registration, atomically (write, fsync, rename).
    pub fn compact(&self) -> io::Result<()> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        lock.lock()?;
        self.refresh()?;
        let mut entries: Vec<(AtSign, Address)> = self
            .read_view()
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.sort();
        let tmp = self.dir.join(format!("{LOG_FILE}.compacting"));
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        for (atsign, address) in &entries {
            out.write_all(put_record(atsign, address).as_bytes())?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, &self.log)?;
        File::open(&self.dir)?.sync_all()?;
        self.refresh()
    }
}

impl View {
    fn apply(&mut self, line: &[u8]) {
        self.records += 1;
        let text = String::from_utf8_lossy(line);
        let mut fields = text.split(' ');
        let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some("+"), Some(sign), Some(addr), None) => {
                match (AtSign::parse(sign), Address::parse(addr)) {
                    (Ok(sign), Ok(addr)) => {
                        self.entries.insert(sign, addr);
                        true
                    }
                    _ => false,
                }
            }
            (Some("-"), Some(sign), None, None) => match AtSign::parse(sign) {
                Ok(sign) => {
                    self.entries.remove(&sign);
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        if !parsed {
            tracing::warn!(record = %text, "skipping a malformed record in the registrations log");
        }
    }
}

fn put_record(atsign: &AtSign, address: &Address) -> String {
    format!("+ {atsign} {address}\n")
}

/// Cuts a last line left without its `\n` by a crash mid-append; returns whether the log is empty.
fn cut_torn_tail(log: &mut File) -> io::Result<bool> {
    let len = log.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    log.seek(SeekFrom::Start(len - 1))?;
    log.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(false);
    }
    let mut all = Vec::new();
    log.seek(SeekFrom::Start(0))?;
    log.read_to_end(&mut all)?;
    let keep = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(
        bytes = len - keep as u64,
        "cutting an unfinished record off the registrations log"
    );
    log.set_len(keep as u64)?;
    Ok(keep == 0)
}

#[async_trait::async_trait]
impl Backend for Embedded {
    async fn get(&self, atsign: &AtSign) -> Result<Option<Address>, StoreError> {
        Ok(self.get_now(atsign)?)
    }

    async fn put(&self, atsign: &AtSign, address: &Address) -> Result<(), StoreError> {
        self.write_locked(|_| Some(put_record(atsign, address)))?;
        Ok(())
    }

    async fn put_many(&self, entries: &[(AtSign, Address)]) -> Result<(), StoreError> {
        if !entries.is_empty() {
            self.write_locked(|_| Some(entries.iter().map(|(a, b)| put_record(a, b)).collect()))?;
        }
        Ok(())
    }

    async fn remove(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        Ok(self.write_locked(|view| {
            view.entries
                .contains_key(atsign)
                .then(|| format!("- {atsign}\n"))
        })?)
    }

    async fn list(&self) -> Result<Vec<(AtSign, Address)>, StoreError> {
        self.refresh()?;
        let mut all: Vec<_> = self
            .read_view()
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, addr, sign};
    use crate::store::Store;
    use at_tests::TempDir;

    #[actix_rt::test]
    async fn embedded_backend_passes_the_conformance_suite() {
        let tmp = TempDir::new("embedded-conformance");
        let dir = tmp.path();
        conformance::run(&Store::new(Embedded::open(dir).unwrap())).await;
    }

    #[actix_rt::test]
    async fn registrations_survive_reopening() {
        let tmp = TempDir::new("embedded-reopen");
        let dir = tmp.path();
        let store = Embedded::open(dir).unwrap();
        store
            .put(&sign("alice"), &addr("a.example:1"))
            .await
            .unwrap();
        store.put(&sign("bob"), &addr("b.example:2")).await.unwrap();
        store.remove(&sign("bob")).await.unwrap();
        drop(store);
        let again = Embedded::open(dir).unwrap();
        assert_eq!(
            again.get(&sign("alice")).await.unwrap(),
            Some(addr("a.example:1"))
        );
        assert_eq!(again.get(&sign("bob")).await.unwrap(), None);
    }

    #[actix_rt::test]
    async fn a_second_handle_sees_writes_on_its_next_miss() {
        let tmp = TempDir::new("embedded-two-handles");
        let dir = tmp.path();
        let server = Embedded::open(dir).unwrap();
        let admin = Embedded::open(dir).unwrap();
        assert_eq!(server.get(&sign("carol")).await.unwrap(), None);
        admin
            .put(&sign("carol"), &addr("c.example:3"))
            .await
            .unwrap();
        assert_eq!(
            server.get(&sign("carol")).await.unwrap(),
            Some(addr("c.example:3"))
        );
    }

    #[actix_rt::test]
    async fn an_unfinished_last_record_is_ignored_and_then_cut() {
        let tmp = TempDir::new("embedded-torn");
        let dir = tmp.path();
        let store = Embedded::open(dir).unwrap();
        store
            .put(&sign("alice"), &addr("a.example:1"))
            .await
            .unwrap();
        drop(store);
        // What a crash half-way through an append leaves behind.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.join(LOG_FILE))
            .unwrap();
        log.write_all(b"+ @bob b.exa").unwrap();
        drop(log);
        let store = Embedded::open(dir).unwrap();
        assert_eq!(store.get(&sign("bob")).await.unwrap(), None);
        store
            .put(&sign("carol"), &addr("c.example:3"))
            .await
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(LOG_FILE)).unwrap(),
            "+ @alice a.example:1\n+ @carol c.example:3\n"
        );
    }

    #[actix_rt::test]
    async fn compaction_keeps_only_live_registrations_and_readers_follow_it() {
        let tmp = TempDir::new("embedded-compact");
        let dir = tmp.path();
        let store = Embedded::open(dir).unwrap();
        let reader = Embedded::open(dir).unwrap();
        for port in 1..=20u16 {
            store
                .put(&sign("alice"), &addr(&format!("a.example:{port}")))
                .await
                .unwrap();
        }
        store.put(&sign("bob"), &addr("b.example:2")).await.unwrap();
        store.remove(&sign("bob")).await.unwrap();
        store.compact().unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(LOG_FILE)).unwrap(),
            "+ @alice a.example:20\n"
        );
        store
            .put(&sign("dave"), &addr("d.example:4"))
            .await
            .unwrap();
        assert_eq!(
            reader.get(&sign("dave")).await.unwrap(),
            Some(addr("d.example:4"))
        );
        assert_eq!(
            reader.list().await.unwrap(),
            vec![
                (sign("alice"), addr("a.example:20")),
                (sign("dave"), addr("d.example:4"))
            ]
        );
    }
}
