//! Text columns: for one (event, property) and one UTC day, every event of the kind that day whose
//! property is a string, as (customer, timestamp, string), with the day's distinct strings kept
//! once. `where PROP contains "TEXT"` on a property with too many distinct values for value
//! bitmaps (free text, ids) reads the column of each day of its window: the test costs one
//! substring search per distinct string of the day and a pass over the day's entries, not a read
//! of every candidate customer's stored events.
//!
//! Columns are derived data, like [`crate::index::runs`]: built by readers from stored events. In
//! memory a column remembers the [`ListVersion`] of the event's count list of its day when
//! it was built (every event of the kind that day is counted there, so any added or removed
//! event of that day changes the version), and is used only while that list has that version;
//! otherwise it is built again. Nothing that changes the lists has to know about columns. At most
//! one column is kept per (property, day), so they take at most about the size of the strings of
//! the days that were queried. Readers also store the columns of days they build in the folder
//! with the fingerprint of the events they were read from ([`DayTexts::encode`],
//! `crate::index::derived`): a fresh process loads a day's column instead of building it when the
//! day's count list has that fingerprint. A stored day column is laid out to be read in place
//! (fixed-width arrays, stored uncompressed): the loaded column's text and entries are the
//! record's bytes, checked once and never copied, so a fresh process's first `contains` over a
//! month of free text pays for sled's reads and a pass of checks, not for decoding every entry.
//!
//! Unindexed traits (an email: one value a customer) get one column each the same way
//! ([`ProfileTexts`]), tagged with a count of profile changes instead of a list version, so
//! that `email contains "@example.org"` scans the distinct emails once instead of reading every
//! profile. Readers store them too ([`TextColumn::encode_trait`]), named by the folder's write
//! generation they were read at: a fresh process loads one while no write has been committed
//! since. A loaded trait column's text is the stored record's own bytes (stored uncompressed,
//! shared, not copied), its strings' lengths and its entries are decoded on two threads, and its
//! entries hold only what differs from entry to entry (a trait's customers, not a time of 0 and
//! a string index equal to the entry's): a fresh process's first `contains` pays little more
//! than the search.
//!
//! Each column counts its bytes (a sample of a long one) when it is built or loaded, and a
//! search keys `memmem`'s prefilter on the needle's bytes that are rarest in that column (in
//! emails, `@` and a shared domain's letters are everywhere). A column whose strings are each
//! held once, by consecutive entries (a trait's distinct emails), yields its customers straight
//! from the search.
//!
//! This module owns the columns. It never reads storage: the query engine reads the events and
//! profiles and hands the values over.

use std::sync::Arc;

use parking_lot::RwLock;
use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::derived::{Loaded, LAYOUT};
use super::rollup::ListVersion;
use crate::error::{corrupt, Result};
use crate::model::time::{day_start, Timestamp, DAY_MS};
use crate::model::FastMap;
use crate::storage::codec::{le_u32, put_varint, Reader};

/// Strings with their customer and time, the distinct strings kept once.
#[derive(Debug, Default)]
pub struct TextColumn {
    /// The distinct strings back to back; string `i` is `text[starts[i]..starts[i + 1]]`. A
    /// stored column's are the stored record's bytes, shared, not copied.
    text: Loaded,
    starts: Vec<usize>,
    /// One entry per value: customer, time, string index; by customer, then time.
    entries: Entries,
    /// Whether entry `k` is the one entry of string `k`, for every `k` (each string held once,
    /// numbered in the entries' order, as a trait's distinct emails are): then a search's
    /// matching strings are its matching entries, in the entries' order.
    one_each: bool,
    /// How often each byte occurs in `text`, as a rank from 0 (never) to 255 (the most
    /// frequent): a search looks for the needle's rarest bytes in this column, not in text at
    /// large (in a column of emails, `@` and the letters of a shared domain are everywhere).
    ranks: ByteRanks,
}

/// A column's entries (customer, time, string index): held in arrays of their own (a column
/// built from events or profiles, a trait's column loaded), or read in place from a stored day
/// column's bytes ([`DayTexts::decode`]: checked once, never copied).
#[derive(Debug)]
enum Entries {
    Held(Held),
    Stored(StoredEntries),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Held(Held::default())
    }
}

/// Entries in arrays of their own: the times left out where every one is 0 (a trait's column),
/// the string indexes where entry `k` holds string `k` for every `k` (distinct emails). A
/// trait's column of 100k customers then holds 400 KB of entries, not 1.6 MB a fresh process
/// would have to fill.
#[derive(Debug, Default, PartialEq)]
struct Held {
    customers: Vec<u32>,
    /// Each entry's time; empty when every time is 0.
    times: Vec<Timestamp>,
    /// Each entry's string; empty when entry `k` holds string `k`.
    strings: Vec<u32>,
}

impl Held {
    /// The entries of (customer, time, string) triples.
    fn of(triples: &[(u32, Timestamp, u32)]) -> Held {
        let customers = triples.iter().map(|e| e.0).collect();
        let times = if triples.iter().all(|e| e.1 == 0) {
            Vec::new()
        } else {
            triples.iter().map(|e| e.1).collect()
        };
        let strings = if triples.iter().enumerate().all(|(k, e)| e.2 as usize == k) {
            Vec::new()
        } else {
            triples.iter().map(|e| e.2).collect()
        };
        Held {
            customers,
            times,
            strings,
        }
    }

    /// Calls `f` with each entry's customer, time and string, in order.
    #[inline]
    fn each(&self, mut f: impl FnMut(u32, Timestamp, u32)) {
        let customers = self.customers.iter().copied();
        match (self.times.is_empty(), self.strings.is_empty()) {
            (false, false) => {
                for ((c, &t), &s) in customers.zip(&self.times).zip(&self.strings) {
                    f(c, t, s);
                }
            }
            (false, true) => {
                for ((c, &t), s) in customers.zip(&self.times).zip(0u32..) {
                    f(c, t, s);
                }
            }
            (true, false) => {
                for (c, &s) in customers.zip(&self.strings) {
                    f(c, 0, s);
                }
            }
            (true, true) => {
                for (c, s) in customers.zip(0u32..) {
                    f(c, 0, s);
                }
            }
        }
    }
}

/// A stored day column's entries, read in place: `n` customers, then `n` times (milliseconds
/// after `base`, the day's start), then `n` string indexes, each a `u32` LE, in the stored
/// record's bytes (checked by [`DayTexts::decode`]).
#[derive(Debug)]
struct StoredEntries {
    words: Loaded,
    n: usize,
    base: Timestamp,
}

/// The `u32` LE numbers `bytes` holds back to back, each as its 4 bytes (read with
/// `u32::from_le_bytes`; arrays, so that iterating several side by side compiles to one loop).
#[inline]
fn words(bytes: &[u8]) -> &[[u8; 4]] {
    bytes.as_chunks::<4>().0
}

impl StoredEntries {
    /// The customers', the times' and the strings' arrays.
    fn arrays(&self) -> (&[u8], &[u8], &[u8]) {
        let (customers, rest) = self.words.split_at(4 * self.n);
        let (times, strings) = rest.split_at(4 * self.n);
        (customers, times, strings)
    }
}

