//! Counts and aggregates of an event without a filter (`purchased count >= 3 in last 90 days`,
//! `purchased avg(amount) > 80 ever`, and the computed traits rewritten into them, `orders_90d`,
//! `aov`) answered from kept totals (`crate::index::totals`): each customer's figures over the
//! window's whole days, summed once and kept while those days' lists are unchanged, with the
//! customers in order of the measure tested. A test is then a binary search and a kept bitmap
//! instead of a sum over every customer's day lists at each rule.
//!
//! Exact as the rollups are (`super::rollups`): a sum's order of additions differs from the exact
//! check's, within [`sum_margin`]; so the customers whose measure is further than the largest
//! margin `M` of the order from the threshold `v` are decided by the order (above `v + M`, below
//! `v − M`: each side's answer is the test's for any number on that side), and those within it
//! one by one, as the rollups decide them ([`decide_aggregate`], which leaves to the exact check
//! those within their own margin). Customers whose measure or margin is not a finite number are
//! decided one by one too. The days a window cuts (at most two: its start's and *now*'s) are not
//! in the totals: the customers with figures on them are decided one by one, their whole days'
//! totals plus what the cut days add ([`aggregate_range`], [`count_range`] on those days alone),
//! so a window's edge passing at any millisecond moves the answer as a fresh sum would. A day of
//! *now* that changes the window's whole days asks for other totals (kept next to these).
//!
//! This module reads the indexes (under the caller's read guard) and fills their caches of
//! totals; it never writes anything else and never reads storage.

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::index::rollup::{sum_margin, DayCount, DayNumbers};
use crate::index::totals::{Order, Totals};
use crate::index::{add_ascending, DayFigures, EventIndex};
use crate::model::FastMap;
use crate::rules::{AggregateFn, CmpOp};

use super::exec::Bounds;
use super::kept::Kept;
use super::plan::Frequency;
use super::rollups::{
    aggregate_range, count_range, decide_aggregate, decide_count, whole_pieces, Acc, DayFiguresRef,
    Decision, WindowDays,
};

/// Which measure of the totals an order sorts: a count, or an aggregate of the numbers.
fn measure(f: Option<AggregateFn>) -> u8 {
    match f {
        None => 0,
        Some(AggregateFn::Sum) => 1,
        Some(AggregateFn::Avg) => 2,
        Some(AggregateFn::Min) => 3,
        Some(AggregateFn::Max) => 4,
    }
}

/// 2⁵³: counts below it are exact as `f64`.
const EXACT_INT: u64 = 1 << 53;

/// The bounds of a count or an aggregate of `event` without a filter over `win` from kept
/// totals, for the customers `all` (every known customer). `None` when they do not serve: a
/// window without a whole day, a count or threshold that is not a finite number below 2⁵³, a
/// property without numbers, or any other frequency.
pub(super) fn bounds(
    src: &super::exec::Sources<'_>,
    event: u32,
    ei: &EventIndex,
    f: Frequency,
    win: &WindowDays,
) -> Option<Bounds> {
    let whole = win.whole?;
    let all = &src.indexes.everyone;
    let ids = all.max().map_or(0, |m| m + 1);
    let kept = Kept(src.store);
    let none_holds = f.holds_for_none();
    let edges = WindowDays {
        whole: None,
        edges: win.edges.clone(),
    };
    let (decided, gap) = match f {
        Frequency::Count { op, n } if n < EXACT_INT => {
            let totals = ei.count_totals.get(0, &ei.counts, whole, || {
                let pieces = whole_pieces((&kept, event), &ei.count_runs, 0, &ei.counts, win);
                in_parallel(ids, |lo, hi, out: &mut Vec<DayCount>| {
                    count_range(ei, &pieces, &only_whole(win), lo, hi, |cust, known, _| {
                        let count = u32::try_from(known).unwrap_or(u32::MAX);
                        out.push(DayCount {
                            cust,
                            count,
                            first: 0,
                            last: 0,
                        });
                    })
                })
            });
            let order =
                totals.order_from_second(measure(None), |items| sorted(count_measures(items)));
            // Cut days: each customer's counts there (surely in, and maybe).
            let mut cut: FastMap<u32, (u64, u64)> = FastMap::default();
            count_range(ei, &[], &edges, 0, ids, |cust, known, unsure| {
                cut.insert(cust, (known, unsure));
            });
            let one = |cust: u32| {
                let total = kept_count(&totals, cust);
                let (known, unsure) = cut.get(&cust).copied().unwrap_or((0, 0));
                let (k, u) = match total {
                    // Saturated: at least that many.
                    Some(u32::MAX) => (u64::from(u32::MAX), u64::MAX / 4),
                    Some(t) => (u64::from(t) + known, unsure),
                    None => (known, unsure),
                };
                (k != 0 || u != 0).then(|| decide_count(op, n, k, k.saturating_add(u)))
            };
            let split = match &order {
                Some(order) => split_order(order, n as f64),
                None => split_measures(&count_measures(&totals.items), n as f64),
            };
            decide(split, op, none_holds, cut.keys().copied(), one)
        }
        Frequency::Aggregate {
            func,
            prop: Some(p),
            op,
            value,
        } if value.is_finite() => {
            let figures: &DayFigures = ei.numbers.get(&p)?;
            let totals = ei.number_totals.get(p, figures, whole, || {
                let pieces = whole_pieces((&kept, event), &ei.number_runs, p, figures, win);
                let only = only_whole(win);
                in_parallel(ids, |lo, hi, out: &mut Vec<DayNumbers>| {
                    let days = DayFiguresRef(Some(figures));
                    aggregate_range(ei, days, &pieces, &only, lo, hi, |cust, acc| {
                        out.push(acc.kept(cust));
                    })
                })
            });
            let order = totals.order_from_second(measure(Some(func)), |items| {
                sorted(number_measures(func, items))
            });
            let mut cut: FastMap<u32, Acc> = FastMap::default();
            let days = DayFiguresRef(Some(figures));
            aggregate_range(ei, days, &[], &edges, 0, ids, |cust, acc| {
                cut.insert(cust, *acc);
            });
            let one = |cust: u32| {
                let total = kept_numbers(&totals, cust).map(|d| Acc::of_whole(&d));
                let acc = match (total, cut.get(&cust)) {
                    (Some(t), Some(c)) => t.plus(c),
                    (Some(t), None) => t,
                    (None, Some(c)) => *c,
                    (None, None) => return None,
                };
                Some(decide_aggregate(func, op, value, &acc))
            };
            let split = match &order {
                Some(order) => split_order(order, value),
                None => split_measures(&number_measures(func, &totals.items), value),
            };
            decide(split, op, none_holds, cut.keys().copied(), one)
        }
        _ => return None,
    };
    Some(Bounds::from_decided(all, decided, &gap, none_holds))
}

