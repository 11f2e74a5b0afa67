//! Event filters answered exactly from the event columns of `crate::index::columns` (issue 20):
//! for each day of the window that has events of the kind, the day's columns (built here from
//! the stored events when missing or stale) are tested condition by condition: each condition's
//! test runs once per distinct value of its property (with `customer::passes`, the exact meaning
//! the residual check uses), giving one bit per event; `and`, `or` and `not` combine the bits
//! word by word; the passing events whose time lies in the window (to the millisecond, so the
//! days a window cuts are exact too) give their customers, or each customer's count.
//!
//! This module reads the indexes and customers' stored events; it writes nothing but the
//! columns' cache and the days' columns as derived records (`crate::index::derived`).

use std::sync::Arc;

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;
use crate::index::columns::PropColumn;
use crate::index::derived::{self, DerivedStore};
use crate::index::rollup::ListVersion;
use crate::index::{add_ascending, EventColumns, EventIndex, Indexes, MISSING};
use crate::model::time::{day_of, day_start, Timestamp, DAY_MS};
use crate::model::{FastMap, Value};
use crate::storage::view::{self, BlockSpan, ValueView};
use crate::storage::Store;

use super::customer::{passes, sequence_holds, DistinctValue, StepEvent};
use super::kept::Kept;
use super::plan::{EventNode, Filter, SeqNode};
use super::rollups::Acc;

/// Whether a filter has more than one condition or a `not` (what the columns are for: one
/// condition is answered by the value bitmaps, rollups or text columns).
pub(super) fn compound(f: &Filter) -> bool {
    matches!(f, Filter::And(_) | Filter::Or(_) | Filter::Not(_))
}

