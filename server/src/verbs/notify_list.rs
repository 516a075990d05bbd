//! `notify:list` and `notify:fetch` (docs/notifications.md#reading-the-logs): reading the
//! notification logs.
//!
//! - `notify:list[:<from>[:<to>]][:<regex>]`: for the owner, what `me` received; for another
//!   atSign's server (pol), what `me` sent to that atSign. Unexpired only, oldest first; dates
//!   `yyyy-M-d` (UTC), both inclusive (`to` to the end of its day); the regex is found in the
//!   key or the sender. `data:[{…}]` in the monitor's key order, `data:null` when empty. The
//!   log is read a page at a time from the first date on (what is listed is bounded by the
//!   received-notification quota).
//! - `notify:fetch:<id>`: one notification in the reference's `AtNotification.toJson` shape,
//!   every value a string; an unknown id reads as expired.

use at_common::error::AtError;
use at_common::metadata::{format_timestamp, parse_timestamp, EpochMillis};
use at_common::reply::Reply;
use at_common::verb::{NotifyFetch, NotifyList};
use at_common::AtSign;

use crate::access::{not_authorized, Grant, Use};
use crate::notifications::{self, Status};
use crate::store::{NotificationLog, Store};

const DAY_MS: EpochMillis = 24 * 60 * 60 * 1000;

/// `notify:list…` by the owner (`peer` `None`) or by @peer's server.
pub async fn notify_list(
    store: &Store,
    me: &AtSign,
    peer: Option<&AtSign>,
    cmd: &NotifyList,
    grant: Option<&Grant>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let filter = match &cmd.regex {
        Some(text) => Some(super::scan::compile(text)?),
        None => None,
    };
    let from = cmd.from_date.as_deref().map(day_start).transpose()?;
    let until = cmd
        .to_date
        .as_deref()
        .map(|d| day_start(d).map(|start| start + DAY_MS))
        .transpose()?;
    let log = match peer {
        None => NotificationLog::Received,
        Some(_) => NotificationLog::Sent,
    };
    // Read a page at a time from the first date on, so that only what is listed is held.
    let mut listed = Vec::new();
    let mut next = Some(from.map(|from| from.saturating_sub(1)));
    while let Some(after) = next {
        let (rows, after_page) = notifications::log_page(store, me, log, after).await?;
        next = after_page
            .filter(|&after| until.is_none_or(|until| after < until))
            .map(Some);
        for row in rows.iter().filter(|row| row.expires_ms > now) {
            let stored = notifications::read_stored(row)?;
            if stored.to_self {
                continue;
            }
            let notification = stored.notification;
            let at = notification.epoch_millis;
            let in_dates =
                from.is_none_or(|from| at >= from) && until.is_none_or(|until| at < until);
            let for_peer = peer.is_none_or(|peer| notification.to == *peer);
            let permitted = grant.is_none_or(|g| g.permits(&notification.key, Use::Read));
            if in_dates && for_peer && permitted && notification.matches(filter.as_ref()) {
                listed.push(notification.json());
            }
        }
    }
    if listed.is_empty() {
        return Ok(Reply::Null);
    }
    // Each object keeps the reference's key order (a JSON value would sort the keys).
    Ok(Reply::Data(format!("[{}]", listed.join(","))))
}

/// `notify:fetch:<id>`: of what `me` received or sent.
pub async fn notify_fetch(
    store: &Store,
    me: &AtSign,
    cmd: &NotifyFetch,
    grant: Option<&Grant>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    for (log, kind) in [
        (NotificationLog::Received, "received"),
        (NotificationLog::Sent, "sent"),
    ] {
        let Some(row) = store.get_notification(me, log, &cmd.id).await? else {
            continue;
        };
        let stored = notifications::read_stored(&row)?;
        let n = &stored.notification;
        if let Some(grant) = grant.filter(|g| !g.permits(&n.key, Use::Read)) {
            return Err(not_authorized(grant, "fetch notify", &n.key));
        }
        let status = match stored.status {
            _ if row.expires_ms <= now => "expired",
            Status::Delivered => "delivered",
            Status::Queued => "queued",
            Status::Errored => "errored",
        };
        let delivery = stored.delivery.unwrap_or_default();
        let operation = n.operation.as_str();
        // The reference stringifies every value, `null` included, in this order.
        let fields: [(&str, String); 18] = [
            ("id", n.id.clone()),
            ("fromAtSign", n.from.to_string()),
            ("notificationDateTime", dart_time(n.epoch_millis)),
            ("toAtSign", n.to.to_string()),
            ("notification", n.key.clone()),
            ("type", format!("NotificationType.{kind}")),
            ("opType", format!("OperationType.{operation}")),
            ("messageType", format!("MessageType.{}", n.message_type)),
            ("priority", "NotificationPriority.low".into()),
            ("notificationStatus", format!("NotificationStatus.{status}")),
            ("retryCount", delivery.attempts.to_string()),
            ("strategy", "all".into()),
            ("depth", "1".into()),
            (
                "notifier",
                delivery.notifier.unwrap_or_else(|| "SYSTEM".into()),
            ),
            ("expiresAt", dart_time(row.expires_ms)),
            ("atValue", n.value.clone().unwrap_or_else(|| "null".into())),
            ("atMetadata", dart_map(n)),
            (
                "ttl",
                delivery
                    .ttl
                    .map_or_else(|| "null".into(), |t| t.to_string()),
            ),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{}:{}", quote(key), quote(value)))
            .collect();
        return Ok(Reply::Data(format!("{{{}}}", body.join(","))));
    }
    Ok(Reply::Data(format!(
        "{{\"id\":{},\"notificationStatus\":\"NotificationStatus.expired\"}}",
        quote(&cmd.id)
    )))
}

/// The start (UTC) of a `yyyy-M-d` day; AT0003 for a day that does not exist.
fn day_start(date: &str) -> Result<EpochMillis, AtError> {
    let invalid = || AtError::syntax(format!("Invalid date: {date}"));
    let mut parts = date
        .split('-')
        .map(|p| p.parse::<u32>().map_err(|_| invalid()));
    let (year, month, day) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) => (y?, m?, d?),
        _ => return Err(invalid()),
    };
    let text = format!("{year:04}-{month:02}-{day:02} 00:00:00.000Z");
    parse_timestamp(&text)
        .filter(|&ms| format_timestamp(ms) == text)
        .ok_or_else(invalid)
}

