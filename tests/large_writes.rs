//! A large write (an import batch: many messages in one `Db::ingest`) against the same messages
//! written one per write, where everything earlier is committed before each message. Random
//! streams of identifies, tracks (new names appearing mid-write, a property name given twice),
//! aliases, messages with both ids and re-sent message ids (folded or not) must leave the same
//! customers, the same counts, and folders that verify.

use audiencedb::ingest::message::Message;
use audiencedb::{Config, Db};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Line {
    Identify {
        user: u8,
        anon: Option<u8>,
        tier: u8,
    },
    Track {
        user: Option<u8>,
        anon: Option<u8>,
        event: u8,
        twice: bool,
        price: u8,
        msg: Option<u8>,
    },
    Alias {
        previous: u8,
        user: u8,
    },
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        2 => (0u8..6, prop::option::of(0u8..4), 0u8..3)
            .prop_map(|(user, anon, tier)| Line::Identify { user, anon, tier }),
        8 => (prop::option::of(0u8..6), prop::option::of(0u8..4), 0u8..6, any::<bool>(), 0u8..50,
              prop::option::of(0u8..24))
            .prop_map(|(user, anon, event, twice, price, msg)| Line::Track { user, anon, event, twice, price, msg }),
        1 => (0u8..10, 0u8..6).prop_map(|(previous, user)| Line::Alias { previous, user }),
    ]
}

fn uid(u: u8) -> String {
    format!("u{u}")
}

fn aid(a: u8) -> String {
    format!("a{a}")
}

/// The line as NDJSON, at time `i` seconds; `None` where it is no message (an alias of an id to
/// itself, a track without an id).
fn json(l: &Line, i: usize) -> Option<String> {
    let ts = format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60);
    Some(match l {
        Line::Identify { user, anon, tier } => {
            let anon = anon.map_or(String::new(), |a| {
                format!(",\"anonymousId\":\"{}\"", aid(a))
            });
            format!(
                "{{\"type\":\"identify\",\"userId\":\"{}\"{anon},\"traits\":{{\"tier\":\"t{tier}\",\"seen\":{i}}},\"timestamp\":\"{ts}\"}}",
                uid(*user)
            )
        }
        Line::Track {
            user,
            anon,
            event,
            twice,
            price,
            msg,
        } => {
            let mut ids = Vec::new();
            if let Some(u) = user {
                ids.push(format!("\"userId\":\"{}\"", uid(*u)));
            }
            if let Some(a) = anon {
                ids.push(format!("\"anonymousId\":\"{}\"", aid(*a)));
            }
            if ids.is_empty() {
                return None;
            }
            // Events 4 and 5 get names of their own per customer: new names mid-write.
            let event = match event {
                0 | 1 => "viewed".to_owned(),
                2 | 3 => "bought".to_owned(),
                e => format!("e{e}-{}", user.unwrap_or(9)),
            };
            let twice = if *twice { ",\"price\":-1" } else { "" };
            let msg = msg.map_or(String::new(), |m| format!(",\"messageId\":\"m{m}\""));
            format!(
                "{{\"type\":\"track\",{},\"event\":\"{event}\",\"properties\":{{\"price\":{price}{twice},\"n\":{i}}},\"timestamp\":\"{ts}\"{msg}}}",
                ids.join(",")
            )
        }
        Line::Alias { previous, user } => {
            let previous = if *previous < 6 {
                uid(*previous)
            } else {
                aid(previous - 6)
            };
            if previous == uid(*user) {
                return None;
            }
            format!(
                "{{\"type\":\"alias\",\"previousId\":\"{previous}\",\"userId\":\"{}\",\"timestamp\":\"{ts}\"}}",
                uid(*user)
            )
        }
    })
}

fn open(path: &std::path::Path, fold_every_write: bool) -> Db {
    let mut config = Config::new(path);
    // Merges of two customers with a `userId` too (the default refuses them: the random
    // streams exercise the refusals with `max_ids_per_customer`).
    config.allow_known_merge = true;
    config.max_ids_per_customer = 4;
    if fold_every_write {
        config.fold_events = 0;
        config.fold_bytes = 0;
    }
    Db::open_with(config).unwrap()
}

