//! `AuthState`: who the client on one connection has proven to be, and what it may run.
//!
//! ```text
//! Fresh ──from:@me──► Challenged{owner} ──cram/pkam ok──► Owner(@me)
//!   ▲                      │ (expired, used, or wrong proof)
//!   └──────────────────────┘
//! Fresh ──from:@bob─► Challenged{peer @bob} ──pol ok──► Peer(@bob)      (server-to-server, next issue)
//! ```
//!
//! Pure: no I/O, no clock of its own (callers pass `now`), so the whole authorization matrix is
//! a table-driven unit test. A challenge is good for [`CHALLENGE_TTL`] and for one attempt:
//! taking it for a proof removes it, whatever the proof turns out to be, so one `from` cannot be
//! used to try many digests.

use std::time::{Duration, Instant};

use at_common::error::{AtError, ErrorCode};
use at_common::reply::Prompt;
use at_common::verb::Command;
use at_common::AtSign;

/// How long a `from` challenge can be answered (the reference keeps it 60 s).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// A challenge handed out by `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `_<uuid>`, the reference's session id.
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
}

/// The session state of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthState {
    /// Nothing claimed, or the last claim was spent.
    #[default]
    Fresh,
    /// `from` was answered; a proof is expected.
    Challenged(Challenge),
    /// Proven to be the owner of the atSign this connection serves (cram or pkam).
    Owner(AtSign),
    /// Proven, by `pol`, to be another atSign's server.
    Peer(AtSign),
}

impl AuthState {
    /// The prompt after a successful reply in this state (errors: see `Reply::render`).
    pub fn prompt(&self) -> Prompt {
        match self {
            AuthState::Owner(me) => Prompt::Owner(me.clone()),
            AuthState::Peer(peer) => Prompt::Peer(peer.clone()),
            AuthState::Fresh | AuthState::Challenged(_) => Prompt::Unauthenticated,
        }
    }

    /// Whether this connection has proven to be the owner.
    pub fn is_owner(&self) -> bool {
        matches!(self, AuthState::Owner(_))
    }

    /// May this state run `command`? Owner verbs need cram/pkam; everything else (the
    /// reference's `requiresAuth() == false`) may run before authentication and by a peer,
    /// whose handlers then answer according to who is asking.
    pub fn allows(&self, command: &Command) -> Result<(), AtError> {
        if self.is_owner() || !needs_owner(command) {
            return Ok(());
        }
        Err(AtError::with_detail(
            ErrorCode::Unauthenticated,
            "Command cannot be executed without auth",
        ))
    }

    /// `from:<claimed>`: hands out a new challenge, replacing any earlier one. An owner who
    /// sends `from` again starts over, as with the reference.
    pub fn challenge(
        claimed: AtSign,
        session_id: String,
        nonce: String,
        now: Instant,
    ) -> AuthState {
        AuthState::Challenged(Challenge {
            session_id,
            nonce,
            claimed,
            issued: now,
        })
    }

    /// Takes the pending challenge for a proof by `claimant` (the owner for cram/pkam): the
    /// state becomes `Fresh` whatever happens next, so each challenge is tried once.
    pub fn take_challenge(
        &mut self,
        claimant: &AtSign,
        now: Instant,
    ) -> Result<Challenge, AtError> {
        let taken = std::mem::take(self);
        match taken {
            AuthState::Challenged(challenge)
                if &challenge.claimed == claimant
                    && now.saturating_duration_since(challenge.issued) <= CHALLENGE_TTL =>
            {
                Ok(challenge)
            }
            AuthState::Challenged(_) => Err(auth_failed(
                "challenge expired or not for this atSign; send from again",
            )),
            other => {
                // Nothing to prove against: keep what the connection already was.
                *self = other;
                Err(auth_failed("from verb must precede the proof"))
            }
        }
    }
}

fn auth_failed(detail: &str) -> AtError {
    AtError::with_detail(ErrorCode::Unauthenticated, detail)
}