/// The customers with an event of the kind (`event`, index `ei`) in `from..=to` that passes `f`;
/// `None` when the columns are missing and not to be built yet ([`crate::index::Columns::ask`]).
pub(super) fn passing(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    f: &Filter,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<RoaringBitmap>> {
    let Some(days) = day_columns(store, (event, ei), from, to)? else {
        return Ok(None);
    };
    let parts: Vec<RoaringBitmap> = days
        .par_iter()
        .map(|col| {
            let bits = test(col, f);
            // Events are by customer: the customers found are ascending.
            let mut found: Vec<u32> = Vec::new();
            for i in ones(&bits) {
                let cust = col.custs[i];
                if found.last() != Some(&cust) && (from..=to).contains(&col.times[i]) {
                    found.push(cust);
                }
            }
            let mut out = RoaringBitmap::new();
            add_ascending(&mut out, &found);
            out
        })
        .collect();
    Ok(Some(parts.into_iter().union()))
}

/// Each customer's number of events of the kind in `from..=to` that pass `f` (customers with
/// none are left out); `None` when the columns are missing and not to be built yet.
pub(super) fn counts(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    f: &Filter,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<FastMap<u32, u64>>> {
    let Some(days) = day_columns(store, (event, ei), from, to)? else {
        return Ok(None);
    };
    Ok(Some(per_customer(
        &days,
        f,
        (from, to),
        |_| (),
        || 0,
        |n, _, _| *n += 1,
        |n, m| *n += m,
    )))
}

/// Each customer's numbers of `prop` among their events of the kind in `from..=to` that pass
/// `f`, summed day by day (each day's in time order, as the exact check adds them; the days'
/// sums added in day order, so a sum may differ from the exact check's in its last bits: the
/// caller leaves a sum that close to its threshold undecided). Every customer with a passing
/// event is in the map, with no number if none of those events has a number in `prop`. `None`
/// when the columns are missing and not to be built yet.
pub(super) fn aggregates(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    f: &Filter,
    prop: u32,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<FastMap<u32, Acc>>> {
    let Some(days) = day_columns(store, (event, ei), from, to)? else {
        return Ok(None);
    };
    Ok(Some(per_customer(
        &days,
        f,
        (from, to),
        // The day's distinct values of `prop` as numbers, once.
        |col| {
            col.prop(prop).map(|pc| {
                let nums: Vec<Option<f64>> = pc.values.iter().map(Value::as_f64).collect();
                (pc.ids.as_slice(), nums)
            })
        },
        Acc::empty,
        |acc, numbers, i| {
            let x = numbers.as_ref().and_then(|(ids, nums)| match ids[i] {
                MISSING => None,
                id => nums[id as usize],
            });
            if let Some(x) = x {
                acc.add(x);
            }
        },
        |acc, other| acc.merge(&other),
    )))
}

/// Folds each customer's events of the days' columns in `range` that pass `f` into one value
/// per customer: per day (in parallel), `prepare` reads what the day's rows need once, each
/// customer gets `start()` and each of their passing rows in order is `add`-ed to it; then each
/// customer's days are combined in day order with `merge`. Customers with no passing event are
/// left out.
fn per_customer<'c, A: Send, P>(
    days: &'c [Arc<EventColumns>],
    f: &Filter,
    (from, to): (Timestamp, Timestamp),
    prepare: impl Fn(&'c EventColumns) -> P + Sync,
    start: impl Fn() -> A + Sync,
    add: impl Fn(&mut A, &P, usize) + Sync,
    merge: impl Fn(&mut A, A),
) -> FastMap<u32, A> {
    // Per day, (customer, value) by customer.
    let parts: Vec<Vec<(u32, A)>> = days
        .par_iter()
        .map(|col| {
            let bits = test(col, f);
            let prepared = prepare(col);
            let mut out: Vec<(u32, A)> = Vec::new();
            for i in ones(&bits) {
                if !(from..=to).contains(&col.times[i]) {
                    continue;
                }
                let cust = col.custs[i];
                if out.last().is_none_or(|(c, _)| *c != cust) {
                    out.push((cust, start()));
                }
                if let Some((_, a)) = out.last_mut() {
                    add(a, &prepared, i);
                }
            }
            out
        })
        .collect();
    let mut total: FastMap<u32, A> = FastMap::default();
    for (cust, a) in parts.into_iter().flatten() {
        merge(total.entry(cust).or_insert_with(&start), a);
    }
    total
}

/// Each customer's number of distinct values of `prop` (told apart as
/// [`DistinctValue`] does: `3` and `3.0` one value, `"3"` another, lists none) among their
/// events of the kind in `from..=to` that pass `f` (every event without one); customers with
/// none are left out. `None` when the columns are missing and not to be built yet.
pub(super) fn distinct_counts(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    f: Option<&Filter>,
    prop: u32,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<FastMap<u32, u64>>> {
    let Some(days) = day_columns(store, (event, ei), from, to)? else {
        return Ok(None);
    };
    // Each day's value ids mapped to ids shared by all days, one per distinct value.
    let mut shared: FastMap<DistinctValue<'_>, u32> = FastMap::default();
    let day_ids: Vec<Vec<u32>> = days
        .iter()
        .map(|col| match col.prop(prop) {
            None => Vec::new(),
            Some(pc) => pc
                .values
                .iter()
                .map(|v| match DistinctValue::of(ValueView::of(v)) {
                    Some(k) => {
                        let next = shared.len() as u32;
                        *shared.entry(k).or_insert(next)
                    }
                    None => MISSING,
                })
                .collect(),
        })
        .collect();
    // Per day, each passing event in the window as (customer, shared value id), in customer
    // order.
    let each_pair = |col: &EventColumns, ids: &[u32], put: &mut dyn FnMut(u32, u32)| {
        let Some(pc) = col.prop(prop) else {
            return;
        };
        let mut add = |i: usize| {
            let local = pc.ids[i];
            if local == MISSING || !(from..=to).contains(&col.times[i]) {
                return;
            }
            let id = ids[local as usize];
            if id != MISSING {
                put(col.custs[i], id);
            }
        };
        match f {
            Some(f) => ones(&test(col, f)).for_each(&mut add),
            None => (0..col.len()).for_each(&mut add),
        }
    };
    let mut total: FastMap<u32, u64> = FastMap::default();
    if shared.len() <= 64 {
        // Few values (categories, tiers): one bit per value, or-ed per customer.
        let parts: Vec<Vec<(u32, u64)>> = days
            .par_iter()
            .zip(&day_ids)
            .map(|(col, ids)| {
                let mut out: Vec<(u32, u64)> = Vec::new();
                each_pair(col, ids, &mut |cust, id| match out.last_mut() {
                    Some((c, bits)) if *c == cust => *bits |= 1 << id,
                    _ => out.push((cust, 1 << id)),
                });
                out
            })
            .collect();
        let mut masks: FastMap<u32, u64> = FastMap::default();
        for (cust, bits) in parts.into_iter().flatten() {
            *masks.entry(cust).or_default() |= bits;
        }
        total.extend(
            masks
                .into_iter()
                .map(|(c, m)| (c, u64::from(m.count_ones()))),
        );
        return Ok(Some(total));
    }
    // Many values (products): the distinct (customer, value) pairs, sorted.
    let parts: Vec<Vec<u64>> = days
        .par_iter()
        .zip(&day_ids)
        .map(|(col, ids)| {
            let mut out = Vec::new();
            each_pair(col, ids, &mut |cust, id| {
                out.push(u64::from(cust) << 32 | u64::from(id))
            });
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();
    let mut pairs: Vec<u64> = parts.concat();
    pairs.par_sort_unstable();
    pairs.dedup();
    for pair in pairs {
        *total.entry((pair >> 32) as u32).or_default() += 1;
    }
    Ok(Some(total))
}

/// An event that a step of a sequence or a funnel may use, read from the event columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnHit<'a> {
    pub cust: u32,
    pub ts: Timestamp,
    /// Bit `j` set: the event is step `j`'s event, in its range, passing its filter.
    pub mask: u32,
    /// The value of the `with same` property, if asked for and the event has it.
    pub value: Option<ValueView<'a>>,
}

impl StepEvent for ColumnHit<'_> {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn mask(&self) -> u32 {
        self.mask
    }
    fn value(&self) -> Option<ValueView<'_>> {
        self.value
    }
}

/// Who of `undecided` satisfies the sequence `s` (planned at one *now*), exactly, from the
/// event columns ([`for_each_step_journey`]), decided by the same matcher as a customer's stored events
/// ([`sequence_holds`]). `None` when some columns are missing and not to be built yet.
pub(super) fn sequence_members(
    store: &Store,
    indexes: &Indexes,
    s: &SeqNode,
    undecided: &RoaringBitmap,
) -> Result<Option<RoaringBitmap>> {
    let from = s.steps.iter().map(|n| n.from).min().unwrap_or(0);
    let to = s.steps.iter().map(|n| n.to).max().unwrap_or(-1);
    // As `sequence_hits`: a step whose event was never stored matches nothing (but the second
    // step of `then not`, which then never breaks an attempt).
    let unmatched = |i: usize, n: &EventNode| n.event.is_none() && !(s.negated && i == 1);
    if from > to || s.steps.iter().enumerate().any(|(i, n)| unmatched(i, n)) {
        return Ok(Some(RoaringBitmap::new()));
    }
    let steps: Vec<&EventNode> = s.steps.iter().collect();
    let parts = for_each_step_journey(
        store,
        indexes,
        &steps,
        s.same.flatten(),
        undecided,
        Vec::new,
        |members: &mut Vec<u32>, one| {
            if sequence_holds(s, one) {
                members.push(one[0].cust);
            }
        },
    )?;
    Ok(parts.map(|parts| {
        // Tasks hold consecutive ids, in order.
        RoaringBitmap::from_sorted_iter(parts.into_iter().flatten()).unwrap_or_default()
    }))
}

/// Customers of `wanted` per task of [`for_each_step_journey`].
const JOURNEYS_PER_TASK: usize = 1024;

/// How the steps of a sequence or a funnel read one day's columns of one event kind: the steps
/// of that kind whose range meets the day, each with its filter's bits (when it has a filter)
/// and its range (when the range cuts the day). Built once per call and day; an event's steps
/// are then computed only for the rows of wanted customers ([`DayPlan::mask`]).
struct DayPlan {
    steps: Vec<DayStep>,
    /// Every event of the day is these steps: no step of the day has a filter or cuts it.
    constant: Option<u32>,
}

/// One step as a day's columns see it (see [`DayPlan`]).
struct DayStep {
    bit: u32,
    /// One bit per event of the day: whether it passes the step's filter; `None`: no filter.
    passes: Option<Vec<u64>>,
    /// The step's range, when it does not hold the whole day.
    range: Option<(Timestamp, Timestamp)>,
}

impl DayPlan {
    fn new(event: u32, col: &EventColumns, steps: &[&EventNode]) -> DayPlan {
        let Some(&first) = col.times.first() else {
            return DayPlan {
                steps: Vec::new(),
                constant: Some(0),
            };
        };
        let start = day_start(day_of(first));
        let end = start + DAY_MS - 1;
        let mut out = Vec::new();
        for (j, n) in steps.iter().enumerate() {
            if n.event != Some(event) || n.to < start || n.from > end || n.from > n.to {
                continue;
            }
            out.push(DayStep {
                bit: 1 << j,
                passes: n.filter.as_ref().map(|f| test(col, f)),
                range: (n.from > start || n.to < end).then_some((n.from, n.to)),
            });
        }
        let constant = out
            .iter()
            .all(|s| s.passes.is_none() && s.range.is_none())
            .then(|| out.iter().fold(0, |m, s| m | s.bit));
        DayPlan {
            steps: out,
            constant,
        }
    }

    /// The steps the `i`th event of the day's columns `col` is (0: none), when they are not
    /// `constant`.
    fn mask(&self, col: &EventColumns, i: usize) -> u32 {
        let ts = col.times[i];
        let mut mask = 0;
        for s in &self.steps {
            let passes = s
                .passes
                .as_ref()
                .is_none_or(|b| b[i / 64] >> (i % 64) & 1 == 1);
            let inside = s.range.is_none_or(|(from, to)| from <= ts && ts <= to);
            if passes && inside {
                mask |= s.bit;
            }
        }
        mask
    }
}

/// An event gathered for a task of [`for_each_step_journey`]: its customer's place among the
/// task's, its steps and its time (read in the pass over the day's rows, so that grouping the
/// events by customer does not go back to the columns).
#[derive(Debug, Clone, Copy, Default)]
struct Gathered {
    ts: Timestamp,
    place: u32,
    mask: u32,
}

/// A worker's buffers for the tasks of [`for_each_step_journey`], reused from task to task:
/// the events gathered and, only with a `with same` property, each one's (day, row) to find
/// its value; the same grouped by customer; each customer's start.
#[derive(Default)]
struct Gathering {
    hits: Vec<Gathered>,
    at: Vec<(u32, u32)>,
    grouped: Vec<Gathered>,
    grouped_at: Vec<(u32, u32)>,
    starts: Vec<usize>,
}

/// Calls `each` with the events of each customer of `wanted` that some of `steps` may use,
/// from the event columns: each step's events in its range (`from..=to`) passing its filter,
/// each event once with a bit per step it is, and with `same` the value of that property; in
/// time order (events at the same millisecond in no particular order). Customers without such
/// events are skipped. The customers are split into tasks of consecutive ids, each with its own
/// state from `init`; the states are returned. `None` when some columns are missing and not to
/// be built yet.
pub(crate) fn for_each_step_journey<S: Send>(
    store: &Store,
    indexes: &Indexes,
    steps: &[&EventNode],
    same: Option<u32>,
    wanted: &RoaringBitmap,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut S, &[ColumnHit<'_>]) + Sync,
) -> Result<Option<Vec<S>>> {
    // The steps' events, each once, with its days' columns over its steps' ranges.
    let mut kinds: Vec<u32> = steps.iter().filter_map(|n| n.event).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut days: Vec<(u32, Arc<EventColumns>)> = Vec::new();
    let mut missing = false;
    for &event in &kinds {
        let Some(ei) = indexes.event_index(event) else {
            continue;
        };
        let of_kind = steps.iter().filter(|n| n.event == Some(event));
        let from = of_kind.clone().map(|n| n.from).min().unwrap_or(0);
        let to = of_kind.map(|n| n.to).max().unwrap_or(-1);
        // Every kind is asked for, so that the next answer has them all.
        match day_columns(store, (event, ei), from, to)? {
            Some(d) => days.extend(d.into_iter().map(|c| (event, c))),
            None => missing = true,
        }
    }
    if missing {
        return Ok(None);
    }
    // Day by day, so that a customer's events gathered in this order are in time order but
    // for those of different kinds on one day.
    days.sort_by_key(|(event, col)| (col.times.first().map_or(0, |&t| day_of(t)), *event));
    // Per day's columns, which steps its events may be; days no step may use are left out.
    let plans: Vec<DayPlan> = days
        .par_iter()
        .map(|(event, col)| DayPlan::new(*event, col, steps))
        .collect();
    let (days, plans): (Vec<_>, Vec<_>) = days
        .into_iter()
        .zip(plans)
        .filter(|(_, p)| p.constant != Some(0))
        .unzip();
    let values: Vec<Option<&PropColumn>> = days
        .iter()
        .map(|(_, col)| same.and_then(|p| col.prop(p)))
        .collect();
    let ids: Vec<u32> = wanted.iter().collect();
    let tasks: Vec<&[u32]> = ids.chunks(JOURNEYS_PER_TASK).collect();
    // Per day, each task's rows (`start..end`: its customers' first to last), found in one
    // pass over the day's customers (rather than searched for by every task).
    let rows: Vec<Vec<(u32, u32)>> = days
        .par_iter()
        .map(|(_, col)| {
            let mut at = 0;
            tasks
                .iter()
                .map(|custs| {
                    let (lo, hi) = (custs[0], custs[custs.len() - 1]);
                    at += col.custs[at..].iter().take_while(|&&c| c < lo).count();
                    let start = at;
                    at += col.custs[at..].iter().take_while(|&&c| c <= hi).count();
                    (start as u32, at as u32)
                })
                .collect()
        })
        .collect();
    let states = tasks
        .par_iter()
        .enumerate()
        .map_init(Gathering::default, |g, (t, custs)| {
            let mut state = init();
            // This task's customers' events, from every day (each day's by customer), with
            // their customer's place in `custs`: only the rows of wanted customers are tested.
            g.hits.clear();
            g.at.clear();
            let with_values = same.is_some();
            for (d, ((_, col), plan)) in days.iter().zip(&plans).enumerate() {
                let (start, end) = (rows[d][t].0 as usize, rows[d][t].1 as usize);
                let mut current = None;
                let mut take = false;
                // Both ascending: `place` only moves forward (every row's customer is at most
                // `hi`, the last of `custs`).
                let mut place = 0usize;
                for i in start..end {
                    let cust = col.custs[i];
                    if current != Some(cust) {
                        current = Some(cust);
                        while custs[place] < cust {
                            place += 1;
                        }
                        take = custs[place] == cust;
                    }
                    if !take {
                        continue;
                    }
                    let mask = match plan.constant {
                        Some(m) => m,
                        None => plan.mask(col, i),
                    };
                    if mask != 0 {
                        g.hits.push(Gathered {
                            ts: col.times[i],
                            place: place as u32,
                            mask,
                        });
                        if with_values {
                            g.at.push((d as u32, i as u32));
                        }
                    }
                }
            }
            // Grouped by customer, keeping the gathering order (a counting sort), then each
            // customer's few events of one day put in time order (a stable sort of runs).
            g.starts.clear();
            g.starts.resize(custs.len() + 1, 0);
            for h in &g.hits {
                g.starts[h.place as usize + 1] += 1;
            }
            for p in 0..custs.len() {
                g.starts[p + 1] += g.starts[p];
            }
            g.grouped.clear();
            g.grouped.resize(g.hits.len(), Gathered::default());
            g.grouped_at.clear();
            g.grouped_at.resize(g.at.len(), (0, 0));
            {
                let Gathering {
                    hits,
                    at,
                    grouped,
                    grouped_at,
                    starts,
                } = &mut *g;
                // Each customer's next free slot: their start, moved on as events come.
                for (n, h) in hits.iter().enumerate() {
                    let slot = &mut starts[h.place as usize];
                    grouped[*slot] = *h;
                    if with_values {
                        grouped_at[*slot] = at[n];
                    }
                    *slot += 1;
                }
            }
            // `starts[p]` is now customer p's end, the start of p + 1.
            let mut one: Vec<ColumnHit<'_>> = Vec::new();
            let mut from = 0;
            for p in 0..custs.len() {
                let to = g.starts[p];
                if from == to {
                    continue;
                }
                one.clear();
                let cust = custs[p];
                if with_values {
                    one.extend(g.grouped[from..to].iter().zip(&g.grouped_at[from..to]).map(
                        |(h, &(d, i))| {
                            let value =
                                values[d as usize].and_then(|pc| match pc.ids[i as usize] {
                                    MISSING => None,
                                    id => Some(ValueView::of(&pc.values[id as usize])),
                                });
                            ColumnHit {
                                cust,
                                ts: h.ts,
                                mask: h.mask,
                                value,
                            }
                        },
                    ));
                } else {
                    one.extend(g.grouped[from..to].iter().map(|h| ColumnHit {
                        cust,
                        ts: h.ts,
                        mask: h.mask,
                        value: None,
                    }));
                }
                from = to;
                if !one.is_sorted_by_key(|h| h.ts) {
                    one.sort_by_key(|h| h.ts);
                }
                each(&mut state, &one);
            }
            state
        })
        .collect();
    Ok(Some(states))
}

/// One bit per event of the day's columns: whether the event passes `f`.
fn test(col: &EventColumns, f: &Filter) -> Vec<u64> {
    let n = col.len();
    let words = n.div_ceil(64);
    let filled = |on: bool| {
        let mut bits = vec![if on { u64::MAX } else { 0 }; words];
        trim(&mut bits, n);
        bits
    };
    match f {
        Filter::And(items) => {
            let mut bits = filled(true);
            for f in items {
                if bits.iter().all(|&w| w == 0) {
                    break;
                }
                for (a, b) in bits.iter_mut().zip(test(col, f)) {
                    *a &= b;
                }
            }
            bits
        }
        Filter::Or(items) => {
            let mut bits = filled(false);
            for f in items {
                for (a, b) in bits.iter_mut().zip(test(col, f)) {
                    *a |= b;
                }
            }
            bits
        }
        Filter::Not(inner) => {
            let mut bits = test(col, inner);
            for w in &mut bits {
                *w = !*w;
            }
            trim(&mut bits, n);
            bits
        }
        Filter::Cond { prop, test } => {
            let column = prop.and_then(|p| col.prop(p));
            let Some(column) = column else {
                // No event of the day has the property.
                return filled(passes(None, test));
            };
            let hits: Vec<bool> = column
                .values
                .iter()
                .map(|v| passes(Some(ValueView::of(v)), test))
                .collect();
            let missing = passes(None, test);
            let mut bits = vec![0u64; words];
            for (i, &id) in column.ids.iter().enumerate() {
                let on = if id == MISSING {
                    missing
                } else {
                    hits[id as usize]
                };
                bits[i / 64] |= u64::from(on) << (i % 64);
            }
            bits
        }
    }
}

/// Clears the bits past the `n`th.
fn trim(bits: &mut [u64], n: usize) {
    if !n.is_multiple_of(64) {
        if let Some(last) = bits.last_mut() {
            *last &= (1u64 << (n % 64)) - 1;
        }
    }
}

/// The positions of the set bits, ascending.
fn ones(bits: &[u64]) -> impl Iterator<Item = usize> + '_ {
    bits.iter().enumerate().flat_map(|(w, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            if word == 0 {
                return None;
            }
            let b = word.trailing_zeros() as usize;
            word &= word - 1;
            Some(w * 64 + b)
        })
    })
}

