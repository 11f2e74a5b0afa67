//! Derived data kept in the folder (issue 20, "cold"): event columns, text columns, runs of days
//! (and their day bitmaps' unions),
//! `bucket(NAME)` splits and unindexed traits' columns stored by the readers that build them and
//! loaded by later processes. Every answer, from
//! records just built, loaded after a reopen, or left stale by writes, deletes, merges and a
//! crash-like drop, equals the reference evaluator's (`tests/reference/mod.rs`); reopened
//! processes really use stored records; a compaction (and so an erasure) leaves none.

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

fn config(path: &std::path::Path) -> Config {
    let mut c = Config::new(path);
    // `query` and `product` get no value bitmaps: `contains` reads text columns.
    c.value_bound = 6;
    c.allow_known_merge = true;
    c
}

fn open(path: &std::path::Path) -> Db {
    Db::open_with(config(path)).unwrap()
}

/// The rules: one of each kind that reads derived data.
const RULES: &[&str] = &[
    "purchased where (category = shoes and amount >= 60) in last 45 days",
    "purchased where ((category = books or category = toys) and amount < 20) at least 2 times in last 90 days",
    "purchased where (not category = shoes) exactly 1 time in last 30 days",
    "purchased sum(amount) > 150 in last 365 days",
    "purchased at least 4 times in last 200 days",
    "viewed max(price) >= 90 ever",
    "viewed avg(price) < 40 in last 300 days",
    "purchased distinct(product) >= 2 in last 90 days",
    "viewed distinct(category) >= 3 in last 30 days",
    "added_to_cart then not purchased within 1 hour in last 30 days",
    "viewed then purchased with same product within 2 days in last 60 days",
    "searched where query contains \"boot\" in last 60 days",
    "searched where query contains \"red\" at least 2 times in last 120 days",
    "first purchased in last 30 days",
    "visited in last 2 hours",
    "not viewed before 20 days ago and viewed in last 20 days",
    "purchased ever and not purchased in last 90 days",
    "bucket(exp) < 37",
    "bucket(exp) >= 60 and purchased in last 90 days",
    "bucket(other) = 4 or bucket(other) between 50 and 70",
];

/// The *now*s every rule is asked at: midnight, and a time that cuts days.
fn nows() -> [i64; 2] {
    [at("2026-11-01T00:00:00Z"), at("2026-10-31T12:34:56.789Z")]
}

/// Every customer id the shop may hold (some deleted or merged away later).
fn ids() -> Vec<String> {
    (0..80).map(|i| format!("c{i}")).collect()
}

/// Every rule at every *now*, asked twice (the event columns are built from the second answer
/// that wants them), each answer against the reference evaluator.
fn check_all(db: &Db, step: &str) {
    let customers: Vec<_> = ids()
        .iter()
        .filter_map(|id| db.customer(id).unwrap())
        .collect();
    for rule in RULES {
        let parsed = audiencedb::rules::parse(rule).unwrap();
        for now in nows() {
            let expected = reference::evaluate(&parsed, now, &customers).unwrap();
            for round in 0..2 {
                let got = db.member_ids(&db.query(rule, now).unwrap()).unwrap();
                assert_eq!(got, expected, "{step}: {rule} at {now}, round {round}");
            }
        }
    }
}

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const CATEGORIES: &[&str] = &["shoes", "books", "toys", "garden", "kids"];
const WORDS: &[&str] = &[
    "red boots",
    "boot laces",
    "blue shirt",
    "red hat",
    "garden hose",
    "toy car",
    "book light",
    "kids boots",
];

