//! A full disk (ENOSPC) must not turn a healthy folder into a damaged one: whatever fails while
//! the disk is full, nothing acknowledged is lost and once space is freed the folder opens and
//! verifies. Here: the leftover files a failed open leaves, made by hand, and an I/O error
//! (ENOSPC) injected behind the storage layer (`Db::inject_no_space_after_commits`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use audiencedb::{Db, Error};

/// Writes `n` track messages for 300 customers a minute apart, each with a unique message id.
fn write_input(path: &Path, n: u64, tag: &str) {
    write_spread_input(path, n, tag, 300, 60_000);
}

/// Writes `n` track messages for `customers` customers, `step` milliseconds apart.
fn write_spread_input(path: &Path, n: u64, tag: &str, customers: u64, step: i64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(
            f,
            r#"{{"type":"track","userId":"c-{}","event":"{}","messageId":"{tag}-{i}","properties":{{"product":"p{}","category":"{}","price":{}.5}},"timestamp":{}}}"#,
            i % customers,
            ["viewed", "added", "purchased"][(i % 3) as usize],
            i % 40,
            ["shoes", "kids", "garden", "books"][(i % 4) as usize],
            i % 97,
            1_700_000_000_000 + i as i64 * step
        )
        .unwrap();
    }
}

fn cli(db: &Path, args: &[&str]) -> Output {
    cli_env(db, args, &[])
}

fn cli_env(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_audiencedb"));
    cmd.arg("--db").arg(db).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stored_events(db: &Db) -> u64 {
    db.schema().events.iter().map(|e| e.count).sum()
}

/// Opens the folder, checks that it verifies, and returns its number of stored events.
fn open_and_verify(path: &Path) -> u64 {
    let db = Db::open(path).unwrap_or_else(|e| panic!("{}: does not open: {e}", path.display()));
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    stored_events(&db)
}

fn snapshot_files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    out.sort();
    out
}

/// A folder with `n` events imported by the command line, opened and closed once more (so
/// sled has written a snapshot), then `more` events more (so the next open writes a new one).
fn seeded_folder(dir: &Path, n: u64, more: u64) -> PathBuf {
    let path = dir.join("shop.db");
    seed(&path, dir, n, more);
    path
}

/// [`seeded_folder`] at `path`, with its input files in `dir`.
fn seed(path: &Path, dir: &Path, n: u64, more: u64) {
    let input = dir.join("seed.ndjson");
    write_input(&input, n, "seed");
    let out = cli(path, &["import", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(path, &["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    if more > 0 {
        let input = dir.join("more.ndjson");
        write_input(&input, more, "more");
        let out = cli(path, &["import", input.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    std::fs::remove_file(&input).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Injected: the files a failed open leaves behind.

/// An open that fails while sled writes its snapshot (a full disk: the open's first write)
/// leaves `snap.<lsn>.generating`, empty or cut short. sled's reader took it for the latest
/// snapshot, so every later open failed as "corrupt data". It is removed before sled opens.
#[test]
fn an_unfinished_storage_snapshot_does_not_break_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_folder(dir.path(), 3_000, 500);
    let snaps = snapshot_files(&path);
    assert_eq!(snaps.len(), 1, "one finished snapshot: {snaps:?}");
    let finished = std::fs::read(&snaps[0]).unwrap();
    let name = snaps[0].file_name().unwrap().to_string_lossy().into_owned();
    let lsn = u64::from_str_radix(name.trim_start_matches("snap."), 16).unwrap();
    let cases: [(&str, Vec<u8>); 3] = [
        ("empty", Vec::new()),
        ("cut short", finished[..finished.len() / 2].to_vec()),
        ("whole but never renamed", finished.clone()),
    ];
    for (what, bytes) in cases {
        let leftover = path.join(format!("snap.{:016X}.generating", lsn + 4096));
        std::fs::write(&leftover, &bytes).unwrap();
        assert_eq!(
            open_and_verify(&path),
            3_500,
            "{what}: every event is there"
        );
        assert!(!leftover.exists(), "{what}: the leftover is removed");
        // And the command line, which the issue saw fail.
        std::fs::write(&leftover, &bytes).unwrap();
        let out = cli(&path, &["verify"]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
    }
}

/// A folder another process (here: this one) has open keeps its files: a `.generating` file
/// may be that process's snapshot in the making.
#[test]
fn an_open_folder_keeps_its_snapshot_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_folder(dir.path(), 1_000, 0);
    let db = Db::open(&path).unwrap();
    let leftover = path.join("snap.FFFFFFFFFFFFFFF0.generating");
    std::fs::write(&leftover, b"").unwrap();
    match Db::open(&path) {
        Err(Error::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second open must be refused"),
    }
    assert!(leftover.exists(), "a folder in use is left alone");
    drop(db);
    assert_eq!(open_and_verify(&path), 1_000);
    assert!(!leftover.exists());
}

// ---------------------------------------------------------------------------------------------
// Injected: an I/O error (ENOSPC) behind the storage layer.

fn track(cust: &str, i: i64) -> audiencedb::Message {
    audiencedb::Message::track(
        cust,
        "viewed",
        vec![(
            "product".into(),
            audiencedb::model::Value::Str(format!("p{}", i % 7)),
        )],
        Some(1_700_000_000_000 + i * 60_000),
    )
}

/// A checkpoint that fails leaves what it should have written to the next one: before, the
/// families it had taken were forgotten, the next checkpoint moved the index generation past
/// them and dropped the dirty log, and the folder reopened with stale indexes.
#[test]
fn a_failed_checkpoint_leaves_its_work_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path).unwrap();
        db.ingest(
            (0..200)
                .map(|i| track(&format!("a-{}", i % 20), i))
                .collect(),
        )
        .unwrap();
        db.checkpoint().unwrap();
        // New customers, new values, new days: families and id chunks the snapshot lacks.
        db.ingest(
            (0..300)
                .map(|i| track(&format!("b-{}", i % 30), 10_000 + i * 50))
                .collect(),
        )
        .unwrap();
        db.inject_no_space_after_commits(0);
        let e = db.checkpoint().unwrap_err();
        assert!(e.is_no_space(), "{e}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
        // Every write fails the same way now, and stores nothing.
        let e = db.ingest(vec![track("c-1", 1)]).unwrap_err();
        assert!(e.is_no_space(), "{e}");
        // Space again: the next checkpoint writes what the failed one did not.
        db.inject_no_space_after_commits(u64::MAX);
        db.checkpoint().unwrap();
        assert!(db.verify().unwrap().is_ok());
    }
    assert_eq!(open_and_verify(&path), 500);
}
