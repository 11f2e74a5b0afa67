//! The query engine against the naive reference evaluator (`tests/reference/mod.rs`): every
//! answer of `db.query` must equal the reference's, customer for customer.
//!
//! - hand-built data sets cover every construct of `docs/RULES.md`, with window edges planted
//!   at exactly now − N·unit and ±1 ms, events at and after now, missing traits, customers known
//!   only from events, non-numeric aggregate values, lists, date-times, unindexed values (a
//!   `value_bound` of 3), timelines of hundreds of events across storage blocks and a deleted
//!   customer, `contains` on event properties with and without value bitmaps as data arrives
//!   after the first answers; a hand-computed answer pins the reference too;
//! - every example rule of rules.md runs over a small generated shop;
//! - proptest generates small data sets clustered around now and random rules, 1000 data sets by
//!   default (`PROPTEST_CASES=20000 cargo test --test query_differential random` runs more),
//!   and a quarter as many where half the events arrive after the rules were answered once
//!   (derived data built before, the runs of days and the text columns, must not be trusted
//!   after).
//!
//! A failure names the rule, *now*, and the stored data of the customers the two disagree on.

mod engines;
mod reference;

use std::collections::BTreeSet;

use audiencedb::import::{import_ndjson, CollectErrors, ImportOptions};
use audiencedb::ingest::Message;
use audiencedb::model::time::{format_rfc3339, parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::query::PreparedRule;
use audiencedb::{Config, Customer, Db, Error};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const WEEK: i64 = 7 * DAY_MS;
const MONTH: i64 = 30 * DAY_MS;
const YEAR: i64 = 365 * DAY_MS;

/// 2026-03-15T10:30:00Z: the *now* of the hand-built tests, in the middle of a UTC day.
fn now() -> i64 {
    at("2026-03-15T10:30:00Z")
}

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap_or_else(|| panic!("bad date-time {rfc3339}"))
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

// ---------- The harness ----------

/// The engine's answer: the only place that calls the query API. It also checks that
/// `query_prepared` agrees with `query`, that `len` counts the members, that `member_ids` is
/// sorted and that the bitmap holds exactly the members' internal ids.
fn engine(db: &Db, rule: &str, now: i64) -> audiencedb::Result<Vec<String>> {
    let audience = db.query(rule, now)?;
    let prepared = PreparedRule::new(rule)?;
    let again = db.query_prepared(&prepared, now)?;
    assert_eq!(
        audience.bitmap(),
        again.bitmap(),
        "query and query_prepared differ on {rule:?} at {now}"
    );
    let ids = db.member_ids(&audience)?;
    assert_eq!(audience.len(), ids.len() as u64, "len() of {rule:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "member_ids is not sorted: {ids:?}"
    );
    let internal: BTreeSet<u32> = ids
        .iter()
        .map(|id| db.internal_id(id).unwrap().expect("a member exists"))
        .collect();
    assert_eq!(
        audience.bitmap().iter().collect::<BTreeSet<u32>>(),
        internal,
        "the bitmap of {rule:?} holds other ids than the members'"
    );
    Ok(ids)
}

/// A database in a temporary folder and every customer id ever written to it.
struct Fixture {
    db: Db,
    ids: BTreeSet<String>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A database; `value_bound: Some(3)` makes most values unindexed, so that bitmaps give up
    /// and the residual checks answer.
    fn new(value_bound: Option<usize>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("db"));
        if let Some(bound) = value_bound {
            config.value_bound = bound;
        }
        Fixture {
            db: Db::open_with(config).unwrap(),
            ids: BTreeSet::new(),
            _dir: dir,
        }
    }

    fn ingest(&mut self, messages: Vec<Message>) {
        self.ids
            .extend(messages.iter().map(|m| m.customer.to_string()));
        self.db.ingest(messages).unwrap();
    }

    fn identify(&mut self, id: &str, traits: Vec<(&str, Value)>) {
        let traits = traits
            .into_iter()
            .map(|(k, v)| (k.into(), Some(v)))
            .collect();
        self.ingest(vec![Message::identify(id, traits)]);
    }

    fn track(&mut self, id: &str, event: &str, ts: i64, props: Vec<(&str, Value)>) {
        let props = props.into_iter().map(|(k, v)| (k.into(), v)).collect();
        self.ingest(vec![Message::track(id, event, props, Some(ts))]);
    }

    /// Every known customer as stored: every id seen in a profile or an event, minus deleted ones.
    fn customers(&self) -> Vec<Customer> {
        known(&self.db, &self.ids)
    }

    /// Engine and reference agree on `rule` at `now`; returns the members.
    fn check(&self, rule: &str, now: i64) -> Vec<String> {
        check(&self.db, &self.customers(), rule, now)
    }

    /// Engine and reference agree, and both give `expected`.
    fn expect(&self, rule: &str, now: i64, expected: &[&str]) {
        let got = self.check(rule, now);
        let mut expected: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
        expected.sort();
        assert_eq!(
            got,
            expected,
            "{rule:?} at {}: the reference (and the engine) disagree with the hand-computed answer",
            format_rfc3339(now)
        );
    }
}

fn known(db: &Db, ids: &BTreeSet<String>) -> Vec<Customer> {
    ids.iter()
        .filter_map(|id| db.customer(id).unwrap())
        .collect()
}

/// Compares the engine and the reference on one rule; the message names the rule, *now* and
/// the stored data of every customer they disagree on.
fn check(db: &Db, customers: &[Customer], rule: &str, now: i64) -> Vec<String> {
    match compare(db, customers, rule, now) {
        Ok(members) => members,
        Err(message) => panic!("{message}"),
    }
}

/// `Ok(members)` when the engine and the reference agree, else a description of the difference.
fn compare(db: &Db, customers: &[Customer], rule: &str, now: i64) -> Result<Vec<String>, String> {
    let parsed = audiencedb::rules::parse(rule).map_err(|e| format!("{rule:?}: {e}"))?;
    let expected = reference::evaluate(&parsed, now, customers);
    let got = engine(db, rule, now);
    let when = format!("now = {now} ({})", format_rfc3339(now));
    match (got, expected) {
        (Ok(got), Ok(expected)) if got == expected => Ok(got),
        (Ok(got), Ok(expected)) => {
            let only = |a: &[String], b: &[String]| -> Vec<String> {
                a.iter().filter(|x| !b.contains(x)).cloned().collect()
            };
            let only_engine = only(&got, &expected);
            let only_reference = only(&expected, &got);
            let mut message = format!(
                "engine and reference differ\n  rule: {rule}\n  {when}\n  only the engine selects: {only_engine:?}\n  only the reference selects: {only_reference:?}\n  customers who differ, as stored:"
            );
            for c in customers
                .iter()
                .filter(|c| only_engine.contains(&c.id) || only_reference.contains(&c.id))
            {
                message.push_str(&format!("\n    {}", describe(c)));
            }
            Err(message)
        }
        (Err(Error::Evaluation(_)), Err(_)) => Ok(Vec::new()),
        (got, expected) => Err(format!(
            "engine and reference differ\n  rule: {rule}\n  {when}\n  engine: {got:?}\n  reference: {expected:?}"
        )),
    }
}

/// One customer as stored, on one line.
fn describe(c: &Customer) -> String {
    let traits = match &c.traits {
        None => "no profile".to_owned(),
        Some(t) => t
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let events: Vec<String> = c
        .events
        .iter()
        .map(|e| {
            let props: Vec<String> = e
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            format!(
                "{:?}@{} ({}) {{{}}}",
                e.name,
                e.timestamp,
                format_rfc3339(e.timestamp),
                props.join(", ")
            )
        })
        .collect();
    format!(
        "{}: traits [{traits}]; events [{}]",
        c.id,
        events.join("; ")
    )
}

/// Runs `test` on a database with every value indexed and on one where almost none is.
fn both_configs(test: impl Fn(Option<usize>)) {
    for bound in [None, Some(3)] {
        test(bound);
    }
}

// ---------- Trait conditions ----------

fn traits_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    f.identify(
        "gold",
        vec![
            ("tier", s("Gold")),
            ("age", Value::Int(34)),
            ("country", s("FI")),
            ("tags", Value::List(vec![s("eco"), s("sale")])),
            ("email", s("ann@example.com")),
            ("signup_at", Value::Time(now - 10 * DAY_MS)),
            ("newsletter", Value::Bool(true)),
            ("code", s("12345")),
            ("price", Value::Float(19.9)),
            ("address.city", s("Helsinki")),
            ("score", Value::Float(12.5)),
        ],
    );
    f.identify(
        "silver",
        vec![
            ("tier", s("Silver")),
            ("age", Value::Float(30.0)),
            ("country", s("SE")),
            ("tags", s("eco-friendly shoes")),
            ("signup_at", Value::Time(now - 30 * DAY_MS)),
            ("newsletter", Value::Bool(false)),
            ("code", Value::Int(12345)),
            ("score", s("12.50")),
            ("address.city", s("Espoo")),
        ],
    );
    f.identify(
        "lower",
        vec![
            ("tier", s("gold")),
            ("age", s("30")),
            ("country", s("NO")),
            (
                "tags",
                Value::List(vec![Value::Int(5), s("5"), Value::Bool(true)]),
            ),
            ("signup_at", s("2026-01-01")),
            ("newsletter", s("true")),
            ("code", s("007")),
            ("price", Value::Int(20)),
        ],
    );
    f.identify(
        "young",
        vec![
            ("tier", s("Bronze")),
            ("age", Value::Int(25)),
            ("country", s("fi")),
            ("signup_at", Value::Time(at("2026-03-01T00:00:00Z"))),
            ("code", Value::Int(7)),
            ("price", Value::Float(20.0)),
        ],
    );
    f.identify(
        "old",
        vec![
            ("age", Value::Int(35)),
            ("signup_at", Value::Time(at("2026-03-01T23:59:59.999Z"))),
            ("tags", Value::List(vec![])),
        ],
    );
    // A profile whose only trait was removed again.
    f.identify("empty", vec![("tier", s("Gold"))]);
    f.ingest(vec![Message::identify(
        "empty",
        vec![("tier".into(), None)],
    )]);
    // Known only from an event.
    f.track("anon", "visited", now - HOUR, vec![]);
    f
}

#[test]
fn trait_conditions_follow_the_spec() {
    both_configs(|bound| {
        let f = traits_fixture(bound);
        let now = now();
        let all = ["anon", "empty", "gold", "lower", "old", "silver", "young"];
        for (rule, expected) in [
            ("tier = Gold", &["gold"][..]),
            // Set and differs: no tier, no match.
            ("tier != Gold", &["lower", "silver", "young"]),
            // The complement over every known customer includes those without a tier.
            (
                "not tier = Gold",
                &["anon", "empty", "lower", "old", "silver", "young"],
            ),
            ("tier in (Gold, Silver)", &["gold", "silver"]),
            ("tier not in (Gold, Silver)", &["lower", "young"]),
            ("country in (FI, SE)", &["gold", "silver"]),
            ("country not in (FI, SE)", &["lower", "young"]),
            // Numbers: 30.0 is 30; the string "30" is never a number for ordering...
            ("age > 30", &["gold", "old"]),
            ("age >= 30", &["gold", "old", "silver"]),
            ("age < 30", &["young"]),
            ("age between 25 and 34", &["gold", "silver", "young"]),
            ("age between 34 and 25", &[]),
            // ... but equality with a number written in the rule compares its text.
            ("age = 30", &["lower", "silver"]),
            ("age = 30.0", &["silver"]),
            ("age != 30", &["gold", "old", "young"]),
            ("code = 12345", &["gold", "silver"]),
            ("code in (12345, 1)", &["gold", "silver"]),
            ("code = 007", &["lower", "young"]),
            ("code = 7", &["young"]),
            ("code not in (007)", &["gold", "silver"]),
            ("score > 12", &["gold"]),
            ("score = 12.50", &["gold", "silver"]),
            ("score = 12.5", &["gold"]),
            ("price = 19.90", &["gold"]),
            ("price = 20", &["lower", "young"]),
            ("price > 19.9", &["lower", "young"]),
            ("price <= 19.90", &["gold"]),
            // contains: list elements, or a substring of a string.
            ("tags contains eco", &["gold", "silver"]),
            ("tags contains sale", &["gold"]),
            ("tags contains 5", &["lower"]),
            ("tags contains true", &["lower"]),
            ("tags contains shoes", &["silver"]),
            ("tags contains \"\"", &["silver"]),
            ("tags is set", &["gold", "lower", "old", "silver"]),
            ("email is set", &["gold"]),
            (
                "email is not set",
                &["anon", "empty", "lower", "old", "silver", "young"],
            ),
            ("address.city = Helsinki", &["gold"]),
            ("address.city != Helsinki", &["silver"]),
            // Date-times, against relative times, dates (midnight UTC) and date-times.
            ("signup_at > 30 days ago", &["gold", "old", "young"]),
            (
                "signup_at >= 30 days ago",
                &["gold", "old", "silver", "young"],
            ),
            ("signup_at = 2026-03-01", &["young"]),
            ("signup_at > 2026-03-01", &["gold", "old"]),
            ("signup_at < 2026-03-01", &["silver"]),
            ("signup_at = 2026-03-01T23:59:59.999Z", &["old"]),
            (
                "signup_at between 2026-03-01T00:00:00Z and 2026-03-01T23:59:59.999Z",
                &["old", "young"],
            ),
            (
                "signup_at between 40 days ago and 10 days ago",
                &["gold", "old", "silver", "young"],
            ),
            (
                "signup_at between 30 days ago and 11 days ago",
                &["old", "silver", "young"],
            ),
            ("signup_at = \"2026-01-01\"", &["lower"]),
            ("newsletter = true", &["gold"]),
            ("newsletter = false", &["silver"]),
            ("newsletter != true", &["lower", "silver"]),
            ("newsletter = \"true\"", &["lower"]),
            // Composition.
            ("everyone", &all[..]),
            ("not everyone", &[]),
            ("not not tier = Gold", &["gold"]),
            ("tier = Gold or age > 34", &["gold", "old"]),
            (
                "not (tier = Gold or age > 34)",
                &["anon", "empty", "lower", "silver", "young"],
            ),
            ("tier = Gold or tier = Silver and age > 30", &["gold"]),
            (
                "(tier = Gold or tier = Silver) and age >= 30",
                &["gold", "silver"],
            ),
            ("TIER = Gold", &[]),
            ("nosuchtrait = 1", &[]),
            ("nosuchtrait is not set", &all[..]),
        ] {
            f.expect(rule, now, expected);
        }
    });
}

/// The points rules.md leaves open, with the reading the reference takes (see its module doc).
#[test]
fn trait_conditions_where_the_spec_is_silent() {
    both_configs(|bound| {
        let f = traits_fixture(bound);
        let now = now();
        for (rule, expected) in [
            // A quoted string is a string: it does not equal the number 12345.
            ("code = \"12345\"", &["gold"][..]),
            // A boolean does not equal the text "true"; a date equals the text "2026-01-01".
            ("newsletter = \"false\"", &[]),
            ("signup_at = 2026-01-01", &["lower"]),
            ("signup_at contains 2026-01-01", &["lower"]),
            ("signup_at in (2026-01-01, 2026-03-01)", &["lower", "young"]),
            // A quoted RFC 3339 date-time is also its instant (ingest stores such text as one).
            ("signup_at = \"2026-03-01T00:00:00Z\"", &["young"]),
            ("signup_at < \"2026-03-01T00:00:00Z\"", &["silver"]),
            ("signup_at = 2026-03-01T00:00:00Z", &["young"]),
            // A list never equals a scalar; `!=` is then "set and differs".
            ("tags = eco", &[]),
            ("tags != eco", &["gold", "lower", "old", "silver"]),
            ("tags in (eco, sale)", &[]),
            // A date as the upper end of a trait's `between` is its midnight, as everywhere.
            ("signup_at between 2026-03-01 and 2026-03-01", &["young"]),
            ("signup_at <= 2026-03-01", &["silver", "young"]),
            // Only numbers and date-times order: not strings, booleans or lists.
            ("tier > Gold", &[]),
            ("tier between A and H", &[]),
            (
                "not tier between A and H",
                &["anon", "empty", "gold", "lower", "old", "silver", "young"],
            ),
            ("newsletter > false", &[]),
            ("tags > eco", &[]),
            // contains: a number is looked for as its text; a boolean is not text.
            ("code contains 234", &["gold"]),
            ("newsletter contains true", &[]),
            ("age contains 3", &["lower"]),
        ] {
            f.expect(rule, now, expected);
        }
    });
}

