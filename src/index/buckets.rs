//! Per split name, each bucket's customers: `bucket(NAME) < 50` as a union of kept bitmaps
//! instead of a hash of every candidate's id.
//!
//! A customer's bucket is a pure function of the split's name and the customer's external id
//! (`crate::model::bucket`), and an internal id's external id never changes: ids are handed out
//! by a counter, a merge or a delete retires an internal id rather than re-pointing it. So the
//! buckets of the internal ids below some bound, once hashed, stay right for good; a split only
//! grows, by hashing the ids handed out since (a retired id keeps its place in a bitmap, which
//! readers intersect with everyone). Built on a split's first use in a process, kept for the last
//! few split names asked about; a copy of the indexes starts without them. Each split also keeps
//! the union it last gave (`Split::accepted`), so the same test asked again (`bucket(exp) < 50`
//! in rule after rule) is not a union of 50 bitmaps each time.
//!
//! Stored (issue 20, "cold"): the reader that hashes a split stores it as a derived record
//! (`crate::index::derived`, [`encode_split`]), and a fresh process loads it and hashes only the
//! ids handed out since. What a record derives from is the ids it covered: the internal ids
//! below its bound that had an external id when it was hashed. Those ids keep that external id
//! while they are in use, are never handed out again once retired, and a reader only ever sees
//! ids whose write was committed (so no crash hands one out again with another external id). A
//! loaded record is used only if every customer now alive below its bound is one it covered, its
//! buckets split exactly what it covered, and a sample of covered live ids hash to the buckets
//! holding them; otherwise it is hashed again and stored again, never read.
//!
//! This module owns the cache and the records' layout. It reads no store: the caller hands it the
//! external id of each internal id, the live customers and a [`DerivedStore`].

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::derived::{self, DerivedStore, LAYOUT};
use crate::error::{corrupt, Result};
use crate::model::bucket::{bucket, BUCKETS};
use crate::storage::codec::{put_varint, Reader};

/// Splits kept at most: each costs about two bytes per customer.
const KEPT: usize = 8;

/// Ids hashed per parallel piece when a split is built or grows.
const PIECE: u32 = 16_384;

/// Covered live ids a loaded record's buckets are checked against by hashing them again.
const SAMPLE: u32 = 64;

/// A split is stored again once it covers this fraction more ids than the stored record (its
/// 256th: at 1M customers a new record every 4,096 new customers, each fresh process hashing at
/// most that many).
const STORE_AGAIN_PER: u64 = 256;

/// One split's buckets for the internal ids below `hashed`.
#[derive(Debug)]
pub struct Split {
    pub name: String,
    /// Every internal id below this one is in its bucket's bitmap (if it had an external id
    /// when it was hashed).
    pub hashed: u32,
    /// Bucket `b`'s customers at index `b`.
    pub buckets: Vec<RoaringBitmap>,
    /// The bound of the record of this split stored in the folder (0: none known).
    stored: u32,
    /// The last union `accepted` gave: the accepted buckets (bit `b` for bucket `b`) and their
    /// customers. A split's buckets never change once built (growth makes a new `Split`), so it
    /// stays right for as long as the split lives.
    last: Mutex<Option<(u128, Arc<RoaringBitmap>)>>,
}

impl Split {
    fn new(name: &str, hashed: u32, buckets: Vec<RoaringBitmap>, stored: u32) -> Split {
        Split {
            name: name.to_string(),
            hashed,
            buckets,
            stored,
            last: Mutex::new(None),
        }
    }

    /// The customers whose bucket `accepts`; the same accepted buckets as the last call give
    /// the kept union.
    pub fn accepted(&self, accepts: impl Fn(u8) -> bool) -> Arc<RoaringBitmap> {
        use roaring::MultiOps;
        let mask = (0..BUCKETS)
            .filter(|&b| accepts(b))
            .fold(0u128, |m, b| m | 1u128 << b);
        if let Some((kept, union)) = &*self.last.lock() {
            if *kept == mask {
                return Arc::clone(union);
            }
        }
        let union = Arc::new(
            self.buckets
                .iter()
                .enumerate()
                .filter(|&(b, _)| mask >> b & 1 == 1)
                .map(|(_, m)| m)
                .union(),
        );
        *self.last.lock() = Some((mask, Arc::clone(&union)));
        union
    }
}

