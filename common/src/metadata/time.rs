//! UTC civil dates by hand (Howard Hinnant's `days_from_civil`), so no date crate is needed.

use super::EpochMillis;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// `yyyy-MM-dd HH:mm:ss.mmmZ`, e.g. `2024-10-24 01:35:02.123Z`.
pub fn format_timestamp(millis: EpochMillis) -> String {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let in_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (secs, ms) = (in_day / 1000, in_day % 1000);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{ms:03}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
    }
    // By hand: this runs for every timestamp of every record the store encodes.
    let mut out = String::with_capacity(24);
    let mut digits = |value: i64, width: u32, then: char| {
        for place in (0..width).rev() {
            let digit = (value / 10_i64.pow(place) % 10) as u8;
            out.push(char::from(b'0' + digit));
        }
        out.push(then);
    };
    digits(year, 4, '-');
    digits(month, 2, '-');
    digits(day, 2, ' ');
    digits(secs / 3600, 2, ':');
    digits(secs / 60 % 60, 2, ':');
    digits(secs % 60, 2, '.');
    digits(ms, 3, 'Z');
    out
}

/// Reads `yyyy-MM-dd HH:mm:ss[.fraction][Z]` (a `T` may replace the space), UTC.
/// Digits of the fraction past milliseconds are dropped, as the reference truncates to ms.
/// Reads back every instant [`format_timestamp`] writes, also years before 0 or after 9999
/// (a record written with a far-off expiry still reads); `None` past the range of `i64`.
pub fn parse_timestamp(text: &str) -> Option<EpochMillis> {
    let text = text.trim();
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let year_digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if year_digits == 0 || year_digits > 12 || (!negative && year_digits < 4) {
        return None;
    }
    let (year_text, text) = unsigned.split_at(year_digits);
    let year: i64 = year_text.parse().ok()?;
    let year = if negative { -year } else { year };
    // `-MM-dd HH:mm:ss` then the fraction.
    let b = text.as_bytes();
    if b.len() < 15 || b[0] != b'-' || b[3] != b'-' || !matches!(b[6], b' ' | b'T') {
        return None;
    }
    if b[9] != b':' || b[12] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (month, day) = (num(1..3)?, num(4..6)?);
    let (hour, minute, second) = (num(7..9)?, num(10..12)?, num(13..15)?);
    let millis = match text.get(15..)? {
        "" => 0,
        fraction => {
            let digits = fraction.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let ms: String = digits.chars().chain("00".chars()).take(3).collect();
            ms.parse().ok()?
        }
    };
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let in_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    let millis = i128::from(days) * i128::from(MILLIS_PER_DAY) + i128::from(in_day);
    EpochMillis::try_from(millis).ok()
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date (year, month, day) of an instant.
pub fn civil_date(millis: EpochMillis) -> (i64, i64, i64) {
    civil_from_days(millis.div_euclid(MILLIS_PER_DAY))
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_dart_does() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_729_733_702_123),
            "2024-10-24 01:35:02.123Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_000),
            "2000-02-29 00:00:00.000Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999Z");
    }

    #[test]
    fn parse_reads_back_what_format_writes() {
        let mut t: i64 = -86_400_000 * 800;
        while t < 253_402_300_799_999 {
            assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t), "{t}");
            t += 7_777_777_777;
        }
        assert_eq!(
            parse_timestamp("2024-10-24T01:35:02.123456Z"),
            Some(1_729_733_702_123)
        );
        assert_eq!(
            parse_timestamp("2024-10-24 01:35:02"),
            Some(1_729_733_702_000)
        );
        // Far-off instants (years past 9999 or before 0) read back too.
        for t in [
            i64::MAX,
            i64::MIN,
            8_640_000_000_000_000,
            -62_167_219_200_001,
            253_402_300_800_000,
        ] {
            assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t), "{t}");
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2023-02-29 00:00:00.000Z",
            "2024-13-01 00:00:00Z",
            "2024-10-24 24:00:00Z",
            "2024-10-24",
            "",
            "null",
            "2024-10-24 01:35:02.Z",
            "２０２４-10-24 01:35:02Z",
            "24-10-24 01:35:02Z",
            "-2024-10-24",
            "9999999999999-01-01 00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
