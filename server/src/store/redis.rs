//! The Redis backend: every node of a cluster on one Redis, so any node can serve any atSign.
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
//! Provisioning changes are also published on the channel `<p>atserver:atsigns:changed`
//! (the atSign as payload), so every node serves what any node provisioned; notifications
//! for monitor connections on `<p>atserver:notifications` (`atSign \0 body`), so they reach
//! the recipient's monitors on every node.
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

use std::collections::HashMap;

use at_common::metadata::{now_ms, EpochMillis};
use at_common::AtSign;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::encoding::{decode_record, encode_record};
use super::{
    is_committed, AccessKind, AtSignDump, AtSignInfo, AtSignsEvent, Backend, Change, CommitEntry,
    CommitOp, Leases, Mutation, NotificationLog, NotificationLogs, NotificationRow, Provisioning,
    Records, StoreError, Written,
};

/// How often a read-modify-write is decided again when other writers keep changing the key.
const MAX_ATTEMPTS: usize = 64;

/// Checks the record (ARGV[2] = "1" and ARGV[3] the bytes read, or "0" for none), then puts
/// ARGV[5] (ARGV[4] = "put") or deletes, then with ARGV[6] = "1" adds the commit entry
/// (op ARGV[7], time ARGV[8]) replacing the key's older one. Returns {0, what it holds} when
/// the record is not what was expected, else {1} or {1, commit id}.
const MODIFY: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return {0, current} end
elseif current then
  return {0, current}
end
if ARGV[4] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[6] ~= '1' then return {1} end
local id = redis.call('INCR', KEYS[4]) - 1
local older = redis.call('HGET', KEYS[3], ARGV[1])
if older then redis.call('ZREMRANGEBYSCORE', KEYS[2], older, older) end
redis.call('HSET', KEYS[3], ARGV[1], id)
redis.call('ZADD', KEYS[2], id, id .. ':' .. ARGV[7] .. ':' .. ARGV[8] .. ':' .. ARGV[1])
return {1, id}
";

/// Drops the commit entries ARGV = id1, key1, id2, key2, …; a key's index goes with its entry
/// unless a newer write has moved it on. Returns how many entries were there.
const DROP_COMMITS: &str = r"
local dropped = 0
for i = 1, #ARGV, 2 do
  dropped = dropped + redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
  if redis.call('HGET', KEYS[2], ARGV[i + 1]) == ARGV[i] then
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  end
end
return dropped
";

/// Replaces the atSign's info only if it exists. Returns 1 if it did.
const SET_INFO: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Longest wait for a connection to Redis, and for the answer to one command.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Commit entries handled per round trip by compaction and trimming.
const DROP_BATCH: usize = 1000;

/// The store in Redis.
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
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

/// The names of one atSign's keys.
struct Keys {
    records: String,
    commits: String,
    commit_ix: String,
    next_commit: String,
}

