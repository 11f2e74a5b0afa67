//! Roaring-bitmap indexes over customers' internal ids, kept in step with stored data:
//! everyone; customers with a profile; per trait, who has it and who has each value (for
//! low-cardinality traits); per event, who did it on each UTC day; and per (event, property, value)
//! who did it on each day, for low-cardinality string/integer/boolean properties; per trait, its
//! integer, float and date-time values bit-sliced for orderings (`ranges.rs`). Beside the
//! bitmaps, per-day rollups (`rollup.rs`): per (event, day) each customer's count of the event and
//! the span of the day it covers, and per (event, numeric property, day) each customer's count,
//! sum, minimum and maximum of the property's numbers (for at most `rollup_bound` numeric
//! properties per event). Readers of long windows merge runs of consecutive days of rollups on
//! first use (`runs.rs`: derived, checked against the lists' versions in memory), and so are
//! the text columns of `contains` on properties without value bitmaps (`texts.rs`), the
//! event columns that filters of several conditions are tested on (`columns.rs`) and each
//! value's customers over a run of whole days for `top` and `recommend` (`unions.rs`); and,
//! per split name, each `bucket(NAME)`'s customers (`buckets.rs`). Runs, text columns and event
//! columns are also kept in the folder by the readers that build them, checked against the
//! fingerprints of the lists they came from (`derived.rs`).
//!
//! This module owns the in-memory bitmaps and rollups and their snapshot encoding. It does not
//! read or write storage: the database layer feeds it profiles and events, and persists the
//! snapshots it returns.

mod batch;
pub mod buckets;
pub mod columns;
pub mod derived;
mod held;
pub mod presence;
pub mod ranges;
pub mod rollup;
pub mod runs;
mod snapshot;
pub mod texts;
pub mod totals;
pub mod unions;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::Equivalent;
use roaring::RoaringBitmap;

use crate::model::time::{day_of, Timestamp};
use crate::model::{FastMap, FastSet, StoredEvent, Value};

pub use batch::{Changes, PARALLEL_FROM};
pub use buckets::BucketSplits;
pub use columns::{Columns, EventColumns, MISSING};
pub use presence::PresenceRuns;
pub use ranges::{Ranges, Slices};
pub use rollup::{DayCount, DayList, DayNumbers};
pub use runs::{Piece, Runs};
pub use snapshot::{DecodedFamily, Family, SNAPSHOT_VERSION};
pub use texts::{DayTexts, ProfileTexts, TextColumn, Texts};
pub use unions::{ByCustomer, Unions, ValueUnions};

/// How many numeric properties of one event get per-day rollups, unless configured otherwise.
pub const DEFAULT_ROLLUP_BOUND: usize = 8;

/// Per UTC day, each customer's count of one event that day.
pub type DayCounts = BTreeMap<u32, DayList<DayCount>>;
/// Per UTC day, each customer's figures of one numeric event property that day.
pub type DayFigures = BTreeMap<u32, DayList<DayNumbers>>;

/// A value as an index key: only strings, integers and booleans are indexed for equality.
/// Strings are shared, so cloning a key never allocates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IndexValue {
    Str(Arc<str>),
    Int(i64),
    Bool(bool),
}

/// A borrowed [`IndexValue`]: what lookups use, so that looking up an event's property value
/// allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueRef<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl<'a> ValueRef<'a> {
    /// The index key of a scalar value, or `None` for values answered by residual checks
    /// (floats, date-times) and for lists (whose elements are indexed separately).
    pub fn of(v: &'a Value) -> Option<ValueRef<'a>> {
        match v {
            Value::Str(s) => Some(ValueRef::Str(s)),
            Value::Int(i) => Some(ValueRef::Int(*i)),
            Value::Bool(b) => Some(ValueRef::Bool(*b)),
            Value::Float(_) | Value::Time(_) | Value::List(_) => None,
        }
    }
}

impl IndexValue {
    /// The index key of a scalar value (see [`ValueRef::of`]).
    pub fn of(v: &Value) -> Option<IndexValue> {
        ValueRef::of(v).map(|r| IndexValue::from(&r))
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            IndexValue::Str(s) => ValueRef::Str(s),
            IndexValue::Int(i) => ValueRef::Int(*i),
            IndexValue::Bool(b) => ValueRef::Bool(*b),
        }
    }
}

