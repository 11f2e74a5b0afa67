//! Counts and aggregates without a filter answered from kept totals (`src/query/totals.rs`:
//! each customer's figures over a window's whole days, kept while those days' lists are
//! unchanged, in order of the measure tested), against the reference evaluator
//! (`tests/reference/mod.rs`), in one database through writes, deletes, merges and moving
//! *nows*:
//! - thresholds at customers' exact values, sums whose rounding depends on the order of
//!   addition (within the margin), events at a window's start ±1 ms, at *now* and 1 ms after,
//!   either side of midnight;
//! - the totals are kept between rules and summed again only when a list of their days changes
//!   (a write of a past day, a delete, a merge), not for a write on the day of *now*;
//! - random data, rules and writes between rules (proptest).

mod reference;

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::ingest::Message;
use audiencedb::model::time::{format_rfc3339, parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::rules::Computed;
use audiencedb::testing::Internals;
use audiencedb::{Config, Customer, Db};
use proptest::prelude::*;

const HOUR: i64 = 3_600_000;
const MIN: i64 = 60_000;

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

/// 2026-03-15T10:30:00Z.
fn now() -> i64 {
    at("2026-03-15T10:30:00Z")
}

/// Midnight starting the day of [`now`].
fn today() -> i64 {
    at("2026-03-15T00:00:00Z")
}

const TRAITS: &[(&str, &str)] = &[
    ("aov", "purchased avg(amount) ever"),
    ("orders_3d", "purchased count in last 3 days"),
    ("spent_7d", "purchased sum(amount) in last 7 days"),
    ("low", "purchased min(amount) ever"),
];

const RULES: &[&str] = &[
    "purchased count >= 3 in last 3 days",
    "purchased count < 2 in last 3 days",
    "purchased exactly 2 times in last 7 days",
    "purchased count > 4 ever",
    "purchased count != 3 ever",
    "purchased sum(amount) > 100 in last 3 days",
    "purchased sum(amount) <= 100 ever",
    "purchased sum(amount) = 0.6000000000000001 ever",
    "purchased sum(amount) >= 0.6000000000000001 ever",
    "purchased sum(amount) < 0.6000000000000001 in last 30 days",
    "purchased sum(amount) != 150 ever",
    "purchased avg(amount) > 50 ever",
    "purchased avg(amount) >= 50 ever",
    "purchased avg(amount) = 50 in last 7 days",
    "purchased avg(amount) != 50 ever",
    "purchased avg(amount) < 50 in last 3 days",
    "purchased avg(amount) = 0.2 ever",
    "purchased min(amount) < 10 ever",
    "purchased min(amount) >= 10 in last 3 days",
    "purchased max(amount) > 90 in last 7 days",
    "purchased max(amount) = 100 ever",
    "purchased max(amount) <= 0.3 ever",
    "aov > 50",
    "aov <= 50",
    "orders_3d >= 3",
    "orders_3d < 1",
    "spent_7d < 100",
    "spent_7d between 50 and 150",
    "low = 10",
    "aov > 50 and orders_3d >= 1",
];

struct Shop {
    db: Db,
    ids: BTreeSet<String>,
    traits: Vec<(String, Computed)>,
    _dir: tempfile::TempDir,
}

fn purchase(id: &str, ts: i64, amount: f64) -> Message {
    Message::track(
        id,
        "purchased",
        vec![("amount".to_owned().into(), Value::Float(amount))],
        Some(ts),
    )
}

impl Shop {
    fn new() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("db"));
        config.allow_known_merge = true;
        let db = Db::open_with(config).unwrap();
        let mut traits = Vec::new();
        for (name, expr) in TRAITS {
            db.define_trait(name, expr).unwrap();
            traits.push((
                (*name).to_owned(),
                audiencedb::rules::parse_computed(expr).unwrap(),
            ));
        }
        Shop {
            db,
            ids: BTreeSet::new(),
            traits,
            _dir: dir,
        }
    }

    fn ingest(&mut self, messages: Vec<Message>) {
        self.ids
            .extend(messages.iter().map(|m| m.customer.to_string()));
        self.db.ingest(messages).unwrap();
    }

    /// Every customer once (a merged id names the customer it was merged into).
    fn customers(&self) -> Vec<Customer> {
        let mut seen = BTreeMap::new();
        for id in &self.ids {
            if let Some(c) = self.db.customer(id).unwrap() {
                seen.insert(c.internal_id, c);
            }
        }
        seen.into_values().collect()
    }

    /// The engine's members of `rule` at `now` equal the reference's.
    fn check(&self, customers: &[Customer], rule: &str, now: i64) -> Result<(), String> {
        let parsed = audiencedb::rules::parse(rule).unwrap();
        let defs: Vec<(&str, &Computed)> =
            self.traits.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let expected = reference::evaluate_computed(&parsed, now, customers, &defs)?;
        let got = self
            .db
            .member_ids(&self.db.query(rule, now).map_err(|e| e.to_string())?)
            .unwrap();
        if got == expected {
            return Ok(());
        }
        let mut message = format!(
            "{rule} at {}: engine {got:?}, reference {expected:?}",
            format_rfc3339(now)
        );
        for c in customers {
            if got.contains(&c.id) != expected.contains(&c.id) {
                message.push_str(&format!("\n  {}:", c.id));
                for e in &c.events {
                    message.push_str(&format!(
                        " {} {:?};",
                        format_rfc3339(e.timestamp),
                        e.properties
                    ));
                }
            }
        }
        Err(message)
    }

    fn check_all(&self, nows: &[i64]) {
        let customers = self.customers();
        for &now in nows {
            for rule in RULES {
                // Twice: the first question on a measure decides by one pass over the totals,
                // the next by their order.
                for _ in 0..2 {
                    if let Err(e) = self.check(&customers, rule, now) {
                        panic!("{e}");
                    }
                }
            }
        }
    }

    /// Totals summed so far for the purchases' counts and amounts.
    fn summed(&self) -> (u64, u64) {
        let st = self.db.read();
        let event = st.catalog.event_id("purchased").unwrap();
        let ei = st.indexes.event_index(event).unwrap();
        (ei.count_totals.summed(), ei.number_totals.summed())
    }

    /// Customers the bounds leave to the exact check.
    fn checked(&self, rule: &str, now: i64) -> u64 {
        let e = self.db.explain(rule, now).unwrap();
        e.root.maybe - e.root.sure
    }
}

