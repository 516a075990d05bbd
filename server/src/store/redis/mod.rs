//! The Redis backend: every node of a cluster on one Redis, or on one Redis Cluster
//! (`store.redis_cluster`), so any node can serve any atSign.
//!
//! # Layout
//! Every key of one atSign carries the hash tag `{@alice}`, so all of them live in one slot
//! and one Lua script may touch them together (Redis Cluster runs scripts per slot).
//! `<p>` is `store.key_prefix`.
//!
//! | key                               | type   | content                                        |
//! |-----------------------------------|--------|------------------------------------------------|
//! | `<p>atserver:atsigns`             | hash   | atSign → JSON [`AtSignInfo`]                   |
//! | `<p>atserver:labels`              | hash   | SNI label → atSign                             |
//! | `<p>atserver:{@alice}:records`    | hash   | key → record ([`super::encoding`])             |
//! | `<p>atserver:{@alice}:commits`    | zset   | score commit id, member `id:op:time_ms:key`    |
//! | `<p>atserver:{@alice}:commit_ix`  | hash   | key → its (only) commit id                     |
//! | `<p>atserver:{@alice}:next_commit`| string | the id the next commit gets (INCR)             |
//! | `<p>atserver:{@alice}:access:<k>` | zset   | from → count; `<k>` is `atsign` or `key`       |
//! | `<p>atserver:{@alice}:notifications:<log>` | zset | score stored-at ms, member id; `<log>` is `received` or `sent` |
//! | `<p>atserver:{@alice}:notification_rows:<log>` | hash | id → `expires_ms:body`         |
//! | `<p>atserver:{@alice}:lease:<name>` | string (PX) | held by one node until it expires or is dropped |
//!
//! | channel                              | payload | who subscribes                        |
//! |--------------------------------------|---------|---------------------------------------|
//! | `<p>atserver:atsigns:changed`        | the atSign whose provisioning changed | every node |
//! | `<p>atserver:{@alice}:notifications` | one message for @alice's monitors or sessions (JSON: a notification, or an ended enrollment) | the nodes holding @alice's monitors or enrolled sessions |
//!
//! Provisioning changes go to every node, so each serves what any node provisioned. A
//! notification for monitor connections goes on its recipient's own channel, in the
//! recipient's slot (its hash tag), so it reaches only the nodes that hold something of the
//! recipient; the channel names the atSign, so the payload is the message alone. Each node
//! subscribes to an atSign's channel while it has monitors of it or connections logged in with
//! one of its enrollments (which a revocation closes), all of them
//! on one pub/sub connection ([`pubsub::follow_notifications`]).
//!
//! # On a Redis Cluster
//! The same keys. Every command, script and transaction names keys of one slot: one
//! atSign's (its hash tag), or one of the two keys that span atSigns (`atsigns`, `labels`),
//! which no command combines with any other key (a new atSign's entry and its label are two
//! writes, as on one Redis). Every channel is sharded (`SPUBLISH`/`SSUBSCRIBE`), living in the
//! slot of its name: one master and its replicas carry all its messages, the rest of the
//! cluster none; an atSign's notifications ride on the master of its own keys, so they spread
//! over the cluster as the atSigns do. A node resubscribes when its subscription's connection
//! drops or a channel's slot changes master ([`pubsub`]).
//!
//! None of these names can be an atSign (they hold `:`), so the directory's registrations
//! (`alice` → `host:port`) may share the Redis.
//!
//! # Writes
//! [`Store::modify`](super::Store::modify) is a read-modify-write whose decision is Rust code,
//! so it runs optimistically: take the record as last seen, decide, then one Lua script checks
//! that the record is still that and, only then, writes it, allocates the commit id (`INCR`),
//! replaces the key's commit entry and index, all atomically. A concurrent writer (on this
//! node or another) makes the check fail; the script hands back what the key holds and the
//! change is decided again on that. Commit ids therefore increase strictly per atSign across
//! every node. "As last seen" is this node's memory of the key ([`Known`]), a cache of Redis
//! and never the source of truth: a write of a key this node has seen costs one round trip,
//! of one it has not, two (a read first); a read is always one (`HGET`).
//!
//! # Durability
//! An acknowledged write is in Redis's memory. It survives a Redis crash only as far as Redis
//! persists: `appendonly yes` + `appendfsync always` loses nothing; `everysec` (Redis's default
//! with AOF) may lose the last second; RDB snapshots alone lose what came after the snapshot.
//!
//! # Files
//! This file: the connection and the cache of what this node last saw. [`names`]: every key
//! and channel name; [`scripts`]: the Lua scripts; [`pubsub`]: publishing and subscriptions
//! that renew themselves; one file per concern of the store: [`provisioning`], [`records`],
//! [`notification_logs`], [`leases`], [`backend`].

