//! The owner's authentication verbs, `from`, `cram` and `pkam`, as steps of [`AuthState`], and
//! the connection's part of APKAM `enroll` (who is asking; the enrollment it makes the
//! connection).
//!
//! Pure apart from the random ids: the caller passes the hosted atSign, what the key store holds
//! (cram secret, pkam public key, the named enrollment) and the time. Replies and error texts are
//! the reference's (docs/authentication.md#from, docs/authentication.md#cram,
//! docs/authentication.md#pkam): a wrong proof is AT0401 and the connection stays open.
//! `pkam:enrollmentId:<id>:<sig>` is checked against that enrollment's APKAM key, which must be
//! approved: otherwise the reference's handler-set errors, before any signature is looked at
//! (the challenge is left for another try), `error:AT0025:enrollment_id: <id> is denied`,
//! `AT0026 … is pending`, `AT0027 … is revoked`, `AT0028 … is expired or invalid`
//! (docs/authentication.md#enrollment-states).

use std::time::Instant;

use at_common::auth;
use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::{Cram, Enroll, EnrollmentStatus, From, Pkam};
use at_common::AtSign;

use super::auth_state::AuthState;
use crate::access::OwnerAuth;
use crate::verbs::{self, ApkamKey, Settled};

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
    state.prove_owner(me.clone(), OwnerAuth::Cram, None);
    Ok(Reply::Data("success".into()))
}

/// `pkam:…` against the owner's legacy pkam public key (`privatekey:at_pkam_publickey`) or, with
/// `enrollmentId:<id>`, against `enrollment`, what the key store holds for that id.
pub fn pkam(
    me: &AtSign,
    state: &mut AuthState,
    command: &Pkam,
    legacy_key: Option<&str>,
    enrollment: Option<&ApkamKey>,
    now: Instant,
) -> Result<Reply, AtError> {
    let enrollment_id = command.enrollment_id.clone().filter(|id| !id.is_empty());
    let public_key = match &enrollment_id {
        Some(id) => Some(apkam_public_key(id, enrollment)?),
        None => legacy_key,
    };
    let Some(challenge) = state.take_challenge(me, now) else {
        return Err(failed("pkam authentication failed"));
    };
    let Some(public_key) = public_key.filter(|key| !key.is_empty()) else {
        return Err(failed("pkam publickey not found"));
    };
    auth::verify_pkam_command(public_key, command, &challenge.text()).map_err(|error| {
        tracing::debug!(%error, atsign = %me, "pkam refused");
        failed("pkam authentication failed")
    })?;
    state.prove_owner(me.clone(), OwnerAuth::Pkam, enrollment_id);
    Ok(Reply::Data("success".into()))
}

/// The APKAM key of enrollment `id` if it is approved; otherwise the reference's handler-set
/// refusal, in its colon form.
fn apkam_public_key<'a>(id: &str, enrollment: Option<&'a ApkamKey>) -> Result<&'a str, AtError> {
    let status = enrollment.map_or(EnrollmentStatus::Expired, |e| e.status);
    let (code, what) = match status {
        EnrollmentStatus::Approved => {
            return Ok(enrollment.map_or("", |e| e.public_key.as_str()));
        }
        EnrollmentStatus::Denied => (ErrorCode::ApkamAuthDenied, "is denied"),
        EnrollmentStatus::Pending => (ErrorCode::ApkamAuthFailed, "is pending"),
        EnrollmentStatus::Revoked => (ErrorCode::ApkamAccessRevoked, "is revoked"),
        EnrollmentStatus::Expired => (ErrorCode::TooManyRequests, "is expired or invalid"),
    };
    Err(AtError::set_by_handler(
        code,
        format!("enrollment_id: {id} {what}"),
    ))
}

/// What the connection answers itself to `enroll` (see [`verbs::screen`]): `None` to ask the
/// key store. A `request` counts against the connection's limit here.
pub fn screen_enroll(
    state: &mut AuthState,
    command: &Enroll,
    now: Instant,
) -> Option<Result<Reply, AtError>> {
    let who = state.asker();
    verbs::screen(command, &who, || state.admit_enroll_request(now))
}

/// Takes the key store's answer to `enroll` (see [`verbs::settle`]): an approved `request`
/// makes the connection that enrollment.
pub fn settle_enroll(
    state: &mut AuthState,
    command: &Enroll,
    result: Result<Reply, AtError>,
) -> Settled {
    let settled = verbs::settle(command, &state.asker(), result);
    if let Some(id) = &settled.enrollment_id {
        state.remember_enrollment(id.clone());
    }
    settled
}