impl RedisStore {
    /// Connects to `url` (without TLS files: see [`RedisStore::connect_client`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Self::connect_client(redis::Client::open(url)?, prefix).await
    }

    /// Connects with `client` (`StoreConfig::redis_client`, which carries the TLS settings);
    /// fails now rather than at the first command if Redis is unreachable. The connection is
    /// multiplexed and re-established by itself after Redis restarts.
    pub async fn connect_client(
        client: redis::Client,
        prefix: &str,
    ) -> Result<RedisStore, StoreError> {
        // Bounded everywhere: a Redis that is down or silent costs a client AT0002, not a hang.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Few, quick reconnection attempts: while Redis is down a command fails within
            // about a second (AT0002) instead of waiting out the outage; the next command
            // tries again.
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        // A Redis that wants a password we lack answers NOAUTH only to a command: find out now.
        let () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map(|_: String| ())?;
        Ok(RedisStore {
            client,
            conn,
            known: Known::default(),
            prefix: prefix.to_string(),
            modify: redis::Script::new(MODIFY),
            drop_commits: redis::Script::new(DROP_COMMITS),
            set_info: redis::Script::new(SET_INFO),
        })
    }

    fn atsigns_key(&self) -> String {
        format!("{}atserver:atsigns", self.prefix)
    }

    /// SNI label → atSign, kept beside the provisioning records.
    fn labels_key(&self) -> String {
        format!("{}atserver:labels", self.prefix)
    }

    fn notifications_channel(&self) -> String {
        format!("{}atserver:notifications", self.prefix)
    }

    fn changes_channel(&self) -> String {
        format!("{}atserver:atsigns:changed", self.prefix)
    }

    /// After `atsign`'s provisioning record was written: its SNI label finds it, and every
    /// node hears of the change.
    async fn index_and_announce(&self, atsign: &AtSign, label: &str) -> Result<(), StoreError> {
        let () = self
            .conn
            .clone()
            .hset(self.labels_key(), label, atsign.as_str())
            .await?;
        self.publish_change(atsign).await;
        Ok(())
    }

    /// Tells every node that `atsign`'s provisioning changed. Best effort: the change is
    /// already stored, and a node that misses this catches up when it resubscribes.
    async fn publish_change(&self, atsign: &AtSign) {
        let sent: Result<i64, _> = self
            .conn
            .clone()
            .publish(self.changes_channel(), atsign.as_str())
            .await;
        if let Err(error) = sent {
            tracing::warn!(%atsign, %error, "could not tell the other nodes of a provisioning change");
        }
    }

    fn key(&self, atsign: &AtSign, what: &str) -> String {
        format!("{}atserver:{{{}}}:{what}", self.prefix, atsign.as_str())
    }

    fn keys(&self, atsign: &AtSign) -> Keys {
        Keys {
            records: self.key(atsign, "records"),
            commits: self.key(atsign, "commits"),
            commit_ix: self.key(atsign, "commit_ix"),
            next_commit: self.key(atsign, "next_commit"),
        }
    }

    /// A notification log's order (zset: score at_ms, member id) and its rows (hash: id →
    /// `expires_ms:body`).
    fn notification_keys(&self, atsign: &AtSign, log: NotificationLog) -> (String, String) {
        (
            self.key(atsign, &format!("notifications:{}", log.name())),
            self.key(atsign, &format!("notification_rows:{}", log.name())),
        )
    }

    fn access_key(&self, atsign: &AtSign, kind: AccessKind) -> String {
        self.key(
            atsign,
            match kind {
                AccessKind::AtSign => "access:atsign",
                AccessKind::Key => "access:key",
            },
        )
    }

    /// Every key of `atsign`'s data.
    fn all_keys(&self, atsign: &AtSign) -> Vec<String> {
        let keys = self.keys(atsign);
        let mut all = vec![
            keys.records,
            keys.commits,
            keys.commit_ix,
            keys.next_commit,
            self.access_key(atsign, AccessKind::AtSign),
            self.access_key(atsign, AccessKind::Key),
        ];
        for log in NotificationLog::BOTH {
            let (order, rows) = self.notification_keys(atsign, log);
            all.extend([order, rows]);
        }
        all
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

#[async_trait::async_trait]
impl Provisioning for RedisStore {
    async fn create_atsign(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        let created: bool = self
            .conn
            .clone()
            .hset_nx(
                self.atsigns_key(),
                atsign.as_str(),
                serde_json::to_string(info)?,
            )
            .await?;
        if !created {
            return Err(StoreError::AtSignExists(atsign.clone()));
        }
        self.index_and_announce(atsign, &info.sni_label).await
    }

    async fn get_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignInfo>, StoreError> {
        let found: Option<String> = self
            .conn
            .clone()
            .hget(self.atsigns_key(), atsign.as_str())
            .await?;
        Ok(match found {
            Some(json) => Some(serde_json::from_str(&json)?),
            None => None,
        })
    }

    async fn set_atsign_info(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        let replaced: i64 = self
            .set_info
            .key(self.atsigns_key())
            .arg(atsign.as_str())
            .arg(serde_json::to_string(info)?)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if replaced != 1 {
            return Err(StoreError::NoSuchAtSign(atsign.clone()));
        }
        self.index_and_announce(atsign, &info.sni_label).await
    }

    async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let existing: Option<String> = conn.hget(self.atsigns_key(), atsign.as_str()).await?;
        let existed = existing.is_some();
        if let Some(info) = existing.and_then(|json| serde_json::from_str::<AtSignInfo>(&json).ok())
        {
            let () = conn.hdel(self.labels_key(), &info.sni_label).await?;
        }
        // Data first, the entry last: if this stops half-way the atSign is still listed, and
        // removing it again finishes the job.
        let () = conn.del(self.all_keys(atsign)).await?;
        self.known.forget_atsign(atsign);
        let () = conn.hdel(self.atsigns_key(), atsign.as_str()).await?;
        self.publish_change(atsign).await;
        Ok(existed)
    }

    async fn list_atsigns(&self) -> Result<Vec<AtSign>, StoreError> {
        let names: Vec<String> = self.conn.clone().hkeys(self.atsigns_key()).await?;
        let mut atsigns = names
            .iter()
            .map(|name| parse_atsign(name))
            .collect::<Result<Vec<_>, _>>()?;
        atsigns.sort();
        Ok(atsigns)
    }

    async fn import_atsign(&self, dump: &AtSignDump) -> Result<(), StoreError> {
        let atsign = &dump.atsign;
        let mut conn = self.conn.clone();
        if conn.hexists(self.atsigns_key(), atsign.as_str()).await? {
            return Err(StoreError::AtSignExists(atsign.clone()));
        }
        // The data in one transaction, the provisioning entry last: an import cut short
        // leaves no half-provisioned atSign (and its leftovers are replaced by the next try).
        let keys = self.keys(atsign);
        let mut data = redis::pipe();
        data.atomic().del(self.all_keys(atsign)).ignore();
        for (key, record) in &dump.records {
            data.hset(&keys.records, key, encode_record(record)?)
                .ignore();
        }
        for entry in &dump.commits {
            let member = format!(
                "{}:{}:{}:{}",
                entry.commit_id,
                op_code(entry.op),
                entry.op_time_ms,
                entry.key
            );
            data.zadd(&keys.commits, member, entry.commit_id).ignore();
            data.hset(&keys.commit_ix, &entry.key, entry.commit_id)
                .ignore();
        }
        if dump.next_commit > 0 {
            data.set(&keys.next_commit, dump.next_commit).ignore();
        }
        for (kind, from, count) in &dump.access {
            data.zadd(self.access_key(atsign, *kind), from, *count)
                .ignore();
        }
        for (log, row) in &dump.notifications {
            self.add_notification(&mut data, atsign, *log, row);
        }
        let () = data.query_async(&mut conn).await?;
        self.known.forget_atsign(atsign);
        let info = serde_json::to_string(&dump.info)?;
        let created: bool = conn
            .hset_nx(self.atsigns_key(), atsign.as_str(), info)
            .await?;
        if !created {
            return Err(StoreError::AtSignExists(atsign.clone()));
        }
        self.index_and_announce(atsign, &dump.info.sni_label).await
    }

    async fn atsign_by_label(&self, label: &str) -> Result<Option<AtSign>, StoreError> {
        let found: Option<String> = self.conn.clone().hget(self.labels_key(), label).await?;
        found.map(|name| parse_atsign(&name)).transpose()
    }

    fn watch_atsigns(&self) -> Option<tokio::sync::mpsc::Receiver<AtSignsEvent>> {
        let (events, receiver) = tokio::sync::mpsc::channel(1024);
        let resync = events.clone();
        tokio::spawn(subscribe(
            self.client.clone(),
            self.changes_channel(),
            move |payload: Vec<u8>| {
                let events = events.clone();
                async move {
                    let name = String::from_utf8_lossy(&payload).into_owned();
                    match AtSign::parse(&name) {
                        Ok(atsign) => events.send(AtSignsEvent::Changed(atsign)).await.is_ok(),
                        Err(_) => !events.is_closed(),
                    }
                }
            },
            move || {
                let resync = resync.clone();
                async move { resync.send(AtSignsEvent::Resync).await.is_ok() }
            },
        ));
        Some(receiver)
    }
}

