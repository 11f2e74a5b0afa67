//! A customer's timeline: sealed event blocks (`e` records) and the events of recent writes not
//! yet folded into them, which the write log holds (format 6).
//!
//! **Write log.** A write's batch carries the new events of every customer it touches
//! ([`Store::write_events`]); [`Store::commit`] appends them as one frame to the log file
//! ([`LOG_FILE`], beside sled's files): per customer the events (sorted by time, stably)
//! encoded as a block body, and the hashes of the message ids the write stored for it,
//! LZ4-packed, under the frame's sequence number and hash. The frame is made durable first; then
//! the batch, which also stores the log file's new committed end (the `log_end` metadata
//! record), is applied and flushed: a frame is part of the folder once that end covers it, and
//! a frame after the end (its batch failed, or a crash came between) is cut off. No
//! per-customer record is read or written for events, and none of the log enters sled, so a
//! write is one sequential append plus its bookkeeping, whatever order its events come in. A
//! customer with nothing stored that the write brings [`DIRECT_FROM_EVENTS`] events or more
//! gets sealed blocks at once instead (in input grouped by customer, its whole history so far).
//!
//! **Memtable.** Once the write is durable its events go into [`Memtable`], in memory: per
//! customer the encoded bodies of each write (segments, in write order) and the message-id
//! hashes. Every reader of a customer's events merges the sealed blocks with them: the blocks'
//! events, then each segment's, sorted by time stably, which is exactly the order the blocks
//! alone would hold had every write merged its events into them (stored events first among equal
//! times, then each write's own in the order they came). Dedup reads the hashes too.
//!
//! **Fold.** When the memtable passes a bound (events or bytes, `Config::fold_events` and
//! `Config::fold_bytes`), and when the folder is closed, [`Store::fold`] merges each customer's
//! unfolded events into their blocks (from the one holding the earliest, as a format-3 write
//! did, but leaving a block of [`KEEP_EVENTS`] or more wholly before them as it is) and adds
//! their hashes as a further message-id record ([`SEEN_RECORDS`]), customer by customer in id order, a few
//! tens of megabytes per atomic batch (the next batch's blocks are built on rayon's pool while
//! this one is applied; the batches are applied in order). Every batch but the last also records
//! how far the fold got (the `fold` metadata record: the last frame folded and the last customer
//! done); the last sets the committed end back to 0 and removes that record, and the file is then emptied. At
//! open the committed frames are read back in order into the memtable, skipping customers an
//! unfinished fold already wrote and customers deleted since (a deleted customer's internal id
//! is never used again), so a crash at any moment loses and duplicates nothing. A format-4
//! folder's tails (`t` records) are folded into blocks first ([`Store::upgrade_tails`]).
//! docs/STORAGE.md says why this layout was chosen.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use super::codec::{self, Reader, StoredEvent};
use super::{dictionary, keys, view, BlockDictionary, Dictionaries, Store, WriteBatch};
use crate::error::{corrupt, Result};
use crate::model::Timestamp;

/// A customer with nothing stored gets its blocks at once, not through the log, when a write
/// brings it at least this many events: in input grouped by customer (its whole history so far)
/// writing the events to the log and again at the fold would cost twice. In a stream a new
/// customer's first write holds an event or two, and writing those as blocks at once meant one
/// small random insert per customer into sled (and its dead copies) whose block the fold then
/// rewrote: at 200,000 customers in time order, 639 MB against 611 MB through the log
/// (docs/BENCHMARKS.md, "Fewer checkpoints").
pub const DIRECT_FROM_EVENTS: usize = 16;

/// Events per sealed block: a customer's timeline is cut into blocks of at most this many (more
/// only when equal timestamps straddle the cut).
pub const BLOCK_EVENTS: usize = 128;

/// A fold leaves a stored block wholly before the unfolded events as it is when it holds at
/// least this many events, and writes the new events into blocks of their own after it; a
/// smaller last block is merged with them. Merging into every partial block rewrote a
/// customer's whole history at each fold when it holds fewer than [`BLOCK_EVENTS`] events (most
/// customers of a shop): at 1,000,000 customers, four folds of an import wrote the blocks about
/// three times over (docs/BENCHMARKS.md, "Folds that rewrite less"). So every block
/// but a customer's last holds at least this many events (a quarter of a full block): a read
/// decodes at most four times the blocks it did.
pub const KEEP_EVENTS: usize = BLOCK_EVENTS / 4;

/// The most message-id records a customer has (format 7). A fold adds the hashes it brings a
/// customer as a further record after the ones stored, instead of rewriting the union of all
/// of them (at 1,000,000 customers four folds wrote the message ids about three times over);
/// the fold that would make it more than this many writes the union into the first record and
/// removes the others. A read takes a prefix scan of at most this many records.
pub const SEEN_RECORDS: usize = 8;

/// The smallest bound on unfolded events (a write that leaves more folds them): on a machine
/// with little memory, or whose memory cannot be read ([`fold_bounds`]).
pub const FOLD_EVENTS: usize = 2_000_000;

/// The smallest bound on the memtable's bytes (encoded events, hashes, and a little per
/// customer; a write that leaves more folds them), as [`FOLD_EVENTS`].
pub const FOLD_BYTES: usize = 128 << 20;

/// The largest fold bound on bytes [`fold_bounds`] gives, however much memory there is.
pub const MAX_FOLD_BYTES: usize = 1 << 30;

/// The fold bounds (events, bytes) for this machine: a sixteenth of its memory (`MemTotal` of
/// `/proc/meminfo`) for the memtable, at least [`FOLD_BYTES`] and at most [`MAX_FOLD_BYTES`],
/// and as many events as that holds at the ratio of [`FOLD_EVENTS`] to [`FOLD_BYTES`]; the two
/// defaults where the memory cannot be read. Every fold rewrites the last block of each
/// customer it touches, so fewer, larger folds rewrite less (docs/STORAGE.md, "Write log and
/// memtable").
pub fn fold_bounds() -> (usize, usize) {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<usize>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    fold_bounds_for(total)
}

/// [`fold_bounds`] for a machine with `memory` bytes (unknown: the defaults).
pub fn fold_bounds_for(memory: Option<usize>) -> (usize, usize) {
    let Some(memory) = memory else {
        return (FOLD_EVENTS, FOLD_BYTES);
    };
    let bytes = (memory / 16).clamp(FOLD_BYTES, MAX_FOLD_BYTES);
    let events = (bytes as u64 * FOLD_EVENTS as u64 / FOLD_BYTES as u64) as usize;
    (events, bytes)
}

/// The default size of a fold's batches: one commits once it holds about this many bytes of
/// new blocks.
pub const FOLD_BATCH_BYTES: usize = 32 << 20;

/// The write log's file in the database folder, beside sled's: frames appended by
/// [`Store::commit`], truncated by the fold that empties the memtable.
pub const LOG_FILE: &str = "writelog";

/// The metadata record of the log file's committed end (`u64` BE): the frames before it are
/// committed writes; whatever follows it is not, and is cut off.
const LOG_END: &str = "log_end";

/// A frame's header: its payload's length (`u32` LE), its sequence number (`u64` LE), and the
/// xxh3-64 of both and the payload (`u64` LE).
const FRAME_HEADER: usize = 20;

/// The largest log frame payload, uncompressed (a guard against damaged lengths).
const MAX_LOG_BYTES: usize = 1 << 30;

/// What the memtable counts for each customer besides its bytes.
const CUSTOMER_OVERHEAD: usize = 96;

/// The metadata record of unfinished folds (see [`Store::fold`]).
const FOLD_META: &str = "fold";

/// Testing only: write format 3 (every write merged into the blocks; a new folder is marked 3,
/// an older one is not upgraded), as the build before format 4 did. See [`write_format_3`].
static FORMAT_3: AtomicBool = AtomicBool::new(false);

/// Testing only: from now on, this process writes folders as a format-3 build did (no write
/// log, and a new folder is marked 3), to test that such folders are read and upgraded.
#[doc(hidden)]
pub fn write_format_3(on: bool) {
    FORMAT_3.store(on, Ordering::SeqCst);
}

pub(super) fn writes_format_3() -> bool {
    FORMAT_3.load(Ordering::SeqCst)
}

