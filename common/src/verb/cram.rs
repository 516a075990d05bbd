//! `cram`: the owner's bootstrap authentication with the shared CRAM secret.
//!
//! # Format
//! ```text
//! cram:<digest>          ^cram:(?<digest>.+$)
//! ```
//! The digest is the lowercase hex SHA-512 of `secret + challenge` (docs/authentication.md#cram);
//! checking it is the server's business.

use std::fmt;

use super::{rest_of_line, usage_error};
use crate::error::AtError;

/// `cram:<digest>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Cram {
    /// The digest as sent.
    pub digest: String,
}

impl Cram {
    /// Parses the text after `cram:`.
    pub fn parse(rest: &str) -> Result<Cram, AtError> {
        let digest = rest_of_line(rest).ok_or_else(|| usage_error("cram:<digest>"))?;
        Ok(Cram {
            digest: digest.to_string(),
        })
    }
}

/// The digest is a credential: keep it out of logs.
impl fmt::Debug for Cram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cram { digest: MASKED }")
    }
}

impl fmt::Display for Cram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cram:{}", self.digest)
    }
}