impl Entries {
    fn len(&self) -> usize {
        match self {
            Entries::Held(h) => h.customers.len(),
            Entries::Stored(s) => s.n,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `k`'s customer and time.
    fn customer_time(&self, k: usize) -> (u32, Timestamp) {
        match self {
            Entries::Held(h) => (h.customers[k], h.times.get(k).copied().unwrap_or(0)),
            Entries::Stored(s) => {
                let (customers, times, _) = s.arrays();
                (
                    le_u32(&customers[4 * k..]),
                    s.base + i64::from(le_u32(&times[4 * k..])),
                )
            }
        }
    }

    /// Calls `f` with each entry's customer, time and string, in order.
    #[inline]
    fn each(&self, mut f: impl FnMut(u32, Timestamp, u32)) {
        match self {
            Entries::Held(h) => h.each(f),
            Entries::Stored(s) => {
                let (customers, times, strings) = s.arrays();
                for ((&c, &t), &id) in words(customers)
                    .iter()
                    .zip(words(times))
                    .zip(words(strings))
                {
                    f(
                        u32::from_le_bytes(c),
                        s.base + i64::from(u32::from_le_bytes(t)),
                        u32::from_le_bytes(id),
                    );
                }
            }
        }
    }

    /// The entries as triples (for tests).
    #[cfg(test)]
    fn triples(&self) -> Vec<(u32, Timestamp, u32)> {
        let mut out = Vec::new();
        self.each(|c, t, s| out.push((c, t, s)));
        out
    }
}

/// Each byte's frequency in one text, ranked 0 to 255 for [`memchr::memmem`]'s prefilter.
#[derive(Debug, Clone, Copy)]
struct ByteRanks([u8; 256]);

/// Texts up to this many bytes have every byte counted for their ranks.
const RANKS_COUNTED_WHOLE: usize = 1 << 18;
/// Pieces a longer text's ranks are counted from, and the bytes of each.
const RANKS_SAMPLES: usize = 64;
const RANKS_SAMPLE: usize = 4096;

impl Default for ByteRanks {
    fn default() -> Self {
        ByteRanks([0; 256])
    }
}

impl ByteRanks {
    /// The ranks of `text`'s bytes: counted whole up to [`RANKS_COUNTED_WHOLE`] bytes, else in
    /// [`RANKS_SAMPLES`] evenly spaced pieces of [`RANKS_SAMPLE`] bytes (a large column's cold
    /// first search pays for the sample, not for a pass over the whole text; a rank only steers
    /// the prefilter, never what is found).
    fn of(text: &[u8]) -> ByteRanks {
        // Four tables, each byte of four counted in its own: a run of one byte (the `.` and `@`
        // of emails are frequent) no longer waits on its own count's last addition.
        let mut tables = [[0u32; 256]; 4];
        let mut count = |piece: &[u8]| {
            let mut quads = piece.chunks_exact(4);
            for q in &mut quads {
                tables[0][q[0] as usize] += 1;
                tables[1][q[1] as usize] += 1;
                tables[2][q[2] as usize] += 1;
                tables[3][q[3] as usize] += 1;
            }
            for &b in quads.remainder() {
                tables[0][b as usize] += 1;
            }
        };
        if text.len() <= RANKS_COUNTED_WHOLE {
            count(text);
        } else {
            let step = text.len() / RANKS_SAMPLES;
            for at in (0..RANKS_SAMPLES).map(|i| i * step) {
                count(&text[at..text.len().min(at + RANKS_SAMPLE)]);
            }
        }
        // At most 256 KiB are counted: no table's count reaches `u32::MAX`.
        let counts: [u64; 256] =
            std::array::from_fn(|b| tables.iter().map(|t| u64::from(t[b])).sum());
        let most = counts.iter().copied().max().unwrap_or(0).max(1);
        let mut ranks = [0u8; 256];
        for (rank, &count) in ranks.iter_mut().zip(&counts) {
            // A byte that occurs at all ranks above one that never does.
            *rank = if count == 0 {
                0
            } else {
                (1 + count * 254 / most) as u8
            };
        }
        ByteRanks(ranks)
    }

    /// A finder of `needle` that keys its prefilter on the needle's rarest bytes here.
    fn finder<'n>(&self, needle: &'n [u8]) -> memchr::memmem::Finder<'n> {
        memchr::memmem::FinderBuilder::new().build_forward_with_ranker(*self, needle)
    }
}

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for ByteRanks {
    fn rank(&self, byte: u8) -> u8 {
        self.0[byte as usize]
    }
}

impl TextColumn {
    /// The column of (customer, time, string) values given in any order.
    pub fn new(mut values: Vec<(u32, Timestamp, &str)>) -> TextColumn {
        values.sort_unstable_by_key(|v| (v.0, v.1));
        let mut ids: FastMap<&str, u32> = FastMap::default();
        let mut text = String::new();
        let mut starts = vec![0];
        let entries = values
            .iter()
            .map(|&(cust, ts, s)| {
                let id = *ids.entry(s).or_insert_with(|| {
                    text.push_str(s);
                    starts.push(text.len());
                    (starts.len() - 2) as u32
                });
                (cust, ts, id)
            })
            .collect();
        TextColumn::from_parts(Loaded::new(text.into_bytes()), starts, entries)
    }

    /// The column of checked parts: `starts` bound `text`'s strings, entries are ordered and
    /// name strings that exist.
    fn from_parts(text: Loaded, starts: Vec<usize>, entries: Vec<(u32, Timestamp, u32)>) -> Self {
        let entries = Held::of(&entries);
        let one_each = entries.strings.is_empty() && entries.customers.len() + 1 == starts.len();
        let ranks = ByteRanks::of(&text);
        TextColumn {
            text,
            starts,
            entries: Entries::Held(entries),
            one_each,
            ranks,
        }
    }

    /// Per distinct string, whether it contains `needle`; `None` when none does.
    fn hits(&self, needle: &str) -> Option<Vec<bool>> {
        substring_hits(&self.text, &self.starts, needle, self.ranks)
    }

    /// Adds to `out` the customers with a value in `from..=to` that contains `needle`.
    pub fn containing(
        &self,
        needle: &str,
        from: Timestamp,
        to: Timestamp,
        out: &mut RoaringBitmap,
    ) {
        if self.one_each && !needle.is_empty() {
            return self.containing_one_each(needle, from, to, out);
        }
        let Some(hits) = self.hits(needle) else {
            return;
        };
        // Entries are by customer: the customers found are ascending.
        let mut found: Vec<u32> = Vec::new();
        self.entries.each(|cust, ts, id| {
            if found.last() != Some(&cust) && hits[id as usize] && from <= ts && ts <= to {
                found.push(cust);
            }
        });
        super::add_ascending(out, &found);
    }

    /// [`TextColumn::containing`] where each string is held by one entry, its own (`one_each`;
    /// `needle` not empty): the search's matching strings name the matching entries, in order,
    /// so neither a mark per string nor a pass over every entry is needed.
    fn containing_one_each(
        &self,
        needle: &str,
        from: Timestamp,
        to: Timestamp,
        out: &mut RoaringBitmap,
    ) {
        let finder = self.ranks.finder(needle.as_bytes());
        let text = &self.text[..];
        let strings = self.entries.len();
        let part = |first: usize| -> Vec<u32> {
            let last = strings.min(first + SEARCH_PART);
            let mut found: Vec<u32> = Vec::new();
            each_hit(&finder, text, &self.starts, first, last, |id| {
                let (cust, ts) = self.entries.customer_time(id);
                if found.last() != Some(&cust) && from <= ts && ts <= to {
                    found.push(cust);
                }
            });
            found
        };
        let parts: Vec<Vec<u32>> = if strings >= 2 * SEARCH_PART {
            (0..strings)
                .step_by(SEARCH_PART)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(part)
                .collect()
        } else {
            vec![part(0)]
        };
        // Parts are in order; a customer whose entries straddle two parts is found in both.
        let mut found: Vec<u32> = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for cust in parts.into_iter().flatten() {
            if found.last() != Some(&cust) {
                found.push(cust);
            }
        }
        super::add_ascending(out, &found);
    }

