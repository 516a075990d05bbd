//! `NotificationRouter`: delivers notifications to atSigns hosted on other atServers
//! (docs/notifications.md#delivery).
//!
//! A notification for another server is first stored in the sender's sent log as `queued`
//! (so it survives a restart), then handed here by id. The router sends it over the sender's
//! pol link to the recipient's server as the reference writes it ([`notify_line`]); the
//! recipient's `data:success` makes it `delivered`. Anything else (server down, refused,
//! silent) makes it `errored` and it is tried again after a backoff that doubles up to
//! `retry_max`, until it expires (its `ttln`) or [`MAX_ATTEMPTS`] attempts failed.
//!
//! A new notification is handed over while its `queued` write is being made durable
//! ([`Fresh`]): the first attempt sends it at once and records the outcome only after that
//! write. The sender's `data:<id>` still waits for it, so nothing acknowledged can be lost; a
//! crash before the write lands can at worst deliver a notification whose `notify` was never
//! answered.
//!
//! At start-up the router takes up what is still queued or errored in the sent logs of the
//! hosted atSigns. On a cluster every node does so on its start; each attempt is made by the
//! node holding the notification's delivery lease in the store ([`Store::take_lease`]), so two
//! nodes never send one notification at once.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use at_common::metadata::{now_ms, EpochMillis};
use at_common::AtSign;
use tokio::sync::oneshot;

use crate::metrics::metrics;
use crate::notifications::{self, Delivery, Notification, Status, Stored};
use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::store::{NotificationLog, Store};

/// Attempts after which an undelivered notification is given up (the reference's max_retries).
pub const MAX_ATTEMPTS: u32 = 30;
/// The first retry's delay; each later one doubles, up to the configured maximum.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// A delivery lease lasts this many peer timeouts (an attempt's steps are each bounded by one).
const LEASE_TIMEOUTS: u32 = 6;

/// Deliver the notification `id` of `from`'s sent log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub from: AtSign,
    pub id: String,
    /// A notification just queued, as it is being written; `None` to read it from the log.
    pub fresh: Option<Fresh>,
}

/// A notification handed to the router by [`queue`] while its write to the sent log is in
/// flight: the first attempt sends this, not what the log holds (the write may not be
/// readable yet), and waits for `written` before recording anything.
pub struct Fresh {
    stored: Stored,
    expires: EpochMillis,
    /// Whether the write to the sent log succeeded.
    written: oneshot::Receiver<bool>,
}

pub struct NotificationRouter {
    store: Store,
    peers: Peers,
    retry_max: Duration,
    /// Being delivered or waiting for a retry: a second `Deliver` for these is dropped.
    pending: HashSet<(AtSign, String)>,
}

/// How one attempt ended.
enum Outcome {
    /// Delivered, expired, given up, or gone: nothing more to do.
    Done,
    /// Try again after this long.
    Retry(Duration),
}

impl NotificationRouter {
    pub fn new(store: Store, peers: Peers, retry_max: Duration) -> NotificationRouter {
        NotificationRouter {
            store,
            peers,
            retry_max,
            pending: HashSet::new(),
        }
    }
}

impl Actor for NotificationRouter {
    type Context = Context<Self>;

    /// Takes up what earlier runs left undelivered.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let resume = async move {
            let mut waiting = Vec::new();
            for atsign in store.list_atsigns().await.unwrap_or_default() {
                let rows = store
                    .notifications(&atsign, NotificationLog::Sent, None, usize::MAX)
                    .await
                    .unwrap_or_default();
                for row in rows.iter().filter(|row| row.expires_ms > now_ms()) {
                    let undelivered = notifications::read_stored(row)
                        .is_ok_and(|s| s.status != Status::Delivered && s.delivery.is_some());
                    if undelivered {
                        waiting.push(Deliver {
                            from: atsign.clone(),
                            id: row.id.clone(),
                            fresh: None,
                        });
                    }
                }
            }
            waiting
        };
        ctx.spawn(resume.into_actor(self).map(|waiting, _, ctx| {
            if !waiting.is_empty() {
                tracing::info!(count = waiting.len(), "resuming undelivered notifications");
            }
            for deliver in waiting {
                ctx.notify(deliver);
            }
        }));
    }
}

