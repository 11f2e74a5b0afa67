//! The store through the library API: ingest, read back, dedup, delete, reopen, recovery, and
//! opening folders that are not databases.

mod raw_sled;

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::testing::{keys, Internals};
use audiencedb::{Config, Db, Error};

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn track(cust: &str, event: &str, product: &str, ts: i64) -> Message {
    Message::track(cust, event, vec![("product".into(), s(product))], Some(ts))
}

#[test]
fn stores_profiles_and_events_and_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    db.identify(
        "c-1",
        vec![
            ("tier".into(), Some(s("Gold"))),
            ("age".into(), Some(Value::Int(34))),
        ],
    )
    .unwrap();
    db.track(
        "c-1",
        "viewed",
        vec![("product".into(), s("X"))],
        Some(2_000),
    )
    .unwrap();
    db.track(
        "c-1",
        "viewed",
        vec![("product".into(), s("Y"))],
        Some(1_000),
    )
    .unwrap();
    db.track("anon-9", "visited", vec![], Some(5_000)).unwrap();

    let c = db.customer("c-1").unwrap().unwrap();
    assert_eq!(
        c.traits,
        Some(vec![
            ("tier".into(), s("Gold")),
            ("age".into(), Value::Int(34))
        ])
    );
    let times: Vec<i64> = c.events.iter().map(|e| e.timestamp).collect();
    assert_eq!(times, [1_000, 2_000], "events come back in time order");
    assert_eq!(c.events[0].properties, vec![("product".into(), s("Y"))]);

    let anon = db.customer("anon-9").unwrap().unwrap();
    assert_eq!(anon.traits, None, "known from events only");
    assert!(db.customer("nobody").unwrap().is_none());

    let schema = db.schema();
    assert_eq!(schema.customers, 2);
    assert_eq!(schema.profiles, 1);
    let viewed = schema.events.iter().find(|e| e.name == "viewed").unwrap();
    assert_eq!((viewed.count, viewed.customers), (2, 1));
    assert_eq!(viewed.properties[0].name, "product");
    assert!(viewed.properties[0].indexed);
    let tier = schema.traits.iter().find(|t| t.name == "tier").unwrap();
    assert_eq!((tier.customers, tier.distinct_values), (1, 1));
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn identify_merges_and_null_removes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    db.identify(
        "c",
        vec![
            ("tier".into(), Some(s("Gold"))),
            ("x".into(), Some(Value::Int(1))),
        ],
    )
    .unwrap();
    db.identify(
        "c",
        vec![("tier".into(), Some(s("Silver"))), ("x".into(), None)],
    )
    .unwrap();
    let c = db.customer("c").unwrap().unwrap();
    assert_eq!(c.traits, Some(vec![("tier".into(), s("Silver"))]));
    let state = db.read();
    let tier = state.catalog.trait_id("tier").unwrap();
    let ti = state.indexes.trait_index(tier).unwrap();
    assert_eq!(
        ti.values.len(),
        1,
        "the Gold bitmap is gone, not left empty"
    );
    drop(state);
    assert!(db.verify().unwrap().is_ok());
}

