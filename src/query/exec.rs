//! Running a plan: bounds from the bitmaps first, then exact checks on the customers in between.
//!
//! Every plan node gets two sets of customers, `sure ⊆ maybe`: whoever is in `sure` satisfies the
//! node, whoever is outside `maybe` does not. Trait equality, `is set`, and event presence on the
//! whole days inside a window are exact (`sure == maybe`). Counts and aggregates of an event
//! without a filter come from the per-day rollups: summed per customer over the window's whole
//! days into per-thread dense arrays, with a cut day counted only for customers whose events
//! that day lie all inside or all outside the window, and sums within rounding distance of the
//! threshold left undecided. A filter that is one ordering or `between` of a numeric literal on
//! a property with numeric rollups (`where amount >= 100`, with or without a count) is answered
//! from each day's minimum and maximum ([`NumTest`]): on a whole day, the maximum passing `>=`
//! proves a passing event and the maximum failing it proves none; counts get a lower and an upper
//! bound. Ranges, other filters the indexes do not cover and the partial days at a window's edges
//! leave a gap. The answer is
//! `sure` of the root plus the customers of its gap that pass the exact check of `customer`,
//! which runs in parallel and, node by node, again trusts the bounds wherever they decide.
//!
//! This module reads the indexes (under the caller's read guard) and customers' stored data; it
//! never writes.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;
use crate::index::rollup::{sum_margin, SPAN_UNIT_MS};
use crate::index::{
    DayBitmaps, DayFigures, DayList, DayNumbers, EventIndex, FastMap, IndexValue, Indexes,
    TraitIndex, ValueDays, ValueRef,
};
use crate::model::time::{day_of, day_start, Timestamp, DAY_MS, MAX_TIMESTAMP};
use crate::model::value::ValueType;
use crate::rules::AggregateFn;
use crate::rules::CmpOp;
use crate::storage::view::{BlockSpan, ValueView};
use crate::storage::{Catalog, Store};

use super::customer;
use super::plan::{
    compare_f64, compare_u64, EventNode, Filter, Frequency, Lit, Node, NodeKind, Plan, ValueTest,
};

/// Value types the equality indexes hold (lists by their elements).
const INDEXED: u8 = ValueType::Str.bit() | ValueType::Int.bit() | ValueType::Bool.bit();

/// The bounds of one plan node, and of its children, as computed.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    pub sure: RoaringBitmap,
    pub maybe: RoaringBitmap,
    pub children: Vec<Bounds>,
    /// Time spent computing this node's bounds, children included.
    pub elapsed: Duration,
}

