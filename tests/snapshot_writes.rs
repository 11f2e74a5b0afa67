//! What a checkpoint writes of the index snapshot (`docs/STORAGE.md`, "Index snapshot"): after
//! a small write, the records of the days and customers it changed, not every family it touched
//! whole; trait changes as the trait patch, recomputed from profiles at open, until the patch
//! grows past its limit (or, at a close, past the close's lower one) and the trait families are
//! written whole. Each state is checked against
//! a rebuild from stored data (`verify`) and against the indexes the writes left in memory, after
//! a clean close and after a crash.

mod raw_sled;

use std::collections::BTreeMap;
use std::path::Path;

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::testing::{Indexes, Internals, Store};
use audiencedb::Db;

const DAY: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn profile(c: usize, round: usize) -> Vec<(audiencedb::CompactString, Option<Value>)> {
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

/// A new folder holding `messages`, closed: its first checkpoint wrote a whole snapshot.
fn closed_with(messages: Vec<Message>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.ingest(messages).unwrap();
    drop(db);
    (dir, path)
}

/// The stored index snapshot records, by key (as sled would key them), once the database has
/// let go of the folder: the index snapshot file's families, each replaced by the one written
/// into sled since under its key.
fn snapshot_records(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    // Waits for the folder's lock as raw_sled does.
    drop(raw_sled::open(path));
    let store = Store::open(path).unwrap();
    store
        .index_families()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            let mut key = b"x".to_vec();
            key.extend_from_slice(&k);
            (key, v.to_vec())
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

/// Opens the folder and checks that its indexes are `expected` and equal a rebuild.
fn reopens_to(path: &Path, expected: &Indexes) -> Db {
    let db = Db::open(path).unwrap();
    assert_eq!(
        db.read().indexes.differences(expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
    db
}

/// The index snapshot files in the folder, by name.
fn snapshot_files(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("index-snapshot-"))
        .collect();
    names.sort();
    names
}

/// The index families stored in sled itself, by key (an empty value hides the file's family).
fn sled_families(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let raw = raw_sled::open(path);
    let tree = raw.open_tree("audiencedb").unwrap();
    tree.scan_prefix(b"x")
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn kinds(keys: &[Vec<u8>]) -> String {
    keys.iter().map(|k| k[1] as char).collect()
}

fn big_endian(k: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(k[at..at + 4].try_into().unwrap())
}

#[test]
fn a_small_write_rewrites_its_day_and_patches_traits() {
    let (_dir, path) = closed_with(history(300, 70));
    // The first checkpoint writes a whole snapshot (into the index snapshot file): the trait
    // families, no patch.
    let first = snapshot_records(&path);
    assert!(!first.contains_key(&b"xR"[..]));
    assert!(first.keys().any(|k| k[1] == b'T'));
    // Fewer customers changed than the patch's limit: their traits are the patch.
    let db = Db::open(&path).unwrap();
    db.ingest(
        (0..20)
            .map(|c| Message::identify(format!("c{c}"), profile(c, 3)))
            .collect(),
    )
    .unwrap();
    drop(db);
    let patched = snapshot_records(&path);
    assert!(patched.contains_key(&b"xR"[..]));
    assert_eq!(
        first
            .iter()
            .filter(|(k, _)| k[1] == b'T')
            .collect::<Vec<_>>(),
        patched
            .iter()
            .filter(|(k, _)| k[1] == b'T')
            .collect::<Vec<_>>()
    );
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
    let file = snapshot_files(&path);
    drop(db);
    let after = snapshot_records(&path);
    assert_eq!(snapshot_files(&path), file, "the file is left as it is");
    assert_eq!(file.len(), 1);
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
    let db = reopens_to(&path, &expected);
    // A crash after more trait changes (some removing a trait, one a new customer): the dirty
    // log and the stored patch together.
    db.identify("c9", vec![("tags".into(), None), ("age".into(), None)])
        .unwrap();
    db.identify("c10", profile(10, 2)).unwrap();
    db.identify("new", profile(400, 0)).unwrap();
    db.delete_customer("c11").unwrap();
    let expected = db.read().indexes.clone();
    db.abandon();
    let db = reopens_to(&path, &expected);
    drop(db);
    reopens_to(&path, &expected);
}

#[test]
fn a_patch_past_its_limit_writes_the_trait_families_whole() {
    let (_dir, path) = closed_with(history(5000, 2));
    let base = snapshot_records(&path);
    let traits = |r: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
        r.iter()
            .filter(|(k, _)| k[1] == b'T')
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    // 4,096 customers changed (the limit at 5,000 customers): still a patch. (Checkpoints
    // without a close: a close would write a patch this large whole, as the next test checks.)
    let db = Db::open(&path).unwrap();
    db.ingest(
        (0..4096)
            .map(|c| Message::identify(format!("c{c}"), profile(c, 1)))
            .collect(),
    )
    .unwrap();
    db.checkpoint().unwrap();
    db.abandon();
    let patched = snapshot_records(&path);
    assert_eq!(traits(&patched), traits(&base));
    assert!(patched.contains_key(&b"xR"[..]));
    // One more: every trait family whole, no patch.
    let db = Db::open(&path).unwrap();
    assert!(db.verify().unwrap().is_ok());
    db.identify("c4999", vec![("age".into(), None), ("tier".into(), None)])
        .unwrap();
    let expected = db.read().indexes.clone();
    db.checkpoint().unwrap();
    db.abandon();
    let whole = snapshot_records(&path);
    assert!(!whole.contains_key(&b"xR"[..]));
    assert_ne!(traits(&whole), traits(&base));
    reopens_to(&path, &expected);
}

#[test]
fn a_close_writes_a_patch_past_its_close_limit_whole() {
    let (_dir, path) = closed_with(history(5000, 2));
    let traits = |r: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
        r.iter()
            .filter(|(k, _)| k[1] == b'T')
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let base = snapshot_records(&path);
    // 1,024 customers changed (the close's limit at 5,000 customers): a close leaves the patch.
    let db = Db::open(&path).unwrap();
    db.ingest(
        (0..1024)
            .map(|c| Message::identify(format!("c{c}"), profile(c, 1)))
            .collect(),
    )
    .unwrap();
    drop(db);
    let patched = snapshot_records(&path);
    assert_eq!(traits(&patched), traits(&base));
    assert!(patched.contains_key(&b"xR"[..]));
    // One more, checkpointed and then lost in a crash: the patch (1,025) is stored, under the
    // checkpoints' own limit.
    let db = Db::open(&path).unwrap();
    db.identify("c4999", vec![("age".into(), None), ("tier".into(), None)])
        .unwrap();
    let expected = db.read().indexes.clone();
    db.checkpoint().unwrap();
    db.abandon();
    let crashed = snapshot_records(&path);
    assert_eq!(traits(&crashed), traits(&base));
    assert!(crashed.contains_key(&b"xR"[..]));
    // An open that writes nothing applies the patch; its close writes the trait families whole.
    let db = reopens_to(&path, &expected);
    drop(db);
    let whole = snapshot_records(&path);
    assert!(!whole.contains_key(&b"xR"[..]));
    assert_ne!(traits(&whole), traits(&base));
    let db = reopens_to(&path, &expected);
    // The next close has nothing to write.
    drop(db);
    assert_eq!(snapshot_records(&path), whole);
}

/// A whole snapshot goes into one file beside sled's, and sled keeps only the layout version;
/// the checkpoints after it write what changed into sled, the file left as it is, and a family
/// that went away is hidden by an empty record. Each state opens to the indexes the writes left.
#[test]
fn a_whole_snapshot_is_one_file_and_later_checkpoints_write_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.ingest(history(200, 20)).unwrap();
    // The only one to do `rare`, on one day.
    db.track("solo", "rare", vec![], Some(START + 5 * DAY + 17))
        .unwrap();
    drop(db);
    let files = snapshot_files(&path);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        sled_families(&path).keys().cloned().collect::<Vec<_>>(),
        vec![b"xS".to_vec()]
    );
    let whole = snapshot_records(&path);
    assert!(whole.keys().filter(|k| k[1] == b'D').count() > 20);

    let db = Db::open(&path).unwrap();
    db.delete_customer("solo").unwrap();
    db.track(
        "c3",
        "viewed",
        vec![("product".into(), s("p9"))],
        Some(START + 19 * DAY + 5),
    )
    .unwrap();
    let expected = db.read().indexes.clone();
    drop(db);
    assert_eq!(snapshot_files(&path), files, "the file is left as it is");
    let in_sled = sled_families(&path);
    let hidden: Vec<&Vec<u8>> = in_sled
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect();
    assert!(
        !hidden.is_empty() && hidden.iter().all(|k| k[1] == b'D' || k[1] == b'C'),
        "the removed day of `rare` is hidden: {hidden:?}"
    );
    let merged = snapshot_records(&path);
    for k in &hidden {
        assert!(whole.contains_key(*k) && !merged.contains_key(*k));
    }
    assert!(in_sled.len() < whole.len() / 4, "{} in sled", in_sled.len());
    reopens_to(&path, &expected);
}

/// A checkpoint whose families would take the ones written beside the file past half its size
/// writes a whole snapshot into a new file instead, which takes the old one's place and empties
/// sled's records.
#[test]
fn families_beside_the_file_past_half_its_size_bring_a_new_file() {
    let (_dir, path) = closed_with(history(200, 10));
    let first = snapshot_files(&path);
    let mut rounds = 0;
    while snapshot_files(&path) == first {
        rounds += 1;
        assert!(rounds <= 4, "no new file after {rounds} rounds");
        // Every customer on every day again, a millisecond apart: every family changes.
        let db = Db::open(&path).unwrap();
        let again: Vec<Message> = history(200, 10)
            .into_iter()
            .enumerate()
            .map(|(i, mut m)| {
                if i < 200 {
                    Message::identify(format!("c{i}"), profile(i, rounds))
                } else {
                    m.timestamp = m.timestamp.map(|t| t + rounds as i64);
                    m
                }
            })
            .collect();
        db.ingest(again).unwrap();
        let expected = db.read().indexes.clone();
        // Checkpointed, then lost in a crash: the checkpoints' own limit, not a close's.
        db.checkpoint().unwrap();
        db.abandon();
        reopens_to(&path, &expected);
    }
    let files = snapshot_files(&path);
    assert_eq!(files.len(), 1);
    assert_ne!(files, first);
    assert_eq!(sled_families(&path).len(), 1, "only the layout version");
}

/// The checkpoint before a close writes a whole snapshot into a new file once the families
/// written into sled beside the file pass a sixteenth of it (later opens read those only after
/// sled's own open, the file's while sled opens); under that, or with nothing to write, a close
/// leaves them.
#[test]
fn a_close_past_a_sixteenth_beside_the_file_brings_a_new_file() {
    let (_dir, path) = closed_with(history(200, 10));
    let first = snapshot_files(&path);
    let file_bytes = std::fs::metadata(path.join(&first[0])).unwrap().len();
    let beside =
        |path: &Path| -> u64 { sled_families(path).values().map(|v| v.len() as u64).sum() };
    // Every customer again on the last three days and with a new profile, checkpointed and
    // then lost in a crash (no close): written beside the file, between its two limits.
    let db = Db::open(&path).unwrap();
    let again: Vec<Message> = history(200, 10)
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut m)| {
            if i < 200 {
                return Some(Message::identify(format!("c{i}"), profile(i, 1)));
            }
            let t = m.timestamp?;
            m.timestamp = Some(t + 1);
            (t >= START + 7 * DAY).then_some(m)
        })
        .collect();
    db.ingest(again).unwrap();
    let expected = db.read().indexes.clone();
    db.checkpoint().unwrap();
    db.abandon();
    assert_eq!(snapshot_files(&path), first);
    let written = beside(&path);
    assert!(
        written > file_bytes / 16 && written <= file_bytes / 2,
        "{written} bytes beside a file of {file_bytes}"
    );
    // An open that writes nothing leaves them at its close.
    let db = reopens_to(&path, &expected);
    drop(db);
    assert_eq!(snapshot_files(&path), first);
    assert_eq!(beside(&path), written);
    // A close with something to write brings the new file, and sled keeps only the version.
    let db = Db::open(&path).unwrap();
    db.track("c5", "viewed", vec![], Some(START + 9 * DAY + 77))
        .unwrap();
    let expected = db.read().indexes.clone();
    drop(db);
    let files = snapshot_files(&path);
    assert_eq!(files.len(), 1);
    assert_ne!(files, first);
    assert_eq!(sled_families(&path).len(), 1, "only the layout version");
    reopens_to(&path, &expected);
}

