//! A reference model: random sequences of ingests, deletes, crashes and reopens run against the
//! database and against a plain in-memory model; after every step the stored customers must
//! equal the model and the indexes must equal a rebuild from the stored data (bitmaps and per-day
//! rollups: events carry two numeric properties, and only one of them gets rollups). Merges
//! (`Db::alias`) fold one customer into another: every id then finds the merged customer.

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
    /// `Db::alias(previous, user)`.
    Merge(u8, u8),
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
        1 => cust.clone().prop_map(Op::Delete),
        2 => (cust.clone(), cust).prop_filter("two ids", |(a, b)| a != b).prop_map(|(a, b)| Op::Merge(a, b)),
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
    /// Its ids besides its own (the key it is kept under), in the order they were merged in.
    aliases: Vec<u8>,
}

/// The customers by their own id, and the ids merged into them.
#[derive(Debug, Default)]
struct Shop {
    people: BTreeMap<u8, Model>,
    merged: BTreeMap<u8, u8>,
}

impl Shop {
    fn owner(&self, cust: u8) -> u8 {
        self.merged.get(&cust).copied().unwrap_or(cust)
    }

    fn get(&self, cust: u8) -> Option<&Model> {
        self.people.get(&self.owner(cust))
    }

    fn entry(&mut self, cust: u8) -> &mut Model {
        let owner = self.owner(cust);
        self.people.entry(owner).or_default()
    }

    fn remove(&mut self, cust: u8) -> bool {
        let owner = self.owner(cust);
        match self.people.remove(&owner) {
            Some(m) => {
                for a in m.aliases {
                    self.merged.remove(&a);
                }
                true
            }
            None => false,
        }
    }

    /// `previous`'s customer into `user`'s: its events join (after the survivor's among equal
    /// times), its traits fill in those the survivor lacks, its ids and message ids join.
    fn merge(&mut self, previous: u8, user: u8) {
        let (a, b) = (self.owner(previous), self.owner(user));
        if a == b {
            return;
        }
        let gone = self.people.remove(&a);
        let survivor = self.people.entry(b).or_default();
        survivor.aliases.push(a);
        let Some(gone) = gone else {
            self.merged.insert(a, b);
            return;
        };
        survivor.aliases.extend(gone.aliases.iter().copied());
        survivor.events.extend(gone.events);
        survivor.events.sort_by_key(|e| e.0);
        survivor.seen.extend(gone.seen);
        survivor.traits = match (survivor.traits.take(), gone.traits) {
            (Some(mut mine), Some(theirs)) => {
                for (k, v) in theirs {
                    mine.entry(k).or_insert(v);
                }
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
        for id in std::iter::once(a).chain(gone.aliases) {
            self.merged.insert(id, b);
        }
    }
}

fn name(cust: u8) -> String {
    format!("c{cust}")
}

fn open(path: &std::path::Path) -> Db {
    let mut config = Config::new(path);
    config.value_bound = 3; // products p0..p4 overflow it: exercises unindexing
    config.rollup_bound = 1; // `amount` or `qty`, whichever comes first, gets rollups
    config.checkpoint_after = 3;
    config.parallel_index_from = 0; // every write applies its index changes on several threads
    config.allow_known_merge = true; // every customer here has a userId
    Db::open_with(config).unwrap()
}

fn check(db: &Db, model: &Shop) -> Result<(), TestCaseError> {
    for cust in 0..6u8 {
        let got = db.customer(&name(cust)).unwrap();
        match model.get(cust) {
            None => prop_assert!(got.is_none(), "{} should not exist", name(cust)),
            Some(m) => {
                let got = got.unwrap();
                let owner = model.owner(cust);
                let ids: Vec<String> = std::iter::once(owner)
                    .chain(m.aliases.iter().copied())
                    .map(name)
                    .collect();
                prop_assert_eq!(&got.ids, &ids);
                let traits = got
                    .traits
                    .map(|t| t.into_iter().collect::<BTreeMap<_, _>>());
                prop_assert_eq!(&traits, &m.traits);
                let events: Vec<(i64, String, String)> = got
                    .events
                    .into_iter()
                    .map(|e| {
                        let p = match e.properties.iter().find(|(k, _)| k == "product") {
                            Some((_, Value::Str(v))) => v.to_string(),
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
    prop_assert_eq!(db.schema().customers, model.people.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = Some(open(&path));
        let mut model = Shop::default();
        for op in ops {
            let d = db.as_ref().unwrap();
            match op {
                Op::Identify { cust, tier, age, msg } => {
                    let mut traits = Vec::new();
                    if let Some(t) = tier {
                        traits.push(("tier".into(), t.map(|t| Value::Str(t.into()))));
                    }
                    if let Some(a) = age {
                        traits.push(("age".into(), Some(Value::Int(a))));
                    }
                    let mut m = Message::identify(name(cust), traits.clone());
                    m.message_id = msg.map(|i| format!("m{i}").into());
                    d.ingest(vec![m]).unwrap();
                    let entry = model.entry(cust);
                    if let Some(id) = msg.map(|i| format!("m{i}")) {
                        if entry.seen.contains(&id) { continue; }
                        entry.seen.push(id);
                    }
                    let profile = entry.traits.get_or_insert_with(BTreeMap::new);
                    for (k, v) in traits {
                        match v {
                            Some(v) => { profile.insert(k.to_string(), v); }
                            None => { profile.remove(k.as_str()); }
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
                                    ("product".into(), Value::Str(format!("p{product}").into())),
                                    // Sums whose rounding depends on the order of addition.
                                    ("amount".into(), Value::Float(f64::from(product) * 0.1 + f64::from(i) * 0.7)),
                                    ("qty".into(), Value::Int(i64::from(i % 7) - 2)),
                                ],
                                Some(ts + i64::from(i % 50) * 1_000),
                            );
                            m.message_id = msg.map(|j| format!("t{j}-{i}").into());
                            m
                        })
                        .collect();
                    d.ingest(batch.clone()).unwrap();
                    let entry = model.entry(cust);
                    for m in batch {
                        if let Some(id) = &m.message_id {
                            if entry.seen.iter().any(|s| s == id) { continue; }
                            entry.seen.push(id.to_string());
                        }
                        entry.events.push((m.timestamp.unwrap(), event.to_string(), format!("p{product}")));
                    }
                    entry.events.sort_by_key(|e| e.0);
                }
                Op::Delete(cust) => {
                    let r = d.delete_customer(&name(cust));
                    prop_assert_eq!(r.is_ok(), model.remove(cust));
                }
                Op::Merge(previous, user) => {
                    d.alias(&name(previous), &name(user)).unwrap();
                    model.merge(previous, user);
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
