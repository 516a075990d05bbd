//! The protocol's bounds on what a client or another server sends, in one place: how long a
//! key or an id may be, and which instants are dates. The grammar ([`crate::verb`]) refuses
//! anything beyond them before any store sees it; the atServer's store checks the same bounds
//! again at its entry points.
//!
//! # Errors
//! - A key longer than [`MAX_KEY_CHARS`] (or [`MAX_CACHED_KEY_CHARS`] for `cached:` keys):
//!   AT0016 `Key length <n> exceeds the maximum allowed length of <max>` (the reference's
//!   `InvalidAtKeyException`), the connection stays open.
//! - An id (notification, enrollment) longer than [`MAX_ID_CHARS`]: AT0003, as any other
//!   malformed argument.
//! - A time (ttl, ttb, ttr) whose instant would lie past [`MAX_DATE_MS`]: AT0003
//!   `<name> of <n> ms is out of range`. A notification's `ttln` past [`MAX_TTLN_MS`] is cut
//!   to it.

use crate::error::{AtError, ErrorCode};
use crate::metadata::EpochMillis;

/// The longest key the reference stores, in characters, as the keystore names it
/// (`@bob:phone@alice`, `public:phone@alice`).
pub const MAX_KEY_CHARS: usize = 248;

/// The longest `cached:` key (a copy of another atSign's key, 7 characters longer).
pub const MAX_CACHED_KEY_CHARS: usize = 255;

/// The longest notification or enrollment id, in characters. The reference's ids are uuids
/// (36); its grammar sets no bound, this one does, far above any real id.
pub const MAX_ID_CHARS: usize = 255;

/// The longest a notification is kept (its `ttln`): longer ones are kept this long. A
/// recipient's notification log is another atSign's to fill; a bound on its lifetime is one of
/// the bounds on its size.
pub const MAX_TTLN_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// The latest instant that is a date: Dart's `DateTime` range (8.64e15 ms, the year 275 760),
/// which every reference client parses `expiresAt` and friends into.
pub const MAX_DATE_MS: EpochMillis = 8_640_000_000_000_000;

/// The longest key a store accepts, in bytes: the longest key above in 4-byte characters, with
/// room for a backend's own prefixes, and far below what any backend asserts on.
pub const MAX_STORE_KEY_BYTES: usize = 4 * MAX_CACHED_KEY_CHARS + 256;

/// Refuses `key` (its wire form) when it is longer than any stored key may be: 248
/// characters, or 255 for a `cached:` key.
pub fn check_key(key: &str) -> Result<(), AtError> {
    let max = if key.starts_with("cached:") {
        MAX_CACHED_KEY_CHARS
    } else {
        MAX_KEY_CHARS
    };
    check_key_chars(key, max)
}

/// Refuses the text of a key as a command gives it (`lookup:<text>`, `notify:…:<text>`) when
/// no stored key could be that long: more than 255 characters. The verb that stores it checks
/// the exact bound of its kind with [`check_key`].
pub fn check_key_text(text: &str) -> Result<(), AtError> {
    check_key_chars(text, MAX_CACHED_KEY_CHARS)
}

/// Refuses `key` when it has more than `max` characters.
fn check_key_chars(key: &str, max: usize) -> Result<(), AtError> {
    // Counting stops early: a hostile key may be megabytes long.
    let length = key.chars().take(max + 1).count();
    if length <= max {
        return Ok(());
    }
    let length = key.chars().count();
    Err(AtError::with_detail(
        ErrorCode::InvalidKey,
        format!("Key length {length} exceeds the maximum allowed length of {max}"),
    ))
}

/// Whether `id` is short enough to be a notification or enrollment id.
pub fn id_fits(id: &str) -> bool {
    id.chars().take(MAX_ID_CHARS + 1).count() <= MAX_ID_CHARS
}

/// `now + after_ms`, if that is a date ([`MAX_DATE_MS`]); `None` otherwise, never wrapped.
pub fn instant_after(now: EpochMillis, after_ms: i64) -> Option<EpochMillis> {
    now.checked_add(after_ms)
        .filter(|at| (-MAX_DATE_MS..=MAX_DATE_MS).contains(at))
}

/// The AT0003 for a time `name` (ttl, ttb, ttr, ttln) of `value` whose instant is no date.
pub fn time_out_of_range(name: &str, value: i64, unit: &str) -> AtError {
    AtError::syntax(format!("{name} of {value} {unit} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_as_the_reference_bounds_them() {
        assert!(check_key(&"k".repeat(248)).is_ok());
        let error = check_key(&"k".repeat(249)).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidKey);
        assert_eq!(
            error.message(),
            "Key length 249 exceeds the maximum allowed length of 248"
        );
        let cached = format!("cached:{}", "k".repeat(248));
        assert!(check_key(&cached).is_ok());
        assert!(check_key(&format!("{cached}k")).is_err());
        assert!(check_key_text(&"k".repeat(255)).is_ok());
        assert!(check_key_text(&"k".repeat(256)).is_err());
        // Characters, not bytes, as the reference counts them.
        assert!(check_key(&"é".repeat(248)).is_ok());
        let huge = check_key(&"k".repeat(70_000)).unwrap_err();
        assert!(huge.message().starts_with("Key length 70000 "), "{huge:?}");
    }

    #[test]
    fn ids_are_bounded() {
        assert!(id_fits(&"a".repeat(MAX_ID_CHARS)));
        assert!(!id_fits(&"a".repeat(MAX_ID_CHARS + 1)));
    }

    #[test]
    fn instants_past_any_date_are_none_never_wrapped() {
        let now = 1_765_000_000_000;
        assert_eq!(instant_after(now, 1000), Some(now + 1000));
        assert_eq!(instant_after(now, i64::MAX), None);
        assert_eq!(instant_after(now, MAX_DATE_MS), None);
        assert_eq!(instant_after(now, MAX_DATE_MS - now), Some(MAX_DATE_MS));
        assert_eq!(instant_after(i64::MIN, -1), None);
    }
}
