//! `delete`: the owner removes a key.
//!
//! # Format
//! ```text
//! delete[:priority:<low|medium|high>][:cached][:public|:@<with>]:<name>[@<owner>]
//! ^delete(:priority:(?<priority>low|medium|high))?(:cached)?(:((?<publicScope>public)|(@(?<forAtSign>[^:@\s]+))))?
//!        :(?<atKey>(([^:@\s]+)|(privatekey:at_secret)))(@(?<atSign>[^:@\s]+))?$
//! ```
//! e.g. `delete:phone@alice`, `delete:@bob:phone@alice`, `delete:privatekey:at_secret`.
//! `cached:` is accepted only before a public or shared key (the only keys that are cached).

use std::fmt;

use super::{
    cached_group, first_match, key_from_wire, plain_word, scope_group, usage_error, Priority,
};
use crate::error::AtError;
use crate::key::{strip_prefix_ci, AtKey};

const USAGE: &str = "delete:phone@alice";

/// `delete:<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Priority of the delete notification it may cause.
    pub priority: Option<Priority>,
    pub key: AtKey,
}

impl Delete {
    /// Parses the text after `delete`.
    pub fn parse(rest: &str) -> Result<Delete, AtError> {
        let found = first_match(3, |on| {
            let mut s = rest;
            let mut priority = None;
            if on(0) {
                let (found, after) = Priority::strip(strip_prefix_ci(s, ":priority:")?)?;
                priority = Some(found);
                s = after;
            }
            let mut wire = String::new();
            s = cached_group(on(1), s, &mut wire)?;
            s = scope_group(on(2), s, &mut wire)?;
            let s = s.strip_prefix(':')?;
            let plain = plain_word(s).and_then(|(name, after)| owner_then_end(name, after));
            let (name, owner) = plain.or_else(|| {
                let after = strip_prefix_ci(s, "privatekey:at_secret")?;
                owner_then_end("privatekey:at_secret", after)
            })?;
            wire.push_str(name);
            if let Some(owner) = owner {
                wire.push('@');
                wire.push_str(owner);
            }
            Some((priority, wire))
        });
        let (priority, wire) = found.ok_or_else(|| usage_error(USAGE))?;
        Ok(Delete {
            priority,
            key: key_from_wire(&wire, USAGE)?,
        })
    }
}

/// `(@<owner>)?$` after a key name.
fn owner_then_end<'a>(name: &'a str, after: &'a str) -> Option<(&'a str, Option<&'a str>)> {
    if after.is_empty() {
        return Some((name, None));
    }
    let (owner, tail) = plain_word(after.strip_prefix('@')?)?;
    tail.is_empty().then_some((name, Some(owner)))
}

impl fmt::Display for Delete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("delete")?;
        if let Some(priority) = self.priority {
            write!(f, ":priority:{priority}")?;
        }
        write!(f, ":{}", self.key)
    }
}