/// Format 7: a fold adds the message ids it brings a customer as a message-id record of its own,
/// up to eight records, and the fold past that writes their union into one; a write that gives
/// a customer its blocks at once writes the union too. A re-send of any stored message is
/// skipped whichever record holds it, before and after a reopen, and a delete removes them all.
#[test]
fn message_ids_of_many_folds_still_skip_resends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let open = || {
        let mut config = Config::new(&path);
        // Every write folds.
        config.fold_events = 0;
        config.fold_bytes = 0;
        Db::open_with(config).unwrap()
    };
    let records = |db: &Db| {
        db.record_stats()
            .unwrap()
            .into_iter()
            .find(|s| s.kind == "message ids")
            .map_or(0, |s| s.records)
    };
    let msg = |cust: &str, round: i64, i: i64| {
        let mut m = track(cust, "viewed", "X", 1_000 * round + i);
        m.message_id = Some(format!("m-{round}-{i}").into());
        m
    };
    let db = open();
    let mut counts = Vec::new();
    for round in 0..10 {
        let r = db
            .ingest((0..3).map(|i| msg("c", round, i)).collect())
            .unwrap();
        assert_eq!((r.stored, r.duplicates), (3, 0));
        counts.push(records(&db));
        let again: Vec<Message> = (0..=round)
            .flat_map(|r| (0..3).map(move |i| msg("c", r, i)))
            .collect();
        let r = db.ingest(again).unwrap();
        assert_eq!((r.stored, r.duplicates), (0, 3 * (round as u64 + 1)));
    }
    assert_eq!(counts, [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]);
    // Customer "e": three folds of identifies with message ids (no events), then a write of
    // 20 events, which gives it its blocks at once and the union of its ids in one record.
    for round in 0..3 {
        let mut m = Message::identify("e", vec![("tier".into(), Some(s("Gold")))]);
        m.message_id = Some(format!("id-{round}").into());
        assert_eq!(db.ingest(vec![m]).unwrap().stored, 1);
    }
    assert_eq!(records(&db), 2 + 3);
    let burst: Vec<Message> = (0..20).map(|i| msg("e", 50, i)).collect();
    assert_eq!(db.ingest(burst.clone()).unwrap().stored, 20);
    assert_eq!(records(&db), 2 + 1);
    drop(db);
    let db = open();
    let mut again: Vec<Message> = (0..10)
        .flat_map(|r| (0..3).map(move |i| msg("c", r, i)))
        .collect();
    again.extend(burst);
    for round in 0..3 {
        let mut m = Message::identify("e", vec![("tier".into(), Some(s("Gold")))]);
        m.message_id = Some(format!("id-{round}").into());
        again.push(m);
    }
    let r = db.ingest(again).unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 53));
    assert_eq!(db.customer("c").unwrap().unwrap().events.len(), 30);
    assert!(db.verify().unwrap().is_ok());
    db.delete_customer("c").unwrap();
    db.delete_customer("e").unwrap();
    assert_eq!(records(&db), 0);
}

/// Storage knows that the customers the writer made since the folder was opened have no
/// message-id record and no block, and does not search for them, until a batch puts one: a fold
/// in the middle of a session, a write that gives a new customer its blocks at once, a merge.
/// A re-send is skipped in every case: in the write right after the one that made the customer
/// (its ids unfolded), after a fold (its ids in its record), after blocks at once, after a merge
/// of two customers made in the same write, and after a reopen.
#[test]
fn new_customers_resends_are_skipped_before_and_after_a_fold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let open = || {
        let mut config = Config::new(&path);
        config.fold_events = 6;
        config.allow_known_merge = true;
        Db::open_with(config).unwrap()
    };
    let msg = |cust: &str, id: &str, ts: i64| {
        let mut m = track(cust, "viewed", "X", ts);
        m.message_id = Some(id.into());
        m
    };
    let counts = |db: &Db, batch: Vec<Message>| {
        let r = db.ingest(batch).unwrap();
        (r.stored, r.duplicates)
    };
    let db = open();
    // "a" and "b" are new in the first write; "a" comes again in the next.
    assert_eq!(
        counts(&db, vec![msg("a", "a1", 1_000), msg("b", "b1", 1_000)]),
        (2, 0)
    );
    assert_eq!(
        counts(&db, vec![msg("a", "a1", 1_000), msg("a", "a2", 2_000)]),
        (1, 1)
    );
    assert_eq!(db.unfolded().events, 3);
    // Enough events to pass the bound: this write folds the log, "a" and "b" included.
    let many: Vec<Message> = (0..5)
        .map(|i| msg("c", &format!("c{i}"), 3_000 + i))
        .collect();
    assert_eq!(counts(&db, many.clone()), (5, 0));
    assert_eq!(db.unfolded().events, 0, "the write folded");
    assert_eq!(
        counts(&db, vec![msg("a", "a1", 1_000), msg("a", "a2", 2_000)]),
        (0, 2)
    );
    assert_eq!(counts(&db, vec![msg("b", "b1", 1_000)]), (0, 1));
    assert_eq!(counts(&db, many), (0, 5));
    // "d" is new with enough events for its blocks at once; a re-send in the next write.
    let burst: Vec<Message> = (0..20)
        .map(|i| msg("d", &format!("d{i}"), 10_000 + i))
        .collect();
    assert_eq!(counts(&db, burst.clone()), (20, 0));
    assert_eq!(db.unfolded().events, 0, "blocks at once, nothing unfolded");
    assert_eq!(counts(&db, burst[..3].to_vec()), (0, 3));
    // "x" and "y", new in one write, merged in the next; the ids of both are found under "y".
    assert_eq!(
        counts(&db, vec![msg("x", "x1", 500), msg("y", "y1", 600)]),
        (2, 0)
    );
    assert!(db.alias("x", "y").unwrap());
    assert_eq!(
        counts(&db, vec![msg("y", "x1", 500), msg("y", "y1", 600)]),
        (0, 2)
    );
    assert_eq!(db.customer("y").unwrap().unwrap().events.len(), 2);
    assert!(db.verify().unwrap().is_ok());
    drop(db);
    let db = open();
    assert_eq!(
        counts(
            &db,
            vec![
                msg("a", "a1", 1_000),
                msg("a", "a2", 2_000),
                msg("b", "b1", 1_000),
                msg("d", "d19", 10_019),
                msg("y", "x1", 500),
            ]
        ),
        (0, 5)
    );
    assert_eq!(db.customer("a").unwrap().unwrap().events.len(), 2);
    assert_eq!(db.customer("d").unwrap().unwrap().events.len(), 20);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn message_ids_make_resending_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    let batch: Vec<Message> = (0..10)
        .map(|i| {
            let mut m = track("c", "viewed", "X", 1_000 + i);
            m.message_id = Some(format!("m-{}", i % 5).into());
            m
        })
        .collect();
    let r = db.ingest(batch.clone()).unwrap();
    assert_eq!((r.stored, r.duplicates), (5, 5), "repeats within a batch");
    let r = db.ingest(batch).unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 10), "a re-sent batch");
    assert_eq!(db.customer("c").unwrap().unwrap().events.len(), 5);
    // The same message id for another customer is another message.
    let mut other = track("d", "viewed", "X", 1);
    other.message_id = Some("m-0".into());
    assert_eq!(db.ingest(vec![other]).unwrap().stored, 1);
}

