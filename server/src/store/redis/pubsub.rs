//! Telling the nodes: publishing provisioning changes, subscriptions that renew themselves
//! (the provisioning changes every node hears, [`subscribe`]), and the node's one pub/sub
//! connection to the notification channels of the atSigns it follows
//! ([`follow_notifications`]); on one Redis plain `SUBSCRIBE`, on a cluster `SSUBSCRIBE`
//! (sharded: a channel's messages travel only to the nodes of its slot, not over the whole
//! cluster bus).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis::PushInfo;
use tokio::sync::Notify;

use super::names::{atsign_of_notification_channel, notification_channel};
use super::*;
use crate::store::feed::{Follows, Inbox};

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

/// Notification channels per `SUBSCRIBE`/`UNSUBSCRIBE` on one Redis. On a cluster each is a
/// command of its own (the channels live in different slots), this many at a time.
const CHANNELS_PER_COMMAND: usize = 256;

/// Keeps this node subscribed to the notification channel of each atSign `follows` names, on
/// one pub/sub connection whatever their number, subscribing and unsubscribing as `follows`
/// changes and confirming each subscription there once Redis has ([`Follows::ready`]). Each
/// message goes to `inbox` without waiting (what does not fit is dropped there, [`Inbox`]), so
/// what the `redis` crate queues in front of it is only what arrived since this task last ran.
/// A lost subscription is made again, with backoff; ends when the inbox's feed is gone.
pub(super) async fn follow_notifications(
    client: RedisClient,
    prefix: String,
    follows: Follows,
    inbox: Inbox,
) {
    match client {
        RedisClient::Single(client) => follow_single(client, prefix, follows, inbox).await,
        RedisClient::Cluster { pushes, .. } => follow_sharded(pushes, prefix, follows, inbox).await,
    }
}

/// Where [`keep_following`] sends its (un)subscriptions.
enum Subscriber {
    /// One Redis: the sink half of a RESP2 pub/sub connection.
    Single(redis::aio::PubSubSink),
    /// A cluster: a RESP3 cluster connection, which routes each channel to its slot's master.
    Sharded(redis::cluster_async::ClusterConnection),
}

