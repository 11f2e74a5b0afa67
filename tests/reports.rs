//! The funnel and experiment reports against plain evaluators written from the stored events.
//!
//! Funnel: for every customer, every combination of their events is tried (no greedy step, no
//! bitmap): the deepest step k with events e1 < ... < ek matching the steps, e1 in the window
//! (the reference's own window test), ek − e1 within the limit, all up to *now*. The journey whose
//! gaps make the medians is the earliest start reaching that depth, and from it the path with the
//! earliest times. Counts, conversions and medians must be identical:
//! - hand-built timelines with events at the limit and the window's edges to the millisecond, at
//!   the same millisecond as the previous step, after *now*;
//! - proptest: small random timelines on a grid of quarter hours ± 1 ms around *now*, random
//!   steps (shorthands, `where`), limits, windows and audiences; and the same on a grid of whole
//!   days, where most days lie wholly inside the steps' ranges.
//!
//! Experiment: each audience member's variant from `bucket` (pinned against Python in the
//! library's unit tests), the goal from the reference evaluator; counts must be identical and the
//! comparison fields those of `compare`.

mod fixture;
mod reference;

use std::collections::BTreeSet;

use audiencedb::db::Event;
use audiencedb::model::bucket::bucket;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::query::reports::{compare, ExperimentRequest, FunnelRequest};
use audiencedb::rules::{self, EventCondition, ExprKind};
use audiencedb::{Customer, Db};
use fixture::Fixture;
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap_or_else(|| panic!("bad date-time {rfc3339}"))
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn condition(text: &str) -> EventCondition {
    match rules::parse(text).unwrap().expr.kind {
        ExprKind::Event(c) => *c,
        other => panic!("{text:?} is not an event condition: {other:?}"),
    }
}

/// One step's row as the plain evaluator computes it: customers and the median gap.
type Row = (u64, Option<f64>);

/// The deepest step reachable from the start `events[i]` by brute force, and the earliest-times
/// path of that depth.
fn deepest_from(
    events: &[&Event],
    i: usize,
    steps: &[EventCondition],
    within: i64,
    now: i64,
) -> (usize, Vec<i64>) {
    let t1 = events[i].timestamp;
    let mut best: (usize, Vec<i64>) = (1, vec![t1]);
    // Every increasing combination, depth first; `path` holds the times so far.
    fn extend(
        events: &[&Event],
        last: usize,
        path: &mut Vec<i64>,
        steps: &[EventCondition],
        limit: i64,
        now: i64,
        best: &mut (usize, Vec<i64>),
    ) {
        let depth = path.len();
        if depth > best.0 || (depth == best.0 && *path < best.1) {
            *best = (depth, path.clone());
        }
        if depth == steps.len() {
            return;
        }
        for (j, e) in events.iter().enumerate().skip(last + 1) {
            let prev = *path.last().unwrap();
            if e.timestamp > prev
                && e.timestamp <= limit
                && e.timestamp <= now
                && reference::event_matches(&steps[depth], e, now)
            {
                path.push(e.timestamp);
                extend(events, j, path, steps, limit, now, best);
                path.pop();
            }
        }
    }
    let mut path = vec![t1];
    extend(events, i, &mut path, steps, t1 + within, now, &mut best);
    best
}

fn median(mut v: Vec<i64>) -> Option<f64> {
    v.sort();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2] as f64),
        _ => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2.0),
    }
}

fn plain_funnel(
    customers: &[Customer],
    steps: &[&str],
    within: i64,
    window: Option<&str>,
    audience: Option<&str>,
    now: i64,
) -> Vec<Row> {
    let steps: Vec<EventCondition> = steps.iter().map(|t| condition(t)).collect();
    let window = condition(&format!("did x {}", window.unwrap_or("ever")));
    let members: Option<BTreeSet<String>> = audience.map(|rule| {
        reference::evaluate(&rules::parse(rule).unwrap(), now, customers)
            .unwrap()
            .into_iter()
            .collect()
    });
    let k = steps.len();
    let mut reached = vec![0u64; k];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); k];
    for c in customers {
        if members.as_ref().is_some_and(|m| !m.contains(&c.id)) {
            continue;
        }
        let mut events: Vec<&Event> = c.events.iter().collect();
        events.sort_by_key(|e| e.timestamp);
        let mut best: (usize, Vec<i64>) = (0, Vec::new());
        for (i, e) in events.iter().enumerate() {
            if !reference::event_matches(&steps[0], e, now)
                || !reference::in_window(&window, e.timestamp, now)
            {
                continue;
            }
            let found = deepest_from(&events, i, &steps, within, now);
            // The earliest start wins ties: only a deeper one replaces it.
            if found.0 > best.0 {
                best = found;
            }
        }
        for s in 0..best.0 {
            reached[s] += 1;
            if s > 0 {
                gaps[s].push(best.1[s] - best.1[s - 1]);
            }
        }
    }
    (0..k)
        .map(|s| {
            (
                reached[s],
                if s == 0 {
                    None
                } else {
                    median(gaps[s].clone())
                },
            )
        })
        .collect()
}

