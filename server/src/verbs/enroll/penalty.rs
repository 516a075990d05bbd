//! The wait before a wrong passcode is refused (docs/authentication.md#passcodes): the
//! reference's Fibonacci series, 1 s, 2 s, 3 s, 5 s … up to 55 s, one series per atSign shared
//! by all its connections, so guessing an OTP costs the guesser time whatever connections it
//! opens. A right passcode starts the series again once 55 s have passed since the last wrong
//! one. The first wait is `enroll_passcode_wait_millis` (1 s). Ours: each node keeps its own
//! series (a cluster's nodes do not share them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use at_common::AtSign;

/// The longest wait, in first waits; also how long after the last wrong passcode the series
/// may start again.
const LONGEST_IN_FIRSTS: u32 = 55;
/// Series kept before those past [`LONGEST_WAIT`] are forgotten (bounds the map when many
/// atSigns are guessed at).
const KEPT: usize = 4096;

/// Where each atSign's series stands.
pub struct PasscodePenalty {
    first: Duration,
    series: Mutex<HashMap<AtSign, Series>>,
}

impl Default for PasscodePenalty {
    /// The reference's: 1 s first.
    fn default() -> Self {
        PasscodePenalty::new(Duration::from_secs(1))
    }
}

#[derive(Clone, Copy)]
struct Series {
    previous: Duration,
    last: Duration,
    last_wrong: Instant,
}

impl PasscodePenalty {
    /// Waits of `first`, then growing as Fibonacci up to 55 × `first`.
    pub fn new(first: Duration) -> PasscodePenalty {
        PasscodePenalty {
            first,
            series: Mutex::default(),
        }
    }

    fn longest(&self) -> Duration {
        self.first.saturating_mul(LONGEST_IN_FIRSTS)
    }

    /// A wrong passcode for `me` at `now`: how long to wait before refusing it.
    pub fn wrong(&self, me: &AtSign, now: Instant) -> Duration {
        let longest = self.longest();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.len() >= KEPT {
            series.retain(|_, s| now.saturating_duration_since(s.last_wrong) < longest);
        }
        let s = series.entry(me.clone()).or_insert(Series {
            previous: Duration::ZERO,
            last: self.first,
            last_wrong: now,
        });
        s.last_wrong = now;
        if s.last < longest {
            (s.previous, s.last) = (s.last, s.previous.saturating_add(s.last));
        }
        s.last.min(longest)
    }

    /// A right passcode for `me` at `now`.
    pub fn right(&self, me: &AtSign, now: Instant) {
        let longest = self.longest();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series
            .get(me)
            .is_some_and(|s| now.saturating_duration_since(s.last_wrong) >= longest)
        {
            series.remove(me);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_as_fibonacci_to_55_s_and_start_again_55_s_after_the_last_wrong_one() {
        let penalty = PasscodePenalty::default();
        let (alice, bob) = (
            AtSign::parse("@alice").unwrap(),
            AtSign::parse("@bob").unwrap(),
        );
        let t0 = Instant::now();
        let waits: Vec<u64> = (0..11)
            .map(|_| penalty.wrong(&alice, t0).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 3, 5, 8, 13, 21, 34, 55, 55, 55]);
        assert_eq!(penalty.wrong(&bob, t0).as_secs(), 1, "each atSign its own");

        penalty.right(&alice, t0 + Duration::from_secs(54));
        assert_eq!(
            penalty.wrong(&alice, t0).as_secs(),
            55,
            "too soon to forget"
        );
        let longest = Duration::from_secs(55);
        penalty.right(&alice, t0 + longest);
        assert_eq!(penalty.wrong(&alice, t0 + longest).as_secs(), 1);
    }
}
