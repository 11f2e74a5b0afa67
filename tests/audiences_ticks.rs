//! Time-driven changes in bulk: many customers whose edges pass inside one clock step, at
//! different milliseconds of it, several inside one two-second span of the count rollups (the
//! unit the indexes know times by), and steps landing on an edge or a millisecond either side.
//! After every step each saved audience's members are what a plain evaluator of its rule says at
//! the clock's time, every entry and exit is reported once, stamped with that step's time, and
//! `verify` agrees at the end. Windows of days and hours, presence, its negation, `since`,
//! counts, traits, two events; events before and after the clock; both re-evaluation paths
//! (`Config::audience_bulk_from` 0 and the default).
//!
//! `PROPTEST_CASES=500 cargo test --test audiences_ticks` runs more streams.

use std::collections::BTreeSet;

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::{Clock, Config, Db};
use proptest::prelude::*;

const SECOND: i64 = 1000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn t0() -> i64 {
    parse_rfc3339("2026-03-15T10:30:00Z").unwrap()
}

/// One customer's data: views and carts (times in ms), and whether it is Gold.
#[derive(Debug, Clone)]
struct Customer {
    views: Vec<i64>,
    carts: Vec<i64>,
    gold: bool,
}

/// The rules, and what each says for a customer at `t`.
const RULES: [(&str, &str); 8] = [
    ("recent", "viewed in last 2 days"),
    ("recent_hours", "viewed in last 5 hours"),
    ("since", "viewed since 1 days ago"),
    ("gone", "viewed ever and not viewed in last 2 days"),
    ("twice", "viewed at least 2 times in last 2 days"),
    ("gold_recent", "tier = Gold and viewed in last 1 days"),
    (
        "either",
        "viewed in last 1 days or added_to_cart in last 3 days",
    ),
    (
        "carts_not_views",
        "added_to_cart in last 3 days and not viewed in last 5 hours",
    ),
];

fn holds(rule: &str, c: &Customer, t: i64) -> bool {
    let last = |ts: &[i64], w: i64| ts.iter().filter(|&&e| t - w < e && e <= t).count();
    let since = |ts: &[i64], w: i64| ts.iter().any(|&e| t - w <= e && e <= t);
    match rule {
        "recent" => last(&c.views, 2 * DAY) > 0,
        "recent_hours" => last(&c.views, 5 * HOUR) > 0,
        "since" => since(&c.views, DAY),
        "gone" => c.views.iter().any(|&e| e <= t) && last(&c.views, 2 * DAY) == 0,
        "twice" => last(&c.views, 2 * DAY) >= 2,
        "gold_recent" => c.gold && last(&c.views, DAY) > 0,
        "either" => last(&c.views, DAY) > 0 || last(&c.carts, 3 * DAY) > 0,
        "carts_not_views" => last(&c.carts, 3 * DAY) > 0 && last(&c.views, 5 * HOUR) == 0,
        _ => unreachable!(),
    }
}

/// An event time: a few anchors (whole hours back from t0, or ahead), each customer within a
/// few seconds of one, at any millisecond, so that many share a two-second span and many edges
/// fall inside one step.
fn time() -> impl Strategy<Value = i64> {
    (
        prop::sample::select(vec![
            -3 * DAY,
            -2 * DAY,
            -50 * HOUR,
            -30 * HOUR,
            -DAY,
            -5 * HOUR,
            -HOUR,
            0,
            HOUR,
            7 * HOUR,
        ]),
        prop_oneof![0i64..5, 1995i64..2005, 0i64..6 * SECOND],
    )
        .prop_map(|(anchor, ms)| t0() + anchor + ms)
}

