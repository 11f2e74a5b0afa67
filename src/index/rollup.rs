//! Per-day rollups: for each (event, UTC day), every customer's count of that event that day and
//! the span of the day their events fall in; for each (event, numeric property, day), every
//! customer's count, sum, minimum and maximum of the property's numbers that day. Counts and
//! aggregates over the whole days of a window are then sums over a few lists instead of reads of
//! every customer's events, and the span tells whether a day that a window cuts holds all, none
//! or some of a customer's events.
//!
//! A list is a multiset of partial figures (`Partial`), merged per customer: a sorted, merged
//! prefix and a short unsorted tail of recent additions, merged into the prefix when it grows
//! (so ingest in any order costs amortised O(1) moves per event and no allocation per event).
//! Readers sum partials, so a customer appearing twice in a list is never wrong. This module owns
//! the lists and their encoding; it does not read storage or answer rules.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::held::HeldBody;
use crate::error::{corrupt, Result};
use crate::model::time::{day_start, Timestamp};
use crate::model::Value;
use crate::storage::codec::{get_value, le_u32, put_value, put_varint, Reader};

/// The unit of the within-day span: 2 seconds, so that a time of day fits a `u16`.
pub const SPAN_UNIT_MS: i64 = 2_000;

/// The span unit of an instant within its day.
pub fn span_unit(ts: Timestamp, day: u32) -> u16 {
    ((ts - day_start(day)) / SPAN_UNIT_MS) as u16
}

/// One customer's figures in a list, for part or all of their events of one day; partials of
/// one customer merge into one.
pub trait Partial: Copy {
    fn cust(&self) -> u32;
    fn merge(&mut self, other: &Self);
    /// How many events the figures stand for (a count, a count of numbers): what merging adds
    /// up, and what a list's [`DayList::fingerprint`] weighs the customer by.
    fn weight(&self) -> u32;
}

/// A customer id's 64-bit mix (splitmix64's finaliser): the same in every process and build, so
/// that a fingerprint stored in one process can be compared in another.
pub fn mix(cust: u32) -> u64 {
    let mut z = u64::from(cust).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fingerprint of `weight` events of customer `cust` (see [`DayList::fingerprint`]).
pub fn weighed(cust: u32, weight: u32) -> u64 {
    mix(cust).wrapping_mul(u64::from(weight))
}

/// A customer's events of one kind on one day: how many, and the span units of the first and the
/// last (events lie in `[first·2 s, last·2 s + 2 s)` of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    pub cust: u32,
    pub count: u32,
    pub first: u16,
    pub last: u16,
}

impl Partial for DayCount {
    fn cust(&self) -> u32 {
        self.cust
    }

    fn weight(&self) -> u32 {
        self.count
    }

    fn merge(&mut self, o: &Self) {
        self.count = self.count.saturating_add(o.count);
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
}

/// A customer's numbers of one event property on one day (integers and floats, as the exact
/// check reads them): how many, their sum, minimum and maximum.
#[derive(Debug, Clone, Copy)]
pub struct DayNumbers {
    pub cust: u32,
    pub n: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl DayNumbers {
    pub fn of(cust: u32, x: f64) -> Self {
        DayNumbers {
            cust,
            n: 1,
            sum: x,
            min: x,
            max: x,
        }
    }

    /// Whether two figures of the same numbers agree: all exactly but the sum, which may differ
    /// by the rounding of a different order of summation (see [`sum_margin`]).
    pub fn agrees(&self, o: &Self) -> bool {
        self.cust == o.cust
            && self.n == o.n
            && self.min.to_bits() == o.min.to_bits()
            && self.max.to_bits() == o.max.to_bits()
            && (self.sum.to_bits() == o.sum.to_bits()
                || (self.sum - o.sum).abs() <= sum_margin(self.n, self.min, self.max))
    }
}

impl Partial for DayNumbers {
    fn cust(&self) -> u32 {
        self.cust
    }

    fn weight(&self) -> u32 {
        self.n
    }