impl Hash for IndexValue {
    /// Hashes exactly as the borrowed form does, which lookups by [`ValueRef`] rely on.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state)
    }
}

impl Equivalent<IndexValue> for ValueRef<'_> {
    fn equivalent(&self, key: &IndexValue) -> bool {
        *self == key.as_ref()
    }
}

impl From<&ValueRef<'_>> for IndexValue {
    fn from(r: &ValueRef<'_>) -> Self {
        match *r {
            ValueRef::Str(s) => IndexValue::Str(s.into()),
            ValueRef::Int(i) => IndexValue::Int(i),
            ValueRef::Bool(b) => IndexValue::Bool(b),
        }
    }
}

/// Who has a trait, and who has each of its values.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TraitIndex {
    /// Customers who have the trait at all (`is set`).
    pub set: RoaringBitmap,
    /// Customers whose scalar value equals the key. Empty when the trait is unindexed.
    pub values: FastMap<IndexValue, RoaringBitmap>,
    /// Customers whose list value holds the key.
    pub elements: FastMap<IndexValue, RoaringBitmap>,
    /// The integer, float and date-time values, bit-sliced for orderings (`ranges.rs`). Kept for
    /// every trait, however many distinct values it has.
    pub ranges: Ranges,
}

/// Per UTC day, the customers with at least one matching event that day.
pub type DayBitmaps = BTreeMap<u32, RoaringBitmap>;

/// How many days one snapshot record of a property value's day bitmaps holds
/// ([`Family::EventProp`]): a checkpoint rewrites only the records of days that changed, and a
/// value seen on few customers a day would make a record per day mostly key and header.
pub const VALUE_CHUNK_DAYS: u32 = 16;

/// The snapshot record ("chunk") of a property value's day bitmaps that holds `day`.
pub fn value_chunk(day: u32) -> u32 {
    day / VALUE_CHUNK_DAYS
}

/// The snapshot records of one family changed since the last snapshot, by chunk (a day, or
/// [`value_chunk`]): a short list, since a write mostly touches the last day or two. Cheaper on
/// the ingest path than a set of changed families.
#[derive(Debug, Default, Clone)]
pub struct DirtyChunks(Vec<u32>);

impl DirtyChunks {
    /// Marks one chunk changed.
    #[inline]
    pub fn mark(&mut self, chunk: u32) {
        if self.0.last() != Some(&chunk) && !self.0.contains(&chunk) {
            self.0.push(chunk);
        }
    }

    /// Takes the chunks marked since the last call.
    pub fn take(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.0)
    }
}

/// Who did an event with one property value, per day; `dirty` marks the snapshot records (by
/// [`value_chunk`]) the next snapshot must write.
///
/// An open keeps a value's snapshot records as they were stored (slices of the mapped snapshot
/// file, their checksums verified) and the first reader decodes them ([`ValueDays::days`]): at 1M customers the decoded day bitmaps of every
/// value took several times their stored bytes, and most values are read by no rule of a
/// short-lived process. The first change decodes them for good.
#[derive(Debug, Default, Clone)]
pub struct ValueDays {
    days: DayBitmaps,
    dirty: DirtyChunks,
    /// The value's snapshot records, until its first change; `days` is empty meanwhile.
    stored: Option<Box<StoredDays>>,
}

/// A value's snapshot records, by chunk number, decoded on first read:
/// a chunk at a time for readers of some days, all together for a reader of the whole map.
#[derive(Debug, Clone)]
struct StoredDays {
    chunks: Vec<StoredChunk>,
    all: std::sync::OnceLock<DayBitmaps>,
}

#[derive(Debug, Clone)]
struct StoredChunk {
    stored: snapshot::HeldDays,
    decoded: std::sync::OnceLock<DayBitmaps>,
}

impl StoredChunk {
    fn days(&self) -> &DayBitmaps {
        self.decoded.get_or_init(|| self.stored.decode())
    }

    /// The chunk's days, decoded now unless a reader already did.
    fn into_days(self) -> DayBitmaps {
        self.decoded
            .into_inner()
            .unwrap_or_else(|| self.stored.decode())
    }
}

