//! `lookup`: read a key of any atSign as this connection may see it.
//!
//! # Format
//! ```text
//! lookup:[bypassCache:<true|false>:][meta:|all:]<key>@<owner>
//! ^lookup:(bypassCache:(?<bypassCache>true|false):)?((?<operation>meta|all):)?(?<atKey>(?:[^:]).+)@(?<atSign>[^:@\s]+)$
//! ```
//! e.g. `lookup:phone@alice`, `lookup:all:phone@alice`. The key is a name relative to the
//! owner: which stored key it means (`public:`, `@me:`, cached) depends on who asks, so it is
//! kept as text (lower-cased, as the keystore will read it) for the handler to resolve.

use std::fmt;

use super::{first_match, rest_of_line, usage_error, LookupOp};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::strip_prefix_ci;
use crate::metadata::parse_bool;

const USAGE: &str = "lookup:location@bob";

/// `lookup:<key>@<owner>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// `true` forces a fetch from the owner's server.
    pub bypass_cache: Option<bool>,
    /// Metadata, or value and metadata; the bare value when absent.
    pub op: Option<LookupOp>,
    /// The key name without the owner, lower-cased.
    pub key: String,
    pub owner: AtSign,
}

/// The `bypassCache:<bool>:` and `meta:|all:` prefixes shared by lookup and plookup.
pub(super) fn lookup_prefixes<'a>(
    input: &'a str,
    on: &dyn Fn(u32) -> bool,
) -> Option<(Option<bool>, Option<LookupOp>, &'a str)> {
    let mut s = input;
    let mut bypass = None;
    if on(0) {
        let after = strip_prefix_ci(s, "bypassCache:")?;
        let (word, after) = after.split_once(':')?;
        bypass = Some(parse_bool(word)?);
        s = after;
    }
    let mut op = None;
    if on(1) {
        let (found, after) = LookupOp::strip(s)?;
        op = Some(found);
        s = after.strip_prefix(':')?;
    }
    Some((bypass, op, s))
}

impl Lookup {
    /// Parses the text after `lookup:`.
    pub fn parse(rest: &str) -> Result<Lookup, AtError> {
        first_match(2, |on| {
            let (bypass_cache, op, s) = lookup_prefixes(rest, on)?;
            // `.+` is greedy, so the owner is what follows the last `@`.
            let (key, owner) = s.rsplit_once('@')?;
            let (owner_name, tail) = super::plain_word(owner)?;
            // The length rule applies to the key as kept (lower-cased, where `İ` becomes two
            // characters), so that the rendering parses back to the same op and key.
            let key_lower = key.to_lowercase();
            if !tail.is_empty() || key.starts_with(':') || key_lower.chars().count() < 2 {
                return None;
            }
            rest_of_line(key)?;
            Some(Lookup {
                bypass_cache,
                op,
                key: key_lower,
                owner: AtSign::parse(owner_name).ok()?,
            })
        })
        .ok_or_else(|| usage_error(USAGE))
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lookup:")?;
        write_prefixes(f, self.bypass_cache, self.op)?;
        write!(f, "{}{}", self.key, self.owner)
    }
}

pub(super) fn write_prefixes(
    f: &mut fmt::Formatter<'_>,
    bypass_cache: Option<bool>,
    op: Option<LookupOp>,
) -> fmt::Result {
    if let Some(bypass) = bypass_cache {
        write!(f, "bypassCache:{bypass}:")?;
    }
    if let Some(op) = op {
        write!(f, "{op}:")?;
    }
    Ok(())
}
