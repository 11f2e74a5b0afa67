//! Per event, who did it on any day of an aligned run of days: the union of the run's day
//! bitmaps, kept so that a long window (`visited before 7 days ago`, `purchased ever`) is the
//! union of a few run bitmaps instead of one bitmap per day of two years. The runs themselves
//! ([`PresenceRuns::runs_within`]) let a pass over a window's days for a few customers skip,
//! for each one, the runs it has no event in (`crate::query::due`).
//!
//! Runs are aligned as the count lists' runs are (`super::runs`, [`run_at`]): a run of `len`
//! days starts on a multiple of `len`, and a window's whole days are covered by the longest
//! runs inside it, then single days. A kept union remembers the [`ListVersion`] of each of its
//! days' count lists: who is in a day's count list is who is in its bitmap, and every change to
//! one changes the other, so a union is used only while those versions (and days) are exactly
//! the ones it was built from, and is built again otherwise. Nothing that writes day bitmaps has
//! to know about it. A copy of the indexes starts with none kept.
//!
//! A union built is also stored in the folder (`super::derived`, key [`derived::run_key`] of
//! kind [`KIND`]) with the days and fingerprints of its count lists, so that a fresh process's
//! first long window loads a few bitmaps instead of unioning every day's; it is loaded only
//! while those lists have exactly those fingerprints (the argument is `derived.rs`'s).
//!
//! This module owns the kept unions and their stored form. It reads day bitmaps and count lists;
//! it never changes them, and reaches the folder only through a [`DerivedStore`].

use std::sync::Arc;

use parking_lot::RwLock;
use roaring::{MultiOps, RoaringBitmap};

use super::derived::{self, DerivedStore};
use super::rollup::{versions_match, versions_of, ListVersion};
use super::runs::run_at;
use super::{DayBitmaps, DayCounts};
use crate::model::FastMap;
use crate::storage::codec::{put_varint, Reader};

/// The kind byte of a stored union's key ([`derived::run_key`]; the count and number runs are 0
/// and 1).
pub const KIND: u8 = 2;

/// One run's union and the count lists' versions it was built from.
#[derive(Debug)]
pub struct RunUnion {
    sources: Vec<(u32, ListVersion)>,
    members: RoaringBitmap,
}

impl RunUnion {
    /// Who has the event on any day of the run.
    pub fn members(&self) -> &RoaringBitmap {
        &self.members
    }
}

/// The unions kept for one event's day bitmaps, by (first day, length).
#[derive(Debug, Default)]
pub struct PresenceRuns {
    built: RwLock<FastMap<(u32, u32), Arc<RunUnion>>>,
}

/// A copy starts with nothing kept: the unions are a cache of the bitmaps they came from.
impl Clone for PresenceRuns {
    fn clone(&self) -> Self {
        PresenceRuns::default()
    }
}

impl PresenceRuns {
    /// Who is in any of the bitmaps of the days `a..=b` of `days` (`counts` being the same
    /// event's count lists, `event` its id for the stored unions in `kept`): the same set as the
    /// union of those day bitmaps.
    pub fn union(
        &self,
        (kept, event): (&dyn DerivedStore, u32),
        days: &DayBitmaps,
        counts: &DayCounts,
        a: u32,
        b: u32,
    ) -> RoaringBitmap {
        // The runs' unions, then the days outside them one by one (a run left out, with no
        // union to vouch for it, is such days too).
        let runs = self.runs_within((kept, event), days, counts, a, b);
        let mut all: Vec<&RoaringBitmap> = runs.iter().map(|(_, _, r)| &r.members).collect();
        let mut from = Some(a);
        for (first, last, _) in &runs {
            if let Some(d) = from {
                all.extend(days.range(d..*first).map(|(_, bm)| bm));
            }
            from = last.checked_add(1);
        }
        if let Some(d) = from.filter(|&d| d <= b) {
            all.extend(days.range(d..=b).map(|(_, bm)| bm));
        }
        all.into_iter().union()
    }

    /// The aligned runs inside the days `a..=b` that [`PresenceRuns::union`] covers them with,
    /// each as (first day, last day, union), in day order: kept, loaded or built as there. A run
    /// whose days have no bitmap, or whose bitmaps and count lists do not match day for day, is
    /// left out; the days outside the runs returned are the caller's to look at one by one.
    pub fn runs_within(
        &self,
        (kept, event): (&dyn DerivedStore, u32),
        days: &DayBitmaps,
        counts: &DayCounts,
        a: u32,
        b: u32,
    ) -> Vec<(u32, u32, Arc<RunUnion>)> {
        let mut out = Vec::new();
        let mut d = a;
        while d <= b {
            let len = run_at(d, b).unwrap_or(1);
            let last = d + (len - 1);
            if len > 1 && days.range(d..=last).next().is_some() {
                if let Some(r) = self.run((kept, event), days, counts, d, len) {
                    out.push((d, last, r));
                }
            }
            d = match last.checked_add(1) {
                Some(next) => next,
                None => break,
            };
        }
        out
    }

