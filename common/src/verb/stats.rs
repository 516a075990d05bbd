//! `stats`: the owner reads server statistics by id.
//!
//! # Format
//! ```text
//! stats[:<id>[,<id>…]][:<regex>]      (a regex only after stats:3 or stats:15)
//! ^stats(?<statId>:((?!0)\d+)?(,(\d+))*)?(:(?<regex>(?<=:3:|:15:).+))?$
//! ```
//! e.g. `stats`, `stats:1`, `stats:1,3`, `stats:3:.*wavi`. `stats:0` is invalid.

use std::fmt;

use super::{digits, rest_of_line, usage_error};
use crate::error::AtError;

const USAGE: &str = "stats:1,3";

/// `stats[:ids][:regex]`; no ids means all statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub ids: Vec<u32>,
    /// Filter for `stats:3` (last commit id of matching keys) and `stats:15`.
    pub regex: Option<String>,
}

impl Stats {
    /// Parses the text after `stats`.
    pub fn parse(rest: &str) -> Result<Stats, AtError> {
        Stats::parse_inner(rest).ok_or_else(|| usage_error(USAGE))
    }

    fn parse_inner(rest: &str) -> Option<Stats> {
        let mut stats = Stats::default();
        let Some(mut s) = rest.strip_prefix(':') else {
            return rest.is_empty().then_some(stats);
        };
        // The first id may not start with 0; later ones may.
        if !s.starts_with('0') {
            if let Some((id, after)) = digits(s) {
                stats.ids.push(id.parse().ok()?);
                s = after;
            }
        }
        let mut first_text = true;
        while let Some((id, after)) = s.strip_prefix(',').and_then(digits) {
            stats.ids.push(id.parse().ok()?);
            s = after;
            first_text = false;
        }
        if s.is_empty() {
            return Some(stats);
        }
        // The look-behind `(?<=:3:|:15:)` allows a regex only after exactly `:3` or `:15`.
        let only = first_text && matches!(stats.ids.as_slice(), [3] | [15]);
        let regex = rest_of_line(s.strip_prefix(':')?)?;
        if !only {
            return None;
        }
        stats.regex = Some(regex.to_string());
        Some(stats)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stats")?;
        for (i, id) in self.ids.iter().enumerate() {
            f.write_str(if i == 0 { ":" } else { "," })?;
            write!(f, "{id}")?;
        }
        if let Some(regex) = &self.regex {
            write!(f, ":{regex}")?;
        }
        Ok(())
    }
}
