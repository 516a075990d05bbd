//! Who may do what: the one place a command is allowed or refused for who is asking
//! (docs/authentication.md). The connection asks [`decide`] before it runs a command or sends
//! it to the key store, which then serves the [`View`] it was given and decides nothing.
//!
//! | asking                   | may run                                                        |
//! |--------------------------|----------------------------------------------------------------|
//! | anyone (not proven)      | `from cram pkam pol info noop exit`, `scan lookup` (public view), `enroll:request` |
//! | another atSign's server (`pol`) | the same, with the peer's view of `scan lookup`, and `notify notify:list` |
//! | the owner (cram or pkam) | everything; a device logged in with an APKAM enrollment only within its namespaces |
//!
//! Everything else is refused with AT0401, which keeps the connection open: the reference's
//! `Command cannot be executed without auth`, or for `enroll` operations other than `request`
//! its enroll handler's `Cannot <op> enrollment without authentication`.
//!
//! Who asks also decides within a few verbs, each in a function here: what an `enroll:request`
//! becomes ([`enroll_request`]), revoking the enrollment a connection acts as ([`revoke`]), a
//! blocked atSign, refused at `from` and at every request of its `pol` connection
//! ([`admit_peer`]), and what a device's enrollment lets it touch ([`Grant`], [`authorize`];
//! docs/authentication.md#namespace-access), which the key store reads before each of its
//! commands.

use at_common::error::{AtError, ErrorCode};
use at_common::key::AtKey;
use at_common::metadata::EpochMillis;
use at_common::verb::{Command, EnrollOp, MessageType, Namespaces, NotifyScope};
use at_common::AtSign;

use crate::reserved;
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
        | Command::Otp(_)
        | Command::Keys(_)
        | Command::Batch(_) => owner,
    };
    match allowed {
        true => Ok(view),
        false => Err(AtError::needs_auth()),
    }
}

/// What an `enroll:request` (whose parameters are good) becomes, by who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// An owner who logged in with the CRAM secret (onboarding): approved at once, with
    /// `__manage` and `*`.
    Approved,
    /// An owner who logged in with pkam (a device asking for another): pending approval.
    Pending,
    /// Anyone else (a new device): pending if it brings a valid passcode, else refused.
    WithPasscode,
}

/// What `asker`'s `enroll:request` becomes.
pub fn enroll_request(asker: &Asker) -> Requested {
    match asker {
        Asker::Owner {
            via: OwnerAuth::Cram,
            ..
        } => Requested::Approved,
        Asker::Owner {
            via: OwnerAuth::Pkam,
            ..
        } => Requested::Pending,
        Asker::Anyone | Asker::Peer(_) => Requested::WithPasscode,
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

/// What an APKAM enrollment lets its device do (docs/authentication.md#namespace-access): the
/// namespaces it was approved for, each `r` or `rw`, while it is approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The enrollment's id.
    pub enrollment: String,
    /// Whether it is approved now; a denied, revoked or pending enrollment grants nothing.
    pub approved: bool,
    pub namespaces: Namespaces,
    /// When it expires (`apkamKeysExpiryInMillis`), if it does: what holds on to a grant (a
    /// monitor) stops there.
    pub expires_at: Option<EpochMillis>,
}

/// How a command uses a key, as the reference classes its verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `llookup`, `lookup`, `notify:fetch|status|list`: `r` or `rw`.
    Read,
    /// `update`, `delete`, `notify`, `notify:all`, `notify:remove`: `rw`.
    Write,
    /// `monitor`: `r` or `rw`, and of `__manage` too (the enrollment notices). `otp` and
    /// `enroll`, the other verbs `__manage` serves, ask [`Grant::manages`].
    Monitor,
}

