//! `AuthState`: who the client on one connection has proven to be ([`AuthState::asker`]; what
//! that asker may run is decided in [`crate::access`]).
//!
//! ```text
//! proven:    None ──cram/pkam ok (challenge for @me)──► Owner(@me)
//!            None ──pol ok (challenge for @bob)───────► Peer(@bob)      (server-to-server)
//! challenge: set by every `from`, taken by the next proof (whatever its outcome), 60 s
//! owner:     how the owner proved itself (cram or pkam) and, for APKAM, the enrollment id
//! ```
//!
//! As in the reference, the session id is one per connection, and `from` only hands out a new
//! challenge: it never takes back what the connection has proven (a client may send `from`
//! again on an authenticated connection and stays authenticated). A failed proof leaves
//! `proven` as it was.
//!
//! Pure: no I/O, no clock of its own (callers pass `now`). A challenge is good for [`CHALLENGE_TTL`] and for one attempt:
//! taking it for a proof removes it, whatever the proof turns out to be, so one `from` cannot be
//! used to try many digests.
//!
//! APKAM (docs/authentication.md#apkam-enrollment, docs/authentication.md#pkam): an owner proven
//! by `pkam:enrollmentId:<id>:…`, or by cram followed by an auto-approved `enroll:request`,
//! carries that enrollment id, and `enroll:request` is limited to
//! [`ENROLL_REQUESTS_PER_WINDOW`] per [`ENROLL_REQUEST_WINDOW`] on one connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use at_common::reply::Prompt;
use at_common::AtSign;

use crate::access::Asker;
pub use crate::access::OwnerAuth;

/// How long a `from` challenge can be answered (the reference keeps it 60 s).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// How many `enroll:request`s one connection may send in [`ENROLL_REQUEST_WINDOW`] (the
/// reference's `maxRequestsPerTimeFrame`).
pub const ENROLL_REQUESTS_PER_WINDOW: usize = 5;
/// The sliding window of [`ENROLL_REQUESTS_PER_WINDOW`] (the reference's `timeFrameInMills`).
pub const ENROLL_REQUEST_WINDOW: Duration = Duration::from_secs(60 * 60);

/// A challenge handed out by `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `_<uuid>`, the connection's session id.
    pub session_id: String,
    /// The random challenge, a uuid.
    pub nonce: String,
    /// The atSign that claimed itself with `from`.
    pub claimed: AtSign,
    pub issued: Instant,
}

impl Challenge {
    /// What the client signs (pkam) or hashes after its secret (cram), and what `from` returned
    /// after `data:`: `<sessionId><@claimed>:<nonce>`.
    pub fn text(&self) -> String {
        format!("{}{}:{}", self.session_id, self.claimed, self.nonce)
    }

    /// Whether it can be answered `now` (within [`CHALLENGE_TTL`]) by an atSign that
    /// `claimed_by` accepts as the one it was handed to.
    fn answerable(&self, now: Instant, claimed_by: impl FnOnce(&AtSign) -> bool) -> bool {
        claimed_by(&self.claimed) && now.saturating_duration_since(self.issued) <= CHALLENGE_TTL
    }
}

/// What a connection has proven.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Proven {
    #[default]
    Nothing,
    /// The owner of the atSign this connection serves (cram or pkam).
    Owner(AtSign),
    /// Another atSign's server, by `pol`.
    Peer(AtSign),
}

/// The session state of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthState {
    session_id: String,
    proven: Proven,
    /// Boxed: it lives only from `from` to the next proof, and every connection's state is
    /// held for its life.
    challenge: Option<Box<Challenge>>,
    /// How the owner proved itself; `None` unless [`Proven::Owner`] came by [`Self::prove_owner`].
    owner_auth: Option<OwnerAuth>,
    /// The APKAM enrollment the connection acts as, if any.
    enrollment_id: Option<String>,
    /// When this connection's recent `enroll:request`s were admitted, oldest first.
    enroll_requests: VecDeque<Instant>,
    /// The owner turned this connection into a monitor: no prompts from now on.
    monitoring: bool,
}

