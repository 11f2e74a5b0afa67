//! Counts and aggregates answered from the per-day rollups: the answers equal the naive reference
//! evaluator's (`tests/reference/mod.rs`), the rollups really decide (few or no customers are
//! read from storage), sums whose rounding depends on the order of addition are left to the exact
//! check, and the rollups kept live equal those after a reopen, a crash, a rebuild, and the
//! automatic rebuild of a snapshot written in an older layout.

mod reference;

mod raw_sled;

use audiencedb::ingest::Message;
use audiencedb::model::time::{parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::{Config, Db};

const HOUR: i64 = 3_600_000;

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

fn open(path: &std::path::Path) -> Db {
    Db::open_with(Config::new(path)).unwrap()
}

fn track(db: &Db, id: &str, event: &str, ts: i64, amount: Option<Value>) {
    let props = amount.map(|v| ("amount".into(), v)).into_iter().collect();
    db.ingest(vec![Message::track(id, event, props, Some(ts))])
        .unwrap();
}

/// The engine's members of `rule` at `now`, checked against the reference evaluator.
fn members(db: &Db, ids: &[String], rule: &str, now: i64) -> Vec<String> {
    let customers: Vec<_> = ids
        .iter()
        .filter_map(|id| db.customer(id).unwrap())
        .collect();
    let parsed = audiencedb::rules::parse(rule).unwrap();
    let expected = reference::evaluate(&parsed, now, &customers).unwrap();
    let got = db.member_ids(&db.query(rule, now).unwrap()).unwrap();
    assert_eq!(got, expected, "{rule} at {now}: engine vs reference");
    got
}

/// Customers the bounds leave to the exact check (the root's gap).
fn checked(db: &Db, rule: &str, now: i64) -> u64 {
    let e = db.explain(rule, now).unwrap();
    e.root.maybe - e.root.sure
}

/// A shop of 60 customers: customer i purchases i % 5 times a day on days 1..=i % 7 before
/// *now*'s day, at 09:00 + k minutes, amounts `i + k + 0.25`; every third also visits.
fn shop(db: &Db) -> Vec<String> {
    let today = at("2026-03-15T00:00:00Z");
    let mut ids = Vec::new();
    let mut batch = Vec::new();
    for i in 0..60i64 {
        let id = format!("c{i:02}");
        for d in 1..=(i % 7) {
            for k in 0..(i % 5) {
                let ts = today - d * DAY_MS + 9 * HOUR + k * 60_000;
                let amount = Value::Float((i + k) as f64 + 0.25);
                batch.push(Message::track(
                    id.clone(),
                    "purchased",
                    vec![("amount".into(), amount)],
                    Some(ts),
                ));
            }
            if i % 3 == 0 {
                batch.push(Message::track(
                    id.clone(),
                    "visited",
                    vec![],
                    Some(today - d * DAY_MS + 20 * HOUR),
                ));
            }
        }
        ids.push(id);
    }
    db.ingest(batch).unwrap();
    ids
}

#[test]
fn counts_and_aggregates_come_from_the_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let ids = shop(&db);
    // Mid-day now: the window's first day is cut at 10:30, after every purchase of that day (at
    // 09:00–09:04), so the cut day is decided too.
    let now = at("2026-03-15T10:30:00Z");
    let rules = [
        "purchased at least 3 times in last 3 days",
        "purchased at most 4 times in last 5 days",
        "purchased exactly 3 times in last 2 days",
        "purchased count != 0 in last 1 week",
        "purchased count < 2 in last 4 days",
        "purchased sum(amount) > 100 in last 5 days",
        "purchased sum(amount) <= 20 in last 5 days",
        "purchased avg(amount) >= 30 in last 7 days",
        "purchased min(amount) < 10.25 ever",
        "purchased max(amount) >= 60.25 in last 30 days",
        "visited at least 3 times in last 7 days and not purchased in last 2 days",
        // Presence on a cut day comes from the spans too.
        "visited in last 2 days and not purchased in last 3 days",
    ];
    for rule in rules {
        let got = members(&db, &ids, rule, now);
        assert_eq!(checked(&db, rule, now), 0, "{rule}: read from storage");
        // Something to decide: neither nobody nor everyone.
        if !rule.starts_with("visited") {
            assert!(!got.is_empty() && got.len() < ids.len(), "{rule}: {got:?}");
        }
    }
    // Hand-computed: c04 purchases 4 times a day at 09:00 on the 4 days before today; the last
    // 3 days start at 10:30 three days ago, so they hold two of those days: 8 times.
    let three = members(&db, &ids, "purchased exactly 8 times in last 3 days", now);
    assert!(three.contains(&"c04".to_owned()), "{three:?}");
}