/// Orderings on numeric and date-time traits, answered by the range index: values planted at
/// each constant and ±1 (ms for date-times; the next `f64` for floats; past 2^53, where an
/// integer compared with a decimal is compared as `f64`), every operator and `between`, `not`,
/// missing traits, strings, booleans and lists; then the same after each kind of profile change
/// (a new value, a removal with null, a delete, a merge that absorbs traits), after a reopen
/// (the index loaded from the snapshot) and `verify`.
#[test]
fn trait_orderings_to_the_millisecond_and_across_changes() {
    both_configs(|bound| {
        let now = now();
        let ago60 = now - 60 * DAY_MS;
        let big = 1i64 << 53;
        // Two known customers are merged below: that takes `allow_known_merge`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let config = || {
            let mut config = Config::new(&path);
            if let Some(bound) = bound {
                config.value_bound = bound;
            }
            config.allow_known_merge = true;
            config
        };
        let mut f = Fixture {
            db: Db::open_with(config()).unwrap(),
            ids: BTreeSet::new(),
            _dir: dir,
        };
        let mut planted: Vec<(String, Vec<(&str, Value)>)> = Vec::new();
        for (i, d) in [-1i64, 0, 1].into_iter().enumerate() {
            planted.push((
                format!("t{i}"),
                vec![
                    ("signup_at", Value::Time(ago60 + d)),
                    ("age", Value::Int(25 + d)),
                    ("ltv", Value::Float(100.0 + d as f64 * 1e-9)),
                    ("n", Value::Int(big + d)),
                ],
            ));
            planted.push((
                format!("u{i}"),
                vec![
                    ("signup_at", Value::Time(at("2026-03-01T00:00:00Z") + d)),
                    ("age", Value::Int(34 + d)),
                    ("ltv", Value::Int(100 + d)),
                    ("n", Value::Float((big + 2 * d) as f64)),
                ],
            ));
        }
        planted.push((
            "odd".into(),
            vec![
                ("signup_at", s("2026-01-01")),
                ("age", s("30")),
                ("ltv", Value::Bool(true)),
                ("n", Value::List(vec![Value::Int(big), Value::Float(0.5)])),
            ],
        ));
        planted.push((
            "zero".into(),
            vec![
                ("signup_at", Value::Time(-1)),
                ("age", Value::Float(-0.0)),
                ("ltv", Value::Float(f64::INFINITY)),
                ("n", Value::Int(i64::MIN)),
            ],
        ));
        for (id, traits) in &planted {
            f.identify(id, traits.clone());
        }
        f.track("anon", "visited", now - HOUR, vec![]);

        let mut rules = Vec::new();
        let consts = [
            ("signup_at", "60 days ago".to_owned()),
            ("signup_at", format_rfc3339(ago60)),
            ("signup_at", "2026-03-01".to_owned()),
            ("signup_at", "\"2026-03-01T00:00:00.001Z\"".to_owned()),
            ("age", "25".to_owned()),
            ("age", "34.5".to_owned()),
            ("age", "0".to_owned()),
            ("age", "-0.0".to_owned()),
            ("age", "\"25\"".to_owned()),
            ("ltv", "100".to_owned()),
            ("ltv", "100.0".to_owned()),
            ("ltv", "99.999999999".to_owned()),
            ("n", big.to_string()),
            ("n", format!("{big}.0")),
            ("n", format!("{}", big + 1)),
            ("n", format!("{}.0", big + 2)),
        ];
        for (name, c) in &consts {
            for op in ["<", "<=", ">", ">="] {
                rules.push(format!("{name} {op} {c}"));
                rules.push(format!("not {name} {op} {c}"));
            }
        }
        for (name, a, b) in [
            ("signup_at", "61 days ago", "59 days ago"),
            ("signup_at", "60 days ago", "60 days ago"),
            ("signup_at", "60 days ago", "2026-03-01"),
            ("age", "24", "26"),
            ("age", "25", "25"),
            ("age", "24.5", "34"),
            ("age", "26", "24"),
            ("ltv", "99", "100"),
            ("n", "9007199254740992.0", "9007199254740993"),
        ] {
            rules.push(format!("{name} between {a} and {b}"));
            rules.push(format!("not {name} between {a} and {b}"));
        }
        rules.push("age > 24 and signup_at < 60 days ago or ltv >= 100".into());

        let run = |f: &Fixture, stage: &str| {
            for rule in &rules {
                let members = f.check(rule, now);
                assert!(members.len() <= f.ids.len(), "{stage}: {rule}");
            }
            // The rule that merges all three kinds and `not` must not be vacuous.
            assert!(
                !f.check("signup_at > 60 days ago", now).is_empty(),
                "{stage}"
            );
        };
        run(&f, "planted");

        // A new value, removals with null, a delete, a merge that absorbs the other's traits.
        f.identify(
            "t0",
            vec![
                ("signup_at", Value::Time(ago60 + 1)),
                ("age", Value::Float(25.5)),
            ],
        );
        f.ingest(vec![Message::identify(
            "t1",
            vec![("signup_at".into(), None), ("ltv".into(), None)],
        )]);
        f.db.delete_customer("u1").unwrap();
        f.identify("anon", vec![("age", Value::Int(26))]);
        f.ingest(vec![Message::alias("u2", "anon")]);
        assert!(f.db.verify().unwrap().is_ok());
        run(&f, "after changes");

        // Reopened: the range index comes from the snapshot.
        let Fixture { db, ids, _dir } = f;
        drop(db);
        let f = Fixture {
            db: Db::open_with(config()).unwrap(),
            ids,
            _dir,
        };
        let report = f.db.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        run(&f, "reopened");
    });
}

// ---------- Windows ----------

/// One `visited` event per customer, at now − N·unit − 1 ms, exactly now − N·unit and
/// now − N·unit + 1 ms for every unit; at now; after now.
fn last_windows_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let mut messages = Vec::new();
    for (unit, len) in [
        ("min", MINUTE),
        ("hour", HOUR),
        ("day", DAY_MS),
        ("week", WEEK),
        ("month", MONTH),
        ("year", YEAR),
    ] {
        for (suffix, delta) in [("-1ms", -1), ("", 0), ("+1ms", 1)] {
            let id = format!("{unit}{suffix}");
            messages.push(Message::track(
                id,
                "visited",
                vec![],
                Some(now - len + delta),
            ));
        }
    }
    messages.push(Message::track("now", "visited", vec![], Some(now)));
    messages.push(Message::track("after", "visited", vec![], Some(now + 1)));
    messages.push(Message::track(
        "later",
        "visited",
        vec![],
        Some(now + DAY_MS),
    ));
    f.ingest(messages);
    f
}

#[test]
fn last_n_units_is_now_minus_n_units_exclusive_to_now_inclusive() {
    both_configs(|bound| {
        let f = last_windows_fixture(bound);
        let now = now();
        let inside_minute = ["now", "min+1ms"];
        f.expect("visited in last 1 minute", now, &inside_minute);
        f.expect(
            "visited in last 60 minutes",
            now,
            &["now", "min-1ms", "min", "min+1ms", "hour+1ms"],
        );
        f.expect(
            "visited in last 1 hour",
            now,
            &["now", "min-1ms", "min", "min+1ms", "hour+1ms"],
        );
        // Shortest windows first; per unit, the edge event inside the window first.
        let ever = [
            "now",
            "min+1ms",
            "min",
            "min-1ms",
            "hour+1ms",
            "hour",
            "hour-1ms",
            "day+1ms",
            "day",
            "day-1ms",
            "week+1ms",
            "week",
            "week-1ms",
            "month+1ms",
            "month",
            "month-1ms",
            "year+1ms",
            "year",
            "year-1ms",
        ];
        f.expect("visited", now, &ever);
        f.expect("visited ever", now, &ever);
        f.expect("not visited", now, &["after", "later"]);
        f.expect("visited in last 1 year", now, &ever[..ever.len() - 2]);
        f.expect("visited in the last 365 days", now, &ever[..ever.len() - 2]);
        f.expect("visited in last 1 month", now, &ever[..ever.len() - 5]);
        f.expect("visited in last 30 days", now, &ever[..ever.len() - 5]);
        f.expect("visited in last 1 week", now, &ever[..ever.len() - 8]);
        f.expect("visited in last 7 days", now, &ever[..ever.len() - 8]);
        f.expect("visited in last 168 hours", now, &ever[..ever.len() - 8]);
        f.expect("visited in last 1 day", now, &ever[..ever.len() - 11]);
        f.expect(
            "visited in last 1440 minutes",
            now,
            &ever[..ever.len() - 11],
        );
        f.expect(
            "visited at most 0 times in last 1 day",
            now,
            &ever[ever.len() - 11..]
                .iter()
                .chain(&["after", "later"])
                .copied()
                .collect::<Vec<_>>(),
        );
        // Everything else against the reference, at now and at the edges themselves.
        for rule in [
            "visited in last 2 days",
            "visited in last 2 weeks",
            "visited in last 12 months",
            "visited in last 2 years",
            "visited in last 59 minutes",
            "visited in last 23 hours",
            "visited in last 6 days",
            "visited in last 29 days",
            "visited in last 364 days",
            "visited since 1 day ago",
            "visited before 1 day ago",
            "visited before 0 minutes ago",
            "visited since 0 minutes ago",
            "did visited between 7 days ago and 1 day ago",
        ] {
            for t in [
                now,
                now - 1,
                now + 1,
                now - DAY_MS,
                now + DAY_MS,
                now + YEAR,
            ] {
                f.check(rule, t);
            }
        }
    });
}

/// Events around the calendar days 2026-03-14 and 2026-03-15 (now is 2026-03-15T10:30Z).
fn calendar_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let y = at("2026-03-14T00:00:00Z");
    let t = at("2026-03-15T00:00:00Z");
    let dt = at("2026-03-14T12:00:00Z");
    let mut messages = Vec::new();
    for (id, ts) in [
        ("y-1ms", y - 1),
        ("y", y),
        ("dt", dt),
        ("dt+1ms", dt + 1),
        ("t-1ms", t - 1),
        ("t", t),
        ("now", now),
        ("after", now + 1),
        ("tomorrow", t + DAY_MS),
    ] {
        messages.push(Message::track(id, "visited", vec![], Some(ts)));
    }
    f.ingest(messages);
    f
}

#[test]
fn since_before_and_between_follow_the_spec() {
    both_configs(|bound| {
        let f = calendar_fixture(bound);
        let now = now();
        for (rule, expected) in [
            (
                "visited since 2026-03-14",
                &["y", "dt", "dt+1ms", "t-1ms", "t", "now"][..],
            ),
            ("visited before 2026-03-14", &["y-1ms"]),
            (
                "visited before 2026-03-15",
                &["y-1ms", "y", "dt", "dt+1ms", "t-1ms"],
            ),
            (
                "visited before 2026-03-17",
                &["y-1ms", "y", "dt", "dt+1ms", "t-1ms", "t", "now"],
            ),
            ("visited since 2026-03-16", &[]),
            (
                "did visited between 2026-03-14 and 2026-03-14",
                &["y", "dt", "dt+1ms", "t-1ms"],
            ),
            (
                "did visited between 2026-03-14 and 2026-03-15",
                &["y", "dt", "dt+1ms", "t-1ms", "t", "now"],
            ),
            (
                "did visited between 2026-03-14T00:00:00Z and 2026-03-14T12:00:00Z",
                &["y", "dt"],
            ),
            (
                "did visited between 2026-03-14 and 2026-03-14T12:00:00Z",
                &["y", "dt"],
            ),
            (
                "did visited between 2026-03-14T14:00:00+02:00 and 2026-03-14",
                &["dt", "dt+1ms", "t-1ms"],
            ),
            ("did visited between 2026-03-15 and 2026-03-14", &[]),
            (
                "visited since 2026-03-14T12:00:00.001Z",
                &["dt+1ms", "t-1ms", "t", "now"],
            ),
            ("visited before 2026-03-14T12:00:00Z", &["y-1ms", "y"]),
            ("visited before 1 day ago", &["y-1ms", "y"]),
            (
                "visited since 1 day ago",
                &["dt", "dt+1ms", "t-1ms", "t", "now"],
            ),
            (
                "did visited between 2 days ago and 1 day ago",
                &["y-1ms", "y"],
            ),
            (
                "visited in last 1 day",
                &["dt", "dt+1ms", "t-1ms", "t", "now"],
            ),
            (
                "visited at least 1 time between 2026-03-15 and 2026-03-16",
                &["t", "now"],
            ),
        ] {
            f.expect(rule, now, expected);
        }
        // *now* exactly at midnight, and one millisecond before.
        let t = at("2026-03-15T00:00:00Z");
        f.expect("did visited between 2026-03-15 and 2026-03-15", t, &["t"]);
        f.expect("visited in last 1 day", t, &["dt", "dt+1ms", "t-1ms", "t"]);
        f.expect(
            "visited in last 1 day",
            t - 1,
            &["y", "dt", "dt+1ms", "t-1ms"],
        );
        f.expect("visited since 2026-03-15", t - 1, &[]);
        f.expect(
            "not visited ever",
            t - 1,
            &["t", "now", "after", "tomorrow"],
        );
        for rule in [
            "visited since 2026-03-14",
            "visited before 2026-03-15",
            "did visited between 2026-03-14 and 2026-03-15",
            "did visited between 2026-03-14T12:00:00Z and 2026-03-15T10:30:00Z",
            "visited in last 1 day",
            "visited in last 2 days",
            "visited in last 12 hours",
            "visited before 12 hours ago",
            "visited since 36 hours ago",
        ] {
            for t in [
                now,
                t,
                t - 1,
                t + 1,
                at("2026-03-14T12:00:00Z"),
                at("2026-03-16T00:00:00Z"),
                at("2026-03-16T12:00:00Z"),
            ] {
                f.check(rule, t);
            }
        }
    });
}

// ---------- Frequencies and aggregates ----------

fn purchases_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let amount = |v: Value| vec![("amount", v)];
    // 100 + 200.5 and a text amount: count 3, sum 300.5, avg 150.25, min 100, max 200.5.
    f.track("big", "purchased", now - 3 * HOUR, amount(Value::Int(100)));
    f.track(
        "big",
        "purchased",
        now - 2 * DAY_MS,
        amount(Value::Float(200.5)),
    );
    f.track("big", "purchased", now - 3 * DAY_MS, amount(s("12.50")));
    // Only non-numeric amounts: count 2, sum 0, no avg, min or max.
    f.track("text", "purchased", now - HOUR, amount(s("12.50")));
    f.track(
        "text",
        "purchased",
        now - 2 * HOUR,
        amount(Value::Bool(true)),
    );
    // 50 in the last day, 500 after now (counts nowhere), 1000 more than a year ago.
    f.track("edge", "purchased", now - HOUR, amount(Value::Int(50)));
    f.track("edge", "purchased", now + 1, amount(Value::Int(500)));
    f.track(
        "edge",
        "purchased",
        now - 400 * DAY_MS,
        amount(Value::Int(1000)),
    );
    // One purchase without an amount, one of 30.
    f.track("missing", "purchased", now - HOUR, vec![]);
    f.track("missing", "purchased", now - HOUR, amount(Value::Int(30)));
    // Never purchased.
    f.track("visitor", "visited", now - HOUR, vec![]);
    f.identify("profile", vec![("tier", s("Gold"))]);
    f
}