impl StoredDays {
    /// The chunks holding days of `first..=last`.
    fn between(&self, first: u32, last: u32) -> &[StoredChunk] {
        if first > last {
            return &[];
        }
        let (a, b) = (value_chunk(first), value_chunk(last));
        let from = self.chunks.partition_point(|c| c.stored.chunk() < a);
        let to = self.chunks.partition_point(|c| c.stored.chunk() <= b);
        &self.chunks[from..to]
    }
}

impl ValueDays {
    /// Who did the event with the value, per day (every stored chunk decoded).
    pub fn days(&self) -> &DayBitmaps {
        match &self.stored {
            // A chunk no reader decoded yet is decoded straight into the whole map, not kept twice.
            Some(s) => s.all.get_or_init(|| {
                let mut days = DayBitmaps::new();
                for c in &s.chunks {
                    match c.decoded.get() {
                        Some(read) => days.extend(read.iter().map(|(d, bm)| (*d, bm.clone()))),
                        None => days.extend(c.stored.decode()),
                    }
                }
                days
            }),
            None => &self.days,
        }
    }

    /// Who did the event with the value on day `day` (only that day's chunk decoded).
    #[inline]
    pub fn day(&self, day: u32) -> Option<&RoaringBitmap> {
        match &self.stored {
            Some(s) => s.between(day, day).first()?.days().get(&day),
            None => self.days.get(&day),
        }
    }

    /// Each day's set of `first..=last`, in day order (only the chunks of those days decoded).
    pub fn sets_in(&self, first: u32, last: u32) -> impl Iterator<Item = &RoaringBitmap> + '_ {
        let (own, chunks) = match &self.stored {
            Some(s) => (None, s.between(first, last)),
            None => (Some(&self.days), &[][..]),
        };
        let own = own
            .filter(|_| first <= last)
            .into_iter()
            .flat_map(move |m| m.range(first..=last));
        let stored = chunks
            .iter()
            .flat_map(move |c| c.days().range(first..=last));
        own.chain(stored).map(|(_, bm)| bm)
    }

    /// The days to change (decoding the stored records first).
    pub fn days_mut(&mut self) -> &mut DayBitmaps {
        if let Some(s) = self.stored.take() {
            let StoredDays { chunks, all } = *s;
            self.days = match all.into_inner() {
                Some(days) => days,
                None => {
                    let mut days = DayBitmaps::new();
                    for c in chunks {
                        days.extend(c.into_days());
                    }
                    days
                }
            };
        }
        &mut self.days
    }

    /// The snapshot record of chunk `chunk` the value was loaded from, while no change has been
    /// made to it (read or not): `Some(None)` when no record holds days of that chunk, `None`
    /// once the value has changed (or was never loaded from records).
    pub(crate) fn stored_chunk(&self, chunk: u32) -> Option<Option<&snapshot::HeldDays>> {
        let s = self.stored.as_ref()?;
        // In chunk order, as `hold_chunk` keeps them.
        let at = s.chunks.binary_search_by_key(&chunk, |c| c.stored.chunk());
        Some(at.ok().map(|i| &s.chunks[i].stored))
    }

    /// Keeps one snapshot record of the value for its first reader.
    pub(crate) fn hold_chunk(&mut self, days: snapshot::HeldDays) {
        if self.stored.is_none() && !self.days.is_empty() {
            self.days.extend(days.decode());
            return;
        }
        let stored = self.stored.get_or_insert_with(|| {
            Box::new(StoredDays {
                chunks: Vec::new(),
                all: std::sync::OnceLock::new(),
            })
        });
        stored.all = std::sync::OnceLock::new();
        let place = stored
            .chunks
            .partition_point(|c| c.stored.chunk() < days.chunk());
        stored.chunks.insert(
            place,
            StoredChunk {
                stored: days,
                decoded: std::sync::OnceLock::new(),
            },
        );
    }

    /// Whether the value's records are still held as stored, not yet decoded (for tests of what
    /// an open reads).
    pub fn is_held_encoded(&self) -> bool {
        self.stored.as_ref().is_some_and(|s| {
            s.all.get().is_none() && s.chunks.iter().all(|c| c.decoded.get().is_none())
        })
    }
}

impl PartialEq for ValueDays {
    fn eq(&self, other: &Self) -> bool {
        self.days() == other.days()
    }
}