/// `n` messages of customers among `custs`, at times within the 300 days before `end`.
fn messages(rng: &mut Lcg, custs: &[usize], n: usize, end: i64) -> Vec<Message> {
    let s = |t: &str| Value::Str(t.into());
    let mut out = Vec::new();
    for _ in 0..n {
        let c = custs[rng.next(custs.len() as u64) as usize];
        let id = format!("c{c}");
        // Recent days more often, so that short windows have data.
        let back = if rng.next(2) == 0 {
            rng.next(10 * DAY_MS as u64)
        } else {
            rng.next(300 * DAY_MS as u64)
        } as i64;
        let ts = end - 1 - back;
        let cat = s(CATEGORIES[rng.next(CATEGORIES.len() as u64) as usize]);
        let product = s(&format!("p{}", rng.next(12)));
        match rng.next(6) {
            0 | 1 => {
                let price = Value::Float(rng.next(10_000) as f64 / 100.0);
                out.push(Message::track(
                    &id,
                    "viewed",
                    vec![
                        ("category".into(), cat),
                        ("price".into(), price),
                        ("product".into(), product.clone()),
                    ],
                    Some(ts),
                ));
                if rng.next(3) == 0 {
                    // A purchase of what was viewed, within a day or two.
                    out.push(Message::track(
                        &id,
                        "purchased",
                        vec![
                            ("amount".into(), Value::Int(rng.next(120) as i64)),
                            ("product".into(), product),
                        ],
                        Some(ts + rng.next(3 * DAY_MS as u64) as i64),
                    ));
                }
            }
            2 => out.push(Message::track(
                &id,
                "purchased",
                vec![
                    ("category".into(), cat),
                    ("amount".into(), Value::Int(rng.next(120) as i64)),
                    ("product".into(), product),
                ],
                Some(ts),
            )),
            3 => {
                out.push(Message::track(&id, "added_to_cart", vec![], Some(ts)));
                if rng.next(2) == 0 {
                    let later = ts + rng.next(2 * HOUR as u64) as i64;
                    out.push(Message::track(&id, "purchased", vec![], Some(later)));
                }
            }
            4 => out.push(Message::track(
                &id,
                "searched",
                vec![(
                    "query".into(),
                    s(&format!(
                        "{} {}",
                        WORDS[rng.next(WORDS.len() as u64) as usize],
                        rng.next(50)
                    )),
                )],
                Some(ts),
            )),
            _ => out.push(Message::track(&id, "visited", vec![], Some(ts))),
        }
    }
    out
}

/// The derived records stored in the folder (`y` records), read with sled directly.
fn stored_derived(path: &std::path::Path) -> usize {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    tree.scan_prefix(b"y").count()
}

/// The stored split `name`'s record, read with sled directly.
fn stored_split(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    let key = [b"yB", name.as_bytes()].concat();
    tree.get(key).unwrap().map(|v| v.to_vec())
}

