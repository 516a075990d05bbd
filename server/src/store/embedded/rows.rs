//! How rows are keyed and encoded in the keyspaces ([the layout](super)).

use super::*;

/// `atsign \0`: the prefix of every row of `atsign`.
pub(super) fn prefix(atsign: &AtSign) -> Vec<u8> {
    let mut out = Vec::with_capacity(atsign.as_str().len() + 1);
    out.extend_from_slice(atsign.as_str().as_bytes());
    out.push(0);
    out
}

/// `atsign \0 tail`.
pub(super) fn row(atsign: &AtSign, tail: &[u8]) -> Vec<u8> {
    let mut out = prefix(atsign);
    out.extend_from_slice(tail);
    out
}

pub(super) fn commit_row(atsign: &AtSign, id: u64) -> Vec<u8> {
    row(atsign, &id.to_be_bytes())
}

pub(super) fn access_row(atsign: &AtSign, kind: AccessKind, from: &str) -> Vec<u8> {
    let mut out = prefix(atsign);
    out.push(kind_code(kind));
    out.extend_from_slice(from.as_bytes());
    out
}

pub(super) fn log_code(log: NotificationLog) -> u8 {
    match log {
        NotificationLog::Received => 0,
        NotificationLog::Sent => 1,
    }
}

/// `atsign \0 log`: the prefix of one notification log's rows (and of its id index).
pub(super) fn log_prefix(atsign: &AtSign, log: NotificationLog) -> Vec<u8> {
    let mut out = prefix(atsign);
    out.push(log_code(log));
    out
}

pub(super) fn notification_row_key(
    atsign: &AtSign,
    log: NotificationLog,
    at_ms: EpochMillis,
    id: &str,
) -> Vec<u8> {
    let mut out = log_prefix(atsign, log);
    out.extend_from_slice(&(at_ms as u64).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

pub(super) fn notification_id_key(atsign: &AtSign, log: NotificationLog, id: &str) -> Vec<u8> {
    let mut out = log_prefix(atsign, log);
    out.extend_from_slice(id.as_bytes());
    out
}

/// A row from its key (past the log prefix: at_ms, id) and value (expires_ms, body).
pub(super) fn decode_notification(
    key_tail: &[u8],
    value: &[u8],
) -> Result<NotificationRow, StoreError> {
    let corrupt = || StoreError::Corrupt("a notification row".into());
    let (at, id) = key_tail.split_at_checked(8).ok_or_else(corrupt)?;
    let (expires, body) = value.split_at_checked(8).ok_or_else(corrupt)?;
    Ok(NotificationRow {
        id: String::from_utf8(id.to_vec()).map_err(|_| corrupt())?,
        at_ms: be_u64(at)? as EpochMillis,
        expires_ms: be_u64(expires)? as EpochMillis,
        body: body.to_vec(),
    })
}

/// Adds `row` to `batch`, dropping the row its id had (it may have another time).
pub(super) fn put_notification_row(
    shared: &Shared,
    batch: &mut fjall::OwnedWriteBatch,
    atsign: &AtSign,
    log: NotificationLog,
    row: &NotificationRow,
) -> Result<(), StoreError> {
    let id_key = notification_id_key(atsign, log, &row.id);
    if let Some(at) = shared.notification_ids.get(&id_key)? {
        let old = notification_row_key(atsign, log, be_u64(&at)? as EpochMillis, &row.id);
        batch.remove(&shared.notifications, old);
    }
    let mut value = (row.expires_ms as u64).to_be_bytes().to_vec();
    value.extend_from_slice(&row.body);
    batch.insert(
        &shared.notifications,
        notification_row_key(atsign, log, row.at_ms, &row.id),
        value,
    );
    batch.insert(
        &shared.notification_ids,
        id_key,
        (row.at_ms as u64).to_be_bytes(),
    );
    Ok(())
}

pub(super) fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{} bytes for a u64", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

pub(super) fn op_code(op: CommitOp) -> u8 {
    match op {
        CommitOp::Update => 0,
        CommitOp::UpdateMeta => 1,
        CommitOp::UpdateAll => 2,
        CommitOp::Delete => 3,
    }
}

pub(super) fn op_from_code(code: u8) -> Result<CommitOp, StoreError> {
    Ok(match code {
        0 => CommitOp::Update,
        1 => CommitOp::UpdateMeta,
        2 => CommitOp::UpdateAll,
        3 => CommitOp::Delete,
        other => return Err(StoreError::Corrupt(format!("commit op code {other}"))),
    })
}

pub(super) fn kind_code(kind: AccessKind) -> u8 {
    match kind {
        AccessKind::AtSign => 0,
        AccessKind::Key => 1,
    }
}

/// A commit entry's value: op code, op time, key.
pub(super) fn encode_commit(op: CommitOp, op_time_ms: EpochMillis, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.push(op_code(op));
    out.extend_from_slice(&op_time_ms.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

pub(super) fn decode_commit(commit_id: u64, bytes: &[u8]) -> Result<CommitEntry, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("commit entry {commit_id}"));
    let (&code, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let (time, key) = rest.split_at_checked(8).ok_or_else(corrupt)?;
    Ok(CommitEntry {
        commit_id,
        key: String::from_utf8(key.to_vec()).map_err(|_| corrupt())?,
        op: op_from_code(code)?,
        op_time_ms: be_u64(time)? as EpochMillis,
    })
}

/// Drops the commit entry stored at `entry_row` (of `key`) and the key's index row, into
/// `batch`. Only for the writer, on the live tree: there the index row points at this entry.
pub(super) fn drop_commit(
    shared: &Shared,
    batch: &mut fjall::OwnedWriteBatch,
    atsign: &AtSign,
    entry_row: fjall::UserKey,
    key: &str,
) {
    batch.remove(&shared.commits, entry_row);
    batch.remove(&shared.commit_index, row(atsign, key.as_bytes()));
}

/// Removes every row under `prefix` from `keyspace` into `batch`.
pub(super) fn remove_prefix(
    batch: &mut fjall::OwnedWriteBatch,
    keyspace: &Keyspace,
    prefix: &[u8],
) -> Result<(), StoreError> {
    for guard in keyspace.prefix(prefix) {
        batch.remove(keyspace, guard.key()?);
    }
    Ok(())
}
