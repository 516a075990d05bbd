//! `Admission`: which connections a node holds, so that no client, tenant or peer can take
//! the room the others need.
//!
//! Every network connection is a member of one pool at a time:
//! - **unauthenticated** (node-wide, `unauthenticated_max_limit`): from accept until a proof
//!   succeeds. A source address (IPv4, IPv6 /64) holds at most
//!   `unauthenticated_per_source_limit` of them; past that its new connections are refused
//!   (AT0012). When the pool is full, a newcomer takes the place of the oldest member: they hold
//!   no state, and so a flood of connections can delay but never keep out an owner who
//!   connects and authenticates.
//! - **owner of @x** (`inbound_max_limit` per atSign, the reference's 200): the owner's and its
//!   devices' authenticated connections. Only @x's own credentials get a connection here, so
//!   nothing anyone else does can fill it.
//! - **peers of @x** (`peer_max_limit` per atSign, at most `peer_per_atsign_limit` from one
//!   other atSign): other atServers' pol connections to @x.
//!
//! When an authenticated pool is full, the newcomer takes the place of the member idle the
//! longest, if that one has been idle at least [`REAP_AFTER`] (the reference's lower idle
//! limit as its pool fills); otherwise the newcomer is refused with AT0012. And the node as a
//! whole holds at most `max_connections` (0: derived from the process's file-descriptor
//! limit, [`derived_max_connections`]), of which the authenticated pools together hold all
//! but [`unauthenticated_reserve`]: so there is always room for a newcomer to connect and
//! prove itself. When the authenticated pools fill the node, a newcomer who has proved itself
//! (to an atSign under its own limit) takes the place of the idlest member (idle at least
//! [`REAP_AFTER`]) of the largest pool: the tenant holding the most gives way first, so no
//! tenant's connections can lock the others out of a full node, and nobody without
//! credentials can make anyone give way.
//!
//! The table is also where a connection's idleness is kept and acted on: one task per node
//! ([`Admission::close_idle`]) tells each member idle past its pool's limit to close
//! (`inbound_idle_time_millis` unauthenticated, `authenticated_idle_time_millis` otherwise),
//! and [`Admission::drain`] tells every member to close when the node shuts down. A timer or
//! a signal of its own in each of tens of thousands of idle connections would cost memory
//! that the node's capacity is counted in.
//!
//! In-process connections (this node's own peer links) are not members: those links are
//! bounded by `outbound_max_limit`, and close when the link closes (its own idle limit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use at_common::error::{AtError, ErrorCode};
use at_common::AtSign;

use super::throttle::Source;

/// How long an authenticated connection must have been idle before a newcomer may take its
/// place in a full pool.
pub const REAP_AFTER: Duration = Duration::from_secs(5);

/// File descriptors kept back from connections when the node's limit is derived: the store,
/// logs, listeners, peer links and the directory.
pub const RESERVED_DESCRIPTORS: u64 = 512;

/// Room the authenticated pools leave for connections still proving themselves: the
/// unauthenticated pool's size, but at most a sixteenth of the node (at least one) and 256, so
/// that nearly all of it serves its tenants.
pub fn unauthenticated_reserve(limits: &AdmissionLimits) -> usize {
    let share = (limits.max_connections / 16).max(1);
    limits.unauthenticated.min(share).min(256)
}

/// The limits, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Network connections on the node at once.
    pub max_connections: usize,
    /// Connections not yet authenticated, node-wide.
    pub unauthenticated: usize,
    /// Of those, from one source address.
    pub unauthenticated_per_source: usize,
    /// Authenticated owner connections per atSign.
    pub per_atsign: usize,
    /// How long an unauthenticated member may be idle before it is told to close.
    pub idle_unauthenticated: Duration,
    /// How long an authenticated member may be idle.
    pub idle_authenticated: Duration,
    /// Peer (pol) connections per atSign.
    pub peers_per_atsign: usize,
    /// Of those, from one other atSign.
    pub per_peer: usize,
}

/// Tells a member's connection to close.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Close {
    /// Another connection took its place.
    Evicted,
    /// It was idle past its pool's limit when the node looked ([`Ticket::idle`] says whether
    /// it still is: a request may have arrived since).
    Idle,
    /// The node shuts down: after the command in flight is answered.
    Draining,
}