/// Who did an event, per day, overall and per indexed property value; and the event's per-day
/// rollups.
#[derive(Debug, Default, Clone)]
pub struct EventIndex {
    pub days: DayBitmaps,
    /// The days whose bitmap changed since the last snapshot (one record per day).
    days_dirty: DirtyChunks,
    pub props: FastMap<u32, FastMap<IndexValue, ValueDays>>,
    /// Per day, each customer's count (who is in a day's list is who is in its bitmap).
    pub counts: DayCounts,
    /// Per numeric property with rollups, per day, each customer's numbers.
    pub numbers: FastMap<u32, DayFigures>,
    /// Runs of days of `counts` merged, built by readers (key 0).
    pub count_runs: Runs<DayCount>,
    /// Runs of days of `numbers` merged, built by readers (keyed by property).
    pub number_runs: Runs<DayNumbers>,
    /// Unions of aligned runs of `days`, kept by readers of long windows (`presence.rs`).
    pub presence_runs: PresenceRuns,
    /// Per (property, day), the string values of the day's events, built by readers (`texts.rs`).
    pub texts: Texts,
    /// Per day, the day's events as columns of customers, times and property values, built by
    /// readers (`columns.rs`).
    pub columns: Columns,
    /// Per (property, run of whole days), each value's customers, built by `top` and
    /// `recommend` (`unions.rs`).
    pub unions: ValueUnions,
    /// Each customer's count over a window's whole days, kept by readers (`totals.rs`).
    pub count_totals: totals::KeptTotals<DayCount>,
    /// Each customer's numbers over a window's whole days, per property, kept by readers.
    pub number_totals: totals::KeptTotals<DayNumbers>,
    /// An upper bound of the stored events' times: no event of this kind is later. Raised by
    /// every event added and by every count list loaded (to the end of its last span), never
    /// lowered (a deleted event leaves it as it was); 0 before any. Not stored: found again as
    /// the lists load. While it is at or before *now*, no event lies after *now*, not even in
    /// the two-second span holding it.
    pub latest: Timestamp,
}

impl PartialEq for EventIndex {
    fn eq(&self, other: &Self) -> bool {
        self.days == other.days
            && self.props == other.props
            && self.counts == other.counts
            && self.numbers == other.numbers
    }
}

/// All indexes of one database.
#[derive(Debug, Clone)]
pub struct Indexes {
    /// Every known customer: every id seen in a profile or an event.
    pub everyone: RoaringBitmap,
    /// Customers with a stored profile.
    pub profiles: RoaringBitmap,
    traits: FastMap<u32, TraitIndex>,
    events: FastMap<u32, EventIndex>,
    /// Traits with more distinct values than the bound: only `set` is kept for them.
    unindexed_traits: FastSet<u32>,
    /// (event, property) pairs with more distinct values than the bound.
    unindexed_props: FastSet<(u32, u32)>,
    /// The most distinct values a trait or an (event, property) may have and stay indexed.
    value_bound: usize,
    /// Numeric (event, property) pairs that came after their event had `rollup_bound` rolled-up
    /// properties: they have no rollups.
    unrolled_props: FastSet<(u32, u32)>,
    /// The most numeric properties of one event that get rollups.
    rollup_bound: usize,
    /// The snapshot layout version the loaded snapshot declared (`None`: none loaded, or one
    /// older than the version record).
    loaded_version: Option<u32>,
    /// Families changed since the last snapshot.
    changed: FastSet<Family>,
    /// The customers whose trait entries may differ from the stored trait families: the stored
    /// trait patch and every customer whose traits changed since (`snapshot.rs`).
    trait_patch: RoaringBitmap,
    /// The traits that may have a stored family (loaded, or written whole by this process).
    stored_traits: FastSet<u32>,
    /// Whether the next snapshot must write every trait family whole (a write of them failed).
    rewrite_traits: bool,
    /// The string values of unindexed traits, built by readers; every profile change makes them
    /// stale (`texts.rs`).
    profile_texts: ProfileTexts,
    /// Per split name, each bucket's customers, built by readers (`buckets.rs`).
    bucket_splits: BucketSplits,
}

impl PartialEq for Indexes {
    /// Equal content; the change tracking is not content.
    fn eq(&self, other: &Self) -> bool {
        self.everyone == other.everyone
            && self.profiles == other.profiles
            && self.traits == other.traits
            && self.events == other.events
            && self.unindexed_traits == other.unindexed_traits
            && self.unindexed_props == other.unindexed_props
            && self.unrolled_props == other.unrolled_props
    }
}