#[test]
fn a_format_1_folder_keeps_its_message_ids_and_is_marked_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let with_id = |i: i64| {
        let mut m = track("c", "viewed", "X", 1_000 + i);
        m.message_id = Some(format!("m-{i}").into());
        m
    };
    {
        let db = Db::open(&path).unwrap();
        assert_eq!(db.ingest((0..3).map(with_id).collect()).unwrap().stored, 3);
    }
    // Rewrite the folder as format 1 wrote it: whole 8-byte hashes, format record 1.
    let raw = raw_sled::open(&path);
    let tree = raw.open_tree("audiencedb").unwrap();
    let mut legacy: Vec<u64> = (0..3)
        .map(|i| xxhash_rust::xxh3::xxh3_64(format!("m-{i}").as_bytes()))
        .collect();
    legacy.sort_unstable();
    let bytes: Vec<u8> = legacy.iter().flat_map(|h| h.to_le_bytes()).collect();
    tree.insert(keys::seen(0), bytes).unwrap();
    let mut k = vec![0u8];
    k.extend_from_slice(b"format");
    tree.insert(&k, &1u32.to_be_bytes()[..]).unwrap();
    raw.flush().unwrap();
    drop((tree, raw));

    let db = Db::open(&path).unwrap();
    let r = db.ingest((0..5).map(with_id).collect()).unwrap();
    assert_eq!(
        (r.stored, r.duplicates),
        (2, 3),
        "the old records still tell re-sends"
    );
    assert_eq!(db.customer("c").unwrap().unwrap().events.len(), 5);
    // The new ids wait in the write log with their events; folding them (`compact` folds the
    // log) adds them as a further record, in the current form (format 7), and leaves the old
    // record as it is: both are read.
    db.compact().unwrap();
    {
        let raw = raw_sled::open(&path);
        let tree = raw.open_tree("audiencedb").unwrap();
        assert_eq!(
            tree.get(&k).unwrap().unwrap().as_ref(),
            &audiencedb::testing::FORMAT_VERSION.to_be_bytes()[..]
        );
        assert_eq!(tree.get(keys::seen(0)).unwrap().unwrap().len(), 3 * 8);
        assert_eq!(
            tree.get(keys::seen_chunk(0, 1)).unwrap().unwrap().len(),
            1 + 2 * 6
        );
    }
    let db = Db::open(&path).unwrap();
    let r = db.ingest((0..5).map(with_id).collect()).unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 5));
}

