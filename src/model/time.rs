//! Time: every instant is milliseconds since the Unix epoch, UTC, as an `i64`. Days are UTC days
//! counted from the epoch; they are the unit of the per-day event indexes.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;

/// Milliseconds in one UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The earliest instant the store accepts: 1970-01-01T00:00:00Z. Earlier is an absurd timestamp
/// for a shop's events and is rejected at ingest.
pub const MIN_TIMESTAMP: Timestamp = 0;

/// The first instant the store no longer accepts: 2100-01-01T00:00:00Z.
pub const MAX_TIMESTAMP: Timestamp = 4_102_444_800_000;

/// Whether `ts` lies in the range the store accepts.
pub fn in_accepted_range(ts: Timestamp) -> bool {
    (MIN_TIMESTAMP..MAX_TIMESTAMP).contains(&ts)
}

/// The UTC day (days since the epoch) that contains `ts`. Only defined for accepted timestamps,
/// which makes the result fit a `u32`.
pub fn day_of(ts: Timestamp) -> u32 {
    debug_assert!(in_accepted_range(ts));
    u32::try_from(ts.div_euclid(DAY_MS)).unwrap_or(0)
}

/// The first millisecond of `day`.
pub fn day_start(day: u32) -> Timestamp {
    i64::from(day) * DAY_MS
}

/// The current wall-clock time.
pub fn now() -> Timestamp {
    Utc::now().timestamp_millis()
}

/// Where a database reads the time: the wall clock, or a clock the caller moves (tests,
/// simulations, replays). It stamps events that come without a timestamp and is the *now* at
/// which saved audiences are kept true.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock that only moves when told to; clones share it.
    Manual(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// A manual clock that reads `start` until moved.
    pub fn manual(start: Timestamp) -> Clock {
        Clock::Manual(std::sync::Arc::new(start.into()))
    }

    /// The current time of this clock.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => now(),
            Clock::Manual(t) => t.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Sets a manual clock (the system clock cannot be set: this does nothing to it).
    pub fn set(&self, ts: Timestamp) {
        if let Clock::Manual(t) = self {
            t.store(ts, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Moves a manual clock by `ms` (nothing for the system clock).
    pub fn advance(&self, ms: i64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Parses an RFC 3339 date-time (`2026-03-01T12:00:00Z`, `2026-03-01T14:00:00.250+02:00`).
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    // Cheap shape check first: trait values are tried as date-times on every string.
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    if let Some(ts) = parse_utc_fast(b) {
        return Some(ts);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The days from 1970-01-01 to the proleptic Gregorian date `y`-`m`-`d` (valid).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// [`parse_rfc3339`] for the form every tracking library sends, `2026-03-01T12:00:00.250Z`
/// (UTC, `T` and `Z`, no fraction or up to nine digits of it): the same answer as chrono's
/// parser, without it. `None` for anything else (which chrono then reads, or refuses).
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut millis = 0u32;
    let rest = match b[19] {
        b'.' => {
            let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            for (i, &c) in b[20..20 + digits].iter().enumerate().take(3) {
                millis += u32::from(c - b'0') * [100, 10, 1][i];
            }
            &b[20 + digits..]
        }
        _ => &b[19..],
    };
    if rest != b"Z" {
        return None;
    }
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1000 + i64::from(millis))
}

/// Parses a calendar date `2026-03-01` to its midnight UTC.
pub fn parse_date(text: &str) -> Option<Timestamp> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    if text.len() != 10 {
        return None;
    }
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Parses what a user may give as a time on the command line: an RFC 3339 date-time or a date.
pub fn parse_user_time(text: &str) -> Option<Timestamp> {
    parse_rfc3339(text).or_else(|| parse_date(text))
}

/// Formats `ts` as RFC 3339 in UTC with milliseconds: `2026-03-01T12:00:00.000Z`.
pub fn format_rfc3339(ts: Timestamp) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ts) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ts.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// chrono's reading of an RFC 3339 time, which [`parse_rfc3339`] gave before its fast path.
    fn chrono_reading(text: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Times of the fast path's shape, valid or not (month 00-19, day 00-39, hour 00-29,
        /// minute and second 00-69, leap days, years 0000-9999, fractions of 0-12 digits, other
        /// endings): the same answer as chrono's.
        #[test]
        fn the_fast_path_reads_as_chrono_does(
            year in prop_oneof![0u32..10_000, 1968u32..2102, Just(1900u32), Just(2000u32)],
            month in 0u32..20,
            day in 0u32..40,
            hour in 0u32..30,
            minute in 0u32..70,
            second in 0u32..70,
            fraction in proptest::option::of("[0-9]{0,12}"),
            end in prop_oneof![Just("Z"), Just("z"), Just("+02:00"), Just("-00:30"), Just(""), Just("ZZ"), Just(" Z")],
            sep in prop_oneof![Just('T'), Just('t')],
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!(
                "{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}{fraction}{end}"
            );
            prop_assert_eq!(parse_rfc3339(&text), chrono_reading(&text), "{}", text);
        }

        /// Any text: a valid answer only where chrono gives the same one.
        #[test]
        fn any_text_reads_as_chrono_does(text in "[0-9T:.Z+-]{18,32}") {
            let b = text.as_bytes();
            let shaped = b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && (b[10] == b'T' || b[10] == b't');
            let expect = if shaped { chrono_reading(&text) } else { None };
            prop_assert_eq!(parse_rfc3339(&text), expect, "{}", text);
        }
    }

    #[test]
    fn the_fast_path_knows_leap_years_and_the_ends_of_months() {
        for (text, ok) in [
            ("2024-02-29T23:59:59.999Z", true),
            ("2023-02-29T00:00:00Z", false),
            ("2000-02-29T00:00:00Z", true),
            ("1900-02-29T00:00:00Z", false),
            ("2026-04-31T00:00:00Z", false),
            ("2026-12-31T23:59:59Z", true),
            ("1969-12-31T23:59:59.999Z", true),
            ("0000-01-01T00:00:00Z", true),
        ] {
            assert_eq!(parse_utc_fast(text.as_bytes()).is_some(), ok, "{text}");
            assert_eq!(parse_rfc3339(text), chrono_reading(text), "{text}");
        }
    }

    #[test]
    fn parses_and_formats_round_trip() {
        let ts = parse_rfc3339("2026-03-01T12:00:00.250Z").unwrap();
        assert_eq!(format_rfc3339(ts), "2026-03-01T12:00:00.250Z");
        assert_eq!(
            parse_rfc3339("2026-03-01T14:00:00.250+02:00"),
            Some(ts),
            "offsets are honoured"
        );
    }

    #[test]
    fn dates_are_midnight_utc() {
        let d = parse_date("2026-03-01").unwrap();
        assert_eq!(format_rfc3339(d), "2026-03-01T00:00:00.000Z");
        assert_eq!(day_start(day_of(d)), d);
        assert_eq!(day_of(d + DAY_MS - 1), day_of(d));
        assert_eq!(day_of(d + DAY_MS), day_of(d) + 1);
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2026-03-01",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-03-01T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_user_time("2026-02-03"), parse_date("2026-02-03"));
    }

    #[test]
    fn accepted_range_is_1970_to_2100() {
        assert!(in_accepted_range(0));
        assert!(!in_accepted_range(-1));
        assert!(!in_accepted_range(parse_date("2100-01-01").unwrap()));
        assert!(in_accepted_range(parse_date("2099-12-31").unwrap()));
    }
}
