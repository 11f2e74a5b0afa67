//! Timelines against a sorted list: random writes whose events come in time order, at equal
//! times, or earlier than what is stored (and, within one write, in any order), with re-sent
//! message ids, interleaved with reopens (clean and crashed), checkpoints, deletes and
//! compactions. After every step each customer's events read back exactly as a plain model
//! holds them: every event ever stored, sorted by time, stably (so among equal times, events
//! stored earlier come first, and a write's own in the order they came). That is the order the
//! blocks alone held before tails existed (format 3), so tails, their folding into blocks and
//! the merge of out-of-order events must all keep it. The indexes must verify, and no customer
//! may hold more tail records than the bound.

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::testing::timeline::TAIL_RECORDS;
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
    Reopen { crash: bool },
    Checkpoint,
    Delete(u8),
    Compact,
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
    ]
}

fn name(cust: u8) -> String {
    format!("c{cust}")
}

fn open(path: &std::path::Path) -> Db {
    let mut config = Config::new(path);
    config.checkpoint_after = 50;
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

fn check(db: &Db, model: &BTreeMap<u8, Vec<(i64, i64)>>) -> Result<(), TestCaseError> {
    for cust in 0..CUSTOMERS {
        let got = read(db, cust);
        match model.get(&cust) {
            None => prop_assert!(got.is_none(), "{} should not exist", name(cust)),
            Some(m) => prop_assert_eq!(got.as_ref(), Some(m), "customer {}", name(cust)),
        }
    }
    let report = db.verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    let tails = db
        .record_stats()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "event tails")
        .map_or(0, |s| s.records);
    prop_assert!(
        tails <= TAIL_RECORDS as u64 * u64::from(CUSTOMERS),
        "{tails} tail records"
    );
    Ok(())
}

fn tail_records(db: &Db) -> u64 {
    db.record_stats()
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "event tails")
        .map_or(0, |s| s.records)
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
        for op in ops {
            match op {
                Op::Write(parts) => {
                    let mut messages = Vec::new();
                    let mut new: Vec<(u8, i64, i64)> = Vec::new();
                    writes += 1;
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
                            let id = if part.resend && writes > 1 {
                                format!("w{}-{p}-{i}", writes - 1)
                            } else {
                                format!("w{writes}-{p}-{i}")
                            };
                            tag += 1;
                            let mut m = Message::track(
                                name(part.cust),
                                "viewed",
                                vec![("tag".into(), Value::Int(tag))],
                                Some(ts),
                            );
                            m.message_id = Some(id.clone());
                            messages.push(m);
                            if seen.entry(part.cust).or_default().insert(id) {
                                new.push((part.cust, ts, tag));
                            }
                        }
                    }
                    db.as_ref().unwrap().ingest(messages).unwrap();
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
                        // Stable: stored events first among equal times, then the write's own
                        // in the order they came.
                        let entry = model.entry(cust).or_default();
                        entry.append(&mut mine);
                        entry.sort_by_key(|e| e.0);
                    }
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
                    prop_assert_eq!(tail_records(&d), 0, "a compacted folder holds no tails");
                    db = Some(d);
                }
            }
            let d = db.as_ref().unwrap();
            check(d, &model)?;
        }
    }
}

/// A stream in time order: each write adds one event per customer. Tails take the events until
/// the bound, then a write folds them; nothing stored is rewritten in between, and every
/// reading path sees the same events.
#[test]
fn time_ordered_writes_append_tails_and_fold_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = open(&path);
    let mut expected: Vec<Vec<i64>> = vec![Vec::new(); 20];
    for w in 0..30i64 {
        let messages: Vec<Message> = (0..20)
            .map(|c| {
                let mut m = Message::track(
                    format!("k{c}"),
                    "viewed",
                    vec![("tag".into(), Value::Int(w))],
                    Some(BASE + w * 60_000 + c),
                );
                m.message_id = Some(format!("k{c}-{w}"));
                m
            })
            .collect();
        db.ingest(messages).unwrap();
        for e in expected.iter_mut() {
            e.push(w);
        }
        let tails = tail_records(&db);
        // The first write of a customer stores a block; later ones append tails until the
        // bound, and the write that would pass it folds them.
        let per_customer = (w as u64) % (TAIL_RECORDS as u64 + 1);
        assert_eq!(tails, 20 * per_customer, "after write {w}");
    }
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
    // Re-sending the last writes' messages stores nothing: the tails' message ids count.
    let again: Vec<Message> = (25..30i64)
        .map(|w| {
            let mut m = Message::track("k3", "viewed", vec![], Some(BASE + w * 60_000 + 3));
            m.message_id = Some(format!("k3-{w}"));
            m
        })
        .collect();
    assert_eq!(db.ingest(again).unwrap().duplicates, 5);
    assert!(db.verify().unwrap().is_ok());
}
