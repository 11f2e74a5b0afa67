//! Loaded lists (`audience load`): member lists made elsewhere, by external id, saved as
//! audiences. Checked through the library against what the ids say: `in audience` in queries and
//! in other saved audiences, ids that arrive later, merges of ids on and off the list, deletes,
//! reloads with their entries and exits, what survives a restart, `verify`, and the refusals.

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::{Clock, Config, Db};

const DAY: i64 = 86_400_000;

fn t0() -> i64 {
    parse_rfc3339("2026-03-15T10:30:00Z").unwrap()
}

fn open(dir: &std::path::Path, clock: &Clock) -> Db {
    let mut config = Config::new(dir.join("db"));
    config.clock = clock.clone();
    Db::open_with(config).unwrap()
}

fn tier(db: &Db, id: &str, tier: &str) {
    db.identify(id, vec![("tier".into(), Some(Value::Str(tier.into())))])
        .unwrap();
}

fn line(db: &Db, json: &str) {
    db.ingest(vec![Message::from_json_line(json).unwrap()])
        .unwrap();
}

fn members(db: &Db, name: &str) -> Vec<String> {
    db.member_ids(&db.audience_members(name).unwrap()).unwrap()
}

fn query(db: &Db, rule: &str) -> Vec<String> {
    db.member_ids(&db.query(rule, t0()).unwrap()).unwrap()
}

/// Every change in the feed, as (audience, customer, entered).
fn feed(db: &Db) -> Vec<(String, String, bool)> {
    db.changes_since(0, 10_000)
        .unwrap()
        .into_iter()
        .map(|c| (c.audience, c.customer, c.entered))
        .collect()
}

