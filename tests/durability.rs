//! Durability for real: a child `audiencedb import` is killed with SIGKILL at random moments; after
//! each kill the folder is reopened and every batch the child acknowledged must be there, no
//! batch may be half there, and the indexes must verify. A fifth of the customers browse
//! anonymously and are merged with their userId half way through, so merges are killed too. The
//! folder is seeded first with one import large enough to train the block compression
//! dictionary, so the killed writes' folds merge into and write dictionary-compressed blocks. The
//! input is in time order, customers interleaved, and the child folds its write log every few
//! batches: kills land in writes, merges and folds.

mod raw_sled;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use audiencedb::Db;

const BATCH: u64 = 500;

/// Events of the seed import: one batch, large enough to train a dictionary on.
const SEED: u64 = 20_000;

/// Writes the seed: `SEED` events of 200 other customers, shop-like, in one file.
fn write_seed(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..SEED {
        writeln!(
            f,
            r#"{{"type":"track","userId":"s-{}","event":"viewed","messageId":"s-{i}","properties":{{"product":"sku-{}","category":"{}","price":{}.95}},"timestamp":{}}}"#,
            i % 200,
            i * 7 % 300,
            ["shoes", "kids", "garden", "books"][(i % 4) as usize],
            i % 89,
            1_690_000_000_000 + i as i64 * 90_000
        )
        .unwrap();
    }
}

/// Customers of the input who browse anonymously first (`a-K`), log in half way through (one
/// message with both ids: a merge), and go on as `c-K`.
const MERGED: u64 = 60;

/// Writes `n` track messages for 300 customers, each with a unique message id; the first
/// [`MERGED`] customers are anonymous until their message of round `n / 600`, which merges them.
fn write_input(path: &Path, n: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let login = n / 600;
    for i in 0..n {
        let (k, round) = (i % 300, i / 300);
        let ids = if k >= MERGED || round > login {
            format!(r#""userId":"c-{k}""#)
        } else if round < login {
            format!(r#""anonymousId":"a-{k}""#)
        } else {
            format!(r#""anonymousId":"a-{k}","userId":"c-{k}""#)
        };
        writeln!(
            f,
            r#"{{"type":"track",{ids},"event":"viewed","messageId":"m-{i}","properties":{{"product":"p{}","price":{}.5}},"timestamp":{}}}"#,
            i % 40,
            i % 97,
            1_700_000_000_000 + i as i64 * 60_000
        )
        .unwrap();
    }
}

/// Imports `input` into the folder with a child process left to finish.
fn import_all(db_path: &Path, input: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .arg("--db")
        .arg(db_path)
        .arg("import")
        .arg(input)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn stored_events(db: &Db) -> u64 {
    db.schema().events.iter().map(|e| e.count).sum()
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.ndjson");
    let total = 60_000;
    write_input(&input, total);
    let db_path = dir.path().join("db");
    let seed_input = dir.path().join("seed.ndjson");
    write_seed(&seed_input);
    import_all(&db_path, &seed_input);
    {
        let raw = raw_sled::open(&db_path);
        let tree = raw.open_tree("audiencedb").unwrap();
        assert!(
            tree.get(audiencedb::testing::keys::dictionary(1))
                .unwrap()
                .is_some(),
            "the seed trained a block dictionary"
        );
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    let mut stored_before = SEED;
    for round in 0..12 {
        // Each round re-imports the whole file: already stored batches are skipped as duplicates,
        // so the import resumes where the previous one was killed.
        let mut child = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
            .args(["--db"])
            .arg(&db_path)
            .args([
                "import",
                "--report-batches",
                "--batch-size",
                &BATCH.to_string(),
            ])
            .arg(&input)
            // A fold every few batches, in many small batches: kills land inside folds too.
            .env("AUDIENCEDB_FOLD_EVENTS", "3000")
            .env("AUDIENCEDB_FOLD_BATCH_BYTES", "4096")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(20 + seed % 120);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // "batch N stored, M messages in all"
                if let Some(m) = line.split(", ").nth(1) {
                    acked = m.split(' ').next().unwrap().parse().unwrap();
                }
            }
            acked
        });
        let started = Instant::now();
        let mut finished = false;
        while started.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !finished {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let acked_this_round = reader.join().unwrap();

        let db = Db::open(&db_path).unwrap();
        let stored = stored_events(&db);
        assert!(
            (stored - SEED).is_multiple_of(BATCH) || stored == SEED + total,
            "round {round}: {stored} events stored: a batch is half there"
        );
        let report = db.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        // A merge is all or nothing: once the logged-in id is there, both ids are one customer.
        for k in 0..MERGED {
            let known = db.internal_id(&format!("c-{k}")).unwrap();
            if known.is_some() {
                assert_eq!(
                    db.internal_id(&format!("a-{k}")).unwrap(),
                    known,
                    "round {round}: c-{k} is stored but a-{k} is not merged into it"
                );
            }
        }
        // What was there before, plus everything acknowledged in this round.
        assert!(
            stored >= stored_before + acked_this_round,
            "round {round}: {stored_before} before, {acked_this_round} acknowledged, {stored} stored"
        );
        eprintln!(
            "round {round}: killed {}, acknowledged {acked_this_round}, stored {stored}",
            !finished
        );
        stored_before = stored;
        if finished && stored == SEED + total {
            break;
        }
    }
    assert!(
        kills > 0,
        "the child was never killed: the test proved nothing"
    );
    // Finish the import and check the end state once more.
    import_all(&db_path, &input);
    let db = Db::open(&db_path).unwrap();
    assert_eq!(stored_events(&db), SEED + total);
    assert_eq!(db.schema().customers, 300 + 200);
    for k in 0..MERGED {
        let c = db.customer(&format!("a-{k}")).unwrap().unwrap();
        assert_eq!(c.ids, [format!("c-{k}"), format!("a-{k}")]);
        assert_eq!(c.events.len() as u64, total / 300);
    }
    assert!(db.verify().unwrap().is_ok());
}
