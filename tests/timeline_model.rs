//! Timelines against a sorted list: random writes whose events come in time order, at equal
//! times, or earlier than what is stored (and, within one write, in any order), with re-sent
//! message ids, interleaved with reopens (clean and crashed), checkpoints, deletes, compactions
//! and folds of the write log (at a small bound, so that most cases fold many times; some cut
//! short by a full disk after any of their batches, then crashed). After every step each
//! customer's events read back exactly as a plain model holds them: every event ever stored,
//! sorted by time, stably (so among equal times, events stored earlier come first, and a write's
//! own in the order they came). That is the order the blocks alone held before the write log
//! existed (format 3), so the memtable's merge on reads, folds into blocks and the read-back of
//! the log at open must all keep it: a fold that lost, doubled or reordered an event, or an open
//! that read back a folded part again, fails here. Every reading path is compared: the whole
//! timeline, and a query's exact check over a window. The indexes must verify, and the memtable
//! must stay within its bound.

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::{Config, Db};
use proptest::prelude::*;

const CUSTOMERS: u8 = 3;
const BASE: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy)]
enum When {
    /// At or after the customer's last stored event (0: at the same time).
    After(i64),
    /// Before it.
    Before(i64),
}

#[derive(Debug, Clone)]
struct Part {
    cust: u8,
    when: When,
    /// Each event's offset from the anchor, in seconds, in the order they come.
    offsets: Vec<i64>,
    /// Re-send the message ids of an earlier write (every event a duplicate), when there was one.
    resend: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Part>),
    Reopen {
        crash: bool,
    },
    Checkpoint,
    Delete(u8),
    Compact,
    /// A write that folds the log, with the disk full after `commits` more commits (the write's
    /// own, then the fold's batches of one customer each), then a crash.
    FoldCutShort {
        parts: Vec<Part>,
        commits: u64,
    },
}

fn part() -> impl Strategy<Value = Part> {
    let when = prop_oneof![
        6 => (0i64..3).prop_map(When::After),
        2 => (1i64..60).prop_map(When::Before),
    ];
    let offsets = prop_oneof![
        8 => prop::collection::vec(0i64..3, 1..4),
        2 => prop::collection::vec(-3i64..10, 1..12),
        1 => prop::collection::vec(0i64..200, 100..200),
    ];
    (0..CUSTOMERS, when, offsets, prop::bool::weighted(0.1)).prop_map(
        |(cust, when, offsets, resend)| Part {
            cust,
            when,
            offsets,
            resend,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => prop::collection::vec(part(), 1..4).prop_map(Op::Write),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
        1 => Just(Op::Checkpoint),
        1 => (0..CUSTOMERS).prop_map(Op::Delete),
        1 => Just(Op::Compact),
        2 => (prop::collection::vec(part(), 1..4), 0u64..5)
            .prop_map(|(parts, commits)| Op::FoldCutShort { parts, commits }),
    ]
}

fn name(cust: u8) -> String {
    format!("c{cust}")
}

/// The memtable's bound in these tests: a fold every few writes.
const FOLD_EVENTS: usize = 40;

fn open(path: &std::path::Path) -> Db {
    let mut config = Config::new(path);
    config.checkpoint_after = 3;
    config.fold_events = FOLD_EVENTS;
    // A batch per customer: a fold cut short leaves some customers folded and some not.
    config.fold_batch_bytes = 1;
    Db::open_with(config).unwrap()
}

/// Each customer's events as (time, tag), in the order read.
fn read(db: &Db, cust: u8) -> Option<Vec<(i64, i64)>> {
    db.customer(&name(cust)).unwrap().map(|c| {
        c.events
            .into_iter()
            .map(|e| match e.properties.iter().find(|(k, _)| k == "tag") {
                Some((_, Value::Int(tag))) => (e.timestamp, *tag),
                other => panic!("no tag: {other:?}"),
            })
            .collect()
    })
}

/// `folded`: whether the last write folded, or nothing was written since a compaction (a fold
/// cut short leaves the memtable over its bound until the next write).
fn check(db: &Db, model: &Model, folded: bool) -> Result<(), TestCaseError> {
    for cust in 0..CUSTOMERS {
        let got = read(db, cust);
        match model.get(&cust) {
            None => prop_assert!(got.is_none(), "{} should not exist", name(cust)),
            Some(m) => prop_assert_eq!(got.as_ref(), Some(m), "customer {}", name(cust)),
        }
    }
    let report = db.verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    let unfolded = db.unfolded();
    prop_assert!(
        !folded || unfolded.events <= FOLD_EVENTS,
        "{} unfolded events",
        unfolded.events
    );
    // A query's exact check reads the same timeline: each customer's count of events at or
    // after the median time of its model.
    for (cust, m) in model {
        if m.is_empty() {
            continue;
        }
        let mid = m[m.len() / 2].0;
        let want = m.iter().filter(|e| e.0 >= mid).count();
        let got = count_holds(db, *cust, "since", mid, want);
        prop_assert!(
            got,
            "customer {}: {} events at or after {}",
            name(*cust),
            want,
            mid
        );
        let want = m.iter().filter(|e| e.0 < mid).count();
        let got = count_holds(db, *cust, "before", mid, want);
        prop_assert!(
            got,
            "customer {}: {} events before {}",
            name(*cust),
            want,
            mid
        );
    }
    Ok(())
}

fn log_records(db: &Db) -> u64 {
    db.record_stats()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "write log")
        .map_or(0, |s| s.records)
}