/// The splits kept, most recently used last.
#[derive(Debug, Default)]
pub struct BucketSplits {
    kept: RwLock<Vec<Arc<Split>>>,
}

/// A copy starts empty: the splits are a cache of the id map.
impl Clone for BucketSplits {
    fn clone(&self) -> Self {
        BucketSplits::default()
    }
}

impl BucketSplits {
    /// The split `name` covering every internal id below `bound`: the one kept, else the one
    /// stored in `store` if it passes its checks against `live` (every customer alive) and
    /// `external`, else none; then the ids it does not cover yet are hashed, and the split is
    /// stored (again) when it covers enough more than the stored record. `external` gives an
    /// internal id's external id (`None`: no customer has it).
    pub fn split<'e>(
        &self,
        store: &dyn DerivedStore,
        live: &RoaringBitmap,
        name: &str,
        bound: u32,
        external: impl Fn(u32) -> Option<&'e str> + Sync,
    ) -> Arc<Split> {
        if let Some(s) = self.find(name).filter(|s| s.hashed >= bound) {
            return s;
        }
        let mut splits = self.kept.write();
        // Another reader may have grown it meanwhile.
        let at = splits.iter().position(|s| s.name == name);
        let old = at.map(|i| splits.remove(i));
        let split = match old {
            Some(s) if s.hashed >= bound => s,
            old => {
                // Grown in place unless a reader still holds the old split.
                let (from, mut buckets, mut stored) = match old.map(Arc::try_unwrap) {
                    Some(Ok(s)) => (s.hashed, s.buckets, s.stored),
                    Some(Err(s)) => (s.hashed, s.buckets.clone(), s.stored),
                    None => match load_split(store, live, name, &external) {
                        Some((hashed, buckets)) => (hashed, buckets, hashed),
                        None => (0, vec![RoaringBitmap::new(); usize::from(BUCKETS)], 0),
                    },
                };
                if from < bound {
                    for (b, ids) in hash_range(name, from, bound, &external)
                        .into_iter()
                        .enumerate()
                    {
                        buckets[b] |= ids;
                    }
                }
                let hashed = from.max(bound);
                let grown = u64::from(hashed - stored);
                if grown > 0 && grown * STORE_AGAIN_PER >= u64::from(stored) {
                    let record = derived::pack_plain(&encode_split(hashed, &buckets));
                    store.save(&derived::bucket_key(name), &record);
                    stored = hashed;
                }
                Arc::new(Split::new(name, hashed, buckets, stored))
            }
        };
        if splits.len() >= KEPT {
            splits.remove(0);
        }
        splits.push(Arc::clone(&split));
        split
    }

    fn find(&self, name: &str) -> Option<Arc<Split>> {
        self.kept.read().iter().find(|s| s.name == name).cloned()
    }
}

/// A split as a record body: the layout, the bound below which it covers every id (varint), then
/// each bucket's ids, bucket 0 first, as a serialized roaring bitmap after its length (varint).
/// The ids it covered are the buckets' union.
pub fn encode_split(hashed: u32, buckets: &[RoaringBitmap]) -> Vec<u8> {
    let size: usize = buckets.iter().map(|b| b.serialized_size() + 5).sum();
    let mut out = Vec::with_capacity(16 + size);
    put_varint(&mut out, LAYOUT);
    put_varint(&mut out, u64::from(hashed));
    for b in buckets {
        put_varint(&mut out, b.serialized_size() as u64);
        // Writing into a vector cannot fail.
        let _ = b.serialize_into(&mut out);
    }
    out
}

