//! A full disk (ENOSPC) must not turn a healthy folder into a damaged one: whatever fails while
//! the disk is full, nothing acknowledged is lost, the failure is reported as "no space left on
//! device" (not as corrupt data), and once space is freed the folder opens and verifies.
//!
//! Two kinds of tests:
//! - on a real full disk: a small tmpfs mounted for the test (root only). Where `mount` is not
//!   permitted these tests say so on stderr and return; the injected tests below still run.
//! - with the fault injected: the leftover files a failed open leaves, made by hand, and an
//!   I/O error (ENOSPC) injected behind the storage layer (`Db::inject_no_space_after_commits`,
//!   and for the command line the `AUDIENCEDB_INJECT_NO_SPACE_AFTER_COMMITS` variable).

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
            audiencedb::model::Value::Str(format!("p{}", i % 7).into()),
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

/// The command line's import, with its storage failing after `commits` commits.
fn import_with_no_space_after(db: &Path, input: &Path, commits: u64) -> Output {
    cli_env(
        db,
        &[
            "import",
            "--report-batches",
            "--batch-size",
            "1000",
            input.to_str().unwrap(),
        ],
        &[(
            "AUDIENCEDB_INJECT_NO_SPACE_AFTER_COMMITS",
            &commits.to_string(),
        )],
    )
}

