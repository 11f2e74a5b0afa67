//! Event columns (issue 20): for one event and one UTC day, every event of the kind that day as
//! arrays in one order (by customer, then time): the customer, the time, and per property the id
//! of the event's value among the day's distinct values of that property (or none). A filter of
//! several conditions (`purchased where (category = shoes and amount >= 60)`) is then a test of
//! each distinct value once and a pass over a few compact arrays per day, instead of a read of
//! every candidate customer's stored events; a count of passing events is a pass over the same
//! arrays, the customers' events being next to each other. The customer and time arrays are what
//! sequences and funnels need too (the order of one customer's events of a kind).
//!
//! Columns are derived data, like the text columns of [`crate::index::texts`]: built by readers
//! from the stored events. In memory one remembers the [`ListVersion`] of the event's count list
//! of its day when it was built or loaded (every added or removed event of the kind that day
//! changes it) and is used only while that list has that version; nothing that changes the lists
//! has to know about columns. At most one is kept per (event, day). Readers also store the
//! columns they build in the folder ([`EventColumns::encode`], `crate::index::derived`), and a
//! fresh process loads them instead of building them when the day's count list has the
//! fingerprint of the stored columns' events ([`EventColumns::fingerprint`]).
//!
//! This module owns the columns. It never reads storage and knows no rules: the query engine
//! reads the events, hands them over, and tests the values (`crate::query::columns`).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use super::derived::{self, DerivedStore, Loaded};
use super::rollup::{mix, ListVersion};
use crate::error::{corrupt, Result};
use crate::model::time::{day_start, Timestamp, DAY_MS};
use crate::model::{FastMap, FastSet, Value};
use crate::storage::codec::{get_value, le_u32, put_value, put_varint, skip_value, Reader};

/// The layout of a stored day's columns (the first varint of the record body; see
/// [`EventColumns::encode`]). Records of layout 1 (`crate::index::derived::LAYOUT`, before the
/// properties were stored as sections of known length and the times as fixed-width numbers) are
/// not read: the day is built and stored again.
pub const COLUMNS_LAYOUT: u64 = 2;

/// The id of "the event has no such property" in [`PropColumn::ids`].
pub const MISSING: u32 = u32::MAX;

/// One property's values over a day's events: the distinct values once, and per event the index
/// of its value (or [`MISSING`]).
#[derive(Debug, Default)]
pub struct PropColumn {
    /// The distinct values (lists and NaNs are not merged with equal ones: each is kept).
    pub values: Vec<Value>,
    /// Per event, in the column's order: an index into `values`, or [`MISSING`].
    pub ids: Vec<u32>,
}

/// A hashable form of a value, to keep each distinct value once (only while a column is built).
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Int(i64),
    Float(u64),
    Bool(bool),
    Time(Timestamp),
}

impl Key {
    fn of(v: &Value) -> Option<Key> {
        Some(match v {
            Value::Str(s) => Key::Str(s.to_string()),
            Value::Int(i) => Key::Int(*i),
            // The same bits are the same value; NaNs and signed zeros may be kept twice.
            Value::Float(f) => Key::Float(f.to_bits()),
            Value::Bool(b) => Key::Bool(*b),
            Value::Time(t) => Key::Time(*t),
            Value::List(_) => return None,
        })
    }
}

/// One property's column as held: built here, or loaded as its stored section (checked when the
/// record was loaded) and decoded on first use, so that a fresh process's first rule decodes the
/// properties it tests and no other (a day of `purchased` holds four, a filter tests one or two).
#[derive(Debug)]
struct HeldProp {
    /// The stored section ([`EventColumns::encode`]); `None` for a column built here.
    stored: Option<StoredSection>,
    decoded: OnceLock<PropColumn>,
}

/// A loaded property's section ([`encode_section`]), with the parts its check at load found.
#[derive(Debug)]
struct StoredSection {
    /// The whole section as stored (written back as it is by [`EventColumns::encode`]).
    bytes: Loaded,
    /// Where the values lie within it; the indexes' width byte follows them, then the indexes.
    values: Range<usize>,
    /// How many distinct values there are.
    count: usize,
    /// Bytes per index.
    width: usize,
}

impl HeldProp {
    fn built(col: PropColumn) -> HeldProp {
        HeldProp {
            stored: None,
            decoded: OnceLock::from(col),
        }
    }
}