#[test]
fn frequencies_and_aggregates_follow_the_spec() {
    both_configs(|bound| {
        let f = purchases_fixture(bound);
        let now = now();
        for (rule, expected) in [
            ("purchased", &["big", "edge", "missing", "text"][..]),
            ("not purchased", &["profile", "visitor"]),
            ("purchased exactly 3 times", &["big"]),
            ("purchased count = 2", &["edge", "missing", "text"]),
            ("purchased count != 2", &["big", "profile", "visitor"]),
            (
                "purchased count >= 0",
                &["big", "edge", "missing", "profile", "text", "visitor"],
            ),
            (
                "purchased at most 2 times",
                &["edge", "missing", "profile", "text", "visitor"],
            ),
            ("purchased exactly 0 times", &["profile", "visitor"]),
            (
                "purchased at least 2 times in last 1 day",
                &["missing", "text"],
            ),
            ("purchased sum(amount) > 300", &["big", "edge"]),
            ("purchased sum(amount) = 300.5", &["big"]),
            ("purchased sum(amount) > 1000", &["edge"]),
            ("purchased sum(amount) > 1000 in last 1 year", &[]),
            // A sum over no values is 0: those who never purchased and text-only amounts.
            ("purchased sum(amount) = 0", &["profile", "text", "visitor"]),
            (
                "purchased sum(amount) < 100",
                &["missing", "profile", "text", "visitor"],
            ),
            (
                "purchased sum(amount) < 100 in last 1 day",
                &["edge", "missing", "profile", "text", "visitor"],
            ),
            // avg, min and max over no values are false.
            ("purchased avg(amount) >= 0", &["big", "edge", "missing"]),
            ("purchased avg(amount) = 150.25", &["big"]),
            ("purchased avg(amount) = 30", &["missing"]),
            ("purchased avg(amount) != 30", &["big", "edge"]),
            ("purchased min(amount) < 100", &["edge", "missing"]),
            ("purchased min(amount) = 100", &["big"]),
            ("purchased max(amount) = 200.5", &["big"]),
            ("purchased max(amount) >= 1000", &["edge"]),
            ("purchased max(amount) >= 1000 in last 30 days", &[]),
            (
                "purchased max(amount) <= 50 in last 1 day",
                &["edge", "missing"],
            ),
            (
                "not purchased max(amount) > 0",
                &["profile", "text", "visitor"],
            ),
            (
                "purchased sum(nosuch) = 0",
                &["big", "edge", "missing", "profile", "text", "visitor"],
            ),
            ("purchased avg(nosuch) = 0", &[]),
            ("purchased where amount = 12.50", &["big", "text"]),
            ("purchased where amount > 12", &["big", "edge", "missing"]),
            ("purchased where amount is not set", &["missing"]),
        ] {
            f.expect(rule, now, expected);
        }
        for t in [now - 2 * DAY_MS, now + 1, now - 400 * DAY_MS] {
            for rule in [
                "purchased sum(amount) >= 50 in last 3 days",
                "purchased count <= 1 in last 2 days",
                "purchased avg(amount) < 200",
                "purchased max(amount) > 100 ever",
            ] {
                f.check(rule, t);
            }
        }
    });
}

// ---------- Event predicates and shorthand ----------

fn views_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let d = |n: i64| now - n * DAY_MS;
    f.track(
        "p1",
        "viewed",
        d(1),
        vec![
            ("product", s("X")),
            ("category", s("shoes")),
            ("price", Value::Int(120)),
        ],
    );
    f.track(
        "p1",
        "viewed",
        d(2),
        vec![("product", s("Y")), ("price", Value::Float(80.0))],
    );
    f.track("p2", "viewed", d(1), vec![("product", s("12345"))]);
    f.track("p2", "viewed", d(40), vec![("product", Value::Int(12345))]);
    f.track("p2", "Product Viewed", d(3), vec![("sku", s("sku-123"))]);
    f.track(
        "p3",
        "viewed",
        d(5),
        vec![
            ("product", s("X")),
            ("meta.source", s("email")),
            ("price", s("99")),
        ],
    );
    f.track(
        "p4",
        "purchased",
        d(1),
        vec![("category", s("kids")), ("amount", Value::Int(10))],
    );
    f.track(
        "p4",
        "purchased",
        d(2),
        vec![("category", s("shoes")), ("amount", Value::Int(60))],
    );
    f.identify("p4", vec![("tier", s("Gold"))]);
    f.track("p5", "viewed", now + 1, vec![("product", s("X"))]);
    f
}

#[test]
fn event_predicates_follow_the_spec() {
    both_configs(|bound| {
        let f = views_fixture(bound);
        let now = now();
        for (rule, expected) in [
            ("viewed product X", &["p1", "p3"][..]),
            ("viewed product X in last 3 days", &["p1"]),
            ("viewed product X where price > 100", &["p1"]),
            ("viewed where (product = X and not price > 100)", &["p3"]),
            ("viewed product 12345", &["p2"]),
            ("viewed product 12345 in last 30 days", &["p2"]),
            ("viewed product \"12345\"", &["p2"]),
            ("did \"Product Viewed\" where sku = sku-123", &["p2"]),
            ("did \"Product Viewed\" in last 2 days", &[]),
            ("did \"product viewed\"", &[]),
            ("viewed where meta.source = email", &["p3"]),
            ("viewed where price is not set", &["p2"]),
            ("viewed where price is set at least 2 times", &["p1"]),
            ("viewed where (price between 80 and 120)", &["p1"]),
            ("viewed where price between 81 and 119", &[]),
            (
                "viewed where (product in (X, Y) or price < 100)",
                &["p1", "p3"],
            ),
            ("viewed where product not in (X)", &["p1", "p2"]),
            ("viewed where (not product = X)", &["p1", "p2"]),
            ("viewed where product != X", &["p1", "p2"]),
            ("viewed where product != 12345", &["p1", "p3"]),
            ("viewed where category != shoes", &[]),
            ("viewed where (product != X and price is set)", &["p1"]),
            ("not viewed where product = X", &["p2", "p4", "p5"]),
            (
                "purchased where (category = shoes and amount >= 50)",
                &["p4"],
            ),
            ("purchased where (category = kids and amount >= 50)", &[]),
            (
                "purchased where category = kids and purchased where amount >= 50",
                &["p4"],
            ),
            ("purchased where category = kids and tier = Gold", &["p4"]),
            ("viewed at least 2 times", &["p1", "p2"]),
            ("viewed product X at least 2 times", &[]),
            ("viewed where product contains 234", &["p2"]),
            (
                "viewed where (product = X or product = 12345) count = 1",
                &["p1", "p3"],
            ),
            ("viewed product X ever and not viewed product Y", &["p3"]),
            ("viewed max(price) > 100", &["p1"]),
            ("viewed product X sum(price) = 120", &["p1"]),
            ("viewed product X sum(price) = 0", &["p2", "p3", "p4", "p5"]),
        ] {
            f.expect(rule, now, expected);
        }
    });
}

// ---------- Compound event filters ----------

/// Filters of several conditions and `not` (answered from the per-day event columns): events of
/// one customer on one day with different values (so that no per-day bitmap can tell which event
/// had which), events at the window's edges and a millisecond inside, after *now*, numbers as
/// strings, missing properties, lists; counts; then data that arrives, and a customer deleted,
/// after the first answers (columns built before must not be read after).
#[test]
fn compound_filters_to_the_millisecond_and_across_changes() {
    both_configs(|bound| {
        let now = now();
        let mut f = Fixture::new(bound);
        let buy = |category: Value, amount: Option<Value>| {
            let mut props = vec![("category", category)];
            props.extend(amount.map(|a| ("amount", a)));
            props
        };
        let int = |i: i64| Some(Value::Int(i));
        f.track("a", "purchased", now - WEEK, buy(s("shoes"), int(70)));
        f.track("a", "purchased", now - WEEK + 1, buy(s("shoes"), int(50)));
        f.track("a", "purchased", now - WEEK + 2, buy(s("toys"), int(80)));
        f.track("b", "purchased", now - WEEK + 1, buy(s("shoes"), int(60)));
        f.track(
            "c",
            "purchased",
            now,
            buy(s("shoes"), Some(Value::Float(60.0))),
        );
        f.track("c", "purchased", now + 1, buy(s("shoes"), int(100)));
        f.track(
            "d",
            "purchased",
            now - 3 * DAY_MS,
            buy(s("shoes"), Some(s("75"))),
        );
        f.track(
            "d",
            "purchased",
            now - 3 * DAY_MS + 1,
            buy(s("shoes"), None),
        );
        f.track("e", "purchased", now - 2 * DAY_MS, buy(s("shoes"), int(65)));
        f.track(
            "e",
            "purchased",
            now - 2 * DAY_MS + 7,
            buy(s("shoes"), int(61)),
        );
        f.track("f", "purchased", now - 2 * DAY_MS, buy(s("shoes"), int(65)));
        f.track("f", "purchased", now - 3 * DAY_MS, buy(s("toys"), int(90)));
        f.track("f", "purchased", now - 8 * DAY_MS, buy(s("shoes"), int(62)));
        let list = Value::List(vec![s("shoes"), s("kids")]);
        f.track("g", "purchased", now - DAY_MS, buy(list, int(70)));
        f.track("h", "viewed", now - DAY_MS, buy(s("shoes"), int(70)));
        let shoes = "purchased where (category = shoes and amount >= 60)";
        let not_big = "purchased where (category = shoes and not amount >= 60) in last 7 days";
        f.expect(
            &format!("{shoes} in last 7 days"),
            now,
            &["b", "c", "e", "f"],
        );
        f.expect(
            &format!("{shoes} at least 2 times in last 7 days"),
            now,
            &["e"],
        );
        f.expect(
            &format!("{shoes} at least 2 times in last 10 days"),
            now,
            &["e", "f"],
        );
        f.expect(not_big, now, &["a", "d"]);
        f.expect(
            "purchased where (category contains shoes and amount >= 60) in last 7 days",
            now,
            &["b", "c", "e", "f", "g"],
        );
        f.expect(
            "purchased where (category = toys or amount < 60) exactly 1 time in last 7 days",
            now,
            &["f"],
        );
        let rules = [
            format!("{shoes} in last 7 days"),
            format!("{shoes} ever"),
            format!("{shoes} in last 12 hours"),
            format!("{shoes} since 2026-03-08"),
            format!("{shoes} between 2026-03-08 and 2026-03-13"),
            format!("{shoes} before 7 days ago"),
            format!("{shoes} at least 2 times in last 10 days"),
            format!("{shoes} at most 1 time in last 7 days"),
            format!("{shoes} count = 0 in last 7 days"),
            format!("not {shoes} in last 7 days"),
            not_big.to_owned(),
            "purchased where (not category = shoes) in last 7 days".to_owned(),
            "purchased where (not amount is set) at least 1 time".to_owned(),
            "purchased where (category = toys or amount < 60) exactly 1 time in last 7 days"
                .to_owned(),
            "purchased where (category in (toys, kids) or (amount between 60 and 65 and not \
             category = toys)) at least 2 times in last 10 days"
                .to_owned(),
            "purchased where (amount > 60 or size = 3) in last 7 days".to_owned(),
            "viewed where (category = shoes and amount >= 60) in last 7 days".to_owned(),
        ];
        let nows = [
            now,
            now - 12 * HOUR,
            now - now.rem_euclid(DAY_MS),
            now - now.rem_euclid(DAY_MS) - 1,
            now + 1,
            now - 2 * DAY_MS + 6,
        ];
        for t in nows {
            for rule in &rules {
                f.check(rule, t);
            }
        }
        // New data on days already answered, then a deletion.
        f.track("a", "purchased", now - HOUR, buy(s("shoes"), int(99)));
        f.track("b", "purchased", now - WEEK + 3, buy(s("shoes"), int(61)));
        f.expect(
            &format!("{shoes} in last 7 days"),
            now,
            &["a", "b", "c", "e", "f"],
        );
        f.expect(
            &format!("{shoes} at least 2 times in last 7 days"),
            now,
            &["b", "e"],
        );
        f.db.delete_customer("e").unwrap();
        f.expect(
            &format!("{shoes} in last 7 days"),
            now,
            &["a", "b", "c", "f"],
        );
        f.expect(
            &format!("{shoes} at least 2 times in last 7 days"),
            now,
            &["b"],
        );
        for rule in &rules {
            f.check(rule, now);
        }
    });
}

/// Counts without a filter in windows of no whole day (`viewed at least 3 times in last 12
/// hours`, answered from the cut days' event columns from a rule's second answer on): events at
/// the window's start and end and a millisecond either side, events on both sides of midnight,
/// *now*s that put the window inside one day or across two; then events arriving on days already
/// answered and a customer deleted (columns built before must not be read after).
#[test]
fn counts_in_windows_of_part_of_a_day() {
    both_configs(|bound| {
        let now = now();
        let midnight = now - now.rem_euclid(DAY_MS);
        let mut f = Fixture::new(bound);
        let seen = |f: &mut Fixture, id: &str, ts: i64| f.track(id, "viewed", ts, Vec::new());
        // Views at the start of `in last 12 hours` (outside: now - 12 hours < t <= now), its
        // first millisecond and its end: two in the window.
        for ts in [now - 12 * HOUR, now - 12 * HOUR + 1, now] {
            seen(&mut f, "edges", ts);
        }
        // One a millisecond before the start, two inside: two in the window.
        for ts in [now - 12 * HOUR - 1, now - 5 * HOUR, now - 1] {
            seen(&mut f, "early", ts);
        }
        // Around midnight: the last millisecond of the day before and the first of today.
        for ts in [midnight - 1, midnight, midnight + 1, midnight - HOUR] {
            seen(&mut f, "midnight", ts);
        }
        // One after *now*, two in the window.
        for ts in [now + 1, now - HOUR, now - 2 * HOUR] {
            seen(&mut f, "late", ts);
        }
        seen(&mut f, "once", now - 3 * HOUR);
        f.track("other", "purchased", now - HOUR, Vec::new());
        f.expect(
            "viewed at least 3 times in last 12 hours",
            now,
            &["midnight"],
        );
        f.expect(
            "viewed exactly 2 times in last 12 hours",
            now,
            &["early", "edges", "late"],
        );
        let rules = [
            "viewed at least 3 times in last 12 hours",
            "viewed at least 2 times in last 12 hours",
            "viewed at most 2 times in last 12 hours",
            "viewed exactly 2 times in last 90 minutes",
            "viewed count = 0 in last 6 hours",
            "viewed count > 1 in last 11 hours",
            "not viewed at least 2 times in last 12 hours",
            "viewed at least 2 times since 10 hours ago",
            "viewed at least 2 times between 2026-03-14T23:00:00Z and 2026-03-15T01:00:00Z",
            "viewed at least 2 times in last 12 hours and purchased in last 2 hours",
        ];
        let nows = [
            now,
            now + 1,
            now - 1,
            midnight,
            midnight + 1,
            midnight - 1,
            midnight + 12 * HOUR,
            midnight + 12 * HOUR - 1,
            now - 2 * HOUR,
        ];
        for t in nows {
            for rule in rules {
                f.check(rule, t);
            }
        }
        // New views on a day already answered, then a deletion.
        seen(&mut f, "once", now - 2 * HOUR);
        seen(&mut f, "once", now - 4 * HOUR);
        f.expect(
            "viewed at least 3 times in last 12 hours",
            now,
            &["midnight", "once"],
        );
        f.expect(
            "viewed exactly 2 times in last 12 hours",
            now,
            &["early", "edges", "late"],
        );
        f.db.delete_customer("edges").unwrap();
        f.expect(
            "viewed exactly 2 times in last 12 hours",
            now,
            &["early", "late"],
        );
        for t in nows {
            for rule in rules {
                f.check(rule, t);
            }
        }
    });
}

