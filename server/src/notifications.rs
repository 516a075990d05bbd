//! Notifications between atSigns hosted on this cluster, and the monitor connections that
//! stream them (docs/notifications.md, docs/clients.md#monitor).
//!
//! - [`Notification`]: one notification, its stored form and its monitor line
//!   (`notification: {json}\n`, the reference's key order).
//! - [`Monitors`]: the bus. A notification is published through the store when the store is
//!   shared (Redis: on the recipient's own channel, heard by every node that follows the
//!   recipient, this one included) and handed on this node to the key store of its atSign,
//!   which owns the atSign's monitor connections ([`crate::keystore`]); with the embedded
//!   store it is handed over directly. A node follows an atSign while it holds monitors of it
//!   or connections logged in with one of its enrollments (which a revocation closes), and a
//!   monitor counts as started only once the node hears the atSign ([`Monitors::ready`]).
//!
//! Every [`crate::keystore::STATS_PERIOD`], and after each write, monitors get the stats
//! notification (`id` `-1`, the last commit id), the cue for clients to sync.
//!
//! Delivery to atSigns on other atServers is [`crate::router`]'s: such a notification is kept
//! in the sender's sent log, `queued` until delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::{Message, Recipient};
use at_common::metadata::EpochMillis;
use at_common::verb::{MessageType, Operation};
use at_common::AtSign;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::feed::{Follows, Heard, NotificationWatch};
use crate::store::{NotificationLog, NotificationRow, Store, StoreError};

/// How long a notification is kept when the sender gives no `ttln` (the reference's code
/// default, `notification.expiryInMins` 1440).
pub const DEFAULT_TTLN_MS: i64 = 24 * 60 * 60 * 1000;

/// The id of the stats notification.
pub const STATS_ID: &str = "-1";

/// Where a notification stands, for `notify:status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Delivered,
    Queued,
    Errored,
}

/// The metadata a notification carries, in the reference's monitor order; absent ones `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationMetadata {
    pub enc_key_name: Option<String>,
    pub enc_algo: Option<String>,
    pub iv_nonce: Option<String>,
    pub ske_enc_key_name: Option<String>,
    pub ske_enc_algo: Option<String>,
    pub shared_key_enc: Option<String>,
}

/// The six fields, whichever carries them: what the sender gave (`notify`) or what is
/// stored with a shared key (autoNotify).
macro_rules! notification_metadata_from {
    ($($source:ty),*) => {$(
        impl From<&$source> for NotificationMetadata {
            fn from(m: &$source) -> Self {
                NotificationMetadata {
                    enc_key_name: m.enc_key_name.clone(),
                    enc_algo: m.enc_algo.clone(),
                    iv_nonce: m.iv_nonce.clone(),
                    ske_enc_key_name: m.ske_enc_key_name.clone(),
                    ske_enc_algo: m.ske_enc_algo.clone(),
                    shared_key_enc: m.shared_key_enc.clone(),
                }
            }
        }
    )*};
}
notification_metadata_from!(
    at_common::metadata::MetadataUpdate,
    at_common::metadata::Metadata
);

/// One notification as a monitor shows it; keys in the reference's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    pub from: AtSign,
    pub to: AtSign,
    pub key: String,
    pub value: Option<String>,
    /// `update` or `delete`.
    pub operation: Operation,
    pub epoch_millis: EpochMillis,
    /// Written `MessageType.key` or `MessageType.text` (the Dart enum's string).
    #[serde(with = "dart_message_type")]
    pub message_type: MessageType,
    pub is_encrypted: bool,
    /// `null` for the stats notification.
    pub metadata: Option<NotificationMetadata>,
}

/// [`MessageType`] as the reference's JSON writes it: `MessageType.key`, `MessageType.text`.
mod dart_message_type {
    use at_common::verb::MessageType;
    use serde::{Deserialize, Deserializer, Serializer};

    const PREFIX: &str = "MessageType.";

    pub fn serialize<S: Serializer>(value: &MessageType, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{PREFIX}{value}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MessageType, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        match text.strip_prefix(PREFIX) {
            Some("key") => Ok(MessageType::Key),
            Some("text") => Ok(MessageType::Text),
            _ => Err(serde::de::Error::custom(format!(
                "not a message type: {text:?}"
            ))),
        }
    }
}

/// What a log row's body holds: the notification, and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub notification: Notification,
    pub status: Status,
    /// For a notification to another atServer: what delivery sends beyond what monitors show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// The atServer's own notice to its owner (the reference's `self` type, e.g. another
    /// atSign's public key changed): shown only to monitors that asked for
    /// `:selfNotifications`, and not listed by `notify:list`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub to_self: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What goes between nodes (and to this node's own monitors): the notification, and whether