/// Testing only: turns the customer's last `n` events (fewer when equal times straddle the
/// cut) and half its message-id hashes into a format-4 tail record, as a format-4 build's write
/// left them, and marks the folder format 4; the customer's timeline and hashes stay the same.
/// For the test that such a folder is upgraded when opened. The customer must have no
/// unfolded events.
#[doc(hidden)]
pub fn move_into_format_4_tail(store: &Store, cust: u32, n: usize) -> Result<()> {
    let dict = store.dictionaries.current();
    let mut batch = WriteBatch::new();
    let mut events = Vec::new();
    for (_, start, bytes) in store.blocks_from(cust, Timestamp::MIN)? {
        codec::decode_block(start, &bytes, &store.dictionaries, &mut events)?;
        batch.remove_block(cust, start);
    }
    let mut cut = events.len().saturating_sub(n);
    while cut > 0 && cut < events.len() && events[cut].ts == events[cut - 1].ts {
        cut -= 1;
    }
    let (kept, tail) = events.split_at(cut);
    put_merged(&mut batch, cust, &[], kept, dict);
    let seen = store.seen_messages(cust)?;
    let (kept_hashes, tail_hashes) = seen.split_at(seen.len() / 2);
    store.remove_seen(&mut batch, cust)?;
    batch.put_seen(cust, codec::encode_seen(kept_hashes));
    if !tail.is_empty() {
        // The format-4 layout: the hashes (a count, 6 bytes LE each), the first time (zigzag),
        // the last one's distance from it, the number of events, then the events as a block.
        let mut value = Vec::new();
        codec::put_varint(&mut value, tail_hashes.len() as u64);
        for h in tail_hashes {
            value.extend_from_slice(&h.to_le_bytes()[..6]);
        }
        let (start, last) = (tail[0].ts, tail[tail.len() - 1].ts);
        codec::put_signed(&mut value, start);
        codec::put_varint(&mut value, (last - start) as u64);
        codec::put_varint(&mut value, tail.len() as u64);
        value.extend_from_slice(&codec::encode_block(tail, dict));
        batch.put_tail(cust, 0, value);
    }
    batch.put_meta(super::meta::FORMAT, &4u32.to_be_bytes());
    store.commit(batch)
}

/// Cuts a time-sorted timeline into blocks of about [`BLOCK_EVENTS`] events, cutting only between
/// different timestamps: so block start times are unique keys and blocks never overlap in time,
/// and the only block that can hold events at or after time `t` are the last one starting at or
/// before `t` and those after it.
pub fn time_blocks<E: Borrow<StoredEvent>>(events: &[E]) -> impl Iterator<Item = &[E]> {
    blocks_by(events, |e| e.borrow().ts)
}

/// [`time_blocks`]'s cut of anything time-sorted, `ts` giving each item's time.
fn blocks_by<T>(items: &[T], ts: impl Fn(&T) -> Timestamp) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(BLOCK_EVENTS);
        while end < rest.len() && ts(&rest[end]) == ts(&rest[end - 1]) {
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// One customer's part of a write, as its log record holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub cust: u32,
    /// The hashes of the message ids the write stored for the customer, sorted.
    pub hashes: Vec<u64>,
    /// How many events; 0 when the write stored only message ids (of `identify` messages).
    pub events: usize,
    /// The first event's time (0 without events).
    pub start: Timestamp,
    /// The last event's time.
    pub last: Timestamp,
    /// The events, sorted by time stably, as a block body ([`codec::put_block_body`]).
    pub body: Vec<u8>,
}

impl Logged {
    /// The customer's part of a write: `events` sorted by time (stably), `hashes` sorted.
    pub fn new(cust: u32, events: &[StoredEvent], hashes: Vec<u64>) -> Logged {
        let mut body = Vec::new();
        if !events.is_empty() {
            codec::put_block_body(&mut body, events);
        }
        Logged {
            cust,
            hashes,
            events: events.len(),
            start: events.first().map_or(0, |e| e.ts),
            last: events.last().map_or(0, |e| e.ts),
            body,
        }
    }
}

/// Encodes a log record: a count of parts, then per part the customer, the hashes (a count,
/// 6 bytes LE each), the number of events and, with events, the first time (zigzag), the last
/// one's distance from it, the body's length and the body; all of it packed (LZ4 when that
/// saves an eighth).
pub fn encode_log(parts: &[Logged]) -> Vec<u8> {
    let size: usize = parts
        .iter()
        .map(|p| 24 + p.hashes.len() * 6 + p.body.len())
        .sum();
    let mut out = Vec::with_capacity(1 + 8 + size);
    out.push(0); // the tag's place (codec::pack)
    codec::put_varint(&mut out, parts.len() as u64);
    for p in parts {
        codec::put_varint(&mut out, u64::from(p.cust));
        codec::put_varint(&mut out, p.hashes.len() as u64);
        for h in &p.hashes {
            out.extend_from_slice(&h.to_le_bytes()[..6]);
        }
        codec::put_varint(&mut out, p.events as u64);
        if p.events > 0 {
            codec::put_signed(&mut out, p.start);
            codec::put_varint(&mut out, (p.last - p.start) as u64);
            codec::put_varint(&mut out, p.body.len() as u64);
            out.extend_from_slice(&p.body);
        }
    }
    codec::pack(out)
}

/// Reads a count (varint) of message-id hashes, then the hashes, 6 bytes LE each.
fn read_hashes(r: &mut Reader, bad: impl Fn() -> crate::Error) -> Result<Vec<u64>> {
    let n = r.len()?;
    Ok(codec::hashes_48(r.take(n.checked_mul(6).ok_or_else(bad)?)?))
}

/// Decodes a log record's parts. Their bodies are checked when decoded ([`decode_part`]).
pub fn decode_log(value: &[u8]) -> Result<Vec<Logged>> {
    let bytes = codec::unpack(value, "write log record", MAX_LOG_BYTES)?;
    let mut r = Reader::new(&bytes);
    let n = r.len()?;
    let mut parts = Vec::with_capacity(n.min(bytes.len()));
    let bad = || corrupt!("bad write log record");
    for _ in 0..n {
        let cust = u32::try_from(r.varint()?).map_err(|_| bad())?;
        let hashes = read_hashes(&mut r, bad)?;
        let events = r.len()?;
        let (mut start, mut last, mut body) = (0, 0, Vec::new());
        if events > 0 {
            start = r.signed()?;
            let span = i64::try_from(r.varint()?).map_err(|_| bad())?;
            last = start.checked_add(span).ok_or_else(bad)?;
            let len = r.len()?;
            body = r.take(len)?.to_vec();
        }
        parts.push(Logged {
            cust,
            hashes,
            events,
            start,
            last,
            body,
        });
    }
    if !r.is_empty() {
        return Err(bad());
    }
    Ok(parts)
}

/// Decodes a logged part's events, appending them to `out`; checks them against its header.
pub fn decode_part(part: &Logged, out: &mut Vec<StoredEvent>) -> Result<()> {
    if part.events == 0 {
        return Ok(());
    }
    let before = out.len();
    codec::decode_block_body(part.start, &part.body, out)?;
    let got = &out[before..];
    if got.len() != part.events
        || got.first().is_some_and(|e| e.ts != part.start)
        || got.last().is_some_and(|e| e.ts != part.last)
    {
        out.truncate(before);
        return Err(corrupt!(
            "a write log record's header disagrees with its events"
        ));
    }
    Ok(())
}

/// A format-4 tail record as read: its header decoded, its events still packed (a block).
struct Tail {
    events: usize,
    start: Timestamp,
    last: Timestamp,
    hashes: Vec<u64>,
    block: super::Bytes,
}

/// Decodes a format-4 tail record: the hashes (a varint count, then 6 bytes LE each), the first
/// event's time (zigzag varint), the last one's after it (varint), the number of events
/// (varint), then the events as a block.
fn decode_tail(value: &super::Bytes) -> Result<Tail> {
    let bad = || corrupt!("bad event tail");
    let mut r = Reader::new(value);
    let hashes = read_hashes(&mut r, bad)?;
    let start = r.signed()?;
    let span = i64::try_from(r.varint()?).map_err(|_| bad())?;
    let last = start.checked_add(span).ok_or_else(bad)?;
    let events = r.len()?;
    let at = r.pos;
    Ok(Tail {
        events,
        start,
        last,
        hashes,
        block: value.subslice(at, value.len() - at),
    })
}

/// Decodes a format-4 tail's events, appending them to `out`; checks them against its header.
fn decode_tail_events(tail: &Tail, dicts: &Dictionaries, out: &mut Vec<StoredEvent>) -> Result<()> {
    let before = out.len();
    if tail.events > 0 {
        codec::decode_block(tail.start, &tail.block, dicts, out)?;
    }
    let got = &out[before..];
    if got.len() != tail.events
        || got.first().is_some_and(|e| e.ts != tail.start)
        || got.last().is_some_and(|e| e.ts != tail.last)
    {
        return Err(corrupt!("an event tail's header disagrees with its events"));
    }
    Ok(())
}

/// A batch's log frame, written by [`Store::log_write`] (holding the log file's lock) and
/// made readable by [`Store::logged`] once the batch is durable.
pub(super) struct LogWrite<'a> {
    file: Option<parking_lot::MutexGuard<'a, LogFile>>,
    /// The log file's end after the frame.
    end: u64,
    parts: Vec<Logged>,
    forget: Vec<u32>,
}

/// The write log's file: where its committed frames end, and the next frame's number.
#[derive(Debug, Default)]
pub(super) struct LogFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    end: u64,
    next_seq: u64,
    frames: u64,
}

impl LogFile {
    /// The open file (opened, or created, at the first use).
    fn file(&mut self) -> std::io::Result<&std::fs::File> {
        let f = match self.file.take() {
            Some(f) => f,
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?,
        };
        Ok(self.file.insert(f))
    }
}