#[test]
fn cut_days_and_events_after_now() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let now = at("2026-03-15T10:30:00Z");
    let edge = now - 2 * DAY_MS; // the first millisecond of `in last 2 days` is edge + 1
    let ids: Vec<String> = ["in", "out", "both", "late", "plenty"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for ts in [edge + 1, edge + 2, edge + 5_000] {
        track(&db, "in", "purchased", ts, Some(Value::Int(10)));
    }
    for ts in [edge, edge - 1, edge - 5_000] {
        track(&db, "out", "purchased", ts, Some(Value::Int(10)));
    }
    for ts in [edge - 1, edge, edge + 1] {
        track(&db, "both", "purchased", ts, Some(Value::Int(10)));
    }
    for ts in [now, now + 1, now + DAY_MS] {
        track(&db, "late", "purchased", ts, Some(Value::Int(10)));
    }
    for k in 0..4 {
        track(
            &db,
            "plenty",
            "purchased",
            edge - 1 + k,
            Some(Value::Int(10)),
        );
        track(
            &db,
            "plenty",
            "purchased",
            now - HOUR - k,
            Some(Value::Int(10)),
        );
    }
    for rule in [
        "purchased at least 3 times in last 2 days",
        "purchased at least 2 times in last 2 days",
        "purchased exactly 2 times in last 2 days",
        "purchased at most 1 time in last 2 days",
        "purchased sum(amount) >= 30 in last 2 days",
        "purchased sum(amount) = 20 in last 2 days",
        "purchased avg(amount) = 10 in last 2 days",
        "purchased count = 1 ever",
        "purchased count = 3 before 2026-03-13",
        "purchased sum(amount) > 0 between 2026-03-13 and 2026-03-13",
    ] {
        members(&db, &ids, rule, now);
    }
    // `plenty` has 4 events surely inside and more on the cut day: at least 4 needs no reading.
    let rule = "purchased at least 4 times in last 2 days";
    assert_eq!(members(&db, &ids, rule, now), vec!["plenty"]);
    // The spans are kept to 2 seconds: `in`, `out` and `both` have events within 2 s of the
    // window's start, `late` at *now* and 1 ms after it, so they are read; `plenty`, with 4
    // events surely inside and 4 more that may be, is surely not at exactly 2.
    assert_eq!(
        checked(&db, "purchased exactly 2 times in last 2 days", now),
        4
    );
}

#[test]
fn sums_that_depend_on_the_order_of_addition_go_to_the_exact_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let now = at("2026-03-15T10:30:00Z");
    let day = at("2026-03-10T08:00:00Z");
    // Ingested last first: the rollup adds 0.3 + 0.2 + 0.1 = 0.6, the exact check (in time
    // order) 0.1 + 0.2 + 0.3 = 0.6000000000000001.
    for (k, x) in [(2, 0.3), (1, 0.2), (0, 0.1)] {
        track(&db, "a", "purchased", day + k * 1000, Some(Value::Float(x)));
    }
    let exact = 0.1 + 0.2 + 0.3;
    assert_ne!(exact, 0.6);
    let ids = vec!["a".to_owned()];
    assert!(members(&db, &ids, "purchased sum(amount) = 0.6 ever", now).is_empty());
    assert_eq!(
        members(&db, &ids, "purchased sum(amount) > 0.6 ever", now),
        ids
    );
    assert_eq!(
        members(
            &db,
            &ids,
            "purchased sum(amount) = 0.6000000000000001 ever",
            now
        ),
        ids
    );
    assert!(members(&db, &ids, "purchased avg(amount) = 0.2 ever", now).is_empty());
    // The live rollup and a rebuild differ in the last bit of that sum: verify accepts it.
    let report = db.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn text_amounts_are_left_out_and_deleted_customers_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let now = at("2026-03-15T10:30:00Z");
    let ts = at("2026-03-12T12:00:00Z");
    track(&db, "text", "purchased", ts, Some(Value::Str("500".into())));
    track(&db, "text", "purchased", ts + 1, Some(Value::Int(5)));
    track(&db, "none", "purchased", ts, Some(Value::Bool(true)));
    track(&db, "gone", "purchased", ts, Some(Value::Int(900)));
    track(&db, "gone", "purchased", ts + 1, Some(Value::Int(900)));
    db.delete_customer("gone").unwrap();
    let ids: Vec<String> = ["text", "none", "gone"].map(String::from).to_vec();
    assert_eq!(
        members(&db, &ids, "purchased sum(amount) < 6 in last 7 days", now),
        vec!["none", "text"]
    );
    assert_eq!(
        members(&db, &ids, "purchased avg(amount) = 5 in last 7 days", now),
        vec!["text"]
    );
    assert!(members(&db, &ids, "purchased min(amount) > 100 ever", now).is_empty());
    assert_eq!(
        members(&db, &ids, "purchased exactly 2 times in last 7 days", now),
        vec!["text"]
    );
    assert!(db.verify().unwrap().problems.is_empty());
}

