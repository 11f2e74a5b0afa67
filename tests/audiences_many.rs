//! Many saved audiences over a small shop: 200 random rules (traits, windows, counts, sums,
//! `not`, `in audience` chains) and random writes (new and existing customers, tracks,
//! identifies, deletes, clock steps). After every write, every audience's kept members must
//! equal a fresh evaluation of its rule, and `audiences_of` must answer each customer's
//! audiences as the members say: a differential test of which audiences a write re-evaluates.
//!
//! The same with 1,000 audiences (fewer streams). `PROPTEST_CASES=64 cargo test --test
//! audiences_many` runs more streams.

use std::collections::BTreeMap;

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::{Clock, Config, Db, Error};
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const AUDIENCES: usize = 200;
const CUSTOMERS: u8 = 12;

/// Conditions a rule is made of.
const ATOMS: [&str; 16] = [
    "tier = Gold",
    "tier in (Gold, Silver)",
    "country = FI",
    "not country = SE",
    "signup before 2 hours ago",
    "viewed in last 2 hours",
    "purchased at least 2 times in last 3 hours",
    "purchased sum(amount) > 5 in last 90 minutes",
    "added_to_cart since 45 minutes ago",
    "purchased where amount > 2 in last 1 hour",
    "viewed ever",
    "searched in last 30 minutes",
    "not viewed before 1 hour ago",
    "everyone",
    "viewed at most 1 times in last 1 hour",
    "purchased avg(amount) >= 2 between 3 hours ago and 1 hour ago",
];

/// A rule: one to three conditions joined by `and` / `or`, each possibly negated, sometimes
/// naming an audience saved before it.
#[derive(Debug, Clone)]
struct RuleSpec {
    parts: Vec<(bool, usize)>,
    or: bool,
    /// `in audience` of an earlier audience: (negated, how far back).
    audience: Option<(bool, usize)>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        prop::collection::vec((prop::bool::weighted(0.2), 0..ATOMS.len()), 1..=3),
        any::<bool>(),
        prop::option::weighted(0.2, (any::<bool>(), 1usize..20)),
    )
        .prop_map(|(parts, or, audience)| RuleSpec {
            parts,
            or,
            audience,
        })
}

fn rule_text(i: usize, s: &RuleSpec) -> String {
    let mut items: Vec<String> = s
        .parts
        .iter()
        .map(|&(not, a)| {
            if not {
                format!("not ({})", ATOMS[a])
            } else {
                format!("({})", ATOMS[a])
            }
        })
        .collect();
    if let Some((not, back)) = s.audience {
        if i >= back {
            let name = format!("a{:03}", i - back);
            items.push(if not {
                format!("not in audience {name}")
            } else {
                format!("in audience {name}")
            });
        }
    }
    items.join(if s.or { " or " } else { " and " })
}

#[derive(Debug, Clone)]
enum Op {
    Track {
        cust: u8,
        event: &'static str,
        amount: i64,
        offset: i64,
    },
    Identify {
        cust: u8,
        tier: Option<&'static str>,
        country: Option<&'static str>,
        signup_ago: Option<i64>,
    },
    Delete(u8),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let cust = 0u8..CUSTOMERS;
    let event = prop::sample::select(vec!["viewed", "purchased", "added_to_cart", "searched"]);
    let offset = prop_oneof![
        -4 * HOUR..HOUR / 4,
        prop::sample::select(vec![0, -1, -HOUR, -30 * MINUTE])
    ];
    let step = prop_oneof![
        prop::sample::select(vec![1, MINUTE, 30 * MINUTE, HOUR, HOUR + 1, 2 * HOUR]),
        1..3 * HOUR,
    ];
    prop_oneof![
        6 => (cust.clone(), event, 0i64..5, offset)
            .prop_map(|(cust, event, amount, offset)| Op::Track { cust, event, amount, offset }),
        2 => (cust.clone(),
              prop::option::of(prop::sample::select(vec!["Gold", "Silver"])),
              prop::option::of(prop::sample::select(vec!["FI", "SE"])),
              prop::option::of(0..4 * HOUR))
            .prop_map(|(cust, tier, country, signup_ago)| Op::Identify { cust, tier, country, signup_ago }),
        1 => cust.prop_map(Op::Delete),
        3 => step.prop_map(Op::Advance),
    ]
}