impl Grant {
    /// An approved grant of `namespaces` to enrollment `id`, for tests.
    #[cfg(test)]
    pub fn approved(id: &str, namespaces: &[(&str, &str)]) -> Grant {
        let mut enrolled = Namespaces::default();
        for (name, access) in namespaces {
            enrolled.set(name, access);
        }
        Grant {
            enrollment: id.into(),
            approved: true,
            namespaces: enrolled,
            expires_at: None,
        }
    }

    /// Whether this enrollment may use `key` (its wire form, lower-cased) as `used`. Reserved
    /// keys ([`reserved::is_reserved`]) are everyone's. Otherwise the key's namespace picks the
    /// first enrolled namespace it is or ends with (`phone.buzz.wavi` is in `wavi` and in
    /// `buzz.wavi`), else `*`; a key without a namespace only `*`. Of the verbs that ask here,
    /// `__manage` serves only `monitor` (`otp` and `enroll` ask [`Grant::manages`]).
    pub fn permits(&self, key: &str, used: Use) -> bool {
        if reserved::is_reserved(key) {
            // Ours: the atSign's identity (its keys, its pkam key, its block list) is written
            // only by a device that manages the atSign, or a limited device could make itself
            // an unlimited one (its key as the legacy pkam key).
            return used != Use::Write || !reserved::is_identity(key) || self.manages_rw();
        }
        if !self.approved {
            return false;
        }
        let name = AtKey::parse(key).ok().map(|k| k.name);
        let access = self.access_for(name.as_deref());
        match access {
            Some((namespace, access)) if namespace == reserved::MANAGE_NAMESPACE => {
                used == Use::Monitor && matches!(access, "r" | "rw")
            }
            Some((_, access)) => match used {
                Use::Read | Use::Monitor => matches!(access, "r" | "rw"),
                Use::Write => access == "rw",
            },
            None => false,
        }
    }

    /// Whether this enrollment holds `__manage` with `rw`, as the first device's does.
    fn manages_rw(&self) -> bool {
        self.approved && self.namespaces.get(reserved::MANAGE_NAMESPACE) == Some("rw")
    }

    /// Whether this enrollment may use the `__manage` namespace (`otp`, `enroll`, notices).
    pub fn manages(&self) -> bool {
        self.approved
            && matches!(
                self.namespaces.get(reserved::MANAGE_NAMESPACE),
                Some("r" | "rw")
            )
    }

    /// Whether this enrollment may approve, deny or revoke another's `namespace` asked with
    /// `access`: the enrolled namespace covering it (itself or a parent: `buzz.wavi` is in
    /// `wavi`; else `*`) must be `rw`, or `r` for an `r` request; `__manage` with either.
    pub fn approves(&self, namespace: &str, access: &str) -> bool {
        if !self.approved {
            return false;
        }
        let enrolled = &self.namespaces.0;
        let dotted = format!(".{namespace}");
        let covering = enrolled
            .iter()
            .find(|(ns, _)| dotted.ends_with(&format!(".{ns}")))
            .or_else(|| enrolled.iter().find(|(ns, _)| ns == "*"));
        match covering {
            Some((ns, held)) if ns == reserved::MANAGE_NAMESPACE => {
                matches!(held.as_str(), "r" | "rw")
            }
            Some((_, held)) => held == "rw" || (held == "r" && access == "r"),
            None => false,
        }
    }

    /// Whether `scan` shows this enrollment `key` (a key `scan` would show the owner): all of
    /// them with `*`; else public keys, and keys whose namespace (after the last `.`) is one
    /// of its namespaces, never `__manage` (other devices' enrollments are not its to see).
    pub fn lists(&self, key: &str) -> bool {
        if self.namespaces.get("*").is_some() || key.starts_with("public:") {
            return true;
        }
        let name = key.rsplit_once('@').map_or(key, |(name, _)| name);
        match name.rsplit_once('.') {
            Some((_, namespace)) => {
                namespace != reserved::MANAGE_NAMESPACE && self.namespaces.get(namespace).is_some()
            }
            None => false,
        }
    }