#[test]
fn rollups_survive_reopen_crash_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let now = at("2026-03-15T10:30:00Z");
    let rule = "purchased sum(amount) > 100 in last 5 days";
    let (ids, before) = {
        let db = open(&path);
        let ids = shop(&db);
        let before = members(&db, &ids, rule, now);
        (ids, before)
    };
    // A clean reopen loads the snapshot.
    let db = open(&path);
    assert!(db.verify().unwrap().problems.is_empty());
    assert_eq!(members(&db, &ids, rule, now), before);
    // Writes after the snapshot, then a crash: recovery recomputes those customers.
    track(&db, "c01", "purchased", now - HOUR, Some(Value::Int(1000)));
    db.abandon();
    let db = open(&path);
    assert!(db.verify().unwrap().problems.is_empty());
    let after = members(&db, &ids, rule, now);
    assert!(after.contains(&"c01".to_owned()) && !before.contains(&"c01".to_owned()));
    let report = db.rebuild_indexes().unwrap();
    assert!(report.problems.is_empty());
    assert_eq!(members(&db, &ids, rule, now), after);
    assert!(db.verify().unwrap().problems.is_empty());
}

#[test]
fn a_snapshot_of_an_older_layout_is_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let now = at("2026-03-15T10:30:00Z");
    let rule = "purchased at least 3 times in last 5 days";
    let (ids, before) = {
        let db = open(&path);
        let ids = shop(&db);
        let before = members(&db, &ids, rule, now);
        (ids, before)
    };
    // What an older build leaves: the snapshot's families in sled records (no index snapshot
    // file), no layout version record, and no rollup families.
    {
        drop(raw_sled::open(&path));
        let families: Vec<(Vec<u8>, Vec<u8>)> = audiencedb::testing::Store::open(&path)
            .unwrap()
            .index_families()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        let sled_db = raw_sled::open(&path);
        let tree = sled_db.open_tree("audiencedb").unwrap();
        let mut removed = 0;
        for (family, v) in families {
            let key = audiencedb::testing::keys::index(&family);
            if matches!(family.first(), Some(b'S' | b'C' | b'N')) {
                tree.remove(&key).unwrap();
                removed += 1;
            } else {
                tree.insert(key, v).unwrap();
            }
        }
        assert!(removed > 3);
        tree.remove(audiencedb::testing::keys::meta("index_file"))
            .unwrap();
        tree.flush().unwrap();
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("index-snapshot-")
            {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    let db = open(&path);
    assert!(db.verify().unwrap().problems.is_empty());
    assert_eq!(members(&db, &ids, rule, now), before);
    drop(db);
    // The rebuilt snapshot is in the current layout: it loads as is.
    let sled_db = raw_sled::open(&path);
    let tree = sled_db.open_tree("audiencedb").unwrap();
    assert!(tree.get(b"xS").unwrap().is_some());
}

/// `where` on a number without value bitmaps (`Config::value_bound` 0 here, as `amount` at 1M):
/// presence and counts come from the numeric rollups' minimum and maximum per day, exactly;
/// strings, booleans and missing amounts never pass an ordering; cut days stay exact.
#[test]
fn where_on_numbers_comes_from_the_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("db"));
    config.value_bound = 0;
    let db = Db::open_with(config).unwrap();
    let now = at("2026-03-15T10:30:00Z");
    let day = |d: i64, h: i64| at("2026-03-15T00:00:00Z") - d * DAY_MS + h * HOUR;
    type Events = Vec<(i64, Option<Value>)>;
    let cases: Vec<(&str, Events)> = vec![
        // Thresholds equal to a day's minimum or maximum.
        (
            "max100",
            vec![
                (day(3, 9), Some(Value::Int(100))),
                (day(3, 10), Some(Value::Float(20.5))),
            ],
        ),
        (
            "min100",
            vec![
                (day(4, 9), Some(Value::Float(100.0))),
                (day(4, 11), Some(Value::Int(250))),
            ],
        ),
        (
            "below",
            vec![
                (day(2, 9), Some(Value::Float(99.99))),
                (day(5, 9), Some(Value::Int(-100))),
            ],
        ),
        // Text that reads as a number, booleans, nothing: never ordered.
        (
            "text",
            vec![
                (day(2, 9), Some(Value::Str("500".into()))),
                (day(2, 9) + 1, Some(Value::Bool(true))),
                (day(2, 10), None),
            ],
        ),
        (
            "mixed",
            vec![
                (day(1, 8), Some(Value::Str("900".into()))),
                (day(1, 9), Some(Value::Int(100))),
            ],
        ),
        (
            "negative",
            vec![
                (day(6, 9), Some(Value::Float(-0.5))),
                (day(6, 9) + 5, Some(Value::Int(-3))),
            ],
        ),
        // On the window's cut first day (`in last 5 days` starts at 10:30 five days ago).
        ("cut_in", vec![(day(5, 11), Some(Value::Int(150)))]),
        ("cut_out", vec![(day(5, 9), Some(Value::Int(150)))]),
        (
            "cut_both",
            vec![
                (day(5, 9), Some(Value::Int(150))),
                (day(5, 12), Some(Value::Int(5))),
            ],
        ),
        // Beyond 2⁵³ an integer is rounded as f64, but orders the same against a smaller literal.
        ("huge", vec![(day(2, 9), Some(Value::Int((1 << 53) + 1)))]),
        // After now (later that day: the cut day decides it): in no window.
        ("late", vec![(now + 2 * HOUR, Some(Value::Int(1000)))]),
    ];
    let mut ids = Vec::new();
    for (id, events) in &cases {
        for (ts, amount) in events {
            track(&db, id, "purchased", *ts, amount.clone());
        }
        ids.push(id.to_string());
    }
    ids.sort();
    let decided = [
        "purchased where amount >= 100 in last 3 days",
        "purchased where amount > 100 in last 7 days",
        "purchased where amount <= -0.5 ever",
        "purchased where amount < 100 in last 4 days",
        "purchased where amount between 100 and 100 in last 7 days",
        "purchased where amount between -3 and 0 ever",
        "not purchased where amount >= 100.0 in last 7 days",
        "purchased where amount >= 100 at least 2 times in last 7 days",
        "purchased where amount >= 100 exactly 1 time in last 3 days",
        "purchased where amount < 0 count = 2 ever",
        "purchased where amount >= 100 at most 0 times in last 7 days",
    ];
    for rule in decided {
        members(&db, &ids, rule, now);
        assert_eq!(checked(&db, rule, now), 0, "{rule}: read from storage");
    }
    // Hand-computed.
    assert_eq!(
        members(
            &db,
            &ids,
            "purchased where amount >= 100 in last 3 days",
            now
        ),
        vec!["huge", "mixed"]
    );
    assert_eq!(
        members(
            &db,
            &ids,
            "purchased where amount >= 100 in last 5 days",
            now
        ),
        vec!["cut_in", "huge", "max100", "min100", "mixed"]
    );
    assert_eq!(
        members(
            &db,
            &ids,
            "purchased where amount >= 100 at least 2 times ever",
            now
        ),
        vec!["min100"]
    );
    // Only the customer the rollups cannot decide is read: `cut_both`, whose events of the cut
    // day lie on both sides of the window's start.
    assert_eq!(
        checked(&db, "purchased where amount >= 100 in last 5 days", now),
        1
    );
    for rule in [
        "purchased where amount >= 100 in last 5 days",
        "purchased where amount < 100 at least 1 time in last 5 days",
        "purchased where amount between 0 and 1000 exactly 1 time in last 5 days",
        "purchased where amount > 9007199254740992 ever",
        "purchased where amount >= 9007199254740993 ever",
        "purchased where amount >= \"100\" ever",
        "purchased where amount != 100 ever",
        "purchased where amount = 100 ever",
        "purchased where (amount >= 100 and amount < 200) ever",
        "purchased where (amount >= 200 or amount < 0) in last 7 days",
    ] {
        members(&db, &ids, rule, now);
    }
}

