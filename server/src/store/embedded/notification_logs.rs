//! The two notification logs of an atSign: rows in time order, and an index by id.

use super::*;

#[async_trait::async_trait]
impl NotificationLogs for Embedded {
    async fn put_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        row: &NotificationRow,
    ) -> Result<(), StoreError> {
        let (atsign, row) = (atsign.clone(), row.clone());
        let reads = vec![notification_id_key(&atsign, log, &row.id)];
        self.stage(reads, move |shared, batch| {
            put_notification_row(shared, batch, &atsign, log, &row)
        })
        .await
    }

    async fn notifications(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        after_ms: Option<EpochMillis>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = log_prefix(atsign, log);
        // Rows at `after_ms` itself are not after it: start at the next millisecond. Rows are
        // never before the epoch, so a negative `after_ms` is the start.
        let from = match after_ms {
            Some(after) if after >= 0 => {
                let mut from = rows.clone();
                from.extend_from_slice(&(after as u64).saturating_add(1).to_be_bytes());
                from
            }
            _ => rows.clone(),
        };
        let mut to = rows.clone();
        to.push(0xff);
        self.scan(move |shared, snapshot| {
            let mut out = Vec::new();
            for guard in snapshot.range(&shared.notifications, from..to).take(limit) {
                let (key, value) = guard.into_inner()?;
                out.push(decode_notification(&key[rows.len()..], &value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<Option<NotificationRow>, StoreError> {
        let snapshot = self.shared.snapshot();
        let Some(at) = snapshot.get(
            &self.shared.notification_ids,
            notification_id_key(atsign, log, id),
        )?
        else {
            return Ok(None);
        };
        let at_ms = be_u64(&at)? as EpochMillis;
        let key = notification_row_key(atsign, log, at_ms, id);
        let Some(value) = snapshot.get(&self.shared.notifications, &key)? else {
            return Ok(None);
        };
        decode_notification(&key[log_prefix(atsign, log).len()..], &value).map(Some)
    }

    async fn remove_notification(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (atsign, id) = (atsign.clone(), id.to_string());
        let id_key = notification_id_key(&atsign, log, &id);
        self.stage(vec![id_key.clone()], move |shared, batch| {
            let Some(at) = shared.notification_ids.get(&id_key)? else {
                return Ok(false);
            };
            let row = notification_row_key(&atsign, log, be_u64(&at)? as EpochMillis, &id);
            batch.remove(&shared.notifications, row);
            batch.remove(&shared.notification_ids, id_key);
            Ok(true)
        })
        .await
    }
}
