//! `Cache`: each atSign's latest answer, reused for a few seconds, and one check at a time per
//! atSign. So a registrar polling thousands of atSigns, or many clients asking about one,
//! costs each atServer at most one check per `ttl`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use at_common::status::AtStatus;
use at_common::AtSign;
use tokio::sync::OnceCell;
// Tokio's clock, so tests can move it; the same monotonic clock otherwise.
use tokio::time::Instant;

/// One atSign's answer: being checked (empty), or checked at the instant stored beside it.
type Slot = Arc<OnceCell<(AtStatus, Instant)>>;

pub struct Cache {
    ttl: Duration,
    max_entries: usize,
    slots: Mutex<HashMap<AtSign, Slot>>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Checked for this request (possibly shared with requests that arrived meanwhile).
    Checked,
    /// A recent answer, reused.
    Cached,
}

impl Cache {
    /// `ttl` zero disables caching (and the sharing of checks in progress).
    pub fn new(ttl: Duration, max_entries: usize) -> Cache {
        Cache {
            ttl,
            max_entries,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The fresh answer for `at_sign`, or the result of `check`. Requests arriving while a check
    /// of the same atSign runs wait for it rather than starting their own.
    pub async fn get_or_check<F, Fut>(&self, at_sign: &AtSign, check: F) -> (AtStatus, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = AtStatus>,
    {
        let Some(slot) = self.slot(at_sign) else {
            return (check().await, Source::Checked);
        };
        if let Some((status, _)) = slot.get() {
            return (status.clone(), Source::Cached);
        }
        let mut ran = false;
        let (status, _) = slot
            .get_or_init(|| async {
                ran = true;
                (check().await, Instant::now())
            })
            .await;
        let source = if ran { Source::Checked } else { Source::Cached };
        (status.clone(), source)
    }

    /// The slot to use: the atSign's own if fresh or in progress, else a new one; `None` when
    /// caching is off or the cache is full of fresh answers.
    fn slot(&self, at_sign: &AtSign) -> Option<Slot> {
        if self.ttl.is_zero() {
            return None;
        }
        let now = Instant::now();
        let fresh = |slot: &Slot| match slot.get() {
            None => true,
            Some((_, at)) => now.duration_since(*at) < self.ttl,
        };
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(at_sign).filter(|slot| fresh(slot)) {
            return Some(Arc::clone(slot));
        }
        if slots.len() >= self.max_entries && !slots.contains_key(at_sign) {
            slots.retain(|_, slot| fresh(slot));
            if slots.len() >= self.max_entries {
                return None;
            }
        }
        let slot = Slot::default();
        slots.insert(at_sign.clone(), Arc::clone(&slot));
        Some(slot)
    }

    /// atSigns remembered now (fresh or not yet swept).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn atsign(name: &str) -> AtSign {
        AtSign::parse(name).unwrap()
    }

    /// A check that counts its runs and takes `delay`.
    async fn counted(runs: &AtomicUsize, at_sign: &AtSign, delay: Duration) -> AtStatus {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        AtStatus::not_found(at_sign.clone())
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_answer_is_reused_until_it_is_older_than_the_ttl() {
        let cache = Cache::new(Duration::from_secs(5), 10);
        let runs = AtomicUsize::new(0);
        let alice = atsign("@alice");
        let check = || counted(&runs, &alice, Duration::ZERO);
        assert_eq!(cache.get_or_check(&alice, check).await.1, Source::Checked);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(cache.get_or_check(&alice, check).await.1, Source::Cached);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get_or_check(&alice, check).await.1, Source::Checked);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // Another atSign has its own answer.
        let bob = atsign("@bob");
        cache
            .get_or_check(&bob, || counted(&runs, &bob, Duration::ZERO))
            .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn concurrent_requests_share_one_check() {
        let cache = Cache::new(Duration::from_secs(5), 10);
        let runs = AtomicUsize::new(0);
        let alice = atsign("@alice");
        let check = || counted(&runs, &alice, Duration::from_secs(1));
        let (first, second, third) = tokio::join!(
            cache.get_or_check(&alice, check),
            cache.get_or_check(&alice, check),
            cache.get_or_check(&alice, check),
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let sources = [first.1, second.1, third.1];
        assert_eq!(sources.iter().filter(|s| **s == Source::Checked).count(), 1);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn zero_ttl_checks_every_time_and_a_full_cache_sweeps_or_bypasses() {
        let off = Cache::new(Duration::ZERO, 10);
        let runs = AtomicUsize::new(0);
        let alice = atsign("@alice");
        for _ in 0..3 {
            off.get_or_check(&alice, || counted(&runs, &alice, Duration::ZERO))
                .await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(off.is_empty());

        let small = Cache::new(Duration::from_secs(5), 2);
        for name in ["@a", "@b", "@c"] {
            let at_sign = atsign(name);
            small
                .get_or_check(&at_sign, || counted(&runs, &at_sign, Duration::ZERO))
                .await;
        }
        // Full of fresh answers: the third was checked but not remembered.
        assert_eq!(small.len(), 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        let d = atsign("@d");
        small
            .get_or_check(&d, || counted(&runs, &d, Duration::ZERO))
            .await;
        // The stale ones were swept to make room.
        assert_eq!(small.len(), 1);
    }
}
