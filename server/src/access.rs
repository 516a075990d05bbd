//! Who may do what: the one place a command is allowed or refused for who is asking
//! (docs/authentication.md). The connection asks [`decide`] before it runs a command or sends
//! it to the key store, which then serves the [`View`] it was given and decides nothing.
//!
//! | asking                   | may run                                                        |
//! |--------------------------|----------------------------------------------------------------|
//! | anyone (not proven)      | `from cram pkam pol info noop exit`, `scan lookup` (public view), `enroll:request` |
//! | another atSign's server (`pol`) | the same, with the peer's view of `scan lookup`, and `notify notify:list` |
//! | the owner (cram or pkam) | everything                                                     |
//!
//! Everything else is refused with AT0401, which keeps the connection open: the reference's
//! `Command cannot be executed without auth`, or for `enroll` operations other than `request`
//! its enroll handler's `Cannot <op> enrollment without authentication`.
//!
//! Who asks also decides within a few verbs, each in a function here: an `enroll:request` by
//! anyone but a cram-authenticated owner ([`enroll_request`]), revoking the enrollment a
//! connection acts as ([`revoke`]), and a blocked atSign, refused at `from` and at every request
//! of its `pol` connection ([`admit_peer`]).

use at_common::error::{AtError, ErrorCode};
use at_common::verb::{Command, EnrollOp};
use at_common::AtSign;

use crate::store::Store;

/// How the owner proved itself on a connection (the reference's `authType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerAuth {
    /// With the CRAM secret: onboarding, where `enroll:request` is approved at once.
    Cram,
    /// With a PKAM signature, by the legacy key or (with an enrollment id) an APKAM key.
    Pkam,
}

/// Who is asking, as the connection knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asker {
    /// Nobody proven yet.
    Anyone,
    /// The owner, by cram or pkam, acting as an APKAM enrollment if it logged in with one.
    Owner {
        via: OwnerAuth,
        enrollment: Option<String>,
    },
    /// Another atSign's server, by `pol`.
    Peer(AtSign),
}

/// What an allowed command serves: the owner's view, another atSign's (what was shared with
/// it), or the public one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Owner,
    Peer(AtSign),
    Public,
}

impl Asker {
    /// The APKAM enrollment the owner acts as, if any.
    pub fn enrollment(&self) -> Option<&str> {
        match self {
            Asker::Owner { enrollment, .. } => enrollment.as_deref(),
            Asker::Anyone | Asker::Peer(_) => None,
        }
    }

    /// The view this asker is served.
    pub fn view(&self) -> View {
        match self {
            Asker::Anyone => View::Public,
            Asker::Owner { .. } => View::Owner,
            Asker::Peer(peer) => View::Peer(peer.clone()),
        }
    }
}

/// Whether `asker` may run `command`, and with which view; the exact refusal otherwise.
pub fn decide(asker: &Asker, command: &Command) -> Result<View, AtError> {
    let view = asker.view();
    let owner = view == View::Owner;
    let peer = matches!(view, View::Peer(_));
    let allowed = match command {
        Command::From(_)
        | Command::Cram(_)
        | Command::Pkam(_)
        | Command::Pol
        | Command::Info(_)
        | Command::Noop(_)
        | Command::Exit
        | Command::Scan(_)
        | Command::Lookup(_) => true,
        Command::Notify(_) | Command::NotifyList(_) => owner || peer,
        Command::Enroll(enroll) if enroll.operation == EnrollOp::Request => true,
        Command::Enroll(enroll) => {
            if !owner {
                return Err(AtError::with_detail(
                    ErrorCode::Unauthenticated,
                    format!(
                        "Cannot {} enrollment without authentication",
                        enroll.operation
                    ),
                ));
            }
            true
        }
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
        | Command::NotifyStatus(_)
        | Command::NotifyAll(_)
        | Command::Batch(_) => owner,
    };
    match allowed {
        true => Ok(view),
        false => Err(AtError::needs_auth()),
    }
}

/// Whether `asker` may have an `enroll:request` (whose parameters are good) approved at once:
/// only an owner who logged in with the CRAM secret (onboarding). Anyone else would need a
/// valid OTP, and this server issues none; an owner by pkam would make a pending enrollment
/// for approvers, which is not served.
pub fn enroll_request(asker: &Asker) -> Result<(), AtError> {
    match asker {
        Asker::Owner {
            via: OwnerAuth::Cram,
            ..
        } => Ok(()),
        Asker::Owner {
            via: OwnerAuth::Pkam,
            ..
        } => Err(AtError::syntax("invalid command")),
        Asker::Anyone | Asker::Peer(_) => Err(AtError::with_detail(
            ErrorCode::InternalServerException,
            "invalid otp. Cannot process enroll request",
        )
        .keeping_open()),
    }
}

/// Whether `asker` may revoke enrollment `id`: not the one its own connection acts as, unless
/// it says `force` (and then its connection closes soon after).
pub fn revoke(asker: &Asker, id: Option<&str>, force: bool) -> Result<(), AtError> {
    let own = match asker {
        Asker::Owner {
            enrollment: Some(acting),
            ..
        } => id == Some(acting.as_str()),
        _ => false,
    };
    if own && !force {
        return Err(AtError::with_detail(
            ErrorCode::EnrollmentRevoked,
            "Current client cannot revoke its own enrollment",
        ));
    }
    Ok(())
}

