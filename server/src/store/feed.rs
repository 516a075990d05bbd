//! What a shared store hands this node's monitors ([`crate::notifications::Monitors`]): the
//! notifications published for the atSigns the node follows, through a bounded queue.
//!
//! - [`Follows`]: which atSigns the node follows now (it has monitors or enrolled sessions of them),
//!   and which of those the store confirmed it hears. Subscribing is asynchronous, so a monitor
//!   waits for [`Follows::ready`] before it counts as started.
//! - [`Inbox`] → [`Feed`]: the queue between the store's subscription and the monitors, bounded
//!   in messages ([`FEED_MESSAGES`]) and in bytes ([`FEED_BYTES`]). A message that does not fit
//!   is dropped, counted (`atserver_redis_notifications_dropped_total`) and logged at most once
//!   per [`DROP_LOG_EVERY`]; the monitors of its atSign are then told they missed something
//!   ([`Heard::Missed`]), so they can end and their clients replay from the store.
//!
//! The store's side (who subscribes to what, and when) is the backend's
//! ([`super::redis`]); this module holds no connection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use at_common::AtSign;
use tokio::sync::mpsc;

/// Messages queued between the store and the monitors at most. The node's monitors task reads
/// them as fast as it can hand them to key stores (no I/O), so this fills only when the node is
/// starved of CPU or flooded.
pub const FEED_MESSAGES: usize = 4096;

/// Payload bytes queued between the store and the monitors at most (whatever their count).
pub const FEED_BYTES: usize = 16 << 20;

/// Atsigns whose dropped messages are remembered for [`Heard::Missed`] at most; past it the
/// rest are only counted (their monitors are not told).
pub const MISSED_MAX: usize = 4096;

/// How often an overflowing feed logs (with the count dropped since its last line).
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a shared store's [`super::NotificationLogs::watch_notifications`] gives: the messages
/// of followed atSigns, and the handle that chooses them.
pub struct NotificationWatch {
    pub feed: Feed,
    pub follows: Follows,
}

/// Which atSigns this node follows; shared by the node (who follows, [`Follows::follow`]) and
/// the store's subscription task (what is confirmed). Cheap to clone.
#[derive(Clone, Default)]
pub struct Follows(Arc<FollowsShared>);

#[derive(Default)]
struct FollowsShared {
    /// Followed atSign → its subscription's state.
    state: Mutex<FollowState>,
    /// Wakes the store's task: what is followed changed, or a subscription was lost.
    changed: tokio::sync::Notify,
    /// Bumped at each confirmation; [`Follows::ready`] waits on it.
    confirmed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct FollowState {
    followed: HashMap<AtSign, Subscription>,
    /// Source of [`Subscription::generation`].
    next_generation: u64,
}

/// One followed atSign's subscription as the store last reported it.
#[derive(Clone, Copy)]
struct Subscription {
    /// Changed when the subscription is (re)requested or lost, so that a confirmation of an
    /// older request that arrives after a loss does not count ([`Follows::confirm`]).
    generation: u64,
    confirmed: bool,
}

impl Follows {
    fn state(&self) -> std::sync::MutexGuard<'_, FollowState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on the store subscribes to `atsign`'s notifications (no-op if it does).
    pub fn follow(&self, atsign: &AtSign) {
        let mut state = self.state();
        if state.followed.contains_key(atsign) {
            return;
        }
        state.next_generation += 1;
        let generation = state.next_generation;
        state.followed.insert(
            atsign.clone(),
            Subscription {
                generation,
                confirmed: false,
            },
        );
        drop(state);
        self.0.changed.notify_one();
    }

    /// The store stops hearing `atsign`'s notifications.
    pub fn unfollow(&self, atsign: &AtSign) {
        if self.state().followed.remove(atsign).is_some() {
            self.0.changed.notify_one();
        }
    }

    /// Whether `atsign` is followed (confirmed or not).
    pub fn is_followed(&self, atsign: &AtSign) -> bool {
        self.state().followed.contains_key(atsign)
    }