/// A frame: [`FRAME_HEADER`], then the payload (a log record, [`encode_log`]).
fn encode_frame(seq: u64, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| (n as usize) <= MAX_LOG_BYTES)
        .ok_or_else(|| crate::error::invalid!("a write of more than 1 GiB of events"))?;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&frame_hash(seq, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn frame_hash(seq: u64, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.digest()
}

/// Splits the committed part of a log file into frames: (sequence number, payload). Every
/// frame must be whole and match its hash: the committed part was durable before its end was.
pub fn decode_frames(bytes: &[u8]) -> Result<Vec<(u64, &[u8])>> {
    let bad = |what: &str| corrupt!("the write log file is damaged: {what}");
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + FRAME_HEADER)
            .ok_or_else(|| bad("a frame is cut short"))?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
        let hash = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let payload = bytes
            .get(at + FRAME_HEADER..at + FRAME_HEADER + len)
            .ok_or_else(|| bad("a frame is cut short"))?;
        if frame_hash(seq, payload) != hash {
            return Err(bad("a frame does not match its hash"));
        }
        out.push((seq, payload));
        at += FRAME_HEADER + len;
    }
    Ok(out)
}

/// One customer's unfolded events and message-id hashes.
#[derive(Debug, Clone, Default)]
pub(super) struct Unfolded {
    /// One segment per write that brought the customer events, in write order: the first
    /// event's time (zigzag), the body's length, the body.
    segments: Vec<u8>,
    events: usize,
    /// The earliest event's time.
    first: Timestamp,
    /// The last segment's last event's time.
    last: Timestamp,
    /// Whether every segment starts at or after the previous one's last event.
    in_order: bool,
    /// Hashes of the message ids stored with them (each write's sorted).
    hashes: Vec<u64>,
}

impl Unfolded {
    fn add(&mut self, p: &Logged) {
        self.hashes.extend_from_slice(&p.hashes);
        if p.events == 0 {
            return;
        }
        if self.events == 0 {
            self.first = p.start;
            self.in_order = true;
        } else {
            self.first = self.first.min(p.start);
            self.in_order &= p.start >= self.last;
        }
        self.last = p.last;
        self.events += p.events;
        codec::put_signed(&mut self.segments, p.start);
        codec::put_varint(&mut self.segments, p.body.len() as u64);
        self.segments.extend_from_slice(&p.body);
    }

    fn bytes(&self) -> usize {
        self.segments.len() + self.hashes.len() * 8 + CUSTOMER_OVERHEAD
    }

    /// Calls `f` with each segment's first time and body, in write order.
    fn segments(&self, mut f: impl FnMut(Timestamp, &[u8]) -> Result<()>) -> Result<()> {
        let mut r = Reader::new(&self.segments);
        while !r.is_empty() {
            let start = r.signed()?;
            let len = r.len()?;
            f(start, r.take(len)?)?;
        }
        Ok(())
    }

    /// Appends its events to `out`, segment after segment (each sorted by time).
    fn decode_into(&self, out: &mut Vec<StoredEvent>) -> Result<()> {
        self.segments(|start, body| codec::decode_block_body(start, body, out))
    }
}

/// The memtable's customers, by internal id: a slot per id up to the highest one held. The
/// writer's duplicate check looks a customer up here for every message of a write; in a
/// `BTreeMap` of hundreds of thousands of customers each lookup missed the cache at every
/// level.
#[derive(Debug, Default)]
pub(super) struct Slots {
    slots: Vec<Option<Box<Unfolded>>>,
    len: usize,
}

impl Slots {
    fn get(&self, cust: &u32) -> Option<&Unfolded> {
        self.slots.get(*cust as usize).and_then(|s| s.as_deref())
    }

    fn contains_key(&self, cust: &u32) -> bool {
        self.get(cust).is_some()
    }

    /// The customer's entry, made empty if it has none, and whether it had one.
    fn entry(&mut self, cust: u32) -> (&mut Unfolded, bool) {
        let at = cust as usize;
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        let slot = &mut self.slots[at];
        let had = slot.is_some();
        if !had {
            self.len += 1;
        }
        (slot.get_or_insert_with(Box::default), had)
    }

    fn remove(&mut self, cust: &u32) -> Option<Unfolded> {
        let u = self.slots.get_mut(*cust as usize).and_then(Option::take)?;
        self.len -= 1;
        if self.len == 0 {
            self.slots = Vec::new();
        }
        Some(*u)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The customers and their entries, by id.
    fn iter(&self) -> impl Iterator<Item = (u32, &Unfolded)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(c, s)| s.as_deref().map(|u| (c as u32, u)))
    }

    fn values(&self) -> impl Iterator<Item = &Unfolded> {
        self.iter().map(|(_, u)| u)
    }
}

/// A filter of the memtable's message-id hashes, by customer: a blocked Bloom filter (two bits
/// in one 64-bit word per (customer, hash)) that answers "certainly not unfolded" for nearly every
/// message of a write with one memory access, where scanning the customer's unfolded hashes took
/// a cache miss or more per message (3% of a time-ordered import's CPU at 200,000 customers). It
/// holds every hash of every entry; a removed entry's hashes stay in it (a false "maybe", which
/// the scan then answers), until the memtable is empty.
#[derive(Debug, Default)]
pub(super) struct HashFilter {
    words: Vec<u64>,
    /// The (customer, hash) pairs added since it was last empty.
    items: usize,
}

impl HashFilter {
    /// Bits per pair: about 5% of absent pairs read as "maybe".
    const BITS_PER_ITEM: usize = 8;
    const MIN_WORDS: usize = 1024;

    fn mix(cust: u32, hash: u64) -> u64 {
        (hash ^ u64::from(cust).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }

    /// The word and the two bits of a pair, for `words` words (a power of two).
    fn place(mixed: u64, words: usize) -> (usize, u64) {
        let at = (mixed >> 40) as usize & (words - 1);
        (at, (1u64 << (mixed & 63)) | (1u64 << ((mixed >> 6) & 63)))
    }

    fn set(words: &mut [u64], mixed: u64) {
        let (at, bits) = Self::place(mixed, words.len());
        words[at] |= bits;
    }

    /// Adds a customer's hashes; `all` lists every pair held, to size the filter anew when it
    /// grows past its bound.
    fn add<'a>(&mut self, cust: u32, hashes: &[u64], all: impl FnOnce() -> Vec<(u32, &'a [u64])>) {
        if hashes.is_empty() {
            return;
        }
        self.items += hashes.len();
        if self.words.len() * 64 < self.items * Self::BITS_PER_ITEM {
            // Rebuilt at twice the size the pairs need: amortised, each pair is set a few times.
            let words = (self.items * Self::BITS_PER_ITEM * 2 / 64)
                .next_power_of_two()
                .max(Self::MIN_WORDS);
            let mut fresh = vec![0u64; words];
            let mut items = 0;
            for (c, hs) in all() {
                for &h in hs {
                    Self::set(&mut fresh, Self::mix(c, h));
                }
                items += hs.len();
            }
            // `all` holds this customer's new hashes already (they join its entry first).
            self.words = fresh;
            self.items = items;
            return;
        }
        for &h in hashes {
            Self::set(&mut self.words, Self::mix(cust, h));
        }
    }

    /// Whether the pair may have been added since the filter was last empty: `false` only for
    /// a pair never added.
    fn may_hold(&self, cust: u32, hash: u64) -> bool {
        if self.words.is_empty() {
            return false;
        }
        let (at, bits) = Self::place(Self::mix(cust, hash), self.words.len());
        self.words[at] & bits == bits
    }

    fn clear(&mut self) {
        self.words = Vec::new();
        self.items = 0;
    }
}

/// The unfolded events of every customer, and what they weigh.
#[derive(Debug, Default)]
pub(super) struct Memtable {
    customers: Slots,
    /// Every entry's message-id hashes, for the writer's duplicate check.
    filter: HashFilter,
    events: usize,
    bytes: usize,
    /// The sequence number of the last log frame whose parts it holds (read back or logged
    /// since the last fold): a fold folds every frame up to it.
    last_seq: Option<u64>,
}

impl Memtable {
    fn add(&mut self, p: &Logged) {
        let (u, had) = self.customers.entry(p.cust);
        let before = if had { u.bytes() } else { 0 };
        u.add(p);
        self.bytes += u.bytes() - before;
        self.events += p.events;
        let customers = &self.customers;
        self.filter.add(p.cust, &p.hashes, || {
            customers.iter().map(|(c, u)| (c, &u.hashes[..])).collect()
        });
    }

    fn remove(&mut self, cust: u32) {
        if let Some(u) = self.customers.remove(&cust) {
            self.bytes -= u.bytes();
            self.events -= u.events;
        }
        if self.customers.len() == 0 {
            self.filter.clear();
        }
    }