/// only `:selfNotifications` monitors see it. Flattened, so a node reading it as a plain
/// [`Notification`] still can.
#[derive(Serialize, Deserialize)]
struct Published {
    #[serde(flatten)]
    notification: Notification,
    #[serde(default, skip_serializing_if = "is_false")]
    to_self: bool,
}

/// What delivering a notification to another atServer needs beyond the monitor fields
/// (docs/notifications.md#delivery), and how delivery has gone so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub notifier: Option<String>,
    pub ttl: Option<i64>,
    pub ttb: Option<i64>,
    /// With `ccd`: the recipient caches the key (update with a value) or drops its copy
    /// (delete).
    pub ttr: Option<i64>,
    pub ccd: Option<bool>,
    pub pub_key_cs: Option<String>,
    /// `strategy:latest`: of `notifier`'s notifications waiting for the same recipient, only
    /// the newest this many go ([`crate::router`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<u64>,
    /// autoNotify of an update: the shared key's `updatedAt` when it was notified. Sent after
    /// the key was written again (a retry overtaken by a newer write), the notification goes
    /// without its cache hint, so the recipient's cached copy never steps back to an older
    /// value ([`crate::router`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows_key_at: Option<EpochMillis>,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl Notification {
    /// Compact JSON, keys in the reference's order.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("strings and numbers serialise")
    }

    /// `notification: {json}\n`: one line, as monitors stream it.
    pub fn monitor_line(&self) -> Bytes {
        Bytes::from(format!("notification: {}\n", self.json()))
    }

    /// The stats notification (`id` `-1`) the reference sends an atSign's monitors after each
    /// write, carrying the last commit id: clients take it as the cue to sync.
    pub fn stats(
        atsign: &AtSign,
        last_commit_id: i64,
        operation: Operation,
        now: EpochMillis,
    ) -> Self {
        Notification {
            id: STATS_ID.to_string(),
            from: atsign.clone(),
            to: atsign.clone(),
            key: format!("statsNotification.{atsign}"),
            value: Some(last_commit_id.to_string()),
            operation,
            epoch_millis: now,
            message_type: MessageType::Key,
            is_encrypted: false,
            metadata: None,
        }
    }

    /// Whether a monitor with `filter` shows it: the regex found in the key or in the sender
    /// without its `@` (the reference's unanchored match). The stats notification always.
    pub fn matches(&self, filter: Option<&regex::Regex>) -> bool {
        self.id == STATS_ID
            || filter.is_none_or(|re| re.is_match(&self.key) || re.is_match(self.from.name()))
    }
}

/// What one monitor connection asked to see.
#[derive(Debug, Clone, Default)]
pub struct MonitorView {
    /// The regex of `monitor <regex>`.
    pub filter: Option<regex::Regex>,
    /// `monitor:selfNotifications`: also the atServer's own notices (enrollment requests, key
    /// changes of others).
    pub self_notifications: bool,
    /// The enrollment a device logged in with: only what it may monitor
    /// ([`crate::access::Use::Monitor`]). The stats notification goes to every monitor.
    pub grant: Option<crate::access::Grant>,
}

impl MonitorView {
    /// Whether the device's enrollment this monitor was opened with has expired by `now`: the
    /// monitor ends (its connection closes), as a command of that device would end it.
    pub fn expired(&self, now: EpochMillis) -> bool {
        self.grant
            .as_ref()
            .and_then(|grant| grant.expires_at)
            .is_some_and(|at| at <= now)
    }

    /// Whether this monitor is shown `notification` (`to_self`: one of the atServer's own).
    pub fn sees(&self, notification: &Notification, to_self: bool) -> bool {
        let permitted = notification.id == STATS_ID
            || self
                .grant
                .as_ref()
                .is_none_or(|grant| grant.permits(&notification.key, crate::access::Use::Monitor));
        (self.self_notifications || !to_self)
            && permitted
            && notification.matches(self.filter.as_ref())
    }
}

/// The id of a monitor line (`notification: {"id":"<id>",…`); `None` for the stats
/// notification, which is shown every time.
pub fn id_of(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"notification: {\"id\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    (id != STATS_ID).then_some(id)
}

/// Stores `notification` in `atsign`'s `log` with `status`, kept until `expires_ms`; says how
/// many bytes its row holds.
pub async fn store(
    store: &Store,
    atsign: &AtSign,
    log: NotificationLog,
    notification: &Notification,
    status: Status,
    expires_ms: EpochMillis,
) -> Result<usize, StoreError> {
    let stored = Stored {
        notification: notification.clone(),
        status,
        delivery: None,
        to_self: false,
    };
    put(store, atsign, log, &stored, expires_ms).await
}

