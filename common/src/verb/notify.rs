//! `notify`: tell another atSign (or oneself) about a key or send it a text message; also
//! what one atServer sends another to deliver a notification.
//!
//! # Format
//! ```text
//! notify[:id:<id>][:update|:delete][:messageType:<key|text>][:priority:<low|medium|high>]
//!       [:strategy:<all|latest>][:latestN:<n>][:notifier:<name>][:ttln:<ms>]<fragment>
//!       :<public|@to>:<key>[@<owner>][:<value>]
//! ^notify(:id:(?<id>[\w\d\-\_]+))?(:(?<operation>update|delete))?(:messageType:(?<messageType>key|text))?
//!       (:priority:(?<priority>low|medium|high))?(:strategy:(?<strategy>all|latest))?(:latestN:(?<latestN>\d+))?
//!       (:notifier:(?<notifier>[^\s:]+))?(:ttln:(?<ttln>\d+))?<META>
//!       :((?<publicScope>public)|(@(?<forAtSign>[^:@\s]+))):(?<atKey>[^:@]((?!:{2})[^@])+)(@(?<atSign>[^:@\s]+))?(:(?<value>.+))?$
//! ```
//! e.g. `notify:update:@alice:test@bob`, `notify:messageType:text:@bob:my message`,
//! `notify:id:<uuid>:update:isEncrypted:true:ivNonce:<b64>:@bob:message.myapp@alice:<b64>`.
//! The key runs to the first `@` (or `::`); if what follows cannot end the command, it is
//! shortened to its last `:`, the rest being the value, as the regex's backtracking does.
//! The key is kept as sent, not lower-cased: for text messages it is the message.

use std::fmt;

use super::notify_remove::is_id_char;
use super::{
    atsign, digits, plain_word, rest_of_line, split_while, usage_error, MessageType, Operation,
    Priority, Strategy,
};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::strip_prefix_ci;
use crate::metadata::MetadataUpdate;

const USAGE: &str = "notify:update:@bob:phone@alice";

/// Who a notification is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyScope {
    /// `:public:` — a public key.
    Public,
    /// `:@bob:` — a recipient.
    To(AtSign),
}

/// `notify:…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// The notification id; the sender makes one when absent.
    pub id: Option<String>,
    pub operation: Option<Operation>,
    pub message_type: Option<MessageType>,
    pub priority: Option<Priority>,
    pub strategy: Option<Strategy>,
    pub latest_n: Option<u64>,
    pub notifier: Option<String>,
    /// Expiry of the notification itself, ms.
    pub ttln: Option<u64>,
    pub meta: MetadataUpdate,
    pub scope: Option<NotifyScope>,
    /// The key name, or the text of a text message, as sent.
    pub key: String,
    /// The sender named in the key (`@alice` of `phone@alice`).
    pub owner: Option<AtSign>,
    pub value: Option<String>,
}

impl Notify {
    /// Parses the text after `notify`.
    pub fn parse(rest: &str) -> Result<Notify, AtError> {
        let mut notify = Notify::default();
        let s = notify.header(rest);
        let (meta, s) = MetadataUpdate::parse_prefix(s)?;
        notify.meta = meta;
        let s = s.strip_prefix(':').ok_or_else(|| usage_error(USAGE))?;
        let s = if let Some(after) = strip_prefix_ci(s, "public:") {
            notify.scope = Some(NotifyScope::Public);
            after
        } else {
            let (to, after) = s
                .strip_prefix('@')
                .and_then(plain_word)
                .ok_or_else(|| usage_error(USAGE))?;
            notify.scope = Some(NotifyScope::To(atsign(to, USAGE)?));
            after.strip_prefix(':').ok_or_else(|| usage_error(USAGE))?
        };
        let (key, owner, value) = key_owner_value(s).ok_or_else(|| usage_error(USAGE))?;
        notify.key = key.to_string();
        notify.owner = owner.map(|o| atsign(o, USAGE)).transpose()?;
        notify.value = value.map(str::to_string);
        Ok(notify)
    }

