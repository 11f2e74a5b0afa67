//! Reading stored events in place: values and events as views borrowed from a block's bytes, so
//! that scanning a customer's timeline allocates nothing per event. The scans of the query
//! engine use this; everything that needs owned values uses [`super::codec`].
//!
//! The byte layout is the one [`super::codec`] writes; every read checks lengths and tags and
//! answers bad bytes with [`crate::Error::Corrupt`].

use crate::error::{corrupt, Result};
use crate::model::{Timestamp, Value};

use super::codec::{self, Reader};

/// Where one block's body lies in a buffer of bodies: its first event's timestamp and its byte
/// range (see [`super::Store::event_bodies_from`]).
pub type BlockSpan = (Timestamp, std::ops::Range<usize>);

/// A value read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueView<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(Timestamp),
    List(ListView<'a>),
}

/// The elements of a list value: already decoded (a profile's), or still encoded (an event's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListView<'a> {
    Decoded(&'a [Value]),
    Encoded { len: usize, bytes: &'a [u8] },
}

impl<'a> ValueView<'a> {
    /// The view of an owned value.
    pub fn of(v: &'a Value) -> ValueView<'a> {
        match v {
            Value::Str(s) => ValueView::Str(s),
            Value::Int(i) => ValueView::Int(*i),
            Value::Float(f) => ValueView::Float(*f),
            Value::Bool(b) => ValueView::Bool(*b),
            Value::Time(t) => ValueView::Time(*t),
            Value::List(items) => ValueView::List(ListView::Decoded(items)),
        }
    }

    /// The value as a number, if it is one (integers widen to floats). Strings never are.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            ValueView::Int(i) => Some(i as f64),
            ValueView::Float(f) => Some(f),
            _ => None,
        }
    }
}

impl<'a> ListView<'a> {
    /// Whether any element satisfies `f`. A damaged encoded list holds nothing.
    pub fn any(self, mut f: impl FnMut(ValueView<'a>) -> bool) -> bool {
        match self {
            ListView::Decoded(items) => items.iter().any(|v| f(ValueView::of(v))),
            ListView::Encoded { len, bytes } => {
                let mut r = Reader::new(bytes);
                for _ in 0..len {
                    match read_value(&mut r, 1) {
                        Ok(v) if f(v) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
                false
            }
        }
    }
}

/// Reads one value written by [`codec::put_value`] and moves past it.
fn read_value<'a>(r: &mut Reader<'a>, depth: u8) -> Result<ValueView<'a>> {
    Ok(match r.byte()? {
        codec::TAG_STR => ValueView::Str(r.str()?),
        codec::TAG_INT => ValueView::Int(r.signed()?),
        codec::TAG_FLOAT => {
            let mut a = [0u8; 8];
            a.copy_from_slice(r.take(8)?);
            ValueView::Float(f64::from_le_bytes(a))
        }
        codec::TAG_DECIMAL => {
            let m = r.signed()?;
            let p = codec::POW10
                .get(usize::from(r.byte()?))
                .ok_or_else(|| corrupt!("bad decimal exponent"))?;
            ValueView::Float(m as f64 / p)
        }
        codec::TAG_FALSE => ValueView::Bool(false),
        codec::TAG_TRUE => ValueView::Bool(true),
        codec::TAG_TIME => ValueView::Time(r.signed()?),
        codec::TAG_LIST if depth == 0 => {
            let len = r.len()?;
            let start = r.pos;
            for _ in 0..len {
                read_value(r, 1)?;
            }
            ValueView::List(ListView::Encoded {
                len,
                bytes: r.bytes_between(start, r.pos),
            })
        }
        tag => return Err(corrupt!("unknown value tag {tag}")),
    })
}

/// Moves past one value without looking into it (strings are not checked for UTF-8 here; they
/// are when read).
fn skip_value(r: &mut Reader<'_>, depth: u8) -> Result<()> {
    match r.byte()? {
        codec::TAG_STR => {
            let n = r.len()?;
            r.take(n)?;
        }
        codec::TAG_INT | codec::TAG_TIME => {
            r.varint()?;
        }
        codec::TAG_FLOAT => {
            r.take(8)?;
        }
        codec::TAG_DECIMAL => {
            r.varint()?;
            r.byte()?;
        }
        codec::TAG_FALSE | codec::TAG_TRUE => {}
        codec::TAG_LIST if depth == 0 => {
            for _ in 0..r.len()? {
                skip_value(r, 1)?;
            }
        }
        tag => return Err(corrupt!("unknown value tag {tag}")),
    }
    Ok(())
}

/// One event read in place: its properties stay encoded until asked for.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub ts: Timestamp,
    pub event: u32,
    props: &'a [u8],
}

