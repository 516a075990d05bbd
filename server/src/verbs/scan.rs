//! `scan` (docs/protocol.md#scan): which of `me`'s keys a connection may list, as a JSON array.
//!
//! Three views live here: the owner's, a pol-authenticated peer's and the unauthenticated one;
//! `scan:@bob` asks @bob's server for its peer view ([`super::scan_remote`]). Only active keys
//! (born, not expired) are listed; `page` is parsed but ignored, as by the reference.
//!
//! # Format
//! `data:["k1","k2"]`, compact, in key order; `data:[]` when nothing matches. The regex is
//! unanchored and applied to the stored key (`public:` included).
//!
//! # Errors
//! AT0003 for a regex that does not compile.

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::Scan;
use at_common::AtSign;
use regex::{Regex, RegexBuilder};

use super::is_active;
use crate::access::Grant;
use crate::store::Store;

/// Compiled-size cap for client regexes (the `regex` crate matches in linear time; this bounds
/// memory).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// `scan[:showhidden:<b>][ <regex>]` on an owner connection: every key except `private:`,
/// `privatekey:`, `public:_…` and `_…`; `showhidden:true` brings back `public:__…` and `_…`.
/// `cmd.for_atsign` is the caller's to route ([`super::scan_remote`]); it is ignored here. A
/// device logged in with an enrollment sees only what [`Grant::lists`].
pub async fn scan_owner(
    store: &Store,
    me: &AtSign,
    cmd: &Scan,
    grant: Option<&Grant>,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let show_hidden = cmd.show_hidden == Some(true);
    let visible = |key: &str| {
        if key.starts_with("private:") || key.starts_with("privatekey:") {
            return false;
        }
        if grant.is_some_and(|grant| !grant.lists(key)) {
            return false;
        }
        if key.starts_with("public:_") {
            return show_hidden && key.starts_with("public:__");
        }
        show_hidden || !key.starts_with('_')
    };
    let keys = listed(store, me, cmd, now_ms, visible).await?;
    Ok(json_array(keys.iter().map(String::as_str)))
}

/// `scan[ <regex>]` without authentication: `public:` keys except `public:_…`, with the
/// `public:` prefix removed (`data:["publickey@alice","location.wavi@alice"]`).
pub async fn scan_public(
    store: &Store,
    me: &AtSign,
    cmd: &Scan,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let visible = |key: &str| key.starts_with("public:") && !key.starts_with("public:_");
    let keys = listed(store, me, cmd, now_ms, visible).await?;
    Ok(json_array(keys.iter().map(|key| &key["public:".len()..])))
}

/// `scan[ <regex>]` by @bob's server (pol): the keys `me` shared with @bob, `@bob:` removed
/// (`data:["phone@alice"]`).
pub async fn scan_peer(
    store: &Store,
    me: &AtSign,
    peer: &AtSign,
    cmd: &Scan,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let prefix = format!("{peer}:");
    let visible = |key: &str| key.starts_with(&prefix);
    let keys = listed(store, me, cmd, now_ms, visible).await?;
    Ok(json_array(keys.iter().map(|key| &key[prefix.len()..])))
}

/// `me`'s keys that are `visible`, match the regex and are active at `now`, in key order.
async fn listed(
    store: &Store,
    me: &AtSign,
    cmd: &Scan,
    now_ms: EpochMillis,
    visible: impl Fn(&str) -> bool,
) -> Result<Vec<String>, AtError> {
    let regex = cmd.regex.as_deref().map(compile).transpose()?;
    let mut out = Vec::new();
    for key in store.keys(me, "").await? {
        if !visible(&key) || regex.as_ref().is_some_and(|r| !r.is_match(&key)) {
            continue;
        }
        match store.get(me, &key).await? {
            Some(record) if is_active(&record.metadata, now_ms) => out.push(key),
            _ => {}
        }
    }
    Ok(out)
}

/// A client's regex, or AT0003.
pub(crate) fn compile(pattern: &str) -> Result<Regex, AtError> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|_| AtError::syntax(format!("Invalid regular expression: {pattern}")))
}

fn json_array<'a>(items: impl Iterator<Item = &'a str>) -> Reply {
    let items: Vec<&str> = items.collect();
    Reply::Data(serde_json::Value::from(items).to_string())
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::store::{CommitOp, Record};
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn seed(f: &Fixture) {
        for line in [
            "update:public:publickey@alice pk",
            "update:public:location.wavi@alice here",
            "update:public:_hidden@alice x",
            "update:public:__synced@alice x",
            "update:_internal@alice x",
            "update:phone.wavi@alice 1",
            "update:@bob:shared_key@alice k",
            "update:privatekey:at_pkam_publickey pkam",
            "update:ttl:10:gone@alice x",
            "update:ttb:10000:later@alice x",
        ] {
            let Command::Update(cmd) = command(line) else {
                panic!()
            };
            update(&f.store, &f.me, &cmd, NOW).await.unwrap();
        }
        let private = Record {
            value: Some("[]".into()),
            metadata: Default::default(),
        };
        f.store
            .put(
                &f.me,
                "private:blocklist@alice",
                &private,
                CommitOp::UpdateAll,
            )
            .await
            .unwrap();
    }

    async fn owner(f: &Fixture, line: &str) -> String {
        let Command::Scan(cmd) = command(line) else {
            panic!("not a scan")
        };
        wire(
            &f.me,
            scan_owner(&f.store, &f.me, &cmd, None, NOW + 100).await,
        )
    }

    async fn public(f: &Fixture, line: &str) -> String {
        let Command::Scan(cmd) = command(line) else {
            panic!("not a scan")
        };
        wire(&f.me, scan_public(&f.store, &f.me, &cmd, NOW + 100).await)
    }

    #[tokio::test]
    async fn owner_scan_hides_private_hidden_and_inactive_keys() {
        let f = fixture().await;
        seed(&f).await;
        assert_eq!(
            owner(&f, "scan").await,
            "data:[\"@bob:shared_key@alice\",\"phone.wavi@alice\",\"public:location.wavi@alice\",\"public:publickey@alice\"]\n@alice@"
        );
    }

    #[tokio::test]
    async fn showhidden_brings_back_double_underscore_and_underscore_keys() {
        let f = fixture().await;
        seed(&f).await;
        assert_eq!(
            owner(&f, "scan:showhidden:true").await,
            "data:[\"@bob:shared_key@alice\",\"_internal@alice\",\"phone.wavi@alice\",\"public:__synced@alice\",\"public:location.wavi@alice\",\"public:publickey@alice\"]\n@alice@"
        );
    }

    #[tokio::test]
    async fn regex_is_unanchored_and_bad_regex_is_at0003() {
        let f = fixture().await;
        seed(&f).await;
        assert_eq!(
            owner(&f, "scan wavi").await,
            "data:[\"phone.wavi@alice\",\"public:location.wavi@alice\"]\n@alice@"
        );
        assert_eq!(owner(&f, "scan nomatch").await, "data:[]\n@alice@");
        let bad = owner(&f, "scan (unclosed").await;
        assert!(bad.starts_with("error:AT0003-Invalid syntax : "), "{bad}");
    }

    #[tokio::test]
    async fn public_scan_lists_public_keys_without_prefix() {
        let f = fixture().await;
        seed(&f).await;
        assert_eq!(
            public(&f, "scan").await,
            "data:[\"location.wavi@alice\",\"publickey@alice\"]\n@alice@"
        );
        assert_eq!(
            public(&f, "scan publickey").await,
            "data:[\"publickey@alice\"]\n@alice@"
        );
    }
}