/// Adds `ids`, strictly ascending, to `bm` in one pass when they are all above its largest
/// member, else as a union. Building a bitmap of many members one `try_push` at a time costs a
/// scan of the last container's words per push once that container is dense (roaring finds a
/// bitmap container's largest member by scanning from its end), so loops that find members in
/// order collect them and add them here.
pub fn add_ascending(bm: &mut RoaringBitmap, ids: &[u32]) {
    let Some(&first) = ids.first() else {
        return;
    };
    debug_assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not ascending");
    if bm.max().is_none_or(|max| max < first) && bm.append(ids.iter().copied()).is_ok() {
        return;
    }
    // Unordered ids (never given by this crate) are still added, one by one.
    match RoaringBitmap::from_sorted_iter(ids.iter().copied()) {
        Ok(more) => *bm |= more,
        Err(_) => bm.extend(ids.iter().copied()),
    }
}

/// The entry under `key`, created empty if missing; allocates only when it is created.
fn slot<'m, V: Default>(
    map: &'m mut FastMap<IndexValue, V>,
    key: ValueRef<'_>,
) -> (&'m IndexValue, &'m mut V) {
    if !map.contains_key(&key) {
        map.insert(IndexValue::from(&key), V::default());
    }
    map.get_key_value_mut(&key)
        .expect("present: inserted above if missing")
}

fn add_to(map: &mut FastMap<IndexValue, RoaringBitmap>, key: ValueRef<'_>, cust: u32) {
    insert(slot(map, key).1, cust);
}

/// Inserts `cust`, cheaply when it is the largest so far (ingest mostly appends new customers).
/// Returns whether it was new.
#[inline]
fn insert(bm: &mut RoaringBitmap, cust: u32) -> bool {
    bm.try_push(cust).is_ok() || bm.insert(cust)
}

/// Removes `cust` from the bitmap under `key`, dropping the bitmap once it is empty, so that an
/// incrementally maintained index equals one rebuilt from scratch.
fn remove_from(map: &mut FastMap<IndexValue, RoaringBitmap>, key: ValueRef<'_>, cust: u32) {
    if let Some(bm) = map.get_mut(&key) {
        bm.remove(cust);
        if bm.is_empty() {
            map.remove(&key);
        }
    }
}

fn remove_from_day(days: &mut DayBitmaps, day: u32, cust: u32) {
    if let Some(bm) = days.get_mut(&day) {
        bm.remove(cust);
        if bm.is_empty() {
            days.remove(&day);
        }
    }
}

impl Indexes {
    /// Empty indexes that stop indexing a field's values past `value_bound` distinct values, with
    /// rollups for [`DEFAULT_ROLLUP_BOUND`] numeric properties per event.
    pub fn new(value_bound: usize) -> Self {
        Indexes::with_bounds(value_bound, DEFAULT_ROLLUP_BOUND)
    }

    /// Empty indexes with both bounds: values per field, and numeric properties per event with
    /// rollups.
    pub fn with_bounds(value_bound: usize, rollup_bound: usize) -> Self {
        Indexes {
            everyone: RoaringBitmap::new(),
            profiles: RoaringBitmap::new(),
            traits: FastMap::default(),
            events: FastMap::default(),
            unindexed_traits: FastSet::default(),
            unindexed_props: FastSet::default(),
            value_bound,
            unrolled_props: FastSet::default(),
            rollup_bound,
            loaded_version: None,
            changed: FastSet::default(),
            trait_patch: RoaringBitmap::new(),
            stored_traits: FastSet::default(),
            rewrite_traits: false,
            profile_texts: ProfileTexts::default(),
            bucket_splits: BucketSplits::default(),
        }
    }

    /// Empty indexes with the same bound and the same unindexed fields as `self`: what a rebuild
    /// from stored data starts from, so that it reaches the same state as live maintenance.
    pub fn empty_like(&self) -> Self {
        let mut fresh = Indexes::with_bounds(self.value_bound, self.rollup_bound);
        fresh.unindexed_traits = self.unindexed_traits.clone();
        fresh.unindexed_props = self.unindexed_props.clone();
        fresh.unrolled_props = self.unrolled_props.clone();
        fresh
    }

