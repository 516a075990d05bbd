//! `scan`: list the keys the connection may see.
//!
//! # Format
//! ```text
//! scan[:showhidden:<true|false>][:@<atSign>][:page:<n>][ <regex>]
//! ^scan$|scan(:showhidden:(?<showhidden>true|false))?(:(?<forAtSign>@[^:@\s]+))?(:page:(?<page>\d+))?( (?<regex>\S+))?$
//! ```
//! e.g. `scan`, `scan:showhidden:true`, `scan .*wavi`. `page` is parsed and ignored by the
//! reference. A regex is one word without whitespace.

use std::fmt;

use super::{digits, first_match, plain_word, usage_error};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::strip_prefix_ci;
use crate::metadata::parse_bool;

const USAGE: &str = "scan";

/// `scan` and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Whether to include hidden (`_`) keys.
    pub show_hidden: Option<bool>,
    /// Scan another atSign's server instead (over a pol connection).
    pub for_atsign: Option<AtSign>,
    pub page: Option<u64>,
    /// Unanchored filter on key names.
    pub regex: Option<String>,
}

impl Scan {
    /// Parses the text after `scan`.
    pub fn parse(rest: &str) -> Result<Scan, AtError> {
        let found = first_match(4, |on| {
            let mut s = rest;
            let mut scan = Scan::default();
            if on(0) {
                let after = strip_prefix_ci(s, ":showhidden:")?;
                let (word, after) = super::split_while(after, |c| c.is_ascii_alphabetic());
                scan.show_hidden = Some(parse_bool(word)?);
                s = after;
            }
            if on(1) {
                let (name, after) = plain_word(s.strip_prefix(":@")?)?;
                scan.for_atsign = Some(AtSign::parse(name).ok()?);
                s = after;
            }
            if on(2) {
                let (n, after) = digits(strip_prefix_ci(s, ":page:")?)?;
                scan.page = Some(n.parse().ok()?);
                s = after;
            }
            if on(3) {
                let regex = s.strip_prefix(' ')?;
                if regex.is_empty() || regex.contains(char::is_whitespace) {
                    return None;
                }
                scan.regex = Some(regex.to_string());
                s = "";
            }
            s.is_empty().then_some(scan)
        });
        found.ok_or_else(|| usage_error(USAGE))
    }
}

impl fmt::Display for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scan")?;
        if let Some(show) = self.show_hidden {
            write!(f, ":showhidden:{show}")?;
        }
        if let Some(atsign) = &self.for_atsign {
            write!(f, ":{atsign}")?;
        }
        if let Some(page) = self.page {
            write!(f, ":page:{page}")?;
        }
        if let Some(regex) = &self.regex {
            write!(f, " {regex}")?;
        }
        Ok(())
    }
}
