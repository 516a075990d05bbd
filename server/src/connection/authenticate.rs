//! The owner's authentication verbs, `from`, `cram` and `pkam`, as steps of [`AuthState`].
//!
//! Pure apart from the random ids: the caller passes the hosted atSign, what the key store holds
//! (cram secret, pkam public key) and the time. Replies and error texts are the reference's
//! (reference-server.md §4.1–4.3): a wrong proof is AT0401 and the connection stays open.

use std::time::Instant;

use at_common::auth;
use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::{Cram, From, Pkam};
use at_common::AtSign;

use super::auth_state::{AuthState, Proven};

/// `from:<atSign>` on a connection serving `me`: a fresh challenge, replacing any earlier one.
/// The owner gets `data:<sessionId><@me>:<nonce>`; another atSign gets the `proof:` form that
/// `pol` answers (server-to-server, verified in a later step).
pub fn from(me: &AtSign, state: &mut AuthState, command: &From, now: Instant) -> Reply {
    let nonce = uuid::Uuid::new_v4().to_string();
    let text = state.challenge(command.atsign.clone(), nonce, now).text();
    if &command.atsign == me {
        Reply::Data(text)
    } else {
        Reply::Data(format!("proof:{text}"))
    }
}

/// The answer to `from:<who>` when the owner has blocked `who` (`config:block:add`): AT0013,
/// which closes the connection. The reference checks this before anything else `from` does.
pub fn blocked(who: &AtSign) -> AtError {
    tracing::info!(%who, "from by a blocked atSign");
    AtError::with_detail(ErrorCode::BlockedConnection, "Unable to connect")
}

/// `cram:<digest>` against the owner's cram secret (`None` once onboarding deleted it).
pub fn cram(
    me: &AtSign,
    state: &mut AuthState,
    command: &Cram,
    secret: Option<&str>,
    now: Instant,
) -> Result<Reply, AtError> {
    // No challenge (no `from`, spent, expired) fails as a wrong digest does, as in the reference.
    let Some(challenge) = state.take_challenge(me, now) else {
        return Err(failed("Authentication Failed"));
    };
    let Some(secret) = secret else {
        return Err(failed("Authentication Failed"));
    };
    if !auth::verify_cram(secret, &challenge.text(), &command.digest) {
        return Err(failed("Authentication Failed"));
    }
    state.prove(Proven::Owner(me.clone()));
    Ok(Reply::Data("success".into()))
}

/// `pkam:…` against the owner's pkam public key (`privatekey:at_pkam_publickey`).
pub fn pkam(
    me: &AtSign,
    state: &mut AuthState,
    command: &Pkam,
    public_key: Option<&str>,
    now: Instant,
) -> Result<Reply, AtError> {
    let Some(challenge) = state.take_challenge(me, now) else {
        return Err(failed("pkam authentication failed"));
    };
    let Some(public_key) = public_key else {
        return Err(failed("pkam publickey not found"));
    };
    auth::verify_pkam_command(public_key, command, &challenge.text()).map_err(|error| {
        tracing::debug!(%error, atsign = %me, "pkam refused");
        failed("pkam authentication failed")
    })?;
    state.prove(Proven::Owner(me.clone()));
    Ok(Reply::Data("success".into()))
}

