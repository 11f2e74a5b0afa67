//! The customer id map in memory: every external id and its dense internal id, both ways.
//!
//! It mirrors the id records in storage (`keys::ID` and `keys::EXTERNAL`): [`IdMap::load`] reads
//! them at open, and the database layer tells it of every id a committed write adds or removes.
//! Lookups (the personalisation call's first step, the ingest path's id resolution, member
//! exports) then never touch storage.
//!
//! Layout, chosen for a million ids in a few tens of megabytes and no allocation per id: the
//! external ids back to back in one byte arena, an end offset per internal id (the id's bytes
//! run from the previous id's end to its own), and a hash table of internal ids keyed by the
//! hash of their external id. A removed id keeps its bytes until the next open (it is marked,
//! not moved), so removal is O(1).
//!
//! Reading a million id records from sled takes seconds, so the map is also snapshotted with the
//! indexes, in chunks of [`CHUNK_IDS`] consecutive internal ids (`keys::ID_SNAPSHOT`): a
//! checkpoint rewrites only the chunks whose ids changed, and an open loads the chunks and then
//! re-reads, from the id records, only the customers written since the snapshot (the dirty log
//! names every customer a write touched, new and deleted ones included). When the chunks are
//! missing (a folder from an older build) or disagree with storage, the map is read from the id
//! records instead and snapshotted in full at the next checkpoint.
//!
//! The hash table is built by the map's first look-up by external id, not at open: a process
//! that only names customers by internal id (a one-shot `query` printing its members) never
//! hashes the million ids of a large folder (0.10–0.18 s of its open at 1M customers). A map
//! read from the id records builds it at once, refusing an external id mapped twice as damage.
//! One read from the snapshot chunks (written from a map that refused duplicates, kept by sled's
//! checksums) builds it on first use: the open checks instead that its ids are exactly the
//! customers the indexes know ([`IdMap::holds_exactly`]) and reads the id records when they are
//! not, and `verify` compares the whole map with the id records.
//!
//! Merged customers (identity merge: `docs/INPUT.md`) have more ids than their `r` one: the
//! others, their aliases, are kept per customer in `keys::ALIASES` records and in a small hash
//! map beside the table, which [`IdMap::get`] falls back to. Only merged customers have such
//! records; every open reads them all (a merge is rare next to a write).
//!
//! This module owns the mirror and its snapshot encoding. It reads storage only to load and
//! refresh itself; the database layer writes its chunks.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;
use roaring::RoaringBitmap;
use rustc_hash::FxBuildHasher;

use super::codec::{put_varint, Reader};
use super::{keys, Store};
use crate::error::{corrupt, Result};
use crate::model::FastMap;

/// Internal ids per snapshot chunk.
pub const CHUNK_IDS: u32 = 1 << 16;

/// Marks a removed id in its end offset.
const REMOVED: u64 = 1 << 63;

/// External ⇄ internal customer ids, in memory.
#[derive(Default)]
pub struct IdMap {
    /// Every external id ever added since open, back to back.
    bytes: Vec<u8>,
    /// Per internal id, the end of its bytes in `bytes`, with [`REMOVED`] set once removed. An
    /// internal id that was never added has an empty span.
    ends: Vec<u64>,
    /// Internal ids, found by the hash of their external id; built on first use
    /// ([`IdMap::table`]).
    table: OnceLock<HashTable<u32>>,
    /// How many ids are present (pushed and not removed).
    present: usize,
    hasher: FxBuildHasher,
    /// Chunks changed since the last snapshot.
    changed: BTreeSet<u32>,
    /// Each alias (an id other than a customer's `r` id) and its customer.
    aliases: FastMap<String, u32>,
    /// Each merged customer's aliases, in the order they joined it.
    alias_lists: FastMap<u32, Vec<String>>,
}

impl std::fmt::Debug for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap")
            .field("ids", &self.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// `id`, if the counter has handed it out: a stored id at or above the counter is damage (and
/// would make the map allocate for every id below it).
fn handed_out(id: u32, next_id: u32) -> Result<u32> {
    if id < next_id {
        Ok(id)
    } else {
        Err(corrupt!(
            "customer id {id} is beyond the id counter ({next_id})"
        ))
    }
}

/// The bytes of internal id `id`, if it is present.
fn span<'a>(bytes: &'a [u8], ends: &[u64], id: u32) -> Option<&'a [u8]> {
    let i = id as usize;
    let end = *ends.get(i)?;
    if end & REMOVED != 0 {
        return None;
    }
    let start = if i == 0 { 0 } else { ends[i - 1] & !REMOVED };
    (end > start).then(|| &bytes[start as usize..end as usize])
}