fn customer() -> impl Strategy<Value = Customer> {
    (
        prop::collection::vec(time(), 0..4),
        prop::collection::vec(time(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(views, carts, gold)| Customer { views, carts, gold })
}

/// A clock step: a plain length, or to an edge of some customer's event (its time plus a
/// window) and a millisecond before, on or after it.
#[derive(Debug, Clone)]
enum Step {
    By(i64),
    ToEdge { pick: usize, delta: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => prop::sample::select(vec![1, 999, 2 * SECOND, HOUR, HOUR + 1, 5 * HOUR, DAY])
            .prop_map(Step::By),
        1 => (1i64..3 * HOUR).prop_map(Step::By),
        3 => (any::<usize>(), -1i64..=1).prop_map(|(pick, delta)| Step::ToEdge { pick, delta }),
    ]
}

fn members(db: &Db, name: &str) -> BTreeSet<String> {
    db.member_ids(&db.audience_members(name).unwrap())
        .unwrap()
        .into_iter()
        .collect()
}

fn run(custs: &[Customer], steps: &[Step], bulk_from: u64) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let mut config = Config::new(dir.path().join("db"));
    config.clock = clock.clone();
    config.audience_bulk_from = bulk_from;
    let db = Db::open_with(config).unwrap();
    let id = |i: usize| format!("c{i}");
    let mut msgs = Vec::new();
    for (i, c) in custs.iter().enumerate() {
        for &ts in &c.views {
            msgs.push(Message::track(id(i), "viewed", vec![], Some(ts)));
        }
        for &ts in &c.carts {
            msgs.push(Message::track(id(i), "added_to_cart", vec![], Some(ts)));
        }
    }
    if !msgs.is_empty() {
        db.ingest(msgs).unwrap();
    }
    for (i, c) in custs.iter().enumerate() {
        let tier = if c.gold { "Gold" } else { "Silver" };
        db.identify(&id(i), vec![("tier".into(), Some(Value::Str(tier.into())))])
            .unwrap();
    }
    for (name, rule) in RULES {
        db.define_audience(name, rule).unwrap();
    }
    let expected = |t: i64| -> Vec<BTreeSet<String>> {
        RULES
            .iter()
            .map(|(name, _)| {
                custs
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| holds(name, c, t))
                    .map(|(i, _)| id(i))
                    .collect()
            })
            .collect()
    };
    let kept = |db: &Db| -> Vec<BTreeSet<String>> {
        RULES.iter().map(|(name, _)| members(db, name)).collect()
    };
    assert_eq!(kept(&db), expected(t0()), "at the start");
    // Every edge: an event's time plus a window (and the event itself).
    let mut edges: Vec<i64> = custs
        .iter()
        .flat_map(|c| c.views.iter().chain(&c.carts))
        .flat_map(|&ts| [ts, ts + 5 * HOUR, ts + DAY, ts + 2 * DAY, ts + 3 * DAY])
        .collect();
    edges.sort_unstable();
    let mut before = expected(t0());
    let mut position = db.feed_position();
    for s in steps {
        let now = clock.now();
        let to = match *s {
            Step::By(ms) => now + ms,
            Step::ToEdge { pick, delta } => {
                let later: Vec<i64> = edges.iter().copied().filter(|&e| e + delta > now).collect();
                match later.get(pick % later.len().max(1)) {
                    Some(e) => e + delta,
                    None => now + HOUR,
                }
            }
        };
        clock.set(to);
        let n = db.advance_audiences().unwrap();
        let want = expected(to);
        assert_eq!(kept(&db), want, "at t0 {:+} ms", to - t0());
        let flips: usize = before
            .iter()
            .zip(&want)
            .map(|(a, b)| a.symmetric_difference(b).count())
            .sum();
        assert_eq!(n, flips, "changes at t0 {:+} ms", to - t0());
        let changes = db.changes_since(position, 1_000_000).unwrap();
        assert_eq!(changes.len(), flips);
        for c in &changes {
            assert_eq!(
                c.at, to,
                "a time-driven change is stamped with its step's time"
            );
            let k = RULES.iter().position(|(n, _)| *n == c.audience).unwrap();
            assert_eq!(want[k].contains(&c.customer), c.entered);
            assert_ne!(before[k].contains(&c.customer), c.entered);
        }
        position = db.feed_position();
        before = want;
    }
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn time_driven_changes_in_bulk_match_a_plain_evaluator(
        custs in prop::collection::vec(customer(), 1..80),
        steps in prop::collection::vec(step(), 1..30),
        bulk in any::<bool>(),
    ) {
        run(&custs, &steps, if bulk { 0 } else { 2048 });
    }
}

/// Hundreds of customers whose latest views are a few milliseconds apart leave one window in
/// one step; the steps land a millisecond before, on and after the edges of some of them.
#[test]
fn hundreds_leave_at_their_own_millisecond() {
    let base = t0() - 2 * DAY + HOUR;
    let custs: Vec<Customer> = (0..600i64)
        .map(|i| Customer {
            // Spread over 3 seconds: two spans and a bit, each millisecond several times.
            views: vec![base + (i * 7) % 3001],
            carts: if i % 4 == 0 { vec![base + i] } else { vec![] },
            gold: i % 3 == 0,
        })
        .collect();
    let mut steps = vec![Step::By(HOUR - 2)];
    for ms in [1, 1, 1, 998, 1, 1, 500, 1000, 499, 1, 1, HOUR, DAY, DAY] {
        steps.push(Step::By(ms));
    }
    for bulk_from in [0, 2048] {
        run(&custs, &steps, bulk_from);
    }
}

/// Hundreds of customers with views a few milliseconds either side of the clock's instant when
/// the audiences are saved: those at or before it are told from those after it by the day's
/// event columns (the two-second span holding the instant cannot), and each one after it enters
/// at its own millisecond; steps of one millisecond, then to the windows' edges.
#[test]
fn hundreds_with_views_at_the_clocks_instant() {
    let custs: Vec<Customer> = (0..400i64)
        .map(|i| Customer {
            views: match i % 4 {
                0 => vec![t0() + i % 9 - 4],
                1 => vec![t0() - DAY + i % 5, t0() + i % 7 - 3],
                2 => vec![t0() - 2 * DAY + 2 * SECOND + i % 5],
                _ => vec![],
            },
            carts: if i % 3 == 0 {
                vec![t0() + i % 3]
            } else {
                vec![]
            },
            gold: i % 2 == 0,
        })
        .collect();
    let mut steps: Vec<Step> = (0..6).map(|_| Step::By(1)).collect();
    steps.extend([
        Step::By(2 * SECOND),
        Step::By(HOUR),
        Step::ToEdge { pick: 0, delta: -1 },
        Step::ToEdge { pick: 0, delta: 0 },
        Step::ToEdge { pick: 0, delta: 1 },
        Step::By(5 * HOUR),
        Step::By(DAY),
        Step::By(DAY),
    ]);
    for bulk_from in [0, 2048] {
        run(&custs, &steps, bulk_from);
    }
}
