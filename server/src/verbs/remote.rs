//! The owner's lookups of other atSigns' keys (docs/protocol.md#lookup,
//! docs/storage.md#cached-keys):
//! `lookup:<key>@bob` reads what @bob shared with the owner, `plookup:<key>@bob` @bob's public
//! key ([`super::plookup`]). Each is served from the cache ([`super::cache`]) unless `bypassCache:true`, else asked
//! of @bob's server as `lookup:all:<key>@bob` — pol-authenticated for `lookup`, anonymous for
//! `plookup` — and cached if the key's ttr says so.
//!
//! The question goes over a peer link ([`crate::peer`]), made in-process when @bob is hosted
//! on this cluster: either way @bob's server sees `me`'s server ask, and answers the same.
//!
//! # Format
//! As a local lookup; `all` names the key as the owner knows it: `@me:<key>@bob` for lookup,
//! `public:<key>@bob` for plookup.
//!
//! # Errors
//! AT0015 with @bob's server's own words when it has no such key (the cached copy is dropped);
//! AT0015 `remoteLookUp: remote atServer returned String value 'null' for <key>@bob` for one not
//! yet born or expired; AT0007 when @bob's server cannot be found or reached; AT0008 when it
//! refuses the handshake.

use at_common::error::{AtError, ErrorCode};
use at_common::metadata::{EpochMillis, Metadata};
use at_common::reply::{ErrorStyle, Prompt, Reply};
use at_common::verb::{Lookup, LookupOp};
use at_common::AtSign;

use super::cache::{self, Cached};
use super::llookup::render;
use super::lookup_public;
use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::store::{Record, Store};

/// `lookup[:bypassCache:true][:meta|:all]:<key>@bob` by `me`'s owner, @bob ≠ `me`.
pub async fn lookup_remote(
    store: &Store,
    peers: &Peers,
    me: &AtSign,
    cmd: &Lookup,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let other = &cmd.owner;
    let shown = format!("{me}:{}{other}", cmd.key);
    let cached_key = format!("cached:{shown}");
    fetch_through_cache(
        Source {
            store,
            peers,
            me,
            other,
            mode: Mode::Pol,
        },
        &cmd.key,
        cmd.bypass_cache == Some(true),
        (&cached_key, Cached::Shared),
        now,
    )
    .await
    .map(|record| render(&shown, &record, cmd.op))
}

/// What the cache refresh job did with one cached copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Asked again; kept as the owner's answer and the caching rules say.
    Fetched,
    /// The owner no longer has the key: the copy is gone.
    Dropped,
    /// Not a copy this job refreshes (not `cached:public:…` or `cached:<me>:…`).
    Skipped,
}

/// Whether the cached copy with `metadata` is due for the refresh job at `now`: it has a ttr
/// other than 0 and −1, is active, and its `refreshAt` has come (or is missing).
pub fn refresh_due(metadata: &Metadata, now: EpochMillis) -> bool {
    let refreshing = metadata.ttr.is_some_and(|ttr| ttr != 0 && ttr != -1);
    refreshing && super::is_active(metadata, now) && metadata.refresh_at.is_none_or(|at| at <= now)
}

/// The cache refresh job's step for `cached_key` of `me`: asks the key's owner again, as a
/// lookup with `bypassCache:true` would, and keeps or drops the copy by the same rules.
pub async fn refresh_cached(
    store: &Store,
    peers: &Peers,
    me: &AtSign,
    cached_key: &str,
    now: EpochMillis,
) -> Result<Refreshed, AtError> {
    let Some(rest) = cached_key.strip_prefix("cached:") else {
        return Ok(Refreshed::Skipped);
    };
    let shared_prefix = format!("{me}:");
    let (kind, mode, rest) = if let Some(rest) = rest.strip_prefix("public:") {
        (Cached::Public, Mode::Anonymous, rest)
    } else if let Some(rest) = rest.strip_prefix(&shared_prefix) {
        (Cached::Shared, Mode::Pol, rest)
    } else {
        return Ok(Refreshed::Skipped);
    };
    let Some(at) = rest.rfind('@') else {
        return Ok(Refreshed::Skipped);
    };
    let (key, owner) = rest.split_at(at);
    let Ok(other) = owner.parse::<AtSign>() else {
        return Ok(Refreshed::Skipped);
    };
    let source = Source {
        store,
        peers,
        me,
        other: &other,
        mode,
    };
    match fetch_through_cache(source, key, true, (cached_key, kind), now).await {
        Ok(_) => Ok(Refreshed::Fetched),
        Err(error) if error.code() == ErrorCode::KeyNotFound => Ok(Refreshed::Dropped),
        Err(error) => Err(error),
    }
}

