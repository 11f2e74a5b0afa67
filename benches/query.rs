//! Query latency (issue 4): the example rules of docs/RULES.md and a few extra ones, each prepared
//! once and evaluated warm many times at one fixed *now* against an existing database folder; the
//! median and p99 time per rule, and peak memory.
//!
//! ```text
//! AUDIENCEDB_BENCH_DB=/tmp/audiencedb-qbench/db-1000000 cargo bench --bench query [FILTER]
//! ```
//!
//! - `AUDIENCEDB_BENCH_DB`: the folder (`scripts/bench-query.sh` builds one from `gen`, with the
//!   saved audience `unsubscribed` = `newsletter = false`). Unset: the bench says so and exits.
//! - `AUDIENCEDB_BENCH_NOW`: the rules' now (RFC 3339 or a date), by default 2026-11-01, the end
//!   of the period that `scripts/bench-query.sh` generates.
//! - `AUDIENCEDB_BENCH_RUNS`: timed runs a rule (default 50). Fast rules run on until two seconds
//!   have passed (at most 2,000 runs), so that their p99 is not just the slowest run; slow rules
//!   stop after a minute once they have 10 runs (the table says how many runs each rule had).
//! - `AUDIENCEDB_BENCH_JSON`: also write the results there, for `scripts/duckdb_compare.py`.
//! - FILTER: run only the rules whose text contains it.
//!
//! Each rule runs three times untimed first (warm). p99 is the nearest-rank percentile. Peak
//! memory is the process's resident high-water mark (`VmHWM`): per rule after resetting it
//! (`/proc/self/clear_refs`), and for the whole run. The machine's one-minute load average after
//! each rule is printed too: on a shared machine it tells which figures had company.

use std::time::{Duration, Instant};

use audiencedb::model::time;
use audiencedb::query::PreparedRule;
use audiencedb::Db;

/// The examples of docs/RULES.md (`SPEC_EXAMPLES`), then extra rules: a pure trait rule, a complement
/// over everyone, `where` on properties that have no index (a number, free text), an average;
/// then the kinds of issue 20, the trait orderings of issue 23, the sequences, `first`/`last`,
/// `distinct` and buckets of issue 22. `scripts/duckdb_compare.py` holds the same list with the SQL of
/// each.
fn rules() -> Vec<&'static str> {
    let spec = audiencedb::rules::SPEC_EXAMPLES;
    let mut rules = spec[..7].to_vec();
    // The audience example with its rule inlined, for as long as audiences cannot be saved.
    rules.push(audiencedb::rules::SPEC_EXAMPLE_INLINED);
    rules.extend(&spec[7..]);
    rules.extend([
        "tier = Gold",
        "not tier = Gold",
        "purchased where amount >= 100 in last 30 days",
        "searched where query contains boots in last 90 days",
        "purchased avg(amount) >= 80 in last 90 days",
    ]);
    // Issue 20: the kinds that were slow against DuckDB, several rules each: event filters with
    // two conditions, substrings of traits and of event properties, windows under a day.
    rules.extend([
        "purchased where (category = shoes and amount >= 60) in last 45 days",
        "added_to_cart where (category = electronics and quantity >= 2) in last 30 days",
        "purchased where ((category = books or category = toys) and amount < 20) \
         at least 2 times in last 90 days",
        "viewed where (category = garden and not price > 30) in last 14 days",
        "email contains \"@example.org\"",
        "email contains \"emma.\"",
        "address.city contains \"ki\"",
        "first_name contains \"li\" and tier = Gold",
        "searched where query contains \"waterproof\" in last 30 days",
        "searched where query contains \"for kids\" at least 2 times in last 180 days",
        "viewed where product contains \"p-01\" in last 7 days",
        "visited in last 2 hours",
        "viewed at least 3 times in last 12 hours",
        "added_to_cart in last 90 minutes and not purchased in last 90 minutes",
    ]);
    // Issue 23: orderings on numeric and date-time traits, from the range index.
    rules.extend([
        "signup_at > 60 days ago",
        "age between 25 and 34",
        "signup_at between 2025-06-01 and 2025-12-31 and age < 30",
    ]);
    // Issue 22: sequences.
    rules.extend([
        "added_to_cart then not purchased within 1 hour in last 7 days",
        "viewed then not purchased with same product within 1 day in last 7 days",
        "added_to_cart then purchased within 1 hour in last 7 days",
    ]);
    // Issue 22: first and last.
    rules.extend([
        "first purchased in last 30 days",
        "last purchased before 180 days ago",
        "first viewed where price >= 100 in last 7 days",
    ]);
    // Issue 22: distinct values as a frequency.
    rules.extend([
        "purchased distinct(product) >= 3 in last 90 days",
        "viewed distinct(category) >= 5 in last 30 days",
    ]);
    // Issue 22: buckets of a named split (kept as 100 bitmaps from the split's first use).
    rules.extend(["bucket(exp) < 50 and tier = Gold", "bucket(exp) < 50"]);
    rules
}

