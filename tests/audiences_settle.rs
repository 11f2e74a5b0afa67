//! A write deciding saved audiences by itself (issue 25): the events a write stores for a
//! customer fix some rules' answers (a presence window holding the event, `not` of one, an `or`
//! or `and` one part decides) or cannot have moved them (a count `>= n` for a member, `<= n` for a
//! non-member, an event every filter turns away), so the customer is not read for those. Random
//! streams of writes at and beside the rules' edges (an event exactly at *now*, at *now* minus
//! the window, a millisecond either side, in the future) and clock steps landing on the edges:
//! after every step each saved audience's members equal what a plain evaluator of its rule says
//! at the clock's time, and what the engine says; `verify` agrees at the end. A fixed stream
//! checks that the written events did decide (the counts of what was settled) and the edges one
//! by one.
//!
//! The same for day-long windows (counts, sums, means, minima, maxima with negative, fractional
//! and missing amounts; an `and not` of two presences), where what the written events leave open
//! is answered from the indexes (the kept totals of the whole days, the rollups of the first day
//! a window cuts and of *now*'s day): events at and beside each window's start, on its first and
//! whole days, at *now* and after it.
//!
//! Many audiences forced together by one written event (issue 25, session 23): presence windows
//! of `viewed` of many lengths (a minute apart around the same edges), `not` of some, an `or`
//! and an `and not`; writes and clock steps at each window's edge and a millisecond either side.
//!
//! `PROPTEST_CASES=500 cargo test --test audiences_settle` runs more streams.

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::testing::Internals;
use audiencedb::{Clock, Config, Db, Error};
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn t0() -> i64 {
    parse_rfc3339("2026-03-15T10:30:00Z").unwrap()
}

const RULES: [(&str, &str); 11] = [
    ("last_hour", "viewed in last 1 hour"),
    ("since_hour", "viewed since 1 hour ago"),
    ("big_buy", "purchased where amount >= 3 in last 1 hour"),
    ("lapsed", "purchased ever and not purchased in last 1 hour"),
    ("viewer_or_gold", "viewed in last 1 hour or tier = Gold"),
    ("buyers2", "purchased at least 2 times in last 2 hours"),
    ("few_views", "viewed at most 1 times in last 1 hour"),
    (
        "carts_no_buy",
        "added_to_cart in last 30 minutes and not purchased in last 30 minutes",
    ),
    ("viewed_long_ago", "viewed before 1 hour ago"),
    ("gold_viewers", "in audience last_hour and tier = Gold"),
    ("spenders", "purchased sum(amount) > 4 in last 1 hour"),
];

/// Day-long windows: the whole days' figures come from the kept totals, the first day the
/// window cuts and the day of *now* from the rollups (issue 25, session 20); amounts negative,
/// fractional (quarters: every sum exact in any order) or missing.
const DAY_RULES: [(&str, &str); 9] = [
    ("d_buyers2", "purchased at least 2 times in last 2 days"),
    ("d_spend", "purchased sum(amount) > 4 in last 2 days"),
    ("d_spend_low", "purchased sum(amount) <= 1.5 in last 3 days"),
    ("d_avg", "purchased avg(amount) >= 2.5 in last 2 days"),
    ("d_max", "purchased max(amount) > 3 in last 3 days"),
    ("d_min", "purchased min(amount) < 0 in last 2 days"),
    (
        "d_cart_no_buy",
        "added_to_cart in last 1 day and not purchased in last 1 day",
    ),
    ("d_views", "viewed at most 2 times in last 2 days"),
    ("d_spend_ever", "purchased sum(amount) > 10 ever"),
];

const DAY: i64 = 24 * HOUR;

/// Many windows of the same event, each forced true (or, under `not`, false) by one written
/// `viewed`: `wv_N` is `viewed in last N minutes`, `wnv_N` its `not` (the lengths in
/// [`WINDOW_MINUTES`]).
const WINDOW_RULES: [(&str, &str); 17] = [
    ("wv_1", "viewed in last 1 minute"),
    ("wv_29", "viewed in last 29 minutes"),
    ("wv_30", "viewed in last 30 minutes"),
    ("wv_31", "viewed in last 31 minutes"),
    ("wv_59", "viewed in last 59 minutes"),
    ("wv_60", "viewed in last 60 minutes"),
    ("wv_61", "viewed in last 61 minutes"),
    ("wv_90", "viewed in last 90 minutes"),
    ("wv_119", "viewed in last 119 minutes"),
    ("wv_120", "viewed in last 120 minutes"),
    ("wv_121", "viewed in last 121 minutes"),
    ("wv_180", "viewed in last 180 minutes"),
    ("wnv_30", "not viewed in last 30 minutes"),
    ("wnv_60", "not viewed in last 60 minutes"),
    ("wnv_120", "not viewed in last 120 minutes"),
    (
        "w_view_or_buy",
        "viewed in last 45 minutes or purchased in last 45 minutes",
    ),
    (
        "w_view_no_buy",
        "viewed in last 60 minutes and not purchased in last 30 minutes",
    ),
];

