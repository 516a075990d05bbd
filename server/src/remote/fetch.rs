//! Reading another atSign's key through the cache (docs/storage.md#cached-keys): the cached
//! copy while fresh, else `lookup:all:<key>@other` asked of the other server over a peer link
//! ([`crate::peer`]; in-process when it is hosted on this cluster, so it sees `me`'s server ask
//! and answers the same either way), kept or dropped as the answer and the key's ttr say. The
//! owner's `lookup` and `plookup` of others, and the cache refresh job, all come here.
//!
//! # Errors
//! AT0015 with the other server's own words when it has no such key (the cached copy is
//! dropped); AT0015 `remoteLookUp: remote atServer returned String value 'null' for <key>@bob`
//! for one not yet born or expired; AT0007 when the other server cannot be found or reached;
//! AT0008 when it refuses the handshake or answers what is not the protocol.

use at_common::error::{AtError, ErrorCode};
use at_common::metadata::{EpochMillis, Metadata};
use at_common::reply::Reply;
use at_common::AtSign;

use super::cache::{self, Cached};
use crate::lifetime::is_active;
use crate::notifications::Monitors;
use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::store::{Record, Store};

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
    refreshing && is_active(metadata, now) && metadata.refresh_at.is_none_or(|at| at <= now)
}

/// The cache refresh job's step for `cached_key` of `me`: asks the key's owner again, as a
/// lookup with `bypassCache:true` would, and keeps or drops the copy by the same rules. Copies
/// of `me`'s own keys are skipped: none is made (`plookup` of oneself reads the key itself).
pub async fn refresh_cached(
    store: &Store,
    peers: &Peers,
    monitors: &Monitors,
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
    if other == *me {
        return Ok(Refreshed::Skipped);
    }
    let source = Source {
        store,
        peers,
        monitors,
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
pub struct Source<'a> {
    pub store: &'a Store,
    pub peers: &'a Peers,
    /// Told when a fetched encryption public key shows its atSign was reset.
    pub monitors: &'a Monitors,
    pub me: &'a AtSign,
    pub other: &'a AtSign,
    pub mode: Mode,
}

/// The cached copy if fresh (and not bypassed), else `other`'s answer, cached or, when the
/// key is gone, its cached copy dropped.
pub async fn fetch_through_cache(
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
    match source.fetch(key).await {
        Ok(record) => {
            cache::keep(store, source.monitors, me, cached_key, &record, kind, now).await?;
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
    async fn fetch(&self, key: &str) -> Result<Record, AtError> {
        let line = format!("lookup:all:{key}{}", self.other);
        let line = self.peers.ask(self.me, self.other, self.mode, line).await?;
        read_fetched(&line, key, self.other)
    }
}

/// A `lookup:all:<key>@other` reply line as a record; AT0015 for `data:null` (a key not yet
/// born or expired there).
pub fn read_fetched(line: &str, key: &str, other: &AtSign) -> Result<Record, AtError> {
    match read_lookup_all(line)? {
        Some(record) => Ok(record),
        None => Err(AtError::with_detail(
            ErrorCode::KeyNotFound,
            format!("remoteLookUp: remote atServer returned String value 'null' for {key}{other}"),
        )),
    }
}

/// Reads a `lookup:all` reply: `data:{"key":…,"data":…,"metaData":{…}}` → the record;
/// `data:null` → `None`; `error:<code>-<text>` → that error, with the peer's text.
pub fn read_lookup_all(line: &str) -> Result<Option<Record>, AtError> {
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
pub fn read_reply(line: &str) -> Result<Reply, AtError> {
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