    fn merge(&mut self, o: &Self) {
        self.n = self.n.saturating_add(o.n);
        self.sum += o.sum;
        // `f64::min` and `max` skip a NaN, whatever the order: as the exact check folds them.
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// How far two sums of the same `n` numbers (all within `[min, max]`) added in different orders
/// can be apart: each is within `(n-1)·u·Σ|x|` of the true sum (u = 2⁻⁵³), and `Σ|x| ≤ n·A`
/// with `A` the largest magnitude; twice that, with room to spare. Infinite or NaN when the
/// numbers are: then nothing is decided from the sum.
pub fn sum_margin(n: u32, min: f64, max: f64) -> f64 {
    let n = f64::from(n);
    let a = min.abs().max(max.abs());
    4.0 * n * n * a * f64::EPSILON / 2.0
}

/// Partial figures as a stored run of days holds them (`crate::index::runs`): fixed-width,
/// little-endian fields, so a fresh process loads a run at the speed of a copy.
pub trait StoredPartial: Partial {
    /// The kind of figures, in a stored run's key.
    const KIND: u8;
    /// Bytes per entry.
    const BYTES: usize;
    fn put(&self, out: &mut Vec<u8>);
    /// Reads an entry from exactly [`StoredPartial::BYTES`] bytes.
    fn get(b: &[u8]) -> Self;
}

fn le_f64(b: &[u8]) -> f64 {
    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl StoredPartial for DayCount {
    const KIND: u8 = 0;
    const BYTES: usize = 12;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cust.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.last.to_le_bytes());
    }

    fn get(b: &[u8]) -> Self {
        DayCount {
            cust: le_u32(&b[0..4]),
            count: le_u32(&b[4..8]),
            first: u16::from_le_bytes([b[8], b[9]]),
            last: u16::from_le_bytes([b[10], b[11]]),
        }
    }
}

impl StoredPartial for DayNumbers {
    const KIND: u8 = 1;
    const BYTES: usize = 32;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cust.to_le_bytes());
        out.extend_from_slice(&self.n.to_le_bytes());
        for x in [self.sum, self.min, self.max] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    fn get(b: &[u8]) -> Self {
        DayNumbers {
            cust: le_u32(&b[0..4]),
            n: le_u32(&b[4..8]),
            sum: le_f64(&b[8..16]),
            min: le_f64(&b[16..24]),
            max: le_f64(&b[24..32]),
        }
    }
}

/// The fingerprint of a list holding `items` (see [`DayList::fingerprint`]).
pub fn fingerprint_of<T: Partial>(items: &[T]) -> u64 {
    items
        .iter()
        .fold(0u64, |fp, e| fp.wrapping_add(weighed(e.cust(), e.weight())))
}

/// Sorts partial figures by customer (stably: sorted runs are merged, not sorted again) and
/// merges each customer's into one.
pub fn merge_partials<T: Partial>(items: &mut Vec<T>) {
    items.sort_by_key(|e| e.cust());
    items.dedup_by(|later, kept| {
        if later.cust() == kept.cust() {
            kept.merge(later);
            true
        } else {
            false
        }
    });
}

/// The partials of one (event, day) or (event, property, day) list; `dirty` marks it for the next
/// snapshot.
#[derive(Debug)]
pub struct DayList<T> {
    items: Vec<T>,
    /// `items[..sorted]` is sorted by customer with one entry each; the rest is recent additions.
    sorted: usize,
    pub(crate) dirty: bool,
    /// Which content this is (see [`DayList::version`]).
    version: ListVersion,
    /// The content's fingerprint (see [`DayList::fingerprint`]), kept up to date by every
    /// change; a stored list's is its [`Summary`]'s.
    fp: u64,
    /// The list as the index snapshot stored it, until it is first changed; `items` is empty
    /// meanwhile. An open keeps the record as stored (a slice of the mapped snapshot file) and
    /// the first reader decodes it, so the lists no rule reads cost no memory of their own.
    stored: Option<Arc<StoredList<T>>>,
}

/// What a stored list's walk finds without building its entries: how many there are, the
/// fingerprint, and (for counts) the last span unit of any customer.
#[derive(Debug, Clone, Copy)]
struct Summary {
    len: usize,
    fp: u64,
    last: Option<u16>,
}

/// A list's entries as a snapshot encoded them, decoded on first read. The record passed its
/// checksum when the open read it; its encoding is read by the first reader that needs it.
struct StoredList<T> {
    /// The snapshot record; its body is the list's encoding.
    record: HeldBody,
    summarize: fn(&[u8]) -> Summary,
    /// Decodes the entries, summarising them in the same pass.
    decode: fn(&[u8]) -> (Vec<T>, Summary),
    summary: OnceLock<Summary>,
    decoded: OnceLock<Vec<T>>,
}

impl<T> StoredList<T> {
    fn items(&self) -> &[T] {
        self.decoded.get_or_init(|| {
            let (items, summary) = self.record.with_body(self.decode);
            let _ = self.summary.set(summary);
            items
        })
    }

    fn summary(&self) -> Summary {
        *self
            .summary
            .get_or_init(|| self.record.with_body(self.summarize))
    }
}

impl<T> std::fmt::Debug for StoredList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredList")
            .field("stored", &self.record.stored_len())
            .field("summary", &self.summary.get())
            .field("decoded", &self.decoded.get().is_some())
            .finish()
    }
}

/// Names a list's content: a number no other list of this process had, and how many times its
/// content changed since. Two reads of a list with the same version saw the same figures, so
/// whatever was derived from the first is still true at the second (`crate::index::runs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListVersion {
    list: u64,
    edits: u64,
}

impl ListVersion {
    pub(crate) fn fresh() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        ListVersion {
            list: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            edits: 0,
        }
    }
}

