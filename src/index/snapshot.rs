//! The on-disk snapshot of the indexes, cut into families so that a checkpoint rewrites only what
//! changed: everyone, profiles, the unindexed-field lists, one family per trait, one per (event,
//! day) of day bitmaps, one per (event, property, value, [`VALUE_CHUNK_DAYS`] days), one per
//! (event, day) of count rollups and one per (event, property, day) of numeric rollups; the trait
//! patch; and a record of the layout's version. A family is LZ4-compressed when that pays; a
//! bitmap is stored as id gaps or in the portable Roaring format, whichever is shorter.
//! Everything is validated when read.
//!
//! Trait families are not cut: a trait's range index is 64 bit slices over every customer who
//! has it, and a stream's trait updates land all over the id space. Instead a checkpoint that
//! changed traits writes the *trait patch*: the customers whose trait entries may differ from the
//! stored trait families (every customer whose profile changed since they were last written
//! whole). An open loads the families, takes those customers out of every trait and adds them
//! back from their stored profiles. Once the patch holds more than [`trait_patch_limit`]
//! customers (or the unindexed traits changed) the checkpoint writes every trait family whole
//! and drops the patch; so does the last checkpoint before a close
//! ([`Indexes::closing`]) once it holds more than [`close_patch_limit`], since every later open
//! would read that many profiles again.

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::held::{HeldBody, MAX_FAMILY_BYTES};
use super::rollup::{
    get_counts, get_numbers, put_counts, put_numbers, stored_counts, stored_numbers, DayCount,
    DayList, DayNumbers, SPAN_UNIT_MS,
};
use super::{
    value_chunk, DayBitmaps, IndexValue, Indexes, Ranges, Slices, TraitIndex, ValueDays,
    VALUE_CHUNK_DAYS,
};
use crate::error::{corrupt, Result};
use crate::model::time::day_start;
use crate::model::{FastMap, FastSet};
use crate::storage::codec::{self, put_varint, Reader};

/// The layout of the snapshot families. A snapshot of another version (or of none: written
/// before the version record existed) is not loaded: the indexes are rebuilt from stored data.
/// 2: per-day count and numeric rollups.
/// 3: sets as id gaps when shorter than Roaring, compact rollup entries, LZ4 per family.
/// 4: each trait's range index (bit-sliced integers, floats and date-times) in its family.
/// 5: event day bitmaps one record per (event, day), property value day bitmaps one per
/// (event, property, value, 16 days), and the trait patch: a checkpoint writes about what
/// changed, not every family a write touched whole.
pub const SNAPSHOT_VERSION: u32 = 5;

/// The most customers the trait patch holds before a checkpoint writes the trait families whole:
/// a thirty-second of the customers, at least 4,096. An open recomputes that many customers'
/// traits from their profiles.
pub fn trait_patch_limit(customers: u64) -> u64 {
    (customers / 32).max(4096)
}

/// The most customers the trait patch keeps past a close: the last checkpoint before a close
/// writes the trait families whole when the patch holds more ([`Indexes::closing`]). A
/// thousand-and-twenty-fourth of the customers, at least 1,024: an open then reads at most that
/// many profiles again (about 8 ms at 1M customers, against 0.15–0.25 s for the 20,000 an
/// import's last checkpoint may leave under [`trait_patch_limit`]), and a close that changed a
/// few profiles (a one-shot `track` or `identify`) still writes only them.
pub fn close_patch_limit(customers: u64) -> u64 {
    (customers / 1024).max(1024)
}

/// A unit of the snapshot: one stored record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Family {
    /// The snapshot layout version.
    Version,
    Everyone,
    Profiles,
    Unindexed,
    Trait(u32),
    /// The customers whose trait entries may differ from the stored trait families.
    TraitPatch,
    /// Day bitmaps of (event, day).
    EventDays(u32, u32),
    /// Day bitmaps of (event, property, value) for the days of one chunk (`value_chunk`).
    EventProp(u32, u32, IndexValue, u32),
    /// Count rollups of (event, day).
    DayCounts(u32, u32),
    /// Numeric rollups of (event, property, day).
    DayNumbers(u32, u32, u32),
}

fn put_index_value(out: &mut Vec<u8>, v: &IndexValue) {
    match v {
        IndexValue::Str(s) => {
            out.push(0);
            out.extend_from_slice(s.as_bytes());
        }
        IndexValue::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        IndexValue::Bool(b) => out.push(if *b { 3 } else { 2 }),
    }
}

fn get_index_value(bytes: &[u8]) -> Result<IndexValue> {
    match bytes.split_first() {
        Some((0, s)) => Ok(IndexValue::Str(
            std::str::from_utf8(s)
                .map_err(|_| corrupt!("index value is not UTF-8"))?
                .into(),
        )),
        Some((1, i)) if i.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(i);
            Ok(IndexValue::Int(i64::from_be_bytes(a)))
        }
        Some((2, [])) => Ok(IndexValue::Bool(false)),
        Some((3, [])) => Ok(IndexValue::Bool(true)),
        _ => Err(corrupt!("bad index value key")),
    }
}

fn be_u32(bytes: &[u8]) -> Result<u32> {
    let a: [u8; 4] = bytes
        .try_into()
        .map_err(|_| corrupt!("bad index family key"))?;
    Ok(u32::from_be_bytes(a))
}

