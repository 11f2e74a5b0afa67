//! Per (event, property), each indexed value's customers over a run of whole days: the union of
//! the value's per-day bitmaps, which `top` and `recommend` need for every value on every call.
//! Built by those readers and kept between calls as long as the days' count lists keep their
//! versions (every event stored on, or removed from, one of those days changes its list's
//! version, so a kept union is never stale). Derived and never stored; a copy of the indexes
//! starts without them.
//!
//! This module owns the cache only: what a union holds is the caller's (`query::values`).

use std::sync::Arc;

use parking_lot::RwLock;
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
}

impl Unions {
    /// The customers of `value`, if any did it in those days.
    pub fn of(&self, value: &IndexValue) -> Option<&RoaringBitmap> {
        self.sets
            .binary_search_by(|(k, _)| k.cmp(value))
            .ok()
            .map(|i| &self.sets[i].1)
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
        Arc::new(Unions {
            prop,
            first,
            last: first + 1,
            versions,
            sets: Vec::new(),
        })
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