    /// Whether the loaded snapshot (if any) has this build's layout: when it does not, the
    /// indexes must be rebuilt from stored data.
    pub fn snapshot_is_current(&self, loaded_anything: bool) -> bool {
        !loaded_anything || self.loaded_version == Some(SNAPSHOT_VERSION)
    }

    /// Whether an (event, numeric property) pair has per-day rollups (a pair never seen with a
    /// number has empty ones).
    pub fn prop_rolled_up(&self, event_id: u32, prop_id: u32) -> bool {
        !self.unrolled_props.contains(&(event_id, prop_id))
    }

    /// Rollup entries held (counts, numbers) and their bytes, for reports.
    pub fn rollup_stats(&self) -> (usize, usize, usize) {
        let (mut counts, mut numbers, mut bytes) = (0, 0, 0);
        for ei in self.events.values() {
            for l in ei.counts.values() {
                counts += l.len();
                bytes += l.heap_bytes();
            }
            for l in ei.numbers.values().flat_map(|d| d.values()) {
                numbers += l.len();
                bytes += l.heap_bytes();
            }
        }
        (counts, numbers, bytes)
    }

    pub fn value_bound(&self) -> usize {
        self.value_bound
    }

    /// The string values of unindexed traits, as far as readers have built them.
    pub fn profile_texts(&self) -> &ProfileTexts {
        &self.profile_texts
    }

    /// Each split's buckets, as far as readers have built them.
    pub fn bucket_splits(&self) -> &BucketSplits {
        &self.bucket_splits
    }

    pub fn trait_index(&self, trait_id: u32) -> Option<&TraitIndex> {
        self.traits.get(&trait_id)
    }

    pub fn event_index(&self, event_id: u32) -> Option<&EventIndex> {
        self.events.get(&event_id)
    }

    /// Whether equality on this trait can be answered from bitmaps.
    pub fn trait_values_indexed(&self, trait_id: u32) -> bool {
        !self.unindexed_traits.contains(&trait_id)
    }

    /// Whether equality on this event property can be answered from bitmaps.
    pub fn prop_values_indexed(&self, event_id: u32, prop_id: u32) -> bool {
        !self.unindexed_props.contains(&(event_id, prop_id))
    }

    /// Records that a customer exists.
    pub fn add_customer(&mut self, cust: u32) {
        if self.everyone.insert(cust) {
            self.changed.insert(Family::Everyone);
        }
    }

    /// Adds a customer's profile (its traits) to the indexes.
    pub fn add_profile(&mut self, cust: u32, traits: &[(u32, Value)]) {
        self.profile_texts.changed();
        self.add_customer(cust);
        insert(&mut self.trait_patch, cust);
        if self.profiles.insert(cust) {
            self.changed.insert(Family::Profiles);
        }
        let mut out = batch::Outcome::default();
        for (t, v) in traits {
            batch::add_trait(
                &mut self.traits,
                &mut self.unindexed_traits,
                &mut out,
                self.value_bound,
                cust,
                *t,
                v,
            );
        }
        self.changed.extend(out.changed);
    }

    /// Removes a customer's profile, given the traits that were indexed for it.
    pub fn remove_profile(&mut self, cust: u32, traits: &[(u32, Value)]) {
        self.profile_texts.changed();
        self.trait_patch.insert(cust);
        if self.profiles.remove(cust) {
            self.changed.insert(Family::Profiles);
        }
        let mut changed = Vec::new();
        for (t, v) in traits {
            batch::remove_trait(&mut self.traits, &mut changed, cust, *t, v);
        }
        self.changed.extend(changed);
    }

    /// Adds one event of a customer (what [`Indexes::apply`] does for a whole write).
    pub fn add_event(&mut self, cust: u32, e: &StoredEvent) {
        self.add_customer(cust);
        let ei = self.events.entry(e.event).or_default();
        ei.latest = ei.latest.max(e.ts);
        let group = [(cust, e)];
        batch::add_days(&mut ei.days, &mut ei.days_dirty, &mut ei.counts, &group);
        let mut out = batch::Outcome::default();
        batch::add_numbers(
            e.event,
            &mut ei.numbers,
            &self.unrolled_props,
            self.rollup_bound,
            &group,
            &mut out,
        );
        batch::add_values(
            e.event,
            &mut ei.props,
            &self.unindexed_props,
            self.value_bound,
            &group,
            &mut out,
        );
        self.changed.extend(out.changed);
        self.unindexed_props.extend(out.unindexed);
        self.unrolled_props.extend(out.unrolled);
    }

