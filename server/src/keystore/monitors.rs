//! The atSign's monitor connections on this node, owned by its key store: who subscribed and
//! with which filter, handing each notification out to them, and the stats notifications
//! (paced after writes, and every [`STATS_PERIOD`] while a monitor is open).
//!
//! Notifications reach the key store from the node's [`Monitors`], which follows what any
//! node publishes for the atSign while a key store is registered there: with monitors
//! ([`Monitors::listen`]) or connections logged in with an enrollment ([`Monitors::attend`]).
//! A key store keeps running while its monitors are open (each is a connection,
//! [`super::Attach`]).
//!
//! A monitor starts (its [`Subscribe`] is answered) only once the node hears the atSign's
//! notifications ([`Monitors::ready`]): so a notification published after the monitor's
//! connection got its next reply reaches it, whichever node publishes it. If the node cannot
//! hear them within [`crate::notifications::FOLLOW_TIMEOUT`], the monitor is refused with
//! AT0002 (the store did not answer in time), which closes its connection; its client
//! reconnects and replays from the store.

use std::time::Instant;

use actix::prelude::*;
use at_common::metadata::now_ms;
use at_common::verb::Operation;
use bytes::Bytes;
use futures_channel::mpsc;

use super::KeyStore;
use at_common::error::{AtError, ErrorCode};

use crate::notifications::{HandOut, MonitorView, Notification, MONITOR_QUEUE};

/// At most one stats notification per atSign per this long: a burst of writes ends in one
/// carrying the last commit id (what a client syncs to), not one each (a publish each on Redis).
pub const STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How often every monitor gets a stats notification even without writes (the reference's
/// statsNotificationJobTimeInterval).
pub const STATS_PERIOD: std::time::Duration = std::time::Duration::from_secs(15);

/// A monitor connection of the atSign subscribes: its lines arrive on the receiver. A device
/// logged in with an enrollment (`enrollment`) is read what it may monitor first, and given it
/// back for its replay (an enrollment gone or expired: the error that ends its connection).
#[derive(Message)]
#[rtype(result = "Result<Subscribed, AtError>")]
pub struct Subscribe {
    pub filter: Option<regex::Regex>,
    /// `monitor:selfNotifications`: also the atServer's own notices.
    pub self_notifications: bool,
    pub enrollment: Option<String>,
}

/// A monitor's subscription: its id, its lines, and what it sees.
pub struct Subscribed {
    pub id: u64,
    pub lines: mpsc::Receiver<Bytes>,
    pub view: MonitorView,
}

/// The monitor subscribed as this id is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub u64);

/// The owner's write made commit `commit_id`: a stats notification is due.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StatsChanged {
    pub commit_id: i64,
    pub operation: Operation,
}

/// A monitor's place in its key store; unsubscribes when dropped.
pub struct Subscription {
    pub keystore: Addr<KeyStore>,
    pub id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.keystore.do_send(Unsubscribe(self.id));
    }
}

/// One monitor connection's subscription.
struct Subscriber {
    id: u64,
    view: MonitorView,
    lines: mpsc::Sender<Bytes>,
}

/// What a key store keeps of its atSign's monitors.
#[derive(Default)]
pub(super) struct Local {
    subscribers: Vec<Subscriber>,
    next_id: u64,
    /// When the last stats notification went, and the newest commit waiting to go.
    stats_sent: Option<Instant>,
    stats_waiting: Option<(i64, Operation)>,
    /// While there are monitors: the periodic stats notification's timer (and the node routes
    /// the atSign's notifications here). A key store without monitors runs no timer.
    watching: Option<SpawnHandle>,
    /// Monitors subscribing, not answered yet: they keep the key store watching too.
    starting: usize,
}

impl Local {
    pub(super) fn is_watched(&self) -> bool {
        self.watching.is_some()
    }
}