impl<'a> EventView<'a> {
    /// The event again from its parts, with `props` the bytes [`EventView::props_bytes`] gave:
    /// for a reader that indexes a customer's events once and comes back to some of them.
    pub fn from_parts(ts: Timestamp, event: u32, props: &'a [u8]) -> EventView<'a> {
        EventView { ts, event, props }
    }

    /// The event's properties as stored (still encoded), borrowed from the block body.
    pub fn props_bytes(&self) -> &'a [u8] {
        self.props
    }

    /// All properties, decoded into owned values.
    pub fn props(&self) -> Result<codec::Fields> {
        codec::get_fields(&mut Reader::new(self.props))
    }

    /// The value of property `id`, if the event has it.
    pub fn prop(&self, id: u32) -> Result<Option<ValueView<'a>>> {
        let mut r = Reader::new(self.props);
        let n = r.len()?;
        for _ in 0..n {
            if r.u32()? == id {
                return read_value(&mut r, 0).map(Some);
            }
            skip_value(&mut r, 0)?;
        }
        Ok(None)
    }
}

/// Calls `f` with each event of a block body (as [`decompress_block`] leaves it) in time order,
/// until `f` returns `false`.
pub fn for_each_event<'a>(
    start: Timestamp,
    body: &'a [u8],
    mut f: impl FnMut(EventView<'a>) -> Result<bool>,
) -> Result<()> {
    let mut r = Reader::new(body);
    let n = r.len()?;
    let mut ts = start;
    for _ in 0..n {
        let event;
        (ts, event) = codec::event_header(&mut r, ts)?;
        let props_start = r.pos;
        let fields = r.len()?;
        for _ in 0..fields {
            r.u32()?;
            skip_value(&mut r, 0)?;
        }
        let props = r.bytes_between(props_start, r.pos);
        if !f(EventView { ts, event, props })? {
            return Ok(());
        }
    }
    Ok(())
}

/// Calls `f` with each event in `from..=to` of a customer's blocks (`bodies` holds the bodies
/// back to back, `blocks` each block's first timestamp and byte range, in time order), in time
/// order; no block is read past the first event after `to`.
pub fn for_each_event_between<'a>(
    bodies: &'a [u8],
    blocks: &[BlockSpan],
    from: Timestamp,
    to: Timestamp,
    mut f: impl FnMut(EventView<'a>) -> Result<()>,
) -> Result<()> {
    for (start, range) in blocks {
        if *start > to {
            break;
        }
        let mut past = false;
        let body = bodies
            .get(range.clone())
            .ok_or_else(|| corrupt!("an event block's range lies outside the bodies read"))?;
        for_each_event(*start, body, |e| {
            if e.ts > to {
                past = true;
                return Ok(false);
            }
            if e.ts >= from {
                f(e)?;
            }
            Ok(true)
        })?;
        if past {
            break;
        }
    }
    Ok(())
}

/// Appends a stored block's body (its events, uncompressed) to `out`.
pub fn decompress_block(
    bytes: &[u8],
    dicts: &super::Dictionaries,
    out: &mut Vec<u8>,
) -> Result<()> {
    codec::block_body(bytes, dicts, out)
}