fn verify(db: &Db) {
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn a_loaded_list_is_an_audience_in_rules_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    for (id, t) in [("a", "Gold"), ("b", "Silver"), ("c", "Gold"), ("d", "Gold")] {
        tier(&db, id, t);
    }
    db.define_audience("gold", "tier = Gold").unwrap();
    // Duplicates count once; "zz" is no customer yet.
    let info = db.load_audience("vips", ["a", "b", "a", "zz"]).unwrap();
    assert_eq!((info.size, info.list_ids), (2, Some(3)));
    assert_eq!(info.rule, "(a loaded list of 3 ids)");
    assert_eq!(members(&db, "vips"), ["a", "b"]);
    db.define_audience("gold_vips", "in audience vips and in audience gold")
        .unwrap();
    assert_eq!(members(&db, "gold_vips"), ["a"]);
    assert_eq!(
        query(&db, "in audience vips or tier = Gold"),
        ["a", "b", "c", "d"]
    );
    assert_eq!(query(&db, "not in audience vips"), ["c", "d"]);
    assert_eq!(db.audiences_of("a").unwrap(), ["gold", "gold_vips", "vips"]);
    assert_eq!(db.audiences_of("c").unwrap(), ["gold"]);
    // `why` names the list.
    let why = db.why("b", "in audience vips", t0()).unwrap();
    assert!(why.root.holds, "{why:?}");
    assert!(
        format!("{why:?}").contains("named by the loaded list vips"),
        "{why:?}"
    );
    // A rule cannot be saved over a list, nor a list over a rule; nothing changes.
    let err = db.define_audience("vips", "tier = Gold").unwrap_err();
    assert!(err.to_string().contains("loaded list"), "{err}");
    let err = db.diff_audience("vips", "tier = Gold").unwrap_err();
    assert!(err.to_string().contains("loaded list"), "{err}");
    let err = db.load_audience("gold", ["c"]).unwrap_err();
    assert!(err.to_string().contains("has a rule"), "{err}");
    assert_eq!(members(&db, "gold"), ["a", "c", "d"]);
    assert_eq!(members(&db, "vips"), ["a", "b"]);
    // No SQL for a list: it came from the warehouse.
    let err = db
        .sql(
            "in audience vips",
            audiencedb::query::sql::Dialect::DuckDb,
            t0(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("loaded list"), "{err}");
    verify(&db);
}

#[test]
fn ids_that_arrive_or_merge_later_join_and_deletes_leave() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    tier(&db, "known", "Gold");
    tier(&db, "user-2", "Gold");
    db.load_audience("list", ["known", "later", "anon-1", "user-3", "anon-4"])
        .unwrap();
    db.define_audience("gold_listed", "in audience list and tier = Gold")
        .unwrap();
    assert_eq!(members(&db, "list"), ["known"]);

    // A customer whose id is on the list arrives: in the list, and in what uses it.
    tier(&db, "later", "Gold");
    assert_eq!(members(&db, "list"), ["known", "later"]);
    assert_eq!(members(&db, "gold_listed"), ["known", "later"]);

    // An anonymous visitor on the list signs in as a customer who was not: the merged customer
    // is in the list by the id it took in.
    line(
        &db,
        r#"{"type":"track","anonymousId":"anon-1","event":"viewed","timestamp":"2026-03-14T10:00:00Z"}"#,
    );
    assert!(members(&db, "list").contains(&"anon-1".to_owned()));
    line(
        &db,
        r#"{"type":"identify","userId":"user-2","anonymousId":"anon-1","timestamp":"2026-03-14T11:00:00Z"}"#,
    );
    assert_eq!(members(&db, "list"), ["known", "later", "user-2"]);
    assert_eq!(members(&db, "gold_listed"), ["known", "later", "user-2"]);
    // A listed id that arrives already merged: a new anonymous id tied to "user-3" at once.
    line(
        &db,
        r#"{"type":"identify","userId":"user-3","anonymousId":"anon-9","traits":{"tier":"Gold"},"timestamp":"2026-03-14T12:00:00Z"}"#,
    );
    assert_eq!(members(&db, "list"), ["known", "later", "user-2", "user-3"]);
    // A known customer not on the list takes in a listed id no one had yet.
    tier(&db, "user-4", "Gold");
    assert!(!members(&db, "list").contains(&"user-4".to_owned()));
    line(
        &db,
        r#"{"type":"identify","userId":"user-4","anonymousId":"anon-4","timestamp":"2026-03-14T12:30:00Z"}"#,
    );
    assert_eq!(
        members(&db, "list"),
        ["known", "later", "user-2", "user-3", "user-4"]
    );
    assert_eq!(
        members(&db, "gold_listed"),
        ["known", "later", "user-2", "user-3", "user-4"]
    );
    db.delete_customer("user-4").unwrap();
    // An unlisted anonymous id merged into a listed customer changes nothing.
    line(
        &db,
        r#"{"type":"track","anonymousId":"anon-5","event":"viewed","timestamp":"2026-03-14T10:00:00Z"}"#,
    );
    line(
        &db,
        r#"{"type":"alias","previousId":"anon-5","userId":"known","timestamp":"2026-03-14T13:00:00Z"}"#,
    );
    assert_eq!(members(&db, "list"), ["known", "later", "user-2", "user-3"]);

    // A deleted customer leaves, and its ids leave the list: the same id later is not listed.
    db.delete_customer("later").unwrap();
    assert_eq!(members(&db, "list"), ["known", "user-2", "user-3"]);
    assert_eq!(db.audience("list").unwrap().list_ids, Some(3));
    tier(&db, "later", "Gold");
    assert_eq!(members(&db, "list"), ["known", "user-2", "user-3"]);
    // Deleting a merged customer takes every one of its ids off the list.
    db.delete_customer("user-2").unwrap();
    assert_eq!(db.audience("list").unwrap().list_ids, Some(2));
    assert_eq!(members(&db, "gold_listed"), ["known", "user-3"]);

    let entered: Vec<(String, bool)> = feed(&db)
        .into_iter()
        .filter(|(a, _, _)| a == "list")
        .map(|(_, c, e)| (c, e))
        .collect();
    assert_eq!(
        entered,
        [
            ("known".to_owned(), true),
            ("later".to_owned(), true),
            ("anon-1".to_owned(), true),
            ("anon-1".to_owned(), false),
            ("user-2".to_owned(), true),
            ("user-3".to_owned(), true),
            ("user-4".to_owned(), true),
            ("user-4".to_owned(), false),
            ("later".to_owned(), false),
            ("user-2".to_owned(), false),
        ]
    );
    verify(&db);

    // All of it after a compaction (which rewrites every record) and a restart.
    db.compact().unwrap();
    let db = open(dir.path(), &clock);
    assert_eq!(members(&db, "list"), ["known", "user-3"]);
    assert_eq!(db.audience("list").unwrap().list_ids, Some(2));
    assert_eq!(members(&db, "gold_listed"), ["known", "user-3"]);
    verify(&db);
    // The deleted customers' ids are nowhere in the folder's files any more.
    let report = audiencedb::erase::find_traces(db, &[b"user-2", b"anon-1"]).unwrap();
    assert!(report.traces.is_empty(), "{:?}", report.traces);
    assert!(report.records > 0);
}