/// Aggregates of the events passing a filter (answered from the event columns from a rule's
/// second answer on): sums whose order of additions decides them (0.1 on one day, 0.2 and 0.3 on
/// the next: 0.6000000000000001 in time order, 0.6 if the days were summed apart), amounts as
/// text, missing and as lists (left out), integers past 2^53, events at the window's edges and a
/// millisecond either side, a customer with passing events but no number (a sum of 0); then an
/// event arriving on a day already answered and a customer deleted.
#[test]
fn filtered_aggregates_to_the_millisecond_and_across_changes() {
    both_configs(|bound| {
        let now = now();
        let mut f = Fixture::new(bound);
        let buy = |category: &str, amount: Option<Value>| {
            let mut props = vec![("category", s(category))];
            props.extend(amount.map(|a| ("amount", a)));
            props
        };
        let float = |x: f64| Some(Value::Float(x));
        let int = |i: i64| Some(Value::Int(i));
        f.track(
            "order",
            "purchased",
            now - 3 * DAY_MS,
            buy("shoes", float(0.1)),
        );
        f.track(
            "order",
            "purchased",
            now - 2 * DAY_MS,
            buy("shoes", float(0.2)),
        );
        f.track(
            "order",
            "purchased",
            now - 2 * DAY_MS + 1,
            buy("shoes", float(0.3)),
        );
        f.track(
            "order",
            "purchased",
            now - 2 * DAY_MS + 2,
            buy("toys", float(5.0)),
        );
        f.track(
            "text",
            "purchased",
            now - DAY_MS,
            buy("shoes", Some(s("80"))),
        );
        f.track("text", "purchased", now - DAY_MS + 1, buy("shoes", None));
        f.track(
            "text",
            "purchased",
            now - DAY_MS + 2,
            buy("shoes", Some(Value::List(vec![Value::Int(3)]))),
        );
        f.track("huge", "purchased", now - HOUR, buy("shoes", int(1 << 53)));
        f.track("huge", "purchased", now - HOUR + 1, buy("shoes", int(1)));
        // At the start of `in last 7 days` (outside), its first millisecond, and *now*.
        f.track("edges", "purchased", now - WEEK, buy("shoes", int(100)));
        f.track("edges", "purchased", now - WEEK + 1, buy("shoes", int(40)));
        f.track("edges", "purchased", now, buy("shoes", int(70)));
        f.track("edges", "purchased", now + 1, buy("shoes", int(1000)));
        f.track("toys", "purchased", now - DAY_MS, buy("toys", int(500)));
        f.expect(
            "purchased where category = shoes sum(amount) > 0.6 in last 7 days",
            now,
            &["edges", "huge", "order"],
        );
        f.expect(
            "purchased where category = shoes sum(amount) >= 110 in last 7 days",
            now,
            &["edges", "huge"],
        );
        f.expect(
            "purchased where category = shoes sum(amount) = 110 in last 7 days",
            now,
            &["edges"],
        );
        f.expect(
            "purchased where category = shoes sum(amount) = 0 in last 7 days",
            now,
            &["text", "toys"],
        );
        let rules = [
            "purchased where category = shoes sum(amount) > 0.6 in last 7 days",
            "purchased where category = shoes sum(amount) <= 0.6 in last 7 days",
            "purchased where category = shoes sum(amount) > 0.6",
            "purchased where category = shoes sum(amount) < 100 in last 7 days",
            "purchased where category = shoes avg(amount) >= 55 in last 7 days",
            "purchased where category = shoes avg(amount) = 0.2 in last 3 days",
            "purchased where (category = shoes and not amount > 90) max(amount) >= 40",
            "purchased where (category = shoes or amount > 4) min(amount) < 0.15 in last 5 days",
            "purchased where category != toys max(amount) > 9007199254740991 in last 1 day",
            "purchased where category = shoes sum(amount) > 9007199254740992 in last 1 day",
            "purchased where category = shoes sum(amount) = 0 in last 7 days",
            "not purchased where category = shoes sum(amount) > 50 in last 7 days",
            "purchased where category = shoes sum(amount) > 50 in last 12 hours",
        ];
        let nows = [
            now,
            now - 1,
            now + 1,
            now - HOUR,
            now + DAY_MS,
            now - 2 * DAY_MS + 1,
        ];
        for t in nows {
            for rule in rules {
                f.check(rule, t);
            }
        }
        // A purchase on a day already answered, then a deletion.
        f.track(
            "text",
            "purchased",
            now - DAY_MS + 3,
            buy("shoes", int(120)),
        );
        f.expect(
            "purchased where category = shoes sum(amount) >= 110 in last 7 days",
            now,
            &["edges", "huge", "text"],
        );
        f.db.delete_customer("edges").unwrap();
        f.expect(
            "purchased where category = shoes sum(amount) >= 110 in last 7 days",
            now,
            &["huge", "text"],
        );
        for t in nows {
            for rule in rules {
                f.check(rule, t);
            }
        }
    });
}

// ---------- Substrings of event properties ----------

/// `contains` on event properties, with value bitmaps (no bound) and without (a bound of 3: the
/// per-day text columns): events exactly at the window's edges and a millisecond either side,
/// values that occur only outside the window, numbers and lists beside strings, events of
/// another kind with the same property, at several *now*s cutting days anywhere; then data that
/// arrives, and a customer deleted, after the first answers (a column built before must not be
/// read after).
#[test]
fn contains_on_event_properties_to_the_millisecond() {
    both_configs(|bound| {
        let now = now();
        let mut f = Fixture::new(bound);
        let q = |v: &str| vec![("query", s(v))];
        f.track("a", "searched", now - MONTH, q("red wool scarf"));
        f.track("b", "searched", now - MONTH + 1, q("red shoes"));
        f.track("b", "searched", now - MONTH - 1, q("scarf"));
        f.track("c", "searched", now, q("blue scarf"));
        f.track("d", "searched", now + 1, q("red scarf"));
        f.track("e", "searched", now - 2 * MONTH, q("green scarf"));
        f.track("e", "searched", now - HOUR, q("green"));
        f.track(
            "g",
            "searched",
            now - 3 * HOUR,
            vec![("query", Value::Int(12345))],
        );
        f.track("g", "searched", now - 2 * HOUR, q("size 12345"));
        f.track(
            "h",
            "searched",
            now - DAY_MS,
            vec![("query", Value::List(vec![s("scarf"), s("hat")]))],
        );
        f.track(
            "i",
            "searched",
            now - 5 * DAY_MS,
            vec![("note", s("scarf"))],
        );
        f.track("j", "viewed", now - DAY_MS, q("scarf"));
        // Matches on several days, counted across them (each day's column apart; `note` holds
        // no lists, so its counts come from the text columns).
        for (days, text) in [(3, "tartan"), (10, "wool tartan"), (40, "blue tartan")] {
            f.track(
                "m",
                "searched",
                now - days * DAY_MS,
                vec![("note", s(text))],
            );
        }
        for (k, at) in [
            (0, now - 12 * HOUR + 1),
            (1, now - 12 * HOUR),
            (2, now - WEEK),
        ] {
            f.track(
                &format!("n{k}"),
                "searched",
                at,
                vec![("note", s(&format!("note {k} red"))), ("query", s("hat"))],
            );
        }
        let rules = [
            "searched where query contains scarf in last 30 days",
            "searched where query contains red in last 30 days",
            "searched where query contains scarf ever",
            "searched where query contains \"\" in last 1 day",
            "searched where query contains 234 in last 1 day",
            "searched where query contains true",
            "searched where query contains scarf at least 2 times in last 90 days",
            "searched where note contains tartan at least 3 times in last 90 days",
            "searched where note contains tartan at least 2 times in last 30 days",
            "searched where note contains tartan at least 3 times in last 30 days",
            "not searched where query contains scarf in last 7 days",
            "searched where (query contains scarf and not query contains red) in last 60 days",
            "searched where (query contains scarf or note contains red) in last 2 weeks",
            "searched where note contains red in last 12 hours",
            "searched where note contains \"0 r\" in last 36 hours",
            "searched where note contains red since 2026-03-08",
            "searched where query contains hat before 2026-03-14",
            "searched where query contains scar between 2026-02-13 and 2026-03-14",
            "viewed where query contains scarf in last 1 day",
        ];
        let nows = [
            now,
            now - 12 * HOUR,
            now - now.rem_euclid(DAY_MS),
            now - now.rem_euclid(DAY_MS) - 1,
            now + 1,
        ];
        for t in nows {
            for rule in rules {
                f.check(rule, t);
            }
        }
        f.expect(
            "searched where query contains scarf in last 30 days",
            now,
            &["c", "h"],
        );
        f.expect(
            "searched where query contains red in last 30 days",
            now,
            &["b"],
        );
        f.expect(
            "searched where note contains red in last 12 hours",
            now,
            &["n0"],
        );
        // New data on days already answered, then a deletion.
        f.track("k", "searched", now - HOUR, q("red scarf"));
        f.track("b", "searched", now - MONTH + 2, q("wool scarf"));
        f.track(
            "n1",
            "searched",
            now - 12 * HOUR + 5,
            vec![("note", s("red"))],
        );
        f.expect(
            "searched where query contains scarf in last 30 days",
            now,
            &["b", "c", "h", "k"],
        );
        f.expect(
            "searched where note contains red in last 12 hours",
            now,
            &["n0", "n1"],
        );
        f.db.delete_customer("c").unwrap();
        f.expect(
            "searched where query contains scarf in last 30 days",
            now,
            &["b", "h", "k"],
        );
        // Traits: unique emails (no value bitmaps with either bound), a number, a list.
        for (id, email) in [
            ("a", "ann@example.org"),
            ("b", "bo@example.com"),
            ("e", "e@x.org"),
        ] {
            f.identify(id, vec![("email", s(email))]);
        }
        f.identify("g", vec![("email", Value::Int(12345))]);
        f.identify("h", vec![("email", Value::List(vec![s("example.org")]))]);
        f.expect("email contains example.org", now, &["a", "h"]);
        f.expect("email contains .org", now, &["a", "e"]);
        f.expect("email contains 234", now, &[]);
        f.identify("b", vec![("email", s("bo@example.org"))]);
        f.identify("k", vec![("email", s("k@example.org"))]);
        f.expect("email contains example.org", now, &["a", "b", "h", "k"]);
        f.db.delete_customer("a").unwrap();
        f.expect("email contains example.org", now, &["b", "h", "k"]);
        f.expect(
            "not email contains .org",
            now,
            &["d", "g", "h", "i", "j", "m", "n0", "n1", "n2"],
        );
        for t in nows {
            for rule in rules {
                f.check(rule, t);
            }
        }
    });
}

// ---------- Long timelines ----------

/// Customers with hundreds of events, so that timelines span many stored blocks (128 events
/// each) and windows cut them anywhere; some sent out of time order, some at one millisecond.
#[test]
fn long_timelines_across_storage_blocks() {
    let now = now();
    for bound in [None, Some(3)] {
        let mut f = Fixture::new(bound);
        // One visit an hour, the latest exactly at now, in one batch.
        let steady: Vec<Message> = (0..500i64)
            .map(|k| {
                Message::track(
                    "steady",
                    "visited",
                    vec![("amount".into(), Value::Int(k % 7))],
                    Some(now - k * HOUR),
                )
            })
            .collect();
        f.ingest(steady);
        // 300 purchases at one instant a day ago, then 20 more around it.
        let burst: Vec<Message> = (0..300i64)
            .map(|k| {
                Message::track(
                    "burst",
                    "purchased",
                    vec![("amount".into(), Value::Float(0.5 * (k % 4) as f64))],
                    Some(now - DAY_MS),
                )
            })
            .collect();
        f.ingest(burst);
        for k in -10..10i64 {
            f.track("burst", "purchased", now - DAY_MS + k, vec![]);
        }
        // Newest first, in batches of 40: every batch lands before the stored events.
        for batch in 0..7i64 {
            let messages: Vec<Message> = (0..40i64)
                .map(|k| {
                    let age = batch * 40 + k;
                    Message::track(
                        "backwards",
                        if age % 3 == 0 { "purchased" } else { "visited" },
                        vec![("product".into(), s(&format!("p{}", age % 5)))],
                        Some(now - age * 5 * HOUR + 1),
                    )
                })
                .collect();
            f.ingest(messages);
        }
        f.expect("visited count = 24 in last 1 day", now, &["steady"]);
        f.expect("visited count = 168 in last 7 days", now, &["steady"]);
        f.expect("purchased exactly 320 times", now, &["burst"]);
        f.expect("purchased exactly 300 times in last 1 day", now, &[]);
        f.expect(
            "purchased exactly 310 times since 1 day ago",
            now,
            &["burst"],
        );
        f.expect("purchased sum(amount) = 225", now, &["burst"]);
        f.expect("visited sum(amount) = 1494", now, &["steady"]);
        for rule in [
            "visited at least 100 times in last 5 days",
            "visited at least 120 times in last 5 days",
            "visited at most 150 times in last 1 week",
            "visited count > 200 before 1 week ago",
            "visited avg(amount) >= 3 in last 2 days",
            "visited max(amount) = 6 in last 5 hours",
            "visited min(amount) = 0 in last 5 hours",
            "purchased count >= 310 in last 2 days",
            "purchased count > 300 between 2 days ago and 1 day ago",
            "purchased where product = p0 count >= 10",
            "purchased product p3 in last 10 days",
            "visited where product not in (p2) at least 50 times",
            "visited where product != p2 at least 50 times",
            "visited product p1 at least 30 times since 20 days ago",
            "not visited in last 1 hour",
            "purchased in last 1 day and not visited in last 1 day",
        ] {
            for t in [now, now - DAY_MS, now - DAY_MS - 1, now - 10 * DAY_MS + 1] {
                f.check(rule, t);
            }
        }
    }
}

// ---------- Unindexed values, deletion, errors ----------

/// `!=` inside `where` on a property whose values are indexed (found by the differential tests).
#[test]
fn not_equal_on_an_indexed_event_property() {
    both_configs(|bound| {
        let mut f = Fixture::new(bound);
        f.track("a", "viewed", now() - HOUR, vec![("product", s("Y"))]);
        f.track("b", "viewed", now() - HOUR, vec![("product", s("X"))]);
        f.track(
            "c",
            "viewed",
            now() - HOUR,
            vec![("product", Value::Bool(true))],
        );
        f.expect("viewed where product != X", now(), &["a", "c"]);
        f.expect("viewed where product != X count >= 1", now(), &["a", "c"]);
        f.expect("viewed where product != true", now(), &["a", "b"]);
    });
}

#[test]
fn high_cardinality_values_are_checked_one_by_one() {
    let now = now();
    for bound in [None, Some(3)] {
        let mut f = Fixture::new(bound);
        let mut messages = Vec::new();
        for i in 0..20i64 {
            let id = format!("c{i:02}");
            messages.push(Message::identify(
                id.clone(),
                vec![
                    ("tier".into(), Some(s(&format!("t{}", i % 7)))),
                    ("n".into(), Some(Value::Int(i))),
                    ("x".into(), Some(Value::Float(i as f64 / 2.0))),
                ],
            ));
            for j in 0..i % 5 {
                messages.push(Message::track(
                    id.clone(),
                    "viewed",
                    vec![
                        ("product".into(), s(&format!("p{}", (i + j) % 9))),
                        ("n".into(), Value::Int(j)),
                    ],
                    Some(now - (i * 13 + j) * HOUR),
                ));
            }
        }
        f.ingest(messages);
        f.expect("tier = t3", now, &["c03", "c10", "c17"]);
        f.expect("n = 3.0", now, &["c03"]);
        f.expect("x = 3", now, &["c06"]);
        f.expect("x in (1, 1.5)", now, &["c02", "c03"]);
        f.expect("viewed product p0", now, &["c08", "c09", "c17", "c18"]);
        for rule in [
            "tier != t3",
            "tier in (t1, t2, t3, t4)",
            "not tier not in (t1, t2)",
            "n between 3 and 11",
            "viewed product p0 in last 5 days",
            "viewed product p1 at least 2 times",
            "viewed where (product = p2 or n = 1) in last 3 days",
            "viewed where product != p4 count >= 2",
            "viewed sum(n) >= 3 in last 2 weeks",
            "not viewed product p5 in last 10 days and tier = t5",
        ] {
            f.check(rule, now);
        }
    }
}

