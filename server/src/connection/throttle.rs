//! `AuthThrottle`: how failed `cram`/`pkam` proofs are slowed down, against guessing, without
//! letting anyone keep the owner out.
//!
//! The reference answers every wrong proof at once with AT0401 and keeps the connection open;
//! real clients see exactly that for their first failures. After that:
//! - **per connection**, once `free` failures in a row have been answered, each further one is
//!   answered after a delay that doubles from `first_delay` up to `max_delay`, and the
//!   `close_after`-th is answered and then the connection is closed;
//! - **per atSign and source address** (an IPv4 address, an IPv6 /64), across all connections
//!   of the node, at most `per_minute` proofs may fail in any sliding minute. Once that is
//!   spent, further proofs from that source are refused with AT0028 without being checked, so
//!   the bound holds however many connections one source opens. Another source is not
//!   affected: a correct proof from an address that has not been failing is always checked,
//!   so guessing from one place cannot keep the owner out from another. Guessing from many
//!   places gets `per_minute` tries per place.
//!
//! Only proofs that answer a live challenge count (the connection checks that first): a
//! `cram:` without a `from` proves nothing and costs no budget but its connection's.
//!
//! At most [`MAX_TRACKED`] (atSign, source) windows are kept; past that, the ones with the
//! oldest last failure go first, so memory is bounded whatever sources an attacker uses.
//!
//! No I/O and no clock of its own: callers pass `now`, so the rules are unit-tested.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use at_common::error::{AtError, ErrorCode};
use at_common::AtSign;

/// The window of the per-source bound.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The most (atSign, source) failure windows kept at once.
pub const MAX_TRACKED: usize = 65_536;

/// The limits, from the configuration (`auth_failure*` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures in a row on one connection answered without delay.
    pub free: u32,
    /// Delay before answering the first failure after the free ones; doubles each time.
    pub first_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// The failure on one connection after which it is closed; 0 never closes.
    pub close_after: u32,
    /// Failed proofs per atSign per source address per minute on this node; 0 is unbounded.
    pub per_minute: u32,
}

/// What a connection does with its `n`-th failure in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalty {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Close the connection after the answer.
    pub close: bool,
}

/// Where proofs come from, as the throttle groups them: one IPv4 address, or one IPv6 /64
/// (what one host or subscriber usually has); `None` for a connection without an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(Option<u128>);

impl Source {
    pub fn of(address: Option<IpAddr>) -> Source {
        Source(address.map(|ip| match ip.to_canonical() {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            // The /64, marked apart from any IPv4 value.
            IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
        }))
    }
}

/// A proof admitted under the per-source bound; give it back with [`AuthThrottle::settle`].
#[derive(Debug)]
#[must_use]
pub struct Admission {
    at: Option<(Source, Instant)>,
}

/// The limits and the per-source failure windows of one node; shared by its connections.
#[derive(Debug)]
pub struct AuthThrottle {
    limits: ThrottleLimits,
    /// Per (atSign, source), when its recent proofs were admitted (oldest first); at most
    /// `per_minute` entries each, and at most [`MAX_TRACKED`] windows.
    recent: Mutex<HashMap<(AtSign, Source), VecDeque<Instant>>>,
}

impl AuthThrottle {
    pub fn new(limits: ThrottleLimits) -> AuthThrottle {
        AuthThrottle {
            limits,
            recent: Mutex::default(),
        }
    }

    /// The penalty for the `failures`-th failure in a row on one connection (from 1).
    pub fn penalty(&self, failures: u32) -> Penalty {
        let l = &self.limits;
        let delay = match failures.checked_sub(l.free + 1) {
            // Doubling 2^20 times is past any sensible `max_delay`; stop there.
            Some(doublings) => l
                .first_delay
                .saturating_mul(1 << doublings.min(20))
                .min(l.max_delay),
            None => Duration::ZERO,
        };
        Penalty {
            delay,
            close: l.close_after != 0 && failures >= l.close_after,
        }
    }

    /// Admits a proof for `who` from `source` at `now`, counting it as failed until
    /// [`settle`](Self::settle) says otherwise, so proofs checked in parallel cannot overrun
    /// the bound; AT0028 when `per_minute` proofs from that source failed (or are in flight)
    /// within the last minute.
    pub fn admit(&self, who: &AtSign, source: Source, now: Instant) -> Result<Admission, AtError> {
        if self.limits.per_minute == 0 {
            return Ok(Admission { at: None });
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let key = (who.clone(), source);
        if !recent.contains_key(&key) && recent.len() >= MAX_TRACKED {
            forget_oldest(&mut recent, now);
        }
        let times = recent.entry(key).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= self.limits.per_minute as usize {
            return Err(AtError::with_detail(
                ErrorCode::TooManyRequests,
                "Too many failed authentication attempts; try again later",
            ));
        }
        times.push_back(now);
        Ok(Admission {
            at: Some((source, now)),
        })
    }

    /// Ends an admitted proof: one that did not fail (succeeded, or could not be checked)
    /// gives its place back.
    pub fn settle(&self, who: &AtSign, admission: Admission, failed: bool) {
        let Some((source, at)) = admission.at else {
            return;
        };
        if failed {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let key = (who.clone(), source);
        if let Some(times) = recent.get_mut(&key) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                recent.remove(&key);
            }
        }
    }
}

/// Makes room in a full table: windows with nothing in the last minute go, else the tenth
/// whose last failure is oldest.
fn forget_oldest(recent: &mut HashMap<(AtSign, Source), VecDeque<Instant>>, now: Instant) {
    recent.retain(|_, times| {
        times
            .back()
            .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
    });
    if recent.len() < MAX_TRACKED {
        return;
    }
    let mut last: Vec<Instant> = recent.values().filter_map(|t| t.back().copied()).collect();
    last.sort_unstable();
    let cut = last[last.len() / 10];
    recent.retain(|_, times| times.back().is_some_and(|t| *t > cut));
}

