//! The cache refresh job (docs/storage.md#cached-keys): cached copies of other atSigns' keys
//! whose `refreshAt` has come are asked of their owners' servers again, so that the copies the
//! owner's clients sync stay current even when nobody looks them up. A changed key is kept
//! anew, one that is gone is dropped, by the rules of a lookup with `bypassCache:true`
//! ([`fetch::refresh_cached`]); copies with ttr −1 are never refreshed.
//!
//! The reference runs it once a day at a random hour; here a round runs every
//! `cache_refresh_interval_secs` (an hour by default), so a copy is at most that late. A round
//! refreshes at most [`PER_ROUND`] copies, one at a time, each bounded by the peer timeout;
//! the rest wait for the next round. On a cluster every node runs it: a copy refreshed by one
//! node is no longer due for the others.

use std::time::Duration;

use at_common::metadata::now_ms;
use at_common::AtSign;
use tokio::time::{Instant, MissedTickBehavior};

use crate::notifications::Monitors;
use crate::peer::Peers;
use crate::remote::fetch::{self, Refreshed};
use crate::store::Store;

/// The most copies one round asks again for.
pub const PER_ROUND: usize = 100;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub fetched: usize,
    pub dropped: usize,
    pub errors: usize,
}

/// Runs a round every `interval`, the first one interval after start.
pub async fn run(store: Store, peers: Peers, monitors: Monitors, interval: Duration) {
    let mut job = CacheRefresh::default();
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let report = job.round(&store, &peers, &monitors).await;
        if report != Report::default() {
            tracing::debug!(?report, "cache refresh round");
        }
    }
}

/// Where the last round stopped, so that copies that keep failing (an owner's server down)
/// cannot hold the others back: the next round goes on after them.
#[derive(Debug, Default)]
pub struct CacheRefresh {
    /// The atSign and the cached key last asked for, when a round stopped at its bound.
    resume_after: Option<(AtSign, String)>,
}

impl CacheRefresh {
    /// One round: the hosted atSigns' due copies, from where the last round stopped, up to
    /// [`PER_ROUND`] asked.
    pub async fn round(&mut self, store: &Store, peers: &Peers, monitors: &Monitors) -> Report {
        let mut report = Report::default();
        let mut atsigns = match store.list_atsigns().await {
            Ok(atsigns) => atsigns,
            Err(error) => {
                tracing::warn!(%error, "cache refresh: cannot list the atSigns");
                report.errors += 1;
                return report;
            }
        };
        atsigns.sort();
        let resume = self.resume_after.take();
        let first = resume
            .as_ref()
            .map_or(0, |(atsign, _)| atsigns.partition_point(|a| a < atsign));
        for me in &atsigns[first..] {
            let keys = match store.keys(me, "cached:").await {
                Ok(keys) => keys,
                Err(error) => {
                    tracing::warn!(atsign = %me, %error, "cache refresh: cannot list keys");
                    report.errors += 1;
                    continue;
                }
            };
            let after = resume.as_ref().filter(|(atsign, _)| atsign == me);
            let start = after.map_or(0, |(_, last)| keys.partition_point(|key| key <= last));
            for key in &keys[start..] {
                if refresh(store, peers, monitors, me, key, &mut report).await
                    && report.asked() >= PER_ROUND
                {
                    self.resume_after = Some((me.clone(), key.clone()));
                    return report;
                }
            }
        }
        report
    }
}

/// Asks again for `key` of `me` if it is due; says whether it asked.
async fn refresh(
    store: &Store,
    peers: &Peers,
    monitors: &Monitors,
    me: &AtSign,
    key: &str,
    report: &mut Report,
) -> bool {
    let now = now_ms();
    match store.get(me, key).await {
        Ok(Some(record)) if fetch::refresh_due(&record.metadata, now) => {}
        Ok(_) => return false,
        Err(error) => {
            tracing::warn!(atsign = %me, key, %error, "cache refresh: cannot read");
            report.errors += 1;
            return true;
        }
    }
    match fetch::refresh_cached(store, peers, monitors, me, key, now).await {
        Ok(Refreshed::Fetched) => report.fetched += 1,
        Ok(Refreshed::Dropped) => report.dropped += 1,
        Ok(Refreshed::Skipped) => return false,
        Err(error) => {
            // The copy stays as it is, and due: asked again on the next pass.
            tracing::info!(atsign = %me, key, %error, "cache refresh: owner not asked");
            report.errors += 1;
        }
    }
    true
}

impl Report {
    /// Copies asked for (or failed to be).
    fn asked(&self) -> usize {
        self.fetched + self.dropped + self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CommitOp, Record};
    use crate::verbs::testing::fixture;

    /// Copies whose owner cannot be reached stay due; a round asks for [`PER_ROUND`] of them
    /// and the next goes on after those, so none is starved.
    #[actix_rt::test]
    async fn rounds_are_bounded_and_go_on_where_the_last_stopped() {
        let f = fixture().await;
        f.store
            .create_atsign(&f.me, &crate::store::conformance::info("alice"))
            .await
            .unwrap();
        let now = now_ms();
        let due = Record {
            value: Some("v".into()),
            metadata: at_common::metadata::Metadata {
                ttr: Some(10),
                refresh_at: Some(now - 1),
                ..Default::default()
            },
        };
        let fresh = Record {
            metadata: at_common::metadata::Metadata {
                refresh_at: Some(now + 60_000),
                ..due.metadata.clone()
            },
            ..due.clone()
        };
        for n in 0..150 {
            let key = format!("cached:public:k{n:03}@bob");
            f.store
                .put(&f.me, &key, &due, CommitOp::UpdateAll)
                .await
                .unwrap();
        }
        f.store
            .put(&f.me, "cached:public:zz@bob", &fresh, CommitOp::UpdateAll)
            .await
            .unwrap();
        // The directory of these peers is a closed port: every ask fails at once.
        let peers = f.peers();
        let monitors = Monitors::start(f.store.clone());
        let mut job = CacheRefresh::default();
        let first = job.round(&f.store, &peers, &monitors).await;
        assert_eq!(first.errors, PER_ROUND);
        let stopped = job.resume_after.clone().expect("stopped at the bound").1;
        assert_eq!(stopped, format!("cached:public:k{:03}@bob", PER_ROUND - 1));
        let second = job.round(&f.store, &peers, &monitors).await;
        assert_eq!(
            second.errors,
            150 - PER_ROUND,
            "the rest; the fresh copy is not due"
        );
        assert!(job.resume_after.is_none(), "the pass is over");
        assert_eq!(
            job.round(&f.store, &peers, &monitors).await.errors,
            PER_ROUND,
            "a new pass"
        );
    }
}
