//! The cost of keeping saved audiences true (issue 5), on an existing database folder:
//!
//! 1. ingest throughput with 0 saved audiences (tracks of existing customers, batches of 100),
//!    twice: the first pass reads the customers cold, the second (`0 again`) is the warm
//!    baseline for the rows with audiences, which write to the same customers;
//! 2. the time to materialise each of 100 saved audiences (40 on traits, 40 event windows,
//!    10 counts and aggregates, 10 more from the spec's examples), then ingest again with 10
//!    and with 100 of them; with `AUDIENCEDB_BENCH_AUDIENCES=1000`, 900 more of the same kinds
//!    (each family again with other lengths, thresholds and trait values) and ingest with 1,000;
//!    Each row with audiences also says how many (audience, customer) pairs were settled
//!    without reading the customer (by the written events, or from the indexes), and how many
//!    written customers were still read;
//! 3. `audiences_of` latency (median, p99) over random existing customers, with all of them;
//! 4. time-driven updates: the clock moves one hour at a time through a day; entries and exits
//!    made, and customers re-evaluated per second of work.
//!
//! ```text
//! AUDIENCEDB_BENCH_DB=/tmp/audiencedb-bench/db cargo bench --bench audiences
//! ```
//!
//! `AUDIENCEDB_BENCH_BY_INDEXES=0` reads the written customers the events do not settle instead
//! of asking the indexes first (the path before; for same-binary comparisons).
//!
//! `AUDIENCEDB_BENCH_DUE_DAYS_FROM=N` lists a clock step's due customers' days once from `N`
//! audiences due (`Config::audience_due_days_from`; a large `N` turns it off);
//! `AUDIENCEDB_BENCH_WRITE_DAYS_FROM=N` the same for a write's customers that its events leave
//! open (`Config::audience_write_days_from`).
//!
//! `AUDIENCEDB_BENCH_NOW` (default 2026-11-01: the end of the period `scripts/bench-query.sh`
//! generates) is where the bench's clock starts. `AUDIENCEDB_BENCH_BATCHES` (default 200) is
//! how many batches of 100 tracks each ingest row times. The bench saves audiences named `bench_NNN`
//! and drops them at the end; the ingested events stay (ids `bench-*` are not used: they go to
//! existing customers, at the clock's time).

use std::time::Instant;

use audiencedb::ingest::message::Message;
use audiencedb::model::time;
use audiencedb::model::Value;
use audiencedb::testing::Internals;
use audiencedb::{Clock, Config, Db};
use rand::{Rng, SeedableRng};

const HOUR: i64 = 3_600_000;

fn rules() -> Vec<String> {
    let mut rules = Vec::new();
    let tiers = ["Bronze", "Silver", "Gold", "Platinum"];
    let countries = ["FI", "SE", "NO", "DK", "DE"];
    let devices = ["mobile", "desktop", "tablet"];
    for t in tiers {
        for c in countries {
            rules.push(format!("tier = {t} and country = {c}"));
        }
    }
    for d in devices {
        for t in tiers {
            rules.push(format!("device = {d} and not tier = {t}"));
        }
    }
    for (i, s) in ["facebook", "google", "email", "direct", "tiktok"]
        .iter()
        .enumerate()
    {
        rules.push(format!("source = {s}"));
        rules.push(format!("source = {s} and country in (FI, SE)"));
        rules.push(format!("newsletter = {} and source = {s}", i % 2 == 0));
    }
    rules.truncate(40);
    for (i, e) in [
        "viewed",
        "purchased",
        "added_to_cart",
        "visited",
        "searched",
    ]
    .iter()
    .enumerate()
    {
        for days in [1, 3, 7, 14, 30, 60, 90, 180] {
            rules.push(format!("{e} in last {} days", days + i));
        }
    }
    for n in [2, 3, 5] {
        rules.push(format!("purchased at least {n} times in last 90 days"));
        rules.push(format!("visited at least {n} times in last 7 days"));
    }
    rules.push("purchased sum(amount) > 500 in last 365 days".into());
    rules.push("purchased sum(amount) > 200 in last 90 days".into());
    rules.push("purchased avg(amount) >= 80 in last 90 days".into());
    rules.push("purchased where amount >= 100 in last 30 days".into());
    rules.extend(
        audiencedb::rules::SPEC_EXAMPLES
            .iter()
            .map(|r| r.to_string())
            .chain(["purchased ever and not purchased in last 90 days".to_string()])
            .map(|r| r.replace("in audience unsubscribed", "newsletter = false")),
    );
    assert_eq!(rules.len(), 100, "the bench saves 100 audiences");
    rules
}

