//! The notification ids a monitor's replay showed, kept only as long as one of them can still
//! arrive live: so a notification is shown once, and a device that replayed thousands of
//! notifications does not hold their ids for the days its monitor stays open.
//!
//! A notification stored after the monitor subscribed is both replayed (read from the store)
//! and queued live; only those are shown twice, and they are the newest the replay read. Live
//! lines queue while the replay runs, at most [`MONITOR_QUEUE`] of them (more closes the
//! monitor), so the last [`MONITOR_QUEUE`] ids replayed are all that can repeat, and once that
//! many live lines have passed after the replay, or [`LINGER`] has, none can.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::notifications::MONITOR_QUEUE;

/// How long after the replay a live line is still checked against it: longer than a
/// notification takes from its store write to its monitors' queues.
pub(super) const LINGER: Duration = Duration::from_secs(60);

/// The ids a replay showed, oldest first, at most [`MONITOR_QUEUE`].
#[derive(Default)]
pub(super) struct Replayed {
    ids: HashSet<String>,
    order: VecDeque<String>,
    /// Once the replay is over: when, and how many live lines have passed since.
    after: Option<(Instant, usize)>,
}

impl Replayed {
    /// The replay showed `id`.
    pub fn shown(&mut self, id: &str) {
        if self.ids.insert(id.to_string()) {
            self.order.push_back(id.to_string());
        }
        if self.order.len() > MONITOR_QUEUE {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }

    /// A live line with `id` arrived (the replay is over): whether the replay showed it.
    pub fn again(&mut self, id: Option<&str>, now: Instant) -> bool {
        let (since, passed) = self.after.get_or_insert((now, 0));
        *passed += 1;
        let (since, passed) = (*since, *passed);
        if now.duration_since(since) >= LINGER {
            self.forget();
        }
        let again = id.is_some_and(|id| self.ids.contains(id));
        if passed >= MONITOR_QUEUE {
            self.forget();
        }
        again
    }

    /// When to forget the replay if no live line comes first, if there is anything to forget.
    pub fn deadline(&mut self, now: Instant) -> Option<Instant> {
        if self.order.is_empty() {
            return None;
        }
        let (since, _) = self.after.get_or_insert((now, 0));
        Some(*since + LINGER)
    }

    /// Nothing replayed can arrive live any more: the ids and their memory go.
    pub fn forget(&mut self) {
        self.ids = HashSet::new();
        self.order = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_of_a_recent_replayed_id_is_caught_and_the_ids_are_bounded() {
        let mut replayed = Replayed::default();
        for i in 0..MONITOR_QUEUE + 10 {
            replayed.shown(&format!("n{i}"));
        }
        assert_eq!(replayed.ids.len(), MONITOR_QUEUE);
        let now = Instant::now();
        assert!(replayed.again(Some(&format!("n{}", MONITOR_QUEUE + 9)), now));
        assert!(
            !replayed.again(Some("n9"), now),
            "older than the bound: forgotten"
        );
        assert!(!replayed.again(Some("other"), now));
        assert!(!replayed.again(None, now));
    }

    #[test]
    fn the_ids_go_once_a_queue_of_live_lines_or_the_linger_has_passed() {
        let now = Instant::now();
        let mut replayed = Replayed::default();
        replayed.shown("a");
        for _ in 0..MONITOR_QUEUE - 1 {
            replayed.again(Some("x"), now);
        }
        assert!(
            replayed.again(Some("a"), now),
            "still within a queue's worth"
        );
        assert_eq!(replayed.ids.capacity(), 0, "released after a queue's worth");
        assert!(!replayed.again(Some("a"), now));

        let mut replayed = Replayed::default();
        replayed.shown("a");
        assert_eq!(replayed.deadline(now), Some(now + LINGER));
        assert!(replayed.again(Some("a"), now + LINGER - Duration::from_millis(1)));
        assert!(!replayed.again(Some("a"), now + LINGER));
        assert_eq!(replayed.deadline(now), None, "nothing left to forget");
    }
}