/// Makes pushed id `id` findable in `table` by its external id, whose hash is `h`; an external id
/// already in the table is refused.
fn index_in(
    table: &mut HashTable<u32>,
    bytes: &[u8],
    ends: &[u64],
    hasher: &FxBuildHasher,
    id: u32,
    h: u64,
) -> Result<()> {
    let key = span(bytes, ends, id).unwrap_or_default();
    match table.entry(
        h,
        |&i| span(bytes, ends, i) == Some(key),
        |&i| hasher.hash_one(span(bytes, ends, i).unwrap_or_default()),
    ) {
        hashbrown::hash_table::Entry::Occupied(_) => Err(corrupt!(
            "external id {:?} is mapped twice",
            String::from_utf8_lossy(key)
        )),
        hashbrown::hash_table::Entry::Vacant(v) => {
            v.insert(id);
            Ok(())
        }
    }
}

impl IdMap {
    /// Reads every id record of the store (slow on large folders: see [`IdMap::open`]). Every
    /// chunk counts as changed, so the next snapshot writes them all.
    pub fn load(store: &Store) -> Result<IdMap> {
        let mut map = IdMap::default();
        let next_id = store.next_id()?;
        for item in store.scan(keys::EXTERNAL) {
            let (k, v) = item?;
            let id = handed_out(keys::parse_customer(&k)?, next_id)?;
            let external =
                std::str::from_utf8(&v).map_err(|_| corrupt!("external id is not UTF-8"))?;
            map.push(external, id)?;
        }
        map.index_all()?;
        map.changed = map.all_chunks().collect();
        map.load_aliases(store, next_id)?;
        Ok(map)
    }

    /// The map at open: from the snapshot chunks, with the customers in `written_since` (those
    /// written after the snapshot) re-read from the id records; or, without usable chunks, from
    /// the id records alone.
    pub fn open(store: &Store, written_since: &RoaringBitmap) -> Result<IdMap> {
        match IdMap::from_snapshot(store, written_since) {
            Ok(Some(map)) => Ok(map),
            // No chunks, or chunks that disagree with the id records: read the records.
            Ok(None) | Err(_) => IdMap::load(store),
        }
    }

