//! A folder written by a format-4 build (event tails: each write's events appended after a
//! customer's blocks as `t` records, with their message-id hashes) is upgraded when opened: the
//! tails are folded into blocks and message-id records, the folder is marked with the current format, and every
//! timeline, re-sent message and index reads exactly as before. The tails are made by
//! `timeline::move_into_format_4_tail`, which turns a customer's last events and half its hashes
//! into a tail as the format-4 build wrote them.

mod raw_sled;

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::testing::{timeline, Store, FORMAT_VERSION};
use audiencedb::{Customer, Db};

const BASE: i64 = 1_700_000_000_000;
const CUSTOMERS: i64 = 30;

fn write(db: &Db, from: i64, to: i64) {
    for w in from..to {
        let messages: Vec<Message> = (0..CUSTOMERS)
            .map(|c| {
                let mut m = Message::track(
                    format!("c{c}"),
                    if c % 3 == 0 { "viewed" } else { "bought" },
                    vec![(
                        "sku".into(),
                        Value::Str(format!("sku-{}", (w + c) % 9).into()),
                    )],
                    // Equal times now and then: the cut between blocks and tail must keep them.
                    Some(BASE + (w / 2) * 60_000 + c),
                );
                m.message_id = Some(format!("{c}-{w}").into());
                m
            })
            .collect();
        db.ingest(messages).unwrap();
    }
}

fn everyone(db: &Db) -> Vec<Customer> {
    (0..CUSTOMERS)
        .map(|c| db.customer(&format!("c{c}")).unwrap().unwrap())
        .collect()
}

fn count(path: &std::path::Path, kind: &str) -> (u32, u64) {
    let store = Store::open(path).unwrap();
    let records = store
        .record_stats()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == kind)
        .map_or(0, |s| s.records);
    (store.format_version().unwrap(), records)
}

#[test]
fn a_format_4_folder_with_tails_is_upgraded_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    write(&db, 0, 40);
    let before = everyone(&db);
    let ids: Vec<u32> = (0..CUSTOMERS)
        .map(|c| db.internal_id(&format!("c{c}")).unwrap().unwrap())
        .collect();
    drop(db);

    // Every other customer gets a tail of its last 1 to 20 events (a clean close folded the
    // write log, so it has none unfolded).
    {
        let store = Store::open(&path).unwrap();
        for (i, &cust) in ids.iter().enumerate().step_by(2) {
            timeline::move_into_format_4_tail(&store, cust, 1 + i % 20).unwrap();
        }
    }
    // Counted in the raw records: any open of the folder (`Store::open` too) upgrades it.
    let tails = {
        let db = raw_sled::open(&path);
        let tree = db.open_tree("audiencedb").unwrap();
        tree.scan_prefix(b"t").count()
    };
    assert_eq!(tails, (CUSTOMERS as usize).div_ceil(2), "one tail each");

    let db = Db::open(&path).unwrap();
    assert_eq!(
        everyone(&db),
        before,
        "the same timelines after the upgrade"
    );
    assert!(db.verify().unwrap().is_ok());
    // Every message id is still known, those the tails held too.
    let resent: Vec<Message> = (0..CUSTOMERS)
        .flat_map(|c| {
            [0, 39].map(|w| {
                let mut m = Message::track(format!("c{c}"), "bought", vec![], Some(BASE));
                m.message_id = Some(format!("{c}-{w}").into());
                m
            })
        })
        .collect();
    let n = resent.len() as u64;
    assert_eq!(db.ingest(resent).unwrap().duplicates, n);
    drop(db);
    assert_eq!(
        count(&path, "event tails (formats 4 and 5)"),
        (FORMAT_VERSION, 0),
        "marked with the current format, no tail left"
    );
    let db = Db::open(&path).unwrap();
    write(&db, 40, 45);
    assert_eq!(everyone(&db)[3].events.len(), 45);
    assert!(db.verify().unwrap().is_ok());
}