impl KeyStore {
    /// Gives `notification` to the monitors whose filter it matches. A monitor whose queue is
    /// full is dropped ([`MONITOR_QUEUE`]); one going away too. With none left the node stops
    /// routing notifications here.
    fn hand_out(&mut self, notification: &Notification, to_self: bool, ctx: &mut Context<Self>) {
        let line = notification.monitor_line();
        let (me, now) = (&self.me, now_ms());
        self.monitors.subscribers.retain_mut(|subscriber| {
            if subscriber.view.expired(now) {
                tracing::info!(atsign = %me, "a monitor's enrollment expired; dropping it");
                return false;
            }
            if !subscriber.view.sees(notification, to_self) {
                return true;
            }
            match subscriber.lines.try_send(line.clone()) {
                Ok(()) => true,
                Err(full) if full.is_full() => {
                    tracing::info!(atsign = %me, "a monitor fell too far behind; dropping it");
                    false
                }
                Err(_) => false,
            }
        });
        self.unwatch_if_none(ctx);
    }

    /// With the first monitor: the node routes the atSign's notifications here, and the
    /// periodic stats notification runs.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        if self.monitors.is_watched() {
            return;
        }
        let here: Recipient<HandOut> = ctx.address().recipient();
        self.services.monitors.listen(&self.me, here);
        let periodic = ctx.run_interval(STATS_PERIOD, |act, ctx| act.periodic_stats(ctx));
        self.monitors.watching = Some(periodic);
    }

    /// With the last monitor gone (and none starting): neither.
    fn unwatch_if_none(&mut self, ctx: &mut Context<Self>) {
        if !self.monitors.subscribers.is_empty() || self.monitors.starting > 0 {
            return;
        }
        if let Some(periodic) = self.monitors.watching.take() {
            ctx.cancel_future(periodic);
            self.services.monitors.forget(&self.me);
        }
    }

    /// The stats notification for commit `commit_id`, to the atSign's monitors on every node.
    fn send_stats(&mut self, commit_id: i64, operation: Operation, ctx: &mut Context<Self>) {
        self.monitors.stats_sent = Some(Instant::now());
        let stats = Notification::stats(&self.me, commit_id, operation, now_ms());
        let (monitors, me) = (self.services.monitors.clone(), self.me.clone());
        ctx.spawn(async move { monitors.publish(&me, &stats).await }.into_actor(self));
    }

    /// The reference's periodic stats notification: each atSign with a monitor on this node
    /// gets its last commit id on this node's monitors only (every node sends its own).
    fn periodic_stats(&mut self, ctx: &mut Context<Self>) {
        let (store, me) = (self.services.store.clone(), self.me.clone());
        let last = async move { store.last_commit_id(&me).await };
        ctx.spawn(last.into_actor(self).map(|last, act, ctx| match last {
            Ok(last) => {
                let last = last.map_or(-1, |id| i64::try_from(id).unwrap_or(i64::MAX));
                let stats = Notification::stats(&act.me, last, Operation::Update, now_ms());
                act.hand_out(&stats, false, ctx);
            }
            Err(error) => {
                tracing::debug!(atsign = %act.me, %error, "no periodic stats notification");
            }
        }));
    }
}

impl Handler<Subscribe> for KeyStore {
    type Result = ResponseActFuture<Self, Result<Subscribed, AtError>>;

