//! Erasure (issue 16, item 4): after a customer is deleted and the folder compacted, no byte of
//! the customer's id, traits or event properties is left in any file of the folder, the change
//! feed keeps its changes without the id, everyone else's data is as it was; a compaction
//! interrupted at any step leaves a folder that opens (the old one or the new one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use audiencedb::gen::{generate, GenConfig};
use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::testing::compact;
use audiencedb::{Change, Clock, Config, Db};

const VICTIM: &str = "victim-7Q2Z-erase";
const EMAIL: &str = "ada.victim.9931@example.org";
/// Event property values only the victim has: one on every event (so the block dictionary,
/// trained on sample blocks that include the victim's, learns it), one on a few.
const NOTE: &str = "VICTIM-NOTE-Zq7x";
const SKU: &str = "sku-victim-55501";

fn needles() -> [&'static [u8]; 4] {
    [
        VICTIM.as_bytes(),
        EMAIL.as_bytes(),
        NOTE.as_bytes(),
        SKU.as_bytes(),
    ]
}

fn end() -> i64 {
    parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
}

fn open(path: &Path) -> Db {
    let mut config = Config::new(path);
    config.clock = Clock::manual(end());
    Db::open_with(config).unwrap()
}

/// The victim's messages, then a generated shop of `customers`, as NDJSON lines.
fn shop_lines(customers: u64) -> Vec<String> {
    let mut lines = vec![format!(
        r#"{{"type":"identify","userId":"{VICTIM}","traits":{{"email":"{EMAIL}","tier":"Platinum","name":"Ada Victim"}}}}"#
    )];
    for i in 0..300 {
        let sku = if i % 50 == 0 { SKU } else { "sku-common" };
        lines.push(format!(
            r#"{{"type":"track","userId":"{VICTIM}","event":"viewed","properties":{{"note":"{NOTE}","product":"{sku}","price":{i}}},"timestamp":{}}}"#,
            end() - 3_600_000 * (i + 1)
        ));
    }
    let mut config = GenConfig::new(customers, 7);
    config.end = end();
    let mut out = Vec::new();
    generate(&config, &mut out).unwrap();
    lines.extend(String::from_utf8(out).unwrap().lines().map(str::to_owned));
    lines
}

/// A shop with the victim in its first write (so the block dictionary is trained on a sample
/// that includes the victim's blocks), two saved audiences the victim is in, and more writes.
fn build_shop(path: &Path) {
    let db = open(path);
    let messages: Vec<Message> = shop_lines(400)
        .iter()
        .map(|l| Message::from_json_line(l).unwrap())
        .collect();
    let (first, rest) = messages.split_at(messages.len() / 2);
    db.ingest(first.to_vec()).unwrap();
    db.define_audience("platinum", "tier = Platinum").unwrap();
    db.define_audience("viewers", "viewed at least 3 times in last 30 days")
        .unwrap();
    for chunk in rest.chunks(2000) {
        db.ingest(chunk.to_vec()).unwrap();
    }
}

/// Answers that must not change when the victim's traces go.
fn answers(db: &Db) -> Vec<(String, Vec<String>)> {
    [
        "tier = Gold",
        "viewed at least 3 times in last 30 days",
        "purchased sum(amount) > 100 in last 365 days",
        "tier = Platinum",
        "in audience viewers",
    ]
    .iter()
    .map(|rule| {
        let q = db.query(rule, end()).unwrap();
        (rule.to_string(), db.member_ids(&q).unwrap())
    })
    .collect()
}

fn feed(db: &Db) -> Vec<Change> {
    db.changes_since(0, usize::MAX).unwrap()
}

fn raw_traces(path: &Path) -> Vec<String> {
    let (traces, files, _) = compact::raw_traces(path, &needles()).unwrap();
    assert!(files > 2, "the scan read the folder's files");
    traces
        .into_iter()
        .map(|t| {
            format!(
                "{:?} in {}",
                String::from_utf8_lossy(needles()[t.needle]),
                t.place
            )
        })
        .collect()
}

