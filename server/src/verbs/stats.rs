//! `stats` (docs/protocol.md#stats): counters of this atSign and its server, for the owner.
//!
//! Served ids: 1 activeInboundConnections, 2 activeOutboundConnections (both from the caller's
//! [`StatsContext`]), 3 lastCommitID (`stats:3:<regex>`: of the keys matching the regex),
//! 4 secondaryStorageSize, 5 topAtSigns, 6 topKeys. Other ids (7–15) are not served yet and
//! are left out of the reply, as are unknown ids.
//!
//! # Format
//! `data: [` + objects joined by `, ` + `]` (note the space after `data:`), e.g.
//! `data: [{"id":"3","name":"lastCommitID","value":"42"}]`. Every value is a string;
//! lastCommitID is `-1` before the first commit; topAtSigns/topKeys hold a JSON object
//! (`{"@bob":3}`, largest first) as a string.

use at_common::error::AtError;
use at_common::reply::Reply;
use at_common::verb::Stats;
use at_common::AtSign;

use super::llookup::json_string;
use super::scan::compile;
use crate::store::{AccessKind, Store};

/// How many entries topAtSigns and topKeys list.
pub const TOP_COUNT: usize = 5;

/// What only the caller knows: the server's connection counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsContext {
    pub inbound: usize,
    pub outbound: usize,
}

const ALL: [u32; 6] = [1, 2, 3, 4, 5, 6];

/// `stats[:<id>[,<id>…]][:<regex>]`.
pub async fn stats(
    store: &Store,
    me: &AtSign,
    cmd: &Stats,
    context: StatsContext,
) -> Result<Reply, AtError> {
    let ids = if cmd.ids.is_empty() {
        &ALL[..]
    } else {
        &cmd.ids
    };
    let mut entries = Vec::new();
    for &id in ids {
        let (name, value) = match id {
            1 => ("activeInboundConnections", context.inbound.to_string()),
            2 => ("activeOutboundConnections", context.outbound.to_string()),
            3 => (
                "lastCommitID",
                last_commit_id(store, me, cmd.regex.as_deref()).await?,
            ),
            4 => (
                "secondaryStorageSize",
                store.storage_size().await?.to_string(),
            ),
            5 => ("topAtSigns", top(store, me, AccessKind::AtSign).await?),
            6 => ("topKeys", top(store, me, AccessKind::Key).await?),
            _ => continue,
        };
        entries.push(format!(
            "{{\"id\":\"{id}\",\"name\":\"{name}\",\"value\":{}}}",
            json_string(&value)
        ));
    }
    Ok(Reply::DataSpaced(format!("[{}]", entries.join(", "))))
}

/// The highest commit id, or with a regex the highest among matching keys; `-1` for none.
async fn last_commit_id(
    store: &Store,
    me: &AtSign,
    regex: Option<&str>,
) -> Result<String, AtError> {
    let id = match regex {
        None => store.last_commit_id(me).await?,
        Some(pattern) => {
            let regex = compile(pattern)?;
            store
                .commits_since(me, None, usize::MAX)
                .await?
                .into_iter()
                .filter(|entry| regex.is_match(&entry.key))
                .map(|entry| entry.commit_id)
                .max()
        }
    };
    Ok(id.map_or_else(|| "-1".to_string(), |id| id.to_string()))
}

/// `{"<name>":<count>,…}`, largest first.
async fn top(store: &Store, me: &AtSign, kind: AccessKind) -> Result<String, AtError> {
    let entries: Vec<String> = store
        .top_accesses(me, kind, TOP_COUNT)
        .await?
        .into_iter()
        .map(|(name, count)| format!("{}:{count}", json_string(&name)))
        .collect();
    Ok(format!("{{{}}}", entries.join(",")))
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn run(f: &Fixture, line: &str) -> String {
        let Command::Stats(cmd) = command(line) else {
            panic!("not stats")
        };
        let context = StatsContext {
            inbound: 2,
            outbound: 1,
        };
        wire(&f.me, stats(&f.store, &f.me, &cmd, context).await)
    }

    async fn put(f: &Fixture, line: &str) {
        let Command::Update(cmd) = command(line) else {
            panic!()
        };
        update(&f.store, &f.me, &cmd, NOW).await.unwrap();
    }

    #[tokio::test]
    async fn last_commit_id_is_minus_one_then_the_latest() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "stats:3").await,
            "data: [{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"-1\"}]\n@alice@"
        );
        put(&f, "update:public:a.wavi@alice 1").await;
        put(&f, "update:public:b.other@alice 1").await;
        assert_eq!(
            run(&f, "stats:3").await,
            "data: [{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"1\"}]\n@alice@"
        );
        assert_eq!(
            run(&f, "stats:3:wavi").await,
            "data: [{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"0\"}]\n@alice@"
        );
    }

    #[tokio::test]
    async fn listed_ids_come_in_the_order_asked() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "stats:2,1").await,
            "data: [{\"id\":\"2\",\"name\":\"activeOutboundConnections\",\"value\":\"1\"}, \
             {\"id\":\"1\",\"name\":\"activeInboundConnections\",\"value\":\"2\"}]\n@alice@"
        );
    }

    #[tokio::test]
    async fn top_keys_and_all_stats() {
        let f = fixture().await;
        for _ in 0..2 {
            f.store
                .record_access(&f.me, AccessKind::Key, "public:a@alice")
                .await
                .unwrap();
        }
        f.store
            .record_access(&f.me, AccessKind::Key, "public:b@alice")
            .await
            .unwrap();
        assert_eq!(
            run(&f, "stats:6").await,
            "data: [{\"id\":\"6\",\"name\":\"topKeys\",\"value\":\"{\\\"public:a@alice\\\":2,\\\"public:b@alice\\\":1}\"}]\n@alice@"
        );
        let all = run(&f, "stats").await;
        let names: Vec<&str> = all
            .split("\"name\":\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "activeInboundConnections",
                "activeOutboundConnections",
                "lastCommitID",
                "secondaryStorageSize",
                "topAtSigns",
                "topKeys"
            ]
        );
        assert!(all.starts_with("data: [{"), "{all}");
    }
}