const EVENTS: [&str; 5] = [
    "viewed",
    "purchased",
    "added_to_cart",
    "visited",
    "searched",
];

/// `n` rules (100 or a multiple): the 100 of [`rules`], then each family again with other
/// lengths, thresholds and trait values, so that the mix of kinds stays the same.
fn rules_n(n: usize) -> Vec<String> {
    let base = rules();
    let devices = ["mobile", "desktop", "tablet"];
    let mut out = base.clone();
    for k in 1..n / 100 {
        for (i, r) in base.iter().enumerate() {
            out.push(match i {
                0..=39 => format!("{r} and not device = {}", devices[(i + k) % 3]),
                40..=79 => {
                    let (e, j) = ((i - 40) / 8, (i - 40) % 8);
                    let days = [1, 3, 7, 14, 30, 60, 90, 180][j] + e + 20 * k;
                    format!("{} in last {days} days", EVENTS[e])
                }
                80..=89 => [
                    ("in last 365 days", 365 - k),
                    ("in last 90 days", 90 + k),
                    ("in last 30 days", 30 + k),
                    ("in last 7 days", 7 + k),
                ]
                .iter()
                .fold(r.clone(), |r, (from, days)| {
                    r.replace(from, &format!("in last {days} days"))
                }),
                _ => format!(
                    "({r}) and not country = {}",
                    ["FI", "SE", "NO", "DK", "DE"][k % 5]
                ),
            });
        }
    }
    out
}

