//! `notify`, `notify:status`, `notify:list`, `notify:remove` from the owner
//! (docs/notifications.md#notify, docs/notifications.md#reading-the-logs).
//!
//! A notification to oneself is stored in the received log and handed to the monitors on every
//! node at once (only as received, as the reference does). One to any other atSign is
//! recorded as `queued` and handed to the [`NotificationRouter`], which delivers it to the
//! recipient's server: in-process when the recipient is hosted on this cluster, where it is
//! received exactly as from another server ([`receive`]: block list, de-duplication, caching).
//!
//! On a pol connection the notification comes from another server ([`receive`]): it is
//! stored as received from that atSign, shown on the monitors, and its key cached or its
//! cached copy dropped as `ttr`/`ccd` say (docs/notifications.md#receiving).
//!
//! ```text
//! notify:update:@bob:phone@alice:+1-555   → data:<notification id>
//! notify:status:<id>                      → data:delivered | queued | errored | expired | null
//! notify:list[:<regex>]                   → data:[{…}] of received, unexpired; data:null if none
//! notify:remove:<id>                      → data:success
//! ```

use at_common::error::{AtError, ErrorCode};
use at_common::limits::MAX_TTLN_MS;
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::{
    MessageType, Notify, NotifyAll, NotifyRemove, NotifyScope, NotifyStatus, Operation, Strategy,
};
use at_common::AtSign;

use actix::Addr;

use crate::access::{not_authorized, Grant, Use};
use crate::notifications::{self, Delivery, Monitors, Notification, NotificationMetadata, Status};
use crate::remote::cache;
use crate::router::{self, NotificationRouter};
use crate::store::{NotificationLog, Store};
use crate::turn::Turn;

/// Where a notification goes and through what.
pub struct Outbox<'a> {
    pub store: &'a Store,
    pub monitors: &'a Monitors,
    pub router: &'a Addr<NotificationRouter>,
}

/// `notify:…` by `me`'s owner.
pub async fn notify(
    outbox: &Outbox<'_>,
    me: &AtSign,
    cmd: &Notify,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    if cmd.strategy == Some(Strategy::Latest) && cmd.notifier.is_none() {
        return Err(AtError::syntax("notifier is mandatory for strategy latest"));
    }
    let notification = notification_of(cmd, me, now)?;
    let expires = now.saturating_add(ttln_of(cmd));
    let recipient = match &cmd.scope {
        Some(NotifyScope::To(to)) => Some(to),
        _ => None,
    };
    let delivery = delivery_of(cmd);
    deliver(outbox, me, recipient, &notification, delivery, expires).await?;
    if let (Some(keep), Some(to), Some(notifier)) = (latest_n(cmd), recipient, &cmd.notifier) {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let supersede = router::Supersede {
            from: me.clone(),
            to: to.clone(),
            notifier: notifier.clone(),
            keep,
            now,
        };
        match outbox.router.send(supersede).await {
            Ok(done) => done?,
            Err(_) => return Err(ErrorCode::InternalServerException.into()),
        }
    }
    Ok(Reply::Data(notification.id))
}

/// `notify:…` from @peer's server (pol): a notification for `me`, from @peer. Stored as
/// received (once per id: a resent one is acknowledged, not shown again; the log kept within
/// `quota`), handed to `me`'s monitors, and its key cached or uncached as the sender's
/// `ttr`/`ccd` say. Answered `data:success`, which the sender takes as delivered, once it is
/// durable.
///
/// The monitors do not wait for the durable write: they see it one group commit sooner, and a
/// crash before the write lands loses nothing acknowledged (the sender, unanswered, sends it
/// again, and a monitor may then see its id twice). On a pipelined connection the monitor
/// line and the cached key wait for `turn`, so they happen in the order the notifications
/// arrived; the turn ends as soon as they are done.
pub async fn receive(
    store: &Store,
    monitors: &Monitors,
    quota: &std::sync::Arc<notifications::QuotaKeeper>,
    (me, peer): (&AtSign, &AtSign),
    cmd: &Notify,
    turn: Option<&Turn>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    if !matches!(&cmd.scope, Some(NotifyScope::To(to)) if to == me) {
        return Err(AtError::with_detail(
            ErrorCode::Unauthorized,
            format!("{peer} may only notify {me} here"),
        ));
    }
    let notification = notification_of(cmd, peer, now)?;
    let expires = now.saturating_add(ttln_of(cmd));
    let known = store
        .get_notification(me, NotificationLog::Received, &notification.id)
        .await?
        .is_some();
    let stored = async {
        if !known {
            let bytes = notifications::store(
                store,
                me,
                NotificationLog::Received,
                &notification,
                Status::Delivered,
                expires,
            )
            .await?;
            // Others fill this log: it is kept within its quota, the oldest going first.
            quota.stored(store, me, bytes);
        }
        Ok::<(), AtError>(())
    };
    let shown = async {
        if let Some(turn) = turn {
            turn.wait().await;
        }
        if !known {
            monitors.publish(me, &notification).await;
        }
        let cached = cache_as_told(store, quota, (me, peer), cmd, &notification, now).await;
        if let Some(turn) = turn {
            turn.end();
        }
        cached
    };
    let (stored, cached) = tokio::join!(stored, shown);
    stored?;
    cached?;
    Ok(Reply::Data("success".into()))
}

