//! `top`, `recommend` and `recent` (issue 21): warm latency against an existing database folder
//! (`scripts/bench-query.sh` builds one from `gen`), median and p99 per case.
//!
//! ```text
//! AUDIENCEDB_BENCH_DB=/tmp/audiencedb-qbench/db-200000-time cargo bench --bench values [FILTER]
//! ```
//!
//! - `AUDIENCEDB_BENCH_DB`: the folder. Unset: the bench says so and exits.
//! - `AUDIENCEDB_BENCH_NOW`: *now* (RFC 3339 or a date), by default 2026-11-01, the end of the
//!   period `scripts/bench-query.sh` generates.
//! - `AUDIENCEDB_BENCH_JSON`: also write the `top` cases (rule, event, property, window, median
//!   and p99 ms) there, for `scripts/duckdb_compare.py --top-json`.
//! - FILTER: run only the cases whose name contains it.
//!
//! A `top` case runs at least 20 times and for at least two seconds; `recommend` and `recent`
//! run once for each of 500 customers spread over the id space (after one untimed pass), so
//! their median and p99 are over customers, as a web page sees them. Like `benches/query.rs`,
//! this is a plain timed loop rather than criterion's: criterion reports means and confidence
//! intervals, and the issue's targets are a median and a p99. The one-minute load average after
//! each case is printed: on a shared machine it tells which figures had company.

mod common;

use std::time::{Duration, Instant};

use audiencedb::query::{TopOrder, TopRequest};

use common::report;

const MIN_RUNS: usize = 20;
const MIN_TIME: Duration = Duration::from_secs(2);
const CUSTOMERS: u32 = 500;

fn main() {
    let Some((db, path, now)) = common::open("values") else {
        return;
    };
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let everyone = db.query("everyone", now).expect("everyone").len();
    common::header(&db, &path, now);

    let tops = [
        (
            "top-x-90d",
            "purchased product X",
            "purchased",
            "product",
            Some("in last 90 days"),
            TopOrder::Customers,
        ),
        (
            "top-viewers-90d",
            "viewed in last 7 days",
            "purchased",
            "product",
            Some("in last 90 days"),
            TopOrder::Customers,
        ),
        // The issue's case: an audience of about 50,000 customers at 1M (48,448 in the 1M
        // time-ordered shop of `gen --seed 1`), all products, 90 days.
        (
            "top-carts-90d",
            "added_to_cart in last 5 days",
            "purchased",
            "product",
            Some("in last 90 days"),
            TopOrder::Customers,
        ),
        (
            "top-gold-category-lift",
            "tier = Gold",
            "viewed",
            "category",
            Some("in last 30 days"),
            TopOrder::Lift,
        ),
        (
            "top-everyone-ever",
            "everyone",
            "purchased",
            "product",
            None,
            TopOrder::Customers,
        ),
    ];
    let mut json = Vec::new();
    for (name, rule, event, property, window, order) in tops {
        if !wanted(name) {
            continue;
        }
        let mut request = TopRequest::new(rule, event, property);
        request.window = window.map(str::to_owned);
        request.order = order;
        let first = db.top(&request, now).expect(name);
        let mut times = Vec::new();
        let started = Instant::now();
        while times.len() < MIN_RUNS || started.elapsed() < MIN_TIME {
            let t = Instant::now();
            let top = db.top(&request, now).expect(name);
            times.push(t.elapsed());
            assert_eq!(top.rows, first.rows, "{name}: the answer changed");
        }
        let what = format!(
            "`top \"{rule}\" --event {event} --by {property}{}`: audience {}, {} rows",
            window.map_or(String::new(), |w| format!(" --window \"{w}\"")),
            first.audience,
            first.rows.len()
        );
        let (median, p99) = report(name, &what, times);
        json.push(serde_json::json!({
            "name": name, "rule": rule, "event": event, "property": property,
            "window": window, "order": format!("{order:?}").to_lowercase(),
            "audience": first.audience, "median_ms": median, "p99_ms": p99,
        }));
    }
    if let Ok(out) = std::env::var("AUDIENCEDB_BENCH_JSON") {
        let text = serde_json::to_string_pretty(&json).expect("JSON");
        std::fs::write(&out, text).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    }

    let ids: Vec<String> = (0..CUSTOMERS)
        .filter_map(|i| {
            let internal = (u64::from(i) * everyone / u64::from(CUSTOMERS)) as u32;
            db.external_id(internal).ok().flatten()
        })
        .collect();
    for (name, window) in [
        ("recommend-90d", Some("in last 90 days")),
        ("recommend-ever", None),
    ] {
        if !wanted(name) {
            continue;
        }
        let mut times = Vec::new();
        let mut popular = 0;
        for pass in 0..2 {
            for id in &ids {
                let t = Instant::now();
                let r = db
                    .recommend(id, "purchased", "product", window, 10, now)
                    .expect(name);
                if pass == 1 {
                    times.push(t.elapsed());
                    popular += usize::from(r.popular);
                }
            }
        }
        let what = format!(
            "`recommend ID --event purchased --by product{}` for {} customers ({popular} got the popular values)",
            window.map_or(String::new(), |w| format!(" --window \"{w}\"")),
            ids.len()
        );
        report(name, &what, times);
    }
    if wanted("recent") {
        let mut times = Vec::new();
        let mut values = 0;
        for pass in 0..2 {
            for id in &ids {
                let t = Instant::now();
                let (recent, _) = db.recent(id, "viewed", "product", 10, now).expect("recent");
                if pass == 1 {
                    times.push(t.elapsed());
                    values += recent.len();
                }
            }
        }
        let what = format!(
            "`customer recent ID --event viewed --by product` for {} customers ({values} values)",
            ids.len()
        );
        report("recent", &what, times);
    }
}