/// Whether the exact check "did `viewed` at least `n` times since (or before) `at`" holds for
/// the customer and "at least n + 1 times" does not.
fn count_holds(db: &Db, cust: u8, window: &str, at: i64, n: usize) -> bool {
    let holds = |k: usize| {
        let rule = format!(
            "viewed at least {k} times {window} {}",
            audiencedb::model::time::format_rfc3339(at)
        );
        let id = db.internal_id(&name(cust)).unwrap().unwrap();
        let now = BASE + 1_000_000_000_000;
        db.query(&rule, now).unwrap().bitmap().contains(id)
    };
    holds(n) && !holds(n + 1)
}

type Model = BTreeMap<u8, Vec<(i64, i64)>>;

/// A write's messages, and the events it stores as (customer, time, tag).
fn messages_of(
    parts: &[Part],
    model: &Model,
    seen: &mut BTreeMap<u8, BTreeSet<String>>,
    tag: &mut i64,
    writes: &mut u64,
) -> (Vec<Message>, Vec<(u8, i64, i64)>) {
    let mut messages = Vec::new();
    let mut new: Vec<(u8, i64, i64)> = Vec::new();
    *writes += 1;
    for (p, part) in parts.iter().enumerate() {
        let last = model
            .get(&part.cust)
            .and_then(|m| m.last())
            .map_or(BASE, |e| e.0);
        let anchor = match part.when {
            When::After(s) => last + s * 1_000,
            When::Before(s) => (last - s * 1_000).max(BASE),
        };
        for (i, off) in part.offsets.iter().enumerate() {
            let ts = (anchor + off * 1_000).max(BASE);
            let id = if part.resend && *writes > 1 {
                format!("w{}-{p}-{i}", *writes - 1)
            } else {
                format!("w{writes}-{p}-{i}")
            };
            *tag += 1;
            let mut m = Message::track(
                name(part.cust),
                "viewed",
                vec![("tag".into(), Value::Int(*tag))],
                Some(ts),
            );
            m.message_id = Some(id.as_str().into());
            messages.push(m);
            if seen.entry(part.cust).or_default().insert(id) {
                new.push((part.cust, ts, *tag));
            }
        }
    }
    (messages, new)
}