/// One day's events of one kind.
#[derive(Debug)]
pub struct EventColumns {
    source: ListVersion,
    /// Per event, by customer then time: the customer.
    pub custs: Vec<u32>,
    /// Per event, in the same order: the time.
    pub times: Vec<Timestamp>,
    props: FastMap<u32, HeldProp>,
}

/// One event handed to [`EventColumns::new`]: customer, time, properties (the first of a
/// repeated property counts, as a stored event's reader finds it).
pub type ColumnEvent = (u32, Timestamp, Vec<(u32, Value)>);

impl EventColumns {
    /// The columns of a day's events given in any order, built while the day's count list had
    /// the version `source`.
    pub fn new(source: ListVersion, mut events: Vec<ColumnEvent>) -> EventColumns {
        events.sort_by_key(|e| (e.0, e.1));
        let n = events.len();
        let mut custs = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut props: FastMap<u32, PropColumn> = FastMap::default();
        // Per property, the ids of its distinct values so far (by position in `values`).
        let mut seen: FastMap<u32, FastMap<Key, u32>> = FastMap::default();
        for (i, (cust, ts, fields)) in events.into_iter().enumerate() {
            custs.push(cust);
            times.push(ts);
            for (p, v) in fields {
                let col = props.entry(p).or_insert_with(|| PropColumn {
                    values: Vec::new(),
                    ids: vec![MISSING; n],
                });
                if col.ids[i] != MISSING {
                    continue;
                }
                let next = col.values.len() as u32;
                let keys = seen.entry(p).or_default();
                let id = match Key::of(&v) {
                    Some(k) => *keys.entry(k).or_insert(next),
                    None => next,
                };
                if id == next {
                    col.values.push(v);
                }
                col.ids[i] = id;
            }
        }
        EventColumns {
            source,
            custs,
            times,
            props: props
                .into_iter()
                .map(|(p, col)| (p, HeldProp::built(col)))
                .collect(),
        }
    }

    /// The version of the count list these columns were built from.
    pub fn source(&self) -> ListVersion {
        self.source
    }

    /// The fingerprint of the events held, as [`crate::index::DayList::fingerprint`] computes
    /// it for a count list: equal to the day's count list's when they are that list's events.
    pub fn fingerprint(&self) -> u64 {
        self.custs
            .iter()
            .fold(0u64, |fp, &c| fp.wrapping_add(mix(c)))
    }

