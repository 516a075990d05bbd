//! `batch`: several commands in one request, answered together.
//!
//! # Format
//! ```text
//! batch:<json array>      ^batch:(?<json>.+)$
//! ```
//! e.g. `batch:[{"id":1,"command":"update:public:a@alice 1"},{"id":2,"command":"llookup:public:a@alice"}]`.
//! The inner commands are kept as text; the server parses each with `Command::parse`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{rest_of_line, usage_error};
use crate::error::AtError;

const USAGE: &str = r#"batch:[{"id":1,"command":"llookup:phone@alice"}]"#;

/// `batch:[…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub requests: Vec<BatchRequest>,
}

/// One command of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Echoed in the response to pair answers with requests.
    pub id: i64,
    pub command: String,
}

impl Batch {
    /// Parses the text after `batch:`.
    pub fn parse(rest: &str) -> Result<Batch, AtError> {
        let json = rest_of_line(rest).ok_or_else(|| usage_error(USAGE))?;
        let requests = serde_json::from_str(json).map_err(|_| usage_error(USAGE))?;
        Ok(Batch { requests })
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(&self.requests).map_err(|_| fmt::Error)?;
        write!(f, "batch:{json}")
    }
}