/// Where a key of `other` is read from, and as whom.
pub(super) struct Source<'a> {
    pub store: &'a Store,
    pub peers: &'a Peers,
    pub me: &'a AtSign,
    pub other: &'a AtSign,
    pub mode: Mode,
}

/// The cached copy if fresh (and not bypassed), else `other`'s answer, cached or, when the
/// key is gone, its cached copy dropped.
pub(super) async fn fetch_through_cache(
    source: Source<'_>,
    key: &str,
    bypass_cache: bool,
    (cached_key, kind): (&str, Cached),
    now: EpochMillis,
) -> Result<Record, AtError> {
    let (store, me) = (source.store, source.me);
    if !bypass_cache {
        if let Some(record) = cache::fresh(store, me, cached_key, now).await? {
            return Ok(record);
        }
    }
    match source.fetch(key, now).await {
        Ok(record) => {
            let monitors = source.peers.monitors();
            cache::keep(store, monitors, me, cached_key, &record, kind, now).await?;
            Ok(record)
        }
        Err(error) if error.code() == ErrorCode::KeyNotFound => {
            cache::drop(store, me, cached_key).await?;
            Err(error)
        }
        Err(error) => Err(error),
    }
}

impl Source<'_> {
    /// `lookup:all:<key>@other` as `other`'s server answers it, read back into a record.
    pub(super) async fn fetch(&self, key: &str, now: EpochMillis) -> Result<Record, AtError> {
        let line = self.ask(key, now).await?;
        match read_lookup_all(&line)? {
            Some(record) => Ok(record),
            None => Err(AtError::with_detail(
                ErrorCode::KeyNotFound,
                format!(
                    "remoteLookUp: remote atServer returned String value 'null' for {key}{}",
                    self.other
                ),
            )),
        }
    }

    /// The reply line (no prompt) of `other`'s server to `lookup:all:<key>@other`. `me`'s
    /// own public keys (plookup of oneself) are read here: no server asks itself.
    async fn ask(&self, key: &str, now: EpochMillis) -> Result<String, AtError> {
        let other = self.other;
        if other == self.me && self.mode == Mode::Anonymous {
            let lookup = Lookup {
                bypass_cache: None,
                op: Some(LookupOp::All),
                key: key.to_string(),
                owner: other.clone(),
            };
            return Ok(line_of(
                lookup_public(self.store, other, &lookup, now).await,
            ));
        }
        let line = format!("lookup:all:{key}{other}");
        Ok(self.peers.ask(self.me, other, self.mode, line).await?)
    }
}

/// A reply as a peer that is not the owner reads it, without the prompt.
fn line_of(reply: Result<Reply, AtError>) -> String {
    let bytes = reply
        .unwrap_or_else(Reply::Error)
        .render(&Prompt::Unauthenticated, ErrorStyle::Legacy);
    let text = String::from_utf8_lossy(&bytes);
    text.trim_end_matches('@').trim_end().to_string()
}