impl Bounds {
    fn exact(set: RoaringBitmap) -> Bounds {
        Bounds {
            maybe: set.clone(),
            sure: set,
            children: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn with_child(mut self, child: Bounds) -> Bounds {
        self.children.push(child);
        self
    }

    fn range(sure: RoaringBitmap, maybe: RoaringBitmap) -> Bounds {
        Bounds {
            sure,
            maybe,
            children: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// What bounds are computed from.
pub(crate) struct Sources<'a> {
    pub indexes: &'a Indexes,
    pub catalog: &'a Catalog,
}

impl Sources<'_> {
    fn all(&self) -> &RoaringBitmap {
        &self.indexes.everyone
    }

    /// The bounds of a node and its children.
    pub fn bounds(&self, node: &Node) -> Bounds {
        let started = Instant::now();
        let mut b = match &node.kind {
            NodeKind::Everyone => Bounds::exact(self.all().clone()),
            NodeKind::Not(inner) => {
                let child = self.bounds(inner);
                Bounds::range(self.all() - &child.maybe, self.all() - &child.sure).with_child(child)
            }
            NodeKind::And(items) => {
                let mut children: Vec<Bounds> = items.iter().map(|n| self.bounds(n)).collect();
                let mut order: Vec<usize> = (0..children.len()).collect();
                order.sort_by_key(|&i| children[i].maybe.len());
                let mut maybe = children[order[0]].maybe.clone();
                let mut sure = children[order[0]].sure.clone();
                for &i in &order[1..] {
                    maybe &= &children[i].maybe;
                    sure &= &children[i].sure;
                }
                sure &= &maybe;
                let b = Bounds::range(sure, maybe);
                Bounds {
                    children: std::mem::take(&mut children),
                    ..b
                }
            }
            NodeKind::Or(items) => {
                let children: Vec<Bounds> = items.iter().map(|n| self.bounds(n)).collect();
                let sure = children.iter().map(|c| &c.sure).union();
                let maybe = children.iter().map(|c| &c.maybe).union();
                Bounds {
                    children,
                    ..Bounds::range(sure, maybe)
                }
            }
            NodeKind::Trait { trait_id, test } => self.trait_bounds(*trait_id, test),
            NodeKind::Event(e) => self.event_bounds(e),
            NodeKind::Audience { inner, .. } => {
                let child = self.bounds(inner);
                Bounds::range(child.sure.clone(), child.maybe.clone()).with_child(child)
            }
        };
        b.elapsed = started.elapsed();
        b
    }

    fn trait_bounds(&self, trait_id: Option<u32>, test: &ValueTest) -> Bounds {
        let empty = RoaringBitmap::new();
        let Some(t) = trait_id else {
            // No customer has the trait: only `is not set` holds, for everyone.
            return match test {
                ValueTest::IsSet { negated: true } => Bounds::exact(self.all().clone()),
                _ => Bounds::exact(empty),
            };
        };
        let ti = self.indexes.trait_index(t);
        let set = ti.map_or(&empty, |ti| &ti.set);
        // The trait's value bitmaps, if it has them.
        let values = ti.filter(|_| self.indexes.trait_values_indexed(t));
        let types = self.catalog.trait_types(t);
        // The customers found in value bitmaps surely pass; they are all who pass when every
        // scalar value the trait may hold is keyed (no floats, no date-times).
        let scalars_keyed = types & !ValueType::List.bit() & !INDEXED == 0;
        let bounded = |sure: RoaringBitmap, exact: bool| {
            if exact {
                Bounds::exact(sure)
            } else {
                Bounds::range(sure, set.clone())
            }
        };
        let equal = |ti: &TraitIndex, lits: &[&Lit]| {
            bounded(lookup(&ti.values, lits).into_iter().union(), scalars_keyed)
        };
        let not_equal = |eq: Bounds| Bounds::range(set - &eq.maybe, set - &eq.sure);
        match (test, values) {
            (ValueTest::IsSet { negated: false }, _) => Bounds::exact(set.clone()),
            (ValueTest::IsSet { negated: true }, _) => Bounds::exact(self.all() - set),
            // Without value bitmaps, anyone with the trait may pass any other test.
            (_, None) => Bounds::range(RoaringBitmap::new(), set.clone()),
            (ValueTest::Compare { op: CmpOp::Eq, lit }, Some(ti)) => equal(ti, &[lit]),
            (ValueTest::Compare { op: CmpOp::Ne, lit }, Some(ti)) => not_equal(equal(ti, &[lit])),
            (ValueTest::In { negated, lits }, Some(ti)) => {
                let eq = equal(ti, &lits.iter().collect::<Vec<_>>());
                if *negated {
                    not_equal(eq)
                } else {
                    eq
                }
            }
            (ValueTest::Contains(lit), Some(ti)) => {
                // Exact only for list traits whose elements the index keys can all equal: a
                // string trait answers `contains` by substring, and float or date-time elements
                // are not keyed.
                let only_lists = types == ValueType::List.bit();
                let exact =
                    only_lists && (lit.is_str || lit.boolean.is_some()) && lit.time.is_none();
                bounded(lookup(&ti.elements, &[lit]).into_iter().union(), exact)
            }
            // Orderings: the union of the integer values that pass (strings and booleans never
            // order).
            (ValueTest::Compare { .. } | ValueTest::Between { .. }, Some(ti)) => {
                let sure = ti
                    .values
                    .iter()
                    .filter(|(k, _)| orders_and_passes(k, test))
                    .map(|(_, b)| b)
                    .union();
                bounded(sure, scalars_keyed)
            }
        }
    }

    fn event_bounds(&self, e: &EventNode) -> Bounds {
        let all = self.all();
        let f = &e.frequency;
        if f.holds_for_any_presence() && !f.holds_for_none() {
            return self.presence(e);
        }
        if !f.holds_for_any_presence() {
            if let Some(b) = self.rollup_bounds(e) {
                return b;
            }
        }
        let presence = self.presence(e);
        if f.holds_for_none() {
            // A count or sum of 0 satisfies it: whoever surely has no matching event is in.
            let none = all - &presence.maybe;
            if f.holds_for_any_presence() {
                return Bounds::exact(all.clone());
            }
            return Bounds::range(none, all.clone());
        }
        if f.holds_for_any_presence() {
            return presence;
        }
        let mut sure = RoaringBitmap::new();
        if let (Some(n), Some(days)) = (f.at_least(), self.exact_days(e)) {
            // Matching events on n distinct whole days of the window prove n events.
            sure = at_least_n_days(days, e, n);
        }
        Bounds::range(sure, presence.maybe)
    }

    /// Bounds of a count or an aggregate from the per-day rollups, for an event condition without
    /// a filter (the rollups count every event of the kind); `None` when they cannot answer it.
    fn rollup_bounds(&self, e: &EventNode) -> Option<Bounds> {
        if e.window_is_empty() {
            return None;
        }
        let event = e.event?;
        let ei = self.indexes.event_index(event)?;
        let f = e.frequency;
        // A filter the numeric rollups answer (a count of events whose number passes a test):
        // its test and the property's figures.
        let num_filter = match &e.filter {
            None => None,
            Some(filter) => match (self.numeric_filter(event, filter), f) {
                (Some((t, p)), Frequency::Count { .. }) => Some((t, ei.numbers.get(&p))),
                _ => return None,
            },
        };
        let win = WindowDays::of(e.from, e.to)?;
        let all = self.all();
        let ids = all.max().map_or(0, |m| m + 1);
        let empty = DayFiguresRef::default();
        let numbers = match f {
            Frequency::Count { .. } => None,
            Frequency::Aggregate { prop: Some(p), .. } if self.indexes.prop_rolled_up(event, p) => {
                Some(ei.numbers.get(&p).map_or(empty, |d| DayFiguresRef(Some(d))))
            }
            Frequency::Aggregate { .. } => return None,
        };
        let none_holds = f.holds_for_none();
        let tasks = (rayon::current_num_threads() * 4) as u32;
        let step = ids.div_ceil(tasks).max(1 << 14);
        let ranges: Vec<(u32, u32)> = (0..ids)
            .step_by(step as usize)
            .map(|lo| (lo, lo.saturating_add(step).min(ids)))
            .collect();
        // Per range: who surely passes (or, when having no matching event passes, who surely
        // fails) among the customers with figures, and who is undecided.
        let parts: Vec<(RoaringBitmap, RoaringBitmap)> = ranges
            .into_par_iter()
            .map(|(lo, hi)| {
                let mut decided = RoaringBitmap::new();
                let mut gap = RoaringBitmap::new();
                let mut put = |cust: u32, d: Decision| match d {
                    Decision::Gap => {
                        append(&mut gap, cust);
                    }
                    Decision::Pass if !none_holds => {
                        append(&mut decided, cust);
                    }
                    Decision::Fail if none_holds => {
                        append(&mut decided, cust);
                    }
                    _ => {}
                };
                match (f, numbers) {
                    (Frequency::Count { op, n }, _) if let Some((t, figures)) = num_filter => {
                        numeric_count_range(ei, figures, t, &win, lo, hi, |cust, known, unsure| {
                            put(cust, decide_count(op, n, known, known + unsure))
                        })
                    }
                    (Frequency::Count { op, n }, _) => {
                        count_range(ei, &win, lo, hi, |cust, known, unsure| {
                            put(cust, decide_count(op, n, known, known + unsure))
                        })
                    }
                    (
                        Frequency::Aggregate {
                            func, op, value, ..
                        },
                        Some(figures),
                    ) => aggregate_range(ei, figures, &win, lo, hi, |cust, acc| {
                        put(cust, decide_aggregate(func, op, value, acc))
                    }),
                    _ => {}
                }
                (decided, gap)
            })
            .collect();
        let decided: RoaringBitmap = parts.iter().map(|p| &p.0).union();
        let gap: RoaringBitmap = parts.iter().map(|p| &p.1).union();
        Some(if none_holds {
            let sure = all - &decided - &gap;
            let maybe = &sure | &gap;
            Bounds::range(sure, maybe)
        } else {
            let maybe = &decided | &gap;
            Bounds::range(decided, maybe)
        })
    }

    /// The test and property of a filter that the numeric rollups answer: one ordering or
    /// `between` of a numeric literal on a property with rollups (see [`NumTest`]).
    fn numeric_filter(&self, event: u32, f: &Filter) -> Option<(NumTest, u32)> {
        match f {
            Filter::Cond {
                prop: Some(p),
                test,
            } if self.indexes.prop_rolled_up(event, *p) => Some((NumTest::of(test)?, *p)),
            _ => None,
        }
    }

    /// The day bitmaps that hold exactly the matching events' days: the event's own days without
    /// a filter, one value's days for a filter that is one indexed equality.
    fn exact_days(&self, e: &EventNode) -> Option<&DayBitmaps> {
        let ei = self.indexes.event_index(e.event?)?;
        match &e.filter {
            None => Some(&ei.days),
            Some(Filter::Cond {
                prop: Some(p),
                test: ValueTest::Compare { op: CmpOp::Eq, lit },
            }) if self.prop_exact(e.event?, *p) => {
                let mut keys = Vec::new();
                index_keys(lit, &mut keys);
                match keys.as_slice() {
                    [k] => ei.props.get(p)?.get(k).map(|vd| &vd.days),
                    _ => None,
                }
            }
            Some(_) => None,
        }
    }

    /// Whether equality on an event property is answered exactly by its value bitmaps.
    fn prop_exact(&self, event: u32, prop: u32) -> bool {
        self.indexes.prop_values_indexed(event, prop)
            && self.catalog.prop_types(event, prop) & !INDEXED == 0
    }

    /// Who has at least one event matching the condition (name, filter, window): bounds.
    fn presence(&self, e: &EventNode) -> Bounds {
        let Some((event, ei)) = e
            .event
            .and_then(|id| Some((id, self.indexes.event_index(id)?)))
        else {
            return Bounds::exact(RoaringBitmap::new());
        };
        if e.window_is_empty() {
            return Bounds::exact(RoaringBitmap::new());
        }
        if let Some((t, p)) = e
            .filter
            .as_ref()
            .and_then(|f| self.numeric_filter(event, f))
        {
            // Already within who has an event in the window: no need to work that out.
            return WindowDays::of(e.from, e.to).map_or_else(
                || Bounds::exact(RoaringBitmap::new()),
                |win| numeric_presence(ei, ei.numbers.get(&p), t, &win),
            );
        }
        let any = presence_bounds(ei, e.from, e.to);
        match &e.filter {
            None => any,
            Some(f) => {
                let fb = self.filter_bounds(e, (event, ei), f, &any);
                Bounds::range(fb.sure & &any.sure, fb.maybe & &any.maybe)
            }
        }
    }

    /// Who has an event in the window passing the filter: bounds (`ei` is the event's index,
    /// `any` who has an event in the window at all).
    fn filter_bounds(
        &self,
        e: &EventNode,
        (event, ei): (u32, &EventIndex),
        f: &Filter,
        any: &Bounds,
    ) -> Bounds {
        let loose = || Bounds::range(RoaringBitmap::new(), any.maybe.clone());
        match f {
            // Two conditions may each hold on different events: only an upper bound.
            Filter::And(items) => {
                let parts: Vec<Bounds> = items
                    .iter()
                    .map(|f| self.filter_bounds(e, (event, ei), f, any))
                    .collect();
                let maybe = parts.iter().map(|b| &b.maybe).intersection();
                Bounds::range(RoaringBitmap::new(), maybe)
            }
            Filter::Or(items) => {
                let parts: Vec<Bounds> = items
                    .iter()
                    .map(|f| self.filter_bounds(e, (event, ei), f, any))
                    .collect();
                Bounds::range(
                    parts.iter().map(|b| &b.sure).union(),
                    parts.iter().map(|b| &b.maybe).union(),
                )
            }
            Filter::Not(_) => loose(),
            Filter::Cond { prop: None, test } => match test {
                // No event ever had the property: only `is not set` passes, on every event.
                ValueTest::IsSet { negated: true } => any.clone(),
                _ => Bounds::exact(RoaringBitmap::new()),
            },
            Filter::Cond {
                prop: Some(p),
                test,
            } => {
                if let Some((t, p)) = self.numeric_filter(event, f) {
                    let win = WindowDays::of(e.from, e.to);
                    return win.map_or_else(
                        || Bounds::exact(RoaringBitmap::new()),
                        |win| numeric_presence(ei, ei.numbers.get(&p), t, &win),
                    );
                }
                if !self.indexes.prop_values_indexed(event, *p) {
                    return loose();
                }
                let Some(values) = ei.props.get(p) else {
                    return loose();
                };
                // The value bitmaps whose values pass: looked up for equality, scanned (integers
                // only) for orderings.
                let passing: Vec<&ValueDays> = match test {
                    ValueTest::Compare { op: CmpOp::Eq, lit } => lookup(values, &[lit]),
                    ValueTest::In {
                        negated: false,
                        lits,
                    } => lookup(values, &lits.iter().collect::<Vec<_>>()),
                    // Orderings only: `!=` is not a union of value bitmaps (an event with
                    // another value, or none of the indexed types, passes it).
                    ValueTest::Compare {
                        op: CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge,
                        ..
                    }
                    | ValueTest::Between { .. } => values
                        .iter()
                        .filter(|(k, _)| orders_and_passes(k, test))
                        .map(|(_, vd)| vd)
                        .collect(),
                    _ => return loose(),
                };
                let parts: Vec<Bounds> = passing
                    .iter()
                    .map(|vd| window_bounds(&vd.days, e.from, e.to))
                    .collect();
                let mut sure = parts.iter().map(|b| &b.sure).union();
                let maybe = parts.iter().map(|b| &b.maybe).union();
                // On a day the window cuts, a customer whose events of this kind that day all lie
                // inside the window's part (the count rollups' span says so) has the passing
                // event inside too: sure, without reading their events.
                if let Some(win) = WindowDays::of(e.from, e.to) {
                    for &(d, a, b) in &win.edges {
                        let cut: RoaringBitmap =
                            passing.iter().filter_map(|vd| vd.days.get(&d)).union();
                        if cut.is_empty() {
                            continue;
                        }
                        // A customer may have several partial figures that day: all of their
                        // events are inside only if every partial is (the or-ed sides say In).
                        let sides = day_sides(ei, d, a, b);
                        sure |= cut
                            .iter()
                            .filter(|c| sides.get(c) == Some(&(Side::In as u8)))
                            .collect::<RoaringBitmap>();
                    }
                }
                if self.prop_exact(event, *p) {
                    Bounds::range(sure, maybe)
                } else {
                    Bounds::range(sure, any.maybe.clone())
                }
            }
        }
    }
}

/// The entries (value bitmaps, or per-day value bitmaps) of the values equal to any of the
/// literals.
fn lookup<'m, V>(values: &'m FastMap<IndexValue, V>, lits: &[&Lit]) -> Vec<&'m V> {
    let mut keys = Vec::new();
    for lit in lits {
        index_keys(lit, &mut keys);
    }
    keys.iter().filter_map(|k| values.get(k)).collect()
}

/// Whether an index key is an integer that passes an ordering test (strings and booleans do
/// not order).
fn orders_and_passes(k: &IndexValue, test: &ValueTest) -> bool {
    match k {
        IndexValue::Int(i) => customer::passes_present(ValueView::Int(*i), test),
        _ => false,
    }
}

/// The index keys a stored value must have to equal the literal: its text as a string, its
/// integer, its boolean.
fn index_keys<'l>(lit: &'l Lit, keys: &mut Vec<ValueRef<'l>>) {
    if let Some(t) = &lit.text {
        keys.push(ValueRef::Str(t));
    }
    if let Some(i) = lit.int {
        if !lit.is_str {
            keys.push(ValueRef::Int(i));
        }
    }
    if let Some(b) = lit.boolean {
        keys.push(ValueRef::Bool(b));
    }
}