    /// Whether the customer's unfolded message ids hold `hash`.
    fn has_message(&self, cust: u32, hash: u64) -> bool {
        self.filter.may_hold(cust, hash)
            && self
                .customers
                .get(&cust)
                .is_some_and(|u| u.hashes.contains(&hash))
    }
}

/// A store's write log in memory: the memtable, and the unfinished folds.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    /// Readers hold it (shared) while they take a customer's unfolded events and read its blocks'
    /// bytes, a fold (exclusive) while it applies a batch and drops the customers it folded: so
    /// a reader sees each event exactly once.
    memtable: RwLock<Memtable>,
    /// Unfinished folds, as the `fold` metadata record holds them: (the last log record they
    /// fold, the last customer they wrote).
    folds: Mutex<Vec<(u64, u32)>>,
    /// The log file, locked from a frame's writing to its batch's commit.
    log: Mutex<LogFile>,
}

fn encode_folds(folds: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(folds.len() * 12);
    for (g, c) in folds {
        out.extend_from_slice(&g.to_be_bytes());
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

fn decode_folds(bytes: &[u8]) -> Result<Vec<(u64, u32)>> {
    if !bytes.len().is_multiple_of(12) {
        return Err(corrupt!("bad fold record"));
    }
    bytes
        .chunks_exact(12)
        .map(|c| Ok((super::be_u64(&c[..8])?, super::be_u32(&c[8..])?)))
        .collect()
}

/// The sorted union of two sorted sets of hashes.
fn union(mut a: Vec<u64>, b: &[u64]) -> Vec<u64> {
    if b.is_empty() {
        return a;
    }
    a.extend_from_slice(b);
    a.sort_unstable();
    a.dedup();
    a
}

/// How many events and bytes the memtable holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unfolds {
    pub customers: usize,
    pub events: usize,
    pub bytes: usize,
}

impl Store {
    /// Adds to `batch` what storing one write's new events of a customer takes: `events`
    /// (sorted by time, stably: equal times in the order they came), the hashes of the message
    /// ids the write stores for the customer (`new_hashes`, sorted), and `seen_before`, the
    /// customer's stored hashes as [`Store::seen_messages`] gave them, or its message-id record's
    /// alone ([`Store::stored_seen`]), when the writer read them: only a customer with nothing
    /// unfolded has them read here, and then the two are the same.
    ///
    /// They become the customer's part of the write's log record, stored by [`Store::commit`]
    /// and readable (from the memtable) once the batch is durable. A customer with nothing
    /// stored that this write brings [`DIRECT_FROM_EVENTS`] events or more gets sealed blocks
    /// (compressed with `dict`) and its message-id record at once instead. Under
    /// [`write_format_3`] every
    /// write is merged into the blocks at once.
    pub fn write_events(
        &self,
        batch: &mut WriteBatch,
        cust: u32,
        events: &[StoredEvent],
        seen_before: Option<Vec<u64>>,
        new_hashes: &[u64],
        dict: Option<&BlockDictionary>,
    ) -> Result<()> {
        if events.is_empty() && new_hashes.is_empty() {
            return Ok(());
        }
        // A customer with nothing stored and enough events: its blocks at once. In input
        // grouped by customer the write holds its whole history so far, and writing it to the
        // log and again at the fold would cost twice the bytes; in a stream it is one or two
        // events, which go to the log like any other's (`DIRECT_FROM_EVENTS`).
        let direct = writes_format_3()
            || (events.len() >= DIRECT_FROM_EVENTS
                && !self.timeline.memtable.read().customers.contains_key(&cust)
                && !self.has_blocks(cust)?);
        if direct {
            if !events.is_empty() {
                let mut stored: Vec<StoredEvent> = Vec::new();
                for (_, start, bytes) in self.blocks_from(cust, events[0].ts)? {
                    codec::decode_block(start, &bytes, &self.dictionaries, &mut stored)?;
                    batch.remove_block(cust, start);
                }
                put_merged(batch, cust, &stored, events, dict);
            }
            if !new_hashes.is_empty() {
                // The union of every record (`seen_before`) goes into the first one.
                let seen = union(seen_before.unwrap_or_default(), new_hashes);
                self.remove_seen(batch, cust)?;
                batch.put_seen(cust, codec::encode_seen(&seen));
            }
            return Ok(());
        }
        batch
            .log
            .push(Logged::new(cust, events, new_hashes.to_vec()));
        Ok(())
    }

    /// Appends the log frame of a batch's logged events (the parts of its customers) to the
    /// log file at its committed end, under the next sequence number, waits until the frame is
    /// durable, and puts the log file's new end into the batch: for [`Store::commit`], which
    /// hands the result to [`Store::logged`] once the batch is durable. The log file's lock is
    /// held until then. A frame whose batch fails is never committed (the stored end stays
    /// before it) and the next frame is written over it.
    pub(super) fn log_write(&self, batch: &mut WriteBatch) -> Result<LogWrite<'_>> {
        let parts = std::mem::take(&mut batch.log);
        let forget = std::mem::take(&mut batch.forget);
        if parts.is_empty() {
            return Ok(LogWrite {
                file: None,
                end: 0,
                parts,
                forget,
            });
        }
        let mut lf = self.timeline.log.lock();
        let mut parts = parts;
        parts.sort_by_key(|p| p.cust);
        let payload = encode_log(&parts);
        let frame = encode_frame(lf.next_seq, &payload)?;
        let at = lf.end;
        let file = lf.file()?;
        let written = (|| -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            file.set_len(at)?;
            file.write_all_at(&frame, at)?;
            file.sync_data()
        })();
        written?;
        let end = at + frame.len() as u64;
        batch.put_meta(LOG_END, &end.to_be_bytes());
        Ok(LogWrite {
            file: Some(lf),
            end,
            parts,
            forget,
        })
    }

    /// Makes a committed batch's logged events readable: adds them to the memtable, and drops
    /// the unfolded events of the customers it removed.
    pub(super) fn logged(&self, write: LogWrite<'_>) {
        if write.parts.is_empty() && write.forget.is_empty() {
            return;
        }
        let mut m = self.timeline.memtable.write();
        if let Some(mut lf) = write.file {
            m.last_seq = Some(lf.next_seq);
            lf.next_seq += 1;
            lf.end = write.end;
            lf.frames += 1;
        }
        for p in &write.parts {
            m.add(p);
        }
        for c in write.forget {
            m.remove(c);
        }
    }

    /// The log file's committed frames and bytes, as a row of [`Store::record_stats`].
    pub(super) fn log_stats(&self) -> super::RecordStats {
        let lf = self.timeline.log.lock();
        super::RecordStats {
            kind: "write log",
            records: lf.frames,
            key_bytes: 0,
            value_bytes: lf.end,
        }
    }

    /// How much the memtable holds.
    pub fn unfolded(&self) -> Unfolds {
        let m = self.timeline.memtable.read();
        Unfolds {
            customers: m.customers.len(),
            events: m.events,
            bytes: m.bytes,
        }
    }

    /// Adds to `batch` the removal of every event of the customer: its sealed blocks, and its
    /// unfolded events once the batch is committed. Its log records' parts are skipped from
    /// then on: at open, a part of a customer that has no external id is not read back, and
    /// internal ids are never used again.
    pub fn remove_events(&self, batch: &mut WriteBatch, cust: u32) -> Result<()> {
        for (_, start, _) in self.blocks_from(cust, 0)? {
            batch.remove_block(cust, start);
        }
        batch.forget.push(cust);
        Ok(())
    }

    /// Folds the memtable when it holds more than `max_events` events or `max_bytes` bytes.
    /// Whether it folded.
    pub fn fold_if_over(
        &self,
        max_events: usize,
        max_bytes: usize,
        batch_bytes: usize,
        dict: Option<&BlockDictionary>,
    ) -> Result<bool> {
        let u = self.unfolded();
        if u.events <= max_events && u.bytes <= max_bytes {
            return Ok(false);
        }
        self.fold(dict, batch_bytes)?;
        Ok(true)
    }

    /// Folds every unfolded event into sealed blocks (compressed with `dict`) and every unfolded
    /// hash into the message-id records, removes the log records, and waits until that is
    /// durable. The caller holds the writer's lock: no write comes in meanwhile. Returns the
    /// number of customers folded.
    ///
    /// Customers are folded in id order, about `batch_bytes` of blocks per atomic batch.
    /// Each batch but the last records in the `fold` metadata record that the log records up to
    /// record G are folded for every customer up to the last one it wrote; the last batch
    /// removes those log records and the record. A crash leaves a prefix of the batches (sled
    /// recovers its log in order), and the open after it reads the log back without the parts
    /// the record says are folded: nothing is lost, nothing read twice.
    ///
    /// Without a dictionary (`dict` is `None`: the folder's writes were all too small to train
    /// one), one is trained on the unfolded events when they are enough, stored, and used for
    /// every block the fold writes: first blocks are not left without one.
    pub fn fold(&self, dict: Option<&BlockDictionary>, batch_bytes: usize) -> Result<u64> {
        let dict = match dict {
            Some(d) => Some(d),
            None => {
                if let Some(d) = self.train_from_unfolded() {
                    // Stored before any block names it, then installed (only the writer, whose
                    // lock is held, installs).
                    let mut batch = WriteBatch::new();
                    batch.put_dictionary(&d);
                    self.commit(batch)?;
                    self.dictionaries.install(d)?;
                }
                self.dictionaries.current()
            }
        };
        let (customers, records) = {
            let m = self.timeline.memtable.read();
            let customers: Vec<(u32, usize)> =
                m.customers.iter().map(|(c, u)| (c, u.bytes())).collect();
            (customers, m.last_seq)
        };
        let Some(last_record) = records else {
            return Ok(0);
        };
        // Where the chunk that starts at `at` ends: about `batch_bytes` of new blocks.
        let chunk_end = |at: usize| {
            let mut end = at;
            let mut bytes = 0;
            while end < customers.len() && (end == at || bytes < batch_bytes) {
                // New blocks: the unfolded events, plus the last block each rewrites.
                bytes += customers[end].1 + 2048;
                end += 1;
            }
            end
        };
        // The chunk's unfolded events, copied out of the memtable (each chunk's before the
        // previous chunk's batch takes the memtable's write lock).
        let take_chunk = |at: usize, end: usize| -> Vec<(u32, Unfolded)> {
            let m = self.timeline.memtable.read();
            customers[at..end]
                .iter()
                .filter_map(|(c, _)| m.customers.get(c).map(|u| (*c, u.clone())))
                .collect()
        };
        // A chunk's new blocks, built on rayon's pool. They read only the chunk's own
        // customers' stored blocks, which no other chunk's batch writes.
        let build = |chunk: Vec<(u32, Unfolded)>| -> Result<WriteBatch> {
            let batches: Vec<WriteBatch> = chunk
                .par_iter()
                .map(|(cust, u)| self.fold_customer(*cust, u, dict))
                .collect::<Result<_>>()?;
            let mut batch = WriteBatch::new();
            for b in batches {
                batch.append(b);
            }
            Ok(batch)
        };
        let mut folded = 0u64;
        let mut at = 0;
        let mut end = chunk_end(0);
        let mut built = build(take_chunk(0, end));
        loop {
            let mut batch = built?;
            let last = end == customers.len();
            let mut folds = self.timeline.folds.lock().clone();
            if last {
                // Every frame is folded: the log file's committed end goes back to its start.
                batch.put_meta(LOG_END, &0u64.to_be_bytes());
                batch.remove_meta(FOLD_META);
                folds.clear();
            } else {
                let through = customers[end - 1].0;
                match folds.last_mut() {
                    Some(f) if f.0 == last_record => f.1 = through,
                    _ => folds.push((last_record, through)),
                }
                batch.put_meta(FOLD_META, &encode_folds(&folds));
            }
            // Pipelined: the next chunk's blocks are built while this chunk's batch is applied
            // (sled's apply runs on this thread, the building on rayon's pool). The batches are
            // still applied one after the other, in order, each atomic.
            let next_end = if last { end } else { chunk_end(end) };
            let next_chunk = take_chunk(end, next_end);
            let (applied, next) = std::thread::scope(|s| {
                let next = (!last).then(|| s.spawn(|| build(next_chunk)));
                let applied = (|| -> Result<()> {
                    let mut m = self.timeline.memtable.write();
                    // A full disk fails a fold's batch as it fails a commit.
                    self.injected_fault()?;
                    self.apply(batch)?;
                    for (c, _) in &customers[at..end] {
                        m.remove(*c);
                    }
                    if last {
                        // The writer lock is held: no write logged anything since `records`
                        // was read.
                        m.last_seq = None;
                    }
                    Ok(())
                })();
                let next = next.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                (applied, next)
            });
            applied?;
            *self.timeline.folds.lock() = folds;
            folded += (end - at) as u64;
            if last {
                break;
            }
            built = next.unwrap_or_else(|| Ok(WriteBatch::new()));
            at = end;
            end = next_end;
        }
        self.flush()?;
        // The stored end is 0 now: the frames are no longer read; free their space. A failure
        // here leaves bytes after the end, which the next frame or open cuts off.
        let mut lf = self.timeline.log.lock();
        lf.end = 0;
        lf.frames = 0;
        if let Ok(f) = lf.file() {
            let _ = f.set_len(0);
        }
        drop(lf);
        Ok(folded)
    }

    /// A block dictionary trained on the unfolded events, when they are enough
    /// ([`dictionary::TRAIN_MIN_BYTES`] of block bodies): every `step`th customer's events cut
    /// into blocks, for a sample of about [`dictionary::TRAIN_SAMPLE_BYTES`].
    fn train_from_unfolded(&self) -> Option<BlockDictionary> {
        let m = self.timeline.memtable.read();
        let bytes: usize = m.customers.values().map(|u| u.segments.len()).sum();
        if bytes < dictionary::TRAIN_MIN_BYTES {
            return None;
        }
        let step = bytes.div_ceil(dictionary::TRAIN_SAMPLE_BYTES).max(1);
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        let mut events = Vec::new();
        for u in m.customers.values().filter(|u| u.events > 0).step_by(step) {
            events.clear();
            u.decode_into(&mut events).ok()?;
            events.sort_by_key(|e| e.ts);
            for chunk in time_blocks(&events) {
                let mut body = Vec::new();
                codec::put_block_body(&mut body, chunk);
                bodies.push(body);
            }
        }
        drop(m);
        let samples: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        BlockDictionary::new(dictionary::FIRST_ID, dictionary::train(&samples)?).ok()
    }

    /// The records folding one customer's unfolded events and hashes writes.
    fn fold_customer(
        &self,
        cust: u32,
        u: &Unfolded,
        dict: Option<&BlockDictionary>,
    ) -> Result<WriteBatch> {
        let mut batch = WriteBatch::new();
        if u.events > 0 {
            let mut stored: Vec<StoredEvent> = Vec::new();
            // A block of at least KEEP_EVENTS wholly before the unfolded events stays as it
            // is: rewriting it would only leave sled a dead copy (a full one would come back
            // unchanged). Equal times must not straddle two blocks, so it stays only when its
            // last event is strictly earlier than the first unfolded one.
            let mut keeping = true;
            let blocks = if self.is_bare(cust) {
                Vec::new()
            } else {
                self.blocks_from(cust, u.first)?
            };
            for (_, start, bytes) in blocks {
                let at = stored.len();
                codec::decode_block(start, &bytes, &self.dictionaries, &mut stored)?;
                if keeping
                    && stored.len() - at >= KEEP_EVENTS
                    && stored.last().is_some_and(|e| e.ts < u.first)
                {
                    stored.truncate(at);
                    continue;
                }
                keeping = false;
                batch.remove_block(cust, start);
            }
            if stored.is_empty() && u.in_order {
                // Nothing to merge with, and the writes in time order: the same blocks from
                // the segments' bytes.
                put_spliced(&mut batch, cust, u, dict)?;
            } else {
                let mut new = Vec::with_capacity(u.events);
                u.decode_into(&mut new)?;
                put_merged(&mut batch, cust, &stored, &new, dict);
            }
        }
        if !u.hashes.is_empty() {
            let mut hashes = u.hashes.clone();
            hashes.sort_unstable();
            let records = self.seen_records(cust)?;
            match records.last() {
                None => batch.put_seen(cust, codec::encode_seen(&hashes)),
                Some((last, _)) if records.len() < SEEN_RECORDS => {
                    let n = keys::parse_seen_chunk(last)? + 1;
                    batch.put_seen_chunk(cust, n, codec::encode_seen(&hashes));
                }
                Some(_) => {
                    let mut all = hashes;
                    for (k, v) in &records {
                        all.extend(codec::decode_seen(v)?);
                        batch.remove_raw(k.clone());
                    }
                    all.sort_unstable();
                    all.dedup();
                    batch.put_seen(cust, codec::encode_seen(&all));
                }
            }
        }
        Ok(batch)
    }

    /// Folds the tails of a format-4 folder (`t` records: each a write's events appended after
    /// a customer's blocks, with its message-id hashes) into sealed blocks and message-id
    /// records, at open: a few thousand customers per atomic batch, each removing the tails it
    /// folded, so a crash leaves some customers upgraded and the next open goes on with the
    /// rest. Returns the number of customers upgraded.
    pub(super) fn upgrade_tails(&self) -> Result<u64> {
        const CUSTOMERS_PER_BATCH: usize = 4096;
        let dict = self.dictionaries.current();
        let mut batch = WriteBatch::new();
        let (mut upgraded, mut in_batch) = (0u64, 0usize);
        let mut current: Option<(u32, Unfolded, Vec<u32>)> = None;
        let mut finish = |c: Option<(u32, Unfolded, Vec<u32>)>,
                          batch: &mut WriteBatch,
                          last: bool|
         -> Result<()> {
            if let Some((cust, u, seqs)) = c {
                batch.append(self.fold_customer(cust, &u, dict)?);
                for seq in seqs {
                    batch.remove_tail(cust, seq);
                }
                upgraded += 1;
                in_batch += 1;
            }
            if in_batch > 0 && (last || in_batch >= CUSTOMERS_PER_BATCH) {
                self.commit(std::mem::take(batch))?;
                in_batch = 0;
            }
            Ok(())
        };
        for item in self.scan(keys::TAIL) {
            let (k, v) = item?;
            let (cust, seq) = keys::parse_tail(&k)?;
            if current.as_ref().is_some_and(|c| c.0 != cust) {
                finish(current.take(), &mut batch, false)?;
            }
            let c = current.get_or_insert_with(|| (cust, Unfolded::default(), Vec::new()));
            let tail = decode_tail(&v)?;
            let mut events = Vec::with_capacity(tail.events);
            decode_tail_events(&tail, &self.dictionaries, &mut events)?;
            c.1.add(&Logged::new(cust, &events, tail.hashes));
            c.2.push(seq);
        }
        finish(current.take(), &mut batch, true)?;
        Ok(upgraded)
    }

    /// Reads the log records back into the memtable, in sequence order: at open.
    pub(super) fn recover_log(&self) -> Result<()> {
        self.upgrade_tails()?;
        let folds = match self.get(&keys::meta(FOLD_META))? {
            Some(v) => decode_folds(&v)?,
            None => Vec::new(),
        };
        let end = match self.get(&keys::meta(LOG_END))? {
            Some(v) => super::be_u64(&v)?,
            None => 0,
        };
        let mut lf = self.timeline.log.lock();
        lf.path = self.path.join(LOG_FILE);
        let mut bytes = Vec::new();
        if end > 0 {
            use std::io::Read;
            let mut file = lf.file()?;
            let len = file.metadata()?.len();
            if len < end {
                return Err(corrupt!(
                    "the write log file holds {len} bytes, fewer than the {end} committed"
                ));
            }
            bytes.reserve(end as usize);
            Read::by_ref(&mut file).take(end).read_to_end(&mut bytes)?;
        }
        let frames = decode_frames(&bytes)?;
        // What follows the committed end is a frame whose write was never committed (a crash
        // or a failure between the frame and its batch): cut off.
        let file = lf.file()?;
        if file.metadata()?.len() > end {
            file.set_len(end)?;
        }
        let mut exists: BTreeMap<u32, bool> = BTreeMap::new();
        let mut m = self.timeline.memtable.write();
        for &(seq, payload) in &frames {
            m.last_seq = Some(seq);
            for p in decode_log(payload)? {
                if folds.iter().any(|&(g, c)| seq <= g && p.cust <= c) {
                    continue;
                }
                let known = match exists.get(&p.cust) {
                    Some(&known) => known,
                    None => {
                        let known = self.external_id(p.cust)?.is_some();
                        exists.insert(p.cust, known);
                        known
                    }
                };
                if known {
                    m.add(&p);
                }
            }
        }
        lf.end = end;
        lf.frames = frames.len() as u64;
        lf.next_seq = m.last_seq.map_or(0, |s| s + 1);
        drop(lf);
        drop(m);
        *self.timeline.folds.lock() = folds;
        Ok(())
    }

    /// The customer's unfolded events, if any, and the bytes of its blocks from the one holding
    /// `from` on, read together (see [`Timeline::memtable`]).
    #[allow(clippy::type_complexity)]
    pub(super) fn timeline_from(
        &self,
        cust: u32,
        from: Timestamp,
    ) -> Result<(Vec<(Timestamp, super::Bytes)>, Option<Unfolded>)> {
        let m = self.timeline.memtable.read();
        let unfolded = m.customers.get(&cust).filter(|u| u.events > 0).cloned();
        let blocks = self
            .blocks_from(cust, from)?
            .into_iter()
            .map(|(_, start, v)| (start, v))
            .collect();
        drop(m);
        Ok((blocks, unfolded))
    }

    /// The hashes of the customer's unfolded message ids (unsorted).
    pub(super) fn unfolded_hashes(&self, cust: u32) -> Vec<u64> {
        let m = self.timeline.memtable.read();
        m.customers
            .get(&cust)
            .map(|u| u.hashes.clone())
            .unwrap_or_default()
    }

    /// Whether `hash` is among the customer's unfolded message-id hashes: a scan of them in
    /// place, without the copy and sort of [`Store::seen_messages`].
    pub fn has_unfolded_message(&self, cust: u32, hash: u64) -> bool {
        self.timeline.memtable.read().has_message(cust, hash)
    }

    /// Every customer's unfolded events, each customer's sorted by time (stably), by customer.
    pub(super) fn all_unfolded(&self) -> Result<Vec<(u32, Vec<StoredEvent>)>> {
        let m = self.timeline.memtable.read();
        let mut out = Vec::with_capacity(m.customers.len());
        for (c, u) in m.customers.iter() {
            if u.events == 0 {
                continue;
            }
            let mut events = Vec::with_capacity(u.events);
            u.decode_into(&mut events)?;
            if !u.in_order {
                events.sort_by_key(|e| e.ts);
            }
            out.push((c, events));
        }
        Ok(out)
    }
}