/// Reads a `lookup:all` reply: `data:{"key":…,"data":…,"metaData":{…}}` → the record;
/// `data:null` → `None`; `error:<code>-<text>` → that error, with the peer's text.
pub(super) fn read_lookup_all(line: &str) -> Result<Option<Record>, AtError> {
    if let Some(error) = line.strip_prefix("error:") {
        return Err(read_error(error));
    }
    let Some(json) = line.strip_prefix("data:") else {
        return Err(unexpected(line));
    };
    if json == "null" {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct AtData {
        data: Option<serde_json::Value>,
        #[serde(rename = "metaData")]
        meta_data: Option<Metadata>,
    }
    let parsed: AtData = serde_json::from_str(json).map_err(|_| unexpected(line))?;
    let value = match parsed.data {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(text),
        Some(other) => Some(other.to_string()),
    };
    Ok(Some(Record {
        value,
        metadata: parsed.meta_data.unwrap_or_default(),
    }))
}

/// A peer's reply line passed on as it is: `data:<x>` → that data; `error:…` → that error.
pub(super) fn read_reply(line: &str) -> Result<Reply, AtError> {
    if let Some(error) = line.strip_prefix("error:") {
        return Err(read_error(error));
    }
    match line.strip_prefix("data:") {
        Some(data) => Ok(Reply::Data(data.to_string())),
        None => Err(unexpected(line)),
    }
}

/// A peer's `error:` reply as an error here: its code and its words.
fn read_error(error: &str) -> AtError {
    // Legacy form `AT0015-<text>`; the JSON form `{"errorCode":…,"errorDescription":…}`.
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(error) {
        let code = json["errorCode"].as_str().and_then(ErrorCode::from_code);
        let text = json["errorDescription"].as_str().unwrap_or_default();
        if let Some(code) = code {
            return AtError::with_detail(code, text);
        }
    }
    match error.split_once('-') {
        Some((code, text)) => match ErrorCode::from_code(code) {
            Some(code) => AtError::with_detail(code, text),
            None => unexpected(error),
        },
        None => unexpected(error),
    }
}

fn unexpected(line: &str) -> AtError {
    let shown: String = line.chars().take(200).collect();
    AtError::with_detail(
        ErrorCode::HandshakeFailure,
        format!("unexpected reply from the remote atServer: {shown:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_due_once_its_refresh_at_has_come_unless_kept_forever() {
        let now = 1_000_000;
        let copy = |ttr: Option<i64>, refresh_at: Option<i64>| Metadata {
            ttr,
            refresh_at,
            ..Metadata::default()
        };
        assert!(refresh_due(&copy(Some(10), Some(now)), now));
        assert!(refresh_due(&copy(Some(10), None), now));
        assert!(!refresh_due(&copy(Some(10), Some(now + 1)), now));
        assert!(!refresh_due(&copy(Some(-1), Some(now)), now));
        assert!(!refresh_due(&copy(Some(0), Some(now)), now));
        assert!(!refresh_due(&copy(None, Some(now)), now));
        let expired = Metadata {
            expires_at: Some(now - 1),
            ..copy(Some(10), Some(now))
        };
        assert!(!refresh_due(&expired, now));
    }

    #[test]
    fn lookup_all_replies_are_read_back() {
        let record = read_lookup_all(
            r#"data:{"key":"@alice:phone@bob","data":"123","metaData":{"createdBy":"@bob","ttr":60,"ccd":"true","isEncrypted":false}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(record.value.as_deref(), Some("123"));
        assert_eq!(record.metadata.ttr, Some(60));
        assert_eq!(record.metadata.ccd, Some(true));
        assert_eq!(read_lookup_all("data:null").unwrap(), None);

        let missing =
            read_lookup_all("error:AT0015-Exception: @alice:fax@bob does not exist in keystore")
                .unwrap_err();
        assert_eq!(missing.code(), ErrorCode::KeyNotFound);
        assert_eq!(
            missing.message(),
            "Exception: @alice:fax@bob does not exist in keystore"
        );
        let json = read_lookup_all(
            r#"error:{"errorCode":"AT0015","errorDescription":"key not found : x"}"#,
        )
        .unwrap_err();
        assert_eq!(json.code(), ErrorCode::KeyNotFound);
        for garbage in ["hello", "data:{not json", "error:nonsense"] {
            let error = read_lookup_all(garbage).unwrap_err();
            assert_eq!(error.code(), ErrorCode::HandshakeFailure, "{garbage}");
        }
    }
}
