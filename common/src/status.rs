//! `AtStatus`: where an atSign is in its lifecycle (notFound → teapot → activated), as the
//! `at_server_status` library reports it, and how a status check reads the two servers'
//! answers. Pure: the check that opens the connections lives with its callers.
//!
//! # The lifecycle
//! | root status | server status     | overall [`AtSignStatus`] | HTTP |
//! |-------------|-------------------|--------------------------|------|
//! | notFound    | (not asked)       | notFound                 | 404  |
//! | found       | teapot or ready   | teapot                   | 418  |
//! | found       | activated         | activated                | 200  |
//! | found       | stopped           | unavailable              | 503  |
//! | found       | unavailable       | unavailable              | 503  |
//! | found       | error             | error                    | 500  |
//! | unavailable | (not asked)       | unavailable              | 502  |
//! | error       | (not asked)       | error                    | 500  |
//!
//! Two deliberate differences from the Dart library's code, both following its documented
//! table: a directory that is down is 502 (the code says 503), and `ready` (public key listed
//! but empty) is 418 like teapot, since the server runs and is not activated (the code says
//! 503). Where the Dart `status()` returns null (server unreachable or in error behind a found
//! root), the overall status here is `unavailable` or `error`.
//!
//! # JSON
//! `{"atSign":"@alice","serverLocation":"host:port","rootStatus":"found",
//! "serverStatus":"teapot","status":"teapot","httpStatus":418}`: the Dart `toJson` keys, enum
//! values by their Dart names, plus `httpStatus`. `status` and `httpStatus` are derived, so they
//! are ignored when reading.

use serde::{Deserialize, Serialize};

use crate::AtSign;

/// What the directory said about an atSign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RootStatus {
    Found,
    NotFound,
    Stopped,
    /// Not reachable, or no answer in time.
    Unavailable,
    /// It answered something that is neither an address nor `null`.
    Error,
}

/// What the atSign's server said, when the directory had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServerStatus {
    /// Running; `publickey@<atSign>` is listed but has no value.
    Ready,
    /// Running, not activated: no `publickey@<atSign>`.
    Teapot,
    /// Running, with its owner's public key: onboarded.
    Activated,
    Stopped,
    /// Not reachable, or no answer in time (also: not asked).
    Unavailable,
    /// Reachable, but it broke the protocol.
    Error,
}

/// The overall state of an atSign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AtSignStatus {
    NotFound,
    Teapot,
    Activated,
    Unavailable,
    Error,
}

impl AtSignStatus {
    pub const ALL: [AtSignStatus; 5] = [
        AtSignStatus::NotFound,
        AtSignStatus::Teapot,
        AtSignStatus::Activated,
        AtSignStatus::Unavailable,
        AtSignStatus::Error,
    ];

    /// The camelCase name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            AtSignStatus::NotFound => "notFound",
            AtSignStatus::Teapot => "teapot",
            AtSignStatus::Activated => "activated",
            AtSignStatus::Unavailable => "unavailable",
            AtSignStatus::Error => "error",
        }
    }
}

/// The result of one status check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtStatus {
    pub at_sign: AtSign,
    /// The directory's answer, when it had one.
    pub server_location: Option<String>,
    pub root_status: RootStatus,
    pub server_status: ServerStatus,
}

impl AtStatus {
    /// The directory has no entry.
    pub fn not_found(at_sign: AtSign) -> AtStatus {
        AtStatus::root_only(at_sign, RootStatus::NotFound)
    }

    /// Only the directory step happened (the server is then not asked: `unavailable`).
    pub fn root_only(at_sign: AtSign, root_status: RootStatus) -> AtStatus {
        AtStatus {
            at_sign,
            server_location: None,
            root_status,
            server_status: ServerStatus::Unavailable,
        }
    }

    /// The overall status: see the module's table.
    pub fn status(&self) -> AtSignStatus {
        match self.root_status {
            RootStatus::NotFound => AtSignStatus::NotFound,
            RootStatus::Stopped | RootStatus::Unavailable => AtSignStatus::Unavailable,
            RootStatus::Error => AtSignStatus::Error,
            RootStatus::Found => match self.server_status {
                ServerStatus::Activated => AtSignStatus::Activated,
                ServerStatus::Ready | ServerStatus::Teapot => AtSignStatus::Teapot,
                ServerStatus::Stopped | ServerStatus::Unavailable => AtSignStatus::Unavailable,
                ServerStatus::Error => AtSignStatus::Error,
            },
        }
    }

