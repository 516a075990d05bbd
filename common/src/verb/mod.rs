//! `Command`: one typed variant per verb, and [`Command::parse`], the only grammar.
//!
//! Each verb lives in its own file with a typed struct, its `# Format`, a `parse` of the text
//! after normalisation, and a `Display` giving the wire form a peer link would send. This
//! module owns what all verbs share: the reference's normalisation of a command line, the
//! choice of verb, the keyword enums, and a few scanning helpers.
//!
//! The language accepted is that of the reference regexes (docs/protocol.md#grammar), written
//! by hand so that no input can make the parser panic or backtrack without bound. Where the
//! reference grammar has optional groups that can be given back, [`first_match`] tries the
//! choices in the same order as the regex engine, so the same groups are picked.
//!
//! # Errors
//! Anything that is not a command is AT0003: `invalid command` for an unknown verb (the
//! reference's `InvalidSyntaxException('invalid command')`), `Invalid syntax. e.g <usage>` for a
//! known verb whose arguments do not parse, or a specific message from the metadata checks.

/// Declares a keyword enum: matched in any case, written as the reference writes it.
macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = $text] $variant),+
        }

        impl $name {
            /// The keyword as written on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Strips the keyword from the front of `input`, in any case.
            #[allow(dead_code)]
            pub(crate) fn strip(input: &str) -> Option<($name, &str)> {
                $(
                    if let Some(rest) = $crate::key::strip_prefix_ci(input, $text) {
                        return Some(($name::$variant, rest));
                    }
                )+
                None
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// As its keyword.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// From its keyword, exactly as written.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                match text.as_ref() {
                    $($text => Ok($name::$variant),)+
                    other => Err(serde::de::Error::custom(format!(
                        "not a {}: {other:?}",
                        stringify!($name)
                    ))),
                }
            }
        }
    };
}

mod batch;
mod config;
mod cram;
mod delete;
mod enroll;
mod from;
mod info;
mod keys;
mod llookup;
mod lookup;
mod monitor;
mod noop;
mod notify;
mod notify_all;
mod notify_fetch;
mod notify_list;
mod notify_remove;
mod notify_status;
mod otp;
mod pkam;
mod plookup;
mod scan;
mod stats;
mod sync;
mod update;
mod update_meta;

use std::fmt;

pub use batch::{Batch, BatchRequest};
pub use config::Config;
pub use cram::Cram;
pub use delete::Delete;
pub use enroll::{json_string, Enroll, EnrollOp, EnrollParams, EnrollmentStatus, Namespaces};
pub use from::{ClientConfig, From};
pub use info::Info;
pub use keys::{KeyVisibility, Keys, KeysOp};
pub use llookup::Llookup;
pub use lookup::Lookup;
pub use monitor::Monitor;
pub use noop::Noop;
pub use notify::{Notify, NotifyScope};
pub use notify_all::NotifyAll;
pub use notify_fetch::NotifyFetch;
pub use notify_list::NotifyList;
pub use notify_remove::NotifyRemove;
pub use notify_status::NotifyStatus;
pub use otp::{Otp, OtpOp, MAX_PASSCODE_CHARS};
pub use pkam::{HashingAlgo, Pkam, SigningAlgo};
pub use plookup::Plookup;
pub use scan::Scan;
pub use stats::Stats;
pub use sync::Sync;
pub use update::{Update, UpdateJson};
pub use update_meta::UpdateMeta;

use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::{strip_prefix_ci, AtKey};

/// One request of the atProtocol, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From(From),
    Cram(Cram),
    Pkam(Pkam),
    /// `pol`: prove to be the atSign named by the preceding `from`.
    Pol,
    Scan(Scan),
    Lookup(Lookup),
    Plookup(Plookup),
    Llookup(Llookup),
    Update(Update),
    UpdateJson(UpdateJson),
    UpdateMeta(UpdateMeta),
    Delete(Delete),
    Stats(Stats),
    Sync(Sync),
    Notify(Notify),
    NotifyList(NotifyList),
    NotifyRemove(NotifyRemove),
    NotifyStatus(NotifyStatus),
    NotifyFetch(NotifyFetch),
    NotifyAll(NotifyAll),
    Monitor(Monitor),
    Config(Config),
    Info(Info),
    Noop(Noop),
    Batch(Batch),
    Enroll(Enroll),
    Otp(Otp),
    Keys(Keys),
    /// `@exit`: close the connection without a reply.
    Exit,
}