#[test]
fn stored_derived_data_answers_as_the_reference_through_writes_reopens_and_crashes() {
    audiencedb::testing::journeys_by_columns_from(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let end = at("2026-11-01T00:00:00Z");
    let mut rng = Lcg(7);
    let first: Vec<usize> = (0..60).collect();
    {
        let db = open(&path);
        db.ingest(messages(&mut rng, &first, 1500, end)).unwrap();
        check_all(&db, "built");
    }
    assert!(
        stored_derived(&path) > 20,
        "the readers stored what they built"
    );
    let split = stored_split(&path, "exp").expect("the split is stored");
    assert!(stored_split(&path, "other").is_some());

    // A fresh process answers from the stored records.
    let used = audiencedb::testing::derived_used();
    {
        let db = open(&path);
        check_all(&db, "reopened");
        assert!(
            audiencedb::testing::derived_used() > used + 20,
            "the stored records were used"
        );

        // Writes to days the stored records cover, and new customers; answers follow at once
        // (in memory), and after a clean reopen (the stored records are stale).
        let more: Vec<usize> = (40..75).collect();
        db.ingest(messages(&mut rng, &more, 400, end)).unwrap();
        // A purchase that enters the first rule's audience, on a day its columns cover.
        db.ingest(vec![Message::track(
            "c3",
            "purchased",
            vec![
                ("category".into(), Value::Str("shoes".into())),
                ("amount".into(), Value::Int(99)),
                ("product".into(), Value::Str("p1".into())),
            ],
            Some(end - 5 * DAY_MS),
        )])
        .unwrap();
        check_all(&db, "written");
    }
    // 15 new customers on 60: the split grew by a quarter, and was stored again.
    assert_ne!(stored_split(&path, "exp"), Some(split));
    {
        let db = open(&path);
        check_all(&db, "reopened after writes");
        // A delete and merges (one known customer into another, so their events move).
        db.delete_customer("c5").unwrap();
        db.ingest(vec![
            Message::alias("c7", "c8"),
            Message::alias("c11", "c12"),
        ])
        .unwrap();
        check_all(&db, "deleted and merged");
    }
    {
        let db = open(&path);
        check_all(&db, "reopened after a delete and merges");
        // More writes, then a drop without a clean close (no checkpoint): the next open
        // recomputes the customers the writes touched from the stored data.
        db.ingest(messages(&mut rng, &first, 300, end)).unwrap();
        db.delete_customer("c20").unwrap();
        check_all(&db, "written before the crash");
        db.abandon();
    }
    let used = audiencedb::testing::derived_used();
    {
        let db = open(&path);
        check_all(&db, "reopened after a crash");
        assert!(audiencedb::testing::derived_used() > used);
        // An erasure compacts the folder: no derived record is left (they name customers and
        // their values), and the answers are built again.
        let (deleted, _) = db.erase_customer("c30").unwrap();
        assert!(deleted.is_some());
    }
    assert_eq!(
        stored_derived(&path),
        0,
        "a compaction drops every derived record"
    );
    let db = open(&path);
    check_all(&db, "after the erasure");
    assert!(db.customer("c30").unwrap().is_none());
}

/// A folder of one visit by each of `ids`, in that order, with `gone` deleted, the rules
/// `bucket(exp) = B` asked for every bucket (so that the split is built and stored).
fn visits(path: &std::path::Path, ids: &[String], gone: &[&str]) {
    let db = open(path);
    let now = at("2026-11-01T00:00:00Z");
    let msgs = ids
        .iter()
        .map(|id| Message::track(id, "visited", vec![], Some(now - DAY_MS)))
        .collect();
    db.ingest(msgs).unwrap();
    for id in gone {
        db.delete_customer(id).unwrap();
    }
    db.query("bucket(exp) < 50", now).unwrap();
}

/// Each bucket's members against the reference's hash of every customer's id.
fn check_buckets(db: &Db, step: &str) {
    let now = at("2026-11-01T00:00:00Z");
    let customers: Vec<_> = ids()
        .iter()
        .filter_map(|id| db.customer(id).unwrap())
        .collect();
    for b in 0..100 {
        let rule = format!("bucket(exp) = {b}");
        let parsed = audiencedb::rules::parse(&rule).unwrap();
        let expected = reference::evaluate(&parsed, now, &customers).unwrap();
        let got = db.member_ids(&db.query(&rule, now).unwrap()).unwrap();
        assert_eq!(got, expected, "{step}: {rule}");
    }
}

/// A stored split is used only for the ids it covered: a record carried over from another
/// folder, whose internal ids name other customers or which did not cover a customer alive
/// here, is hashed again, never read.
#[test]
fn a_split_stored_for_other_ids_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ids();
    let reversed: Vec<String> = ids.iter().rev().cloned().collect();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    // `a`: c0..c79 in order, c5 (internal id 5) deleted before the split was built; `b`: the
    // same, c5 kept (alive, not covered); `c`: the ids in the other order, c74 (internal id 5)
    // deleted (every live id covered, but each by another customer's bucket).
    visits(&a, &ids, &["c5"]);
    visits(&b, &ids, &[]);
    visits(&c, &reversed, &["c74"]);
    let record = stored_split(&a, "exp").unwrap();
    for (path, step) in [(&b, "c5 alive here"), (&c, "ids in another order")] {
        {
            let raw = raw_sled::open(path);
            let tree = raw.open_tree("audiencedb").unwrap();
            tree.insert(b"yBexp", record.clone()).unwrap();
            raw.flush().unwrap();
        }
        let db = open(path);
        check_buckets(&db, step);
    }
    // The folder it was built for uses it.
    let used = audiencedb::testing::derived_used();
    let db = open(&a);
    check_buckets(&db, "its own folder");
    assert!(audiencedb::testing::derived_used() > used);
}

