//! Byte encodings of the on-disk format: varints, values, profiles and event blocks. Every decoder
//! checks lengths and tags and answers bad bytes with [`crate::Error::Corrupt`], never a panic.

use super::dictionary::{BlockDictionary, Dictionaries};
use crate::error::{corrupt, Result};
pub use crate::model::{Fields, StoredEvent};
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

/// The `u32` stored little-endian in the first 4 bytes of `b` (fixed-width arrays of derived
/// records and rollups).
///
/// # Panics
/// If `b` has fewer than 4 bytes.
#[inline]
pub fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A cursor over encoded bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// An error unless every byte was read: what follows `what`'s encoding is damage.
    pub fn expect_end(&self, what: &str) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(corrupt!("trailing bytes in {what}"))
        }
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

    #[inline]
    pub fn varint(&mut self) -> Result<u64> {
        // One or two bytes, the most common lengths (deltas of ids, small counts), without the
        // loop.
        match self.bytes.get(self.pos..) {
            Some(&[b, ..]) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            Some(&[b0, b1, ..]) if b1 < 0x80 => {
                self.pos += 2;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.long_varint(),
        }
    }

    fn long_varint(&mut self) -> Result<u64> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(if rest.len() < 10 {
            corrupt!("record ends early")
        } else {
            corrupt!("varint too long")
        })
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

    /// The bytes from `start` to `end` of the underlying slice (positions this reader passed).
    pub fn bytes_between(&self, start: usize, end: usize) -> &'a [u8] {
        &self.bytes[start.min(end)..end.min(self.bytes.len())]
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        if bytes.is_ascii() {
            // Plain ASCII (most names and values) is UTF-8: the cheaper check.
            // SAFETY: every byte is below 0x80, so the bytes are valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| corrupt!("invalid UTF-8"))
    }
}

pub(crate) const TAG_STR: u8 = 0;
pub(crate) const TAG_INT: u8 = 1;
pub(crate) const TAG_FLOAT: u8 = 2;
pub(crate) const TAG_FALSE: u8 = 3;
pub(crate) const TAG_TRUE: u8 = 4;
pub(crate) const TAG_TIME: u8 = 5;
pub(crate) const TAG_LIST: u8 = 6;
pub(crate) const TAG_DECIMAL: u8 = 7;