    /// The HTTP status code: see the module's table.
    pub fn http_status(&self) -> u16 {
        match self.root_status {
            RootStatus::NotFound => 404,
            RootStatus::Stopped | RootStatus::Unavailable => 502,
            RootStatus::Error => 500,
            RootStatus::Found => match self.server_status {
                ServerStatus::Activated => 200,
                ServerStatus::Ready | ServerStatus::Teapot => 418,
                ServerStatus::Stopped | ServerStatus::Unavailable => 503,
                ServerStatus::Error => 500,
            },
        }
    }

    /// The JSON form (one line).
    pub fn to_json(&self) -> String {
        let wire = Wire {
            at_sign: self.at_sign.as_str().to_string(),
            server_location: self.server_location.clone(),
            root_status: self.root_status,
            server_status: self.server_status,
            status: Some(self.status()),
            http_status: Some(self.http_status()),
        };
        serde_json::to_string(&wire).expect("plain strings and enums serialise")
    }

    /// Reads the JSON form; `status` and `httpStatus` may be absent (they are recomputed).
    pub fn from_json(text: &str) -> Result<AtStatus, String> {
        let wire: Wire = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(AtStatus {
            at_sign: AtSign::parse(&wire.at_sign).map_err(|e| format!("atSign: {e}"))?,
            server_location: wire.server_location,
            root_status: wire.root_status,
            server_status: wire.server_status,
        })
    }
}

/// The JSON shape, in the order the keys are written.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    at_sign: String,
    server_location: Option<String>,
    root_status: RootStatus,
    server_status: ServerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<AtSignStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
}

/// What a directory's answer line (`host:port`, `null`; `\r`, and the prompt of the previous
/// answer, already removed or not) means: the location, or `None` for `null`; `Err` for
/// anything else.
pub fn read_directory_answer(line: &str) -> Result<Option<crate::Address>, String> {
    let text = line.trim().trim_start_matches('@').trim();
    if text == "null" {
        return Ok(None);
    }
    crate::Address::parse(text)
        .map(Some)
        .map_err(|e| format!("directory answered {text:?}: {e}"))
}

