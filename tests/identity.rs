//! Identity merge (`alias` messages, messages with both `anonymousId` and `userId`,
//! `Db::alias`): examples of each promise, then a reference model of merging written plainly,
//! against which random streams of messages (in random batches, so that merges also happen
//! inside one write) are checked, before and after a crash and reopen.

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::ingest::message::Message;
use audiencedb::model::Value;
use audiencedb::{Config, Db, Error};
use proptest::prelude::*;

fn line(json: &str) -> Message {
    Message::from_json_line(json).unwrap()
}

fn tracked(cust: &str, event: &str, ts: i64) -> Message {
    Message::track(cust, event, vec![], Some(ts))
}

fn anon_track(anon: &str, event: &str, ts: i64) -> Message {
    line(&format!(
        r#"{{"type":"track","anonymousId":"{anon}","event":"{event}","timestamp":{ts}}}"#
    ))
}

fn event_times(db: &Db, id: &str) -> Vec<(String, i64)> {
    db.customer(id)
        .unwrap()
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.name, e.timestamp))
        .collect()
}

fn open(dir: &tempfile::TempDir) -> Db {
    Db::open(dir.path().join("db")).unwrap()
}

#[test]
fn an_alias_makes_one_customer_of_two() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.ingest(vec![
        anon_track("anon-1", "viewed", 1_000),
        anon_track("anon-1", "added", 3_000),
        line(r#"{"type":"identify","anonymousId":"anon-1","traits":{"tier":"Bronze","city":"Oulu"}}"#),
        tracked("u-1", "bought", 2_000),
        Message::identify("u-1", vec![("tier".into(), Some(Value::Str("Gold".into())))]),
    ])
    .unwrap();
    let before = db.totals();
    assert_eq!(before.customers, 2);
    assert!(db.alias("anon-1", "u-1").unwrap());
    // Every event, in time order; the userId's traits win, the other's fill in.
    let c = db.customer("anon-1").unwrap().unwrap();
    assert_eq!(c.id, "u-1");
    assert_eq!(c.ids, ["u-1", "anon-1"]);
    assert_eq!(
        event_times(&db, "u-1"),
        [
            ("viewed".into(), 1_000),
            ("bought".into(), 2_000),
            ("added".into(), 3_000)
        ]
    );
    let traits: BTreeMap<String, Value> = c.traits.unwrap().into_iter().collect();
    assert_eq!(traits["tier"], Value::Str("Gold".into()));
    assert_eq!(traits["city"], Value::Str("Oulu".into()));
    assert_eq!(
        db.internal_id("anon-1").unwrap(),
        db.internal_id("u-1").unwrap()
    );
    let after = db.totals();
    assert_eq!((after.customers, after.events), (1, before.events));
    // Later messages for the old id land on the merged customer.
    db.ingest(vec![anon_track("anon-1", "viewed", 4_000)])
        .unwrap();
    assert_eq!(event_times(&db, "u-1").len(), 4);
    assert_eq!(db.totals().customers, 1);
    // The rules see the whole person.
    let both = db
        .query(
            "did viewed and did bought and tier = \"Gold\" and city = \"Oulu\"",
            10_000,
        )
        .unwrap();
    assert_eq!(both.len(), 1);
    // Again: a no-op.
    assert!(!db.alias("anon-1", "u-1").unwrap());
    assert!(!db.alias("u-1", "anon-1").unwrap());
    assert!(db.verify().unwrap().is_ok(), "{:?}", db.verify().unwrap());
}