/// `Db::close` writes the last checkpoint a drop would, and a drop after it writes nothing more
/// (as after a crash, `abandon`, nothing is checkpointed).
#[test]
fn close_writes_the_last_checkpoint_before_the_drop() {
    let (_dir, path) = closed_with(history(200, 10));
    let before = snapshot_records(&path);
    let late = |db: &Db| {
        db.track("c5", "viewed", vec![], Some(START + 9 * DAY + 77))
            .unwrap();
        db.read().indexes.clone()
    };
    let db = Db::open(&path).unwrap();
    let expected = late(&db);
    db.abandon();
    assert_eq!(
        snapshot_records(&path),
        before,
        "a crash checkpoints nothing"
    );
    // The open recovers that write and checkpoints it.
    let db = reopens_to(&path, &expected);
    db.abandon();
    let recovered = snapshot_records(&path);
    let db = Db::open(&path).unwrap();
    let expected = late(&db);
    db.close().unwrap();
    db.close().unwrap();
    drop(db);
    assert_ne!(snapshot_records(&path), recovered, "the close's checkpoint");
    reopens_to(&path, &expected);
}

/// A missing or damaged snapshot file is not an error: the open rebuilds the indexes from the
/// stored data and writes a new file. Files no record names (a crash's) are removed at open.
#[test]
fn a_damaged_or_missing_snapshot_file_is_rebuilt_and_strays_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path).unwrap();
    db.ingest(history(100, 10)).unwrap();
    let expected = db.read().indexes.clone();
    drop(db);
    let reopen_equals = |why: &str| {
        let db = Db::open(&path).unwrap();
        assert_eq!(
            db.read().indexes.differences(&expected),
            Vec::<String>::new(),
            "{why}"
        );
        assert!(db.verify().unwrap().is_ok(), "{why}");
        drop(db);
        let files = snapshot_files(&path);
        assert_eq!(files.len(), 1, "{why}: {files:?}");
        files[0].clone()
    };
    let name = snapshot_files(&path).remove(0);
    let mut bytes = std::fs::read(path.join(&name)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(path.join(&name), &bytes).unwrap();
    let rebuilt = reopen_equals("a damaged byte");
    assert_ne!(rebuilt, name, "a new file");
    std::fs::remove_file(path.join(&rebuilt)).unwrap();
    let again = reopen_equals("a missing file");
    assert_ne!(again, rebuilt);
    std::fs::write(path.join("index-snapshot-999"), b"left by a crash").unwrap();
    std::fs::write(path.join("index-snapshot-5.unfinished"), b"cut short").unwrap();
    assert_eq!(reopen_equals("strays"), again);
    assert_eq!(snapshot_files(&path), vec![again]);
}