impl Command {
    /// Parses one request line (without its newline).
    ///
    /// As the reference does, the line is trimmed, then the text before its first `:` is
    /// lower-cased with spaces removed, or the whole line is lower-cased when it has no `:`
    /// (so `SCAN Foo` looks for `foo`); keywords after the verb match in any case.
    ///
    /// # Errors
    /// AT0003 for what does not parse; the bounds of [`crate::limits`] for keys and ids that
    /// parse but are too long ([`Command::within_limits`]).
    pub fn parse(line: &str) -> Result<Command, AtError> {
        let command = Command::parse_grammar(line)?;
        command.within_limits()?;
        Ok(command)
    }

    /// Refuses a command whose keys or ids are longer than [`crate::limits`] allows; the one
    /// place each verb's bounded arguments are named (exhaustive, so a new verb must say).
    fn within_limits(&self) -> Result<(), AtError> {
        use crate::limits::{check_key_text, id_fits, MAX_ID_CHARS};
        let id = |id: Option<&str>| match id {
            Some(id) if !id_fits(id) => Err(AtError::syntax(format!(
                "an id is at most {MAX_ID_CHARS} characters"
            ))),
            _ => Ok(()),
        };
        let owned = |key: &str, owner: Option<&AtSign>| match owner {
            Some(owner) => check_key_text(&format!("{key}{owner}")),
            None => check_key_text(key),
        };
        match self {
            Command::Update(c) => check_key_text(&c.key.to_string()),
            Command::UpdateMeta(c) => check_key_text(&c.key.to_string()),
            Command::Delete(c) => check_key_text(&c.key.to_string()),
            Command::Llookup(c) => check_key_text(&c.key.to_string()),
            Command::UpdateJson(c) => check_key_text(&c.at_key),
            Command::Lookup(c) => owned(&c.key, Some(&c.owner)),
            Command::Plookup(c) => owned(&c.key, Some(&c.owner)),
            Command::Notify(c) => {
                id(c.id.as_deref())?;
                owned(&c.key, c.owner.as_ref())
            }
            Command::NotifyAll(c) => owned(&c.key, c.owner.as_ref()),
            Command::NotifyRemove(c) => id(Some(&c.id)),
            Command::NotifyStatus(c) => id(Some(&c.id)),
            Command::NotifyFetch(c) => id(Some(&c.id)),
            Command::Pkam(c) => id(c.enrollment_id.as_deref()),
            // Enrollment ids are in the JSON parameters: `EnrollParams::from_json` bounds them.
            Command::Enroll(_)
            // A passcode is bounded by its grammar; a `keys` key name is checked when used.
            | Command::Otp(_)
            | Command::Keys(_)
            // A batch's commands are parsed, and bounded, one by one when they run.
            | Command::Batch(_)
            // Only atSigns (bounded when parsed), numbers, regexes and secrets.
            | Command::From(_)
            | Command::Cram(_)
            | Command::Pol
            | Command::Scan(_)
            | Command::Stats(_)
            | Command::Sync(_)
            | Command::NotifyList(_)
            | Command::Monitor(_)
            | Command::Config(_)
            | Command::Info(_)
            | Command::Noop(_)
            | Command::Exit => Ok(()),
        }
    }

