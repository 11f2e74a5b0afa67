//! A customer's timeline: sealed event blocks (`e` records) and, after them, tails (`t`
//! records, format 4): each holds the events one write appended after everything the customer
//! had stored, and that write's message-id hashes. Appending a tail rewrites nothing already
//! stored; once a customer's tails pass [`TAIL_RECORDS`] records or [`TAIL_EVENTS`] events, the
//! write that would add one folds them instead, with the customer's last block and its own
//! events, into sealed blocks (and their hashes into the message-id record), in the same atomic
//! batch. Events earlier than the customer's last stored one are merged into the blocks as
//! before, folding the tails too.
//!
//! Every event of a tail is at or after every event of the blocks and of the tails before it,
//! so a timeline reads in time order as its blocks in key order, then its tails in key order:
//! exactly the order the blocks alone would hold had every write merged into them (stored events
//! first among equal times). This module owns writing and reading timelines; docs/STORAGE.md
//! says why this layout was chosen.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicBool, Ordering};

use super::codec::{self, Reader, StoredEvent};
use super::{keys, view, BlockDictionary, Dictionaries, Store, WriteBatch};
use crate::error::{corrupt, Result};
use crate::model::Timestamp;

/// Events per sealed block: a customer's timeline is cut into blocks of at most this many (more
/// only when equal timestamps straddle the cut).
pub const BLOCK_EVENTS: usize = 128;

/// The most tail records a customer has: the write that would add one more folds them.
pub const TAIL_RECORDS: usize = 8;

/// The most events a customer's tails hold together: the write that would pass it folds them.
pub const TAIL_EVENTS: usize = BLOCK_EVENTS;

/// Testing only: write format 3 (no tails; a new folder is marked 3, an older one is not
/// upgraded), as the build before format 4 did. See [`write_format_3`].
static FORMAT_3: AtomicBool = AtomicBool::new(false);

/// Testing only: from now on, this process writes folders as a format-3 build did (no tails,
/// and a new folder is marked 3), to test that such folders are read and upgraded.
#[doc(hidden)]
pub fn write_format_3(on: bool) {
    FORMAT_3.store(on, Ordering::SeqCst);
}

pub(super) fn writes_format_3() -> bool {
    FORMAT_3.load(Ordering::SeqCst)
}

/// Cuts a time-sorted timeline into blocks of about [`BLOCK_EVENTS`] events, cutting only between
/// different timestamps: so block start times are unique keys and blocks never overlap in time,
/// and the only block that can hold events at or after time `t` are the last one starting at or
/// before `t` and those after it.
pub fn time_blocks<E: Borrow<StoredEvent>>(events: &[E]) -> impl Iterator<Item = &[E]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(BLOCK_EVENTS);
        while end < rest.len() && rest[end].borrow().ts == rest[end - 1].borrow().ts {
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// A tail record as read: its header decoded, its events still packed.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Its number among the customer's tails (they sort by it).
    pub seq: u32,
    /// The time of its first event, and of its last.
    pub start: Timestamp,
    pub last: Timestamp,
    /// How many events it holds.
    pub events: usize,
    /// The hashes of the message ids its write stored, sorted ([`codec::message_hash`]).
    pub hashes: Vec<u64>,
    /// Its events, stored as a block is ([`codec::encode_block`]).
    pub block: super::Bytes,
}

/// Encodes a tail: the hashes (a varint count, then 6 bytes LE each), the first event's time
/// (zigzag varint), the last one's after it (varint), the number of events (varint), then the
/// events as a block.
pub fn encode_tail(
    hashes: &[u64],
    events: &[StoredEvent],
    dict: Option<&BlockDictionary>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + hashes.len() * 6 + events.len() * 24);
    codec::put_varint(&mut out, hashes.len() as u64);
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes()[..6]);
    }
    let start = events.first().map_or(0, |e| e.ts);
    let last = events.last().map_or(start, |e| e.ts);
    codec::put_signed(&mut out, start);
    codec::put_varint(&mut out, (last - start) as u64);
    codec::put_varint(&mut out, events.len() as u64);
    out.extend_from_slice(&codec::encode_block(events, dict));
    out
}

