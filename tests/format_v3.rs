//! A folder written by a format-3 build (no write log: every write merged into the blocks) is
//! opened as it is, reads exactly as before, is marked with the current format, and writes to the log from then
//! on.
//! The folder is written by this build under `timeline::write_format_3`, which writes as the
//! format-3 build did (its merge of new events into the blocks, and format record 3). One test
//! only in this file: the switch is for the whole process.

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::testing::{timeline, Store, FORMAT_VERSION};
use audiencedb::{Customer, Db};

const BASE: i64 = 1_700_000_000_000;

fn write(db: &Db, from: i64, to: i64) {
    for w in from..to {
        let mut messages: Vec<Message> = (0..40i64)
            .map(|c| {
                // Mostly in time order; every seventh write brings one customer an earlier event.
                let ts = if w % 7 == 3 && c == 5 {
                    BASE + (w - 20) * 60_000
                } else {
                    BASE + w * 60_000 + c
                };
                let mut m = Message::track(
                    format!("c{c}"),
                    if c % 3 == 0 { "viewed" } else { "bought" },
                    vec![
                        ("tag".into(), Value::Int(w)),
                        (
                            "sku".into(),
                            Value::Str(format!("sku-{}", (w * 7 + c) % 50).into()),
                        ),
                    ],
                    Some(ts),
                );
                m.message_id = Some(format!("{c}-{w}").into());
                m
            })
            .collect();
        let mut id = Message::identify(
            format!("c{}", w % 40),
            vec![("tier".into(), Some(Value::Int(w)))],
        );
        id.message_id = Some(format!("id-{w}").into());
        messages.push(id);
        db.ingest(messages).unwrap();
    }
}

fn everyone(db: &Db) -> Vec<Customer> {
    (0..40)
        .map(|c| db.customer(&format!("c{c}")).unwrap().unwrap())
        .collect()
}

fn kinds(path: &std::path::Path) -> (u32, u64, u64) {
    let store = Store::open(path).unwrap();
    let stats = store.record_stats().unwrap();
    let count = |kind: &str| {
        stats
            .iter()
            .find(|s| s.kind == kind)
            .map_or(0, |s| s.records)
    };
    (
        store.format_version().unwrap(),
        count("event blocks"),
        count("write log"),
    )
}

#[test]
fn a_format_3_folder_reads_the_same_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    timeline::write_format_3(true);
    let db = Db::open(&path).unwrap();
    write(&db, 0, 30);
    let before = everyone(&db);
    drop(db);
    let (format, blocks, logged) = kinds(&path);
    assert_eq!((format, logged), (3, 0), "written as format 3");
    assert!(blocks >= 40);

    timeline::write_format_3(false);
    let db = Db::open(&path).unwrap();
    assert_eq!(everyone(&db), before, "a format 3 folder reads as it did");
    assert!(db.verify().unwrap().is_ok());
    drop(db);
    assert_eq!(
        kinds(&path).0,
        FORMAT_VERSION,
        "marked with the current format when opened"
    );

    // New writes go to the write log, re-sent messages of the format-3 writes are still known,
    // and the timelines read as the format-3 merge would have left them.
    let db = Db::open(&path).unwrap();
    write(&db, 30, 45);
    let resent: Vec<Message> = (0..5i64)
        .map(|w| {
            let mut m = Message::track("c1", "bought", vec![], Some(BASE + w * 60_000));
            m.message_id = Some(format!("1-{w}").into());
            m
        })
        .collect();
    assert_eq!(db.ingest(resent).unwrap().duplicates, 5);
    let after = everyone(&db);
    assert!(db.verify().unwrap().is_ok());
    let logged = db
        .record_stats()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "write log")
        .map_or(0, |s| s.records);
    assert_eq!(
        logged, 15,
        "writes of the current format go to the write log (a record each)"
    );
    drop(db);
    assert_eq!(kinds(&path).2, 0, "a clean close folds the write log");
    let db = Db::open(&path).unwrap();
    assert_eq!(everyone(&db), after, "the same after the fold");
    drop(db);

    let reference = dir.path().join("reference");
    timeline::write_format_3(true);
    let db = Db::open(&reference).unwrap();
    write(&db, 0, 45);
    let merged = everyone(&db);
    drop(db);
    timeline::write_format_3(false);
    let strip = |cs: Vec<Customer>| -> Vec<_> {
        cs.into_iter().map(|c| (c.id, c.traits, c.events)).collect()
    };
    assert_eq!(strip(after), strip(merged));
}
