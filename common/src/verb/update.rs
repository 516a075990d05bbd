//! `update` and `update:json`: the owner writes a key and its value.
//!
//! # Format
//! ```text
//! update<fragment>[:public|:@<with>]:<name>[@<owner>] <value>
//! update:json:<json>
//! ^update:json:(?<json>.+)$
//! ^update<META>(:((?<publicScope>public)|(@(?<forAtSign>[^:@\s]+))))?
//!        :(?<atKey>(([^:@\s]+)|(privatekey:at_pkam_publickey)))(@(?<atSign>[^:@\s]+))? (?<value>.+)$
//! ```
//! e.g. `update:location@bob bob's location`, `update:ttl:600000:location@bob v`,
//! `update:@alice:phone@bob 123`, `update:privatekey:at_pkam_publickey <key>`. The value is the
//! rest of the line after the first space following the key; its case is kept. The metadata
//! fragment is [`MetadataUpdate`] (any order accepted, reference order written).

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::{
    first_match, key_from_wire, plain_word, rest_of_line, scope_group, usage_error, Command,
};
use crate::error::AtError;
use crate::key::{strip_prefix_ci, AtKey};
use crate::metadata::{Metadata, MetadataUpdate};

const USAGE: &str = "update:@bob:phone@alice 123";

/// `update:<key> <value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Metadata to set with the value.
    pub meta: MetadataUpdate,
    /// The key; the owner may be left out (it is then the server's atSign).
    pub key: AtKey,
    /// The value, as sent.
    pub value: String,
}

/// `update:json:{"atKey":…,"value":…,"sharedBy":…,"sharedWith":…,"metadata":{…}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateJson {
    /// The key name as in the JSON (`atKey`).
    pub at_key: String,
    pub value: Value,
    pub shared_by: Option<String>,
    pub shared_with: Option<String>,
    pub metadata: Option<Metadata>,
    /// The JSON as sent, so a peer link can repeat it unchanged.
    pub raw: String,
}

// The JSON value is compared structurally; it never holds a float NaN from our parser.
impl Eq for UpdateJson {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateJsonWire {
    at_key: String,
    #[serde(default)]
    value: Value,
    shared_by: Option<String>,
    shared_with: Option<String>,
    metadata: Option<Metadata>,
}

/// Parses the text after `update:` into `Update` or `UpdateJson`.
pub(super) fn parse(rest: &str) -> Result<Command, AtError> {
    if let Some(json) = strip_prefix_ci(rest, "json:") {
        return UpdateJson::parse(json).map(Command::UpdateJson);
    }
    // The fragment and the scope both begin with `:`; give them back the one we stripped.
    Update::parse(&format!(":{rest}")).map(Command::Update)
}

impl UpdateJson {
    /// Parses the JSON after `update:json:`.
    pub fn parse(json: &str) -> Result<UpdateJson, AtError> {
        let raw = rest_of_line(json).ok_or_else(|| usage_error(USAGE))?;
        let wire: UpdateJsonWire = serde_json::from_str(raw).map_err(|_| usage_error(USAGE))?;
        Ok(UpdateJson {
            at_key: wire.at_key,
            value: wire.value,
            shared_by: wire.shared_by,
            shared_with: wire.shared_with,
            metadata: wire.metadata,
            raw: raw.to_string(),
        })
    }

    /// `metadata.isPublic`: whether the key is a `public:` one, which the JSON says there rather
    /// than with a prefix on `atKey`. Only a JSON `true` counts, as in the reference's
    /// `Metadata.fromJson`.
    pub fn is_public(&self) -> bool {
        serde_json::from_str::<Value>(&self.raw)
            .is_ok_and(|json| json["metadata"]["isPublic"] == Value::Bool(true))
    }
}

impl Update {
    /// Parses `<fragment>[scope]:<key>[@owner] <value>`, starting with a `:`.
    pub fn parse(input: &str) -> Result<Update, AtError> {
        let (meta, rest) = MetadataUpdate::parse_prefix(input)?;
        let found = first_match(1, |on| {
            let mut s = rest;
            let mut wire = String::new();
            s = scope_group(on(0), s, &mut wire)?;
            let s = s.strip_prefix(':')?;
            // The regex tries a plain name first, then the one reserved name holding a `:`.
            let plain = plain_word(s).and_then(|(name, after)| owner_and_value(name, after));
            let (name, owner, value) = plain.or_else(|| {
                let after = strip_prefix_ci(s, "privatekey:at_pkam_publickey")?;
                owner_and_value("privatekey:at_pkam_publickey", after)
            })?;
            wire.push_str(name);
            if let Some(owner) = owner {
                wire.push('@');
                wire.push_str(owner);
            }
            Some((wire, value))
        });
        let (wire, value) = found.ok_or_else(|| usage_error(USAGE))?;
        Ok(Update {
            meta,
            key: key_from_wire(&wire, USAGE)?,
            value: value.to_string(),
        })
    }
}

/// `(@<owner>)? <value>` after a key name.
fn owner_and_value<'a>(
    name: &'a str,
    after: &'a str,
) -> Option<(&'a str, Option<&'a str>, &'a str)> {
    let (owner, after) = match after.strip_prefix('@') {
        Some(owner) => {
            let (owner, after) = plain_word(owner)?;
            (Some(owner), after)
        }
        None => (None, after),
    };
    let value = rest_of_line(after.strip_prefix(' ')?)?;
    Some((name, owner, value))
}

impl fmt::Display for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update{}:{} {}", self.meta, self.key, self.value)
    }
}

impl fmt::Display for UpdateJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update:json:{}", self.raw)
    }
}