impl Handler<Deliver> for NotificationRouter {
    type Result = ();

    fn handle(&mut self, deliver: Deliver, ctx: &mut Context<Self>) {
        if !self
            .pending
            .insert((deliver.from.clone(), deliver.id.clone()))
        {
            return;
        }
        self.attempt(deliver, ctx);
    }
}

/// A notification's attempts are over (delivered, expired, given up or gone).
#[derive(Message)]
#[rtype(result = "()")]
struct Settled(AtSign, String);

impl Handler<Settled> for NotificationRouter {
    type Result = ();

    fn handle(&mut self, Settled(from, id): Settled, _: &mut Context<Self>) {
        self.pending.remove(&(from, id));
    }
}

impl NotificationRouter {
    /// A notification's attempts and the waits between them run as a task of their own, not
    /// as futures of this actor: actix polls every future of an actor's context each time it
    /// wakes, so with thousands of notifications queued every wake-up cost thousands of polls
    /// (a flooding sender made that most of the node's CPU).
    fn attempt(&mut self, deliver: Deliver, ctx: &mut Context<Self>) {
        let (store, peers, retry_max) = (self.store.clone(), self.peers.clone(), self.retry_max);
        let router = ctx.address();
        let Deliver {
            from,
            id,
            mut fresh,
        } = deliver;
        actix::spawn(async move {
            while let Outcome::Retry(after) =
                attempt(&store, &peers, (&from, &id, fresh.take()), retry_max).await
            {
                tokio::time::sleep(after).await;
            }
            router.do_send(Settled(from, id));
        });
    }
}

/// One delivery attempt of `from`'s sent notification `id`, by the node holding its lease:
/// on a cluster every node takes up what is queued when it starts, and without the lease two
/// could send one notification at once (a reference recipient would show it twice). A node
/// that finds the lease taken tries again later; by then the notification is usually
/// delivered. A node that dies mid-attempt leaves the lease to expire.
async fn attempt(
    store: &Store,
    peers: &Peers,
    (from, id, fresh): (&AtSign, &str, Option<Fresh>),
    retry_max: Duration,
) -> Outcome {
    let lease = lease_name(id);
    let ttl = lease_ttl(peers.settings().timeout);
    match store.take_lease(from, &lease, ttl).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Retry(retry_max),
        Err(error) => {
            tracing::warn!(%from, id, %error, "taking a notification's delivery lease");
            return Outcome::Retry(retry_max);
        }
    }
    let outcome = attempt_held(store, peers, (from, id, fresh), retry_max).await;
    if let Err(error) = store.drop_lease(from, &lease).await {
        tracing::debug!(%from, id, %error, "dropping a delivery lease; it expires");
    }
    outcome
}