fn main() {
    let Ok(path) = std::env::var("AUDIENCEDB_BENCH_DB") else {
        eprintln!(
            "set AUDIENCEDB_BENCH_DB to a database folder (scripts/bench-query.sh builds one)"
        );
        return;
    };
    let now = std::env::var("AUDIENCEDB_BENCH_NOW")
        .ok()
        .and_then(|t| time::parse_user_time(&t))
        .unwrap_or_else(|| time::parse_date("2026-11-01").unwrap());
    if std::env::var("AUDIENCEDB_BENCH_BY_INDEXES").is_ok_and(|v| v == "0") {
        // The path before: written customers the events do not settle are read.
        audiencedb::testing::settle_by_indexes(false);
        println!(
            "written customers the events do not settle: read (AUDIENCEDB_BENCH_BY_INDEXES=0)"
        );
    }
    let clock = Clock::manual(now);
    let mut config = Config::new(&path);
    config.clock = clock.clone();
    if let Some(n) = std::env::var("AUDIENCEDB_BENCH_DUE_DAYS_FROM")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        // For same-binary comparisons of a clock step's due days listed once or not.
        config.audience_due_days_from = n;
        println!("due days listed from {n} audiences due (AUDIENCEDB_BENCH_DUE_DAYS_FROM)");
    }
    if let Some(n) = std::env::var("AUDIENCEDB_BENCH_WRITE_DAYS_FROM")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        // For same-binary comparisons of a write's customers' days listed once or not.
        config.audience_write_days_from = n;
        println!(
            "written days listed from {n} audiences asking (AUDIENCEDB_BENCH_WRITE_DAYS_FROM)"
        );
    }
    let started = Instant::now();
    let db = Db::open_with(config).expect("open the database");
    println!("opened {path} in {:.2} s", started.elapsed().as_secs_f64());
    if db.audiences_as_of() > now {
        // Saved audiences never go back in time: a folder an earlier run moved on starts there.
        clock.set(db.audiences_as_of());
        println!(
            "the folder's audiences are at {}, later than the bench's start: the clock starts there \
             (use a fresh copy of the folder for comparable figures)",
            time::format_rfc3339(db.audiences_as_of())
        );
    }
    for a in db.audiences() {
        if a.name.starts_with("bench_") {
            db.drop_audience(&a.name)
                .expect("drop an old bench audience");
        }
    }
    let customers = db.read().indexes.everyone.len();
    let ids: Vec<String> = {
        let everyone = db.read().indexes.everyone.clone();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        (0..20_000)
            .filter_map(|_| {
                let n = rng.random_range(0..everyone.len());
                let cust = everyone.select(n as u32)?;
                db.external_id(cust).ok().flatten()
            })
            .collect()
    };
    println!(
        "{customers} customers; machine: {} cores",
        rayon::current_num_threads()
    );

    let batches: usize = std::env::var("AUDIENCEDB_BENCH_BATCHES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(200);
    let count: usize = std::env::var("AUDIENCEDB_BENCH_AUDIENCES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(100);
    let ingest = |label: &str| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let settled = db.settle_stats();
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        for _ in 0..batches {
            let msgs = (0..100)
                .map(|_| {
                    let id = &ids[rng.random_range(0..ids.len())];
                    let event = ["viewed", "purchased", "added_to_cart"][rng.random_range(0..3)];
                    let props = vec![("amount".into(), Value::Int(rng.random_range(1..200)))];
                    Message::track(id.clone(), event, props, Some(clock.now()))
                })
                .collect();
            db.ingest(msgs).expect("ingest");
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        println!(
            "ingest with {label:>4} audiences: {} events in {secs:.2} s = {:.0} events/s ({:.2} ms per batch of 100; process CPU {:.2} ms per batch)",
            batches * 100,
            (batches * 100) as f64 / secs,
            secs * 1e3 / batches as f64,
            cpu * 1e3 / batches as f64
        );
        let s = db.settle_stats();
        if s.pairs > settled.pairs {
            println!(
                "  the written events settled {} of {} (audience, customer) pairs ({} forced, {} unchanged, {} from the indexes); {} of {} written customers still read",
                s.forced + s.unchanged + s.by_indexes
                    - settled.forced
                    - settled.unchanged
                    - settled.by_indexes,
                s.pairs - settled.pairs,
                s.forced - settled.forced,
                s.unchanged - settled.unchanged,
                s.by_indexes - settled.by_indexes,
                s.customers_read - settled.customers_read,
                s.customers - settled.customers
            );
        }
    };
    ingest("0");
    // The first pass reads the batches' customers cold; the same customers again, warm, are
    // the baseline the rows with audiences compare with.
    ingest("0 again");

    let rules = rules_n(count);
    let mut define_times = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let started = Instant::now();
        let info = db
            .define_audience(&format!("bench_{i:03}"), rule)
            .expect("define");
        let secs = started.elapsed().as_secs_f64();
        define_times.push((secs, rule.clone(), info.size, info.timers));
        if i == 9 {
            ingest("10");
        }
        if i == 99 {
            let total: f64 = define_times.iter().map(|d| d.0).sum();
            println!("materialised the first 100 audiences in {total:.1} s");
            ingest("100");
        }
    }
    let total: f64 = define_times.iter().map(|d| d.0).sum();
    println!(
        "materialised {} audiences in {total:.1} s; the slowest:",
        rules.len()
    );
    let mut slow = define_times.clone();
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (secs, rule, size, timers) in slow.iter().take(8) {
        println!(
            "  {:>8.1} ms  {size:>8} members {timers:>8} timers  {rule}",
            secs * 1e3
        );
    }
    let med = {
        let mut t: Vec<f64> = define_times.iter().map(|d| d.0).collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    println!("  median {:.1} ms", med * 1e3);
    if rules.len() > 100 {
        ingest(&rules.len().to_string());
    }

    // The lookup.
    for _ in 0..2 {
        for id in ids.iter().take(2000) {
            std::hint::black_box(db.audiences_of(id).unwrap());
        }
    }
    let mut times: Vec<u64> = Vec::with_capacity(ids.len() * 5);
    let mut held = 0usize;
    for _ in 0..5 {
        for id in &ids {
            let started = Instant::now();
            let names = db.audiences_of(id).unwrap();
            times.push(started.elapsed().as_nanos() as u64);
            held += names.len();
        }
    }
    times.sort_unstable();
    let pct =
        |p: f64| times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)] as f64 / 1e3;
    println!(
        "audiences_of with {} audiences: median {:.2} µs, p99 {:.2} µs over {} lookups ({:.1} audiences per customer)",
        rules.len(),
        pct(0.5),
        pct(0.99),
        times.len(),
        held as f64 / times.len() as f64
    );

    if let Ok(scale) = std::env::var("AUDIENCEDB_BENCH_OF_SCALE") {
        lookups_at_scale(&scale);
    }

    // Time-driven updates through one day.
    let started = Instant::now();
    let mut changes = 0;
    for _ in 0..24 {
        clock.advance(HOUR);
        changes += db.advance_audiences().expect("advance");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "one day of clock in hourly steps: {changes} entries and exits in {secs:.2} s ({:.0} changes/s)",
        changes as f64 / secs
    );

    let started = Instant::now();
    let report = db.verify().expect("verify");
    println!(
        "verify (indexes and all {} audiences against fresh evaluations): {} in {:.1} s",
        rules.len(),
        if report.is_ok() { "ok" } else { "PROBLEMS" },
        started.elapsed().as_secs_f64()
    );
    for p in report.problems.iter().take(5) {
        println!("  {p}");
    }
    for i in 0..rules.len() {
        db.drop_audience(&format!("bench_{i:03}")).expect("drop");
    }
}

