//! Computed traits (issue 23) against the reference evaluator (`tests/reference/mod.rs`,
//! `evaluate_computed`: each customer's value derived by plain code, then the rule evaluated
//! as over stored traits):
//! - hand-built customers with events at every window's edge and ±1 ms, answered at *nows*
//!   that move those events across the edges, every comparison a stored trait allows, each
//!   reducer, mixed types; and the values `customer show` reports;
//! - random data and random rules over every reducer (proptest);
//! - definitions: the errors, `identify` refused, persistence across reopen, `verify`;
//! - saved audiences reading a computed trait follow time to the millisecond, and refuse the
//!   drop of the trait they read;
//! - the SQL of every test rewritten as event conditions gives the same members on DuckDB and
//!   chDB (each skipped with a line when not installed, as in `tests/sql.rs`).

mod engines;
mod reference;

use std::collections::BTreeSet;

use audiencedb::ingest::Message;
use audiencedb::model::time::{format_rfc3339, parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::rules::Computed;
use audiencedb::{Clock, Config, Customer, Db, Error};
use proptest::prelude::*;

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

/// 2026-03-15T10:30:00Z.
fn now() -> i64 {
    at("2026-03-15T10:30:00Z")
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

/// The computed traits of the hand-built tests.
const TRAITS: &[(&str, &str)] = &[
    ("orders_90d", "purchased count in last 90 days"),
    ("spent_365d", "purchased sum(amount) in last 365 days"),
    ("aov", "purchased avg(amount) ever"),
    (
        "favourite_category",
        "purchased top(category) in last 365 days",
    ),
    ("last_order_at", "purchased last time"),
    ("first_order_at", "purchased first time in last 365 days"),
    ("recent_last", "purchased last time in last 30 days"),
    ("distinct_products", "purchased distinct(product) ever"),
    (
        "big_orders_30d",
        "purchased where amount >= 100 count in last 30 days",
    ),
    ("min_amount_90d", "purchased min(amount) in last 90 days"),
    ("max_amount", "purchased max(amount) before 10 days ago"),
    ("shoe_views", "viewed category shoes count since 2026-03-01"),
    (
        "top_product",
        "viewed top(product) between 2026-01-01 and 2026-03-14",
    ),
];

struct Fixture {
    db: Db,
    ids: BTreeSet<String>,
    traits: Vec<(String, Computed)>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_with(Config::new(dir.path().join("db"))).unwrap();
        Fixture {
            db,
            ids: BTreeSet::new(),
            traits: Vec::new(),
            dir,
        }
    }

    fn define(&mut self, name: &str, expression: &str) {
        let info = self.db.define_trait(name, expression).unwrap();
        assert_eq!(info.name, name);
        self.traits.push((
            name.to_owned(),
            audiencedb::rules::parse_computed(expression).unwrap(),
        ));
    }

    fn ingest(&mut self, messages: Vec<Message>) {
        self.ids
            .extend(messages.iter().map(|m| m.customer.to_string()));
        self.db.ingest(messages).unwrap();
    }

    fn track(&mut self, id: &str, event: &str, ts: i64, props: Vec<(&str, Value)>) {
        let props = props.into_iter().map(|(k, v)| (k.into(), v)).collect();
        self.ingest(vec![Message::track(id, event, props, Some(ts))]);
    }

    fn identify(&mut self, id: &str, traits: Vec<(&str, Value)>) {
        let traits = traits
            .into_iter()
            .map(|(k, v)| (k.into(), Some(v)))
            .collect();
        self.ingest(vec![Message::identify(id, traits)]);
    }

    fn customers(&self) -> Vec<Customer> {
        self.ids
            .iter()
            .filter_map(|id| self.db.customer(id).unwrap())
            .collect()
    }

    /// Engine and reference agree on `rule` at `now`; returns the members.
    fn check(&self, customers: &[Customer], rule: &str, now: i64) -> Vec<String> {
        match compare(&self.db, customers, &self.traits, rule, now) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }
}

fn compare(
    db: &Db,
    customers: &[Customer],
    traits: &[(String, Computed)],
    rule: &str,
    now: i64,
) -> Result<Vec<String>, String> {
    let parsed = audiencedb::rules::parse(rule).map_err(|e| format!("{rule:?}: {e}"))?;
    let defs: Vec<(&str, &Computed)> = traits.iter().map(|(n, c)| (n.as_str(), c)).collect();
    let expected = reference::evaluate_computed(&parsed, now, customers, &defs)?;
    let audience = db.query(rule, now).map_err(|e| format!("{rule:?}: {e}"))?;
    let got = db.member_ids(&audience).unwrap();
    if got == expected {
        return Ok(got);
    }
    let mut message = format!(
        "engine and reference differ\n  rule: {rule}\n  now = {now} ({})\n  engine: {got:?}\n  reference: {expected:?}",
        format_rfc3339(now)
    );
    for c in customers {
        if got.contains(&c.id) != expected.contains(&c.id) {
            let values: Vec<String> = defs
                .iter()
                .map(|(n, e)| format!("{n}={:?}", reference::computed_value(e, &c.events, now)))
                .collect();
            message.push_str(&format!(
                "\n    {}: {} events; reference values {}",
                c.id,
                c.events.len(),
                values.join(", ")
            ));
            for e in &c.events {
                message.push_str(&format!(
                    "\n      {} {} {:?}",
                    format_rfc3339(e.timestamp),
                    e.name,
                    e.properties
                ));
            }
        }
    }
    Err(message)
}

/// The hand-built shop: purchases planted at the windows' edges.
fn shop() -> Fixture {
    let mut f = Fixture::new();
    let n = now();
    let p = |amount: Value, category: &str, product: &str| {
        vec![
            ("amount", amount),
            ("category", s(category)),
            ("product", s(product)),
        ]
    };
    // a: three purchases, one exactly 90 days ago (outside `last 90 days`), one a millisecond
    // later (inside).
    f.track(
        "a",
        "purchased",
        n - 90 * DAY_MS,
        p(Value::Int(100), "shoes", "p1"),
    );
    f.track(
        "a",
        "purchased",
        n - 90 * DAY_MS + 1,
        p(Value::Int(60), "hats", "p2"),
    );
    f.track(
        "a",
        "purchased",
        n - 5 * DAY_MS,
        p(Value::Float(99.5), "shoes", "p1"),
    );
    // b: a tie of categories (hats wins: smaller), a text amount, one at 365 days.
    f.track(
        "b",
        "purchased",
        n - 365 * DAY_MS,
        p(Value::Int(500), "bags", "p3"),
    );
    f.track(
        "b",
        "purchased",
        n - 365 * DAY_MS + 1,
        p(s("12.50"), "shoes", "p4"),
    );
    f.track(
        "b",
        "purchased",
        n - 30 * DAY_MS,
        p(Value::Int(120), "hats", "p5"),
    );
    f.track(
        "b",
        "purchased",
        n - 30 * DAY_MS + 1,
        p(Value::Int(20), "shoes", "p5"),
    );
    f.track(
        "b",
        "purchased",
        n - 29 * DAY_MS,
        p(Value::Int(20), "hats", "p5"),
    );
    // c: only text amounts (no avg), numbers as categories.
    f.track("c", "purchased", n - 10 * DAY_MS, p(s("free"), "7", "p6"));
    f.track(
        "c",
        "purchased",
        n - 10 * DAY_MS - 1,
        p(s("free"), "7", "p6"),
    );
    // d: a purchase in the future (counts in no window until then), views.
    f.track("d", "purchased", n + 1, p(Value::Int(80), "shoes", "p7"));
    f.track(
        "d",
        "viewed",
        at("2026-03-01T00:00:00Z"),
        vec![("category", s("shoes")), ("product", Value::Int(3))],
    );
    f.track(
        "d",
        "viewed",
        at("2026-02-28T23:59:59.999Z"),
        vec![("category", s("shoes")), ("product", Value::Float(3.0))],
    );
    f.track(
        "d",
        "viewed",
        at("2026-03-14T23:59:59.999Z"),
        vec![("category", s("hats")), ("product", s("3"))],
    );
    f.track(
        "d",
        "viewed",
        at("2026-03-15T00:00:00Z"),
        vec![("product", s("9"))],
    );
    // e: a profile only; g: many orders long ago.
    f.identify("e", vec![("tier", s("Gold"))]);
    for i in 0..5 {
        f.track(
            "g",
            "purchased",
            n - 400 * DAY_MS - i * 3_600_000,
            p(Value::Int(90 + i), "kids", "p8"),
        );
    }
    for (name, expr) in TRAITS {
        f.define(name, expr);
    }
    f
}

/// The rules of the hand-built test: every comparison of every kind of computed value.
const RULES: &[&str] = &[
    "orders_90d >= 1",
    "orders_90d >= 2",
    "orders_90d < 3",
    "orders_90d = 0",
    "orders_90d != 0",
    "orders_90d between 1 and 2",
    "orders_90d in (0, 2)",
    "orders_90d not in (1)",
    "orders_90d > 1.5",
    "orders_90d <= 1.5",
    "orders_90d = 2.0",
    "orders_90d = 2.5",
    "orders_90d >= -1",
    "orders_90d < -1",
    "orders_90d = \"2\"",
    "orders_90d is set",
    "orders_90d is not set",
    "not orders_90d >= 2",
    "spent_365d > 100",
    "spent_365d = 0",
    "spent_365d < 50",
    "spent_365d between 100 and 200",
    "spent_365d is not set",
    "aov > 80",
    "aov <= 80",
    "aov is not set",
    "aov is set",
    "aov != 50",
    "aov not in (50, 86.5)",
    "aov = 86.5",
    "aov = \"86.5\"",
    "aov > 2026-01-01",
    "favourite_category = shoes",
    "favourite_category = hats",
    "favourite_category in (shoes, \"7\")",
    "favourite_category != shoes",
    "favourite_category not in (hats)",
    "favourite_category is not set",
    "favourite_category contains sho",
    "favourite_category = 7",
    "favourite_category > 5",
    "last_order_at < 90 days ago",
    "last_order_at <= 90 days ago",
    "last_order_at >= 30 days ago",
    "last_order_at > 30 days ago",
    "last_order_at = 2026-03-05T10:30:00Z",
    "last_order_at != 2026-03-05T10:30:00Z",
    "last_order_at between 2026-01-01 and 2026-03-10",
    "last_order_at between 40 days ago and 20 days ago",
    "last_order_at > \"2026-03-01T00:00:00Z\"",
    "last_order_at > 5",
    "last_order_at in (2026-03-05T10:30:00Z, 2026-03-05T10:29:59.999Z)",
    "last_order_at is set",
    "last_order_at is not set",
    "first_order_at < 300 days ago",
    "first_order_at >= 2025-03-15T10:30:00.001Z",
    "first_order_at > 2025-03-15T10:30:00.001Z",
    "first_order_at = 2025-03-15T10:30:00.001Z",
    "first_order_at <= 30 days ago",
    "first_order_at != 2025-03-15T10:30:00.001Z",
    "first_order_at not in (2025-03-15T10:30:00.001Z)",
    "recent_last >= 29 days ago",
    "recent_last < 29 days ago",
    "distinct_products >= 2",
    "distinct_products = 1",
    "distinct_products < 1",
    "big_orders_30d >= 1",
    "min_amount_90d < 50",
    "min_amount_90d >= 60",
    "max_amount >= 100",
    "max_amount is not set",
    "shoe_views = 1",
    "shoe_views = 0",
    "top_product = 3",
    "top_product = \"3\"",
    "top_product is set",
    "aov > 80 and favourite_category = shoes and last_order_at < 90 days ago",
    "aov > 80 and orders_90d >= 3",
    "orders_90d >= 1 or tier = Gold",
];

#[test]
fn every_comparison_at_the_edges_against_the_reference() {
    let f = shop();
    let customers = f.customers();
    let n = now();
    let mut nows = vec![n, n - 1, n + 1];
    // Each event's times, moved across the lengths the traits and rules use.
    let lengths = [10, 20, 29, 30, 40, 90, 300, 365].map(|d| d * DAY_MS);
    let mut times: Vec<i64> = customers
        .iter()
        .flat_map(|c| c.events.iter().map(|e| e.timestamp))
        .collect();
    times.sort_unstable();
    times.dedup();
    for &t in &times {
        for len in lengths {
            for x in [t + len - 1, t + len, t + len + 1] {
                if (n - 5 * DAY_MS..n + 40 * DAY_MS).contains(&x) {
                    nows.push(x);
                }
            }
        }
    }
    nows.sort_unstable();
    nows.dedup();
    // The values customers carry (`Customer::computed`) are the engine's: the reference
    // derives its own from the events.
    for &now in &nows {
        for rule in RULES {
            f.check(&customers, rule, now);
        }
    }
}

#[test]
fn the_sql_of_rewritten_tests_gives_the_same_members() {
    let f = shop();
    let n = now();
    // Every rule has SQL except those with a test derived per customer.
    let derived = |rule: &str| {
        [
            "favourite_category",
            "top_product",
            "aov not in",
            "aov is",
            "max_amount is",
        ]
        .iter()
        .any(|d| rule.contains(d))
    };
    let mut rules = Vec::new();
    for rule in RULES {
        match f.db.sql(rule, audiencedb::query::sql::Dialect::DuckDb, n) {
            Ok(_) => rules.push(*rule),
            Err(e) => {
                assert!(derived(rule), "{rule}: {e}");
                assert!(e.to_string().contains("has no SQL yet"), "{rule}: {e}");
            }
        }
    }
    assert!(rules.len() > 50, "{}", rules.len());
    let c = f.customers();
    let expected: Vec<Vec<String>> = rules.iter().map(|r| f.check(&c, r, n)).collect();
    let dir = tempfile::tempdir().unwrap();
    audiencedb::tables::export_tables(
        &f.db,
        dir.path(),
        n,
        audiencedb::tables::TablesFormat::Ndjson,
    )
    .unwrap();
    for (engine, module, dialect) in engines::ENGINES {
        if !engines::has_module(module) {
            eprintln!(
                "skipped {engine}: no `{module}` in {}",
                engines::python().display()
            );
            continue;
        }
        let queries: Vec<String> = rules
            .iter()
            .map(|r| f.db.sql(r, dialect, n).unwrap())
            .collect();
        for ((rule, want), got) in
            rules
                .iter()
                .zip(&expected)
                .zip(engines::run_on(engine, dir.path(), &queries))
        {
            let mut got = got.unwrap_or_else(|e| panic!("{engine} failed on {rule:?}: {e}"));
            got.sort();
            assert_eq!(&got, want, "{engine}: {rule}");
        }
    }
}

#[test]
fn hand_computed_answers() {
    let f = shop();
    let c = f.customers();
    let n = now();
    let expect = |rule: &str, want: &[&str]| {
        assert_eq!(f.check(&c, rule, n), want, "{rule}");
    };
    expect("orders_90d >= 2", &["a", "b", "c"]);
    expect("orders_90d = 0", &["d", "e", "g"]);
    expect("aov > 80", &["a", "b", "g"]);
    // b's categories tie (hats twice, shoes twice): the smaller wins.
    expect("favourite_category = hats", &["b"]);
    expect("favourite_category = shoes", &["a"]);
    expect("favourite_category = 7", &["c"]);
    expect("aov is not set", &["c", "d", "e"]);
    expect("last_order_at < 90 days ago", &["g"]);
    expect("spent_365d = 0", &["c", "d", "e", "g"]);
    // A millisecond later a's order of 90 days ago + 1 ms has left the window.
    assert_eq!(f.check(&c, "orders_90d >= 2", n + 1), vec!["b", "c"]);
    // A millisecond earlier a's order of exactly 90 days ago was still inside.
    assert_eq!(f.check(&c, "orders_90d >= 3", n - 1), vec!["a", "b"]);
    assert_eq!(f.check(&c, "orders_90d >= 3", n), vec!["b"]);
}

#[test]
fn customer_show_gives_the_reference_values() {
    let f = shop();
    let n = now();
    // The values are the clock's: a database whose clock is fixed at *now*.
    let db = Db::open_with(Config {
        clock: Clock::manual(n),
        ..Config::new(f.dir.path().join("db2"))
    })
    .unwrap();
    let mut ids = BTreeSet::new();
    for c in f.customers() {
        ids.insert(c.id.clone());
        let mut messages = Vec::new();
        if let Some(traits) = &c.traits {
            messages.push(Message::identify(
                &c.id,
                traits
                    .iter()
                    .map(|(k, v)| (k.as_str().into(), Some(v.clone())))
                    .collect(),
            ));
        }
        for e in &c.events {
            messages.push(Message::track(
                &c.id,
                &e.name,
                e.properties
                    .iter()
                    .map(|(k, v)| (k.as_str().into(), v.clone()))
                    .collect(),
                Some(e.timestamp),
            ));
        }
        db.ingest(messages).unwrap();
    }
    for (name, expr) in TRAITS {
        db.define_trait(name, expr).unwrap();
    }
    for id in &ids {
        let c = db.customer(id).unwrap().unwrap();
        let names: Vec<&str> = c.computed.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted: Vec<&str> = TRAITS.iter().map(|(n, _)| *n).collect();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for (name, got) in &c.computed {
            let expr = TRAITS.iter().find(|(n, _)| n == name).unwrap().1;
            let parsed = audiencedb::rules::parse_computed(expr).unwrap();
            let want = reference::computed_value(&parsed, &c.events, n);
            assert_eq!(got, &want, "{id}: {name}");
        }
        let json = c.to_json();
        assert!(json["computed_traits"].is_object(), "{json}");
    }
    let json = db.customer("b").unwrap().unwrap().to_json();
    assert_eq!(json["computed_traits"]["favourite_category"], "hats");
    assert_eq!(json["computed_traits"]["orders_90d"], 3);
    assert!(json["computed_traits"]["aov"].is_number());
    assert!(db.customer("e").unwrap().unwrap().to_json()["computed_traits"]["aov"].is_null());
}

#[test]
fn definitions_are_checked_refused_and_kept() {
    let mut f = Fixture::new();
    f.identify("x", vec![("tier", s("Gold"))]);
    f.track(
        "x",
        "purchased",
        now() - DAY_MS,
        vec![("amount", Value::Int(5)), ("category", s("shoes"))],
    );
    f.define("orders", "purchased count in last 90 days");
    let err = |name: &str, expr: &str| -> String {
        let e = f.db.define_trait(name, expr).unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput(_) | Error::Rule(_)),
            "{name} {expr}: {e:?}"
        );
        e.to_string()
    };
    assert!(err("orders", "purchased count").contains("already defined"));
    assert!(err("tier", "purchased count").contains("stored trait"));
    assert!(err("purchased", "purchased count").contains("event name"));
    assert!(err("1x", "purchased count").contains("computed trait name"));
    assert!(err("since", "purchased count").contains("computed trait name"));
    assert!(err("x", "purchased sum(category)").contains("needs a number"));
    assert!(err("x", "purchased").contains("reducer"));
    assert!(err("x", "purchased count in lst 3 days").contains("did you mean"));
    assert!(err("x", "purchased count ever extra").contains("end of the expression"));
    assert!(err("x", "purchased count evr").contains("did you mean 'ever'"));
    // Nothing of those was kept.
    assert_eq!(f.db.computed_traits().len(), 1);
    // identify cannot set it; nothing of the write is stored.
    let e =
        f.db.ingest(vec![Message::identify(
            "y",
            vec![("orders".to_owned().into(), Some(Value::Int(3)))],
        )])
        .unwrap_err();
    assert!(e.to_string().contains("computed trait"), "{e}");
    assert!(f.db.customer("y").unwrap().is_none());
    // A saved audience reading it keeps it; dropping is refused naming the audience.
    f.db.define_audience("loyal", "orders >= 1").unwrap();
    let e = f.db.drop_trait("orders").unwrap_err();
    assert!(e.to_string().contains("loyal"), "{e}");
    // A trait a saved audience already reads (as a stored trait) cannot be defined.
    f.db.define_audience("vip", "vip_score > 3").unwrap();
    assert!(err("vip_score", "purchased count").contains("vip"));
    // Kept across a reopen, and `verify` is content.
    let path = f.dir.path().join("db");
    drop(f.db);
    let db = Db::open_with(Config::new(&path)).unwrap();
    let listed = db.computed_traits();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].expression, "purchased count in last 90 days");
    assert_eq!(listed[0].used_by, vec!["loyal".to_owned()]);
    assert_eq!(db.query("orders >= 1", now()).unwrap().len(), 1);
    let report = db.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    db.drop_audience("loyal").unwrap();
    db.drop_trait("orders").unwrap();
    assert!(matches!(db.drop_trait("orders"), Err(Error::NotFound(_))));
    assert!(db.computed_traits().is_empty());
}