/// The messages the import acknowledged on stdout ("batch N stored, M messages in all").
fn acknowledged(out: &Output) -> u64 {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Every batch stored, then the index snapshot fails: the import did what it promises (every
/// message durable), so it says so with a warning and exits 0; the next open recomputes.
#[test]
fn an_import_whose_final_checkpoint_fails_says_everything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write_input(&input, 5_000, "m");
    let path = dir.path().join("db");
    // Five batches, five commits; the sixth, the checkpoint, fails.
    let out = import_with_no_space_after(&path, &input, 5);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(acknowledged(&out), 5_000);
    assert!(err.contains("read 5000, stored 5000"), "{err}");
    assert!(
        err.contains("warning: every message above is stored, but the index snapshot could not be written: no space left on device (ENOSPC)"),
        "{err}"
    );
    assert!(!err.contains("corrupt"), "{err}");
    assert_eq!(open_and_verify(&path), 5_000);
}

/// A batch fails: exit 1, and the message says what is stored (every batch acknowledged before
/// it) and what is not; the folder holds exactly those, and a second run completes it.
#[test]
fn an_import_stopped_by_a_full_disk_says_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    write_input(&input, 5_000, "m");
    let path = dir.path().join("db");
    let out = import_with_no_space_after(&path, &input, 2);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(acknowledged(&out), 2_000);
    assert!(
        err.contains("no space left on device (ENOSPC)")
            && err.contains(
                "the import stopped: the 2000 messages stored before it (2 batches) are durable"
            ),
        "{err}"
    );
    assert!(!err.contains("corrupt"), "{err}");
    assert_eq!(open_and_verify(&path), 2_000);
    let out = cli(&path, &["import", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(open_and_verify(&path), 5_000);
}

// ---------------------------------------------------------------------------------------------
// A real full disk: a small tmpfs.

/// A tmpfs mounted on a temporary folder for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `mib` MiB, or says why not (on stderr) and returns `None`.
    fn mount(test: &str, mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "{test}: SKIPPED on a real full disk: cannot mount a tmpfs ({}); the \
                     injected-fault tests in this file run regardless",
                    stderr(&o).trim()
                );
                None
            }
            Err(e) => {
                eprintln!(
                    "{test}: SKIPPED on a real full disk: cannot run mount ({e}); the \
                     injected-fault tests in this file run regardless"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file `filler`, leaving about `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 16];
        let mut left = self.available().saturating_sub(leave);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break; // full
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
        filler
    }

    fn available(&self) -> u64 {
        let c = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs fills the struct it is given; the path is a valid C string.
        unsafe {
            let mut s: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
            s.f_bavail as u64 * s.f_frsize as u64
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Asserts that a failed command failed for want of space, in those words, and not as damage.
fn assert_no_space(what: &str, out: &Output) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains("no space left on device (ENOSPC)"),
        "{what}: not reported as a full disk: {err}"
    );
    assert!(
        !err.contains("corrupt"),
        "{what}: reported as damage: {err}"
    );
}

/// The issue's recipe: a healthy folder, the disk filled, `stats` and `verify` run, the filler
/// removed, `verify` again. At several amounts of space left, so that the open fails at
/// different writes (sled zeroing its log's tail, sled's snapshot empty or cut short, the
/// index checkpoint).
#[test]
fn a_full_disk_at_open_is_reported_and_harms_nothing() {
    let Some(fs) = Tmpfs::mount("a_full_disk_at_open_is_reported_and_harms_nothing", 24) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let path = fs.path().join("shop.db");
    let (mut failed, mut unfinished) = (0, 0);
    // Whether sled's log has records past its last snapshot when the seed's process exits
    // depends on its background flusher's timing; a seed without them cannot reach the case,
    // so it is built again (at most ten times: on a loaded machine the flusher often gets
    // there first) until an open fails inside the snapshot.
    for attempt in 0..10 {
        if unfinished > 0 {
            break;
        }
        let pristine = scratch.path().join(format!("pristine-{attempt}.db"));
        // A few events after sled's last snapshot, in the part of its log file already written:
        // the next open's first write is its new snapshot (the issue's case).
        seed(&pristine, scratch.path(), 20_000, 100);
        unfinished += fill_and_open(&fs, &pristine, &path, &mut failed);
    }
    assert!(failed > 0, "the disk was never full enough to matter");
    assert!(
        unfinished > 0,
        "no open failed while writing sled's snapshot: the test no longer reaches that case"
    );
}

/// Copies `pristine` to `path` on the small disk, leaves a few amounts of space free, runs
/// `stats`, `verify`, `stats` (each failure must be a no-space error), then checks that nothing
/// was lost once the space is back. Returns how many unfinished snapshot files were left.
fn fill_and_open(fs: &Tmpfs, pristine: &Path, path: &Path, failed: &mut u32) -> usize {
    let path = path.to_path_buf();
    let mut unfinished = 0;
    for leave in [0, 4 << 10, 16 << 10, 64 << 10, 256 << 10] {
        copy_dir(pristine, &path);
        let filler = fs.fill(leave);
        for command in ["stats", "verify", "stats"] {
            let out = cli(&path, &[command]);
            if !out.status.success() {
                assert_no_space(&format!("{command} with {leave} bytes left"), &out);
                *failed += 1;
            }
            let left_behind = snapshot_files(&path)
                .iter()
                .filter(|p| p.to_string_lossy().ends_with(".generating"))
                .count();
            eprintln!(
                "{command} with {leave} bytes left: exit {:?}, {left_behind} unfinished snapshot files",
                out.status.code()
            );
            unfinished += left_behind;
        }
        std::fs::remove_file(&filler).unwrap();
        assert_eq!(open_and_verify(&path), 20_100, "with {leave} bytes left");
        let out = cli(&path, &["verify"]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::remove_dir_all(&path).unwrap();
    }
    unfinished
}

/// Imports into a folder on a disk with too little space, at amounts that stop it mid-way and
/// that let every batch in but not the index snapshot: every acknowledged batch is there,
/// nothing is half there, the command says what happened, and the folder opens and verifies
/// once space is freed.
#[test]
fn a_full_disk_during_import_loses_nothing_acknowledged() {
    let Some(fs) = Tmpfs::mount("a_full_disk_during_import_loses_nothing_acknowledged", 24) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("in.ndjson");
    let total = 40_000;
    // Many customers and days: an index snapshot of a good size beside the events (families
    // per event and day), so that some amounts of space fit every batch but not the snapshot.
    write_spread_input(&input, total, "m", 8_000, 2_000_000);
    let path = fs.path().join("shop.db");
    let (mut stopped, mut snapshot_failed, mut clean) = (0, 0, 0);
    for leave_kib in [
        1000, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 6000, 8000, 14000,
    ] {
        let filler = fs.fill(leave_kib << 10);
        let out = import_with_no_space_after(&path, &input, u64::MAX);
        let err = stderr(&out);
        let acked = acknowledged(&out);
        let what = format!("{leave_kib} KiB left: {err}");
        assert!(!err.contains("corrupt"), "{what}");
        if out.status.success() {
            assert_eq!(acked, total, "{what}");
            if err.contains("warning: every message above is stored, but the index snapshot could not be written: no space left on device (ENOSPC)") {
                snapshot_failed += 1;
            } else {
                assert!(!err.contains("warning"), "{what}");
                clean += 1;
            }
        } else {
            assert_no_space(&what, &out);
            assert!(
                err.contains(&format!(
                    "the import stopped: the {acked} messages stored before it"
                )),
                "{what}"
            );
            stopped += 1;
        }
        std::fs::remove_file(&filler).unwrap();
        let stored = open_and_verify(&path);
        eprintln!(
            "{leave_kib} KiB left: exit {:?}, {acked} acknowledged, {stored} stored",
            out.status.code()
        );
        assert!(
            stored >= acked,
            "{what}: {acked} acknowledged, {stored} stored"
        );
        assert!(
            stored.is_multiple_of(1000),
            "{what}: {stored} stored: a batch is half there"
        );
        // With space, the same import completes it.
        let out = cli(&path, &["import", input.to_str().unwrap()]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert_eq!(open_and_verify(&path), total, "{what}");
        std::fs::remove_dir_all(&path).unwrap();
    }
    eprintln!(
        "imports stopped mid-way: {stopped}, stored but no index snapshot: {snapshot_failed}, \
         clean: {clean}"
    );
    assert!(
        stopped > 0 && snapshot_failed > 0 && clean > 0,
        "the amounts of space left no longer reach every case: {stopped} stopped, \
         {snapshot_failed} without a snapshot, {clean} clean"
    );
}