/// Powers of ten, each exact as an `f64`.
pub(crate) const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// A float as `mantissa / 10^exponent` when that gives back exactly the same bits: prices
/// like 59.90 take 3 bytes instead of 8. Division of two exactly representable numbers is
/// correctly rounded, so the check below is the whole proof of the round trip.
fn as_decimal(f: f64) -> Option<(i64, u8)> {
    for (e, p) in POW10.iter().enumerate() {
        let scaled = f * p;
        if scaled.abs() >= 9.007_199_254_740_992e15 {
            return None;
        }
        if scaled == scaled.trunc() {
            let m = scaled as i64;
            if ((m as f64) / p).to_bits() == f.to_bits() {
                return Some((m, e as u8));
            }
        }
    }
    None
}

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
        Value::Float(f) => match as_decimal(*f) {
            Some((m, e)) => {
                out.push(TAG_DECIMAL);
                put_signed(out, m);
                out.push(e);
            }
            None => {
                out.push(TAG_FLOAT);
                out.extend_from_slice(&f.to_le_bytes());
            }
        },
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
        TAG_STR => Value::Str(r.str()?.into()),
        TAG_INT => Value::Int(r.signed()?),
        TAG_FLOAT => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Value::Float(f64::from_le_bytes(a))
        }
        TAG_DECIMAL => {
            let m = r.signed()?;
            let p = POW10
                .get(usize::from(r.byte()?))
                .ok_or_else(|| corrupt!("bad decimal exponent"))?;
            Value::Float(m as f64 / p)
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

/// Reads past one value written by [`put_value`], checking it as [`get_value`] does (tags,
/// lengths, UTF-8, exponents, list depth) without building it.
pub fn skip_value(r: &mut Reader<'_>) -> Result<()> {
    skip_value_at_depth(r, 0)
}

fn skip_value_at_depth(r: &mut Reader<'_>, depth: u8) -> Result<()> {
    match r.byte()? {
        TAG_STR => {
            r.str()?;
        }
        TAG_INT | TAG_TIME => {
            r.signed()?;
        }
        TAG_FLOAT => {
            r.take(8)?;
        }
        TAG_DECIMAL => {
            r.signed()?;
            POW10
                .get(usize::from(r.byte()?))
                .ok_or_else(|| corrupt!("bad decimal exponent"))?;
        }
        TAG_FALSE | TAG_TRUE => {}
        TAG_LIST if depth == 0 => {
            let n = r.len()?;
            for _ in 0..n {
                skip_value_at_depth(r, 1)?;
            }
        }
        tag => return Err(corrupt!("unknown value tag {tag}")),
    }
    Ok(())
}

/// Reads past fields written by [`put_fields`], checking them as [`get_fields`] does.
pub fn skip_fields(r: &mut Reader<'_>) -> Result<()> {
    let n = r.len()?;
    for _ in 0..n {
        r.u32()?;
        skip_value(r)?;
    }
    Ok(())
}

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

/// A message-id record of 6-byte hashes; a record of even length (format 1) holds 8-byte ones.
const SEEN_48: u8 = 1;

/// The hash a message id is known by: the top 48 bits of its xxh3-64. Two ids of one customer
/// are taken for one when these agree: for a customer with `n` messages, a chance of about
/// n² / 2^49 (5·10⁻¹² for 52 messages, 2·10⁻⁵ for 100,000).
pub fn message_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes()) >> 16
}

/// Encodes a customer's sorted message hashes: a tag byte, then 6 bytes LE per hash.
pub fn encode_seen(hashes: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + hashes.len() * 6);
    out.push(SEEN_48);
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes()[..6]);
    }
    out
}

/// Decodes a message-id record, sorted: 6-byte hashes, or (format 1) 8-byte xxh3-64s, of which
/// the top 48 bits are kept (which keeps them sorted).
pub fn decode_seen(bytes: &[u8]) -> Result<Vec<u64>> {
    let mut a = [0u8; 8];
    match bytes.split_first() {
        _ if bytes.len().is_multiple_of(8) => Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                a.copy_from_slice(c);
                u64::from_le_bytes(a) >> 16
            })
            .collect()),
        Some((&SEEN_48, rest)) if rest.len().is_multiple_of(6) => Ok(hashes_48(rest)),
        _ => Err(corrupt!("bad message-id record")),
    }
}