mod backend;
mod leases;
mod names;
mod notification_logs;
mod provisioning;
mod pubsub;
mod records;
mod scripts;

use std::collections::HashMap;

use at_common::metadata::{now_ms, EpochMillis};
use at_common::redis_client::{RedisClient, RedisConnection, WaitReplicas, Writes};
use at_common::AtSign;
use redis::AsyncCommands;

use super::encoding::{decode_record, encode_record};
use super::{
    is_committed, AccessKind, AtSignDump, AtSignInfo, AtSignsEvent, Backend, Change, CommitEntry,
    CommitOp, Leases, Mutation, NotificationLog, NotificationLogs, NotificationRow, Provisioning,
    Record, Records, StoreError, Written,
};
use pubsub::subscribe;
use scripts::{DROP_COMMITS, MODIFY, SET_INFO};

/// How often a read-modify-write is decided again when other writers keep changing the key.
const MAX_ATTEMPTS: usize = 64;

/// Longest wait for a connection to Redis, and for the answer to one command.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Commit entries handled per round trip by compaction and trimming.
const DROP_BATCH: usize = 1000;

/// The store in Redis.
pub struct RedisStore {
    client: RedisClient,
    conn: RedisConnection,
    /// Where acknowledged writes go, and what they wait for ([`RedisStore::write`]).
    writes: Writes,
    known: Known,
    prefix: String,
    modify: redis::Script,
    drop_commits: redis::Script,
    set_info: redis::Script,
}

/// The last record bytes this node saw per key (`None`: no record), so that a write can go
/// straight to the script, one round trip, instead of reading first. Only ever a guess: the
/// script compares it with what Redis holds and, if another node changed the key, hands back
/// the real bytes. Bounded: past [`KNOWN_MAX`] keys an arbitrary one is forgotten.
#[derive(Default)]
struct Known(std::sync::Mutex<KnownMap>);

/// (atSign, key) → the record's bytes as last seen (`None`: no record).
type KnownMap = HashMap<(AtSign, String), Option<Vec<u8>>>;

/// Keys [`Known`] remembers at most (hot keys stay; a miss only costs a read).
const KNOWN_MAX: usize = 65_536;

impl Known {
    fn map(&self) -> std::sync::MutexGuard<'_, KnownMap> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, atsign: &AtSign, key: &str) -> Option<Option<Vec<u8>>> {
        self.map().get(&(atsign.clone(), key.to_string())).cloned()
    }

    fn set(&self, atsign: &AtSign, key: &str, bytes: Option<Vec<u8>>) {
        let mut map = self.map();
        if map.len() >= KNOWN_MAX {
            if let Some(evicted) = map.keys().next().cloned() {
                map.remove(&evicted);
            }
        }
        map.insert((atsign.clone(), key.to_string()), bytes);
    }

    fn forget(&self, atsign: &AtSign, key: &str) {
        self.map().remove(&(atsign.clone(), key.to_string()));
    }

    fn forget_atsign(&self, atsign: &AtSign) {
        self.map().retain(|(owner, _), _| owner != atsign);
    }
}

