//! `notify:status`: the delivery status of a notification this atSign sent.
//!
//! # Format
//! ```text
//! notify:status:<id>      ^notify:status:(?<notificationId>\S+)$
//! ```

use std::fmt;

use super::usage_error;
use crate::error::AtError;

/// `notify:status:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyStatus {
    pub id: String,
}

/// `\S+$`: a non-empty id without whitespace.
pub(super) fn word_id(rest: &str, usage: &str) -> Result<String, AtError> {
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(usage_error(usage));
    }
    Ok(rest.to_string())
}

impl NotifyStatus {
    /// Parses the text after `notify:status:`.
    pub fn parse(rest: &str) -> Result<NotifyStatus, AtError> {
        Ok(NotifyStatus {
            id: word_id(rest, "notify:status:<notificationId>")?,
        })
    }
}

impl fmt::Display for NotifyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notify:status:{}", self.id)
    }
}