/// Presence bounds from day bitmaps for the inclusive window `[from, to]`: whole days inside it
/// are exact; the (at most two) days it cuts are only candidates.
fn window_bounds(days: &DayBitmaps, from: Timestamp, to: Timestamp) -> Bounds {
    let from = from.max(0);
    let to = to.min(MAX_TIMESTAMP - 1);
    if from > to {
        return Bounds::exact(RoaringBitmap::new());
    }
    let (first, last) = (day_of(from), day_of(to));
    let whole_first = if day_start(first) == from {
        first
    } else {
        first + 1
    };
    let whole_last = if day_start(last) + DAY_MS - 1 == to {
        Some(last)
    } else {
        last.checked_sub(1)
    };
    let sure = match whole_last {
        Some(wl) if whole_first <= wl => days.range(whole_first..=wl).map(|(_, b)| b).union(),
        _ => RoaringBitmap::new(),
    };
    let mut maybe = sure.clone();
    for d in [first, last] {
        let whole = whole_last.is_some_and(|wl| whole_first <= d && d <= wl);
        if !whole {
            if let Some(b) = days.get(&d) {
                maybe |= b;
            }
        }
    }
    Bounds::range(sure, maybe)
}

/// Who has an event of the kind in the window: the whole days' bitmaps, and on a day the window
/// cuts, the count rollups' spans: a customer with events of that day wholly inside the window's
/// part is in, one with all of them outside is out, and only the others are undecided.
fn presence_bounds(ei: &EventIndex, from: Timestamp, to: Timestamp) -> Bounds {
    let Some(win) = WindowDays::of(from, to) else {
        return Bounds::exact(RoaringBitmap::new());
    };
    let mut sure = match win.whole {
        Some((a, b)) => ei.days.range(a..=b).map(|(_, bm)| bm).union(),
        None => RoaringBitmap::new(),
    };
    let mut unsure = RoaringBitmap::new();
    for &(d, a, b) in &win.edges {
        let Some(list) = ei.counts.get(&d) else {
            continue;
        };
        list.for_each(|x| match side(x.first, x.last, a, b) {
            Side::In => {
                sure.insert(x.cust);
            }
            Side::Out => {}
            Side::Both => {
                unsure.insert(x.cust);
            }
        });
    }
    let maybe = &sure | &unsure;
    Bounds::range(sure, maybe)
}