/// Random amounts (integers and floats, negative, text, booleans, missing, beyond 2⁵³) at random
/// instants around window edges, and random orderings and ranges with counts: the engine equals
/// the reference evaluator.
mod numeric_where {
    use super::*;
    use proptest::prelude::*;

    fn amount() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            4 => prop::sample::select(vec![-100i64, -3, 0, 5, 99, 100, 101, 250, (1 << 53) + 1])
                .prop_map(|i| Some(Value::Int(i))),
            4 => prop::sample::select(vec![-0.5, 0.0, 99.5, 99.99, 100.0, 100.25, 1e300, f64::NAN])
                .prop_map(|f| Some(Value::Float(f))),
            1 => prop::sample::select(vec!["100", "abc"]).prop_map(|s| Some(Value::Str(s.into()))),
            1 => Just(Some(Value::Bool(true))),
            1 => Just(None),
        ]
    }

    fn instant(now: i64) -> impl Strategy<Value = i64> {
        let today = now - now.rem_euclid(DAY_MS);
        let mut edges = Vec::new();
        for p in [
            now,
            today,
            now - DAY_MS,
            now - 3 * DAY_MS,
            today - 3 * DAY_MS,
            now - 7 * DAY_MS,
        ] {
            edges.extend([p - 2_001, p - 1, p, p + 1, p + 1_999]);
        }
        prop_oneof![
            2 => prop::sample::select(edges),
            1 => (now - 9 * DAY_MS)..(now + DAY_MS),
        ]
    }

    fn rule() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                ">= 100",
                "> 100",
                "<= 100",
                "< 100",
                ">= 99.5",
                "< 0",
                "> -3",
                "<= -100",
                "between 0 and 100",
                "between 100 and 99",
                "between -3 and 99.99",
                ">= 9007199254740993",
            ]),
            prop::sample::select(vec![
                "",
                " at least 2 times",
                " at most 1 time",
                " exactly 2 times",
                " count != 1",
                " count < 3",
                " at least 0 times",
            ]),
            prop::sample::select(vec![
                " ever",
                " in last 1 day",
                " in last 3 days",
                " in last 7 days",
                " in last 1 hour",
                " since 2026-03-12",
                " before 2026-03-14",
                "",
            ]),
            any::<bool>(),
        )
            .prop_map(|(test, freq, window, negated)| {
                let not = if negated { "not " } else { "" };
                format!("{not}purchased where amount {test}{freq}{window}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn numeric_where_equals_the_reference(
            now in prop::sample::select(vec![
                at("2026-03-15T10:30:00Z"),
                at("2026-03-15T00:00:00Z"),
                at("2026-03-15T23:59:59.999Z"),
            ]).no_shrink(),
            events in prop::collection::vec((0usize..6, amount(), 0i64..1), 1..40)
                .prop_flat_map(move |evs| {
                    let n = evs.len();
                    (Just(evs), prop::collection::vec(instant(at("2026-03-15T10:30:00Z")), n))
                }),
            rules in prop::collection::vec(rule(), 1..8),
        ) {
            let (evs, times) = events;
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config::new(dir.path().join("db"));
            config.value_bound = 0;
            let db = Db::open_with(config).unwrap();
            let batch: Vec<Message> = evs
                .iter()
                .zip(&times)
                .map(|((c, amount, _), ts)| {
                    let props = amount.clone().map(|v| ("amount".into(), v)).into_iter().collect();
                    Message::track(format!("c{c}"), "purchased", props, Some(*ts))
                })
                .collect();
            db.ingest(batch).unwrap();
            let ids: Vec<String> = (0..6).map(|c| format!("c{c}")).collect();
            for rule in &rules {
                members(&db, &ids, rule, now);
            }
        }
    }
}

