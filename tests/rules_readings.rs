//! Rules mean what their writer means (docs/RULES.md, "One reading per name, and warnings"):
//! - every event form that needs no `did`, followed by every window form, means exactly what
//!   the same rule with `did` means, on a generated shop, and what the reference evaluator says;
//! - `NAME between A and B` takes the reading the store gives it, is an error when the store
//!   has both, says which reading it took in explain and why, and is pinned when saved;
//! - unknown names and values no customer has are answered with warnings that name the nearest
//!   known one, and known ones never are.

mod reference;

use std::collections::BTreeSet;

use audiencedb::gen::{generate, GenConfig};
use audiencedb::import::{import_ndjson, CollectErrors, ImportOptions};
use audiencedb::model::time::{format_rfc3339, parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::{Config, Customer, Db, Error};

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

/// The end of the generated period: every generated event lies in the year before.
fn end() -> i64 {
    at("2026-01-01T00:00:00Z")
}

/// A generated shop of 300 customers, its folder, and every customer as stored.
fn shop() -> (tempfile::TempDir, Db, Vec<Customer>) {
    let config = GenConfig {
        customers: 300,
        seed: 15,
        days: 365,
        end: end(),
        both_ids_percent: 0,
    };
    let mut bytes = Vec::new();
    generate(&config, &mut bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(Config::new(dir.path().join("db"))).unwrap();
    let mut errors = CollectErrors::default();
    let options = ImportOptions {
        strict: true,
        ..ImportOptions::default()
    };
    import_ndjson(&db, &bytes[..], &options, &mut errors).unwrap();
    assert!(errors.0.is_empty(), "{:?}", errors.0.first());
    let customers = everyone(&db);
    assert_eq!(customers.len(), 300);
    (dir, db, customers)
}

fn everyone(db: &Db) -> Vec<Customer> {
    let all = db.query("everyone", i64::MAX).unwrap();
    db.member_ids(&all)
        .unwrap()
        .iter()
        .map(|id| db.customer(id).unwrap().expect("a member exists"))
        .collect()
}

fn members(db: &Db, rule: &str, now: i64) -> Vec<String> {
    let audience = db
        .query(rule, now)
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
    db.member_ids(&audience).unwrap()
}

fn reference(rule: &str, now: i64, customers: &[Customer]) -> Vec<String> {
    let parsed = audiencedb::rules::parse(rule).unwrap();
    reference::evaluate(&parsed, now, customers).unwrap_or_else(|e| panic!("{rule}: {e}"))
}

/// Every window form, with ends inside the generated year.
fn windows(now: i64) -> Vec<String> {
    let date = |ts: i64| format_rfc3339(ts)[..10].to_owned();
    let d90 = date(now - 90 * DAY_MS);
    let d30 = date(now - 30 * DAY_MS);
    let dt60 = format_rfc3339(now - 60 * DAY_MS - 5 * 3_600_000 - 1);
    let dt20 = format_rfc3339(now - 20 * DAY_MS + 1);
    vec![
        String::new(),
        "ever".into(),
        "in last 30 days".into(),
        "in the last 2 weeks".into(),
        "in last 1 month".into(),
        format!("since {d90}"),
        "since 45 days ago".into(),
        format!("since {dt60}"),
        format!("before {d30}"),
        "before 60 days ago".into(),
        format!("before {dt20}"),
        format!("between {d90} and {d30}"),
        format!("between {d30} and {d30}"),
        format!("between {dt60} and {dt20}"),
        "between 60 days ago and 10 days ago".into(),
        format!("between {d90} and {dt20}"),
        format!("between 90 days ago and {d30}"),
    ]
}

/// Every event form that needs no `did`: bare, shorthand, `where`, frequency, aggregate, and
/// their combinations.
const EVENT_FORMS: [&str; 9] = [
    "viewed",
    "purchased",
    "viewed category beauty",
    "purchased where amount >= 40",
    "purchased where (category = toys or amount < 20)",
    "visited at least 3 times",
    "purchased count <= 1",
    "purchased sum(amount) > 100",
    "viewed category beauty where price < 30 at most 2 times",
];

#[test]
fn every_event_form_with_every_window_means_the_did_form() {
    let (_dir, db, customers) = shop();
    let now = end() - 3 * DAY_MS - 7 * 3_600_000 - 1;
    let mut bare_betweens = 0;
    for form in EVENT_FORMS {
        for window in windows(now) {
            let natural = format!("{form} {window}").trim().to_owned();
            let explicit = format!("did {natural}");
            let got = members(&db, &natural, now);
            assert_eq!(got, members(&db, &explicit, now), "{natural}");
            assert_eq!(got, reference(&natural, now, &customers), "{natural}");
            // Negated too: the complement of a wrong reading is everyone.
            let negated = members(&db, &format!("not {natural}"), now);
            assert_eq!(negated, members(&db, &format!("not {explicit}"), now));
            assert_eq!(got.len() + negated.len(), customers.len(), "{natural}");
            let warnings = db.query(&natural, now).unwrap().warnings().to_vec();
            assert!(warnings.is_empty(), "{natural}: {warnings:?}");
            if !form.contains(' ') && window.starts_with("between") {
                // Views are frequent enough to fill every window, a single day's included.
                assert!(
                    form != "viewed" || !got.is_empty(),
                    "{natural} selects nobody"
                );
                bare_betweens += 1;
            }
        }
    }
    assert_eq!(bare_betweens, 12);
}

#[test]
fn the_issue_s_rules_answer_as_written() {
    let (_dir, db, customers) = shop();
    let now = end();
    let natural = "viewed between 2025-03-01 and 2025-03-31";
    let got = members(&db, natural, now);
    assert!(got.len() > 50, "{natural}: {}", got.len());
    assert_eq!(
        got,
        members(&db, "did viewed between 2025-03-01 and 2025-03-31", now)
    );
    let lapsed = "purchased since 2025-10-01 and not purchased between 2025-04-01 and 2025-09-30";
    let got = members(&db, lapsed, now);
    assert_eq!(got, reference(lapsed, now, &customers));
    let buyers = members(&db, "purchased since 2025-10-01", now);
    assert!(
        got.len() < buyers.len(),
        "{lapsed}: {} of {}",
        got.len(),
        buyers.len()
    );
}

/// A small store: `vip_since` is a trait, `viewed` an event; both readings can be forced.
fn small() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(Config::new(dir.path().join("db"))).unwrap();
    db.identify(
        "a",
        vec![
            (
                "vip_since".into(),
                Some(Value::Time(at("2026-03-10T12:00:00Z"))),
            ),
            ("tier".into(), Some(Value::Str("Gold".into()))),
        ],
    )
    .unwrap();
    db.identify(
        "b",
        vec![("tier".into(), Some(Value::Str("Silver".into())))],
    )
    .unwrap();
    db.track("b", "viewed", vec![], Some(at("2026-03-20T08:00:00Z")))
        .unwrap();
    (dir, db)
}

const NOW: &str = "2026-04-01T00:00:00Z";

/// Customer `c` gets a trait named like the event `viewed`: the name then has both readings.
fn give_c_a_viewed_trait(db: &Db) {
    let value = Value::Time(at("2026-03-05T00:00:00Z"));
    db.identify("c", vec![("viewed".into(), Some(value))])
        .unwrap();
}

#[test]
fn a_name_takes_the_reading_the_store_gives_it() {
    let (_dir, db) = small();
    let now = at(NOW);
    assert_eq!(
        members(&db, "vip_since between 2026-03-01 and 2026-03-31", now),
        ["a"]
    );
    assert_eq!(
        members(&db, "viewed between 2026-03-01 and 2026-03-31", now),
        ["b"]
    );
    assert_eq!(
        members(&db, "not viewed between 30 days ago and 1 day ago", now),
        ["a"]
    );
    // Explain and why say which reading was taken.
    let explained = db
        .explain("viewed between 2026-03-01 and 2026-03-31 or vip_since between 2026-03-01 and 2026-03-31", now)
        .unwrap()
        .to_string();
    assert!(
        explained.contains("viewed between 2026-03-01 and 2026-03-31 (read as the event)"),
        "{explained}"
    );
    assert!(
        explained.contains("vip_since between 2026-03-01 and 2026-03-31 (read as the trait)"),
        "{explained}"
    );
    let why = db
        .why("b", "viewed between 2026-03-01 and 2026-03-31", now)
        .unwrap();
    assert!(why.root.holds);
    assert!(
        why.root.label.ends_with("(read as the event)"),
        "{}",
        why.root.label
    );

    // A trait of the same name makes the rule say both readings and how to write each.
    give_c_a_viewed_trait(&db);
    let rule = "viewed between 2026-03-01 and 2026-03-31";
    match db.query(rule, now) {
        Err(Error::Evaluation(message)) => {
            assert!(
                message.contains("'viewed' is both an event and a trait"),
                "{message}"
            );
            assert!(
                message.contains("`did viewed between 2026-03-01 and 2026-03-31` for the event"),
                "{message}"
            );
            assert!(
                message.contains("`viewed >= 2026-03-01 and viewed <= 2026-03-31` for the trait"),
                "{message}"
            );
        }
        other => panic!("{rule}: {other:?}"),
    }
    assert!(matches!(db.check(rule), Err(Error::Evaluation(_))));
    // Each explicit form still answers.
    assert_eq!(members(&db, &format!("did {rule}"), now), ["b"]);
    assert_eq!(
        members(&db, "viewed >= 2026-03-01 and viewed <= 2026-03-31", now),
        ["c"]
    );
}

#[test]
fn saving_an_audience_pins_the_reading() {
    let (_dir, db) = small();
    let info = db
        .define_audience("march_viewers", "viewed between 2026-03-01 and 2026-03-31")
        .unwrap();
    assert_eq!(info.rule, "did viewed between 2026-03-01 and 2026-03-31");
    let info = db
        .define_audience(
            "march_vips",
            "tier = Gold and vip_since between 2026-03-01 and 2026-03-31",
        )
        .unwrap();
    assert_eq!(
        info.rule,
        "tier = Gold and (vip_since >= 2026-03-01 and vip_since <= 2026-03-31)"
    );
    // What is stored later cannot change them: both names now exist twice over.
    give_c_a_viewed_trait(&db);
    db.track("c", "vip_since", vec![], Some(at("2026-03-06T00:00:00Z")))
        .unwrap();
    let now = at(NOW);
    let kept = |name: &str| {
        let a = db.audience_members_at(name, now).unwrap();
        db.member_ids(&a).unwrap()
    };
    assert_eq!(kept("march_viewers"), ["b"]);
    assert_eq!(kept("march_vips"), ["a"]);
    // A rule whose reading cannot be decided is refused, saying how to write each.
    let err = db
        .define_audience("either", "viewed between 2026-03-01 and 2026-03-31")
        .unwrap_err();
    assert!(err.to_string().contains("did viewed between"), "{err}");
    let err = db
        .define_audience("neither", "nothing_yet between 2026-03-01 and 2026-03-31")
        .unwrap_err();
    assert!(
        err.to_string().contains("neither an event nor a trait"),
        "{err}"
    );
    assert!(db.audience("either").is_err() && db.audience("neither").is_err());
}

fn warnings(db: &Db, rule: &str) -> Vec<String> {
    let via_query = db.query(rule, at(NOW)).unwrap();
    let via_check = db.check(rule).unwrap();
    assert_eq!(via_query.warnings(), &via_check[..], "{rule}");
    via_check.iter().map(ToString::to_string).collect()
}

#[test]
fn unknown_names_and_values_are_warned_about_with_the_nearest_known_one() {
    let (_dir, db) = small();
    db.track(
        "a",
        "purchased",
        vec![
            ("product".into(), Value::Str("sku-1".into())),
            ("amount".into(), Value::Int(30)),
        ],
        Some(at("2026-03-21T08:00:00Z")),
    )
    .unwrap();
    for (rule, expected) in [
        (
            "viewd in last 30 days",
            vec!["no event 'viewd' in this store; did you mean 'viewed'?"],
        ),
        (
            "Viewed",
            vec!["no event 'Viewed' in this store; did you mean 'viewed'?"],
        ),
        (
            "tier = gold",
            vec!["no customer has tier 'gold'; did you mean 'Gold'?"],
        ),
        (
            "tier in (Gold, Silvr) or tier != Platinum",
            vec![
                "no customer has tier 'Silvr'; did you mean 'Silver'?",
                "no customer has tier 'Platinum'",
            ],
        ),
        (
            "teir = Gold",
            vec!["no trait 'teir' in this store; did you mean 'tier'?"],
        ),
        (
            "purchased prodcut sku-1",
            vec!["no 'purchased' event has property 'prodcut'; did you mean 'product'?"],
        ),
        (
            "purchased product SKU-1 or purchased where product = sku-2",
            vec![
                "no 'purchased' event has product 'SKU-1'; did you mean 'sku-1'?",
                "no 'purchased' event has product 'sku-2'; did you mean 'sku-1'?",
            ],
        ),
        (
            "purchased sum(amont) > 10",
            vec!["no 'purchased' event has property 'amont'; did you mean 'amount'?"],
        ),
        (
            "viewed where product = sku-1",
            vec!["no 'viewed' event has property 'product'"],
        ),
        (
            "vip_sinse between 2026-03-01 and 2026-03-31",
            vec!["no event or trait 'vip_sinse' in this store; did you mean 'vip_since'?"],
        ),
        (
            "completely_new_thing",
            vec!["no event 'completely_new_thing' in this store"],
        ),
        // Known names and values: nothing to say.
        ("tier = Gold and viewed in last 30 days", vec![]),
        (
            "purchased product sku-1 where amount >= 10 sum(amount) > 5",
            vec![],
        ),
        (
            "purchased product 12345",
            vec!["no 'purchased' event has product '12345'"],
        ),
        ("tier contains old and vip_since > 30 days ago", vec![]),
        ("everyone", vec![]),
    ] {
        assert_eq!(warnings(&db, rule), expected, "{rule}");
    }
    // An unknown audience stays an error, with the nearest saved name.
    db.define_audience("gold_members", "tier = Gold").unwrap();
    let err = db.query("in audience gold_member", at(NOW)).unwrap_err();
    assert!(
        err.to_string().ends_with("did you mean 'gold_members'?"),
        "{err}"
    );
}

#[test]
fn the_examples_of_the_reference_have_no_warnings_on_a_generated_shop() {
    let (_dir, db, _) = shop();
    db.define_audience("unsubscribed", "newsletter = false")
        .unwrap();
    for rule in audiencedb::rules::SPEC_EXAMPLES {
        let w = db.check(rule).unwrap();
        assert!(w.is_empty(), "{rule}: {w:?}");
    }
    let ids: BTreeSet<String> = everyone(&db).into_iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 300);
}