    /// Whether `sync` sends this enrollment the commit entry of `key`: unless the key has a
    /// namespace the enrollment has not, and the enrollment has neither `*` nor `__manage`.
    pub fn syncs(&self, key: &str) -> bool {
        let ns = &self.namespaces;
        if ns.is_empty() || ns.get("*").is_some() || ns.get(reserved::MANAGE_NAMESPACE).is_some() {
            return true;
        }
        let name = key.rsplit_once('@').map_or(key, |(name, _)| name);
        match name.rsplit_once('.') {
            Some((_, namespace)) if !namespace.is_empty() => ns.get(namespace).is_some(),
            _ => true,
        }
    }

    /// The enrolled namespace (and its access) that covers a key named `name`.
    fn access_for(&self, name: Option<&str>) -> Option<(&str, &str)> {
        let enrolled = &self.namespaces.0;
        let namespace = name.and_then(|n| n.rsplit_once('.')).map(|(_, ns)| ns);
        let covering = enrolled
            .iter()
            .find(|(ns, _)| Some(ns.as_str()) == namespace);
        let covering = covering.or_else(|| {
            let name = name?;
            enrolled.iter().find(|(ns, _)| {
                name.strip_suffix(ns.as_str())
                    .is_some_and(|k| k.ends_with('.'))
            })
        });
        let covering = covering.or_else(|| enrolled.iter().find(|(ns, _)| ns == "*"));
        covering
            .map(|(ns, access)| (ns.as_str(), access.as_str()))
            .filter(|(_, access)| !access.is_empty())
    }
}

/// Whether the device of `grant` may run `command` on `me`'s data: the reference's AT0009
/// `Connection with enrollment ID <id> is not authorized to <verb> key: <key>` otherwise, for
/// the verbs whose key is in the command (update, delete, llookup of a non-public key, lookup,
/// notify, notify:all). The notify verbs that name a stored notification ask
/// [`Grant::permits`] once they have read it; scan, sync, notify:list and monitor leave out
/// what it does not permit.
pub fn authorize(grant: &Grant, me: &AtSign, command: &Command) -> Result<(), AtError> {
    let (verb, key, used) = match command {
        Command::Update(c) => ("update", c.key.to_string(), Use::Write),
        Command::UpdateMeta(c) => ("update", c.key.to_string(), Use::Write),
        Command::UpdateJson(c) => ("update", c.at_key.to_lowercase(), Use::Write),
        Command::Delete(c) => ("delete", c.key.to_string(), Use::Write),
        Command::Llookup(c) if c.key.kind != at_common::key::KeyKind::Public => {
            ("llookup", c.key.to_string(), Use::Read)
        }
        Command::Lookup(c) => ("lookup", format!("{me}:{}{}", c.key, c.owner), Use::Read),
        Command::Notify(c) => ("notify", notified_key(me, c), Use::Write),
        Command::NotifyAll(c) => {
            let owner = c.owner.as_ref().unwrap_or(me);
            ("notify", format!("{}{owner}", c.key), Use::Write)
        }
        _ => return Ok(()),
    };
    if grant.permits(&key, used) {
        return Ok(());
    }
    Err(not_authorized(grant, verb, &key))
}

/// The reference's refusal of a key to an enrollment (`verb`: `update`, `fetch notify`, …).
pub fn not_authorized(grant: &Grant, verb: &str, key: &str) -> AtError {
    AtError::with_detail(
        ErrorCode::Unauthorized,
        format!(
            "Connection with enrollment ID {} is not authorized to {verb} key: {key}",
            grant.enrollment
        ),
    )
}