/// Equality on an indexed property on a day the window cuts: a customer whose events of the
/// kind that day all lie inside the window's part (every partial figure of the day's count
/// rollup says so) is decided without reading storage; one with events on both sides, or with
/// partial figures on both sides (written by separate writes), is left to the exact check.
#[test]
fn value_presence_on_a_cut_day_is_decided_by_the_spans() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    let day = at("2026-03-14T00:00:00Z");
    let now = day + DAY_MS + 9 * HOUR; // the window starts at 09:00:00.001 of `day`
    let view = |id: &str, product: &str, hour: i64| {
        Message::track(
            id,
            "viewed",
            vec![("product".into(), Value::Str(product.into()))],
            Some(day + hour * HOUR),
        )
    };
    db.ingest(vec![
        view("a", "X", 10),
        view("b", "X", 8),
        view("b", "Y", 10),
        view("c", "X", 8),
        view("d", "Y", 8),
        view("d", "X", 10),
    ])
    .unwrap();
    // e's figures for the day come in two writes with another customer's in between, so the
    // day's list holds two partials for e: one inside the window (Y at 10:00), one outside (X).
    db.ingest(vec![view("e", "Y", 10)]).unwrap();
    db.ingest(vec![view("f", "Z", 12)]).unwrap();
    db.ingest(vec![view("e", "X", 8)]).unwrap();
    let ids: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(str::to_owned).to_vec();
    let rule = "viewed where product = X in last 1 day";
    assert_eq!(members(&db, &ids, rule, now), ["a", "d"]);
    // a is decided by its span; b, d and e have events on both sides; c has none inside.
    assert_eq!(checked(&db, rule, now), 3);
    assert_eq!(
        members(&db, &ids, "viewed product X in last 1 day", now),
        ["a", "d"]
    );
    assert_eq!(
        members(
            &db,
            &ids,
            "viewed where product in (X, Z) in last 1 day",
            now
        ),
        ["a", "d", "f"]
    );
}