/// What a received key notification does to `me`'s cached copy of its key: a delete drops it
/// (if its `ccd` says so), an update with `ttr` keeps the value sent (while the cache has
/// room). Text messages cache nothing.
async fn cache_as_told(
    store: &Store,
    quota: &notifications::QuotaKeeper,
    (me, peer): (&AtSign, &AtSign),
    cmd: &Notify,
    notification: &Notification,
    now: EpochMillis,
) -> Result<(), AtError> {
    if cmd.message_type == Some(MessageType::Text) {
        return Ok(());
    }
    let cached_key = format!("cached:{}", notification.key).to_lowercase();
    // The reference refuses (after storing the notification) a key it could not cache.
    at_common::limits::check_key(&cached_key)?;
    if cmd.operation == Some(Operation::Delete) {
        cache::drop_if_cascading(store, me, &cached_key).await?;
    } else if cmd.meta.ttr.is_some_and(|ttr| ttr != 0)
        && cache::room_for(store, me, &cached_key, quota.quota().cached_keys).await?
    {
        cache::keep_notified(
            store,
            me,
            &cached_key,
            cmd.value.clone(),
            &cmd.meta,
            peer,
            now,
        )
        .await?;
    }
    Ok(())
}

/// How long the notification is kept: its `ttln`, else the default; at most
/// [`MAX_TTLN_MS`].
fn ttln_of(cmd: &Notify) -> EpochMillis {
    match cmd.ttln {
        Some(ms) if ms > 0 => i64::try_from(ms).map_or(MAX_TTLN_MS, |ms| ms.min(MAX_TTLN_MS)),
        _ => notifications::DEFAULT_TTLN_MS,
    }
}

/// What delivery to another server carries beyond the monitor fields
/// (docs/notifications.md#notify: ttr/ccd only for an update with a value, or a delete).
fn delivery_of(cmd: &Notify) -> Delivery {
    let delete = cmd.operation == Some(Operation::Delete);
    let cache_hint = delete || cmd.value.is_some();
    Delivery {
        notifier: cmd.notifier.clone(),
        ttl: cmd.meta.ttl,
        ttb: cmd.meta.ttb,
        ttr: cmd.meta.ttr.filter(|_| cache_hint),
        ccd: cmd.meta.ccd.filter(|_| cache_hint),
        pub_key_cs: cmd.meta.pub_key_cs.clone(),
        latest: latest_n(cmd),
        follows_key_at: None,
        attempts: 0,
    }
}

/// How many of its notifier's waiting notifications `strategy:latest` keeps (latestN,
/// default 1); `None` for strategy all.
fn latest_n(cmd: &Notify) -> Option<u64> {
    (cmd.strategy == Some(Strategy::Latest)).then(|| cmd.latest_n.unwrap_or(1).max(1))
}