impl Family {
    /// The family's key, below the snapshot prefix.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(16);
        match self {
            Family::Version => k.push(b'S'),
            Family::Everyone => k.push(b'A'),
            Family::Profiles => k.push(b'P'),
            Family::Unindexed => k.push(b'U'),
            Family::Trait(t) => {
                k.push(b'T');
                k.extend_from_slice(&t.to_be_bytes());
            }
            Family::TraitPatch => k.push(b'R'),
            Family::EventDays(e, d) => {
                k.push(b'D');
                k.extend_from_slice(&e.to_be_bytes());
                k.extend_from_slice(&d.to_be_bytes());
            }
            Family::EventProp(e, p, v, c) => {
                k.push(b'V');
                k.extend_from_slice(&e.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
                k.extend_from_slice(&c.to_be_bytes());
                put_index_value(&mut k, v);
            }
            Family::DayCounts(e, d) => {
                k.push(b'C');
                k.extend_from_slice(&e.to_be_bytes());
                k.extend_from_slice(&d.to_be_bytes());
            }
            Family::DayNumbers(e, p, d) => {
                k.push(b'N');
                k.extend_from_slice(&e.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
                k.extend_from_slice(&d.to_be_bytes());
            }
        }
        k
    }

    /// Parses a key written by [`Family::key`].
    pub fn from_key(k: &[u8]) -> Result<Family> {
        Ok(match k.split_first() {
            Some((b'S', [])) => Family::Version,
            Some((b'A', [])) => Family::Everyone,
            Some((b'P', [])) => Family::Profiles,
            Some((b'U', [])) => Family::Unindexed,
            Some((b'T', rest)) => Family::Trait(be_u32(rest)?),
            Some((b'R', [])) => Family::TraitPatch,
            Some((b'D', rest)) if rest.len() == 8 => {
                Family::EventDays(be_u32(&rest[..4])?, be_u32(&rest[4..])?)
            }
            Some((b'V', rest)) if rest.len() > 12 => Family::EventProp(
                be_u32(&rest[..4])?,
                be_u32(&rest[4..8])?,
                get_index_value(&rest[12..])?,
                be_u32(&rest[8..12])?,
            ),
            Some((b'C', rest)) if rest.len() == 8 => {
                Family::DayCounts(be_u32(&rest[..4])?, be_u32(&rest[4..])?)
            }
            Some((b'N', rest)) if rest.len() == 12 => Family::DayNumbers(
                be_u32(&rest[..4])?,
                be_u32(&rest[4..8])?,
                be_u32(&rest[8..])?,
            ),
            _ => return Err(corrupt!("unknown index family key {k:?}")),
        })
    }
}

/// A set stored as its ids: a count, then the first id and the gaps to each next one, varints.
const SET_IDS: u8 = 0;
/// A set stored in the portable Roaring format, length-prefixed.
const SET_ROARING: u8 = 1;

/// Appends a set of customers in whichever of the two encodings is shorter: most day bitmaps
/// hold a few customers spread over the id space, where the gaps take under 2 bytes per customer
/// and Roaring's container headers about 3.
fn put_bitmap(out: &mut Vec<u8>, bm: &RoaringBitmap) {
    let at = out.len();
    let roaring = bm.serialized_size();
    // Each id takes at least a byte: a set with more ids than Roaring's bytes is Roaring's.
    if bm.len() < roaring as u64 {
        out.push(SET_IDS);
        put_varint(out, bm.len());
        let mut prev = 0u32;
        for id in bm {
            put_varint(out, u64::from(id - prev));
            prev = id;
        }
        if out.len() - at <= roaring {
            return;
        }
        out.truncate(at);
    }
    out.push(SET_ROARING);
    put_varint(out, roaring as u64);
    // Writing to a Vec cannot fail.
    let _ = bm.serialize_into(&mut *out);
}

fn get_bitmap(r: &mut Reader<'_>) -> Result<RoaringBitmap> {
    match r.byte()? {
        SET_IDS => {
            let n = r.len()?;
            SET_SCRATCH.with(|cell| {
                let scratch = &mut *cell.borrow_mut();
                read_ids(r, n, &mut scratch.ids)?;
                if n < BULK_IDS {
                    let mut bm = RoaringBitmap::new();
                    super::add_ascending(&mut bm, &scratch.ids);
                    Ok(bm)
                } else {
                    in_bulk(scratch)
                }
            })
        }
        SET_ROARING => {
            let n = r.len()?;
            RoaringBitmap::deserialize_from(r.take(n)?).map_err(|e| corrupt!("bad bitmap: {e}"))
        }
        _ => Err(corrupt!("bad bitmap encoding")),
    }
}

/// From this many ids on, a set stored as ids is built a container at a time ([`in_bulk`])
/// rather than added as a list: below it the portable image costs more than the appends it saves.
const BULK_IDS: usize = 256;

/// Ids at most this many to a container of 2^16 are a sorted array in Roaring's format, more a
/// bitmap of 2^16 bits.
const ARRAY_MAX: usize = 4096;

/// The portable Roaring format's first word for sets without run containers.
const COOKIE_NO_RUNS: u32 = 12346;

/// What reading a set stored as ids uses, kept between calls on each thread.
#[derive(Default)]
struct SetScratch {
    /// The set's ids, ascending.
    ids: Vec<u32>,
    /// Each run of ids with the same upper 16 bits: its key and where it lies in `ids`.
    containers: Vec<(u16, std::ops::Range<usize>)>,
    /// The set in Roaring's portable format.
    image: Vec<u8>,
}

thread_local! {
    static SET_SCRATCH: std::cell::RefCell<SetScratch> = std::cell::RefCell::default();
}

/// Reads `n` ids stored as the first id and the gaps to each next one into `ids`, refusing an id
/// not above the last (a zero gap after the first id) and one past `u32`.
fn read_ids(r: &mut Reader<'_>, n: usize, ids: &mut Vec<u32>) -> Result<()> {
    ids.clear();
    ids.reserve(n);
    walk_ids(r, n, |id| ids.push(id))
}

/// Reads `n` ids stored as [`read_ids`] says, handing each to `f`.
fn walk_ids(r: &mut Reader<'_>, n: usize, mut f: impl FnMut(u32)) -> Result<()> {
    let mut prev = 0u32;
    for i in 0..n {
        let gap = r.u32()?;
        if gap == 0 && i > 0 {
            return Err(corrupt!("bad bitmap: ids out of order"));
        }
        prev = prev
            .checked_add(gap)
            .ok_or_else(|| corrupt!("bad bitmap: id out of range"))?;
        f(prev);
    }
    Ok(())
}

/// Builds the set of `scratch.ids` (ascending, as [`read_ids`] leaves them) a container at a
/// time: the ids are laid out in the portable Roaring format (one array or bitmap per 2^16 ids)
/// and handed to roaring whole, which copies each container in one piece instead of taking its
/// ids one by one.
fn in_bulk(scratch: &mut SetScratch) -> Result<RoaringBitmap> {
    let SetScratch {
        ids,
        containers,
        image,
    } = scratch;
    containers.clear();
    let mut start = 0;
    while start < ids.len() {
        let key = ids[start] >> 16;
        let end = start + ids[start..].partition_point(|&id| id >> 16 == key);
        containers.push((key as u16, start..end));
        start = end;
    }
    image.clear();
    image.extend_from_slice(&COOKIE_NO_RUNS.to_le_bytes());
    image.extend_from_slice(&(containers.len() as u32).to_le_bytes());
    for (key, range) in containers.iter() {
        image.extend_from_slice(&key.to_le_bytes());
        image.extend_from_slice(&((range.len() - 1) as u16).to_le_bytes());
    }
    // The offsets, which a reader into memory skips.
    image.resize(image.len() + 4 * containers.len(), 0);
    for (_, range) in containers.iter() {
        let part = &ids[range.clone()];
        if part.len() <= ARRAY_MAX {
            for &id in part {
                image.extend_from_slice(&(id as u16).to_le_bytes());
            }
        } else {
            let at = image.len();
            image.resize(at + 8192, 0);
            for &id in part {
                let low = (id & 0xffff) as usize;
                image[at + low / 8] |= 1 << (low % 8);
            }
        }
    }
    // Laid out above from ascending ids, the image is a valid set.
    RoaringBitmap::deserialize_unchecked_from(&image[..]).map_err(|e| corrupt!("bad bitmap: {e}"))
}

/// Wraps an encoded family: LZ4-compressed when that saves at least an eighth, else as is
/// ([`codec::pack`]).
fn pack_family(body: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(body.len() + 1);
    tagged.push(0);
    tagged.extend_from_slice(body);
    codec::pack(tagged)
}

/// The encoded family inside a record written by [`pack_family`].
fn unpack_family(record: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    codec::unpack(record, "index family", MAX_FAMILY_BYTES)
}

/// The day bitmaps of one chunk of days: a count, then per day its number and bitmap. `None`
/// when the chunk holds no day.
fn put_days(out: &mut Vec<u8>, days: &DayBitmaps, chunk: u32) -> Option<()> {
    let first = chunk.checked_mul(VALUE_CHUNK_DAYS)?;
    let in_chunk = days
        .range(first..)
        .take_while(|(d, _)| value_chunk(**d) == chunk);
    let n = in_chunk.clone().count();
    if n == 0 {
        return None;
    }
    put_varint(out, n as u64);
    for (day, bm) in in_chunk {
        put_varint(out, u64::from(*day));
        put_bitmap(out, bm);
    }
    Some(())
}

/// Reads what [`put_days`] wrote, refusing a day outside `chunk`, an empty bitmap (a rebuild
/// keeps none) and days out of order.
fn get_days(r: &mut Reader<'_>, chunk: u32) -> Result<DayBitmaps> {
    let mut days = DayBitmaps::new();
    walk_days(r, chunk, |day, r| {
        let bm = get_bitmap(r)?;
        let empty = bm.is_empty();
        days.insert(day, bm);
        Ok(empty)
    })?;
    Ok(days)
}

/// Reads the days [`put_days`] wrote: each day's number, then `set` reads its set and says
/// whether it was empty. Refuses what [`get_days`] says.
fn walk_days(
    r: &mut Reader<'_>,
    chunk: u32,
    mut set: impl FnMut(u32, &mut Reader<'_>) -> Result<bool>,
) -> Result<()> {
    let n = r.len()?;
    let mut last = None;
    for _ in 0..n {
        let day = r.u32()?;
        let empty = set(day, r)?;
        if value_chunk(day) != chunk || last.is_some_and(|l| l >= day) || empty {
            return Err(corrupt!("bad day bitmaps in an index family"));
        }
        last = Some(day);
    }
    Ok(())
}

/// One snapshot record of a value's days (one chunk), held as stored and decoded by its first
/// reader. The open verified the record's checksum; its encoding is read only then.
#[derive(Debug, Clone)]
pub struct HeldDays {
    chunk: u32,
    /// The record; its body is the chunk's encoding.
    record: HeldBody,
}

impl HeldDays {
    /// Holds the chunk `chunk` of a value's days, the body of `record`.
    fn new(chunk: u32, record: Bytes) -> Self {
        HeldDays {
            chunk,
            record: HeldBody::new(record),
        }
    }

    /// The chunk's number ([`value_chunk`] of its days).
    pub fn chunk(&self) -> u32 {
        self.chunk
    }

    /// The record as stored: what a snapshot writes again for a chunk nobody changed.
    pub fn record(&self) -> &Bytes {
        self.record.record()
    }

    /// The chunk's day bitmaps.
    pub fn decode(&self) -> DayBitmaps {
        self.record
            .with_body(|body| {
                let mut r = Reader::new(body);
                let days = get_days(&mut r, self.chunk)?;
                r.expect_end("an index family")?;
                Ok::<_, crate::error::Error>(days)
            })
            .expect("a value's stored days decode: the record passed its checksum and this build wrote it")
    }
}

/// One day's bitmap of an event: `None` when nobody did it that day.
fn put_day(out: &mut Vec<u8>, days: &DayBitmaps, day: u32) -> Option<()> {
    put_bitmap(out, days.get(&day)?);
    Some(())
}

fn put_value_map(out: &mut Vec<u8>, map: &FastMap<IndexValue, RoaringBitmap>) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    put_varint(out, entries.len() as u64);
    for (k, bm) in entries {
        let mut kb = Vec::new();
        put_index_value(&mut kb, k);
        put_varint(out, kb.len() as u64);
        out.extend_from_slice(&kb);
        put_bitmap(out, bm);
    }
}

fn get_value_map(r: &mut Reader<'_>) -> Result<FastMap<IndexValue, RoaringBitmap>> {
    let n = r.len()?;
    let mut map = FastMap::with_capacity_and_hasher(n, Default::default());
    for _ in 0..n {
        let kl = r.len()?;
        let k = get_index_value(r.take(kl)?)?;
        map.insert(k, get_bitmap(r)?);
    }
    Ok(map)
}

/// A range index: per kind (integers, floats, date-times) a flag, and when set who has a value
/// of the kind and the 64 bit slices.
fn put_ranges(out: &mut Vec<u8>, ranges: &Ranges) {
    for s in [&ranges.ints, &ranges.floats, &ranges.times] {
        if s.is_empty() {
            out.push(0);
            continue;
        }
        out.push(1);
        put_bitmap(out, &s.exists);
        for bm in &s.bits {
            put_bitmap(out, bm);
        }
    }
}

fn get_ranges(r: &mut Reader<'_>) -> Result<Ranges> {
    let mut get = || -> Result<Slices> {
        match r.byte()? {
            0 => Ok(Slices::default()),
            1 => {
                let exists = get_bitmap(r)?;
                let mut bits = Vec::with_capacity(64);
                for _ in 0..64 {
                    let bm = get_bitmap(r)?;
                    if !bm.is_subset(&exists) {
                        return Err(corrupt!("bad range index: a bit of no one's value"));
                    }
                    bits.push(bm);
                }
                if exists.is_empty() {
                    return Err(corrupt!("bad range index: an empty kind marked present"));
                }
                Ok(Slices { exists, bits })
            }
            _ => Err(corrupt!("bad range index")),
        }
    };
    Ok(Ranges {
        ints: get()?,
        floats: get()?,
        times: get()?,
    })
}

impl Indexes {
    /// Takes the set of families changed since the last call.
    pub fn take_changed(&mut self) -> FastSet<Family> {
        let mut out = std::mem::take(&mut self.changed);
        for (e, ei) in &mut self.events {
            for d in ei.days_dirty.take() {
                out.insert(Family::EventDays(*e, d));
            }
            for (p, values) in &mut ei.props {
                for (k, vd) in values.iter_mut() {
                    for c in vd.dirty.take() {
                        out.insert(Family::EventProp(*e, *p, k.clone(), c));
                    }
                }
            }
            for (d, list) in &mut ei.counts {
                if std::mem::take(&mut list.dirty) {
                    list.compact();
                    out.insert(Family::DayCounts(*e, *d));
                }
            }
            for (p, figures) in &mut ei.numbers {
                for (d, list) in figures.iter_mut() {
                    if std::mem::take(&mut list.dirty) {
                        list.compact();
                        out.insert(Family::DayNumbers(*e, *p, *d));
                    }
                }
            }
        }
        self.settle_traits(&mut out);
        if !out.is_empty() {
            out.insert(Family::Version);
        }
        out
    }