/// Stores `notification`, the atServer's own notice to `atsign`'s owner, in its received log
/// (see [`Stored::to_self`]), kept until `expires_ms`.
pub async fn store_to_self(
    store: &Store,
    atsign: &AtSign,
    notification: &Notification,
    expires_ms: EpochMillis,
) -> Result<(), StoreError> {
    let stored = Stored {
        notification: notification.clone(),
        status: Status::Delivered,
        delivery: None,
        to_self: true,
    };
    put(
        store,
        atsign,
        NotificationLog::Received,
        &stored,
        expires_ms,
    )
    .await
    .map(drop)
}

/// Stores `stored` in `atsign`'s `log`, kept until `expires_ms`, replacing the row with its id;
/// says how many bytes the row holds.
pub async fn put(
    store: &Store,
    atsign: &AtSign,
    log: NotificationLog,
    stored: &Stored,
    expires_ms: EpochMillis,
) -> Result<usize, StoreError> {
    let row = NotificationRow {
        id: stored.notification.id.clone(),
        at_ms: stored.notification.epoch_millis,
        expires_ms,
        body: serde_json::to_vec(stored)?,
    };
    store.put_notification(atsign, log, &row).await?;
    Ok(row.body.len())
}

/// How much of what others send an atSign keeps ([`enforce_quota`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Received notifications (`received_notifications_max`).
    pub count: usize,
    /// Their stored bytes (`received_notification_bytes_max`).
    pub bytes: usize,
    /// Cached copies other atSigns' notifications may make (`cached_keys_max`): past it, a
    /// notification no longer creates a new one (existing copies still follow their keys).
    pub cached_keys: usize,
}

/// What [`enforce_quota`] did: how many notifications went, and what the log holds after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub removed: usize,
    pub count: usize,
    pub bytes: usize,
    /// No row kept is older than this (the time of the oldest row read, or of the last one
    /// removed); `None` if the log was empty.
    pub floor: Option<EpochMillis>,
}

/// How many of the oldest notifications over a quota are removed at once: their writes share
/// the store's group commits.
const REMOVALS_IN_FLIGHT: usize = 64;

/// Keeps `atsign`'s received log within `quota`: the oldest notifications go first (what
/// other atSigns fill cannot grow without bound). Reads the whole log.
pub async fn enforce_quota(
    store: &Store,
    atsign: &AtSign,
    quota: Quota,
) -> Result<Kept, StoreError> {
    enforce_quota_from(store, atsign, quota, None).await
}

/// [`enforce_quota`] on the rows from `floor` on (see [`QuotaKeeper`] for why).
async fn enforce_quota_from(
    store: &Store,
    atsign: &AtSign,
    quota: Quota,
    floor: Option<EpochMillis>,
) -> Result<Kept, StoreError> {
    let rows = store
        .notifications(atsign, NotificationLog::Received, after(floor), usize::MAX)
        .await?;
    let mut count = rows.len();
    let mut bytes: usize = rows.iter().map(|row| row.body.len()).sum();
    let mut over = 0;
    for row in &rows {
        if count <= quota.count && bytes <= quota.bytes {
            break;
        }
        over += 1;
        count -= 1;
        bytes = bytes.saturating_sub(row.body.len());
    }
    let removed = remove_received(store, atsign, &rows[..over]).await?;
    let floor = rows.get(over.saturating_sub(1)).map(|row| row.at_ms);
    Ok(Kept {
        removed,
        count,
        bytes,
        floor,
    })
}

/// The `after_ms` of a read from `floor` on (rows at `floor` itself included).
fn after(floor: Option<EpochMillis>) -> Option<EpochMillis> {
    floor.map(|floor| floor.saturating_sub(1))
}

/// Removes `rows` from `atsign`'s received log; says how many were there to remove.
async fn remove_received(
    store: &Store,
    atsign: &AtSign,
    rows: &[NotificationRow],
) -> Result<usize, StoreError> {
    use futures_util::{StreamExt, TryStreamExt};
    let removed = futures_util::stream::iter(rows)
        .map(|row| store.remove_notification(atsign, NotificationLog::Received, &row.id))
        .buffer_unordered(REMOVALS_IN_FLIGHT)
        .try_fold(
            0,
            |removed, gone| async move { Ok(removed + usize::from(gone)) },
        )
        .await?;
    if removed > 0 {
        tracing::info!(%atsign, removed, "received notifications over the quota; the oldest went");
    }
    Ok(removed)
}