    fn from_snapshot(store: &Store, written_since: &RoaringBitmap) -> Result<Option<IdMap>> {
        let mut map = IdMap::default();
        let next_id = store.next_id()?;
        // The chunks are gathered first (sled's buffers, not copied) so the map's arrays are
        // allocated once at their size: grown by doubling, they would touch about twice the
        // memory, which an open pays for (`docs/BENCHMARKS.md`, "Open of a 1M folder").
        let stored: Vec<(u32, sled::IVec)> = store
            .scan(keys::ID_SNAPSHOT)
            .map(|item| {
                let (k, v) = item?;
                Ok((keys::parse_customer(&k)?, v))
            })
            .collect::<Result<_>>()?;
        map.bytes
            .reserve_exact(stored.iter().map(|(_, v)| v.len()).sum());
        map.ends.reserve_exact(next_id as usize);
        for (chunk, v) in &stored {
            map.load_chunk(*chunk, v, next_id)?;
        }
        let chunks = stored.len() as u64;
        drop(stored);
        // A chunk missing below the id counter: every id of it deleted, or a folder whose whole
        // snapshot removed id chunks it also wrote (an earlier build's bug). Either way the
        // records say, and the next snapshot writes every chunk again.
        if chunks < u64::from(next_id).div_ceil(u64::from(CHUNK_IDS)) {
            return Ok(None);
        }
        // The hash table is built by the first look-up (the module's doc says why).
        for cust in written_since {
            let stored = store.external_id(cust)?;
            match (map.external(cust), stored.as_deref()) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => return Err(corrupt!("customer {cust} changed external id")),
                (Some(_), None) => map.remove(cust),
                (None, Some(b)) => map.insert(b, handed_out(cust, next_id)?)?,
                (None, None) => {}
            }
        }
        map.load_aliases(store, next_id)?;
        Ok(Some(map))
    }

    /// Reads every merged customer's aliases (`keys::ALIASES`).
    fn load_aliases(&mut self, store: &Store, next_id: u32) -> Result<()> {
        for item in store.scan(keys::ALIASES) {
            let (k, v) = item?;
            let cust = handed_out(keys::parse_customer(&k)?, next_id)?;
            if self.external(cust).is_none() {
                return Err(corrupt!("customer {cust} has merged ids but no id"));
            }
            self.set_aliases(cust, decode_aliases(&v)?)?;
        }
        Ok(())
    }

    /// Adds a chunk written by [`IdMap::encode_chunk`]. Chunks must come in increasing order;
    /// the ids are findable once [`IdMap::index_all`] has run.
    fn load_chunk(&mut self, chunk: u32, bytes: &[u8], next_id: u32) -> Result<()> {
        if u64::from(chunk) * u64::from(CHUNK_IDS) > u64::from(u32::MAX) {
            return Err(corrupt!("bad id map chunk {chunk}"));
        }
        let mut r = Reader::new(bytes);
        let first = u64::from(chunk) * u64::from(CHUNK_IDS);
        for id in first..first + u64::from(CHUNK_IDS) {
            if r.is_empty() {
                break;
            }
            let n = r.len()?;
            if n > 0 {
                let external = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| corrupt!("external id is not UTF-8"))?;
                // In range: checked above.
                self.push(external, handed_out(id as u32, next_id)?)?;
            }
        }
        if !r.is_empty() {
            return Err(corrupt!("id map chunk {chunk} is too long"));
        }
        Ok(())
    }

    /// Decodes one id-map snapshot chunk into a fresh map and returns its ids; for
    /// [`crate::fuzzing`].
    pub(crate) fn decode_chunk_record(chunk: u32, bytes: &[u8], next_id: u32) -> Result<usize> {
        let mut map = IdMap::default();
        map.load_chunk(chunk, bytes, next_id)?;
        map.index_all()?;
        Ok(map.len())
    }

    /// A chunk's snapshot record: each internal id of the chunk in order, as its external id's
    /// length and bytes (0 for an absent id), up to the chunk's last present id. `None` when no
    /// id of the chunk is present.
    pub fn encode_chunk(&self, chunk: u32) -> Option<Vec<u8>> {
        let first = u64::from(chunk) * u64::from(CHUNK_IDS);
        let end = (first + u64::from(CHUNK_IDS)).min(self.ends.len() as u64);
        let last = (first..end)
            .rev()
            .find(|&i| self.external(i as u32).is_some())?;
        let mut out = Vec::new();
        for i in first..=last {
            let e = self.external(i as u32).unwrap_or_default();
            put_varint(&mut out, e.len() as u64);
            out.extend_from_slice(e.as_bytes());
        }
        Some(out)
    }

    /// The chunks changed since the last call, which the next snapshot must write.
    pub fn take_changed(&mut self) -> BTreeSet<u32> {
        std::mem::take(&mut self.changed)
    }

    /// Marks chunks taken by [`IdMap::take_changed`] as changed again: they were not written.
    pub fn restore_changed(&mut self, chunks: impl IntoIterator<Item = u32>) {
        self.changed.extend(chunks);
    }

    /// Whether some chunk changed since the last snapshot.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Every chunk that holds or may have held ids.
    pub fn all_chunks(&self) -> std::ops::Range<u32> {
        0..(self.ends.len() as u64).div_ceil(u64::from(CHUNK_IDS)) as u32
    }

    fn hash(&self, external: &[u8]) -> u64 {
        self.hasher.hash_one(external)
    }

    /// The internal id of an external id: a customer's own id or one of its aliases.
    pub fn get(&self, external: &str) -> Option<u32> {
        let key = external.as_bytes();
        let (bytes, ends) = (&self.bytes, &self.ends);
        self.table()
            .find(self.hash(key), |&id| span(bytes, ends, id) == Some(key))
            .copied()
            .or_else(|| self.aliases.get(external).copied())
    }

    /// Builds the hash table now if it is not yet, so that the first look-up does not pay it.
    pub fn prepare_lookups(&self) {
        self.table();
    }

    /// Whether the ids present are exactly `customers`: at open, the map read from the snapshot
    /// chunks against the indexes' every known customer (a customer is known exactly when it has
    /// an id record), a check that damaged or stale chunks fail.
    pub fn holds_exactly(&self, customers: &RoaringBitmap) -> bool {
        // Both sides ascend: one walk beside the bitmap's own iterator, no look-up per id.
        let mut known = customers.iter();
        self.present as u64 == customers.len()
            && (0..self.ends.len() as u32)
                .filter(|&id| span(&self.bytes, &self.ends, id).is_some())
                .all(|id| known.next() == Some(id))
    }

    /// A customer's aliases: its ids other than [`IdMap::external`], in the order they joined.
    pub fn aliases(&self, id: u32) -> &[String] {
        self.alias_lists.get(&id).map_or(&[], |v| &v[..])
    }

    /// Every id of a customer: its own first, then its aliases. Empty for an unknown id.
    pub fn ids_of(&self, id: u32) -> Vec<&str> {
        match self.external(id) {
            Some(e) => std::iter::once(e)
                .chain(self.aliases(id).iter().map(String::as_str))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Replaces a customer's aliases (none: it has only its own id). An alias that is another
    /// customer's id is refused as a sign of damage, and the map is left as it was.
    pub fn set_aliases(&mut self, id: u32, aliases: Vec<String>) -> Result<()> {
        for a in &aliases {
            let owner = self.get(a);
            if owner.is_some() && owner != Some(id) || self.external(id) == Some(a.as_str()) {
                return Err(corrupt!("merged id {a:?} is mapped twice"));
            }
        }
        self.remove_aliases(id);
        for a in &aliases {
            self.aliases.insert(a.clone(), id);
        }
        if !aliases.is_empty() {
            self.alias_lists.insert(id, aliases);
        }
        Ok(())
    }

    /// Forgets a customer's aliases.
    pub fn remove_aliases(&mut self, id: u32) {
        for a in self.alias_lists.remove(&id).unwrap_or_default() {
            self.aliases.remove(&a);
        }
    }

    /// How many aliases are mapped, over every customer.
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// The external id of an internal id.
    pub fn external(&self, id: u32) -> Option<&str> {
        // Only valid UTF-8 is ever added.
        span(&self.bytes, &self.ends, id).map(|b| std::str::from_utf8(b).unwrap_or_default())
    }

    /// Adds a new id. Internal ids arrive in increasing order (they are handed out by a
    /// counter); one that is not above every id seen, or an external id already mapped, is
    /// refused as a sign of damage.
    pub fn insert(&mut self, external: &str, id: u32) -> Result<()> {
        // Built over the ids before this one.
        let mut table = self.take_table();
        let (old_ends, old_bytes) = (self.ends.len(), self.bytes.len());
        if let Err(e) = self.push(external, id) {
            self.table = OnceLock::from(table);
            return Err(e);
        }
        let h = self.hash(external.as_bytes());
        let indexed = index_in(&mut table, &self.bytes, &self.ends, &self.hasher, id, h);
        self.table = OnceLock::from(table);
        if let Err(e) = indexed {
            // Undo the push: the map stays as it was.
            self.ends.truncate(old_ends);
            self.bytes.truncate(old_bytes);
            self.present -= 1;
            return Err(e);
        }
        self.changed.insert(id / CHUNK_IDS);
        Ok(())
    }

    /// Appends an id's bytes (not yet findable by external id: see [`IdMap::index`]).
    fn push(&mut self, external: &str, id: u32) -> Result<()> {
        if external.is_empty() || (id as usize) < self.ends.len() {
            return Err(corrupt!("customer id {id} is out of order in the id map"));
        }
        let end = self.bytes.len() as u64;
        self.ends.resize(id as usize, end);
        self.bytes.extend_from_slice(external.as_bytes());
        self.ends.push(self.bytes.len() as u64);
        self.present += 1;
        Ok(())
    }

    /// The hash table, built now over every present id if it is not yet (an external id mapped
    /// twice, which only damage could bring, is found under its lowest internal id).
    fn table(&self) -> &HashTable<u32> {
        self.table.get_or_init(|| self.hash_all().0)
    }

    /// The hash table taken out of the map (built first if it is not yet), to be put back.
    fn take_table(&mut self) -> HashTable<u32> {
        match self.table.take() {
            Some(t) => t,
            None => self.hash_all().0,
        }
    }

    /// A hash table of every present id, and how many external ids were mapped twice (each
    /// later one left out).
    fn hash_all(&self) -> (HashTable<u32>, usize) {
        let mut table = HashTable::with_capacity(self.present);
        let mut twice = 0;
        // Hashed as inserted: a list of every id's hash first would be fresh memory the size of
        // the table twice over, for less time than it costs to touch.
        for id in 0..self.ends.len() as u32 {
            if let Some(key) = span(&self.bytes, &self.ends, id) {
                let h = self.hash(key);
                if index_in(&mut table, &self.bytes, &self.ends, &self.hasher, id, h).is_err() {
                    twice += 1;
                }
            }
        }
        (table, twice)
    }

    /// Builds the hash table now, refusing an external id mapped twice: for a map read from the
    /// id records.
    fn index_all(&mut self) -> Result<()> {
        let (table, twice) = self.hash_all();
        if twice > 0 {
            return Err(corrupt!("{twice} external ids are mapped twice"));
        }
        self.table = OnceLock::from(table);
        Ok(())
    }

    /// Forgets an id and its aliases (its customer was deleted or merged into another). Unknown
    /// ids are ignored.
    pub fn remove(&mut self, id: u32) {
        self.remove_aliases(id);
        let Some(key) = span(&self.bytes, &self.ends, id) else {
            return;
        };
        let h = self.hash(key);
        if let Some(table) = self.table.get_mut() {
            if let Ok(entry) = table.find_entry(h, |&i| i == id) {
                entry.remove();
            }
        }
        self.present -= 1;
        self.ends[id as usize] |= REMOVED;
        self.changed.insert(id / CHUNK_IDS);
    }

    /// One past the largest internal id ever added: every id added later is at least this.
    pub fn bound(&self) -> u32 {
        self.ends.len() as u32
    }

    /// How many ids are mapped.
    pub fn len(&self) -> usize {
        self.present
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// Every mapped (internal, external) pair, in internal id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        (0..self.ends.len() as u32).filter_map(|id| self.external(id).map(|e| (id, e)))
    }

    /// Bytes of heap the map holds.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * std::mem::size_of::<u64>()
            + self
                .table
                .get()
                .map_or(0, |t| t.capacity() * (std::mem::size_of::<u32>() + 1))
            + self.aliases.keys().map(|a| 2 * a.len() + 48).sum::<usize>()
    }
}