    /// The columns of `day` as a record body: the layout ([`COLUMNS_LAYOUT`]), the fingerprint
    /// (`u64` LE), the day, the number of events; the customers as varint deltas; the times as
    /// `u32` LE milliseconds from the day's start; the number of properties, then per property
    /// (by id) its id and the byte length of its section (`encode_section`: the distinct values,
    /// then each event's index into them).
    pub fn encode(&self, day: u32) -> Vec<u8> {
        let n = self.len();
        let mut out = Vec::with_capacity(n * 8 + 32);
        put_varint(&mut out, COLUMNS_LAYOUT);
        out.extend_from_slice(&self.fingerprint().to_le_bytes());
        put_varint(&mut out, u64::from(day));
        put_varint(&mut out, n as u64);
        let mut prev = 0;
        for &c in &self.custs {
            put_varint(&mut out, u64::from(c - prev));
            prev = c;
        }
        let start = day_start(day);
        for &t in &self.times {
            // Within the day: below `DAY_MS`, which fits a `u32`.
            out.extend_from_slice(&((t - start) as u32).to_le_bytes());
        }
        let mut props: Vec<_> = self.props.iter().collect();
        props.sort_by_key(|(p, _)| **p);
        put_varint(&mut out, props.len() as u64);
        let mut section = Vec::new();
        for (p, held) in props {
            put_varint(&mut out, u64::from(*p));
            let bytes: &[u8] = match (held.decoded.get(), &held.stored) {
                (Some(col), _) => {
                    section.clear();
                    encode_section(col, &mut section);
                    &section
                }
                (None, Some(stored)) => &stored.bytes,
                (None, None) => unreachable!("a held property is built or stored"),
            };
            put_varint(&mut out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        out
    }

    /// The fingerprint a record body written by [`EventColumns::encode`] declares, read without
    /// decoding the rest (`None`: another layout).
    pub fn declared_fingerprint(body: &[u8]) -> Option<u64> {
        let mut r = Reader::new(body);
        if r.varint().ok()? != COLUMNS_LAYOUT {
            return None;
        }
        let fp = r.take(8).ok()?;
        Some(u64::from_le_bytes(fp.try_into().ok()?))
    }

    /// Decodes a record body of `day`'s columns, checking its order and bounds and that its
    /// events have the fingerprint it declares; `source` is the version of the count list it is
    /// used for. Each property's section is checked whole here (its values, and every index
    /// within them) but decoded on its first use, sharing `body`'s bytes until then.
    pub fn decode(body: &Loaded, day: u32, source: ListVersion) -> Result<EventColumns> {
        let bad = || corrupt!("bad stored event columns");
        let declared = Self::declared_fingerprint(body).ok_or_else(bad)?;
        let mut r = Reader::new(body);
        r.varint()?;
        r.take(8)?;
        if r.varint()? != u64::from(day) {
            return Err(bad());
        }
        let n = r.len()?;
        let mut custs = Vec::with_capacity(n);
        let mut prev = 0u32;
        for _ in 0..n {
            prev = prev.checked_add(r.u32()?).ok_or_else(bad)?;
            custs.push(prev);
        }
        let start = day_start(day);
        let mut times = Vec::with_capacity(n);
        let fixed = r.take(n.checked_mul(4).ok_or_else(bad)?)?;
        for (i, b) in fixed.chunks_exact(4).enumerate() {
            let off = le_u32(b);
            if i64::from(off) >= DAY_MS {
                return Err(bad());
            }
            let t = start + i64::from(off);
            if i > 0 && custs[i - 1] == custs[i] && times[i - 1] > t {
                return Err(bad());
            }
            times.push(t);
        }
        let mut props: FastMap<u32, HeldProp> = FastMap::default();
        for _ in 0..r.len()? {
            let p = r.u32()?;
            let len = r.len()?;
            let at = r.pos;
            r.take(len)?;
            let held = HeldProp {
                stored: Some(check_section(body.slice(at..at + len), n)?),
                decoded: OnceLock::new(),
            };
            if props.insert(p, held).is_some() {
                return Err(bad());
            }
        }
        if !r.is_empty() {
            return Err(bad());
        }
        let columns = EventColumns {
            source,
            custs,
            times,
            props,
        };
        if columns.fingerprint() != declared {
            return Err(bad());
        }
        Ok(columns)
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.custs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.custs.is_empty()
    }

    /// The column of a property; `None` when no event of the day has it. A loaded column is
    /// decoded here the first time it is asked for.
    pub fn prop(&self, prop: u32) -> Option<&PropColumn> {
        let held = self.props.get(&prop)?;
        Some(held.decoded.get_or_init(|| {
            let stored = held
                .stored
                .as_ref()
                .expect("a held property not decoded is stored");
            // Checked whole by `decode` before the columns were handed out.
            decode_section(stored).expect("a stored section is checked when loaded")
        }))
    }
}

/// A property's section of a stored record: its distinct values' count, the values, the width
/// in bytes (1, 2 or 4, the least that holds the count) of the indexes that follow, then per
/// event the value's index plus one (0: missing), little-endian in that width. Fixed widths are
/// checked and read a word at a time, where varints were a branch per byte.
fn encode_section(col: &PropColumn, out: &mut Vec<u8>) {
    put_varint(out, col.values.len() as u64);
    for v in &col.values {
        put_value(out, v);
    }
    let width = index_width(col.values.len());
    out.push(width as u8);
    out.reserve(col.ids.len() * width);
    for &id in &col.ids {
        let x = if id == MISSING { 0 } else { id + 1 };
        out.extend_from_slice(&x.to_le_bytes()[..width]);
    }
}

/// The bytes per index for a property with `count` distinct values (indexes `0..=count`).
fn index_width(count: usize) -> usize {
    match count {
        0..=0xfe => 1,
        0xff..=0xfffe => 2,
        _ => 4,
    }
}

/// Calls `f` with each index of a section's index bytes of `width` (1, 2 or 4) bytes each, as
/// stored (the value's index plus one, 0: missing).
#[inline]
fn each_index(ids: &[u8], width: usize, mut f: impl FnMut(u32)) {
    match width {
        1 => ids.iter().for_each(|&b| f(u32::from(b))),
        2 => ids
            .chunks_exact(2)
            .for_each(|b| f(u32::from(u16::from_le_bytes([b[0], b[1]])))),
        _ => ids.chunks_exact(4).for_each(|b| f(le_u32(b))),
    }
}

/// Checks a section written by [`encode_section`] for `n` events without building anything, as
/// [`decode_section`] reads it: the values well formed, the width the count's, exactly `n`
/// indexes, each within the values, nothing left over.
fn check_section(bytes: Loaded, n: usize) -> Result<StoredSection> {
    let bad = || corrupt!("bad stored event columns");
    let mut r = Reader::new(&bytes);
    let count = r.len()?;
    let start = r.pos;
    for _ in 0..count {
        skip_value(&mut r)?;
    }
    let values = start..r.pos;
    let width = usize::from(r.byte()?);
    if width != index_width(count) {
        return Err(bad());
    }
    let ids = r.take(n.checked_mul(width).ok_or_else(bad)?)?;
    if !r.is_empty() {
        return Err(bad());
    }
    let mut max = 0;
    each_index(ids, width, |x| max = max.max(x));
    if u64::from(max) > count as u64 {
        return Err(bad());
    }
    Ok(StoredSection {
        bytes,
        values,
        count,
        width,
    })
}

/// Decodes a section [`check_section`] checked.
fn decode_section(s: &StoredSection) -> Result<PropColumn> {
    let mut r = Reader::new(&s.bytes[s.values.clone()]);
    let values = (0..s.count)
        .map(|_| get_value(&mut r))
        .collect::<Result<Vec<_>>>()?;
    let indexes = &s.bytes[s.values.end + 1..];
    let mut ids = Vec::with_capacity(indexes.len() / s.width);
    each_index(indexes, s.width, |x| {
        ids.push(x.checked_sub(1).unwrap_or(MISSING))
    });
    Ok(PropColumn { values, ids })
}

/// The columns built so far for one event, by day.
#[derive(Debug, Default)]
pub struct Columns {
    built: RwLock<FastMap<u32, Arc<EventColumns>>>,
    /// Whether a reader asked for columns of this event before ([`Columns::ask`]).
    asked: AtomicBool,
    /// The days a reader that could do without asked for before ([`Columns::ask_day`]).
    asked_days: RwLock<FastSet<u32>>,
}

/// A copy starts with no columns: they are a cache of the stored events.
impl Clone for Columns {
    fn clone(&self) -> Self {
        Columns::default()
    }
}

impl Columns {
    /// The columns of `day`, if they were built from the list version `current`.
    pub fn get(&self, day: u32, current: ListVersion) -> Option<Arc<EventColumns>> {
        self.built
            .read()
            .get(&day)
            .filter(|c| c.source == current)
            .cloned()
    }

    /// Notes that a reader wants columns of `event` that are neither kept nor stored: `false`
    /// the first time for this event in the folder's life, `true` from then on. Building reads
    /// every customer of the days asked for, many times what one answer without columns reads,
    /// so they are built from the second answer that wants them on, in this process or in an
    /// earlier one (the first leaves a mark among the derived records of `kept`): a rule asked
    /// once never pays for them; one asked again, by a server or by a second CLI `query`, pays
    /// once, and later processes load what it stored.
    pub fn ask(&self, kept: &dyn DerivedStore, event: u32) -> bool {
        if self.asked.swap(true, Ordering::Relaxed) {
            return true;
        }
        let mark = derived::asked_key(event);
        if kept.load(&mark).is_some() {
            return true;
        }
        kept.save(&mark, &[]);
        false
    }

    /// [`Columns::ask`] for one day, by a reader that can do without them at a small cost (a
    /// window cutting the day where the count rollups' spans leave few customers undecided, to
    /// be read one by one): `false` the first time for this (event, day), `true` from then on,
    /// in this process or in an earlier one (the first leaves a mark among the derived records
    /// of `kept`). Saving many audiences with windows of different lengths so builds no day's
    /// columns for one answer; a rule answered again, by a server or a second CLI `query`,
    /// builds them and stores them for later processes.
    pub fn ask_day(&self, kept: &dyn DerivedStore, event: u32, day: u32) -> bool {
        if self.asked_days.read().contains(&day) || !self.asked_days.write().insert(day) {
            return true;
        }
        let mark = derived::asked_day_key(event, day);
        if kept.load(&mark).is_some() {
            return true;
        }
        kept.save(&mark, &[]);
        false
    }

    /// Keeps a day's columns, replacing older ones of the same day.
    pub fn put(&self, day: u32, columns: Arc<EventColumns>) {
        self.built.write().insert(day, columns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_ordered_by_customer_and_time_with_distinct_values_once() {
        let s = |t: &str| Value::Str(t.to_owned().into());
        let events = vec![
            (7, 30, vec![(1, s("shoes")), (2, Value::Int(60))]),
            (3, 50, vec![(1, s("toys"))]),
            (
                3,
                10,
                vec![(1, s("shoes")), (1, s("ignored")), (2, Value::Float(1.5))],
            ),
            (7, 20, vec![(2, Value::List(vec![s("a")]))]),
            (9, 5, vec![(2, Value::List(vec![s("a")]))]),
        ];
        let col = EventColumns::new(ListVersion::fresh(), events);
        assert_eq!(col.len(), 5);
        assert_eq!(col.custs, vec![3, 3, 7, 7, 9]);
        assert_eq!(col.times, vec![10, 50, 20, 30, 5]);
        let category = col.prop(1).unwrap();
        // The first of a repeated property counts; equal strings share one id.
        assert_eq!(category.values, vec![s("shoes"), s("toys")]);
        assert_eq!(category.ids, vec![0, 1, MISSING, 0, MISSING]);
        let amount = col.prop(2).unwrap();
        // Lists are never merged with equal ones.
        assert_eq!(amount.values.len(), 4);
        assert_eq!(amount.ids[1], MISSING);
        assert_eq!(amount.values[amount.ids[0] as usize], Value::Float(1.5));
        assert_eq!(amount.values[amount.ids[3] as usize], Value::Int(60));
        assert_ne!(amount.ids[2], amount.ids[4]);
        assert!(col.prop(3).is_none());
    }

    #[test]
    fn stored_columns_round_trip_and_name_their_events() {
        let s = |t: &str| Value::Str(t.to_owned().into());
        let day = 20_000;
        let t0 = day_start(day);
        let events = vec![
            (7, t0 + 30, vec![(1, s("shoes")), (2, Value::Int(60))]),
            (3, t0 + DAY_MS - 1, vec![(1, s("toys"))]),
            (3, t0, vec![(1, s("shoes")), (2, Value::Float(1.5))]),
            (9, t0 + 5, vec![(2, Value::List(vec![s("a")]))]),
            (u32::MAX - 1, t0 + 7, vec![]),
        ];
        let col = EventColumns::new(ListVersion::fresh(), events);
        let body = col.encode(day);
        assert_eq!(
            EventColumns::declared_fingerprint(&body),
            Some(col.fingerprint())
        );
        // As a count list of the same events weighs them.
        let mut list = crate::index::DayList::default();
        for &c in &col.custs {
            list.add(crate::index::DayCount {
                cust: c,
                count: 1,
                first: 0,
                last: 0,
            });
        }
        assert_eq!(list.fingerprint(), col.fingerprint());
        let v = ListVersion::fresh();
        let decode = |b: &[u8]| EventColumns::decode(&Loaded::new(b.to_vec()), day, v);
        let back = decode(&body).unwrap();
        assert_eq!(back.source(), v);
        assert_eq!(back.custs, col.custs);
        assert_eq!(back.times, col.times);
        // Encoded again before any property is decoded: the stored sections are copied as they
        // are, and the record is the same.
        assert_eq!(back.encode(day), body);
        for p in [1, 2, 3] {
            let (a, b) = (col.prop(p), back.prop(p));
            assert_eq!(a.map(|c| &c.ids), b.map(|c| &c.ids));
            assert_eq!(a.map(|c| &c.values), b.map(|c| &c.values));
        }
        // Half decoded, the same again.
        let half = decode(&body).unwrap();
        assert!(half.prop(2).is_some());
        assert_eq!(half.encode(day), body);
        // Another day, another layout, a cut or a changed body are refused.
        assert!(EventColumns::decode(&Loaded::new(body.clone()), day + 1, v).is_err());
        let mut other = body.clone();
        other[0] = 9;
        assert!(decode(&other).is_err());
        let mut old = body.clone();
        old[0] = derived::LAYOUT as u8;
        assert_eq!(EventColumns::declared_fingerprint(&old), None, "layout 1");
        assert!(decode(&body[..body.len() - 1]).is_err());
        let mut swapped = body.clone();
        // The first customer's delta (3 → 4): its events no longer have the declared fingerprint.
        let at = 1 + 8 + 3 + 1;
        assert_eq!(swapped[at], 3);
        swapped[at] = 4;
        assert!(decode(&swapped).is_err());
        // A time past the day's end.
        let times_at = at + 4;
        let mut late = body.clone();
        late[times_at..times_at + 4].copy_from_slice(&(DAY_MS as u32).to_le_bytes());
        assert!(decode(&late).is_err());
        // A property's index past its values is refused when the record is loaded, not when the
        // property is first used: the last byte is the last event's index into property 2's
        // values (the record's last property).
        let mut past = body.clone();
        let last = past.len() - 1;
        assert_eq!(past[last], 0, "the last event has no property 2");
        past[last] = 99;
        assert!(decode(&past).is_err());
        // A value that is not well formed (a string of invalid UTF-8) is refused at load too.
        let shoes = body
            .windows(5)
            .position(|w| w == b"shoes")
            .expect("the first value of property 1");
        let mut utf8 = body.clone();
        utf8[shoes] = 0xff;
        assert!(decode(&utf8).is_err());
    }

    #[test]
    fn sections_of_every_index_width_round_trip() {
        let day = 20_100;
        let t0 = day_start(day);
        // 254 distinct values fit one byte (indexes 0..=254), 255 and 65,534 two, 65,535 four.
        for distinct in [1usize, 254, 255, 65_534, 65_535, 70_000] {
            let n = distinct as u32;
            // Each value once, then an event without the property and two more of value 0.
            let events: Vec<ColumnEvent> = (0..n + 3)
                .map(|i| {
                    let fields = match i {
                        i if i < n => vec![(4, Value::Int(i64::from(i)))],
                        i if i == n => vec![],
                        _ => vec![(4, Value::Int(0))],
                    };
                    (i / 5, t0 + i64::from(i % 5), fields)
                })
                .collect();
            let col = EventColumns::new(ListVersion::fresh(), events);
            let body = col.encode(day);
            let back = EventColumns::decode(&Loaded::new(body.clone()), day, ListVersion::fresh())
                .unwrap();
            let (a, b) = (col.prop(4).unwrap(), back.prop(4).unwrap());
            assert_eq!(a.values.len(), distinct);
            assert_eq!(a.values, b.values, "{distinct}");
            assert_eq!(a.ids, b.ids, "{distinct}");
            assert_eq!(back.encode(day), body, "{distinct}");
            // An index past the values is refused at load, in every width: the last event's
            // index set one past the last value.
            let width = index_width(a.values.len());
            let want = match distinct {
                0..=254 => 1,
                255..=65_534 => 2,
                _ => 4,
            };
            assert_eq!(width, want, "{distinct}");
            let last = body.len() - width;
            let mut past = body.clone();
            past[last..].copy_from_slice(&((a.values.len() as u32 + 1).to_le_bytes()[..width]));
            assert!(
                EventColumns::decode(&Loaded::new(past), day, ListVersion::fresh()).is_err(),
                "{distinct}"
            );
        }
    }

    #[test]
    fn columns_are_used_only_at_their_version_and_built_from_the_second_ask() {
        let columns = Columns::default();
        let (a, b) = (ListVersion::fresh(), ListVersion::fresh());
        let kept = derived::NoStore;
        assert!(!columns.ask(&kept, 1));
        assert!(columns.ask(&kept, 1));
        columns.put(20, Arc::new(EventColumns::new(a, vec![(1, 5, vec![])])));
        assert!(columns.get(20, a).is_some());
        assert!(columns.get(20, b).is_none());
        assert!(columns.get(21, a).is_none());
        columns.put(20, Arc::new(EventColumns::new(b, vec![])));
        assert!(columns.get(20, a).is_none());
        assert!(columns.get(20, b).is_some());
        // A copy starts empty and has not been asked.
        let copy = columns.clone();
        assert!(copy.get(20, b).is_none());
        assert!(!copy.ask(&kept, 1));
    }

    #[test]
    fn each_day_is_asked_for_once_before_it_is_built() {
        let columns = Columns::default();
        let none = derived::NoStore;
        assert!(!columns.ask_day(&none, 1, 20));
        assert!(!columns.ask_day(&none, 1, 21));
        assert!(columns.ask_day(&none, 1, 20));
        assert!(columns.ask_day(&none, 1, 21));
        assert!(
            !columns.ask(&none, 1),
            "a day asked for leaves the event's first ask alone"
        );
        assert!(
            !columns.clone().ask_day(&none, 1, 20),
            "a copy has not been asked"
        );
        // Across processes: the mark a first one left.
        let kept = derived::MemStore::default();
        assert!(!Columns::default().ask_day(&kept, 1, 20));
        assert!(Columns::default().ask_day(&kept, 1, 20));
        assert!(!Columns::default().ask_day(&kept, 2, 20), "another event");
        assert!(!Columns::default().ask_day(&kept, 1, 21), "another day");
    }
}
