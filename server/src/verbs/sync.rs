//! `sync:from:<n>:limit:<m>[:<regex>]` (docs/storage.md#sync): the owner's client pulls the
//! commit log.
//!
//! Entries with a commit id greater than `n` (`-1`: all), in commit id order, at most
//! [`SYNC_PAGE_LIMIT`] per reply and about [`SYNC_BUFFER_BYTES`] (always at least one). The
//! client's `limit` is ignored, as by the reference 3.0.52. With a regex, an entry is sent when
//! its key matches or is one the reference always syncs (`shared_key…`, `public:publickey…`,
//! `public:` keys without a `.`). Entries whose key no longer exists are skipped, deletes aside.
//!
//! # Format
//! `data:[…]`, each entry
//! `{"atKey":"…","value":"…","metadata":{<all values strings>},"commitId":11,"operation":"*"}`;
//! a delete is `{"atKey":"…","value":null,"metadata":null,"commitId":12,"operation":"-"}`.
//! `data:[]` when there is nothing newer.
//!
//! # Errors
//! AT0003 for a regex that does not compile.

use at_common::error::AtError;
use at_common::reply::Reply;
use at_common::verb::Sync;
use at_common::AtSign;
use regex::Regex;

use super::llookup::json_string;
use super::scan::compile;
use crate::access::Grant;
use crate::store::{CommitEntry, CommitOp, Store};

/// Most entries in one reply (`sync.pageLimit` 25, and the commit log's default page).
pub const SYNC_PAGE_LIMIT: usize = 25;
/// Entries stop being added once the reply is this long (`sync.bufferSize`).
pub const SYNC_BUFFER_BYTES: usize = 5 * 1024 * 1024;

/// `sync:from:<n>:limit:<m>[:<regex>]`.
pub async fn sync(
    store: &Store,
    me: &AtSign,
    cmd: &Sync,
    grant: Option<&Grant>,
) -> Result<Reply, AtError> {
    let regex = cmd.regex.as_deref().map(compile).transpose()?;
    let mut after = u64::try_from(cmd.from_commit).ok();
    let mut entries: Vec<String> = Vec::new();
    let mut bytes = 0;
    'pages: loop {
        let page = store.commits_since(me, after, SYNC_PAGE_LIMIT).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.commit_id);
        for entry in &page {
            if !wanted(&entry.key, regex.as_ref())
                || grant.is_some_and(|grant| !grant.syncs(&entry.key))
            {
                continue;
            }
            let Some(json) = render(store, me, entry).await? else {
                continue;
            };
            if !entries.is_empty() && bytes + json.len() > SYNC_BUFFER_BYTES {
                break 'pages;
            }
            bytes += json.len() + 1;
            entries.push(json);
            if entries.len() == SYNC_PAGE_LIMIT {
                break 'pages;
            }
        }
    }
    Ok(Reply::Data(format!("[{}]", entries.join(","))))
}

/// Whether the regex (if any) lets `key` through; some keys always pass
/// ([`crate::reserved::always_synced`]).
fn wanted(key: &str, regex: Option<&Regex>) -> bool {
    let Some(regex) = regex else { return true };
    crate::reserved::always_synced(key) || regex.is_match(key)
}

/// One entry as JSON; `None` for an update whose key has gone since.
async fn render(
    store: &Store,
    me: &AtSign,
    entry: &CommitEntry,
) -> Result<Option<String>, AtError> {
    let (value, metadata) = if entry.op == CommitOp::Delete {
        ("null".to_string(), "null".to_string())
    } else {
        let Some(record) = store.get(me, &entry.key).await? else {
            return Ok(None);
        };
        let value = record
            .value
            .as_deref()
            .map_or_else(|| "null".to_string(), json_string);
        (value, record.metadata.to_sync_json())
    };
    Ok(Some(format!(
        "{{\"atKey\":{},\"value\":{value},\"metadata\":{metadata},\"commitId\":{},\"operation\":\"{}\"}}",
        json_string(&entry.key),
        entry.commit_id,
        entry.op.symbol()
    )))
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::{delete, update};

    async fn run(f: &Fixture, line: &str) -> String {
        let result = match command(line) {
            Command::Sync(cmd) => sync(&f.store, &f.me, &cmd, None).await,
            Command::Update(cmd) => update(&f.store, &f.me, &cmd, NOW).await,
            Command::Delete(cmd) => delete(&f.store, &f.me, &cmd).await,
            other => panic!("unexpected {other:?}"),
        };
        wire(&f.me, result)
    }

    #[tokio::test]
    async fn empty_log_syncs_as_empty_array() {
        let f = fixture().await;
        assert_eq!(run(&f, "sync:from:-1:limit:10").await, "data:[]\n@alice@");
    }

    #[tokio::test]
    async fn entries_carry_string_metadata_and_deletes_carry_nulls() {
        let f = fixture().await;
        run(&f, "update:ttl:1000:public:phone.wavi@alice 8897896765").await;
        run(&f, "update:gone@alice x").await;
        run(&f, "delete:gone@alice").await;
        let meta = "{\"createdBy\":\"@alice\",\"updatedBy\":\"@alice\",\
                    \"createdAt\":\"2024-10-24 01:35:02.123Z\",\"updatedAt\":\"2024-10-24 01:35:02.123Z\",\
                    \"expiresAt\":\"2024-10-24 01:35:03.123Z\",\"status\":\"active\",\"version\":\"0\",\"ttl\":\"1000\"}";
        assert_eq!(
            run(&f, "sync:from:-1:limit:10").await,
            format!(
                "data:[{{\"atKey\":\"public:phone.wavi@alice\",\"value\":\"8897896765\",\"metadata\":{meta},\"commitId\":0,\"operation\":\"*\"}},\
                 {{\"atKey\":\"gone@alice\",\"value\":null,\"metadata\":null,\"commitId\":2,\"operation\":\"-\"}}]\n@alice@"
            )
        );
        assert_eq!(run(&f, "sync:from:2:limit:10").await, "data:[]\n@alice@");
    }

    #[tokio::test]
    async fn pages_hold_25_entries_from_the_given_id() {
        let f = fixture().await;
        for i in 0..30 {
            run(&f, &format!("update:k{i}.app@alice v")).await;
        }
        let ids = |reply: &str| -> Vec<u64> {
            reply
                .split("\"commitId\":")
                .skip(1)
                .map(|s| s.split(',').next().unwrap().parse().unwrap())
                .collect()
        };
        let first = run(&f, "sync:from:-1:limit:100").await;
        assert_eq!(ids(&first), (0..25).collect::<Vec<_>>());
        let second = run(&f, "sync:from:24:limit:100").await;
        assert_eq!(ids(&second), (25..30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn regex_filters_but_always_syncs_reserved_keys() {
        let f = fixture().await;
        run(&f, "update:k.wavi@alice 1").await;
        run(&f, "update:k.other@alice 2").await;
        run(&f, "update:public:publickey@alice pk").await;
        run(&f, "update:shared_key.bob@alice sk").await;
        let reply = run(&f, "sync:from:-1:limit:10:wavi").await;
        let keys: Vec<&str> = reply
            .split("\"atKey\":\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "k.wavi@alice",
                "public:publickey@alice",
                "shared_key.bob@alice"
            ]
        );
    }
}