/// The days and versions of the lists of `days` in `first..=last`: what a structure derived from
/// them remembers (`crate::index::runs`, `presence`, `totals`).
pub fn versions_of<T: Partial>(
    days: &BTreeMap<u32, DayList<T>>,
    first: u32,
    last: u32,
) -> Vec<(u32, ListVersion)> {
    days.range(first..=last)
        .map(|(&d, l)| (d, l.version()))
        .collect()
}

/// Whether `sources` are exactly the days and versions the lists of `days` in `first..=last`
/// have now: a structure derived from those is then still true.
pub fn versions_match<T: Partial>(
    sources: &[(u32, ListVersion)],
    days: &BTreeMap<u32, DayList<T>>,
    first: u32,
    last: u32,
) -> bool {
    sources
        .iter()
        .copied()
        .eq(days.range(first..=last).map(|(&d, l)| (d, l.version())))
}

impl<T> Default for DayList<T> {
    fn default() -> Self {
        DayList {
            items: Vec::new(),
            sorted: 0,
            dirty: false,
            version: ListVersion::fresh(),
            fp: 0,
            stored: None,
        }
    }
}

/// A copy is another list: it gets a version of its own, as its content may go its own way.
impl<T: Clone> Clone for DayList<T> {
    fn clone(&self) -> Self {
        DayList {
            items: self.items.clone(),
            sorted: self.sorted,
            dirty: self.dirty,
            version: ListVersion::fresh(),
            fp: self.fp,
            stored: self.stored.clone(),
        }
    }
}

impl<T: Partial> DayList<T> {
    /// A list from merged entries sorted by customer (as a snapshot holds them).
    fn from_sorted(items: Vec<T>) -> Self {
        let fp = fingerprint_of(&items);
        DayList {
            sorted: items.len(),
            items,
            dirty: false,
            version: ListVersion::fresh(),
            fp,
            stored: None,
        }
    }

    /// A list held as its record, summarised by `summarize` when its length or fingerprint
    /// is first asked and decoded by `decode` on first read.
    fn stored(
        record: HeldBody,
        summarize: fn(&[u8]) -> Summary,
        decode: fn(&[u8]) -> (Vec<T>, Summary),
    ) -> Self {
        DayList {
            items: Vec::new(),
            sorted: 0,
            dirty: false,
            version: ListVersion::fresh(),
            fp: 0,
            stored: Some(Arc::new(StoredList {
                record,
                summarize,
                decode,
                summary: OnceLock::new(),
                decoded: OnceLock::new(),
            })),
        }
    }

    /// The entries and how many of them form the sorted, merged prefix.
    #[inline]
    fn held(&self) -> (&[T], usize) {
        match &self.stored {
            Some(s) => {
                let items = s.items();
                (items, items.len())
            }
            None => (&self.items, self.sorted),
        }
    }

    /// Before a change: a stored list's entries become the list's own.
    fn unstore(&mut self) {
        if let Some(s) = self.stored.take() {
            // Decoded first: the decode also sums the list up, so the fingerprint is not walked
            // for separately.
            s.items();
            self.fp = s.summary().fp;
            self.items = match Arc::try_unwrap(s) {
                Ok(s) => s.decoded.into_inner().unwrap_or_default(),
                Err(shared) => shared.items().to_vec(),
            };
            self.sorted = self.items.len();
        }
    }

    /// A fingerprint of the list's content that means the same in every process: the sum
    /// (wrapping) over its events of their customer's [`mix`], that is each customer's mix
    /// times its weight (count of events, of numbers). It depends only on how many events each
    /// customer has in the list, not on the order they came in or how they are merged, and is
    /// kept up to date by every addition and removal, so reading it costs nothing. Derived
    /// records stored in the folder name the fingerprints of the lists they were built from
    /// (`crate::index::derived`, where `docs/STORAGE.md` says why that identifies their content).
    pub fn fingerprint(&self) -> u64 {
        match &self.stored {
            Some(s) => s.summary().fp,
            None => self.fp,
        }
    }