    /// Adds to `counts` each customer's number of values in `from..=to` that contain `needle`.
    pub fn count_containing(
        &self,
        needle: &str,
        from: Timestamp,
        to: Timestamp,
        counts: &mut FastMap<u32, u64>,
    ) {
        let Some(hits) = self.hits(needle) else {
            return;
        };
        self.entries.each(|cust, ts, id| {
            if hits[id as usize] && from <= ts && ts <= to {
                *counts.entry(cust).or_default() += 1;
            }
        });
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Per string of `text` (string `i` is `text[starts[i]..starts[i + 1]]`, `starts` ascending
/// from 0 to `text.len()`), whether it contains `needle`; `None` when none does.
///
/// One search runs along the whole text instead of one per string (a search's setup costs
/// about as much as a short string's scan): a match inside one string marks it and the search
/// goes on at the next string; a match that crosses into the next string is not one, and the
/// search goes on one byte after its start, so a match overlapping it is still found. A long
/// column (a trait's: one string a customer) is searched in parts of [`SEARCH_PART`] strings in
/// parallel.
fn substring_hits(
    text: &[u8],
    starts: &[usize],
    needle: &str,
    ranks: ByteRanks,
) -> Option<Vec<bool>> {
    let strings = starts.len().saturating_sub(1);
    if needle.is_empty() {
        // Every string, the empty one included, contains the empty string.
        return (strings > 0).then(|| vec![true; strings]);
    }
    let finder = ranks.finder(needle.as_bytes());
    let mut hits = vec![false; strings];
    let any = if strings >= 2 * SEARCH_PART {
        hits.par_chunks_mut(SEARCH_PART)
            .enumerate()
            .map(|(i, part)| mark_hits(&finder, text, starts, i * SEARCH_PART, part))
            .reduce(|| false, |a, b| a || b)
    } else {
        mark_hits(&finder, text, starts, 0, &mut hits)
    };
    any.then_some(hits)
}

/// Strings a part of a long column holds, searched on one thread.
const SEARCH_PART: usize = 16_384;

/// Marks in `hits` which of the strings `first..first + hits.len()` contain the finder's
/// needle (never empty); whether any does.
fn mark_hits(
    finder: &memchr::memmem::Finder<'_>,
    text: &[u8],
    starts: &[usize],
    first: usize,
    hits: &mut [bool],
) -> bool {
    let mut any = false;
    each_hit(finder, text, starts, first, first + hits.len(), |id| {
        hits[id - first] = true;
        any = true;
    });
    any
}

/// Calls `hit` with each of the strings `first..last` that contains the finder's needle (never
/// empty), in ascending order, once each.
fn each_hit(
    finder: &memchr::memmem::Finder<'_>,
    text: &[u8],
    starts: &[usize],
    first: usize,
    last: usize,
    mut hit: impl FnMut(usize),
) {
    let needle = finder.needle().len();
    let limit = starts[last];
    let (mut pos, mut id) = (starts[first], first);
    while pos < limit {
        let Some(offset) = finder.find(&text[pos..limit]) else {
            break;
        };
        let at = pos + offset;
        // The string holding byte `at`: the last one starting at or before it (an empty
        // string starts where the next does and is passed over).
        while starts[id + 1] <= at {
            id += 1;
        }
        let end = starts[id + 1];
        if at + needle <= end {
            hit(id);
            pos = end;
        } else {
            pos = at + 1;
        }
    }
}

/// Unindexed traits' columns as derived records.
impl TextColumn {
    /// The column of unindexed trait `trait_id` (one entry per customer, time 0) as a record body,
    /// read from the stored profiles as they were at write generation `generation`: the layout,
    /// the generation (`u64` LE), the trait; the distinct strings (a count, each one's length,
    /// then all their bytes back to back); the entries (a count, then per entry the customer as a
    /// delta from the previous one and the string's index), varints.
    pub fn encode_trait(&self, trait_id: u32, generation: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + self.entries.len() * 5 + 32);
        put_varint(&mut out, LAYOUT);
        out.extend_from_slice(&generation.to_le_bytes());
        put_varint(&mut out, u64::from(trait_id));
        put_varint(&mut out, (self.starts.len() - 1) as u64);
        for w in self.starts.windows(2) {
            put_varint(&mut out, (w[1] - w[0]) as u64);
        }
        put_varint(&mut out, self.text.len() as u64);
        out.extend_from_slice(&self.text);
        put_varint(&mut out, self.entries.len() as u64);
        let mut prev = 0;
        self.entries.each(|cust, _, id| {
            put_varint(&mut out, u64::from(cust - prev));
            prev = cust;
            put_varint(&mut out, u64::from(id));
        });
        out
    }

    /// The write generation a body written by [`TextColumn::encode_trait`] was read at, without
    /// decoding the rest (`None`: another layout).
    pub fn declared_generation(body: &[u8]) -> Option<u64> {
        let mut r = Reader::new(body);
        if r.varint().ok()? != LAYOUT {
            return None;
        }
        Some(u64::from_le_bytes(r.take(8).ok()?.try_into().ok()?))
    }

    /// Decodes a body written by [`TextColumn::encode_trait`] for `trait_id`, checking its
    /// bounds, that the text is UTF-8 cut at character boundaries, and that its customers
    /// ascend with one entry each.
    ///
    /// The column's text is the body's own bytes, shared, not copied (a fresh process's first
    /// `contains` pays for this decode: at 100k customers, 2.2 MB of emails). The strings'
    /// lengths and the entries are decoded side by side, on two threads: the entries start
    /// past the text, found by counting the lengths' last bytes without decoding them.
    pub fn decode_trait(body: &Loaded, trait_id: u32) -> Result<TextColumn> {
        let bad = || corrupt!("bad stored trait column");
        Self::declared_generation(body).ok_or_else(bad)?;
        let mut r = Reader::new(body);
        r.varint()?;
        r.take(8)?;
        if r.varint()? != u64::from(trait_id) {
            return Err(bad());
        }
        let strings = r.len()?;
        let lengths_at = r.pos;
        r.pos = varints_end(body, lengths_at, strings).ok_or_else(bad)?;
        let lengths = &body[lengths_at..r.pos];
        let bytes = r.len()?;
        let text_at = r.pos;
        let text = r.take(bytes)?;
        let entries_at = r.pos;
        let strings_part = || -> Result<(Vec<usize>, ByteRanks)> {
            let mut r = Reader::new(lengths);
            let mut starts = Vec::with_capacity(strings + 1);
            starts.push(0usize);
            let mut end = 0usize;
            for _ in 0..strings {
                end = usize::try_from(r.varint()?)
                    .ok()
                    .and_then(|len| end.checked_add(len))
                    .filter(|&end| end <= text.len())
                    .ok_or_else(bad)?;
                // In UTF-8 (checked below), a character starts at any byte but a continuation
                // byte (`0b10xx_xxxx`).
                if text.get(end).is_some_and(|&b| (b as i8) < -0x40) {
                    return Err(bad());
                }
                starts.push(end);
            }
            if end != text.len() {
                return Err(bad());
            }
            std::str::from_utf8(text).map_err(|_| bad())?;
            Ok((starts, ByteRanks::of(text)))
        };
        let entries_part = || -> Result<(Entries, bool)> {
            let mut r = Reader::new(&body[entries_at..]);
            let n = r.len()?;
            let mut customers = Vec::with_capacity(n);
            // The strings' indexes, kept only from the first entry not holding its own.
            let mut own = true;
            let mut ids: Vec<u32> = Vec::new();
            let mut cust = 0u32;
            for k in 0..n {
                let delta = r.u32()?;
                cust = match k {
                    0 => delta,
                    _ if delta == 0 => return Err(bad()),
                    _ => cust.checked_add(delta).ok_or_else(bad)?,
                };
                let id = r.u32()?;
                if id as usize >= strings {
                    return Err(bad());
                }
                if own && id as usize != k {
                    own = false;
                    ids.reserve_exact(n);
                    ids.extend(0..k as u32);
                }
                if !own {
                    ids.push(id);
                }
                customers.push(cust);
            }
            if !r.is_empty() {
                return Err(bad());
            }
            let entries = Entries::Held(Held {
                customers,
                times: Vec::new(),
                strings: ids,
            });
            Ok((entries, own && n == strings))
        };
        // The entries, the longer part, on this thread; the strings for another to take.
        let (entries_part, strings_part) = rayon::join(entries_part, strings_part);
        let ((starts, ranks), (entries, one_each)) = (strings_part?, entries_part?);
        Ok(TextColumn {
            text: body.slice(text_at..text_at + bytes),
            starts,
            entries,
            one_each,
            ranks,
        })
    }
}

/// The position just past the `n` varints that start at `at` in `bytes`, found by their last
/// bytes (those under 0x80) without decoding them; `None` if the bytes end first.
fn varints_end(bytes: &[u8], at: usize, n: usize) -> Option<usize> {
    let mut left = n;
    let mut pos = at;
    for chunk in bytes.get(at..)?.chunks(256) {
        if left == 0 {
            break;
        }
        let ends = chunk.iter().filter(|&&b| b < 0x80).count();
        if ends < left {
            left -= ends;
            pos += chunk.len();
            continue;
        }
        for &b in chunk {
            pos += 1;
            if b < 0x80 {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
    }
    (left == 0).then_some(pos)
}

/// The layout of a stored day column's body ([`DayTexts::encode`]): 2 since the columns are read
/// in place. A body of layout 1 (varints, stored compressed, by earlier builds) is stale: built
/// and stored again, never read.
const DAY_LAYOUT: u64 = 2;

/// One day's string values of one (event, property), and the version of the event's count list
/// of that day they were read at.
#[derive(Debug)]
pub struct DayTexts {
    source: ListVersion,
    /// The fingerprint of every event of the kind the column was read from, with or without a
    /// string (as [`crate::index::DayList::fingerprint`] of a count list).
    fp: u64,
    pub column: TextColumn,
}

impl DayTexts {
    /// The column of a day from its events' (customer, time, string) in any order, built while the
    /// day's count list had the version `source`, from events of the kind with the fingerprint
    /// `fp` (all of them, those without a string included).
    pub fn new(source: ListVersion, fp: u64, events: Vec<(u32, Timestamp, &str)>) -> DayTexts {
        DayTexts {
            source,
            fp,
            column: TextColumn::new(events),
        }
    }

    /// The fingerprint of the events the column was read from.
    pub fn fingerprint(&self) -> u64 {
        self.fp
    }

    /// The column of `day` as a record body, laid out to be read in place ([`DayTexts::decode`]):
    /// the layout ([`DAY_LAYOUT`]), the fingerprint (`u64` LE), the day, the counts of distinct
    /// strings, of entries and of the strings' bytes (varints); the column's 256 byte ranks; each
    /// string's end in the text; the entries' customers, their times (milliseconds after the
    /// day's start) and their strings' indexes, an array each; then the strings back to back.
    /// Every number of the arrays is a `u32` LE.
    pub fn encode(&self, day: u32) -> Vec<u8> {
        let c = &self.column;
        let strings = c.starts.len() - 1;
        let n = c.entries.len();
        let mut out = Vec::with_capacity(48 + 256 + 4 * strings + 12 * n + c.text.len());
        put_varint(&mut out, DAY_LAYOUT);
        out.extend_from_slice(&self.fp.to_le_bytes());
        put_varint(&mut out, u64::from(day));
        put_varint(&mut out, strings as u64);
        put_varint(&mut out, n as u64);
        put_varint(&mut out, c.text.len() as u64);
        out.extend_from_slice(&c.ranks.0);
        // A text past `u32::MAX` bytes (never a day's) gives a record its decode refuses.
        for &end in &c.starts[1..] {
            out.extend_from_slice(&(end as u32).to_le_bytes());
        }
        let start = day_start(day);
        let mut times = Vec::with_capacity(4 * n);
        let mut ids = Vec::with_capacity(4 * n);
        c.entries.each(|cust, ts, id| {
            out.extend_from_slice(&cust.to_le_bytes());
            // The column's events are the day's: `0..DAY_MS`.
            times.extend_from_slice(&((ts - start) as u32).to_le_bytes());
            ids.extend_from_slice(&id.to_le_bytes());
        });
        out.extend_from_slice(&times);
        out.extend_from_slice(&ids);
        out.extend_from_slice(&c.text);
        out
    }

    /// The fingerprint a record body written by [`DayTexts::encode`] declares (`None`: another
    /// layout, an earlier build's included).
    pub fn declared_fingerprint(body: &[u8]) -> Option<u64> {
        let mut r = Reader::new(body);
        if r.varint().ok()? != DAY_LAYOUT {
            return None;
        }
        Some(u64::from_le_bytes(r.take(8).ok()?.try_into().ok()?))
    }

    /// Decodes a record body of `day`'s column; `source` is the version of the count list it is
    /// used for.
    ///
    /// Nothing is copied: the column's text and entries are the body's own bytes, read in place
    /// by every search (a fresh process's first `contains` over 30 days of free text pays for a
    /// pass of checks, not for building 48k entries and 28k strings). The checks: the parts'
    /// sizes add up to the body's, the text is UTF-8 cut at character boundaries by ascending
    /// ends, the entries ascend by customer then time, their times are within the day and their
    /// strings exist. The ranks are taken as stored (they only steer the search's prefilter,
    /// never what it finds).
    pub fn decode(body: &Loaded, day: u32, source: ListVersion) -> Result<DayTexts> {
        let bad = || corrupt!("bad stored text column");
        let fp = Self::declared_fingerprint(body).ok_or_else(bad)?;
        let mut r = Reader::new(body);
        r.varint()?;
        r.take(8)?;
        if r.varint()? != u64::from(day) {
            return Err(bad());
        }
        let strings = r.len()?;
        let n = r.len()?;
        let bytes = r.len()?;
        let ranks: [u8; 256] = r.take(256)?.try_into().map_err(|_| bad())?;
        let ends_at = r.pos;
        let words_at = strings
            .checked_mul(4)
            .and_then(|e| ends_at.checked_add(e))
            .ok_or_else(bad)?;
        let text_at = n
            .checked_mul(12)
            .and_then(|w| words_at.checked_add(w))
            .ok_or_else(bad)?;
        if text_at.checked_add(bytes) != Some(body.len()) {
            return Err(bad());
        }
        let text = std::str::from_utf8(&body[text_at..]).map_err(|_| bad())?;
        let mut starts = Vec::with_capacity(strings + 1);
        starts.push(0usize);
        let mut ok = true;
        for w in body[ends_at..words_at].chunks_exact(4) {
            let end = le_u32(w) as usize;
            // Past the text is no boundary.
            ok &= starts[starts.len() - 1] <= end && text.is_char_boundary(end);
            starts.push(end);
        }
        if !ok || starts[strings] != bytes {
            return Err(bad());
        }
        let entries = StoredEntries {
            words: body.slice(words_at..text_at),
            n,
            base: day_start(day),
        };
        let (customers, times, ids) = entries.arrays();
        let mut last = 0u64;
        for ((&cust, &t), &id) in words(customers).iter().zip(words(times)).zip(words(ids)) {
            let (t, id) = (u32::from_le_bytes(t), u32::from_le_bytes(id));
            let at = u64::from(u32::from_le_bytes(cust)) << 32 | u64::from(t);
            ok &= last <= at && i64::from(t) < DAY_MS && (id as usize) < strings;
            last = at;
        }
        if !ok {
            return Err(bad());
        }
        Ok(DayTexts {
            source,
            fp,
            column: TextColumn {
                text: body.slice(text_at..body.len()),
                starts,
                entries: Entries::Stored(entries),
                one_each: false,
                ranks: ByteRanks(ranks),
            },
        })
    }

    /// The version of the count list this column was built from.
    pub fn source(&self) -> ListVersion {
        self.source
    }
}

/// The columns built so far for one event, by (property, day).
#[derive(Debug, Default)]
pub struct Texts {
    built: RwLock<FastMap<(u32, u32), Arc<DayTexts>>>,
}

/// A copy starts with no columns: they are a cache of the stored events.
impl Clone for Texts {
    fn clone(&self) -> Self {
        Texts::default()
    }
}

impl Texts {
    /// The column of `prop` on `day`, if one was built from the list version `current`.
    pub fn get(&self, prop: u32, day: u32, current: ListVersion) -> Option<Arc<DayTexts>> {
        self.built
            .read()
            .get(&(prop, day))
            .filter(|c| c.source == current)
            .cloned()
    }

    /// Keeps a column, replacing any older one of the same (property, day).
    pub fn put(&self, prop: u32, day: u32, column: Arc<DayTexts>) {
        self.built.write().insert((prop, day), column);
    }

    /// Forgets every column (they are rebuilt on next use).
    pub fn clear(&self) {
        self.built.write().clear();
    }
}

/// The string values of unindexed traits, per trait, each built at a count of profile changes
/// ([`ProfileTexts::edits`]) and used only while the count is the same: any profile change makes
/// every trait's column stale (coarse, but nothing that changes profiles has to know more).
#[derive(Debug, Default)]
pub struct ProfileTexts {
    edits: u64,
    built: RwLock<FastMap<u32, (u64, Arc<TextColumn>)>>,
}

/// A copy starts with no columns, at the same count.
impl Clone for ProfileTexts {
    fn clone(&self) -> Self {
        ProfileTexts {
            edits: self.edits,
            built: RwLock::default(),
        }
    }
}

impl ProfileTexts {
    /// Counts a change of profiles: every column built so far is stale.
    pub fn changed(&mut self) {
        self.edits += 1;
        self.built.get_mut().clear();
    }

    /// The count of profile changes, which a column built now is tagged with.
    pub fn edits(&self) -> u64 {
        self.edits
    }

    /// The column of the trait, if one was built at the current count.
    pub fn get(&self, trait_id: u32) -> Option<Arc<TextColumn>> {
        self.built
            .read()
            .get(&trait_id)
            .filter(|(at, _)| *at == self.edits)
            .map(|(_, c)| c.clone())
    }

    /// Keeps a column built at the count `at` (ignored if profiles changed since).
    pub fn put(&self, trait_id: u32, at: u64, column: Arc<TextColumn>) {
        if at == self.edits {
            self.built.write().insert(trait_id, (at, column));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> ListVersion {
        ListVersion::fresh()
    }

    #[test]
    fn containing_finds_each_customer_once_within_the_times() {
        let events = vec![
            (7, 100, "red wool scarf"),
            (3, 50, "blue scarf"),
            (3, 60, "red shoes"),
            (9, 10, "red"),
            (9, 200, "green"),
            (12, 300, "scarf"),
        ];
        let col = TextColumn::new(events);
        assert_eq!(col.len(), 6);
        let found = |needle: &str, from, to| {
            let mut out = RoaringBitmap::new();
            col.containing(needle, from, to, &mut out);
            out.iter().collect::<Vec<u32>>()
        };
        assert_eq!(found("red", 0, 1000), vec![3, 7, 9]);
        assert_eq!(found("red", 11, 1000), vec![3, 7]);
        assert_eq!(found("red", 60, 99), vec![3]);
        assert_eq!(found("red", 61, 99), Vec::<u32>::new());
        assert_eq!(found("scarf", 0, 1000), vec![3, 7, 12]);
        assert_eq!(found("", 200, 200), vec![9]);
        assert_eq!(found("purple", 0, 1000), Vec::<u32>::new());
        let counted = |needle: &str, from, to| {
            let mut counts = FastMap::default();
            col.count_containing(needle, from, to, &mut counts);
            let mut v: Vec<(u32, u64)> = counts.into_iter().collect();
            v.sort_unstable();
            v
        };
        assert_eq!(counted("red", 0, 1000), vec![(3, 1), (7, 1), (9, 1)]);
        assert_eq!(counted("scarf", 0, 1000), vec![(3, 1), (7, 1), (12, 1)]);
        assert_eq!(counted("", 0, 1000), vec![(3, 2), (7, 1), (9, 2), (12, 1)]);
        assert_eq!(counted("e", 55, 250), vec![(3, 1), (7, 1), (9, 1)]);
    }

    /// The plain answer: each string searched on its own.
    fn hits_one_by_one(strings: &[String], needle: &str) -> Option<Vec<bool>> {
        let hits: Vec<bool> = strings.iter().map(|s| s.contains(needle)).collect();
        hits.contains(&true).then_some(hits)
    }

    fn joined(strings: &[String]) -> (String, Vec<usize>) {
        let mut text = String::new();
        let mut starts = vec![0];
        for s in strings {
            text.push_str(s);
            starts.push(text.len());
        }
        (text, starts)
    }

    #[test]
    fn one_search_along_the_strings_finds_what_each_string_holds() {
        let cases: &[(&[&str], &str)] = &[
            // A match across a boundary is none, and hides no overlapping one.
            (&["a", "aa"], "aa"),
            (&["ab", "ab"], "ba"),
            (&["xa", "ab", "b"], "ab"),
            (&["aaa", "a", "", "aa"], "aa"),
            (&["", "", "x"], "x"),
            (&["", "y", ""], "y"),
            (&["abc"], "abcd"),
            (&["ab", "cd"], "abcd"),
            (&["ab", "cd"], ""),
            (&["", ""], ""),
            (&["ä@ö", "öä"], "ä"),
            (
                &[
                    "emma.k@example.org",
                    "leo@example.com",
                    "@example.or",
                    "g@example.org",
                ],
                "@example.org",
            ),
        ];
        for (strings, needle) in cases {
            let strings: Vec<String> = strings.iter().map(|s| s.to_string()).collect();
            let (text, starts) = joined(&strings);
            assert_eq!(
                substring_hits(
                    text.as_bytes(),
                    &starts,
                    needle,
                    ByteRanks::of(text.as_bytes())
                ),
                hits_one_by_one(&strings, needle),
                "{strings:?} {needle:?}"
            );
        }
        // A column long enough to be searched in parallel parts, with matches at parts' edges
        // and one crossing from a part's last string into the next part's first.
        let mut long: Vec<String> = (0..3 * SEARCH_PART + 5).map(|i| format!("s{i}")).collect();
        long[SEARCH_PART - 1] = "xxa".into();
        long[SEARCH_PART] = "bzz".into();
        long[2 * SEARCH_PART] = "ab".into();
        long[3 * SEARCH_PART + 4] = "zab".into();
        let (text, starts) = joined(&long);
        for needle in ["ab", "s1", "s16383", "zz", "nothing", "a"] {
            assert_eq!(
                substring_hits(
                    text.as_bytes(),
                    &starts,
                    needle,
                    ByteRanks::of(text.as_bytes())
                ),
                hits_one_by_one(&long, needle),
                "{needle}"
            );
        }
        assert_eq!(substring_hits(b"", &[0], "a", ByteRanks::of(b"")), None);
        assert_eq!(substring_hits(b"", &[0], "", ByteRanks::of(b"")), None);
    }

    proptest::proptest! {
        #[test]
        fn one_search_along_the_strings_agrees_with_one_search_per_string(
            strings in proptest::collection::vec("[ab@.é]{0,6}", 0..40),
            needle in "[ab@.é]{0,4}",
        ) {
            let (text, starts) = joined(&strings);
            proptest::prop_assert_eq!(
                substring_hits(text.as_bytes(), &starts, &needle, ByteRanks::of(text.as_bytes())),
                hits_one_by_one(&strings, &needle)
            );
        }
    }

    /// The plain answer of `containing`: the customers with a value in `from..=to` holding
    /// `needle`.
    fn containing_plainly(
        values: &[(u32, Timestamp, String)],
        needle: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<u32> {
        let mut found: Vec<u32> = values
            .iter()
            .filter(|(_, ts, s)| from <= *ts && *ts <= to && s.contains(needle))
            .map(|v| v.0)
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    fn containing_of(
        column: &TextColumn,
        needle: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<u32> {
        let mut out = RoaringBitmap::new();
        column.containing(needle, from, to, &mut out);
        out.iter().collect()
    }

    #[test]
    fn a_long_text_is_ranked_from_samples_of_it() {
        // One rare byte a line, in a text past the size counted whole.
        let text: String = (0..40_000)
            .map(|i| format!("aaaaaaa{}\n", i % 10))
            .collect();
        assert!(text.len() > RANKS_COUNTED_WHOLE);
        let ranks = ByteRanks::of(text.as_bytes());
        assert_eq!(ranks.0[b'a' as usize], 255);
        assert!(ranks.0[b'7' as usize] > 0 && ranks.0[b'7' as usize] < ranks.0[b'a' as usize]);
        assert_eq!(ranks.0[b'z' as usize], 0);
        let short = ByteRanks::of(b"aab");
        assert!(short.0[b'b' as usize] < short.0[b'a' as usize]);
    }

    #[test]
    fn a_long_column_of_distinct_strings_is_searched_by_its_entries() {
        // One string a customer, each its own (a trait's emails): searched in parallel parts,
        // with a customer's two strings either side of a part's edge and matches at the edges.
        let mut values: Vec<(u32, Timestamp, String)> = (0..3 * SEARCH_PART as u32 + 7)
            .map(|i| {
                (
                    i * 2,
                    0,
                    format!("c{i}@example.{}", ["org", "fi", "com"][i as usize % 3]),
                )
            })
            .collect();
        let edge = SEARCH_PART - 1;
        values[edge + 1].0 = values[edge].0;
        values[edge].2 = "edge@zz.org".into();
        values[edge + 1].2 = "edge2@zz.org".into();
        values[2 * SEARCH_PART].2 = "zz.org".into();
        let column = TextColumn::new(
            values
                .iter()
                .map(|(c, t, s)| (*c, *t, s.as_str()))
                .collect(),
        );
        assert!(column.one_each);
        for needle in [
            "@example.org",
            "zz.org",
            "c1",
            "g",
            "edge",
            "nothing",
            "org@",
        ] {
            assert_eq!(
                containing_of(&column, needle, 0, 0),
                containing_plainly(&values, needle, 0, 0),
                "{needle}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn containing_agrees_with_a_plain_search_of_each_value(
            raw in proptest::collection::vec((0u32..12, 0i64..6, "[ab@.é]{0,5}"), 0..40),
            distinct in proptest::bool::ANY,
            needle in "[ab@.é]{0,3}",
            from in 0i64..6,
            len in 0i64..6,
        ) {
            let mut values: Vec<(u32, Timestamp, String)> = raw;
            if distinct {
                // Each string once, as a trait's column mostly is.
                let mut seen = std::collections::HashSet::new();
                values.retain(|v| seen.insert(v.2.clone()));
            }
            let column =
                TextColumn::new(values.iter().map(|(c, t, s)| (*c, *t, s.as_str())).collect());
            if distinct {
                proptest::prop_assert!(column.one_each || values.is_empty());
            }
            let to = from + len;
            proptest::prop_assert_eq!(
                containing_of(&column, &needle, from, to),
                containing_plainly(&values, &needle, from, to)
            );
        }
    }

    #[test]
    fn a_column_is_used_only_at_its_version() {
        let texts = Texts::default();
        let (a, b) = (version(), version());
        texts.put(1, 20, Arc::new(DayTexts::new(a, 0, vec![(1, 5, "x")])));
        assert!(texts.get(1, 20, a).is_some());
        assert!(texts.get(1, 20, b).is_none());
        assert!(texts.get(2, 20, a).is_none());
        assert!(texts.get(1, 21, a).is_none());
        texts.put(1, 20, Arc::new(DayTexts::new(b, 0, vec![])));
        assert!(texts.get(1, 20, a).is_none());
        assert!(texts.get(1, 20, b).is_some());
    }

    #[test]
    fn a_stored_trait_column_round_trips_and_damage_is_refused() {
        let values = vec![
            (9, 0, "b@example.fi"),
            (2, 0, "a@example.org"),
            (u32::MAX - 1, 0, "a@example.org"),
            (5, 0, "ä@exämple.org"),
            (7, 0, ""),
        ];
        let col = TextColumn::new(values);
        let body = col.encode_trait(4, 77);
        assert_eq!(TextColumn::declared_generation(&body), Some(77));
        let decode = |body: &[u8], t| TextColumn::decode_trait(&Loaded::new(body.to_vec()), t);
        let stored = Loaded::new(body.clone());
        let back = TextColumn::decode_trait(&stored, 4).unwrap();
        assert_eq!(back.text[..], col.text[..]);
        // The text is the body's own bytes, not a copy.
        let within = stored.as_ptr_range();
        assert!(within.contains(&back.text.as_ptr()));
        assert_eq!(back.starts, col.starts);
        assert_eq!(back.entries.triples(), col.entries.triples());
        let found = |c: &TextColumn, needle: &str| {
            let mut out = RoaringBitmap::new();
            c.containing(needle, 0, 0, &mut out);
            out.iter().collect::<Vec<u32>>()
        };
        assert_eq!(found(&back, "example.org"), vec![2, u32::MAX - 1]);
        assert_eq!(found(&back, "xäm"), vec![5]);
        let empty = TextColumn::new(vec![]).encode_trait(1, 0);
        assert!(decode(&empty, 1).unwrap().is_empty());
        // Another trait, another layout, a cut, a byte more, a customer twice, a string cut
        // inside a character, an index past the strings: refused.
        assert!(decode(&body, 5).is_err());
        let mut other = body.clone();
        other[0] = 9;
        assert!(decode(&other, 4).is_err());
        assert_eq!(TextColumn::declared_generation(&other), None);
        assert!(decode(&body[..body.len() - 1], 4).is_err());
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer, 4).is_err());
        let twice =
            TextColumn::from_parts(Loaded::new("ab"), vec![0, 2], vec![(3, 0, 0), (3, 0, 0)]);
        assert!(decode(&twice.encode_trait(1, 0), 1).is_err());
        let split = TextColumn::from_parts(Loaded::new("äb"), vec![0, 1, 3], vec![(3, 0, 0)]);
        assert!(decode(&split.encode_trait(1, 0), 1).is_err());
        let past = TextColumn::from_parts(Loaded::new("ab"), vec![0, 2], vec![(3, 0, 1)]);
        assert!(decode(&past.encode_trait(1, 0), 1).is_err());
    }

    /// Decodes a body of [`TextColumn::encode_trait`] one field after the other on one thread,
    /// with the same checks: what [`TextColumn::decode_trait`] must agree with.
    fn decode_trait_plainly(body: &[u8], trait_id: u32) -> Option<TextColumn> {
        TextColumn::declared_generation(body)?;
        let mut r = Reader::new(body);
        r.varint().ok()?;
        r.take(8).ok()?;
        if r.varint().ok()? != u64::from(trait_id) {
            return None;
        }
        let strings = r.len().ok()?;
        let mut starts = vec![0usize];
        for _ in 0..strings {
            starts.push(starts[starts.len() - 1].checked_add(r.len().ok()?)?);
        }
        let bytes = r.len().ok()?;
        let text = std::str::from_utf8(r.take(bytes).ok()?).ok()?;
        if starts[strings] != text.len() || !starts.iter().all(|&s| text.is_char_boundary(s)) {
            return None;
        }
        let mut entries = Vec::new();
        let mut prev: Option<u32> = None;
        for _ in 0..r.len().ok()? {
            let delta = r.u32().ok()?;
            let cust = match prev {
                None => delta,
                Some(_) if delta == 0 => return None,
                Some(p) => p.checked_add(delta)?,
            };
            let id = r.u32().ok()?;
            if id as usize >= strings {
                return None;
            }
            entries.push((cust, 0, id));
            prev = Some(cust);
        }
        r.is_empty()
            .then(|| TextColumn::from_parts(Loaded::new(text.to_owned()), starts, entries))
    }

    fn same_column(a: &TextColumn, b: &TextColumn) -> bool {
        a.text[..] == b.text[..]
            && a.starts == b.starts
            && a.entries.triples() == b.entries.triples()
            && a.one_each == b.one_each
            && a.ranks.0 == b.ranks.0
    }

    #[test]
    fn a_long_stored_trait_column_decodes_as_one_read_field_by_field() {
        // Past the sizes counted whole and searched in one part; lengths of one and two bytes.
        let values: Vec<(u32, Timestamp, String)> = (0..3 * SEARCH_PART as u32)
            .map(|i| {
                let name = if i % 1000 == 0 {
                    format!("{}{i}", "x".repeat(200))
                } else {
                    format!("c{i}")
                };
                (
                    i * 3,
                    0,
                    format!("{name}@example.{}", ["org", "fi"][i as usize % 2]),
                )
            })
            .collect();
        let col = TextColumn::new(
            values
                .iter()
                .map(|(c, t, s)| (*c, *t, s.as_str()))
                .collect(),
        );
        let body = col.encode_trait(2, 5);
        let back = TextColumn::decode_trait(&Loaded::new(body.clone()), 2).unwrap();
        assert!(back.one_each);
        assert!(same_column(&back, &decode_trait_plainly(&body, 2).unwrap()));
        assert!(same_column(&back, &col));
        assert_eq!(
            containing_of(&back, "@example.org", 0, 0),
            containing_plainly(&values, "@example.org", 0, 0)
        );
    }

    proptest::proptest! {
        #[test]
        fn a_damaged_stored_trait_column_is_refused_as_a_plain_read_refuses_it(
            raw in proptest::collection::vec((0u32..50, "[ab@.é]{0,5}"), 0..30),
            at in 0usize..1000,
            byte in proptest::num::u8::ANY,
            cut in proptest::bool::ANY,
        ) {
            let mut seen = std::collections::HashSet::new();
            let column = TextColumn::new(
                raw.iter().filter(|v| seen.insert(v.0)).map(|(c, s)| (*c, 0, s.as_str())).collect(),
            );
            let mut body = column.encode_trait(3, 9);
            let at = at % body.len();
            if cut {
                body.truncate(at);
            } else {
                body[at] = byte;
            }
            let fast = TextColumn::decode_trait(&Loaded::new(body.clone()), 3).ok();
            let plain = decode_trait_plainly(&body, 3);
            proptest::prop_assert_eq!(fast.is_some(), plain.is_some());
            if let (Some(fast), Some(plain)) = (fast, plain) {
                proptest::prop_assert!(same_column(&fast, &plain));
            }
        }
    }

    /// A day's column of `values` (customer, milliseconds into `day`, string).
    fn day_column(day: u32, values: &[(u32, i64, String)]) -> DayTexts {
        let start = day_start(day);
        DayTexts::new(
            version(),
            0x5eed,
            values
                .iter()
                .map(|(c, off, s)| (*c, start + off, s.as_str()))
                .collect(),
        )
    }

    /// A column's text, strings' starts, entries and ranks.
    type DayParts = (String, Vec<usize>, Vec<(u32, Timestamp, u32)>, Vec<u8>);

    /// Decodes a body of [`DayTexts::encode`] one field after the other, with the same checks:
    /// what [`DayTexts::decode`] must agree with. The text, the strings' starts, the entries and
    /// the ranks.
    fn decode_day_plainly(body: &[u8], day: u32) -> Option<DayParts> {
        let mut r = Reader::new(body);
        if r.varint().ok()? != 2 {
            return None;
        }
        r.take(8).ok()?;
        if r.varint().ok()? != u64::from(day) {
            return None;
        }
        let (strings, n, bytes) = (r.len().ok()?, r.len().ok()?, r.len().ok()?);
        let ranks = r.take(256).ok()?.to_vec();
        let mut u32s = |count: usize| -> Option<Vec<u32>> {
            (0..count)
                .map(|_| Some(u32::from_le_bytes(r.take(4).ok()?.try_into().ok()?)))
                .collect()
        };
        let ends = u32s(strings)?;
        let (customers, times, ids) = (u32s(n)?, u32s(n)?, u32s(n)?);
        let text = std::str::from_utf8(r.take(bytes).ok()?).ok()?;
        if !r.is_empty() {
            return None;
        }
        let mut starts = vec![0usize];
        for end in ends {
            let end = end as usize;
            if end < starts[starts.len() - 1] || end > text.len() || !text.is_char_boundary(end) {
                return None;
            }
            starts.push(end);
        }
        if starts[strings] != text.len() {
            return None;
        }
        let mut entries: Vec<(u32, Timestamp, u32)> = Vec::new();
        for k in 0..n {
            let ts = day_start(day) + i64::from(times[k]);
            if i64::from(times[k]) >= DAY_MS || ids[k] as usize >= strings {
                return None;
            }
            if entries
                .last()
                .is_some_and(|&(c, t, _)| (c, t) > (customers[k], ts))
            {
                return None;
            }
            entries.push((customers[k], ts, ids[k]));
        }
        Some((text.to_owned(), starts, entries, ranks))
    }

    fn day_parts(column: &TextColumn) -> DayParts {
        (
            String::from_utf8(column.text.to_vec()).unwrap(),
            column.starts.clone(),
            column.entries.triples(),
            column.ranks.0.to_vec(),
        )
    }

    #[test]
    fn a_stored_day_column_is_read_in_place_and_answers_as_the_one_built() {
        let day = 20_000;
        let values: Vec<(u32, i64, String)> = [
            (9, 5, "red boots"),
            (2, DAY_MS - 1, "waterproof jacket"),
            (2, 0, "red boots"),
            (u32::MAX, 7, "ä boots"),
            (5, 3_600_000, ""),
            (5, 3_600_000, "red"),
            (7, 12, "jacket red"),
        ]
        .iter()
        .map(|&(c, t, s)| (c, t, s.to_string()))
        .collect();
        let built = day_column(day, &values);
        let body = Loaded::new(built.encode(day));
        assert_eq!(DayTexts::declared_fingerprint(&body), Some(0x5eed));
        let back = DayTexts::decode(&body, day, version()).unwrap();
        assert_eq!(back.fingerprint(), 0x5eed);
        assert!(matches!(back.column.entries, Entries::Stored(_)));
        // The text and the entries are the body's own bytes, not copies.
        let within = body.as_ptr_range();
        assert!(within.contains(&back.column.text.as_ptr()));
        assert_eq!(day_parts(&back.column), day_parts(&built.column));
        assert_eq!(
            Some(day_parts(&back.column)),
            decode_day_plainly(&body, day)
        );
        let start = day_start(day);
        let plain: Vec<(u32, Timestamp, String)> = values
            .iter()
            .map(|(c, t, s)| (*c, start + t, s.clone()))
            .collect();
        let counted = |c: &TextColumn, needle: &str, from, to| {
            let mut counts = FastMap::default();
            c.count_containing(needle, from, to, &mut counts);
            let mut v: Vec<(u32, u64)> = counts.into_iter().collect();
            v.sort_unstable();
            v
        };
        for needle in ["red", "boots", "ä", "", "jacket", "nothing", "s j"] {
            for (from, to) in [
                (start, start + DAY_MS - 1),
                (start + 6, start + 3_600_000),
                (start - DAY_MS, start),
                (start + DAY_MS - 1, start + 2 * DAY_MS),
            ] {
                let found = containing_of(&back.column, needle, from, to);
                assert_eq!(found, containing_plainly(&plain, needle, from, to));
                assert_eq!(found, containing_of(&built.column, needle, from, to));
                assert_eq!(
                    counted(&back.column, needle, from, to),
                    counted(&built.column, needle, from, to),
                    "{needle} {from} {to}"
                );
            }
        }
        // No value: a body of counts only.
        let empty = day_column(day, &[]);
        let body = Loaded::new(empty.encode(day));
        assert!(DayTexts::decode(&body, day, version())
            .unwrap()
            .column
            .is_empty());
    }

    #[test]
    fn a_stored_day_column_of_an_earlier_layout_or_damaged_is_refused() {
        let day = 20_000;
        let values: Vec<(u32, i64, String)> = (0..40)
            .map(|i| (i / 3, i64::from(i) * 1000, format!("word{}", i % 7)))
            .collect();
        let body = day_column(day, &values).encode(day);
        let decode =
            |body: &[u8], day| DayTexts::decode(&Loaded::new(body.to_vec()), day, version());
        assert!(decode(&body, day).is_ok());
        // Another day's; the layout of earlier builds (1: varints, stored compressed), which the
        // same bytes read as layout 2 would misread: stale, never read.
        assert!(decode(&body, day + 1).is_err());
        let mut earlier = body.clone();
        earlier[0] = 1;
        assert_eq!(DayTexts::declared_fingerprint(&earlier), None);
        assert!(decode(&earlier, day).is_err());
        // Cut, a byte more, a time past the day, a string index past the strings, customers out
        // of order, an end past the text, a string cut inside a character.
        assert!(decode(&body[..body.len() - 1], day).is_err());
        assert!(decode(&[&body[..], b"x"].concat(), day).is_err());
        let head = body.len() - 40 * 12 - 7 * 5 - 7 * 4;
        let (customers, times, ids) = (head + 7 * 4, head + 7 * 4 + 160, head + 7 * 4 + 320);
        let patched = |at: usize, word: u32| {
            let mut b = body.clone();
            b[at..at + 4].copy_from_slice(&word.to_le_bytes());
            b
        };
        assert!(decode(&patched(times + 8, DAY_MS as u32), day).is_err());
        assert!(decode(&patched(ids + 8, 7), day).is_err());
        assert!(decode(&patched(ids + 8, 6), day).is_ok());
        assert!(decode(&patched(customers + 4, 5), day).is_err());
        assert!(decode(&patched(head + 4, 1000), day).is_err());
        let accented = day_column(day, &[(1, 0, "é".into()), (2, 0, "a".into())]);
        let mut split = accented.encode(day);
        let ends = split.len() - 2 * 12 - 3 - 2 * 4;
        split[ends..ends + 4].copy_from_slice(&1u32.to_le_bytes());
        assert!(decode(&split, day).is_err());
    }

    proptest::proptest! {
        #[test]
        fn a_damaged_stored_day_column_is_refused_as_a_plain_read_refuses_it(
            raw in proptest::collection::vec((0u32..50, 0i64..DAY_MS, "[ab@.é]{0,5}"), 0..30),
            at in 0usize..2000,
            byte in proptest::num::u8::ANY,
            cut in proptest::bool::ANY,
        ) {
            let day = 19_000;
            let mut body = day_column(day, &raw).encode(day);
            let at = at % body.len();
            if cut {
                body.truncate(at);
            } else {
                body[at] = byte;
            }
            let fast = DayTexts::decode(&Loaded::new(body.clone()), day, version()).ok();
            let plain = decode_day_plainly(&body, day);
            proptest::prop_assert_eq!(fast.map(|f| day_parts(&f.column)), plain);
        }

        #[test]
        fn a_stored_day_column_answers_as_a_plain_search_of_each_value(
            raw in proptest::collection::vec((0u32..12, 0i64..6, "[ab@.é]{0,5}"), 0..40),
            needle in "[ab@.é]{0,3}",
            from in 0i64..6,
            len in 0i64..6,
        ) {
            let day = 19_000;
            let start = day_start(day);
            let body = Loaded::new(day_column(day, &raw).encode(day));
            let back = DayTexts::decode(&body, day, version()).unwrap();
            let values: Vec<(u32, Timestamp, String)> =
                raw.iter().map(|(c, t, s)| (*c, start + t, s.clone())).collect();
            let (from, to) = (start + from, start + from + len);
            proptest::prop_assert_eq!(
                containing_of(&back.column, &needle, from, to),
                containing_plainly(&values, &needle, from, to)
            );
        }
    }

    #[test]
    fn a_profile_change_makes_every_trait_column_stale() {
        let mut texts = ProfileTexts::default();
        let at = texts.edits();
        texts.put(
            4,
            at,
            Arc::new(TextColumn::new(vec![(1, 0, "a@example.org")])),
        );
        assert!(texts.get(4).is_some());
        assert!(texts.get(5).is_none());
        texts.changed();
        assert!(texts.get(4).is_none());
        // A column read before the change is not kept after it.
        texts.put(4, at, Arc::new(TextColumn::new(vec![])));
        assert!(texts.get(4).is_none());
        let clone = texts.clone();
        assert!(clone.get(4).is_none());
        assert_eq!(clone.edits(), texts.edits());
    }
}