impl RedisStore {
    /// Connects to `url` (without TLS files: see [`RedisStore::connect_client`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Self::connect_client(RedisClient::Single(redis::Client::open(url)?), prefix, None).await
    }

    /// Connects with `client` (`StoreConfig::redis_client`, which carries the TLS settings);
    /// fails now rather than at the first command if Redis is unreachable. The connection is
    /// multiplexed and re-established by itself after Redis restarts. With `wait`, every
    /// acknowledged write waits for that many replicas ([`RedisStore::write`]).
    pub async fn connect_client(
        client: RedisClient,
        prefix: &str,
        wait: Option<WaitReplicas>,
    ) -> Result<RedisStore, StoreError> {
        // Bounded everywhere: a Redis that is down or silent costs a client AT0002, not a hang.
        let single = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Few, quick reconnection attempts: while Redis is down a command fails within
            // about a second (AT0002) instead of waiting out the outage; the next command
            // tries again.
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_millis(500));
        let cluster = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let mut conn = client.connect(single.clone(), cluster.clone()).await?;
        // A Redis that wants a password we lack answers NOAUTH only to a command: find out now.
        let () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map(|_: String| ())?;
        let writes = client.writes(&conn, wait, single, cluster).await?;
        Ok(RedisStore {
            client,
            conn,
            writes,
            known: Known::default(),
            prefix: prefix.to_string(),
            modify: redis::Script::new(MODIFY),
            drop_commits: redis::Script::new(DROP_COMMITS),
            set_info: redis::Script::new(SET_INFO),
        })
    }

    /// Runs `write` as an acknowledged write: on [`RedisStore::writes`], waiting for
    /// replicas if `store.redis_wait_replicas` asks (else an error, AT0002 to the client);
    /// each command's reply.
    async fn write(&self, write: &redis::Pipeline) -> Result<Vec<redis::Value>, StoreError> {
        Ok(self.writes.write(write).await?)
    }

    /// [`RedisStore::write`] of one script's `invocation`, loading the script where Redis
    /// does not know it yet (a new or a promoted master, or one restarted); its reply.
    async fn write_script(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<redis::Value, StoreError> {
        let mut pipe = redis::pipe();
        pipe.invoke_script(invocation);
        let replies = match self.write(&pipe).await {
            Err(StoreError::Redis(error))
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let _: String = invocation.load_async(&mut self.writes.connection()).await?;
                self.write(&pipe).await?
            }
            other => other?,
        };
        replies
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("a script with no reply".into()))
    }

    /// Adds `row` to a transaction: its place in the order and its content, replacing its id's.
    fn add_notification(
        &self,
        pipe: &mut redis::Pipeline,
        atsign: &AtSign,
        log: NotificationLog,
        row: &NotificationRow,
    ) {
        let (order, rows) = self.notification_keys(atsign, log);
        let mut value = format!("{}:", row.expires_ms).into_bytes();
        value.extend_from_slice(&row.body);
        pipe.zadd(order, &row.id, row.at_ms).ignore();
        pipe.hset(rows, &row.id, value).ignore();
    }

    /// Drops the commit entries `entries` (oldest first) of `atsign`; returns how many were there.
    async fn drop_entries(
        &self,
        atsign: &AtSign,
        entries: &[CommitEntry],
    ) -> Result<usize, StoreError> {
        let keys = self.keys(atsign);
        let mut dropped = 0;
        for chunk in entries.chunks(DROP_BATCH) {
            let mut invocation = self.drop_commits.key(&keys.commits);
            invocation.key(&keys.commit_ix);
            for entry in chunk {
                invocation.arg(entry.commit_id).arg(&entry.key);
            }
            let n: usize = invocation.invoke_async(&mut self.conn.clone()).await?;
            dropped += n;
        }
        Ok(dropped)
    }

    /// Commit entries with scores in `[min, max]` (Redis score syntax), oldest first, at most `limit`.
    async fn entries(
        &self,
        atsign: &AtSign,
        min: &str,
        max: &str,
        limit: usize,
    ) -> Result<Vec<CommitEntry>, StoreError> {
        let count = i64::try_from(limit).unwrap_or(-1);
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys(atsign).commits)
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        members.iter().map(|m| decode_entry(m)).collect()
    }
}

/// `id:op:time_ms:key` (the key may hold `:`; it is last).
fn decode_entry(member: &str) -> Result<CommitEntry, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("commit entry {member:?}"));
    let mut parts = member.splitn(4, ':');
    let mut next = || parts.next().ok_or_else(corrupt);
    let (id, op, time, key) = (next()?, next()?, next()?, next()?);
    Ok(CommitEntry {
        commit_id: id.parse().map_err(|_| corrupt())?,
        op: op_from_code(op).ok_or_else(corrupt)?,
        op_time_ms: time.parse().map_err(|_| corrupt())?,
        key: key.to_string(),
    })
}

/// A row from its id, order score and stored `expires_ms:body`.
fn decode_notification(
    id: String,
    at_ms: f64,
    stored: &[u8],
) -> Result<NotificationRow, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("notification {id:?}"));
    let colon = stored.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
    let expires = std::str::from_utf8(&stored[..colon]).map_err(|_| corrupt())?;
    Ok(NotificationRow {
        expires_ms: expires.parse().map_err(|_| corrupt())?,
        at_ms: at_ms as EpochMillis,
        body: stored[colon + 1..].to_vec(),
        id,
    })
}

fn op_code(op: CommitOp) -> &'static str {
    match op {
        CommitOp::Update => "u",
        CommitOp::UpdateMeta => "m",
        CommitOp::UpdateAll => "a",
        CommitOp::Delete => "d",
    }
}