impl PartialEq for IdMap {
    /// Equal when they map the same ids, whatever their history.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.iter().all(|(id, e)| other.get(e) == Some(id))
            && self.alias_lists == other.alias_lists
    }
}

/// A merged customer's aliases as stored: each one's length and bytes.
pub fn encode_aliases(aliases: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in aliases {
        put_varint(&mut out, a.len() as u64);
        out.extend_from_slice(a.as_bytes());
    }
    out
}

/// Reads [`encode_aliases`]'s bytes.
pub fn decode_aliases(bytes: &[u8]) -> Result<Vec<String>> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let n = r.len()?;
        let a = std::str::from_utf8(r.take(n)?).map_err(|_| corrupt!("merged id is not UTF-8"))?;
        if a.is_empty() {
            return Err(corrupt!("a merged id is empty"));
        }
        out.push(a.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways_and_forgets() {
        let mut m = IdMap::default();
        m.insert("alice", 0).unwrap();
        m.insert("bob", 1).unwrap();
        m.insert("carol", 5).unwrap();
        assert_eq!(m.get("alice"), Some(0));
        assert_eq!(m.get("bob"), Some(1));
        assert_eq!(m.get("carol"), Some(5));
        assert_eq!(m.get("dave"), None);
        assert_eq!(m.get("ali"), None);
        assert_eq!(m.external(1), Some("bob"));
        assert_eq!(m.external(3), None);
        assert_eq!(m.external(9), None);
        assert_eq!(m.len(), 3);

        m.remove(1);
        assert_eq!(m.get("bob"), None);
        assert_eq!(m.external(1), None);
        assert_eq!(m.external(5), Some("carol"));
        assert_eq!(m.get("carol"), Some(5));
        assert_eq!(m.len(), 2);
        m.remove(1);
        m.remove(77);
        assert_eq!(m.len(), 2);
        // A deleted customer's external id may come back under a new internal id.
        m.insert("bob", 6).unwrap();
        assert_eq!(m.get("bob"), Some(6));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![(0, "alice"), (5, "carol"), (6, "bob")]
        );
    }

    #[test]
    fn chunks_round_trip() {
        let mut m = IdMap::default();
        for i in [0, 1, 7, CHUNK_IDS - 1, CHUNK_IDS + 3, 3 * CHUNK_IDS + 2] {
            m.insert(&format!("c{i}"), i).unwrap();
        }
        m.remove(7);
        m.remove(CHUNK_IDS + 3);
        assert_eq!(m.take_changed(), BTreeSet::from([0, 1, 3]));
        assert!(!m.has_changes());
        assert_eq!(m.all_chunks(), 0..4);
        assert_eq!(m.encode_chunk(1), None);
        assert_eq!(m.encode_chunk(2), None);
        let mut back = IdMap::default();
        for c in m.all_chunks() {
            if let Some(bytes) = m.encode_chunk(c) {
                back.load_chunk(c, &bytes, u32::MAX).unwrap();
            }
        }
        back.index_all().unwrap();
        assert!(back == m);
        assert_eq!(back.get("c0"), Some(0));
        assert_eq!(
            back.get(&format!("c{}", CHUNK_IDS - 1)),
            Some(CHUNK_IDS - 1)
        );
        assert_eq!(back.get("c7"), None);
        assert!(!back.has_changes());
        // New ids go after the loaded ones.
        back.insert("new", 3 * CHUNK_IDS + 3).unwrap();
        assert_eq!(back.take_changed(), BTreeSet::from([3]));
        // A chunk that runs past its end, or a bad length, is refused.
        let mut long = Vec::new();
        for _ in 0..=CHUNK_IDS {
            put_varint(&mut long, 0);
        }
        assert!(IdMap::default().load_chunk(0, &long, u32::MAX).is_err());
        assert!(IdMap::default()
            .load_chunk(0, &[5, b'a'], u32::MAX)
            .is_err());
        // An id the counter never handed out is damage, not a reason to allocate up to it.
        let one = m.encode_chunk(3).unwrap();
        assert!(IdMap::default()
            .load_chunk(3, &one, 3 * CHUNK_IDS + 2)
            .is_err());
        assert!(IdMap::default()
            .load_chunk(3, &one, 3 * CHUNK_IDS + 3)
            .is_ok());
    }

    /// A map loaded from chunks without its hash table: removals and inserts before the table
    /// exists, look-ups that build it, the same answers as a map built eagerly.
    #[test]
    fn the_hash_table_is_built_on_first_use() {
        let mut m = IdMap::default();
        for i in 0..3000u32 {
            m.insert(&format!("c{i}"), i * 3).unwrap();
        }
        let chunks: Vec<(u32, Vec<u8>)> = m
            .all_chunks()
            .filter_map(|c| m.encode_chunk(c).map(|b| (c, b)))
            .collect();
        let load = || {
            let mut back = IdMap::default();
            for (c, b) in &chunks {
                back.load_chunk(*c, b, u32::MAX).unwrap();
            }
            back
        };
        // Nothing hashed at load; every id found once asked.
        let back = load();
        assert!(back.table.get().is_none());
        assert_eq!(back.len(), 3000);
        assert!(back.holds_exactly(&(0..3000u32).map(|i| i * 3).collect()));
        assert!(!back.holds_exactly(&(0..3000u32).map(|i| i * 3 + 1).collect()));
        assert!(!back.holds_exactly(&(0..2999u32).map(|i| i * 3).collect()));
        assert!(back.table.get().is_none());
        assert_eq!(back.get("c7"), Some(21));
        assert!(back.table.get().is_some());
        assert!(back == m);
        assert!(m == back);
        // Removed and inserted before any look-up.
        let mut back = load();
        back.remove(30);
        back.remove(30);
        back.remove(31);
        assert!(back.table.get().is_none());
        assert_eq!(back.len(), 2999);
        back.insert("new", 9000).unwrap();
        assert!(back.insert("c11", 9001).is_err(), "c11 is mapped already");
        assert!(back.insert("c10", 9001).is_ok(), "c10 was removed");
        assert_eq!(back.len(), 3001);
        assert_eq!(back.get("c10"), Some(9001));
        assert_eq!(back.get("c11"), Some(33));
        assert_eq!(back.get("new"), Some(9000));
        assert_eq!(back.external(30), None);
        // A removal after the table exists.
        back.remove(9000);
        assert_eq!(back.get("new"), None);
        assert_eq!(back.len(), 3000);
        // Chunks mapping an id twice (damage): the eager build refuses them, the lazy one finds
        // the lowest internal id.
        let mut twice = IdMap::default();
        twice.push("x", 1).unwrap();
        twice.push("x", 2).unwrap();
        assert_eq!(twice.get("x"), Some(1));
        assert!(twice.index_all().is_err());
    }

    #[test]
    fn refuses_damage() {
        let mut m = IdMap::default();
        m.insert("a", 3).unwrap();
        assert!(m.insert("b", 3).is_err());
        assert!(m.insert("b", 2).is_err());
        assert!(m.insert("a", 4).is_err());
        assert!(m.insert("", 5).is_err());
        assert_eq!(m.get("b"), None);
        m.insert("b", 4).unwrap();
        assert_eq!(m.get("b"), Some(4));
    }

    #[test]
    fn grows_past_many_ids() {
        let mut m = IdMap::default();
        for i in 0..100_000u32 {
            m.insert(&format!("customer-{i}"), i * 2).unwrap();
        }
        for i in (0..100_000u32).step_by(7) {
            assert_eq!(m.get(&format!("customer-{i}")), Some(i * 2));
            assert_eq!(m.external(i * 2 + 1), None);
        }
        for i in (0..100_000u32).step_by(3) {
            m.remove(i * 2);
        }
        for i in 0..100_000u32 {
            let want = (i % 3 != 0).then_some(i * 2);
            assert_eq!(m.get(&format!("customer-{i}")), want, "{i}");
        }
    }
}
#[cfg(test)]
mod db_tests {
    //! The map through the database's life: snapshot, writes after it, a crash, a folder
    //! without chunks, damaged chunks.
    use super::*;
    use crate::testing::Internals;
    use crate::Db;