    /// Decides how the changed trait families in `out` are written: as the trait patch (the
    /// families stay as stored), or, past [`trait_patch_limit`], after a failed write of trait
    /// families, or when the unindexed traits changed (stored families would keep value bitmaps
    /// of a trait no longer indexed), every trait family whole with the patch removed.
    fn settle_traits(&mut self, out: &mut FastSet<Family>) {
        let traits_changed = out
            .iter()
            .any(|f| matches!(f, Family::Trait(_) | Family::TraitPatch));
        if !traits_changed && !self.rewrite_traits {
            return;
        }
        out.retain(|f| !matches!(f, Family::Trait(_)));
        out.insert(Family::TraitPatch);
        if self.rewrite_traits
            || out.contains(&Family::Unindexed)
            || self.trait_patch.len() > trait_patch_limit(self.everyone.len())
        {
            self.stored_traits.extend(self.traits.keys().copied());
            out.extend(self.stored_traits.iter().map(|t| Family::Trait(*t)));
            self.trait_patch.clear();
            self.rewrite_traits = false;
        }
    }

    /// Marks families taken by [`Indexes::take_changed`] as changed again: their snapshot
    /// records were not written. Trait families whole that were not written are all written
    /// whole by the next snapshot (the patch they replaced is gone from memory).
    pub fn restore_changed(&mut self, families: impl IntoIterator<Item = Family>) {
        for f in families {
            if matches!(f, Family::Trait(_)) {
                self.rewrite_traits = true;
            }
            self.changed.insert(f);
        }
    }