#[test]
fn long_out_of_order_timelines_stay_sorted_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    let mut expected = Vec::new();
    // 1,000 events in ten batches, each batch going back in time, with many equal timestamps.
    for round in 0..10i64 {
        let batch: Vec<Message> = (0..100i64)
            .map(|i| {
                let ts = 1_000_000 - round * 10_000 + (i * 7919) % 300;
                expected.push(ts);
                track("c", "viewed", &format!("p{i}"), ts)
            })
            .collect();
        db.ingest(batch).unwrap();
    }
    // 300 events at one instant: more than a block holds.
    db.ingest((0..300).map(|_| track("c", "burst", "X", 5)).collect())
        .unwrap();
    expected.extend(std::iter::repeat_n(5, 300));
    expected.sort_unstable();
    let got: Vec<i64> = db
        .customer("c")
        .unwrap()
        .unwrap()
        .events
        .iter()
        .map(|e| e.timestamp)
        .collect();
    assert_eq!(got, expected);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn delete_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.identify("gone", vec![("tier".into(), Some(s("Gold")))])
        .unwrap();
    db.identify("kept", vec![("tier".into(), Some(s("Gold")))])
        .unwrap();
    let mut batch: Vec<Message> = (0..500)
        .map(|i| track("gone", "viewed", "X", i * 86_400_000))
        .collect();
    batch.push(track("kept", "viewed", "X", 0));
    for m in batch.iter_mut().enumerate() {
        m.1.message_id = Some(format!("m{}", m.0).into());
    }
    db.ingest(batch).unwrap();
    let internal = db.internal_id("gone").unwrap().unwrap();
    assert_eq!(db.delete_customer("gone").unwrap(), 500);
    assert!(matches!(
        db.delete_customer("gone"),
        Err(Error::NotFound(_))
    ));
    assert!(db.customer("gone").unwrap().is_none());
    assert!(db.export_customer("gone").is_err());

    let check = |db: &Db| {
        let state = db.read();
        let ix = &state.indexes;
        assert!(!ix.everyone.contains(internal));
        assert!(!ix.profiles.contains(internal));
        let tier = state.catalog.trait_id("tier").unwrap();
        let ti = ix.trait_index(tier).unwrap();
        assert!(!ti.set.contains(internal));
        assert!(ti.values.values().all(|b| !b.contains(internal)));
        let viewed = state.catalog.event_id("viewed").unwrap();
        let ei = ix.event_index(viewed).unwrap();
        assert!(ei.days.values().all(|b| !b.contains(internal)));
        assert_eq!(ei.days.len(), 1, "only the kept customer's day is left");
        assert!(ei
            .props
            .values()
            .flat_map(|v| v.values())
            .flat_map(|d| d.days().values())
            .all(|b| !b.contains(internal)));
        let viewed_count = db
            .schema()
            .events
            .iter()
            .find(|e| e.name == "viewed")
            .unwrap()
            .count;
        assert_eq!(viewed_count, 1);
    };
    check(&db);
    assert!(db.verify().unwrap().is_ok());
    drop(db);

    // No record of any kind mentions the customer any more.
    let db = Db::open(&path).unwrap();
    check(&db);
    drop(db);
    let raw = raw_sled::open(&path);
    let tree = raw.open_tree("audiencedb").unwrap();
    let id = internal.to_be_bytes();
    for item in tree.iter() {
        let (k, _) = item.unwrap();
        let about_customer = matches!(
            k[0],
            keys::EXTERNAL | keys::PROFILE | keys::EVENTS | keys::SEEN
        ) && k[1..5] == id;
        assert!(!about_customer, "left behind: {k:?}");
        assert!(!k.ends_with(b"gone"), "id map left behind");
    }
}