    /// The version of the list's content: it changes whenever the figures do (an addition or a
    /// removal; not a [`DayList::compact`], which keeps them).
    pub fn version(&self) -> ListVersion {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries held (a customer may have more than one until the next merge).
    pub fn len(&self) -> usize {
        match &self.stored {
            Some(s) => match s.decoded.get() {
                Some(items) => items.len(),
                None => s.summary().len,
            },
            None => self.items.len(),
        }
    }

    /// Adds a customer's partial figures.
    pub fn add(&mut self, p: T) {
        self.unstore();
        self.dirty = true;
        self.version.edits += 1;
        self.fp = self.fp.wrapping_add(weighed(p.cust(), p.weight()));
        let cust = p.cust();
        if let Some(last) = self.items.last_mut() {
            if last.cust() == cust {
                last.merge(&p);
                return;
            }
        }
        let head = &mut self.items[..self.sorted];
        if let Ok(i) = head.binary_search_by_key(&cust, |e| e.cust()) {
            head[i].merge(&p);
            return;
        }
        self.items.push(p);
        if self.items.len() - self.sorted > 32 + self.sorted / 8 {
            self.compact();
        }
    }

    /// Merges the tail into the sorted prefix.
    pub fn compact(&mut self) {
        self.unstore();
        if self.sorted == self.items.len() {
            return;
        }
        // A stable sort finds the sorted prefix as one run: this is a merge, not a full sort.
        merge_partials(&mut self.items);
        self.sorted = self.items.len();
    }

    /// The entries merged and sorted by customer: the list's content.
    pub fn canonical(&self) -> Vec<T> {
        let mut c = self.clone();
        c.compact();
        c.items
    }

    /// Removes every figure of the customers `gone` says, returning whether any was removed.
    pub fn remove_where(&mut self, gone: impl Fn(u32) -> bool) -> bool {
        self.unstore();
        let before = self.items.len();
        let mut kept_sorted = 0;
        let sorted = self.sorted;
        let mut i = 0;
        let mut fp = self.fp;
        self.items.retain(|e| {
            let keep = !gone(e.cust());
            if keep && i < sorted {
                kept_sorted += 1;
            }
            if !keep {
                fp = fp.wrapping_sub(weighed(e.cust(), e.weight()));
            }
            i += 1;
            keep
        });
        self.fp = fp;
        self.sorted = kept_sorted;
        let removed = self.items.len() != before;
        self.dirty |= removed;
        self.version.edits += u64::from(removed);
        removed
    }

    /// Removes one customer's figures.
    pub fn remove(&mut self, cust: u32) -> bool {
        self.unstore();
        let mut removed = false;
        if let Ok(i) = self.items[..self.sorted].binary_search_by_key(&cust, |e| e.cust()) {
            let e = self.items.remove(i);
            self.fp = self.fp.wrapping_sub(weighed(cust, e.weight()));
            self.sorted -= 1;
            removed = true;
        }
        let tail_has = self.items[self.sorted..].iter().any(|e| e.cust() == cust);
        if tail_has {
            let sorted = self.sorted;
            let mut i = 0;
            let mut fp = self.fp;
            self.items.retain(|e| {
                let keep = i < sorted || e.cust() != cust;
                if !keep {
                    fp = fp.wrapping_sub(weighed(cust, e.weight()));
                }
                i += 1;
                keep
            });
            self.fp = fp;
            removed = true;
        }
        self.dirty |= removed;
        self.version.edits += u64::from(removed);
        removed
    }

    /// Calls `f` with every entry of a customer in `lo..hi` (a customer may come more than once).
    #[inline]
    pub fn for_each_in(&self, lo: u32, hi: u32, mut f: impl FnMut(&T)) {
        let (items, sorted) = self.held();
        let (head, tail) = items.split_at(sorted);
        let a = head.partition_point(|e| e.cust() < lo);
        let b = a + head[a..].partition_point(|e| e.cust() < hi);
        head[a..b].iter().for_each(&mut f);
        for e in tail {
            if (lo..hi).contains(&e.cust()) {
                f(e);
            }
        }
    }

    /// The entries as the sorted, merged prefix (one per customer, in customer order) and the
    /// unsorted tail of recent additions (whose customers may also be in the prefix). Read side
    /// only: for readers that build bitmaps from the prefix in order.
    #[inline]
    pub fn parts(&self) -> (&[T], &[T]) {
        let (items, sorted) = self.held();
        items.split_at(sorted)
    }

    /// Calls `f` with every entry (a customer may come more than once).
    pub fn for_each(&self, f: impl FnMut(&T)) {
        self.held().0.iter().for_each(f);
    }

    /// Bytes held, for reports: a stored list's record (a slice of the mapped snapshot file,
    /// when it came from there), and its entries once decoded.
    pub fn heap_bytes(&self) -> usize {
        let entries = |n: usize| n * std::mem::size_of::<T>();
        match &self.stored {
            Some(s) => s.record.stored_len() + s.decoded.get().map_or(0, |d| entries(d.capacity())),
            None => entries(self.items.capacity()),
        }
    }

    /// The record the list was loaded from, while no change has been made to it (read or
    /// not): its encoding as a snapshot would write it again.
    pub fn stored_record(&self) -> Option<&Bytes> {
        self.stored.as_ref().map(|s| s.record.record())
    }

    /// Whether the list is still held as the snapshot stored it, not yet decoded (for tests of
    /// what an open reads).
    pub fn is_held_encoded(&self) -> bool {
        self.stored
            .as_ref()
            .is_some_and(|s| s.decoded.get().is_none())
    }
}

impl DayList<DayCount> {
    /// The last span unit of any of the list's customers (`None` when it is empty): a stored
    /// list's from a walk of its encoding, without decoding it.
    pub fn last_unit(&self) -> Option<u16> {
        match &self.stored {
            Some(s) if s.decoded.get().is_none() => s.summary().last,
            _ => {
                let mut last = None;
                self.for_each(|e| last = last.max(Some(e.last)));
                last
            }
        }
    }
}

impl PartialEq for DayList<DayCount> {
    fn eq(&self, other: &Self) -> bool {
        self.canonical() == other.canonical()
    }
}

impl PartialEq for DayList<DayNumbers> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.canonical(), other.canonical());
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.agrees(y))
    }
}