#[async_trait::async_trait]
impl Records for RedisStore {
    async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<super::Record>, StoreError> {
        let found: Option<Vec<u8>> = self
            .conn
            .clone()
            .hget(self.keys(atsign).records, key)
            .await?;
        let record = found.as_deref().map(decode_record).transpose()?;
        self.known.set(atsign, key, found);
        Ok(record)
    }

    async fn modify(
        &self,
        atsign: &AtSign,
        key: &str,
        change: Change,
    ) -> Result<Written, StoreError> {
        let keys = self.keys(atsign);
        let mut conn = self.conn.clone();
        // What the key holds, if known: this node's last sight of it (a guess the script
        // checks), or what a refused write found. Unknown: read it first.
        let mut known = self.known.get(atsign, key);
        for _ in 0..MAX_ATTEMPTS {
            let (read, guessed) = match known.take() {
                Some(bytes) => (bytes, true),
                None => (conn.hget(&keys.records, key).await?, false),
            };
            let current = read.as_deref().map(decode_record).transpose()?;
            let (put, op) = match change(current.as_ref()) {
                // Nothing written on a guess proves nothing: confirm on what Redis holds.
                Ok(Mutation::Keep) | Err(_) if guessed => continue,
                Ok(Mutation::Keep) => {
                    self.known.set(atsign, key, read);
                    return Ok(Written {
                        changed: false,
                        commit_id: None,
                    });
                }
                Err(refusal) => return Err(StoreError::Refused(refusal)),
                Ok(Mutation::Put { record, op }) => (Some(encode_record(&record)?), op),
                Ok(Mutation::Remove { commit }) => (None, commit.then_some(CommitOp::Delete)),
            };
            let op = op.filter(|_| is_committed(key));
            let mut invocation = self.modify.key(&keys.records);
            invocation
                .key(&keys.commits)
                .key(&keys.commit_ix)
                .key(&keys.next_commit)
                .arg(key)
                .arg(if read.is_some() { "1" } else { "0" })
                .arg(read.as_deref().unwrap_or_default())
                .arg(if put.is_some() { "put" } else { "remove" })
                .arg(put.as_deref().unwrap_or_default())
                .arg(if op.is_some() { "1" } else { "0" })
                .arg(op.map_or("", op_code))
                .arg(now_ms());
            let outcome: Vec<redis::Value> = invocation.invoke_async(&mut conn).await?;
            match outcome.as_slice() {
                // Another writer got there first: decide again on what it left.
                [redis::Value::Int(0), actual] => {
                    known = Some(match actual {
                        redis::Value::BulkString(bytes) => Some(bytes.clone()),
                        _ => None,
                    });
                }
                [redis::Value::Int(1), rest @ ..] => {
                    self.known.set(atsign, key, put);
                    let commit_id = match rest {
                        [redis::Value::Int(id)] => Some(*id as u64),
                        _ => None,
                    };
                    return Ok(Written {
                        changed: true,
                        commit_id,
                    });
                }
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "write script answered {other:?}"
                    )))
                }
            }
        }
        self.known.forget(atsign, key);
        Err(StoreError::Contended(format!(
            "{key} changed under {MAX_ATTEMPTS} attempts in a row"
        )))
    }

    async fn keys(&self, atsign: &AtSign, prefix: &str) -> Result<Vec<String>, StoreError> {
        let all: Vec<String> = self.conn.clone().hkeys(self.keys(atsign).records).await?;
        let mut keys: Vec<String> = all.into_iter().filter(|k| k.starts_with(prefix)).collect();
        keys.sort();
        Ok(keys)
    }

    async fn commits_since(
        &self,
        atsign: &AtSign,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CommitEntry>, StoreError> {
        let min = match after {
            Some(after) => format!("({after}"),
            None => "-inf".to_string(),
        };
        self.entries(atsign, &min, "+inf", limit).await
    }

    async fn last_commit_id(&self, atsign: &AtSign) -> Result<Option<u64>, StoreError> {
        let next: Option<u64> = self.conn.clone().get(self.keys(atsign).next_commit).await?;
        Ok(next.and_then(|n| n.checked_sub(1)))
    }

    async fn compact_commits(
        &self,
        atsign: &AtSign,
        older_than_ms: EpochMillis,
    ) -> Result<usize, StoreError> {
        let mut dropped = 0;
        loop {
            // Id order is write order: the old entries are a prefix of the log.
            let batch = self.entries(atsign, "-inf", "+inf", DROP_BATCH).await?;
            let old: Vec<CommitEntry> = batch
                .into_iter()
                .take_while(|e| e.op_time_ms < older_than_ms)
                .collect();
            if old.is_empty() {
                return Ok(dropped);
            }
            let whole_batch = old.len() == DROP_BATCH;
            dropped += self.drop_entries(atsign, &old).await?;
            if !whole_batch {
                return Ok(dropped);
            }
        }
    }

    async fn trim_commits(&self, atsign: &AtSign, keep: usize) -> Result<usize, StoreError> {
        let count: usize = self.conn.clone().zcard(self.keys(atsign).commits).await?;
        if count <= keep {
            return Ok(0);
        }
        let oldest = self.entries(atsign, "-inf", "+inf", count - keep).await?;
        self.drop_entries(atsign, &oldest).await
    }

    async fn record_access(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        from: &str,
        count: u64,
    ) -> Result<(), StoreError> {
        let _: f64 = self
            .conn
            .clone()
            .zincr(self.access_key(atsign, kind), from, count)
            .await?;
        Ok(())
    }

    async fn top_accesses(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        n: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let all: Vec<(String, u64)> = self
            .conn
            .clone()
            .zrange_withscores(self.access_key(atsign, kind), 0, -1)
            .await?;
        let mut all = all;
        // Count, then name: the same order as the embedded store, ties included.
        all.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        all.truncate(n);
        Ok(all)
    }
}

