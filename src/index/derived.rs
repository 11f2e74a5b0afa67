//! Derived data kept in the folder (issue 20, "cold"): the event columns of `columns.rs`, the
//! text columns of `texts.rs`, the merged runs of days of `runs.rs` and the `bucket(NAME)`
//! splits of `buckets.rs` (validated by the ids they covered, not by fingerprints: see there)
//! and the unindexed traits' columns of `texts.rs` (validated by the folder's write generation:
//! `crate::query` reads it before the profiles and stores a column only at the generation it was
//! read at), stored when a reader builds them so that a fresh process loads them instead of
//! building them again.
//!
//! A stored record names the fingerprints ([`crate::index::DayList::fingerprint`]) of the day
//! lists it was derived from, and is used only while those lists have exactly those
//! fingerprints; otherwise it is built again (and stored again), never read. A fingerprint is a
//! sum over the list's events of a 64-bit mix of their customer, so it is a function of how many
//! events of the kind each customer has that day. That names the events themselves because a
//! customer's events of one kind on one day only ever grow while its internal id is in use
//! (events are appended; a delete or a merge retires the id for good, and ids are never handed
//! out again), and because the lists a reader sees hold committed writes only (a write is
//! durable before the indexes show it): no crash can take a list back to a fingerprint it had
//! with other events. `docs/STORAGE.md` ("Derived records") has the whole argument.
//!
//! This module owns the interface to the store ([`DerivedStore`], implemented by the query
//! layer over the folder), the records' keys and their packing. It reads and writes nothing
//! itself, and a failure to load or store a record only costs a build.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use crate::error::Result;
use crate::storage::codec;

/// A record's bytes as the store holds them, or a part of them (not copied: a record may be
/// megabytes, and a fresh process's first answer pays for every byte it touches). Cloning one
/// shares the bytes.
#[derive(Clone)]
pub struct Loaded {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

impl Loaded {
    /// The bytes `bytes` own.
    pub fn new(bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> Loaded {
        let len = bytes.as_ref().len();
        Loaded {
            owner: Arc::new(bytes),
            range: 0..len,
        }
    }

    /// The bytes `range` of these (positions within them), sharing their owner.
    ///
    /// # Panics
    /// If `range` is not within these bytes.
    pub fn slice(&self, range: Range<usize>) -> Loaded {
        assert!(range.start <= range.end && range.end <= self.range.len());
        Loaded {
            owner: self.owner.clone(),
            range: self.range.start + range.start..self.range.start + range.end,
        }
    }
}

impl Default for Loaded {
    fn default() -> Self {
        Loaded::new(Vec::new())
    }
}

impl std::ops::Deref for Loaded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded({} bytes)", self.range.len())
    }
}

/// Where derived records are loaded from and stored to. Both are best effort: a record that
/// cannot be read is built, one that cannot be written is built again next time.
pub trait DerivedStore: Sync {
    /// The record under `key`, if one is stored and readable.
    fn load(&self, key: &[u8]) -> Option<Loaded>;
    /// Stores `record` under `key`, replacing what was there.
    fn save(&self, key: &[u8], record: &[u8]);
}

