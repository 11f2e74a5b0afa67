//! Per split name, each bucket's customers: `bucket(NAME) < 50` as a union of kept bitmaps
//! instead of a hash of every candidate's id.
//!
//! A customer's bucket is a pure function of the split's name and the customer's external id
//! (`crate::model::bucket`), and an internal id's external id never changes: ids are handed out
//! by a counter, a merge or a delete retires an internal id rather than re-pointing it. So the
//! buckets of the internal ids below some bound, once hashed, stay right for good; a split only
//! grows, by hashing the ids handed out since (a retired id keeps its place in a bitmap, which
//! readers intersect with everyone). Derived and never stored: built on a split's first use in a
//! process, kept for the last few split names asked about; a copy of the indexes starts without
//! them. Each split also keeps the union it last gave (`Split::accepted`), so the same test
//! asked again (`bucket(exp) < 50` in rule after rule) is not a union of 50 bitmaps each time.
//!
//! This module owns the cache only. It reads no store: the caller hands it the external id of
//! each internal id.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::model::bucket::{bucket, BUCKETS};

/// Splits kept at most: each costs about two bytes per customer.
const KEPT: usize = 8;

/// Ids hashed per parallel piece when a split is built or grows.
const PIECE: u32 = 16_384;

/// One split's buckets for the internal ids below `hashed`.
#[derive(Debug)]
pub struct Split {
    pub name: String,
    /// Every internal id below this one is in its bucket's bitmap (if it had an external id
    /// when it was hashed).
    pub hashed: u32,
    /// Bucket `b`'s customers at index `b`.
    pub buckets: Vec<RoaringBitmap>,
    /// The last union `accepted` gave: the accepted buckets (bit `b` for bucket `b`) and their
    /// customers. A split's buckets never change once built (growth makes a new `Split`), so it
    /// stays right for as long as the split lives.
    last: Mutex<Option<(u128, Arc<RoaringBitmap>)>>,
}

impl Split {
    fn new(name: &str, hashed: u32, buckets: Vec<RoaringBitmap>) -> Split {
        Split {
            name: name.to_string(),
            hashed,
            buckets,
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
    /// The split `name` covering every internal id below `bound`, hashing the ids it does not
    /// cover yet; `external` gives an internal id's external id (`None`: no customer has it).
    pub fn split<'e>(
        &self,
        name: &str,
        bound: u32,
        external: impl Fn(u32) -> Option<&'e str> + Sync,
    ) -> Arc<Split> {
        if let Some(s) = self.find(name).filter(|s| s.hashed >= bound) {
            return s;
        }
        let mut kept = self.kept.write();
        // Another reader may have grown it meanwhile.
        let at = kept.iter().position(|s| s.name == name);
        let old = at.map(|i| kept.remove(i));
        let split = match old {
            Some(s) if s.hashed >= bound => s,
            old => {
                let from = old.as_ref().map_or(0, |s| s.hashed);
                // Grown in place unless a reader still holds the old split.
                let mut buckets = match old.map(Arc::try_unwrap) {
                    None => vec![RoaringBitmap::new(); usize::from(BUCKETS)],
                    Some(Ok(s)) => s.buckets,
                    Some(Err(s)) => s.buckets.clone(),
                };
                for (b, ids) in hash_range(name, from, bound, &external)
                    .into_iter()
                    .enumerate()
                {
                    buckets[b] |= ids;
                }
                Arc::new(Split::new(name, bound, buckets))
            }
        };
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push(Arc::clone(&split));
        split
    }

    fn find(&self, name: &str) -> Option<Arc<Split>> {
        self.kept.read().iter().find(|s| s.name == name).cloned()
    }
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
    use super::*;

    fn ids(n: u32) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn every_id_is_in_its_own_bucket_and_growth_hashes_only_new_ids() {
        let all = ids(40_000);
        let splits = BucketSplits::default();
        // Id 7 never existed.
        let external = |id: u32| (id != 7).then(|| all[id as usize].as_str());
        let first = splits.split("exp", 30_000, external);
        assert_eq!(first.hashed, 30_000);
        let grown = splits.split("exp", 40_000, external);
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
        let brute = |n: u32, accepts: &dyn Fn(u8) -> bool| -> RoaringBitmap {
            (0..n)
                .filter(|&id| id != 7 && accepts(bucket("exp", &all[id as usize])))
                .collect()
        };
        assert_eq!(*first.accepted(|b| b < 50), brute(30_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b < 50), brute(40_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b < 50), brute(40_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b < 49), brute(40_000, &|b| b < 49));
        assert_eq!(*grown.accepted(|b| b >= 49), brute(40_000, &|b| b >= 49));
        assert_eq!(*grown.accepted(|b| b < 50), brute(40_000, &|b| b < 50));
        assert_eq!(*grown.accepted(|b| b == 99), brute(40_000, &|b| b == 99));
        assert!(grown.accepted(|_| false).is_empty());
        // A different name is a different split.
        let other = splits.split("holdout", 40_000, external);
        assert_ne!(other.buckets, grown.buckets);
    }

    #[test]
    fn only_the_last_few_names_are_kept() {
        let all = ids(10);
        let splits = BucketSplits::default();
        for i in 0..KEPT + 3 {
            splits.split(&format!("s{i}"), 10, |id| Some(all[id as usize].as_str()));
        }
        assert_eq!(splits.kept.read().len(), KEPT);
        assert!(splits.find("s0").is_none());
        assert!(splits.find(&format!("s{}", KEPT + 2)).is_some());
    }
}
