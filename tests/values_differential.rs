//! `top` against a plain evaluator written from the stored events: the audience from the naive
//! reference evaluator (`tests/reference/mod.rs`), then every customer's events walked, and the
//! distinct customers counted per value of the property inside the window (the reference's own
//! window test). `audience`, `customers` and `everyone` of every value and the ranking must be
//! identical.
//!
//! - hand-built timelines with events on the days a window cuts, at its edges to the
//!   millisecond, before and after *now*, and a value done only outside the window;
//! - a generated shop, rules written as users write them, windows that cut days, three *now*s;
//! - proptest: small random timelines clustered around *now* and random rules and windows.
//!
//! `recommend` and `recent` of every customer are compared the same way with plain versions
//! (every value's customers from the events, then the README's score; the customer's events
//! walked backwards).

mod fixture;
mod reference;

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::import::{import_ndjson, CollectErrors, ImportOptions};
use audiencedb::ingest::Message;
use audiencedb::model::time::{parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::query::values::cosine_sum;
use audiencedb::query::{TopOrder, TopRequest};
use audiencedb::rules::{self, ExprKind};
use audiencedb::{Config, Customer, Db, Error};
use fixture::{known, Fixture};

const HOUR: i64 = 3_600_000;

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap_or_else(|| panic!("bad date-time {rfc3339}"))
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

/// A value's place in the ranking's tie order: strings (by bytes), then integers, then booleans.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Key {
    fn of(v: &Value) -> Option<Key> {
        match v {
            Value::Str(s) => Some(Key::Str(s.to_string())),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Bool(b) => Some(Key::Bool(*b)),
            _ => None,
        }
    }
}

/// One row as the plain evaluator sees it: value, customers, everyone.
type Row = (Key, u64, u64);

/// The plain evaluator: the audience size and every value's row, ranked, before the limit.
#[allow(clippy::too_many_arguments)] // the request's parts, as `top` takes them
fn plain(
    customers: &[Customer],
    rule: &str,
    event: &str,
    property: &str,
    window: Option<&str>,
    order: TopOrder,
    min: u64,
    now: i64,
) -> (u64, Vec<Row>) {
    let parsed = rules::parse(rule).unwrap();
    let members: BTreeSet<String> = reference::evaluate(&parsed, now, customers)
        .unwrap()
        .into_iter()
        .collect();
    let window_rule = rules::parse(&format!("did x {}", window.unwrap_or("ever"))).unwrap();
    let ExprKind::Event(cond) = window_rule.expr.kind else {
        panic!("not a window: {window:?}");
    };
    let mut who: BTreeMap<Key, BTreeSet<&str>> = BTreeMap::new();
    for c in customers {
        for e in &c.events {
            if e.name != event || !reference::in_window(&cond, e.timestamp, now) {
                continue;
            }
            for (k, v) in &e.properties {
                if k == property {
                    if let Some(key) = Key::of(v) {
                        who.entry(key).or_default().insert(&c.id);
                    }
                }
            }
        }
    }
    let mut rows: Vec<Row> = who
        .into_iter()
        .map(|(k, ids)| {
            let inside = ids.iter().filter(|id| members.contains(**id)).count() as u64;
            (k, inside, ids.len() as u64)
        })
        .filter(|r| r.1 >= min)
        .collect();
    // customers desc (or lift desc: customers / everyone, compared as fractions), then value.
    rows.sort_by(|a, b| {
        let lift = match order {
            TopOrder::Lift => (b.1 * a.2).cmp(&(a.1 * b.2)),
            _ => std::cmp::Ordering::Equal,
        };
        lift.then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0))
    });
    (members.len() as u64, rows)
}