#[test]
fn export_is_complete_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    db.identify(
        "c",
        vec![("signup_at".into(), Some(Value::Time(1_738_576_800_000)))],
    )
    .unwrap();
    db.track(
        "c",
        "purchased",
        vec![("amount".into(), Value::Float(19.9))],
        Some(0),
    )
    .unwrap();
    let json = db.export_customer("c").unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "c",
            "ids": ["c"],
            "traits": {"signup_at": "2025-02-03T10:00:00.000Z"},
            "events": [{"event": "purchased", "timestamp": "1970-01-01T00:00:00.000Z",
                        "properties": {"amount": 19.9}}]
        })
    );
}

#[test]
fn reopening_restores_everything_with_and_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.identify("a", vec![("tier".into(), Some(s("Gold")))])
        .unwrap();
    db.ingest(
        (0..50)
            .map(|i| track("a", "viewed", "X", i * 3_600_000))
            .collect(),
    )
    .unwrap();
    drop(db); // snapshots the indexes
    let db = Db::open(&path).unwrap();
    let before = db.read().indexes.clone();
    assert!(db.verify().unwrap().is_ok());
    // Writes after the snapshot, then a crash: recovery recomputes them from the dirty log.
    db.identify("a", vec![("tier".into(), Some(s("Silver")))])
        .unwrap();
    db.identify("b", vec![("tier".into(), Some(s("Gold")))])
        .unwrap();
    db.track("b", "viewed", vec![("product".into(), s("Z"))], Some(7))
        .unwrap();
    let expected = db.read().indexes.clone();
    assert_ne!(before, expected);
    db.abandon();
    let db = Db::open(&path).unwrap();
    assert_eq!(
        db.read().indexes.differences(&expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
    assert_eq!(db.schema().customers, 2);
}

#[test]
fn high_cardinality_fields_stop_being_indexed_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut config = Config::new(&path);
    config.value_bound = 10;
    let db = Db::open_with(config.clone()).unwrap();
    db.ingest(
        (0..30)
            .map(|i| track("c", "searched", &format!("q{i}"), i))
            .collect(),
    )
    .unwrap();
    db.ingest(
        (0..30)
            .map(|i| {
                Message::identify(
                    format!("u{i}"),
                    vec![("email".into(), Some(s(&format!("{i}@x"))))],
                )
            })
            .collect(),
    )
    .unwrap();
    let schema = db.schema();
    assert!(!schema.events[0].properties[0].indexed);
    assert!(
        !schema
            .traits
            .iter()
            .find(|t| t.name == "email")
            .unwrap()
            .indexed
    );
    assert!(db.verify().unwrap().is_ok());
    db.rebuild_indexes().unwrap();
    assert!(db.verify().unwrap().is_ok());
    drop(db);
    let db = Db::open_with(config).unwrap();
    assert!(!db.schema().events[0].properties[0].indexed);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn bad_library_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    db.track("c", "viewed", vec![], Some(1)).unwrap();
    let bad = [
        Message::track("", "viewed", vec![], Some(1)),
        Message::track("c", "", vec![], Some(1)),
        Message::track("c", "viewed", vec![], Some(-5)),
        Message::track("x".repeat(300), "viewed", vec![], Some(1)),
    ];
    for m in bad {
        let good = track("c", "viewed", "Y", 2);
        assert!(matches!(
            db.ingest(vec![good, m]),
            Err(Error::InvalidInput(_))
        ));
    }
    assert_eq!(
        db.customer("c").unwrap().unwrap().events.len(),
        1,
        "nothing of a bad batch is stored"
    );
}

#[test]
fn folders_that_are_not_databases_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello").unwrap();
    assert!(matches!(Db::open(&file), Err(Error::NotADatabase { .. })));

    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), b"\xff\xd8").unwrap();
    assert!(matches!(
        Db::open(&foreign),
        Err(Error::NotADatabase { .. })
    ));

    // A sled database of someone else's.
    let other = dir.path().join("other");
    let raw = raw_sled::open(&other);
    raw.open_tree("audiencedb")
        .unwrap()
        .insert(b"k", b"v")
        .unwrap();
    raw.flush().unwrap();
    drop(raw);
    assert!(matches!(Db::open(&other), Err(Error::NotADatabase { .. })));

    // A future format version.
    let future = dir.path().join("future");
    drop(Db::open(&future).unwrap());
    let raw = raw_sled::open(&future);
    let mut k = vec![0u8];
    k.extend_from_slice(b"format");
    raw.open_tree("audiencedb")
        .unwrap()
        .insert(k, &99u32.to_be_bytes()[..])
        .unwrap();
    raw.flush().unwrap();
    drop(raw);
    assert!(matches!(
        Db::open(&future),
        Err(Error::IncompatibleFormat { found: 99, .. })
    ));

    // Damaged files: an error, never a panic.
    let damaged = dir.path().join("damaged");
    drop(Db::open(&damaged).unwrap());
    std::fs::write(damaged.join("db"), vec![0x5a; 4096]).unwrap();
    std::fs::write(damaged.join("conf"), b"garbage").unwrap();
    assert!(Db::open(&damaged).is_err());
}