    /// Waits, at most `within`, until the store has confirmed its subscription to `atsign`'s
    /// notifications: from then on what any node publishes for `atsign` reaches this node.
    /// `false` on the timeout, or if `atsign` is not (or no longer) followed.
    pub async fn ready(&self, atsign: &AtSign, within: Duration) -> bool {
        // Watched before the state is read: a confirmation in between still wakes the loop.
        let mut confirmations = self.0.confirmed.subscribe();
        let confirmed = async {
            loop {
                match self.state().followed.get(atsign) {
                    Some(subscription) if subscription.confirmed => return true,
                    Some(_) => {}
                    None => return false,
                }
                if confirmations.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(within, confirmed)
            .await
            .unwrap_or(false)
    }

    /// The store's side: what to subscribe to (followed, unconfirmed: with the generation to
    /// confirm) and what to unsubscribe from (in `subscribed`, no longer followed).
    pub fn pending(&self, subscribed: &HashSet<AtSign>) -> (Vec<(AtSign, u64)>, Vec<AtSign>) {
        let state = self.state();
        let subscribe = state
            .followed
            .iter()
            .filter(|(_, s)| !s.confirmed)
            .map(|(atsign, s)| (atsign.clone(), s.generation))
            .collect();
        let unsubscribe = subscribed
            .iter()
            .filter(|atsign| !state.followed.contains_key(*atsign))
            .cloned()
            .collect();
        (subscribe, unsubscribe)
    }

    /// The store's side: the subscription to `atsign` requested as `generation` is confirmed
    /// (ignored if it was lost or unfollowed since).
    pub fn confirm(&self, atsign: &AtSign, generation: u64) {
        let mut state = self.state();
        match state.followed.get_mut(atsign) {
            Some(s) if s.generation == generation => s.confirmed = true,
            _ => return,
        }
        drop(state);
        self.0.confirmed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The store's side: the subscription to `atsign` ended without being asked to (a Redis
    /// Cluster slot moved); it is to be made again.
    pub fn lost(&self, atsign: &AtSign) {
        let mut state = self.state();
        state.next_generation += 1;
        let generation = state.next_generation;
        let Some(s) = state.followed.get_mut(atsign) else {
            return;
        };
        *s = Subscription {
            generation,
            confirmed: false,
        };
        drop(state);
        self.0.changed.notify_one();
    }

    /// The store's side: every subscription ended (its connection dropped).
    pub fn lost_all(&self) {
        let mut state = self.state();
        state.next_generation += 1;
        let generation = state.next_generation;
        for s in state.followed.values_mut() {
            *s = Subscription {
                generation,
                confirmed: false,
            };
        }
        drop(state);
        self.0.changed.notify_one();
    }

    /// The store's side: resolves once [`Follows::pending`] may have changed since the last
    /// call (a change made before it is awaited is not missed).
    pub async fn changed(&self) {
        self.0.changed.notified().await;
    }
}

/// What the store's subscription reads from Redis: one message of a followed atSign.
pub enum Heard {
    /// A message published for the atSign (its payload, as published).
    Message(AtSign, Vec<u8>),
    /// Messages of the atSign were dropped here ([`FEED_MESSAGES`], [`FEED_BYTES`]).
    Missed(AtSign),
}

/// The store's end of the queue to the monitors. Cheap to clone.
#[derive(Clone)]
pub struct Inbox(Arc<InboxShared>);

struct InboxShared {
    sender: mpsc::Sender<(AtSign, Vec<u8>)>,
    /// Payload bytes queued now, and the most there may be.
    bytes: Arc<AtomicUsize>,
    byte_limit: usize,
    /// Atsigns whose messages were dropped since the feed last took them.
    missed: Arc<Mutex<HashSet<AtSign>>>,
    any_missed: Arc<AtomicBool>,
    overflow: Mutex<Overflow>,
}

/// Dropped messages not logged yet, and when the last log line went.
#[derive(Default)]
struct Overflow {
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// The monitors' end of the queue.
pub struct Feed {
    receiver: mpsc::Receiver<(AtSign, Vec<u8>)>,
    bytes: Arc<AtomicUsize>,
    missed: Arc<Mutex<HashSet<AtSign>>>,
    any_missed: Arc<AtomicBool>,
}

/// A queue from the store to the monitors, bounded by [`FEED_MESSAGES`] and [`FEED_BYTES`].
pub fn feed() -> (Inbox, Feed) {
    feed_bounded(FEED_MESSAGES, FEED_BYTES)
}

fn feed_bounded(messages: usize, byte_limit: usize) -> (Inbox, Feed) {
    let (sender, receiver) = mpsc::channel(messages);
    let bytes = Arc::new(AtomicUsize::new(0));
    let missed = Arc::new(Mutex::new(HashSet::new()));
    let any_missed = Arc::new(AtomicBool::new(false));
    let inbox = Inbox(Arc::new(InboxShared {
        sender,
        bytes: Arc::clone(&bytes),
        byte_limit,
        missed: Arc::clone(&missed),
        any_missed: Arc::clone(&any_missed),
        overflow: Mutex::default(),
    }));
    let feed = Feed {
        receiver,
        bytes,
        missed,
        any_missed,
    };
    (inbox, feed)
}

impl Inbox {
    /// Queues `payload`, published for `atsign`, without waiting: if the queue is full (in
    /// messages or bytes) it is dropped instead, counted, and `atsign` noted as having missed
    /// it. `false` once the feed is gone (nobody reads any more).
    pub fn offer(&self, atsign: AtSign, payload: Vec<u8>) -> bool {
        let shared = &self.0;
        let size = payload.len();
        let before = shared.bytes.fetch_add(size, Ordering::AcqRel);
        if before.saturating_add(size) > shared.byte_limit {
            shared.bytes.fetch_sub(size, Ordering::AcqRel);
            self.drop_one(atsign);
            return !shared.sender.is_closed();
        }
        match shared.sender.try_send((atsign, payload)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full((atsign, _))) => {
                shared.bytes.fetch_sub(size, Ordering::AcqRel);
                self.drop_one(atsign);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the feed is gone.
    pub fn is_closed(&self) -> bool {
        self.0.sender.is_closed()
    }

    /// Resolves once the feed is gone.
    pub async fn closed(&self) {
        self.0.sender.closed().await
    }

    fn drop_one(&self, atsign: AtSign) {
        let shared = &self.0;
        crate::metrics::metrics().redis_notifications_dropped.inc();
        {
            let mut missed = shared.missed.lock().unwrap_or_else(|e| e.into_inner());
            if missed.len() < MISSED_MAX || missed.contains(&atsign) {
                missed.insert(atsign);
                shared.any_missed.store(true, Ordering::Release);
            }
        }
        let mut overflow = shared.overflow.lock().unwrap_or_else(|e| e.into_inner());
        overflow.unlogged += 1;
        if overflow
            .logged_at
            .is_none_or(|at| at.elapsed() >= DROP_LOG_EVERY)
        {
            tracing::warn!(
                dropped = overflow.unlogged,
                queued_max = FEED_MESSAGES,
                bytes_max = shared.byte_limit,
                "notifications from Redis dropped: this node reads them too slowly; their monitors end and replay from the store"
            );
            overflow.unlogged = 0;
            overflow.logged_at = Some(Instant::now());
        }
    }
}

impl Feed {
    /// The next thing heard: first the atSigns that missed messages (once each), then the
    /// queued messages in order. `None` once every [`Inbox`] is gone and the queue is empty.
    /// (A drop happens with the queue full, so it is seen at the next call; only a payload
    /// larger than the whole byte bound, above the default `buffer_limit` of a client's line,
    /// could be dropped with the queue empty, and is then reported with the next message.)
    pub async fn recv(&mut self) -> Option<Heard> {
        if self.any_missed.swap(false, Ordering::AcqRel) {
            let missed: Vec<AtSign> = {
                let mut set = self.missed.lock().unwrap_or_else(|e| e.into_inner());
                set.drain().collect()
            };
            if let Some((first, rest)) = missed.split_first() {
                if !rest.is_empty() {
                    // Handed out one per call; put the rest back for the next calls.
                    let mut set = self.missed.lock().unwrap_or_else(|e| e.into_inner());
                    set.extend(rest.iter().cloned());
                    self.any_missed.store(true, Ordering::Release);
                }
                return Some(Heard::Missed(first.clone()));
            }
        }
        let (atsign, payload) = self.receiver.recv().await?;
        self.bytes.fetch_sub(payload.len(), Ordering::AcqRel);
        Some(Heard::Message(atsign, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(name: &str) -> AtSign {
        AtSign::parse(name).unwrap()
    }

    /// A consumer that does not read: past the bound every message is dropped (the queue holds
    /// the bound, not what was offered), each counted, and the atSigns that lost one are told
    /// first when it reads again; then the queued ones arrive, in order.
    #[tokio::test]
    async fn a_feed_nobody_reads_holds_its_bound_and_drops_and_counts_the_rest() {
        let dropped = || crate::metrics::metrics().redis_notifications_dropped.get();
        let (inbox, mut feed) = feed_bounded(8, 1 << 20);
        let (alice, bob) = (sign("@alice"), sign("@bob"));
        let before = dropped();
        for n in 0..8 {
            assert!(inbox.offer(alice.clone(), vec![n]));
        }
        for n in 8..1_000u32 {
            let who = if n % 2 == 0 { &alice } else { &bob };
            assert!(
                inbox.offer(who.clone(), n.to_be_bytes().to_vec()),
                "still open"
            );
        }
        // Other tests of this process may drop too: at least ours.
        assert!(dropped() - before >= 992, "{}", dropped() - before);
        assert_eq!(inbox.0.bytes.load(Ordering::Acquire), 8);
        let mut missed = HashSet::new();
        let mut messages = Vec::new();
        while let Ok(Some(heard)) =
            tokio::time::timeout(Duration::from_millis(100), feed.recv()).await
        {
            match heard {
                Heard::Missed(atsign) => {
                    assert!(messages.is_empty(), "told before the queued messages");
                    missed.insert(atsign);
                }
                Heard::Message(atsign, payload) => messages.push((atsign, payload)),
            }
        }
        assert_eq!(missed, HashSet::from([alice.clone(), bob.clone()]));
        let want: Vec<(AtSign, Vec<u8>)> = (0..8).map(|n| (alice.clone(), vec![n])).collect();
        assert_eq!(messages, want);
        assert_eq!(inbox.0.bytes.load(Ordering::Acquire), 0, "all read");
        // Room again.
        assert!(inbox.offer(bob.clone(), vec![1]));
        assert!(matches!(feed.recv().await, Some(Heard::Message(who, _)) if who == bob));
        drop(feed);
        assert!(!inbox.offer(bob, vec![2]), "the feed is gone");
    }

    /// The byte bound holds whatever the count: one payload larger than what is left is
    /// dropped, a small one after it still fits.
    #[tokio::test]
    async fn a_feed_drops_what_would_pass_its_byte_bound() {
        let (inbox, mut feed) = feed_bounded(1_000, 100);
        let alice = sign("@alice");
        assert!(inbox.offer(alice.clone(), vec![0; 60]));
        assert!(
            inbox.offer(alice.clone(), vec![1; 60]),
            "dropped, still open"
        );
        assert!(inbox.offer(alice.clone(), vec![2; 40]));
        assert_eq!(inbox.0.bytes.load(Ordering::Acquire), 100);
        assert!(matches!(feed.recv().await, Some(Heard::Missed(who)) if who == alice));
        for fill in [0u8, 2] {
            match feed.recv().await {
                Some(Heard::Message(_, payload)) => assert_eq!(payload[0], fill),
                _ => panic!("a message"),
            }
        }
    }

    /// A confirmation counts only for the request it answers: one older than a loss (or than an
    /// unfollow and follow again) leaves the atSign unconfirmed, and `ready` waits (bounded).
    #[tokio::test]
    async fn follows_count_only_the_confirmation_of_the_latest_request() {
        let follows = Follows::default();
        let alice = sign("@alice");
        let short = Duration::from_millis(50);
        assert!(!follows.ready(&alice, short).await, "not followed");
        follows.follow(&alice);
        let (subscribe, unsubscribe) = follows.pending(&HashSet::new());
        assert!(unsubscribe.is_empty());
        let [(who, generation)] = subscribe.as_slice() else {
            panic!("{}", subscribe.len())
        };
        assert_eq!(who, &alice);
        assert!(!follows.ready(&alice, short).await, "not confirmed yet");
        // Confirmed while a monitor waits: it is woken.
        let waiting = tokio::spawn({
            let (follows, alice) = (follows.clone(), alice.clone());
            async move { follows.ready(&alice, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(short).await;
        follows.confirm(&alice, *generation);
        assert!(waiting.await.unwrap());
        // Lost: a late confirmation of the old request does not count.
        follows.lost(&alice);
        follows.confirm(&alice, *generation);
        assert!(!follows.ready(&alice, short).await);
        let (subscribe, _) = follows.pending(&HashSet::from([alice.clone()]));
        assert_eq!(subscribe.len(), 1);
        follows.confirm(&alice, subscribe[0].1);
        assert!(follows.ready(&alice, short).await);
        // Unfollowed: to unsubscribe, and no longer ready.
        follows.unfollow(&alice);
        let (subscribe, unsubscribe) = follows.pending(&HashSet::from([alice.clone()]));
        assert!(subscribe.is_empty());
        assert_eq!(unsubscribe, vec![alice.clone()]);
        assert!(!follows.ready(&alice, short).await);
    }
}
