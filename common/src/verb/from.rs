//! `from`: the atSign a client claims to be; the first verb of every session.
//!
//! # Format
//! ```text
//! from:<atSign>[:clientConfig:<json object>]
//! ^from:(?<atSign>@?[^:@\s]+)(:clientConfig:(?<clientConfig>\{.+\}))?$
//! ```
//! e.g. `from:@alice`, `from:alice:clientConfig:{"version":"3.0.57"}`. The client's `version`
//! decides whether its errors are JSON (see `reply::ErrorStyle::for_client_version`).

use std::fmt;

use serde_json::Value;

use super::{atsign, plain_word, rest_of_line, usage_error};
use crate::atsign::AtSign;
use crate::error::AtError;
use crate::key::strip_prefix_ci;

const USAGE: &str = "from:@alice";

/// `from:<atSign>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The atSign claimed.
    pub atsign: AtSign,
    /// What the client said about itself, if anything.
    pub client_config: Option<ClientConfig>,
}

/// The `clientConfig` JSON object of `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The JSON text as sent, so that a peer link can repeat it.
    pub raw: String,
    /// Its `version` field, e.g. `3.0.57`.
    pub version: Option<String>,
}

impl ClientConfig {
    /// Reads a `clientConfig` object; AT0003 when it is not a JSON object.
    pub fn parse(raw: &str) -> Result<ClientConfig, AtError> {
        let json: Value = serde_json::from_str(raw).map_err(|_| usage_error(USAGE))?;
        let object = json.as_object().ok_or_else(|| usage_error(USAGE))?;
        let version = object.get("version").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        });
        Ok(ClientConfig {
            raw: raw.to_string(),
            version,
        })
    }
}

impl From {
    /// Parses the text after `from:`.
    pub fn parse(rest: &str) -> Result<From, AtError> {
        let body = rest.strip_prefix('@').unwrap_or(rest);
        let (name, after) = plain_word(body).ok_or_else(|| usage_error(USAGE))?;
        let atsign = atsign(name, USAGE)?;
        if after.is_empty() {
            return Ok(From {
                atsign,
                client_config: None,
            });
        }
        let json = strip_prefix_ci(after, ":clientConfig:")
            .and_then(rest_of_line)
            .filter(|j| j.len() >= 3 && j.starts_with('{') && j.ends_with('}'))
            .ok_or_else(|| usage_error(USAGE))?;
        Ok(From {
            atsign,
            client_config: Some(ClientConfig::parse(json)?),
        })
    }
}

impl fmt::Display for From {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "from:{}", self.atsign)?;
        if let Some(config) = &self.client_config {
            write!(f, ":clientConfig:{}", config.raw)?;
        }
        Ok(())
    }
}
