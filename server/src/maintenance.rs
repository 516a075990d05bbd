//! Background upkeep of every hosted atSign's data, on a timer: removes keys whose `expiresAt`
//! has passed, bounds each commit log by age and by size, and removes expired notifications
//! (docs/storage.md#expiry-and-compaction, docs/storage.md#commit-log).
//!
//! Reads already hide an expired key and remove it when they meet it; maintenance removes the
//! ones nobody reads, so synced clients get their `-` entry, as from the reference's
//! expired-keys job. It removes through [`lifetime::expire`], the read path's own rule, which
//! re-checks expiry inside the write: an update that lands meanwhile is never lost. Every
//! write is one atomic step in the store, so no actor is involved.
//!
//! # Bounded rounds
//! A [`Maintenance::round`] runs every `maintenance_interval_secs`. It visits at most
//! [`Budget::atsigns`] atSigns and looks at most [`Budget::keys`] keys, and the next round
//! goes on where it stopped (mid-atSign if need be), so a pass over 10 000 atSigns is spread
//! over rounds and the node keeps serving. An atSign's commit log is compacted once per pass,
//! after its keys. A store error is logged and the round moves on to the next atSign.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use at_common::metadata::{now_ms, EpochMillis};
use at_common::AtSign;
use tokio::time::{Instant, MissedTickBehavior};

use crate::lifetime::{self, is_expired};
use crate::store::{Store, StoreError};

/// What maintenance does and how often (from [`crate::config::ServerConfig::maintenance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Time between rounds.
    pub interval: Duration,
    /// Commit entries older than this are dropped (`commit_log_keep_days`).
    pub keep_commits_ms: i64,
    /// The most commit entries kept per atSign (`commit_log_max_entries`).
    pub max_commits: usize,
    /// What an atSign keeps of the notifications it received.
    pub quota: crate::notifications::Quota,
}

/// The most work one round does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// AtSigns visited, including one left part-way.
    pub atsigns: usize,
    /// Keys looked at, over all those atSigns.
    pub keys: usize,
}

impl Default for Budget {
    /// Key reads take microseconds and an atSign's visit a few short scans; what costs is a
    /// removal or compaction, a write that waits for its fsync, and only those do work.
    fn default() -> Budget {
        Budget {
            atsigns: 500,
            keys: 20_000,
        }
    }
}

/// What one round did, logged at debug.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// AtSigns visited, including one left part-way.
    pub atsigns: usize,
    pub keys_checked: usize,
    /// Expired keys removed.
    pub expired: usize,
    /// Commit entries dropped for their age.
    pub compacted: usize,
    /// Commit entries dropped because the log was over its size.
    pub trimmed: usize,
    /// Expired notifications removed.
    pub notifications_expired: usize,
    /// Store errors met (each one logged).
    pub errors: usize,
}

/// Keys looked at between two yields to the runtime: key reads never wait, and maintenance
/// shares its thread with the accept loops.
const YIELD_EVERY: usize = 64;

/// The maintenance task's state: where the current pass over the atSigns is.
pub struct Maintenance {
    store: Store,
    settings: Settings,
    budget: Budget,
    /// AtSigns still to visit in this pass, next first; refilled when a pass ends.
    pending: VecDeque<AtSign>,
    /// The last key looked at in the first pending atSign, when a round stopped inside it.
    resume_after: Option<String>,
}

/// Runs a round every `settings.interval`, the first one interval after start, for as long as
/// the returned future is polled.
pub fn run(store: Store, settings: Settings) -> impl Future<Output = ()> + 'static {
    let interval = settings.interval;
    let mut maintenance = Maintenance::new(store, settings, Budget::default());
    async move {
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        // A slow round postpones the next one rather than causing a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let report = maintenance.round(now_ms()).await;
            if report.expired + report.compacted + report.trimmed + report.notifications_expired > 0
            {
                tracing::debug!(?report, "maintenance round");
            }
        }
    }
}

impl Maintenance {
    pub fn new(store: Store, settings: Settings, budget: Budget) -> Maintenance {
        Maintenance {
            store,
            settings,
            budget,
            pending: VecDeque::new(),
            resume_after: None,
        }
    }

