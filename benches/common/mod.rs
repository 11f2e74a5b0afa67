//! What the plain timed benches share (`values`, `reports`, `track_stream`): percentiles, the load average, the
//! table rows they print, and opening the folder named by `AUDIENCEDB_BENCH_DB` at the *now* of
//! `AUDIENCEDB_BENCH_NOW`.

#![allow(dead_code)] // each bench uses a different part

use std::time::Duration;

use audiencedb::model::time::{self, Timestamp};
use audiencedb::Db;

/// The value at percentile `p` (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The one-minute load average: on a shared machine it tells which figures had company.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Prints a `| case | what | runs | median ms | p99 ms | load |` row; returns the median and the
/// p99 in milliseconds.
pub fn report(name: &str, what: &str, mut times: Vec<Duration>) -> (f64, f64) {
    times.sort_unstable();
    println!(
        "| {name} | {what} | {} | {:.3} | {:.3} | {} |",
        times.len(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0)),
        load_average().map_or(String::new(), |l| format!("{l:.1}")),
    );
    (ms(percentile(&times, 50.0)), ms(percentile(&times, 99.0)))
}

/// The folder of `AUDIENCEDB_BENCH_DB`, opened, and *now* from `AUDIENCEDB_BENCH_NOW` (default
/// 2026-11-01); `None` (after saying so) when no folder is named.
pub fn open(bench: &str) -> Option<(Db, String, Timestamp)> {
    let Ok(path) = std::env::var("AUDIENCEDB_BENCH_DB") else {
        println!(
            "{bench} bench skipped: set AUDIENCEDB_BENCH_DB to a database folder \
             (scripts/bench-query.sh builds one)"
        );
        return None;
    };
    let now_text = std::env::var("AUDIENCEDB_BENCH_NOW").unwrap_or_else(|_| "2026-11-01".into());
    let Some(now) = time::parse_user_time(&now_text) else {
        eprintln!("AUDIENCEDB_BENCH_NOW: not an RFC 3339 time or a date: {now_text:?}");
        std::process::exit(2);
    };
    let db = Db::open(&path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}");
        std::process::exit(1);
    });
    Some((db, path, now))
}

/// Prints the folder, its size and *now*, then the head of the results table.
pub fn header(db: &Db, path: &str, now: Timestamp) {
    let everyone = db.query("everyone", now).expect("everyone").len();
    println!(
        "{path}: {everyone} customers; now {}\n",
        time::format_rfc3339(now)
    );
    println!("| case | what | runs | median ms | p99 ms | load |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
}
