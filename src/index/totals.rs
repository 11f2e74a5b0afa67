//! Kept totals: every customer's figures summed over a range of whole days of one event's day
//! lists (a count, or a numeric property's count, sum, minimum and maximum), kept between readers
//! with, for each measure a reader asks for (the sum, the mean, ...), the customers in order of
//! that measure, so that "who has a total above `v`" is a binary search and one kept bitmap, not
//! a sum over every customer's lists.
//!
//! Like merged runs (`crate::index::runs`), totals are a reader's cache: they remember the
//! [`ListVersion`] of every day list they were summed from and are used only while the lists of
//! their days are exactly those (same days, same versions); any change to a list of their days
//! (an event added, a customer deleted or merged, a snapshot loaded) makes them stale, and the
//! next reader sums them again. A list outside their days (the day of *now*, which a window cuts)
//! changes nothing here: readers add the days a window cuts themselves. At most [`KEPT`] totals
//! are held per event and kind (a few windows, a few days of *now*), the least recently used
//! dropped first.
//!
//! This module owns the kept totals and the value orders; what a measure is and what a
//! comparison with a total decides is the query layer's (`crate::query::totals`). It reads day
//! lists' versions, never changes them, and never reads storage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use super::rollup::{versions_match, versions_of, DayList, ListVersion, Partial};

/// Totals kept per event and kind (count lists, one property's number lists), at most.
pub const KEPT: usize = 4;

/// Each customer's figures over the whole days `first..=last` of a map of day lists (one entry
/// per customer with figures, ascending), and the orders built over them so far.
#[derive(Debug)]
pub struct Totals<T> {
    /// The lists' key in their event (a property id; 0 for counts).
    key: u32,
    first: u32,
    last: u32,
    sources: Vec<(u32, ListVersion)>,
    pub items: Vec<T>,
    /// Orders by measure (the caller's number for it).
    orders: Mutex<Vec<(u8, Arc<Order>)>>,
    /// Measures asked for once without an order built ([`Totals::order_from_second`]).
    asked: Mutex<Vec<u8>>,
}

impl<T> Totals<T> {
    /// Whether these totals were summed from exactly the lists `days` has now in their days.
    fn current<P: Partial>(&self, days: &BTreeMap<u32, DayList<P>>) -> bool {
        versions_match(&self.sources, days, self.first, self.last)
    }

    /// The order of `measure` if it is kept or asked for before; `None` the first time it is
    /// asked for (the caller then decides with one pass over the totals). Sorting every
    /// customer costs several times that pass, and pays only from a second question on the same
    /// totals: a one-shot `audiencedb query` never sorts.
    pub fn order_from_second(
        &self,
        measure: u8,
        build: impl FnOnce(&[T]) -> Order,
    ) -> Option<Arc<Order>> {
        if let Some((_, o)) = self.orders.lock().iter().find(|(m, _)| *m == measure) {
            return Some(o.clone());
        }
        {
            let mut asked = self.asked.lock();
            if !asked.contains(&measure) {
                asked.push(measure);
                return None;
            }
        }
        Some(self.order(measure, build))
    }

    /// The order of `measure`: kept, or built now with `build` and kept.
    pub fn order(&self, measure: u8, build: impl FnOnce(&[T]) -> Order) -> Arc<Order> {
        if let Some((_, o)) = self.orders.lock().iter().find(|(m, _)| *m == measure) {
            return o.clone();
        }
        // Built outside the lock: two readers may both build it, and one is kept.
        let built = Arc::new(build(&self.items));
        let mut orders = self.orders.lock();
        if let Some((_, o)) = orders.iter().find(|(m, _)| *m == measure) {
            return o.clone();
        }
        orders.push((measure, built.clone()));
        built
    }
}

/// The totals kept for one event's lists of one kind.
#[derive(Debug)]
pub struct KeptTotals<T> {
    /// The most recently used last.
    kept: Mutex<Vec<Arc<Totals<T>>>>,
    /// Totals summed so far (for tests: kept totals are not summed again).
    summed: AtomicU64,
}

impl<T> Default for KeptTotals<T> {
    fn default() -> Self {
        KeptTotals {
            kept: Mutex::new(Vec::new()),
            summed: AtomicU64::new(0),
        }
    }
}