/// Appends a customer's unfolded events to `events`, which holds its stored ones in time order
/// (from some block on), keeping the timeline's order: stored first among equal times, then each
/// write's own in the order they came.
pub(super) fn merge_unfolded(u: &Unfolded, events: &mut Vec<StoredEvent>) -> Result<()> {
    let stored_last = events.last().map(|e| e.ts);
    u.decode_into(events)?;
    if !(u.in_order && stored_last.is_none_or(|l| u.first >= l)) {
        events.sort_by_key(|e| e.ts);
    }
    Ok(())
}

/// Appends a customer's unfolded events to `buf` and `spans`, which hold the bodies of its
/// blocks from `at_buf` and `at_spans` on (for [`Store::event_bodies_from`]): as further spans
/// when they all come at or after the stored ones and each write's after the previous one's,
/// else by decoding everything there and encoding it again, merged, as one span.
pub(super) fn merge_unfolded_bodies(
    u: &Unfolded,
    buf: &mut Vec<u8>,
    spans: &mut Vec<view::BlockSpan>,
    at_buf: usize,
    at_spans: usize,
) -> Result<()> {
    let mut stored_last = None;
    if let Some((start, range)) = spans[at_spans..].last() {
        view::for_each_event(*start, &buf[range.clone()], |e| {
            stored_last = Some(e.ts);
            Ok(true)
        })?;
    }
    if u.in_order && stored_last.is_none_or(|l| u.first >= l) {
        return u.segments(|start, body| {
            let at = buf.len();
            buf.extend_from_slice(body);
            spans.push((start, at..buf.len()));
            Ok(())
        });
    }
    let mut events = Vec::new();
    for (start, range) in &spans[at_spans..] {
        codec::decode_block_body(*start, &buf[range.clone()], &mut events)?;
    }
    u.decode_into(&mut events)?;
    events.sort_by_key(|e| e.ts);
    buf.truncate(at_buf);
    spans.truncate(at_spans);
    if let Some(first) = events.first() {
        let first = first.ts;
        codec::put_block_body(buf, &events);
        spans.push((first, at_buf..buf.len()));
    }
    Ok(())
}