    /// Before the last checkpoint of a close: asks the next snapshot to write every trait family
    /// whole when the trait patch holds more than [`close_patch_limit`] customers, so that later
    /// opens need not read their profiles.
    pub fn closing(&mut self) {
        if self.trait_patch.len() > close_patch_limit(self.everyone.len()) {
            self.rewrite_traits = true;
        }
    }

    /// Whether the next snapshot must write every trait family whole, whatever else changed.
    pub fn traits_due_whole(&self) -> bool {
        self.rewrite_traits
    }

    /// A whole snapshot writes every trait family: the trait patch is empty after it.
    pub fn traits_written_whole(&mut self) {
        self.stored_traits.extend(self.traits.keys().copied());
        self.trait_patch.clear();
        self.rewrite_traits = false;
    }

    /// The customers whose trait entries the stored trait families may not reflect (loaded with
    /// the snapshot: [`Indexes::apply_trait_patch`] needs their profiles).
    pub fn trait_patch(&self) -> &RoaringBitmap {
        &self.trait_patch
    }

    /// After loading a snapshot: takes the patch's customers out of every trait, then adds
    /// back the profiles `profiles` gives for them (`None`: no profile).
    pub fn apply_trait_patch<F>(&mut self, mut profile: F) -> Result<()>
    where
        F: FnMut(u32) -> Result<Option<Vec<(u32, crate::model::Value)>>>,
    {
        let patch = self.trait_patch.clone();
        if patch.is_empty() {
            return Ok(());
        }
        self.purge_traits(&patch);
        for cust in &patch {
            if let Some(traits) = profile(cust)? {
                self.add_profile(cust, &traits);
            }
        }
        Ok(())
    }

    /// Every family that currently holds data: for writing a whole snapshot.
    pub fn all_families(&self) -> Vec<Family> {
        let mut out = vec![
            Family::Version,
            Family::Everyone,
            Family::Profiles,
            Family::Unindexed,
        ];
        out.extend(self.traits.keys().map(|t| Family::Trait(*t)));
        for (e, ei) in &self.events {
            out.extend(ei.days.keys().map(|d| Family::EventDays(*e, *d)));
            for (p, values) in &ei.props {
                for (k, vd) in values {
                    let mut chunks: Vec<u32> = vd.days().keys().map(|d| value_chunk(*d)).collect();
                    chunks.dedup();
                    out.extend(
                        chunks
                            .into_iter()
                            .map(|c| Family::EventProp(*e, *p, k.clone(), c)),
                    );
                }
            }
            out.extend(ei.counts.keys().map(|d| Family::DayCounts(*e, *d)));
            for (p, figures) in &ei.numbers {
                out.extend(figures.keys().map(|d| Family::DayNumbers(*e, *p, *d)));
            }
        }
        out
    }

