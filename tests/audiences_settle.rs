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

/// One customer as the plain model keeps it.
#[derive(Debug, Clone, Default)]
struct Customer {
    /// (event, time, amount)
    events: Vec<(&'static str, i64, i64)>,
    gold: bool,
}

/// What a rule says for a customer at `t`, written out plainly.
fn holds(rule: &str, c: &Customer, t: i64) -> bool {
    // Events of a kind in the window [from, t], with amounts.
    let of = |e: &str, from: i64| -> Vec<i64> {
        c.events
            .iter()
            .filter(|(n, ts, _)| *n == e && from <= *ts && *ts <= t)
            .map(|(_, _, a)| *a)
            .collect()
    };
    let last = |e: &str, w: i64| of(e, t - w + 1);
    match rule {
        "last_hour" => !last("viewed", HOUR).is_empty(),
        "since_hour" => !of("viewed", t - HOUR).is_empty(),
        "big_buy" => last("purchased", HOUR).iter().any(|&a| a >= 3),
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
        "spenders" => last("purchased", HOUR).iter().sum::<i64>() > 4,
        _ => unreachable!("{rule}"),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Track {
        cust: u8,
        event: &'static str,
        amount: i64,
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
            .prop_map(|(cust, event, amount, offset)| Op::Track { cust, event, amount, offset }),
        2 => (0u8..10, 2u8..12, prop::sample::select(EVENTS.to_vec()), offset())
            .prop_map(|(first, count, event, offset)| Op::TrackMany { first, count, event, offset }),
        2 => (cust.clone(), any::<bool>()).prop_map(|(cust, gold)| Op::Identify { cust, gold }),
        1 => cust.prop_map(Op::Delete),
        4 => step.prop_map(Op::Advance),
    ]
}

struct Harness {
    _dir: tempfile::TempDir,
    clock: Clock,
    db: Db,
    model: BTreeMap<String, Customer>,
}

impl Harness {
    fn new(bulk_from: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(t0());
        let mut config = Config::new(dir.path().join("db"));
        config.clock = clock.clone();
        config.audience_bulk_from = bulk_from;
        let db = Db::open_with(config).unwrap();
        for (name, rule) in RULES {
            db.define_audience(name, rule).unwrap();
        }
        Harness {
            _dir: dir,
            clock,
            db,
            model: BTreeMap::new(),
        }
    }

    fn track(&mut self, writes: &[(String, &'static str, i64, i64)]) {
        let msgs = writes
            .iter()
            .map(|(id, event, amount, ts)| {
                let props = vec![("amount".to_owned(), Value::Int(*amount))];
                Message::track(id.clone(), *event, props, Some(*ts))
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
                    .map(|c| (id(c), *event, i64::from(c % 6), now + offset))
                    .collect();
                self.track(&writes);
            }
            Op::Identify { cust, gold } => {
                let tier = gold.then(|| Value::Str("Gold".into()));
                self.db
                    .ingest(vec![Message::identify(
                        id(*cust),
                        vec![("tier".to_owned(), tier)],
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
        for (name, rule) in RULES {
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
    ) {
        let mut h = Harness::new(if bulk { 0 } else { 2048 });
        h.check("start");
        for (i, op) in ops.iter().enumerate() {
            h.run(op);
            h.check(&format!("step {} ({op:?})", i + 1));
        }
        let report = h.db.verify().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }
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
        h.track(&[(id(c), "added_to_cart", 0, now - 5 * HOUR)]);
    }
    // `f` is in `carts_no_buy` (a cart a minute ago, no purchase).
    h.track(&[(id("f"), "added_to_cart", 0, now - MINUTE)]);
    h.check("customers made");
    let before = h.db.settle_stats();
    // `a`: a view exactly at now; `b`: exactly an hour before now (in `since 1 hour ago`, not in
    // `last 1 hour`); `c`: a millisecond in the future (in nothing yet); `d`: a purchase of 5
    // now; `e`: a purchase of 1 an hour and a millisecond ago; `f`: another cart, which keeps it
    // in `carts_no_buy` (the only audience reading carts) without a read.
    h.track(&[
        (id("a"), "viewed", 0, now),
        (id("b"), "viewed", 0, now - HOUR),
        (id("c"), "viewed", 0, now + 1),
        (id("d"), "purchased", 5, now),
        (id("e"), "purchased", 1, now - HOUR - 1),
        (id("f"), "added_to_cart", 0, now),
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
