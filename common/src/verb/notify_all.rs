//! `notify:all`: one notification to several atSigns.
//!
//! # Format
//! ```text
//! notify:all:[update:|delete:][messageType:<key|text>:][ttl:<n>:][ttb:<n>:][ttr:<n>:][ccd:<bool>:]
//!            <@a,@b…>:<key>[@<owner>][:<value>]
//! ^notify:all:((?<operation>update|delete):)?(messageType:((?<messageType>key|text):))?(?:ttl:(?<ttl>\d+):)?
//!            (?:ttb:(?<ttb>\d+):)?(?:ttr:(?<ttr>-?\d+):)?(?:ccd:(?<ccd>true|false+):)?
//!            (?<forAtSign>(([^:\s])+)?(,([^:\s]+))*)(:(?<atKey>[^@:\s]+))(@(?<atSign>[^@:\s]+))?(:(?<value>.+))?$
//! ```
//! e.g. `notify:all:update:@bob,@carol:phone@alice:123`.

use std::fmt;

use super::{
    atsign, digits, first_match, plain_word, rest_of_line, split_while, usage_error, MessageType,
    Operation,
};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::strip_prefix_ci;

const USAGE: &str = "notify:all:update:@bob,@carol:phone@alice";

/// `notify:all:…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyAll {
    pub operation: Option<Operation>,
    pub message_type: Option<MessageType>,
    pub ttl: Option<u64>,
    pub ttb: Option<u64>,
    pub ttr: Option<i64>,
    pub ccd: Option<bool>,
    pub recipients: Vec<AtSign>,
    /// The key name as sent.
    pub key: String,
    pub owner: Option<AtSign>,
    pub value: Option<String>,
}

/// `<name><digits>:` with the name in any case; `-` allowed when `signed`. `None` when the
/// text does not have that shape (the group is absent); `Some(Err)` when it does but the
/// number does not fit: the regex would match it, and the reference's `int.parse` refuse it.
fn number<'a>(s: &'a str, name: &str, signed: bool) -> Option<Result<(i64, &'a str), AtError>> {
    let body = strip_prefix_ci(s, name)?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(after) if signed => (true, after),
        _ => (false, body),
    };
    let (n, after) = digits(body)?;
    let after = after.strip_prefix(':')?;
    let field = name.trim_end_matches(':');
    Some(match n.parse::<i64>() {
        Ok(n) => Ok((if negative { -n } else { n }, after)),
        Err(_) => Err(AtError::syntax(format!("{field} of {n} is out of range"))),
    })
}

impl NotifyAll {
    /// Parses the text after `notify:all:`.
    pub fn parse(rest: &str) -> Result<NotifyAll, AtError> {
        let found = first_match(6, |on| {
            let mut s = rest;
            let mut all = NotifyAll::default();
            // A number group that matches but does not fit ends the parse (no other reading).
            macro_rules! number {
                ($name:expr, $signed:expr) => {
                    match number(s, $name, $signed)? {
                        Ok(found) => found,
                        Err(error) => return Some(Err(error)),
                    }
                };
            }
            if on(0) {
                let (op, after) = Operation::strip(s)?;
                all.operation = Some(op);
                s = after.strip_prefix(':')?;
            }
            if on(1) {
                let (t, after) = MessageType::strip(strip_prefix_ci(s, "messageType:")?)?;
                all.message_type = Some(t);
                s = after.strip_prefix(':')?;
            }
            if on(2) {
                let (n, after) = number!("ttl:", false);
                all.ttl = Some(u64::try_from(n).ok()?);
                s = after;
            }
            if on(3) {
                let (n, after) = number!("ttb:", false);
                all.ttb = Some(u64::try_from(n).ok()?);
                s = after;
            }
            if on(4) {
                let (n, after) = number!("ttr:", true);
                all.ttr = Some(n);
                s = after;
            }
            if on(5) {
                let body = strip_prefix_ci(s, "ccd:")?;
                // `true|false+`: the regex lets `false` end in any number of `e`s.
                let (word, after) = split_while(body, |c| c.is_ascii_alphabetic());
                let lower = word.to_ascii_lowercase();
                let ccd = match lower.strip_prefix("fals") {
                    _ if lower == "true" => true,
                    Some(es) if !es.is_empty() && es.bytes().all(|b| b == b'e') => false,
                    _ => return None,
                };
                all.ccd = Some(ccd);
                s = after.strip_prefix(':')?;
            }
            let (recipients, s) = split_while(s, |c| c != ':' && !c.is_whitespace());
            let (key, s) = split_while(s.strip_prefix(':')?, |c| {
                c != '@' && c != ':' && !c.is_whitespace()
            });
            if key.is_empty() {
                return None;
            }
            let (owner, s) = match s.strip_prefix('@') {
                Some(after) => {
                    let (owner, after) = plain_word(after)?;
                    (Some(owner), after)
                }
                None => (None, s),
            };
            let value = match s {
                "" => None,
                _ => Some(rest_of_line(s.strip_prefix(':')?)?),
            };
            all.key = key.to_string();
            all.value = value.map(str::to_string);
            Some(Ok((all, recipients, owner)))
        });
        let (mut all, recipients, owner) = found.ok_or_else(|| usage_error(USAGE))??;
        // The times obey the metadata fragment's rules (ranges included).
        crate::metadata::MetadataUpdate {
            ttl: all.ttl.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            ttb: all.ttb.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            ttr: all.ttr,
            ..Default::default()
        }
        .validate()?;
        all.recipients = recipients
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| atsign(r, USAGE))
            .collect::<Result<_, _>>()?;
        all.owner = owner.map(|o| atsign(o, USAGE)).transpose()?;
        Ok(all)
    }
}

impl fmt::Display for NotifyAll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("notify:all:")?;
        if let Some(op) = self.operation {
            write!(f, "{op}:")?;
        }
        if let Some(t) = self.message_type {
            write!(f, "messageType:{t}:")?;
        }
        if let Some(n) = self.ttl {
            write!(f, "ttl:{n}:")?;
        }
        if let Some(n) = self.ttb {
            write!(f, "ttb:{n}:")?;
        }
        if let Some(n) = self.ttr {
            write!(f, "ttr:{n}:")?;
        }
        if let Some(b) = self.ccd {
            write!(f, "ccd:{b}:")?;
        }
        let recipients: Vec<&str> = self.recipients.iter().map(AtSign::as_str).collect();
        write!(f, "{}:{}", recipients.join(","), self.key)?;
        if let Some(owner) = &self.owner {
            write!(f, "{owner}")?;
        }
        if let Some(value) = &self.value {
            write!(f, ":{value}")?;
        }
        Ok(())
    }
}
