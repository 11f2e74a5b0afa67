//! A reference model: random sequences of ingests, deletes, crashes and reopens run against the
//! database and against a plain in-memory model; after every step the stored customers must
//! equal the model and the indexes must equal a rebuild from the stored data (bitmaps and per-day
//! rollups: events carry two numeric properties, and only one of them gets rollups).

use std::collections::BTreeMap;

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::{Config, Db};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Identify {
        cust: u8,
        tier: Option<Option<&'static str>>,
        age: Option<i64>,
        msg: Option<u8>,
    },
    Track {
        cust: u8,
        event: &'static str,
        product: u8,
        ts: i64,
        count: u16,
        msg: Option<u8>,
    },
    Delete(u8),
    Reopen {
        crash: bool,
    },
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    let cust = 0u8..6;
    prop_oneof![
        3 => (cust.clone(), prop::option::of(prop::option::of(prop::sample::select(vec!["Gold", "Silver", "Bronze"]))),
              prop::option::of(18i64..30), prop::option::of(0u8..4))
            .prop_map(|(cust, tier, age, msg)| Op::Identify { cust, tier, age, msg }),
        6 => (cust.clone(), prop::sample::select(vec!["viewed", "purchased", "visited"]), 0u8..5,
              0i64..(10 * 86_400_000), prop_oneof![8 => Just(1u16), 1 => 100u16..300], prop::option::of(0u8..4))
            .prop_map(|(cust, event, product, ts, count, msg)| Op::Track { cust, event, product, ts, count, msg }),
        1 => cust.prop_map(Op::Delete),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
        1 => Just(Op::Checkpoint),
    ]
}

/// What the model knows of one customer.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    traits: Option<BTreeMap<String, Value>>,
    events: Vec<(i64, String, String)>,
    seen: Vec<String>,
}

fn name(cust: u8) -> String {
    format!("c{cust}")
}

fn open(path: &std::path::Path) -> Db {
    let mut config = Config::new(path);
    config.value_bound = 3; // products p0..p4 overflow it: exercises unindexing
    config.rollup_bound = 1; // `amount` or `qty`, whichever comes first, gets rollups
    config.checkpoint_after = 7;
    config.parallel_index_from = 0; // every write applies its index changes on several threads
    Db::open_with(config).unwrap()
}

fn check(db: &Db, model: &BTreeMap<u8, Model>) -> Result<(), TestCaseError> {
    for cust in 0..6u8 {
        let got = db.customer(&name(cust)).unwrap();
        match model.get(&cust) {
            None => prop_assert!(got.is_none(), "{} should not exist", name(cust)),
            Some(m) => {
                let got = got.unwrap();
                let traits = got
                    .traits
                    .map(|t| t.into_iter().collect::<BTreeMap<_, _>>());
                prop_assert_eq!(&traits, &m.traits);
                let events: Vec<(i64, String, String)> = got
                    .events
                    .into_iter()
                    .map(|e| {
                        let p = match e.properties.iter().find(|(k, _)| k == "product") {
                            Some((_, Value::Str(v))) => v.clone(),
                            other => panic!("unexpected properties {other:?}"),
                        };
                        (e.timestamp, e.name, p)
                    })
                    .collect();
                prop_assert_eq!(&events, &m.events);
            }
        }
    }
    let report = db.verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    prop_assert_eq!(db.schema().customers, model.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = Some(open(&path));
        let mut model: BTreeMap<u8, Model> = BTreeMap::new();
        for op in ops {
            let d = db.as_ref().unwrap();
            match op {
                Op::Identify { cust, tier, age, msg } => {
                    let mut traits = Vec::new();
                    if let Some(t) = tier {
                        traits.push(("tier".to_string(), t.map(|t| Value::Str(t.into()))));
                    }
                    if let Some(a) = age {
                        traits.push(("age".to_string(), Some(Value::Int(a))));
                    }
                    let mut m = Message::identify(name(cust), traits.clone());
                    m.message_id = msg.map(|i| format!("m{i}"));
                    d.ingest(vec![m]).unwrap();
                    let entry = model.entry(cust).or_default();
                    if let Some(id) = msg.map(|i| format!("m{i}")) {
                        if entry.seen.contains(&id) { continue; }
                        entry.seen.push(id);
                    }
                    let profile = entry.traits.get_or_insert_with(BTreeMap::new);
                    for (k, v) in traits {
                        match v {
                            Some(v) => { profile.insert(k, v); }
                            None => { profile.remove(&k); }
                        }
                    }
                }
                Op::Track { cust, event, product, ts, count, msg } => {
                    let batch: Vec<Message> = (0..count)
                        .map(|i| {
                            let mut m = Message::track(
                                name(cust),
                                event,
                                vec![
                                    ("product".into(), Value::Str(format!("p{product}"))),
                                    // Sums whose rounding depends on the order of addition.
                                    ("amount".into(), Value::Float(f64::from(product) * 0.1 + f64::from(i) * 0.7)),
                                    ("qty".into(), Value::Int(i64::from(i % 7) - 2)),
                                ],
                                Some(ts + i64::from(i % 50) * 1_000),
                            );
                            m.message_id = msg.map(|j| format!("t{j}-{i}"));
                            m
                        })
                        .collect();
                    d.ingest(batch.clone()).unwrap();
                    let entry = model.entry(cust).or_default();
                    for m in batch {
                        if let Some(id) = &m.message_id {
                            if entry.seen.contains(id) { continue; }
                            entry.seen.push(id.clone());
                        }
                        entry.events.push((m.timestamp.unwrap(), event.to_string(), format!("p{product}")));
                    }
                    entry.events.sort_by_key(|e| e.0);
                }
                Op::Delete(cust) => {
                    let r = d.delete_customer(&name(cust));
                    prop_assert_eq!(r.is_ok(), model.remove(&cust).is_some());
                }
                Op::Reopen { crash } => {
                    let old = db.take().unwrap();
                    if crash { old.abandon() } else { drop(old) }
                    db = Some(open(&path));
                }
                Op::Checkpoint => d.checkpoint().unwrap(),
            }
            check(db.as_ref().unwrap(), &model)?;
        }
    }
}