/// Message-id hashes stored as 6 bytes LE each (48 bits); `raw`'s length is a multiple of 6 (a
/// shorter rest is ignored).
pub fn hashes_48(raw: &[u8]) -> Vec<u64> {
    let mut a = [0u8; 8];
    raw.chunks_exact(6)
        .map(|c| {
            a[..6].copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect()
}

/// A packed record stored as is: this tag, then the body.
pub(crate) const PACKED_PLAIN: u8 = 0;
/// A packed record compressed with LZ4: this tag, the body's length (varint), then the LZ4 block.
pub(crate) const PACKED_LZ4: u8 = 1;

/// An event block compressed with zstd and a stored dictionary: this tag, the dictionary's id
/// (varint), the body's length (varint), then the zstd frame (see [`super::dictionary`]).
pub(crate) const PACKED_ZSTD_DICT: u8 = 2;

/// Packs a record whose body follows the first byte of `tagged` (a place for the tag: its value
/// is ignored; an empty `tagged` is an empty body): LZ4-compressed when that saves at least an eighth of the record, else as is.
pub(crate) fn pack(mut tagged: Vec<u8>) -> Vec<u8> {
    match tagged.first_mut() {
        Some(tag) => *tag = PACKED_PLAIN,
        None => tagged.push(PACKED_PLAIN),
    }
    let plain = &tagged[1..];
    let mut packed = Vec::with_capacity(plain.len() / 2 + 16);
    packed.push(PACKED_LZ4);
    put_varint(&mut packed, plain.len() as u64);
    let header = packed.len();
    packed.resize(
        header + lz4_flex::block::get_maximum_output_size(plain.len()),
        0,
    );
    match lz4_flex::block::compress_into(plain, &mut packed[header..]) {
        Ok(n) if header + n < tagged.len() - tagged.len() / 8 => {
            packed.truncate(header + n);
            packed
        }
        _ => tagged,
    }
}

/// The body of a record written by [`pack`], borrowed when it is stored as is. `what` names the
/// record in errors; a compressed body may claim at most `max` bytes (a guard against damaged
/// lengths).
pub(crate) fn unpack<'r>(
    record: &'r [u8],
    what: &str,
    max: usize,
) -> Result<std::borrow::Cow<'r, [u8]>> {
    match record.split_first() {
        Some((&PACKED_PLAIN, body)) => Ok(std::borrow::Cow::Borrowed(body)),
        _ => {
            let mut body = Vec::new();
            unpack_into(record, what, max, &mut body)?;
            Ok(std::borrow::Cow::Owned(body))
        }
    }
}

/// Appends the body of a record written by [`pack`] to `out` (see [`unpack`]); on an error `out`
/// is as it was.
pub(crate) fn unpack_into(record: &[u8], what: &str, max: usize, out: &mut Vec<u8>) -> Result<()> {
    match record.split_first() {
        Some((&PACKED_PLAIN, body)) => {
            out.extend_from_slice(body);
            Ok(())
        }
        Some((&PACKED_LZ4, rest)) => {
            let mut r = Reader::new(rest);
            let len = usize::try_from(r.varint()?).map_err(|_| corrupt!("bad {what} length"))?;
            if len > max.min(lz4_output_bound(rest.len() - r.pos)) {
                return Err(corrupt!("{what} length {len} is implausible"));
            }
            let at = out.len();
            out.resize(at + len, 0);
            match lz4_flex::block::decompress_into(&rest[r.pos..], &mut out[at..]) {
                Ok(n) if n == len => Ok(()),
                _ => {
                    out.truncate(at);
                    Err(corrupt!("a compressed {what} does not decompress"))
                }
            }
        }
        _ => Err(corrupt!("unknown {what} encoding")),
    }
}

/// The largest uncompressed block a reader accepts (a guard against damaged lengths).
const MAX_BLOCK_BYTES: usize = 64 << 20;

/// The most bytes an LZ4 block of `packed` bytes can decompress to. A sequence's match length
/// grows by at most 255 per byte spent on it, so no LZ4 block expands by more than 255 times
/// (plus the few bytes of its last literals). A damaged length above this is refused before
/// anything is allocated for it.
fn lz4_output_bound(packed: usize) -> usize {
    packed.saturating_mul(255).saturating_add(16)
}

/// The most bytes a zstd frame of `packed` bytes can decompress to. A frame is a header and
/// blocks; a block that produces anything takes at least 4 bytes (3 of header, 1 of content: an
/// RLE block) and produces at most 128 KiB. A damaged length above this is refused before
/// anything is allocated for it.
fn zstd_output_bound(packed: usize) -> usize {
    (packed / 4 + 1).saturating_mul(128 << 10)
}

