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
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
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