fn id(c: u8) -> String {
    format!("c{c}")
}

fn run(db: &Db, clock: &Clock, op: &Op) {
    let now = clock.now();
    match op {
        Op::Track {
            cust,
            event,
            amount,
            offset,
        } => {
            let props = vec![("amount".into(), Value::Int(*amount))];
            let m = Message::track(id(*cust), *event, props, Some(now + offset));
            db.ingest(vec![m]).unwrap();
        }
        Op::Identify {
            cust,
            tier,
            country,
            signup_ago,
        } => {
            let traits = vec![
                ("tier".into(), tier.map(|t| Value::Str(t.into()))),
                ("country".into(), country.map(|t| Value::Str(t.into()))),
                ("signup".into(), signup_ago.map(|a| Value::Time(now - a))),
            ];
            db.ingest(vec![Message::identify(id(*cust), traits)])
                .unwrap();
        }
        Op::Delete(cust) => match db.delete_customer(&id(*cust)) {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => panic!("delete: {e}"),
        },
        Op::Advance(ms) => {
            clock.advance(*ms);
            db.advance_audiences().unwrap();
        }
    }
}

/// Every audience against a fresh evaluation, and `audiences_of` against the members.
fn check(db: &Db, step: usize) -> Result<(), TestCaseError> {
    let as_of = db.audiences_as_of();
    let mut of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in db.audiences() {
        let kept = db.audience_members(&a.name).unwrap();
        let fresh = db.query(&a.rule, as_of).unwrap();
        prop_assert_eq!(
            kept.bitmap(),
            fresh.bitmap(),
            "step {}: audience {} ({}) kept {:?}, fresh {:?}",
            step,
            &a.name,
            &a.rule,
            db.member_ids(&kept).unwrap(),
            db.member_ids(&fresh).unwrap()
        );
        for c in db.member_ids(&kept).unwrap() {
            of.entry(c).or_default().push(a.name.clone());
        }
    }
    for c in 0..CUSTOMERS {
        let expected = of.remove(&id(c)).unwrap_or_default();
        prop_assert_eq!(
            db.audiences_of(&id(c)).unwrap(),
            expected,
            "step {}: audiences_of({})",
            step,
            id(c)
        );
    }
    Ok(())
}

/// Saves `rules` as audiences after the `before` writes, then checks every audience after each of
/// `ops`, and `verify` at the end.
fn stream(rules: &[RuleSpec], before: &[Op], ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(parse_rfc3339("2026-03-15T10:30:00Z").unwrap());
    let mut config = Config::new(dir.path().join("db"));
    config.clock = clock.clone();
    let db = Db::open_with(config).unwrap();
    // Some data before the audiences, so that they start with members and timers.
    for op in before {
        run(&db, &clock, op);
    }
    for (i, spec) in rules.iter().enumerate() {
        db.define_audience(&format!("a{i:03}"), &rule_text(i, spec))
            .unwrap();
    }
    check(&db, 0)?;
    for (i, op) in ops.iter().enumerate() {
        run(&db, &clock, op);
        check(&db, i + 1)?;
    }
    let report = db.verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(6),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_write_leaves_200_audiences_equal_to_a_fresh_evaluation(
        rules in prop::collection::vec(rule_spec(), AUDIENCES),
        before in prop::collection::vec(op(), 0..10),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        stream(&rules, &before, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2),
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    })]

    /// The same with 1,000 audiences, so that each write and each clock step re-evaluates
    /// hundreds of rules over one customer's shared data.
    #[test]
    fn every_write_leaves_1000_audiences_equal_to_a_fresh_evaluation(
        rules in prop::collection::vec(rule_spec(), 1000),
        before in prop::collection::vec(op(), 0..10),
        ops in prop::collection::vec(op(), 1..20),
    ) {
        stream(&rules, &before, &ops)?;
    }
}