    /// Watched at once (the node starts following the atSign, if it did not yet), answered
    /// once the node hears the atSign ([`Monitors::ready`]) and the enrollment, if any, is read.
    fn handle(&mut self, subscribe: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let (store, me) = (self.services.store.clone(), self.me.clone());
        let grants = std::sync::Arc::clone(&self.grants);
        let grant = async move {
            match &subscribe.enrollment {
                Some(id) => grants.of(&store, &me, id, now_ms()).await.map(Some),
                None => Ok(None),
            }
            .map(|grant| MonitorView {
                filter: subscribe.filter,
                self_notifications: subscribe.self_notifications,
                grant,
            })
        };
        let (monitors, me) = (self.services.monitors.clone(), self.me.clone());
        let ready = async move { monitors.ready(&me).await };
        self.monitors.starting += 1;
        self.watch(ctx);
        let started = futures_util::future::join(grant, ready);
        Box::pin(started.into_actor(self).map(|(view, ready), act, ctx| {
            act.monitors.starting -= 1;
            let view = match (view, ready) {
                (Ok(view), true) => view,
                (Err(refused), _) => {
                    act.unwatch_if_none(ctx);
                    return Err(refused);
                }
                (Ok(_), false) => {
                    tracing::warn!(atsign = %act.me, "cannot hear the atSign's notifications in time; refusing a monitor");
                    act.unwatch_if_none(ctx);
                    return Err(AtError::with_detail(
                        ErrorCode::DataStore,
                        "notifications cannot be followed now; try again",
                    ));
                }
            };
            let (lines, receiver) = mpsc::channel(MONITOR_QUEUE);
            let id = act.monitors.next_id;
            act.monitors.next_id += 1;
            act.monitors.subscribers.push(Subscriber {
                id,
                view: view.clone(),
                lines,
            });
            Ok(Subscribed {
                id,
                lines: receiver,
                view,
            })
        }))
    }
}

impl Handler<Unsubscribe> for KeyStore {
    type Result = ();

    fn handle(&mut self, Unsubscribe(id): Unsubscribe, ctx: &mut Context<Self>) {
        self.monitors.subscribers.retain(|s| s.id != id);
        self.unwatch_if_none(ctx);
    }
}

impl Handler<HandOut> for KeyStore {
    type Result = ();

    fn handle(&mut self, out: HandOut, ctx: &mut Context<Self>) {
        match out {
            HandOut::Notification {
                notification,
                to_self,
            } => self.hand_out(&notification, to_self, ctx),
            HandOut::Missed => {
                // Dropping their queues closes their connections ([`MONITOR_QUEUE`] likewise).
                tracing::info!(atsign = %self.me, monitors = self.monitors.subscribers.len(), "monitors missed notifications; dropping them so they replay");
                self.monitors.subscribers.clear();
                self.unwatch_if_none(ctx);
            }
        }
    }
}

impl Handler<StatsChanged> for KeyStore {
    type Result = ();