/// Keeps received logs within their quota as notifications arrive, without reading a log
/// each time: it tallies what this node stored in each log since it last read it, and reads
/// it again ([`enforce_quota`], in a task of its own, never holding up a delivery) when the
/// tally passes the quota by a sixteenth, or after a quarter of the quota (count or bytes)
/// arrived here (what other nodes sharing the store, or the atServer's own notices, added
/// meanwhile). What goes is decided on what the read finds, never on the tally alone: the
/// tally can run high (removals elsewhere, rows counted both by a read and as arrived), and a
/// log must not be trimmed below its quota.
///
/// A read starts at the oldest row the last one left (`floor`): a log trimmed from its old
/// end keeps the removed rows' tombstones there until the store compacts them, and a read
/// from the start would step over every one of them (a flood into a full log then cost more
/// the longer it ran).
///
/// So a log overshoots its quota by about a sixteenth on one node; with several nodes sharing
/// a store, by up to a quarter per node until the next read here or maintenance round (which
/// keeps every atSign's quota exactly, reading the whole log, rows stored by a node whose clock
/// is behind this one's included).
pub struct QuotaKeeper {
    quota: Quota,
    tallies: Mutex<HashMap<AtSign, Tally>>,
}

/// The most logs a node tallies (about 100 bytes each); past it the tallies not being read
/// are dropped, so atSigns deprovisioned or long quiet do not hold memory for good.
const TALLIES_MAX: usize = 100_000;

/// What this node knows of one received log.
#[derive(Default)]
struct Tally {
    /// What the log held when last read, plus what was stored here since.
    count: usize,
    bytes: usize,
    /// Stored here since the last read began.
    since_read: usize,
    since_read_bytes: usize,
    /// A read is under way.
    reading: bool,
    /// No row is older than this (as of the last read); `None` before the first.
    floor: Option<EpochMillis>,
}

impl Tally {
    /// Whether the log must be read (and trimmed) now.
    fn due(&self, quota: Quota) -> bool {
        self.count > quota.count.saturating_add(quota.count / 16)
            || self.bytes > quota.bytes.saturating_add(quota.bytes / 16)
            || self.since_read > (quota.count / 4).max(1)
            || self.since_read_bytes > (quota.bytes / 4).max(1)
    }

    /// A read begins: what arrives from now on is counted on top of what it finds.
    fn begin_read(&mut self) {
        self.reading = true;
        self.since_read = 0;
        self.since_read_bytes = 0;
    }
}

impl QuotaKeeper {
    pub fn new(quota: Quota) -> QuotaKeeper {
        QuotaKeeper {
            quota,
            tallies: Mutex::default(),
        }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    fn tallies(&self) -> std::sync::MutexGuard<'_, HashMap<AtSign, Tally>> {
        self.tallies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A notification of `bytes` was stored in `atsign`'s received log: reads the log in the
    /// background and removes what is over the quota when that is due. Must be called on an
    /// actix arbiter.
    pub fn stored(self: &Arc<Self>, store: &Store, atsign: &AtSign, bytes: usize) {
        {
            let mut tallies = self.tallies();
            if tallies.len() >= TALLIES_MAX && !tallies.contains_key(atsign) {
                // Estimates only: forgotten, each log is read again on its next notification.
                tallies.retain(|_, tally| tally.reading);
            }
            let first = !tallies.contains_key(atsign);
            let tally = tallies.entry(atsign.clone()).or_default();
            tally.count = tally.count.saturating_add(1);
            tally.bytes = tally.bytes.saturating_add(bytes);
            tally.since_read = tally.since_read.saturating_add(1);
            tally.since_read_bytes = tally.since_read_bytes.saturating_add(bytes);
            if tally.reading || !(first || tally.due(self.quota)) {
                return;
            }
            tally.begin_read();
        }
        let (keeper, store, atsign) = (Arc::clone(self), store.clone(), atsign.clone());
        actix::spawn(async move { keeper.read(&store, &atsign).await });
    }

    /// Reads and trims `atsign`'s log until what arrived meanwhile leaves it within bounds.
    async fn read(&self, store: &Store, atsign: &AtSign) {
        loop {
            let Some(floor) = self.tallies().get(atsign).map(|tally| tally.floor) else {
                return;
            };
            let kept = enforce_quota_from(store, atsign, self.quota, floor).await;
            let mut tallies = self.tallies();
            let Some(tally) = tallies.get_mut(atsign) else {
                return;
            };
            match kept {
                Ok(kept) => {
                    tally.count = kept.count.saturating_add(tally.since_read);
                    tally.bytes = kept.bytes.saturating_add(tally.since_read_bytes);
                    tally.floor = kept.floor.or(tally.floor);
                }
                Err(error) => {
                    tracing::warn!(%atsign, %error, "cannot keep the received notifications' quota");
                    tally.reading = false;
                    return;
                }
            }
            if !tally.due(self.quota) {
                tally.reading = false;
                return;
            }
            tally.begin_read();
        }
    }
}

/// A stored row read back: the notification and its status.
pub fn read(row: &NotificationRow) -> Result<(Notification, Status), StoreError> {
    let stored = read_stored(row)?;
    Ok((stored.notification, stored.status))
}

/// A stored row read back whole.
pub fn read_stored(row: &NotificationRow) -> Result<Stored, StoreError> {
    Ok(serde_json::from_slice(&row.body)?)
}

/// How many notification lines wait for one monitor connection at most. A monitor that falls
/// this far behind is dropped (its connection closes); the client reconnects with
/// `monitor:<epochMillis>` and the replay from the store gives it what it missed.
///
/// The queue is a `futures_channel` bounded channel, which allocates per line queued, not
/// tokio's, which allocates a block of 32 slots per channel up front: about 1 KiB less for
/// each idle monitor (tens of thousands per node).
pub const MONITOR_QUEUE: usize = 1024;

/// How long a monitor's start waits for the node to hear its atSign's notifications
/// ([`Monitors::ready`]) before it is refused (AT0002: the store does not answer in time).
pub const FOLLOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How notifications reach monitor connections: published for the recipient's followers
/// (through the store when it is shared), and handed on this node to the key store of the
/// atSign, which owns its monitors ([`crate::keystore`]) and is registered here while it has
/// any. Cheap to clone.
#[derive(Clone)]
pub struct Monitors {
    store: Store,
    /// The key stores of this node with something of their atSign to hand messages to; the
    /// node follows exactly these atSigns.
    here: Arc<Mutex<HashMap<AtSign, Here>>>,
    /// What the node follows; `None` when the store is not shared.
    follows: Option<Follows>,
}

/// What one atSign's key store on this node takes from [`Monitors`].
#[derive(Default)]
struct Here {
    /// While it has monitors: their notifications.
    monitors: Option<Recipient<HandOut>>,
    /// While it has connections logged in with an enrollment: what concerns its sessions (a
    /// revoked enrollment, [`Monitors::end_enrollment`]).
    sessions: Option<Recipient<EnrollmentEnded>>,
}

/// APKAM enrollment (id) of the atSign was revoked: the key store tells its connections.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct EnrollmentEnded(pub String);

/// What nodes tell each other of an atSign besides notifications ([`Published`]): the end of
/// one of its enrollments, `{"endedEnrollment":"<id>"}`. Read only when a message is not a
/// notification, so notifications (nearly all of the traffic) are parsed once. A node that
/// knows neither logs it and goes on.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ended {
    ended_enrollment: String,
}