#[test]
fn a_message_with_both_ids_merges_before_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.ingest(vec![anon_track("a-9", "viewed", 1_000)]).unwrap();
    let r = db
        .ingest(vec![line(
            r#"{"type":"track","anonymousId":"a-9","userId":"u-9","event":"bought","timestamp":2000}"#,
        )])
        .unwrap();
    assert_eq!((r.stored, r.merges), (1, 1));
    let c = db.customer("a-9").unwrap().unwrap();
    assert_eq!(c.ids, ["u-9", "a-9"]);
    assert_eq!(c.events.len(), 2);
    // The same pair again merges nothing.
    let r = db
        .ingest(vec![line(
            r#"{"type":"identify","anonymousId":"a-9","userId":"u-9","traits":{"x":1}}"#,
        )])
        .unwrap();
    assert_eq!((r.stored, r.merges), (1, 0));
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn merges_chain_and_happen_inside_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.ingest(vec![
        anon_track("a", "e1", 10),
        Message::alias("a", "b"),
        anon_track("a", "e2", 5),
        tracked("c", "e3", 7),
        Message::alias("b", "c"),
        anon_track("a", "e4", 20),
    ])
    .unwrap_err();
    // "b" and "c" are both known (userIds): the chain needs the flag.
    assert_eq!(db.totals().customers, 0, "a refused write stores nothing");
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("db"));
    config.allow_known_merge = true;
    let db = Db::open_with(config).unwrap();
    let r = db
        .ingest(vec![
            anon_track("a", "e1", 10),
            Message::alias("a", "b"),
            anon_track("a", "e2", 5),
            tracked("c", "e3", 7),
            Message::alias("b", "c"),
            anon_track("a", "e4", 20),
        ])
        .unwrap();
    assert_eq!(r.merges, 2);
    let c = db.customer("a").unwrap().unwrap();
    assert_eq!(c.ids, ["c", "b", "a"]);
    let times: Vec<i64> = c.events.iter().map(|e| e.timestamp).collect();
    assert_eq!(times, [5, 7, 10, 20]);
    // And across writes, with stored customers.
    db.ingest(vec![tracked("d", "e5", 1)]).unwrap();
    db.alias("c", "d").unwrap();
    let c = db.customer("b").unwrap().unwrap();
    assert_eq!(c.ids, ["d", "c", "b", "a"]);
    assert_eq!(c.events.len(), 5);
    assert_eq!(db.totals().customers, 1);
    assert!(db.verify().unwrap().is_ok());
    drop(db);
    let mut config = Config::new(dir.path().join("db"));
    config.allow_known_merge = true;
    let db = Db::open_with(config).unwrap();
    assert_eq!(db.customer("a").unwrap().unwrap().ids, ["d", "c", "b", "a"]);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn message_ids_are_deduplicated_across_the_merged_customers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let with_id = |json: &str| line(json);
    db.ingest(vec![with_id(
        r#"{"type":"track","anonymousId":"a","event":"x","timestamp":1,"messageId":"m1"}"#,
    )])
    .unwrap();
    db.ingest(vec![with_id(
        r#"{"type":"track","userId":"u","event":"x","timestamp":2,"messageId":"m2"}"#,
    )])
    .unwrap();
    db.alias("a", "u").unwrap();
    let r = db
        .ingest(vec![
            with_id(r#"{"type":"track","userId":"u","event":"x","timestamp":1,"messageId":"m1"}"#),
            with_id(
                r#"{"type":"track","anonymousId":"a","event":"x","timestamp":2,"messageId":"m2"}"#,
            ),
            with_id(r#"{"type":"track","userId":"u","event":"x","timestamp":3,"messageId":"m3"}"#),
        ])
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 2));
    assert_eq!(db.customer("u").unwrap().unwrap().events.len(), 3);
}