    /// At once if none went in the last [`STATS_EVERY`], else at the end of that window with
    /// the newest commit id.
    fn handle(&mut self, changed: StatsChanged, ctx: &mut Context<Self>) {
        let newest = (changed.commit_id, changed.operation);
        if self.monitors.stats_waiting.is_some() {
            self.monitors.stats_waiting = Some(newest);
            return;
        }
        let elapsed = self
            .monitors
            .stats_sent
            .map_or(STATS_EVERY, |sent| sent.elapsed());
        if elapsed >= STATS_EVERY {
            return self.send_stats(newest.0, newest.1, ctx);
        }
        self.monitors.stats_waiting = Some(newest);
        ctx.run_later(STATS_EVERY - elapsed, |act, ctx| {
            if let Some((commit_id, operation)) = act.monitors.stats_waiting.take() {
                act.send_stats(commit_id, operation, ctx);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use at_common::AtSign;
    use at_tests::TempDir;
    use futures_util::StreamExt;

    use super::*;

    #[actix_rt::test]
    async fn a_burst_of_writes_makes_one_stats_notification_now_and_one_with_the_newest_id() {
        let dir = TempDir::new("stats-pacing");
        let hosts = super::super::tests::hosts(&dir, Duration::from_secs(60)).await;
        let alice = AtSign::parse("@alice").unwrap();
        let keystore = hosts.get(&alice);
        let Subscribed { mut lines, .. } = keystore
            .send(Subscribe {
                filter: None,
                self_notifications: false,
                enrollment: None,
            })
            .await
            .unwrap()
            .unwrap();
        for commit_id in 0..100 {
            keystore.do_send(StatsChanged {
                commit_id,
                operation: Operation::Update,
            });
        }
        let first = tokio::time::timeout(Duration::from_secs(5), lines.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&first).contains("\"value\":\"0\""),
            "{first:?}"
        );
        let last = tokio::time::timeout(Duration::from_secs(5), lines.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&last).contains("\"value\":\"99\""),
            "{last:?}"
        );
        // Nothing else: the 98 in between were folded into the last.
        let more = tokio::time::timeout(STATS_EVERY * 3, lines.next()).await;
        assert!(more.is_err(), "{more:?}");
    }

    /// The notification logs of an embedded store, posing as a shared one whose subscriptions
    /// Redis confirms only when the test does (through `follows`).
    struct Unconfirmed {
        logs: crate::store::Store,
        follows: crate::store::feed::Follows,
    }

    #[async_trait::async_trait]
    impl crate::store::NotificationLogs for Unconfirmed {
        async fn put_notification(
            &self,
            atsign: &AtSign,
            log: crate::store::NotificationLog,
            row: &crate::store::NotificationRow,
        ) -> Result<(), crate::store::StoreError> {
            self.logs.put_notification(atsign, log, row).await
        }

        async fn notifications(
            &self,
            atsign: &AtSign,
            log: crate::store::NotificationLog,
            after_ms: Option<at_common::metadata::EpochMillis>,
            limit: usize,
        ) -> Result<Vec<crate::store::NotificationRow>, crate::store::StoreError> {
            self.logs.notifications(atsign, log, after_ms, limit).await
        }

        async fn get_notification(
            &self,
            atsign: &AtSign,
            log: crate::store::NotificationLog,
            id: &str,
        ) -> Result<Option<crate::store::NotificationRow>, crate::store::StoreError> {
            self.logs.get_notification(atsign, log, id).await
        }

        async fn remove_notification(
            &self,
            atsign: &AtSign,
            log: crate::store::NotificationLog,
            id: &str,
        ) -> Result<bool, crate::store::StoreError> {
            self.logs.remove_notification(atsign, log, id).await
        }

        async fn publish_notification(
            &self,
            _: &AtSign,
            _: &[u8],
        ) -> Result<bool, crate::store::StoreError> {
            Ok(true)
        }

        fn watch_notifications(&self) -> Option<crate::store::feed::NotificationWatch> {
            let (_, feed) = crate::store::feed::feed();
            Some(crate::store::feed::NotificationWatch {
                feed,
                follows: self.follows.clone(),
            })
        }
    }

    fn plain_monitor() -> Subscribe {
        Subscribe {
            filter: None,
            self_notifications: false,
            enrollment: None,
        }
    }

    /// `monitor` is answered only once the node's subscription to the atSign is confirmed (so
    /// nothing published after the answer can miss it); a second monitor at once; and a monitor
    /// whose atSign cannot be followed in time is refused with AT0002, the atSign unfollowed.
    #[actix_rt::test]
    async fn a_monitor_is_answered_once_its_atsign_is_heard_and_refused_if_it_never_is() {
        use crate::notifications::FOLLOW_TIMEOUT;
        let dir = TempDir::new("monitor-follow");
        let embedded = crate::store::open(&Default::default(), dir.path())
            .await
            .unwrap();
        let follows = crate::store::feed::Follows::default();
        let store = embedded.clone().with_notifications(Unconfirmed {
            logs: embedded,
            follows: follows.clone(),
        });
        let hosts = super::super::tests::hosts_on(store, Duration::from_secs(60));
        let alice = AtSign::parse("@alice").unwrap();
        let keystore = hosts.get(&alice);
        let mut answer = Box::pin(keystore.send(plain_monitor()));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut answer).await;
        assert!(
            early.is_err(),
            "answered before the subscription was confirmed"
        );
        assert!(follows.is_followed(&alice), "subscription asked for");
        let (pending, _) = follows.pending(&Default::default());
        assert_eq!(pending.len(), 1);
        follows.confirm(&alice, pending[0].1);
        let first = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered once confirmed")
            .unwrap();
        assert!(first.is_ok());
        let second = tokio::time::timeout(Duration::from_secs(1), keystore.send(plain_monitor()))
            .await
            .expect("heard already: answered at once")
            .unwrap();
        assert!(second.is_ok());
        // Never confirmed: refused after the bound, and no longer followed.
        let bob = AtSign::parse("@bob").unwrap();
        let started = std::time::Instant::now();
        let refused = tokio::time::timeout(
            FOLLOW_TIMEOUT + Duration::from_secs(5),
            hosts.get(&bob).send(plain_monitor()),
        )
        .await
        .expect("answered within the bound")
        .unwrap();
        assert!(started.elapsed() >= FOLLOW_TIMEOUT);
        let code = refused.err().map(|e| e.code());
        assert_eq!(code, Some(ErrorCode::DataStore));
        assert!(!follows.is_followed(&bob));
        assert!(follows.is_followed(&alice));
    }

    /// Told that notifications of its atSign were dropped on their way from Redis, the key
    /// store ends its monitors (their clients replay from the store).
    #[actix_rt::test]
    async fn monitors_that_missed_a_notification_are_ended() {
        let dir = TempDir::new("monitor-missed");
        let hosts = super::super::tests::hosts(&dir, Duration::from_secs(60)).await;
        let keystore = hosts.get(&AtSign::parse("@alice").unwrap());
        let Subscribed { mut lines, .. } = keystore.send(plain_monitor()).await.unwrap().unwrap();
        keystore.do_send(HandOut::Missed);
        let next = tokio::time::timeout(Duration::from_secs(5), lines.next()).await;
        assert!(matches!(next, Ok(None)), "ended: {next:?}");
    }

    /// A device's monitor holds its enrollment's grant: once the enrollment's keys expire
    /// (`apkamKeysExpiryInMillis`), the next hand-out drops the monitor (its connection closes),
    /// as the device's next command would end its connection.
    #[actix_rt::test]
    async fn a_devices_monitor_ends_when_its_enrollment_expires() {
        use crate::access::{Asker, OwnerAuth};
        use at_common::reply::Reply;
        let dir = TempDir::new("monitor-expiry");
        let hosts = super::super::tests::hosts(&dir, Duration::from_secs(60)).await;
        let alice = AtSign::parse("@alice").unwrap();
        let keystore = hosts.get(&alice);
        let data = |reply: Result<Reply, AtError>| match reply {
            Ok(Reply::Data(json)) => json,
            other => panic!("{other:?}"),
        };
        // A pkam owner's request is pending; approved, its keys live 300 ms.
        let mut request = super::super::tests::run(
            r#"enroll:request:{"appName":"buzz","deviceName":"d","namespaces":{"buzz":"r"},"apkamPublicKey":"k","apkamKeysExpiryInMillis":300}"#,
        );
        request.asker = Asker::Owner {
            via: OwnerAuth::Pkam,
            enrollment: None,
        };
        let pending = data(keystore.send(request).await.unwrap());
        let id = pending
            .strip_prefix(r#"{"enrollmentId":""#)
            .and_then(|rest| rest.strip_suffix(r#"","status":"pending"}"#))
            .unwrap()
            .to_string();
        let approve = format!(
            r#"enroll:approve:{{"enrollmentId":"{id}","encryptedDefaultEncryptionPrivateKey":"p","encryptedDefaultSelfEncryptionKey":"s"}}"#
        );
        data(
            keystore
                .send(super::super::tests::run(&approve))
                .await
                .unwrap(),
        );
        let Subscribed {
            mut lines, view, ..
        } = keystore
            .send(Subscribe {
                filter: None,
                self_notifications: false,
                enrollment: Some(id),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(view
            .grant
            .is_some_and(|g| g.approved && g.expires_at.is_some()));
        keystore.do_send(StatsChanged {
            commit_id: 1,
            operation: Operation::Update,
        });
        let first = tokio::time::timeout(Duration::from_secs(5), lines.next()).await;
        assert!(
            matches!(first, Ok(Some(_))),
            "served while approved: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        keystore.do_send(StatsChanged {
            commit_id: 2,
            operation: Operation::Update,
        });
        let after = tokio::time::timeout(Duration::from_secs(5), lines.next()).await;
        assert!(matches!(after, Ok(None)), "dropped once expired: {after:?}");
    }
}