/// A record body written by [`encode_split`]: the bound, the ids covered and the buckets, each
/// bucket checked to be well formed, and the buckets to be disjoint and below the bound.
pub fn decode_split(body: &[u8]) -> Result<(u32, RoaringBitmap, Vec<RoaringBitmap>)> {
    use roaring::MultiOps;
    let bad = || corrupt!("bad stored bucket split");
    let mut r = Reader::new(body);
    if r.varint()? != LAYOUT {
        return Err(bad());
    }
    let hashed = r.u32()?;
    let buckets = (0..BUCKETS)
        .map(|_| {
            let n = r.len()?;
            RoaringBitmap::deserialize_from(r.take(n)?).map_err(|_| bad())
        })
        .collect::<Result<Vec<_>>>()?;
    let covered = buckets.iter().union();
    if !r.is_empty()
        || covered.max().is_some_and(|m| m >= hashed)
        || buckets.iter().map(|b| b.len()).sum::<u64>() != covered.len()
    {
        return Err(bad());
    }
    Ok((hashed, covered, buckets))
}

/// The stored split `name`, if its record is readable and right for this folder now (the module
/// comment): every live id below its bound covered, and the sampled covered live ids in the
/// buckets their external ids hash to. `None`: hash it again.
fn load_split<'e>(
    kept: &dyn DerivedStore,
    live: &RoaringBitmap,
    name: &str,
    external: &impl Fn(u32) -> Option<&'e str>,
) -> Option<(u32, Vec<RoaringBitmap>)> {
    let record = kept.load(&derived::bucket_key(name))?;
    let body = derived::unpack(&record).ok()?;
    let (hashed, covered, buckets) = decode_split(&body).ok()?;
    let mut below = live.clone();
    below.remove_range(hashed..);
    if !below.is_subset(&covered) {
        return None; // a live id it did not cover: not this folder's ids
    }
    let alive = &covered & live;
    let n = alive.len();
    for k in 0..u64::from(SAMPLE).min(n) {
        let id = alive.select((k * n / u64::from(SAMPLE).min(n)) as u32)?;
        if let Some(e) = external(id) {
            if !buckets[usize::from(bucket(name, e))].contains(id) {
                return None;
            }
        }
    }
    derived::note_used();
    Some((hashed, buckets))
}

