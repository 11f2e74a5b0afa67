//! Per (event, property), each indexed value's customers over a run of whole days: the union of
//! the value's per-day bitmaps, which `top` and `recommend` need for every value on every call.
//! Built by those readers and kept between calls as long as the days' count lists keep their
//! versions (every event stored on, or removed from, one of those days changes its list's
//! version, so a kept union is never stale). Derived and never stored; a copy of the indexes
//! starts without them.
//!
//! Next to each kept union, built on first use and kept as long as it, the same pairs turned
//! around ([`ByCustomer`]): each customer's values over those days, so that counting, for every
//! value, how many of a set of customers did it is a pass over those customers' few values
//! instead of an intersection per value.
//!
//! This module owns the cache only: what a union holds is the caller's (`query::values`).

use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::rollup::ListVersion;
use super::IndexValue;

/// Unions kept per event, at most: each is one (property, run of days) asked for lately.
const KEPT: usize = 4;

/// One (property, first day, last day)'s unions and the count lists' versions they were built
/// from.
#[derive(Debug)]
pub struct Unions {
    pub prop: u32,
    pub first: u32,
    pub last: u32,
    /// The versions of the event's count lists of the days `first..=last` that have one.
    pub versions: Vec<(u32, ListVersion)>,
    /// Each value with customers in those days, in value order, with them.
    pub sets: Vec<(IndexValue, RoaringBitmap)>,
    /// `sets` turned around, built on first use ([`Unions::by_customer`]).
    pub turned: OnceLock<Option<ByCustomer>>,
}

impl Unions {
    /// Unions of `prop` over `first..=last` built from lists of these `versions`.
    pub fn new(
        prop: u32,
        (first, last): (u32, u32),
        versions: Vec<(u32, ListVersion)>,
        sets: Vec<(IndexValue, RoaringBitmap)>,
    ) -> Unions {
        Unions {
            prop,
            first,
            last,
            versions,
            sets,
            turned: OnceLock::new(),
        }
    }

    /// Each customer's values (positions in `sets`), built on the first call and kept with the
    /// unions; `None` when there are too many pairs to number them in 32 bits.
    pub fn by_customer(&self) -> Option<&ByCustomer> {
        self.turned
            .get_or_init(|| ByCustomer::new(&self.sets))
            .as_ref()
    }
    /// The customers of `value`, if any did it in those days.
    pub fn of(&self, value: &IndexValue) -> Option<&RoaringBitmap> {
        self.sets
            .binary_search_by(|(k, _)| k.cmp(value))
            .ok()
            .map(|i| &self.sets[i].1)
    }
}

/// Customers this many ids apart are turned around by separate tasks (a roaring container's
/// span).
const SLICE: u32 = 1 << 16;

/// The (value, customer) pairs of some unions, by customer: customer `c`'s values are the
/// positions `values[starts[c]..starts[c + 1]]`, ascending; customers past `starts` have none.
#[derive(Debug)]
pub struct ByCustomer {
    starts: Vec<u32>,
    values: Vec<u32>,
}

impl ByCustomer {
    /// The pairs of `sets` turned around; `None` past `u32::MAX` pairs. Each slice of
    /// [`SLICE`] ids is done by its own task (counting each customer's values, then placing
    /// them), the slices then put end to end.
    pub fn new(sets: &[(impl Sync, RoaringBitmap)]) -> Option<ByCustomer> {
        let end = sets
            .iter()
            .filter_map(|(_, s)| s.max())
            .max()
            .map_or(0, |m| m as u64 + 1);
        let pairs: u64 = sets.iter().map(|(_, s)| s.len()).sum();
        if pairs > u64::from(u32::MAX) || sets.len() as u64 > u64::from(u32::MAX) {
            return None;
        }
        let slices: Vec<u32> = (0..end.div_ceil(u64::from(SLICE)))
            .map(|i| i as u32 * SLICE)
            .collect();
        // Per slice: each customer's count then end (local), and the values.
        let parts: Vec<(Vec<u32>, Vec<u32>)> = slices
            .par_iter()
            .map(|&lo| {
                let hi = (u64::from(lo) + u64::from(SLICE)).min(end) as u32;
                let width = (hi - lo) as usize;
                let mut starts = vec![0u32; width + 1];
                for (_, set) in sets {
                    for c in set.range(lo..hi) {
                        starts[(c - lo) as usize + 1] += 1;
                    }
                }
                for i in 0..width {
                    starts[i + 1] += starts[i];
                }
                let mut values = vec![0u32; starts[width] as usize];
                let mut next = starts.clone();
                for (pos, (_, set)) in sets.iter().enumerate() {
                    for c in set.range(lo..hi) {
                        let slot = &mut next[(c - lo) as usize];
                        values[*slot as usize] = pos as u32;
                        *slot += 1;
                    }
                }
                (starts, values)
            })
            .collect();
        let mut starts = Vec::with_capacity(end as usize + 1);
        let mut values = Vec::with_capacity(pairs as usize);
        starts.push(0);
        for (local, vals) in parts {
            let base = values.len() as u32;
            starts.extend(local[1..].iter().map(|&s| base + s));
            values.extend_from_slice(&vals);
        }
        Some(ByCustomer { starts, values })
    }