    /// Encodes one family, or `None` when it holds nothing (its record should be removed). Every
    /// family but the version record (which any build must be able to read) is packed
    /// (`pack_family`).
    pub fn encode_family(&self, f: &Family) -> Option<Bytes> {
        // A rollup list or a value's chunk of days loaded from a snapshot and not changed since
        // is written again as its record (a slice of the mapped snapshot file, no copy): the
        // same bytes an encoding would give, without decoding what no reader asked for.
        match f {
            Family::EventProp(e, p, k, c) => {
                if let Some(stored) = self.events.get(e)?.props.get(p)?.get(k)?.stored_chunk(*c) {
                    return stored.map(|h| h.record().clone());
                }
            }
            Family::DayCounts(e, d) => {
                if let Some(record) = self.events.get(e)?.counts.get(d)?.stored_record() {
                    return Some(record.clone());
                }
            }
            Family::DayNumbers(e, p, d) => {
                if let Some(record) = self.events.get(e)?.numbers.get(p)?.get(d)?.stored_record() {
                    return Some(record.clone());
                }
            }
            _ => {}
        }
        let mut out = Vec::new();
        match f {
            Family::Version => {
                put_varint(&mut out, u64::from(SNAPSHOT_VERSION));
                return Some(Bytes::from(out));
            }
            Family::Everyone => put_bitmap(&mut out, &self.everyone),
            Family::Profiles => put_bitmap(&mut out, &self.profiles),
            Family::Unindexed => {
                let mut traits: Vec<_> = self.unindexed_traits.iter().copied().collect();
                traits.sort_unstable();
                let mut props: Vec<_> = self.unindexed_props.iter().copied().collect();
                props.sort_unstable();
                put_varint(&mut out, u64::from(self.value_bound as u32));
                put_varint(&mut out, traits.len() as u64);
                traits
                    .iter()
                    .for_each(|t| put_varint(&mut out, u64::from(*t)));
                put_varint(&mut out, props.len() as u64);
                for (e, p) in props {
                    put_varint(&mut out, u64::from(e));
                    put_varint(&mut out, u64::from(p));
                }
                let mut unrolled: Vec<_> = self.unrolled_props.iter().copied().collect();
                unrolled.sort_unstable();
                put_varint(&mut out, self.rollup_bound as u64);
                put_varint(&mut out, unrolled.len() as u64);
                for (e, p) in unrolled {
                    put_varint(&mut out, u64::from(e));
                    put_varint(&mut out, u64::from(p));
                }
            }
            Family::Trait(t) => {
                let ti = self.traits.get(t)?;
                put_bitmap(&mut out, &ti.set);
                put_value_map(&mut out, &ti.values);
                put_value_map(&mut out, &ti.elements);
                put_ranges(&mut out, &ti.ranges);
            }
            Family::TraitPatch => {
                if self.trait_patch.is_empty() {
                    return None;
                }
                put_bitmap(&mut out, &self.trait_patch);
            }
            Family::EventDays(e, d) => put_day(&mut out, &self.events.get(e)?.days, *d)?,
            Family::EventProp(e, p, k, c) => put_days(
                &mut out,
                self.events.get(e)?.props.get(p)?.get(k)?.days(),
                *c,
            )?,
            Family::DayCounts(e, d) => put_counts(&mut out, self.events.get(e)?.counts.get(d)?),
            Family::DayNumbers(e, p, d) => {
                put_numbers(&mut out, self.events.get(e)?.numbers.get(p)?.get(d)?)
            }
        }
        Some(Bytes::from(pack_family(&out)))
    }

    /// Loads one family record into these indexes.
    pub fn load_family(&mut self, key: &[u8], blob: &[u8]) -> Result<()> {
        let family = Indexes::decode_family(key, blob)?;
        self.install_family(family);
        Ok(())
    }

    /// As [`Indexes::decode_family`], keeping the record: a rollup list (`C`, `N`) or a
    /// value's chunk of days (`V`) is held as its record (a slice of the mapped snapshot file,
    /// no copy), not read until its first reader decodes it ([`DayList`], [`ValueDays`]). An
    /// open takes this path, having verified each record's checksum: at 1M customers these
    /// families are most of the snapshot, and most of them are read by no rule of a
    /// short-lived process. A held count list's last span unit (for [`EventIndex::latest`])
    /// is found after the install ([`Indexes::settle_latest`]).
    pub fn decode_owned_family(key: &[u8], blob: Bytes) -> Result<DecodedFamily> {
        match Family::from_key(key)? {
            Family::DayCounts(e, d) => {
                Ok(DecodedFamily::DayCounts(e, d, stored_counts(blob), None))
            }
            Family::DayNumbers(e, p, d) => {
                Ok(DecodedFamily::DayNumbers(e, p, d, stored_numbers(blob)))
            }
            Family::EventProp(e, p, k, c) => Ok(DecodedFamily::StoredEventProp(
                e,
                p,
                k,
                HeldDays::new(c, blob),
            )),
            _ => Indexes::decode_family(key, &blob),
        }
    }