impl Subscriber {
    /// Returns once Redis has confirmed every channel.
    async fn subscribe(&self, channels: Vec<String>) -> redis::RedisResult<()> {
        match self {
            Subscriber::Single(sink) => sink.clone().subscribe(channels).await,
            Subscriber::Sharded(conn) => {
                each_channel(conn, channels, |mut conn, channel| async move {
                    conn.ssubscribe(channel).await
                })
                .await
            }
        }
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> redis::RedisResult<()> {
        match self {
            Subscriber::Single(sink) => sink.clone().unsubscribe(channels).await,
            Subscriber::Sharded(conn) => {
                each_channel(conn, channels, |mut conn, channel| async move {
                    conn.sunsubscribe(channel).await
                })
                .await
            }
        }
    }
}

/// `command` on `conn` for each of `channels` (a sharded command names one channel, which
/// routes it to that channel's master), [`CHANNELS_PER_COMMAND`] at a time.
async fn each_channel<F, C>(
    conn: &redis::cluster_async::ClusterConnection,
    channels: Vec<String>,
    command: F,
) -> redis::RedisResult<()>
where
    F: Fn(redis::cluster_async::ClusterConnection, String) -> C,
    C: std::future::Future<Output = redis::RedisResult<()>>,
{
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(channels)
        .map(|channel| command(conn.clone(), channel))
        .buffer_unordered(CHANNELS_PER_COMMAND)
        .try_collect::<()>()
        .await
}

/// Brings `subscriber`'s subscriptions (`subscribed`, as confirmed by Redis) to what `follows`
/// wants, again each time it changes; returns only on an error. `backoff` starts over after
/// each success.
async fn keep_following(
    subscriber: &Subscriber,
    prefix: &str,
    follows: &Follows,
    subscribed: &mut HashSet<AtSign>,
    backoff: &mut std::time::Duration,
) -> redis::RedisError {
    loop {
        let (subscribe, unsubscribe) = follows.pending(subscribed);
        if subscribe.is_empty() && unsubscribe.is_empty() {
            follows.changed().await;
            continue;
        }
        let channels = |atsigns: &mut dyn Iterator<Item = &AtSign>| -> Vec<String> {
            atsigns.map(|a| notification_channel(prefix, a)).collect()
        };
        for chunk in unsubscribe.chunks(CHANNELS_PER_COMMAND) {
            if let Err(error) = subscriber.unsubscribe(channels(&mut chunk.iter())).await {
                return error;
            }
            for atsign in chunk {
                subscribed.remove(atsign);
            }
        }
        for chunk in subscribe.chunks(CHANNELS_PER_COMMAND) {
            let names = channels(&mut chunk.iter().map(|(atsign, _)| atsign));
            if let Err(error) = subscriber.subscribe(names).await {
                return error;
            }
            for (atsign, generation) in chunk {
                subscribed.insert(atsign.clone());
                follows.confirm(atsign, *generation);
            }
        }
        *backoff = FIRST_BACKOFF;
    }
}

/// [`follow_notifications`] on one Redis: a RESP2 pub/sub connection, split so that its
/// messages are read while channels are added and removed; made again when it drops, with
/// every followed channel.
async fn follow_single(client: redis::Client, prefix: String, follows: Follows, inbox: Inbox) {
    use futures_util::StreamExt;
    let mut backoff = FIRST_BACKOFF;
    while !inbox.is_closed() {
        match client.get_async_pubsub().await {
            Ok(pubsub) => {
                let (sink, mut stream) = pubsub.split();
                let subscriber = Subscriber::Single(sink);
                let mut subscribed = HashSet::new();
                let reading = async {
                    while let Some(message) = stream.next().await {
                        let channel = message.get_channel_name().as_bytes();
                        let Some(atsign) = atsign_of_notification_channel(&prefix, channel) else {
                            continue;
                        };
                        if !inbox.offer(atsign, message.get_payload_bytes().to_vec()) {
                            return;
                        }
                    }
                    tracing::warn!("lost the Redis subscription to notifications; resubscribing");
                };
                tokio::select! {
                    () = reading => {}
                    () = inbox.closed() => return,
                    error = keep_following(&subscriber, &prefix, &follows, &mut subscribed, &mut backoff) => {
                        tracing::warn!(%error, "cannot follow notifications; resubscribing");
                    }
                }
                // Whatever follows now waits for the new connection's confirmation.
                follows.lost_all();
                crate::metrics::metrics().redis_resubscriptions.inc();
            }
            Err(error) => tracing::warn!(%error, "cannot subscribe to notifications"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LONGEST_BACKOFF);
    }
}

/// [`follow_notifications`] on a cluster: one cluster connection (RESP3) whose pushes are read
/// as they arrive, in the `redis` crate's task ([`on_push`]). When a channel's slot moves to
/// another master, the old one ends the subscription (an `sunsubscribe` push nobody asked
/// for), which [`on_push`] reports as lost and this task makes again, on the new owner. When
/// any of its node connections drops, the whole cluster connection is made again with every
/// followed channel: the crate would resubscribe by itself, but in our tests it did so only
/// once something else drove the connection, and some subscriptions made meanwhile did not
/// survive its reconnection; a new connection leaves no doubt.
async fn follow_sharded(
    client: redis::cluster::ClusterClient,
    prefix: String,
    follows: Follows,
    inbox: Inbox,
) {
    let mut backoff = FIRST_BACKOFF;
    while !inbox.is_closed() {
        // Pushes of a connection given up on are ignored (they may still arrive a while).
        let live = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(tokio::sync::Notify::new());
        let pushes = {
            let (prefix, follows, inbox) = (prefix.clone(), follows.clone(), inbox.clone());
            let (live, dropped) = (Arc::clone(&live), Arc::clone(&dropped));
            move |push| {
                if live.load(Ordering::Acquire) {
                    on_push(&prefix, &follows, &inbox, &dropped, push);
                }
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_push_sender(pushes);
        match client.get_async_connection_with_config(config).await {
            Ok(conn) => {
                let subscriber = Subscriber::Sharded(conn);
                let mut subscribed = HashSet::new();
                // Everything followed is to be subscribed on this connection.
                follows.lost_all();
                tokio::select! {
                    () = inbox.closed() => return,
                    () = dropped.notified() => {
                        tracing::warn!("lost a Redis Cluster connection; resubscribing");
                    }
                    error = keep_following(&subscriber, &prefix, &follows, &mut subscribed, &mut backoff) => {
                        tracing::warn!(%error, "cannot follow notifications; resubscribing");
                    }
                }
                live.store(false, Ordering::Release);
                follows.lost_all();
                crate::metrics::metrics().redis_resubscriptions.inc();
            }
            Err(error) => tracing::warn!(%error, "cannot subscribe to notifications"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LONGEST_BACKOFF);
    }
}

/// One push of the cluster connection of [`follow_sharded`], handled where the crate hands it
/// over (it must not block): a message goes to the inbox, an unasked end of a followed
/// channel's subscription is reported lost, a dropped node connection to `dropped`.
fn on_push(prefix: &str, follows: &Follows, inbox: &Inbox, dropped: &Notify, push: PushInfo) {
    use redis::PushKind;
    let mut data = push.data.into_iter();
    let atsign = match data.next() {
        Some(redis::Value::BulkString(channel)) => atsign_of_notification_channel(prefix, &channel),
        _ => None,
    };
    match (push.kind, atsign) {
        (PushKind::SMessage, Some(atsign)) => {
            if let Some(redis::Value::BulkString(payload)) = data.next() {
                inbox.offer(atsign, payload);
            }
        }
        // Also what our own unsubscribing answers: that atSign is no longer followed, unless
        // it was again since (then it is subscribed once more, which does no harm).
        (PushKind::SUnsubscribe, Some(atsign)) if follows.is_followed(&atsign) => {
            tracing::warn!(%atsign, "a Redis Cluster ended a subscription (its slot moved?); resubscribing");
            crate::metrics::metrics().redis_resubscriptions.inc();
            follows.lost(&atsign);
        }
        (PushKind::Disconnection, _) => dropped.notify_one(),
        _ => {}
    }
}
