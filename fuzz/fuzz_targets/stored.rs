//! The decoders of bytes read back from a folder's sled tree, fed arbitrary bytes as a damaged
//! or hostile folder would hold them: each answers an error, never a panic, and allocates no
//! more than the record could hold (libFuzzer's `-rss_limit_mb` and `-malloc_limit_mb` catch
//! the rest). Where two readers decode the same record (an event block, decoded whole and read
//! in place by `storage::view`) they must agree, and what decodes encodes to bytes that decode
//! to the same.
//!
//! Input: a selector byte (which record), then the record; records whose key carries meaning
//! (an index family, a feed position, an id-map chunk) take it from the bytes before the record.
#![no_main]

use std::sync::OnceLock;

use audiencedb::fuzzing;
use audiencedb::fuzzing::codec::{
    decode_block, decode_profile, decode_seen, encode_block, encode_profile, encode_seen,
    put_block_body, StoredEvent,
};
use audiencedb::fuzzing::timeline::{
    decode_frames, decode_log, decode_log_events, decode_part, encode_log, Logged,
};
use audiencedb::fuzzing::train;
use audiencedb::fuzzing::view::{decompress_block, for_each_event, ValueView};
use audiencedb::fuzzing::{keys, BlockDictionary, Dictionaries, Indexes};
use audiencedb::model::Value;
use libfuzzer_sys::fuzz_target;

/// Dictionaries holding dictionary 1, trained once on shop-like blocks (a raw-content one if
/// training finds nothing).
fn dictionaries() -> &'static Dictionaries {
    static DICTS: OnceLock<Dictionaries> = OnceLock::new();
    DICTS.get_or_init(|| {
        let bodies: Vec<Vec<u8>> = (0..300i64)
            .map(|c| {
                let events: Vec<StoredEvent> = (0..30i64)
                    .map(|i| StoredEvent {
                        ts: 1_000 + i * 60_000,
                        event: (i % 4) as u32,
                        props: vec![
                            (0, Value::Str(format!("SKU-{:04}", (c * 31 + i * 7) % 200))),
                            (1, Value::Float(((c + i) % 90) as f64 + 0.99)),
                            (
                                2,
                                Value::Str(["shoes", "kids", "garden"][(i % 3) as usize].into()),
                            ),
                        ],
                    })
                    .collect();
                let mut body = Vec::new();
                put_block_body(&mut body, &events);
                body
            })
            .collect();
        let samples: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        let bytes = train(&samples).unwrap_or_else(|| bodies.concat());
        let dicts = Dictionaries::default();
        dicts
            .install(BlockDictionary::new(1, bytes).expect("a dictionary"))
            .expect("the first dictionary");
        dicts
    })
}

fn u32_at(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    let n = b.len().min(4);
    a[..n].copy_from_slice(&b[..n]);
    u32::from_le_bytes(a)
}

/// An event block, decoded whole and walked in place: both agree, and it encodes back.
fn block(start: i64, bytes: &[u8], dicts: &Dictionaries) {
    let mut events = Vec::new();
    let whole = decode_block(start, bytes, dicts, &mut events);
    let mut body = vec![7];
    let unpacked = decompress_block(bytes, dicts, &mut body);
    if unpacked.is_err() {
        assert_eq!(body, [7], "a failed decompression leaves its output alone");
        assert!(
            whole.is_err(),
            "decode_block read what decompress_block could not"
        );
        return;
    }
    let mut seen = Vec::new();
    let walked = for_each_event(start, &body[1..], |e| {
        let props = e.props()?;
        for (id, v) in &props {
            // The first field of each id is the one `prop` finds.
            if props.iter().find(|(i, _)| i == id).map(|(_, w)| w) == Some(v) {
                let view = e.prop(*id)?.expect("a property the event has");
                assert!(
                    view_is(view, v),
                    "property {id}: read in place as {view:?}, decoded as {v:?}"
                );
            }
        }
        seen.push(StoredEvent {
            ts: e.ts,
            event: e.event,
            props,
        });
        Ok(true)
    });
    if whole.is_ok() {
        walked.expect("a block that decodes whole can be walked");
        assert!(
            seen.len() == events.len() && seen.iter().zip(&events).all(|(a, b)| same_event(a, b)),
            "the two readers disagree"
        );
        if events.windows(2).all(|w| w[0].ts <= w[1].ts)
            && events.first().is_none_or(|e| e.ts == start)
        {
            let again = encode_block(&events, dicts.current());
            let mut back = Vec::new();
            decode_block(start, &again, dicts, &mut back).expect("an encoded block decodes");
            assert!(
                back.len() == events.len()
                    && back.iter().zip(&events).all(|(a, b)| same_event(a, b)),
                "a block re-encoded reads differently"
            );
        }
    }
}