/// Long windows are summed over runs of 8, 64 and 256 days merged by the first query that needs
/// them (`src/index/runs.rs`). Later writes into those days (an event backfilled into a run, a
/// day that had no list before, a deleted customer) are seen by the next query: no stale run is
/// read. Every answer is checked against the reference evaluator, live and after a reopen.
#[test]
fn merged_runs_of_days_follow_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open(&path);
    let now = at("2026-03-15T10:30:00Z");
    let today = now - now.rem_euclid(DAY_MS);
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for i in 0..40i64 {
        let id = format!("c{i:02}");
        for d in 1..420i64 {
            // No purchase on days ending in 3, so that a later one makes a new day list.
            if (d * 7 + i) % 11 == 0 && d % 10 != 3 {
                let amount = Value::Float(((i + d) % 50) as f64 + 0.5);
                batch.push(Message::track(
                    id.clone(),
                    "purchased",
                    vec![("amount".into(), amount)],
                    Some(today - d * DAY_MS + 9 * HOUR + i * 1_000),
                ));
            }
            if (d + i) % 4 == 0 {
                batch.push(Message::track(
                    id.clone(),
                    "visited",
                    vec![],
                    Some(today - d * DAY_MS + 20 * HOUR),
                ));
            }
        }
        ids.push(id);
    }
    db.ingest(batch).unwrap();
    let rules = [
        "purchased sum(amount) > 300 in last 365 days",
        "purchased sum(amount) <= 120 in last 400 days",
        "purchased avg(amount) >= 25 in last 300 days",
        "purchased min(amount) < 4 in last 365 days",
        "purchased max(amount) > 48 in last 200 days",
        "purchased at least 4 times in last 200 days",
        "purchased exactly 3 times in last 90 days",
        "visited at least 30 times in last 365 days",
        "not visited at least 60 times in last 400 days",
    ];
    let check = |db: &Db| {
        for rule in rules {
            members(db, &ids, rule, now);
            // Counts and aggregates of whole days are decided without reading customers.
            assert!(checked(db, rule, now) <= 2, "{rule}: undecided customers");
        }
    };
    check(&db);
    // Into days inside built runs: a new large amount, and a day with no purchase until now.
    track(
        &db,
        "c01",
        "purchased",
        now - 100 * DAY_MS,
        Some(Value::Float(1000.0)),
    );
    track(
        &db,
        "c05",
        "purchased",
        today - 13 * DAY_MS - 64 * DAY_MS,
        Some(Value::Int(-7)),
    );
    track(&db, "c07", "visited", now - 150 * DAY_MS, None);
    check(&db);
    assert!(db.delete_customer("c02").unwrap() > 0);
    check(&db);
    drop(db);
    let db = open(&path);
    check(&db);
}