/// Stored records read and used instead of a build, in this process (for tests: see
/// `crate::testing::derived_used`).
static USED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes that a stored record passed its checks and is used.
pub fn note_used() {
    USED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Stored records used so far in this process.
pub fn used() -> u64 {
    USED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A store that keeps nothing: everything is built in memory (the tests of the layers below the
/// folder).
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStore;

#[cfg(test)]
impl DerivedStore for NoStore {
    fn load(&self, _key: &[u8]) -> Option<Loaded> {
        None
    }

    fn save(&self, _key: &[u8], _record: &[u8]) {}
}

/// The layout of the records' bodies; a record of another layout is not read (it is built and
/// stored again).
pub const LAYOUT: u64 = 1;

/// The largest record body a reader accepts (a guard against damaged lengths).
const MAX_RECORD_BYTES: usize = 1 << 31;

/// The key of an (event, day)'s event columns.
pub fn columns_key(event: u32, day: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'C');
    k.extend_from_slice(&event.to_be_bytes());
    k.extend_from_slice(&day.to_be_bytes());
    k
}

/// The key of an (event, property, day)'s text column.
pub fn texts_key(event: u32, prop: u32, day: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(b'T');
    for x in [event, prop, day] {
        k.extend_from_slice(&x.to_be_bytes());
    }
    k
}

/// The key of an unindexed trait's column of string values (`crate::index::TextColumn`).
pub fn trait_texts_key(trait_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(b'P');
    k.extend_from_slice(&trait_id.to_be_bytes());
    k
}

/// The key of the mark that some reader wanted `event`'s columns (an empty record).
pub fn asked_key(event: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(b'A');
    k.extend_from_slice(&event.to_be_bytes());
    k
}

/// The key of the mark that some reader could have used `event`'s columns of `day` (an empty
/// record; `crate::index::Columns::ask_day`).
pub fn asked_day_key(event: u32, day: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'D');
    k.extend_from_slice(&event.to_be_bytes());
    k.extend_from_slice(&day.to_be_bytes());
    k
}

/// The key of a run of days: its kind (counts or numbers), event, key (a property for numbers,
/// 0 for counts), first day and length.
pub fn run_key(kind: u8, event: u32, key: u32, first: u32, len: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.push(b'R');
    k.push(kind);
    for x in [event, key, first, len] {
        k.extend_from_slice(&x.to_be_bytes());
    }
    k
}

/// The key of a `bucket(NAME)` split's buckets (`crate::index::buckets`): the name's bytes.
pub fn bucket_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'B');
    k.extend_from_slice(name.as_bytes());
    k
}

/// Wraps a record's body: LZ4-compressed when that saves an eighth, else as is.
pub fn pack(body: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(body.len() + 1);
    tagged.push(0);
    tagged.extend_from_slice(body);
    codec::pack(tagged)
}

/// Wraps a record's body as is, never compressed: for records read whole on a fresh process's
/// first answer whose decompression would cost more than the bytes saved (runs of days,
/// bucket splits); [`unpack`] borrows the body.
pub fn pack_plain(body: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(body.len() + 1);
    tagged.push(codec::PACKED_PLAIN);
    tagged.extend_from_slice(body);
    tagged
}

/// The body of a record written by [`pack`] or [`pack_plain`].
pub fn unpack(record: &[u8]) -> Result<Cow<'_, [u8]>> {
    codec::unpack(record, "derived record", MAX_RECORD_BYTES)
}

/// Writes the head of a record derived from day lists: the layout, the count of the lists, then
/// each one's day (varint) and fingerprint (`u64` LE).
pub fn put_sources(out: &mut Vec<u8>, sources: &[(u32, u64)]) {
    codec::put_varint(out, LAYOUT);
    codec::put_varint(out, sources.len() as u64);
    for &(d, fp) in sources {
        codec::put_varint(out, u64::from(d));
        out.extend_from_slice(&fp.to_le_bytes());
    }
}

/// Reads a head written by [`put_sources`]: the wrapping sum of its fingerprints if it is of
/// this layout and names exactly the days and fingerprints `current` gives (in day order);
/// `None` otherwise (stale, another layout, damaged).
pub fn check_sources(
    r: &mut codec::Reader<'_>,
    mut current: impl Iterator<Item = (u32, u64)>,
) -> Option<u64> {
    if r.varint().ok()? != LAYOUT {
        return None;
    }
    let mut total = 0u64;
    for _ in 0..r.len().ok()? {
        let d = r.u32().ok()?;
        let fp = u64::from_le_bytes(r.take(8).ok()?.try_into().ok()?);
        if current.next()? != (d, fp) {
            return None;
        }
        total = total.wrapping_add(fp);
    }
    current.next().is_none().then_some(total)
}