#[test]
fn deleted_customers_are_nobody() {
    both_configs(|bound| {
        let mut f = traits_fixture(bound);
        let now = now();
        f.track("gold", "visited", now - HOUR, vec![]);
        f.expect("visited", now, &["anon", "gold"]);
        f.db.delete_customer("gold").unwrap();
        let rest = ["anon", "empty", "lower", "old", "silver", "young"];
        f.expect("everyone", now, &rest);
        f.expect("tier = Gold", now, &[]);
        f.expect("visited", now, &["anon"]);
        f.expect("email is not set", now, &rest);
        f.expect(
            "not tier = Silver",
            now,
            &["anon", "empty", "lower", "old", "young"],
        );
        f.expect(
            "not visited",
            now,
            &["empty", "lower", "old", "silver", "young"],
        );
        f.check("tags contains eco or country in (FI, SE)", now);
        // The same id again is a new customer with none of the old data.
        f.identify("gold", vec![("tier", s("Silver"))]);
        f.expect("tier = Silver", now, &["gold", "silver"]);
        f.expect("tier = Gold", now, &[]);
        f.expect("visited", now, &["anon"]);
        f.expect("email is set", now, &[]);
        f.expect("age is not set", now, &["anon", "empty", "gold"]);
    });
}

#[test]
fn an_unknown_audience_is_an_evaluation_error() {
    let f = traits_fixture(None);
    for rule in [
        "in audience vip",
        "tier = Gold and not in audience unsubscribed",
        "everyone or in audience vip",
    ] {
        match engine(&f.db, rule, now()) {
            Err(Error::Evaluation(_)) => {}
            other => panic!("{rule:?}: expected an evaluation error, got {other:?}"),
        }
        let parsed = audiencedb::rules::parse(rule).unwrap();
        assert!(reference::evaluate(&parsed, now(), &f.customers()).is_err());
    }
    // An empty database knows no audience either.
    let empty = Fixture::new(None);
    assert!(matches!(
        engine(&empty.db, "in audience vip", now()),
        Err(Error::Evaluation(_))
    ));
    assert!(engine(&empty.db, "everyone", now()).unwrap().is_empty());
    assert!(engine(&empty.db, "not viewed", now()).unwrap().is_empty());
}

// ---------- The examples of rules.md over a generated shop ----------

#[test]
fn every_rules_md_example_over_a_generated_shop() {
    use audiencedb::gen::{generate, GenConfig};
    // 2026-01-01T00:00:00Z: every generated event lies in the year before.
    let end = at("2026-01-01T00:00:00Z");
    let config = GenConfig {
        customers: 300,
        seed: 2026,
        days: 365,
        end,
        both_ids_percent: 0,
    };
    let mut bytes = Vec::new();
    generate(&config, &mut bytes).unwrap();
    let mut f = Fixture::new(None);
    let mut errors = CollectErrors::default();
    let options = ImportOptions {
        strict: true,
        ..ImportOptions::default()
    };
    import_ndjson(&f.db, &bytes[..], &options, &mut errors).unwrap();
    assert!(errors.0.is_empty(), "{:?}", errors.0.first());
    for line in std::str::from_utf8(&bytes).unwrap().lines() {
        f.ids
            .insert(Message::from_json_line(line).unwrap().customer.to_string());
    }
    let customers = f.customers();
    assert_eq!(customers.len(), 300);
    // The audience example also with the audience's natural definition written out.
    let examples: Vec<&str> = audiencedb::rules::SPEC_EXAMPLES
        .into_iter()
        .chain([audiencedb::rules::SPEC_EXAMPLE_INLINED])
        .collect();
    // At the end of the period, in the middle of it (later events then count in no window), and
    // at a millisecond that is not a midnight.
    let nows = [end, end - 100 * DAY_MS, end - 3 * DAY_MS - 7 * HOUR - 1];
    let mut sizes = Vec::new();
    for now in nows {
        for &rule in &examples {
            if rule.contains("in audience") {
                assert!(matches!(
                    engine(&f.db, rule, now),
                    Err(Error::Evaluation(_))
                ));
                continue;
            }
            let members = check(&f.db, &customers, rule, now);
            sizes.push((rule, now, members.len()));
        }
    }
    // The examples select real audiences at the end of the period.
    for (rule, now, size) in &sizes {
        if *now == end {
            assert!(*size > 0 && *size < 300, "{rule}: {size} of 300");
        }
    }
}

// ---------- Sequences ----------

/// Sequences with events planted at tA, tA + T and a millisecond either side, B at the same
/// millisecond as A, *now* exactly at tA + T, events after *now*, the window's edge at
/// now − 7 days exactly and a millisecond inside, and `with same` over equal, different, numeric
/// and missing values.
fn sequences_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let a = now - 2 * HOUR;
    // B exactly at tA + T: it counts.
    f.track("c1", "added_to_cart", a, vec![]);
    f.track("c1", "purchased", a + HOUR, vec![]);
    // B a millisecond late.
    f.track("c2", "added_to_cart", a, vec![]);
    f.track("c2", "purchased", a + HOUR + 1, vec![]);
    // B at the same millisecond as A: not after it.
    f.track("c3", "added_to_cart", a, vec![]);
    f.track("c3", "purchased", a, vec![]);
    // The wait ends exactly at now.
    f.track("c4", "added_to_cart", now - HOUR, vec![]);
    // The wait is not over; the purchase comes after now.
    f.track("c5", "added_to_cart", now - 30 * MINUTE, vec![]);
    f.track("c5", "purchased", now + 10 * MINUTE, vec![]);
    // The window's edge: exactly 7 days before now is outside, a millisecond later inside.
    f.track("c6", "added_to_cart", now - WEEK, vec![]);
    f.track("c7", "added_to_cart", now - WEEK + 1, vec![]);
    // Two carts: the first bought within the hour, the second abandoned.
    f.track("c8", "added_to_cart", now - 5 * HOUR, vec![]);
    f.track("c8", "purchased", now - 5 * HOUR + 1, vec![]);
    f.track("c8", "added_to_cart", now - 3 * HOUR, vec![]);
    // With same product.
    let v = now - 3 * DAY_MS;
    f.track("s1", "viewed", v, vec![("product", s("X"))]);
    f.track("s1", "purchased", v + HOUR, vec![("product", s("Y"))]);
    f.track("s2", "viewed", v, vec![("product", s("X"))]);
    f.track("s2", "purchased", v + DAY_MS, vec![("product", s("X"))]);
    f.track("s3", "viewed", v, vec![]);
    f.track("s4", "viewed", v, vec![("product", Value::Int(1))]);
    f.track(
        "s4",
        "purchased",
        v + 1,
        vec![("product", Value::Float(1.0))],
    );
    f.track("s5", "viewed", v, vec![("product", s("1"))]);
    f.track("s5", "purchased", v + 1, vec![("product", Value::Int(1))]);
    // Chains.
    let c = now - 2 * DAY_MS;
    f.track("h1", "visited", c, vec![]);
    f.track("h1", "viewed", c + 1, vec![("product", s("X"))]);
    f.track("h1", "purchased", c + MINUTE, vec![]);
    f.track("h2", "visited", c, vec![]);
    f.track("h2", "purchased", c + 1, vec![]);
    f.track("h2", "viewed", c + 2, vec![("product", s("X"))]);
    f.track("h3", "visited", c, vec![]);
    f.track("h3", "viewed", c + 1, vec![("product", s("Y"))]);
    f.track("h3", "purchased", c + 2, vec![]);
    f.identify("t1", vec![("tier", s("Gold"))]);
    f
}

#[test]
fn sequences_follow_the_spec_to_the_millisecond() {
    // Each rule is answered three times: the first two by reading each customer's events (the
    // second asks for the event columns), the third from the columns.
    audiencedb::testing::journeys_by_columns_from(0);
    both_configs(|bound| {
        let f = sequences_fixture(bound);
        let now = now();
        for (rule, at, expected) in [
            (
                "added_to_cart then purchased within 1 hour",
                now,
                &["c1", "c8"][..],
            ),
            (
                "added_to_cart then purchased within 61 minutes",
                now,
                &["c1", "c2", "c8"],
            ),
            (
                "added_to_cart then not purchased within 1 hour",
                now,
                &["c2", "c3", "c4", "c6", "c7", "c8"],
            ),
            (
                "added_to_cart then not purchased within 1 hour",
                now - 1,
                &["c2", "c3", "c6", "c7", "c8"],
            ),
            (
                "added_to_cart then not purchased within 1 hour in last 7 days",
                now,
                &["c2", "c3", "c4", "c7", "c8"],
            ),
            (
                "added_to_cart then not purchased within 1 hour in last 7 days and not tier = Gold",
                now,
                &["c2", "c3", "c4", "c7", "c8"],
            ),
            (
                "added_to_cart then purchased within 1 hour",
                now + 10 * MINUTE,
                &["c1", "c5", "c8"],
            ),
            (
                "added_to_cart then purchased within 1 hour",
                now + 10 * MINUTE - 1,
                &["c1", "c8"],
            ),
            (
                "not added_to_cart then purchased within 1 hour",
                now,
                &[
                    "c2", "c3", "c4", "c5", "c6", "c7", "h1", "h2", "h3", "s1", "s2", "s3", "s4",
                    "s5", "t1",
                ],
            ),
            (
                "viewed then not purchased with same product within 1 day in last 7 days",
                now,
                &["h1", "h2", "h3", "s1", "s5"],
            ),
            (
                "viewed then not purchased within 1 day in last 7 days",
                now,
                &["h2", "s3"],
            ),
            (
                "viewed then purchased with same product within 1 day",
                now,
                &["s2", "s4"],
            ),
            (
                "visited then viewed product X then purchased within 7 days",
                now,
                &["h1"],
            ),
            (
                "visited then viewed then purchased within 1 minute",
                now,
                &["h1", "h3"],
            ),
            (
                "visited then viewed then purchased within 1 minute since 2026-03-13",
                now,
                &["h1", "h3"],
            ),
            (
                "visited then viewed then purchased within 1 minute before 2026-03-13",
                now,
                &[],
            ),
            ("viewed then viewed within 1 day", now, &[]),
            (
                "visited then purchased within 1 day",
                now,
                &["h1", "h2", "h3"],
            ),
            ("purchased then viewed within 1 day", now, &["h2"]),
            ("nobody_did then purchased within 1 day", now, &[]),
        ] {
            for _ in 0..3 {
                f.expect(rule, at, expected);
            }
        }
    });
}

/// `why` names the events that formed a sequence, or the one that broke it.
#[test]
fn why_shows_what_formed_or_broke_a_sequence() {
    let f = sequences_fixture(None);
    let now = now();
    let rule = "added_to_cart then not purchased within 1 hour";
    let why = f.db.why("c1", rule, now).unwrap();
    assert!(!why.root.holds);
    assert_eq!(
        why.root
            .events
            .iter()
            .map(|e| (e.name.as_str(), e.timestamp))
            .collect::<Vec<_>>(),
        [("added_to_cart", now - 2 * HOUR), ("purchased", now - HOUR)]
    );
    let why = f.db.why("c4", rule, now - 1).unwrap();
    assert!(!why.root.holds);
    assert_eq!(why.next_change, Some(now), "{why}");
    let why = f.db.why("c2", rule, now).unwrap();
    assert!(why.root.holds, "{why}");
    assert_eq!(why.root.events.len(), 1);
    let why =
        f.db.why(
            "h1",
            "visited then viewed then purchased within 1 minute",
            now,
        )
        .unwrap();
    assert!(why.root.holds);
    let c = now - 2 * DAY_MS;
    assert_eq!(
        why.root
            .events
            .iter()
            .map(|e| e.timestamp)
            .collect::<Vec<_>>(),
        [c, c + 1, c + MINUTE]
    );
}

/// `first`/`last` with purchases planted at the windows' edges and a millisecond either side,
/// after *now*, with a filter that changes which event is first or last, and without the event.
fn first_last_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let amount = |a: i64| vec![("amount", Value::Int(a))];
    // First purchase exactly 30 days ago (outside `in last 30 days`), a millisecond later (in).
    f.track("n1", "purchased", now - MONTH, amount(10));
    f.track("n1", "purchased", now - DAY_MS, amount(10));
    f.track("n2", "purchased", now - MONTH + 1, amount(10));
    f.track("n2", "purchased", now - HOUR, amount(80));
    // Last purchase exactly 180 days ago: `before 180 days ago` is strict, so not yet.
    f.track("l1", "purchased", now - 400 * DAY_MS, amount(80));
    f.track("l1", "purchased", now - 180 * DAY_MS, amount(10));
    // A millisecond older: lapsed.
    f.track("l2", "purchased", now - 180 * DAY_MS - 1, amount(10));
    // Lapsed until a purchase after *now* arrives in time (it counts only from then on).
    f.track("l3", "purchased", now - 200 * DAY_MS, amount(10));
    f.track("l3", "purchased", now + MINUTE, amount(10));
    // Only a view, and a profile without events.
    f.track("v1", "viewed", now - DAY_MS, vec![("product", s("X"))]);
    f.identify("t1", vec![("tier", s("Gold"))]);
    // A purchase at *now* exactly is the last one and in every window ending at *now*.
    f.track("z1", "purchased", now - 2 * YEAR, amount(80));
    f.track("z1", "purchased", now, amount(10));
    f
}

#[test]
fn first_and_last_follow_the_spec_to_the_millisecond() {
    both_configs(|bound| {
        let f = first_last_fixture(bound);
        let now = now();
        for (rule, at, expected) in [
            ("first purchased in last 30 days", now, &["n2"][..]),
            ("first purchased in last 30 days", now - 1, &["n1", "n2"]),
            ("first purchased in last 30 days", now + 1, &[]),
            ("last purchased in last 30 days", now, &["n1", "n2", "z1"]),
            ("last purchased before 180 days ago", now, &["l2", "l3"]),
            (
                "last purchased before 180 days ago",
                now + 1,
                &["l1", "l2", "l3"],
            ),
            ("last purchased before 180 days ago", now - 1, &["l3", "z1"]),
            (
                "last purchased before 180 days ago",
                now + MINUTE,
                &["l1", "l2"],
            ),
            (
                "last purchased before 180 days ago",
                now + MINUTE - 1,
                &["l1", "l2", "l3"],
            ),
            (
                "first purchased where amount >= 50 in last 30 days",
                now,
                &["n2"],
            ),
            (
                "last purchased where amount >= 50 before 1 year ago",
                now,
                &["l1", "z1"],
            ),
            (
                "last purchased where amount >= 50 before 1 year ago",
                now - 1,
                &["l1", "z1"],
            ),
            (
                "first purchased where amount >= 50 before 1 year ago",
                now,
                &["l1", "z1"],
            ),
            (
                "last purchased ever",
                now,
                &["l1", "l2", "l3", "n1", "n2", "z1"],
            ),
            ("first purchased ever", now - 2 * YEAR - 1, &[]),
            ("first purchased ever", now - 2 * YEAR, &["z1"]),
            (
                "not last purchased before 180 days ago",
                now,
                &["l1", "n1", "n2", "t1", "v1", "z1"],
            ),
            (
                "first viewed product X in last 7 days and not first purchased ever",
                now,
                &["v1"],
            ),
            ("last purchased since 2026-03-14 and tier = Gold", now, &[]),
            (
                "first purchased between 2026-02-13 and 2026-02-13",
                now,
                &["n1", "n2"],
            ),
            (
                "last purchased between 2026-03-14 and 2026-03-14",
                now,
                &["n1"],
            ),
            ("first nobody_did in last 7 days", now, &[]),
        ] {
            f.expect(rule, at, expected);
        }
    });
}