/// Customers with a matching event on at least `n` distinct whole days of the window.
fn at_least_n_days(days: &DayBitmaps, e: &EventNode, n: u64) -> RoaringBitmap {
    if n == 0 || n > 366 * 200 {
        return RoaringBitmap::new();
    }
    let from = e.from.max(0);
    let to = e.to.min(MAX_TIMESTAMP - 1);
    let first = day_of(from) + u32::from(day_start(day_of(from)) != from);
    let last = match day_of(to).checked_sub(u32::from(day_start(day_of(to)) + DAY_MS - 1 != to)) {
        Some(l) if first <= l => l,
        _ => return RoaringBitmap::new(),
    };
    let n = n as usize;
    // reached[k] = customers seen on at least k+1 of the days so far.
    let mut reached: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); n];
    for (_, b) in days.range(first..=last) {
        for k in (1..n).rev() {
            let more = &reached[k - 1] & b;
            reached[k] |= more;
        }
        reached[0] |= b;
    }
    reached.pop().unwrap_or_default()
}

/// Runs the exact check on the customers between the root's bounds, in parallel, and returns
/// the members: the root's `sure` plus those that pass.
pub(crate) fn resolve(plan: &Plan, bounds: &Bounds, store: &Store) -> Result<RoaringBitmap> {
    resolve_node(&plan.root, bounds, plan.events_from, store)
}