/// Encodes a count list: customers as deltas, then the count times two, plus one when the span
/// is a single unit (as for every single event); then the first span unit (2 bytes LE: as a
/// varint, most times of day took 3) and, for a longer span, its length.
pub fn put_counts(out: &mut Vec<u8>, list: &DayList<DayCount>) {
    let items = list.canonical();
    put_varint(out, items.len() as u64);
    let mut prev = 0u32;
    for e in &items {
        put_varint(out, u64::from(e.cust - prev));
        prev = e.cust;
        let one_unit = e.last == e.first;
        put_varint(out, u64::from(e.count) << 1 | u64::from(one_unit));
        out.extend_from_slice(&e.first.to_le_bytes());
        if !one_unit {
            put_varint(out, u64::from(e.last - e.first));
        }
    }
}

fn next_cust(r: &mut Reader<'_>, prev: &mut Option<u32>) -> Result<u32> {
    let delta = u32::try_from(r.varint()?).map_err(|_| corrupt!("bad rollup customer"))?;
    let cust = match *prev {
        None => delta,
        Some(p) if delta > 0 => p
            .checked_add(delta)
            .ok_or_else(|| corrupt!("bad rollup customer"))?,
        Some(_) => return Err(corrupt!("rollup customers out of order")),
    };
    *prev = Some(cust);
    Ok(cust)
}

fn small<T: TryFrom<u64>>(r: &mut Reader<'_>) -> Result<T> {
    small_of(r.varint()?)
}

fn small_of<T: TryFrom<u64>>(x: u64) -> Result<T> {
    T::try_from(x).map_err(|_| corrupt!("rollup figure out of range"))
}

/// Reads the `n` entries of a count list that [`put_counts`] wrote (after its length),
/// handing each to `f`: the one reader of the encoding, for decoding and for checking a stored
/// list without holding its entries.
fn walk_counts(r: &mut Reader<'_>, n: usize, mut f: impl FnMut(DayCount)) -> Result<()> {
    let mut prev = None;
    for _ in 0..n {
        let cust = next_cust(r, &mut prev)?;
        let field = r.varint()?;
        let count: u32 = small_of(field >> 1)?;
        let first = r.take(2)?;
        let first = u16::from_le_bytes([first[0], first[1]]);
        let len: u16 = if field & 1 == 1 { 0 } else { small(r)? };
        let last = first
            .checked_add(len)
            .ok_or_else(|| corrupt!("rollup span out of range"))?;
        if count == 0 {
            return Err(corrupt!("empty rollup entry"));
        }
        f(DayCount {
            cust,
            count,
            first,
            last,
        });
    }
    Ok(())
}

/// Decodes what [`put_counts`] wrote.
pub fn get_counts(r: &mut Reader<'_>) -> Result<DayList<DayCount>> {
    let n = r.len()?;
    let mut items = Vec::with_capacity(n);
    walk_counts(r, n, |e| items.push(e))?;
    Ok(DayList::from_sorted(items))
}

fn put_f64(out: &mut Vec<u8>, x: f64) {
    // The value encoding keeps short decimals short and every other float exact.
    put_value(out, &Value::Float(x));
}

fn get_f64(r: &mut Reader<'_>) -> Result<f64> {
    match get_value(r)? {
        Value::Float(x) => Ok(x),
        _ => Err(corrupt!("bad rollup number")),
    }
}

/// Whether a figure is a single number: then its sum, minimum and maximum are that number.
fn single(e: &DayNumbers) -> bool {
    e.n == 1 && e.sum.to_bits() == e.min.to_bits() && e.min.to_bits() == e.max.to_bits()
}

/// Encodes a numbers list: customers as deltas, then the count of numbers times two, plus one
/// for a single number (about half of all figures), which is then written once instead of as
/// sum, minimum and maximum.
pub fn put_numbers(out: &mut Vec<u8>, list: &DayList<DayNumbers>) {
    let items = list.canonical();
    put_varint(out, items.len() as u64);
    let mut prev = 0u32;
    for e in &items {
        put_varint(out, u64::from(e.cust - prev));
        prev = e.cust;
        if single(e) {
            put_varint(out, 3);
            put_f64(out, e.sum);
        } else {
            put_varint(out, u64::from(e.n) << 1);
            put_f64(out, e.sum);
            put_f64(out, e.min);
            put_f64(out, e.max);
        }
    }
}