    /// Removes all of a customer's events, given those events: used when the customer is deleted,
    /// so every day bit they set goes.
    pub fn remove_events(&mut self, cust: u32, events: &[StoredEvent]) {
        for e in events {
            let Some(ei) = self.events.get_mut(&e.event) else {
                continue;
            };
            let day = day_of(e.ts);
            remove_from_day(&mut ei.days, day, cust);
            self.changed.insert(Family::EventDays(e.event, day));
            if let Some(list) = ei.counts.get_mut(&day) {
                if list.remove(cust) {
                    self.changed.insert(Family::DayCounts(e.event, day));
                }
                if list.is_empty() {
                    ei.counts.remove(&day);
                }
            }
            for (p, v) in &e.props {
                if !matches!(v, Value::Int(_) | Value::Float(_)) {
                    continue;
                }
                let Some(figures) = ei.numbers.get_mut(p) else {
                    continue;
                };
                if let Some(list) = figures.get_mut(&day) {
                    if list.remove(cust) {
                        self.changed.insert(Family::DayNumbers(e.event, *p, day));
                    }
                    if list.is_empty() {
                        figures.remove(&day);
                    }
                }
                if figures.is_empty() {
                    ei.numbers.remove(p);
                }
            }
            for (p, v) in &e.props {
                let (Some(values), Some(k)) = (ei.props.get_mut(p), IndexValue::of(v)) else {
                    continue;
                };
                if let Some(vd) = values.get_mut(&k.as_ref()) {
                    remove_from_day(vd.days_mut(), day, cust);
                    if vd.days().is_empty() {
                        values.remove(&k.as_ref());
                    }
                }
                if values.is_empty() {
                    ei.props.remove(p);
                }
                self.changed
                    .insert(Family::EventProp(e.event, *p, k, value_chunk(day)));
            }
            if ei.days.is_empty() && ei.props.is_empty() && ei.numbers.is_empty() {
                self.events.remove(&e.event);
            }
        }
    }

    /// Removes the customer from `everyone`: the last step of deleting them.
    pub fn remove_customer(&mut self, cust: u32) {
        if self.everyone.remove(cust) {
            self.changed.insert(Family::Everyone);
        }
    }

    /// Removes every bit of the given customers from every bitmap, whatever their data was. Slow
    /// (it visits every bitmap), for crash recovery, where the old data is not known.
    pub fn purge(&mut self, custs: &RoaringBitmap) {
        let mut changed = Vec::new();
        self.profile_texts.changed();
        self.everyone -= custs;
        self.profiles -= custs;
        self.purge_traits(custs);
        self.events.retain(|e, ei| {
            ei.days.retain(|day, bm| {
                let before = bm.len();
                *bm -= custs;
                if bm.len() != before {
                    changed.push(Family::EventDays(*e, *day));
                }
                !bm.is_empty()
            });
            ei.counts.retain(|day, list| {
                if list.remove_where(|c| custs.contains(c)) {
                    changed.push(Family::DayCounts(*e, *day));
                }
                !list.is_empty()
            });
            ei.numbers.retain(|p, figures| {
                figures.retain(|day, list| {
                    if list.remove_where(|c| custs.contains(c)) {
                        changed.push(Family::DayNumbers(*e, *p, *day));
                    }
                    !list.is_empty()
                });
                !figures.is_empty()
            });
            ei.props.retain(|p, values| {
                values.retain(|k, vd| {
                    let mut dirty = std::mem::take(&mut vd.dirty);
                    vd.days_mut().retain(|day, bm| {
                        let before = bm.len();
                        *bm -= custs;
                        if bm.len() != before {
                            dirty.mark(value_chunk(*day));
                        }
                        !bm.is_empty()
                    });
                    // A value gone altogether: its records are removed by the next snapshot.
                    for c in dirty.take() {
                        changed.push(Family::EventProp(*e, *p, k.clone(), c));
                    }
                    !vd.days().is_empty()
                });
                !values.is_empty()
            });
            !(ei.days.is_empty() && ei.props.is_empty() && ei.numbers.is_empty())
        });
        self.changed.extend(changed);
        self.changed.insert(Family::Everyone);
        self.changed.insert(Family::Profiles);
    }

