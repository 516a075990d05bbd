//! Telling every node: publishing provisioning changes, and subscriptions that renew
//! themselves, on one Redis (`SUBSCRIBE`) or on a cluster (`SSUBSCRIBE`, sharded: a channel's
//! messages travel only to the nodes of its slot, not over the whole cluster bus).

use super::*;

impl RedisStore {
    /// After `atsign`'s provisioning record was written: its SNI label finds it, and every
    /// node hears of the change.
    pub(super) async fn index_and_announce(
        &self,
        atsign: &AtSign,
        label: &str,
    ) -> Result<(), StoreError> {
        self.write(redis::pipe().hset(self.labels_key(), label, atsign.as_str()))
            .await?;
        self.publish_change(atsign).await;
        Ok(())
    }

    /// Tells every node that `atsign`'s provisioning changed. Best effort: the change is
    /// already stored, and a node that misses this catches up when it resubscribes.
    pub(super) async fn publish_change(&self, atsign: &AtSign) {
        let sent = self
            .conn
            .clone()
            .publish(&self.changes_channel(), atsign.as_str().as_bytes())
            .await;
        if let Err(error) = sent {
            tracing::warn!(%atsign, %error, "could not tell the other nodes of a provisioning change");
        }
    }
}

/// Subscribes to `channel` and hands each message's payload to `on_message`, until a callback
/// says to stop (`false`: its receiver is gone). A lost subscription is renewed with backoff,
/// and `on_subscribed` runs after every (re)subscription: messages published while it was
/// not subscribed are lost, which the caller may need to make up for.
pub(super) async fn subscribe<M, MF, S, SF>(
    client: RedisClient,
    channel: String,
    on_message: M,
    on_subscribed: S,
) where
    M: FnMut(Vec<u8>) -> MF,
    MF: std::future::Future<Output = bool>,
    S: FnMut() -> SF,
    SF: std::future::Future<Output = bool>,
{
    match client {
        RedisClient::Single(client) => {
            subscribe_single(client, channel, on_message, on_subscribed).await
        }
        RedisClient::Cluster { pushes, .. } => {
            subscribe_sharded(pushes, channel, on_message, on_subscribed).await
        }
    }
}

const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
const LONGEST_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// [`subscribe`] on one Redis: a pub/sub connection of its own, made again when it drops.
async fn subscribe_single<M, MF, S, SF>(
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
        backoff = (backoff * 2).min(LONGEST_BACKOFF);
    }
}

/// [`subscribe`] on a cluster: `SSUBSCRIBE` through a cluster connection of its own (RESP3,
/// whose pushes arrive on `pushes`). The crate resubscribes by itself after a reconnection or
/// a topology refresh (each confirmed by an `ssubscribe` push, on which `on_subscribed` runs);
/// when the channel's slot moves to another master, the old one ends the subscription
/// (an `sunsubscribe` push we never asked for), and it is made again, on the new owner.
async fn subscribe_sharded<M, MF, S, SF>(
    client: redis::cluster::ClusterClient,
    channel: String,
    mut on_message: M,
    mut on_subscribed: S,
) where
    M: FnMut(Vec<u8>) -> MF,
    MF: std::future::Future<Output = bool>,
    S: FnMut() -> SF,
    SF: std::future::Future<Output = bool>,
{
    use redis::PushKind;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (sender, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_push_sender(sender);
        let subscribed = match client.get_async_connection_with_config(config).await {
            Ok(mut conn) => conn.ssubscribe(&channel).await.map(|()| conn),
            Err(error) => Err(error),
        };
        match subscribed {
            Ok(mut conn) => {
                backoff = FIRST_BACKOFF;
                if !on_subscribed().await {
                    return;
                }
                // Open as long as `conn` is: it ends only if every sender is gone.
                while let Some(push) = pushes.recv().await {
                    let ours = matches!(push.data.first(),
                        Some(redis::Value::BulkString(name)) if name == channel.as_bytes());
                    match push.kind {
                        PushKind::SMessage if ours => {
                            let Some(redis::Value::BulkString(payload)) = push.data.get(1) else {
                                continue;
                            };
                            if !on_message(payload.clone()).await {
                                return;
                            }
                        }
                        // (Re)subscribed: the caller makes up for what it missed.
                        PushKind::SSubscribe if ours && !on_subscribed().await => return,
                        PushKind::SUnsubscribe if ours => {
                            tracing::warn!(%channel, "a Redis Cluster ended a subscription (its slot moved?); resubscribing");
                            crate::metrics::metrics().redis_resubscriptions.inc();
                            // Routed by the channel's slot: to its new master, once the
                            // crate has followed the `MOVED` this may first meet.
                            if let Err(error) = conn.ssubscribe(&channel).await {
                                tracing::warn!(%channel, %error, "cannot resubscribe");
                                break;
                            }
                        }
                        PushKind::Disconnection => {
                            tracing::warn!(%channel, "lost a Redis Cluster connection; the client resubscribes");
                            crate::metrics::metrics().redis_resubscriptions.inc();
                        }
                        _ => {}
                    }
                }
            }
            Err(error) => tracing::warn!(%channel, %error, "cannot subscribe"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LONGEST_BACKOFF);
    }
}