const WARMUP: usize = 3;
const MIN_TIME: Duration = Duration::from_secs(2);
const MAX_RUNS: usize = 2_000;
const MAX_TIME: Duration = Duration::from_secs(60);
const MIN_RUNS_WHEN_SLOW: usize = 10;
/// Runs of `Db::check` a rule.
const CHECK_RUNS: usize = 200;

struct Measured {
    rule: &'static str,
    members: u64,
    runs: usize,
    median_ms: f64,
    p99_ms: f64,
    /// `Db::check` (parse, plan, warnings) alone: what the warnings add is part of it.
    check_us: f64,
    peak_rss_kib: Option<u64>,
    load: Option<f64>,
}

fn main() {
    let Ok(path) = std::env::var("AUDIENCEDB_BENCH_DB") else {
        println!(
            "query bench skipped: set AUDIENCEDB_BENCH_DB to a database folder \
             (scripts/bench-query.sh builds one)"
        );
        return;
    };
    let now_text = std::env::var("AUDIENCEDB_BENCH_NOW").unwrap_or_else(|_| "2026-11-01".into());
    let Some(now) = time::parse_user_time(&now_text) else {
        eprintln!("AUDIENCEDB_BENCH_NOW: not an RFC 3339 time or a date: {now_text:?}");
        std::process::exit(2);
    };
    let min_runs: usize = match std::env::var("AUDIENCEDB_BENCH_RUNS") {
        Ok(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("AUDIENCEDB_BENCH_RUNS: not a number: {s:?}");
            std::process::exit(2);
        }),
        Err(_) => 50,
    };
    // `cargo bench` passes `--bench`; any other argument filters the rules.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));

    let opened = Instant::now();
    let db = Db::open(&path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}");
        std::process::exit(1);
    });
    println!(
        "{path}: opened in {:.0} ms, resident {} MiB; now {}; at least {min_runs} warm runs a rule",
        ms(opened.elapsed()),
        status_kib("VmRSS:").unwrap_or(0) / 1024,
        time::format_rfc3339(now),
    );

    let mut results = Vec::new();
    let mut failed: Vec<(&str, String)> = Vec::new();
    for rule in rules() {
        if filter.as_deref().is_some_and(|f| !rule.contains(f)) {
            continue;
        }
        let prepared = PreparedRule::new(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        let reset = reset_peak();
        // An unknown audience is an evaluation error: report it and go on with the others.
        let members = match db.query_prepared(&prepared, now) {
            Ok(audience) => audience.len(),
            Err(e) => {
                let error = e.to_string().lines().next().unwrap_or_default().to_owned();
                println!("error: {error}  ({rule})");
                failed.push((rule, error));
                continue;
            }
        };
        for _ in 1..WARMUP {
            db.query_prepared(&prepared, now).expect(rule);
        }
        let mut times = Vec::with_capacity(min_runs);
        let started = Instant::now();
        loop {
            let (n, spent) = (times.len(), started.elapsed());
            let enough = n >= min_runs && (spent >= MIN_TIME || n >= MAX_RUNS);
            if enough || (spent >= MAX_TIME && n >= MIN_RUNS_WHEN_SLOW.min(min_runs)) {
                break;
            }
            let t = Instant::now();
            let audience = db.query_prepared(&prepared, now).expect(rule);
            let took = t.elapsed();
            assert_eq!(
                audience.len(),
                members,
                "{rule}: the answer changed between runs"
            );
            drop(audience);
            times.push(took);
        }
        times.sort_unstable();
        // The rule's warnings alone, for the cost of checking: none expected for these rules.
        let mut checks = Vec::with_capacity(CHECK_RUNS);
        for _ in 0..CHECK_RUNS {
            let t = Instant::now();
            let warnings = db.check(rule).expect(rule);
            checks.push(t.elapsed());
            assert!(warnings.is_empty(), "{rule}: {warnings:?}");
        }
        checks.sort_unstable();
        let m = Measured {
            rule,
            members,
            runs: times.len(),
            median_ms: ms(percentile(&times, 50.0)),
            p99_ms: ms(percentile(&times, 99.0)),
            check_us: ms(percentile(&checks, 50.0)) * 1e3,
            peak_rss_kib: if reset { status_kib("VmHWM:") } else { None },
            load: load_average(),
        };
        println!(
            "{:>10.3} ms median {:>10.3} ms p99 {:>9} members {:>8.1} µs check  {}",
            m.median_ms, m.p99_ms, m.members, m.check_us, rule
        );
        results.push(m);
    }
    // The high-water mark since the last reset; with resets, the largest of the rules' peaks.
    let peak_kib = results
        .iter()
        .filter_map(|m| m.peak_rss_kib)
        .max()
        .or_else(|| status_kib("VmHWM:"));

    println!();
    println!("| rule | members | runs | median ms | p99 ms | check µs | peak RSS MiB | load |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &results {
        println!(
            "| `{}` | {} | {} | {} | {} | {:.1} | {} | {} |",
            m.rule,
            m.members,
            m.runs,
            fmt_ms(m.median_ms),
            fmt_ms(m.p99_ms),
            m.check_us,
            m.peak_rss_kib.map_or("".into(), |k| (k / 1024).to_string()),
            m.load.map_or("".into(), |l| format!("{l:.1}")),
        );
    }
    for (rule, error) in &failed {
        println!("| `{rule}` | error: {error} | | | | | | |");
    }
    if let Some(k) = peak_kib {
        println!("\npeak RSS of the whole run: {} MiB", k / 1024);
    }

    if let Ok(out) = std::env::var("AUDIENCEDB_BENCH_JSON") {
        let json = serde_json::json!({
            "db": path,
            "now": time::format_rfc3339(now),
            "peak_rss_kib": peak_kib,
            "rules": results.iter().map(|m| serde_json::json!({
                "rule": m.rule,
                "members": m.members,
                "runs": m.runs,
                "median_ms": m.median_ms,
                "p99_ms": m.p99_ms,
                "check_us": m.check_us,
                "peak_rss_kib": m.peak_rss_kib,
                "load": m.load,
            })).collect::<Vec<_>>(),
            "errors": failed.iter().map(|(rule, error)| serde_json::json!({
                "rule": rule,
                "error": error,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&json).expect("results serialise");
        std::fs::write(&out, text + "\n").unwrap_or_else(|e| panic!("writing {out}: {e}"));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(x: f64) -> String {
    if x < 1.0 {
        format!("{x:.3}")
    } else if x < 100.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.0}")
    }
}

/// The nearest-rank percentile `p` of sorted, non-empty `times`.
fn percentile(times: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * times.len() as f64).ceil() as usize;
    times[rank.clamp(1, times.len()) - 1]
}

/// A `kB` line of /proc/self/status (`VmRSS:`, `VmHWM:`), in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The one-minute load average of the machine.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Resets the resident high-water mark to the current resident size (Linux 4.0 and later).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