/// Where a member is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pool {
    Unauthenticated,
    Owner(AtSign),
    Peers(AtSign),
}

struct Member {
    pool: Pool,
    source: Source,
    /// For the per-peer bound: which atSign a peer connection proved to be.
    peer: Option<AtSign>,
    since: Instant,
    /// Milliseconds since `since` at the member's last request.
    active: Arc<AtomicU64>,
    /// Where its connection is told to close ([`Ticket::attach`]).
    close: Option<Recipient<Close>>,
    /// `active` when it was last told it is idle: told once until a request arrives.
    told_idle: Option<u64>,
}

impl Member {
    fn idle(&self, now: Instant) -> Duration {
        let active = Duration::from_millis(self.active.load(Ordering::Relaxed));
        now.saturating_duration_since(self.since + active)
    }

    fn authenticated(&self) -> bool {
        self.pool != Pool::Unauthenticated
    }
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    counts: HashMap<Pool, usize>,
    unauthenticated_by_source: HashMap<Source, usize>,
    peers_by_pair: HashMap<(AtSign, AtSign), usize>,
    next_id: u64,
    /// The node shuts down: every member is told, and so is each one attached later.
    draining: bool,
}

/// The node's connection budget; cheap to clone.
#[derive(Clone)]
pub struct Admission(Arc<Inner>);

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.0.limits)
            .field("open", &self.open())
            .finish()
    }
}

struct Inner {
    limits: AdmissionLimits,
    state: Mutex<State>,
}

/// A member's place; leaves its pool when dropped.
pub struct Ticket {
    admission: Admission,
    id: u64,
    since: Instant,
    active: Arc<AtomicU64>,
}