/// Encodes a block of events, which must be sorted by time. The body is a count, then per event
/// the time as a delta from the previous one (the first from the block's start, which is its own
/// time), the event id and the properties. A customer's events repeat names and values, so the
/// body is compressed when that saves at least an eighth: with zstd and `dict` when there is
/// one (blocks are small, and the dictionary holds the vocabulary they share), else with LZ4.
pub fn encode_block<E: std::borrow::Borrow<StoredEvent>>(
    events: &[E],
    dict: Option<&BlockDictionary>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + events.len() * 24);
    body.push(PACKED_PLAIN);
    put_block_body(&mut body, events);
    if let Some(packed) = dict.and_then(|d| pack_with_dictionary(&body, d)) {
        return packed;
    }
    pack(body)
}

/// Appends the uncompressed body of a block of events (sorted by time) to `out`: what
/// `block_body` gives back, and what dictionaries are trained on.
pub fn put_block_body<E: std::borrow::Borrow<StoredEvent>>(out: &mut Vec<u8>, events: &[E]) {
    put_varint(out, events.len() as u64);
    let mut prev = events.first().map_or(0, |e| e.borrow().ts);
    for e in events {
        let e = e.borrow();
        debug_assert!(e.ts >= prev, "blocks are sorted by time");
        put_varint(out, (e.ts - prev) as u64);
        prev = e.ts;
        put_varint(out, u64::from(e.event));
        put_fields(out, &e.props);
    }
}

/// A block body (as [`block_body`] gives it) stored again, as [`encode_block`] would store its
/// events: with `dict` when that saves an eighth, else LZ4 when that does, else as is.
pub fn pack_block_body(body: &[u8], dict: Option<&BlockDictionary>) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(1 + body.len());
    tagged.push(PACKED_PLAIN);
    tagged.extend_from_slice(body);
    if let Some(packed) = dict.and_then(|d| pack_with_dictionary(&tagged, d)) {
        return packed;
    }
    pack(tagged)
}

/// `tagged` (a tag byte, then the body) compressed with `dict`, if that saves an eighth.
fn pack_with_dictionary(tagged: &[u8], dict: &BlockDictionary) -> Option<Vec<u8>> {
    let plain = &tagged[1..];
    let mut packed = Vec::with_capacity(plain.len() / 2 + 16);
    packed.push(PACKED_ZSTD_DICT);
    put_varint(&mut packed, u64::from(dict.id()));
    put_varint(&mut packed, plain.len() as u64);
    dict.compress_into(plain, &mut packed)?;
    (packed.len() < tagged.len() - tagged.len() / 8).then_some(packed)
}

/// Decodes a block whose first event happened at `start`, appending its events to `out`.
/// `dicts` are the folder's compression dictionaries.
pub fn decode_block(
    start: Timestamp,
    bytes: &[u8],
    dicts: &Dictionaries,
    out: &mut Vec<StoredEvent>,
) -> Result<()> {
    match bytes.split_first() {
        Some((&PACKED_PLAIN, body)) => decode_block_body(start, body, out),
        _ => {
            let mut body = Vec::new();
            block_body(bytes, dicts, &mut body)?;
            decode_block_body(start, &body, out)
        }
    }
}

/// Appends a stored block's body, uncompressed, to `out`; on an error `out` is as it was.
pub fn block_body(bytes: &[u8], dicts: &Dictionaries, out: &mut Vec<u8>) -> Result<()> {
    match bytes.split_first() {
        Some((&PACKED_ZSTD_DICT, rest)) => {
            let mut r = Reader::new(rest);
            let id = u32::try_from(r.varint()?).map_err(|_| corrupt!("bad dictionary id"))?;
            let len =
                usize::try_from(r.varint()?).map_err(|_| corrupt!("bad event block length"))?;
            let frame = &rest[r.pos..];
            if len > MAX_BLOCK_BYTES.min(zstd_output_bound(frame.len())) {
                return Err(corrupt!("event block length {len} is implausible"));
            }
            dicts.get(id)?.decompress_into(frame, len, out)
        }
        _ => unpack_into(bytes, "event block", MAX_BLOCK_BYTES, out),
    }
}