    /// One round at time `now`: goes on with the current pass (or starts one) until it is
    /// done or the [`Budget`] is spent.
    pub async fn round(&mut self, now: EpochMillis) -> Report {
        let mut report = Report::default();
        if self.pending.is_empty() {
            match self.store.list_atsigns().await {
                Ok(all) => self.pending = all.into(),
                Err(error) => {
                    tracing::warn!(%error, "maintenance: cannot list the atSigns");
                    report.errors += 1;
                    return report;
                }
            }
        }
        while report.atsigns < self.budget.atsigns && report.keys_checked < self.budget.keys {
            let Some(atsign) = self.pending.front().cloned() else {
                break;
            };
            report.atsigns += 1;
            if !self.expire_keys(&atsign, now, &mut report).await {
                break; // out of keys: the next round goes on inside this atSign
            }
            self.compact(&atsign, now, &mut report).await;
            self.pending.pop_front();
        }
        report
    }

    /// Looks at `atsign`'s keys from where the last round stopped, removing expired ones, while
    /// the round has keys left. Returns whether it got through them all.
    async fn expire_keys(
        &mut self,
        atsign: &AtSign,
        now: EpochMillis,
        report: &mut Report,
    ) -> bool {
        let resume_after = self.resume_after.take();
        let keys = match self.store.keys(atsign, "").await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%atsign, %error, "maintenance: cannot list keys");
                report.errors += 1;
                return true;
            }
        };
        // Sorted bytewise, as `String` orders: keys added or removed meanwhile do not matter.
        let start = resume_after.map_or(0, |last| keys.partition_point(|key| *key <= last));
        let left = self.budget.keys.saturating_sub(report.keys_checked);
        let share = &keys[start..keys.len().min(start.saturating_add(left))];
        for (n, key) in share.iter().enumerate() {
            if n % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
            report.keys_checked += 1;
            if let Err(error) = self.expire_key(atsign, key, now, report).await {
                // Its other keys wait for the next pass; one line per atSign, not per key.
                tracing::warn!(%atsign, key, %error, "maintenance: cannot expire a key");
                report.errors += 1;
                return true;
            }
        }
        match share.last() {
            Some(last) if start + share.len() < keys.len() => {
                self.resume_after = Some(last.clone());
                false
            }
            _ => true,
        }
    }

    /// Removes `key` if it has expired at `now`.
    async fn expire_key(
        &self,
        atsign: &AtSign,
        key: &str,
        now: EpochMillis,
        report: &mut Report,
    ) -> Result<(), StoreError> {
        let Some(record) = self.store.get(atsign, key).await? else {
            return Ok(());
        };
        if is_expired(&record.metadata, now)
            && lifetime::expire(&self.store, atsign, key, now).await?
        {
            report.expired += 1;
            tracing::debug!(%atsign, key, "maintenance: removed an expired key");
        }
        Ok(())
    }

    /// Drops `atsign`'s commit entries that are too old, then the oldest beyond the size bound.
    async fn compact(&self, atsign: &AtSign, now: EpochMillis, report: &mut Report) {
        let cutoff = now.saturating_sub(self.settings.keep_commits_ms);
        match self.store.compact_commits(atsign, cutoff).await {
            Ok(0) => {}
            Ok(entries) => {
                report.compacted += entries;
                tracing::debug!(%atsign, entries, "maintenance: dropped old commit entries");
            }
            Err(error) => {
                tracing::warn!(%atsign, %error, "maintenance: cannot compact the commit log");
                report.errors += 1;
            }
        }
        match self
            .store
            .trim_commits(atsign, self.settings.max_commits)
            .await
        {
            Ok(0) => {}
            Ok(entries) => {
                report.trimmed += entries;
                tracing::debug!(%atsign, entries, "maintenance: dropped entries over the bound");
            }
            Err(error) => {
                tracing::warn!(%atsign, %error, "maintenance: cannot trim the commit log");
                report.errors += 1;
            }
        }
        // Bounded like keys: what is left waits for the next pass.
        match self
            .store
            .expire_notifications(atsign, now, self.budget.keys)
            .await
        {
            Ok(removed) => report.notifications_expired += removed,
            Err(error) => {
                tracing::warn!(%atsign, %error, "maintenance: cannot expire notifications");
                report.errors += 1;
            }
        }
        let quota = self.settings.quota;
        match crate::notifications::enforce_quota(&self.store, atsign, quota).await {
            Ok(kept) => report.notifications_expired += kept.removed,
            Err(error) => {
                tracing::warn!(%atsign, %error, "maintenance: cannot keep the notification quota");
                report.errors += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use at_common::metadata::Metadata;
    use at_tests::TempDir;

    use super::*;
    use crate::store::{
        conformance, AccessKind, Change, CommitEntry, CommitOp, NotificationLogs, Record, Records,
        Written,
    };

    const DAY_MS: i64 = 24 * 3600 * 1000;

    struct Fixture {
        store: Store,
        _dir: TempDir,
    }

    /// A real embedded store with `atsigns` provisioned.
    async fn fixture(atsigns: &[&str]) -> Fixture {
        let dir = TempDir::new("maintenance");
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .expect("open store");
        for name in atsigns {
            store
                .create_atsign(&conformance::sign(name), &conformance::info(name))
                .await
                .unwrap();
        }
        Fixture { store, _dir: dir }
    }

    fn settings() -> Settings {
        Settings {
            interval: Duration::from_secs(60),
            keep_commits_ms: 15 * DAY_MS,
            max_commits: 100_000,
            quota: crate::notifications::Quota {
                count: 10_000,
                bytes: 64 * 1024 * 1024,
                cached_keys: 10_000,
            },
        }
    }

    fn maintenance(f: &Fixture, settings: Settings, budget: Budget) -> Maintenance {
        Maintenance::new(f.store.clone(), settings, budget)
    }

    /// A record with the given `availableAt` and `expiresAt`.
    fn timed(available_at: Option<i64>, expires_at: Option<i64>) -> Record {
        Record {
            value: Some("v".into()),
            metadata: Metadata {
                available_at,
                expires_at,
                ..Metadata::default()
            },
        }
    }

    async fn put(f: &Fixture, atsign: &AtSign, key: &str, record: Record) {
        f.store
            .put(atsign, key, &record, CommitOp::UpdateAll)
            .await
            .unwrap();
    }

    async fn log(f: &Fixture, atsign: &AtSign) -> Vec<(u64, String, &'static str)> {
        let entries = f.store.commits_since(atsign, None, 1000).await.unwrap();
        entries
            .into_iter()
            .map(|e| (e.commit_id, e.key, e.op.symbol()))
            .collect()
    }

    #[tokio::test]
    async fn expired_keys_are_removed_with_delete_entries_and_others_are_kept() {
        let f = fixture(&["alice"]).await;
        let alice = conformance::sign("alice");
        let now = now_ms();
        put(&f, &alice, "public:gone@alice", timed(None, Some(now - 1))).await; // 0
        put(&f, &alice, "@bob:gone@alice", timed(None, Some(now))).await; // 1
        put(&f, &alice, "private:gone@alice", timed(None, Some(now - 1))).await;
        put(&f, &alice, "public:live@alice", timed(None, Some(now + 1))).await; // 2
        put(&f, &alice, "public:ever@alice", timed(None, None)).await; // 3
        let unborn = timed(Some(now + 1000), Some(now + 2000));
        put(&f, &alice, "public:unborn@alice", unborn.clone()).await; // 4

        let report = maintenance(&f, settings(), Budget::default())
            .round(now)
            .await;

        assert_eq!(
            report,
            Report {
                atsigns: 1,
                keys_checked: 6,
                expired: 3,
                ..Report::default()
            }
        );
        assert_eq!(
            f.store.keys(&alice, "").await.unwrap(),
            vec![
                "public:ever@alice",
                "public:live@alice",
                "public:unborn@alice"
            ]
        );
        assert_eq!(
            f.store.get(&alice, "public:unborn@alice").await.unwrap(),
            Some(unborn)
        );
        let expected: Vec<(u64, String, &str)> = vec![
            (2, "public:live@alice".into(), "*"),
            (3, "public:ever@alice".into(), "*"),
            (4, "public:unborn@alice".into(), "*"),
            (5, "@bob:gone@alice".into(), "-"),
            (6, "public:gone@alice".into(), "-"),
        ];
        assert_eq!(
            log(&f, &alice).await,
            expected,
            "private: keys make no entry"
        );
    }

    #[tokio::test]
    async fn a_key_updated_after_it_was_read_as_expired_is_kept() {
        let f = fixture(&["alice"]).await;
        let alice = conformance::sign("alice");
        let now = now_ms();
        put(&f, &alice, "public:k@alice", timed(None, Some(now - 1))).await; // 0
        let read = f
            .store
            .get(&alice, "public:k@alice")
            .await
            .unwrap()
            .unwrap();
        assert!(is_expired(&read.metadata, now));

        // An owner's update lands between the round's read and its removal.
        let fresh = timed(None, Some(now + 60_000));
        put(&f, &alice, "public:k@alice", fresh.clone()).await; // 1
        assert!(!lifetime::expire(&f.store, &alice, "public:k@alice", now)
            .await
            .unwrap());

        assert_eq!(
            f.store.get(&alice, "public:k@alice").await.unwrap(),
            Some(fresh)
        );
        let expected: Vec<(u64, String, &str)> = vec![(1, "public:k@alice".into(), "*")];
        assert_eq!(log(&f, &alice).await, expected, "no delete entry");
    }

    #[tokio::test]
    async fn commit_entries_older_than_the_keep_days_are_compacted() {
        let f = fixture(&["alice"]).await;
        let alice = conformance::sign("alice");
        put(&f, &alice, "public:a@alice", timed(None, None)).await;
        put(&f, &alice, "public:b@alice", timed(None, None)).await;
        let written = now_ms();
        let mut maintenance = maintenance(&f, settings(), Budget::default());

        let report = maintenance.round(written + 14 * DAY_MS).await;
        assert_eq!((report.compacted, report.errors), (0, 0));
        assert_eq!(log(&f, &alice).await.len(), 2);

        let report = maintenance.round(written + 15 * DAY_MS + 1000).await;
        assert_eq!((report.compacted, report.errors), (2, 0));
        assert_eq!(log(&f, &alice).await, vec![]);
        assert_eq!(
            f.store.keys(&alice, "").await.unwrap().len(),
            2,
            "data kept"
        );
        assert_eq!(f.store.last_commit_id(&alice).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_commit_log_over_its_bound_keeps_its_newest_entries() {
        let f = fixture(&["alice"]).await;
        let alice = conformance::sign("alice");
        for n in 0..5 {
            put(&f, &alice, &format!("public:k{n}@alice"), timed(None, None)).await;
        }
        let bounded = Settings {
            max_commits: 3,
            ..settings()
        };

        let report = maintenance(&f, bounded, Budget::default())
            .round(now_ms())
            .await;

        assert_eq!((report.trimmed, report.compacted), (2, 0));
        let ids: Vec<u64> = log(&f, &alice).await.iter().map(|e| e.0).collect();
        assert_eq!(ids, vec![2, 3, 4]);
        assert_eq!(
            f.store.keys(&alice, "").await.unwrap().len(),
            5,
            "data kept"
        );
    }

    #[tokio::test]
    async fn a_round_does_a_bounded_share_and_the_next_goes_on_from_there() {
        let names = ["a1", "a2", "a3"];
        let f = fixture(&names).await;
        let now = now_ms();
        for name in names {
            let atsign = conformance::sign(name);
            for key in ["x", "y"] {
                put(
                    &f,
                    &atsign,
                    &format!("{key}@{name}"),
                    timed(None, Some(now)),
                )
                .await;
            }
        }
        let budget = Budget {
            atsigns: 2,
            keys: 3,
        };
        let mut maintenance = maintenance(&f, settings(), budget);

        let first = maintenance.round(now).await;
        assert_eq!(
            (first.atsigns, first.keys_checked, first.expired),
            (2, 3, 3)
        );
        let a2 = conformance::sign("a2");
        assert_eq!(
            f.store.keys(&a2, "").await.unwrap(),
            vec!["y@a2"],
            "stopped inside @a2"
        );
        assert_eq!(
            f.store
                .keys(&conformance::sign("a3"), "")
                .await
                .unwrap()
                .len(),
            2,
            "@a3 not reached"
        );

        let second = maintenance.round(now).await;
        assert_eq!(
            (second.atsigns, second.keys_checked, second.expired),
            (2, 3, 3),
            "the rest of @a2, then @a3"
        );
        for name in names {
            let atsign = conformance::sign(name);
            assert_eq!(
                f.store.keys(&atsign, "").await.unwrap(),
                Vec::<String>::new()
            );
        }

        let third = maintenance.round(now).await;
        assert_eq!((third.atsigns, third.keys_checked), (2, 0), "a new pass");
    }

    /// Records with one expired key under every atSign, whose removal fails, as does every
    /// other records and notifications call: a store broken under the atSigns it lists.
    struct Broken;

    fn broken<T>() -> Result<T, StoreError> {
        Err(StoreError::Corrupt("broken on purpose".into()))
    }

    #[async_trait::async_trait]
    impl Records for Broken {
        async fn get(&self, _: &AtSign, _: &str) -> Result<Option<Record>, StoreError> {
            Ok(Some(timed(None, Some(0))))
        }

        async fn modify(&self, _: &AtSign, _: &str, _: Change) -> Result<Written, StoreError> {
            broken()
        }

        async fn keys(&self, _: &AtSign, _: &str) -> Result<Vec<String>, StoreError> {
            Ok(vec!["k1".into(), "k2".into()])
        }

        async fn commits_since(
            &self,
            _: &AtSign,
            _: Option<u64>,
            _: usize,
        ) -> Result<Vec<CommitEntry>, StoreError> {
            broken()
        }

        async fn last_commit_id(&self, _: &AtSign) -> Result<Option<u64>, StoreError> {
            broken()
        }

        async fn compact_commits(&self, _: &AtSign, _: EpochMillis) -> Result<usize, StoreError> {
            broken()
        }

        async fn trim_commits(&self, _: &AtSign, _: usize) -> Result<usize, StoreError> {
            broken()
        }

        async fn record_access(
            &self,
            _: &AtSign,
            _: AccessKind,
            _: &str,
            _: u64,
        ) -> Result<(), StoreError> {
            broken()
        }

        async fn top_accesses(
            &self,
            _: &AtSign,
            _: AccessKind,
            _: usize,
        ) -> Result<Vec<(String, u64)>, StoreError> {
            broken()
        }
    }

    #[async_trait::async_trait]
    impl NotificationLogs for Broken {
        async fn put_notification(
            &self,
            _: &AtSign,
            _: crate::store::NotificationLog,
            _: &crate::store::NotificationRow,
        ) -> Result<(), StoreError> {
            broken()
        }

        async fn notifications(
            &self,
            _: &AtSign,
            _: crate::store::NotificationLog,
            _: Option<EpochMillis>,
            _: usize,
        ) -> Result<Vec<crate::store::NotificationRow>, StoreError> {
            broken()
        }

        async fn get_notification(
            &self,
            _: &AtSign,
            _: crate::store::NotificationLog,
            _: &str,
        ) -> Result<Option<crate::store::NotificationRow>, StoreError> {
            broken()
        }

        async fn remove_notification(
            &self,
            _: &AtSign,
            _: crate::store::NotificationLog,
            _: &str,
        ) -> Result<bool, StoreError> {
            broken()
        }
    }

    #[tokio::test]
    async fn store_errors_are_counted_and_the_round_goes_on_with_the_next_atsign() {
        let f = fixture(&["b1", "b2"]).await;
        let store = f
            .store
            .clone()
            .with_records(Broken)
            .with_notifications(Broken);
        let mut maintenance = Maintenance::new(store, settings(), Budget::default());
        let report = maintenance.round(now_ms()).await;
        assert_eq!(
            report,
            Report {
                atsigns: 2,
                keys_checked: 2,
                errors: 10,
                ..Report::default()
            },
            "per atSign: one failed removal (its other key waits), compaction, trimming, \
             notification expiry, the notification quota"
        );
    }
}
