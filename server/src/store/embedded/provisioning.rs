//! Which atSigns are hosted: their provisioning records (the `atsigns` keyspace).

use super::*;

#[async_trait::async_trait]
impl Provisioning for Embedded {
    async fn create_atsign(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        self.write_info(atsign, info, false).await
    }

    async fn get_atsign(&self, atsign: &AtSign) -> Result<Option<AtSignInfo>, StoreError> {
        let found = self
            .shared
            .snapshot()
            .get(&self.shared.atsigns, atsign.as_str())?;
        Ok(match found {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        })
    }

    async fn set_atsign_info(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        self.write_info(atsign, info, true).await
    }

    async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        let atsign = atsign.clone();
        self.write(Kind::KeyRows, move |shared| {
            let name = atsign.as_str().as_bytes();
            let rows = prefix(&atsign);
            let existed = shared.atsigns.get(name)?.is_some();
            let mut batch = shared.db.batch();
            for keyspace in [
                &shared.records,
                &shared.commits,
                &shared.commit_index,
                &shared.access,
                &shared.notifications,
                &shared.notification_ids,
            ] {
                remove_prefix(&mut batch, keyspace, &rows)?;
            }
            batch.remove(&shared.next_commit, name);
            batch.remove(&shared.atsigns, name);
            batch.commit()?;
            Ok(existed)
        })
        .await
    }

    async fn list_atsigns(&self) -> Result<Vec<AtSign>, StoreError> {
        self.scan(|shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.iter(&shared.atsigns) {
                let name = guard.key()?;
                let name = String::from_utf8_lossy(&name);
                let atsign = AtSign::parse(&name)
                    .map_err(|e| StoreError::Corrupt(format!("atSign {name:?}: {e}")))?;
                out.push(atsign);
            }
            Ok(out)
        })
        .await
    }

    async fn import_atsign(&self, dump: &AtSignDump) -> Result<(), StoreError> {
        let dump = dump.clone();
        let info = serde_json::to_vec(&dump.info)?;
        self.write(Kind::KeyRows, move |shared| {
            let atsign = &dump.atsign;
            let name = atsign.as_str().as_bytes();
            if shared.atsigns.get(name)?.is_some() {
                return Err(StoreError::AtSignExists(atsign.clone()));
            }
            let mut batch = shared.db.batch();
            batch.insert(&shared.atsigns, name, info);
            for (key, record) in &dump.records {
                batch.insert(
                    &shared.records,
                    row(atsign, key.as_bytes()),
                    encode_record(record)?,
                );
            }
            for entry in &dump.commits {
                batch.insert(
                    &shared.commits,
                    commit_row(atsign, entry.commit_id),
                    encode_commit(entry.op, entry.op_time_ms, &entry.key),
                );
                batch.insert(
                    &shared.commit_index,
                    row(atsign, entry.key.as_bytes()),
                    entry.commit_id.to_be_bytes(),
                );
            }
            if dump.next_commit > 0 {
                batch.insert(&shared.next_commit, name, dump.next_commit.to_be_bytes());
            }
            for (kind, from, count) in &dump.access {
                batch.insert(
                    &shared.access,
                    access_row(atsign, *kind, from),
                    count.to_be_bytes(),
                );
            }
            for (log, row) in &dump.notifications {
                put_notification_row(shared, &mut batch, atsign, *log, row)?;
            }
            batch.commit()?;
            Ok(())
        })
        .await
    }
}
