//! `config`: the owner's block list, and server settings in testing mode.
//!
//! # Format
//! ```text
//! config:block:add:@bob[ @carol…]
//! config:block:remove:@bob[ @carol…]
//! config:block:show
//! config:set:<name>=<value> | config:reset:<name> | config:print:<name>
//! ^config:(?:(?<=config:)block:(?<operation>add|remove|show)(?:(?<=show)\s?$|(?:(?<=add|remove):(?<atSign>(?:@[^:@\s]+)( (?:@[^\s@]+))*$))))
//!        |(?:(?<=config:)(?<setOperation>set|reset|print):(?<configNew>.+)$)
//! ```

use std::fmt;

use super::{atsign, rest_of_line, usage_error};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::strip_prefix_ci;

const USAGE: &str = "config:block:add:@bob";

/// One `config:` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// Refuse `from` by these atSigns.
    BlockAdd(Vec<AtSign>),
    /// Accept these atSigns again.
    BlockRemove(Vec<AtSign>),
    /// List the blocked atSigns.
    BlockShow,
    /// `config:set:<name>=<value>`, as sent after `set:`.
    Set(String),
    /// `config:reset:<name>`.
    Reset(String),
    /// `config:print:<name>`.
    Print(String),
}

impl Config {
    /// Parses the text after `config:`.
    pub fn parse(rest: &str) -> Result<Config, AtError> {
        if let Some(block) = strip_prefix_ci(rest, "block:") {
            if let Some(after) = strip_prefix_ci(block, "show") {
                let mut chars = after.chars();
                return match (chars.next(), chars.next()) {
                    (None, _) => Ok(Config::BlockShow),
                    (Some(c), None) if c.is_whitespace() => Ok(Config::BlockShow),
                    _ => Err(usage_error(USAGE)),
                };
            }
            if let Some(list) = strip_prefix_ci(block, "add:") {
                return atsign_list(list).map(Config::BlockAdd);
            }
            if let Some(list) = strip_prefix_ci(block, "remove:") {
                return atsign_list(list).map(Config::BlockRemove);
            }
            return Err(usage_error(USAGE));
        }
        for (word, make) in [
            ("set:", Config::Set as fn(String) -> Config),
            ("reset:", Config::Reset),
            ("print:", Config::Print),
        ] {
            if let Some(value) = strip_prefix_ci(rest, word) {
                let value = rest_of_line(value).ok_or_else(|| usage_error(USAGE))?;
                return Ok(make(value.to_string()));
            }
        }
        Err(usage_error(USAGE))
    }
}

/// `@a[ @b…]`: atSigns separated by single spaces, each with its `@`.
fn atsign_list(list: &str) -> Result<Vec<AtSign>, AtError> {
    list.split(' ')
        .map(|item| match item.strip_prefix('@') {
            Some(name) if !name.is_empty() => atsign(name, USAGE),
            _ => Err(usage_error(USAGE)),
        })
        .collect()
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |signs: &[AtSign]| {
            signs
                .iter()
                .map(AtSign::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Config::BlockAdd(signs) => write!(f, "config:block:add:{}", list(signs)),
            Config::BlockRemove(signs) => write!(f, "config:block:remove:{}", list(signs)),
            Config::BlockShow => f.write_str("config:block:show"),
            Config::Set(value) => write!(f, "config:set:{value}"),
            Config::Reset(value) => write!(f, "config:reset:{value}"),
            Config::Print(value) => write!(f, "config:print:{value}"),
        }
    }
}