    /// The union of the run of `len` days from `first`: the kept one if its days' count lists
    /// are unchanged, else the stored one if it was built from lists with the fingerprints they
    /// have now, else built now, kept and stored. `None` when a day of the run has a bitmap but no
    /// count list or the other way round (the versions cannot vouch for it): the caller unions
    /// the days itself.
    fn run(
        &self,
        (kept, event): (&dyn DerivedStore, u32),
        days: &DayBitmaps,
        counts: &DayCounts,
        first: u32,
        len: u32,
    ) -> Option<Arc<RunUnion>> {
        let last = first + (len - 1);
        let lists = || counts.range(first..=last);
        if !days
            .range(first..=last)
            .map(|(d, _)| *d)
            .eq(lists().map(|(d, _)| *d))
        {
            return None;
        }
        if let Some(run) = self.built.read().get(&(first, len)) {
            if versions_match(&run.sources, counts, first, last) {
                return Some(run.clone());
            }
        }
        let record_key = derived::run_key(KIND, event, 0, first, len);
        let sources = || lists().map(|(&d, l)| (d, l.fingerprint()));
        let stored = kept
            .load(&record_key)
            .and_then(|r| decode_union(&r, sources()));
        let members = match stored {
            Some(members) => {
                derived::note_used();
                members
            }
            None => {
                let members = days.range(first..=last).map(|(_, bm)| bm).union();
                kept.save(
                    &record_key,
                    &derived::pack_plain(&encode_union(sources(), &members)),
                );
                members
            }
        };
        let run = Arc::new(RunUnion {
            sources: versions_of(counts, first, last),
            members,
        });
        self.built.write().insert((first, len), run.clone());
        Some(run)
    }

    /// Unions kept (for tests and reports).
    pub fn len(&self) -> usize {
        self.built.read().len()
    }

