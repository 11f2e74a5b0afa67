//! Merged runs of day lists: the rollups of 8 or 64 consecutive days summed per customer into one
//! sorted list, so that a reader of a long window walks a few long lists instead of one short list
//! per day (a 365-day aggregate: about 20 lists instead of 365, each read as one stream).
//!
//! Runs are derived data, built on first use by a reader and never stored: a run remembers the
//! [`ListVersion`] of every day list it was merged from, and is used only while the lists of its
//! days are exactly those (same days, same versions); otherwise it is merged again. So nothing
//! that changes a day list has to know about runs, and a stale run is never read. At most one run
//! is kept per (key, first day, length), so the memory they take is bounded by the size of the
//! day lists they merge (twice that with both lengths), and only for windows that were queried.
//!
//! Runs are aligned: a run of `len` days starts on a multiple of `len`. A window's whole days are
//! covered greedily by the longest aligned runs inside it, then single days.
//!
//! This module owns the runs of one event's lists. It reads day lists; it never changes them and
//! never reads storage.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::rollup::{merge_partials, DayList, ListVersion, Partial};
use crate::model::FastMap;

/// The lengths of runs, in days, longest first; each divides the one before.
pub const RUN_DAYS: [u32; 3] = [256, 64, 8];

/// The figures of the days `first..first + len` merged: one entry per customer, in order.
#[derive(Debug)]
pub struct Run<T> {
    sources: Vec<(u32, ListVersion)>,
    items: Vec<T>,
}

/// A piece of a window's cover: one day's list, or a run of days.
#[derive(Debug)]
pub enum Piece<'a, T> {
    Day(&'a DayList<T>),
    Run(Arc<Run<T>>),
}

impl<T: Partial> Piece<'_, T> {
    /// The sorted, merged head and the unsorted tail (see [`DayList::parts`]; a run has no tail).
    pub fn parts(&self) -> (&[T], &[T]) {
        match self {
            Piece::Day(l) => l.parts(),
            Piece::Run(r) => (&r.items, &[]),
        }
    }
}

/// Runs by (key, first day, length).
type Built<T> = FastMap<(u32, u32, u32), Arc<Run<T>>>;

/// The runs built so far for the day lists of one event, per key (the caller's: e.g. a property
/// id), first day and length.
#[derive(Debug)]
pub struct Runs<T> {
    built: RwLock<Built<T>>,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Runs {
            built: RwLock::new(FastMap::default()),
        }
    }
}

/// A copy starts with no runs: they are a cache of the lists they came from.
impl<T> Clone for Runs<T> {
    fn clone(&self) -> Self {
        Runs::default()
    }
}