    fn ids_of(db: &Db) -> Vec<(u32, String)> {
        let state = db.read();
        state.ids.iter().map(|(i, e)| (i, e.to_owned())).collect()
    }

    #[test]
    fn survives_snapshots_crashes_and_lost_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Db::open(&path).unwrap();
            for c in ["a", "b", "c", "d"] {
                db.identify(c, vec![]).unwrap();
            }
        } // snapshots, chunks included
        let db = Db::open(&path).unwrap();
        assert_eq!(db.store.scan(keys::ID_SNAPSHOT).count(), 1);
        // After the snapshot: a delete, a new customer, then a crash.
        db.delete_customer("b").unwrap();
        db.identify("e", vec![]).unwrap();
        let expected = ids_of(&db);
        assert_eq!(
            expected,
            [(0, "a"), (2, "c"), (3, "d"), (4, "e")]
                .map(|(i, e)| (i, e.to_owned()))
                .to_vec()
        );
        db.abandon();
        let db = Db::open(&path).unwrap();
        assert_eq!(ids_of(&db), expected);
        assert_eq!(db.internal_id("b").unwrap(), None);
        assert_eq!(db.internal_id("e").unwrap(), Some(4));
        assert_eq!(db.external_id(2).unwrap().as_deref(), Some("c"));
        assert!(db.verify().unwrap().is_ok());
        drop(db);

        // A folder without chunks (an older build's) reads the id records, then snapshots.
        {
            let db = Db::open(&path).unwrap();
            let mut batch = crate::storage::WriteBatch::new();
            for item in db.store.scan(keys::ID_SNAPSHOT) {
                batch.remove_raw(item.unwrap().0);
            }
            db.store.commit(batch).unwrap();
            db.abandon();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(ids_of(&db), expected);
        assert!(db.read().ids.has_changes());
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.store.scan(keys::ID_SNAPSHOT).count(), 1);
        assert!(!db.read().ids.has_changes());

        // Damaged or stale chunks are not trusted: the id records decide.
        let mut batch = crate::storage::WriteBatch::new();
        batch.put_id_chunk(0, vec![1u8, b'z', 1, b'z']);
        db.store.commit(batch).unwrap();
        db.abandon();
        let db = Db::open(&path).unwrap();
        assert_eq!(ids_of(&db), expected);
        assert!(db.verify().unwrap().is_ok());
    }
}
