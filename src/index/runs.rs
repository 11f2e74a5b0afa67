//! Merged runs of day lists: the rollups of 8 or 64 consecutive days summed per customer into one
//! sorted list, so that a reader of a long window walks a few long lists instead of one short list
//! per day (a 365-day aggregate: about 20 lists instead of 365, each read as one stream).
//!
//! Runs are derived data, built on first use by a reader: in memory a run remembers the
//! [`ListVersion`] of every day list it was merged from, and is used only while the lists of its
//! days are exactly those (same days, same versions); otherwise it is merged again. So nothing
//! that changes a day list has to know about runs, and a stale run is never read. At most one run
//! is kept per (key, first day, length), so the memory they take is bounded by the size of the
//! day lists they merge (twice that with both lengths), and only for windows that were queried.
//! A run merged is also stored in the folder with the days and fingerprints of its lists
//! (`crate::index::derived`); a fresh process loads it instead of merging when its days' lists
//! have exactly those fingerprints.
//!
//! Runs are aligned: a run of `len` days starts on a multiple of `len`. A window's whole days are
//! covered greedily by the longest aligned runs inside it, then single days.
//!
//! This module owns the runs of one event's lists and their stored form. It reads day lists; it
//! never changes them, and reaches the folder only through a [`DerivedStore`].

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::derived::{self, DerivedStore};
use super::rollup::{
    fingerprint_of, merge_partials, versions_match, versions_of, DayList, ListVersion, Partial,
    StoredPartial,
};
use crate::model::FastMap;
use crate::storage::codec::{put_varint, Reader};

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

/// The length of the longest aligned run starting on day `d` that ends by day `b`, if any: how
/// a window's whole days are covered, here and by `super::presence`.
pub fn run_at(d: u32, b: u32) -> Option<u32> {
    RUN_DAYS
        .iter()
        .copied()
        .find(|&len| d.is_multiple_of(len) && d.checked_add(len - 1).is_some_and(|e| e <= b))
}