fn op_from_code(code: &str) -> Option<CommitOp> {
    Some(match code {
        "u" => CommitOp::Update,
        "m" => CommitOp::UpdateMeta,
        "a" => CommitOp::UpdateAll,
        "d" => CommitOp::Delete,
        _ => return None,
    })
}

fn parse_atsign(name: &str) -> Result<AtSign, StoreError> {
    AtSign::parse(name).map_err(|e| StoreError::Corrupt(format!("atSign {name:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, Store};
    use at_tests::redis::RedisServer;
    use at_tests::redis_cluster::RedisCluster;

    conformance::cases!({
        let redis = RedisServer::start();
        let store = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        (redis, store)
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_is_held_by_one_node_until_dropped_or_expired() {
        let redis = RedisServer::start();
        let one = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let two = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let alice = AtSign::parse("@alice").unwrap();
        let long = std::time::Duration::from_secs(30);
        assert!(one.take_lease(&alice, "delivery:n-1", long).await.unwrap());
        assert!(!two.take_lease(&alice, "delivery:n-1", long).await.unwrap());
        assert!(
            two.take_lease(&alice, "delivery:n-2", long).await.unwrap(),
            "another name"
        );
        one.drop_lease(&alice, "delivery:n-1").await.unwrap();
        let short = std::time::Duration::from_millis(200);
        assert!(two.take_lease(&alice, "delivery:n-1", short).await.unwrap());
        assert!(!one.take_lease(&alice, "delivery:n-1", long).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(
            one.take_lease(&alice, "delivery:n-1", long).await.unwrap(),
            "expired"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_redis_share_data_and_one_commit_sequence() {
        // Two nodes: two connections, the same Redis.
        let redis = RedisServer::start();
        let a = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let b = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let alice = conformance::sign("alice");
        let record = conformance::record("v", 0);
        let tasks: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(n, store)| {
                let (alice, record) = (alice.clone(), record.clone());
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..50 {
                        // Both nodes also write one shared key: their RMWs contend.
                        for key in [format!("n{n}k{i}@alice"), "shared@alice".to_string()] {
                            let id = store.put(&alice, &key, &record, CommitOp::Update).await;
                            ids.push(id.unwrap().unwrap());
                        }
                    }
                    ids
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            let ids = task.await.unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing per node");
            all.extend(ids);
        }
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<u64>>(), "no id given twice");
        // What one node wrote, the other reads at once.
        assert_eq!(b.get(&alice, "n0k49@alice").await.unwrap(), Some(record));
        assert_eq!(a.keys(&alice, "").await.unwrap().len(), 101);
        // One entry per key: the shared key's 99 older entries are gone.
        assert_eq!(
            b.commits_since(&alice, None, 1000).await.unwrap().len(),
            101
        );
        assert_eq!(a.last_commit_id(&alice).await.unwrap(), Some(199));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_guess_never_decides_a_write() {
        // Node a has seen `x`; node b then deletes it behind a's back.
        let redis = RedisServer::start();
        let a = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let b = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let alice = conformance::sign("alice");
        let record = conformance::record("1", 0);
        for key in ["x@alice", "y@alice"] {
            a.put(&alice, key, &record, CommitOp::Update).await.unwrap();
            b.remove(&alice, key).await.unwrap();
        }
        // "Only if absent": on a's stale guess it would be a Keep, or a refusal.
        let only_if_absent = |refuse: bool| -> Change {
            let record = record.clone();
            Box::new(move |current| match current {
                Some(_) if refuse => Err(at_common::error::AtError::new(
                    at_common::error::ErrorCode::InvalidKey,
                )),
                Some(_) => Ok(Mutation::Keep),
                None => Ok(Mutation::put(record.clone(), CommitOp::Update)),
            })
        };
        let kept = a
            .modify(&alice, "x@alice", only_if_absent(false))
            .await
            .unwrap();
        assert!(
            kept.changed,
            "decided on what Redis holds, not on the guess"
        );
        let refused = a
            .modify(&alice, "y@alice", only_if_absent(true))
            .await
            .unwrap();
        assert!(refused.changed);
        assert_eq!(
            b.get(&alice, "x@alice").await.unwrap(),
            Some(record.clone())
        );
        // And on what Redis holds, the same change is a Keep.
        let again = b
            .modify(&alice, "x@alice", only_if_absent(false))
            .await
            .unwrap();
        assert!(!again.changed);
    }

    /// `PUBSUB NUMSUB channel` on the Redis at `url`: this Redis's subscribers of it.
    fn subscribers_on(url: &str, channel: &str) -> usize {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut conn)
            .unwrap();
        count
    }

    /// `PUBSUB SHARDNUMSUB channel` on the one cluster node at `url`.
    fn subscribers_on_node(url: &str, channel: &str) -> usize {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query(&mut conn)
            .unwrap();
        count
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn published_notifications_reach_the_nodes_on_one_redis_that_follow_their_atsign() {
        let redis = RedisServer::start();
        let a = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let b = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let url = redis.url();
        notifications_reach_the_nodes_that_follow(&a, &b, |channel| subscribers_on(&url, channel))
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_one_redis_a_notification_published_once_following_is_ready_arrives_every_time() {
        let redis = RedisServer::start();
        let a = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let b = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        ready_means_heard(&a, &b).await;
    }

    /// How long a test waits for what must come.
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
    /// How long a test listens for what must not come.
    const QUIET: std::time::Duration = std::time::Duration::from_millis(300);

    fn channel_of(atsign: &AtSign) -> String {
        names::notification_channel("t:", atsign)
    }

    /// The next message on `feed` within `wait`; panics on a dropped one.
    async fn next_message(
        feed: &mut crate::store::feed::Feed,
        wait: std::time::Duration,
    ) -> Option<(AtSign, Vec<u8>)> {
        use crate::store::feed::Heard;
        match tokio::time::timeout(wait, feed.recv()).await {
            Ok(Some(Heard::Message(atsign, payload))) => Some((atsign, payload)),
            Ok(Some(Heard::Missed(atsign))) => panic!("dropped a message of {atsign}"),
            Ok(None) => panic!("the feed ended"),
            Err(_) => None,
        }
    }

    /// Nodes hear what is published for the atSigns they follow, and Redis sends them nothing
    /// else: `subscribers` (of a channel, as Redis counts them) shows each node subscribed to
    /// exactly the channels of the atSigns it follows, and none once it unfollows.
    async fn notifications_reach_the_nodes_that_follow(
        a: &Store,
        b: &Store,
        subscribers: impl Fn(&str) -> usize,
    ) {
        use crate::store::feed::NotificationWatch;
        let NotificationWatch {
            feed: mut on_a,
            follows: follows_a,
        } = a.watch_notifications().expect("Redis is shared");
        let NotificationWatch {
            feed: mut on_b,
            follows: follows_b,
        } = b.watch_notifications().expect("Redis is shared");
        let (bob, carol) = (conformance::sign("bob"), conformance::sign("carol"));
        follows_a.follow(&bob);
        follows_b.follow(&bob);
        assert!(follows_a.ready(&bob, WITHIN).await);
        assert!(follows_b.ready(&bob, WITHIN).await);
        assert_eq!(subscribers(&channel_of(&bob)), 2);
        assert_eq!(subscribers(&channel_of(&carol)), 0, "nobody follows @carol");
        // Ready: heard from the first one, no retry. @carol's goes nowhere.
        assert!(a
            .publish_notification(&carol, b"{\"id\":\"c\"}")
            .await
            .unwrap());
        assert!(a
            .publish_notification(&bob, b"{\"id\":\"1\"}")
            .await
            .unwrap());
        let one = Some((bob.clone(), b"{\"id\":\"1\"}".to_vec()));
        assert_eq!(next_message(&mut on_b, WITHIN).await, one);
        // The publishing node hears its own, too (it may hold the recipient's monitors).
        assert_eq!(next_message(&mut on_a, WITHIN).await, one);
        assert_eq!(next_message(&mut on_b, QUIET).await, None);
        // `b` stops following @bob: Redis stops sending it @bob's.
        follows_b.unfollow(&bob);
        let deadline = std::time::Instant::now() + WITHIN;
        while subscribers(&channel_of(&bob)) != 1 {
            assert!(std::time::Instant::now() < deadline, "b never unsubscribed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(a
            .publish_notification(&bob, b"{\"id\":\"2\"}")
            .await
            .unwrap());
        assert_eq!(
            next_message(&mut on_a, WITHIN).await,
            Some((bob.clone(), b"{\"id\":\"2\"}".to_vec()))
        );
        assert_eq!(next_message(&mut on_b, QUIET).await, None);
        follows_a.unfollow(&bob);
        let deadline = std::time::Instant::now() + WITHIN;
        while subscribers(&channel_of(&bob)) != 0 {
            assert!(std::time::Instant::now() < deadline, "a never unsubscribed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// What a monitor's start relies on: once `ready` says a node follows an atSign, the first
    /// notification published for it (by another node, at once) arrives, every time. A new
    /// atSign each round, so each round waits for a new subscription.
    async fn ready_means_heard(a: &Store, b: &Store) {
        let watch = b.watch_notifications().expect("Redis is shared");
        let (mut on_b, follows) = (watch.feed, watch.follows);
        for n in 0..50 {
            let who = conformance::sign(&format!("round{n}"));
            follows.follow(&who);
            assert!(follows.ready(&who, WITHIN).await, "round {n}: not ready");
            let body = format!("{{\"id\":\"{n}\"}}").into_bytes();
            assert!(a.publish_notification(&who, &body).await.unwrap());
            assert_eq!(
                next_message(&mut on_b, WITHIN).await,
                Some((who.clone(), body)),
                "round {n}"
            );
            // Every other one stays followed: the connection carries several at once.
            if n % 2 == 0 {
                follows.unfollow(&who);
            }
        }
    }

    /// What one node provisions, another hears of (after the resync its subscription starts
    /// with), and serves.
    async fn provisioning_changes_reach_every_node(a: &Store, b: &Store) {
        let mut on_b = b.watch_atsigns().expect("Redis is shared");
        let wait = std::time::Duration::from_secs(10);
        let first = tokio::time::timeout(wait, on_b.recv())
            .await
            .expect("subscribed");
        assert!(matches!(first, Some(AtSignsEvent::Resync)), "{first:?}");
        let carol = conformance::sign("carol");
        a.create_atsign(&carol, &conformance::info("carol"))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline.into(), on_b.recv())
                .await
                .expect("the change arrives");
            if matches!(&event, Some(AtSignsEvent::Changed(atsign)) if *atsign == carol) {
                break;
            }
        }
        assert_eq!(b.list_atsigns().await.unwrap(), vec![carol.clone()]);
        assert_eq!(b.atsign_by_label("carol").await.unwrap(), Some(carol));
    }

    /// With `store.redis_wait_replicas`, a write is acknowledged once a replica holds it:
    /// while the replica of its master is stopped it fails within the wait's timeout (the
    /// master keeps it), reads answer meanwhile, and once the replica is back writes are
    /// acknowledged again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waiting_for_a_stopped_replica_fails_within_its_timeout_and_reads_go_on() {
        use std::time::{Duration, Instant};
        let cluster = RedisCluster::start();
        let client = at_common::config::StoreConfig {
            backend: at_common::config::Backend::Redis,
            redis_cluster: cluster
                .urls()
                .into_iter()
                .map(at_common::config::Secret::new)
                .collect(),
            ..Default::default()
        }
        .redis_client()
        .unwrap();
        // Long enough that a loaded machine's replica answers the writes that should pass.
        let timeout = Duration::from_millis(2000);
        let wait = WaitReplicas {
            replicas: 1,
            timeout,
        };
        let store = Store::new(
            RedisStore::connect_client(client, "w:", Some(wait))
                .await
                .unwrap(),
        );
        let alice = conformance::sign("alice");
        let record = conformance::record("1", 0);
        let put = |key: &'static str| {
            let (store, alice, record) = (store.clone(), alice.clone(), record.clone());
            async move { store.put(&alice, key, &record, CommitOp::Update).await }
        };
        put("before@alice").await.expect("a replica holds it");

        let replica = cluster.replicas_of(cluster.master_of("{@alice}"))[0];
        cluster.pause(replica);
        let started = Instant::now();
        let waiting = tokio::spawn(put("during@alice"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let read = store.get(&alice, "before@alice").await.unwrap();
        assert_eq!(read, Some(record.clone()));
        assert!(started.elapsed() < timeout, "the read waited for the write");
        let refused = waiting.await.unwrap();
        let took = started.elapsed();
        assert!(refused.is_err(), "acknowledged without a replica");
        assert!(
            (timeout..timeout + Duration::from_secs(3)).contains(&took),
            "failed after {took:?}"
        );
        cluster.resume(replica);
        put("after@alice").await.expect("the replica is back");
    }

    /// A store on `cluster` whose keys all start with `prefix`.
    async fn on_cluster(cluster: &RedisCluster, prefix: &str) -> Store {
        use at_common::config::{Backend as BackendKind, Secret, StoreConfig};
        let config = StoreConfig {
            backend: BackendKind::Redis,
            redis_cluster: cluster.urls().into_iter().map(Secret::new).collect(),
            ..StoreConfig::default()
        };
        let client = config.redis_client().unwrap();
        Store::new(
            RedisStore::connect_client(client, prefix, None)
                .await
                .unwrap(),
        )
    }

    // The suite on a real Redis Cluster (three masters, three replicas), started once: a
    // case's keys spread over every master, so a multi-slot command would fail here.
    conformance::cases!(in_one_test a_redis_cluster_passes_the_conformance_suite,
        cluster = RedisCluster::start(),
        |case| on_cluster(&cluster, &format!("{case}:")).await);

    /// What spans atSigns on a cluster: sharded pub/sub between two nodes (notifications, each
    /// atSign's in its own slot and only to the nodes that follow it, and provisioning changes),
    /// the registry and label index, leases, and the size of the data.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_on_a_redis_cluster_hear_each_other_and_share_atsigns() {
        let cluster = RedisCluster::start();
        let a = on_cluster(&cluster, "t:").await;
        let b = on_cluster(&cluster, "t:").await;
        notifications_reach_the_nodes_that_follow(&a, &b, |channel| {
            cluster.shard_subscribers(channel)
        })
        .await;
        ready_means_heard(&a, &b).await;
        provisioning_changes_reach_every_node(&a, &b).await;
        let alice = conformance::sign("alice");
        let long = std::time::Duration::from_secs(30);
        assert!(a.take_lease(&alice, "delivery:n-1", long).await.unwrap());
        assert!(!b.take_lease(&alice, "delivery:n-1", long).await.unwrap());
        assert!(
            a.storage_size().await.unwrap() > 0,
            "summed over the masters"
        );
    }

    /// Waits (bounded) until a notification `a` publishes for `to` reaches `on_b`, publishing
    /// again while it does not: a subscription being made again misses what is sent meanwhile.
    async fn heard(a: &Store, on_b: &mut crate::store::feed::Feed, to: &AtSign, id: &str) {
        let body = format!("{{\"id\":\"{id}\"}}").into_bytes();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            a.publish_notification(to, &body).await.unwrap();
            let wait = std::time::Duration::from_millis(200);
            while let Some(got) = next_message(on_b, wait).await {
                if got == (to.clone(), body.clone()) {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} for {to} never arrived"
            );
        }
    }

    /// Atsigns whose channels spread over the slots of every master (eight of them).
    fn spread() -> Vec<AtSign> {
        (0..8)
            .map(|n| conformance::sign(&format!("spread{n}")))
            .collect()
    }

    /// A node keeps hearing the other, on every channel it follows, when one channel's slot
    /// moves to another master (Redis ends the sharded subscription there) and when its
    /// subscription's connections are cut.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_on_a_redis_cluster_resubscribes_when_the_channels_slot_moves_or_its_connection_drops(
    ) {
        let cluster = RedisCluster::start();
        let a = on_cluster(&cluster, "t:").await;
        let b = on_cluster(&cluster, "t:").await;
        let watch = b.watch_notifications().expect("Redis is shared");
        let (mut on_b, follows) = (watch.feed, watch.follows);
        let bob = conformance::sign("bob");
        let all: Vec<AtSign> = std::iter::once(bob.clone()).chain(spread()).collect();
        for atsign in &all {
            follows.follow(atsign);
        }
        for atsign in &all {
            assert!(follows.ready(atsign, WITHIN).await, "{atsign}");
            heard(&a, &mut on_b, atsign, "before").await;
        }
        cluster.move_slot_of(&channel_of(&bob));
        for atsign in &all {
            heard(&a, &mut on_b, atsign, "after the slot moved").await;
        }
        cluster.move_slot_of(&channel_of(&bob));
        heard(&a, &mut on_b, &bob, "after it moved again").await;
        assert!(follows.ready(&bob, WITHIN).await, "confirmed again");
        // One master cuts its subscribers: the node connects again, and the connections it
        // gave up on (to the other masters too) close; no channel has two subscriptions.
        let bobs_master = cluster
            .urls()
            .into_iter()
            .find(|url| subscribers_on_node(url, &channel_of(&bob)) == 1)
            .expect("a node serves @bob's subscription");
        let mut conn = redis::Client::open(bobs_master.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut conn)
            .unwrap();
        assert_eq!(killed, 1);
        for atsign in &all {
            heard(&a, &mut on_b, atsign, "after one master cut it").await;
        }
        for atsign in &all {
            let deadline = std::time::Instant::now() + WITHIN;
            while cluster.shard_subscribers(&channel_of(atsign)) != 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{atsign}: a stale subscription"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        cluster.kill_subscribers();
        for atsign in &all {
            heard(&a, &mut on_b, atsign, "after the connection was cut").await;
        }
        // Still one subscription per channel: none made twice, none left behind.
        for atsign in &all {
            assert_eq!(
                cluster.shard_subscribers(&channel_of(atsign)),
                1,
                "{atsign}"
            );
        }
    }

    /// On one Redis: the node's pub/sub connection cut, every followed channel is subscribed
    /// again on the new one (and confirmed again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_on_one_redis_resubscribes_every_followed_channel_when_its_connection_drops() {
        let redis = RedisServer::start();
        let a = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let b = Store::new(RedisStore::connect(&redis.url(), "t:").await.unwrap());
        let watch = b.watch_notifications().expect("Redis is shared");
        let (mut on_b, follows) = (watch.feed, watch.follows);
        let all = spread();
        for atsign in &all {
            follows.follow(atsign);
        }
        for atsign in &all {
            assert!(follows.ready(atsign, WITHIN).await, "{atsign}");
        }
        let mut conn = raw_connection(&redis).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(killed, 1, "one pub/sub connection for every channel");
        for atsign in &all {
            heard(&a, &mut on_b, atsign, "after the connection was cut").await;
            assert!(follows.ready(atsign, WITHIN).await, "{atsign}");
            assert_eq!(subscribers_on(&redis.url(), &channel_of(atsign)), 1);
        }
    }

    /// A connection of the test's own to `redis`, to read and write keys behind the store.
    async fn raw_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// A Redis written before MessagePack holds records as JSON: they are served (also by a
    /// node that never saw them), and a write of one stores it in the new form.
    #[tokio::test]
    async fn records_stored_as_json_are_served_and_rewritten_in_messagepack() {
        use crate::store::encoding::{encode_record_json, MSGPACK_MARKER};
        let redis = RedisServer::start();
        let store = Store::new(RedisStore::connect(&redis.url(), "p:").await.unwrap());
        let alice = conformance::sign("alice");
        store
            .create_atsign(&alice, &conformance::info("alice"))
            .await
            .unwrap();
        let mut conn = raw_connection(&redis).await;
        let records = "p:atserver:{@alice}:records";
        let legacy = conformance::legacy_records(&alice);
        for (key, record) in &legacy {
            let () = conn
                .hset(records, key, encode_record_json(record).unwrap())
                .await
                .unwrap();
        }
        conformance::serves_legacy_records(&store, &alice).await;
        let stored: Vec<(String, Vec<u8>)> = conn.hgetall(records).await.unwrap();
        let stored: std::collections::HashMap<String, Vec<u8>> = stored.into_iter().collect();
        assert_eq!(stored[&legacy[0].0][0], MSGPACK_MARKER);
        for (key, _) in &legacy[1..] {
            assert_eq!(stored[key][0], b'{', "{key} left as it was");
        }
        let other = Store::new(RedisStore::connect(&redis.url(), "p:").await.unwrap());
        for (key, record) in &legacy[1..] {
            assert_eq!(other.get(&alice, key).await.unwrap().as_ref(), Some(record));
        }
        assert_eq!(
            other.get(&alice, &legacy[0].0).await.unwrap(),
            store.get(&alice, &legacy[0].0).await.unwrap()
        );
    }

    #[tokio::test]
    async fn keys_carry_the_atsign_hash_tag_and_the_prefix() {
        let redis = RedisServer::start();
        let backend = RedisStore::connect(&redis.url(), "p:").await.unwrap();
        let alice = conformance::sign("alice");
        let store = Store::new(backend);
        store
            .create_atsign(&alice, &conformance::info("alice"))
            .await
            .unwrap();
        store
            .put(
                &alice,
                "phone@alice",
                &conformance::record("1", 0),
                CommitOp::Update,
            )
            .await
            .unwrap();
        let mut conn = raw_connection(&redis).await;
        let mut names: Vec<String> = conn.keys("*").await.unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                "p:atserver:atsigns",
                "p:atserver:labels",
                "p:atserver:{@alice}:commit_ix",
                "p:atserver:{@alice}:commits",
                "p:atserver:{@alice}:next_commit",
                "p:atserver:{@alice}:records",
            ]
        );
        let entries: Vec<String> = conn
            .zrange("p:atserver:{@alice}:commits", 0, -1)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].starts_with("0:u:"), "{entries:?}");
        assert!(entries[0].ends_with(":phone@alice"), "{entries:?}");
        assert!(store.remove_atsign(&alice).await.unwrap());
        let left: Vec<String> = conn.keys("*").await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}
