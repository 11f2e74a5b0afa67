//! The funnel and experiment reports (issue 22) and the purchase models' histories and fit
//! (issue 23): warm latency against an existing database folder
//! (`scripts/bench-query.sh` builds one from `gen`), median and p99 per case.
//!
//! ```text
//! AUDIENCEDB_BENCH_DB=/tmp/audiencedb-qbench/db-100000-time AUDIENCEDB_BENCH_NOW=2026-11-01 \
//!     cargo bench --bench reports [FILTER]
//! ```
//!
//! - `AUDIENCEDB_BENCH_DB`, `AUDIENCEDB_BENCH_NOW` (default 2026-11-01): as `benches/values.rs`.
//! - `AUDIENCEDB_BENCH_JSON`: also write each funnel case (steps, limit, window, median and p99
//!   ms, the answer's JSON) there, for `scripts/duckdb_reports.py`, which runs the same funnels
//!   in DuckDB and compares the answers.
//! - FILTER: run only the cases whose name contains it.
//!
//! Each case runs at least 10 times and for at least two seconds, after one untimed run; the
//! answer must not change between runs.

mod common;

use std::time::{Duration, Instant};

use audiencedb::predict::TimeUnit;
use audiencedb::query::histories::HistoryRequest;
use audiencedb::query::reports::{ExperimentRequest, FunnelRequest};

use common::report;

const MIN_RUNS: usize = 10;
const MIN_TIME: Duration = Duration::from_secs(2);

/// Runs `f` until it has run `MIN_RUNS` times and for `MIN_TIME`, after one untimed run whose
/// answer every later one must equal.
fn timed<T: PartialEq + std::fmt::Debug>(
    name: &str,
    mut f: impl FnMut() -> T,
) -> (T, Vec<Duration>) {
    let first = f();
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < MIN_RUNS || started.elapsed() < MIN_TIME {
        let t = Instant::now();
        let again = f();
        times.push(t.elapsed());
        assert_eq!(again, first, "{name}: the answer changed");
    }
    (first, times)
}

fn main() {
    let Some((db, path, now)) = common::open("reports") else {
        return;
    };
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    common::header(&db, &path, now);

    let funnels: [(&str, &[&str], &str, Option<&str>); 3] = [
        (
            "funnel-4-steps-30d",
            &["visited", "viewed", "added_to_cart", "purchased"],
            "7 days",
            Some("in last 30 days"),
        ),
        (
            "funnel-cart-1h-7d",
            &["added_to_cart", "purchased"],
            "1 hour",
            Some("in last 7 days"),
        ),
        (
            "funnel-search-view-buy-90d",
            &["searched", "viewed", "purchased"],
            "1 day",
            Some("in last 90 days"),
        ),
    ];
    let mut json = Vec::new();
    for (name, steps, within, window) in funnels {
        if !wanted(name) {
            continue;
        }
        let mut request = FunnelRequest::new(steps, within);
        request.window = window.map(str::to_owned);
        let (answer, times) = timed(name, || db.funnel(&request, now).expect(name).steps);
        let what = format!(
            "`funnel {} --within \"{within}\"{}`: {}",
            steps.join(" "),
            window.map_or(String::new(), |w| format!(" --window \"{w}\"")),
            answer
                .iter()
                .map(|s| s.customers.to_string())
                .collect::<Vec<_>>()
                .join(" → ")
        );
        let (median, p99) = report(name, &what, times);
        let funnel = db.funnel(&request, now).expect(name);
        json.push(serde_json::json!({
            "name": name, "steps": steps, "within": within, "window": window,
            "median_ms": median, "p99_ms": p99, "answer": funnel.to_json(),
        }));
    }
    if let Ok(out) = std::env::var("AUDIENCEDB_BENCH_JSON") {
        let text = serde_json::to_string_pretty(&json).expect("JSON");
        std::fs::write(&out, text).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    }

    let experiments = [
        (
            "experiment-viewers-30d",
            "viewed in last 30 days",
            "purchased in last 30 days",
            vec![50u8, 50],
        ),
        (
            "experiment-everyone-holdout",
            "everyone",
            "purchased in last 90 days",
            vec![5, 95],
        ),
    ];
    for (name, audience, goal, shares) in experiments {
        if !wanted(name) {
            continue;
        }
        let mut request = ExperimentRequest::new("bench_split", audience, goal);
        request.variants = shares.clone();
        let (answer, times) = timed(name, || db.experiment(&request, now).expect(name).variants);
        let what = format!(
            "`experiment bench_split --audience \"{audience}\" --goal \"{goal}\" --variants {}`: {} customers",
            shares
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(","),
            answer.iter().map(|v| v.customers).sum::<u64>()
        );
        report(name, &what, times);
    }

    // The purchase models: every purchaser's history, and the BG/NBD + Gamma-Gamma fit to them.
    let buying = HistoryRequest {
        event: "purchased".into(),
        value: Some("amount".into()),
        unit: TimeUnit::Weeks,
    };
    if wanted("histories-purchased") {
        let (n, times) = timed("histories-purchased", || {
            db.purchase_histories(&buying, now)
                .expect("histories")
                .histories
                .len()
        });
        report(
            "histories-purchased",
            &format!("purchase histories of `purchased` with `amount`: {n} customers"),
            times,
        );
    }
    if wanted("fit-purchased") {
        let (model, times) = timed("fit-purchased", || {
            let m = db.fit_purchases(&buying, now).expect("fit");
            (m.customers, m.repeat_customers, m.bgnbd.r.to_bits())
        });
        report(
            "fit-purchased",
            &format!(
                "BG/NBD + Gamma-Gamma fit (histories included): {} customers, {} repeat",
                model.0, model.1
            ),
            times,
        );
    }
}