/// The window's whole days alone.
fn only_whole(win: &WindowDays) -> WindowDays {
    WindowDays {
        whole: win.whole,
        edges: Vec::new(),
    }
}

/// `fill(lo, hi, out)` over the customers `0..ids` split between tasks, the entries of all in
/// customer order.
fn in_parallel<T: Send>(ids: u32, fill: impl Fn(u32, u32, &mut Vec<T>) + Sync) -> Vec<T> {
    let parts: Vec<Vec<T>> = super::exec::id_ranges(ids)
        .into_par_iter()
        .map(|(lo, hi)| {
            let mut out = Vec::new();
            fill(lo, hi, &mut out);
            out
        })
        .collect();
    parts.into_iter().flatten().collect()
}

fn kept_count(totals: &Totals<DayCount>, cust: u32) -> Option<u32> {
    let items = &totals.items;
    items
        .binary_search_by_key(&cust, |x| x.cust)
        .ok()
        .map(|i| items[i].count)
}

fn kept_numbers(totals: &Totals<DayNumbers>, cust: u32) -> Option<DayNumbers> {
    let items = &totals.items;
    items
        .binary_search_by_key(&cust, |x| x.cust)
        .ok()
        .map(|i| items[i])
}

/// Each customer's measure of the totals, ascending by customer, with the largest margin of any
/// and the customers left out (decided one by one): what an [`Order`] sorts, or what one pass
/// decides from ([`split_measures`]).
struct Measures {
    values: Vec<(f64, u32)>,
    margin: f64,
    odd: Vec<u32>,
}

/// The order of `m`.
fn sorted(m: Measures) -> Order {
    Order::new(m.values, m.margin, m.odd)
}

/// Customers by count (exact); a saturated count is decided one by one.
fn count_measures(items: &[DayCount]) -> Measures {
    let mut odd = Vec::new();
    let mut values = Vec::with_capacity(items.len());
    for x in items {
        if x.count == u32::MAX {
            odd.push(x.cust);
        } else {
            values.push((f64::from(x.count), x.cust));
        }
    }
    Measures {
        values,
        margin: 0.0,
        odd,
    }
}

/// Customers by the aggregate `func` of their numbers, with the largest margin within which the
/// exact check's figure may differ ([`decide_aggregate`]'s: a sum's rounding, none for the
/// minimum and maximum). A measure or margin that is not a finite number, or numbers whose sum
/// could overflow in some order, leave the customer to be decided one by one.
fn number_measures(func: AggregateFn, items: &[DayNumbers]) -> Measures {
    let mut odd = Vec::new();
    let mut values = Vec::with_capacity(items.len());
    let mut margin = 0.0f64;
    for x in items {
        let sum_m = sum_margin(x.n, x.min, x.max);
        let largest = x.min.abs().max(x.max.abs());
        let (m, v) = match func {
            AggregateFn::Sum => (sum_m, x.sum),
            AggregateFn::Avg => {
                let avg = x.sum / f64::from(x.n);
                (sum_m / f64::from(x.n) + 8.0 * f64::EPSILON * avg.abs(), avg)
            }
            AggregateFn::Min => (0.0, x.min),
            AggregateFn::Max => (0.0, x.max),
        };
        let bounded = (f64::from(x.n) * largest * 2.0).is_finite();
        if v.is_finite() && m.is_finite() && bounded && x.n > 0 {
            margin = margin.max(m);
            values.push((v, x.cust));
        } else {
            odd.push(x.cust);
        }
    }
    Measures {
        values,
        margin,
        odd,
    }
}