/// The hand-built shop: customers spread over the 6 days before *now*'s, amounts that put
/// averages, sums, minima and maxima exactly at the rules' thresholds, a sum whose rounding
/// depends on the order of addition, and events at the windows' edges.
fn shop() -> Shop {
    let mut s = Shop::new();
    let amounts = [50.0, 49.99, 50.01, 100.0, 0.1, 0.2, 0.3, 10.0, 90.0, 25.5];
    let mut batch = Vec::new();
    for i in 0..30i64 {
        let id = format!("c{i:02}");
        for d in 1..=(i % 6) {
            for k in 0..=(i % 4) {
                let ts = today() - d * DAY_MS + 9 * HOUR + k * MIN;
                batch.push(purchase(&id, ts, amounts[((i + d + k) % 10) as usize]));
            }
        }
    }
    s.ingest(batch);
    let day = today() - 4 * DAY_MS + 8 * HOUR;
    // Ingested last first: the rollup adds 0.3 + 0.2 + 0.1 = 0.6, the exact check (in time
    // order) 0.1 + 0.2 + 0.3 = 0.6000000000000001.
    for (k, x) in [(2, 0.3), (1, 0.2), (0, 0.1)] {
        s.ingest(vec![purchase("order", day + k * 1000, x)]);
    }
    assert_ne!(0.1 + 0.2 + 0.3, 0.6);
    let start3 = now() - 3 * DAY_MS;
    let edges = vec![
        purchase("avg50", today() - 2 * DAY_MS, 40.0),
        purchase("avg50", today() - 2 * DAY_MS + 1, 60.0),
        purchase("edge_before", start3 - 1, 100.0),
        purchase("edge_at", start3, 100.0),
        purchase("edge_after", start3 + 1, 100.0),
        purchase("today_in", today() + 9 * HOUR, 60.0),
        purchase("today_in", today() - DAY_MS, 30.0),
        purchase("today_at", now(), 10.0),
        purchase("today_late", now() + 1, 200.0),
        purchase("midnight", today() - 1, 55.0),
        purchase("midnight", today(), 45.0),
        purchase("midnight", today() + DAY_MS, 45.0),
    ];
    s.ingest(edges);
    s
}

/// *Nows* that move events across edges: the window's start past the edge events one
/// millisecond at a time, the end of *now*'s day and the next day's start.
fn nows() -> Vec<i64> {
    let n = now();
    let midnight = today() + DAY_MS;
    vec![
        n,
        n + 1,
        n + 2,
        midnight - 1,
        midnight,
        midnight + 1,
        n + 3 * DAY_MS,
    ]
}

#[test]
fn kept_totals_equal_the_reference_at_every_edge() {
    let s = shop();
    s.check_all(&nows());
    // The totals decide: only customers near a sum's threshold, or with events on a cut day
    // within the rollups' two-second spans of the window's edge, are read.
    assert_eq!(s.checked("purchased count > 4 ever", now()), 0);
    // `today_at` and `today_late` have purchases in the 2-second unit of *now*: undecided.
    assert_eq!(s.checked("purchased max(amount) = 100 ever", now()), 2);
}