#[test]
fn a_saved_audience_follows_time_to_the_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(now());
    let db = Db::open_with(Config {
        clock: clock.clone(),
        ..Config::new(dir.path().join("db"))
    })
    .unwrap();
    let t = now() - 80 * DAY_MS;
    for (i, ts) in [t, t + 5, now() - DAY_MS].into_iter().enumerate() {
        db.ingest(vec![Message::track(
            "a",
            "purchased",
            vec![("amount".to_owned().into(), Value::Int(100 + i as i64))],
            Some(ts),
        )])
        .unwrap();
    }
    db.define_trait("orders_90d", "purchased count in last 90 days")
        .unwrap();
    db.define_trait("last_order_at", "purchased last time")
        .unwrap();
    db.define_audience("repeat", "orders_90d >= 3").unwrap();
    db.define_audience("lapsed", "last_order_at < 2 days ago")
        .unwrap();
    let members = |name: &str| db.audience_members(name).unwrap().len();
    assert_eq!((members("repeat"), members("lapsed")), (1, 0));
    // The first order turns 90 days old at t + 90 days: the count drops then, not before.
    clock.set(t + 90 * DAY_MS - 1);
    db.advance_audiences().unwrap();
    assert_eq!(members("repeat"), 1);
    clock.set(t + 90 * DAY_MS);
    db.advance_audiences().unwrap();
    assert_eq!(members("repeat"), 0);
    // The last order was a day before *now*: 2 days ago passes it a millisecond after one more day.
    // (Already lapsed long before t + 90 days.)
    assert_eq!(members("lapsed"), 1);
    // A new order brings both back.
    db.ingest(vec![Message::track(
        "a",
        "purchased",
        vec![],
        Some(t + 90 * DAY_MS),
    )])
    .unwrap();
    assert_eq!(members("lapsed"), 0);
    let last = t + 90 * DAY_MS;
    clock.set(last + 2 * DAY_MS);
    db.advance_audiences().unwrap();
    assert_eq!(
        members("lapsed"),
        0,
        "exactly 2 days after is not before 2 days ago"
    );
    clock.set(last + 2 * DAY_MS + 1);
    db.advance_audiences().unwrap();
    assert_eq!(members("lapsed"), 1);
    let report = db.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