/// The key a `notify` is checked by, as the reference builds it: `<to>:<key>` for a text,
/// `<key>@me` for a public key, `<to>:<key>@me` otherwise.
fn notified_key(me: &AtSign, c: &at_common::verb::Notify) -> String {
    let owner = c.owner.as_ref().unwrap_or(me);
    let to = match &c.scope {
        Some(NotifyScope::To(to)) => format!("{to}:"),
        Some(NotifyScope::Public) => return format!("public:{}{owner}", c.key),
        None => String::new(),
    };
    if c.message_type == Some(MessageType::Text) {
        return format!("{to}{}", c.key);
    }
    format!("{to}{}{owner}", c.key)
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
        ("otp:get", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
        ("keys:get:self", Some(NEEDS_AUTH), Some(NEEDS_AUTH)),
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
        assert_eq!(named.len(), 29, "{named:?}");
    }

    fn grant(namespaces: &[(&str, &str)], approved: bool) -> Grant {
        Grant {
            approved,
            ..Grant::approved("e1", namespaces)
        }
    }

    /// The namespace rules: (enrolled namespaces, command, allowed). Refusals are AT0009 with
    /// the reference's text naming the verb and the key as checked.
    #[test]
    fn an_enrollment_uses_only_its_namespaces_as_its_access_allows() {
        let wavi_rw: &[(&str, &str)] = &[("wavi", "rw")];
        let wavi_r: &[(&str, &str)] = &[("wavi", "r")];
        let dotted: &[(&str, &str)] = &[("at_contact.buzz", "rw")];
        let all: &[(&str, &str)] = &[("wavi", "rw"), ("__manage", "rw"), ("*", "rw")];
        type Enrolled<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Enrolled, &str, Option<&str>)] = &[
            (wavi_rw, "update:phone.wavi@alice 1", None),
            (wavi_rw, "update:@bob:phone.wavi@alice 1", None),
            (wavi_rw, "update:public:phone.wavi@alice 1", None),
            (wavi_rw, "llookup:phone.wavi@alice", None),
            (wavi_rw, "delete:phone.wavi@alice", None),
            (wavi_rw, "lookup:phone.wavi@bob", None),
            (wavi_rw, "notify:update:@bob:phone.wavi@alice:1", None),
            (
                wavi_rw,
                "notify:all:update:@bob,@carol:phone.wavi@alice",
                None,
            ),
            (
                wavi_rw,
                "update:phone.buzz@alice 1",
                Some("update key: phone.buzz@alice"),
            ),
            (
                wavi_rw,
                "llookup:phone@alice",
                Some("llookup key: phone@alice"),
            ),
            (
                wavi_rw,
                "lookup:phone.buzz@bob",
                Some("lookup key: @alice:phone.buzz@bob"),
            ),
            (
                wavi_rw,
                "notify:update:messageType:text:@bob:hello",
                Some("notify key: @bob:hello"),
            ),
            // A public key is anyone's to read; llookup does not ask.
            (wavi_rw, "llookup:public:phone.buzz@alice", None),
            // Reserved keys are every login's to read, and shared keys to write.
            (wavi_rw, "llookup:@bob:shared_key@alice", None),
            (wavi_rw, "update:@bob:shared_key@alice k", None),
            (wavi_rw, "llookup:shared_key.bob@alice", None),
            (wavi_rw, "llookup:public:publickey@alice", None),
            // The atSign's identity only a managing device writes (ours).
            (
                wavi_rw,
                "update:public:publickey@alice k",
                Some("update key: public:publickey@alice"),
            ),
            (
                wavi_rw,
                "update:privatekey:at_pkam_publickey k",
                Some("update key: privatekey:at_pkam_publickey"),
            ),
            (
                wavi_rw,
                "delete:privatekey:at_secret",
                Some("delete key: privatekey:at_secret"),
            ),
            (all, "update:public:publickey@alice k", None),
            (all, "update:privatekey:at_pkam_publickey k", None),
            // r reads, rw writes.
            (wavi_r, "llookup:phone.wavi@alice", None),
            (
                wavi_r,
                "update:phone.wavi@alice 1",
                Some("update key: phone.wavi@alice"),
            ),
            (
                wavi_r,
                "delete:phone.wavi@alice",
                Some("delete key: phone.wavi@alice"),
            ),
            // A dotted namespace covers the keys whose name ends with it.
            (
                dotted,
                "update:atconnections.bob.at_contact.buzz@alice 1",
                None,
            ),
            (
                dotted,
                "update:phone.buzz@alice 1",
                Some("update key: phone.buzz@alice"),
            ),
            // * covers keys with no namespace of their own; __manage never serves data verbs.
            (all, "llookup:phone@alice", None),
            (all, "update:phone.buzz@alice 1", None),
            (
                all,
                "llookup:e2.new.enrollments.__manage@alice",
                Some("llookup key: e2.new.enrollments.__manage@alice"),
            ),
            // What names no key is not asked.
            (wavi_r, "scan", None),
            (wavi_r, "sync:from:-1:limit:10", None),
            (wavi_r, "stats", None),
        ];
        let me = AtSign::parse("@alice").unwrap();
        for (namespaces, line, refused) in table {
            let got = authorize(&grant(namespaces, true), &me, &cmd(line));
            match refused {
                None => assert_eq!(got, Ok(()), "{line} with {namespaces:?}"),
                Some(what) => {
                    let error = got.unwrap_err();
                    assert_eq!(error.code(), ErrorCode::Unauthorized, "{line}");
                    assert_eq!(
                        error.message(),
                        format!("Connection with enrollment ID e1 is not authorized to {what}"),
                        "{line} with {namespaces:?}"
                    );
                    assert!(!error.closes_connection());
                }
            }
        }
        // Not approved (revoked, denied, pending): nothing but reserved keys.
        let revoked = grant(all, false);
        assert!(authorize(&revoked, &me, &cmd("llookup:phone.wavi@alice")).is_err());
        assert_eq!(
            authorize(&revoked, &me, &cmd("llookup:@bob:shared_key@alice")),
            Ok(())
        );
    }

    #[test]
    fn manage_serves_otp_enroll_and_monitor_only() {
        let manager = grant(&[("__manage", "r")], true);
        let notice = "e2.new.enrollments.__manage@alice";
        assert!(manager.permits(notice, Use::Monitor));
        assert!(!manager.permits(notice, Use::Read));
        assert!(manager.manages());
        assert!(!grant(&[("wavi", "rw")], true).manages());
        assert!(!grant(&[("__manage", "rw")], false).manages());
    }

    #[test]
    fn scan_and_sync_leave_out_other_namespaces() {
        let wavi = grant(&[("wavi", "r")], true);
        for (key, listed) in [
            ("phone.wavi@alice", true),
            ("@bob:phone.wavi@alice", true),
            ("public:phone.buzz@alice", true),
            ("phone.buzz@alice", false),
            ("phone@alice", false),
            ("e1.new.enrollments.__manage@alice", false),
        ] {
            assert_eq!(wavi.lists(key), listed, "scan {key}");
        }
        assert!(grant(&[("*", "r")], true).lists("phone@alice"));
        for (key, synced) in [
            ("phone.wavi@alice", true),
            ("phone.buzz@alice", false),
            ("phone@alice", true),
        ] {
            assert_eq!(wavi.syncs(key), synced, "sync {key}");
        }
        assert!(grant(&[("__manage", "r")], true).syncs("phone.buzz@alice"));
    }

    #[test]
    fn a_request_is_approved_for_a_cram_owner_pending_for_pkam_and_needs_a_passcode_otherwise() {
        let (cram, pkam) = (OwnerAuth::Cram, OwnerAuth::Pkam);
        let owner = |via| Asker::Owner {
            via,
            enrollment: None,
        };
        assert_eq!(enroll_request(&owner(cram)), Requested::Approved);
        assert_eq!(enroll_request(&owner(pkam)), Requested::Pending);
        assert_eq!(enroll_request(&Asker::Anyone), Requested::WithPasscode);
        assert_eq!(enroll_request(&Asker::Peer(bob())), Requested::WithPasscode);
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