fn failed(detail: &str) -> AtError {
    AtError::with_detail(ErrorCode::Unauthenticated, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Asker;
    use crate::connection::auth_state::Proven;
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
        pkam(
            &alice(),
            &mut state,
            &command,
            Some(RSA_PUBLIC.trim()),
            None,
            now,
        )
        .unwrap();
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
        let error = pkam(
            &alice(),
            &mut state,
            &command,
            Some(RSA_PUBLIC.trim()),
            None,
            now,
        )
        .unwrap_err();
        assert_eq!(error.message(), "pkam authentication failed");
        challenged(&mut state, now);
        let error = pkam(&alice(), &mut state, &command, None, None, now).unwrap_err();
        assert_eq!(error.message(), "pkam publickey not found");
        let error = pkam(
            &alice(),
            &mut state,
            &command,
            Some(RSA_PUBLIC.trim()),
            None,
            now,
        )
        .unwrap_err();
        assert_eq!(
            error.message(),
            "pkam authentication failed",
            "no challenge left"
        );
    }

    fn pkam_line(line: &str) -> Pkam {
        parse(line, |c| match c {
            Command::Pkam(p) => Some(p),
            _ => None,
        })
    }

    fn signed(challenge: &str) -> String {
        let pkcs8 = auth::base64::decode(RSA_PRIVATE.trim()).unwrap();
        auth::sign_rsa_sha256_b64(&pkcs8, challenge).unwrap()
    }

    fn enrollment(status: EnrollmentStatus, key: &str) -> ApkamKey {
        ApkamKey {
            status,
            public_key: key.to_string(),
        }
    }

    #[test]
    fn pkam_with_an_approved_enrollment_verifies_against_its_key_not_the_legacy_one() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let command = pkam_line(&format!("pkam:enrollmentId:e-1:{}", signed(&challenge)));
        let approved = enrollment(EnrollmentStatus::Approved, RSA_PUBLIC.trim());
        let reply = pkam(&alice(), &mut state, &command, None, Some(&approved), now).unwrap();
        assert_eq!(reply, Reply::Data("success".into()));
        assert_eq!(state.proven(), &Proven::Owner(alice()));
        assert_eq!(state.owner_auth(), Some(OwnerAuth::Pkam));
        assert_eq!(state.enrollment_id(), Some("e-1"));

        // The legacy key does not stand in for the enrollment's.
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let command = pkam_line(&format!("pkam:enrollmentId:e-1:{}", signed(&challenge)));
        let other = include_str!("../../../common/testdata/auth/rsa_other_public_spki.b64");
        let wrong = enrollment(EnrollmentStatus::Approved, other.trim());
        let error = pkam(
            &alice(),
            &mut state,
            &command,
            Some(RSA_PUBLIC.trim()),
            Some(&wrong),
            now,
        )
        .unwrap_err();
        assert_eq!(error.message(), "pkam authentication failed");
        assert_eq!(state.proven(), &Proven::Nothing);
    }

    #[test]
    fn pkam_with_an_enrollment_that_is_not_approved_is_the_reference_colon_error() {
        let now = Instant::now();
        let cases = [
            (
                Some(EnrollmentStatus::Denied),
                "error:AT0025:enrollment_id: e-1 is denied\n@",
            ),
            (
                Some(EnrollmentStatus::Pending),
                "error:AT0026:enrollment_id: e-1 is pending\n@",
            ),
            (
                Some(EnrollmentStatus::Revoked),
                "error:AT0027:enrollment_id: e-1 is revoked\n@",
            ),
            (
                Some(EnrollmentStatus::Expired),
                "error:AT0028:enrollment_id: e-1 is expired or invalid\n@",
            ),
            (
                None,
                "error:AT0028:enrollment_id: e-1 is expired or invalid\n@",
            ),
        ];
        for (status, want) in cases {
            let mut state = AuthState::fresh();
            let challenge = challenged(&mut state, now);
            let command = pkam_line(&format!("pkam:enrollmentId:e-1:{}", signed(&challenge)));
            let held = status.map(|s| enrollment(s, RSA_PUBLIC.trim()));
            let reply = pkam(
                &alice(),
                &mut state,
                &command,
                Some(RSA_PUBLIC.trim()),
                held.as_ref(),
                now,
            )
            .unwrap_or_else(Reply::Error);
            assert_eq!(
                reply.render(&state.prompt(), ErrorStyle::Legacy),
                want.as_bytes(),
                "{status:?}"
            );
            assert_eq!(state.proven(), &Proven::Nothing);
            // No signature was looked at, so the challenge is still there for another try.
            assert!(state.take_challenge(&alice(), now).is_some());
        }
    }

    #[test]
    fn legacy_pkam_leaves_no_enrollment_and_cram_is_the_cram_owner() {
        let now = Instant::now();
        let mut state = AuthState::fresh();
        let challenge = challenged(&mut state, now);
        let command = pkam_line(&format!("pkam:{}", signed(&challenge)));
        pkam(
            &alice(),
            &mut state,
            &command,
            Some(RSA_PUBLIC.trim()),
            None,
            now,
        )
        .unwrap();
        assert_eq!(
            (state.owner_auth(), state.enrollment_id()),
            (Some(OwnerAuth::Pkam), None)
        );
        assert_eq!(
            state.asker(),
            Asker::Owner {
                via: OwnerAuth::Pkam,
                enrollment: None,
            }
        );
        let challenge = challenged(&mut state, now);
        let digest = auth::cram_digest("s3cret", &challenge);
        cram(&alice(), &mut state, &Cram { digest }, Some("s3cret"), now).unwrap();
        assert_eq!(
            state.asker(),
            Asker::Owner {
                via: OwnerAuth::Cram,
                enrollment: None,
            }
        );
        assert_eq!(AuthState::fresh().asker(), Asker::Anyone);
    }

    #[test]
    fn an_approved_request_on_a_cram_connection_makes_it_that_enrollment() {
        let mut state = AuthState::fresh();
        state.prove_owner(alice(), OwnerAuth::Cram, None);
        let command = match Command::parse(
            r#"enroll:request:{"appName":"a","deviceName":"d","apkamPublicKey":"k"}"#,
        )
        .unwrap()
        {
            Command::Enroll(e) => e,
            other => panic!("{other:?}"),
        };
        assert!(screen_enroll(&mut state, &command, Instant::now()).is_none());
        let reply = Ok(Reply::Data(
            r#"{"enrollmentId":"e-9","status":"approved"}"#.into(),
        ));
        let settled = settle_enroll(&mut state, &command, reply);
        assert!(settled.result.is_ok());
        assert_eq!(state.enrollment_id(), Some("e-9"));
        assert_eq!(state.owner_auth(), Some(OwnerAuth::Cram));
    }
}