// ---------- Random data, random rules ----------

const RANDOM_TRAITS: &[(&str, &str)] = &[
    ("t_count", "purchased count in last 3 days"),
    ("t_sum", "purchased sum(amount) in last 2 days"),
    ("t_avg", "purchased avg(amount) ever"),
    ("t_min", "purchased min(amount) since 1 day ago"),
    (
        "t_max",
        "purchased where category = a max(amount) in last 4 days",
    ),
    ("t_distinct", "purchased distinct(category) in last 2 days"),
    ("t_top", "purchased top(category) in last 3 days"),
    ("t_topn", "viewed top(amount) ever"),
    ("t_first", "purchased first time in last 3 days"),
    ("t_last", "viewed last time"),
    ("t_lastw", "purchased category b last time before 1 day ago"),
];

fn random_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..6).prop_map(Value::Int),
        (0i64..6).prop_map(|i| Value::Float(i as f64 + 0.5)),
        (0i64..3).prop_map(|i| Value::Float(i as f64)),
        Just(s("3")),
    ]
}

fn random_event() -> impl Strategy<Value = (usize, bool, i64, Option<Value>, usize)> {
    (
        0usize..5,
        any::<bool>(),
        // Around *now*, on the hour, and a millisecond either side.
        (-5i64 * 24..2, -1i64..=1).prop_map(|(h, ms)| h * 3_600_000 + ms),
        proptest::option::of(random_value()),
        0usize..3,
    )
}