#[test]
fn totals_are_kept_and_follow_writes_deletes_and_merges() {
    let mut s = shop();
    let customers = s.customers();
    for rule in RULES {
        s.check(&customers, rule, now()).unwrap();
    }
    let first = s.summed();
    assert!(first.0 > 0 && first.1 > 0, "{first:?}");
    // The same rules again, and at other milliseconds of the same day: kept.
    s.check_all(&[now(), now() + 1, now() + 2]);
    assert_eq!(s.summed(), first, "kept totals were summed again");

    // A write on the day of *now* leaves the whole days' totals as they are; the cut day is
    // added at each rule.
    s.ingest(vec![
        purchase("c03", today() + 10 * HOUR, 500.0),
        purchase("c04", now() - 1, 0.5),
        purchase("c05", now() + 1, 0.5),
        purchase("fresh", today() + HOUR, 77.0),
    ]);
    s.check_all(&[now(), now() + 2]);
    assert_eq!(s.summed(), first, "a write today made the totals stale");

    // A write of a past day: summed again, and the answers follow.
    s.ingest(vec![
        purchase("c07", today() - 2 * DAY_MS, 1000.0),
        purchase("newcomer", today() - 5 * DAY_MS, 50.0),
    ]);
    s.check_all(&[now()]);
    let after_write = s.summed();
    assert!(after_write.0 > first.0 && after_write.1 > first.1);

    // A delete.
    s.db.delete_customer("c09").unwrap();
    s.ids.remove("c09");
    s.check_all(&[now()]);
    let after_delete = s.summed();
    assert!(after_delete.0 > after_write.0 && after_delete.1 > after_write.1);

    // A merge: an anonymous customer's purchases join a known one's.
    s.ingest(vec![
        Message::track(
            "anon-1",
            "purchased",
            vec![("amount".to_owned().into(), Value::Float(48.0))],
            Some(today() - 3 * DAY_MS + HOUR),
        ),
        Message::identify(
            "c11",
            vec![("tier".to_owned().into(), Some(Value::Str("gold".into())))],
        ),
    ]);
    s.check_all(&[now()]);
    let before_merge = s.summed();
    assert!(s.db.alias("anon-1", "c11").unwrap());
    s.ids.remove("anon-1");
    s.check_all(&[now(), now() + DAY_MS]);
    assert!(s.summed().0 > before_merge.0);
}

/// A random event: customer, day before *now*'s (0: *now*'s), millisecond of the day, amount.
fn random_purchase() -> impl Strategy<Value = (usize, i64, i64, Option<f64>)> {
    let amount = prop_oneof![
        Just(Some(0.1)),
        Just(Some(0.2)),
        Just(Some(0.3)),
        Just(Some(10.0)),
        Just(Some(50.0)),
        Just(Some(f64::NAN)),
        Just(None),
        (0..200i32).prop_map(|x| Some(f64::from(x) / 4.0)),
    ];
    let ms = prop_oneof![
        Just(0i64),
        Just(DAY_MS - 1),
        Just(10 * HOUR + 30 * MIN),
        Just(10 * HOUR + 30 * MIN - 1),
        Just(10 * HOUR + 30 * MIN + 1),
        0..DAY_MS,
    ];
    (0..8usize, 0..6i64, ms, amount)
}

fn random_rule() -> impl Strategy<Value = String> {
    let measure = prop_oneof![
        Just("count"),
        Just("sum(amount)"),
        Just("avg(amount)"),
        Just("min(amount)"),
        Just("max(amount)"),
    ];
    let op = prop_oneof![
        Just("="),
        Just("!="),
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">="),
    ];
    let value = prop_oneof![
        Just("0"),
        Just("1"),
        Just("2"),
        Just("0.6"),
        Just("0.6000000000000001"),
        Just("10"),
        Just("25"),
        Just("50"),
        Just("49.75"),
    ];
    let window = prop_oneof![
        Just("ever"),
        Just("in last 2 days"),
        Just("in last 3 days"),
        Just("in last 36 hours"),
        Just("before 1 day ago"),
    ];
    (measure, op, value, window).prop_map(|(m, o, v, w)| {
        // A count compares with whole numbers only.
        let v = if m == "count" {
            v.split('.').next().unwrap_or(v)
        } else {
            v
        };
        format!("purchased {m} {o} {v} {w}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random purchases written in batches, random rules asked after each batch at *nows* on
    /// either side of midnight and of the events' milliseconds: always the reference's answer.
    #[test]
    fn random_writes_and_rules_equal_the_reference(
        batches in prop::collection::vec(prop::collection::vec(random_purchase(), 1..12), 1..4),
        rules in prop::collection::vec(random_rule(), 1..6),
        shifts in prop::collection::vec(prop_oneof![Just(0i64), Just(1), Just(-1), Just(DAY_MS), Just(14 * HOUR - 1), Just(14 * HOUR)], 1..3),
    ) {
        let mut s = Shop::new();
        for batch in batches {
            let messages = batch
                .into_iter()
                .map(|(c, d, ms, amount)| {
                    let props = amount
                        .map(|x| ("amount".into(), Value::Float(x)))
                        .into_iter()
                        .collect();
                    Message::track(format!("p{c}"), "purchased", props, Some(today() - d * DAY_MS + ms))
                })
                .collect();
            s.ingest(messages);
            let customers = s.customers();
            for shift in &shifts {
                for rule in &rules {
                    if let Err(e) = s.check(&customers, rule, now() + shift) {
                        prop_assert!(false, "{}", e);
                    }
                }
            }
        }
    }
}