/// [`resolve`] for any node of the plan: its exact members.
pub(crate) fn resolve_node(
    node: &Node,
    bounds: &Bounds,
    events_from: Option<Timestamp>,
    store: &Store,
) -> Result<RoaringBitmap> {
    let gap = &bounds.maybe - &bounds.sure;
    if gap.is_empty() {
        return Ok(bounds.sure.clone());
    }
    let candidates: Vec<u32> = gap.iter().collect();
    let chunk = (candidates.len() / (rayon::current_num_threads() * 8)).clamp(64, 4096);
    let parts: Vec<RoaringBitmap> = candidates
        .par_chunks(chunk)
        .map(|ids| {
            let mut data = CustomerData::new(store, events_from);
            let mut out = RoaringBitmap::new();
            for &cust in ids {
                data.load(cust);
                if holds(node, Some(bounds), &mut data)? {
                    out.insert(cust);
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let mut members = bounds.sure.clone();
    for p in parts {
        members |= p;
    }
    Ok(members)
}

/// One customer's stored data, read on first use: the profile, and the event blocks from
/// `events_from` on (none without it: no event condition looks at any event). The buffers are
/// reused across customers, so that checking a customer allocates nothing once they have grown.
pub(crate) struct CustomerData<'s> {
    store: &'s Store,
    events_from: Option<Timestamp>,
    cust: u32,
    profile: Option<Option<crate::storage::codec::Fields>>,
    events_loaded: bool,
    /// The bodies of the customer's event blocks, uncompressed, back to back.
    bodies: Vec<u8>,
    /// Each block's first timestamp and byte range in `bodies`.
    blocks: Vec<BlockSpan>,
}

impl<'s> CustomerData<'s> {
    pub fn new(store: &'s Store, events_from: Option<Timestamp>) -> Self {
        CustomerData {
            store,
            events_from,
            cust: 0,
            profile: None,
            events_loaded: false,
            bodies: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// Points at another customer; nothing is read until needed.
    pub fn load(&mut self, cust: u32) {
        self.cust = cust;
        self.profile = None;
        self.events_loaded = false;
        self.bodies.clear();
        self.blocks.clear();
    }

    /// The customer's traits by trait id (none without a profile).
    pub fn profile(&mut self) -> Result<&[(u32, crate::model::Value)]> {
        if self.profile.is_none() {
            self.profile = Some(self.store.profile(self.cust)?);
        }
        Ok(self
            .profile
            .as_ref()
            .and_then(|p| p.as_deref())
            .unwrap_or(&[]))
    }

    /// The customer's block bodies and each block's (first timestamp, byte range in them), in
    /// time order, for [`customer::for_each_match`] and [`crate::storage::view::for_each_event`].
    pub fn events(&mut self) -> Result<(&[u8], &[BlockSpan])> {
        if !self.events_loaded {
            if let Some(from) = self.events_from {
                self.store.event_bodies_from(
                    self.cust,
                    from,
                    &mut self.bodies,
                    &mut self.blocks,
                )?;
            }
            self.events_loaded = true;
        }
        Ok((&self.bodies, &self.blocks))
    }

    /// The customer's matching events for one event condition, folded.
    pub fn tally(&mut self, e: &EventNode) -> Result<customer::Tally> {
        let (bodies, blocks) = self.events()?;
        customer::tally(e, bodies, blocks)
    }
}

/// The exact answer of `node` for the customer `data` points at, trusting the bounds (when
/// given) wherever they decide.
pub(crate) fn holds(node: &Node, b: Option<&Bounds>, data: &mut CustomerData<'_>) -> Result<bool> {
    if let Some(b) = b {
        if b.sure.contains(data.cust) {
            return Ok(true);
        }
        if !b.maybe.contains(data.cust) {
            return Ok(false);
        }
    }
    let child = |i: usize| b.and_then(|b| b.children.get(i));
    Ok(match &node.kind {
        NodeKind::Everyone => true,
        NodeKind::Not(inner) => !holds(inner, child(0), data)?,
        NodeKind::And(items) => {
            for (i, n) in items.iter().enumerate() {
                if !holds(n, child(i), data)? {
                    return Ok(false);
                }
            }
            true
        }
        NodeKind::Or(items) => {
            for (i, n) in items.iter().enumerate() {
                if holds(n, child(i), data)? {
                    return Ok(true);
                }
            }
            false
        }
        NodeKind::Trait { trait_id, test } => customer::passes(
            customer::field(data.profile()?, *trait_id).map(ValueView::of),
            test,
        ),
        NodeKind::Event(e) => data.tally(e)?.satisfies(&e.frequency),
        NodeKind::Audience { inner, .. } => holds(inner, child(0), data)?,
    })
}

/// The days of a window: the whole ones, and the (at most two) it cuts with the part of the day
/// it keeps, as inclusive milliseconds of that day.
#[derive(Debug)]
struct WindowDays {
    whole: Option<(u32, u32)>,
    edges: Vec<(u32, i64, i64)>,
}

impl WindowDays {
    fn of(from: Timestamp, to: Timestamp) -> Option<WindowDays> {
        let from = from.max(0);
        let to = to.min(MAX_TIMESTAMP - 1);
        if from > to {
            return None;
        }
        let (first, last) = (day_of(from), day_of(to));
        let whole_first = first + u32::from(day_start(first) != from);
        let whole_last = last.checked_sub(u32::from(day_start(last) + DAY_MS - 1 != to));
        let whole = whole_last
            .filter(|&wl| whole_first <= wl)
            .map(|wl| (whole_first, wl));
        let mut edges = Vec::new();
        for d in [first, last] {
            let is_whole = whole.is_some_and(|(a, b)| a <= d && d <= b);
            if !is_whole && edges.iter().all(|(e, _, _)| *e != d) {
                let start = day_start(d);
                edges.push((
                    d,
                    from.max(start) - start,
                    to.min(start + DAY_MS - 1) - start,
                ));
            }
        }
        Some(WindowDays { whole, edges })
    }
}

/// Where a customer's events of one cut day lie against the window's part of that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    In = 1,
    Out = 2,
    Both = 4,
}

fn side(first: u16, last: u16, a: i64, b: i64) -> Side {
    let lo = i64::from(first) * SPAN_UNIT_MS;
    let hi = i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1;
    if lo >= a && hi <= b {
        Side::In
    } else if hi < a || lo > b {
        Side::Out
    } else {
        Side::Both
    }
}

/// Adds `cust`, cheaply when it is the largest so far (as the ranges go in order).
fn append(bm: &mut RoaringBitmap, cust: u32) {
    if bm.try_push(cust).is_err() {
        bm.insert(cust);
    }
}

/// What the rollups say of one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Pass,
    Fail,
    Gap,
}

/// `count OP n` for a count known to lie in `lo..=hi`.
fn decide_count(op: crate::rules::CmpOp, n: u64, lo: u64, hi: u64) -> Decision {
    let (at_lo, at_hi) = (compare_u64(lo, op, n), compare_u64(hi, op, n));
    let outside = n < lo || n > hi;
    match op {
        _ if lo == hi && at_lo => Decision::Pass,
        _ if lo == hi => Decision::Fail,
        CmpOp::Eq if outside => Decision::Fail,
        CmpOp::Ne if outside => Decision::Pass,
        CmpOp::Eq | CmpOp::Ne => Decision::Gap,
        // The orderings are monotone in the count: both ends agree, or it is undecided.
        _ if at_lo && at_hi => Decision::Pass,
        _ if !at_lo && !at_hi => Decision::Fail,
        _ => Decision::Gap,
    }
}

/// One customer's numbers in a window, summed from the rollups.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    n: u32,
    sum: f64,
    min: f64,
    max: f64,
    /// Some numbers on a cut day may or may not be inside the window.
    unsure: bool,
}

/// `FUNC(prop) OP value` from a customer's summed figures (with at least one number, or unsure).
fn decide_aggregate(func: AggregateFn, op: crate::rules::CmpOp, v: f64, a: &Acc) -> Decision {
    if a.unsure {
        return Decision::Gap;
    }
    let pass = |x: f64| {
        if compare_f64(x, op, v) {
            Decision::Pass
        } else {
            Decision::Fail
        }
    };
    // Within `margin` of the exact check's figure: undecided if the threshold is that close.
    let near = |x: f64, margin: f64| {
        if !x.is_finite() || !margin.is_finite() || (x - v).abs() <= margin {
            Decision::Gap
        } else {
            pass(x)
        }
    };
    let margin = sum_margin(a.n, a.min, a.max);
    match func {
        AggregateFn::Sum => near(a.sum, margin),
        AggregateFn::Avg => {
            let avg = a.sum / f64::from(a.n);
            near(
                avg,
                margin / f64::from(a.n) + 8.0 * f64::EPSILON * avg.abs(),
            )
        }
        // Minimum and maximum are exact whatever the order.
        AggregateFn::Min if !a.min.is_nan() => pass(a.min),
        AggregateFn::Max if !a.max.is_nan() => pass(a.max),
        AggregateFn::Min | AggregateFn::Max => Decision::Gap,
    }
}

/// 2⁵³: integers of smaller magnitude are exact as `f64`, so ordering them as integers (as
/// [`customer::order`] does against an integer literal) and as `f64` (as the rollups hold them)
/// agree.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A property test that only numbers can pass, against numeric literals: an ordering (`<`,
/// `<=`, `>`, `>=`) or `between`. Strings, booleans, instants, lists and a missing property never
/// order against a number (rules.md), so an event passes it exactly when its property is a number
/// that passes: the numbers the rollups hold. Decided on `f64` exactly as [`customer::order`]
/// decides on the stored value when the literal is below 2⁵³ in magnitude: an integer beyond
/// that is rounded in the rollups, but rounding is monotone and such a literal is exact, so the
/// rounded number orders against it as the integer does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NumTest {
    Cmp(CmpOp, f64),
    /// Both ends included.
    Range(f64, f64),
}

impl NumTest {
    /// The test, when it is one of those; `None` for any other test or literal.
    pub fn of(test: &ValueTest) -> Option<NumTest> {
        fn num(lit: &Lit) -> Option<f64> {
            if lit.is_str {
                return None;
            }
            let x = lit.num?;
            // Strictly below 2⁵³: an integer literal then equals its `f64` exactly.
            let exact = x.abs() < EXACT_INT && lit.int.is_none_or(|j| j as f64 == x);
            exact.then_some(x)
        }
        match test {
            ValueTest::Compare {
                op: op @ (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge),
                lit,
            } => Some(NumTest::Cmp(*op, num(lit)?)),
            ValueTest::Between { low, high } => Some(NumTest::Range(num(low)?, num(high)?)),
            _ => None,
        }
    }

    /// Whether the number `x` passes.
    #[inline]
    pub fn passes(self, x: f64) -> bool {
        match self {
            NumTest::Cmp(op, v) => compare_f64(x, op, v),
            NumTest::Range(lo, hi) => lo <= x && x <= hi,
        }
    }

    /// How many of the numbers a day's figures stand for pass, at least and at most. The minimum
    /// and the maximum are two of the numbers (one when there is one): each passes or not; both
    /// passing means all do (the test passes an interval); for an ordering, neither passing
    /// means none does. Figures with a NaN among their numbers (then their sum is NaN; the
    /// minimum and maximum skip it) decide nothing.
    #[inline]
    pub fn matching(self, d: &DayNumbers) -> (u32, u32) {
        if !trusted(d) {
            return (0, d.n);
        }
        match (self.passes(d.min), self.passes(d.max)) {
            (true, true) => (d.n, d.n),
            (true, false) | (false, true) if d.n >= 2 => (1, d.n - 1),
            (true, false) | (false, true) => (0, d.n),
            (false, false) => match self {
                NumTest::Cmp(..) => (0, 0),
                NumTest::Range(lo, hi) if d.max < lo || d.min > hi => (0, 0),
                NumTest::Range(..) => (0, d.n.saturating_sub(2)),
            },
        }
    }
}

/// Who has an event in the window whose property's numbers pass `t`: bounds from the numeric
/// rollups. Whole days are decided by each day's figures ([`NumTest::matching`]); on a day the
/// window cuts, the figures count for a customer whose events of the kind that day (by the count
/// rollup's span) lie wholly inside the window's part, not at all when wholly outside, and leave
/// the customer undecided otherwise (if any of their numbers may pass).
fn numeric_presence(
    ei: &EventIndex,
    figures: Option<&DayFigures>,
    t: NumTest,
    win: &WindowDays,
) -> Bounds {
    let Some(figures) = figures else {
        // The property never held a number: no event passes.
        return Bounds::exact(RoaringBitmap::new());
    };
    let whole: Vec<&DayList<DayNumbers>> = match win.whole {
        Some((a, b)) => figures.range(a..=b).map(|(_, l)| l).collect(),
        None => Vec::new(),
    };
    // Per day: who surely has a passing number, and who may. An ordering needs only the
    // maximum (`>`, `>=`) or the minimum (`<`, `<=`), a number of the day (a NaN, which passes
    // nothing, is skipped by both): a loop of its own for each.
    let found = |passes: bool| if passes { Found::Sure } else { Found::No };
    let mut parts: Vec<(RoaringBitmap, RoaringBitmap)> = whole
        .par_iter()
        .map(|list| match t {
            NumTest::Cmp(CmpOp::Ge, v) => split_day(list, |d| found(d.max >= v)),
            NumTest::Cmp(CmpOp::Gt, v) => split_day(list, |d| found(d.max > v)),
            NumTest::Cmp(CmpOp::Le, v) => split_day(list, |d| found(d.min <= v)),
            NumTest::Cmp(CmpOp::Lt, v) => split_day(list, |d| found(d.min < v)),
            _ => split_day(list, |d| match t.matching(d) {
                (lo, _) if lo > 0 => Found::Sure,
                (_, hi) if hi > 0 => Found::Maybe,
                _ => Found::No,
            }),
        })
        .collect();
    for &(d, a, b) in &win.edges {
        let Some(list) = figures.get(&d) else {
            continue;
        };
        let sides = day_sides(ei, d, a, b);
        let (mut sure, mut maybe) = (RoaringBitmap::new(), RoaringBitmap::new());
        list.for_each(|x| {
            let (lo, hi) = t.matching(x);
            match sides.get(&x.cust).copied() {
                _ if hi == 0 => {}
                Some(s) if s == Side::Out as u8 => {}
                Some(s) if s == Side::In as u8 && lo > 0 => {
                    sure.insert(x.cust);
                }
                _ => {
                    maybe.insert(x.cust);
                }
            }
        });
        parts.push((sure, maybe));
    }
    let sure: RoaringBitmap = parts.iter().map(|p| &p.0).union();
    let maybe = parts.iter().map(|p| &p.1).union() | &sure;
    Bounds::range(sure, maybe)
}

/// Whether a customer of a day's figures has a passing number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Sure,
    Maybe,
    No,
}