    /// Decodes one family record without touching any index: records are independent, so an
    /// open decodes them in parallel and then installs them (in any order).
    pub fn decode_family(key: &[u8], blob: &[u8]) -> Result<DecodedFamily> {
        let family = Family::from_key(key)?;
        let body = match family {
            Family::Version => std::borrow::Cow::Borrowed(blob),
            _ => unpack_family(blob)?,
        };
        let mut r = Reader::new(&body);
        let decoded = match family {
            Family::Version => DecodedFamily::Version(
                u32::try_from(r.varint()?).map_err(|_| corrupt!("bad index snapshot version"))?,
            ),
            Family::Everyone => DecodedFamily::Everyone(get_bitmap(&mut r)?),
            Family::Profiles => DecodedFamily::Profiles(get_bitmap(&mut r)?),
            Family::Unindexed => {
                let _bound_when_written = r.varint()?;
                let mut traits = Vec::new();
                for _ in 0..r.len()? {
                    traits.push(r.u32()?);
                }
                let mut props = Vec::new();
                for _ in 0..r.len()? {
                    let e = r.u32()?;
                    props.push((e, r.u32()?));
                }
                let _rollup_bound_when_written = r.varint()?;
                let mut unrolled = Vec::new();
                for _ in 0..r.len()? {
                    let e = r.u32()?;
                    unrolled.push((e, r.u32()?));
                }
                DecodedFamily::Unindexed {
                    traits,
                    props,
                    unrolled,
                }
            }
            Family::Trait(t) => {
                let set = get_bitmap(&mut r)?;
                let values = get_value_map(&mut r)?;
                let elements = get_value_map(&mut r)?;
                let ranges = get_ranges(&mut r)?;
                DecodedFamily::Trait(
                    t,
                    TraitIndex {
                        set,
                        values,
                        elements,
                        ranges,
                    },
                )
            }
            Family::TraitPatch => DecodedFamily::TraitPatch(get_bitmap(&mut r)?),
            Family::EventDays(e, d) => {
                let bm = get_bitmap(&mut r)?;
                if bm.is_empty() {
                    return Err(corrupt!("an empty day bitmap in an index family"));
                }
                DecodedFamily::EventDays(e, d, bm)
            }
            Family::EventProp(e, p, k, c) => {
                DecodedFamily::EventProp(e, p, k, get_days(&mut r, c)?)
            }
            Family::DayCounts(e, d) => {
                let list = get_counts(&mut r)?;
                let mut last = None;
                list.for_each(|x| last = last.max(Some(x.last)));
                DecodedFamily::DayCounts(e, d, list, last)
            }
            Family::DayNumbers(e, p, d) => DecodedFamily::DayNumbers(e, p, d, get_numbers(&mut r)?),
        };
        r.expect_end("an index family")?;
        Ok(decoded)
    }

    /// The days of an event's property value, made empty if it has none yet.
    fn value_days_entry(&mut self, event: u32, prop: u32, value: IndexValue) -> &mut ValueDays {
        let ei = self.events.entry(event).or_default();
        ei.props.entry(prop).or_default().entry(value).or_default()
    }

    /// After families were installed from held records: each event's latest instant from its
    /// counts, walking only its last day's list (a later day's span always ends later).
    pub fn settle_latest(&mut self) {
        for ei in self.events.values_mut() {
            for (&d, list) in ei.counts.iter().rev() {
                if let Some(last) = list.last_unit() {
                    let end = day_start(d) + i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1;
                    ei.latest = ei.latest.max(end);
                    break;
                }
            }
        }
    }