    /// [`Command::parse`] without the limits.
    fn parse_grammar(line: &str) -> Result<Command, AtError> {
        let line = line.trim();
        if line == "@exit" {
            return Ok(Command::Exit);
        }
        let line = normalise(line);
        let l = line.as_str();
        // Longer verbs sharing a prefix with shorter ones are tested first.
        if let Some(rest) = l.strip_prefix("from:") {
            return from::From::parse(rest).map(Command::From);
        }
        if let Some(rest) = l.strip_prefix("cram:") {
            return Cram::parse(rest).map(Command::Cram);
        }
        if let Some(rest) = l.strip_prefix("pkam:") {
            return Pkam::parse(rest).map(Command::Pkam);
        }
        // The reference gives every line starting `update:meta` to update:meta, even a key
        // named `metadata`.
        if let Some(rest) = l.strip_prefix("update:meta") {
            return UpdateMeta::parse(rest).map(Command::UpdateMeta);
        }
        if let Some(rest) = l.strip_prefix("update:") {
            return update::parse(rest);
        }
        if let Some(rest) = l.strip_prefix("llookup") {
            return Llookup::parse(rest).map(Command::Llookup);
        }
        if let Some(rest) = l.strip_prefix("plookup:") {
            return Plookup::parse(rest).map(Command::Plookup);
        }
        if let Some(rest) = l.strip_prefix("lookup:") {
            return Lookup::parse(rest).map(Command::Lookup);
        }
        if let Some(rest) = l.strip_prefix("scan") {
            return Scan::parse(rest).map(Command::Scan);
        }
        if l == "pol" {
            return Ok(Command::Pol);
        }
        if let Some(rest) = l.strip_prefix("delete") {
            return Delete::parse(rest).map(Command::Delete);
        }
        if let Some(rest) = l.strip_prefix("stats") {
            return Stats::parse(rest).map(Command::Stats);
        }
        if let Some(rest) = l.strip_prefix("config:") {
            return Config::parse(rest).map(Command::Config);
        }
        if let Some(rest) = l.strip_prefix("monitor") {
            return Monitor::parse(rest).map(Command::Monitor);
        }
        if let Some(rest) = l.strip_prefix("notify:list") {
            return NotifyList::parse(rest).map(Command::NotifyList);
        }
        if let Some(rest) = l.strip_prefix("notify:status:") {
            return NotifyStatus::parse(rest).map(Command::NotifyStatus);
        }
        if let Some(rest) = l.strip_prefix("notify:all:") {
            return NotifyAll::parse(rest).map(Command::NotifyAll);
        }
        if let Some(rest) = l.strip_prefix("notify:remove:") {
            return NotifyRemove::parse(rest).map(Command::NotifyRemove);
        }
        if let Some(rest) = l.strip_prefix("notify:fetch:") {
            return NotifyFetch::parse(rest).map(Command::NotifyFetch);
        }
        if let Some(rest) = l.strip_prefix("notify") {
            return Notify::parse(rest).map(Command::Notify);
        }
        if let Some(rest) = l.strip_prefix("batch:") {
            return Batch::parse(rest).map(Command::Batch);
        }
        if let Some(rest) = l.strip_prefix("sync:") {
            return Sync::parse(rest).map(Command::Sync);
        }
        if let Some(rest) = l.strip_prefix("info") {
            return Info::parse(rest).map(Command::Info);
        }
        if let Some(rest) = l.strip_prefix("noop:") {
            return Noop::parse(rest).map(Command::Noop);
        }
        if let Some(rest) = l.strip_prefix("enroll:") {
            return Enroll::parse(rest).map(Command::Enroll);
        }
        if let Some(rest) = l.strip_prefix("otp:") {
            return Otp::parse(rest).map(Command::Otp);
        }
        if let Some(rest) = l.strip_prefix("keys:") {
            return Keys::parse(rest).map(Command::Keys);
        }
        Err(AtError::syntax("invalid command"))
    }

    /// The verb's name, for logs and metrics (never the arguments, which may hold secrets).
    pub fn verb(&self) -> &'static str {
        match self {
            Command::From(_) => "from",
            Command::Cram(_) => "cram",
            Command::Pkam(_) => "pkam",
            Command::Pol => "pol",
            Command::Scan(_) => "scan",
            Command::Lookup(_) => "lookup",
            Command::Plookup(_) => "plookup",
            Command::Llookup(_) => "llookup",
            Command::Update(_) => "update",
            Command::UpdateJson(_) => "update:json",
            Command::UpdateMeta(_) => "update:meta",
            Command::Delete(_) => "delete",
            Command::Stats(_) => "stats",
            Command::Sync(_) => "sync",
            Command::Notify(_) => "notify",
            Command::NotifyList(_) => "notify:list",
            Command::NotifyRemove(_) => "notify:remove",
            Command::NotifyStatus(_) => "notify:status",
            Command::NotifyFetch(_) => "notify:fetch",
            Command::NotifyAll(_) => "notify:all",
            Command::Monitor(_) => "monitor",
            Command::Config(_) => "config",
            Command::Info(_) => "info",
            Command::Noop(_) => "noop",
            Command::Batch(_) => "batch",
            Command::Enroll(_) => "enroll",
            Command::Otp(_) => "otp",
            Command::Keys(_) => "keys",
            Command::Exit => "@exit",
        }
    }
}