/// What the node hands the key store of an atSign with monitors.
#[derive(Message)]
#[rtype(result = "()")]
// Nearly every one is a notification: boxing it would cost an allocation each, for nothing.
#[allow(clippy::large_enum_variant)]
pub enum HandOut {
    /// A notification for its monitors.
    Notification {
        notification: Notification,
        /// The atServer's own notice: only for monitors that asked for `:selfNotifications`.
        to_self: bool,
    },
    /// Some of its notifications were dropped before reaching them (the node read Redis too
    /// slowly, [`crate::store::feed`]): its monitors end, so their clients reconnect and replay
    /// what they missed from the store.
    Missed,
}

/// How many stored notifications a monitor's replay or a `notify:list` reads at a time.
pub const LOG_PAGE: usize = 256;

/// One page of `atsign`'s `log` after `after` (`None`: from the start), and where the next
/// page starts (`None` after the last). Rows are ordered by time in milliseconds, and a page
/// must not end inside one millisecond (the next page starts strictly after it): a full page
/// gives back the rows of its last millisecond for the next one, unless the page is that
/// millisecond alone, which is then read whole.
pub async fn log_page(
    store: &Store,
    atsign: &AtSign,
    log: NotificationLog,
    after: Option<EpochMillis>,
) -> Result<(Vec<NotificationRow>, Option<EpochMillis>), StoreError> {
    let mut limit = LOG_PAGE;
    loop {
        let mut rows = store.notifications(atsign, log, after, limit).await?;
        if rows.len() < limit {
            return Ok((rows, None));
        }
        let last = rows.last().map_or(EpochMillis::MIN, |row| row.at_ms);
        let keep = rows.iter().take_while(|row| row.at_ms < last).count();
        if keep > 0 {
            rows.truncate(keep);
            return Ok((rows, Some(last - 1)));
        }
        // One millisecond fills the page: read it whole.
        limit = limit.saturating_mul(2);
    }
}