/// Runs `top` and the plain evaluator and fails on any difference. Returns the engine's rows.
#[allow(clippy::too_many_arguments)]
fn compare(
    db: &Db,
    customers: &[Customer],
    rule: &str,
    event: &str,
    property: &str,
    window: Option<&str>,
    order: TopOrder,
    now: i64,
) -> Vec<Row> {
    let mut request = TopRequest::new(rule, event, property);
    request.window = window.map(str::to_owned);
    request.limit = usize::MAX;
    request.order = order;
    let top = db.top(&request, now).unwrap();
    let (audience, expected) = plain(
        customers,
        rule,
        event,
        property,
        window,
        order,
        order.default_min_customers(),
        now,
    );
    let got: Vec<Row> = top
        .rows
        .iter()
        .map(|r| (Key::of(&r.value).unwrap(), r.customers, r.everyone))
        .collect();
    let context = format!("top {rule:?} --event {event} --by {property} --window {window:?} --order {order:?} at {now}");
    assert_eq!(top.audience, audience, "audience size of {context}");
    assert_eq!(got, expected, "rows of {context}");
    assert_eq!(top.all_customers, customers.len() as u64, "{context}");
    for r in &top.rows {
        let share = r.customers as f64 / top.audience as f64;
        assert_eq!(r.share, share, "{context}");
        let lift = share / (r.everyone as f64 / top.all_customers as f64);
        assert_eq!(r.lift, lift, "{context}");
    }
    got
}

/// *now* is 2026-03-15T10:30:00Z; `in last 2 days` starts at 2026-03-13T10:30:00.001Z, so both
/// the 13th and the 15th are cut days.
#[test]
fn cut_days_count_to_the_millisecond() {
    let now = at("2026-03-15T10:30:00Z");
    let start = now - 2 * DAY_MS; // excluded; start + 1 is the first instant inside
    let mut f = Fixture::new();
    for id in ["a", "b", "c", "d", "e"] {
        f.identify(id, if id < "c" { "Gold" } else { "Silver" });
    }
    // a: X exactly at the excluded start, Y one millisecond later: only Y counts.
    f.track("a", "purchased", start, vec![("product", s("X"))]);
    f.track("a", "purchased", start + 1, vec![("product", s("Y"))]);
    // b: on the first cut day, X before the window and Z inside, the same day: only Z counts
    // (the day's events lie on both sides: read from storage).
    f.track("b", "purchased", start - HOUR, vec![("product", s("X"))]);
    f.track("b", "purchased", start + HOUR, vec![("product", s("Z"))]);
    // c: whole day inside, and X at now exactly (counts) and one millisecond after (does not).
    f.track("c", "purchased", now - DAY_MS, vec![("product", s("X"))]);
    f.track("c", "purchased", now, vec![("product", s("Y"))]);
    f.track("c", "purchased", now + 1, vec![("product", s("W"))]);
    // d: only outside the window, on both cut days.
    f.track("d", "purchased", start - 1, vec![("product", s("V"))]);
    f.track("d", "purchased", now + HOUR, vec![("product", s("V"))]);
    // e: integer and boolean values, and a float nobody counts.
    f.track(
        "e",
        "purchased",
        now - HOUR,
        vec![("product", Value::Int(7))],
    );
    f.track(
        "e",
        "purchased",
        now - HOUR,
        vec![("product", Value::Bool(true))],
    );
    let customers = f.customers();
    let rows = compare(
        &f.db,
        &customers,
        "tier = Gold",
        "purchased",
        "product",
        Some("in last 2 days"),
        TopOrder::Customers,
        now,
    );
    // Hand-computed: the Gold audience is a and b.
    assert_eq!(
        rows,
        vec![(Key::Str("Y".into()), 1, 2), (Key::Str("Z".into()), 1, 1),]
    );
    let mut everyone = TopRequest::new("everyone", "purchased", "product");
    everyone.window = Some("in last 2 days".into());
    let top = f.db.top(&everyone, now).unwrap();
    let got: Vec<(Value, u64)> = top
        .rows
        .iter()
        .map(|r| (r.value.clone(), r.customers))
        .collect();
    assert_eq!(
        got,
        vec![
            (s("Y"), 2),
            (s("X"), 1),
            (s("Z"), 1),
            (Value::Int(7), 1),
            (Value::Bool(true), 1),
        ]
    );
    for window in [None, Some("in last 2 days"), Some("since 2026-03-14")] {
        compare_personal(&f.db, &customers, "purchased", window, now);
    }
    // Ever, and at a *now* a day later (W and V's second event now count).
    for (window, now) in [(None, now), (Some("since 2026-03-14"), now + DAY_MS)] {
        for order in [TopOrder::Customers, TopOrder::Lift] {
            compare(
                &f.db,
                &customers,
                "tier = Gold",
                "purchased",
                "product",
                window,
                order,
                now,
            );
            compare(
                &f.db,
                &customers,
                "everyone",
                "purchased",
                "product",
                window,
                order,
                now,
            );
        }
    }
}

