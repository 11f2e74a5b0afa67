//! Byte encodings of the on-disk format: varints, values, profiles and event blocks. Every decoder
//! checks lengths and tags and answers bad bytes with [`Error::Corrupt`], never a panic.

use crate::error::{corrupt, Result};
use crate::model::{Timestamp, Value};

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded, so small negative numbers stay short.
pub fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// A cursor over encoded bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    pub fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| corrupt!("record ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| corrupt!("record ends early"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt!("varint too long"))
    }

    pub fn signed(&mut self) -> Result<i64> {
        let z = self.varint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    pub fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| corrupt!("number out of range"))
    }

    pub fn len(&mut self) -> Result<usize> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| corrupt!("length out of range"))?;
        if n > self.bytes.len() - self.pos.min(self.bytes.len()) {
            return Err(corrupt!("length {n} exceeds the record"));
        }
        Ok(n)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| corrupt!("invalid UTF-8"))
    }
}

const TAG_STR: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
const TAG_FALSE: u8 = 3;
const TAG_TRUE: u8 = 4;
const TAG_TIME: u8 = 5;
const TAG_LIST: u8 = 6;

/// Appends one value: a tag byte, then its payload.
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            out.push(TAG_STR);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Int(i) => {
            out.push(TAG_INT);
            put_signed(out, *i);
        }
        Value::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Bool(b) => out.push(if *b { TAG_TRUE } else { TAG_FALSE }),
        Value::Time(t) => {
            out.push(TAG_TIME);
            put_signed(out, *t);
        }
        Value::List(items) => {
            out.push(TAG_LIST);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// Reads one value written by [`put_value`].
pub fn get_value(r: &mut Reader<'_>) -> Result<Value> {
    get_value_at_depth(r, 0)
}

fn get_value_at_depth(r: &mut Reader<'_>, depth: u8) -> Result<Value> {
    Ok(match r.byte()? {
        TAG_STR => Value::Str(r.str()?.to_owned()),
        TAG_INT => Value::Int(r.signed()?),
        TAG_FLOAT => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Value::Float(f64::from_le_bytes(a))
        }
        TAG_FALSE => Value::Bool(false),
        TAG_TRUE => Value::Bool(true),
        TAG_TIME => Value::Time(r.signed()?),
        TAG_LIST if depth == 0 => {
            let n = r.len()?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(get_value_at_depth(r, 1)?);
            }
            Value::List(items)
        }
        tag => return Err(corrupt!("unknown value tag {tag}")),
    })
}

/// A set of named fields (a profile's traits or an event's properties), by interned name id.
pub type Fields = Vec<(u32, Value)>;

/// Appends fields as a count, then (name id, value) pairs.
pub fn put_fields(out: &mut Vec<u8>, fields: &[(u32, Value)]) {
    put_varint(out, fields.len() as u64);
    for (id, v) in fields {
        put_varint(out, u64::from(*id));
        put_value(out, v);
    }
}

/// Reads fields written by [`put_fields`].
pub fn get_fields(r: &mut Reader<'_>) -> Result<Fields> {
    let n = r.len()?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u32()?;
        fields.push((id, get_value(r)?));
    }
    Ok(fields)
}

/// Encodes a profile: its traits sorted by trait id.
pub fn encode_profile(traits: &[(u32, Value)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + traits.len() * 12);
    put_fields(&mut out, traits);
    out
}

/// Decodes a profile written by [`encode_profile`].
pub fn decode_profile(bytes: &[u8]) -> Result<Fields> {
    let mut r = Reader::new(bytes);
    let fields = get_fields(&mut r)?;
    if !r.is_empty() {
        return Err(corrupt!("trailing bytes after a profile"));
    }
    Ok(fields)
}

/// One stored event: when, which (interned event name) and its properties.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub ts: Timestamp,
    pub event: u32,
    pub props: Fields,
}

/// Encodes a block of events, which must be sorted by time: a count, then per event the time as
/// a delta from the previous one (the first from the block's start, which is its own time), the
/// event id and the properties.
pub fn encode_block<E: std::borrow::Borrow<StoredEvent>>(events: &[E]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 24);
    put_varint(&mut out, events.len() as u64);
    let mut prev = events.first().map_or(0, |e| e.borrow().ts);
    for e in events {
        let e = e.borrow();
        debug_assert!(e.ts >= prev, "blocks are sorted by time");
        put_varint(&mut out, (e.ts - prev) as u64);
        prev = e.ts;
        put_varint(&mut out, u64::from(e.event));
        put_fields(&mut out, &e.props);
    }
    out
}

/// Decodes a block whose first event happened at `start`, appending its events to `out`.
pub fn decode_block(start: Timestamp, bytes: &[u8], out: &mut Vec<StoredEvent>) -> Result<()> {
    let mut r = Reader::new(bytes);
    let n = r.len()?;
    out.reserve(n);
    let mut ts = start;
    for _ in 0..n {
        let delta = i64::try_from(r.varint()?).map_err(|_| corrupt!("time delta out of range"))?;
        ts = ts
            .checked_add(delta)
            .ok_or_else(|| corrupt!("time out of range"))?;
        let event = r.u32()?;
        let props = get_fields(&mut r)?;
        out.push(StoredEvent { ts, event, props });
    }
    if !r.is_empty() {
        return Err(corrupt!("trailing bytes after an event block"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,12}".prop_map(Value::Str),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Time),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => arb_scalar(),
            1 => prop::collection::vec(arb_scalar(), 0..4).prop_map(Value::List),
        ]
    }

    proptest! {
        #[test]
        fn profiles_round_trip(fields in prop::collection::vec((any::<u32>(), arb_value()), 0..8)) {
            let bytes = encode_profile(&fields);
            prop_assert_eq!(decode_profile(&bytes).unwrap(), fields);
        }

        #[test]
        fn blocks_round_trip(mut times in prop::collection::vec(0i64..4_102_444_800_000, 1..20),
                             props in prop::collection::vec((0u32..50, arb_value()), 0..4)) {
            times.sort_unstable();
            let events: Vec<StoredEvent> = times.iter().enumerate()
                .map(|(i, &ts)| StoredEvent { ts, event: i as u32 % 3, props: props.clone() })
                .collect();
            let bytes = encode_block(&events);
            let mut back = Vec::new();
            decode_block(events[0].ts, &bytes, &mut back).unwrap();
            prop_assert_eq!(back, events);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_profile(&bytes);
            let _ = decode_block(0, &bytes, &mut Vec::new());
        }
    }
}