/// Trait substrings (`email` has too many values for value bitmaps).
const TRAIT_RULES: &[&str] = &[
    "email contains \"@example.org\"",
    "email contains \"example\"",
    "email contains \"c1\"",
    "not email contains \"shop\"",
    "email contains \"org\" and purchased in last 90 days",
];

const DOMAINS: &[&str] = &["example.org", "example.fi", "shop.com", "mail.example.org"];

/// `n` profile changes of customers among `custs`: a new email (some not strings, some unset).
fn profile_changes(rng: &mut Lcg, custs: &[usize], n: usize) -> Vec<Message> {
    (0..n)
        .map(|_| {
            let c = custs[rng.next(custs.len() as u64) as usize];
            let email = match rng.next(12) {
                0 => None,
                1 => Some(Value::Int(rng.next(100) as i64)),
                _ => Some(Value::Str(
                    format!(
                        "c{c}.{}@{}",
                        rng.next(1000),
                        DOMAINS[rng.next(DOMAINS.len() as u64) as usize]
                    )
                    .into(),
                )),
            };
            Message::identify(format!("c{c}"), vec![("email".into(), email)])
        })
        .collect()
}

/// Every trait rule, twice, against the reference evaluator.
fn check_traits(db: &Db, step: &str) {
    let now = at("2026-11-01T00:00:00Z");
    let customers: Vec<_> = ids()
        .iter()
        .filter_map(|id| db.customer(id).unwrap())
        .collect();
    for rule in TRAIT_RULES {
        let parsed = audiencedb::rules::parse(rule).unwrap();
        let expected = reference::evaluate(&parsed, now, &customers).unwrap();
        for round in 0..2 {
            let got = db.member_ids(&db.query(rule, now).unwrap()).unwrap();
            assert_eq!(got, expected, "{step}: {rule}, round {round}");
        }
    }
}

/// The stored trait columns (`yP` records), read with sled directly.
fn stored_trait_columns(path: &std::path::Path) -> Vec<Vec<u8>> {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    tree.scan_prefix(b"yP")
        .map(|r| r.unwrap().1.to_vec())
        .collect()
}

/// A trait's column is stored by the first reader, used by later processes while no write has
/// been committed since, and read again from the profiles after any write, delete, merge or
/// crash-like drop; a compaction drops it.
#[test]
fn a_stored_trait_column_is_used_only_at_the_generation_it_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let end = at("2026-11-01T00:00:00Z");
    let mut rng = Lcg(11);
    let first: Vec<usize> = (0..60).collect();
    {
        let db = open(&path);
        db.ingest(messages(&mut rng, &first, 600, end)).unwrap();
        db.ingest(profile_changes(&mut rng, &first, 120)).unwrap();
        check_traits(&db, "built");
    }
    let stored = stored_trait_columns(&path);
    assert_eq!(stored.len(), 1, "one trait's column stored");
    let used = audiencedb::testing::derived_used();
    {
        let db = open(&path);
        check_traits(&db, "reopened");
        assert!(
            audiencedb::testing::derived_used() > used,
            "the stored column was used"
        );
        // New emails, new customers, then events only: every write makes the record stale.
        let more: Vec<usize> = (40..75).collect();
        db.ingest(profile_changes(&mut rng, &more, 60)).unwrap();
        check_traits(&db, "profiles written");
    }
    assert_ne!(stored_trait_columns(&path), stored, "read again and stored");
    {
        let db = open(&path);
        check_traits(&db, "reopened after profile writes");
        db.ingest(messages(&mut rng, &more_ids(), 50, end)).unwrap();
    }
    let stored = stored_trait_columns(&path);
    {
        let db = open(&path);
        check_traits(&db, "reopened after events");
        // A delete and merges (the merged customer's email moves, or is kept).
        db.delete_customer("c5").unwrap();
        db.ingest(vec![
            Message::alias("c7", "c8"),
            Message::alias("c61", "c12"),
        ])
        .unwrap();
        check_traits(&db, "deleted and merged");
    }
    assert_ne!(stored_trait_columns(&path), stored);
    {
        let db = open(&path);
        check_traits(&db, "reopened after a delete and merges");
        // Profile writes, then a drop without a clean close.
        db.ingest(profile_changes(&mut rng, &first, 40)).unwrap();
        db.delete_customer("c20").unwrap();
        db.abandon();
    }
    {
        let db = open(&path);
        check_traits(&db, "reopened after a crash");
        let (deleted, _) = db.erase_customer("c30").unwrap();
        assert!(deleted.is_some());
    }
    assert!(stored_trait_columns(&path).is_empty(), "compacted away");
    let db = open(&path);
    check_traits(&db, "after the erasure");
}

