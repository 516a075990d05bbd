//! `info`: server version and uptime.
//!
//! # Format
//! ```text
//! info[:brief]        ^info(:brief)?$
//! ```

use std::fmt;

use super::usage_error;
use crate::error::AtError;

/// `info` or `info:brief`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// `info:brief` answers uptime in milliseconds instead of words.
    pub brief: bool,
}

impl Info {
    /// Parses the text after `info`.
    pub fn parse(rest: &str) -> Result<Info, AtError> {
        if rest.is_empty() {
            Ok(Info { brief: false })
        } else if rest.eq_ignore_ascii_case(":brief") {
            Ok(Info { brief: true })
        } else {
            Err(usage_error("info:brief"))
        }
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.brief { "info:brief" } else { "info" })
    }
}