impl<T: StoredPartial + Send + Sync> Runs<T> {
    /// The pieces covering the days `a..=b` of `days` (lists keyed by day, under `key`, of
    /// `event`): the longest aligned runs inside, loaded from `kept` or built now (and stored
    /// there) if missing or stale, then single days. Days without a list are skipped; a run is
    /// only worth it when some of its days have lists.
    pub fn cover<'a>(
        &self,
        kept: &dyn DerivedStore,
        event: u32,
        key: u32,
        days: &'a BTreeMap<u32, DayList<T>>,
        a: u32,
        b: u32,
    ) -> Vec<Piece<'a, T>> {
        let mut pieces = Vec::new();
        let mut d = a;
        while d <= b {
            match run_at(d, b) {
                Some(len) => {
                    if days.range(d..=d + (len - 1)).next().is_some() {
                        pieces.push(Piece::Run(self.run(kept, event, key, days, d, len)));
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
    /// else the stored one if it was merged from lists with the fingerprints they have now, else
    /// merged now, kept and stored.
    fn run(
        &self,
        kept: &dyn DerivedStore,
        event: u32,
        key: u32,
        days: &BTreeMap<u32, DayList<T>>,
        first: u32,
        len: u32,
    ) -> Arc<Run<T>> {
        let last = first + (len - 1);
        let lists = || days.range(first..=last);
        if let Some(run) = self.built.read().get(&(key, first, len)) {
            if versions_match(&run.sources, days, first, last) {
                return run.clone();
            }
        }
        let record_key = derived::run_key(T::KIND, event, key, first, len);
        let sources = || lists().map(|(&d, l)| (d, l.fingerprint()));
        let stored = kept
            .load(&record_key)
            .and_then(|r| decode_run::<T>(&r, sources()));
        if let Some(items) = stored {
            derived::note_used();
            let run = Arc::new(Run {
                sources: versions_of(days, first, last),
                items,
            });
            self.built.write().insert((key, first, len), run.clone());
            return run;
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
        kept.save(
            &record_key,
            &derived::pack_plain(&encode_run(sources(), &items)),
        );
        let run = Arc::new(Run {
            sources: versions_of(days, first, last),
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

/// A run as a record body: the layout; the count of its days' lists, then each one's day (varint)
/// and fingerprint (`u64` LE); the count of entries, then the entries as
/// [`StoredPartial::put`] writes them.
fn encode_run<T: StoredPartial>(sources: impl Iterator<Item = (u32, u64)>, items: &[T]) -> Vec<u8> {
    let sources: Vec<(u32, u64)> = sources.collect();
    let mut out = Vec::with_capacity(16 + sources.len() * 10 + items.len() * T::BYTES);
    derived::put_sources(&mut out, &sources);
    put_varint(&mut out, items.len() as u64);
    for e in items {
        e.put(&mut out);
    }
    out
}

/// The entries of a stored run (a record written by `pack` of [`encode_run`]) if it was merged
/// from lists of exactly the days and fingerprints `current` gives (in day order), and its
/// entries are one per customer, in order, with those fingerprints' sum; `None` otherwise (stale,
/// another layout, damaged).
fn decode_run<T: StoredPartial>(
    record: &[u8],
    current: impl Iterator<Item = (u32, u64)>,
) -> Option<Vec<T>> {
    let body = derived::unpack(record).ok()?;
    let mut r = Reader::new(&body);
    let total = derived::check_sources(&mut r, current)?;
    let count = r.varint().ok()?;
    let bytes = r
        .take(usize::try_from(count).ok()?.checked_mul(T::BYTES)?)
        .ok()?;
    if !r.is_empty() {
        return None;
    }
    let items: Vec<T> = bytes.chunks_exact(T::BYTES).map(T::get).collect();
    let ordered = items.windows(2).all(|w| w[0].cust() < w[1].cust());
    (ordered && fingerprint_of(&items) == total).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::derived::NoStore;
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
            let pieces = runs.cover(&NoStore, 9, 1, &days, a, b);
            assert_eq!(totals(&pieces), naive(&days, a, b), "{a}..={b}");
        }
        // Whole aligned runs were used: 64..=127 is one run.
        assert!(matches!(
            runs.cover(&NoStore, 9, 1, &days, 64, 127)[..],
            [Piece::Run(_)]
        ));
        let held = runs.len();
        // A change to one day, a removal, and a day gaining its first list: the runs over them
        // are merged again; nothing stale is read.
        days.get_mut(&70).unwrap().add(count(7, 5));
        days.get_mut(&100).unwrap().remove(3);
        days.entry(73).or_default().add(count(9, 2));
        days.remove(&90);
        for (a, b) in [(0, 299), (64, 127), (72, 79)] {
            assert_eq!(
                totals(&runs.cover(&NoStore, 9, 1, &days, a, b)),
                naive(&days, a, b)
            );
        }
        assert!(runs.len() >= held);
        // A list dropped and a new one made on the same day with the same number of edits is
        // another list, not the same content.
        let before = totals(&runs.cover(&NoStore, 9, 1, &days, 128, 191));
        days.remove(&130);
        let mut fresh = DayList::default();
        for c in 0..(130 % 11) {
            fresh.add(count(40 + c, 1));
        }
        days.insert(130, fresh);
        let after = totals(&runs.cover(&NoStore, 9, 1, &days, 128, 191));
        assert_eq!(after, naive(&days, 128, 191));
        assert_ne!(before, after);
    }

    #[test]
    fn stored_runs_are_loaded_only_while_their_days_have_the_same_content() {
        let mut days: BTreeMap<u32, DayList<DayCount>> = BTreeMap::new();
        for d in 0..300u32 {
            if d % 5 == 1 {
                continue;
            }
            let l = days.entry(d).or_default();
            for c in 0..(d % 13) {
                l.add(count((c * 31 + d) % 70, 1 + c % 4));
            }
        }
        let kept = crate::index::derived::MemStore::default();
        let windows = [(0, 299), (64, 127), (8, 15), (256, 263)];
        {
            let builder = Runs::default();
            for &(a, b) in &windows {
                assert_eq!(
                    totals(&builder.cover(&kept, 3, 1, &days, a, b)),
                    naive(&days, a, b)
                );
            }
        }
        let stored = kept.records.lock().len();
        assert!(stored >= 4);
        // A fresh process (new runs, the same lists: a snapshot's copy) loads them all.
        let copy: BTreeMap<u32, DayList<DayCount>> =
            days.iter().map(|(d, l)| (*d, l.clone())).collect();
        let fresh = Runs::default();
        let saves = kept.saves.load(std::sync::atomic::Ordering::Relaxed);
        for &(a, b) in &windows {
            assert_eq!(
                totals(&fresh.cover(&kept, 3, 1, &copy, a, b)),
                naive(&days, a, b)
            );
        }
        assert_eq!(kept.saves.load(std::sync::atomic::Ordering::Relaxed), saves);
        // Another event or key has none stored.
        let other = Runs::default();
        other.cover(&kept, 4, 1, &copy, 64, 127);
        assert!(kept.saves.load(std::sync::atomic::Ordering::Relaxed) > saves);
        // A day gains an event, another loses a customer, a third appears: the stored runs over
        // them are stale, merged again (and stored again), never read.
        let mut changed = copy;
        changed.get_mut(&70).unwrap().add(count(3, 1));
        changed.get_mut(&9).unwrap().remove_where(|c| c % 2 == 0);
        changed.entry(261).or_default().add(count(69, 2));
        let later = Runs::default();
        for &(a, b) in &windows {
            assert_eq!(
                totals(&later.cover(&kept, 3, 1, &changed, a, b)),
                naive(&changed, a, b),
                "{a}..={b}"
            );
        }
        // A damaged record is not read either.
        for v in kept.records.lock().values_mut() {
            let n = v.len();
            v[n - 8] ^= 0x40;
        }
        let damaged = Runs::default();
        for &(a, b) in &windows {
            assert_eq!(
                totals(&damaged.cover(&kept, 3, 1, &changed, a, b)),
                naive(&changed, a, b)
            );
        }
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
        assert_eq!(
            totals(&runs.cover(&NoStore, 9, 1, &one, 0, 63)),
            naive(&one, 0, 63)
        );
        assert_eq!(
            totals(&runs.cover(&NoStore, 9, 2, &two, 0, 63)),
            naive(&two, 0, 63)
        );
        assert_eq!(runs.len(), 2);
        // A copy of the runs holds none.
        assert!(runs.clone().is_empty());
    }
}