/// Reads the `n` entries of a numbers list that [`put_numbers`] wrote (after its length),
/// handing each to `f` (as [`walk_counts`]).
fn walk_numbers(r: &mut Reader<'_>, n: usize, mut f: impl FnMut(DayNumbers)) -> Result<()> {
    let mut prev = None;
    for _ in 0..n {
        let cust = next_cust(r, &mut prev)?;
        let field = r.varint()?;
        let n: u32 = small_of(field >> 1)?;
        let item = match (n, field & 1) {
            (0, _) => return Err(corrupt!("empty rollup entry")),
            (1, 1) => DayNumbers::of(cust, get_f64(r)?),
            (_, 1) => return Err(corrupt!("bad rollup entry")),
            _ => DayNumbers {
                cust,
                n,
                sum: get_f64(r)?,
                min: get_f64(r)?,
                max: get_f64(r)?,
            },
        };
        f(item);
    }
    Ok(())
}

/// Decodes what [`put_numbers`] wrote.
pub fn get_numbers(r: &mut Reader<'_>) -> Result<DayList<DayNumbers>> {
    let n = r.len()?;
    let mut items = Vec::with_capacity(n);
    walk_numbers(r, n, |e| items.push(e))?;
    Ok(DayList::from_sorted(items))
}

/// A count list as a snapshot stored it: the record's body is exactly what [`put_counts`]
/// wrote. Nothing of it is read now: its length, fingerprint and last span unit are walked for
/// when first asked ([`DayList::fingerprint`], [`DayList::last_unit`]), and the entries are
/// decoded on the list's first read.
pub fn stored_counts(record: Bytes) -> DayList<DayCount> {
    DayList::stored(HeldBody::new(record), summarize_counts, decode_counts)
}

/// A numbers list as a snapshot stored it (as [`stored_counts`]).
pub fn stored_numbers(record: Bytes) -> DayList<DayNumbers> {
    DayList::stored(HeldBody::new(record), summarize_numbers, decode_numbers)
}

/// Why a held list's encoding is expected to decode: the open checked its record's checksum
/// (the snapshot file's, or sled's own), and the lists' proptests check that what this build
/// writes, it reads.
const CHECKSUMMED: &str =
    "a stored rollup list decodes: its record passed its checksum and this build wrote it";

fn summarize_counts(encoded: &[u8]) -> Summary {
    walk_stored_counts(encoded, |_| ())
}

fn summarize_numbers(encoded: &[u8]) -> Summary {
    walk_stored_numbers(encoded, |_| ())
}

fn decode_counts(encoded: &[u8]) -> (Vec<DayCount>, Summary) {
    let mut items = Vec::with_capacity(Reader::new(encoded).len().expect(CHECKSUMMED));
    let summary = walk_stored_counts(encoded, |e| items.push(e));
    (items, summary)
}

fn decode_numbers(encoded: &[u8]) -> (Vec<DayNumbers>, Summary) {
    let mut items = Vec::with_capacity(Reader::new(encoded).len().expect(CHECKSUMMED));
    let summary = walk_stored_numbers(encoded, |e| items.push(e));
    (items, summary)
}

/// Walks a held count list's encoding, calling `f` with each entry, and sums it up.
fn walk_stored_counts(encoded: &[u8], mut f: impl FnMut(DayCount)) -> Summary {
    let mut r = Reader::new(encoded);
    let len = r.len().expect(CHECKSUMMED);
    let (mut fp, mut last) = (0u64, None);
    walk_counts(&mut r, len, |e| {
        fp = fp.wrapping_add(weighed(e.cust, e.count));
        last = last.max(Some(e.last));
        f(e);
    })
    .expect(CHECKSUMMED);
    r.expect_end("an index family").expect(CHECKSUMMED);
    Summary { len, fp, last }
}