#[test]
fn unindexed_properties_are_a_typed_error_and_unknown_names_warn() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("db"));
    config.value_bound = 3;
    let db = Db::open_with(config).unwrap();
    let now = at("2026-03-15T10:30:00Z");
    let mut messages = Vec::new();
    for (i, p) in ["A", "B", "C", "D"].iter().enumerate() {
        messages.push(Message::track(
            format!("c{i}"),
            "viewed",
            vec![
                ("product".into(), s(p)),
                ("price".into(), Value::Float(9.5)),
            ],
            Some(now - HOUR),
        ));
    }
    db.ingest(messages).unwrap();
    let err = db
        .top(&TopRequest::new("everyone", "viewed", "product"), now)
        .unwrap_err();
    let Error::NotIndexed { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("more than 3 distinct values"), "{message}");
    assert!(message.contains("Config::value_bound"), "{message}");
    let err = db
        .top(&TopRequest::new("everyone", "viewed", "price"), now)
        .unwrap_err();
    assert!(matches!(err, Error::NotIndexed { .. }), "{err:?}");
    assert!(err.to_string().contains("float"), "{err}");
    // Unknown names: no rows, the rule language's warnings.
    let top = db
        .top(&TopRequest::new("everyone", "viewd", "product"), now)
        .unwrap();
    assert!(top.rows.is_empty());
    let words: Vec<String> = top.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        words,
        vec!["no event 'viewd' in this store; did you mean 'viewed'?"]
    );
    let top = db
        .top(&TopRequest::new("everyone", "viewed", "prodcut"), now)
        .unwrap();
    assert!(top.rows.is_empty());
    assert_eq!(top.warnings.len(), 1, "{:?}", top.warnings);
    assert!(
        top.warnings[0].to_string().contains("'product'"),
        "{:?}",
        top.warnings
    );
    // A bad window is bad input.
    let mut bad = TopRequest::new("everyone", "viewed", "product");
    bad.window = Some("in lst 3 days".into());
    assert!(matches!(db.top(&bad, now), Err(Error::InvalidInput(_))));
    bad.window = Some("in last 3 days and tier = Gold".into());
    assert!(matches!(db.top(&bad, now), Err(Error::InvalidInput(_))));
}

/// A generated shop (in time order), rules as users write them, windows cutting days.
#[test]
fn a_generated_shop() {
    use audiencedb::gen::{generate, GenConfig};
    let end = at("2026-01-01T00:00:00Z");
    let config = GenConfig {
        customers: 400,
        seed: 21,
        days: 200,
        end,
        both_ids_percent: 0,
    };
    let mut bytes = Vec::new();
    generate(&config, &mut bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(Config::new(dir.path().join("db"))).unwrap();
    let mut errors = CollectErrors::default();
    import_ndjson(&db, &bytes[..], &ImportOptions::default(), &mut errors).unwrap();
    assert!(errors.0.is_empty(), "{:?}", errors.0.first());
    let ids: BTreeSet<String> = std::str::from_utf8(&bytes)
        .unwrap()
        .lines()
        .map(|l| Message::from_json_line(l).unwrap().customer.to_string())
        .collect();
    let customers = known(&db, &ids);
    let rules = [
        "purchased product X",
        "purchased at least 2 times in last 90 days",
        "viewed in last 7 days and not purchased in last 30 days",
        "everyone",
    ];
    let asks = [
        ("purchased", "product", Some("in last 90 days")),
        ("viewed", "category", Some("in last 36 hours")),
        (
            "viewed",
            "product",
            Some("between 2025-11-03 and 2025-12-20T13:14:15Z"),
        ),
        ("purchased", "product", None),
    ];
    let nows = [end, end - 40 * DAY_MS - 5 * HOUR - 17, end - 3 * DAY_MS + 1];
    let mut nonempty = 0;
    for now in nows {
        for rule in rules {
            for (event, property, window) in asks {
                for order in [TopOrder::Customers, TopOrder::Lift] {
                    let rows = compare(&db, &customers, rule, event, property, window, order, now);
                    nonempty += usize::from(!rows.is_empty());
                }
            }
        }
        let (scored, seen) =
            compare_personal(&db, &customers, "purchased", Some("in last 90 days"), now);
        assert!(scored > 5 && seen > 30, "{scored} {seen}");
        compare_personal(&db, &customers, "viewed", Some("in last 36 hours"), now);
    }
    assert!(nonempty > 50, "{nonempty}");
}

// ---------- recommend and recent ----------

/// Every value's customers in the window, from the events.
fn plain_who<'c>(
    customers: &'c [Customer],
    (event, property, window): (&str, &str, Option<&str>),
    now: i64,
) -> BTreeMap<Key, BTreeSet<&'c str>> {
    let window_rule = rules::parse(&format!("did x {}", window.unwrap_or("ever"))).unwrap();
    let ExprKind::Event(cond) = window_rule.expr.kind else {
        panic!("not a window: {window:?}");
    };
    let mut who: BTreeMap<Key, BTreeSet<&str>> = BTreeMap::new();
    for c in customers {
        for e in &c.events {
            if e.name == event && reference::in_window(&cond, e.timestamp, now) {
                for (k, v) in &e.properties {
                    if let (true, Some(key)) = (k == property, Key::of(v)) {
                        who.entry(key).or_default().insert(&c.id);
                    }
                }
            }
        }
    }
    who
}

