//! `otp` (docs/authentication.md#passcodes): the passcodes that let a new device ask to be
//! enrolled without being logged in, and their redemption by `enroll:request`
//! ([`redeem`]).
//!
//! - `otp:get[:ttl:<ms>]` → `data:<OTP>`: a one-time passcode, 6 characters from `A–Z` and
//!   `1–9` without `O`, at least one digit; kept as `private:<otp lower-cased>.__otp@me` for
//!   5 minutes (or the ttl), spent by its first use, right or wrong.
//! - `otp:put:<spp>[:ttl:<ms>]` → `data:ok`: the semi-permanent passcode, kept as
//!   `private:spp.__otp@me` (for ever unless a ttl is given) and good any number of times.
//!   Only a login that may use `__manage` (legacy pkam, cram, or an enrollment holding it) may
//!   set it; anyone else gets the reference's AT0011, which closes the connection.
//!
//! Passcodes are secrets: stored without a commit entry (a client never syncs them), and
//! compared case-insensitively, as the reference does. Ours: a `ttl:0` OTP lives for 5 minutes
//! rather than for ever.

use at_common::error::{AtError, ErrorCode};
use at_common::metadata::{EpochMillis, Metadata, MetadataUpdate};
use at_common::reply::Reply;
use at_common::verb::{Otp, OtpOp, MAX_PASSCODE_CHARS};
use at_common::AtSign;
use ring::rand::{SecureRandom, SystemRandom};

use crate::access::Grant;
use crate::lifetime::is_active;
use crate::reserved;
use crate::store::{Mutation, Record, Store, StoreError};

/// How long an OTP lives unless `otp:get` says.
pub const OTP_TTL_MS: i64 = 5 * 60 * 1000;
/// What an OTP is made of: upper-case letters and digits, without `0` and `O`.
const OTP_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNPQRSTUVWXYZ123456789";
const OTP_CHARS: usize = 6;

/// `otp:get` / `otp:put` for `me`'s owner, logged in with `grant`'s enrollment if any.
pub async fn otp(
    store: &Store,
    me: &AtSign,
    cmd: &Otp,
    grant: Option<&Grant>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    match cmd.operation {
        OtpOp::Get => {
            let otp = new_otp()?;
            let ttl = cmd
                .ttl
                .filter(|&ttl| ttl > 0)
                .map_or(OTP_TTL_MS, |ttl| i64::try_from(ttl).unwrap_or(i64::MAX));
            let key = reserved::otp(&otp.to_lowercase(), me);
            keep(store, me, &key, &otp, Some(ttl), now).await?;
            Ok(Reply::Data(otp))
        }
        OtpOp::Put => {
            if grant.is_some_and(|g| !g.manages()) {
                return Err(invalid_request(
                    "Client not allowed to not store semi permanent pass code",
                ));
            }
            let Some(spp) = &cmd.passcode else {
                return Err(invalid_request("otp:put requires a passcode"));
            };
            let ttl = cmd.ttl.map(|ttl| i64::try_from(ttl).unwrap_or(i64::MAX));
            keep(store, me, &reserved::otp(reserved::SPP, me), spp, ttl, now).await?;
            Ok(Reply::Data("ok".to_string()))
        }
    }
}

/// Whether `passcode` lets a device ask `me` for an enrollment now: the semi-permanent
/// passcode (kept), else an OTP (spent, whatever it was worth). The reference's older key
/// forms (`private:spp@me`, `private:<otp>@me`) are read too.
pub async fn redeem(
    store: &Store,
    me: &AtSign,
    passcode: Option<&str>,
    now: EpochMillis,
) -> Result<bool, AtError> {
    let Some(passcode) = passcode.filter(|p| !p.is_empty() && p.len() <= MAX_PASSCODE_CHARS) else {
        return Ok(false);
    };
    let lower = passcode.to_lowercase();
    for key in [
        reserved::otp(reserved::SPP, me),
        reserved::legacy_otp(reserved::SPP, me),
    ] {
        if let Some(record) = store.get(me, &key).await? {
            let same = record.value.as_deref().map(str::to_lowercase) == Some(lower.clone());
            if same && is_active(&record.metadata, now) {
                return Ok(true);
            }
            break;
        }
    }
    for key in [reserved::otp(&lower, me), reserved::legacy_otp(&lower, me)] {
        // Taken in one step of the store, so two requests cannot spend one OTP twice.
        let taken = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = taken.clone();
        let spent = store
            .modify(me, &key, move |existing| {
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = existing.cloned();
                Ok(match existing {
                    Some(_) => Mutation::Remove { commit: false },
                    None => Mutation::Keep,
                })
            })
            .await?;
        let record = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (true, Some(record)) = (spent.changed, record) {
            return Ok(is_active(&record.metadata, now));
        }
    }
    Ok(false)
}