#[test]
fn guard_rails_refuse_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("db"));
    config.max_ids_per_customer = 3;
    let db = Db::open_with(config).unwrap();
    db.ingest(vec![
        tracked("u-1", "x", 1),
        tracked("u-2", "x", 2),
        anon_track("a-1", "x", 3),
        anon_track("a-2", "x", 4),
        anon_track("a-3", "x", 5),
    ])
    .unwrap();
    // Two known customers.
    let err = db.alias("u-1", "u-2").unwrap_err();
    assert!(
        matches!(&err, Error::MergeRefused(m) if m.contains("known") && m.contains("allow_known_merge")),
        "{err}"
    );
    // The limit of ids.
    db.alias("a-1", "u-1").unwrap();
    db.alias("a-2", "u-1").unwrap();
    let generation_customers = db.totals();
    let err = db.alias("a-3", "u-1").unwrap_err();
    assert!(
        matches!(&err, Error::MergeRefused(m) if m.contains("4 ids") && m.contains("limit is 3")),
        "{err}"
    );
    let err = db.alias("unseen", "u-1").unwrap_err();
    assert!(matches!(err, Error::MergeRefused(_)), "{err}");
    assert_eq!(db.totals(), generation_customers);
    assert_eq!(db.customer("a-3").unwrap().unwrap().ids, ["a-3"]);
    assert_eq!(db.customer("u-2").unwrap().unwrap().ids, ["u-2"]);
    assert!(db.customer("unseen").unwrap().is_none());
    // A message carrying a refused merge is refused whole; leniently, alone.
    let (report, refused) = db
        .ingest_lenient(vec![
            line(
                r#"{"type":"track","anonymousId":"a-3","userId":"u-1","event":"y","timestamp":9}"#,
            ),
            tracked("u-2", "y", 9),
        ])
        .unwrap();
    assert_eq!(report.stored, 1);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, 0);
    assert_eq!(db.customer("u-1").unwrap().unwrap().events.len(), 3);
    // Bad input is refused before anything is looked at.
    assert!(matches!(db.alias("x", "x"), Err(Error::InvalidInput(_))));
    assert!(matches!(db.alias("", "x"), Err(Error::InvalidInput(_))));
    assert!(matches!(
        db.alias(&"x".repeat(300), "y"),
        Err(Error::InvalidInput(_))
    ));
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn deleting_any_id_deletes_the_whole_merged_customer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.ingest(vec![
        anon_track("a-1", "x", 1),
        anon_track("a-2", "x", 2),
        tracked("u-1", "x", 3),
    ])
    .unwrap();
    db.alias("a-1", "u-1").unwrap();
    db.alias("a-2", "u-1").unwrap();
    let export = db.export_customer("a-2").unwrap();
    assert_eq!(export["ids"], serde_json::json!(["u-1", "a-1", "a-2"]));
    assert_eq!(db.delete_customer("a-1").unwrap(), 3);
    for id in ["a-1", "a-2", "u-1"] {
        assert!(db.customer(id).unwrap().is_none(), "{id}");
    }
    assert_eq!(db.totals().customers, 0);
    assert!(db.verify().unwrap().is_ok());
    // The ids are free again: a new message makes a new customer of one of them only.
    db.ingest(vec![anon_track("a-2", "x", 5)]).unwrap();
    assert_eq!(db.customer("a-2").unwrap().unwrap().ids, ["a-2"]);
    assert!(db.customer("u-1").unwrap().is_none());
    drop(db);
    let db = open(&dir);
    assert!(db.customer("u-1").unwrap().is_none());
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn saved_audiences_and_the_feed_follow_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.ingest(vec![
        anon_track("a-1", "viewed", 1_000),
        tracked("u-1", "bought", 2_000),
    ])
    .unwrap();
    db.define_audience("viewers", "did viewed").unwrap();
    db.define_audience("browsers", "did viewed and not did bought")
        .unwrap();
    db.define_audience("both", "did viewed and did bought")
        .unwrap();
    assert_eq!(db.audiences_of("a-1").unwrap(), ["browsers", "viewers"]);
    let position = db.feed_position();
    let sub = db.subscribe();
    db.alias("a-1", "u-1").unwrap();
    let changes = db.changes_since(position, 100).unwrap();
    let seen: BTreeSet<(String, String, bool)> = changes
        .iter()
        .map(|c| (c.audience.clone(), c.customer.clone(), c.entered))
        .collect();
    let expected: BTreeSet<(String, String, bool)> = [
        ("browsers", "a-1", false),
        ("viewers", "a-1", false),
        ("viewers", "u-1", true),
        ("both", "u-1", true),
    ]
    .into_iter()
    .map(|(a, c, e)| (a.to_owned(), c.to_owned(), e))
    .collect();
    assert_eq!(seen, expected);
    let mut delivered = BTreeSet::new();
    while let Some(c) = sub.try_recv() {
        delivered.insert((c.audience, c.customer, c.entered));
    }
    assert_eq!(delivered, expected);
    assert_eq!(db.audiences_of("a-1").unwrap(), ["both", "viewers"]);
    assert!(db.verify().unwrap().is_ok());
}

// ---- The reference model ----

/// One message of a generated stream, over a small pool of ids.
#[derive(Debug, Clone)]
enum Op {
    /// An event for `user` (a userId), or for `anon` alone, or with both ids.
    Track {
        user: Option<u8>,
        anon: Option<u8>,
        ts: i64,
        mid: Option<u8>,
    },
    /// Traits for `user` / `anon` as above: `t0`..`t2` set or (None) removed.
    Identify {
        user: Option<u8>,
        anon: Option<u8>,
        traits: Vec<(u8, Option<i64>)>,
    },
    Alias {
        previous: u8,
        user: u8,
    },
}

fn id(i: u8) -> String {
    format!("id-{i}")
}

