//! Records, the commit log and the access counters of one atSign, each under its prefix.

use super::*;

#[async_trait::async_trait]
impl Records for Embedded {
    async fn get(&self, atsign: &AtSign, key: &str) -> Result<Option<Record>, StoreError> {
        let found = self
            .shared
            .snapshot()
            .get(&self.shared.records, row(atsign, key.as_bytes()))?;
        found.map(|bytes| decode_record(&bytes)).transpose()
    }

    async fn modify(
        &self,
        atsign: &AtSign,
        key: &str,
        change: Change,
    ) -> Result<Written, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Change {
            atsign: atsign.clone(),
            key: key.to_string(),
            change,
            done,
        })?;
        answer.await.map_err(|_| self.gone())?
    }

    async fn keys(&self, atsign: &AtSign, prefix_of_key: &str) -> Result<Vec<String>, StoreError> {
        let rows = prefix(atsign);
        let wanted = row(atsign, prefix_of_key.as_bytes());
        self.scan(move |shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.prefix(&shared.records, &wanted) {
                let row = guard.key()?;
                let key = String::from_utf8(row[rows.len()..].to_vec())
                    .map_err(|_| StoreError::Corrupt("a key that is not UTF-8".into()))?;
                out.push(key);
            }
            Ok(out)
        })
        .await
    }

    async fn commits_since(
        &self,
        atsign: &AtSign,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<CommitEntry>, StoreError> {
        let Some(first) = after.map_or(Some(0), |after| after.checked_add(1)) else {
            return Ok(Vec::new());
        };
        let (from, to) = (commit_row(atsign, first), commit_row(atsign, u64::MAX));
        let rows = prefix(atsign).len();
        self.scan(move |shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.range(&shared.commits, from..=to).take(limit) {
                let (row, value) = guard.into_inner()?;
                out.push(decode_commit(be_u64(&row[rows..])?, &value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn last_commit_id(&self, atsign: &AtSign) -> Result<Option<u64>, StoreError> {
        let next = self
            .shared
            .snapshot()
            .get(&self.shared.next_commit, atsign.as_str())?;
        match next {
            Some(bytes) => Ok(be_u64(&bytes)?.checked_sub(1)),
            None => Ok(None),
        }
    }

    async fn compact_commits(
        &self,
        atsign: &AtSign,
        older_than_ms: EpochMillis,
    ) -> Result<usize, StoreError> {
        // Most calls find nothing old: a look at the oldest entry then spares the writer (and
        // its fsync) the job.
        let oldest = self.commits_since(atsign, None, 1).await?;
        if oldest.first().is_none_or(|e| e.op_time_ms >= older_than_ms) {
            return Ok(0);
        }
        let atsign = atsign.clone();
        self.write(Kind::KeyRows, move |shared| {
            let rows = prefix(&atsign);
            let mut batch = shared.db.batch();
            let mut dropped = 0;
            // Id order is write order: stopping at the first young entry keeps the
            // writer's work to what it drops, however long the log.
            for guard in shared.commits.prefix(&rows) {
                let (row, value) = guard.into_inner()?;
                let entry = decode_commit(be_u64(&row[rows.len()..])?, &value)?;
                if entry.op_time_ms >= older_than_ms {
                    break;
                }
                drop_commit(shared, &mut batch, &atsign, row, &entry.key);
                dropped += 1;
            }
            batch.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn trim_commits(&self, atsign: &AtSign, keep: usize) -> Result<usize, StoreError> {
        // Counting happens on a snapshot, off the writer: the newest entry that has to go.
        let rows = prefix(atsign);
        let last_dropped = self
            .scan(move |shared, snapshot| {
                match snapshot.prefix(&shared.commits, &rows).rev().nth(keep) {
                    Some(guard) => Ok(Some(be_u64(&guard.key()?[rows.len()..])?)),
                    None => Ok(None),
                }
            })
            .await?;
        let Some(last_dropped) = last_dropped else {
            return Ok(0);
        };
        let atsign = atsign.clone();
        self.write(Kind::KeyRows, move |shared| {
            let (from, to) = (commit_row(&atsign, 0), commit_row(&atsign, last_dropped));
            let rows = prefix(&atsign).len();
            let mut batch = shared.db.batch();
            let mut dropped = 0;
            // Writes since the count only add newer ids (or drop older entries of their
            // key), so everything up to `last_dropped` still has to go.
            for guard in shared.commits.range(from..=to) {
                let (row, value) = guard.into_inner()?;
                let entry = decode_commit(be_u64(&row[rows..])?, &value)?;
                drop_commit(shared, &mut batch, &atsign, row, &entry.key);
                dropped += 1;
            }
            batch.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn record_access(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        from: &str,
        count: u64,
    ) -> Result<(), StoreError> {
        let counter = access_row(atsign, kind, from);
        // Statistics: a failed fsync is not this caller's error (the count may be lost).
        self.write(Kind::Statistics, move |shared| {
            let stored = match shared.access.get(&counter)? {
                Some(bytes) => be_u64(&bytes)?,
                None => 0,
            };
            let total = stored.saturating_add(count);
            shared.access.insert(counter, total.to_be_bytes())?;
            Ok(())
        })
        .await
    }

    async fn top_accesses(
        &self,
        atsign: &AtSign,
        kind: AccessKind,
        n: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let wanted = access_row(atsign, kind, "");
        self.scan(move |shared, snapshot| {
            let mut all = Vec::new();
            for guard in snapshot.prefix(&shared.access, &wanted) {
                let (row, count) = guard.into_inner()?;
                let from = String::from_utf8_lossy(&row[wanted.len()..]).into_owned();
                all.push((from, be_u64(&count)?));
            }
            all.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            all.truncate(n);
            Ok(all)
        })
        .await
    }
}