/// The verbs only the owner may run (the reference's `requiresAuth() == true`).
fn needs_owner(command: &Command) -> bool {
    match command {
        Command::Update(_)
        | Command::UpdateJson(_)
        | Command::UpdateMeta(_)
        | Command::Llookup(_)
        | Command::Plookup(_)
        | Command::Delete(_)
        | Command::Sync(_)
        | Command::Stats(_)
        | Command::Config(_)
        | Command::Monitor(_)
        | Command::NotifyFetch(_)
        | Command::NotifyRemove(_)
        | Command::Batch(_) => true,
        Command::From(_)
        | Command::Cram(_)
        | Command::Pkam(_)
        | Command::Pol
        | Command::Scan(_)
        | Command::Lookup(_)
        | Command::Notify(_)
        | Command::NotifyList(_)
        | Command::NotifyStatus(_)
        | Command::NotifyAll(_)
        | Command::Info(_)
        | Command::Noop(_)
        | Command::Exit => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(s: &str) -> AtSign {
        AtSign::parse(s).unwrap()
    }

    fn cmd(line: &str) -> Command {
        Command::parse(line).unwrap()
    }

    /// Every verb, with whether each state may run it: (line, fresh/peer, owner).
    const MATRIX: &[(&str, bool, bool)] = &[
        ("from:@alice", true, true),
        ("cram:abc", true, true),
        ("pkam:abc", true, true),
        ("pol", true, true),
        ("scan", true, true),
        ("lookup:phone@alice", true, true),
        ("notify:@bob:phone@alice", true, true),
        ("notify:list", true, true),
        ("notify:status:123", true, true),
        ("info", true, true),
        ("noop:0", true, true),
        ("@exit", true, true),
        ("update:public:phone@alice 123", false, true),
        ("update:meta:phone@alice:ttl:1000", false, true),
        ("llookup:public:phone@alice", false, true),
        ("plookup:phone@bob", false, true),
        ("delete:phone@alice", false, true),
        ("sync:from:-1:limit:10", false, true),
        ("stats", false, true),
        ("config:block:show", false, true),
        ("monitor", false, true),
        ("notify:fetch:123", false, true),
        ("notify:remove:123", false, true),
        ("batch:[]", false, true),
    ];

    #[test]
    fn authorization_matrix_matches_the_reference_requires_auth() {
        let now = Instant::now();
        let states = [
            (AuthState::Fresh, false),
            (
                AuthState::challenge(sign("@alice"), "_s".into(), "n".into(), now),
                false,
            ),
            (AuthState::Peer(sign("@bob")), false),
            (AuthState::Owner(sign("@alice")), true),
        ];
        for (line, unauthenticated, owner) in MATRIX {
            let command = cmd(line);
            for (state, is_owner) in &states {
                let allowed = state.allows(&command).is_ok();
                let want = if *is_owner { *owner } else { *unauthenticated };
                assert_eq!(allowed, want, "{line:?} in {state:?}");
            }
        }
    }

    #[test]
    fn refusal_is_at0401_command_cannot_be_executed_without_auth_and_keeps_the_connection() {
        let error = AuthState::Fresh
            .allows(&cmd("llookup:public:a@alice"))
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Unauthenticated);
        assert_eq!(error.message(), "Command cannot be executed without auth");
        assert!(!error.closes_connection());
    }

    #[test]
    fn prompts_follow_the_state() {
        let now = Instant::now();
        assert_eq!(AuthState::Fresh.prompt().as_text(), "@");
        assert_eq!(
            AuthState::challenge(sign("@alice"), "_s".into(), "n".into(), now)
                .prompt()
                .as_text(),
            "@"
        );
        assert_eq!(
            AuthState::Owner(sign("@alice")).prompt().as_text(),
            "@alice@"
        );
        assert_eq!(AuthState::Peer(sign("@bob")).prompt().as_text(), "@bob@");
    }

    #[test]
    fn challenge_text_is_session_id_atsign_colon_nonce() {
        let state = AuthState::challenge(
            sign("@alice"),
            "_4af2".into(),
            "d6ca".into(),
            Instant::now(),
        );
        let AuthState::Challenged(challenge) = state else {
            panic!("not challenged")
        };
        assert_eq!(challenge.text(), "_4af2@alice:d6ca");
    }

    #[test]
    fn a_challenge_is_taken_once() {
        let now = Instant::now();
        let alice = sign("@alice");
        let mut state = AuthState::challenge(alice.clone(), "_s".into(), "n".into(), now);
        assert!(state.take_challenge(&alice, now).is_ok());
        assert_eq!(state, AuthState::Fresh);
        let again = state.take_challenge(&alice, now).unwrap_err();
        assert_eq!(again.code(), ErrorCode::Unauthenticated);
    }

    #[test]
    fn an_expired_challenge_is_refused_and_spent() {
        let issued = Instant::now();
        let alice = sign("@alice");
        let mut state = AuthState::challenge(alice.clone(), "_s".into(), "n".into(), issued);
        let late = issued + CHALLENGE_TTL + Duration::from_millis(1);
        assert!(state.take_challenge(&alice, late).is_err());
        assert_eq!(state, AuthState::Fresh);
        let mut state = AuthState::challenge(alice.clone(), "_s".into(), "n".into(), issued);
        assert!(state.take_challenge(&alice, issued + CHALLENGE_TTL).is_ok());
    }

    #[test]
    fn a_challenge_for_another_atsign_does_not_prove_the_owner() {
        let now = Instant::now();
        let mut state = AuthState::challenge(sign("@bob"), "_s".into(), "n".into(), now);
        assert!(state.take_challenge(&sign("@alice"), now).is_err());
        assert_eq!(state, AuthState::Fresh);
    }

    #[test]
    fn a_proof_without_from_leaves_an_owner_authenticated() {
        let now = Instant::now();
        let mut state = AuthState::Owner(sign("@alice"));
        assert!(state.take_challenge(&sign("@alice"), now).is_err());
        assert_eq!(state, AuthState::Owner(sign("@alice")));
    }
}