/// [`attempt`] with the lease held.
async fn attempt_held(
    store: &Store,
    peers: &Peers,
    (from, id, fresh): (&AtSign, &str, Option<Fresh>),
    retry_max: Duration,
) -> Outcome {
    let (mut stored, expires_ms, written) = match fresh {
        Some(fresh) => (fresh.stored, fresh.expires, Some(fresh.written)),
        None => match store
            .get_notification(from, NotificationLog::Sent, id)
            .await
        {
            Ok(Some(row)) => match notifications::read_stored(&row) {
                Ok(stored) => (stored, row.expires_ms, None),
                Err(_) => return Outcome::Done,
            },
            Ok(None) => return Outcome::Done,
            Err(error) => {
                tracing::warn!(%from, id, %error, "reading a notification to deliver");
                return Outcome::Retry(retry_max);
            }
        },
    };
    let now = now_ms();
    if stored.status == Status::Delivered {
        return Outcome::Done;
    }
    if expires_ms <= now {
        metrics()
            .notifications
            .with_label_values(&["expired"])
            .inc();
        return Outcome::Done;
    }
    let Some(delivery) = stored.delivery.clone() else {
        return Outcome::Done;
    };
    let to = stored.notification.to.clone();
    let line = line_to_send(store, &stored.notification, &delivery, expires_ms - now).await;
    let answer = peers.ask(from, &to, Mode::Pol, line).await;
    // Sent while it was being queued: its outcome is recorded after the queued write, and
    // not at all if that failed (the sender was told so).
    if let Some(written) = written {
        if written.await != Ok(true) {
            return Outcome::Done;
        }
    }
    let delivered = matches!(&answer, Ok(reply) if reply == "data:success");
    let mut delivery = delivery;
    if delivered {
        stored.status = Status::Delivered;
        let m = metrics();
        m.notifications.with_label_values(&["delivered"]).inc();
        let waited = now_ms().saturating_sub(stored.notification.epoch_millis);
        m.delivery_duration.observe(waited.max(0) as f64 / 1000.0);
    } else {
        metrics().notifications.with_label_values(&["failed"]).inc();
        delivery.attempts += 1;
        stored.status = Status::Errored;
        tracing::info!(%from, %to, id, attempts = delivery.attempts, answer = ?answer, "notification not delivered yet");
    }
    let attempts = delivery.attempts;
    let latest = delivery.latest;
    stored.delivery = Some(delivery);
    // Superseded (strategy:latest) or removed while this attempt ran: leave it so.
    let still_due = store
        .get_notification(from, NotificationLog::Sent, id)
        .await
        .is_ok_and(|now_row| now_row.is_some_and(|r| r.expires_ms == expires_ms));
    if !still_due {
        return Outcome::Done;
    }
    if let Err(error) =
        notifications::put(store, from, NotificationLog::Sent, &stored, expires_ms).await
    {
        tracing::warn!(%from, id, %error, "recording a delivery attempt");
    }
    if delivered || attempts >= MAX_ATTEMPTS {
        return Outcome::Done;
    }
    // strategy:latest, and newer ones were sent while this attempt ran: not worth retrying.
    if let Some(keep) = latest {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let notifier = stored.delivery.as_ref().and_then(|d| d.notifier.as_deref());
        let beyond = match notifier {
            Some(notifier) => beyond_latest(store, from, &to, notifier, keep, now_ms()).await,
            None => Ok(Vec::new()),
        };
        if beyond.is_ok_and(|ids| ids.iter().any(|one| one == id)) {
            if let Err(error) = expire_undelivered(store, from, id, now_ms()).await {
                tracing::warn!(%from, id, %error, "expiring a superseded notification");
            }
            return Outcome::Done;
        }
    }
    // 0.5 s after the first failed attempt, doubling after each further one.
    let backoff = FIRST_RETRY.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    Outcome::Retry(backoff.min(retry_max))
}

/// The command delivering `notification` now: [`notify_line`], without the cache hint
/// (ttr/ccd) if the key it follows was [`overtaken`].
async fn line_to_send(
    store: &Store,
    notification: &Notification,
    delivery: &Delivery,
    ttln: EpochMillis,
) -> String {
    if overtaken(store, notification, delivery).await {
        let hintless = Delivery {
            ttr: None,
            ccd: None,
            ..delivery.clone()
        };
        return notify_line(notification, &hintless, ttln);
    }
    notify_line(notification, delivery, ttln)
}

/// Whether the key an autoNotify follows was written again since (or removed): delivered
/// late, its value or metadata would overwrite the recipient's newer cached copy (a retry of
/// the first write landing after a lookup that fetched the second). Notifications that follow
/// no key are never overtaken; a key that cannot be read is taken as overtaken (the recipient
/// then fetches the key when it needs it).
async fn overtaken(store: &Store, notification: &Notification, delivery: &Delivery) -> bool {
    let Some(notified_at) = delivery.follows_key_at else {
        return false;
    };
    match store.get(&notification.from, &notification.key).await {
        Ok(Some(record)) => {
            record.metadata.updated_at != Some(notified_at)
                || notification
                    .value
                    .as_ref()
                    .is_some_and(|value| record.value.as_ref() != Some(value))
        }
        Ok(None) | Err(_) => true,
    }
}