/// Whether a reply is the reference's paused-server error (AT0024), which a suspended atSign's
/// server answers to everything: its server is `stopped`.
pub fn is_paused(reply: &str) -> bool {
    // Either error style: `error:AT0024-…` or `error:{"errorCode":"AT0024",…}`.
    reply.strip_prefix("error:").is_some_and(|error| {
        error.starts_with("AT0024") || error.contains(r#""errorCode":"AT0024""#)
    })
}

/// What an unauthenticated `scan` reply (`data:["publickey@alice",…]`) says about `at_sign`:
/// whether `publickey@<atSign>` is listed. `Err` for anything but a JSON list of strings.
pub fn scan_lists_public_key(reply: &str, at_sign: &AtSign) -> Result<bool, String> {
    let json = reply
        .strip_prefix("data:")
        .ok_or_else(|| format!("scan answered {reply:?}"))?;
    let keys: Vec<String> =
        serde_json::from_str(json).map_err(|e| format!("scan answered {json:?}: {e}"))?;
    let wanted = public_key_name(at_sign);
    Ok(keys.iter().any(|key| key.eq_ignore_ascii_case(&wanted)))
}

/// What an unauthenticated `lookup:publickey@<atSign>` reply says: `Activated` for a value,
/// `Ready` for `data:null` (or an empty value) and for `AT0015` (the key went away between
/// the scan and the lookup: not activated); `Err` for anything else.
pub fn read_public_key_lookup(reply: &str) -> Result<ServerStatus, String> {
    if let Some(value) = reply.strip_prefix("data:") {
        let value = value.trim();
        return Ok(if value.is_empty() || value == "null" {
            ServerStatus::Ready
        } else {
            ServerStatus::Activated
        });
    }
    if reply.starts_with("error:AT0015") {
        return Ok(ServerStatus::Ready);
    }
    Err(format!("lookup answered {reply:?}"))
}

/// `publickey@alice`: the key whose presence means "activated".
pub fn public_key_name(at_sign: &AtSign) -> String {
    format!("publickey{}", at_sign.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> AtSign {
        AtSign::parse("@alice").unwrap()
    }

    fn found(server_status: ServerStatus) -> AtStatus {
        AtStatus {
            at_sign: alice(),
            server_location: Some("127.0.0.1:6464".into()),
            root_status: RootStatus::Found,
            server_status,
        }
    }

    #[test]
    fn the_paused_server_error_in_either_style_is_stopped() {
        assert!(is_paused("error:AT0024-Exception: @alice is suspended"));
        assert!(is_paused(
            r#"error:{"errorCode":"AT0024","errorDescription":"Server is paused : @alice is suspended"}"#
        ));
        assert!(!is_paused("error:AT0015-Exception: key not found"));
        assert!(!is_paused(r#"data:["AT0024"]"#));
    }

    #[test]
    fn every_state_has_the_documented_overall_status_and_http_code() {
        let cases = [
            (AtStatus::not_found(alice()), AtSignStatus::NotFound, 404),
            (
                AtStatus::root_only(alice(), RootStatus::Unavailable),
                AtSignStatus::Unavailable,
                502,
            ),
            (
                AtStatus::root_only(alice(), RootStatus::Stopped),
                AtSignStatus::Unavailable,
                502,
            ),
            (
                AtStatus::root_only(alice(), RootStatus::Error),
                AtSignStatus::Error,
                500,
            ),
            (found(ServerStatus::Teapot), AtSignStatus::Teapot, 418),
            (found(ServerStatus::Ready), AtSignStatus::Teapot, 418),
            (found(ServerStatus::Activated), AtSignStatus::Activated, 200),
            (
                found(ServerStatus::Unavailable),
                AtSignStatus::Unavailable,
                503,
            ),
            (found(ServerStatus::Stopped), AtSignStatus::Unavailable, 503),
            (found(ServerStatus::Error), AtSignStatus::Error, 500),
        ];
        for (status, overall, http) in cases {
            assert_eq!(status.status(), overall, "{status:?}");
            assert_eq!(status.http_status(), http, "{status:?}");
        }
    }

    #[test]
    fn json_has_the_dart_keys_in_order_and_reads_back() {
        let status = found(ServerStatus::Teapot);
        let json = status.to_json();
        assert_eq!(
            json,
            r#"{"atSign":"@alice","serverLocation":"127.0.0.1:6464","rootStatus":"found","serverStatus":"teapot","status":"teapot","httpStatus":418}"#
        );
        assert_eq!(AtStatus::from_json(&json).unwrap(), status);
        let missing = AtStatus::not_found(alice());
        assert_eq!(
            missing.to_json(),
            r#"{"atSign":"@alice","serverLocation":null,"rootStatus":"notFound","serverStatus":"unavailable","status":"notFound","httpStatus":404}"#
        );
        // Derived fields are optional on input, and recomputed rather than trusted.
        let read = AtStatus::from_json(
            r#"{"atSign":"alice","serverLocation":null,"rootStatus":"notFound","serverStatus":"unavailable","status":"activated"}"#,
        )
        .unwrap();
        assert_eq!(read, missing);
        assert!(AtStatus::from_json(r#"{"atSign":"@alice","rootStatus":"lost"}"#).is_err());
    }

    #[test]
    fn directory_answers_are_an_address_null_or_an_error() {
        let address = read_directory_answer("@vip.example.com:6464\r")
            .unwrap()
            .unwrap();
        assert_eq!((address.host(), address.port()), ("vip.example.com", 6464));
        assert_eq!(read_directory_answer("null\r").unwrap(), None);
        assert_eq!(read_directory_answer("@null").unwrap(), None);
        assert!(read_directory_answer("error:AT0003-Invalid syntax").is_err());
        assert!(read_directory_answer("").is_err());
    }

    #[test]
    fn the_scan_and_lookup_replies_decide_the_server_status() {
        let scan = r#"data:["signing_publickey@alice","publickey@alice"]"#;
        assert!(scan_lists_public_key(scan, &alice()).unwrap());
        // `signing_publickey@alice` alone is not the owner's key.
        assert!(!scan_lists_public_key(r#"data:["signing_publickey@alice"]"#, &alice()).unwrap());
        assert!(!scan_lists_public_key("data:[]", &alice()).unwrap());
        assert!(scan_lists_public_key("data:{}", &alice()).is_err());
        assert!(
            scan_lists_public_key("error:AT0401-Client authentication failed", &alice()).is_err()
        );
        assert_eq!(
            read_public_key_lookup("data:MIIBIjANBgkq").unwrap(),
            ServerStatus::Activated
        );
        assert_eq!(
            read_public_key_lookup("data:null").unwrap(),
            ServerStatus::Ready
        );
        assert_eq!(
            read_public_key_lookup("error:AT0015-key not found : publickey@alice does not exist")
                .unwrap(),
            ServerStatus::Ready
        );
        assert!(read_public_key_lookup("hello").is_err());
    }
}
