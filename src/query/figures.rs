//! A count or an aggregate of an event without a filter over a window (`purchased at least 3
//! times in last 90 days`, `purchased sum(amount) > 500 in last 365 days`,
//! `purchased avg(amount) >= 80 in last 90 days`) answered for a few customers at a time (those a
//! write gave events, those whose timers fell due) from what the indexes keep, without reading
//! the customers: the kept totals of the window's whole days (`crate::index::totals`) and each
//! customer's figures on the (at most two) days the window cuts.
//!
//! A cut day's figures count for a customer when all their events of the kind that day lie
//! inside the window's part of it, and not at all when all lie outside. Where they lie is the
//! count rollup's two-second span, whose end is capped by the latest stored time of the event
//! ([`crate::index::EventIndex::latest`]): events written at the clock's instant fill the span holding *now*,
//! and the cap tells that none of them is after *now* ([`side_capped`]). The other customers are
//! left undecided (to be read), and so is every customer when the whole days' totals are not kept
//! and current (they are not summed over everyone here: that is a pass over every customer) unless
//! the customers' own days are listed (`super::due::DueDays`, a tick's due customers): then each
//! one's figures of the whole days are added up day by day; and one whose kept count saturated,
//! and one whose aggregate lies within the rounding margin of the threshold
//! ([`decide_aggregate`]: the totals' sums are added in another order than the exact check's).
//!
//! This module reads the indexes under the caller's read guard; it writes nothing (not even the
//! caches of totals) and never reads storage.

use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::index::rollup::{DayCount, DayList, DayNumbers, Partial, SPAN_UNIT_MS};
use crate::index::totals::Totals;
use crate::index::Indexes;
use crate::model::time::{day_start, Timestamp};

use super::due::CustomerDays;
use super::plan::{compare_u64, EventNode, Frequency};
use super::rollups::{decide_aggregate, Acc, Decision, Side, WindowDays};

/// 2⁵³: counts below it are exact as `f64` (as the kept totals' orders need; kept here alike).
const EXACT_INT: u64 = 1 << 53;

/// Where a customer's events of one day lie against the window's part `a..=b` (milliseconds of
/// the day): the span `first..=last` (in two-second units) says they lie in
/// `[first·2 s, last·2 s + 2 s)`, and no event of the kind is later than `latest` (an instant),
/// so none lies after
/// `latest − day_start(day)` in the day either.
pub(super) fn side_capped(
    first: u16,
    last: u16,
    (a, b): (i64, i64),
    day: u32,
    latest: Timestamp,
) -> Side {
    let lo = i64::from(first) * SPAN_UNIT_MS;
    let hi = (i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1).min(latest - day_start(day));
    Side::of(lo, hi, (a, b))
}

/// Whether [`within`] may answer the condition: a count or an aggregate of a stored event
/// without a filter, over a window that is not empty.
pub(super) fn serves(e: &EventNode) -> bool {
    e.event.is_some()
        && e.filter.is_none()
        && !e.window_is_empty()
        && matches!(
            e.frequency,
            Frequency::Count { .. } | Frequency::Aggregate { .. }
        )
}

/// One customer's figures in a day list: its entries merged (a binary search in the sorted
/// head, a pass over the short tail of recent additions).
fn entry<T: Partial>(list: &DayList<T>, cust: u32) -> Option<T> {
    let mut out: Option<T> = None;
    list.for_each_in(cust, cust.saturating_add(1), |x| match &mut out {
        Some(o) => o.merge(x),
        None => out = Some(*x),
    });
    out
}

fn kept<T>(totals: &Option<Arc<Totals<T>>>, cust: u32, key: impl Fn(&T) -> u32) -> Option<&T> {
    let items = &totals.as_ref()?.items;
    items
        .binary_search_by_key(&cust, key)
        .ok()
        .map(|i| &items[i])
}

