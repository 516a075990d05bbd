//! `update:meta`: the owner changes a key's metadata without sending its value again.
//!
//! # Format
//! ```text
//! update:meta[:public|:@<with>]:<name>@<owner><fragment>
//! ^update:meta(:((?<publicScope>public)|(@(?<forAtSign>[^:@\s]+))))?:(?<atKey>[^:@]((?!:{2})[^:@])+)@(?<atSign>[^:@\s]+)<META>$
//! ```
//! e.g. `update:meta:phone@bob:isBinary:true`,
//! `update:meta:@alice:phone@bob:ttl:600000:isBinary:true:isEncrypted:true`.

use std::fmt;

use super::{first_match, key_from_wire, plain_word, scope_group, usage_error};
use crate::error::AtError;
use crate::key::AtKey;
use crate::metadata::MetadataUpdate;

const USAGE: &str = "update:meta:@bob:phone@alice:ttl:60000";

/// `update:meta:<key><fragment>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMeta {
    pub key: AtKey,
    pub meta: MetadataUpdate,
}

impl UpdateMeta {
    /// Parses the text after `update:meta`.
    pub fn parse(rest: &str) -> Result<UpdateMeta, AtError> {
        let found = first_match(1, |on| {
            let mut s = rest;
            let mut wire = String::new();
            s = scope_group(on(0), s, &mut wire)?;
            let (name, owner) = s.strip_prefix(':')?.split_once('@')?;
            if name.starts_with(':') || name.contains(':') || name.chars().count() < 2 {
                return None;
            }
            let (owner, fragment) = plain_word(owner)?;
            wire.push_str(name);
            wire.push('@');
            wire.push_str(owner);
            Some((wire, fragment))
        });
        let (wire, fragment) = found.ok_or_else(|| usage_error(USAGE))?;
        let (meta, tail) = MetadataUpdate::parse_prefix(fragment)?;
        if !tail.is_empty() {
            return Err(usage_error(USAGE));
        }
        Ok(UpdateMeta {
            key: key_from_wire(&wire, USAGE)?,
            meta,
        })
    }
}

impl fmt::Display for UpdateMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update:meta:{}{}", self.key, self.meta)
    }
}
