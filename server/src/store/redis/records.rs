//! Records, the commit log and the access counters of one atSign, all under its hash tag.

use super::*;

#[async_trait::async_trait]
impl Records for RedisStore {
    async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<Record>, StoreError> {
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
            let outcome = match self.write_script(&invocation).await? {
                redis::Value::Array(outcome) => outcome,
                other => vec![other],
            };
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