/// (stored, duplicates, merges, refused) of a write.
fn ingest(db: &Db, messages: Vec<Message>) -> [u64; 4] {
    let (r, refused) = db.ingest_lenient(messages).unwrap();
    [r.stored, r.duplicates, r.merges, refused.len() as u64]
}

fn add(total: &mut [u64; 4], r: [u64; 4]) {
    for (t, x) in total.iter_mut().zip(r) {
        *t += x;
    }
}

/// Every customer either database knows, by each id a line can name.
fn customers(db: &Db) -> Vec<(String, Option<audiencedb::Customer>)> {
    (0..6)
        .map(uid)
        .chain((0..4).map(aid))
        .map(|id| {
            let c = db.customer(&id).unwrap().map(|mut c| {
                c.internal_id = 0;
                c
            });
            (id, c)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn a_large_write_stores_what_one_message_per_write_stores(
        lines in prop::collection::vec(line(), 70..150),
        prefix in 0usize..40,
        fold_every_write in any::<bool>(),
    ) {
        let messages: Vec<Message> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| json(l, i))
            .map(|j| Message::from_json_line(&j).unwrap())
            .collect();
        let prefix = prefix.min(messages.len());
        let (before, rest) = messages.split_at(prefix);
        prop_assume!(rest.len() >= 64);
        let dir = tempfile::tempdir().unwrap();
        let large = open(&dir.path().join("large"), fold_every_write);
        let small = open(&dir.path().join("small"), fold_every_write);
        // What comes before is stored (and, folding every write, folded) in both alike: the
        // large write re-sends some of its message ids, folded or in the memtable.
        let (mut large_total, mut small_total) = ([0; 4], [0; 4]);
        for m in before {
            add(&mut large_total, ingest(&large, vec![m.clone()]));
            add(&mut small_total, ingest(&small, vec![m.clone()]));
        }
        add(&mut large_total, ingest(&large, rest.to_vec()));
        for m in rest {
            add(&mut small_total, ingest(&small, vec![m.clone()]));
        }
        prop_assert_eq!(large_total, small_total);
        prop_assert_eq!(customers(&large), customers(&small));
        prop_assert!(large.verify().unwrap().is_ok());
        prop_assert!(small.verify().unwrap().is_ok());
    }
}

fn track(cust: &str, msg: &str, ts: i64) -> Message {
    let mut m = Message::track(cust, "viewed", vec![], Some(ts));
    m.message_id = Some(msg.into());
    m
}

/// A message id stored by an earlier write and still unfolded (in the memtable), or folded into
/// a message-id record, is a re-send in a large write; an id the large write merges away finds
/// its survivor for the messages after the merge.
#[test]
fn a_large_write_skips_resends_and_follows_its_own_merges() {
    for fold in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("db"), fold);
        for c in 0..70 {
            db.ingest(vec![track(&format!("c{c}"), &format!("m{c}"), 1_000)])
                .unwrap();
        }
        let mut write: Vec<Message> = (0..70)
            .map(|c| track(&format!("c{c}"), &format!("m{c}"), 2_000))
            .collect();
        write.push(Message::alias("c1", "c0"));
        write.push(track("c1", "new-1", 3_000));
        write.push(track("c1", "m1", 4_000));
        let (r, refused) = db.ingest_lenient(write).unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            (r.stored, r.duplicates, r.merges),
            (2, 71, 1),
            "fold: {fold}"
        );
        let c0 = db.customer("c1").unwrap().unwrap();
        assert_eq!(c0.id, "c0");
        let times: Vec<i64> = c0.events.iter().map(|e| e.timestamp).collect();
        assert_eq!(times, [1_000, 1_000, 3_000], "fold: {fold}");
        assert!(db.verify().unwrap().is_ok());
    }
}