/// `audiences_of` on members alone at a scale no test shop here reaches:
/// `AUDIENCEDB_BENCH_OF_SCALE=CUSTOMERS,AUDIENCES,PER_CUSTOMER` puts each of CUSTOMERS internal
/// ids in PER_CUSTOMER audiences drawn at random among AUDIENCES, then times the lookup (from the
/// internal id: what `Db::audiences_of` does after finding it in the id map) for 100,000 random
/// customers.
fn lookups_at_scale(spec: &str) {
    let n: Vec<u32> = spec.split(',').filter_map(|x| x.parse().ok()).collect();
    let [customers, audiences, per] = n[..] else {
        panic!("AUDIENCEDB_BENCH_OF_SCALE=CUSTOMERS,AUDIENCES,PER_CUSTOMER");
    };
    let started = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut members = vec![roaring::RoaringBitmap::new(); audiences as usize];
    for c in 0..customers {
        for _ in 0..per {
            members[rng.random_range(0..audiences) as usize].insert(c);
        }
    }
    let named = members
        .into_iter()
        .enumerate()
        .map(|(i, m)| (format!("scale_{i:04}"), m))
        .collect();
    let kept = audiencedb::testing::MembersOnly::new(named);
    println!(
        "{customers} customers in {per} of {audiences} audiences each, built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::with_capacity(100_000);
    let mut held = 0;
    for _ in 0..100_000 {
        let c = rng.random_range(0..customers);
        let started = Instant::now();
        let names = kept.audiences_of(c);
        times.push(started.elapsed().as_nanos() as u64);
        held += names.len();
    }
    times.sort_unstable();
    let pct =
        |p: f64| times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)] as f64 / 1e3;
    println!(
        "audiences_of from the internal id, {audiences} audiences at {customers} customers: median {:.2} µs, p99 {:.2} µs ({:.1} audiences per customer)",
        pct(0.5),
        pct(0.99),
        held as f64 / times.len() as f64
    );
}

/// The process's CPU time so far (user and system, every thread), in seconds: under a loaded
/// machine a row's CPU per batch says more than its wall time.
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}