impl fmt::Display for Command {
    /// The wire form, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::From(c) => c.fmt(f),
            Command::Cram(c) => c.fmt(f),
            Command::Pkam(c) => c.fmt(f),
            Command::Pol => f.write_str("pol"),
            Command::Scan(c) => c.fmt(f),
            Command::Lookup(c) => c.fmt(f),
            Command::Plookup(c) => c.fmt(f),
            Command::Llookup(c) => c.fmt(f),
            Command::Update(c) => c.fmt(f),
            Command::UpdateJson(c) => c.fmt(f),
            Command::UpdateMeta(c) => c.fmt(f),
            Command::Delete(c) => c.fmt(f),
            Command::Stats(c) => c.fmt(f),
            Command::Sync(c) => c.fmt(f),
            Command::Notify(c) => c.fmt(f),
            Command::NotifyList(c) => c.fmt(f),
            Command::NotifyRemove(c) => c.fmt(f),
            Command::NotifyStatus(c) => c.fmt(f),
            Command::NotifyFetch(c) => c.fmt(f),
            Command::NotifyAll(c) => c.fmt(f),
            Command::Monitor(c) => c.fmt(f),
            Command::Config(c) => c.fmt(f),
            Command::Info(c) => c.fmt(f),
            Command::Noop(c) => c.fmt(f),
            Command::Batch(c) => c.fmt(f),
            Command::Enroll(c) => c.fmt(f),
            Command::Otp(c) => c.fmt(f),
            Command::Keys(c) => c.fmt(f),
            Command::Exit => f.write_str("@exit"),
        }
    }
}

/// The reference's `SecondaryUtil.convertCommand`.
fn normalise(line: &str) -> String {
    match line.split_once(':') {
        Some((verb, rest)) => {
            let mut out = verb.to_lowercase().replace(' ', "");
            out.push(':');
            out.push_str(rest);
            out
        }
        None => line.to_lowercase(),
    }
}

/// The AT0003 a verb gives when its arguments do not parse, as the reference words it.
pub(crate) fn usage_error(usage: &str) -> AtError {
    AtError::syntax(format!("Invalid syntax. e.g {usage}"))
}

/// Tries the `slots` optional groups of a regex in the order its engine would: every group
/// present first, then giving back the later ones before the earlier ones. `attempt` gets a
/// function telling whether slot `i` may match, and returns `None` to ask for the next choice.
pub(crate) fn first_match<T>(
    slots: u32,
    attempt: impl Fn(&dyn Fn(u32) -> bool) -> Option<T>,
) -> Option<T> {
    (0..1u32 << slots).rev().find_map(|mask| {
        let enabled = |slot: u32| mask & (1 << (slots - 1 - slot)) != 0;
        attempt(&enabled)
    })
}

/// Splits `input` after its longest prefix whose characters satisfy `keep`.
pub(crate) fn split_while(input: &str, keep: impl Fn(char) -> bool) -> (&str, &str) {
    let end = input.find(|c: char| !keep(c)).unwrap_or(input.len());
    input.split_at(end)
}

/// `[^:@\s]`: a character of an atSign or simple key in the reference grammar.
pub(crate) fn plain_char(c: char) -> bool {
    c != ':' && c != '@' && !c.is_whitespace()
}

/// `[^:@\s]+` followed by the rest.
pub(crate) fn plain_word(input: &str) -> Option<(&str, &str)> {
    let (word, rest) = split_while(input, plain_char);
    (!word.is_empty()).then_some((word, rest))
}

/// `\d+` as a number; `Err` when it is digits but too large, `Ok(None)` when not digits.
pub(crate) fn digits(input: &str) -> Option<(&str, &str)> {
    let (digits, rest) = split_while(input, |c| c.is_ascii_digit());
    (!digits.is_empty()).then_some((digits, rest))
}

/// `.+` of a Dart regex: at least one character, none a line terminator.
pub(crate) fn rest_of_line(input: &str) -> Option<&str> {
    let ok = !input.is_empty() && !input.contains(['\n', '\r', '\u{2028}', '\u{2029}']);
    ok.then_some(input)
}

/// An atSign from the grammar's `@?[^:@\s]+`, refused with AT0003 when not a valid atSign.
pub(crate) fn atsign(text: &str, usage: &str) -> Result<AtSign, AtError> {
    AtSign::parse(text).map_err(|_| usage_error(usage))
}

/// A key from its parts, refused with AT0003 when it breaks the key rules.
pub(crate) fn key_from_wire(wire: &str, usage: &str) -> Result<AtKey, AtError> {
    AtKey::parse(wire).map_err(|_| usage_error(usage))
}

/// The `(:((?<publicScope>public)|(@(?<forAtSign>[^:@\s]+))))?` group shared by several verbs:
/// `public` or `@<atSign>` after a `:`.
pub(crate) fn scope(input: &str) -> Option<(Scope<'_>, &str)> {
    let after = input.strip_prefix(':')?;
    if let Some(rest) = strip_prefix_ci(after, "public") {
        return Some((Scope::Public, rest));
    }
    let (with, rest) = plain_word(after.strip_prefix('@')?)?;
    Some((Scope::Shared(with), rest))
}

