//! Which atSigns are hosted: their provisioning records, the SNI label index, and telling
//! every node of a change.

use super::*;

#[async_trait::async_trait]
impl Provisioning for RedisStore {
    async fn create_atsign(&self, atsign: &AtSign, info: &AtSignInfo) -> Result<(), StoreError> {
        if !self
            .hset_nx_info(atsign, &serde_json::to_string(info)?)
            .await?
        {
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
        let mut invocation = self.set_info.key(self.atsigns_key());
        invocation
            .arg(atsign.as_str())
            .arg(serde_json::to_string(info)?);
        let replaced = self.write_script(&invocation).await?;
        if replaced != redis::Value::Int(1) {
            return Err(StoreError::NoSuchAtSign(atsign.clone()));
        }
        self.index_and_announce(atsign, &info.sni_label).await
    }

    async fn remove_atsign(&self, atsign: &AtSign) -> Result<bool, StoreError> {
        let existing: Option<String> = self
            .conn
            .clone()
            .hget(self.atsigns_key(), atsign.as_str())
            .await?;
        let existed = existing.is_some();
        if let Some(info) = existing.and_then(|json| serde_json::from_str::<AtSignInfo>(&json).ok())
        {
            self.write(redis::pipe().hdel(self.labels_key(), &info.sni_label))
                .await?;
        }
        // Data first, the entry last: if this stops half-way the atSign is still listed, and
        // removing it again finishes the job.
        self.write(redis::pipe().del(self.all_keys(atsign))).await?;
        self.known.forget_atsign(atsign);
        self.write(redis::pipe().hdel(self.atsigns_key(), atsign.as_str()))
            .await?;
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
        let exists: bool = self
            .conn
            .clone()
            .hexists(self.atsigns_key(), atsign.as_str())
            .await?;
        if exists {
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
        self.write(&data).await?;
        self.known.forget_atsign(atsign);
        if !self
            .hset_nx_info(atsign, &serde_json::to_string(&dump.info)?)
            .await?
        {
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

impl RedisStore {
    /// Writes `atsign`'s provisioning record unless there is one; whether it did.
    async fn hset_nx_info(&self, atsign: &AtSign, info: &str) -> Result<bool, StoreError> {
        let replies = self
            .write(redis::pipe().hset_nx(self.atsigns_key(), atsign.as_str(), info))
            .await?;
        Ok(replies.first() == Some(&redis::Value::Int(1)))
    }
}