/// The columns of the days in `from..=to` that have events of the kind: those kept in memory
/// while their day's count list is unchanged, else those stored in the folder whose events have
/// the list's fingerprint (`crate::index::derived`), else built now from the stored events and
/// stored for the next process; `None` when some are to be built and this is the first time the
/// event's columns are wanted, in this process or any before ([`crate::index::Columns::ask`]).
fn day_columns(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<Vec<Arc<EventColumns>>>> {
    let from = from.max(0);
    if from > to {
        return Ok(Some(Vec::new()));
    }
    let mut columns: Vec<(u32, Option<Arc<EventColumns>>)> = Vec::new();
    let mut missing = Vec::new();
    for (&d, list) in ei.counts.range(day_of(from)..=day_of(to)) {
        let current = list.version();
        let column = ei.columns.get(d, current);
        if column.is_none() {
            missing.push((d, current, list.fingerprint()));
        }
        columns.push((d, column));
    }
    if missing.is_empty() {
        return Ok(Some(columns.into_iter().filter_map(|(_, c)| c).collect()));
    }
    let kept = Kept(store);
    let loaded: Vec<Option<Arc<EventColumns>>> = missing
        .par_iter()
        .map(|&(d, version, fp)| load_columns(&kept, event, d, version, fp).map(Arc::new))
        .collect();
    let unbuilt: Vec<(u32, ListVersion)> = missing
        .iter()
        .zip(&loaded)
        .filter(|(_, l)| l.is_none())
        .map(|(&(d, v, _), _)| (d, v))
        .collect();
    if !unbuilt.is_empty() && !ei.columns.ask(&kept, event) {
        return Ok(None);
    }
    let mut built = if unbuilt.is_empty() {
        Vec::new()
    } else {
        build(store, (event, ei), &unbuilt)?
    };
    // The built ones stored for the next process (their own fingerprint goes with them).
    built.par_iter().zip(&unbuilt).for_each(|(c, &(d, _))| {
        kept.save(
            &derived::columns_key(event, d),
            &derived::pack(&c.encode(d)),
        )
    });
    let mut built = built.drain(..);
    let mut loaded = loaded.into_iter();
    for slot in columns.iter_mut().filter(|c| c.1.is_none()) {
        let column = match loaded.next().flatten() {
            Some(c) => c,
            None => built
                .next()
                .ok_or_else(|| crate::error::internal!("a day's columns were not built"))?,
        };
        ei.columns.put(slot.0, column.clone());
        slot.1 = Some(column);
    }
    Ok(Some(columns.into_iter().filter_map(|(_, c)| c).collect()))
}

/// Whether `day`'s columns of the event are at hand without a build: kept in memory for the day's
/// count list as it is, or stored in the folder with its fingerprint (then loaded and kept).
pub(super) fn at_hand(store: &Store, (event, ei): (u32, &EventIndex), day: u32) -> bool {
    let Some(list) = ei.counts.get(&day) else {
        return false;
    };
    let version = list.version();
    if ei.columns.get(day, version).is_some() {
        return true;
    }
    match load_columns(&Kept(store), event, day, version, list.fingerprint()) {
        Some(c) => {
            ei.columns.put(day, Arc::new(c));
            true
        }
        None => false,
    }
}

/// The stored columns of `event` on `day`, if their events have the fingerprint `fp` of the
/// day's count list (whose version is `version`).
fn load_columns(
    kept: &dyn DerivedStore,
    event: u32,
    day: u32,
    version: ListVersion,
    fp: u64,
) -> Option<EventColumns> {
    derived::load_checked(
        kept,
        &derived::columns_key(event, day),
        fp,
        EventColumns::declared_fingerprint,
        |body| EventColumns::decode(body, day, version),
    )
}

/// The columns of the kind's events on `day` (`Some(None)`: no event that day); `None` when the
/// columns are missing and not to be built yet.
pub(super) fn one_day(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    day: u32,
) -> Result<Option<Option<Arc<EventColumns>>>> {
    let start = day_start(day);
    let days = day_columns(store, (event, ei), start, start + DAY_MS - 1)?;
    Ok(days.map(|d| d.into_iter().next()))
}

/// The customers with an event of the kind on `day` later than `after`, from the day's columns;
/// `None` when the columns are missing and not to be built yet, or the day has no count list.
pub(super) fn later_on_day(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    day: u32,
    after: Timestamp,
) -> Result<Option<RoaringBitmap>> {
    let start = day_start(day);
    let Some(days) = day_columns(store, (event, ei), start, start + DAY_MS - 1)? else {
        return Ok(None);
    };
    let Some(col) = days.first() else {
        return Ok(None);
    };
    let mut out = RoaringBitmap::new();
    for (&cust, &t) in col.custs.iter().zip(&col.times) {
        if t > after {
            out.insert(cust);
        }
    }
    Ok(Some(out))
}

/// The columns of the `missing` days (ascending, each with its count list's version), in that
/// order.
fn build(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    missing: &[(u32, ListVersion)],
) -> Result<Vec<Arc<EventColumns>>> {
    let by_day = events_on_days(store, (event, ei), missing, |cust, e| {
        Ok(Some((cust, e.ts, e.props()?)))
    })?;
    Ok(by_day
        .into_par_iter()
        .zip(missing)
        .map(|(events, &(_, version))| Arc::new(EventColumns::new(version, events)))
        .collect())
}

/// What `keep` makes of each `event` on each of the `missing` days (ascending, as `build` and
/// the text columns' builder take them), per day in customer and time order: every customer who
/// had the event on one of those days has their events read once, from the first day on, the
/// customers split across rayon's pool. Events before 1970 are on no day.
pub(super) fn events_on_days<T: Send>(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    missing: &[(u32, ListVersion)],
    keep: impl Fn(u32, view::EventView<'_>) -> Result<Option<T>> + Sync,
) -> Result<Vec<Vec<T>>> {
    let first = missing[0].0;
    let last = missing[missing.len() - 1].0;
    let wanted = |d: u32| missing.binary_search_by_key(&d, |m| m.0).ok();
    let customers: RoaringBitmap = missing.iter().filter_map(|(d, _)| ei.days.get(d)).union();
    let ids: Vec<u32> = customers.iter().collect();
    let chunk = super::chunk_len(ids.len());
    let end = day_start(last) + DAY_MS - 1;
    // Per task: (slot in `missing`, what `keep` made) of each event of the kind on a missing day.
    let parts: Vec<Vec<(usize, T)>> = ids
        .par_chunks(chunk)
        .map(|ids| {
            let mut bodies = Vec::new();
            let mut blocks: Vec<BlockSpan> = Vec::new();
            let mut found = Vec::new();
            for &cust in ids {
                bodies.clear();
                blocks.clear();
                store.event_bodies_from(cust, day_start(first), &mut bodies, &mut blocks)?;
                view::for_each_event_between(&bodies, &blocks, 0, end, |e| {
                    if e.event != event {
                        return Ok(());
                    }
                    if let Some(slot) = wanted(day_of(e.ts)) {
                        if let Some(item) = keep(cust, e)? {
                            found.push((slot, item));
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(found)
        })
        .collect::<Result<_>>()?;
    let mut by_day: Vec<Vec<T>> = (0..missing.len()).map(|_| Vec::new()).collect();
    for (slot, item) in parts.into_iter().flatten() {
        by_day[slot].push(item);
    }
    Ok(by_day)
}