impl Monitors {
    /// The monitors of a node over `store`; when the store is shared, opens the node's
    /// subscription to the atSigns it will follow. Must be called inside a tokio runtime.
    pub fn start(store: Store) -> Monitors {
        let watch = store.watch_notifications();
        let monitors = Monitors {
            store,
            here: Arc::default(),
            follows: watch.as_ref().map(|watch| watch.follows.clone()),
        };
        if let Some(NotificationWatch { mut feed, .. }) = watch {
            let local = monitors.clone();
            tokio::spawn(async move {
                while let Some(heard) = feed.recv().await {
                    match heard {
                        Heard::Message(atsign, payload) => local.heard(&atsign, &payload),
                        Heard::Missed(atsign) => {
                            if let Some(keystore) = local.here(&atsign, |h| h.monitors.clone()) {
                                keystore.do_send(HandOut::Missed);
                            }
                        }
                    }
                }
            });
        }
        monitors
    }

    /// One message published for `atsign`: a notification, or (read only when it is not one,
    /// so that notifications, nearly all of the traffic, are parsed once) an ended enrollment.
    fn heard(&self, atsign: &AtSign, payload: &[u8]) {
        match serde_json::from_slice::<Published>(payload) {
            Ok(p) => self.hand_out(atsign, &p.notification, p.to_self),
            Err(error) => match serde_json::from_slice::<Ended>(payload) {
                Ok(ended) => self.tell_sessions(atsign, ended.ended_enrollment),
                Err(_) => {
                    tracing::warn!(%atsign, %error, "an unreadable published notification")
                }
            },
        }
    }

    /// From now on what concerns `atsign`'s sessions on this node goes to `keystore` (it has
    /// connections logged in with an APKAM enrollment, which a revocation through any node
    /// closes), and the node follows `atsign`.
    pub fn attend(&self, atsign: &AtSign, keystore: Recipient<EnrollmentEnded>) {
        self.update(atsign, |here| here.sessions = Some(keystore));
    }

    /// `atsign` has no connections logged in with an enrollment on this node any more.
    pub fn leave(&self, atsign: &AtSign) {
        self.update(atsign, |here| here.sessions = None);
    }

    /// From now on `atsign`'s notifications on this node go to `keystore` (its key store has
    /// monitors), and the node follows `atsign`. A monitor waits for [`Monitors::ready`]
    /// before it counts as started.
    pub fn listen(&self, atsign: &AtSign, keystore: Recipient<HandOut>) {
        self.update(atsign, |here| here.monitors = Some(keystore));
    }

    /// `atsign` has no monitors on this node any more.
    pub fn forget(&self, atsign: &AtSign) {
        self.update(atsign, |here| here.monitors = None);
    }

    /// Whether what any node publishes for `atsign` from now on reaches this node: at once
    /// when the store is not shared; else once the store confirmed the node's subscription
    /// to `atsign` (which [`Monitors::listen`] or [`Monitors::attend`] asked for), waiting
    /// [`FOLLOW_TIMEOUT`] at most.
    pub async fn ready(&self, atsign: &AtSign) -> bool {
        match &self.follows {
            Some(follows) => follows.ready(atsign, FOLLOW_TIMEOUT).await,
            None => true,
        }
    }

    /// Changes what `atsign`'s key store takes here; the node follows `atsign` exactly while
    /// it takes anything. Under the map's lock, so that following keeps to the map's order.
    fn update(&self, atsign: &AtSign, change: impl FnOnce(&mut Here)) {
        let mut here = self.lock();
        let entry = here.entry(atsign.clone()).or_default();
        change(entry);
        let wanted = entry.monitors.is_some() || entry.sessions.is_some();
        if !wanted {
            here.remove(atsign);
        }
        if let Some(follows) = &self.follows {
            if wanted {
                follows.follow(atsign);
            } else {
                follows.unfollow(atsign);
            }
        }
    }

    /// `atsign`'s enrollment `id` was revoked: the connections logged in with it close, on
    /// every node (through the store when it is shared: on `atsign`'s channel, which every
    /// node with its connections follows).
    pub async fn end_enrollment(&self, atsign: &AtSign, id: &str) {
        let ended = Ended {
            ended_enrollment: id.to_string(),
        };
        let payload = serde_json::to_vec(&ended).expect("strings serialise");
        match self.store.publish_notification(atsign, &payload).await {
            Ok(true) => {}
            Ok(false) => self.tell_sessions(atsign, id.to_string()),
            Err(error) => {
                // Other nodes still refuse its every command: the enrollment is read each time.
                tracing::warn!(%atsign, %error, "could not publish a revoked enrollment; closing its connections here only");
                self.tell_sessions(atsign, id.to_string());
            }
        }
    }