impl<T: Partial + Send + Sync> Runs<T> {
    /// The pieces covering the days `a..=b` of `days` (lists keyed by day, under `key`): the
    /// longest aligned runs inside, built now if missing or stale, then single days. Days without
    /// a list are skipped; a run is only worth it when some of its days have lists.
    pub fn cover<'a>(
        &self,
        key: u32,
        days: &'a BTreeMap<u32, DayList<T>>,
        a: u32,
        b: u32,
    ) -> Vec<Piece<'a, T>> {
        let mut pieces = Vec::new();
        let mut d = a;
        while d <= b {
            let run = RUN_DAYS.iter().copied().find(|&len| {
                d.is_multiple_of(len) && d.checked_add(len - 1).is_some_and(|e| e <= b)
            });
            match run {
                Some(len) => {
                    if days.range(d..=d + (len - 1)).next().is_some() {
                        pieces.push(Piece::Run(self.run(key, days, d, len)));
                    }
                    d += len;
                }
                None => {
                    if let Some(list) = days.get(&d) {
                        pieces.push(Piece::Day(list));
                    }
                    d += 1;
                }
            }
            if d == 0 {
                break; // wrapped past u32::MAX
            }
        }
        pieces
    }

    /// The run of `len` days from `first`: the one built before if its days' lists are unchanged,
    /// else merged now and kept.
    fn run(&self, key: u32, days: &BTreeMap<u32, DayList<T>>, first: u32, len: u32) -> Arc<Run<T>> {
        let lists = || days.range(first..=first + (len - 1));
        let current = |run: &Run<T>| {
            run.sources.len() == lists().count()
                && run
                    .sources
                    .iter()
                    .zip(lists())
                    .all(|(&(d, v), (&day, list))| d == day && v == list.version())
        };
        if let Some(run) = self.built.read().get(&(key, first, len)) {
            if current(run) {
                return run.clone();
            }
        }
        let mut items: Vec<T> = lists()
            .flat_map(|(_, l)| {
                let (head, tail) = l.parts();
                head.iter().chain(tail)
            })
            .copied()
            .collect();
        // Each day's head is sorted: the stable sort merges those runs.
        merge_partials(&mut items);
        items.shrink_to_fit();
        let run = Arc::new(Run {
            sources: lists().map(|(&d, l)| (d, l.version())).collect(),
            items,
        });
        self.built.write().insert((key, first, len), run.clone());
        run
    }

    /// Runs held (for tests and reports).
    pub fn len(&self) -> usize {
        self.built.read().len()
    }

    /// Whether no run is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::DayCount;

    fn count(cust: u32, count: u32) -> DayCount {
        DayCount {
            cust,
            count,
            first: 0,
            last: 0,
        }
    }

    /// Each customer's total over the pieces.
    fn totals(pieces: &[Piece<'_, DayCount>]) -> BTreeMap<u32, u32> {
        let mut t = BTreeMap::new();
        for p in pieces {
            let (head, tail) = p.parts();
            for x in head.iter().chain(tail) {
                *t.entry(x.cust).or_default() += x.count;
            }
        }
        t
    }

    fn naive(days: &BTreeMap<u32, DayList<DayCount>>, a: u32, b: u32) -> BTreeMap<u32, u32> {
        let mut t = BTreeMap::new();
        if a > b {
            return t;
        }
        for (_, l) in days.range(a..=b) {
            l.for_each(|x| *t.entry(x.cust).or_default() += x.count);
        }
        t
    }

    #[test]
    fn a_cover_sums_what_the_days_sum_and_follows_changes() {
        let mut days: BTreeMap<u32, DayList<DayCount>> = BTreeMap::new();
        for d in 0..300u32 {
            if d % 7 == 3 {
                continue; // days without a list
            }
            let l = days.entry(d).or_default();
            for c in 0..(d % 11) {
                l.add(count((c * 37 + d) % 50, 1 + c % 3));
            }
        }
        let runs = Runs::default();
        for (a, b) in [
            (0, 299),
            (5, 250),
            (64, 127),
            (63, 128),
            (8, 15),
            (17, 17),
            (40, 39),
        ] {
            let pieces = runs.cover(1, &days, a, b);
            assert_eq!(totals(&pieces), naive(&days, a, b), "{a}..={b}");
        }
        // Whole aligned runs were used: 64..=127 is one run.
        assert!(matches!(runs.cover(1, &days, 64, 127)[..], [Piece::Run(_)]));
        let held = runs.len();
        // A change to one day, a removal, and a day gaining its first list: the runs over them
        // are merged again; nothing stale is read.
        days.get_mut(&70).unwrap().add(count(7, 5));
        days.get_mut(&100).unwrap().remove(3);
        days.entry(73).or_default().add(count(9, 2));
        days.remove(&90);
        for (a, b) in [(0, 299), (64, 127), (72, 79)] {
            assert_eq!(totals(&runs.cover(1, &days, a, b)), naive(&days, a, b));
        }
        assert!(runs.len() >= held);
        // A list dropped and a new one made on the same day with the same number of edits is
        // another list, not the same content.
        let before = totals(&runs.cover(1, &days, 128, 191));
        days.remove(&130);
        let mut fresh = DayList::default();
        for c in 0..(130 % 11) {
            fresh.add(count(40 + c, 1));
        }
        days.insert(130, fresh);
        let after = totals(&runs.cover(1, &days, 128, 191));
        assert_eq!(after, naive(&days, 128, 191));
        assert_ne!(before, after);
    }

    #[test]
    fn keys_keep_their_runs_apart() {
        let mut one: BTreeMap<u32, DayList<DayCount>> = BTreeMap::new();
        let mut two: BTreeMap<u32, DayList<DayCount>> = BTreeMap::new();
        for d in 0..64 {
            one.entry(d).or_default().add(count(1, 1));
            two.entry(d).or_default().add(count(2, 2));
        }
        let runs = Runs::default();
        assert_eq!(totals(&runs.cover(1, &one, 0, 63)), naive(&one, 0, 63));
        assert_eq!(totals(&runs.cover(2, &two, 0, 63)), naive(&two, 0, 63));
        assert_eq!(runs.len(), 2);
        // A copy of the runs holds none.
        assert!(runs.clone().is_empty());
    }
}
