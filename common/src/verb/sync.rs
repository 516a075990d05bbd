//! `sync`: the owner reads commit-log entries after a commit id.
//!
//! # Format
//! ```text
//! sync:from:<n|-1>:limit:<m>[:<regex>]    ^sync:from:(?<from_commit_seq>[0-9]+|-1)(:limit:(?<limit>\d+))(:(?<regex>.+))?$
//! sync:<n|-1>[:<regex>]                   ^sync:(?<from_commit_seq>[0-9]+|-1)(:(?<regex>.+))?$   (legacy, spec)
//! ```
//! The reference serves only the first form; the spec's legacy form is parsed too, so the
//! server can decide what to answer. `-1` means from the beginning.

use std::fmt;

use super::{digits, rest_of_line, usage_error};
use crate::error::AtError;
use crate::key::strip_prefix_ci;

const USAGE: &str = "sync:from:-1:limit:10";

/// `sync:from:<n>:limit:<m>` or legacy `sync:<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    /// Entries with a commit id greater than this; -1 for all.
    pub from_commit: i64,
    /// The page size asked for; `None` for the legacy form, which has none.
    pub limit: Option<u64>,
    /// Key filter.
    pub regex: Option<String>,
}

impl Sync {
    /// Parses the text after `sync:`.
    pub fn parse(rest: &str) -> Result<Sync, AtError> {
        Sync::parse_inner(rest).ok_or_else(|| usage_error(USAGE))
    }

    fn parse_inner(rest: &str) -> Option<Sync> {
        let (modern, s) = match strip_prefix_ci(rest, "from:") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let (from_commit, mut s) = commit_id(s)?;
        let mut limit = None;
        if modern {
            let (n, after) = digits(strip_prefix_ci(s, ":limit:")?)?;
            limit = Some(n.parse().ok()?);
            s = after;
        }
        let regex = match s {
            "" => None,
            _ => Some(rest_of_line(s.strip_prefix(':')?)?.to_string()),
        };
        Some(Sync {
            from_commit,
            limit,
            regex,
        })
    }
}

/// `[0-9]+|-1`.
fn commit_id(input: &str) -> Option<(i64, &str)> {
    if let Some(after) = input.strip_prefix("-1") {
        return Some((-1, after));
    }
    let (n, after) = digits(input)?;
    Some((n.parse().ok()?, after))
}

impl fmt::Display for Sync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "sync:from:{}:limit:{limit}", self.from_commit)?,
            None => write!(f, "sync:{}", self.from_commit)?,
        }
        if let Some(regex) = &self.regex {
            write!(f, ":{regex}")?;
        }
        Ok(())
    }
}