    fn tell_sessions(&self, atsign: &AtSign, id: String) {
        if let Some(keystore) = self.here(atsign, |h| h.sessions.clone()) {
            keystore.do_send(EnrollmentEnded(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AtSign, Here>> {
        self.here.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `atsign`'s key store takes here, read with `pick`.
    fn here<T>(&self, atsign: &AtSign, pick: impl FnOnce(&Here) -> Option<T>) -> Option<T> {
        self.lock().get(atsign).and_then(pick)
    }

    /// Stored, unexpired notifications `atsign` received after `after_ms` that `view` sees, as
    /// monitor lines. Read [`LOG_PAGE`] rows at
    /// a time as the stream is consumed, so a replay costs one page of memory, not the log.
    /// A store error ends the stream (logged; a reconnect replays again).
    pub fn replay(
        &self,
        atsign: &AtSign,
        after_ms: EpochMillis,
        view: MonitorView,
        now_ms: EpochMillis,
    ) -> impl futures_util::Stream<Item = Bytes> + 'static {
        let (store, atsign) = (self.store.clone(), atsign.clone());
        let pages = futures_util::stream::unfold(Some(after_ms), move |after| {
            let (store, atsign) = (store.clone(), atsign.clone());
            async move {
                let after = after?;
                match log_page(&store, &atsign, NotificationLog::Received, Some(after)).await {
                    Ok((rows, next)) => Some((rows, next)),
                    Err(error) => {
                        tracing::warn!(%atsign, %error, "monitor replay failed");
                        None
                    }
                }
            }
        });
        futures_util::StreamExt::flat_map(pages, move |rows| {
            let lines: Vec<Bytes> = rows
                .iter()
                .filter(|row| row.expires_ms > now_ms)
                .filter_map(|row| read_stored(row).ok())
                .filter(|stored| view.sees(&stored.notification, stored.to_self))
                .map(|stored| stored.notification.monitor_line())
                .collect();
            futures_util::stream::iter(lines)
        })
    }

    /// Makes `notification` (received by `atsign`) reach `atsign`'s monitors on every node.
    pub async fn publish(&self, atsign: &AtSign, notification: &Notification) {
        self.publish_as(atsign, notification, false).await;
    }

    /// Makes `notification`, the atServer's own notice ([`store_to_self`]), reach `atsign`'s
    /// `:selfNotifications` monitors on every node.
    pub async fn publish_to_self(&self, atsign: &AtSign, notification: &Notification) {
        self.publish_as(atsign, notification, true).await;
    }

    async fn publish_as(&self, atsign: &AtSign, notification: &Notification, to_self: bool) {
        let published = Published {
            notification: notification.clone(),
            to_self,
        };
        let payload = serde_json::to_vec(&published).expect("strings and numbers serialise");
        match self.store.publish_notification(atsign, &payload).await {
            // Every node following `atsign`, this one included, hands it out when it arrives.
            Ok(true) => {}
            Ok(false) => self.hand_out(atsign, notification, to_self),
            Err(error) => {
                // Stored already: a monitor reconnecting with its last epochMillis gets it.
                tracing::warn!(%atsign, %error, "could not publish a notification; handing it out here only");
                self.hand_out(atsign, notification, to_self);
            }
        }
    }

    /// Hands `notification` to the key store of `atsign`, if it has monitors on this node.
    fn hand_out(&self, atsign: &AtSign, notification: &Notification, to_self: bool) {
        let Some(keystore) = self.here(atsign, |h| h.monitors.clone()) else {
            return;
        };
        keystore.do_send(HandOut::Notification {
            notification: notification.clone(),
            to_self,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use at_tests::TempDir;

    /// Pages never end inside a millisecond, and a millisecond fuller than a page is read
    /// whole: every stored notification is replayed once, in order.
    #[tokio::test]
    async fn a_replay_reads_page_by_page_and_loses_no_row_at_a_page_boundary() {
        use futures_util::StreamExt;
        let dir = TempDir::new("replay-pages");
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .unwrap();
        let alice = AtSign::parse("@alice").unwrap();
        // 250 at distinct times, 50 sharing one (across the first page's end), then 600
        // sharing another (more than two pages).
        let times = (0..250)
            .map(|n| 1_000 + n)
            .chain(std::iter::repeat_n(2_000, 50))
            .chain(std::iter::repeat_n(3_000, 600));
        for (n, at) in times.enumerate() {
            let mut notification = Notification::stats(&alice, 0, Operation::Update, at);
            notification.id = format!("n{n:04}");
            store_to_self(&store, &alice, &notification, i64::MAX)
                .await
                .unwrap();
        }
        let monitors = Monitors::start(store);
        let view = MonitorView {
            self_notifications: true,
            ..MonitorView::default()
        };
        let lines: Vec<Bytes> = monitors.replay(&alice, 0, view, 1).collect().await;
        let ids: Vec<String> = lines
            .iter()
            .map(|line| id_of(line).unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..900).map(|n| format!("n{n:04}")).collect();
        assert_eq!(ids.len(), 900);
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, want, "each once");
    }

    /// Stores notification `n{n:04}` from @bob in @alice's received log (at time 1 000 + n);
    /// says its bytes.
    async fn store_from_bob(store: &Store, n: i64) -> usize {
        let (alice, bob) = (
            AtSign::parse("@alice").unwrap(),
            AtSign::parse("@bob").unwrap(),
        );
        let mut notification = Notification::stats(&bob, 0, Operation::Update, 1_000 + n);
        notification.id = format!("n{n:04}");
        super::store(
            store,
            &alice,
            NotificationLog::Received,
            &notification,
            Status::Delivered,
            i64::MAX,
        )
        .await
        .unwrap()
    }

    /// @alice's received log once `settled` holds of it, or as it is after 2 s: what the
    /// quota keeper's reads in the background leave.
    async fn settled_log(
        store: &Store,
        settled: impl Fn(&[NotificationRow]) -> bool,
    ) -> Vec<NotificationRow> {
        let alice = AtSign::parse("@alice").unwrap();
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = store
                .notifications(&alice, NotificationLog::Received, None, usize::MAX)
                .await
                .unwrap();
            if settled(&rows) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        rows
    }

    /// With no maintenance round, a log others fill stays within its quota and a sixteenth as
    /// notifications arrive, the oldest going first; the log is not read on each one.
    #[actix_rt::test]
    async fn the_quota_keeper_trims_a_received_log_as_it_fills() {
        let dir = TempDir::new("quota-keeper");
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .unwrap();
        let alice = AtSign::parse("@alice").unwrap();
        let quota = Quota {
            count: 64,
            bytes: usize::MAX,
            cached_keys: 0,
        };
        let keeper = Arc::new(QuotaKeeper::new(quota));
        for n in 0..1_000 {
            let bytes = store_from_bob(&store, n).await;
            keeper.stored(&store, &alice, bytes);
            tokio::task::yield_now().await;
        }
        let rows = settled_log(&store, |rows| rows.len() <= quota.count + quota.count / 16).await;
        assert!(
            rows.len() <= quota.count + quota.count / 16,
            "{}",
            rows.len()
        );
        assert!(rows.len() >= quota.count, "{}", rows.len());
        assert_eq!(rows.last().map(|row| row.id.as_str()), Some("n0999"));
        let oldest = rows[0].id.as_str();
        assert!(oldest >= "n0930", "the oldest went first: {oldest}");
    }

    /// Over a quota of bytes, with a quarter of the notifications stored by another node
    /// sharing the store (not tallied here): the oldest rows over it go as they arrive, and
    /// the whole reads bring in what the other node added, so the log stays near its quota.
    #[actix_rt::test]
    async fn the_quota_keeper_keeps_a_byte_quota_with_another_node_writing_too() {
        let dir = TempDir::new("quota-keeper-bytes");
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .unwrap();
        let alice = AtSign::parse("@alice").unwrap();
        let row_bytes = store_from_bob(&store, 0).await;
        let quota = Quota {
            count: usize::MAX,
            bytes: 100 * row_bytes,
            cached_keys: 0,
        };
        let keeper = Arc::new(QuotaKeeper::new(quota));
        for n in 1..2_000 {
            let bytes = store_from_bob(&store, n).await;
            if n % 4 != 0 {
                keeper.stored(&store, &alice, bytes);
            }
            tokio::task::yield_now().await;
        }
        let bytes_of =
            |rows: &[NotificationRow]| rows.iter().map(|row| row.body.len()).sum::<usize>();
        let rows = settled_log(&store, |rows| {
            bytes_of(rows) <= quota.bytes + quota.bytes / 4
        })
        .await;
        let bytes = bytes_of(&rows);
        // Within a quarter over (what the other node added since the last whole read) ...
        assert!(bytes <= quota.bytes + quota.bytes / 4, "{bytes}");
        // ... and not trimmed below it by more than a row or two.
        assert!(bytes + 2 * row_bytes >= quota.bytes, "{bytes}");
        assert_eq!(rows.last().map(|row| row.id.as_str()), Some("n1999"));
        assert!(rows[0].id.as_str() >= "n1800", "the oldest went first");
    }

    #[test]
    fn a_monitor_line_names_its_id_except_the_stats_notification() {
        let alice = AtSign::parse("@alice").unwrap();
        let mut one = Notification::stats(&alice, 3, Operation::Update, 1);
        assert_eq!(id_of(&one.monitor_line()), None);
        one.id = "n-1".into();
        assert_eq!(id_of(&one.monitor_line()), Some("n-1"));
        assert_eq!(id_of(b"data:ok\n"), None);
    }
}