/// The optional scope group `(:public|:@<atSign>)` of delete, llookup, update and update:meta,
/// for one alternative of [`first_match`]: when `take` it must be present and its wire prefix
/// is appended to `wire`; otherwise the input is left as it is.
pub(crate) fn scope_group<'a>(take: bool, input: &'a str, wire: &mut String) -> Option<&'a str> {
    if !take {
        return Some(input);
    }
    let (found, rest) = scope(input)?;
    wire.push_str(&found.prefix());
    Some(rest)
}

/// The optional `:cached` group of delete and llookup, as [`scope_group`].
pub(crate) fn cached_group<'a>(take: bool, input: &'a str, wire: &mut String) -> Option<&'a str> {
    if !take {
        return Some(input);
    }
    let rest = strip_prefix_ci(input, ":cached")?;
    wire.push_str("cached:");
    Some(rest)
}

/// A parsed scope group, before its atSign is checked.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'a> {
    Public,
    Shared(&'a str),
}

impl Scope<'_> {
    /// The wire prefix of a key of this scope.
    pub(crate) fn prefix(self) -> String {
        match self {
            Scope::Public => "public:".to_string(),
            Scope::Shared(with) => format!("@{with}:"),
        }
    }
}

keyword_enum!(
    /// `meta` or `all` in lookup verbs: what to return besides (or instead of) the value.
    LookupOp { Meta => "meta", All => "all" }
);
keyword_enum!(
    /// The operation a notification reports.
    Operation { Update => "update", Delete => "delete" }
);
keyword_enum!(
    /// Whether a notification names a key or carries a text message.
    MessageType { Key => "key", Text => "text" }
);
keyword_enum!(
    /// Delivery priority of a notification or delete.
    Priority { Low => "low", Medium => "medium", High => "high" }
);
keyword_enum!(
    /// Which pending notifications a sender keeps.
    Strategy { All => "all", Latest => "latest" }
);

#[cfg(test)]
mod tests;

#[cfg(test)]
mod limits_tests {
    use super::Command;
    use crate::error::ErrorCode;

    fn refused(line: &str) -> (ErrorCode, String) {
        let error = Command::parse(line).expect_err(&line[..line.len().min(60)]);
        (error.code(), error.message().to_string())
    }

    #[test]
    fn keys_longer_than_any_stored_key_are_at0016_before_any_store_sees_them() {
        let long = "k".repeat(70_000);
        for line in [
            format!("lookup:{long}@alice"),
            format!("plookup:{long}@alice"),
            format!("llookup:{long}@alice"),
            format!("update:{long}@alice v"),
            format!("delete:{long}@alice"),
            format!("notify:update:@bob:{long}@alice:v"),
            format!("notify:all:@bob:{long}@alice:v"),
        ] {
            let (code, message) = refused(&line);
            assert_eq!(code, ErrorCode::InvalidKey, "{}", &line[..20]);
            assert!(
                message.contains("exceeds the maximum allowed length of 255"),
                "{message}"
            );
        }
        // 255 characters (with the owner) is the most any stored key has.
        let at_most = format!("lookup:{}@alice", "k".repeat(249));
        assert!(Command::parse(&at_most).is_ok());
    }

    #[test]
    fn ids_longer_than_any_real_id_are_at0003() {
        let long = "a".repeat(256);
        for line in [
            format!("notify:remove:{long}"),
            format!("notify:status:{long}"),
            format!("notify:fetch:{long}"),
            format!("notify:id:{long}:update:@bob:key@alice:v"),
            format!("pkam:enrollmentId:{long}:c2ln"),
        ] {
            assert_eq!(
                refused(&line),
                (
                    ErrorCode::InvalidSyntax,
                    "an id is at most 255 characters".to_string()
                ),
                "{}",
                &line[..20]
            );
        }
        assert!(Command::parse(&format!("notify:remove:{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn a_notify_all_time_that_does_not_fit_is_refused_not_read_as_a_recipient() {
        let (code, message) = refused("notify:all:ttl:99999999999999999999:@bob:key@alice:v");
        assert_eq!(code, ErrorCode::InvalidSyntax);
        assert_eq!(message, "ttl of 99999999999999999999 is out of range");
        let (_, message) = refused("notify:all:ttl:9223372036854775807:@bob:key@alice:v");
        assert_eq!(message, "ttl of 9223372036854775807 ms is out of range");
    }
}