/// The command the reference sends the recipient's server (docs/notifications.md#delivery), in
/// its order:
/// `notify:id:<id>:<op>:messageType:<type>:notifier:<n>:ttln:<ms>[:ttl:…][:ttb:…][:ttr:…:ccd:…]`
/// `[:isEncrypted:<b>[:sharedKeyEnc:…][:pubKeyCS:…][:encKeyName:…][:encAlgo:…][:ivNonce:…]`
/// `[:skeEncKeyName:…][:skeEncAlgo:…]]:<key>[:<value>]`. `ttln` is what is left of its life.
pub fn notify_line(notification: &Notification, delivery: &Delivery, ttln: EpochMillis) -> String {
    let message_type = notification.message_type;
    let mut line = format!(
        "notify:id:{}:{}:messageType:{message_type}:notifier:{}:ttln:{}",
        notification.id,
        notification.operation,
        delivery.notifier.as_deref().unwrap_or("SYSTEM"),
        ttln.max(1)
    );
    let mut part = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            line.push_str(&format!(":{name}:{value}"));
        }
    };
    part("ttl", delivery.ttl.map(|v| v.to_string()));
    part("ttb", delivery.ttb.map(|v| v.to_string()));
    if let Some(ttr) = delivery.ttr {
        part("ttr", Some(ttr.to_string()));
        part("ccd", Some(delivery.ccd.unwrap_or(false).to_string()));
    }
    if let Some(metadata) = &notification.metadata {
        part("isEncrypted", Some(notification.is_encrypted.to_string()));
        part("sharedKeyEnc", metadata.shared_key_enc.clone());
        part("pubKeyCS", delivery.pub_key_cs.clone());
        part("encKeyName", metadata.enc_key_name.clone());
        part("encAlgo", metadata.enc_algo.clone());
        part("ivNonce", metadata.iv_nonce.clone());
        part("skeEncKeyName", metadata.ske_enc_key_name.clone());
        part("skeEncAlgo", metadata.ske_enc_algo.clone());
    }
    line.push(':');
    line.push_str(&notification.key);
    if let Some(value) = &notification.value {
        line.push(':');
        line.push_str(value);
    }
    line
}

/// Stores a notification from `from` to an atSign on another server as `queued`, for the
/// router to deliver.
pub async fn queue(
    store: &Store,
    router: &Addr<NotificationRouter>,
    from: &AtSign,
    notification: &Notification,
    delivery: Delivery,
    expires: EpochMillis,
) -> Result<(), crate::store::StoreError> {
    metrics().notifications.with_label_values(&["queued"]).inc();
    // A resent id whose first is still waiting is not replaced: the first goes, and the
    // recipient shows the first of an id (as it would if both had been sent).
    let waiting = store
        .get_notification(from, NotificationLog::Sent, &notification.id)
        .await?
        .and_then(|row| notifications::read_stored(&row).ok())
        .is_some_and(|stored| stored.status != Status::Delivered);
    if waiting {
        router.do_send(Deliver {
            from: from.clone(),
            id: notification.id.clone(),
            fresh: None,
        });
        return Ok(());
    }
    let stored = Stored {
        notification: notification.clone(),
        status: Status::Queued,
        delivery: Some(delivery),
        to_self: false,
    };
    // Sent while the write is made durable; the caller's answer waits for the write.
    let (written, fresh_written) = oneshot::channel();
    router.do_send(Deliver {
        from: from.clone(),
        id: notification.id.clone(),
        fresh: Some(Fresh {
            stored: stored.clone(),
            expires,
            written: fresh_written,
        }),
    });
    let put = notifications::put(store, from, NotificationLog::Sent, &stored, expires).await;
    let _ = written.send(put.is_ok());
    put.map(drop)
}

/// `strategy:latest`: of what `from` still has to deliver to `to` from `notifier`, only the
/// newest `keep` go; the older ones expire now (notify:status then says `expired`), as the
/// reference trims the sender's queue. One being delivered at this moment (its delivery lease
/// is held, [`attempt`]) is left to that attempt: it may well arrive, and a notification that
/// arrived must never read `expired`.
#[derive(Message)]
#[rtype(result = "Result<(), crate::store::StoreError>")]
pub struct Supersede {
    pub from: AtSign,
    pub to: AtSign,
    pub notifier: String,
    pub keep: usize,
    pub now: EpochMillis,
}

impl Handler<Supersede> for NotificationRouter {
    type Result = ResponseFuture<Result<(), crate::store::StoreError>>;

    fn handle(&mut self, job: Supersede, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let lease_ttl = lease_ttl(self.peers.settings().timeout);
        Box::pin(async move { supersede(&store, &job, lease_ttl).await })
    }
}