fn check_funnel(
    db: &Db,
    customers: &[Customer],
    steps: &[&str],
    within: &str,
    window: Option<&str>,
    audience: Option<&str>,
    now: i64,
) -> Vec<Row> {
    let mut req = FunnelRequest::new(steps, within);
    req.window = window.map(str::to_owned);
    req.audience = audience.map(str::to_owned);
    let limit = audiencedb::query::reports::parse_within(within).unwrap();
    let expected = plain_funnel(customers, steps, limit, window, audience, now);
    // The journeys of the first answer are read from each customer's events, and so are the
    // second's if the steps' event columns were never asked for; the columns, built by then,
    // give the last.
    audiencedb::testing::journeys_by_columns_from(0);
    let mut got = db.funnel(&req, now).unwrap();
    for _ in 0..2 {
        let again = db.funnel(&req, now).unwrap();
        let rows = |f: &audiencedb::query::reports::Funnel| -> Vec<Row> {
            f.steps.iter().map(|r| (r.customers, r.median_ms)).collect()
        };
        assert_eq!(rows(&again), rows(&got), "the answers of one funnel differ");
        got = again;
    }
    let rows: Vec<Row> = got
        .steps
        .iter()
        .map(|r| (r.customers, r.median_ms))
        .collect();
    let context = format!(
        "funnel {steps:?} within {within} window {window:?} audience {audience:?} at {now}"
    );
    assert_eq!(rows, expected, "{context}");
    for (i, r) in got.steps.iter().enumerate() {
        assert_eq!(r.step, steps[i]);
        let first = got.steps[0].customers;
        let ratio = |a: u64, b: u64| (b != 0).then(|| a as f64 / b as f64);
        assert_eq!(r.from_first, ratio(r.customers, first), "{context}");
        let previous = if i == 0 {
            None
        } else {
            ratio(r.customers, got.steps[i - 1].customers)
        };
        assert_eq!(r.from_previous, previous, "{context}");
    }
    rows
}

/// *now* 2026-03-15T12:00:00Z, limit 1 hour, window `in last 2 hours` (starts 10:00:00.001).
#[test]
fn funnel_edges_to_the_millisecond() {
    let now = at("2026-03-15T12:00:00Z");
    let start = now - 2 * HOUR; // excluded
    let mut f = Fixture::new();
    for id in ["a", "b", "c", "d", "e", "g"] {
        f.identify(id, if id < "d" { "Gold" } else { "Silver" });
    }
    let t = now - 90 * MINUTE;
    // a: viewed, then added exactly at the limit, then bought 1 ms past it: steps 1 and 2.
    f.track("a", "viewed", t, vec![("product", s("X"))]);
    f.track("a", "added_to_cart", t + HOUR, vec![]);
    f.track("a", "purchased", t + HOUR + 1, vec![]);
    // b: the cart at the same millisecond as the view does not follow it; a later one does,
    // and the purchase 1 ms later completes the funnel.
    f.track("b", "viewed", t, vec![("product", s("Y"))]);
    f.track("b", "added_to_cart", t, vec![]);
    f.track("b", "added_to_cart", t + 10 * MINUTE, vec![]);
    f.track("b", "purchased", t + 10 * MINUTE + 1, vec![]);
    // c: the view at the window's excluded start does not start; the one 1 ms later does.
    f.track("c", "viewed", start, vec![]);
    f.track("c", "viewed", start + 1, vec![]);
    f.track("c", "added_to_cart", start + 1 + HOUR, vec![]);
    // d: the later steps come after now: only step 1.
    f.track("d", "viewed", now - MINUTE, vec![]);
    f.track("d", "added_to_cart", now + 1, vec![]);
    // e: an early start reaches step 2 only; a later one reaches step 3: the later journey.
    f.track("e", "viewed", t, vec![]);
    f.track("e", "added_to_cart", t + 5 * MINUTE, vec![]);
    f.track("e", "viewed", t + 30 * MINUTE, vec![]);
    f.track("e", "added_to_cart", now - 20 * MINUTE, vec![]);
    f.track("e", "purchased", now - 10 * MINUTE, vec![]);
    // g: the steps in the wrong order.
    f.track("g", "purchased", t, vec![]);
    f.track("g", "added_to_cart", t + MINUTE, vec![]);
    f.track("g", "viewed", t + 2 * MINUTE, vec![]);
    let customers = f.customers();
    let steps = ["viewed", "added_to_cart", "purchased"];
    let rows = check_funnel(
        &f.db,
        &customers,
        &steps,
        "1 hour",
        Some("in last 2 hours"),
        None,
        now,
    );
    // Hand-computed: step 1 everyone (g's view comes last), step 2 a b c e, step 3 b e.
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![6, 4, 2]);
    // Gaps to step 2: a 60m, b 10m, c 60m, e 40m (its later journey): median 50 minutes.
    assert_eq!(rows[1].1, Some(50.0 * MINUTE as f64));
    // Gaps to step 3: b 1 ms, e 10 minutes -> their mean.
    assert_eq!(rows[2].1, Some((1 + 10 * MINUTE) as f64 / 2.0));
    // The Gold audience and a shorthand step.
    check_funnel(
        &f.db,
        &customers,
        &["viewed product X", "added_to_cart"],
        "1 hour",
        None,
        Some("tier = Gold"),
        now,
    );
    // A limit of 59 minutes 59.999 seconds cannot be written; 59 minutes loses a and c.
    let rows = check_funnel(&f.db, &customers, &steps, "59 minutes", None, None, now);
    assert_eq!(rows[1].0, 2);
}

