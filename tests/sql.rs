//! `audiencedb sql` against the engine, on real SQL engines: a shop with values planted at every
//! edge the rule language defines (numbers of both kinds and past 2^53, text that looks like a
//! number or a date, date-times to the millisecond and before 1970, booleans, lists of mixed
//! elements, events at the ends of windows), exported with `export tables`, loaded into DuckDB
//! and into ClickHouse (chDB), and every rule's SQL run there: the ids must be those of
//! `Db::query`. Hostile names and values must come back as data, never as SQL.
//!
//! The engines are the `duckdb` and `chdb` Python packages of the test venv
//! (`target/server-venv`, which `scripts/test.sh` fills); an engine that is not installed is
//! skipped with a line saying so.

mod engines;
mod fixture;

use audiencedb::ingest::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::query::sql::Dialect;
use audiencedb::tables::{export_tables, TablesFormat};
use engines::{has_module, python, run_on, ENGINES};
use fixture::Fixture;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn identify(f: &mut Fixture, id: &str, traits: Vec<(&str, Value)>) {
    f.ingest(vec![Message::identify(
        id,
        traits
            .into_iter()
            .map(|(k, v)| (k.into(), Some(v)))
            .collect(),
    )]);
}

/// The shop: each customer plants values at one edge.
fn shop(now: i64) -> Fixture {
    let mut f = Fixture::new();
    let big = (1i64 << 53) + 1;
    identify(
        &mut f,
        "int50",
        vec![("amount", Value::Int(50)), ("tier", s("Gold"))],
    );
    identify(
        &mut f,
        "float50",
        vec![("amount", Value::Float(50.0)), ("tier", s("gold"))],
    );
    identify(
        &mut f,
        "text50",
        vec![("amount", s("50")), ("code", s("007"))],
    );
    identify(
        &mut f,
        "big",
        vec![("amount", Value::Int(big)), ("tier", s("Silver"))],
    );
    identify(
        &mut f,
        "big_float",
        vec![("amount", Value::Float(big as f64))],
    );
    identify(
        &mut f,
        "decimal",
        vec![("amount", Value::Float(19.9)), ("price", Value::Float(0.1))],
    );
    identify(
        &mut f,
        "dates",
        vec![
            (
                "signup_at",
                Value::Time(parse_rfc3339("2026-03-01T00:00:00Z").unwrap()),
            ),
            ("d", s("2026-01-01")),
            ("old", Value::Time(-DAY - 1)),
        ],
    );
    identify(
        &mut f,
        "dates2",
        vec![(
            "signup_at",
            Value::Time(parse_rfc3339("2026-03-01T00:00:00.001Z").unwrap()),
        )],
    );
    identify(
        &mut f,
        "bools",
        vec![("newsletter", Value::Bool(true)), ("flag", s("true"))],
    );
    identify(
        &mut f,
        "lists",
        vec![(
            "tags",
            Value::List(vec![s("eco"), Value::Int(7), Value::Bool(false), s("50")]),
        )],
    );
    identify(
        &mut f,
        "lists2",
        vec![("tags", Value::List(vec![s("economy")]))],
    );
    identify(
        &mut f,
        "hostile",
        vec![
            ("note", s("x'); DROP TABLE customers; --")),
            ("path", s(r"a\'b\\c")),
            ("email", s("ann@example.fi")),
        ],
    );
    // Events at the window's edges: `in last 2 days` starts at now − 2 days + 1 ms.
    let start = now - 2 * DAY;
    for (id, ts, amount) in [
        ("e_at_start", start, Value::Int(10)),
        ("e_after_start", start + 1, Value::Int(10)),
        ("e_at_now", now, Value::Float(60.5)),
        ("e_after_now", now + 1, Value::Int(100)),
        ("e_text_amount", now - HOUR, s("80")),
        ("int50", now - HOUR, Value::Int(30)),
        ("int50", now - 2 * HOUR, Value::Float(30.25)),
        ("float50", now - 3 * HOUR, Value::Float(0.1)),
        ("float50", now - 3 * HOUR, Value::Float(0.2)),
    ] {
        f.track(
            id,
            "purchased",
            ts,
            vec![("amount", amount), ("category", s("shoes"))],
        );
    }
    // Sequences: B exactly at the limit, 1 ms late, at the same millisecond; `with same`.
    let t = now - 3 * HOUR;
    for (id, event, ts, product) in [
        ("seq_edge", "added_to_cart", t, "P1"),
        ("seq_edge", "purchased", t + HOUR, "P1"),
        ("seq_late", "added_to_cart", t, "P1"),
        ("seq_late", "purchased", t + HOUR + 1, "P1"),
        ("seq_same_ms", "added_to_cart", t, "P1"),
        ("seq_same_ms", "purchased", t, "P1"),
        ("seq_same", "viewed", t, "P1"),
        ("seq_same", "purchased", t + 10, "P2"),
        ("seq_other", "viewed", t, "P1"),
        ("seq_other", "purchased", t + 10, "P2"),
        ("seq_other", "purchased", t + 20, "P1"),
        ("seq_chain", "viewed", t - HOUR, "P3"),
        ("seq_chain", "added_to_cart", t, "P3"),
        ("seq_chain", "purchased", t + 2 * HOUR, "P3"),
    ] {
        f.track(id, event, ts, vec![("product", s(product))]);
    }
    f.track(
        "lists",
        "viewed",
        now - DAY,
        vec![("sizes", Value::List(vec![Value::Int(40), Value::Int(41)]))],
    );
    f.track(
        "hostile",
        "did \"it\"'; --",
        now - DAY,
        vec![("q", s(r"50% off \ 'sale'"))],
    );
    f.track("bools", "viewed", 0, vec![("product", Value::Int(12345))]);
    // Distinct values of every kind: 7 and 7.0 one value, "7" another; 2^53 + 1 and 2^53 two
    // (the float 2^53 is the second); a list and a missing property none.
    for v in [
        Value::Int(7),
        Value::Float(7.0),
        s("7"),
        Value::Float(7.25),
        Value::Bool(true),
        Value::Bool(false),
        Value::Time(now - DAY),
        Value::Time(now - DAY),
        Value::List(vec![Value::Int(7)]),
        Value::Int(big),
        Value::Int(big - 1),
        Value::Float((big - 1) as f64),
        Value::Int(-9_223_372_036_854_775_808),
        Value::Float(-9_223_372_036_854_775_808.0),
        Value::Float(1e300),
    ] {
        f.track("distinct_kinds", "ordered", now - HOUR, vec![("item", v)]);
    }
    f.track("distinct_kinds", "ordered", now - HOUR, vec![]);
    f.track(
        "distinct_one",
        "ordered",
        now - HOUR,
        vec![("item", Value::Float(-0.0))],
    );
    f.track(
        "distinct_one",
        "ordered",
        now - 2 * HOUR,
        vec![("item", Value::Int(0))],
    );
    f
}