/// The notification `cmd` describes, sent by `sender`; AT0009 when its key names another
/// sender.
fn notification_of(
    cmd: &Notify,
    sender: &AtSign,
    now: EpochMillis,
) -> Result<Notification, AtError> {
    if let Some(owner) = cmd.owner.as_ref().filter(|owner| *owner != sender) {
        return Err(AtError::with_detail(
            ErrorCode::Unauthorized,
            format!("{owner} is not authorized to send notification as {sender}"),
        ));
    }
    let text = cmd.message_type == Some(MessageType::Text);
    let public_key = !text && cmd.key.starts_with("public:");
    let key = match (&cmd.scope, text) {
        (Some(NotifyScope::To(to)), true) => format!("{to}:{}", cmd.key),
        // `@bob:public:phone@alice` tells @bob of a public key: `public:phone@alice`.
        (Some(NotifyScope::To(_)), false) if public_key => format!("{}{sender}", cmd.key),
        (Some(NotifyScope::To(to)), false) => format!("{to}:{}{sender}", cmd.key),
        (Some(NotifyScope::Public), _) => format!("public:{}{sender}", cmd.key),
        (None, _) => return Err(AtError::syntax("notify needs a recipient")),
    };
    // As the reference decides it: a text message is encrypted only if said so; a public key
    // never is; any other key is unless said otherwise.
    let is_encrypted = if text {
        cmd.meta.is_encrypted == Some(true)
    } else if key.starts_with("public:") {
        false
    } else {
        cmd.meta.is_encrypted != Some(false)
    };
    let notification = Notification {
        id: cmd
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        from: sender.clone(),
        to: match &cmd.scope {
            Some(NotifyScope::To(to)) => to.clone(),
            _ => sender.clone(),
        },
        key,
        value: cmd.value.clone(),
        operation: cmd.operation.unwrap_or(Operation::Update),
        epoch_millis: now,
        message_type: cmd.message_type.unwrap_or(MessageType::Key),
        is_encrypted,
        metadata: Some(NotificationMetadata::from(&cmd.meta)),
    };
    Ok(notification)
}

/// Stores and hands out `notification` from `me` to `recipient`: to oneself, only as received;
/// to another atSign, into the sent log as queued, for the router. A public notification (no
/// recipient) is only recorded as sent.
async fn deliver(
    outbox: &Outbox<'_>,
    me: &AtSign,
    recipient: Option<&AtSign>,
    notification: &Notification,
    delivery: Delivery,
    expires: EpochMillis,
) -> Result<(), AtError> {
    use NotificationLog::{Received, Sent};
    let Outbox {
        store,
        monitors,
        router,
    } = outbox;
    match recipient {
        Some(to) if to == me => {
            notifications::store(
                store,
                me,
                Received,
                notification,
                Status::Delivered,
                expires,
            )
            .await?;
            monitors.publish(me, notification).await;
        }
        Some(_) => router::queue(store, router, me, notification, delivery, expires).await?,
        None => {
            notifications::store(store, me, Sent, notification, Status::Queued, expires).await?;
        }
    }
    Ok(())
}

/// What the owner's write did to a key shared with another atSign (autoNotify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `update`: the new value goes along.
    Updated,
    /// `update:meta`: only the metadata changed; no value goes along (the reference's), so the
    /// recipient's cached copy keeps its value and takes the new metadata.
    MetaUpdated,
    Deleted,
}

/// autoNotify (docs/notifications.md#autonotify): after `me`'s owner updated or deleted the key
/// `key` shared with another atSign (`@bob:phone@alice`), that atSign is told, with the stored
/// metadata (and value, for an update), as the reference queues it. Keys of other kinds tell
/// nobody.
pub async fn auto_notify(
    outbox: &Outbox<'_>,
    me: &AtSign,
    key: &at_common::key::AtKey,
    change: Change,
    now: EpochMillis,
) -> Result<(), AtError> {
    let at_common::key::KeyKind::Shared(with) = &key.kind else {
        return Ok(());
    };
    if with == me || key.cached {
        return Ok(());
    }
    let wire = format!("{with}:{}{me}", key.name);
    let record = match change {
        Change::Deleted => None,
        Change::Updated | Change::MetaUpdated => outbox.store.get(me, &wire).await?,
    };
    let metadata = record.as_ref().map(|r| &r.metadata);
    let value = match change {
        Change::Updated => record.as_ref().and_then(|r| r.value.clone()),
        Change::MetaUpdated | Change::Deleted => None,
    };
    let notification = Notification {
        id: uuid::Uuid::new_v4().to_string(),
        from: me.clone(),
        to: with.clone(),
        key: wire,
        value,
        operation: match change {
            Change::Deleted => Operation::Delete,
            Change::Updated | Change::MetaUpdated => Operation::Update,
        },
        epoch_millis: now,
        message_type: MessageType::Key,
        is_encrypted: metadata.and_then(|m| m.is_encrypted).unwrap_or(false),
        metadata: metadata.map(NotificationMetadata::from),
    };
    // The stored ttr/ccd go along, so the recipient's cached copy follows the key.
    let delivery = Delivery {
        ttl: metadata.and_then(|m| m.ttl),
        ttb: metadata.and_then(|m| m.ttb),
        ttr: metadata.and_then(|m| m.ttr),
        ccd: metadata.and_then(|m| m.ccd),
        pub_key_cs: metadata.and_then(|m| m.pub_key_cs.clone()),
        follows_key_at: metadata.map(|m| m.updated_at.unwrap_or(now)),
        ..Delivery::default()
    };
    let expires = now.saturating_add(notifications::DEFAULT_TTLN_MS);
    deliver(outbox, me, Some(with), &notification, delivery, expires).await
}