/// The plain `recommend` from [`plain_who`]: the customer's own values, then the README's
/// score of every other value; the most popular values for a customer with none.
fn plain_recommend(
    who: &BTreeMap<Key, BTreeSet<&str>>,
    all: usize,
    id: &str,
    limit: usize,
) -> (Vec<(Key, f64)>, bool) {
    let own: Vec<&Key> = who
        .iter()
        .filter(|(_, s)| s.contains(id))
        .map(|(k, _)| k)
        .collect();
    let mut scored: Vec<(Key, f64)> = if own.is_empty() {
        who.iter()
            .map(|(k, s)| (k.clone(), s.len() as f64 / all as f64))
            .collect()
    } else {
        who.iter()
            .filter(|(k, _)| !own.contains(k))
            .map(|(k, s)| {
                let score = cosine_sum(own.iter().map(|h| {
                    let mine = &who[*h];
                    (
                        mine.intersection(s).count() as u64,
                        mine.len() as u64,
                        s.len() as u64,
                    )
                }));
                (k.clone(), score)
            })
            .filter(|(_, score)| *score > 0.0)
            .collect()
    };
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    (scored, own.is_empty())
}

/// The plain `recent`: the customer's events of the kind up to *now*, latest first, each value
/// once.
fn plain_recent(c: &Customer, event: &str, property: &str, limit: usize, now: i64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in c.events.iter().rev() {
        if e.name != event || e.timestamp > now {
            continue;
        }
        for (k, v) in &e.properties {
            if k == property
                && !matches!(v, Value::List(_))
                && !out.contains(v)
                && out.len() < limit
            {
                out.push(v.clone());
            }
        }
    }
    out
}

/// `recommend` and `recent` of every customer against the plain ones.
fn compare_personal(
    db: &Db,
    customers: &[Customer],
    event: &str,
    window: Option<&str>,
    now: i64,
) -> (usize, usize) {
    let (mut scored, mut seen) = (0, 0);
    let who = plain_who(customers, (event, "product", window), now);
    for c in customers {
        let got = db
            .recommend(&c.id, event, "product", window, 5, now)
            .unwrap();
        let (expected, popular) = plain_recommend(&who, customers.len(), &c.id, 5);
        let got_rows: Vec<(Key, f64)> = got
            .values
            .iter()
            .map(|s| (Key::of(&s.value).unwrap(), s.score))
            .collect();
        assert_eq!(
            got_rows, expected,
            "recommend {} --event {event} --window {window:?} at {now}",
            c.id
        );
        assert_eq!(got.popular, popular, "{}", c.id);
        scored += usize::from(!popular && !got.values.is_empty());
        let (recent, _) = db.recent(&c.id, event, "product", 3, now).unwrap();
        let recent: Vec<Value> = recent.into_iter().map(|r| r.value).collect();
        assert_eq!(
            recent,
            plain_recent(c, event, "product", 3, now),
            "recent {} --event {event} at {now}",
            c.id
        );
        seen += usize::from(!recent.is_empty());
    }
    (scored, seen)
}