async fn supersede(
    store: &Store,
    job: &Supersede,
    lease_ttl: Duration,
) -> Result<(), crate::store::StoreError> {
    let Supersede {
        from,
        to,
        notifier,
        keep,
        now,
    } = job;
    for id in beyond_latest(store, from, to, notifier, *keep, *now).await? {
        let lease = lease_name(&id);
        if !store.take_lease(from, &lease, lease_ttl).await? {
            // Being delivered: if that attempt fails, it expires then ([`attempt_held`]).
            continue;
        }
        let expired = expire_undelivered(store, from, &id, *now).await;
        store.drop_lease(from, &lease).await?;
        expired?;
    }
    Ok(())
}

/// strategy:latest's rule, the one place it is decided: of `from`'s notifications still to
/// deliver in `notifier`'s stream to `to`, all but the newest `keep`, oldest first.
async fn beyond_latest(
    store: &Store,
    from: &AtSign,
    to: &AtSign,
    notifier: &str,
    keep: usize,
    now: EpochMillis,
) -> Result<Vec<String>, crate::store::StoreError> {
    let rows = store
        .notifications(from, NotificationLog::Sent, None, usize::MAX)
        .await?;
    let mut waiting = Vec::new();
    for row in rows.iter().filter(|row| row.expires_ms > now) {
        let Ok(stored) = notifications::read_stored(row) else {
            continue;
        };
        if same_stream(&stored, to, notifier) && stored.status != Status::Delivered {
            waiting.push(stored.notification.id);
        }
    }
    // The log is oldest first: the newest `keep` are the last ones.
    let beyond = waiting.len().saturating_sub(keep);
    waiting.truncate(beyond);
    Ok(waiting)
}

/// Expires `from`'s sent notification `id` now (notify:status: `expired`), unless it was
/// delivered meanwhile. The caller holds its delivery lease.
async fn expire_undelivered(
    store: &Store,
    from: &AtSign,
    id: &str,
    now: EpochMillis,
) -> Result<(), crate::store::StoreError> {
    let Some(row) = store
        .get_notification(from, NotificationLog::Sent, id)
        .await?
    else {
        return Ok(());
    };
    match notifications::read_stored(&row) {
        Ok(stored) if stored.status != Status::Delivered => {
            notifications::put(store, from, NotificationLog::Sent, &stored, now)
                .await
                .map(drop)
        }
        _ => Ok(()),
    }
}

/// Whether `stored` is one of `notifier`'s notifications to `to`.
fn same_stream(stored: &Stored, to: &AtSign, notifier: &str) -> bool {
    stored.notification.to == *to
        && stored
            .delivery
            .as_ref()
            .is_some_and(|d| d.notifier.as_deref() == Some(notifier))
}

/// The delivery lease of notification `id`: held by whoever sends it, or expires it.
fn lease_name(id: &str) -> String {
    format!("delivery:{id}")
}