/// Whether an error answering `cram`/`pkam` is a failed (or refused) proof. An APKAM
/// refusal, which a handler sets (an enrollment denied, pending, revoked or unknown), is not.
pub fn is_failed_proof(error: &AtError) -> bool {
    !error.is_set_by_handler()
        && matches!(
            error.code(),
            ErrorCode::Unauthenticated | ErrorCode::TooManyRequests
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            free: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            close_after: 10,
            per_minute: 3,
        }
    }

    fn alice() -> AtSign {
        AtSign::parse("@alice").unwrap()
    }

    fn here() -> Source {
        Source::of(Some("192.0.2.1".parse().unwrap()))
    }

    #[test]
    fn the_first_failures_are_answered_at_once_like_the_reference() {
        let throttle = AuthThrottle::new(limits());
        for n in 1..=3 {
            assert_eq!(
                throttle.penalty(n),
                Penalty {
                    delay: Duration::ZERO,
                    close: false
                },
                "failure {n}"
            );
        }
    }

    #[test]
    fn later_failures_wait_twice_as_long_each_time_up_to_the_maximum_and_the_last_closes() {
        let throttle = AuthThrottle::new(limits());
        let delays: Vec<u64> = (4..=10)
            .map(|n| throttle.penalty(n).delay.as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        assert!(!throttle.penalty(9).close);
        assert!(throttle.penalty(10).close);
        assert_eq!(throttle.penalty(u32::MAX).delay, Duration::from_secs(16));
    }

    #[test]
    fn close_after_zero_never_closes() {
        let throttle = AuthThrottle::new(ThrottleLimits {
            close_after: 0,
            ..limits()
        });
        assert!(!throttle.penalty(1000).close);
    }

    #[test]
    fn per_source_failures_are_bounded_per_sliding_minute() {
        let throttle = AuthThrottle::new(limits());
        let (start, bob) = (Instant::now(), AtSign::parse("@bob").unwrap());
        for s in 0..3 {
            let admitted = throttle.admit(&alice(), here(), start + Duration::from_secs(s));
            throttle.settle(&alice(), admitted.unwrap(), true);
        }
        let refused = throttle
            .admit(&alice(), here(), start + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(refused.code(), ErrorCode::TooManyRequests);
        assert!(!refused.closes_connection());
        // Another atSign has its own budget.
        let other = throttle.admit(&bob, here(), start).unwrap();
        throttle.settle(&bob, other, true);
        // A minute after the first failure, one place is free again.
        let later = start + WINDOW;
        let admitted = throttle.admit(&alice(), here(), later).unwrap();
        throttle.settle(&alice(), admitted, true);
        assert!(throttle.admit(&alice(), here(), later).is_err());
    }

    #[test]
    fn proofs_in_flight_count_and_a_success_gives_its_place_back() {
        let throttle = AuthThrottle::new(limits());
        let now = Instant::now();
        let in_flight: Vec<_> = (0..3)
            .map(|_| throttle.admit(&alice(), here(), now).unwrap())
            .collect();
        assert!(throttle.admit(&alice(), here(), now).is_err());
        for admission in in_flight {
            throttle.settle(&alice(), admission, false);
        }
        assert!(throttle.recent.lock().unwrap().is_empty());
        assert!(throttle.admit(&alice(), here(), now).is_ok());
    }

    #[test]
    fn per_minute_zero_is_unbounded() {
        let throttle = AuthThrottle::new(ThrottleLimits {
            per_minute: 0,
            ..limits()
        });
        let now = Instant::now();
        for _ in 0..1000 {
            let admitted = throttle.admit(&alice(), here(), now).unwrap();
            throttle.settle(&alice(), admitted, true);
        }
        assert!(throttle.recent.lock().unwrap().is_empty());
    }

    #[test]
    fn one_source_spending_its_budget_leaves_every_other_source_checked() {
        let throttle = AuthThrottle::new(limits());
        let now = Instant::now();
        for _ in 0..3 {
            let admitted = throttle.admit(&alice(), here(), now).unwrap();
            throttle.settle(&alice(), admitted, true);
        }
        assert!(throttle.admit(&alice(), here(), now).is_err());
        let owner = Source::of(Some("198.51.100.7".parse().unwrap()));
        let admitted = throttle.admit(&alice(), owner, now).unwrap();
        throttle.settle(&alice(), admitted, false);
        // IPv6: one /64 is one source; the next /64 another.
        let v6 = |ip: &str| Source::of(Some(ip.parse().unwrap()));
        assert_eq!(v6("2001:db8:0:1::1"), v6("2001:db8:0:1:ffff::9"));
        assert_ne!(v6("2001:db8:0:1::1"), v6("2001:db8:0:2::1"));
        assert_eq!(v6("::ffff:192.0.2.1"), here());
    }

    #[test]
    fn the_table_of_windows_is_bounded_however_many_sources_fail() {
        let throttle = AuthThrottle::new(limits());
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 1000) {
            let source = Source::of(Some(IpAddr::from(n.to_be_bytes())));
            let admitted = throttle.admit(&alice(), source, now).unwrap();
            throttle.settle(&alice(), admitted, true);
        }
        assert!(throttle.recent.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn failed_proofs_are_at0401_and_at0028() {
        assert!(is_failed_proof(&AtError::new(ErrorCode::Unauthenticated)));
        assert!(is_failed_proof(&AtError::new(ErrorCode::TooManyRequests)));
        assert!(!is_failed_proof(&AtError::new(ErrorCode::DataStore)));
    }
}
