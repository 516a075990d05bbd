//! `NotifyPace`: how fast one other atSign can make this node's atSigns receive notifications.
//!
//! Receiving a notification costs the node two durable writes, a monitor line and often a
//! cached key: a peer that notifies as fast as it can would take the node's CPU and disk from
//! everyone else. So each sending atSign gets a budget across all the atSigns of the node:
//! `burst` notifications at once, then `per_second`. Past it a `notify` is not refused (the
//! reference has no such error, and the sender would only retry): its answer comes later, and
//! since a peer connection answers in order, the sender's link slows to the budget. Senders
//! are paced apart, so one flooding peer never delays another's notifications.
//!
//! This is the generic cell rate algorithm: per sender, the instant its budget is spent until
//! (`due`); a notification waits until `due` is within `burst` intervals of now. At most
//! [`MAX_TRACKED`] senders are remembered; a sender whose `due` has passed is as good as new,
//! so those are forgotten first. No I/O and no clock of its own: callers pass `now`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use at_common::AtSign;

/// The most senders remembered at once (each a few dozen bytes).
pub const MAX_TRACKED: usize = 65_536;

/// The budget, from the configuration (`peer_notifications_*` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceLimits {
    /// Notifications per second one sender may make the node receive, sustained; 0 is
    /// unbounded.
    pub per_second: u32,
    /// How many may come at once before the pace applies.
    pub burst: u32,
}

/// Per sending atSign, node-wide; shared by every key store.
#[derive(Debug)]
pub struct NotifyPace {
    limits: PaceLimits,
    due: Mutex<HashMap<AtSign, Instant>>,
}

impl NotifyPace {
    pub fn new(limits: PaceLimits) -> NotifyPace {
        NotifyPace {
            limits,
            due: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one notification from `sender`'s budget at `now`: how long it must wait first.
    pub fn reserve(&self, sender: &AtSign, now: Instant) -> Duration {
        if self.limits.per_second == 0 {
            return Duration::ZERO;
        }
        let interval = Duration::from_secs(1) / self.limits.per_second;
        let allowance = interval.saturating_mul(self.limits.burst.max(1));
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        if due.len() >= MAX_TRACKED && !due.contains_key(sender) {
            due.retain(|_, until| *until > now);
            if due.len() >= MAX_TRACKED {
                // Every remembered sender is busy: the one nearest to a whole budget goes.
                if let Some(soonest) = due.iter().min_by_key(|(_, until)| **until) {
                    let soonest = soonest.0.clone();
                    due.remove(&soonest);
                }
            }
        }
        let until = due.entry(sender.clone()).or_insert(now);
        let start = (*until).max(now);
        let wait = (start - now).saturating_sub(allowance.saturating_sub(interval));
        *until = start + interval;
        wait
    }

    /// How many senders are remembered (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.due.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atsign(name: &str) -> AtSign {
        AtSign::parse(name).unwrap()
    }

    #[test]
    fn a_burst_goes_at_once_then_one_each_interval() {
        let pace = NotifyPace::new(PaceLimits {
            per_second: 10,
            burst: 5,
        });
        let (bob, now) = (atsign("@bob"), Instant::now());
        for n in 0..5 {
            assert_eq!(pace.reserve(&bob, now), Duration::ZERO, "burst member {n}");
        }
        // The sixth waits one interval, the seventh two: each 100 ms after the last.
        assert_eq!(pace.reserve(&bob, now), Duration::from_millis(100));
        assert_eq!(pace.reserve(&bob, now), Duration::from_millis(200));
        // Much later the budget is whole again.
        let later = now + Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(pace.reserve(&bob, later), Duration::ZERO);
        }
        assert_eq!(pace.reserve(&bob, later), Duration::from_millis(100));
    }

    #[test]
    fn a_sender_that_keeps_the_pace_never_waits() {
        let pace = NotifyPace::new(PaceLimits {
            per_second: 10,
            burst: 1,
        });
        let (bob, start) = (atsign("@bob"), Instant::now());
        for n in 0..100u32 {
            let at = start + Duration::from_millis(100) * n;
            assert_eq!(pace.reserve(&bob, at), Duration::ZERO, "notification {n}");
        }
    }

    #[test]
    fn senders_are_paced_apart() {
        let pace = NotifyPace::new(PaceLimits {
            per_second: 1,
            burst: 1,
        });
        let now = Instant::now();
        assert_eq!(pace.reserve(&atsign("@flood"), now), Duration::ZERO);
        assert_eq!(pace.reserve(&atsign("@flood"), now), Duration::from_secs(1));
        assert_eq!(pace.reserve(&atsign("@carol"), now), Duration::ZERO);
    }

    #[test]
    fn zero_is_unbounded() {
        let pace = NotifyPace::new(PaceLimits {
            per_second: 0,
            burst: 0,
        });
        let (bob, now) = (atsign("@bob"), Instant::now());
        for _ in 0..10_000 {
            assert_eq!(pace.reserve(&bob, now), Duration::ZERO);
        }
        assert_eq!(pace.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_whatever_the_senders() {
        let pace = NotifyPace::new(PaceLimits {
            per_second: 1,
            burst: 1,
        });
        let now = Instant::now();
        for n in 0..MAX_TRACKED + 100 {
            pace.reserve(&atsign(&format!("@s{n}")), now);
        }
        assert_eq!(pace.tracked(), MAX_TRACKED);
    }
}
