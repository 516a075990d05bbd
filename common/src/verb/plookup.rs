//! `plookup`: the owner reads another atSign's public key (through its cache).
//!
//! # Format
//! ```text
//! plookup:[bypassCache:<true|false>:][meta:|all:]<key>@<owner>
//! ^plookup:(bypassCache:(?<bypassCache>true|false):)?((?<operation>meta|all):)?(?<atKey>[^@\s]+)@(?<atSign>[^:@\s]+)$
//! ```
//! e.g. `plookup:publickey@alice`, `plookup:bypassCache:true:all:publickey@alice`. The key is
//! the name without `public:`, lower-cased.

use std::fmt;

use super::lookup::{lookup_prefixes, write_prefixes};
use super::{first_match, plain_word, usage_error, LookupOp};
use crate::atsign::AtSign;
use crate::error::AtError;

const USAGE: &str = "plookup:publickey@alice";

/// `plookup:<key>@<owner>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plookup {
    pub bypass_cache: Option<bool>,
    pub op: Option<LookupOp>,
    /// The public key's name, lower-cased.
    pub key: String,
    pub owner: AtSign,
}

impl Plookup {
    /// Parses the text after `plookup:`.
    pub fn parse(rest: &str) -> Result<Plookup, AtError> {
        first_match(2, |on| {
            let (bypass_cache, op, s) = lookup_prefixes(rest, on)?;
            let (key, owner) = s.split_once('@')?;
            let (owner_name, tail) = plain_word(owner)?;
            if !tail.is_empty() || key.is_empty() || key.contains(char::is_whitespace) {
                return None;
            }
            Some(Plookup {
                bypass_cache,
                op,
                key: key.to_lowercase(),
                owner: AtSign::parse(owner_name).ok()?,
            })
        })
        .ok_or_else(|| usage_error(USAGE))
    }
}

impl fmt::Display for Plookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("plookup:")?;
        write_prefixes(f, self.bypass_cache, self.op)?;
        write!(f, "{}{}", self.key, self.owner)
    }
}