/// Reads the time (a delta from the previous event's `prev`) and the event id that start each
/// event of a block body.
pub(crate) fn event_header(r: &mut Reader<'_>, prev: Timestamp) -> Result<(Timestamp, u32)> {
    let delta = i64::try_from(r.varint()?).map_err(|_| corrupt!("time delta out of range"))?;
    let ts = prev
        .checked_add(delta)
        .ok_or_else(|| corrupt!("time out of range"))?;
    Ok((ts, r.u32()?))
}

/// Decodes an uncompressed block body whose first event happened at `start`, appending its
/// events to `out`.
pub fn decode_block_body(start: Timestamp, bytes: &[u8], out: &mut Vec<StoredEvent>) -> Result<()> {
    let mut r = Reader::new(bytes);
    let n = r.len()?;
    out.reserve(n);
    let mut ts = start;
    for _ in 0..n {
        let event;
        (ts, event) = event_header(&mut r, ts)?;
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

    #[test]
    fn message_id_records_of_both_formats_read_as_sorted_48_bit_hashes() {
        let full: Vec<u64> = {
            let mut v: Vec<u64> = ["a", "b", "c", "d"]
                .iter()
                .map(|s| xxhash_rust::xxh3::xxh3_64(s.as_bytes()))
                .collect();
            v.sort_unstable();
            v
        };
        let legacy: Vec<u8> = full.iter().flat_map(|h| h.to_le_bytes()).collect();
        let mut hashes: Vec<u64> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| message_hash(s))
            .collect();
        hashes.sort_unstable();
        assert_eq!(decode_seen(&legacy).unwrap(), hashes);
        let record = encode_seen(&hashes);
        assert_eq!(record.len(), 1 + 4 * 6);
        assert_eq!(decode_seen(&record).unwrap(), hashes);
        assert_eq!(decode_seen(&[]).unwrap(), Vec::<u64>::new());
        assert!(decode_seen(&record[..record.len() - 2]).is_err());
        assert!(decode_seen(&[2, 0, 0, 0, 0, 0, 0]).is_err());
    }

    fn arb_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,12}".prop_map(|s| Value::Str(s.into())),
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

    #[test]
    fn prices_are_short_and_exact() {
        for (f, max_len) in [
            (59.9, 4),
            (19.95, 4),
            (1234.5, 5),
            (-3.0, 3),
            (0.1, 3),
            (1e300, 9),
        ] {
            let mut out = Vec::new();
            put_value(&mut out, &Value::Float(f));
            assert!(out.len() <= max_len, "{f}: {} bytes", out.len());
            assert_eq!(get_value(&mut Reader::new(&out)).unwrap(), Value::Float(f));
        }
        let mut out = Vec::new();
        put_value(&mut out, &Value::Float(-0.0));
        let Value::Float(z) = get_value(&mut Reader::new(&out)).unwrap() else {
            panic!()
        };
        assert!(
            z == 0.0 && z.is_sign_negative(),
            "the sign of zero survives"
        );
    }

    /// A shop-like event: a product, a price and a category from small vocabularies.
    fn shop_event(customer: i64, i: i64) -> StoredEvent {
        StoredEvent {
            ts: 1_000 + i * 60_000,
            event: (i % 4) as u32,
            props: vec![
                (
                    0,
                    Value::Str(format!("SKU-{:04}", (customer * 31 + i * 7) % 200).into()),
                ),
                (1, Value::Float(((customer + i) % 90) as f64 + 0.99)),
                (
                    2,
                    Value::Str(["shoes", "kids", "garden"][(i % 3) as usize].into()),
                ),
            ],
        }
    }

    /// Dictionaries holding one dictionary trained on shop-like blocks (trained once).
    fn shop_dictionaries() -> &'static Dictionaries {
        static SHOP: std::sync::OnceLock<Dictionaries> = std::sync::OnceLock::new();
        SHOP.get_or_init(|| {
            let bodies: Vec<Vec<u8>> = (0..300)
                .map(|c| {
                    let events: Vec<StoredEvent> = (0..30).map(|i| shop_event(c, i)).collect();
                    let mut body = Vec::new();
                    put_block_body(&mut body, &events);
                    body
                })
                .collect();
            let samples: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
            let bytes = super::super::dictionary::train(&samples).expect("enough samples");
            let dicts = Dictionaries::default();
            dicts
                .install(BlockDictionary::new(1, bytes).unwrap())
                .unwrap();
            dicts
        })
    }

    #[test]
    fn repetitive_blocks_are_compressed_and_round_trip() {
        let events: Vec<StoredEvent> = (0..128)
            .map(|i| StoredEvent {
                ts: 1_000 + i * 60_000,
                event: 3,
                props: vec![
                    (0, Value::Str("spring-sale-2026-03-01".into())),
                    (1, Value::Float(59.9)),
                ],
            })
            .collect();
        let none = Dictionaries::default();
        let bytes = encode_block(&events, None);
        assert_eq!(bytes[0], PACKED_LZ4);
        assert!(bytes.len() < 128 * 10, "{} bytes", bytes.len());
        let mut back = Vec::new();
        decode_block(1_000, &bytes, &none, &mut back).unwrap();
        assert_eq!(back, events);
        // A damaged length is an error, not a huge allocation or a panic.
        let mut bad = bytes.clone();
        bad[1] = 0xff;
        bad[2] = 0xff;
        assert!(decode_block(1_000, &bad, &none, &mut Vec::new()).is_err());
    }

    #[test]
    fn the_most_compressible_records_stay_within_the_claimed_length_bounds() {
        // Zeros are as compressible as anything gets: LZ4 and zstd shrink them the most they can,
        // so the bounds a reader puts on a record's claimed length must still let them through.
        let zeros = vec![0u8; 4 << 20];
        let mut tagged = vec![0u8];
        tagged.extend_from_slice(&zeros);
        let packed = pack(tagged);
        assert_eq!(packed[0], PACKED_LZ4);
        assert!(packed.len() < zeros.len() / 200, "{} bytes", packed.len());
        assert_eq!(&*unpack(&packed, "record", 64 << 20).unwrap(), &zeros[..]);
        // Cut to a quarter, the same record claims more than its bytes could ever give.
        let mut short = packed.clone();
        short.truncate(short.len() / 4);
        let err = unpack(&short, "record", 64 << 20).unwrap_err();
        assert!(err.to_string().contains("implausible"), "{err}");

        let dicts = shop_dictionaries();
        let mut frame = Vec::new();
        dicts
            .current()
            .unwrap()
            .compress_into(&zeros, &mut frame)
            .unwrap();
        assert!(frame.len() < zeros.len() / 1000, "{} bytes", frame.len());
        let mut record = vec![PACKED_ZSTD_DICT];
        put_varint(&mut record, 1);
        put_varint(&mut record, zeros.len() as u64);
        record.extend_from_slice(&frame);
        let mut body = Vec::new();
        block_body(&record, dicts, &mut body).unwrap();
        assert_eq!(body, zeros);
        // A few bytes cannot claim megabytes.
        let mut tiny = vec![PACKED_ZSTD_DICT];
        put_varint(&mut tiny, 1);
        put_varint(&mut tiny, 1 << 20);
        tiny.extend_from_slice(&frame[..8]);
        let err = block_body(&tiny, dicts, &mut body).unwrap_err();
        assert!(err.to_string().contains("implausible"), "{err}");
        assert_eq!(body, zeros);
    }

    #[test]
    fn blocks_with_a_dictionary_are_smaller_and_need_it_to_be_read() {
        let dicts = shop_dictionaries();
        let dict = dicts.current();
        let events: Vec<StoredEvent> = (0..20).map(|i| shop_event(1_000, i)).collect();
        let plain = encode_block(&events, None);
        let packed = encode_block(&events, dict);
        assert_eq!(packed[0], PACKED_ZSTD_DICT);
        assert!(
            packed.len() < plain.len() * 3 / 4,
            "{} bytes with the dictionary, {} without",
            packed.len(),
            plain.len()
        );
        let mut back = Vec::new();
        decode_block(1_000, &packed, dicts, &mut back).unwrap();
        assert_eq!(back, events);
        // Blocks written before the dictionary still read.
        back.clear();
        decode_block(1_000, &plain, dicts, &mut back).unwrap();
        assert_eq!(back, events);
        // Without the dictionary it names, a block is an error that says so.
        let err = decode_block(1_000, &packed, &Dictionaries::default(), &mut back).unwrap_err();
        assert!(err.to_string().contains("dictionary 1"), "{err}");
        let mut other = packed.clone();
        other[1] = 2;
        assert!(decode_block(1_000, &other, dicts, &mut back).is_err());
        // A damaged length or frame is an error, and leaves the output alone.
        let mut body = vec![5];
        let mut long = packed.clone();
        long[2] = 0xff;
        long[3] = 0xff;
        assert!(block_body(&long, dicts, &mut body).is_err());
        assert!(block_body(&packed[..packed.len() - 4], dicts, &mut body).is_err());
        assert_eq!(body, [5]);
        // A body the dictionary cannot shrink by an eighth is stored the other way.
        let noise: Vec<StoredEvent> = (0..3)
            .map(|i| StoredEvent {
                ts: i,
                event: 0,
                props: vec![(9, Value::Int(i * 7_919))],
            })
            .collect();
        assert_ne!(encode_block(&noise, dict)[0], PACKED_ZSTD_DICT);
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
            let dicts = shop_dictionaries();
            for dict in [None, dicts.current()] {
                let bytes = encode_block(&events, dict);
                let mut back = Vec::new();
                decode_block(events[0].ts, &bytes, dicts, &mut back).unwrap();
                prop_assert_eq!(&back, &events);
            }
        }

        #[test]
        fn floats_keep_their_exact_bits(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut out = Vec::new();
            put_value(&mut out, &Value::Float(f));
            let Value::Float(back) = get_value(&mut Reader::new(&out)).unwrap() else {
                panic!("a float comes back a float")
            };
            prop_assert_eq!(back.to_bits(), f.to_bits());
        }

        #[test]
        fn varints_read_as_one_byte_at_a_time_reads_them(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), 0x80u8..=0xff, 0u8..0x80], 0..40),
            values in prop::collection::vec(any::<u64>(), 0..6),
        ) {
            // Byte at a time: each byte's low 7 bits, until one under 0x80; at most 10 bytes.
            let plainly = |r: &mut Reader<'_>| -> Option<u64> {
                let mut v = 0u64;
                for shift in (0..64).step_by(7) {
                    let b = r.byte().ok()?;
                    v |= u64::from(b & 0x7f) << shift;
                    if b & 0x80 == 0 {
                        return Some(v);
                    }
                }
                None
            };
            let mut encoded = Vec::new();
            for &v in &values {
                put_varint(&mut encoded, v);
            }
            let mut r = Reader::new(&encoded);
            for &v in &values {
                prop_assert_eq!(r.varint().unwrap(), v);
            }
            prop_assert!(r.is_empty());
            let (mut fast, mut plain) = (Reader::new(&bytes), Reader::new(&bytes));
            loop {
                let (a, b) = (fast.varint().ok(), plainly(&mut plain));
                prop_assert_eq!(a, b);
                if a.is_none() {
                    break;
                }
                prop_assert_eq!(fast.pos, plain.pos);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_profile(&bytes);
            let _ = decode_block(0, &bytes, shop_dictionaries(), &mut Vec::new());
            let mut named = vec![PACKED_ZSTD_DICT, 1];
            named.extend_from_slice(&bytes);
            let _ = decode_block(0, &named, shop_dictionaries(), &mut Vec::new());
        }
    }
}