/// A time as Dart's `DateTime.toString()` writes a UTC time without microseconds.
fn dart_time(ms: EpochMillis) -> String {
    format_timestamp(ms)
}

/// The notification's metadata as Dart's `Map.toString()` writes it: `{isEncrypted: true, …}`.
fn dart_map(n: &notifications::Notification) -> String {
    let Some(m) = &n.metadata else {
        return "null".into();
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".into());
    format!(
        "{{isEncrypted: {}, encKeyName: {}, encAlgo: {}, ivNonce: {}, skeEncKeyName: {}, skeEncAlgo: {}, sharedKeyEnc: {}}}",
        n.is_encrypted,
        text(&m.enc_key_name),
        text(&m.enc_algo),
        text(&m.iv_nonce),
        text(&m.ske_enc_key_name),
        text(&m.ske_enc_algo),
        text(&m.shared_key_enc),
    )
}

fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::{Notification, Status, LOG_PAGE};
    use at_common::verb::Command;
    use at_tests::TempDir;

    /// More than two pages, with one millisecond across a page's end, and a date range that
    /// starts inside them: every unexpired notification listed once, in order.
    #[tokio::test]
    async fn a_long_log_is_listed_whole_page_by_page_and_a_date_range_exactly() {
        let dir = TempDir::new("notify-list-pages");
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .unwrap();
        let alice = AtSign::parse("@alice").unwrap();
        let day1 = day_start("2024-10-24").unwrap();
        let day2 = day1 + DAY_MS;
        // 250 on day 1, 50 in one millisecond of day 2 (across the first page's end), 300
        // later on day 2, 10 on day 3; one on day 2 expired.
        let times = (0..250)
            .map(|n| day1 + n)
            .chain(std::iter::repeat_n(day2, 50))
            .chain((0..300).map(|n| day2 + 1 + n))
            .chain((0..10).map(|n| day2 + DAY_MS + n));
        let mut all = Vec::new();
        for (n, at) in times.enumerate() {
            let mut notification =
                Notification::stats(&alice, 0, at_common::verb::Operation::Update, at);
            notification.id = format!("n{n:04}");
            notification.from = AtSign::parse("@bob").unwrap();
            notification.key = format!("@alice:k{n}@bob");
            all.push((notification.id.clone(), at));
            let expires = if n == 400 { 5 } else { i64::MAX };
            notifications::store(
                &store,
                &alice,
                NotificationLog::Received,
                &notification,
                Status::Delivered,
                expires,
            )
            .await
            .unwrap();
        }
        assert!(all.len() > 2 * LOG_PAGE);
        let ids = |reply: Reply| -> Vec<String> {
            let Reply::Data(json) = reply else {
                panic!("{reply:?}")
            };
            let list: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
            list.iter()
                .map(|n| n["id"].as_str().unwrap().to_string())
                .collect()
        };
        let list = |text: &str| {
            Command::parse(text).map(|c| match c {
                Command::NotifyList(list) => list,
                other => panic!("{other:?}"),
            })
        };
        let unexpired = |(id, _): &(String, i64)| id != "n0400";

        let whole = notify_list(
            &store,
            &alice,
            None,
            &list("notify:list").unwrap(),
            None,
            10,
        )
        .await
        .unwrap();
        let want: Vec<String> = all
            .iter()
            .filter(|n| unexpired(n))
            .map(|n| n.0.clone())
            .collect();
        assert_eq!(ids(whole), want);

        let day = notify_list(
            &store,
            &alice,
            None,
            &list("notify:list:2024-10-25:2024-10-25").unwrap(),
            None,
            10,
        )
        .await
        .unwrap();
        let want: Vec<String> = all
            .iter()
            .filter(|n| unexpired(n) && n.1 >= day2 && n.1 < day2 + DAY_MS)
            .map(|n| n.0.clone())
            .collect();
        assert_eq!(want.len(), 349);
        assert_eq!(ids(day), want);

        let before = notify_list(
            &store,
            &alice,
            None,
            &list("notify:list:0000-01-01:2024-10-23").unwrap(),
            None,
            10,
        )
        .await
        .unwrap();
        assert_eq!(before, Reply::Null);
    }

    #[test]
    fn days_are_read_as_utc_midnights_and_impossible_ones_refused() {
        assert_eq!(day_start("2024-10-24").unwrap(), 1_729_728_000_000);
        assert_eq!(
            day_start("2024-1-5").unwrap(),
            day_start("2024-01-05").unwrap()
        );
        assert!(day_start("2024-02-30").is_err());
        assert!(day_start("2024-13-01").is_err());
        assert!(day_start("2024-10").is_err());
    }
}
