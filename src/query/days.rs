//! Event filters of several conditions (`purchased where category = toys and amount >= 40`),
//! bounded day by day: each condition's per-day bitmaps (value bitmaps of indexed properties,
//! per-day minimum and maximum of rolled-up numbers) are combined within each day of the window,
//! so that two conditions met on different days no longer leave a customer undecided.
//! Since the event columns (`super::columns`) answer such filters exactly, these bounds are
//! what is left when the columns are not to be built yet (the first answer in a process that
//! wants an event's columns) or the store cannot be read to build them.
//!
//! Per day *d* and filter *f*, two sets: `sure` (customers with an event of the kind on *d*
//! passing *f*) and `maybe` (everyone else with such an event is outside it). Within one day:
//! - a condition the indexes answer gives its day's bitmaps; one they do not gives nothing sure
//!   and everyone with an event that day as maybe;
//! - `or`: the unions;
//! - `and`: maybe is the intersection; two conditions sure on one day may hold on different
//!   events, so only the customers with exactly one event of the kind that day (the count
//!   rollup says so) are sure: their one event passes both;
//! - `not`: sure is who has an event that day and is outside the inner maybe (every event fails
//!   it), maybe leaves out only the customers with one event that surely passes it.
//!
//! The window's whole days are unioned as they are; on a day the window cuts, a customer is sure
//! only when all their events of the kind that day lie inside the window's part, and dropped when
//! all lie outside (the count rollups' spans, as for a single condition).
//!
//! This module reads the indexes only.

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::index::{DayCount, DayList, EventIndex};
use crate::model::FastMap;

use super::exec::{passing_values, Bounds, Sources};
use super::plan::{EventNode, Filter, ValueTest};
use super::rollups::{cut_day_sides, WindowDays};

/// Sure and maybe of one day.
type Day = (RoaringBitmap, RoaringBitmap);

impl Sources<'_> {
    /// Who has an event in the window passing `f`, bounded day by day (see the module comment).
    pub(super) fn filter_by_days(
        &self,
        e: &EventNode,
        (event, ei): (u32, &EventIndex),
        f: &Filter,
    ) -> Bounds {
        let Some(win) = WindowDays::of(e.from, e.to) else {
            return Bounds::exact(RoaringBitmap::new());
        };
        let whole: Vec<(&u32, &RoaringBitmap)> = match win.whole {
            Some((a, b)) => ei.days.range(a..=b).collect(),
            None => Vec::new(),
        };
        let (mut sure, mut maybe): (Vec<_>, Vec<_>) = whole
            .par_iter()
            .map(|&(&d, all)| self.on_day((event, ei), f, d, all))
            .unzip();
        for &(d, a, b) in &win.edges {
            let Some(all) = ei.days.get(&d) else {
                continue;
            };
            let (s, m) = self.on_day((event, ei), f, d, all);
            let (inside, outside) = cut_day_sides(ei, d, a, b, &m);
            sure.push(s & inside);
            maybe.push(m - outside);
        }
        let sure: RoaringBitmap = sure.iter().union();
        let maybe = maybe.iter().union() | &sure;
        Bounds::range(sure, maybe)
    }

    /// Sure and maybe of `f` on day `d`, where `all` is everyone with an event of the kind that
    /// day.
    fn on_day(
        &self,
        (event, ei): (u32, &EventIndex),
        f: &Filter,
        d: u32,
        all: &RoaringBitmap,
    ) -> Day {
        let unknown = || (RoaringBitmap::new(), all.clone());
        match f {
            Filter::Or(items) => {
                let parts: Vec<Day> = items
                    .iter()
                    .map(|f| self.on_day((event, ei), f, d, all))
                    .collect();
                (
                    parts.iter().map(|p| &p.0).union(),
                    parts.iter().map(|p| &p.1).union(),
                )
            }
            Filter::And(items) => {
                let parts: Vec<Day> = items
                    .iter()
                    .map(|f| self.on_day((event, ei), f, d, all))
                    .collect();
                let maybe: RoaringBitmap = parts.iter().map(|p| &p.1).intersection();
                let both: RoaringBitmap = parts.iter().map(|p| &p.0).intersection();
                (single(ei.counts.get(&d), &both), maybe)
            }
            Filter::Not(inner) => {
                let (s, m) = self.on_day((event, ei), inner, d, all);
                (all - m, all - single(ei.counts.get(&d), &s))
            }
            Filter::Cond { prop: None, test } => match test {
                // No event ever had the property: only `is not set` passes, on every event.
                ValueTest::IsSet { negated: true } => (all.clone(), all.clone()),
                _ => (RoaringBitmap::new(), RoaringBitmap::new()),
            },
            Filter::Cond {
                prop: Some(p),
                test,
            } => {
                if let Some((t, p)) = self.numeric_filter(event, f) {
                    // Only numbers pass a numeric test: a day without figures has no passing
                    // event.
                    let Some(list) = ei.numbers.get(&p).and_then(|days| days.get(&d)) else {
                        return (RoaringBitmap::new(), RoaringBitmap::new());
                    };
                    let (mut sure, mut maybe) = (RoaringBitmap::new(), RoaringBitmap::new());
                    list.for_each(|x| {
                        let (lo, hi) = t.matching(x);
                        if lo > 0 {
                            sure.insert(x.cust);
                        }
                        if hi > 0 {
                            maybe.insert(x.cust);
                        }
                    });
                    return (sure, maybe);
                }
                if !self.indexes.prop_values_indexed(event, *p) {
                    return unknown();
                }
                let Some(values) = ei.props.get(p) else {
                    return unknown();
                };
                let Some(passing) = passing_values(values, test) else {
                    return unknown();
                };
                let found: RoaringBitmap = passing.iter().filter_map(|vd| vd.day(d)).union();
                let exact = match test {
                    ValueTest::Contains(_) => !self.has_lists(event, *p),
                    _ => self.prop_exact(event, *p),
                };
                if exact {
                    (found.clone(), found)
                } else {
                    (found, all.clone())
                }
            }
        }
    }
}

/// The customers of `of` with exactly one event on the day of `counts` (its entries may hold a
/// customer more than once until they are merged: all of them are summed).
fn single(counts: Option<&DayList<DayCount>>, of: &RoaringBitmap) -> RoaringBitmap {
    let Some(list) = counts else {
        return RoaringBitmap::new();
    };
    if of.is_empty() {
        return RoaringBitmap::new();
    }
    let (head, tail) = list.parts();
    // The tail's counts of the customers asked about (few: recent additions).
    let mut in_tail: FastMap<u32, u64> = FastMap::default();
    for x in tail.iter().filter(|x| of.contains(x.cust)) {
        *in_tail.entry(x.cust).or_default() += u64::from(x.count);
    }
    let mut out = RoaringBitmap::new();
    let mut rest = head;
    for c in of {
        let i = rest.partition_point(|x| x.cust < c);
        rest = &rest[i..];
        let n = u64::from(rest.first().filter(|x| x.cust == c).map_or(0, |x| x.count))
            + in_tail.get(&c).copied().unwrap_or(0);
        if n == 1 {
            out.insert(c);
        }
    }
    out
}