/// Whether a day's figures decide a count (see [`NumTest::matching`]): no NaN among the numbers.
#[inline]
fn trusted(d: &DayNumbers) -> bool {
    !d.sum.is_nan()
}

/// Who of one day's figures surely has a passing number, and who only may.
#[inline]
fn split_day(
    list: &DayList<DayNumbers>,
    found: impl Fn(&DayNumbers) -> Found,
) -> (RoaringBitmap, RoaringBitmap) {
    let (head, tail) = list.parts();
    let (mut sure, mut maybe) = (Vec::new(), Vec::new());
    for x in head {
        match found(x) {
            Found::Sure => sure.push(x.cust),
            Found::Maybe => maybe.push(x.cust),
            Found::No => {}
        }
    }
    let (mut sure, mut maybe) = (sorted_bitmap(&sure), sorted_bitmap(&maybe));
    for x in tail {
        match found(x) {
            Found::Sure => sure.insert(x.cust),
            Found::Maybe => maybe.insert(x.cust),
            Found::No => false,
        };
    }
    (sure, maybe)
}

/// A bitmap of strictly increasing ids.
fn sorted_bitmap(ids: &[u32]) -> RoaringBitmap {
    RoaringBitmap::from_sorted_iter(ids.iter().copied())
        .unwrap_or_else(|_| ids.iter().copied().collect())
}