const RULES: &[&str] = &[
    // Equality across kinds.
    "amount = 50",
    "amount = 50.0",
    "amount = \"50\"",
    "amount != 50",
    "amount in (50, 19.9)",
    "amount not in (50)",
    "amount = 9007199254740993",
    "amount = 9007199254740992",
    "amount > 9007199254740992",
    "amount >= 9007199254740993",
    "amount = 9007199254740993.0",
    "amount >= 9007199254740992.5",
    "amount = 19.90",
    "price = 0.1",
    "price < 0.1000000001",
    "code = 007",
    "code = 7",
    "tier = Gold",
    "tier = gold",
    "tier != Gold",
    "not tier = Gold",
    "tier is set",
    "tier is not set",
    "amount between 19.9 and 50",
    "amount between 50 and 19.9",
    "amount > \"30\"",
    // Dates and times.
    "signup_at = 2026-03-01",
    "signup_at = \"2026-03-01T00:00:00Z\"",
    "signup_at > 2026-03-01",
    "signup_at between 2026-03-01 and 2026-03-01T00:00:00.001Z",
    "signup_at > 30 days ago",
    "old < 1970-01-01",
    "d = 2026-01-01",
    "d > 2026-01-01",
    // Booleans and lists.
    "newsletter = true",
    "flag = true",
    "flag = \"true\"",
    "tags contains eco",
    "tags contains 7",
    "tags contains false",
    "tags contains \"50\"",
    "tags contains 50",
    "tags = eco",
    "tags != eco",
    "tags contains econ",
    "email contains \"@example.\"",
    "email contains 50",
    // Events: windows to the millisecond, frequencies, aggregates, text amounts.
    "purchased in last 2 days",
    "purchased in last 1 hour",
    "purchased ever",
    "purchased since 2 days ago",
    "purchased before 1 day ago",
    "did purchased between 2 days ago and 1 hour ago",
    "purchased where amount >= 30 in last 2 days",
    "purchased where amount = \"80\"",
    "purchased where (amount > 20 and not category = kids)",
    "purchased where amount is not set",
    "purchased at least 2 times",
    "purchased at most 1 time in last 2 days",
    "purchased exactly 0 times in last 2 days",
    "purchased count != 1",
    "purchased sum(amount) > 60",
    "purchased sum(amount) = 60.25",
    "purchased sum(amount) < 1",
    "purchased sum(amount) <= 0",
    "purchased avg(amount) >= 30.125",
    "purchased avg(amount) > 0.15",
    "purchased min(amount) < 10",
    "purchased max(amount) >= 60.5",
    // Distinct values: typed, numbers by exact value, lists and missing values none.
    "ordered distinct(item) = 10",
    "ordered distinct(item) = 1",
    "ordered distinct(item) < 1",
    "ordered distinct(item) >= 2 in last 90 minutes",
    "purchased distinct(amount) >= 2 in last 2 days",
    "purchased distinct(amount) = 0",
    "purchased category shoes distinct(amount) != 1",
    "purchased distinct(nosuch) = 0",
    "viewed distinct(product) >= 2 or viewed distinct(sizes) > 0",
    "float50 = 1 or purchased sum(amount) = 0.30000000000000004",
    "viewed where sizes contains 41",
    "viewed product 12345",
    "viewed product \"12345\"",
    "viewd in last 7 days",
    "not viewd",
    "viewd at most 2 times",
    "purchased where colour = red",
    "purchased where colour is not set in last 2 days",
    // Sequences.
    "added_to_cart then purchased within 1 hour",
    "added_to_cart then not purchased within 1 hour",
    "added_to_cart then not purchased within 1 hour in last 3 hours",
    "added_to_cart then not purchased within 1 hour in last 179 minutes",
    "viewed then purchased with same product within 2 hours",
    "viewed then not purchased with same product within 2 hours",
    "viewed then added_to_cart then purchased within 3 hours",
    "viewed then added_to_cart then purchased within 179 minutes",
    "viewed where sizes contains 41 then purchased within 30 days",
    "purchased where amount >= 30 then purchased within 1 hour",
    "viewd then purchased within 1 day",
    "viewed then not viewd within 1 day",
    // First and last: the sequences' events sit exactly 3 hours before now, and 1 ms beside.
    "first added_to_cart in last 3 hours",
    "first added_to_cart in last 181 minutes",
    "first purchased in last 3 hours",
    "first purchased where amount >= 30 in last 2 hours",
    "last purchased before 2 hours ago",
    "last purchased before 3 hours ago",
    "last purchased product P1 between 4 hours ago and 2 hours ago",
    "last viewed since 2026-03-15 or first viewed before 2026-03-15",
    "not first viewed before 1 day ago",
    "last viewd ever",
    // Buckets: SHA-256 of `NAME:ID` in each dialect, over every id of the shop.
    "bucket(exp) < 50",
    "bucket(holdout) between 10 and 60",
    "bucket(Exp) in (0, 1, 2, 50, 97, 98, 99) or bucket(exp) = 0",
    "not bucket(x) >= 30 and tier = Gold",
    "bucket(exp) < 100",
    "bucket(exp) > 99",
    // Hostile names and values.
    "note = \"x'); DROP TABLE customers; --\"",
    r#"path = "a\\'b\\\\c""#,
    r#"did "did \"it\"'; --" where q contains "% off \\ 'sale'""#,
    "everyone",
    "not everyone",
    "tier = Gold or (amount > 40 and not newsletter = true)",
];

