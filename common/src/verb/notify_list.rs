//! `notify:list`: stored notifications (received ones for the owner, sent ones for a peer).
//!
//! # Format
//! ```text
//! notify:list[:<fromDate>[:<toDate>]][:<regex>]
//! ^notify:list(:(?<fromDate>\d{4}-[01]?\d?-[0123]?\d?))?(:(?<toDate>\d{4}-[01]?\d?-[0123]?\d?))?(:(?<regex>[^:]+))?
//! ```
//! e.g. `notify:list`, `notify:list:2024-10-01:2024-10-24:wavi`. The reference regex has no
//! `$`, so text it does not match (such as the spec's `notify:list <regex>` space form) is
//! ignored, and the whole list is returned.

use std::fmt;

use super::split_while;
use crate::error::AtError;

/// `notify:list` and its filters. Dates are `yyyy-M-d` text as the grammar allows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyList {
    pub from_date: Option<String>,
    pub to_date: Option<String>,
    pub regex: Option<String>,
}

/// `\d{4}-[01]?\d?-[0123]?\d?` after a `:`.
fn date(input: &str) -> Option<(&str, &str)> {
    let body = input.strip_prefix(':')?;
    let b = body.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let mut i = 5;
    if b.get(i).is_some_and(|c| matches!(c, b'0' | b'1')) {
        i += 1;
    }
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if b.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    if b.get(i).is_some_and(|c| matches!(c, b'0'..=b'3')) {
        i += 1;
    }
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    Some(body.split_at(i))
}

impl NotifyList {
    /// Parses the text after `notify:list`. Never fails: the grammar matches any suffix.
    pub fn parse(rest: &str) -> Result<NotifyList, AtError> {
        let mut list = NotifyList::default();
        let mut s = rest;
        if let Some((from, after)) = date(s) {
            list.from_date = Some(from.to_string());
            s = after;
        }
        if let Some((to, after)) = date(s) {
            list.to_date = Some(to.to_string());
            s = after;
        }
        if let Some(body) = s.strip_prefix(':') {
            let (regex, _ignored) = split_while(body, |c| c != ':');
            if !regex.is_empty() {
                list.regex = Some(regex.to_string());
            }
        }
        Ok(list)
    }
}

impl fmt::Display for NotifyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("notify:list")?;
        for part in [&self.from_date, &self.to_date, &self.regex]
            .into_iter()
            .flatten()
        {
            write!(f, ":{part}")?;
        }
        // A regex may end in whitespace (`notify:list:a :b` has the regex `a `); written last,
        // the line's trim would drop it, so a `:` (which ends a regex) keeps it.
        match &self.regex {
            Some(regex) if regex.trim_end() != regex => f.write_str(":"),
            _ => Ok(()),
        }
    }
}
