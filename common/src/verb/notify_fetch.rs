//! `notify:fetch`: the owner reads one stored notification in full.
//!
//! # Format
//! ```text
//! notify:fetch:<id>       ^notify:fetch:(?<notificationId>\S+)$
//! ```

use std::fmt;

use super::notify_status::word_id;
use crate::error::AtError;

/// `notify:fetch:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyFetch {
    pub id: String,
}

impl NotifyFetch {
    /// Parses the text after `notify:fetch:`.
    pub fn parse(rest: &str) -> Result<NotifyFetch, AtError> {
        Ok(NotifyFetch {
            id: word_id(rest, "notify:fetch:<notificationId>")?,
        })
    }
}

impl fmt::Display for NotifyFetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notify:fetch:{}", self.id)
    }
}