/// Adds to `batch` the blocks of `stored` followed by `new`, both sorted by time: stored events
/// come first among equal times (the sort is stable). A block put under a removed block's key
/// replaces the removal.
fn put_merged(
    batch: &mut WriteBatch,
    cust: u32,
    stored: &[StoredEvent],
    new: &[StoredEvent],
    dict: Option<&BlockDictionary>,
) {
    let mut merged: Vec<&StoredEvent> = stored.iter().chain(new).collect();
    merged.sort_by_key(|e| e.ts);
    for chunk in time_blocks(&merged) {
        batch.put_block(cust, chunk[0].ts, codec::encode_block(chunk, dict));
    }
}

/// The blocks of a customer with nothing stored whose unfolded writes came in time order, cut
/// and stored exactly as [`put_merged`] stores the decoded events, but from the segments'
/// bytes: each event's id and properties are copied as they are (checked, not decoded), and
/// only the time deltas are written again. The fold's decoding of every event into values and
/// encoding it back took about a third of its CPU.
fn put_spliced(
    batch: &mut WriteBatch,
    cust: u32,
    u: &Unfolded,
    dict: Option<&BlockDictionary>,
) -> Result<()> {
    // Each event's time, and its bytes after the time delta.
    let mut events: Vec<(Timestamp, &[u8])> = Vec::with_capacity(u.events);
    let mut segments = Reader::new(&u.segments);
    while !segments.is_empty() {
        let start = segments.signed()?;
        let len = segments.len()?;
        let body = segments.take(len)?;
        let mut r = Reader::new(body);
        let n = r.len()?;
        let mut ts = start;
        for _ in 0..n {
            let delta =
                i64::try_from(r.varint()?).map_err(|_| corrupt!("time delta out of range"))?;
            ts = ts
                .checked_add(delta)
                .ok_or_else(|| corrupt!("time out of range"))?;
            let from = r.pos;
            r.u32()?;
            codec::skip_fields(&mut r)?;
            events.push((ts, &body[from..r.pos]));
        }
        if !r.is_empty() {
            return Err(corrupt!("trailing bytes after an event block"));
        }
    }
    // Cut as `time_blocks` cuts the decoded events.
    for chunk in blocks_by(&events, |e| e.0) {
        let bytes: usize = chunk.iter().map(|(_, b)| b.len() + 2).sum();
        let mut body = Vec::with_capacity(bytes + 8);
        codec::put_varint(&mut body, chunk.len() as u64);
        let mut prev = chunk[0].0;
        for (ts, b) in chunk {
            codec::put_varint(&mut body, (ts - prev) as u64);
            prev = *ts;
            body.extend_from_slice(b);
        }
        batch.put_block(cust, chunk[0].0, codec::pack_block_body(&body, dict));
    }
    Ok(())
}