/// `why` shows the first or last event and its time, and when time alone changes the answer.
#[test]
fn why_shows_the_first_or_last_event() {
    let f = first_last_fixture(None);
    let now = now();
    let why =
        f.db.why("l1", "last purchased before 180 days ago", now)
            .unwrap();
    assert!(!why.root.holds, "{why}");
    assert_eq!(
        why.root
            .events
            .iter()
            .map(|e| e.timestamp)
            .collect::<Vec<_>>(),
        [now - 180 * DAY_MS]
    );
    assert!(why.root.reason.contains("outside the window"), "{why}");
    assert_eq!(why.next_change, Some(now + 1), "{why}");
    let why =
        f.db.why("n2", "first purchased in last 30 days", now)
            .unwrap();
    assert!(why.root.holds, "{why}");
    assert_eq!(why.root.events[0].timestamp, now - MONTH + 1);
    assert_eq!(why.next_change, Some(now + 1), "{why}");
    let why =
        f.db.why("t1", "first purchased in last 30 days", now)
            .unwrap();
    assert!(!why.root.holds);
    assert!(why.root.events.is_empty());
    assert!(why.root.reason.contains("no matching event"), "{why}");
}

/// `distinct(product)` with values at the window's edges and a millisecond either side, after
/// *now*, repeated, of every kind (an integer and a float of one value, the text of it, a
/// boolean, a list, a missing property), integers past 2^53 that one float cannot tell apart,
/// and customers without the event.
fn distinct_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    let product = |v: Value| vec![("product", v)];
    // A exactly 90 days ago (outside `in last 90 days`), B a millisecond later (in), C twice,
    // D after *now* (counted only from then on).
    f.track("d3", "purchased", now - 90 * DAY_MS, product(s("A")));
    f.track("d3", "purchased", now - 90 * DAY_MS + 1, product(s("B")));
    f.track("d3", "purchased", now - DAY_MS, product(s("C")));
    f.track("d3", "purchased", now - HOUR, product(s("C")));
    f.track("d3", "purchased", now + MINUTE, product(s("D")));
    // 5 and 5.0 are one value; "5", true and 5.5 three more; a list and no product none.
    for v in [
        Value::Int(5),
        Value::Float(5.0),
        s("5"),
        Value::Bool(true),
        Value::List(vec![s("A")]),
        Value::Float(5.5),
    ] {
        f.track("mix", "purchased", now - DAY_MS, product(v));
    }
    f.track(
        "mix",
        "purchased",
        now - DAY_MS,
        vec![("amount", Value::Int(1))],
    );
    // 2^53 + 1 and 2^53 are two integers; the float 2^53 is the second of them.
    f.track(
        "big",
        "purchased",
        now - DAY_MS,
        product(Value::Int(9_007_199_254_740_993)),
    );
    f.track(
        "big",
        "purchased",
        now - DAY_MS,
        product(Value::Int(9_007_199_254_740_992)),
    );
    f.track(
        "big",
        "purchased",
        now - DAY_MS,
        product(Value::Float(9_007_199_254_740_992.0)),
    );
    // Purchases without a product; a view of one; a profile without events.
    f.track(
        "w1",
        "purchased",
        now - DAY_MS,
        vec![("when", Value::Time(now))],
    );
    f.track(
        "w1",
        "purchased",
        now - HOUR,
        vec![("when", Value::Time(now))],
    );
    f.track("v1", "viewed", now - DAY_MS, product(s("X")));
    f.identify("t1", vec![("tier", s("Gold"))]);
    f
}

#[test]
fn distinct_values_follow_the_spec_to_the_millisecond() {
    both_configs(|bound| {
        let f = distinct_fixture(bound);
        let now = now();
        let nobody: &[&str] = &[];
        for (rule, at, expected) in [
            (
                "purchased distinct(product) >= 3 in last 90 days",
                now,
                &["mix"][..],
            ),
            (
                "purchased distinct(product) >= 3 in last 90 days",
                now - 1,
                &["d3", "mix"],
            ),
            (
                "purchased distinct(product) >= 3 in last 90 days",
                now + 1,
                &["mix"],
            ),
            (
                "purchased distinct(product) >= 3 in last 90 days",
                now + MINUTE,
                &["mix"],
            ),
            (
                "purchased distinct(product) = 4 ever",
                now + MINUTE - 1,
                &["mix"],
            ),
            (
                "purchased distinct(product) = 4 ever",
                now + MINUTE,
                &["d3", "mix"],
            ),
            (
                "purchased distinct(product) = 2 in last 90 days",
                now,
                &["big", "d3"],
            ),
            ("purchased distinct(product) = 3 ever", now, &["d3"]),
            ("purchased distinct(product) = 4 ever", now, &["mix"]),
            ("purchased distinct(product) > 4 ever", now, nobody),
            ("purchased distinct(product) = 0", now, &["t1", "v1", "w1"]),
            (
                "purchased distinct(product) < 2 in last 2 days",
                now,
                &["d3", "t1", "v1", "w1"],
            ),
            (
                "purchased distinct(product) != 0",
                now,
                &["big", "d3", "mix"],
            ),
            (
                "purchased distinct(product) <= 1 in last 2 hours",
                now,
                &["big", "d3", "mix", "t1", "v1", "w1"],
            ),
            ("purchased product C distinct(product) = 1", now, &["d3"]),
            (
                "purchased where amount = 1 distinct(product) = 0",
                now,
                &["big", "d3", "mix", "t1", "v1", "w1"],
            ),
            ("purchased distinct(when) = 1", now, &["w1"]),
            (
                "purchased distinct(nosuch) = 0",
                now,
                &["big", "d3", "mix", "t1", "v1", "w1"],
            ),
            ("purchased distinct(nosuch) >= 1", now, nobody),
            ("viewed distinct(product) = 1 and tier = Gold", now, nobody),
            (
                "not purchased distinct(product) >= 3 ever",
                now,
                &["big", "t1", "v1", "w1"],
            ),
            (
                "did nobody_did distinct(product) < 1",
                now,
                &["big", "d3", "mix", "t1", "v1", "w1"],
            ),
        ] {
            f.expect(rule, at, expected);
        }
    });
}

/// `distinct(p)` over more values than one machine word has bits (the event columns count
/// those as sorted (customer, value) pairs, fewer as bit masks): repeats, 5 and 5.0 as one
/// value, a value exactly at the window's start (outside), each answer given twice so that the
/// second comes from the columns.
#[test]
fn distinct_values_past_64_are_counted_exactly() {
    both_configs(|bound| {
        let now = now();
        let mut f = Fixture::new(bound);
        let product = |v: Value| vec![("product", v)];
        for i in 0..70 {
            for at in [now - (i + 1) * MINUTE, now - 2 * DAY_MS] {
                f.track("many", "purchased", at, product(s(&format!("p{i}"))));
            }
        }
        f.track("many", "purchased", now - HOUR, product(Value::Int(5)));
        f.track("many", "purchased", now - HOUR, product(Value::Float(5.0)));
        for i in 0..65 {
            f.track(
                "edge",
                "purchased",
                now - DAY_MS,
                product(s(&format!("p{i}"))),
            );
        }
        f.track("edge", "purchased", now - 90 * DAY_MS, product(s("p65")));
        for i in 0..3 {
            f.track(
                "few",
                "purchased",
                now - DAY_MS,
                product(s(&format!("p{i}"))),
            );
        }
        for (rule, expected) in [
            (
                "purchased distinct(product) >= 65 in last 90 days",
                &["edge", "many"][..],
            ),
            (
                "purchased distinct(product) = 71 in last 90 days",
                &["many"],
            ),
            (
                "purchased distinct(product) = 65 in last 90 days",
                &["edge"],
            ),
            ("purchased distinct(product) = 66 ever", &["edge"]),
            ("purchased distinct(product) < 65 in last 90 days", &["few"]),
            ("purchased distinct(product) = 3 in last 2 days", &["few"]),
        ] {
            f.expect(rule, now, expected);
        }
    });
}