#[test]
fn funnel_refuses_bad_requests() {
    let f = Fixture::new();
    let now = at("2026-03-15T12:00:00Z");
    let cases: [(&[&str], &str, Option<&str>, &str); 5] = [
        (&["viewed"], "1 day", None, "2 to 32 steps"),
        (
            &["viewed", "bought in last 2 days"],
            "1 day",
            None,
            "has a window",
        ),
        (
            &["viewed", "tier = Gold"],
            "1 day",
            None,
            "not an event condition",
        ),
        (
            &["viewed", "bought"],
            "1 fortnight",
            None,
            "not a length of time",
        ),
        (
            &["viewed", "bought"],
            "1 day",
            Some("last week"),
            "not a window",
        ),
    ];
    for (steps, within, window, why) in cases {
        let mut req = FunnelRequest::new(steps, within);
        req.window = window.map(str::to_owned);
        let e = f.db.funnel(&req, now).unwrap_err().to_string();
        assert!(e.contains(why), "{steps:?} {within} {window:?}: {e}");
    }
}

const STEP_TEXTS: [&str; 7] = [
    "visited",
    "viewed",
    "viewed product X",
    "viewed product Y",
    "added_to_cart",
    "purchased",
    "purchased where amount >= 50",
];
const EVENTS: [&str; 4] = ["visited", "viewed", "added_to_cart", "purchased"];

/// The shop of the funnel proptests: customer `c{i}` of tier `tier(i)` with the events of the
/// `i`th timeline, each (name in [`EVENTS`], time, product X rather than Y, amount 60 rather
/// than 10).
fn planted_shop(
    timelines: impl Iterator<Item = Vec<(usize, i64, bool, bool)>>,
    tier: impl Fn(usize) -> &'static str,
) -> Fixture {
    let mut f = Fixture::new();
    for (c, events) in timelines.enumerate() {
        let id = format!("c{c}");
        f.identify(&id, tier(c));
        for (e, ts, x, big) in events {
            let mut props = vec![("amount", Value::Int(if big { 60 } else { 10 }))];
            props.push(("product", s(if x { "X" } else { "Y" })));
            f.track(&id, EVENTS[e], ts, props);
        }
    }
    f
}

/// One event: name, quarter hours before now (negative: after), a millisecond nudge, product,
/// amount.
type Planted = (usize, i64, i64, bool, bool);