/// How long a delivery lease lasts: longer than an attempt can take (directory, connect,
/// handshake and reply, each bounded by the peer timeout).
pub fn lease_ttl(peer_timeout: Duration) -> Duration {
    peer_timeout.saturating_mul(LEASE_TIMEOUTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::NotificationMetadata;

    fn notification(value: Option<&str>, metadata: Option<NotificationMetadata>) -> Notification {
        Notification {
            id: "n-1".into(),
            from: AtSign::parse("@alice").unwrap(),
            to: AtSign::parse("@bob").unwrap(),
            key: "@bob:phone@alice".into(),
            value: value.map(str::to_string),
            operation: at_common::verb::Operation::Update,
            epoch_millis: 1,
            message_type: at_common::verb::MessageType::Key,
            is_encrypted: true,
            metadata,
        }
    }

    /// Two nodes on one Redis: while the other holds a notification's lease, this one sends
    /// nothing (and leaves the notification as it was); once it is free, it does.
    #[actix_rt::test]
    async fn a_notification_another_node_is_delivering_is_not_sent_again() {
        use crate::store::redis::RedisStore;
        let redis = at_tests::redis::RedisServer::start();
        let this = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let other = Store::new(RedisStore::connect(&redis.url(), "").await.unwrap());
        let alice = AtSign::parse("@alice").unwrap();
        let stored = Stored {
            notification: notification(Some("v"), None),
            status: Status::Queued,
            delivery: Some(Delivery::default()),
            to_self: false,
        };
        let expires = now_ms() + 60_000;
        notifications::put(&this, &alice, NotificationLog::Sent, &stored, expires)
            .await
            .unwrap();
        let state = || async {
            let row = this
                .get_notification(&alice, NotificationLog::Sent, "n-1")
                .await
                .unwrap()
                .unwrap();
            let stored = notifications::read_stored(&row).unwrap();
            (stored.status, stored.delivery.unwrap().attempts)
        };
        let peers = Peers::offline(this.clone());
        let retry_max = Duration::from_secs(7);
        let held = Duration::from_secs(30);
        assert!(other
            .take_lease(&alice, "delivery:n-1", held)
            .await
            .unwrap());
        let outcome = attempt(&this, &peers, (&alice, "n-1", None), retry_max).await;
        assert!(matches!(outcome, Outcome::Retry(after) if after == retry_max));
        assert_eq!(state().await, (Status::Queued, 0), "not attempted");

        other.drop_lease(&alice, "delivery:n-1").await.unwrap();
        // Attempted now: the recipient's server cannot be found (offline peers), so errored.
        let outcome = attempt(&this, &peers, (&alice, "n-1", None), retry_max).await;
        assert!(matches!(outcome, Outcome::Retry(_)));
        assert_eq!(state().await, (Status::Errored, 1));
        assert!(
            other
                .take_lease(&alice, "delivery:n-1", held)
                .await
                .unwrap(),
            "dropped after the attempt"
        );
    }

    /// A notification handed over while its queued write is in flight is attempted at once;
    /// its outcome is recorded only once that write is in, and not at all if it failed (its
    /// sender was told so, and nothing of it is in the log to record).
    #[actix_rt::test]
    async fn a_fresh_notification_is_recorded_only_after_its_queued_write() {
        use crate::store::embedded::Embedded;
        let dir = at_tests::TempDir::new("router-fresh");
        let store = Store::new(Embedded::open(dir.path()).unwrap());
        let peers = Peers::offline(store.clone());
        let alice = AtSign::parse("@alice").unwrap();
        let expires = now_ms() + 60_000;
        let stored = Stored {
            notification: notification(Some("v"), None),
            status: Status::Queued,
            delivery: Some(Delivery::default()),
            to_self: false,
        };
        let fresh = |written| Fresh {
            stored: stored.clone(),
            expires,
            written,
        };
        let row = || async {
            store
                .get_notification(&alice, NotificationLog::Sent, "n-1")
                .await
                .unwrap()
                .map(|row| notifications::read_stored(&row).unwrap().status)
        };

        // The queued write failed: the attempt (unreachable recipient) records nothing and ends.
        let (failed, written) = oneshot::channel();
        failed.send(false).unwrap();
        let outcome = attempt(
            &store,
            &peers,
            (&alice, "n-1", Some(fresh(written))),
            Duration::from_secs(7),
        )
        .await;
        assert!(matches!(outcome, Outcome::Done));
        assert_eq!(row().await, None, "nothing recorded");

        // The queued write lands while the attempt runs: the failure is recorded after it.
        let (landed, written) = oneshot::channel();
        let attempting = actix_rt::spawn({
            let (store, peers, alice) = (store.clone(), peers.clone(), alice.clone());
            let fresh = fresh(written);
            async move {
                attempt(
                    &store,
                    &peers,
                    (&alice, "n-1", Some(fresh)),
                    Duration::from_secs(7),
                )
                .await
            }
        });
        notifications::put(&store, &alice, NotificationLog::Sent, &stored, expires)
            .await
            .unwrap();
        landed.send(true).unwrap();
        let outcome = attempting.await.unwrap();
        assert!(matches!(outcome, Outcome::Retry(_)));
        assert_eq!(row().await, Some(Status::Errored));
    }

    /// An autoNotify of `@bob:phone@alice 123` retried after @alice wrote 456 (and @bob's
    /// server may have fetched and cached 456 meanwhile) still goes, for @bob's monitors, but
    /// without ttr, so @bob's server does not cache 123 over 456. While the key holds what
    /// was notified, the hint goes.
    #[actix_rt::test]
    async fn an_autonotify_overtaken_by_a_newer_write_goes_without_its_cache_hint() {
        use crate::store::{embedded::Embedded, CommitOp, Record};
        use at_common::metadata::Metadata;
        let dir = at_tests::TempDir::new("router-overtaken");
        let store = Store::new(Embedded::open(dir.path()).unwrap());
        let alice = AtSign::parse("@alice").unwrap();
        let write = |value: &str, at: EpochMillis| Record {
            value: Some(value.into()),
            metadata: Metadata {
                ttr: Some(-1),
                updated_at: Some(at),
                ..Metadata::default()
            },
        };
        let sent = notification(Some("123"), None);
        let delivery = Delivery {
            ttr: Some(-1),
            follows_key_at: Some(1_000),
            ..Delivery::default()
        };
        let with_hint = "notify:id:n-1:update:messageType:key:notifier:SYSTEM:ttln:5:ttr:-1:ccd:false:@bob:phone@alice:123";
        let without =
            "notify:id:n-1:update:messageType:key:notifier:SYSTEM:ttln:5:@bob:phone@alice:123";
        let line = || line_to_send(&store, &sent, &delivery, 5);

        store
            .put(&alice, &sent.key, &write("123", 1_000), CommitOp::UpdateAll)
            .await
            .unwrap();
        assert_eq!(line().await, with_hint, "the key holds what was notified");
        store
            .put(&alice, &sent.key, &write("456", 2_000), CommitOp::UpdateAll)
            .await
            .unwrap();
        assert_eq!(line().await, without, "written again since");
        store
            .put(&alice, &sent.key, &write("456", 1_000), CommitOp::UpdateAll)
            .await
            .unwrap();
        assert_eq!(
            line().await,
            without,
            "another value in the same millisecond"
        );
        store.remove(&alice, &sent.key).await.unwrap();
        assert_eq!(line().await, without, "deleted since");

        let explicit = Delivery {
            follows_key_at: None,
            ..delivery.clone()
        };
        assert_eq!(
            line_to_send(&store, &sent, &explicit, 5).await,
            with_hint,
            "a notify of the owner's own follows no key: sent as asked"
        );
    }

    #[test]
    fn the_command_is_in_the_reference_order() {
        let metadata = NotificationMetadata {
            iv_nonce: Some("iv==".into()),
            shared_key_enc: Some("ske".into()),
            ..NotificationMetadata::default()
        };
        let delivery = Delivery {
            notifier: Some("wavi".into()),
            ttr: Some(-1),
            ccd: Some(true),
            ..Delivery::default()
        };
        assert_eq!(
            notify_line(
                &notification(Some("+1:555"), Some(metadata)),
                &delivery,
                900_000
            ),
            "notify:id:n-1:update:messageType:key:notifier:wavi:ttln:900000:ttr:-1:ccd:true:\
             isEncrypted:true:sharedKeyEnc:ske:ivNonce:iv==:@bob:phone@alice:+1:555"
        );
        let mut delete = notification(None, None);
        delete.operation = at_common::verb::Operation::Delete;
        assert_eq!(
            notify_line(&delete, &Delivery::default(), 900_000),
            "notify:id:n-1:delete:messageType:key:notifier:SYSTEM:ttln:900000:@bob:phone@alice"
        );
    }

    #[test]
    fn every_command_sent_parses_as_the_notify_it_describes() {
        use at_common::verb::{Command, NotifyScope};
        let delivery = Delivery {
            ttl: Some(60_000),
            ttr: Some(10),
            ccd: Some(false),
            ..Delivery::default()
        };
        let line = notify_line(
            &notification(Some("v"), Some(NotificationMetadata::default())),
            &delivery,
            5,
        );
        let Ok(Command::Notify(notify)) = Command::parse(&line) else {
            panic!("{line}");
        };
        assert_eq!(notify.id.as_deref(), Some("n-1"));
        assert_eq!(
            notify.scope,
            Some(NotifyScope::To(AtSign::parse("@bob").unwrap()))
        );
        assert_eq!(
            (notify.key.as_str(), notify.value.as_deref()),
            ("phone", Some("v"))
        );
        assert_eq!(
            (notify.meta.ttr, notify.meta.ccd, notify.meta.ttl),
            (Some(10), Some(false), Some(60_000))
        );
        assert_eq!(notify.ttln, Some(5));
    }
}