/// `why` counts the distinct values and names them.
#[test]
fn why_shows_the_distinct_values() {
    let f = distinct_fixture(None);
    let now = now();
    let why =
        f.db.why("mix", "purchased distinct(product) >= 5 ever", now)
            .unwrap();
    assert!(!why.root.holds, "{why}");
    assert!(
        why.root
            .reason
            .contains(r#"4 distinct values; needs >= 5 (values: 5, 5.5, "5", true)"#),
        "{why}"
    );
    let why =
        f.db.why(
            "d3",
            "purchased distinct(product) >= 3 in last 90 days",
            now,
        )
        .unwrap();
    assert!(!why.root.holds, "{why}");
    assert!(why.root.reason.contains(r#"(values: "B", "C")"#), "{why}");
    let why =
        f.db.why("d3", "purchased distinct(product) >= 4 ever", now)
            .unwrap();
    assert!(!why.root.holds, "{why}");
    assert_eq!(why.next_change, Some(now + MINUTE), "{why}");
    let why =
        f.db.why("t1", "purchased distinct(product) = 0", now)
            .unwrap();
    assert!(why.root.holds, "{why}");
    assert!(why.root.reason.contains("0 distinct values"), "{why}");
}

/// Customers whose `bucket(exp)` is 0, 1, 49, 50, 98 and 99 (computed with Python's hashlib:
/// `int.from_bytes(sha256(f"exp:{id}".encode()).digest()[:8], "big") % 100`); c34 and c96 are
/// Gold. Their `bucket(Exp)` is 15, 14, 96, 2, 97, 25 and `bucket(holdout)` 30, 19, 79, 80,
/// 84, 77 (in the order c69, c59, c34, c71, c6, c96).
fn buckets_fixture(bound: Option<usize>) -> Fixture {
    let now = now();
    let mut f = Fixture::new(bound);
    for id in ["c69", "c59", "c71", "c6"] {
        f.track(id, "viewed", now - DAY_MS, vec![("product", s("X"))]);
    }
    f.identify("c34", vec![("tier", s("Gold"))]);
    f.identify("c96", vec![("tier", s("Gold"))]);
    f
}

#[test]
fn buckets_follow_the_spec_at_every_edge() {
    both_configs(|bound| {
        let f = buckets_fixture(bound);
        let all = &["c34", "c59", "c6", "c69", "c71", "c96"][..];
        for (rule, expected) in [
            ("bucket(exp) < 50", &["c69", "c59", "c34"][..]),
            ("bucket(exp) >= 50", &["c71", "c6", "c96"]),
            ("bucket(exp) = 0", &["c69"]),
            ("bucket(exp) <= 0", &["c69"]),
            ("bucket(exp) = 99", &["c96"]),
            ("bucket(exp) > 98", &["c96"]),
            ("bucket(exp) != 99", &["c69", "c59", "c34", "c71", "c6"]),
            // Values outside 0..=99 compare as numbers.
            ("bucket(exp) < 0", &[]),
            ("bucket(exp) >= 100", &[]),
            ("bucket(exp) = -5", &[]),
            ("bucket(exp) < 100", all),
            ("bucket(exp) > -1", all),
            ("bucket(exp) != 100", all),
            ("bucket(exp) <= 9223372036854775807", all),
            ("bucket(exp) between 1 and 98", &["c59", "c34", "c71", "c6"]),
            ("bucket(exp) between 98 and 1", &[]),
            ("bucket(exp) between -10 and 0", &["c69"]),
            ("bucket(exp) in (0, 99, 100)", &["c69", "c96"]),
            ("bucket(exp) not in (0, 99)", &["c59", "c34", "c71", "c6"]),
            ("bucket(exp) < 50 and tier = Gold", &["c34"]),
            ("not bucket(exp) < 50", &["c71", "c6", "c96"]),
            (
                "bucket(exp) < 50 or viewed ever",
                &["c69", "c59", "c34", "c71", "c6"],
            ),
            // Names are case-sensitive, and splits of different names differ.
            ("bucket(Exp) < 20", &["c69", "c59", "c71"]),
            ("bucket(holdout) < 30", &["c59"]),
            ("bucket(holdout) < 31", &["c69", "c59"]),
            // A keyword is a name inside the parentheses.
            ("bucket(set) < 100", all),
        ] {
            // Never moves with time.
            for at in [now(), now() - 1, now() + 365 * DAY_MS] {
                f.expect(rule, at, expected);
            }
        }
    });
}

/// After a merge a customer's bucket is that of the id they were merged into.
#[test]
fn buckets_follow_the_id_a_customer_is_merged_into() {
    let mut f = buckets_fixture(None);
    // merged-2 is in bucket 34 of `exp`, c96 in 99.
    assert!(f.db.alias("c96", "merged-2").unwrap());
    f.ids.insert("merged-2".to_owned());
    f.ids.remove("c96");
    f.expect("bucket(exp) = 34", now(), &["merged-2"]);
    f.expect("bucket(exp) = 99", now(), &[]);
    f.expect(
        "bucket(exp) < 50 and tier = Gold",
        now(),
        &["c34", "merged-2"],
    );
}

/// A split's buckets are kept once a rule has used them: customers who arrive later, merges
/// and deletes after that first answer must show in the next answers as in a fresh evaluation.
#[test]
fn kept_buckets_follow_new_customers_merges_and_deletes() {
    let mut f = buckets_fixture(None);
    f.expect("bucket(exp) < 50", now(), &["c69", "c59", "c34"]);
    f.expect("bucket(exp) >= 50 and tier = Gold", now(), &["c96"]);
    // Many new customers after the split was built (more than one parallel piece's worth of
    // ids would need thousands; a few hundred cross no edge but are all new to the split).
    let new: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
    for id in &new {
        f.identify(id, vec![("tier", s("Gold"))]);
    }
    let low = f.check("bucket(exp) < 50", now());
    assert!(low.iter().filter(|id| id.starts_with('n')).count() > 100);
    f.check("bucket(exp) between 20 and 70 and tier = Gold", now());
    // c96 (99) merged into the new id merged-2 (34); c69 (0) deleted.
    assert!(f.db.alias("c96", "merged-2").unwrap());
    f.ids.insert("merged-2".to_owned());
    f.ids.remove("c96");
    f.db.delete_customer("c69").unwrap();
    f.ids.remove("c69");
    let low = f.check("bucket(exp) < 50", now());
    assert!(low.contains(&"merged-2".to_string()) && low.contains(&"c59".to_string()));
    assert!(!low.contains(&"c69".to_string()));
    let top = f.check("bucket(exp) = 99", now());
    assert!(!top.contains(&"c96".to_string()) && top.iter().all(|id| id.starts_with('n')));
    let bottom = f.check("bucket(exp) = 0", now());
    assert!(bottom.iter().all(|id| id.starts_with('n')));
    f.check("not bucket(exp) < 50 and tier = Gold", now());
    f.check("bucket(holdout) < 30 or bucket(exp) > 90", now());
}

/// `why` names the bucket and the text hashed.
#[test]
fn why_shows_the_bucket() {
    let f = buckets_fixture(None);
    let why = f.db.why("c96", "bucket(exp) >= 50", now()).unwrap();
    assert!(why.root.holds, "{why}");
    assert!(why.root.reason.contains("bucket(exp) is 99"), "{why}");
    assert!(why.root.reason.contains("exp:c96"), "{why}");
    assert_eq!(why.next_change, None, "{why}");
    let why =
        f.db.why("c69", "bucket(exp) between 1 and 98", now())
            .unwrap();
    assert!(!why.root.holds, "{why}");
    assert!(why.root.reason.contains("bucket(exp) is 0"), "{why}");
}

// ---------- Random rules over random data ----------
mod random {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// The *now*s of the random cases: mid-day, exactly midnight, the last millisecond of a day.
    fn nows() -> Vec<i64> {
        vec![
            at("2026-03-15T10:30:00Z"),
            at("2026-03-15T00:00:00Z"),
            at("2026-03-15T23:59:59.999Z"),
        ]
    }

    fn midnight_of(ts: i64) -> i64 {
        ts - ts.rem_euclid(DAY_MS)
    }

    fn date_of(ts: i64) -> String {
        format_rfc3339(ts)[..10].to_owned()
    }

    /// Instants that rules name (dates' midnights, date-times, `N unit ago`) and window edges:
    /// the timestamps planted in the data are these, ±1 ms, and a few anywhere in the year.
    fn edges(now: i64) -> Vec<i64> {
        let today = midnight_of(now);
        let mut points = vec![
            now,
            today,
            today - DAY_MS,
            today + DAY_MS,
            midnight_of(now - 10 * DAY_MS),
            midnight_of(now - 30 * DAY_MS),
            today + 12 * HOUR,
        ];
        for len in [
            MINUTE,
            HOUR,
            DAY_MS,
            2 * DAY_MS,
            WEEK,
            10 * DAY_MS,
            2 * WEEK,
            MONTH,
            YEAR,
        ] {
            points.push(now - len);
        }
        let mut out = Vec::new();
        for p in points {
            out.extend([p - 1, p, p + 1]);
        }
        out
    }

    fn timestamp(now: i64) -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => prop::sample::select(edges(now)),
            1 => (now - 400 * DAY_MS)..(now + 2 * DAY_MS),
        ]
    }

    /// What kind of values a trait or property mostly holds. Every name also gets values of the
    /// other kinds now and then, and rules compare it with literals of every kind.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Text,
        Number,
        Time,
        Bool,
        List,
    }

    /// `visited` is also an event: `visited between A and B` then has the reading the data
    /// gives it (the trait, the event, or an error when a store has both).
    const TRAITS: [(&str, Kind); 8] = [
        ("tier", Kind::Text),
        ("address.city", Kind::Text),
        ("age", Kind::Number),
        ("code", Kind::Number),
        ("signup_at", Kind::Time),
        ("newsletter", Kind::Bool),
        ("tags", Kind::List),
        ("visited", Kind::Time),
    ];
    const PROPS: [(&str, Kind); 5] = [
        ("product", Kind::Text),
        ("category", Kind::Text),
        ("amount", Kind::Number),
        ("when", Kind::Time),
        ("meta.tags", Kind::List),
    ];
    const EVENTS: [&str; 4] = ["viewed", "purchased", "Product Viewed", "visited"];

    /// Stored values of one kind: strings that look like numbers and booleans, numbers equal
    /// across types, date-times at the edges, lists of mixed elements.
    fn values(kind: Kind, now: i64) -> Vec<Value> {
        let today = midnight_of(now);
        match kind {
            Kind::Text => vec![
                s("Gold"),
                s("Silver"),
                s("gold"),
                s("eco"),
                s("eco-friendly"),
                s("X"),
                s("sku-123"),
                s(""),
                s("12345"),
                s("30"),
            ],
            Kind::Number => vec![
                Value::Int(30),
                Value::Int(34),
                Value::Int(25),
                Value::Int(5),
                Value::Int(12345),
                Value::Int(7),
                Value::Int(0),
                Value::Int(50),
                Value::Int(-3),
                Value::Int(100),
                Value::Float(30.0),
                Value::Float(30.5),
                Value::Float(12.5),
                Value::Float(19.9),
                Value::Float(0.25),
                Value::Float(50.0),
                Value::Int(29),
                Value::Int(31),
                Value::Float(29.999),
                Value::Float(-0.5),
                s("30"),
                s("12.50"),
                s("007"),
            ],
            Kind::Time => vec![
                Value::Time(now - 10 * DAY_MS),
                Value::Time(now - 30 * DAY_MS),
                Value::Time(now - DAY_MS),
                Value::Time(today),
                Value::Time(today - DAY_MS),
                Value::Time(today + 12 * HOUR),
                Value::Time(now),
                Value::Time(now + 1),
                Value::Time(now - 1),
                Value::Time(now - 10 * DAY_MS - 1),
                Value::Time(now - 10 * DAY_MS + 1),
                Value::Time(now - 30 * DAY_MS + 1),
                Value::Time(today - 1),
                Value::Time(today + 1),
                s(&date_of(now)),
            ],
            Kind::Bool => vec![Value::Bool(true), Value::Bool(false), s("true")],
            Kind::List => vec![
                Value::List(vec![s("eco"), s("sale")]),
                Value::List(vec![s("eco")]),
                Value::List(vec![Value::Int(5), s("5")]),
                Value::List(vec![Value::Bool(true)]),
                Value::List(vec![]),
                Value::List(vec![s("Gold"), Value::Int(30)]),
                Value::List(vec![Value::Float(12.5), Value::Time(today)]),
                s("eco-friendly"),
            ],
        }
    }

    fn value(kind: Kind, now: i64) -> impl Strategy<Value = Value> {
        let any: Vec<Value> = [Kind::Text, Kind::Number, Kind::Time, Kind::Bool, Kind::List]
            .into_iter()
            .flat_map(|k| values(k, now))
            .collect();
        prop_oneof![
            3 => prop::sample::select(values(kind, now)),
            1 => prop::sample::select(any),
        ]
    }

    /// Literals of one kind, as written in a rule: they name the values of [`values`] in every
    /// spelling (`30`, `30.0`, `"30"`, `007`, dates, date-times, `N unit ago`).
    fn literals(kind: Kind, now: i64, allow_ago: bool) -> Vec<String> {
        let words = |w: &[&str]| w.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        match kind {
            Kind::Text => words(&[
                "Gold",
                "Silver",
                "gold",
                "eco",
                "X",
                "sku-123",
                "\"Gold\"",
                "\"\"",
                "12345",
                "\"12345\"",
                "30",
                "eco-friendly",
            ]),
            Kind::Number => words(&[
                "30",
                "30.0",
                "30.5",
                "34",
                "25",
                "5",
                "12345",
                "007",
                "7",
                "12.50",
                "12.5",
                "0",
                "50",
                "50.0",
                "-3",
                "100",
                "19.90",
                "\"30\"",
                "29.5",
                "-0.5",
                "9007199254740992.0",
            ]),
            Kind::Time => {
                let mut out = vec![
                    date_of(now),
                    date_of(now - DAY_MS),
                    date_of(now - 10 * DAY_MS),
                    date_of(now - 30 * DAY_MS),
                    format_rfc3339(now - 10 * DAY_MS),
                    format_rfc3339(now - 30 * DAY_MS),
                    format_rfc3339(midnight_of(now)),
                    format_rfc3339(now),
                    format!("{:?}", date_of(now)),
                    format!("{:?}", format_rfc3339(now - 10 * DAY_MS)),
                ];
                if allow_ago {
                    out.extend(
                        ["10 days ago", "30 days ago", "0 minutes ago", "1 day ago"]
                            .map(String::from),
                    );
                }
                out
            }
            Kind::Bool => words(&["true", "false", "\"true\""]),
            Kind::List => words(&[
                "eco", "sale", "5", "\"5\"", "true", "Gold", "30", "12.5", "fri",
            ]),
        }
    }

    fn literal(kind: Kind, now: i64, allow_ago: bool) -> impl Strategy<Value = String> {
        let any: Vec<String> = [Kind::Text, Kind::Number, Kind::Time, Kind::Bool, Kind::List]
            .into_iter()
            .flat_map(|k| literals(k, now, allow_ago))
            .collect();
        prop_oneof![
            4 => prop::sample::select(literals(kind, now, allow_ago)),
            1 => prop::sample::select(any),
        ]
    }

    #[derive(Debug, Clone)]
    struct EventData {
        name: &'static str,
        ts: i64,
        props: Vec<(&'static str, Value)>,
    }

    #[derive(Debug, Clone)]
    struct CustomerData {
        traits: Option<Vec<(&'static str, Value)>>,
        events: Vec<EventData>,
        /// A later identify: changed traits, and removed ones (`None`).
        update: Option<Vec<(&'static str, Option<Value>)>>,
    }

    #[derive(Debug, Clone)]
    struct Data {
        now: i64,
        value_bound: Option<usize>,
        customers: Vec<CustomerData>,
        /// The customer to delete after ingesting.
        delete: Option<usize>,
    }

    fn named_value(
        names: &'static [(&'static str, Kind)],
        now: i64,
    ) -> impl Strategy<Value = (&'static str, Value)> {
        prop::sample::select(names.to_vec())
            .prop_flat_map(move |(name, kind)| (Just(name), value(kind, now)))
    }

    fn event(now: i64) -> impl Strategy<Value = EventData> {
        (
            prop::sample::select(EVENTS.to_vec()),
            timestamp(now),
            prop::collection::vec(named_value(&PROPS, now), 0..4),
        )
            .prop_map(|(name, ts, props)| EventData { name, ts, props })
    }

    fn customer(now: i64) -> impl Strategy<Value = CustomerData> {
        (
            prop::option::weighted(0.7, prop::collection::vec(named_value(&TRAITS, now), 0..5)),
            prop::collection::vec(event(now), 0..9),
            prop::option::weighted(
                0.2,
                prop::collection::vec(
                    named_value(&TRAITS, now).prop_flat_map(|(name, v)| {
                        (Just(name), prop::option::weighted(0.6, Just(v)))
                    }),
                    1..3,
                ),
            ),
        )
            .prop_map(|(traits, events, update)| CustomerData {
                traits,
                events,
                update,
            })
    }

    fn data() -> impl Strategy<Value = Data> {
        prop::sample::select(nows()).prop_flat_map(|now| {
            (
                prop::option::of(Just(3usize)),
                prop::collection::vec(customer(now), 2..10),
                prop::option::weighted(0.2, 0usize..10),
            )
                .prop_map(move |(value_bound, customers, delete)| Data {
                    now,
                    value_bound,
                    customers,
                    delete,
                })
        })
    }

    /// `TEST` of a trait or property condition on a value of `kind`.
    fn test(kind: Kind, now: i64) -> impl Strategy<Value = String> {
        let op = prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]);
        let lit = move || literal(kind, now, true);
        prop_oneof![
            4 => (op, lit()).prop_map(|(op, v)| format!("{op} {v}")),
            2 => (any::<bool>(), prop::collection::vec(lit(), 1..4)).prop_map(
                |(negated, values)| {
                    let not = if negated { "not " } else { "" };
                    format!("{not}in ({})", values.join(", "))
                }
            ),
            2 => (lit(), lit()).prop_map(|(a, b)| format!("between {a} and {b}")),
            1 => lit().prop_map(|v| format!("contains {v}")),
            1 => any::<bool>().prop_map(|negated| {
                if negated { "is not set" } else { "is set" }.to_owned()
            }),
        ]
    }

    fn condition(
        names: &'static [(&'static str, Kind)],
        now: i64,
    ) -> impl Strategy<Value = String> {
        prop::sample::select(names.to_vec()).prop_flat_map(move |(name, kind)| {
            test(kind, now).prop_map(move |test| format!("{name} {test}"))
        })
    }

    /// A parenthesized predicate over event properties.
    fn predicate(now: i64) -> impl Strategy<Value = String> {
        condition(&PROPS, now)
            .prop_recursive(2, 4, 2, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 2..3)
                        .prop_map(|items| format!("({})", items.join(" and "))),
                    prop::collection::vec(inner.clone(), 2..3)
                        .prop_map(|items| format!("({})", items.join(" or "))),
                    inner.prop_map(|p| format!("(not {p})")),
                ]
            })
            .prop_map(|p| {
                if p.starts_with('(') {
                    p
                } else {
                    format!("({p})")
                }
            })
    }

    fn frequency() -> impl Strategy<Value = String> {
        let op = prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]);
        let times = |n: u64| if n == 1 { "time" } else { "times" };
        prop_oneof![
            1 => (0u64..4).prop_map(move |n| format!("at least {n} {}", times(n))),
            1 => (0u64..4).prop_map(move |n| format!("at most {n} {}", times(n))),
            1 => (0u64..4).prop_map(move |n| format!("exactly {n} {}", times(n))),
            1 => (op.clone(), 0u64..4).prop_map(|(op, n)| format!("count {op} {n}")),
            2 => (
                prop::sample::select(vec!["sum", "avg", "min", "max"]),
                prop::sample::select(vec!["amount", "amount", "amount", "product", "when"]),
                op.clone(),
                prop::sample::select(vec![
                    "0", "10", "30", "30.5", "50", "60", "100", "12.5", "-3", "40.25", "80.5",
                    "25", "50.0",
                ]),
            )
                .prop_map(|(f, p, op, n)| format!("{f}({p}) {op} {n}")),
            2 => (
                prop::sample::select(PROPS.iter().map(|(name, _)| *name).collect::<Vec<_>>()),
                op,
                0u64..4,
            )
                .prop_map(|(p, op, n)| format!("distinct({p}) {op} {n}")),
        ]
    }

    fn windows(now: i64) -> Vec<String> {
        let today = date_of(now);
        let yesterday = date_of(now - DAY_MS);
        let tomorrow = date_of(now + DAY_MS);
        let d10 = date_of(now - 10 * DAY_MS);
        let d30 = date_of(now - 30 * DAY_MS);
        let dt10 = format_rfc3339(now - 10 * DAY_MS);
        let dt30 = format_rfc3339(now - 30 * DAY_MS);
        let noon = format_rfc3339(midnight_of(now) + 12 * HOUR);
        [
            "ever",
            "in last 1 minute",
            "in last 1 hour",
            "in last 1 day",
            "in the last 2 days",
            "in last 7 days",
            "in last 1 week",
            "in last 2 weeks",
            "in last 10 days",
            "in last 1 month",
            "in last 1 year",
        ]
        .iter()
        .map(|w| w.to_string())
        .chain([
            format!("since {today}"),
            format!("since {yesterday}"),
            format!("since {d10}"),
            "since 10 days ago".to_owned(),
            format!("since {dt10}"),
            format!("before {today}"),
            format!("before {yesterday}"),
            "before 7 days ago".to_owned(),
            format!("before {dt10}"),
            format!("before {noon}"),
            format!("between {yesterday} and {today}"),
            format!("between {d30} and {yesterday}"),
            format!("between {d10} and {d10}"),
            format!("between {dt30} and {dt10}"),
            "between 10 days ago and 1 day ago".to_owned(),
            format!("between {d30} and {dt10}"),
            format!("between {today} and {tomorrow}"),
            format!("between {today} and {noon}"),
        ])
        .collect()
    }

    fn event_condition(now: i64) -> impl Strategy<Value = String> {
        let shorthand =
            prop::sample::select(PROPS[..3].to_vec()).prop_flat_map(move |(name, kind)| {
                literal(kind, now, false).prop_map(move |v| format!("{name} {v}"))
            });
        (
            prop::sample::select(EVENTS[..3].to_vec()),
            prop::option::weighted(0.25, shorthand),
            prop::option::weighted(0.25, predicate(now)),
            prop::option::weighted(0.4, frequency()),
            prop::option::weighted(0.6, prop::sample::select(windows(now))),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(name, shorthand, predicate, frequency, window, did)| {
                // People write `did` where the grammar needs it and now and then where it does
                // not; `viewed between A and B` without it is the event-or-trait form.
                let mut text = if name.contains(' ') {
                    format!("did {name:?}")
                } else if did {
                    format!("did {name}")
                } else {
                    name.to_owned()
                };
                let parts = [
                    shorthand,
                    predicate.map(|p| format!("where {p}")),
                    frequency,
                    window,
                ];
                for part in parts.into_iter().flatten() {
                    text.push(' ');
                    text.push_str(&part);
                }
                text
            })
    }

    /// `first EVENT ...` or `last EVENT ...`: an event condition without a frequency.
    fn first_last(now: i64) -> impl Strategy<Value = String> {
        (prop::bool::ANY, event_condition(now)).prop_filter_map(
            "no frequency on first and last",
            |(last, cond)| {
                let freq = [
                    " at ",
                    " exactly ",
                    " count ",
                    " sum(",
                    " avg(",
                    " min(",
                    " max(",
                    " distinct(",
                ];
                if freq.iter().any(|f| cond.contains(f)) {
                    return None;
                }
                Some(format!("{} {cond}", if last { "last" } else { "first" }))
            },
        )
    }

    /// `bucket(NAME) TEST` with values at and around the edges 0 and 99, and outside them.
    fn bucket() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec!["exp", "holdout", "Exp"]);
        let n = prop_oneof![
            prop::sample::select(vec![-1i64, 0, 1, 49, 50, 98, 99, 100]),
            -5i64..105,
        ];
        let test = prop_oneof![
            (
                prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]),
                n.clone()
            )
                .prop_map(|(op, v)| format!("{op} {v}")),
            (n.clone(), n.clone()).prop_map(|(a, b)| format!("between {a} and {b}")),
            (prop::bool::ANY, prop::collection::vec(n, 1..4)).prop_map(|(not, vs)| {
                let list = vs.iter().map(i64::to_string).collect::<Vec<_>>();
                let not = if not { "not " } else { "" };
                format!("{not}in ({})", list.join(", "))
            }),
        ];
        (name, test).prop_map(|(name, test)| format!("bucket({name}) {test}"))
    }

    fn rule(now: i64) -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            3 => condition(&TRAITS, now),
            6 => event_condition(now),
            2 => first_last(now),
            2 => bucket(),
            1 => Just("everyone".to_owned()),
        ];
        leaf.prop_recursive(3, 6, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4)
                    .prop_map(|items| format!("({})", items.join(" and "))),
                prop::collection::vec(inner.clone(), 2..4)
                    .prop_map(|items| format!("({})", items.join(" or "))),
                inner.prop_map(|e| format!("not {e}")),
            ]
        })
    }

    fn case() -> impl Strategy<Value = (Data, Vec<String>)> {
        data().prop_flat_map(|data| {
            let rules = prop::collection::vec(rule(data.now), 1..=RULES_PER_CASE);
            (Just(data), rules)
        })
    }

    /// The most rules tried on one random data set: building the database costs more than a
    /// rule. (A range, so that shrinking can drop the rules that pass.)
    const RULES_PER_CASE: usize = 12;

    /// The trait updates that come after the events (`CustomerData::update`), as identifies.
    fn ingest_updates(f: &mut Fixture, data: &Data) {
        let updates: Vec<Message> = data
            .customers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let traits = c
                    .update
                    .as_ref()?
                    .iter()
                    .map(|(k, v)| (k.to_string().into(), v.clone()))
                    .collect();
                Some(Message::identify(format!("c{i}"), traits))
            })
            .collect();
        if !updates.is_empty() {
            f.ingest(updates);
        }
    }

    fn build(data: &Data) -> Fixture {
        let mut f = Fixture::new(data.value_bound);
        let mut messages = Vec::new();
        for (i, c) in data.customers.iter().enumerate() {
            let id = format!("c{i}");
            if let Some(traits) = &c.traits {
                messages.push(Message::identify(
                    id.clone(),
                    traits
                        .iter()
                        .map(|(k, v)| (k.to_string().into(), Some(v.clone())))
                        .collect(),
                ));
            }
            for e in &c.events {
                messages.push(Message::track(
                    id.clone(),
                    e.name,
                    e.props
                        .iter()
                        .map(|(k, v)| (k.to_string().into(), v.clone()))
                        .collect(),
                    Some(e.ts),
                ));
            }
        }
        if !messages.is_empty() {
            f.ingest(messages);
        }
        ingest_updates(&mut f, data);
        if let Some(i) = data.delete {
            let id = format!("c{i}");
            if f.db.customer(&id).unwrap().is_some() {
                f.db.delete_customer(&id).unwrap();
            }
        }
        f
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            max_shrink_iters: 10_000,
            max_shrink_time: 20_000,
            ..ProptestConfig::default()
        })]

        #[test]
        fn engine_equals_reference_on_random_rules((data, rules) in case()) {
            let f = build(&data);
            let customers = f.customers();
            for rule in &rules {
                if let Err(message) = compare(&f.db, &customers, rule, data.now) {
                    let stored: Vec<String> = customers.iter().map(describe).collect();
                    return Err(TestCaseError::fail(format!(
                        "{message}\n  every customer, as stored:\n    {}",
                        stored.join("\n    ")
                    )));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: (cases() / 4).max(1),
            max_shrink_iters: 10_000,
            max_shrink_time: 20_000,
            ..ProptestConfig::default()
        })]

        /// The same as data arrives: the first half of every customer's events, the rules
        /// answered once (so that derived data, the runs of days and the text columns, is built
        /// from it), then the other half and the later identifies; the answers must follow the
        /// new data.
        #[test]
        fn engine_equals_reference_as_data_arrives((data, rules) in case()) {
            let mut early = data.clone();
            for c in &mut early.customers {
                c.events.truncate(c.events.len() / 2);
                c.update = None;
            }
            let mut f = build(&early);
            for rule in &rules {
                // Errors (an unknown audience, a rule two readings make ambiguous) are compared
                // below; here only the derived data matters.
                let _ = f.db.query(rule, data.now);
            }
            let rest: Vec<Message> = data
                .customers
                .iter()
                .enumerate()
                .flat_map(|(i, c)| {
                    c.events[c.events.len() / 2..].iter().map(move |e| {
                        Message::track(
                            format!("c{i}"),
                            e.name,
                            e.props.iter().map(|(k, v)| ((*k).into(), v.clone())).collect(),
                            Some(e.ts),
                        )
                    })
                })
                .collect();
            if !rest.is_empty() {
                f.ingest(rest);
            }
            ingest_updates(&mut f, &data);
            let customers = f.customers();
            for rule in &rules {
                if let Err(message) = compare(&f.db, &customers, rule, data.now) {
                    let stored: Vec<String> = customers.iter().map(describe).collect();
                    return Err(TestCaseError::fail(format!(
                        "{message}\n  every customer, as stored:\n    {}",
                        stored.join("\n    ")
                    )));
                }
            }
        }
    }
    /// The rules of the random cases on the SQL engines (issue 24): cases drawn from the same
    /// strategies with a fixed seed, exported as Parquet, and every rule's SQL run on DuckDB and
    /// ClickHouse's engine (chDB): the members must be the engine's, and a rule the engine
    /// refuses must have no SQL either. Skipped, with a line saying so, without the engines.
    #[test]
    fn random_rules_have_the_engine_s_members_on_sql_engines() {
        use audiencedb::tables::{export_tables, TablesFormat};
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = case();
        let mut compared = 0;
        for _ in 0..6 {
            let (data, rules) = strategy.new_tree(&mut runner).unwrap().current();
            let f = build(&data);
            let expected: Vec<Option<Vec<String>>> = rules
                .iter()
                .map(|r| {
                    let audience = f.db.query(r, data.now).ok()?;
                    let mut ids = f.db.member_ids(&audience).unwrap();
                    ids.sort();
                    Some(ids)
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            export_tables(&f.db, dir.path(), data.now, TablesFormat::Parquet).unwrap();
            for (engine, module, dialect) in engines::ENGINES {
                if !engines::has_module(module) {
                    eprintln!(
                        "skipped {engine}: no `{module}` in {}",
                        engines::python().display()
                    );
                    continue;
                }
                let mut asked = Vec::new();
                let mut queries = Vec::new();
                for (rule, want) in rules.iter().zip(&expected) {
                    let sql = f.db.sql(rule, dialect, data.now);
                    match want {
                        Some(want) => {
                            queries.push(sql.unwrap_or_else(|e| panic!("{rule}: {e}")));
                            asked.push((rule, want));
                        }
                        None => assert!(sql.is_err(), "{rule}: SQL for a rule the engine refuses"),
                    }
                }
                let answers = engines::run_on(engine, dir.path(), &queries);
                for ((rule, want), got) in asked.into_iter().zip(answers) {
                    let mut got =
                        got.unwrap_or_else(|e| panic!("{engine} failed on {rule:?}: {e}"));
                    got.sort();
                    assert_eq!(&got, want, "{engine}: {rule}");
                    compared += 1;
                }
            }
        }
        eprintln!("{compared} random rules compared on the SQL engines");
    }
}

// ---------- Random sequences over random data ----------
mod random_sequences {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    const NAMES: [&str; 3] = ["added_to_cart", "purchased", "viewed"];

    #[derive(Debug, Clone)]
    struct Ev {
        name: &'static str,
        ts: i64,
        product: Option<Value>,
        amount: Option<i64>,
    }

    /// Instants a few milliseconds either side of the lengths the rules use, after a few starts
    /// around *now* and the window's edges: B at tA, tA + T ± 1 ms, *now* at tA + T.
    fn timestamp(now: i64) -> impl Strategy<Value = i64> {
        let starts = vec![
            now,
            now - HOUR,
            now - MINUTE,
            now - DAY_MS,
            now - 2 * DAY_MS,
            now - WEEK,
            now - WEEK + 1,
            now - WEEK - HOUR,
        ];
        let offsets = vec![
            -HOUR - 1,
            -HOUR,
            -1,
            0,
            0,
            1,
            MINUTE,
            MINUTE + 1,
            HOUR - 1,
            HOUR,
            HOUR + 1,
            61 * MINUTE,
            DAY_MS,
            DAY_MS + 1,
        ];
        prop_oneof![
            6 => (prop::sample::select(starts), prop::sample::select(offsets))
                .prop_map(|(s, o)| s + o),
            1 => (now - 10 * DAY_MS)..(now + DAY_MS),
        ]
    }

    fn event(now: i64) -> impl Strategy<Value = Ev> {
        let product = prop::option::weighted(
            0.8,
            prop::sample::select(vec![s("X"), s("Y"), Value::Int(1), Value::Float(1.0)]),
        );
        (
            prop::sample::select(NAMES.to_vec()),
            timestamp(now),
            product,
            prop::option::of(prop::sample::select(vec![10i64, 60])),
        )
            .prop_map(|(name, ts, product, amount)| Ev {
                name,
                ts,
                product,
                amount,
            })
    }

    fn step() -> impl Strategy<Value = String> {
        (
            prop::sample::select(NAMES.to_vec()),
            prop::option::weighted(0.2, Just("product X")),
            prop::option::weighted(0.2, Just("where amount >= 50")),
        )
            .prop_map(|(name, shorthand, filter)| {
                let mut text = name.to_owned();
                for part in [shorthand, filter].into_iter().flatten() {
                    text.push(' ');
                    text.push_str(part);
                }
                text
            })
    }

    fn sequence(now: i64) -> impl Strategy<Value = String> {
        let today = format_rfc3339(now - 2 * DAY_MS)[..10].to_owned();
        let windows = vec![
            String::new(),
            " in last 7 days".to_owned(),
            " in last 1 day".to_owned(),
            " ever".to_owned(),
            format!(" since {today}"),
            " before 1 hour ago".to_owned(),
            format!(" between {today} and {}", format_rfc3339(now - HOUR)),
        ];
        (
            prop::collection::vec(step(), 2..4),
            any::<bool>(),
            prop::bool::weighted(0.3),
            prop::sample::select(vec!["1 minute", "1 hour", "61 minutes", "1 day"]),
            prop::sample::select(windows),
        )
            .prop_map(|(mut steps, negated, same, within, window)| {
                if negated {
                    steps.truncate(2);
                    steps[1] = format!("not {}", steps[1]);
                }
                let same = if same { " with same product" } else { "" };
                format!("{}{same} within {within}{window}", steps.join(" then "))
            })
    }

    /// `first`/`last` over the same clustered instants: the windows' edges at 1 hour, 1 day
    /// and 7 days, and after *now*.
    fn first_last(now: i64) -> impl Strategy<Value = String> {
        let day = format_rfc3339(now - 2 * DAY_MS)[..10].to_owned();
        let windows = vec![
            String::new(),
            " in last 7 days".to_owned(),
            " in last 1 day".to_owned(),
            " in last 1 hour".to_owned(),
            " ever".to_owned(),
            format!(" since {day}"),
            " before 1 hour ago".to_owned(),
            " before 7 days ago".to_owned(),
            format!(" before {day}"),
            format!(" between {day} and {}", format_rfc3339(now - HOUR)),
            " between 7 days ago and 1 day ago".to_owned(),
        ];
        (
            prop::sample::select(vec!["first", "last"]),
            step(),
            prop::sample::select(windows),
        )
            .prop_map(|(which, step, window)| format!("{which} {step}{window}"))
    }

    fn rule(now: i64) -> impl Strategy<Value = String> {
        prop_oneof![
            2 => first_last(now),
            1 => first_last(now).prop_map(|s| format!("not {s}")),
            1 => (first_last(now), first_last(now)).prop_map(|(a, b)| format!("{a} and {b}")),
            4 => sequence(now),
            1 => sequence(now).prop_map(|s| format!("not {s}")),
            1 => sequence(now).prop_map(|s| format!("{s} and purchased in last 1 day")),
            1 => (sequence(now), sequence(now)).prop_map(|(a, b)| format!("{a} or {b}")),
        ]
    }

    fn case() -> impl Strategy<Value = (i64, Option<usize>, Vec<Vec<Ev>>, Vec<String>)> {
        prop::sample::select(vec![
            at("2026-03-15T10:30:00Z"),
            at("2026-03-15T00:00:00Z"),
            at("2026-03-15T23:59:59.999Z"),
        ])
        .prop_flat_map(|now| {
            (
                Just(now),
                prop::option::of(Just(3usize)),
                prop::collection::vec(prop::collection::vec(event(now), 0..10), 2..8),
                prop::collection::vec(rule(now), 1..8),
            )
        })
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(500)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            max_shrink_iters: 10_000,
            max_shrink_time: 20_000,
            ..ProptestConfig::default()
        })]

        /// Random sequences (chains, `then not`, `with same`, every window form, under `not`,
        /// `and`, `or`) and `first`/`last` conditions over events clustered a millisecond either side of tA + T, at and after
        /// *now*, at three *now*s and at *now* ± T.
        #[test]
        fn sequences_equal_the_reference((now, bound, customers, rules) in case()) {
            // From each rule's second answer on, sequences come from the event columns.
            audiencedb::testing::journeys_by_columns_from(0);
            let mut f = Fixture::new(bound);
            let mut messages = Vec::new();
            for (i, events) in customers.iter().enumerate() {
                for e in events {
                    let mut props = Vec::new();
                    if let Some(p) = &e.product {
                        props.push(("product".into(), p.clone()));
                    }
                    if let Some(a) = e.amount {
                        props.push(("amount".into(), Value::Int(a)));
                    }
                    messages.push(Message::track(format!("c{i}"), e.name, props, Some(e.ts)));
                }
            }
            if !messages.is_empty() {
                f.ingest(messages);
            }
            let stored = f.customers();
            for rule in &rules {
                for at in [now, now - HOUR, now + HOUR, now + 1] {
                    if let Err(message) = compare(&f.db, &stored, rule, at) {
                        let all: Vec<String> = stored.iter().map(describe).collect();
                        return Err(TestCaseError::fail(format!(
                            "{message}\n  every customer, as stored:\n    {}",
                            all.join("\n    ")
                        )));
                    }
                }
            }
        }
    }
}