fn planted() -> impl Strategy<Value = Planted> {
    (
        0..EVENTS.len(),
        -1i64..12,
        -1i64..=1,
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn funnel_matches_the_plain_evaluator(
        timelines in prop::collection::vec(prop::collection::vec(planted(), 0..10), 1..6),
        steps in prop::collection::vec(0..STEP_TEXTS.len(), 2..5),
        within in prop::sample::select(vec!["15 minutes", "30 minutes", "1 hour", "3 hours"]),
        window in prop::sample::select(vec![None, Some("in last 1 hour"), Some("in last 2 hours"), Some("since 45 minutes ago")]),
        gold in any::<bool>(),
    ) {
        let now = at("2026-03-15T12:00:00Z");
        let f = planted_shop(
            timelines.iter().map(|events| {
                events
                    .iter()
                    .map(|&(e, quarters, nudge, x, big)| (e, now - quarters * 15 * MINUTE + nudge, x, big))
                    .collect()
            }),
            |c| if c % 2 == 0 { "Gold" } else { "Silver" },
        );
        let customers = f.customers();
        let steps: Vec<&str> = steps.iter().map(|&i| STEP_TEXTS[i]).collect();
        let audience = gold.then_some("tier = Gold");
        check_funnel(&f.db, &customers, &steps, within, window, audience, now);
    }
}

/// One event on a grid of whole days: name, days before now, quarter of the day, a millisecond
/// nudge, product, amount.
type PlantedDay = (usize, i64, i64, i64, bool, bool);

fn planted_day() -> impl Strategy<Value = PlantedDay> {
    (
        0..EVENTS.len(),
        0i64..7,
        0i64..4,
        -1i64..=1,
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// As above over several days with *now* at midnight, so that most days lie wholly inside
    /// every step's range (each event of such a day is the same steps, unless a step has a
    /// filter) and a few are cut (the window's first day, *now*'s); customers interleaved with
    /// others the audience leaves out.
    #[test]
    fn funnel_over_whole_days_matches_the_plain_evaluator(
        timelines in prop::collection::vec(prop::collection::vec(planted_day(), 0..12), 1..9),
        steps in prop::collection::vec(0..STEP_TEXTS.len(), 2..5),
        within in prop::sample::select(vec!["6 hours", "1 day", "2 days", "7 days"]),
        window in prop::sample::select(vec![None, Some("in last 3 days"), Some("in last 5 days"), Some("since 2026-03-11T06:00:00Z")]),
        gold in any::<bool>(),
    ) {
        let now = at("2026-03-15T00:00:00Z");
        let f = planted_shop(
            timelines.iter().map(|events| {
                events
                    .iter()
                    .map(|&(e, days, quarter, nudge, x, big)| {
                        (e, now - days * 24 * HOUR + quarter * 6 * HOUR + nudge, x, big)
                    })
                    .collect()
            }),
            |c| if c % 3 == 0 { "Silver" } else { "Gold" },
        );
        let customers = f.customers();
        let steps: Vec<&str> = steps.iter().map(|&i| STEP_TEXTS[i]).collect();
        let audience = gold.then_some("tier = Gold");
        check_funnel(&f.db, &customers, &steps, within, window, audience, now);
    }
}

#[test]
fn experiment_matches_a_plain_split() {
    let now = at("2026-03-15T12:00:00Z");
    let mut f = Fixture::new();
    for i in 0..400 {
        let id = format!("u{i:04}");
        f.identify(&id, if i % 3 == 0 { "Silver" } else { "Gold" });
        if i % 4 != 0 {
            f.track(&id, "viewed", now - HOUR, vec![]);
        }
        if i % 5 == 0 || i % 7 == 0 {
            f.track(&id, "purchased", now - MINUTE, vec![]);
        }
    }
    let customers = f.customers();
    for (shares, audience, goal) in [
        (vec![50u8, 50], "tier = Gold", "purchased in last 1 day"),
        (vec![5, 95], "viewed in last 1 day", "purchased"),
        (vec![34, 33, 33], "everyone", "purchased and tier = Silver"),
    ] {
        let mut req = ExperimentRequest::new("checkout_2026", audience, goal);
        req.variants = shares.clone();
        let got = f.db.experiment(&req, now).unwrap();
        let eval = |rule: &str| -> BTreeSet<String> {
            reference::evaluate(&rules::parse(rule).unwrap(), now, &customers)
                .unwrap()
                .into_iter()
                .collect()
        };
        let (members, converted) = (eval(audience), eval(goal));
        let mut counts = vec![(0u64, 0u64); shares.len()];
        for id in &members {
            let b = bucket("checkout_2026", id);
            let mut low = 0u8;
            let v = shares
                .iter()
                .position(|&share| {
                    low += share;
                    b < low
                })
                .unwrap();
            counts[v].1 += 1;
            if converted.contains(id) {
                counts[v].0 += 1;
            }
        }
        assert_eq!(got.audience, members.len() as u64);
        let context = format!("{shares:?} {audience:?} {goal:?}");
        for (i, v) in got.variants.iter().enumerate() {
            assert_eq!((v.converted, v.customers), counts[i], "{context}");
            assert_eq!(v.share, shares[i]);
            let cmp = if i == 0 {
                None
            } else {
                compare(counts[0].0, counts[0].1, counts[i].0, counts[i].1)
            };
            assert_eq!(v.difference, cmp.map(|c| c.0), "{context}");
            assert_eq!(v.p_value, cmp.map(|c| c.3), "{context}");
            assert_eq!(v.ci_low, cmp.map(|c| c.1), "{context}");
            assert_eq!(v.ci_high, cmp.map(|c| c.2), "{context}");
        }
        // The split is a split: every member in exactly one variant.
        let total: u64 = got.variants.iter().map(|v| v.customers).sum();
        assert_eq!(total, members.len() as u64);
        let json = got.to_json();
        assert!(json["variants"][0]["p_value"].is_null());
        assert!(json["variants"][1]["p_value"].is_number());
    }
}