/// The window lengths of [`WINDOW_RULES`], in minutes.
const WINDOW_MINUTES: [i64; 12] = [1, 29, 30, 31, 59, 60, 61, 90, 119, 120, 121, 180];

/// The minutes a `wv_N` / `wnv_N` name ends with.
fn minutes_of(name: &str) -> i64 {
    name.rsplit('_').next().unwrap().parse().unwrap()
}

/// An event's `amount`: an integer, a float, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Amount {
    Int(i64),
    Float(f64),
    Missing,
}

impl Amount {
    fn number(self) -> Option<f64> {
        match self {
            Amount::Int(i) => Some(i as f64),
            Amount::Float(f) => Some(f),
            Amount::Missing => None,
        }
    }

    fn props(self) -> Vec<(audiencedb::CompactString, Value)> {
        match self {
            Amount::Int(i) => vec![("amount".into(), Value::Int(i))],
            Amount::Float(f) => vec![("amount".into(), Value::Float(f))],
            Amount::Missing => Vec::new(),
        }
    }
}

/// One customer as the plain model keeps it.
#[derive(Debug, Clone, Default)]
struct Customer {
    /// (event, time, amount)
    events: Vec<(&'static str, i64, Amount)>,
    gold: bool,
}

/// What a rule says for a customer at `t`, written out plainly.
fn holds(rule: &str, c: &Customer, t: i64) -> bool {
    // Events of a kind in the window [from, t], with their numbers.
    let of = |e: &str, from: i64| -> Vec<Option<f64>> {
        c.events
            .iter()
            .filter(|(n, ts, _)| *n == e && from <= *ts && *ts <= t)
            .map(|(_, _, a)| a.number())
            .collect()
    };
    let last = |e: &str, w: i64| of(e, t - w + 1);
    // The numbers of a kind's events in the last `w`, in time order (as the engine adds them;
    // with quarters every order gives the same sums anyway).
    let numbers = |e: &str, w: i64| -> Vec<f64> {
        let mut v: Vec<(i64, f64)> = c
            .events
            .iter()
            .filter(|(n, ts, _)| *n == e && t - w < *ts && *ts <= t)
            .filter_map(|(_, ts, a)| a.number().map(|x| (*ts, x)))
            .collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    };
    let sum = |e: &str, w: i64| numbers(e, w).iter().fold(0.0, |s, x| s + x);
    match rule {
        "last_hour" => !last("viewed", HOUR).is_empty(),
        "since_hour" => !of("viewed", t - HOUR).is_empty(),
        "big_buy" => last("purchased", HOUR)
            .iter()
            .any(|a| a.is_some_and(|a| a >= 3.0)),
        "lapsed" => !of("purchased", i64::MIN).is_empty() && last("purchased", HOUR).is_empty(),
        "viewer_or_gold" => !last("viewed", HOUR).is_empty() || c.gold,
        "buyers2" => last("purchased", 2 * HOUR).len() >= 2,
        "few_views" => last("viewed", HOUR).len() <= 1,
        "carts_no_buy" => {
            !last("added_to_cart", 30 * MINUTE).is_empty()
                && last("purchased", 30 * MINUTE).is_empty()
        }
        "viewed_long_ago" => c
            .events
            .iter()
            .any(|(n, ts, _)| *n == "viewed" && *ts < t - HOUR),
        "gold_viewers" => c.gold && !last("viewed", HOUR).is_empty(),
        "spenders" => sum("purchased", HOUR) > 4.0,
        "d_buyers2" => last("purchased", 2 * DAY).len() >= 2,
        "d_spend" => sum("purchased", 2 * DAY) > 4.0,
        "d_spend_low" => sum("purchased", 3 * DAY) <= 1.5,
        "d_avg" => {
            let n = numbers("purchased", 2 * DAY);
            !n.is_empty() && n.iter().fold(0.0, |s, x| s + x) / n.len() as f64 >= 2.5
        }
        "d_max" => numbers("purchased", 3 * DAY).iter().any(|&x| x > 3.0),
        "d_min" => numbers("purchased", 2 * DAY).iter().any(|&x| x < 0.0),
        "d_cart_no_buy" => {
            !last("added_to_cart", DAY).is_empty() && last("purchased", DAY).is_empty()
        }
        "d_views" => last("viewed", 2 * DAY).len() <= 2,
        "d_spend_ever" => sum("purchased", i64::MAX / 2) > 10.0,
        "w_view_or_buy" => {
            !last("viewed", 45 * MINUTE).is_empty() || !last("purchased", 45 * MINUTE).is_empty()
        }
        "w_view_no_buy" => {
            !last("viewed", HOUR).is_empty() && last("purchased", 30 * MINUTE).is_empty()
        }
        _ if rule.starts_with("wv_") => !last("viewed", minutes_of(rule) * MINUTE).is_empty(),
        _ if rule.starts_with("wnv_") => last("viewed", minutes_of(rule) * MINUTE).is_empty(),
        _ => unreachable!("{rule}"),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Track {
        cust: u8,
        event: &'static str,
        amount: Amount,
        /// From the clock (negative: the past; positive: the future).
        offset: i64,
    },
    /// Customers `first..first + count` get the event in one write, at one instant.
    TrackMany {
        first: u8,
        count: u8,
        event: &'static str,
        offset: i64,
    },
    Identify {
        cust: u8,
        gold: bool,
    },
    Delete(u8),
    Advance(i64),
}

const EVENTS: [&str; 3] = ["viewed", "purchased", "added_to_cart"];

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0,
            -1,
            1,
            -HOUR,
            -HOUR + 1,
            -HOUR - 1,
            -30 * MINUTE,
            -30 * MINUTE + 1,
            -30 * MINUTE - 1,
            -2 * HOUR,
            -2 * HOUR + 1,
            5 * MINUTE,
        ]),
        1 => -3 * HOUR..10 * MINUTE,
    ]
}