/// Walks a held numbers list's encoding, calling `f` with each entry, and sums it up.
fn walk_stored_numbers(encoded: &[u8], mut f: impl FnMut(DayNumbers)) -> Summary {
    let mut r = Reader::new(encoded);
    let len = r.len().expect(CHECKSUMMED);
    let mut fp = 0u64;
    walk_numbers(&mut r, len, |e| {
        fp = fp.wrapping_add(weighed(e.cust, e.n));
        f(e);
    })
    .expect(CHECKSUMMED);
    r.expect_end("an index family").expect(CHECKSUMMED);
    Summary {
        len,
        fp,
        last: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec;

    fn c(cust: u32, unit: u16) -> DayCount {
        DayCount {
            cust,
            count: 1,
            first: unit,
            last: unit,
        }
    }

    #[test]
    fn any_order_of_additions_gives_the_same_list() {
        let mut a = DayList::default();
        let mut b = DayList::default();
        let adds: Vec<DayCount> = (0..500u32).map(|i| c((i * 7919) % 101, i as u16)).collect();
        for e in &adds {
            a.add(*e);
        }
        for e in adds.iter().rev() {
            b.add(*e);
        }
        assert!(a == b);
        let canon = a.canonical();
        assert_eq!(canon.len(), 101);
        assert_eq!(canon.iter().map(|e| e.count).sum::<u32>(), 500);
        assert!(canon.windows(2).all(|w| w[0].cust < w[1].cust));
        let mut seen = 0;
        a.for_each_in(10, 20, |e| {
            assert!((10..20).contains(&e.cust));
            seen += e.count;
        });
        let expect: u32 = canon
            .iter()
            .filter(|e| (10..20).contains(&e.cust))
            .map(|e| e.count)
            .sum();
        assert_eq!(seen, expect);
    }

    #[test]
    fn the_fingerprint_follows_the_content_whatever_the_path() {
        let mut a = DayList::default();
        let mut b = DayList::default();
        let adds: Vec<DayCount> = (0..700u32).map(|i| c((i * 7919) % 131, i as u16)).collect();
        for e in &adds {
            a.add(*e);
        }
        for e in adds.iter().rev() {
            b.add(*e);
        }
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), fingerprint_of(&a.canonical()));
        // Through the snapshot's encoding, in another list.
        let mut out = Vec::new();
        put_counts(&mut out, &a);
        let loaded = get_counts(&mut Reader::new(&out)).unwrap();
        assert_eq!(loaded.fingerprint(), a.fingerprint());
        assert_ne!(loaded.version(), a.version());
        // One more event of a customer changes it; removals follow the content.
        let before = a.fingerprint();
        a.add(c(5, 9));
        assert_ne!(a.fingerprint(), before);
        assert!(a.remove(5));
        assert!(b.remove(5));
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), fingerprint_of(&a.canonical()));
        assert!(a.remove_where(|c| c % 3 == 0));
        assert_eq!(a.fingerprint(), fingerprint_of(&a.canonical()));
        let mut empty = a.clone();
        empty.remove_where(|_| true);
        assert_eq!(empty.fingerprint(), 0);
        // Numbers weigh by how many numbers a customer has.
        let mut n = DayList::default();
        n.add(DayNumbers::of(4, 1.5));
        n.add(DayNumbers::of(4, 2.5));
        assert_eq!(n.fingerprint(), weighed(4, 2));
    }

    #[test]
    fn removal_takes_every_partial_of_the_customer() {
        let mut a = DayList::default();
        for i in 0..300u32 {
            a.add(c(i % 50, 1));
        }
        a.add(c(7, 3));
        assert!(a.remove(7));
        assert!(a.canonical().iter().all(|e| e.cust != 7));
        assert!(a.remove_where(|c| c % 2 == 0));
        assert_eq!(a.canonical().len(), 24);
    }

    #[test]
    fn lists_round_trip_and_garbage_is_an_error() {
        let mut counts = DayList::default();
        let mut numbers = DayList::default();
        for i in 0..200u32 {
            counts.add(c(i * 3 % 77, (i % 400) as u16));
            numbers.add(DayNumbers::of(i % 13, f64::from(i) * 0.1 - 3.0));
        }
        // A customer with a single number is written once.
        numbers.add(DayNumbers::of(500, 16.95));
        let mut out = Vec::new();
        put_counts(&mut out, &counts);
        put_numbers(&mut out, &numbers);
        let mut r = Reader::new(&out);
        assert!(get_counts(&mut r).unwrap() == counts);
        assert!(get_numbers(&mut r).unwrap() == numbers);
        assert!(r.is_empty());
        assert!(get_counts(&mut Reader::new(&[2, 5, 1, 0, 0, 0, 1, 0, 0])).is_err());
        assert!(get_numbers(&mut Reader::new(&[1, 0, 0])).is_err());
        assert!(get_numbers(&mut Reader::new(&[1, 0, 5, 3])).is_err());
    }

    #[test]
    fn sums_in_another_order_agree_within_the_margin() {
        let xs: Vec<f64> = (0..1000).map(|i| 0.1 * f64::from(i) + 1e-3).collect();
        let fwd = xs.iter().fold(0.0, |s, x| s + x);
        let rev = xs.iter().rev().fold(0.0, |s, x| s + x);
        let margin = sum_margin(1000, 1e-3, 99.901);
        assert!((fwd - rev).abs() <= margin);
        assert!(margin < 1e-5);
    }

    /// A list as an open holds it: its encoding behind one tag byte, as a record stored as is.
    fn stored_copy_of_counts(list: &DayList<DayCount>) -> DayList<DayCount> {
        let mut body = vec![0u8];
        put_counts(&mut body, list);
        stored_counts(Bytes::from(body))
    }

    proptest::proptest! {
        /// A list held encoded reads, fingerprints, changes and encodes exactly as the decoded
        /// list does, whether its first use is a read or a change, and its copies go their own way.
        #[test]
        fn a_stored_list_behaves_as_the_decoded_one(
            adds in proptest::collection::vec((0u32..300, 0u16..2000, 1u32..4), 0..200),
            later in proptest::collection::vec((0u32..300, 0u16..2000), 0..20),
            gone in 0u32..300,
            read_first: bool,
            compressed: bool,
        ) {
            let mut plain = DayList::default();
            for &(cust, unit, count) in &adds {
                plain.add(DayCount { cust, count, first: unit, last: unit.saturating_add(3) });
            }
            let mut body = vec![0u8];
            put_counts(&mut body, &plain);
            // As the snapshot writes it: compressed when that saves an eighth, or as is.
            let record = if compressed { codec::pack(body.clone()) } else { body.clone() };
            let mut held = stored_counts(Bytes::from(record));
            let last = held.last_unit();
            let decoded = get_counts(&mut Reader::new(&body[1..])).unwrap();
            proptest::prop_assert!(held.is_held_encoded() || decoded.is_empty());
            proptest::prop_assert_eq!(held.len(), decoded.len());
            proptest::prop_assert_eq!(held.fingerprint(), plain.fingerprint());
            let mut expected_last = None;
            decoded.for_each(|e| expected_last = expected_last.max(Some(e.last)));
            proptest::prop_assert_eq!(last, expected_last);
            let copy = held.clone();
            if read_first {
                let mut seen = Vec::new();
                held.for_each_in(50, 200, |e| seen.push(*e));
                let mut want = Vec::new();
                decoded.for_each_in(50, 200, |e| want.push(*e));
                proptest::prop_assert_eq!(seen, want);
                proptest::prop_assert_eq!(held.parts().0, decoded.parts().0);
                proptest::prop_assert!(held.parts().1.is_empty());
            }
            let mut reference = decoded;
            for &(cust, unit) in &later {
                let e = DayCount { cust, count: 1, first: unit, last: unit };
                held.add(e);
                reference.add(e);
            }
            proptest::prop_assert_eq!(held.remove(gone), reference.remove(gone));
            proptest::prop_assert!(!held.is_held_encoded() || later.is_empty());
            proptest::prop_assert!(held == reference);
            proptest::prop_assert_eq!(held.fingerprint(), reference.fingerprint());
            proptest::prop_assert!(copy == plain);
            proptest::prop_assert_eq!(copy.fingerprint(), plain.fingerprint());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            put_counts(&mut a, &held);
            put_counts(&mut b, &reference);
            proptest::prop_assert_eq!(a, b);
        }

        /// Numbers lists the same way, reads only.
        #[test]
        fn a_stored_numbers_list_reads_as_the_decoded_one(
            adds in proptest::collection::vec((0u32..300, -1000i32..1000), 0..200),
        ) {
            let mut plain = DayList::default();
            for &(cust, x) in &adds {
                plain.add(DayNumbers::of(cust, f64::from(x) / 8.0));
            }
            let mut body = vec![0u8];
            put_numbers(&mut body, &plain);
            let held = stored_numbers(Bytes::from(codec::pack(body.clone())));
            proptest::prop_assert_eq!(held.fingerprint(), plain.fingerprint());
            proptest::prop_assert_eq!(held.len(), held.canonical().len());
            proptest::prop_assert!(held == plain);
            let mut again = Vec::new();
            put_numbers(&mut again, &held);
            proptest::prop_assert_eq!(&again[..], &body[1..]);
        }
    }

    /// Holding reads nothing; the length, fingerprint and last unit walk the encoding without
    /// decoding it; the first read decodes.
    #[test]
    fn a_stored_list_is_walked_for_its_summary_and_decoded_on_first_read() {
        let mut list = DayList::default();
        for i in 0..20u32 {
            list.add(c(i * 5, i as u16));
        }
        let held = stored_copy_of_counts(&list);
        assert!(held.is_held_encoded());
        assert_eq!(held.len(), 20);
        assert_eq!(held.fingerprint(), list.fingerprint());
        assert_eq!(held.last_unit(), Some(19));
        assert!(held.is_held_encoded());
        assert!(held == list);
        assert!(!held.is_held_encoded());
        assert_eq!(held.last_unit(), Some(19));
        assert_eq!(stored_copy_of_counts(&DayList::default()).last_unit(), None);
    }

    /// A record that passed its checksum but does not decode can only come from a writer that
    /// wrote it wrong: its first reader stops rather than answer from it.
    #[test]
    #[should_panic(expected = "passed its checksum")]
    fn a_stored_list_that_does_not_decode_stops_its_reader() {
        let mut list = DayList::default();
        list.add(c(3, 1));
        let mut body = vec![0u8];
        put_counts(&mut body, &list);
        body.push(0);
        let held = stored_counts(Bytes::from(body));
        held.for_each(|_| ());
    }
}