/// `(sure, maybe)` of the condition `e` for the customers of `d` (`sure ⊆ maybe ⊆ d`; those in
/// `maybe` but not in `sure` are undecided), or `None` when this path cannot answer it at all: not
/// a condition [`serves`] allows, a count or threshold beyond exact, a property without rollups,
/// or whole days whose totals are not kept and current.
pub(super) fn within(
    ix: &Indexes,
    e: &EventNode,
    d: &RoaringBitmap,
    listed: Option<&CustomerDays>,
) -> Option<(RoaringBitmap, RoaringBitmap)> {
    if !serves(e) {
        return None;
    }
    let event = e.event?;
    let win = WindowDays::of(e.from, e.to)?;
    let (mut sure, mut undecided) = (RoaringBitmap::new(), RoaringBitmap::new());
    let Some(ei) = ix.event_index(event) else {
        // No event of the kind is indexed: every customer has none.
        let all = e.frequency.holds_for_none().then(|| d.clone());
        let sure = all.unwrap_or_default();
        return Some((sure.clone(), sure));
    };
    match e.frequency {
        Frequency::Count { op, n } if n < EXACT_INT => {
            let (totals, by_days) = match win.whole {
                Some(w) => match ei.count_totals.kept(0, &ei.counts, w) {
                    Some(t) => (Some(t), None),
                    None => (None, Some((listed.filter(|l| l.covers(w.0))?, w))),
                },
                None => (None, None),
            };
            'cust: for c in d {
                let mut k = match kept(&totals, c, |x: &DayCount| x.cust) {
                    Some(x) if x.count == u32::MAX => {
                        undecided.insert(c);
                        continue;
                    }
                    Some(x) => u64::from(x.count),
                    None => 0,
                };
                if let Some((listed, (a, b))) = by_days {
                    // No kept totals for these whole days: the customer's own days summed.
                    for day in listed.days_in(c, a, b) {
                        match ei.counts.get(&day).and_then(|l| entry(l, c)) {
                            Some(x) => k += u64::from(x.count),
                            None => {
                                undecided.insert(c);
                                continue 'cust;
                            }
                        }
                    }
                }
                for &(day, a, b) in &win.edges {
                    let Some(x) = ei.counts.get(&day).and_then(|l| entry(l, c)) else {
                        continue;
                    };
                    match side_capped(x.first, x.last, (a, b), day, ei.latest) {
                        Side::In => k += u64::from(x.count),
                        Side::Out => {}
                        Side::Both => {
                            undecided.insert(c);
                            continue 'cust;
                        }
                    }
                }
                if compare_u64(k, op, n) {
                    sure.insert(c);
                }
            }
        }
        Frequency::Aggregate {
            func,
            prop,
            op,
            value,
        } if value.is_finite() => {
            let figures = match prop {
                Some(p) if !ix.prop_rolled_up(event, p) => return None,
                Some(p) => ei.numbers.get(&p).map(|f| (p, f)),
                None => None,
            };
            let (totals, by_days) = match (win.whole, figures) {
                (Some(w), Some((p, f))) => match ei.number_totals.kept(p, f, w) {
                    Some(t) => (Some(t), None),
                    None => (None, Some((listed.filter(|l| l.covers(w.0))?, f, w))),
                },
                _ => (None, None),
            };
            let none_holds = e.frequency.holds_for_none();
            'cust: for c in d {
                let mut acc = kept(&totals, c, |x: &DayNumbers| x.cust).map(Acc::of_whole);
                if let Some((listed, f, (a, b))) = by_days {
                    // No kept totals for these whole days: the customer's own days added up
                    // (a day without the property's figures adds nothing, as in the totals).
                    for day in listed.days_in(c, a, b) {
                        if let Some(x) = f.get(&day).and_then(|l| entry(l, c)) {
                            let day_acc = Acc::of_whole(&x);
                            acc = Some(acc.map_or(day_acc, |t| t.plus(&day_acc)));
                        }
                    }
                }
                for &(day, a, b) in &win.edges {
                    let Some(x) = figures
                        .and_then(|(_, f)| f.get(&day))
                        .and_then(|l| entry(l, c))
                    else {
                        continue;
                    };
                    // Numbers come with counts: a number's customer has the day's count entry.
                    let Some(span) = ei.counts.get(&day).and_then(|l| entry(l, c)) else {
                        undecided.insert(c);
                        continue 'cust;
                    };
                    match side_capped(span.first, span.last, (a, b), day, ei.latest) {
                        Side::In => {
                            let day_acc = Acc::of_whole(&x);
                            acc = Some(acc.map_or(day_acc, |t| t.plus(&day_acc)));
                        }
                        Side::Out => {}
                        Side::Both => {
                            undecided.insert(c);
                            continue 'cust;
                        }
                    }
                }
                let pass = match acc {
                    None => none_holds,
                    Some(acc) => match decide_aggregate(func, op, value, &acc) {
                        Decision::Pass => true,
                        Decision::Fail => false,
                        Decision::Gap => {
                            undecided.insert(c);
                            continue;
                        }
                    },
                };
                if pass {
                    sure.insert(c);
                }
            }
        }
        _ => return None,
    }
    let maybe = &sure | &undecided;
    Some((sure, maybe))
}
