//! Telling every node: publishing provisioning changes, and subscriptions that renew
//! themselves.

use super::*;

impl RedisStore {
    /// After `atsign`'s provisioning record was written: its SNI label finds it, and every
    /// node hears of the change.
    pub(super) async fn index_and_announce(
        &self,
        atsign: &AtSign,
        label: &str,
    ) -> Result<(), StoreError> {
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
    pub(super) async fn publish_change(&self, atsign: &AtSign) {
        let sent: Result<i64, _> = self
            .conn
            .clone()
            .publish(self.changes_channel(), atsign.as_str())
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