impl AuthState {
    /// A new connection's state, with its session id (`_<uuid>`).
    pub fn new(session_id: String) -> AuthState {
        AuthState {
            session_id,
            proven: Proven::Nothing,
            challenge: None,
            owner_auth: None,
            enrollment_id: None,
            enroll_requests: VecDeque::new(),
            monitoring: false,
        }
    }

    /// A new connection's state with a fresh random session id.
    pub fn fresh() -> AuthState {
        AuthState::new(format!("_{}", uuid::Uuid::new_v4()))
    }

    /// What the connection has proven.
    pub fn proven(&self) -> &Proven {
        &self.proven
    }

    /// The prompt after a successful reply in this state (errors: see `Reply::render`).
    pub fn prompt(&self) -> Prompt {
        match &self.proven {
            // Real clients read a monitor line by line: a prompt would stick to the next line.
            Proven::Owner(me) if self.monitoring => Prompt::Monitor(me.clone()),
            Proven::Owner(me) => Prompt::Owner(me.clone()),
            Proven::Peer(peer) => Prompt::Peer(peer.clone()),
            Proven::Nothing => Prompt::Unauthenticated,
        }
    }

    /// The owner's `monitor`: replies from now on carry no prompt.
    pub fn start_monitoring(&mut self) {
        self.monitoring = true;
    }

    /// The atSign whose server this connection proved to be, by `pol`.
    pub fn peer(&self) -> Option<&AtSign> {
        match &self.proven {
            Proven::Peer(peer) => Some(peer),
            _ => None,
        }
    }

    /// Takes the pending challenge for a `pol`: one handed to another atSign than `me`. Spent
    /// whatever happens next; `None` when there is none or it expired.
    pub fn take_peer_challenge(&mut self, me: &AtSign, now: Instant) -> Option<Challenge> {
        self.take_live(now, |claimed| claimed != me)
    }

    /// Whether this connection has proven to be the owner.
    pub fn is_owner(&self) -> bool {
        matches!(self.proven, Proven::Owner(_))
    }

    /// Who is asking on this connection, for [`crate::access`]. An owner proven without
    /// saying how counts as pkam (the stricter).
    pub fn asker(&self) -> Asker {
        match &self.proven {
            Proven::Nothing => Asker::Anyone,
            Proven::Owner(_) => Asker::Owner {
                via: self.owner_auth.unwrap_or(OwnerAuth::Pkam),
                enrollment: self.enrollment_id.clone(),
            },
            Proven::Peer(peer) => Asker::Peer(peer.clone()),
        }
    }

    /// How the owner proved itself; `None` when the connection is not the owner's.
    pub fn owner_auth(&self) -> Option<OwnerAuth> {
        self.owner_auth.filter(|_| self.is_owner())
    }

    /// The APKAM enrollment the owner's connection acts as, if any.
    pub fn enrollment_id(&self) -> Option<&str> {
        self.enrollment_id.as_deref().filter(|_| self.is_owner())
    }

    /// Records a successful cram or pkam by the owner `me`, with the enrollment it used (pkam
    /// with `enrollmentId`); a proof without one leaves the connection without an enrollment.
    pub fn prove_owner(&mut self, me: AtSign, via: OwnerAuth, enrollment_id: Option<String>) {
        self.proven = Proven::Owner(me);
        self.owner_auth = Some(via);
        self.enrollment_id = enrollment_id;
    }

    /// The connection now acts as the enrollment `id`: the reference's cram-authenticated
    /// `enroll:request`, approved at once, makes the requesting connection that enrollment.
    pub fn remember_enrollment(&mut self, id: String) {
        self.enrollment_id = Some(id);
    }