/// The body of a record written by [`pack`] or [`pack_plain`], sharing the record's bytes when
/// it is stored as is, and whether it was compressed.
pub fn unpack_loaded(record: Loaded) -> Result<(Loaded, bool)> {
    match record.first() {
        Some(&codec::PACKED_PLAIN) => Ok((record.slice(1..record.len()), false)),
        _ => {
            let mut body = Vec::new();
            codec::unpack_into(&record, "derived record", MAX_RECORD_BYTES, &mut body)?;
            Ok((Loaded::new(body), true))
        }
    }
}

/// The record under `key`, decoded, if one is stored, readable, and derived from events with the
/// fingerprint `fp` (`declared` reads the fingerprint a body names, without decoding the rest);
/// `None` otherwise, a stale record included: the caller builds it again. `decode` is given the
/// body, which shares the stored bytes when the record is stored as is ([`pack_plain`]).
pub fn load_checked<T>(
    kept: &dyn DerivedStore,
    key: &[u8],
    fp: u64,
    declared: impl FnOnce(&[u8]) -> Option<u64>,
    decode: impl FnOnce(&Loaded) -> Result<T>,
) -> Option<T> {
    load_checked_packed(kept, key, fp, declared, decode).map(|(value, _)| value)
}

/// [`load_checked`], with whether the record was stored compressed (a record read whole on a
/// first answer, stored compressed by an earlier build, is worth storing again as is).
pub fn load_checked_packed<T>(
    kept: &dyn DerivedStore,
    key: &[u8],
    fp: u64,
    declared: impl FnOnce(&[u8]) -> Option<u64>,
    decode: impl FnOnce(&Loaded) -> Result<T>,
) -> Option<(T, bool)> {
    let record = kept.load(key)?;
    let (body, compressed) = unpack_loaded(record).ok()?;
    if declared(&body)? != fp {
        return None; // stale: the day's events changed since
    }
    let value = decode(&body).ok()?;
    note_used();
    Some((value, compressed))
}

/// A store in memory, counting what it was asked (for the tests of the structures kept).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemStore {
    pub records: parking_lot::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    pub loads: std::sync::atomic::AtomicU64,
    pub saves: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl DerivedStore for MemStore {
    fn load(&self, key: &[u8]) -> Option<Loaded> {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.records.lock().get(key).cloned().map(Loaded::new)
    }

    fn save(&self, key: &[u8], record: &[u8]) {
        self.saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.records.lock().insert(key.to_vec(), record.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_every_part_and_records_round_trip() {
        assert_ne!(columns_key(1, 2), columns_key(2, 1));
        assert_ne!(run_key(0, 1, 0, 256, 256), run_key(1, 1, 0, 256, 256));
        assert_ne!(run_key(0, 1, 0, 256, 256), run_key(0, 1, 0, 256, 64));
        assert_ne!(run_key(0, 1, 2, 0, 8), run_key(0, 1, 3, 0, 8));
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let record = pack(&body);
        assert!(record.len() < body.len());
        assert_eq!(&*unpack(&record).unwrap(), &body[..]);
        assert_eq!(&*unpack(&pack(&[1, 2, 3])).unwrap(), &[1, 2, 3]);
        assert!(unpack(&[9, 9]).is_err());
        let plain = pack_plain(&body);
        assert_eq!(plain.len(), body.len() + 1);
        assert!(matches!(unpack(&plain).unwrap(), Cow::Borrowed(b) if b == &body[..]));
        // Loaded whole: a plain body shares the record's bytes, a compressed one is unpacked.
        let stored = Loaded::new(plain.clone());
        let (shared, compressed) = unpack_loaded(stored.clone()).unwrap();
        assert!(!compressed);
        assert_eq!(&shared[..], &body[..]);
        assert_eq!(shared.as_ptr(), stored[1..].as_ptr());
        assert_eq!(&shared.slice(2..5).slice(1..3)[..], &body[3..5]);
        let (back, compressed) = unpack_loaded(Loaded::new(record.clone())).unwrap();
        assert!(compressed);
        assert_eq!(&back[..], &body[..]);
        assert!(unpack_loaded(Loaded::new(vec![9u8, 9])).is_err());
        assert!(unpack_loaded(Loaded::default()).is_err());
    }
}