fn ids_json(user: Option<u8>, anon: Option<u8>) -> String {
    let mut s = String::new();
    if let Some(u) = user {
        s += &format!(r#","userId":"{}""#, id(u));
    }
    if let Some(a) = anon {
        s += &format!(r#","anonymousId":"{}""#, id(a));
    }
    s
}

impl Op {
    fn message(&self, seq: usize) -> Message {
        match self {
            Op::Track {
                user,
                anon,
                ts,
                mid,
            } => {
                let mid = mid.map_or(String::new(), |m| format!(r#","messageId":"m{m}""#));
                line(&format!(
                    r#"{{"type":"track"{}{mid},"event":"e","timestamp":{ts},"properties":{{"seq":{seq}}}}}"#,
                    ids_json(*user, *anon)
                ))
            }
            Op::Identify { user, anon, traits } => {
                let fields: Vec<String> = traits
                    .iter()
                    .map(|(t, v)| match v {
                        Some(v) => format!(r#""t{t}":{v}"#),
                        None => format!(r#""t{t}":null"#),
                    })
                    .collect();
                line(&format!(
                    r#"{{"type":"identify"{},"traits":{{{}}}}}"#,
                    ids_json(*user, *anon),
                    fields.join(",")
                ))
            }
            Op::Alias { previous, user } => Message::alias(id(*previous), id(*user)),
        }
    }
}

/// A customer in the model.
#[derive(Debug, Clone, Default)]
struct Person {
    /// Its ids: its own first, then merged ones in the order they joined.
    ids: Vec<String>,
    /// Has no userId.
    anonymous: bool,
    traits: BTreeMap<String, i64>,
    /// (time, seq) of each event.
    events: Vec<(i64, i64)>,
    seen: BTreeSet<u8>,
}

/// Merging, written plainly: people in a list, found by scanning their ids.
#[derive(Debug, Default)]
struct Model {
    people: Vec<Person>,
    limit: usize,
    allow_known: bool,
}

impl Model {
    fn find(&self, id: &str) -> Option<usize> {
        self.people
            .iter()
            .position(|p| p.ids.iter().any(|i| i == id))
    }

    fn get_or_make(&mut self, id: &str, anonymous: bool) -> usize {
        match self.find(id) {
            Some(i) => i,
            None => {
                self.people.push(Person {
                    ids: vec![id.to_owned()],
                    anonymous,
                    ..Person::default()
                });
                self.people.len() - 1
            }
        }
    }

    /// Merges `previous` into `user`: `Err` when refused (nothing changes).
    fn merge(&mut self, previous: &str, user: &str) -> Result<(), ()> {
        let a = self.find(previous);
        let b = self.find(user);
        if a.is_some() && a == b {
            return Ok(());
        }
        let count =
            a.map_or(1, |a| self.people[a].ids.len()) + b.map_or(1, |b| self.people[b].ids.len());
        if count > self.limit {
            return Err(());
        }
        if let (Some(a), Some(b)) = (a, b) {
            if !self.allow_known && !self.people[a].anonymous && !self.people[b].anonymous {
                return Err(());
            }
        }
        let b = self.get_or_make(user, false);
        self.people[b].anonymous = false;
        match self.find(previous) {
            None => self.people[b].ids.push(previous.to_owned()),
            Some(a) => {
                let gone = self.people[a].clone();
                let survivor = &mut self.people[b];
                survivor.ids.extend(gone.ids);
                survivor.events.extend(gone.events);
                survivor.seen.extend(gone.seen);
                for (k, v) in gone.traits {
                    survivor.traits.entry(k).or_insert(v);
                }
                self.people.remove(a);
            }
        }
        Ok(())
    }

    /// Applies one message; `Err` when it is refused.
    fn apply(&mut self, op: &Op, seq: usize) -> Result<(), ()> {
        let (user, anon) = match op {
            Op::Track { user, anon, .. } | Op::Identify { user, anon, .. } => (*user, *anon),
            Op::Alias { previous, user } => {
                return self.merge(&id(*previous), &id(*user));
            }
        };
        if let (Some(u), Some(a)) = (user, anon) {
            if u != a {
                self.merge(&id(a), &id(u))?;
            }
        }
        let (customer, anonymous) = match (user, anon) {
            (Some(u), _) => (id(u), false),
            (None, Some(a)) => (id(a), true),
            (None, None) => unreachable!(),
        };
        let p = self.get_or_make(&customer, anonymous);
        let person = &mut self.people[p];
        match op {
            Op::Track { ts, mid, .. } => {
                if let Some(m) = mid {
                    if !person.seen.insert(*m) {
                        return Ok(());
                    }
                }
                person.events.push((*ts, seq as i64));
            }
            Op::Identify { traits, .. } => {
                for (t, v) in traits {
                    match v {
                        Some(v) => person.traits.insert(format!("t{t}"), *v),
                        None => person.traits.remove(&format!("t{t}")),
                    };
                }
            }
            Op::Alias { .. } => unreachable!(),
        }
        Ok(())
    }
}

fn op() -> impl Strategy<Value = Op> {
    let who = (proptest::option::of(0u8..6), proptest::option::of(0u8..6))
        .prop_filter("a customer id", |(u, a)| u.is_some() || a.is_some());
    prop_oneof![
        4 => (who.clone(), 0i64..50, proptest::option::of(0u8..4)).prop_map(|((user, anon), ts, mid)| Op::Track { user, anon, ts, mid }),
        2 => (who, proptest::collection::vec((0u8..3, proptest::option::of(0i64..3)), 0..3))
            .prop_map(|((user, anon), traits)| Op::Identify { user, anon, traits }),
        2 => (0u8..6, 0u8..6)
            .prop_filter("two ids", |(p, u)| p != u)
            .prop_map(|(previous, user)| Op::Alias { previous, user }),
    ]
}

/// Checks that the store holds exactly the model's people.
fn check(db: &Db, model: &Model) -> Result<(), TestCaseError> {
    for i in 0..6u8 {
        let id = id(i);
        let stored = db.customer(&id).unwrap();
        let person = model.find(&id).map(|p| &model.people[p]);
        let (Some(c), Some(p)) = (stored, person) else {
            prop_assert!(
                db.customer(&id).unwrap().is_none() && person.is_none(),
                "{id}: stored {:?}, model {:?}",
                db.customer(&id).unwrap().map(|c| c.ids),
                person
            );
            continue;
        };
        prop_assert_eq!(&c.ids, &p.ids, "ids of {}", id);
        let traits: BTreeMap<String, i64> = c
            .traits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match v {
                Value::Int(n) => (k, n),
                other => panic!("{other:?}"),
            })
            .collect();
        prop_assert_eq!(&traits, &p.traits, "traits of {}", id);
        let times: Vec<i64> = c.events.iter().map(|e| e.timestamp).collect();
        prop_assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "time order: {:?}",
            times
        );
        let mut events: Vec<(i64, i64)> = c
            .events
            .iter()
            .map(|e| match &e.properties[..] {
                [(_, Value::Int(seq))] => (e.timestamp, *seq),
                other => panic!("{other:?}"),
            })
            .collect();
        events.sort_unstable();
        let mut expected = p.events.clone();
        expected.sort_unstable();
        prop_assert_eq!(events, expected, "events of {}", id);
    }
    prop_assert_eq!(db.totals().customers, model.people.len() as u64);
    let report = db.verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merges_match_the_reference_model(
        ops in proptest::collection::vec(op(), 1..40),
        cuts in proptest::collection::vec(1usize..5, 40),
        limit in 2usize..6,
        allow_known in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = |dir: &tempfile::TempDir| {
            let mut c = Config::new(dir.path().join("db"));
            c.max_ids_per_customer = limit;
            c.allow_known_merge = allow_known;
            c
        };
        let db = Db::open_with(config(&dir)).unwrap();
        let mut model = Model { limit, allow_known, ..Model::default() };
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < ops.len() {
            let end = (at + cut.next().unwrap()).min(ops.len());
            let batch: Vec<Message> = (at..end).map(|i| ops[i].message(i)).collect();
            let (_, refused) = db.ingest_lenient(batch).unwrap();
            let refused: Vec<usize> = refused
                .into_iter()
                .map(|(i, e)| {
                    assert!(matches!(e, Error::MergeRefused(_)), "{e}");
                    at + i
                })
                .collect();
            let expected: Vec<usize> =
                (at..end).filter(|&i| model.apply(&ops[i], i).is_err()).collect();
            prop_assert_eq!(refused, expected);
            at = end;
        }
        check(&db, &model)?;
        // As a crash leaves it: the merges are durable, the in-memory ids and indexes recovered.
        db.abandon();
        let db = Db::open_with(config(&dir)).unwrap();
        check(&db, &model)?;
    }
}