/// A crash with the new file written and the batch that names it not committed: the open
/// removes the file and uses what was committed (the previous file, or none and the dirty log).
#[test]
fn a_crash_between_the_file_and_its_commit_keeps_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let input = dir.path().join("shop.ndjson");
    let bin = env!("CARGO_BIN_EXE_audiencedb");
    let gen = std::process::Command::new(bin)
        .args(["gen", "--customers", "150", "--seed", "3"])
        .output()
        .unwrap();
    assert!(gen.status.success());
    std::fs::write(&input, &gen.stdout).unwrap();
    let crashing = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg("--db")
            .arg(&path)
            .args(args)
            .env("AUDIENCEDB_TEST_SNAPSHOT_CRASH", "file-written")
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child was to crash");
    };
    // The first whole snapshot: its file is written, nothing names it.
    crashing(&["import", input.to_str().unwrap()]);
    assert_eq!(snapshot_files(&path).len(), 1);
    let db = Db::open(&path).unwrap();
    assert!(db.verify().unwrap().is_ok());
    let events = db.verify().unwrap().events;
    assert!(events > 1000, "{events} events");
    let expected = db.read().indexes.clone();
    drop(db);
    let committed = snapshot_files(&path);
    assert_eq!(committed.len(), 1);
    // A whole snapshot over a committed one.
    crashing(&["rebuild-indexes"]);
    assert_eq!(snapshot_files(&path).len(), 2);
    let db = Db::open(&path).unwrap();
    assert_eq!(snapshot_files(&path), committed);
    assert_eq!(
        db.read().indexes.differences(&expected),
        Vec::<String>::new()
    );
    assert!(db.verify().unwrap().is_ok());
}