mod random {
    use super::*;
    use fixture::Fixture;
    use proptest::prelude::*;

    const NOW: &str = "2026-03-15T10:30:00Z";

    /// An event of `viewed` or `purchased` at an offset from *now* (up to 3 days either side,
    /// in hours and milliseconds), with a product.
    fn event() -> impl Strategy<Value = (usize, bool, i64, usize)> {
        (
            0usize..8,
            any::<bool>(),
            prop_oneof![
                (-72i64..24).prop_map(|h| h * HOUR),
                (-3 * DAY_MS..DAY_MS),
                (-2i64..=2).prop_map(|d| d * DAY_MS),
                (-2i64..=2).prop_map(|d| d * DAY_MS + 1),
            ],
            0usize..6,
        )
    }

    const PRODUCTS: [&str; 6] = ["X", "Y", "Z", "7", "true", "W"];

    fn product(i: usize) -> Value {
        match i {
            3 => Value::Int(7),
            4 => Value::Bool(true),
            _ => s(PRODUCTS[i]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            ..ProptestConfig::default()
        })]

        #[test]
        fn top_equals_the_plain_evaluator(
            events in proptest::collection::vec(event(), 0..40),
            tiers in proptest::collection::vec(any::<bool>(), 8),
            rule in 0usize..5,
            window in 0usize..6,
            now_shift in prop_oneof![Just(0i64), Just(-10 * HOUR - 30 * 60_000), Just(13 * HOUR + 29 * 60_000 + 59_999)],
            lift in any::<bool>(),
            later in proptest::collection::vec(event(), 0..12),
            deleted in proptest::option::of(0usize..8),
        ) {
            let now = at(NOW) + now_shift;
            let mut f = Fixture::new();
            for (i, gold) in tiers.iter().enumerate() {
                f.identify(&format!("c{i}"), if *gold { "Gold" } else { "Silver" });
            }
            let mut batch = Vec::new();
            for (cust, purchased, offset, p) in &events {
                let name = if *purchased { "purchased" } else { "viewed" };
                batch.push(Message::track(
                    format!("c{cust}"),
                    name,
                    vec![("product".into(), product(*p))],
                    Some(now + offset),
                ));
            }
            if !batch.is_empty() {
                f.ingest(batch);
            }
            let rules = [
                "everyone",
                "tier = Gold",
                "viewed product X in last 2 days",
                "purchased at least 2 times and not tier = Gold",
                "not viewed in last 1 day",
            ];
            let windows = [
                None,
                Some("in last 2 days"),
                Some("in last 30 hours"),
                Some("since 2026-03-13T12:00:00Z"),
                Some("between 2026-03-13 and 2026-03-14"),
                Some("before 1 day ago"),
            ];
            let order = if lift { TopOrder::Lift } else { TopOrder::Customers };
            let customers = f.customers();
            for event in ["viewed", "purchased"] {
                compare(&f.db, &customers, rules[rule], event, "product", windows[window], order, now);
                compare_personal(&f.db, &customers, event, windows[window], now);
            }
            // More events and a deletion after the first answers: whatever the first answers
            // kept (each value's customers over whole days) must follow.
            let batch: Vec<Message> = later
                .iter()
                .map(|(cust, purchased, offset, p)| {
                    let name = if *purchased { "purchased" } else { "viewed" };
                    Message::track(format!("c{cust}"), name, vec![("product".into(), product(*p))], Some(now + offset))
                })
                .collect();
            if !batch.is_empty() {
                f.ingest(batch);
            }
            if let Some(c) = deleted {
                let _ = f.db.delete_customer(&format!("c{c}"));
            }
            let customers = f.customers();
            for event in ["viewed", "purchased"] {
                compare(&f.db, &customers, rules[rule], event, "product", windows[window], order, now);
                compare_personal(&f.db, &customers, event, windows[window], now);
            }
        }
    }
}