    /// Customer `cust`'s values: positions in the sets turned around, ascending.
    pub fn of(&self, cust: u32) -> &[u32] {
        let c = cust as usize;
        if c + 1 >= self.starts.len() {
            return &[];
        }
        &self.values[self.starts[c] as usize..self.starts[c + 1] as usize]
    }
}

/// The unions kept for one event, most recently built last.
#[derive(Debug, Default)]
pub struct ValueUnions {
    kept: RwLock<Vec<Arc<Unions>>>,
}

/// A copy starts empty: the unions are a cache of the bitmaps.
impl Clone for ValueUnions {
    fn clone(&self) -> Self {
        ValueUnions::default()
    }
}

impl ValueUnions {
    /// The unions of `prop` over `first..=last`, if they were built from lists of exactly
    /// these `versions`.
    pub fn get(
        &self,
        prop: u32,
        first: u32,
        last: u32,
        versions: &[(u32, ListVersion)],
    ) -> Option<Arc<Unions>> {
        self.kept
            .read()
            .iter()
            .find(|u| u.prop == prop && u.first == first && u.last == last)
            .filter(|u| u.versions == versions)
            .cloned()
    }

    /// Keeps `unions`, in place of any for the same property and days; the least recently
    /// built go first when more than a few are kept.
    pub fn put(&self, unions: Arc<Unions>) {
        let mut kept = self.kept.write();
        kept.retain(|u| {
            !(u.prop == unions.prop && u.first == unions.first && u.last == unions.last)
        });
        kept.push(unions);
        if kept.len() > KEPT {
            let extra = kept.len() - KEPT;
            kept.drain(..extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unions(prop: u32, first: u32, versions: Vec<(u32, ListVersion)>) -> Arc<Unions> {
        Arc::new(Unions::new(prop, (first, first + 1), versions, Vec::new()))
    }

    #[test]
    fn turned_around_pairs_are_each_customers_values() {
        let bm = |ids: &[u32]| ids.iter().copied().collect::<RoaringBitmap>();
        // Customers on both sides of slice edges, one value with none, a customer past the end.
        let sets = vec![
            ("a", bm(&[0, 5, SLICE - 1, SLICE, 3 * SLICE + 7])),
            ("b", bm(&[])),
            ("c", bm(&[5, SLICE, 2 * SLICE + 1])),
            ("d", bm(&[SLICE - 1, 3 * SLICE + 7])),
        ];
        let by = ByCustomer::new(&sets).expect("few pairs");
        for cust in (0..4 * SLICE).chain([u32::MAX]) {
            let want: Vec<u32> = (0..sets.len() as u32)
                .filter(|&p| sets[p as usize].1.contains(cust))
                .collect();
            assert_eq!(by.of(cust), want.as_slice(), "customer {cust}");
        }
        let none = ByCustomer::new(&Vec::<((), RoaringBitmap)>::new()).expect("no pairs");
        assert!(none.of(0).is_empty());
    }

    #[test]
    fn kept_unions_are_found_only_with_the_same_versions_and_few_are_kept() {
        let (v1, v2) = (ListVersion::fresh(), ListVersion::fresh());
        let cache = ValueUnions::default();
        cache.put(unions(1, 10, vec![(10, v1)]));
        assert!(cache.get(1, 10, 11, &[(10, v1)]).is_some());
        assert!(
            cache.get(1, 10, 11, &[(10, v2)]).is_none(),
            "a list changed"
        );
        assert!(
            cache.get(1, 10, 11, &[(10, v1), (11, v2)]).is_none(),
            "a day gained a list"
        );
        assert!(
            cache.get(2, 10, 11, &[(10, v1)]).is_none(),
            "another property"
        );
        cache.put(unions(1, 10, vec![(10, v2)]));
        assert!(cache.get(1, 10, 11, &[(10, v2)]).is_some(), "replaced");
        for first in 20..20 + KEPT as u32 {
            cache.put(unions(1, first, vec![]));
        }
        assert!(
            cache.get(1, 10, 11, &[(10, v2)]).is_none(),
            "the oldest went"
        );
        assert!(cache.get(1, 20, 21, &[]).is_some());
        assert!(ValueUnions::clone(&cache).get(1, 20, 21, &[]).is_none());
    }
}
