//! `llookup`: the owner reads one of its own keys exactly as stored (no reference resolution).
//!
//! # Format
//! ```text
//! llookup[:meta|:all][:cached][:public|:@<with>]:<key>@<owner>
//! ^llookup(:(?<operation>meta|all))?(:cached)?(:((?<publicScope>public)|(@(?<forAtSign>[^:@\s]+))))?
//!         :(?<atKey>[^:]((?!:{2})[^@])+)@(?<atSign>[^:@\s]+)$
//! ```
//! e.g. `llookup:public:publickey@alice`, `llookup:all:@bob:phone@alice`,
//! `llookup:privatekey:at_secret@alice`. The parts are joined into one [`AtKey`].

use std::fmt;

use super::{
    cached_group, first_match, key_from_wire, plain_word, scope_group, usage_error, LookupOp,
};
use crate::error::AtError;
use crate::key::AtKey;

const USAGE: &str = "llookup:phone@alice";

/// `llookup:<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Llookup {
    pub op: Option<LookupOp>,
    /// The full key, owner included.
    pub key: AtKey,
}

/// `[^:]((?!:{2})[^@])+`: at least two characters, the first not `:`, none `@`, no `::`.
pub(super) fn is_colon_key(key: &str) -> bool {
    !key.starts_with(':') && key.chars().count() >= 2 && !key.contains('@') && !key.contains("::")
}

impl Llookup {
    /// Parses the text after `llookup`.
    pub fn parse(rest: &str) -> Result<Llookup, AtError> {
        let wire = first_match(3, |on| {
            let mut s = rest;
            let mut op = None;
            if on(0) {
                let (found, after) = LookupOp::strip(s.strip_prefix(':')?)?;
                op = Some(found);
                s = after;
            }
            let mut wire = String::new();
            s = cached_group(on(1), s, &mut wire)?;
            s = scope_group(on(2), s, &mut wire)?;
            let (key, owner) = s.strip_prefix(':')?.split_once('@')?;
            let (owner_name, tail) = plain_word(owner)?;
            if !tail.is_empty() || !is_colon_key(key) {
                return None;
            }
            wire.push_str(key);
            wire.push('@');
            wire.push_str(owner_name);
            Some((op, wire))
        });
        let (op, wire) = wire.ok_or_else(|| usage_error(USAGE))?;
        Ok(Llookup {
            op,
            key: key_from_wire(&wire, USAGE)?,
        })
    }
}

impl fmt::Display for Llookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("llookup:")?;
        if let Some(op) = self.op {
            write!(f, "{op}:")?;
        }
        write!(f, "{}", self.key)
    }
}
