//! The two notification logs of an atSign, and its channel, which brings its notifications
//! to the nodes that follow it (those with its monitors or enrolled sessions).

use super::pubsub::follow_notifications;
use super::*;
use crate::store::feed::{Follows, NotificationWatch};

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
        self.write(&pipe).await?;
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
        let mut pipe = redis::pipe();
        pipe.atomic().zrem(order, id).hdel(rows, id);
        let replies = self.write(&pipe).await?;
        Ok(matches!(replies.get(1), Some(redis::Value::Int(removed)) if *removed > 0))
    }

    async fn publish_notification(
        &self,
        atsign: &AtSign,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        self.conn
            .clone()
            .publish(&self.notification_channel(atsign), payload)
            .await?;
        Ok(true)
    }

    fn watch_notifications(&self) -> Option<NotificationWatch> {
        let (inbox, feed) = crate::store::feed::feed();
        let follows = Follows::default();
        tokio::spawn(follow_notifications(
            self.client.clone(),
            self.prefix.clone(),
            follows.clone(),
            inbox,
        ));
        Some(NotificationWatch { feed, follows })
    }
}