#[test]
fn loading_again_replaces_the_ids_and_what_uses_them_follows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    for id in ["a", "b", "c"] {
        tier(&db, id, "Gold");
    }
    db.load_audience("list", ["a", "b"]).unwrap();
    db.define_audience("unlisted", "not in audience list")
        .unwrap();
    assert_eq!(members(&db, "unlisted"), ["c"]);
    let before = db.feed_position();
    clock.advance(DAY);
    let info = db.load_audience("list", ["b", "c"]).unwrap();
    assert_eq!((info.size, info.list_ids), (2, Some(2)));
    assert_eq!(members(&db, "list"), ["b", "c"]);
    assert_eq!(members(&db, "unlisted"), ["a"]);
    let mut changes: Vec<(String, String, bool)> = db
        .changes_since(before, 100)
        .unwrap()
        .into_iter()
        .map(|c| (c.audience, c.customer, c.entered))
        .collect();
    changes.sort();
    let own = |a: &str, c: &str, e: bool| (a.to_owned(), c.to_owned(), e);
    assert_eq!(
        changes,
        [
            own("list", "a", false),
            own("list", "c", true),
            own("unlisted", "a", true),
            own("unlisted", "c", false),
        ]
    );
    // A list in use cannot be dropped; once unused it can, with its ids.
    assert!(db.drop_audience("list").is_err());
    db.drop_audience("unlisted").unwrap();
    db.drop_audience("list").unwrap();
    assert!(db.query("in audience list", t0()).is_err());
    db.load_audience("list", ["a"]).unwrap();
    assert_eq!(members(&db, "list"), ["a"]);
    verify(&db);
}

#[test]
fn bad_lists_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    tier(&db, "a", "Gold");
    db.load_audience("list", ["a"]).unwrap();
    let empty: [&str; 0] = [];
    let long = "x".repeat(100_000);
    for (name, ids, says) in [
        ("list", empty.to_vec(), "no ids"),
        ("list", vec!["a", ""], "empty"),
        ("list", vec!["a", "b\nc"], "line break"),
        ("list", vec!["a", long.as_str()], "long"),
        ("no such name", vec!["a"], "name"),
        ("", vec!["a"], "name"),
    ] {
        let err = db.load_audience(name, ids.clone()).unwrap_err();
        assert!(
            err.to_string().contains(says),
            "{name:?} {:?}: {err}",
            ids.len()
        );
    }
    assert_eq!(members(&db, "list"), ["a"]);
    assert_eq!(db.audience("list").unwrap().list_ids, Some(1));
    assert_eq!(db.audiences().len(), 1);
    verify(&db);
}

/// The list inside rules that need each customer's data checked (counts, `or` with events):
/// the engine's answer against the plain meaning, for every customer.
#[test]
fn lists_inside_exact_checks_agree_with_the_plain_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    let mut listed = Vec::new();
    let mut bought_twice = Vec::new();
    for i in 0..60 {
        let id = format!("c-{i:02}");
        let n = i % 4;
        for k in 0..n {
            db.ingest(vec![Message::track(
                id.as_str(),
                "purchased",
                vec![("amount".into(), Value::Int(10 * (i % 7)))],
                Some(t0() - (k + 1) * DAY),
            )])
            .unwrap();
        }
        tier(&db, &id, if i % 3 == 0 { "Gold" } else { "Silver" });
        if i % 5 < 2 {
            listed.push(id.clone());
        }
        if n >= 2 {
            bought_twice.push(id);
        }
    }
    db.load_audience("list", listed.iter().map(String::as_str))
        .unwrap();
    let rule = "in audience list or purchased at least 2 times in last 7 days";
    let mut want: Vec<String> = listed.iter().chain(&bought_twice).cloned().collect();
    want.sort();
    want.dedup();
    assert_eq!(query(&db, rule), want);
    db.define_audience("either", rule).unwrap();
    assert_eq!(members(&db, "either"), want);
    let rule = "not in audience list and purchased where amount >= 30 in last 2 days";
    let got = query(&db, rule);
    let want: Vec<String> = (0..60)
        .filter(|i| i % 5 >= 2 && i % 4 >= 1 && 10 * (i % 7) >= 30)
        .map(|i| format!("c-{i:02}"))
        .collect();
    assert_eq!(got, want);
    verify(&db);
}