/// The reference's `InvalidRequestException`: AT0011, and the connection closes.
fn invalid_request(message: &str) -> AtError {
    AtError::with_detail(
        ErrorCode::InternalServerException,
        format!("Exception: {message}"),
    )
}

/// A new OTP: [`OTP_CHARS`] from [`OTP_ALPHABET`], at least one a digit.
fn new_otp() -> Result<String, AtError> {
    let random = SystemRandom::new();
    loop {
        let mut bytes = [0u8; OTP_CHARS];
        random
            .fill(&mut bytes)
            .map_err(|_| AtError::from(ErrorCode::InternalServerException))?;
        // 256 is not a multiple of the alphabet's 34: the small bias is harmless for a
        // single-use code that lives minutes.
        let otp: String = bytes
            .iter()
            .map(|b| char::from(OTP_ALPHABET[usize::from(*b) % OTP_ALPHABET.len()]))
            .collect();
        if otp.bytes().any(|c| c.is_ascii_digit()) {
            return Ok(otp);
        }
    }
}

/// Stores `value` under `key`, uncommitted, living `ttl_ms` if given.
async fn keep(
    store: &Store,
    me: &AtSign,
    key: &str,
    value: &str,
    ttl_ms: Option<i64>,
    now: EpochMillis,
) -> Result<(), AtError> {
    let update = MetadataUpdate {
        ttl: ttl_ms,
        ..MetadataUpdate::default()
    };
    let metadata = Metadata::updated(None, &update, me, now)?;
    let record = Record {
        value: Some(value.to_string()),
        metadata,
    };
    store
        .put_uncommitted(me, key, &record)
        .await
        .map_err(|e: StoreError| e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::testing::{command, fixture, NOW};
    use at_common::verb::Command;

    fn cmd(line: &str) -> Otp {
        match command(line) {
            Command::Otp(o) => o,
            other => panic!("not otp: {other:?}"),
        }
    }

    async fn get(f: &crate::verbs::testing::Fixture, line: &str) -> String {
        match otp(&f.store, &f.me, &cmd(line), None, NOW).await.unwrap() {
            Reply::Data(otp) => otp,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_otp_has_the_reference_shape_and_is_good_once_within_its_life() {
        let f = fixture().await;
        let otp = get(&f, "otp:get").await;
        assert_eq!(otp.len(), 6);
        assert!(otp
            .bytes()
            .all(|c| OTP_ALPHABET.contains(&c) && c != b'0' && c != b'O'));
        assert!(otp.bytes().any(|c| c.is_ascii_digit()), "{otp}");
        let key = format!("private:{}.__otp@alice", otp.to_lowercase());
        let stored = f.store.get(&f.me, &key).await.unwrap().unwrap();
        assert_eq!(stored.value.as_deref(), Some(otp.as_str()));
        assert_eq!(stored.metadata.ttl, Some(OTP_TTL_MS));

        assert!(redeem(&f.store, &f.me, Some(&otp.to_lowercase()), NOW)
            .await
            .unwrap());
        assert!(
            !redeem(&f.store, &f.me, Some(&otp), NOW).await.unwrap(),
            "spent"
        );

        let short = get(&f, "otp:get:ttl:10").await;
        let later = NOW + 11;
        assert!(
            !redeem(&f.store, &f.me, Some(&short), later).await.unwrap(),
            "expired"
        );
        assert!(
            f.store
                .get(&f.me, &reserved::otp(&short.to_lowercase(), &f.me))
                .await
                .unwrap()
                .is_none(),
            "an expired OTP tried is spent too"
        );
        assert!(!redeem(&f.store, &f.me, Some("NOSUCH1"), NOW).await.unwrap());
        assert!(!redeem(&f.store, &f.me, None, NOW).await.unwrap());
    }

    #[tokio::test]
    async fn the_spp_is_good_again_and_again_and_only_a_manager_sets_it() {
        let f = fixture().await;
        let put = cmd("otp:put:ABC123");
        assert_eq!(
            otp(&f.store, &f.me, &put, None, NOW).await.unwrap(),
            Reply::Data("ok".into())
        );
        for _ in 0..2 {
            assert!(redeem(&f.store, &f.me, Some("abc123"), NOW).await.unwrap());
        }
        assert!(!redeem(&f.store, &f.me, Some("ABC124"), NOW).await.unwrap());

        let device = Grant::approved("e1", &[("wavi", "rw")]);
        let refused = otp(&f.store, &f.me, &put, Some(&device), NOW)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InternalServerException);
        assert_eq!(
            refused.message(),
            "Exception: Client not allowed to not store semi permanent pass code"
        );
        assert!(refused.closes_connection());
        let none = otp(&f.store, &f.me, &cmd("otp:put"), None, NOW)
            .await
            .unwrap_err();
        assert_eq!(none.message(), "Exception: otp:put requires a passcode");
    }
}