/// The customers of kept totals split around a threshold `v` by the largest margin `M`: those
/// whose measure is at or past `v + M` (rounded outwards, so past it in exact arithmetic), those
/// at or below `v − M`, and the rest (within the margin, or odd) to be decided one by one.
struct Split {
    above: RoaringBitmap,
    below: RoaringBitmap,
    each: Vec<u32>,
}

/// The outward-rounded bounds `v − M` and `v + M`.
fn margins(v: f64, margin: f64) -> (f64, f64) {
    ((v - margin).next_down(), (v + margin).next_up())
}

/// [`Split`] from a kept order: two binary searches and its kept bitmaps.
fn split_order(order: &Order, v: f64) -> Split {
    let (lo, hi) = margins(v, order.margin);
    let upper_from = order.position(|x| x < hi);
    let lower_to = order.position(|x| x <= lo).min(upper_from);
    Split {
        above: order.from(upper_from),
        below: order.before(lower_to),
        each: order.values[lower_to..upper_from]
            .iter()
            .map(|x| x.1)
            .chain(order.odd.iter().copied())
            .collect(),
    }
}

/// [`Split`] from one pass over the measures (ascending by customer), the same customers on
/// each side as [`split_order`] gives for their order.
fn split_measures(m: &Measures, v: f64) -> Split {
    let (lo, hi) = margins(v, m.margin);
    let (mut above, mut below, mut each) = (Vec::new(), Vec::new(), Vec::new());
    for &(x, c) in &m.values {
        if x >= hi {
            above.push(c);
        } else if x <= lo {
            below.push(c);
        } else {
            each.push(c);
        }
    }
    each.extend_from_slice(&m.odd);
    let bitmap = |ids: Vec<u32>| {
        let mut b = RoaringBitmap::new();
        add_ascending(&mut b, &ids);
        b
    };
    Split {
        above: bitmap(above),
        below: bitmap(below),
        each,
    }
}

/// Who of the kept totals is decided, and who is left to the exact check, for `MEASURE op v`:
/// `decided` is who passes, or (when having no figures passes, `none_holds`) who fails, as in
/// `rollup_bounds`. The split decides the customers further than its margin from `v` (every
/// measure above `v + M` compares with `v` as any number above `v` does); those within it, the
/// odd ones and `cut` (customers with figures on a day the window cuts) are decided by
/// `one(customer)` (`None`: no figures at all).
fn decide(
    split: Split,
    op: CmpOp,
    none_holds: bool,
    cut: impl Iterator<Item = u32>,
    one: impl Fn(u32) -> Option<Decision>,
) -> (RoaringBitmap, RoaringBitmap) {
    let above = matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Ne);
    let below = matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Ne);
    let mut regions = Vec::new();
    if above != none_holds {
        regions.push(split.above);
    }
    if below != none_holds {
        regions.push(split.below);
    }
    let mut decided: RoaringBitmap = regions.into_iter().union();
    let mut gap = RoaringBitmap::new();
    let mut each = split.each;
    let cut: Vec<u32> = cut.collect();
    for &c in &cut {
        decided.remove(c);
    }
    each.extend(cut);
    each.sort_unstable();
    each.dedup();
    for c in each {
        match one(c) {
            Some(Decision::Gap) => {
                gap.insert(c);
            }
            Some(Decision::Pass) if !none_holds => {
                decided.insert(c);
            }
            Some(Decision::Fail) if none_holds => {
                decided.insert(c);
            }
            _ => {}
        }
    }
    (decided, gap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn one_pass_splits_as_the_order_does() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(26);
        for n in [0usize, 1, 7, 300, 5_000] {
            for margin in [0.0, 0.25, 3.0] {
                // Halves, so that many measures sit exactly at a threshold and at its margins.
                let values: Vec<(f64, u32)> = (0..n as u32)
                    .map(|c| (f64::from(rng.random_range(0..40u32)) / 2.0 - 5.0, c * 2 + 1))
                    .collect();
                let odd: Vec<u32> = (0..n as u32 / 50).map(|i| i * 2).collect();
                let m = || Measures {
                    values: values.clone(),
                    margin,
                    odd: odd.clone(),
                };
                let order = sorted(m());
                for v in [-6.0, -5.0, 0.0, 0.25, 3.0, 7.5, 14.5, 20.0] {
                    let (a, b) = (split_order(&order, v), split_measures(&m(), v));
                    assert_eq!(a.above, b.above, "{n} {margin} {v}");
                    assert_eq!(a.below, b.below, "{n} {margin} {v}");
                    let (mut ea, mut eb) = (a.each, b.each);
                    ea.sort_unstable();
                    eb.sort_unstable();
                    assert_eq!(ea, eb, "{n} {margin} {v}");
                    // Every customer is on one side or left to be decided one by one.
                    assert_eq!(
                        b.above.len() + b.below.len() + eb.len() as u64,
                        (values.len() + odd.len()) as u64
                    );
                }
            }
        }
    }
}