/// Decodes a tail record's header; its events stay packed (a slice of `value`).
pub fn decode_tail(seq: u32, value: &super::Bytes) -> Result<Tail> {
    let mut r = Reader::new(value);
    let n = r.len()?;
    let bytes = r.take(n.checked_mul(6).ok_or_else(|| corrupt!("bad event tail"))?)?;
    let mut a = [0u8; 8];
    let hashes = bytes
        .chunks_exact(6)
        .map(|c| {
            a[..6].copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect();
    let start = r.signed()?;
    let span = i64::try_from(r.varint()?).map_err(|_| corrupt!("bad event tail"))?;
    let last = start
        .checked_add(span)
        .ok_or_else(|| corrupt!("bad event tail"))?;
    let events = r.len()?;
    let at = r.pos;
    Ok(Tail {
        seq,
        start,
        last,
        events,
        hashes,
        block: value.subslice(at, value.len() - at),
    })
}

/// Appends a stored tail's events, uncompressed (a block body), to `out`.
pub fn tail_body(value: &[u8], dicts: &Dictionaries, out: &mut Vec<u8>) -> Result<()> {
    let tail = decode_tail(0, &super::Bytes::from(value))?;
    codec::block_body(&tail.block, dicts, out)
}

/// Decodes a tail's events, appending them to `out`.
pub fn decode_tail_events(
    tail: &Tail,
    dicts: &Dictionaries,
    out: &mut Vec<StoredEvent>,
) -> Result<()> {
    let before = out.len();
    codec::decode_block(tail.start, &tail.block, dicts, out)?;
    let got = &out[before..];
    if got.len() != tail.events
        || got.first().is_some_and(|e| e.ts != tail.start)
        || got.last().is_some_and(|e| e.ts != tail.last)
    {
        return Err(corrupt!("an event tail's header disagrees with its events"));
    }
    Ok(())
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

impl Store {
    /// The customer's tails, in the order they were appended.
    pub fn tails(&self, cust: u32) -> Result<Vec<Tail>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(keys::tails_of(cust)) {
            let (k, v) = item?;
            let (_, seq) = keys::parse_tail(&k)?;
            out.push(decode_tail(seq, &v)?);
        }
        Ok(out)
    }

    /// The customer's last block, as (first timestamp, bytes).
    fn last_block(&self, cust: u32) -> Result<Option<(Timestamp, super::Bytes)>> {
        match self.tree.scan_prefix(keys::events_of(cust)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((keys::parse_block(&k)?.1, v)))
            }
            None => Ok(None),
        }
    }

    /// Appends the customer's tails' events to `out`, in time order.
    pub(super) fn tail_events(&self, cust: u32, out: &mut Vec<StoredEvent>) -> Result<()> {
        for t in self.tails(cust)? {
            decode_tail_events(&t, &self.dictionaries, out)?;
        }
        Ok(())
    }

    /// Appends the bodies of the customer's tails holding events at or after `from` to `buf`,
    /// and each one's (first timestamp, byte range in `buf`) to `spans`.
    pub(super) fn tail_bodies_from(
        &self,
        cust: u32,
        from: Timestamp,
        buf: &mut Vec<u8>,
        spans: &mut Vec<view::BlockSpan>,
    ) -> Result<()> {
        for t in self.tails(cust)? {
            if t.last < from {
                continue;
            }
            let at = buf.len();
            codec::block_body(&t.block, &self.dictionaries, buf)?;
            spans.push((t.start, at..buf.len()));
        }
        Ok(())
    }

    /// The hashes of the message ids in the customer's tails (each tail's sorted).
    pub(super) fn tail_hashes(&self, cust: u32) -> Result<Vec<u64>> {
        Ok(self
            .tails(cust)?
            .into_iter()
            .flat_map(|t| t.hashes)
            .collect())
    }

    /// Adds to `batch` the removal of every event of the customer: blocks and tails.
    pub fn remove_events(&self, batch: &mut WriteBatch, cust: u32) -> Result<()> {
        for (_, start, _) in self.blocks_from(cust, 0)? {
            batch.remove_block(cust, start);
        }
        for t in self.tails(cust)? {
            batch.remove_tail(cust, t.seq);
        }
        Ok(())
    }

    /// Adds to `batch` what storing one write's new events of a customer takes: `events` (sorted
    /// by time, stably: equal times in the order they came), the hashes of the message ids the
    /// write stores for the customer (`new_hashes`, sorted), and `seen_before`, the customer's
    /// stored hashes as [`Store::seen_messages`] gave them, when the writer read them. Events
    /// blocks are compressed with `dict` when there is one.
    ///
    /// Events at or after the customer's last stored one become a tail, unless the customer's
    /// tails are full: then they, the last block and the new events are folded into sealed
    /// blocks. Earlier events are merged into the blocks they fall in, folding the tails too. A
    /// customer with nothing stored gets blocks at once.
    pub fn write_events(
        &self,
        batch: &mut WriteBatch,
        cust: u32,
        events: &[StoredEvent],
        seen_before: Option<Vec<u64>>,
        new_hashes: &[u64],
        dict: Option<&BlockDictionary>,
    ) -> Result<()> {
        if events.is_empty() || writes_format_3() {
            if !events.is_empty() {
                self.merge_into_blocks(batch, cust, events, dict)?;
            }
            if !new_hashes.is_empty() {
                let seen = union(seen_before.unwrap_or_default(), new_hashes);
                batch.put_seen(cust, codec::encode_seen(&seen));
            }
            return Ok(());
        }
        let tails = self.tails(cust)?;
        // Where the timeline ends: its last tail's last event, or its last block's.
        let mut last_block: Option<(Timestamp, Vec<StoredEvent>)> = None;
        let end = match tails.last() {
            Some(t) => Some(t.last),
            None => {
                if let Some((start, bytes)) = self.last_block(cust)? {
                    let mut stored = Vec::new();
                    codec::decode_block(start, &bytes, &self.dictionaries, &mut stored)?;
                    last_block = Some((start, stored));
                }
                last_block
                    .as_ref()
                    .and_then(|(_, stored)| stored.last())
                    .map(|e| e.ts)
            }
        };
        let in_order = end.is_some_and(|end| events[0].ts >= end);
        let tail_events: usize = tails.iter().map(|t| t.events).sum();
        if in_order && tails.len() < TAIL_RECORDS && tail_events + events.len() <= TAIL_EVENTS {
            let seq = match tails.last() {
                Some(t) => t
                    .seq
                    .checked_add(1)
                    .ok_or_else(|| corrupt!("event tail numbers ran out"))?,
                None => 0,
            };
            batch.put_tail(cust, seq, encode_tail(new_hashes, events, dict));
            return Ok(());
        }
        // Fold: the stored events the new ones can fall among (the last block, or every block
        // from the one holding the first new event), then every tail, then the new events.
        let mut stored: Vec<StoredEvent> = Vec::new();
        if in_order && tails.is_empty() {
            if let Some((start, events)) = last_block {
                batch.remove_block(cust, start);
                stored = events;
            }
        } else {
            let from = if in_order {
                Timestamp::MAX
            } else {
                events[0].ts
            };
            for (_, start, bytes) in self.blocks_from(cust, from)? {
                codec::decode_block(start, &bytes, &self.dictionaries, &mut stored)?;
                batch.remove_block(cust, start);
            }
        }
        for t in &tails {
            decode_tail_events(t, &self.dictionaries, &mut stored)?;
            batch.remove_tail(cust, t.seq);
        }
        put_merged(batch, cust, &stored, events, dict);
        if !new_hashes.is_empty() || tails.iter().any(|t| !t.hashes.is_empty()) {
            // The tails' hashes move into the message-id record (`seen_before` holds them).
            let before = match seen_before {
                Some(before) => before,
                None => self.seen_messages(cust)?,
            };
            batch.put_seen(cust, codec::encode_seen(&union(before, new_hashes)));
        }
        Ok(())
    }

    /// Merges new events (sorted by time) into the customer's blocks, as format 3 always did.
    fn merge_into_blocks(
        &self,
        batch: &mut WriteBatch,
        cust: u32,
        events: &[StoredEvent],
        dict: Option<&BlockDictionary>,
    ) -> Result<()> {
        let mut stored: Vec<StoredEvent> = Vec::new();
        for (_, start, bytes) in self.blocks_from(cust, events[0].ts)? {
            codec::decode_block(start, &bytes, &self.dictionaries, &mut stored)?;
            batch.remove_block(cust, start);
        }
        put_merged(batch, cust, &stored, events, dict);
        Ok(())
    }

    /// Adds to `batch` the folding of the customer's tails into sealed blocks (with their last
    /// block), and of the tails' hashes into the message-id record. Whether it had tails.
    pub fn fold_tails(
        &self,
        batch: &mut WriteBatch,
        cust: u32,
        dict: Option<&BlockDictionary>,
    ) -> Result<bool> {
        let tails = self.tails(cust)?;
        if tails.is_empty() {
            return Ok(false);
        }
        let mut stored: Vec<StoredEvent> = Vec::new();
        if let Some((start, bytes)) = self.last_block(cust)? {
            codec::decode_block(start, &bytes, &self.dictionaries, &mut stored)?;
            batch.remove_block(cust, start);
        }
        for t in &tails {
            decode_tail_events(t, &self.dictionaries, &mut stored)?;
            batch.remove_tail(cust, t.seq);
        }
        put_merged(batch, cust, &stored, &[], dict);
        if tails.iter().any(|t| !t.hashes.is_empty()) {
            batch.put_seen(cust, codec::encode_seen(&self.seen_messages(cust)?));
        }
        Ok(true)
    }

    /// Folds every customer's tails into sealed blocks, a few hundred customers per atomic batch
    /// (each leaves every timeline as it read), and waits until that is durable. The number of
    /// customers whose tails were folded.
    pub fn fold_all_tails(&self, dict: Option<&BlockDictionary>) -> Result<u64> {
        const CUSTOMERS_AT_ONCE: usize = 512;
        let mut folded = 0;
        loop {
            let mut customers: Vec<u32> = Vec::with_capacity(CUSTOMERS_AT_ONCE);
            for item in self.scan(keys::TAIL) {
                let (k, _) = item?;
                let (cust, _) = keys::parse_tail(&k)?;
                if customers.last() != Some(&cust) {
                    if customers.len() == CUSTOMERS_AT_ONCE {
                        break;
                    }
                    customers.push(cust);
                }
            }
            if customers.is_empty() {
                break;
            }
            let mut batch = WriteBatch::new();
            for &cust in &customers {
                self.fold_tails(&mut batch, cust, dict)?;
            }
            self.apply(batch)?;
            folded += customers.len() as u64;
        }
        self.flush()?;
        Ok(folded)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    #[test]
    fn tails_round_trip_with_their_header() {
        let events: Vec<StoredEvent> = (0..5)
            .map(|i| StoredEvent {
                ts: 1_000 + i * 10,
                event: i as u32,
                props: vec![(1, Value::Str(format!("v{i}")))],
            })
            .collect();
        let bytes = encode_tail(&[3, 1 << 40], &events, None);
        let tail = decode_tail(7, &super::super::Bytes::from(bytes.clone())).unwrap();
        assert_eq!(
            (tail.seq, tail.start, tail.last, tail.events),
            (7, 1_000, 1_040, 5)
        );
        assert_eq!(tail.hashes, [3, 1 << 40]);
        let mut back = Vec::new();
        decode_tail_events(&tail, &Dictionaries::default(), &mut back).unwrap();
        assert_eq!(back, events);
        for cut in 0..bytes.len() {
            let short = super::super::Bytes::from(&bytes[..cut]);
            let read = decode_tail(0, &short)
                .and_then(|t| decode_tail_events(&t, &Dictionaries::default(), &mut Vec::new()));
            assert!(read.is_err(), "cut at {cut}");
        }
    }
}