/// Replaces the stored trait column (`yP` record) with sled directly.
fn store_trait_column(path: &std::path::Path, record: &[u8]) {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    let key = tree.scan_prefix(b"yP").next().unwrap().unwrap().0;
    tree.insert(key, record).unwrap();
    raw.flush().unwrap();
}

/// A trait's column is stored as is (its text is then the stored bytes, read without a copy);
/// one stored compressed, as earlier builds did, is still used and stored again as is; a
/// damaged one is refused, read again from the profiles and stored again.
#[test]
fn a_stored_trait_column_is_stored_as_is_and_a_damaged_one_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let end = at("2026-11-01T00:00:00Z");
    let mut rng = Lcg(5);
    let first: Vec<usize> = (0..60).collect();
    {
        let db = open(&path);
        db.ingest(messages(&mut rng, &first, 300, end)).unwrap();
        db.ingest(profile_changes(&mut rng, &first, 120)).unwrap();
        check_traits(&db, "built");
    }
    let stored = stored_trait_columns(&path);
    assert_eq!(stored.len(), 1, "one trait's column stored");
    let plain = stored[0].clone();
    assert_eq!(plain[0], 0, "stored as is, not compressed");
    // Compressed as earlier builds stored it: the tag 1, the body's length, an LZ4 block.
    let body = &plain[1..];
    let mut compressed = vec![1u8];
    let mut n = body.len();
    while n >= 0x80 {
        compressed.push((n as u8) | 0x80);
        n >>= 7;
    }
    compressed.push(n as u8);
    compressed.extend_from_slice(&lz4_flex::block::compress(body));
    store_trait_column(&path, &compressed);
    let used = audiencedb::testing::derived_used();
    {
        let db = open(&path);
        check_traits(&db, "stored compressed");
        assert!(
            audiencedb::testing::derived_used() > used,
            "the compressed column was used"
        );
    }
    assert_eq!(
        stored_trait_columns(&path),
        vec![plain.clone()],
        "stored again as is"
    );
    // Damaged: cut, a byte more, an entry's string index past the strings (the last byte).
    let mut past = plain.clone();
    *past.last_mut().unwrap() = 0x7f;
    for (damaged, step) in [
        (plain[..plain.len() - 1].to_vec(), "cut"),
        ([&plain[..], &[0]].concat(), "longer"),
        (past, "an index past the strings"),
    ] {
        store_trait_column(&path, &damaged);
        {
            let db = open(&path);
            check_traits(&db, step);
        }
        // A record used is never stored again: this one was read again from the profiles.
        assert_eq!(
            stored_trait_columns(&path),
            vec![plain.clone()],
            "{step}: read again"
        );
    }
}

fn more_ids() -> Vec<usize> {
    (0..75).collect()
}