fn random_literal(kind: usize) -> impl Strategy<Value = String> {
    match kind {
        // Numbers, a fraction, a negative, text.
        0 => prop_oneof![
            (0i64..8).prop_map(|i| i.to_string()),
            (0i64..8).prop_map(|i| format!("{i}.5")),
            Just("-1".to_owned()),
            Just("\"3\"".to_owned()),
        ]
        .boxed(),
        // Categories and numbers as text.
        1 => prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c".to_owned()),
            Just("3".to_owned()),
            Just("\"3\"".to_owned()),
            Just("2.5".to_owned()),
        ]
        .boxed(),
        // Times: hours ago, a millisecond either side.
        _ => (0i64..100, -1i64..=1)
            .prop_map(|(h, ms)| format_rfc3339(now() - h * 3_600_000 + ms))
            .boxed(),
    }
}

fn random_test(name: &'static str, kind: usize) -> impl Strategy<Value = String> {
    let op = prop_oneof![
        Just("="),
        Just("!="),
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">=")
    ];
    prop_oneof![
        (op, random_literal(kind)).prop_map(move |(op, l)| format!("{name} {op} {l}")),
        (random_literal(kind), random_literal(kind))
            .prop_map(move |(a, b)| format!("{name} between {a} and {b}")),
        (any::<bool>(), random_literal(kind), random_literal(kind)).prop_map(
            move |(neg, a, b)| format!("{name} {}in ({a}, {b})", if neg { "not " } else { "" })
        ),
        any::<bool>()
            .prop_map(move |neg| format!("{name} is {}set", if neg { "not " } else { "" })),
    ]
}