/// The buckets of the internal ids `from..to` that have an external id, in parallel pieces.
fn hash_range<'e>(
    name: &str,
    from: u32,
    to: u32,
    external: &(impl Fn(u32) -> Option<&'e str> + Sync),
) -> Vec<RoaringBitmap> {
    let pieces: Vec<u32> = (from..to).step_by(PIECE as usize).collect();
    pieces
        .into_par_iter()
        .map(|start| {
            let mut ids: Vec<Vec<u32>> = vec![Vec::new(); usize::from(BUCKETS)];
            for id in start..to.min(start.saturating_add(PIECE)) {
                if let Some(e) = external(id) {
                    ids[usize::from(bucket(name, e))].push(id);
                }
            }
            ids.into_iter()
                .map(|v| RoaringBitmap::from_sorted_iter(v).unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .reduce(
            || vec![RoaringBitmap::new(); usize::from(BUCKETS)],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x |= y;
                }
                a
            },
        )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;
    use crate::index::derived::{MemStore, NoStore};

    fn ids(n: u32) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    /// The ids below `n` but `gone`, as the live customers.
    fn live(n: u32, gone: &[u32]) -> RoaringBitmap {
        (0..n).filter(|id| !gone.contains(id)).collect()
    }

    /// Each id below `n` but `gone` whose bucket in `name` (by the external ids `all`) `accepts`.
    fn brute(
        all: &[String],
        name: &str,
        n: u32,
        gone: &[u32],
        accepts: &dyn Fn(u8) -> bool,
    ) -> RoaringBitmap {
        (0..n)
            .filter(|&id| !gone.contains(&id) && accepts(bucket(name, &all[id as usize])))
            .collect()
    }

    #[test]
    fn every_id_is_in_its_own_bucket_and_growth_hashes_only_new_ids() {
        let all = ids(40_000);
        let splits = BucketSplits::default();
        // Id 7 never existed.
        let external = |id: u32| (id != 7).then(|| all[id as usize].as_str());
        let everyone = live(40_000, &[7]);
        let first = splits.split(&NoStore, &everyone, "exp", 30_000, external);
        assert_eq!(first.hashed, 30_000);
        let grown = splits.split(&NoStore, &everyone, "exp", 40_000, external);
        assert_eq!(grown.hashed, 40_000);
        for id in 0..40_000u32 {
            let holding: Vec<usize> = (0..usize::from(BUCKETS))
                .filter(|&b| grown.buckets[b].contains(id))
                .collect();
            if id == 7 {
                assert!(holding.is_empty());
            } else {
                assert_eq!(holding, vec![usize::from(bucket("exp", &all[id as usize]))]);
            }
        }
        // Each union against the ids' own buckets, asked in an order where a kept union of
        // the wrong test, or of the split before it grew, would be given.
        let brute = |n: u32, accepts: &dyn Fn(u8) -> bool| brute(&all, "exp", n, &[7], accepts);
        assert_eq!(*first.accepted(|b| b < 50), brute(30_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b < 50), brute(40_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b < 50), brute(40_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b < 49), brute(40_000, &|b| b < 49));
        assert_eq!(*grown.accepted(|b| b >= 49), brute(40_000, &|b| b >= 49));
        assert_eq!(*grown.accepted(|b| b < 50), brute(40_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b == 99), brute(40_000, &|b| b == 99));
        assert!(grown.accepted(|_| false).is_empty());
        // A different name is a different split.
        let other = splits.split(&NoStore, &everyone, "holdout", 40_000, external);
        assert_ne!(other.buckets, grown.buckets);
    }

    #[test]
    fn only_the_last_few_names_are_kept() {
        let all = ids(10);
        let splits = BucketSplits::default();
        for i in 0..KEPT + 3 {
            splits.split(&NoStore, &live(10, &[]), &format!("s{i}"), 10, |id| {
                Some(all[id as usize].as_str())
            });
        }
        assert_eq!(splits.kept.read().len(), KEPT);
        assert!(splits.find("s0").is_none());
        assert!(splits.find(&format!("s{}", KEPT + 2)).is_some());
    }

    #[test]
    fn a_stored_split_is_loaded_grown_and_stored_again() {
        let all = ids(40_000);
        let store = MemStore::default();
        let hashes = AtomicU64::new(0);
        let external = |id: u32| {
            hashes.fetch_add(1, Relaxed);
            (id != 7).then(|| all[id as usize].as_str())
        };
        // The first process hashes 30,000 ids and stores them.
        let everyone = live(30_000, &[7]);
        let first = BucketSplits::default().split(&store, &everyone, "exp", 30_000, external);
        assert_eq!(hashes.swap(0, Relaxed), 30_000);
        assert_eq!(store.saves.load(Relaxed), 1);
        // A later one, after 10,000 new customers and the delete of ids 3 and 29,000 (still in
        // the record, not alive): loads it, checks a sample, hashes only the new ids.
        let gone = [7, 3, 29_000];
        let everyone = live(40_000, &gone);
        let splits = BucketSplits::default();
        let grown = splits.split(&store, &everyone, "exp", 40_000, external);
        let hashed = hashes.swap(0, Relaxed);
        assert!(
            (10_000..=10_000 + u64::from(SAMPLE)).contains(&hashed),
            "{hashed}"
        );
        assert_eq!(grown.hashed, 40_000);
        let tests: [&dyn Fn(u8) -> bool; 3] = [&|b| b < 50, &|b| b == 0, &|b| b > 98];
        for accepts in tests {
            let got = &*grown.accepted(accepts) & &everyone;
            assert_eq!(got, brute(&all, "exp", 40_000, &gone, accepts));
            let old = &*first.accepted(accepts) & &everyone;
            assert_eq!(old, brute(&all, "exp", 30_000, &gone, accepts));
        }
        // Grown by a third: stored again, and the next process hashes nothing new.
        assert_eq!(store.saves.load(Relaxed), 2);
        let again = BucketSplits::default().split(&store, &everyone, "exp", 40_000, external);
        assert!(hashes.swap(0, Relaxed) <= u64::from(SAMPLE));
        assert_eq!(again.buckets, grown.buckets);
        // A few more ids are hashed by each process, not stored each time.
        let everyone = live(40_010, &gone);
        let all = ids(40_010);
        let external = |id: u32| (id != 7).then(|| all[id as usize].as_str());
        let more = BucketSplits::default().split(&store, &everyone, "exp", 40_010, external);
        assert_eq!(store.saves.load(Relaxed), 2);
        let got = &*more.accepted(|b| b < 50) & &everyone;
        assert_eq!(got, brute(&all, "exp", 40_010, &gone, &|b| b < 50));
    }

    #[test]
    fn a_stored_split_of_other_ids_is_hashed_again() {
        // Stored where id 7 had no customer and the ids were `v…`.
        let store = MemStore::default();
        let theirs: Vec<String> = (0..5_000).map(|i| format!("v{i}")).collect();
        BucketSplits::default().split(&store, &live(5_000, &[7]), "exp", 5_000, |id| {
            (id != 7).then(|| theirs[id as usize].as_str())
        });
        let key = derived::bucket_key("exp");
        let record = store.records.lock()[&key].clone();
        // Here id 7 is a customer (the record did not cover it), the rest as there.
        let ours: Vec<String> = (0..5_000)
            .map(|i| format!("{}{i}", if i == 7 { 'u' } else { 'v' }))
            .collect();
        let everyone = live(5_000, &[]);
        let split = BucketSplits::default().split(&store, &everyone, "exp", 5_000, |id| {
            Some(ours[id as usize].as_str())
        });
        assert_eq!(
            *split.accepted(|b| b < 50),
            brute(&ours, "exp", 5_000, &[], &|b| b < 50)
        );
        // Here every id has another external id: the sample finds it.
        store.records.lock().insert(key.clone(), record.clone());
        let ours = ids(5_000);
        let everyone = live(5_000, &[7]);
        let split = BucketSplits::default().split(&store, &everyone, "exp", 5_000, |id| {
            (id != 7).then(|| ours[id as usize].as_str())
        });
        assert_eq!(
            *split.accepted(|b| b < 50),
            brute(&ours, "exp", 5_000, &[7], &|b| b < 50)
        );
        // A damaged record is refused: cut, another layout, overlapping or missing buckets.
        let body = derived::unpack(&record).unwrap().into_owned();
        let (hashed, covered, buckets) = decode_split(&body).unwrap();
        assert_eq!((hashed, covered.len()), (5_000, 4_999));
        assert!(decode_split(&body[..body.len() - 1]).is_err());
        let mut other = body.clone();
        other[0] = 9;
        assert!(decode_split(&other).is_err());
        let mut overlapping = buckets.clone();
        overlapping[1].insert(buckets[0].min().unwrap());
        assert!(decode_split(&encode_split(hashed, &overlapping)).is_err());
        let mut moved = buckets.clone();
        let id = moved[0].min().unwrap();
        moved[0].remove(id);
        moved[1].insert(id);
        assert!(decode_split(&encode_split(hashed, &moved)).is_ok());
        assert!(decode_split(&encode_split(10, &buckets)).is_err());
        let mut short = encode_split(hashed, &buckets[..99]);
        assert!(decode_split(&short).is_err());
        short.extend_from_slice(&[0]);
        assert!(decode_split(&short).is_err());
    }
}