/// Whether a value read in place is the decoded one.
fn view_is(view: ValueView<'_>, v: &Value) -> bool {
    match (view, v) {
        (ValueView::List(items), Value::List(expected)) => {
            let mut got = Vec::new();
            items.any(|x| {
                got.push(x);
                false
            });
            got.len() == expected.len() && got.into_iter().zip(expected).all(|(x, y)| view_is(x, y))
        }
        (ValueView::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (view, v) => view == ValueView::of(v),
    }
}

/// Equal, NaN included (stored floats are bits).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

fn same_event(a: &StoredEvent, b: &StoredEvent) -> bool {
    a.ts == b.ts
        && a.event == b.event
        && a.props.len() == b.props.len()
        && a.props
            .iter()
            .zip(&b.props)
            .all(|((i, v), (j, w))| i == j && same(v, w))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 11 {
        0 => {
            if let Ok(fields) = decode_profile(rest) {
                let bytes = encode_profile(&fields);
                let again = decode_profile(&bytes).expect("an encoded profile decodes");
                assert_eq!(
                    encode_profile(&again),
                    bytes,
                    "a profile re-encoded reads differently"
                );
            }
        }
        1 => {
            if let Ok(hashes) = decode_seen(rest) {
                assert!(hashes.iter().all(|h| h >> 48 == 0), "hashes are 48 bits");
                if hashes.windows(2).all(|w| w[0] <= w[1]) {
                    assert_eq!(decode_seen(&encode_seen(&hashes)).unwrap(), hashes);
                }
            }
        }
        2 => block(0, rest, &Dictionaries::default()),
        3 => block(0, rest, dictionaries()),
        4 => {
            // A block key, then the block.
            let (key, record) = rest.split_at(rest.len().min(13));
            if let Ok((_, start)) = keys::parse_block(key) {
                block(start, record, dictionaries());
            }
        }
        5 => {
            // The family key's length, the key, then the record.
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let (key, blob) = rest.split_at(rest.len().min(usize::from(n % 24)));
            if let Ok(family) = Indexes::decode_family(key, blob) {
                let mut indexes = Indexes::new(1_000);
                indexes.install_family(family);
            }
        }
        6 => {
            let _ = fuzzing::decode_audience_state(rest);
        }
        7 => {
            // The first change's position, then the record.
            let (key, record) = rest.split_at(rest.len().min(8));
            let mut a = [0u8; 8];
            a[..key.len()].copy_from_slice(key);
            let _ = fuzzing::decode_feed_chunk(u64::from_be_bytes(a), record);
        }
        8 => {
            // The chunk and the id counter, then the record. The map holds a slot per id
            // below the counter (ids are dense), so the counter is kept to three chunks of ids
            // here (a million took most of the target's time): what is fuzzed is the chunk,
            // read against an honest counter, first, middle or last.
            let (head, record) = rest.split_at(rest.len().min(8));
            let chunk = u32_at(head.get(..4).unwrap_or(head)) % 3;
            let next_id = u32_at(head.get(4..).unwrap_or(&[])) % (3 << 16);
            let _ = fuzzing::decode_id_chunk(chunk, record, next_id);
        }
        9 => {
            // A write log record: its parts (customer, hashes, header, events as a block body);
            // what decodes agrees with each header, and encodes back to a record that reads
            // the same.
            if let Ok(parts) = decode_log(rest) {
                let mut decoded = Vec::new();
                let all = parts.iter().all(|p| {
                    let mut events = Vec::new();
                    let ok = decode_part(p, &mut events).is_ok();
                    if ok {
                        assert_eq!(events.len(), p.events);
                        decoded.push(Logged::new(p.cust, &events, p.hashes.clone()));
                    }
                    ok
                });
                if all {
                    let again = encode_log(&decoded);
                    let back = decode_log(&again).expect("an encoded log record decodes");
                    assert_eq!(back.len(), parts.len());
                    for (a, b) in back.iter().zip(&parts) {
                        assert_eq!((a.cust, &a.hashes, a.events), (b.cust, &b.hashes, b.events));
                        let (mut x, mut y) = (Vec::new(), Vec::new());
                        decode_part(a, &mut x).expect("its events decode");
                        decode_part(b, &mut y).expect("its events decode");
                        assert!(
                            x.len() == y.len() && x.iter().zip(&y).all(|(a, b)| same_event(a, b)),
                            "a log record re-encoded reads differently"
                        );
                    }
                }
                let _ = decode_log_events(rest);
            }
            // The log file's committed part: frames that must each match their hash.
            let _ = decode_frames(rest);
        }
        _ => {
            let _ = keys::parse_customer(rest);
            let _ = keys::parse_dirty(rest);
            let _ = keys::parse_feed(rest);
            let _ = audiencedb::fuzzing::Family::from_key(rest);
        }
    }
});
