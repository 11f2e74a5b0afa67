//! What a checkpoint writes of the index snapshot (`docs/STORAGE.md`, "Index snapshot"): after
//! a small write, the records of the days and customers it changed, not every family it touched
//! whole; trait changes as the trait patch, recomputed from profiles at open, until the patch
//! grows past its limit and the trait families are written whole. Each state is checked against
//! a rebuild from stored data (`verify`) and against the indexes the writes left in memory, after
//! a clean close and after a crash.

mod raw_sled;

use std::collections::BTreeMap;
use std::path::Path;

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::testing::Internals;
use audiencedb::Db;

const DAY: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn profile(c: usize, round: usize) -> Vec<(String, Option<Value>)> {
    vec![
        (
            "tier".into(),
            Some(s(["Gold", "Silver", "Bronze"][(c + round) % 3])),
        ),
        (
            "age".into(),
            Some(Value::Int((20 + (c * 7 + round) % 50) as i64)),
        ),
        (
            "signup_at".into(),
            Some(Value::Time(START - (c as i64 * 3_600_123) - round as i64)),
        ),
        (
            "tags".into(),
            Some(Value::List(vec![s(["eco", "vip", "new"][(c + round) % 3])])),
        ),
    ]
}

/// `customers` customers with a profile and an event on each of `days` days (one in ten days
/// without a `product`), products among 20.
fn history(customers: usize, days: i64) -> Vec<Message> {
    let mut out = Vec::new();
    for c in 0..customers {
        out.push(Message::identify(format!("c{c}"), profile(c, 0)));
    }
    for d in 0..days {
        for c in 0..customers {
            let mut props = vec![("amount".into(), Value::Int((c as i64 + d) % 40))];
            if d % 10 != 3 {
                props.push((
                    "product".into(),
                    s(&format!("p{}", (c as i64 * 3 + d) % 20)),
                ));
            }
            let event = ["viewed", "purchased"][(c + d as usize) % 2];
            out.push(Message::track(
                format!("c{c}"),
                event,
                props,
                Some(START + d * DAY + (c as i64) * 1_000),
            ));
        }
    }
    out
}

/// The stored index snapshot records, by key, once the database has let go of the folder.
fn snapshot_records(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    tree.scan_prefix(b"x")
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// The keys whose value differs between two snapshots, or that only one has.
fn changed_keys(a: &BTreeMap<Vec<u8>, Vec<u8>>, b: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| a.get(k) != b.get(k));
    keys
}

fn kinds(keys: &[Vec<u8>]) -> String {
    keys.iter().map(|k| k[1] as char).collect()
}

fn big_endian(k: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(k[at..at + 4].try_into().unwrap())
}

#[test]
fn a_small_write_rewrites_its_day_and_patches_traits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.ingest(history(300, 70)).unwrap();
    drop(db);
    // Fewer customers changed than the patch's limit: their traits are the patch.
    let first = snapshot_records(&path);
    assert!(first.contains_key(&b"xR"[..]));
    assert!(!first.keys().any(|k| k[1] == b'T'));
    // A whole snapshot writes the trait families.
    let db = Db::open(&path).unwrap();
    assert!(db.verify().unwrap().is_ok());
    db.rebuild_indexes().unwrap();
    drop(db);
    let before = snapshot_records(&path);
    assert!(
        !before.contains_key(&b"xR"[..]),
        "a whole snapshot leaves no patch"
    );
    assert!(before.keys().any(|k| k[1] == b'T'));
    let days: Vec<u32> = before
        .keys()
        .filter(|k| k[1] == b'D')
        .map(|k| big_endian(k, 6))
        .collect();
    assert!(
        days.len() >= 70,
        "a record per (event, day): {}",
        days.len()
    );

    // One hour of the last day: an event of one customer, a profile change of another.
    let db = Db::open(&path).unwrap();
    let last_day = START + 69 * DAY;
    db.track(
        "c5",
        "viewed",
        vec![
            ("product".into(), s("p3")),
            ("amount".into(), Value::Int(7)),
        ],
        Some(last_day + 3_600_000),
    )
    .unwrap();
    db.identify("c9", profile(9, 1)).unwrap();
    let expected = db.read().indexes.clone();
    drop(db);
    let after = snapshot_records(&path);
    let changed = changed_keys(&before, &after);
    // The version record is written again with the same bytes: it is not among the changes.
    let day = (last_day / DAY) as u32;
    for k in &changed {
        match k[1] {
            b'D' | b'C' => assert_eq!(big_endian(k, 6), day, "{k:?}"),
            b'N' => assert_eq!(big_endian(k, 10), day, "{k:?}"),
            b'V' => assert_eq!(big_endian(k, 10), day / 16, "{k:?}"),
            b'R' | b'A' | b'P' => {}
            _ => panic!("a record the write did not change was written: {k:?}"),
        }
    }
    assert!(
        changed.iter().any(|k| k[1] == b'R') && !changed.iter().any(|k| k[1] == b'T'),
        "{}",
        kinds(&changed)
    );
    let written: usize = changed
        .iter()
        .filter_map(|k| after.get(k))
        .map(Vec::len)
        .sum();
    let whole: usize = after.values().map(Vec::len).sum();
    assert!(written * 10 < whole, "{written} of {whole} bytes written");

    // The patch is applied at open: the indexes are what the writes left, and a rebuild's.
    let db = Db::open(&path).unwrap();
    assert_eq!(
        db.read().indexes.differences(&expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
    // A crash after more trait changes (some removing a trait, one a new customer): the dirty
    // log and the stored patch together.
    db.identify("c9", vec![("tags".into(), None), ("age".into(), None)])
        .unwrap();
    db.identify("c10", profile(10, 2)).unwrap();
    db.identify("new", profile(400, 0)).unwrap();
    db.delete_customer("c11").unwrap();
    let expected = db.read().indexes.clone();
    db.abandon();
    let db = Db::open(&path).unwrap();
    assert_eq!(
        db.read().indexes.differences(&expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
    drop(db);
    let db = Db::open(&path).unwrap();
    assert_eq!(
        db.read().indexes.differences(&expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn a_patch_past_its_limit_writes_the_trait_families_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.ingest(history(5000, 2)).unwrap();
    drop(db);
    let base = snapshot_records(&path);
    let traits = |r: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
        r.iter()
            .filter(|(k, _)| k[1] == b'T')
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    // 4,096 customers changed (the limit at 5,000 customers): still a patch.
    let db = Db::open(&path).unwrap();
    db.ingest(
        (0..4096)
            .map(|c| Message::identify(format!("c{c}"), profile(c, 1)))
            .collect(),
    )
    .unwrap();
    drop(db);
    let patched = snapshot_records(&path);
    assert_eq!(traits(&patched), traits(&base));
    assert!(patched.contains_key(&b"xR"[..]));
    // One more: every trait family whole, no patch.
    let db = Db::open(&path).unwrap();
    assert!(db.verify().unwrap().is_ok());
    db.identify("c4999", vec![("age".into(), None), ("tier".into(), None)])
        .unwrap();
    let expected = db.read().indexes.clone();
    drop(db);
    let whole = snapshot_records(&path);
    assert!(!whole.contains_key(&b"xR"[..]));
    assert_ne!(traits(&whole), traits(&base));
    let db = Db::open(&path).unwrap();
    assert_eq!(
        db.read().indexes.differences(&expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
}