/// Whether `who` may speak to `me`'s server as itself (`from:<who>`, then each request of its
/// pol connection): not when `me`'s owner blocked it. The refusal is the reference's AT0013
/// `Unable to connect`, which closes the connection.
pub async fn admit_peer(store: &Store, me: &AtSign, who: &AtSign) -> Result<(), AtError> {
    if crate::blocklist::is_blocked(store, me, who).await? {
        tracing::info!(%me, %who, "a blocked atSign refused");
        return Err(AtError::with_detail(
            ErrorCode::BlockedConnection,
            "Unable to connect",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Command {
        Command::parse(line).unwrap()
    }

    fn bob() -> AtSign {
        AtSign::parse("@bob").unwrap()
    }

    const NEEDS_AUTH: &str = "Command cannot be executed without auth";

    /// Every verb, with what each asker gets: `None` allowed (with its own view), else the
    /// AT0401 text. (line, anyone, peer); the owner may run them all.
    const TABLE: &[(&str, Option<&str>, Option<&str>)] = &[
        ("from:@alice", None, None),
        ("cram:abc", None, None),
        ("pkam:abc", None, None),
        ("pol", None, None),
        ("info", None, None),
        ("noop:0", None, None),
        ("@exit", None, None),
        ("scan", None, None),
        ("lookup:phone@alice", None, None),
        ("notify:@bob:phone@alice", Some(NEEDS_AUTH), None),
        ("notify:list", Some(NEEDS_AUTH), None),
        ("notify:status:123", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        (
            "notify:all:update:@bob:phone@alice",
            Some(NEEDS_AUTH),
            Some(NEEDS_AUTH),
        ),
        (
            "update:public:phone@alice 123",
            Some(NEEDS_AUTH),
            Some(NEEDS_AUTH),
        ),
        (
            r#"update:json:{"atKey":"public:phone@alice","value":"1"}"#,
            Some(NEEDS_AUTH),
            Some(NEEDS_AUTH),
        ),
        (
            "update:meta:phone@alice:ttl:1000",
            Some(NEEDS_AUTH),
            Some(NEEDS_AUTH),
        ),
        (
            "llookup:public:phone@alice",
            Some(NEEDS_AUTH),
            Some(NEEDS_AUTH),
        ),
        ("plookup:phone@bob", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("delete:phone@alice", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("sync:from:-1:limit:10", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("stats", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("config:block:show", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("monitor", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("notify:fetch:123", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("notify:remove:123", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("batch:[]", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        (r#"enroll:request:{"appName":"a"}"#, None, None),
        (
            "enroll:list",
            Some("Cannot list enrollment without authentication"),
            Some("Cannot list enrollment without authentication"),
        ),
        (
            r#"enroll:approve:{"enrollmentId":"1"}"#,
            Some("Cannot approve enrollment without authentication"),
            Some("Cannot approve enrollment without authentication"),
        ),
        (
            r#"enroll:revoke:force:{"enrollmentId":"1"}"#,
            Some("Cannot revoke enrollment without authentication"),
            Some("Cannot revoke enrollment without authentication"),
        ),
    ];

    #[test]
    fn the_table_is_what_each_asker_gets() {
        let owner = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: None,
        };
        for (line, anyone, peer) in TABLE {
            let command = cmd(line);
            for (asker, want) in [(Asker::Anyone, anyone), (Asker::Peer(bob()), peer)] {
                let got = decide(&asker, &command);
                match want {
                    None => assert_eq!(got, Ok(asker.view()), "{line} by {asker:?}"),
                    Some(text) => {
                        let error = got.unwrap_err();
                        assert_eq!(error.code(), ErrorCode::Unauthenticated, "{line}");
                        assert_eq!(error.message(), *text, "{line} by {asker:?}");
                        assert!(!error.closes_connection(), "{line}");
                    }
                }
            }
            assert_eq!(decide(&owner, &command), Ok(View::Owner), "{line}");
        }
    }

    #[test]
    fn the_table_names_every_verb() {
        let mut named: Vec<&str> = TABLE.iter().map(|(line, ..)| cmd(line).verb()).collect();
        named.sort_unstable();
        named.dedup();
        // One per variant of `Command` (`Command::verb`).
        assert_eq!(named.len(), 27, "{named:?}");
    }

    #[test]
    fn only_a_cram_owner_has_a_request_approved_at_once() {
        let cram = Asker::Owner {
            via: OwnerAuth::Cram,
            enrollment: None,
        };
        let pkam = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: None,
        };
        assert_eq!(enroll_request(&cram), Ok(()));
        assert_eq!(
            enroll_request(&pkam).unwrap_err().message(),
            "invalid command"
        );
        for stranger in [Asker::Anyone, Asker::Peer(bob())] {
            let refusal = enroll_request(&stranger).unwrap_err();
            assert_eq!(refusal.code(), ErrorCode::InternalServerException);
            assert!(!refusal.closes_connection());
        }
    }

    #[test]
    fn a_connection_revokes_its_own_enrollment_only_with_force() {
        let acting = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: Some("e1".into()),
        };
        let refusal = revoke(&acting, Some("e1"), false).unwrap_err();
        assert_eq!(refusal.code(), ErrorCode::EnrollmentRevoked);
        assert_eq!(revoke(&acting, Some("e1"), true), Ok(()));
        assert_eq!(revoke(&acting, Some("e2"), false), Ok(()));
    }
}