/// Where each customer's events of the kind on a cut day lie against the window's part of it
/// (`a..=b` ms of the day): the [`Side`]s of their partial figures or-ed together, so only a
/// value of exactly `Side::In` or `Side::Out` decides.
fn day_sides(ei: &EventIndex, d: u32, a: i64, b: i64) -> FastMap<u32, u8> {
    let mut sides = FastMap::default();
    if let Some(counts) = ei.counts.get(&d) {
        sides.reserve(counts.len());
        counts.for_each(|x| {
            *sides.entry(x.cust).or_insert(0) |= side(x.first, x.last, a, b) as u8;
        });
    }
    sides
}

/// Sums, for the customers `lo..hi`, how many of their events in the window have a number of
/// the property passing `t`, and calls `f(customer, known, unsure)` for each with any that may:
/// at least `known`, and at most `unsure` more (see [`NumTest::matching`]; a cut day counts as
/// in [`numeric_presence`]).
#[allow(clippy::too_many_arguments)]
fn numeric_count_range(
    ei: &EventIndex,
    figures: Option<&DayFigures>,
    t: NumTest,
    win: &WindowDays,
    lo: u32,
    hi: u32,
    f: impl FnMut(u32, u64, u64),
) {
    let Some(figures) = figures else {
        return;
    };
    let len = (hi - lo) as usize;
    let mut known = vec![0u32; len];
    let mut unsure = vec![0u32; len];
    let mut flags = vec![0u8; len];
    if let Some((a, b)) = win.whole {
        for (_, list) in figures.range(a..=b) {
            list.for_each_in(lo, hi, |x| {
                let i = (x.cust - lo) as usize;
                let (l, h) = t.matching(x);
                known[i] = known[i].saturating_add(l);
                unsure[i] = unsure[i].saturating_add(h - l);
            });
        }
    }
    for &(d, a, b) in &win.edges {
        let Some(list) = figures.get(&d) else {
            continue;
        };
        // Without spans (never so: numbers come with counts), every number is undecided.
        let counts = ei.counts.get(&d);
        if let Some(counts) = counts {
            counts.for_each_in(lo, hi, |x| {
                flags[(x.cust - lo) as usize] |= side(x.first, x.last, a, b) as u8;
            });
        }
        list.for_each_in(lo, hi, |x| {
            let i = (x.cust - lo) as usize;
            let (l, h) = t.matching(x);
            match flags[i] {
                s if s == Side::Out as u8 => {}
                s if s == Side::In as u8 => {
                    known[i] = known[i].saturating_add(l);
                    unsure[i] = unsure[i].saturating_add(h - l);
                }
                _ => unsure[i] = unsure[i].saturating_add(h),
            }
        });
        if let Some(counts) = counts {
            counts.for_each_in(lo, hi, |x| flags[(x.cust - lo) as usize] = 0);
        }
    }
    emit_counts(lo, &known, &unsure, f);
}

/// One numeric property's per-day rollups, or none when it never had a number.
#[derive(Clone, Copy, Default)]
struct DayFiguresRef<'a>(Option<&'a crate::index::DayFigures>);

impl<'a> DayFiguresRef<'a> {
    fn day(&self, d: u32) -> Option<&'a DayList<crate::index::DayNumbers>> {
        self.0?.get(&d)
    }

    fn range(&self, a: u32, b: u32) -> impl Iterator<Item = &'a DayList<crate::index::DayNumbers>> {
        self.0
            .into_iter()
            .flat_map(move |m| m.range(a..=b).map(|(_, l)| l))
    }
}

