//! `notify:remove`: the owner deletes a stored notification.
//!
//! # Format
//! ```text
//! notify:remove:<id>      notify:remove:(?<id>[\w\d\-\_]+)
//! ```
//! The reference regex has no `$`: anything after the id is ignored.

use std::fmt;

use super::{split_while, usage_error};
use crate::error::AtError;

/// `notify:remove:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRemove {
    pub id: String,
}

impl NotifyRemove {
    /// Parses the text after `notify:remove:`.
    pub fn parse(rest: &str) -> Result<NotifyRemove, AtError> {
        let (id, _ignored) = split_while(rest, is_id_char);
        if id.is_empty() {
            return Err(usage_error("notify:remove:<notificationId>"));
        }
        Ok(NotifyRemove { id: id.to_string() })
    }
}

/// `[\w\d\-\_]`: Dart's `\w` is ASCII.
pub(super) fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl fmt::Display for NotifyRemove {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notify:remove:{}", self.id)
    }
}