    /// Whether no union is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A union as a record body: the layout; the count of its days' lists, then each one's day
/// (varint) and fingerprint (`u64` LE); the bitmap's serialised length, then the bitmap in
/// roaring's portable format.
fn encode_union(sources: impl Iterator<Item = (u32, u64)>, members: &RoaringBitmap) -> Vec<u8> {
    let sources: Vec<(u32, u64)> = sources.collect();
    let size = members.serialized_size();
    let mut out = Vec::with_capacity(24 + sources.len() * 10 + size);
    derived::put_sources(&mut out, &sources);
    put_varint(&mut out, size as u64);
    members
        .serialize_into(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// The bitmap of a stored union if it was built from lists of exactly the days and fingerprints
/// `current` gives (in day order) and the record reads whole; `None` otherwise (stale, another
/// layout, damaged).
fn decode_union(record: &[u8], current: impl Iterator<Item = (u32, u64)>) -> Option<RoaringBitmap> {
    let body = derived::unpack(record).ok()?;
    let mut r = Reader::new(&body);
    derived::check_sources(&mut r, current)?;
    let size = r.len().ok()?;
    let bytes = r.take(size).ok()?;
    if !r.is_empty() {
        return None;
    }
    let members = RoaringBitmap::deserialize_from(bytes).ok()?;
    (members.serialized_size() == size).then_some(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::derived::{Loaded, NoStore};
    use crate::index::DayCount;
    use parking_lot::Mutex;

    /// A folder's derived records, in memory.
    #[derive(Default)]
    struct Memory(Mutex<FastMap<Vec<u8>, Vec<u8>>>);

    impl DerivedStore for Memory {
        fn load(&self, key: &[u8]) -> Option<Loaded> {
            self.0.lock().get(key).cloned().map(Loaded::new)
        }

        fn save(&self, key: &[u8], record: &[u8]) {
            self.0.lock().insert(key.to_vec(), record.to_vec());
        }
    }

    fn add(days: &mut DayBitmaps, counts: &mut DayCounts, day: u32, cust: u32) {
        days.entry(day).or_default().insert(cust);
        counts.entry(day).or_default().add(DayCount {
            cust,
            count: 1,
            first: 0,
            last: 0,
        });
    }

    fn naive(days: &DayBitmaps, a: u32, b: u32) -> RoaringBitmap {
        days.range(a..=b).map(|(_, bm)| bm).union()
    }

    #[test]
    fn unions_equal_the_days_and_follow_changes() {
        let (mut days, mut counts) = (DayBitmaps::new(), DayCounts::new());
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..3000 {
            add(&mut days, &mut counts, next(900) as u32, next(500) as u32);
        }
        let runs = PresenceRuns::default();
        for round in 0..40 {
            let (x, y) = (next(1000) as u32, next(1000) as u32);
            let (a, b) = (x.min(y), x.max(y));
            assert_eq!(
                runs.union((&NoStore, 1), &days, &counts, a, b),
                naive(&days, a, b),
                "{a}..={b}"
            );
            // Change a day the kept unions cover: an addition, or a customer removed.
            let day = next(900) as u32;
            if round % 2 == 0 {
                add(&mut days, &mut counts, day, 600 + round);
            } else if let Some(c) = days.get(&day).and_then(|bm| bm.min()) {
                days.get_mut(&day).unwrap().remove(c);
                let list = counts.get_mut(&day).unwrap();
                list.remove(c);
                if list.is_empty() {
                    counts.remove(&day);
                    days.remove(&day);
                }
            }
            assert_eq!(
                runs.union((&NoStore, 1), &days, &counts, 0, 999),
                naive(&days, 0, 999)
            );
        }
        assert!(!runs.is_empty(), "long windows kept runs");
    }

    #[test]
    fn a_day_without_a_count_list_is_unioned_directly() {
        let (mut days, mut counts) = (DayBitmaps::new(), DayCounts::new());
        for d in 0..300 {
            add(&mut days, &mut counts, d, d);
        }
        days.entry(10).or_default().insert(9999);
        counts.remove(&10);
        let runs = PresenceRuns::default();
        assert_eq!(
            runs.union((&NoStore, 1), &days, &counts, 0, 299),
            naive(&days, 0, 299)
        );
        assert!(runs
            .union((&NoStore, 1), &days, &counts, 0, 299)
            .contains(9999));
    }

    #[test]
    fn windows_at_the_end_of_the_day_range() {
        let (mut days, mut counts) = (DayBitmaps::new(), DayCounts::new());
        add(&mut days, &mut counts, u32::MAX, 1);
        add(&mut days, &mut counts, u32::MAX - 300, 2);
        let runs = PresenceRuns::default();
        assert_eq!(
            runs.union((&NoStore, 1), &days, &counts, u32::MAX - 600, u32::MAX),
            naive(&days, u32::MAX - 600, u32::MAX)
        );
    }

    #[test]
    fn stored_unions_are_loaded_only_while_their_days_are_unchanged() {
        let (mut days, mut counts) = (DayBitmaps::new(), DayCounts::new());
        for d in 0..600u32 {
            add(&mut days, &mut counts, d, d % 97);
            add(&mut days, &mut counts, d, 1000 + d);
        }
        let kept = Memory::default();
        let first = PresenceRuns::default();
        let used = derived::used();
        assert_eq!(
            first.union((&kept, 3), &days, &counts, 0, 599),
            naive(&days, 0, 599)
        );
        assert!(!kept.0.lock().is_empty(), "the runs were stored");
        // A fresh process (nothing kept in memory) loads them.
        let fresh = PresenceRuns::default();
        assert_eq!(
            fresh.union((&kept, 3), &days, &counts, 0, 599),
            naive(&days, 0, 599)
        );
        assert!(derived::used() > used, "the stored runs were used");
        // Another event's runs are not this one's.
        let other = PresenceRuns::default();
        let (no_days, no_counts) = (DayBitmaps::new(), DayCounts::new());
        assert!(other
            .union((&kept, 4), &no_days, &no_counts, 0, 599)
            .is_empty());
        // A day a stored run covers changes: the next fresh process builds that run again.
        add(&mut days, &mut counts, 300, 5000);
        let after = PresenceRuns::default();
        let got = after.union((&kept, 3), &days, &counts, 0, 599);
        assert!(got.contains(5000));
        assert_eq!(got, naive(&days, 0, 599));
        // A damaged record is only a record to build again.
        for record in kept.0.lock().values_mut() {
            let n = record.len();
            record.truncate(n - 3);
        }
        let damaged = PresenceRuns::default();
        assert_eq!(
            damaged.union((&kept, 3), &days, &counts, 0, 599),
            naive(&days, 0, 599)
        );
    }
}