fn random_condition() -> impl Strategy<Value = String> {
    let kind = |name: &str| match name {
        "t_top" => 1,
        "t_first" | "t_last" | "t_lastw" => 2,
        _ => 0,
    };
    (0..RANDOM_TRAITS.len()).prop_flat_map(move |i| {
        let name = RANDOM_TRAITS[i].0;
        random_test(name, kind(name))
    })
}

fn random_rule() -> impl Strategy<Value = String> {
    prop_oneof![
        random_condition(),
        (random_condition(), random_condition()).prop_map(|(a, b)| format!("{a} and {b}")),
        (random_condition(), random_condition()).prop_map(|(a, b)| format!("not {a} or {b}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn random_rules_against_the_reference(
        events in proptest::collection::vec(random_event(), 0..24),
        rules in proptest::collection::vec(random_rule(), 1..8),
        shift in prop_oneof![Just(0i64), Just(3_600_000i64), Just(-1i64), Just(1i64)],
    ) {
        let mut f = Fixture::new();
        // Defined first: the data arrives after the definitions.
        for (name, expr) in RANDOM_TRAITS {
            f.define(name, expr);
        }
        f.identify("z", vec![("tier", s("Gold"))]);
        let cats = ["a", "b", "c"];
        for (cust, purchase, offset, amount, cat) in events {
            let mut props = vec![("category", s(cats[cat]))];
            if let Some(a) = amount {
                props.push(("amount", a));
            }
            let event = if purchase { "purchased" } else { "viewed" };
            f.track(&format!("c{cust}"), event, now() + offset, props);
        }
        let customers = f.customers();
        for rule in &rules {
            if let Err(e) = compare(&f.db, &customers, &f.traits, rule, now() + shift) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
