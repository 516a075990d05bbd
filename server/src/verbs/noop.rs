//! `noop:<millis>` (docs/protocol.md#noop): waits, then `data:ok`; for anyone. Used by clients to
//! keep a connection alive and by tests to hold a command in flight.
//!
//! # Errors
//! AT0022 for a delay over [`NOOP_MAX_MILLIS`], without waiting.

use std::time::Duration;

use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::Noop;

/// The longest delay `noop` accepts.
pub const NOOP_MAX_MILLIS: u64 = 5000;

/// `noop:<millis>`.
pub async fn noop(cmd: &Noop) -> Result<Reply, AtError> {
    if cmd.delay_millis > NOOP_MAX_MILLIS {
        return Err(AtError::with_detail(
            ErrorCode::IllegalArguments,
            format!(
                "noop:<durationInMillis> where the duration maximum is {NOOP_MAX_MILLIS} milliseconds"
            ),
        ));
    }
    tokio::time::sleep(Duration::from_millis(cmd.delay_millis)).await;
    Ok(Reply::Data("ok".to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use at_common::AtSign;

    use super::*;
    use crate::verbs::testing::wire;

    #[tokio::test]
    async fn noop_waits_then_replies_ok() {
        let me = AtSign::parse("@alice").unwrap();
        let start = Instant::now();
        let reply = noop(&Noop { delay_millis: 20 }).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(wire(&me, reply), "data:ok\n@alice@");
    }

    #[tokio::test]
    async fn noop_over_five_seconds_is_at0022() {
        let me = AtSign::parse("@alice").unwrap();
        assert_eq!(
            wire(&me, noop(&Noop { delay_millis: 5001 }).await),
            "error:AT0022-Illegal arguments : noop:<durationInMillis> where the duration maximum is 5000 milliseconds\n@alice@"
        );
    }
}