/// A copy starts with none: they are a cache of the lists they came from.
impl<T> Clone for KeptTotals<T> {
    fn clone(&self) -> Self {
        KeptTotals::default()
    }
}

impl<T> KeptTotals<T> {
    /// The totals of the lists `days` (under `key`) over the days `first..=last`: the kept ones
    /// if their days' lists are unchanged, else summed now with `sum` (the entries ascending by
    /// customer, one per customer) and kept.
    pub fn get<P: Partial>(
        &self,
        key: u32,
        days: &BTreeMap<u32, DayList<P>>,
        (first, last): (u32, u32),
        sum: impl FnOnce() -> Vec<T>,
    ) -> Arc<Totals<T>> {
        {
            let mut kept = self.kept.lock();
            let found = kept
                .iter()
                .position(|t| t.key == key && t.first == first && t.last == last);
            if let Some(i) = found {
                let t = kept.remove(i);
                if t.current(days) {
                    kept.push(t.clone());
                    return t;
                }
            }
        }
        let sources = versions_of(days, first, last);
        // Summed outside the lock (readers in parallel may ask for other totals meanwhile).
        let items = sum();
        self.summed.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Totals {
            key,
            first,
            last,
            sources,
            items,
            orders: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
        });
        let mut kept = self.kept.lock();
        kept.retain(|k| !(k.key == key && k.first == first && k.last == last));
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push(t.clone());
        t
    }

    /// The totals of the lists `days` (under `key`) over the days `first..=last` if they are
    /// kept and were summed from exactly the lists `days` has now in those days; never sums
    /// (for readers of a few customers, to whom a sum over every customer is not worth it).
    pub fn kept<P: Partial>(
        &self,
        key: u32,
        days: &BTreeMap<u32, DayList<P>>,
        (first, last): (u32, u32),
    ) -> Option<Arc<Totals<T>>> {
        let kept = self.kept.lock();
        kept.iter()
            .find(|t| t.key == key && t.first == first && t.last == last)
            .filter(|t| t.current(days))
            .cloned()
    }

    /// How many times totals were summed (not found kept, or stale) by these.
    pub fn summed(&self) -> u64 {
        self.summed.load(Ordering::Relaxed)
    }

    /// Totals held (for tests and reports).
    pub fn len(&self) -> usize {
        self.kept.lock().len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Customers in ascending order of one measure of their totals (or of any number per customer:
/// a model's values, `crate::query::predictive`), with
/// bitmaps of every customer from a position on at regular steps: who has a measure at or above
/// a value is the kept bitmap of the first step past its position, plus the few customers before
/// that step.
#[derive(Debug)]
pub struct Order {
    /// (measure, customer), ascending by measure; no measure is NaN.
    pub values: Vec<(f64, u32)>,
    /// `from[k]`: the customers at positions `k · step` and after.
    from: Vec<RoaringBitmap>,
    step: usize,
    /// The largest margin of any customer of `values` (the caller's: how far the measure of a
    /// total may be from what the exact check computes).
    pub margin: f64,
    /// Customers with totals left out of `values` (a measure or a margin that is not a finite
    /// number): the caller decides them one by one.
    pub odd: Vec<u32>,
}

/// Kept bitmaps per order, at most: each customer's position is then at most `len / STEPS` from a
/// kept bitmap.
const STEPS: usize = 64;

/// The least step between kept bitmaps.
const MIN_STEP: usize = 256;

impl Order {
    /// The order of `values` (any order; no measure NaN), their largest `margin` and the `odd`
    /// customers.
    pub fn new(mut values: Vec<(f64, u32)>, margin: f64, odd: Vec<u32>) -> Order {
        debug_assert!(values.iter().all(|v| !v.0.is_nan()));
        values.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let step = values.len().div_ceil(STEPS).max(MIN_STEP);
        // From the end: each kept bitmap is the next one plus the step before it.
        let mut from: Vec<RoaringBitmap> = Vec::new();
        let mut acc = RoaringBitmap::new();
        let mut k = values.len().div_ceil(step);
        while k > 0 {
            k -= 1;
            for &(_, c) in &values[k * step..((k + 1) * step).min(values.len())] {
                acc.insert(c);
            }
            from.push(acc.clone());
        }
        from.reverse();
        Order {
            values,
            from,
            step,
            margin,
            odd,
        }
    }

    /// The customers at position `pos` and after.
    pub fn from(&self, pos: usize) -> RoaringBitmap {
        if pos >= self.values.len() {
            return RoaringBitmap::new();
        }
        let k = pos.div_ceil(self.step);
        let mut out = self.from.get(k).cloned().unwrap_or_default();
        for &(_, c) in &self.values[pos..(k * self.step).min(self.values.len())] {
            out.insert(c);
        }
        out
    }

    /// The customers before position `pos`.
    pub fn before(&self, pos: usize) -> RoaringBitmap {
        match self.from.first() {
            Some(all) if pos > 0 => all - self.from(pos),
            _ => RoaringBitmap::new(),
        }
    }

    /// The first position whose measure is not below `x` by `below` (`below(m)`: false, then
    /// true, as measures grow).
    pub fn position(&self, below: impl Fn(f64) -> bool) -> usize {
        self.values.partition_point(|v| below(v.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::rollup::DayCount;
    use rand::{Rng, SeedableRng};

    #[test]
    fn positions_and_bitmaps_equal_a_scan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [0usize, 1, 5, 255, 256, 257, 1_000, 20_000] {
            let values: Vec<(f64, u32)> = (0..n as u32)
                .map(|c| (f64::from(rng.random_range(0..50u32)) / 2.0, c * 3))
                .collect();
            let o = Order::new(values.clone(), 0.0, Vec::new());
            assert!(o.values.windows(2).all(|w| w[0].0 <= w[1].0));
            for pos in [0, 1, n / 3, n / 2, n.saturating_sub(1), n, n + 5] {
                let want: RoaringBitmap = o.values.iter().skip(pos).map(|v| v.1).collect();
                assert_eq!(o.from(pos), want, "{n} {pos}");
                let before: RoaringBitmap = o.values.iter().take(pos).map(|v| v.1).collect();
                assert_eq!(o.before(pos), before, "{n} {pos}");
            }
            for x in [-1.0, 0.0, 3.5, 12.0, 24.5, 30.0] {
                let p = o.position(|m| m < x);
                assert_eq!(p, values.iter().filter(|v| v.0 < x).count());
            }
        }
    }

    fn list(custs: &[u32]) -> DayList<DayCount> {
        let mut l = DayList::default();
        for &cust in custs {
            l.add(DayCount {
                cust,
                count: 1,
                first: 0,
                last: 0,
            });
        }
        l
    }

    #[test]
    fn totals_are_kept_until_a_list_of_their_days_changes() {
        let mut days: BTreeMap<u32, DayList<DayCount>> = BTreeMap::new();
        days.insert(10, list(&[1, 2]));
        days.insert(12, list(&[2]));
        days.insert(20, list(&[5]));
        let kept: KeptTotals<u32> = KeptTotals::default();
        let sums = std::cell::Cell::new(0);
        let get = |days: &BTreeMap<u32, DayList<DayCount>>, range| {
            kept.get(0, days, range, || {
                sums.set(sums.get() + 1);
                vec![sums.get()]
            })
        };
        assert_eq!(get(&days, (10, 15)).items, vec![1]);
        assert_eq!(get(&days, (10, 15)).items, vec![1], "kept");
        // A list outside the days changes nothing.
        days.get_mut(&20).unwrap().add(DayCount {
            cust: 9,
            count: 1,
            first: 0,
            last: 0,
        });
        assert_eq!(get(&days, (10, 15)).items, vec![1], "kept");
        // A list of the days changed, added or removed: summed again.
        days.get_mut(&12).unwrap().remove(2);
        assert_eq!(get(&days, (10, 15)).items, vec![2]);
        days.insert(11, list(&[7]));
        assert_eq!(get(&days, (10, 15)).items, vec![3]);
        days.remove(&11);
        assert_eq!(get(&days, (10, 15)).items, vec![4]);
        assert_eq!(get(&days, (10, 15)).items, vec![4], "kept");
        // Another range is other totals; at most KEPT are held.
        for last in 16..16 + KEPT as u32 {
            get(&days, (10, last));
        }
        assert_eq!(kept.len(), KEPT);
        assert_eq!(get(&days, (10, 15)).items, vec![5 + KEPT as u32], "dropped");
    }
}