    /// Takes the given customers out of every trait's bitmaps and range index (for a purge, and
    /// before the trait patch adds them back from their profiles).
    pub fn purge_traits(&mut self, custs: &RoaringBitmap) {
        let mut changed = Vec::new();
        self.profile_texts.changed();
        self.trait_patch |= custs;
        self.traits.retain(|t, ti| {
            ti.set -= custs;
            for map in [&mut ti.values, &mut ti.elements] {
                map.retain(|_, bm| {
                    *bm -= custs;
                    !bm.is_empty()
                });
            }
            ti.ranges.purge(custs);
            changed.push(Family::Trait(*t));
            !(ti.set.is_empty() && ti.values.is_empty() && ti.elements.is_empty())
        });
        self.changed.extend(changed);
    }

    /// The number of bitmaps held, for reports.
    pub fn bitmap_count(&self) -> usize {
        2 + self
            .traits
            .values()
            .map(|t| 1 + t.values.len() + t.elements.len())
            .sum::<usize>()
            + self
                .events
                .values()
                .map(|e| {
                    e.days.len()
                        + e.props
                            .values()
                            .flat_map(|v| v.values())
                            .map(|d| d.days().len())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Describes the first differences between two indexes, for `verify`. Empty when equal.
    pub fn differences(&self, other: &Indexes) -> Vec<String> {
        let mut out = Vec::new();
        if self.everyone != other.everyone {
            out.push(format!(
                "everyone: {} vs {} customers",
                self.everyone.len(),
                other.everyone.len()
            ));
        }
        if self.profiles != other.profiles {
            out.push(format!(
                "profiles: {} vs {} customers",
                self.profiles.len(),
                other.profiles.len()
            ));
        }
        let trait_ids: FastSet<&u32> = self.traits.keys().chain(other.traits.keys()).collect();
        for t in trait_ids {
            if self.traits.get(t) != other.traits.get(t) {
                out.push(format!("trait #{t}: value bitmaps or range index differ"));
            }
        }
        let event_ids: FastSet<&u32> = self.events.keys().chain(other.events.keys()).collect();
        for e in event_ids {
            let (a, b) = (self.events.get(e), other.events.get(e));
            if a.map(|x| &x.days) != b.map(|x| &x.days) {
                out.push(format!("event #{e}: day bitmaps differ"));
            }
            if a.map(|x| &x.props) != b.map(|x| &x.props) {
                out.push(format!("event #{e}: property bitmaps differ"));
            }
            if a.map(|x| &x.counts) != b.map(|x| &x.counts) {
                out.push(format!("event #{e}: per-day count rollups differ"));
            }
            if a.map(|x| &x.numbers) != b.map(|x| &x.numbers) {
                out.push(format!("event #{e}: per-day numeric rollups differ"));
            }
        }
        if self.unindexed_traits != other.unindexed_traits
            || self.unindexed_props != other.unindexed_props
            || self.unrolled_props != other.unrolled_props
        {
            out.push("the sets of unindexed fields differ".into());
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Adding ascending ids equals inserting them one by one, whether they come after the
        /// bitmap's members or among them, in sparse and in dense containers.
        #[test]
        fn adding_ascending_ids_equals_inserting_each(
            before in proptest::collection::btree_set(0u32..200_000, 0..6000),
            ids in proptest::collection::btree_set(0u32..200_000, 0..6000),
            above in any::<bool>(),
        ) {
            let mut bm: RoaringBitmap = before.iter().copied().collect();
            let shift = if above { bm.max().map_or(0, |m| m + 1) } else { 0 };
            let ids: Vec<u32> = ids.iter().map(|i| i + shift).collect();
            let mut expected = bm.clone();
            expected.extend(ids.iter().copied());
            add_ascending(&mut bm, &ids);
            prop_assert_eq!(bm, expected);
        }
    }

    #[test]
    fn adding_a_dense_run_after_the_members_appends_it() {
        let mut bm: RoaringBitmap = (0..10).collect();
        let ids: Vec<u32> = (10..70_000).step_by(3).collect();
        add_ascending(&mut bm, &ids);
        assert_eq!(bm.len(), 10 + ids.len() as u64);
        assert!(ids.iter().all(|&i| bm.contains(i)));
        add_ascending(&mut bm, &[]);
        assert_eq!(bm.len(), 10 + ids.len() as u64);
    }
}