/// `notify:all:[<op>:][messageType:<t>:][ttl/ttb/ttr/ccd:]@bob,@carol:<key>[@me][:<value>]`:
/// one notification per recipient, as `notify` would send each; `data: {"@bob":"<id>",…}`.
pub async fn notify_all(
    outbox: &Outbox<'_>,
    me: &AtSign,
    cmd: &NotifyAll,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let mut ids = serde_json::Map::new();
    for to in &cmd.recipients {
        let one = Notify {
            operation: cmd.operation,
            message_type: cmd.message_type,
            meta: at_common::metadata::MetadataUpdate {
                ttl: cmd.ttl.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                ttb: cmd.ttb.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                ttr: cmd.ttr,
                ccd: cmd.ccd,
                ..Default::default()
            },
            scope: Some(NotifyScope::To(to.clone())),
            key: cmd.key.clone(),
            owner: cmd.owner.clone(),
            value: cmd.value.clone(),
            ..Notify::default()
        };
        let Reply::Data(id) = notify(outbox, me, &one, now).await? else {
            return Err(ErrorCode::InternalServerException.into());
        };
        ids.insert(to.as_str().to_string(), serde_json::Value::from(id));
    }
    Ok(Reply::DataSpaced(
        serde_json::Value::Object(ids).to_string(),
    ))
}

/// `notify:status:<id>`: of a notification `me` sent (or sent itself).
pub async fn notify_status(
    store: &Store,
    me: &AtSign,
    cmd: &NotifyStatus,
    grant: Option<&Grant>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    for log in [NotificationLog::Sent, NotificationLog::Received] {
        if let Some(row) = store.get_notification(me, log, &cmd.id).await? {
            let (notification, status) = notifications::read(&row)?;
            if let Some(grant) = grant.filter(|g| !g.permits(&notification.key, Use::Read)) {
                return Err(not_authorized(grant, "fetch notify", &notification.key));
            }
            if row.expires_ms <= now {
                return Ok(Reply::Data("expired".into()));
            }
            let word = match status {
                Status::Delivered => "delivered",
                Status::Queued => "queued",
                Status::Errored => "errored",
            };
            return Ok(Reply::Data(word.into()));
        }
    }
    Ok(Reply::Null)
}

/// `notify:remove:<id>`: forgets it, sent or received; a device only what its enrollment
/// may write.
pub async fn notify_remove(
    store: &Store,
    me: &AtSign,
    cmd: &NotifyRemove,
    grant: Option<&Grant>,
) -> Result<Reply, AtError> {
    for log in NotificationLog::BOTH {
        if let Some(grant) = grant {
            if let Some(row) = store.get_notification(me, log, &cmd.id).await? {
                let (notification, _) = notifications::read(&row)?;
                if !grant.permits(&notification.key, Use::Write) {
                    return Err(not_authorized(grant, "remove notify", &notification.key));
                }
            }
        }
    }
    for log in NotificationLog::BOTH {
        store.remove_notification(me, log, &cmd.id).await?;
    }
    Ok(Reply::Data("success".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use at_common::verb::Command;

    fn notification(line: &str) -> Notification {
        let Ok(Command::Notify(cmd)) = Command::parse(line) else {
            panic!("{line}")
        };
        notification_of(&cmd, &AtSign::parse("@alice").unwrap(), 1).unwrap()
    }

    #[test]
    fn keys_and_encryption_are_decided_as_the_reference_does() {
        let shown = |line: &str| {
            let n = notification(line);
            (n.key, n.is_encrypted)
        };
        let key = |k: &str, e: bool| (k.to_string(), e);
        // A shared key is encrypted unless said otherwise.
        assert_eq!(
            shown("notify:update:@bob:phone@alice:v"),
            key("@bob:phone@alice", true)
        );
        assert_eq!(
            shown("notify:update:isEncrypted:false:@bob:phone@alice:v"),
            key("@bob:phone@alice", false)
        );
        // A public key never is, even if said so; its key names no recipient.
        assert_eq!(
            shown("notify:update:isEncrypted:true:@bob:public:phone@alice:v"),
            key("public:phone@alice", false)
        );
        // A text message is only if said so; its key has no sender.
        assert_eq!(
            shown("notify:messageType:text:@bob:hello"),
            key("@bob:hello", false)
        );
        assert_eq!(
            shown("notify:messageType:text:isEncrypted:true:@bob:aGk="),
            key("@bob:aGk=", true)
        );
    }
}