/// The engine's members of `rule` at `now`, sorted.
fn members(f: &Fixture, rule: &str, now: i64) -> Vec<String> {
    let audience =
        f.db.query(rule, now)
            .unwrap_or_else(|e| panic!("{rule}: {e}"));
    let mut ids = f.db.member_ids(&audience).unwrap();
    ids.sort();
    ids
}

#[test]
fn every_rule_has_the_engine_s_members_on_duckdb_and_clickhouse() {
    let now = parse_rfc3339("2026-03-15T10:30:00Z").unwrap();
    let f = shop(now);
    let expected: Vec<Vec<String>> = RULES.iter().map(|r| members(&f, r, now)).collect();
    // The planted edges make a difference: not every rule is empty or everyone.
    let all = f.customers().len();
    assert!(
        expected
            .iter()
            .filter(|m| !m.is_empty() && m.len() < all)
            .count()
            > 40
    );
    on_engines(&f, RULES, &expected, now);
}

/// Exports `f` as NDJSON and as Parquet and runs every rule's SQL on each engine installed, from
/// each export: the members must be `expected`. An engine not installed is skipped with a line
/// (CI installs both; without them the queries are still written).
fn on_engines(f: &Fixture, rules: &[&str], expected: &[Vec<String>], now: i64) {
    for format in [TablesFormat::Ndjson, TablesFormat::Parquet] {
        let dir = tempfile::tempdir().unwrap();
        export_tables(&f.db, dir.path(), now, format).unwrap();
        for (engine, module, dialect) in ENGINES {
            if !has_module(module) {
                eprintln!("skipped {engine}: no `{module}` in {}", python().display());
                continue;
            }
            let queries: Vec<String> = rules
                .iter()
                .map(|r| {
                    f.db.sql(r, dialect, now)
                        .unwrap_or_else(|e| panic!("{r}: {e}"))
                })
                .collect();
            let answers = run_on(engine, dir.path(), &queries);
            for ((rule, want), got) in rules.iter().zip(expected).zip(answers) {
                let mut got =
                    got.unwrap_or_else(|e| panic!("{engine} ({format:?}) failed on {rule:?}: {e}"));
                got.sort();
                assert_eq!(&got, want, "{engine} ({format:?}): {rule}");
            }
        }
    }
}

