//! `noop`: wait, then answer `data:ok`; monitor clients use `noop:0` as a heartbeat.
//!
//! # Format
//! ```text
//! noop:<millis>       ^noop:(?<delayMillis>\d+)$
//! ```
//! The 5000 ms ceiling is the server's check (AT0022), not the grammar's.

use std::fmt;

use super::{digits, usage_error};
use crate::error::AtError;

/// `noop:<millis>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Noop {
    pub delay_millis: u64,
}

impl Noop {
    /// Parses the text after `noop:`.
    pub fn parse(rest: &str) -> Result<Noop, AtError> {
        let usage = || usage_error("noop:0");
        let (n, tail) = digits(rest).ok_or_else(usage)?;
        if !tail.is_empty() {
            return Err(usage());
        }
        let delay_millis = n.parse().map_err(|_| usage())?;
        Ok(Noop { delay_millis })
    }
}

impl fmt::Display for Noop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "noop:{}", self.delay_millis)
    }
}