#[async_trait::async_trait]
impl NotificationLogs for RedisStore {
    async fn put_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        row: &NotificationRow,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.add_notification(&mut pipe, atsign, log, row);
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn notifications(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        after_ms: Option<EpochMillis>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let (order, rows) = self.notification_keys(atsign, log);
        let min = after_ms.map_or("-inf".to_string(), |after| format!("({after}"));
        let mut conn = self.conn.clone();
        let ids: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&order)
            .arg(min)
            .arg("+inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(-1))
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&rows)
            .arg(ids.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        ids.into_iter()
            .zip(stored)
            // A row removed between the two reads is simply not there.
            .filter_map(|((id, at), stored)| {
                stored.map(|bytes| decode_notification(id, at, &bytes))
            })
            .collect()
    }

    async fn get_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<Option<NotificationRow>, StoreError> {
        let (order, rows) = self.notification_keys(atsign, log);
        let (at, stored): (Option<f64>, Option<Vec<u8>>) = redis::pipe()
            .zscore(order, id)
            .hget(rows, id)
            .query_async(&mut self.conn.clone())
            .await?;
        match (at, stored) {
            (Some(at), Some(bytes)) => decode_notification(id.to_string(), at, &bytes).map(Some),
            _ => Ok(None),
        }
    }

    async fn remove_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (order, rows) = self.notification_keys(atsign, log);
        let (_, removed): (i64, i64) = redis::pipe()
            .atomic()
            .zrem(order, id)
            .hdel(rows, id)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(removed > 0)
    }

    async fn publish_notification(
        &self,
        atsign: &AtSign,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        let mut message = atsign.as_str().as_bytes().to_vec();
        message.push(0);
        message.extend_from_slice(payload);
        let _: i64 = self
            .conn
            .clone()
            .publish(self.notifications_channel(), message)
            .await?;
        Ok(true)
    }

    fn watch_notifications(&self) -> Option<tokio::sync::mpsc::Receiver<(AtSign, Vec<u8>)>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(subscribe(
            self.client.clone(),
            self.notifications_channel(),
            move |payload: Vec<u8>| {
                let sender = sender.clone();
                async move {
                    let Some(nul) = payload.iter().position(|&b| b == 0) else {
                        return !sender.is_closed();
                    };
                    let Ok(atsign) = std::str::from_utf8(&payload[..nul])
                        .map_err(|_| ())
                        .and_then(|name| AtSign::parse(name).map_err(|_| ()))
                    else {
                        return !sender.is_closed();
                    };
                    sender
                        .send((atsign, payload[nul + 1..].to_vec()))
                        .await
                        .is_ok()
                }
            },
            || async { true },
        ));
        Some(receiver)
    }
}