    /// Reads the optional header groups, in the grammar's order. Each group either matches
    /// whole or is left for the next; no later group starts with an earlier one's keyword,
    /// so this greedy reading picks what the regex picks.
    fn header<'a>(&mut self, mut s: &'a str) -> &'a str {
        if let Some((id, after)) = strip_prefix_ci(s, ":id:").map(|a| split_while(a, is_id_char)) {
            if !id.is_empty() {
                self.id = Some(id.to_string());
                s = after;
            }
        }
        if let Some((op, after)) = s.strip_prefix(':').and_then(Operation::strip) {
            if after.starts_with(':') {
                self.operation = Some(op);
                s = after;
            }
        }
        if let Some((t, after)) = strip_prefix_ci(s, ":messageType:").and_then(MessageType::strip) {
            self.message_type = Some(t);
            s = after;
        }
        if let Some((p, after)) = strip_prefix_ci(s, ":priority:").and_then(Priority::strip) {
            self.priority = Some(p);
            s = after;
        }
        if let Some((st, after)) = strip_prefix_ci(s, ":strategy:").and_then(Strategy::strip) {
            self.strategy = Some(st);
            s = after;
        }
        if let Some((n, after)) = strip_prefix_ci(s, ":latestN:").and_then(digits) {
            if let Ok(n) = n.parse() {
                self.latest_n = Some(n);
                s = after;
            }
        }
        if let Some(body) = strip_prefix_ci(s, ":notifier:") {
            let (notifier, after) = split_while(body, |c| c != ':' && !c.is_whitespace());
            if !notifier.is_empty() {
                self.notifier = Some(notifier.to_string());
                s = after;
            }
        }
        if let Some((n, after)) = strip_prefix_ci(s, ":ttln:").and_then(digits) {
            if let Ok(n) = n.parse() {
                self.ttln = Some(n);
                s = after;
            }
        }
        s
    }
}

/// `(?<atKey>[^:@]((?!:{2})[^@])+)(@(?<atSign>[^:@\s]+))?(:(?<value>.+))?$`.
fn key_owner_value(s: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    if s.starts_with([':', '@']) {
        return None;
    }
    let second = s.char_indices().nth(1)?.0;
    // The longest key: up to the first `@`, or the first `::` after the first character.
    let at = s.find('@').unwrap_or(s.len());
    let double = s[second..].find("::").map_or(s.len(), |i| i + second);
    let longest = at.min(double);
    if longest < second + 1 {
        return None;
    }
    if let Some((owner, value)) = tail(&s[longest..]) {
        return Some((&s[..longest], owner, value));
    }
    // Give characters back down to the last `:` that leaves a value after it.
    let colon = s[..longest].rfind(':').filter(|&i| i > second)?;
    let value = rest_of_line(&s[colon + 1..])?;
    Some((&s[..colon], None, Some(value)))
}

/// `(@<owner>)?(:<value>)?$`.
#[allow(clippy::type_complexity)]
fn tail(s: &str) -> Option<(Option<&str>, Option<&str>)> {
    let (owner, s) = match s.strip_prefix('@') {
        Some(after) => {
            let (owner, after) = plain_word(after)?;
            (Some(owner), after)
        }
        None => (None, s),
    };
    if s.is_empty() {
        return Some((owner, None));
    }
    let value = rest_of_line(s.strip_prefix(':')?)?;
    Some((owner, Some(value)))
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("notify")?;
        if let Some(id) = &self.id {
            write!(f, ":id:{id}")?;
        }
        if let Some(op) = self.operation {
            write!(f, ":{op}")?;
        }
        if let Some(t) = self.message_type {
            write!(f, ":messageType:{t}")?;
        }
        if let Some(p) = self.priority {
            write!(f, ":priority:{p}")?;
        }
        if let Some(s) = self.strategy {
            write!(f, ":strategy:{s}")?;
        }
        if let Some(n) = self.latest_n {
            write!(f, ":latestN:{n}")?;
        }
        if let Some(n) = &self.notifier {
            write!(f, ":notifier:{n}")?;
        }
        if let Some(n) = self.ttln {
            write!(f, ":ttln:{n}")?;
        }
        write!(f, "{}", self.meta)?;
        match &self.scope {
            Some(NotifyScope::Public) => f.write_str(":public")?,
            Some(NotifyScope::To(to)) => write!(f, ":{to}")?,
            None => {}
        }
        write!(f, ":{}", self.key)?;
        if let Some(owner) = &self.owner {
            write!(f, "{owner}")?;
        }
        if let Some(value) = &self.value {
            write!(f, ":{value}")?;
        }
        Ok(())
    }
}