#[test]
fn a_second_open_of_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _db = Db::open(&path).unwrap();
    match Db::open(&path) {
        Err(Error::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second open must be refused"),
    }
}

/// A shop-like event: products, categories and prices from small vocabularies.
fn shop_event(cust: usize, i: usize) -> Message {
    Message::track(
        format!("shopper-{cust}"),
        ["viewed", "added", "purchased"][i % 3],
        vec![
            (
                "product".into(),
                s(&format!("SKU-{:04}", (cust * 31 + i * 7) % 300)),
            ),
            (
                "category".into(),
                s(["shoes", "kids", "garden", "books"][i % 4]),
            ),
            (
                "price".into(),
                Value::Float(((cust + i) % 90) as f64 + 0.99),
            ),
        ],
        Some(1_700_000_000_000 + (i as i64) * 3_600_000),
    )
}

/// 60 events for each of 400 customers, about 700 KB of block bodies: enough to train on.
fn large_shop_write() -> Vec<Message> {
    (0..400)
        .flat_map(|c| (0..60).map(move |i| shop_event(c, i)))
        .collect()
}

/// The first byte of every stored event block, and whether dictionary 1 is stored.
fn block_tags(path: &std::path::Path) -> (Vec<u8>, bool) {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    let tags = tree
        .scan_prefix([keys::EVENTS])
        .map(|kv| kv.unwrap().1[0])
        .collect();
    let stored = tree.get(keys::dictionary(1)).unwrap().is_some();
    (tags, stored)
}

fn events_of(db: &Db, cust: &str) -> Vec<(i64, String, String)> {
    db.customer(cust)
        .unwrap()
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.timestamp, e.name, format!("{:?}", e.properties)))
        .collect()
}

#[test]
fn a_large_write_trains_a_block_dictionary_stored_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    assert_eq!(db.ingest(large_shop_write()).unwrap().stored, 400 * 60);
    let before = events_of(&db, "shopper-7");
    assert_eq!(before.len(), 60);
    // A crash right after the write: the dictionary was committed with the blocks using it.
    db.abandon();
    let (tags, stored) = block_tags(&path);
    assert!(stored, "the dictionary is stored");
    assert_eq!(tags.len(), 400);
    assert!(
        tags.iter().all(|&t| t == 2),
        "every block of the write uses it: {tags:?}"
    );
    let db = Db::open(&path).unwrap();
    assert_eq!(events_of(&db, "shopper-7"), before);
    assert!(db.verify().unwrap().is_ok());
    // Later writes merge into the compressed blocks.
    db.ingest(vec![shop_event(7, 60)]).unwrap();
    assert_eq!(events_of(&db, "shopper-7").len(), 61);
    drop(db);
    let db = Db::open(&path).unwrap();
    assert_eq!(events_of(&db, "shopper-7")[..60], before[..]);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn small_writes_get_a_dictionary_at_a_checkpoint_and_old_blocks_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    // Writes too small to train on, as a server's are.
    for c in 0..400 {
        db.ingest((0..60).map(|i| shop_event(c, i)).collect())
            .unwrap();
    }
    let before = events_of(&db, "shopper-3");
    db.checkpoint().unwrap();
    db.ingest(vec![shop_event(3, 60)]).unwrap();
    db.ingest((0..60).map(|i| shop_event(1_000, i)).collect())
        .unwrap();
    drop(db);
    let (tags, stored) = block_tags(&path);
    assert!(stored, "the checkpoint trained one on the stored blocks");
    // The new customer's block uses it. shopper-3's new event (in the write log until the close
    // folded it) went into a block of its own, too small to pack, after its 60 stored events
    // (a block of `KEEP_EVENTS` or more is left as it is): every older block is as it was.
    assert_eq!(tags.iter().filter(|&&t| t == 2).count(), 1, "{tags:?}");
    assert_eq!(tags.iter().filter(|&&t| t == 1).count(), 400);
    assert_eq!(tags.iter().filter(|&&t| t == 0).count(), 1);
    let db = Db::open(&path).unwrap();
    assert_eq!(events_of(&db, "shopper-3")[..60], before[..]);
    assert_eq!(events_of(&db, "shopper-3").len(), 61);
    assert_eq!(events_of(&db, "shopper-1000").len(), 60);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn a_block_naming_a_missing_dictionary_is_corruption_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path).unwrap();
        db.ingest(large_shop_write()).unwrap();
    }
    let raw = raw_sled::open(&path);
    raw.open_tree("audiencedb")
        .unwrap()
        .remove(keys::dictionary(1))
        .unwrap();
    raw.flush().unwrap();
    drop(raw);
    let db = Db::open(&path).unwrap();
    let err = db.customer("shopper-1").unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("dictionary 1"), "{err}");
}