/// Decodes every event of a log record, part after part (for the fuzz target).
pub fn decode_log_events(value: &[u8]) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for p in decode_log(value)? {
        decode_part(&p, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn events(from: i64, n: i64) -> Vec<StoredEvent> {
        (0..n)
            .map(|i| StoredEvent {
                ts: from + i * 10,
                event: i as u32,
                props: vec![(1, Value::Str(format!("v{i}").into()))],
            })
            .collect()
    }

    #[test]
    fn fold_bounds_scale_with_memory_between_the_limits() {
        assert_eq!(fold_bounds_for(None), (FOLD_EVENTS, FOLD_BYTES));
        assert_eq!(fold_bounds_for(Some(1 << 30)), (FOLD_EVENTS, FOLD_BYTES));
        assert_eq!(fold_bounds_for(Some(0)), (FOLD_EVENTS, FOLD_BYTES));
        assert_eq!(
            fold_bounds_for(Some(4 << 30)),
            (2 * FOLD_EVENTS, 2 * FOLD_BYTES)
        );
        assert_eq!(
            fold_bounds_for(Some(6 << 30)),
            (3 * FOLD_EVENTS, 3 * FOLD_BYTES)
        );
        assert_eq!(
            fold_bounds_for(Some(1 << 40)),
            (8 * FOLD_EVENTS, MAX_FOLD_BYTES)
        );
    }

    /// A fold leaves a full block wholly before the unfolded events as it is, and rewrites the
    /// one it merges into. The full blocks are stored unpacked, which no write produces for
    /// such events (LZ4 saves far more than an eighth of them): a rewrite would pack them.
    #[test]
    fn a_fold_leaves_full_blocks_before_the_new_events_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cust = 7;
        // 256 stored events (times 0, 10, ... 2550): two full blocks.
        let stored = events(0, 256);
        let mut batch = WriteBatch::new();
        store
            .write_events(&mut batch, cust, &stored, None, &[], None)
            .unwrap();
        store.commit(batch).unwrap();
        let plain = |chunk: &[StoredEvent]| {
            let mut v = vec![codec::PACKED_PLAIN];
            codec::put_block_body(&mut v, chunk);
            v
        };
        let mut batch = WriteBatch::new();
        for chunk in [&stored[..128], &stored[128..256]] {
            batch.put_block(cust, chunk[0].ts, plain(chunk));
        }
        store.commit(batch).unwrap();
        let blocks = |store: &Store| -> Vec<(Timestamp, Vec<u8>)> {
            store
                .blocks_from(cust, Timestamp::MIN)
                .unwrap()
                .into_iter()
                .map(|(_, start, v)| (start, v.to_vec()))
                .collect()
        };
        let before = blocks(&store);
        assert_eq!(before.len(), 2);
        // Ten new events after them all: a block of their own.
        let new = events(2560, 10);
        let mut batch = WriteBatch::new();
        store
            .write_events(&mut batch, cust, &new, None, &[], None)
            .unwrap();
        store.commit(batch).unwrap();
        assert_eq!(store.unfolded().events, 10);
        store.fold(None, FOLD_BATCH_BYTES).unwrap();
        let after = blocks(&store);
        assert_eq!(after.len(), 3);
        assert_eq!(after[..2], before[..2], "the full blocks were rewritten");
        assert_eq!(after[2].0, 2560);
        let mut read = Vec::new();
        for (start, v) in &after {
            codec::decode_block(*start, v.as_slice(), &store.dictionaries, &mut read).unwrap();
        }
        let mut all = stored.clone();
        all.extend(new);
        assert_eq!(read, all);
        // A full block that ends at the first unfolded event's time is merged, not kept: equal
        // times never straddle two blocks.
        let mut batch = WriteBatch::new();
        let at = store.blocks_from(cust, Timestamp::MIN).unwrap();
        for (_, start, _) in &at {
            batch.remove_block(cust, *start);
        }
        batch.put_block(cust, 0, plain(&all[..128]));
        store.commit(batch).unwrap();
        let same_time = vec![StoredEvent {
            ts: all[127].ts,
            event: 5,
            props: Vec::new(),
        }];
        let mut batch = WriteBatch::new();
        store
            .write_events(&mut batch, cust, &same_time, None, &[], None)
            .unwrap();
        store.commit(batch).unwrap();
        store.fold(None, FOLD_BATCH_BYTES).unwrap();
        let after = blocks(&store);
        assert_eq!(after.len(), 1);
        assert_ne!(after[0].1, plain(&all[..128]));
        let mut read = Vec::new();
        codec::decode_block(0, after[0].1.as_slice(), &store.dictionaries, &mut read).unwrap();
        assert_eq!(read.len(), 129);
        assert_eq!(read[128], same_time[0]);
    }

    /// A fold keeps a partial block of at least [`KEEP_EVENTS`] events wholly before the new
    /// ones and writes them after it; a smaller one is merged with them.
    #[test]
    fn a_fold_keeps_a_partial_block_of_a_quarter_and_merges_a_smaller_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let blocks = |cust: u32| -> Vec<(Timestamp, Vec<u8>)> {
            store
                .blocks_from(cust, Timestamp::MIN)
                .unwrap()
                .into_iter()
                .map(|(_, start, v)| (start, v.to_vec()))
                .collect()
        };
        let read = |cust: u32| -> Vec<StoredEvent> {
            let mut out = Vec::new();
            store.events(cust, &mut out).unwrap();
            out
        };
        // Customer 1 has KEEP_EVENTS stored events, customer 2 one fewer; each gets 5 more,
        // after them (the first of them at the last stored one's time + 1 ms for customer 1).
        for (cust, n) in [(1u32, KEEP_EVENTS as i64), (2, KEEP_EVENTS as i64 - 1)] {
            let mut batch = WriteBatch::new();
            store
                .write_events(&mut batch, cust, &events(0, n), None, &[], None)
                .unwrap();
            store.commit(batch).unwrap();
        }
        store.fold(None, FOLD_BATCH_BYTES).unwrap();
        let before = (blocks(1), blocks(2));
        assert_eq!((before.0.len(), before.1.len()), (1, 1));
        let last_1 = (KEEP_EVENTS as i64 - 1) * 10;
        for (cust, from) in [(1u32, last_1 + 1), (2, 1000)] {
            let mut batch = WriteBatch::new();
            store
                .write_events(&mut batch, cust, &events(from, 5), None, &[], None)
                .unwrap();
            store.commit(batch).unwrap();
        }
        store.fold(None, FOLD_BATCH_BYTES).unwrap();
        let after_1 = blocks(1);
        assert_eq!(after_1.len(), 2);
        assert_eq!(after_1[0], before.0[0], "the kept block was rewritten");
        assert_eq!(after_1[1].0, last_1 + 1);
        let after_2 = blocks(2);
        assert_eq!(after_2.len(), 1);
        assert_ne!(after_2[0], before.1[0]);
        let mut want_1 = events(0, KEEP_EVENTS as i64);
        want_1.extend(events(last_1 + 1, 5));
        assert_eq!(read(1), want_1);
        let mut want_2 = events(0, KEEP_EVENTS as i64 - 1);
        want_2.extend(events(1000, 5));
        assert_eq!(read(2), want_2);
        // New events at the kept block's last time merge into it: equal times never
        // straddle two blocks.
        let same = vec![StoredEvent {
            ts: last_1,
            event: 9,
            props: Vec::new(),
        }];
        let mut batch = WriteBatch::new();
        store
            .write_events(&mut batch, 1, &same, None, &[], None)
            .unwrap();
        store.commit(batch).unwrap();
        store.fold(None, FOLD_BATCH_BYTES).unwrap();
        let merged = blocks(1);
        assert_eq!(merged.len(), 1);
        let mut want = events(0, KEEP_EVENTS as i64);
        want.push(same[0].clone());
        want.extend(events(last_1 + 1, 5));
        assert_eq!(read(1), want);
    }

    #[test]
    fn log_records_round_trip_and_refuse_cut_bytes() {
        let parts = vec![
            Logged::new(3, &events(1_000, 5), vec![3, 1 << 40]),
            Logged::new(9, &[], vec![7]),
            Logged::new(12, &events(-50, 2), vec![]),
        ];
        let bytes = encode_log(&parts);
        assert_eq!(decode_log(&bytes).unwrap(), parts);
        let mut back = Vec::new();
        decode_part(&parts[0], &mut back).unwrap();
        assert_eq!(back, events(1_000, 5));
        for cut in 0..bytes.len() {
            let read = decode_log(&bytes[..cut]).and_then(|ps| {
                ps.iter()
                    .try_for_each(|p| decode_part(p, &mut Vec::new()))
                    .map(|_| ps)
            });
            assert!(read.is_err(), "cut at {cut}");
        }
    }

    /// Events of a few kinds with every kind of value, at times from `times` (sorted by the
    /// caller's choice of segments).
    fn varied(times: &[i64], salt: u32) -> Vec<StoredEvent> {
        times
            .iter()
            .enumerate()
            .map(|(i, &ts)| {
                let k = i as u32 + salt;
                let mut props = vec![
                    (0, Value::Str(format!("p-{:04}", k % 97).into())),
                    (1, Value::Int(i64::from(k % 13) - 6)),
                    (2, Value::Float(f64::from(k % 1000) / 100.0 + 0.05)),
                    (3, Value::Float(f64::from(k) * std::f64::consts::PI)),
                    (4, Value::Bool(k.is_multiple_of(2))),
                    (5, Value::Time(ts - 1000)),
                    (
                        6,
                        Value::List(vec![Value::Str("é-ß".into()), Value::Int(7)]),
                    ),
                ];
                props.truncate((k % 8) as usize);
                StoredEvent {
                    ts,
                    event: k % 5,
                    props,
                }
            })
            .collect()
    }

    /// A dictionary trained on events like [`varied`]'s, as a folder trains one.
    fn varied_dictionary() -> &'static BlockDictionary {
        static DICT: std::sync::OnceLock<BlockDictionary> = std::sync::OnceLock::new();
        DICT.get_or_init(|| {
            let mut bodies = Vec::new();
            for c in 0..2000u32 {
                let times: Vec<i64> = (0..40).map(|i| 1_700_000_000_000 + i * 7919).collect();
                let mut body = Vec::new();
                codec::put_block_body(&mut body, &varied(&times, c * 31));
                bodies.push(body);
            }
            let samples: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
            BlockDictionary::new(dictionary::FIRST_ID, dictionary::train(&samples).unwrap())
                .unwrap()
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// The fold's blocks made from the segments' bytes are the blocks made from their
        /// decoded events, byte for byte: writes in time order of up to 300 events, with runs of
        /// equal times (across writes and where blocks are cut), with and without a dictionary.
        #[test]
        fn spliced_blocks_are_the_merged_blocks(
            writes in proptest::collection::vec(
                proptest::collection::vec(0i64..4, 0..90), 1..6),
            start in -5_000_000i64..5_000_000_000_000,
            salt in 0u32..1000,
            with_dict in proptest::bool::ANY,
        ) {
            let dict = with_dict.then(varied_dictionary);
            let mut u = Unfolded::default();
            let mut ts = start;
            for (w, steps) in writes.iter().enumerate() {
                let times: Vec<i64> = steps.iter().map(|s| { ts += s * s * 1000; ts }).collect();
                let hashes = vec![w as u64 + 1];
                u.add(&Logged::new(9, &varied(&times, salt + w as u32 * 100), hashes));
            }
            proptest::prop_assume!(u.events > 0);
            proptest::prop_assert!(u.in_order);
            let mut spliced = WriteBatch::new();
            put_spliced(&mut spliced, 9, &u, dict).unwrap();
            let mut new = Vec::new();
            u.decode_into(&mut new).unwrap();
            let mut merged = WriteBatch::new();
            put_merged(&mut merged, 9, &[], &new, dict);
            proptest::prop_assert_eq!(format!("{spliced:?}"), format!("{merged:?}"));
        }
    }

    /// Damaged segment bytes are refused as decoding refuses them, not copied into a block.
    #[test]
    fn spliced_blocks_refuse_damaged_segments() {
        let mut u = Unfolded::default();
        u.add(&Logged::new(1, &varied(&[10, 20, 30], 3), vec![]));
        let mut good = WriteBatch::new();
        assert!(put_spliced(&mut good, 1, &u, None).is_ok());
        // The last byte of the body is part of the last event's last value: cut it, and the
        // segment's length no longer matches; flip a value tag, and it is unknown.
        let mut cut = u.clone();
        cut.segments.pop();
        assert!(put_spliced(&mut WriteBatch::new(), 1, &cut, None).is_err());
        let mut bad_tag = Unfolded::default();
        let e = StoredEvent {
            ts: 5,
            event: 1,
            props: vec![(0, Value::Int(3))],
        };
        bad_tag.add(&Logged::new(1, &[e], vec![]));
        // The segment: start (zigzag), body length, then count 1, delta 0, event 1, 1 field,
        // field id 0, the value's tag (1, an integer), its zigzag.
        let tag_at = bad_tag.segments.len() - 2;
        assert_eq!(bad_tag.segments[tag_at], codec::TAG_INT);
        bad_tag.segments[tag_at] = 99;
        let mut decoded = Vec::new();
        assert!(bad_tag.decode_into(&mut decoded).is_err());
        assert!(put_spliced(&mut WriteBatch::new(), 1, &bad_tag, None).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The memtable's duplicate check with its hash filter answers as a scan of the
        /// customers' unfolded hashes does, through writes that grow the filter many times,
        /// customers dropped (a fold, a delete) and the memtable emptied.
        #[test]
        fn the_hash_filter_answers_as_the_scan(
            steps in proptest::collection::vec(
                (0u32..300, proptest::collection::vec(0u64..5000, 0..40), 0u8..10), 1..400),
            probes in proptest::collection::vec((0u32..300, 0u64..5000), 200),
        ) {
            let mut m = Memtable::default();
            let mut model: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
            for (cust, hashes, op) in &steps {
                if *op == 0 {
                    m.remove(*cust);
                    model.remove(cust);
                    continue;
                }
                let hashes: Vec<u64> = hashes.iter().map(|h| h.wrapping_mul(0x1234_5678_9abc_def1) >> 16).collect();
                m.add(&Logged::new(*cust, &[], hashes.clone()));
                model.entry(*cust).or_default().extend(hashes);
                // The pairs just added are found, and the probes (mostly absent) answer as the
                // scan; at the end, every pair held.
                for h in &model[cust] {
                    proptest::prop_assert!(m.has_message(*cust, *h));
                }
                for (c, h) in &probes {
                    let h = h.wrapping_mul(0x1234_5678_9abc_def1) >> 16;
                    let expect = model.get(c).is_some_and(|hs| hs.contains(&h));
                    proptest::prop_assert_eq!(m.has_message(*c, h), expect);
                }
            }
            for (c, hs) in &model {
                for h in hs {
                    proptest::prop_assert!(m.has_message(*c, *h));
                }
            }
            let all: Vec<u32> = model.keys().copied().collect();
            for c in all {
                m.remove(c);
            }
            proptest::prop_assert!(m.filter.words.is_empty(), "an empty memtable clears it");
        }
    }

    /// Absent pairs mostly read as absent: the filter saves the scan for nearly every message.
    #[test]
    fn the_hash_filter_rules_out_most_absent_pairs() {
        let mut m = Memtable::default();
        for c in 0..20_000u32 {
            let hashes: Vec<u64> = (0..50u64)
                .map(|i| xxhash_rust::xxh3::xxh3_64(&(u64::from(c) * 1000 + i).to_le_bytes()) >> 16)
                .collect();
            m.add(&Logged::new(c, &[], hashes));
        }
        let mut maybe = 0;
        for i in 0..100_000u64 {
            let h = xxhash_rust::xxh3::xxh3_64(&(i + (1 << 40)).to_le_bytes()) >> 16;
            maybe += usize::from(m.filter.may_hold((i % 20_000) as u32, h));
        }
        assert!(
            maybe < 10_000,
            "{maybe} of 100,000 absent pairs read as maybe"
        );
    }

    #[test]
    fn unfolded_events_merge_stably_after_the_stored_ones() {
        let mut u = Unfolded::default();
        let mk = |ts: i64, event: u32| StoredEvent {
            ts,
            event,
            props: vec![],
        };
        u.add(&Logged::new(1, &[mk(20, 1), mk(30, 2)], vec![]));
        u.add(&Logged::new(1, &[mk(10, 3), mk(20, 4)], vec![]));
        let mut got = vec![mk(5, 0), mk(20, 0)];
        merge_unfolded(&u, &mut got).unwrap();
        let order: Vec<(i64, u32)> = got.iter().map(|e| (e.ts, e.event)).collect();
        assert_eq!(order, [(5, 0), (10, 3), (20, 0), (20, 1), (20, 4), (30, 2)]);
    }
}