/// The model after a write of `parts` stored `new`.
fn apply(model: &mut Model, parts: &[Part], new: Vec<(u8, i64, i64)>) {
    for cust in 0..CUSTOMERS {
        let mut mine: Vec<(i64, i64)> = new
            .iter()
            .filter(|e| e.0 == cust)
            .map(|e| (e.1, e.2))
            .collect();
        if mine.is_empty() {
            if parts.iter().any(|p| p.cust == cust) {
                model.entry(cust).or_default();
            }
            continue;
        }
        // Stable: stored events first among equal times, then the write's own in the order
        // they came.
        let entry = model.entry(cust).or_default();
        entry.append(&mut mine);
        entry.sort_by_key(|e| e.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn timelines_read_back_as_a_sorted_list(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = Some(open(&path));
        let mut model: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
        let mut seen: BTreeMap<u8, BTreeSet<String>> = BTreeMap::new();
        let mut tag = 0i64;
        let mut writes = 0u64;
        let mut folded = true;
        for op in ops {
            match op {
                Op::Write(parts) => {
                    let (messages, new) =
                        messages_of(&parts, &model, &mut seen, &mut tag, &mut writes);
                    db.as_ref().unwrap().ingest(messages).unwrap();
                    apply(&mut model, &parts, new);
                    folded = true;
                }
                Op::Reopen { crash } => {
                    let old = db.take().unwrap();
                    if crash { old.abandon() } else { drop(old) }
                    db = Some(open(&path));
                }
                Op::Checkpoint => db.as_ref().unwrap().checkpoint().unwrap(),
                Op::Delete(cust) => {
                    let r = db.as_ref().unwrap().delete_customer(&name(cust));
                    prop_assert_eq!(r.is_ok(), model.remove(&cust).is_some());
                    seen.remove(&cust);
                }
                Op::Compact => {
                    db.take().unwrap().compact().unwrap();
                    let d = open(&path);
                    prop_assert_eq!(log_records(&d), 0, "a compacted folder holds no write log");
                    db = Some(d);
                    folded = true;
                }
                Op::FoldCutShort { parts, commits } => {
                    let d = db.take().unwrap();
                    d.inject_no_space_after_commits(commits);
                    let seen_before = seen.clone();
                    let (messages, new) =
                        messages_of(&parts, &model, &mut seen, &mut tag, &mut writes);
                    let stored = d.ingest(messages).is_ok();
                    // Refused only when it had something to commit.
                    prop_assert_eq!(stored, commits > 0 || new.is_empty());
                    if stored {
                        apply(&mut model, &parts, new);
                    } else {
                        seen = seen_before;
                    }
                    d.abandon();
                    db = Some(open(&path));
                    folded = false;
                }
            }
            let d = db.as_ref().unwrap();
            check(d, &model, folded)?;
        }
    }
}

/// A stream in time order: each write adds one event per customer. Each write adds one log
/// record and touches no block (the first too: an event or two of a new customer go to the log,
/// too few for blocks at once); the write that takes the memtable past its bound folds it: the
/// blocks change, the log records are gone. Every reading path sees the same events throughout.
#[test]
fn time_ordered_writes_append_one_log_record_each_and_fold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open(&path);
    let mut expected: Vec<Vec<i64>> = vec![Vec::new(); 20];
    let blocks = |db: &Db| {
        db.record_stats()
            .unwrap()
            .into_iter()
            .find(|s| s.kind == "event blocks")
            .map_or((0, 0), |s| (s.records, s.value_bytes))
    };
    let write = |w: i64| -> Vec<Message> {
        (0..20)
            .map(|c| {
                let mut m = Message::track(
                    format!("k{c}"),
                    "viewed",
                    vec![("tag".into(), Value::Int(w))],
                    Some(BASE + w * 60_000 + c),
                );
                m.message_id = Some(format!("k{c}-{w}").into());
                m
            })
            .collect()
    };
    db.ingest(write(0)).unwrap();
    assert_eq!(
        blocks(&db).0,
        0,
        "new customers with one event each: the log"
    );
    assert_eq!(log_records(&db), 1);
    assert_eq!(db.unfolded().events, 20);
    for e in expected.iter_mut() {
        e.push(0);
    }
    let mut logged = 1u64;
    let mut folds = 0;
    for w in 1..32i64 {
        let before = blocks(&db);
        db.ingest(write(w)).unwrap();
        for e in expected.iter_mut() {
            e.push(w);
        }
        logged += 1;
        if logged * 20 > FOLD_EVENTS as u64 {
            // This write folded the log.
            logged = 0;
            folds += 1;
            assert_ne!(blocks(&db), before, "write {w} folded into blocks");
            assert_eq!(db.unfolded().events, 0);
        } else {
            assert_eq!(blocks(&db), before, "write {w} touched no block");
            assert_eq!(db.unfolded().events as u64, logged * 20);
        }
        assert_eq!(log_records(&db), logged, "after write {w}");
    }
    assert_eq!(folds, 10);
    assert_eq!(logged, 2);
    for (c, want) in expected.iter().enumerate() {
        let got: Vec<i64> = db
            .customer(&format!("k{c}"))
            .unwrap()
            .unwrap()
            .events
            .iter()
            .map(|e| match e.properties[0].1 {
                Value::Int(t) => t,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(&got, want);
    }
    // Re-sending the last writes' messages stores nothing: the folded and the unfolded message
    // ids both count.
    let again: Vec<Message> = (27..32i64)
        .map(|w| {
            let mut m = Message::track("k3", "viewed", vec![], Some(BASE + w * 60_000 + 3));
            m.message_id = Some(format!("k3-{w}").into());
            m
        })
        .collect();
    assert_eq!(db.ingest(again).unwrap().duplicates, 5);
    assert!(db.verify().unwrap().is_ok());
    // After a crash the open reads the unfolded writes back from the log.
    let unfolded = db.unfolded();
    assert!(unfolded.events > 0);
    db.abandon();
    let db = open(&path);
    assert_eq!(db.unfolded(), unfolded);
    assert_eq!(db.customer("k7").unwrap().unwrap().events.len(), 32);
    assert!(db.verify().unwrap().is_ok());
}

fn kind(db: &Db, kind: &str) -> (u64, u64) {
    db.record_stats()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == kind)
        .map_or((0, 0), |s| (s.records, s.value_bytes))
}

fn history(customer: &str, from: i64, n: i64) -> Vec<Message> {
    (from..from + n)
        .map(|i| {
            let mut m = Message::track(
                customer,
                "viewed",
                vec![
                    ("tag".into(), Value::Int(i)),
                    (
                        "sku".into(),
                        Value::Str(format!("sku-{}", i * 7919 % 1000).into()),
                    ),
                ],
                Some(BASE + i * 60_000),
            );
            m.message_id = Some(format!("{customer}-{i}").into());
            m
        })
        .collect()
}

/// A write that brings a customer with nothing stored 16 events or more (storage's
/// `DIRECT_FROM_EVENTS`) writes its blocks at once (input grouped by customer: its whole history
/// so far), and nothing to the log; fewer (a stream's first event or two), and a customer with
/// something stored, go to the log. All read the same.
#[test]
fn a_new_customers_events_go_straight_to_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    db.ingest(history("grouped", 0, 16)).unwrap();
    assert_eq!(kind(&db, "write log").0, 0, "no log frame");
    assert_eq!(kind(&db, "event blocks").0, 1);
    assert_eq!(db.unfolded().events, 0);
    // More events of the grouped customer: it has blocks, so they go to the log.
    db.ingest(history("grouped", 16, 12)).unwrap();
    assert_eq!(kind(&db, "write log").0, 1, "one log frame");
    assert_eq!(kind(&db, "event blocks").0, 1);
    assert_eq!(db.unfolded().events, 12);
    // New customers in the same write as a known one: blocks for the one with 16 events, the
    // log for the one with 15 and for the known one.
    let mut all = history("new", 0, 16);
    all.extend(history("few", 0, 15));
    all.extend(history("grouped", 28, 2));
    db.ingest(all).unwrap();
    assert_eq!(kind(&db, "event blocks").0, 2);
    assert_eq!(db.unfolded().events, 12 + 15 + 2);
    assert_eq!(db.customer("grouped").unwrap().unwrap().events.len(), 30);
    assert_eq!(db.customer("few").unwrap().unwrap().events.len(), 15);
    assert_eq!(db.ingest(history("grouped", 0, 30)).unwrap().duplicates, 30);
    assert_eq!(db.ingest(history("new", 0, 16)).unwrap().duplicates, 16);
    assert_eq!(db.ingest(history("few", 0, 15)).unwrap().duplicates, 15);
    assert!(db.verify().unwrap().is_ok());
}

/// The write log file: a write appends one frame, a fold empties the file, a frame whose
/// write failed (a full disk at the commit) is never read back and is written over, and a
/// crash leaves the committed frames to read back.
#[test]
fn the_log_file_holds_committed_frames_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let file = path.join("writelog");
    let mut config = Config::new(&path);
    config.fold_events = usize::MAX;
    config.fold_bytes = usize::MAX;
    let db = Db::open_with(config.clone()).unwrap();
    let customers: Vec<String> = (0..300).map(|c| format!("big{c}")).collect();
    // 16 events each: enough for blocks at once.
    let first: Vec<Message> = customers.iter().flat_map(|c| history(c, 0, 16)).collect();
    db.ingest(first).unwrap();
    assert_eq!(kind(&db, "write log").0, 0, "new customers: blocks at once");
    let second: Vec<Message> = customers.iter().flat_map(|c| history(c, 16, 1)).collect();
    db.ingest(second).unwrap();
    assert_eq!(kind(&db, "write log").0, 1, "one frame");
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(kind(&db, "write log").1, len);
    drop(db);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the close folded"
    );

    let db = Db::open_with(config.clone()).unwrap();
    let big: Vec<Message> = customers.iter().flat_map(|c| history(c, 17, 200)).collect();
    assert_eq!(db.ingest(big).unwrap().stored, 300 * 200);
    let committed = std::fs::metadata(&file).unwrap().len();
    db.inject_no_space_after_commits(0);
    let failed: Vec<Message> = customers.iter().flat_map(|c| history(c, 217, 5)).collect();
    assert!(db.ingest(failed).is_err());
    assert_eq!(kind(&db, "write log"), (1, committed));
    db.abandon();
    let db = Db::open_with(config.clone()).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        committed,
        "cut off"
    );
    for c in &customers {
        assert_eq!(db.customer(c).unwrap().unwrap().events.len(), 217);
    }
    assert!(db.verify().unwrap().is_ok());
    // The next write's frame goes where the failed one was.
    db.ingest(history("big7", 217, 5)).unwrap();
    assert_eq!(kind(&db, "write log").0, 2);
    db.abandon();
    let db = Db::open_with(config).unwrap();
    assert_eq!(db.customer("big7").unwrap().unwrap().events.len(), 222);
    assert!(db.verify().unwrap().is_ok());
}