fn refused(why: &str) -> AtError {
    tracing::info!(why, "connection refused");
    AtError::with_detail(ErrorCode::InboundConnectionLimit, why)
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission(Arc::new(Inner {
            limits,
            state: Mutex::default(),
        }))
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.0.limits
    }

    /// How long `member` has been idle at `now`, and whether that is past its pool's limit.
    fn idleness(&self, member: &Member, now: Instant) -> (Duration, bool) {
        let limit = match member.authenticated() {
            true => self.0.limits.idle_authenticated,
            false => self.0.limits.idle_unauthenticated,
        };
        let idle = member.idle(now);
        (idle, idle >= limit)
    }

    /// How often [`Admission::close_idle`] looks: an eighth of the shorter limit, between
    /// 10 ms and 1 s, so a connection is closed at most that late.
    fn idle_period(&self) -> Duration {
        let limits = &self.0.limits;
        (limits.idle_unauthenticated.min(limits.idle_authenticated) / 8)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Tells each member idle past its pool's limit to close, every [`Self::idle_period`], for
    /// as long as the admission is in use (spawned once per node). A member is told once
    /// until a request arrives; it checks again ([`Ticket::idle`]) when told, since a request
    /// may have arrived meanwhile.
    pub fn close_idle(&self) -> impl std::future::Future<Output = ()> + 'static {
        let admission = Arc::downgrade(&self.0);
        let period = self.idle_period();
        async move {
            let mut every = actix_rt::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(admission) = admission.upgrade() else {
                    return;
                };
                Admission(admission).tell_idle(Instant::now());
            }
        }
    }

    fn tell_idle(&self, now: Instant) {
        let mut state = self.lock();
        for member in state.members.values_mut() {
            let active = member.active.load(Ordering::Relaxed);
            if member.told_idle == Some(active) || !self.idleness(member, now).1 {
                continue;
            }
            if let Some(close) = &member.close {
                close.do_send(Close::Idle);
                member.told_idle = Some(active);
            }
        }
    }

    /// The node shuts down: tells every member to close once its command in flight is
    /// answered, and each one that attaches from now on.
    pub fn drain(&self) {
        let mut state = self.lock();
        state.draining = true;
        for close in state.members.values().filter_map(|m| m.close.as_ref()) {
            close.do_send(Close::Draining);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Network connections held now.
    pub fn open(&self) -> usize {
        self.lock().members.len()
    }

    /// Authenticated network connections to `atsign` now: its owner's (and devices') and
    /// other atServers'.
    pub fn held_by(&self, atsign: &AtSign) -> (usize, usize) {
        let state = self.lock();
        let count = |pool| state.counts.get(&pool).copied().unwrap_or(0);
        (
            count(Pool::Owner(atsign.clone())),
            count(Pool::Peers(atsign.clone())),
        )
    }

    /// A new connection from `source`, unauthenticated; AT0012 when the node is full or the
    /// source holds its share already.
    pub fn enter(&self, source: Source) -> Result<Ticket, AtError> {
        let limits = &self.0.limits;
        let now = Instant::now();
        let mut state = self.lock();
        let from_source = state
            .unauthenticated_by_source
            .get(&source)
            .copied()
            .unwrap_or(0);
        if from_source >= limits.unauthenticated_per_source {
            return Err(refused(
                "too many unauthenticated connections from one source",
            ));
        }
        let full = |state: &State| {
            state.members.len() >= limits.max_connections
                || count(state, &Pool::Unauthenticated) >= limits.unauthenticated
        };
        if full(&state) {
            // The oldest unauthenticated connection makes room (it holds no state).
            let oldest = state
                .members
                .iter()
                .filter(|(_, m)| m.pool == Pool::Unauthenticated)
                .min_by_key(|(_, m)| m.since)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => evict(&mut state, id),
                None => return Err(refused("the node holds its most connections")),
            }
            if full(&state) {
                return Err(refused("the node holds its most connections"));
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let active = Arc::new(AtomicU64::new(0));
        state.members.insert(
            id,
            Member {
                pool: Pool::Unauthenticated,
                source,
                peer: None,
                since: now,
                active: Arc::clone(&active),
                close: None,
                told_idle: None,
            },
        );
        *state.counts.entry(Pool::Unauthenticated).or_default() += 1;
        *state.unauthenticated_by_source.entry(source).or_default() += 1;
        Ok(Ticket {
            admission: self.clone(),
            id,
            since: now,
            active,
        })
    }
}

/// The member of `pool` other than `except` idle the longest, if idle at least [`REAP_AFTER`].
fn idlest(state: &State, pool: &Pool, except: u64, now: Instant) -> Option<u64> {
    state
        .members
        .iter()
        .filter(|(id, m)| m.pool == *pool && **id != except)
        .max_by_key(|(_, m)| m.idle(now))
        .filter(|(_, m)| m.idle(now) >= REAP_AFTER)
        .map(|(id, _)| *id)
}

fn count(state: &State, pool: &Pool) -> usize {
    state.counts.get(pool).copied().unwrap_or(0)
}

/// Takes `id` out of its pool and tells its connection to close.
fn evict(state: &mut State, id: u64) {
    if let Some(member) = remove(state, id) {
        tracing::debug!(pool = ?member.pool, "evicting a connection to make room");
        if let Some(close) = member.close {
            close.do_send(Close::Evicted);
        }
    }
}

/// Takes `id` out of the table and its pool's counts.
fn remove(state: &mut State, id: u64) -> Option<Member> {
    let member = state.members.remove(&id)?;
    leave_pool(state, &member);
    Some(member)
}

fn leave_pool(state: &mut State, member: &Member) {
    decrement(&mut state.counts, &member.pool);
    match &member.pool {
        Pool::Unauthenticated => decrement(&mut state.unauthenticated_by_source, &member.source),
        Pool::Peers(me) => {
            if let Some(peer) = &member.peer {
                decrement(&mut state.peers_by_pair, &(me.clone(), peer.clone()));
            }
        }
        Pool::Owner(_) => {}
    }
}

fn decrement<K: std::hash::Hash + Eq + Clone>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

impl Ticket {
    /// Where the connection is told to close ([`Close`]); told at once if the node is
    /// draining already.
    pub fn attach(&self, close: Recipient<Close>) {
        let mut state = self.admission.lock();
        if state.draining {
            close.do_send(Close::Draining);
        }
        if let Some(member) = state.members.get_mut(&self.id) {
            member.close = Some(close);
        }
    }

    /// The connection was active (a request arrived, or a reply that changes its limit left).
    pub fn touch(&self) {
        let millis = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.active.store(millis, Ordering::Relaxed);
    }

    /// How long the connection has been idle, and whether that is past its limit (the limit
    /// of its pool now: an authenticated member's is longer). Not idle once it has left the
    /// table (evicted: it is told so).
    pub fn idle(&self) -> (Duration, bool) {
        let state = self.admission.lock();
        state
            .members
            .get(&self.id)
            .map_or((Duration::ZERO, false), |member| {
                self.admission.idleness(member, Instant::now())
            })
    }

    /// The connection proved to be @`me`'s owner; AT0012 when @`me`'s owner pool is full of
    /// connections in use.
    pub fn owner_of(&self, me: &AtSign) -> Result<(), AtError> {
        let limit = self.admission.0.limits.per_atsign;
        self.promote(Pool::Owner(me.clone()), None, limit)
    }

    /// The connection proved to be @`peer`'s server, talking to @`me`; AT0012 when @`me`'s
    /// peer pool is full, or @`peer` holds its share of it.
    pub fn peer_of(&self, me: &AtSign, peer: &AtSign) -> Result<(), AtError> {
        let limit = self.admission.0.limits.peers_per_atsign;
        self.promote(Pool::Peers(me.clone()), Some(peer.clone()), limit)
    }

    fn promote(&self, pool: Pool, peer: Option<AtSign>, limit: usize) -> Result<(), AtError> {
        let limits = &self.admission.0.limits;
        let now = Instant::now();
        let mut state = self.admission.lock();
        let Some(current) = state.members.get(&self.id).map(|m| m.pool.clone()) else {
            return Err(refused("evicted meanwhile"));
        };
        if current == pool {
            return Ok(());
        }
        if let (Pool::Peers(me), Some(peer)) = (&pool, &peer) {
            let pair = (me.clone(), peer.clone());
            if state.peers_by_pair.get(&pair).copied().unwrap_or(0) >= limits.per_peer {
                return Err(refused(
                    "one atSign holds its share of another's peer connections",
                ));
            }
        }
        if count(&state, &pool) >= limit {
            match idlest(&state, &pool, self.id, now) {
                Some(id) => evict(&mut state, id),
                None => return Err(refused("an atSign's connections are all in use")),
            }
        }
        let authenticated = state.members.len() - count(&state, &Pool::Unauthenticated);
        let room = limits
            .max_connections
            .saturating_sub(unauthenticated_reserve(limits))
            .max(1);
        if current == Pool::Unauthenticated && authenticated >= room {
            let largest = state
                .counts
                .iter()
                .filter(|(p, _)| **p != Pool::Unauthenticated)
                .max_by_key(|(_, n)| **n)
                .map(|(p, _)| p.clone());
            match largest.and_then(|largest| idlest(&state, &largest, self.id, now)) {
                Some(id) => evict(&mut state, id),
                None => return Err(refused("the node's connections are all in use")),
            }
        }
        let Some(member) = state.members.remove(&self.id) else {
            return Err(refused("evicted meanwhile"));
        };
        leave_pool(&mut state, &member);
        *state.counts.entry(pool.clone()).or_default() += 1;
        if let (Pool::Peers(me), Some(peer)) = (&pool, &peer) {
            *state
                .peers_by_pair
                .entry((me.clone(), peer.clone()))
                .or_default() += 1;
        }
        state.members.insert(
            self.id,
            Member {
                pool,
                peer,
                ..member
            },
        );
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        remove(&mut state, self.id);
    }
}

/// The node's connection limit when `max_connections` is 0: the process's file-descriptor
/// limit, raised first from its soft to its hard value, less [`RESERVED_DESCRIPTORS`]; at
/// least 64. Says what it did, for the log.
pub fn derived_max_connections() -> (usize, String) {
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let limit = match raised {
        Ok(limit) => limit,
        Err(error) => {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            tracing::warn!(%error, soft, "could not raise the file-descriptor limit");
            soft
        }
    };
    let max = limit.saturating_sub(RESERVED_DESCRIPTORS).max(64);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    (
        max,
        format!("file-descriptor limit {limit}, {max} connections"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 10,
            unauthenticated: 4,
            unauthenticated_per_source: 3,
            per_atsign: 2,
            idle_unauthenticated: Duration::from_secs(30),
            idle_authenticated: Duration::from_secs(3600),
            peers_per_atsign: 2,
            per_peer: 1,
        }
    }

    fn source(n: u8) -> Source {
        Source::of(Some([192, 0, 2, n].into()))
    }

    fn sign(name: &str) -> AtSign {
        AtSign::parse(name).unwrap()
    }

    #[test]
    fn one_source_holds_its_share_of_unauthenticated_connections_and_no_more() {
        let admission = Admission::new(limits());
        let held: Vec<_> = (0..3)
            .map(|_| admission.enter(source(1)).unwrap())
            .collect();
        let refused = admission.enter(source(1)).err().unwrap();
        assert_eq!(refused.code(), ErrorCode::InboundConnectionLimit);
        assert!(admission.enter(source(2)).is_ok(), "another source");
        drop(held);
        assert!(admission.enter(source(1)).is_ok(), "room again");
    }

    #[test]
    fn a_full_unauthenticated_pool_makes_room_by_dropping_its_oldest() {
        let admission = Admission::new(limits());
        let first = admission.enter(source(1)).unwrap();
        let _rest: Vec<_> = (2..5)
            .map(|n| admission.enter(source(n)).unwrap())
            .collect();
        assert_eq!(admission.open(), 4);
        let newcomer = admission.enter(source(9)).unwrap();
        assert_eq!(admission.open(), 4);
        assert!(
            !admission.lock().members.contains_key(&first.id),
            "the oldest went"
        );
        // An authenticated connection leaves the unauthenticated pool.
        newcomer.owner_of(&sign("@alice")).unwrap();
        assert_eq!(count(&admission.lock(), &Pool::Unauthenticated), 3);
    }

    #[test]
    fn an_owner_pool_in_use_refuses_but_an_idle_member_gives_way() {
        let admission = Admission::new(limits());
        let alice = sign("@alice");
        let a = admission.enter(source(1)).unwrap();
        let b = admission.enter(source(2)).unwrap();
        a.owner_of(&alice).unwrap();
        b.owner_of(&alice).unwrap();
        let c = admission.enter(source(3)).unwrap();
        // Both in use (just active): refused.
        a.touch();
        b.touch();
        assert!(c.owner_of(&alice).is_err());
        // Another atSign's pool is its own.
        c.owner_of(&sign("@bob")).unwrap();
        // One idle past REAP_AFTER gives way.
        let d = admission.enter(source(4)).unwrap();
        admission.lock().members.get_mut(&a.id).unwrap().since -= REAP_AFTER * 2;
        b.touch();
        d.owner_of(&alice).unwrap();
        assert!(!admission.lock().members.contains_key(&a.id));
    }

    #[test]
    fn one_peer_holds_its_share_of_an_atsigns_peer_connections() {
        let admission = Admission::new(limits());
        let (alice, bob, carol) = (sign("@alice"), sign("@bob"), sign("@carol"));
        let first = admission.enter(source(1)).unwrap();
        first.peer_of(&alice, &bob).unwrap();
        let second = admission.enter(source(1)).unwrap();
        assert!(second.peer_of(&alice, &bob).is_err());
        second.peer_of(&alice, &carol).unwrap();
        drop(first);
        let third = admission.enter(source(2)).unwrap();
        third.peer_of(&alice, &bob).unwrap();
    }

    #[test]
    fn the_node_limit_holds_across_pools() {
        let admission = Admission::new(AdmissionLimits {
            max_connections: 3,
            unauthenticated: 1,
            ..limits()
        });
        let alice = sign("@alice");
        let owners: Vec<_> = (0..2)
            .map(|n| {
                let t = admission.enter(source(n)).unwrap();
                t.owner_of(&alice).unwrap();
                t.touch();
                t
            })
            .collect();
        let _one = admission.enter(source(5)).unwrap();
        // Full: the only unauthenticated member gives way to a newcomer.
        let _two = admission.enter(source(6)).unwrap();
        assert_eq!(admission.open(), 3);
        drop(owners);
        assert_eq!(admission.open(), 1);
    }

    /// The authenticated pools fill the node (all but the unauthenticated reserve): a newcomer
    /// still connects, and once it proves itself to an atSign under its own limit, the largest
    /// pool's idlest member gives way, if one is idle; while all are in use it is refused.
    #[test]
    fn a_full_node_makes_room_for_a_proven_newcomer_from_its_largest_pool() {
        let admission = Admission::new(AdmissionLimits {
            max_connections: 4,
            unauthenticated: 2,
            per_atsign: 3,
            ..limits()
        });
        let (alice, bob, carol) = (sign("@alice"), sign("@bob"), sign("@carol"));
        let owner = |n: u8, of: &AtSign| {
            let t = admission.enter(source(n)).unwrap();
            t.owner_of(of).unwrap();
            t.touch();
            t
        };
        let alices = [owner(1, &alice), owner(2, &alice)];
        let _bob = owner(3, &bob);
        // Four places, one kept for newcomers: the node's authenticated room is full.
        let newcomer = admission.enter(source(4)).unwrap();
        let refused = newcomer.owner_of(&carol).err().unwrap();
        assert_eq!(refused.code(), ErrorCode::InboundConnectionLimit);
        // @alice holds the most; her idlest gives way once idle long enough, not @bob's.
        admission
            .lock()
            .members
            .get_mut(&alices[0].id)
            .unwrap()
            .since -= REAP_AFTER * 2;
        admission.lock().members.get_mut(&_bob.id).unwrap().since -= REAP_AFTER * 4;
        let newcomer = admission.enter(source(5)).unwrap();
        newcomer.owner_of(&carol).unwrap();
        let state = admission.lock();
        assert!(!state.members.contains_key(&alices[0].id));
        assert!(state.members.contains_key(&_bob.id));
        assert_eq!(count(&state, &Pool::Owner(carol.clone())), 1);
    }

    /// Records what a member's connection is told.
    struct Told(std::rc::Rc<std::cell::RefCell<Vec<Close>>>);

    impl Actor for Told {
        type Context = Context<Self>;
    }

    impl Handler<Close> for Told {
        type Result = ();
        fn handle(&mut self, close: Close, _: &mut Context<Self>) {
            self.0.borrow_mut().push(close);
        }
    }

    /// A member attached to a recorder, and what it is told.
    fn attached(ticket: &Ticket) -> std::rc::Rc<std::cell::RefCell<Vec<Close>>> {
        let told = std::rc::Rc::default();
        ticket.attach(Told(std::rc::Rc::clone(&told)).start().recipient());
        told
    }

    async fn settle() {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    /// Past its pool's limit a member is told it is idle, once until it is active again;
    /// an authenticated member has the longer limit.
    #[actix_rt::test]
    async fn an_idle_member_is_told_once_until_it_is_active_again() {
        let admission = Admission::new(limits());
        let anonymous = admission.enter(source(1)).unwrap();
        let owner = admission.enter(source(2)).unwrap();
        owner.owner_of(&sign("@alice")).unwrap();
        let (told_anonymous, told_owner) = (attached(&anonymous), attached(&owner));
        let later = Instant::now() + Duration::from_secs(31);
        admission.tell_idle(later);
        admission.tell_idle(later);
        settle().await;
        assert_eq!(*told_anonymous.borrow(), [Close::Idle]);
        assert!(told_owner.borrow().is_empty());
        assert!(anonymous.idle().0 < Duration::from_secs(1));
        // Active again, then idle past the limit again.
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        anonymous.touch();
        assert!(!anonymous.idle().1);
        admission.tell_idle(later + Duration::from_secs(31));
        admission.tell_idle(later + Duration::from_secs(3600));
        settle().await;
        assert_eq!(*told_anonymous.borrow(), [Close::Idle, Close::Idle]);
        assert_eq!(*told_owner.borrow(), [Close::Idle]);
    }

    /// Draining tells every member, and each one that attaches afterwards.
    #[actix_rt::test]
    async fn draining_tells_every_member_and_each_attached_later() {
        let admission = Admission::new(limits());
        let first = admission.enter(source(1)).unwrap();
        let told_first = attached(&first);
        let second = admission.enter(source(2)).unwrap();
        admission.drain();
        let told_second = attached(&second);
        settle().await;
        assert_eq!(*told_first.borrow(), [Close::Draining]);
        assert_eq!(*told_second.borrow(), [Close::Draining]);
    }
}