#[async_trait::async_trait]
impl Leases for RedisStore {
    async fn take_lease(
        &self,
        atsign: &AtSign,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.key(atsign, &format!("lease:{name}")))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken.is_some())
    }

    async fn drop_lease(&self, atsign: &AtSign, name: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .del(self.key(atsign, &format!("lease:{name}")))
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn storage_size(&self) -> Result<u64, StoreError> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await?;
        let fields: HashMap<&str, &str> = info
            .lines()
            .filter_map(|line| line.trim().split_once(':'))
            .collect();
        Ok(fields
            .get("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

/// Subscribes to `channel` and hands each message's payload to `on_message`, until a callback
/// says to stop (`false`: its receiver is gone). A lost subscription is renewed with backoff,
/// and `on_subscribed` runs after every (re)subscription: messages published while it was
/// not subscribed are lost, which the caller may need to make up for.
async fn subscribe<M, MF, S, SF>(
    client: redis::Client,
    channel: String,
    mut on_message: M,
    mut on_subscribed: S,
) where
    M: FnMut(Vec<u8>) -> MF,
    MF: std::future::Future<Output = bool>,
    S: FnMut() -> SF,
    SF: std::future::Future<Output = bool>,
{
    use futures_util::StreamExt;
    const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    if !on_subscribed().await {
                        return;
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<Vec<u8>>() else {
                            continue;
                        };
                        if !on_message(payload).await {
                            return;
                        }
                    }
                    tracing::warn!(%channel, "lost a Redis subscription; resubscribing");
                    crate::metrics::metrics().redis_resubscriptions.inc();
                }
                Err(error) => tracing::warn!(%channel, %error, "cannot subscribe"),
            },
            Err(error) => tracing::warn!(%channel, %error, "cannot subscribe"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, Store};
    use at_tests::redis::RedisServer;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_published_notification_reaches_every_watching_node() {
        let redis = RedisServer::start();
        let a = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let b = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let mut on_a = a.watch_notifications().expect("Redis is shared");
        let mut on_b = b.watch_notifications().expect("Redis is shared");
        let bob = conformance::sign("bob");
        // Subscriptions are asynchronous: publish until both have one (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let got = loop {
            assert!(a
                .publish_notification(&bob, b"{\"id\":\"1\"}")
                .await
                .unwrap());
            let wait = std::time::Duration::from_millis(200);
            if let Ok(Some(got)) = tokio::time::timeout(wait, on_b.recv()).await {
                break got;
            }
            assert!(std::time::Instant::now() < deadline, "nothing arrived");
        };
        assert_eq!(got, (bob.clone(), b"{\"id\":\"1\"}".to_vec()));
        // The publishing node hears its own, too (it may hold the recipient's monitors).
        let mine = tokio::time::timeout(std::time::Duration::from_secs(5), on_a.recv())
            .await
            .expect("arrives")
            .expect("open");
        assert_eq!(mine.0, bob);
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
        let mut conn = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
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