    /// Admits one more `enroll:request` at `now` if the connection has sent fewer than
    /// [`ENROLL_REQUESTS_PER_WINDOW`] in the last [`ENROLL_REQUEST_WINDOW`]; a refused request
    /// does not count.
    pub fn admit_enroll_request(&mut self, now: Instant) -> bool {
        while self
            .enroll_requests
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= ENROLL_REQUEST_WINDOW)
        {
            self.enroll_requests.pop_front();
        }
        if self.enroll_requests.len() >= ENROLL_REQUESTS_PER_WINDOW {
            return false;
        }
        self.enroll_requests.push_back(now);
        true
    }

    /// `from:<claimed>`: hands out a new challenge (with the connection's session id),
    /// replacing any earlier one; what the connection has proven is kept.
    pub fn challenge(&mut self, claimed: AtSign, nonce: String, now: Instant) -> &Challenge {
        self.challenge.insert(Box::new(Challenge {
            session_id: self.session_id.clone(),
            nonce,
            claimed,
            issued: now,
        }))
    }

    /// Whether a proof by `claimant` now would answer a live challenge.
    pub fn has_challenge(&self, claimant: &AtSign, now: Instant) -> bool {
        self.challenge
            .as_ref()
            .is_some_and(|challenge| challenge.answerable(now, |claimed| claimed == claimant))
    }

    /// Takes the pending challenge for a proof by `claimant` (the owner for cram/pkam). It is
    /// spent whatever happens next, so each challenge is tried once. `None` when there is
    /// none, it expired, or it was for another atSign: the proof fails.
    pub fn take_challenge(&mut self, claimant: &AtSign, now: Instant) -> Option<Challenge> {
        self.take_live(now, |claimed| claimed == claimant)
    }

    /// Takes the pending challenge (spent whatever it is), if it is live and for whom
    /// `claimed_by` accepts.
    fn take_live(
        &mut self,
        now: Instant,
        claimed_by: impl FnOnce(&AtSign) -> bool,
    ) -> Option<Challenge> {
        let challenge = *self.challenge.take()?;
        challenge.answerable(now, claimed_by).then_some(challenge)
    }

    /// Records a successful proof.
    pub fn prove(&mut self, proven: Proven) {
        self.proven = proven;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(s: &str) -> AtSign {
        AtSign::parse(s).unwrap()
    }

    fn state(proven: Proven, challenged: bool) -> AuthState {
        let mut state = AuthState::new("_s".into());
        if challenged {
            state.challenge(sign("@alice"), "n".into(), Instant::now());
        }
        state.prove(proven);
        state
    }

    #[test]
    fn the_asker_is_what_the_connection_proved_whatever_its_challenge() {
        for challenged in [false, true] {
            assert_eq!(state(Proven::Nothing, challenged).asker(), Asker::Anyone);
            assert_eq!(
                state(Proven::Peer(sign("@bob")), challenged).asker(),
                Asker::Peer(sign("@bob"))
            );
        }
        let mut owner = state(Proven::Nothing, true);
        owner.prove_owner(sign("@alice"), OwnerAuth::Cram, Some("e1".into()));
        assert_eq!(
            owner.asker(),
            Asker::Owner {
                via: OwnerAuth::Cram,
                enrollment: Some("e1".into())
            }
        );
    }

    #[test]
    fn prompts_follow_what_is_proven() {
        assert_eq!(state(Proven::Nothing, false).prompt().as_text(), "@");
        assert_eq!(state(Proven::Nothing, true).prompt().as_text(), "@");
        let owner = state(Proven::Owner(sign("@alice")), true);
        assert_eq!(owner.prompt().as_text(), "@alice@");
        let peer = state(Proven::Peer(sign("@bob")), false);
        assert_eq!(peer.prompt().as_text(), "@bob@");
    }

    #[test]
    fn challenges_carry_the_one_session_id_of_the_connection() {
        let mut state = AuthState::new("_4af2".into());
        let now = Instant::now();
        let first = state.challenge(sign("@alice"), "d6ca".into(), now).text();
        assert_eq!(first, "_4af2@alice:d6ca");
        let second = state.challenge(sign("@alice"), "e7db".into(), now).text();
        assert_eq!(second, "_4af2@alice:e7db");
    }

    #[test]
    fn a_challenge_is_taken_once() {
        let now = Instant::now();
        let alice = sign("@alice");
        let mut state = state(Proven::Nothing, true);
        assert!(state.take_challenge(&alice, now).is_some());
        assert!(state.take_challenge(&alice, now).is_none());
    }

    #[test]
    fn an_expired_challenge_is_refused_and_spent() {
        let issued = Instant::now();
        let alice = sign("@alice");
        let mut state = AuthState::new("_s".into());
        state.challenge(alice.clone(), "n".into(), issued);
        let late = issued + CHALLENGE_TTL + Duration::from_millis(1);
        assert!(state.take_challenge(&alice, late).is_none());
        assert!(state.take_challenge(&alice, issued).is_none(), "spent");
        state.challenge(alice.clone(), "n".into(), issued);
        assert!(state
            .take_challenge(&alice, issued + CHALLENGE_TTL)
            .is_some());
    }

    #[test]
    fn a_challenge_for_another_atsign_does_not_prove_the_owner() {
        let now = Instant::now();
        let mut state = AuthState::new("_s".into());
        state.challenge(sign("@bob"), "n".into(), now);
        assert!(state.take_challenge(&sign("@alice"), now).is_none());
    }

    #[test]
    fn from_again_and_failed_proofs_keep_an_owner_authenticated() {
        let now = Instant::now();
        let mut state = state(Proven::Owner(sign("@alice")), false);
        assert!(state.take_challenge(&sign("@alice"), now).is_none());
        state.challenge(sign("@alice"), "n".into(), now);
        assert!(state.is_owner());
        assert_eq!(state.prompt().as_text(), "@alice@");
    }

    #[test]
    fn the_owner_proof_records_how_and_which_enrollment() {
        let mut state = AuthState::new("_s".into());
        assert_eq!((state.owner_auth(), state.enrollment_id()), (None, None));
        state.prove_owner(sign("@alice"), OwnerAuth::Cram, None);
        assert_eq!(state.owner_auth(), Some(OwnerAuth::Cram));
        state.remember_enrollment("e1".into());
        assert_eq!(state.enrollment_id(), Some("e1"));
        state.prove_owner(sign("@alice"), OwnerAuth::Pkam, Some("e2".into()));
        assert_eq!(
            (state.owner_auth(), state.enrollment_id()),
            (Some(OwnerAuth::Pkam), Some("e2"))
        );
        state.prove_owner(sign("@alice"), OwnerAuth::Pkam, None);
        assert_eq!(state.enrollment_id(), None, "legacy pkam has no enrollment");
        assert_eq!(state.prompt().as_text(), "@alice@");
    }

    #[test]
    fn enroll_requests_are_limited_per_connection_in_a_sliding_window() {
        let start = Instant::now();
        let mut state = AuthState::new("_s".into());
        for i in 0..ENROLL_REQUESTS_PER_WINDOW {
            assert!(state.admit_enroll_request(start + Duration::from_secs(i as u64)));
        }
        assert!(!state.admit_enroll_request(start + Duration::from_secs(10)));
        assert!(
            !state.admit_enroll_request(start + ENROLL_REQUEST_WINDOW - Duration::from_millis(1))
        );
        // The first request leaves the window; one more is admitted, then none again.
        assert!(state.admit_enroll_request(start + ENROLL_REQUEST_WINDOW));
        assert!(!state.admit_enroll_request(start + ENROLL_REQUEST_WINDOW));
        // A new connection has its own window.
        assert!(AuthState::new("_t".into()).admit_enroll_request(start));
    }
}