/// Sums the counts of the customers `lo..hi` over a window and calls `f(customer, known, unsure)`
/// for each with a matching event or an undecided one: `known` events surely in the window, and
/// `unsure` more on cut days that may be.
fn count_range(ei: &EventIndex, win: &WindowDays, lo: u32, hi: u32, f: impl FnMut(u32, u64, u64)) {
    let len = (hi - lo) as usize;
    let mut known = vec![0u32; len];
    let mut unsure = vec![0u32; len];
    if let Some((a, b)) = win.whole {
        for (_, list) in ei.counts.range(a..=b) {
            list.for_each_in(lo, hi, |x| {
                let k = &mut known[(x.cust - lo) as usize];
                *k = k.saturating_add(x.count);
            });
        }
    }
    for &(d, a, b) in &win.edges {
        if let Some(list) = ei.counts.get(&d) {
            list.for_each_in(lo, hi, |x| {
                let i = (x.cust - lo) as usize;
                match side(x.first, x.last, a, b) {
                    Side::In => known[i] = known[i].saturating_add(x.count),
                    Side::Out => {}
                    Side::Both => unsure[i] = unsure[i].saturating_add(x.count),
                }
            });
        }
    }
    emit_counts(lo, &known, &unsure, f);
}

/// Calls `f(customer, known, unsure)` for each customer of `lo..` with a counted or undecided
/// event, from per-customer counters.
fn emit_counts(lo: u32, known: &[u32], unsure: &[u32], mut f: impl FnMut(u32, u64, u64)) {
    for (i, (&k, &u)) in known.iter().zip(unsure).enumerate() {
        if k != 0 || u != 0 {
            // A saturated counter knows only that there are at least that many.
            let saturated = k == u32::MAX || u == u32::MAX;
            let u = if saturated {
                u64::MAX / 4
            } else {
                u64::from(u)
            };
            f(lo + i as u32, u64::from(k), u);
        }
    }
}

/// Customers summed at a time in [`aggregate_range`]: their running figures (32 bytes each)
/// stay in the core's L2 cache while every day's list is walked over them.
const SLOTS: u32 = 8_192;

/// One customer's running figures while summing day lists.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    sum: f64,
    min: f64,
    max: f64,
    n: u32,
    /// The [`Side`]s of the customer's events on the cut day being summed, and `UNSURE`.
    flags: u8,
}

impl Slot {
    #[inline]
    fn add(&mut self, x: &DayNumbers) {
        if self.n == 0 {
            (self.min, self.max) = (x.min, x.max);
        } else {
            self.min = self.min.min(x.min);
            self.max = self.max.max(x.max);
        }
        self.n += x.n;
        self.sum += x.sum;
    }
}

/// Some numbers on a cut day may or may not be inside the window.
const UNSURE: u8 = 8;

/// Sums one numeric property's figures of the customers `lo..hi` over a window and calls
/// `f(customer, figures)` for each with a number in it or an undecided one, in customer order.
///
/// The customers go [`SLOTS`] at a time; each whole day's sorted list is walked with a cursor
/// that only moves forward (one binary search per list for the whole range), its recent
/// additions are sorted once, and only the slots touched are read back and cleared.
fn aggregate_range(
    ei: &EventIndex,
    figures: DayFiguresRef<'_>,
    win: &WindowDays,
    lo: u32,
    hi: u32,
    mut f: impl FnMut(u32, &Acc),
) {
    let (heads, mut tails): (Vec<&[DayNumbers]>, Vec<DayNumbers>) = match win.whole {
        Some((a, b)) => {
            let mut heads = Vec::new();
            let mut tails = Vec::new();
            for list in figures.range(a, b) {
                let (head, tail) = list.parts();
                heads.push(head);
                tails.extend(tail.iter().filter(|x| (lo..hi).contains(&x.cust)));
            }
            (heads, tails)
        }
        None => (Vec::new(), Vec::new()),
    };
    tails.sort_by_key(|x| x.cust);
    let mut cursors: Vec<usize> = heads
        .iter()
        .map(|h| h.partition_point(|x| x.cust < lo))
        .collect();
    let mut tail_at = 0;
    let mut slots = vec![Slot::default(); SLOTS.min(hi - lo) as usize];
    let mut touched = vec![0u64; slots.len().div_ceil(64)];
    let mut sub_lo = lo;
    while sub_lo < hi {
        let sub_hi = sub_lo.saturating_add(SLOTS).min(hi);
        let mut touch = |k: usize| touched[k / 64] |= 1 << (k % 64);
        for (head, at) in heads.iter().zip(cursors.iter_mut()) {
            let mut i = *at;
            while let Some(x) = head.get(i).filter(|x| x.cust < sub_hi) {
                let k = (x.cust - sub_lo) as usize;
                slots[k].add(x);
                touch(k);
                i += 1;
            }
            *at = i;
        }
        while let Some(x) = tails.get(tail_at).filter(|x| x.cust < sub_hi) {
            let k = (x.cust - sub_lo) as usize;
            slots[k].add(x);
            touch(k);
            tail_at += 1;
        }
        for &(d, a, b) in &win.edges {
            let (Some(counts), Some(list)) = (ei.counts.get(&d), figures.day(d)) else {
                continue;
            };
            // Where each customer's events of the day lie, then their numbers if all inside.
            counts.for_each_in(sub_lo, sub_hi, |x| {
                let k = (x.cust - sub_lo) as usize;
                slots[k].flags |= side(x.first, x.last, a, b) as u8;
                touch(k);
            });
            list.for_each_in(sub_lo, sub_hi, |x| {
                let k = (x.cust - sub_lo) as usize;
                let slot = &mut slots[k];
                match slot.flags & !UNSURE {
                    s if s == Side::In as u8 => slot.add(x),
                    s if s == Side::Out as u8 => {}
                    _ => slot.flags |= UNSURE,
                }
            });
            counts.for_each_in(sub_lo, sub_hi, |x| {
                slots[(x.cust - sub_lo) as usize].flags &= UNSURE;
            });
        }
        for (w, word) in touched.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let k = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let slot = std::mem::take(&mut slots[k]);
                let unsure = slot.flags & UNSURE != 0;
                if slot.n != 0 || unsure {
                    let acc = Acc {
                        n: slot.n,
                        sum: slot.sum,
                        min: slot.min,
                        max: slot.max,
                        unsure,
                    };
                    f(sub_lo + k as u32, &acc);
                }
            }
        }
        sub_lo = sub_hi;
    }
}