#[test]
fn a_rule_that_cannot_be_evaluated_is_refused_as_in_the_engine() {
    let f = Fixture::new();
    let e = f.db.sql("in audience vip", Dialect::DuckDb, 0).unwrap_err();
    assert!(e.to_string().contains("vip"), "{e}");
    assert!(f.db.sql("tier = ", Dialect::ClickHouse, 0).is_err());
    assert!(Dialect::parse("postgres").is_err());
}

/// Every rule of `grammar/examples.txt`, over a generated shop (time order, 400 customers) with
/// the two audiences the examples name saved, at a *now* that cuts days: each engine's members
/// are the engine's, from both file formats.
#[test]
fn every_grammar_example_on_a_generated_shop() {
    use audiencedb::gen::{generate, GenConfig};
    use audiencedb::import::{import_ndjson, CollectErrors, ImportOptions};
    let end = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let config = GenConfig {
        customers: 400,
        seed: 24,
        days: 365,
        end,
        both_ids_percent: 10,
    };
    let mut bytes = Vec::new();
    generate(&config, &mut bytes).unwrap();
    let f = Fixture::new();
    let mut errors = CollectErrors::default();
    import_ndjson(&f.db, &bytes[..], &ImportOptions::default(), &mut errors).unwrap();
    assert!(errors.0.is_empty(), "{:?}", errors.0.first());
    f.db.define_audience("unsubscribed", "newsletter = false")
        .unwrap();
    f.db.define_audience("vip", "tier = Gold and purchased ever")
        .unwrap();
    f.db.define_audience(
        "cart_abandoners",
        "added_to_cart then not purchased within 1 hour in last 7 days",
    )
    .unwrap();
    let now = end - 20 * DAY - 5 * HOUR - 7;
    let rules: Vec<&str> = include_str!("../grammar/examples.txt")
        .lines()
        .map(|l| l.split("  #").next().unwrap().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(rules.len() > 60);
    let expected: Vec<Vec<String>> = rules.iter().map(|r| members(&f, r, now)).collect();
    let customers = f.db.query("everyone", now).unwrap().len() as usize;
    assert!(
        expected
            .iter()
            .filter(|m| !m.is_empty() && m.len() < customers)
            .count()
            > rules.len() / 2,
        "the shop should make most examples pick some customers, not none or all"
    );
    on_engines(&f, &rules, &expected, now);
}