fn failed(detail: &str) -> AtError {
    AtError::with_detail(ErrorCode::Unauthenticated, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use at_common::reply::{ErrorStyle, Prompt};
    use at_common::verb::Command;

    const RSA_PUBLIC: &str = include_str!("../../../common/testdata/auth/rsa_public_spki.b64");
    const RSA_PRIVATE: &str = include_str!("../../../common/testdata/auth/rsa_private_pkcs8.b64");

    fn alice() -> AtSign {
        AtSign::parse("@alice").unwrap()
    }

    fn parse<T>(line: &str, pick: impl FnOnce(Command) -> Option<T>) -> T {
        pick(Command::parse(line).unwrap()).unwrap()
    }

    fn from_line(line: &str) -> From {
        parse(line, |c| match c {
            Command::From(f) => Some(f),
            _ => None,
        })
    }

    /// `from` for the owner; returns the challenge text the client must prove.
    fn challenged(state: &mut AuthState, now: Instant) -> String {
        let reply = from(&alice(), state, &from_line("from:@alice"), now);
        let Reply::Data(text) = reply else {
            panic!("{reply:?}")
        };
        text
    }

    #[test]
    fn owner_from_reply_is_session_id_atsign_colon_uuid() {
        let mut state = AuthState::fresh();
        let text = challenged(&mut state, Instant::now());
        let (session, nonce) = text.split_once("@alice:").unwrap();
        assert!(session.starts_with('_') && session.len() == 37, "{text}");
        assert_eq!(nonce.len(), 36, "{text}");
        let bytes = Reply::Data(text.clone()).render(&state.prompt(), ErrorStyle::Legacy);
        assert_eq!(bytes, format!("data:{text}\n@").into_bytes());
    }

    #[test]
    fn other_atsign_gets_the_proof_form() {
        let mut state = AuthState::fresh();
        let reply = from(
            &alice(),
            &mut state,
            &from_line("from:@bob"),
            Instant::now(),
        );
        let Reply::Data(text) = reply else { panic!() };
        assert!(
            text.starts_with("proof:_") && text.contains("@bob:"),
            "{text}"
        );
    }

    #[test]
    fn a_blocked_atsign_is_at0013_unable_to_connect_and_closes() {
        let error = blocked(&AtSign::parse("@bob").unwrap());
        assert!(error.closes_connection());
        assert_eq!(
            Reply::Error(error.clone()).render(&Prompt::Unauthenticated, ErrorStyle::Legacy),
            &b"error:AT0013-Exception: Unable to connect\n@"[..]
        );
        assert_eq!(
            Reply::Error(error).render(&Prompt::Unauthenticated, ErrorStyle::Json),
            &br#"error:{"errorCode":"AT0013","errorDescription":"Exception: Unable to connect"}
@"#[..]
        );
    }

    #[test]
    fn cram_with_the_right_digest_makes_the_owner() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let digest = auth::cram_digest("s3cret", &challenge);
        let command = Cram { digest };
        let reply = cram(&alice(), &mut state, &command, Some("s3cret"), now).unwrap();
        assert_eq!(
            reply.render(&state.prompt(), ErrorStyle::Legacy),
            &b"data:success\n@alice@"[..]
        );
    }

    #[test]
    fn wrong_cram_is_at0401_authentication_failed_and_the_challenge_is_spent() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let wrong = Cram {
            digest: auth::cram_digest("guess", &challenge),
        };
        let error = cram(&alice(), &mut state, &wrong, Some("s3cret"), now).unwrap_err();
        assert_eq!(
            Reply::Error(error).render(&Prompt::Unauthenticated, ErrorStyle::Legacy),
            &b"error:AT0401-Exception: Authentication Failed\n@"[..]
        );
        // The right digest for the spent challenge no longer works.
        let right = Cram {
            digest: auth::cram_digest("s3cret", &challenge),
        };
        assert!(cram(&alice(), &mut state, &right, Some("s3cret"), now).is_err());
        assert_eq!(state.proven(), &Proven::Nothing);
    }

    #[test]
    fn cram_after_the_secret_was_deleted_fails() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let command = Cram {
            digest: auth::cram_digest("s3cret", &challenge),
        };
        assert!(cram(&alice(), &mut state, &command, None, now).is_err());
    }

    #[test]
    fn pkam_with_an_rsa_signature_makes_the_owner() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let pkcs8 = auth::base64::decode(RSA_PRIVATE.trim()).unwrap();
        let signature = auth::sign_rsa_sha256_b64(&pkcs8, &challenge).unwrap();
        let command = parse(&format!("pkam:{signature}"), |c| match c {
            Command::Pkam(p) => Some(p),
            _ => None,
        });
        pkam(&alice(), &mut state, &command, Some(RSA_PUBLIC.trim()), now).unwrap();
        assert_eq!(state.proven(), &Proven::Owner(alice()));
    }

    #[test]
    fn pkam_errors_name_what_failed_without_the_signature() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        challenged(&mut state, now);
        let command = parse("pkam:AAAA", |c| match c {
            Command::Pkam(p) => Some(p),
            _ => None,
        });
        let error = pkam(&alice(), &mut state, &command, Some(RSA_PUBLIC.trim()), now).unwrap_err();
        assert_eq!(error.message(), "pkam authentication failed");
        challenged(&mut state, now);
        let error = pkam(&alice(), &mut state, &command, None, now).unwrap_err();
        assert_eq!(error.message(), "pkam publickey not found");
        let error = pkam(&alice(), &mut state, &command, Some(RSA_PUBLIC.trim()), now).unwrap_err();
        assert_eq!(
            error.message(),
            "pkam authentication failed",
            "no challenge left"
        );
    }
}