    /// Puts a decoded family in place (each family has its own place, so order does not matter).
    pub fn install_family(&mut self, family: DecodedFamily) {
        if matches!(
            family,
            DecodedFamily::Profiles(_) | DecodedFamily::Trait(..) | DecodedFamily::Unindexed { .. }
        ) {
            self.profile_texts.changed();
        }
        match family {
            DecodedFamily::Version(v) => self.loaded_version = Some(v),
            DecodedFamily::Everyone(bm) => self.everyone = bm,
            DecodedFamily::Profiles(bm) => self.profiles = bm,
            DecodedFamily::Unindexed {
                traits,
                props,
                unrolled,
            } => {
                self.unindexed_traits.extend(traits);
                self.unindexed_props.extend(props);
                self.unrolled_props.extend(unrolled);
            }
            DecodedFamily::Trait(t, ti) => {
                self.stored_traits.insert(t);
                self.traits.insert(t, ti);
            }
            DecodedFamily::TraitPatch(bm) => self.trait_patch |= bm,
            DecodedFamily::EventDays(e, d, bm) => {
                self.events.entry(e).or_default().days.insert(d, bm);
            }
            DecodedFamily::EventProp(e, p, k, days) => {
                self.value_days_entry(e, p, k).days_mut().extend(days);
            }
            DecodedFamily::StoredEventProp(e, p, k, days) => {
                self.value_days_entry(e, p, k).hold_chunk(days);
            }
            DecodedFamily::DayCounts(e, d, list, last) => {
                let ei = self.events.entry(e).or_default();
                if let Some(last) = last {
                    let end = day_start(d) + i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1;
                    ei.latest = ei.latest.max(end);
                }
                ei.counts.insert(d, list);
            }
            DecodedFamily::DayNumbers(e, p, d, list) => {
                self.events
                    .entry(e)
                    .or_default()
                    .numbers
                    .entry(p)
                    .or_default()
                    .insert(d, list);
            }
        }
    }
}

/// One snapshot record, decoded ([`Indexes::decode_family`]) and waiting to be installed.
#[derive(Debug)]
pub enum DecodedFamily {
    Version(u32),
    Everyone(RoaringBitmap),
    Profiles(RoaringBitmap),
    Unindexed {
        traits: Vec<u32>,
        props: Vec<(u32, u32)>,
        unrolled: Vec<(u32, u32)>,
    },
    Trait(u32, TraitIndex),
    TraitPatch(RoaringBitmap),
    EventDays(u32, u32, RoaringBitmap),
    EventProp(u32, u32, IndexValue, DayBitmaps),
    /// A value's chunk of days kept as stored, for [`ValueDays`] to decode on first read.
    StoredEventProp(u32, u32, IndexValue, HeldDays),
    /// With the last span unit of any of its customers (for [`EventIndex::latest`]), `None`
    /// for a list held as stored (see [`Indexes::settle_latest`]).
    DayCounts(u32, u32, DayList<DayCount>, Option<u16>),
    DayNumbers(u32, u32, u32, DayList<DayNumbers>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StoredEvent;
    use crate::model::Value;

    #[test]
    fn snapshot_round_trips_every_family() {
        let mut ix = Indexes::new(2);
        ix.add_profile(
            1,
            &[
                (0, Value::Str("Gold".into())),
                (
                    1,
                    Value::List(vec![Value::Str("eco".into()), Value::Int(3)]),
                ),
            ],
        );
        ix.add_profile(
            2,
            &[
                (0, Value::Str("Silver".into())),
                (2, Value::Int(-4)),
                (3, Value::Time(1_700_000_000_123)),
            ],
        );
        ix.add_profile(
            3,
            &[
                (0, Value::Str("Bronze".into())), // third value: trait 0 unindexed
                (2, Value::Float(2.5)),
            ],
        );
        assert!(!ix.trait_index(2).unwrap().ranges.floats.is_empty());
        for (cust, product) in [(1, "X"), (2, "Y"), (3, "Z"), (4, "X")] {
            ix.add_event(
                cust,
                &StoredEvent {
                    ts: 86_400_000 * 3 + 5,
                    event: 7,
                    props: vec![
                        (0, Value::Str(product.into())),
                        (1, Value::Bool(cust % 2 == 0)),
                    ],
                },
            );
        }
        assert!(!ix.trait_values_indexed(0));
        assert!(!ix.prop_values_indexed(7, 0));
        assert!(ix.prop_values_indexed(7, 1));

        let mut loaded = Indexes::new(2);
        for f in ix.all_families() {
            let key = f.key();
            assert_eq!(Family::from_key(&key).unwrap(), f);
            if let Some(blob) = ix.encode_family(&f) {
                loaded.load_family(&key, &blob).unwrap();
            }
        }
        assert_eq!(loaded, ix, "{:?}", loaded.differences(&ix));
        // As an open loads them: records kept, rollup lists held encoded until read.
        let mut opened = Indexes::new(2);
        for f in ix.all_families() {
            if let Some(blob) = ix.encode_family(&f) {
                let family = Indexes::decode_owned_family(&f.key(), blob).unwrap();
                opened.install_family(family);
            }
        }
        let held = opened.events.values().flat_map(|e| e.counts.values());
        assert!(held.clone().count() > 0 && held.clone().all(|l| l.is_held_encoded()));
        let values = opened.events.values().flat_map(|e| e.props.values());
        let values: Vec<&ValueDays> = values.flat_map(|v| v.values()).collect();
        assert!(!values.is_empty() && values.iter().all(|vd| vd.is_held_encoded()));
        // Written again while held (and again once read), each family is the bytes a fresh
        // encoding gives: its record passes through.
        let same_bytes = |opened: &Indexes| {
            for f in ix.all_families() {
                assert_eq!(opened.encode_family(&f), ix.encode_family(&f), "{f:?}");
            }
        };
        same_bytes(&opened);
        assert!(held.clone().all(|l| l.is_held_encoded()));
        assert_eq!(opened, ix, "{:?}", opened.differences(&ix));
        same_bytes(&opened);
        // The trait patch: every customer whose profile changed, until the families are
        // written whole.
        let patch = ix.encode_family(&Family::TraitPatch).unwrap();
        loaded
            .load_family(&Family::TraitPatch.key(), &patch)
            .unwrap();
        assert_eq!(loaded.trait_patch(), ix.trait_patch());
        assert_eq!(ix.trait_patch().iter().collect::<Vec<_>>(), [1, 2, 3]);
        ix.traits_written_whole();
        assert!(ix.encode_family(&Family::TraitPatch).is_none());
    }

    #[test]
    fn a_family_holds_only_its_days() {
        let mut ix = Indexes::new(10);
        for (cust, day) in [(1u32, 31u32), (2, 32), (3, 47), (4, 48)] {
            let e = StoredEvent {
                ts: i64::from(day) * 86_400_000 + 7,
                event: 0,
                props: vec![(0, Value::Str("X".into()))],
            };
            ix.add_event(cust, &e);
        }
        let changed = ix.take_changed();
        let value = IndexValue::Str("X".into());
        for f in [
            Family::EventDays(0, 31),
            Family::EventDays(0, 48),
            Family::EventProp(0, 0, value.clone(), 1),
            Family::EventProp(0, 0, value.clone(), 2),
            Family::EventProp(0, 0, value.clone(), 3),
        ] {
            assert!(changed.contains(&f), "{f:?}");
        }
        assert!(!changed.contains(&Family::EventDays(0, 33)));
        // Days 32 to 47 are chunk 2: two days in one record.
        let chunk = ix
            .encode_family(&Family::EventProp(0, 0, value.clone(), 2))
            .unwrap();
        let body = unpack_family(&chunk).unwrap();
        assert_eq!(get_days(&mut Reader::new(&body), 2).unwrap().len(), 2);
        assert!(
            get_days(&mut Reader::new(&body), 3).is_err(),
            "a day outside its chunk"
        );
        assert!(ix.encode_family(&Family::EventDays(0, 33)).is_none());
        assert!(ix
            .encode_family(&Family::EventProp(0, 0, value, 4))
            .is_none());
        // Nothing changed since: nothing to write.
        assert!(ix.take_changed().is_empty());
    }

    proptest::proptest! {
        /// A value's days held as its stored chunks (installed in any order) read as the decoded
        /// map does: a day at a time, any range of days (empty and reversed ones too), the whole
        /// map, and after a change.
        #[test]
        fn held_value_days_read_as_the_decoded_ones(
            events in proptest::collection::vec((0u32..40, 0u32..120), 1..80),
            asks in proptest::collection::vec((0u32..130, 0u32..130), 1..20),
            reverse: bool,
        ) {
            let mut ix = Indexes::new(10);
            for &(cust, day) in &events {
                let e = StoredEvent {
                    ts: i64::from(day) * 86_400_000 + 7,
                    event: 0,
                    props: vec![(0, Value::Str("X".into()))],
                };
                ix.add_event(cust, &e);
            }
            let mut families: Vec<Family> = ix
                .all_families()
                .into_iter()
                .filter(|f| matches!(f, Family::EventProp(..)))
                .collect();
            if reverse {
                families.reverse();
            }
            let mut opened = Indexes::new(10);
            for f in &families {
                let blob = ix.encode_family(f).unwrap();
                opened.install_family(Indexes::decode_owned_family(&f.key(), blob).unwrap());
            }
            let value = IndexValue::Str("X".into());
            let want = ix.events[&0].props[&0][&value].days().clone();
            let held = &opened.events[&0].props[&0][&value];
            proptest::prop_assert!(held.is_held_encoded());
            for &(a, b) in &asks {
                proptest::prop_assert_eq!(held.day(a), want.get(&a));
                let got: Vec<&RoaringBitmap> = held.sets_in(a, b).collect();
                let expected: Vec<&RoaringBitmap> = if a <= b {
                    want.range(a..=b).map(|(_, bm)| bm).collect()
                } else {
                    Vec::new()
                };
                proptest::prop_assert_eq!(got, expected);
            }
            proptest::prop_assert_eq!(held.days(), &want);
            let mut changed = held.clone();
            changed.days_mut().entry(200).or_default().insert(1);
            let mut want_changed = want.clone();
            want_changed.entry(200).or_default().insert(1);
            proptest::prop_assert_eq!(changed.days(), &want_changed);
            proptest::prop_assert_eq!(changed.sets_in(0, 300).count(), want_changed.len());
        }
    }

    /// A set written as ids whatever its size (as `put_bitmap` writes the sparse ones).
    fn as_ids(ids: &[u32]) -> Vec<u8> {
        let mut out = vec![SET_IDS];
        put_varint(&mut out, ids.len() as u64);
        let mut prev = 0;
        for &id in ids {
            put_varint(&mut out, u64::from(id - prev));
            prev = id;
        }
        out
    }

    proptest::proptest! {
        /// Sets read a container at a time equal the same ids pushed one by one: arrays and
        /// bitmaps of 2^16 bits, the edges of a container (its first and last id, exactly
        /// 4,096 and 4,097 ids in one), ids up to `u32::MAX`.
        #[test]
        fn sets_read_in_bulk_equal_their_ids(
            spans in proptest::collection::vec(
                (0u32..70_000, 0u32..6_000, 1u32..40), 1..6),
            edges in proptest::collection::vec(proptest::sample::select(vec![
                0u32, 65_535, 65_536, 131_071, u32::MAX - 65_536, u32::MAX,
            ]), 0..4),
        ) {
            let mut want = RoaringBitmap::new();
            for (start, len, step) in spans {
                let base = start.saturating_mul(61_417);
                for i in 0..len {
                    want.insert(base.saturating_add(i.saturating_mul(step)));
                }
            }
            want.extend(edges);
            let ids: Vec<u32> = want.iter().collect();
            let bytes = as_ids(&ids);
            let mut r = Reader::new(&bytes);
            let got = get_bitmap(&mut r).unwrap();
            proptest::prop_assert!(r.is_empty());
            proptest::prop_assert_eq!(got.len(), want.len());
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn sets_read_in_bulk_keep_the_checks() {
        // Exactly 4,096 and 4,097 ids in one container, and a whole container.
        for n in [BULK_IDS as u32, 4_096, 4_097, 65_536] {
            let ids: Vec<u32> = (0..n).map(|i| 131_072 + i).collect();
            let got = get_bitmap(&mut Reader::new(&as_ids(&ids))).unwrap();
            assert_eq!(got, ids.iter().copied().collect::<RoaringBitmap>());
        }
        // A repeated id and an id past u32 among enough ids to take the bulk path.
        let mut repeated: Vec<u32> = (0..BULK_IDS as u32 + 10).collect();
        repeated[100] = 99;
        assert!(get_bitmap(&mut Reader::new(&as_ids(&repeated))).is_err());
        let mut past = as_ids(&(0..BULK_IDS as u32 + 10).collect::<Vec<_>>());
        past.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        // The count says one more id than before: the last gap takes the ids past u32.
        let n = BULK_IDS as u64 + 11;
        let mut fixed = vec![SET_IDS];
        put_varint(&mut fixed, n);
        let first_count_len = {
            let mut v = Vec::new();
            put_varint(&mut v, n - 1);
            v.len()
        };
        fixed.extend_from_slice(&past[1 + first_count_len..]);
        assert!(get_bitmap(&mut Reader::new(&fixed)).is_err());
        // A count past what the record holds.
        let mut short = as_ids(&(0..BULK_IDS as u32).collect::<Vec<_>>());
        short.truncate(short.len() - 3);
        assert!(get_bitmap(&mut Reader::new(&short)).is_err());
    }

    #[test]
    fn sets_take_the_shorter_encoding_and_bad_ids_are_refused() {
        let sparse: RoaringBitmap = [3u32, 70_000, 150_000, 4_000_000_000].into_iter().collect();
        let dense: RoaringBitmap = (0..50_000u32).collect();
        for (bm, tag) in [
            (&sparse, SET_IDS),
            (&dense, SET_ROARING),
            (&RoaringBitmap::new(), SET_IDS),
        ] {
            let mut out = Vec::new();
            put_bitmap(&mut out, bm);
            assert_eq!(out[0], tag);
            assert!(out.len() <= bm.serialized_size() + 6);
            let mut r = Reader::new(&out);
            assert_eq!(&get_bitmap(&mut r).unwrap(), bm);
            assert!(r.is_empty());
        }
        // A zero gap after the first id, an id past u32, an unknown tag.
        for bad in [
            &[0u8, 2, 5, 0][..],
            &[0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1],
            &[9],
        ] {
            assert!(get_bitmap(&mut Reader::new(bad)).is_err());
        }
    }

    #[test]
    fn families_are_packed_and_damage_is_an_error() {
        let body: Vec<u8> = (0..4000u32).map(|i| (i % 7) as u8).collect();
        let packed = pack_family(&body);
        assert_eq!(packed[0], codec::PACKED_LZ4);
        assert!(packed.len() < body.len() / 4);
        assert_eq!(&*unpack_family(&packed).unwrap(), &body[..]);
        let short = pack_family(&[1, 2, 3]);
        assert_eq!(short, vec![codec::PACKED_PLAIN, 1, 2, 3]);
        let mut damaged = packed.clone();
        damaged.truncate(packed.len() - 3);
        assert!(unpack_family(&damaged).is_err());
        assert!(unpack_family(&[codec::PACKED_LZ4, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(unpack_family(&[7, 1]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut ix = Indexes::new(10);
        assert!(ix.load_family(b"A", b"\x05\x01\x02").is_err());
        assert!(ix.load_family(b"Q", b"").is_err());
        assert!(ix.load_family(b"T\0\0", b"").is_err());
    }
}