#[test]
fn delete_then_compact_leaves_no_byte_of_the_customer_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    build_shop(&path);
    {
        let db = open(&path);
        assert!(db.audiences_of(VICTIM).unwrap().contains("platinum"));
        let dict = db
            .record_traces(&[NOTE.as_bytes()])
            .unwrap()
            .0
            .into_iter()
            .any(|t| t.place.contains("block dictionaries"));
        assert!(
            dict,
            "the block dictionary learnt the victim's property value"
        );
        db.delete_customer(VICTIM).unwrap();
    }
    // Deleted, two clean restarts: the bytes are still in the files (what the issue saw). The
    // email, a trait value, was also in the dead copies of its trait family up to index snapshot
    // layout 4, which rewrote it whole at every checkpoint; since layout 5 a checkpoint of a few
    // customers' traits writes the trait patch instead, so whether a dead copy of the profile
    // holding it is left is sled's doing.
    drop(open(&path));
    drop(open(&path));
    let before = raw_traces(&path);
    for n in [VICTIM, NOTE] {
        assert!(
            before.iter().any(|t| t.starts_with(&format!("{n:?}"))),
            "{n} is in the files after a delete alone: {before:?}"
        );
    }
    // Since format 8 the index snapshot holds some of them too until its next whole write (the
    // compaction's): the trait families of the index snapshot file (the delete's checkpoint
    // wrote the trait patch, which an open applies), and the keys of the empty records that hide
    // the file's families of the victim's property values.
    let db = open(&path);
    let (stored, _) = db.record_traces(&needles()).unwrap();
    assert!(
        stored.iter().all(|t| t.place.contains("change feed")
            || t.place.contains("block dictionaries")
            || t.place.contains("index snapshot record (key \"xT")
            || t.place.contains("index snapshot record (key \"xV")),
        "{stored:?}"
    );
    let answers_before = answers(&db);
    let feed_before = feed(&db);
    let victim_changes = feed_before.iter().filter(|c| c.customer == VICTIM).count();
    assert!(
        victim_changes >= 2,
        "entered platinum and viewers, left both"
    );
    let report = db.compact().unwrap();
    assert_eq!(report.feed_changes_erased, victim_changes as u64);
    assert!(report.dictionary);
    assert!(report.blocks > 0 && report.records > report.blocks);

    for round in 0..2 {
        let after = raw_traces(&path);
        assert!(after.is_empty(), "round {round}: {after:?}");
        assert!(!compact::new_folder(&path).exists() && !compact::old_folder(&path).exists());
        let db = open(&path);
        assert_eq!(db.record_traces(&needles()).unwrap().0, vec![]);
        assert!(db.verify().unwrap().is_ok());
        assert_eq!(answers(&db), answers_before);
        let feed_after = feed(&db);
        assert_eq!(feed_after.len(), feed_before.len());
        for (a, b) in feed_after.iter().zip(&feed_before) {
            assert_eq!(
                (a.seq, &a.audience, a.entered, a.at),
                (b.seq, &b.audience, b.entered, b.at)
            );
            if b.customer == VICTIM {
                assert!(a.is_erased() && a.to_json()["customer"].is_null(), "{a:?}");
            } else {
                assert_eq!(a.customer, b.customer);
            }
        }
        assert!(db.customer(VICTIM).unwrap().is_none());
        // The folder goes on taking writes, with its new dictionary.
        db.track("after-compaction", "viewed", vec![], Some(end() - 1))
            .unwrap();
        assert!(db.verify().unwrap().is_ok());
    }
}

#[test]
fn erase_customer_deletes_and_compacts_and_a_second_compaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    build_shop(&path);
    let (deleted, report) = open(&path).erase_customer(VICTIM).unwrap();
    assert_eq!(deleted, Some(300));
    assert!(report.feed_changes_erased >= 2);
    assert_eq!(raw_traces(&path), Vec::<String>::new());
    let before = answers(&open(&path));
    let (deleted, report) = open(&path).erase_customer(VICTIM).unwrap();
    assert_eq!((deleted, report.feed_changes_erased), (None, 0));
    let db = open(&path);
    assert_eq!(answers(&db), before);
    assert!(db.verify().unwrap().is_ok());
}

// The command line: `customer delete --erase`, `verify --erased ID --also TEXT`, and crashes at
// each step of `compact`.

fn cli(db: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_audiencedb"));
    c.arg("--db").arg(db).args(args);
    if let Some(step) = crash_at {
        c.env("AUDIENCEDB_TEST_COMPACT_CRASH", step);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn verify_erased(db: &Path) -> Output {
    cli(
        db,
        &[
            "verify", "--erased", VICTIM, "--also", EMAIL, "--also", NOTE, "--also", SKU,
        ],
        None,
    )
}

fn count(db: &Path, rule: &str) -> String {
    let o = cli(db, &["query", "--now", "2026-03-01", rule], None);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_command_line_erases_and_proves_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, shop_lines(300).join("\n")).unwrap();
    let o = cli(&db, &["import", file.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = verify_erased(&db);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is stored: erase it first"),
        "{}",
        text(&o)
    );
    let gold = count(&db, "tier = Gold");

    let o = cli(&db, &["customer", "delete", VICTIM], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = verify_erased(&db);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&format!("trace: {VICTIM:?} in ")), "{out}");
    assert!(out.contains("run `audiencedb compact`"), "{out}");

    let o = cli(&db, &["customer", "delete", "--erase", VICTIM], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("compacting to erase what deletes left"),
        "{}",
        text(&o)
    );
    let o = verify_erased(&db);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("ok: none of 4 strings in "),
        "{}",
        text(&o)
    );
    assert_eq!(count(&db, "tier = Gold"), gold);
}

#[test]
fn a_compaction_interrupted_at_any_step_leaves_a_folder_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, shop_lines(200).join("\n")).unwrap();
    let o = cli(&seed, &["import", file.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&seed, &["customer", "delete", VICTIM], None);
    assert!(o.status.success(), "{}", text(&o));
    let gold = count(&seed, "tier = Gold");
    for (step, compacted) in [
        ("written", false),
        ("marked", false),
        ("old-aside", true),
        ("new-in-place", true),
        ("removing", true),
    ] {
        let db: PathBuf = dir.path().join(step).join("db");
        copy_dir(&seed, &db);
        let o = cli(&db, &["compact"], Some(step));
        assert!(!o.status.success(), "{step}: {}", text(&o));
        // The next open finishes or undoes it.
        assert_eq!(count(&db, "tier = Gold"), gold, "{step}");
        let o = verify_erased(&db);
        assert_eq!(o.status.success(), compacted, "{step}: {}", text(&o));
        assert!(
            text(&o).contains("ok: the indexes equal a rebuild"),
            "{step}: {}",
            text(&o)
        );
        for leftover in [compact::new_folder(&db), compact::old_folder(&db)] {
            assert!(!leftover.exists(), "{step}: {}", leftover.display());
        }
        assert!(!db.join(compact::DONE).exists(), "{step}");
        // And compacting again completes it.
        let o = cli(&db, &["compact"], None);
        assert!(o.status.success(), "{step}: {}", text(&o));
        assert!(verify_erased(&db).status.success(), "{step}");
        assert_eq!(count(&db, "tier = Gold"), gold, "{step}");
    }
}