/// Every write here applies its index changes while its batch is committed on another thread
/// (`parallel_index_from` 0). A commit that fails leaves the indexes as the stored data says,
/// without a reopen: the same answers as a folder that never saw the failed write, and `verify`
/// finds nothing; the write sent again is then stored as if the first attempt had not been.
#[test]
fn a_write_whose_commit_fails_while_its_indexes_are_applied_leaves_them_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let mut config = Config::new(dir.path().join(name));
        config.parallel_index_from = 0;
        config.allow_known_merge = true;
        Db::open_with(config).unwrap()
    };
    let first = || -> Vec<Message> {
        let mut m = Vec::new();
        for c in 0..10 {
            let cust = format!("a{c}");
            m.push(Message::identify(
                &cust,
                vec![("tier".into(), Some(s("Gold")))],
            ));
            for i in 0..3 {
                m.push(track(
                    &cust,
                    "viewed",
                    &format!("p{i}"),
                    1_000 + i64::from(c * 10 + i),
                ));
            }
        }
        m
    };
    let second = || -> Vec<Message> {
        let mut m = Vec::new();
        for c in 0..5 {
            m.push(track(
                &format!("a{c}"),
                "bought",
                "p9",
                5_000 + i64::from(c),
            ));
            m.push(track(
                &format!("b{c}"),
                "viewed",
                "p7",
                6_000 + i64::from(c),
            ));
        }
        m.push(Message::identify(
            "a0",
            vec![("tier".into(), Some(s("Silver")))],
        ));
        // A merge: a9's stored records move into a8.
        m.push(Message::alias("a9", "a8"));
        m
    };
    let rules = [
        "tier = Silver",
        "tier = Gold",
        "bought at least 1 times",
        "viewed at least 3 times",
        "viewed where product = p7 at least 1 times",
    ];
    let answers = |db: &Db| -> Vec<u64> {
        rules
            .iter()
            .map(|r| db.query(r, 10_000).unwrap().len())
            .collect()
    };

    let db = open("db");
    let model = open("model");
    db.ingest(first()).unwrap();
    model.ingest(first()).unwrap();
    db.inject_no_space_after_commits(0);
    assert!(db.ingest(second()).is_err());
    db.inject_no_space_after_commits(u64::MAX);
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(answers(&db), answers(&model));
    assert_eq!(answers(&db), [0, 10, 0, 10, 0]);
    assert!(db.customer("b0").unwrap().is_none());
    assert!(db.customer("a9").unwrap().is_some());

    db.ingest(second()).unwrap();
    model.ingest(second()).unwrap();
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(answers(&db), answers(&model));
    assert_eq!(answers(&db), [1, 8, 5, 9, 5]);
    assert_eq!(db.customer("a8").unwrap().unwrap().events.len(), 6);
    drop(db);
    let db = open("db");
    assert!(db.verify().unwrap().is_ok());
    assert_eq!(answers(&db), answers(&model));
}