/// Amounts a `TrackMany` gives its customers, by customer number.
const MANY_AMOUNTS: [Amount; 6] = [
    Amount::Int(3),
    Amount::Float(-1.25),
    Amount::Missing,
    Amount::Int(5),
    Amount::Float(2.5),
    Amount::Int(0),
];

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        3 => (-2i64..7).prop_map(Amount::Int),
        2 => (-12i64..28).prop_map(|q| Amount::Float(q as f64 / 4.0)),
        1 => Just(Amount::Missing),
    ]
}

/// Offsets from the clock for the day-long windows: at *now*, a millisecond either side, at
/// and beside each window's start (`in last N days` starts at *now* − N days + 1 ms), and
/// anywhere in the last four days (the first day a window cuts, its whole days).
fn day_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0,
            -1,
            1,
            -DAY,
            -DAY + 1,
            -DAY + 2,
            -2 * DAY,
            -2 * DAY + 1,
            -2 * DAY + 2,
            -3 * DAY + 1,
            -3 * DAY,
            -HOUR,
            5 * MINUTE,
        ]),
        2 => -4 * DAY..HOUR,
    ]
}

fn day_op() -> impl Strategy<Value = Op> {
    let cust = 0u8..10;
    let step = prop_oneof![
        prop::sample::select(vec![
            1,
            DAY - 1,
            DAY,
            DAY + 1,
            HOUR,
            13 * HOUR + 30 * MINUTE
        ]),
        1..2 * DAY,
    ];
    prop_oneof![
        8 => (cust.clone(), prop::sample::select(EVENTS.to_vec()), amount(), day_offset())
            .prop_map(|(cust, event, amount, offset)| Op::Track { cust, event, amount, offset }),
        2 => (0u8..10, 2u8..12, prop::sample::select(EVENTS.to_vec()), day_offset())
            .prop_map(|(first, count, event, offset)| Op::TrackMany { first, count, event, offset }),
        1 => (cust.clone(), any::<bool>()).prop_map(|(cust, gold)| Op::Identify { cust, gold }),
        1 => cust.prop_map(Op::Delete),
        4 => step.prop_map(Op::Advance),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let cust = 0u8..10;
    let step = prop_oneof![
        prop::sample::select(vec![
            1,
            HOUR - 1,
            HOUR,
            HOUR + 1,
            30 * MINUTE,
            30 * MINUTE - 1,
            30 * MINUTE + 1,
            5 * MINUTE,
        ]),
        1..2 * HOUR,
    ];
    prop_oneof![
        8 => (cust.clone(), prop::sample::select(EVENTS.to_vec()), 0i64..6, offset())
            .prop_map(|(cust, event, amount, offset)| Op::Track {
                cust,
                event,
                amount: Amount::Int(amount),
                offset,
            }),
        2 => (0u8..10, 2u8..12, prop::sample::select(EVENTS.to_vec()), offset())
            .prop_map(|(first, count, event, offset)| Op::TrackMany { first, count, event, offset }),
        2 => (cust.clone(), any::<bool>()).prop_map(|(cust, gold)| Op::Identify { cust, gold }),
        1 => cust.prop_map(Op::Delete),
        4 => step.prop_map(Op::Advance),
    ]
}

/// Offsets from the clock at every window's edge of [`WINDOW_RULES`] (`in last N minutes` starts
/// at *now* − N minutes + 1 ms) and a millisecond either side, at *now*, just after it, or
/// anywhere in the last three hours.
fn window_offset() -> impl Strategy<Value = i64> {
    let mut edges = vec![0, -1, 1, 5 * MINUTE];
    for m in WINDOW_MINUTES.into_iter().chain([45]) {
        edges.extend([
            -m * MINUTE,
            -m * MINUTE + 1,
            -m * MINUTE + 2,
            -m * MINUTE - 1,
        ]);
    }
    prop_oneof![
        4 => prop::sample::select(edges),
        1 => -200 * MINUTE..10 * MINUTE,
    ]
}

fn window_op() -> impl Strategy<Value = Op> {
    let cust = 0u8..10;
    let mut steps = vec![1, 2, MINUTE - 1, MINUTE, MINUTE + 1];
    for m in [29, 30, 31, 59, 60, 61] {
        steps.extend([m * MINUTE - 1, m * MINUTE, m * MINUTE + 1]);
    }
    let step = prop_oneof![3 => prop::sample::select(steps), 1 => 1..3 * HOUR];
    let events = prop_oneof![3 => Just("viewed"), 1 => Just("purchased")];
    prop_oneof![
        8 => (cust.clone(), events.clone(), window_offset()).prop_map(|(cust, event, offset)| {
            Op::Track { cust, event, amount: Amount::Int(1), offset }
        }),
        3 => (0u8..10, 2u8..12, events, window_offset())
            .prop_map(|(first, count, event, offset)| Op::TrackMany { first, count, event, offset }),
        1 => cust.prop_map(Op::Delete),
        5 => step.prop_map(Op::Advance),
    ]
}

struct Harness {
    _dir: tempfile::TempDir,
    clock: Clock,
    db: Db,
    model: BTreeMap<String, Customer>,
    rules: &'static [(&'static str, &'static str)],
}

impl Harness {
    fn new(bulk_from: u64) -> Harness {
        Harness::with(&RULES, bulk_from)
    }

    fn with(rules: &'static [(&'static str, &'static str)], bulk_from: u64) -> Harness {
        Harness::listing(rules, bulk_from, false)
    }

    /// With `listed`, the written and the due customers' days are listed once for every
    /// audience asking the indexes about them, however few (`Config::audience_write_days_from`
    /// and `audience_due_days_from` 0); else never.
    fn listing(
        rules: &'static [(&'static str, &'static str)],
        bulk_from: u64,
        listed: bool,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(t0());
        let mut config = Config::new(dir.path().join("db"));
        config.clock = clock.clone();
        config.audience_bulk_from = bulk_from;
        let days_from = if listed { 0 } else { usize::MAX };
        config.audience_due_days_from = days_from;
        config.audience_write_days_from = days_from;
        let db = Db::open_with(config).unwrap();
        for (name, rule) in rules {
            db.define_audience(name, rule).unwrap();
        }
        Harness {
            _dir: dir,
            clock,
            db,
            model: BTreeMap::new(),
            rules,
        }
    }

    fn track(&mut self, writes: &[(String, &'static str, Amount, i64)]) {
        let msgs = writes
            .iter()
            .map(|(id, event, amount, ts)| {
                Message::track(id.clone(), *event, amount.props(), Some(*ts))
            })
            .collect();
        self.db.ingest(msgs).unwrap();
        for (id, event, amount, ts) in writes {
            let c = self.model.entry(id.clone()).or_default();
            c.events.push((event, *ts, *amount));
        }
    }

    fn run(&mut self, op: &Op) {
        let now = self.clock.now();
        let id = |c: u8| format!("c{c}");
        match op {
            Op::Track {
                cust,
                event,
                amount,
                offset,
            } => self.track(&[(id(*cust), event, *amount, now + offset)]),
            Op::TrackMany {
                first,
                count,
                event,
                offset,
            } => {
                let writes: Vec<_> = (*first..first.saturating_add(*count))
                    .map(|c| {
                        let amount = if std::ptr::eq(self.rules, &RULES[..]) {
                            Amount::Int(i64::from(c % 6))
                        } else {
                            MANY_AMOUNTS[usize::from(c) % MANY_AMOUNTS.len()]
                        };
                        (id(c), *event, amount, now + offset)
                    })
                    .collect();
                self.track(&writes);
            }
            Op::Identify { cust, gold } => {
                let tier = gold.then(|| Value::Str("Gold".into()));
                self.db
                    .ingest(vec![Message::identify(
                        id(*cust),
                        vec![("tier".into(), tier)],
                    )])
                    .unwrap();
                self.model.entry(id(*cust)).or_default().gold = *gold;
            }
            Op::Delete(cust) => match self.db.delete_customer(&id(*cust)) {
                Ok(_) => {
                    self.model.remove(&id(*cust));
                }
                Err(Error::NotFound(_)) => {}
                Err(e) => panic!("delete: {e}"),
            },
            Op::Advance(ms) => {
                self.clock.advance(*ms);
                self.db.advance_audiences().unwrap();
            }
        }
    }

    /// Every audience against the plain evaluator and the engine, at the clock's time.
    fn check(&self, step: &str) {
        let t = self.clock.now();
        assert_eq!(
            self.db.audiences_as_of(),
            t,
            "{step}: audiences lag the clock"
        );
        for &(name, rule) in self.rules {
            let kept = self.db.audience_members(name).unwrap();
            let kept_ids: BTreeSet<String> =
                self.db.member_ids(&kept).unwrap().into_iter().collect();
            let plain: BTreeSet<String> = self
                .model
                .iter()
                .filter(|(_, c)| holds(name, c, t))
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(
                kept_ids, plain,
                "{step}: audience {name} ({rule}) at {t}: kept against the plain evaluator"
            );
            let fresh = self.db.query(rule, t).unwrap();
            assert_eq!(
                kept.bitmap(),
                fresh.bitmap(),
                "{step}: {name} against the engine"
            );
        }
    }
}

/// Runs `ops` on `h`, checking the kept members against the plain evaluator at the start and
/// after every op, then that `verify` finds nothing.
fn replay(mut h: Harness, ops: &[Op]) -> Result<(), TestCaseError> {
    h.check("start");
    for (i, op) in ops.iter().enumerate() {
        h.run(op);
        h.check(&format!("step {} ({op:?})", i + 1));
    }
    let report = h.db.verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn kept_members_follow_the_plain_evaluator(
        ops in prop::collection::vec(op(), 1..40),
        bulk in any::<bool>(),
        listed in any::<bool>(),
    ) {
        replay(Harness::listing(&RULES, if bulk { 0 } else { 2048 }, listed), &ops)?;
    }

    #[test]
    fn many_windows_of_one_event_follow_the_plain_evaluator(
        ops in prop::collection::vec(window_op(), 1..40),
        bulk in any::<bool>(),
        listed in any::<bool>(),
    ) {
        replay(Harness::listing(&WINDOW_RULES, if bulk { 0 } else { 2048 }, listed), &ops)?;
    }

    #[test]
    fn day_windows_follow_the_plain_evaluator(
        ops in prop::collection::vec(day_op(), 1..40),
        bulk in any::<bool>(),
        listed in any::<bool>(),
    ) {
        replay(Harness::listing(&DAY_RULES, if bulk { 0 } else { 2048 }, listed), &ops)?;
    }
}

/// Day-long windows: customers with purchases on the first day a window cuts (at and beside
/// its start), on its whole days and on the day of *now* are written to at *now*; the counts,
/// sums, means, minima and maxima are answered from the kept totals and the rollups without
/// reading them, and the clock's steps onto the edges find the members right.
#[test]
fn day_windows_are_answered_from_the_indexes() {
    day_windows_from_the_indexes(false);
}

/// The same, with the written customers' days listed once for all the audiences asking.
#[test]
fn day_windows_are_answered_from_the_listed_days() {
    day_windows_from_the_indexes(true);
}

fn day_windows_from_the_indexes(listed: bool) {
    let mut h = Harness::listing(&DAY_RULES, 2048, listed);
    let now = t0();
    let id = |s: &str| s.to_owned();
    let p = "purchased";
    h.track(&[
        // At the 2-day windows' start, and a millisecond before it (out).
        (id("a"), p, Amount::Float(2.5), now - 2 * DAY + 1),
        (id("a"), p, Amount::Int(100), now - 2 * DAY),
        // Whole days.
        (id("b"), p, Amount::Int(3), now - DAY - 5 * HOUR),
        (id("b"), p, Amount::Missing, now - DAY - 4 * HOUR),
        (id("c"), p, Amount::Float(-0.75), now - DAY - 20 * HOUR),
        (id("c"), "viewed", Amount::Missing, now - DAY - 20 * HOUR),
        // Earlier today, and on the 3-day window's first day.
        (id("d"), p, Amount::Int(4), now - 3 * HOUR),
        (id("d"), p, Amount::Float(1.25), now - 3 * DAY + 2 * HOUR),
        (id("e"), "added_to_cart", Amount::Missing, now - 2 * HOUR),
    ]);
    h.check("history");
    let before = h.db.settle_stats();
    h.track(&[
        (id("a"), p, Amount::Int(2), now),
        (id("b"), p, Amount::Float(0.25), now),
        (id("c"), p, Amount::Float(-2.5), now),
        (id("d"), p, Amount::Missing, now),
        (id("e"), "added_to_cart", Amount::Missing, now),
    ]);
    h.check("the write");
    let s = h.db.settle_stats();
    assert!(
        s.by_indexes > before.by_indexes,
        "nothing was answered from the indexes: {s:?}"
    );
    assert!(
        s.customers_read - before.customers_read < s.customers - before.customers,
        "every written customer was read: {s:?}"
    );
    for (step, label) in [
        (1, "now + 1 ms"),
        (
            DAY - 2 * HOUR - 1,
            "the 3-day window's first purchase leaves",
        ),
        (2 * HOUR, "now + 1 day + 1 ms"),
        (DAY - 1, "now + 2 days"),
        (1, "now + 2 days + 1 ms"),
        (DAY, "now + 3 days + 1 ms"),
    ] {
        h.clock.advance(step);
        h.db.advance_audiences().unwrap();
        h.check(label);
    }
    assert!(h.db.verify().unwrap().is_ok());
}

/// A fixed stream: the written events decide, at each edge to the millisecond, and the clock's
/// steps onto the next instants they set find the members right.
#[test]
fn written_events_decide_at_the_edges() {
    let mut h = Harness::new(2048);
    let now = t0();
    let id = |s: &str| s.to_owned();
    // Customers to write to later, each known to the database (a first write reads them).
    for c in ["a", "b", "c", "d", "e"] {
        h.track(&[(id(c), "added_to_cart", Amount::Int(0), now - 5 * HOUR)]);
    }
    // `f` is in `carts_no_buy` (a cart a minute ago, no purchase).
    h.track(&[(id("f"), "added_to_cart", Amount::Int(0), now - MINUTE)]);
    h.check("customers made");
    let before = h.db.settle_stats();
    // `a`: a view exactly at now; `b`: exactly an hour before now (in `since 1 hour ago`, not in
    // `last 1 hour`); `c`: a millisecond in the future (in nothing yet); `d`: a purchase of 5
    // now; `e`: a purchase of 1 an hour and a millisecond ago; `f`: another cart, which keeps it
    // in `carts_no_buy` (the only audience reading carts) without a read.
    h.track(&[
        (id("a"), "viewed", Amount::Int(0), now),
        (id("b"), "viewed", Amount::Int(0), now - HOUR),
        (id("c"), "viewed", Amount::Int(0), now + 1),
        (id("d"), "purchased", Amount::Int(5), now),
        (id("e"), "purchased", Amount::Int(1), now - HOUR - 1),
        (id("f"), "added_to_cart", Amount::Int(0), now),
    ]);
    h.check("the write");
    let s = h.db.settle_stats();
    assert!(s.forced > before.forced, "nothing was forced: {s:?}");
    assert!(
        s.unchanged > before.unchanged,
        "nothing was left unchanged: {s:?}"
    );
    assert!(
        s.customers_read - before.customers_read < s.customers - before.customers,
        "every written customer was read: {s:?}"
    );
    let member = |h: &Harness, name: &str, c: &str| {
        h.db.audiences_of(c).unwrap().contains(name) && {
            let m = h.db.audience_members(name).unwrap();
            h.db.member_ids(&m).unwrap().contains(&c.to_owned())
        }
    };
    assert!(member(&h, "last_hour", "a") && member(&h, "since_hour", "a"));
    assert!(!member(&h, "last_hour", "b") && member(&h, "since_hour", "b"));
    assert!(!member(&h, "last_hour", "c") && !member(&h, "since_hour", "c"));
    assert!(member(&h, "big_buy", "d") && !member(&h, "lapsed", "d"));
    assert!(!member(&h, "big_buy", "e") && member(&h, "lapsed", "e"));
    assert!(member(&h, "carts_no_buy", "f"));
    // One millisecond on: `b` leaves `since 1 hour ago`, `c`'s view arrives; an hour on, `a`
    // leaves `last 1 hour`, then `since 1 hour ago`, then `c` leaves both.
    for (step, label) in [
        (1, "now + 1 ms"),
        (HOUR - 2, "now + 1 h - 1 ms"),
        (1, "now + 1 h"),
        (1, "now + 1 h + 1 ms"),
        (1, "now + 1 h + 2 ms"),
    ] {
        h.clock.advance(step);
        h.db.advance_audiences().unwrap();
        h.check(label);
    }
    assert!(!member(&h, "last_hour", "a") && !member(&h, "since_hour", "a"));
    assert!(!member(&h, "last_hour", "c") && !member(&h, "since_hour", "c"));
    assert!(member(&h, "lapsed", "d") && !member(&h, "big_buy", "d"));
    assert!(h.db.verify().unwrap().is_ok());
}

/// Many windows of one event forced by one write: a view at *now*, at each window's start and a
/// millisecond either side of it makes every window holding it true (and its `not` false)
/// without a read (a view on a window's edge is left to the indexes or a read for the windows
/// it is not in); the clock then steps onto every window's edge, to the millisecond.
#[test]
fn many_windows_of_one_event_at_the_edges() {
    let mut h = Harness::with(&WINDOW_RULES, 2048);
    let now = t0();
    let id = |c: usize| format!("v{c}");
    // Known customers (a first write reads them), none with a view in any window.
    let offsets: Vec<i64> = std::iter::once(0)
        .chain(
            WINDOW_MINUTES
                .into_iter()
                .flat_map(|m| [-m * MINUTE + 1, -m * MINUTE, -m * MINUTE + 2]),
        )
        .collect();
    let first: Vec<_> = (0..offsets.len())
        .map(|c| (id(c), "purchased", Amount::Int(1), now - 5 * HOUR))
        .collect();
    h.track(&first);
    h.check("customers made");
    let before = h.db.settle_stats();
    let views: Vec<_> = offsets
        .iter()
        .enumerate()
        .map(|(c, o)| (id(c), "viewed", Amount::Missing, now + o))
        .collect();
    h.track(&views);
    h.check("the write");
    let s = h.db.settle_stats();
    // The view at *now* alone forces every `wv_` and `wnv_` window.
    assert!(
        s.forced - before.forced >= 15,
        "the windows were not forced: {s:?}"
    );
    let mut at = now;
    let mut edges: Vec<i64> = WINDOW_MINUTES
        .into_iter()
        .flat_map(|m| {
            offsets.iter().flat_map(move |o| {
                let edge = now + o + m * MINUTE;
                [edge - 1, edge, edge + 1]
            })
        })
        .filter(|&t| t > now)
        .collect();
    edges.sort_unstable();
    edges.dedup();
    for t in edges {
        h.clock.advance(t - at);
        at = t;
        h.db.advance_audiences().unwrap();
        h.check(&format!("now + {} ms", t - now));
    }
    for name in ["wv_1", "wv_180", "w_view_no_buy"] {
        assert!(h.db.audience_members(name).unwrap().is_empty(), "{name}");
    }
    assert!(h.db.verify().unwrap().is_ok());
}
