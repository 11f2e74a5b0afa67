//! Running a plan: bounds from the bitmaps first, then exact checks on the customers in between.
//!
//! Every plan node gets two sets of customers, `sure ⊆ maybe`: whoever is in `sure` satisfies the
//! node, whoever is outside `maybe` does not. Trait equality, `is set`, trait orderings (from the
//! range index, `super::ranges`) and event presence on the whole days inside a window are exact
//! (`sure == maybe`). Counts and aggregates of an event
//! without a filter come from the per-day rollups (`rollups.rs`): summed per customer over the
//! window's whole days (runs of 8, 64 and 256 days merged on first use, `crate::index::runs`),
//! with a cut day counted only for customers whose events that day lie all inside or all outside
//! the window, and sums within rounding distance of the threshold left undecided. A filter that is one ordering or `between` of a numeric literal on
//! a property with numeric rollups (`where amount >= 100`, with or without a count) is answered
//! from each day's minimum and maximum ([`NumTest`]): on a whole day, the maximum passing `>=`
//! proves a passing event and the maximum failing it proves none; counts get a lower and an upper
//! bound. Ranges, other filters the indexes do not cover and the partial days at a window's edges
//! leave a gap. `contains` is answered from the string keys of value bitmaps or from text
//! columns (`super::texts`); filters of several conditions or a `not`, and counts of events
//! passing a filter the rollups do not answer, exactly from the event columns
//! (`super::columns`, as are cut days of presence without a filter, except one whose spans
//! leave few customers undecided the first time it is asked for; without the columns, on
//! the first answer that wants them or when the store cannot be read, day by day from bitmaps,
//! `super::days`). The
//! answer is
//! `sure` of the root plus the customers of its gap that pass the exact check of `customer`,
//! which runs in parallel and, node by node, again trusts the bounds wherever they decide.
//!
//! This module reads the indexes (under the caller's read guard) and customers' stored data; it
//! never writes.

use std::time::Instant;

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;
use crate::index::derived::DerivedStore;
use crate::index::rollup::{DayCount, DayList};
use crate::index::{DayBitmaps, EventIndex, IndexValue, Indexes, TraitIndex, ValueDays, ValueRef};
use crate::model::bucket::{bucket, BUCKETS};
use crate::model::time::Timestamp;
use crate::model::value::ValueType;
use crate::model::FastMap;
use crate::rules::{AggregateFn, CmpOp};
use crate::storage::view::{BlockSpan, ValueView};
use crate::storage::{Catalog, IdMap, Store};

pub(crate) use super::bounds::Bounds;
use super::customer;
use super::kept::Kept;
use super::plan::{
    compare_f64, compare_u64, EventNode, Filter, Frequency, Lit, Node, NodeKind, Plan, SeqNode,
    ValueTest,
};
use super::rollups::{
    aggregate_range, count_range, cut_day_sides, decide_aggregate, decide_count,
    numeric_count_range, numeric_presence, side, whole_pieces, DayFiguresRef, Decision, NumTest,
    Side, WindowDays,
};

/// From how many customers left to decide a sequence (or the journeys of a funnel) is decided
/// from the event columns, once built, rather than by reading each customer's events (the tests
/// lower it to reach the columns with a handful of customers:
/// `crate::testing::journeys_by_columns_from`).
pub(crate) static JOURNEYS_BY_COLUMNS_FROM: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(256);

/// See [`JOURNEYS_BY_COLUMNS_FROM`].
pub(crate) fn journeys_by_columns_from() -> u64 {
    JOURNEYS_BY_COLUMNS_FROM.load(std::sync::atomic::Ordering::Relaxed)
}

/// Value types the equality indexes hold (lists by their elements).
const INDEXED: u8 = ValueType::Str.bit() | ValueType::Int.bit() | ValueType::Bool.bit();

/// What bounds are computed from.
pub(crate) struct Sources<'a> {
    pub indexes: &'a Indexes,
    pub catalog: &'a Catalog,
    /// Read to build the text columns of `contains` on properties without value bitmaps.
    pub store: &'a Store,
    /// Every customer's external id, to build the buckets of `bucket(NAME)` (`None`: each
    /// candidate's id is read and hashed in the exact check).
    pub ids: Option<&'a IdMap>,
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
            NodeKind::Sequence(s) => self.sequence_bounds(s),
            NodeKind::FirstLast(fl) => {
                let inside = self.event_bounds(&fl.inside);
                let outside = self.event_bounds(&fl.outside);
                Bounds::range(&inside.sure - &outside.maybe, &inside.maybe - &outside.sure)
                    .with_child(inside)
                    .with_child(outside)
            }
            // Exact from the split's kept buckets where the id map is at hand; otherwise decided
            // here only when the test accepts every bucket or none, each candidate's id being
            // hashed in the exact check.
            NodeKind::Bucket(b) => match (b.buckets().count(), self.ids) {
                (0, _) => Bounds::exact(RoaringBitmap::new()),
                (n, _) if n == usize::from(BUCKETS) => Bounds::exact(self.all().clone()),
                (_, Some(ids)) => {
                    let split = self.indexes.bucket_splits().split(
                        &Kept(self.store),
                        self.all(),
                        &b.name,
                        ids.bound(),
                        |id| ids.external(id),
                    );
                    let sure = &*split.accepted(|x| b.accepts(x)) & self.all();
                    // Ids the map did not hold yet (if any) are checked one by one.
                    match self.all().max() {
                        Some(top) if top >= split.hashed => {
                            let mut unhashed = self.all().clone();
                            unhashed.remove_range(..split.hashed);
                            let maybe = &sure | &unhashed;
                            Bounds::range(sure, maybe)
                        }
                        _ => Bounds::exact(sure),
                    }
                }
                (_, None) => Bounds::range(RoaringBitmap::new(), self.all().clone()),
            },
            NodeKind::Audience { inner, .. } => {
                let child = self.bounds(inner);
                Bounds::range(child.sure.clone(), child.maybe.clone()).with_child(child)
            }
            NodeKind::List { members, .. } => Bounds::exact(&**members & self.all()),
            NodeKind::Computed(c) => match (&c.expanded, c.table.as_ref().and_then(|t| t.get())) {
                (Some(x), _) => {
                    let child = self.bounds(x);
                    Bounds::range(child.sure.clone(), child.maybe.clone()).with_child(child)
                }
                // Every customer's value already computed (`rfm(p)`, and the model reducers
                // from their kept histories): exact. An ordering on numbers is answered by the
                // table's range index, any other test by each value.
                (None, Some(table)) => {
                    let ordered = match (&table.order, &table.ranges) {
                        (Some(o), _) => super::ranges::passing_in_order(o, &c.test),
                        (None, Some(r)) => super::ranges::passing(r, &c.test),
                        (None, None) => None,
                    };
                    let mut pass = match ordered {
                        Some(pass) => pass,
                        None => RoaringBitmap::from_sorted_iter(
                            table
                                .values
                                .iter()
                                .filter(|(_, v)| customer::passes(Some(ValueView::of(v)), &c.test))
                                .map(|v| v.0),
                        )
                        .unwrap_or_default(),
                    };
                    if customer::passes(None, &c.test) {
                        pass |= self.all() - &table.valued;
                    }
                    Bounds::exact(pass)
                }
                // Derived for each candidate: who has no matching event has the value of none.
                (None, None) => {
                    let any = self.event_bounds(&c.events);
                    let none = c.reducer.value_for_none();
                    if customer::passes(none.as_ref().map(ValueView::of), &c.test) {
                        Bounds::range(self.all() - &any.maybe, self.all().clone())
                    } else {
                        Bounds::range(RoaringBitmap::new(), any.maybe.clone())
                    }
                }
            },
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
            // Orderings on a trait whose values are all keyed in value bitmaps (a few distinct
            // integers, strings, booleans): the union of the integer values that pass, exactly;
            // cheaper than the slices when there are few.
            (
                ValueTest::Compare {
                    op: CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge,
                    ..
                }
                | ValueTest::Between { .. },
                Some(ti),
            ) if scalars_keyed => Bounds::exact(
                ti.values
                    .iter()
                    .filter(|(k, _)| orders_and_passes(k, test))
                    .map(|(_, b)| b)
                    .union(),
            ),
            // Other orderings come from the range index, exactly, whatever the values.
            (
                ValueTest::Compare {
                    op: CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge,
                    ..
                }
                | ValueTest::Between { .. },
                _,
            ) => Bounds::exact(
                ti.and_then(|ti| super::ranges::passing(&ti.ranges, test))
                    .unwrap_or_default(),
            ),
            (ValueTest::IsSet { negated: false }, _) => Bounds::exact(set.clone()),
            (ValueTest::IsSet { negated: true }, _) => Bounds::exact(self.all() - set),
            // Without value bitmaps, a substring is answered from the trait's column of
            // strings (a list passes when an element equals the literal: those stay unsure).
            (ValueTest::Contains(lit), None) => {
                let found = match lit.text.as_deref() {
                    None => Ok(RoaringBitmap::new()),
                    Some(text) => {
                        super::texts::trait_containing(self.store, self.indexes, t, set, text)
                    }
                };
                match found {
                    Ok(found) if types & ValueType::List.bit() == 0 => Bounds::exact(found),
                    Ok(found) => Bounds::range(found, set.clone()),
                    Err(_) => Bounds::range(RoaringBitmap::new(), set.clone()),
                }
            }
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
                // A list passes when an element equals the literal, a string when it holds the
                // literal's text; no other scalar ever passes. Every string value is a key:
                // scanning the keys answers strings exactly. Lists are exact only when the index
                // keys can equal all their elements that may pass (float or date-time elements
                // are not keyed).
                let mut sure = lookup(&ti.elements, &[lit]).into_iter().union();
                if let Some(text) = lit.text.as_deref() {
                    sure |= containing(&ti.values, text).union();
                }
                let lists = types & ValueType::List.bit() != 0;
                let exact = !lists || (lit.is_str || lit.boolean.is_some()) && lit.time.is_none();
                bounded(sure, exact)
            }
        }
    }

    /// A sequence's candidates: who may have the first step's event in its range and, for
    /// `then B`, every later step's event in its own; only the exact check decides them. `then
    /// not B`: whoever surely has the first step's event and surely no B in its range at all
    /// surely passes.
    fn sequence_bounds(&self, s: &SeqNode) -> Bounds {
        let b = self.sequence_bitmap_bounds(s);
        let undecided = b.maybe.len() - b.sure.len();
        if undecided < journeys_by_columns_from() {
            return b;
        }
        // Many to decide: the event columns, where built, decide them all at once.
        let undecided = &b.maybe - &b.sure;
        match super::columns::sequence_members(self.store, self.indexes, s, &undecided) {
            Ok(Some(members)) => Bounds::exact((members | &b.sure) & self.all()).with_child(b),
            _ => b,
        }
    }

    /// A sequence's bounds from the bitmaps alone.
    fn sequence_bitmap_bounds(&self, s: &SeqNode) -> Bounds {
        let first = self.event_bounds(&s.steps[0]);
        if s.negated {
            let second = self.event_bounds(&s.steps[1]);
            let sure = &first.sure - &second.maybe;
            return Bounds::range(sure, first.maybe.clone())
                .with_child(first)
                .with_child(second);
        }
        let mut maybe = first.maybe.clone();
        let mut children = vec![first];
        for step in &s.steps[1..] {
            if maybe.is_empty() {
                break;
            }
            let b = self.event_bounds(step);
            maybe &= &b.maybe;
            children.push(b);
        }
        Bounds {
            children,
            ..Bounds::range(RoaringBitmap::new(), maybe)
        }
    }

    fn event_bounds(&self, e: &EventNode) -> Bounds {
        let all = self.all();
        let f = &e.frequency;
        if f.holds_for_any_presence() && !f.holds_for_none() {
            return self.presence(e, true);
        }
        if let Some(b) = self.text_count_bounds(e) {
            return b;
        }
        if !f.holds_for_any_presence() {
            if let Some(b) = self.part_day_count_bounds(e) {
                return b;
            }
            if let Some(b) = self.rollup_bounds(e) {
                return b;
            }
            if let Some(b) = self.column_count_bounds(e) {
                return b;
            }
            if let Some(b) = self.column_aggregate_bounds(e) {
                return b;
            }
        }
        // Counts reach here when the event columns could not answer them: presence does without
        // them too (asking again would build them within the same answer).
        let presence = self.presence(e, false);
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

    /// A count without a filter in a window of no whole day (`viewed at least 3 times in last 12
    /// hours`): exact, each customer's events counted from the times of the event columns of the
    /// one or two days the window cuts. The rollups' two-second spans leave most such customers
    /// undecided, and each would be read. `None` for any other count, a window with a whole day
    /// (the rollups answer those days), or while the columns are not to be built yet.
    fn part_day_count_bounds(&self, e: &EventNode) -> Option<Bounds> {
        let (Some(event), None, Frequency::Count { op, n }) = (e.event, &e.filter, e.frequency)
        else {
            return None;
        };
        if e.window_is_empty() {
            return None;
        }
        let win = WindowDays::of(e.from, e.to)?;
        if win.whole.is_some() || win.edges.is_empty() {
            return None;
        }
        let ei = self.indexes.event_index(event)?;
        let every = Filter::And(Vec::new());
        let counts =
            super::columns::counts(self.store, (event, ei), &every, e.from, e.to).ok()??;
        Some(Bounds::exact(self.count_members(&counts, op, n)))
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
        // Without a filter, over whole days: from the kept totals, where they serve.
        if num_filter.is_none() {
            if let Some(b) = super::totals::bounds(self, event, ei, f, &win) {
                return Some(b);
            }
        }
        let all = self.all();
        let ids = all.max().map_or(0, |m| m + 1);
        let empty = DayFiguresRef::default();
        let numbers = match f {
            Frequency::Count { .. } => None,
            Frequency::Aggregate { prop: Some(p), .. } if self.indexes.prop_rolled_up(event, p) => {
                Some(ei.numbers.get(&p).map_or(empty, |d| DayFiguresRef(Some(d))))
            }
            Frequency::Aggregate { .. } | Frequency::Distinct { .. } => return None,
        };
        // The whole days' lists of a count or an aggregate, with runs of days merged; built once
        // here, before the customers are split between tasks.
        let kept = Kept(self.store);
        let (count_pieces, number_pieces) = match f {
            Frequency::Count { .. } if num_filter.is_none() => (
                whole_pieces((&kept, event), &ei.count_runs, 0, &ei.counts, &win),
                Vec::new(),
            ),
            Frequency::Aggregate { prop: Some(p), .. } => {
                let pieces = numbers
                    .and_then(|n| n.0)
                    .map(|days| whole_pieces((&kept, event), &ei.number_runs, p, days, &win));
                (Vec::new(), pieces.unwrap_or_default())
            }
            _ => (Vec::new(), Vec::new()),
        };
        let none_holds = f.holds_for_none();
        let ranges = id_ranges(ids);
        // Per range: who surely passes (or, when having no matching event passes, who surely
        // fails) among the customers with figures, and who is undecided.
        let parts: Vec<(RoaringBitmap, RoaringBitmap)> = ranges
            .into_par_iter()
            .map(|(lo, hi)| {
                let mut decided = RoaringBitmap::new();
                let mut gap = RoaringBitmap::new();
                let mut put = |cust: u32, d: Decision| match d {
                    Decision::Gap => {
                        gap.insert(cust);
                    }
                    Decision::Pass if !none_holds => {
                        decided.insert(cust);
                    }
                    Decision::Fail if none_holds => {
                        decided.insert(cust);
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
                        count_range(ei, &count_pieces, &win, lo, hi, |cust, known, unsure| {
                            put(cust, decide_count(op, n, known, known + unsure))
                        })
                    }
                    (
                        Frequency::Aggregate {
                            func, op, value, ..
                        },
                        Some(figures),
                    ) => aggregate_range(ei, figures, &number_pieces, &win, lo, hi, |cust, acc| {
                        put(cust, decide_aggregate(func, op, value, acc))
                    }),
                    _ => {}
                }
                (decided, gap)
            })
            .collect();
        let decided: RoaringBitmap = parts.iter().map(|p| &p.0).union();
        let gap: RoaringBitmap = parts.iter().map(|p| &p.1).union();
        Some(Bounds::from_decided(all, decided, &gap, none_holds))
    }

    /// A count of events whose property, without value bitmaps and never a list, contains a
    /// text (`searched where query contains boots at least 2 times`): exact, from the per-day
    /// text columns' counts. `None` for any other condition.
    fn text_count_bounds(&self, e: &EventNode) -> Option<Bounds> {
        let (Some(event), Some(filter), Frequency::Count { op, n }) =
            (e.event, &e.filter, e.frequency)
        else {
            return None;
        };
        let Filter::Cond {
            prop: Some(p),
            test: ValueTest::Contains(lit),
        } = filter
        else {
            return None;
        };
        if self.indexes.prop_values_indexed(event, *p) || self.has_lists(event, *p) {
            return None;
        }
        let ei = self.indexes.event_index(event)?;
        let counts = match lit.text.as_deref() {
            Some(text) if !e.window_is_empty() => {
                super::texts::count_containing(self.store, (event, ei), *p, text, e.from, e.to)
                    .ok()?
            }
            _ => FastMap::default(),
        };
        Some(Bounds::exact(self.count_members(&counts, op, n)))
    }

    /// The customers whose count compares with `n` by `op`: those counted, and everyone else
    /// when a count of zero does.
    fn count_members(&self, counts: &FastMap<u32, u64>, op: CmpOp, n: u64) -> RoaringBitmap {
        let mut members: RoaringBitmap = counts
            .iter()
            .filter(|(_, &c)| compare_u64(c, op, n))
            .map(|(&cust, _)| cust)
            .collect();
        if compare_u64(0, op, n) {
            let counted: RoaringBitmap = counts.keys().copied().collect();
            members |= self.all() - counted;
        }
        members
    }

    /// Exact from the event columns (`super::columns`): a count of events passing a filter that
    /// neither the rollups nor the text columns answer (`purchased where (category = toys or
    /// amount < 20) at least 2 times`), and `distinct(p)` of the matching events (each day's
    /// values mapped to shared ids once, then the distinct (customer, value) pairs in the
    /// window). `None` for a count without a filter, for aggregates, for a property no event
    /// ever had, while the columns are not to be built yet, and when the store cannot be read
    /// (the exact check then reports the error).
    fn column_count_bounds(&self, e: &EventNode) -> Option<Bounds> {
        let event = e.event?;
        let (op, n) = match (e.frequency, &e.filter) {
            (Frequency::Count { op, n }, Some(_)) => (op, n),
            (
                Frequency::Distinct {
                    prop: Some(_),
                    op,
                    n,
                },
                _,
            ) => (op, n),
            _ => return None,
        };
        let ei = self.indexes.event_index(event)?;
        if e.window_is_empty() {
            return Some(Bounds::exact(self.count_members(
                &FastMap::default(),
                op,
                n,
            )));
        }
        let counts = match (e.frequency, &e.filter) {
            (Frequency::Distinct { prop: Some(p), .. }, filter) => super::columns::distinct_counts(
                self.store,
                (event, ei),
                filter.as_ref(),
                p,
                e.from,
                e.to,
            ),
            (_, Some(filter)) => {
                super::columns::counts(self.store, (event, ei), filter, e.from, e.to)
            }
            _ => return None,
        }
        .ok()??;
        Some(Bounds::exact(self.count_members(&counts, op, n)))
    }

    /// An aggregate of the events passing a filter (`purchased where category = shoes
    /// sum(amount) > 100 in last 30 days`) from the event columns: each customer's numbers
    /// summed day by day; a sum or a mean so close to the threshold that the order of the
    /// additions could decide it ([`decide_aggregate`]'s margin) is left to the exact check.
    /// `None` for an aggregate without a filter (the rollups answer those), any other condition,
    /// and while the columns are not to be built yet.
    fn column_aggregate_bounds(&self, e: &EventNode) -> Option<Bounds> {
        let (
            Some(event),
            Some(filter),
            Frequency::Aggregate {
                func,
                prop: Some(p),
                op,
                value,
            },
        ) = (e.event, &e.filter, e.frequency)
        else {
            return None;
        };
        if e.window_is_empty() {
            return None;
        }
        let ei = self.indexes.event_index(event)?;
        let figures =
            super::columns::aggregates(self.store, (event, ei), filter, p, e.from, e.to).ok()??;
        // A customer with passing events but no number has a sum of 0 and no other aggregate,
        // as one with no passing event.
        let none_passes = matches!(func, AggregateFn::Sum) && compare_f64(0.0, op, value);
        let (mut sure, mut gap, mut numbered) = (
            RoaringBitmap::new(),
            RoaringBitmap::new(),
            RoaringBitmap::new(),
        );
        for (&cust, acc) in &figures {
            if acc.numbers() == 0 {
                continue;
            }
            numbered.insert(cust);
            match decide_aggregate(func, op, value, &acc.finished()) {
                Decision::Pass => {
                    sure.insert(cust);
                }
                Decision::Gap => {
                    gap.insert(cust);
                }
                Decision::Fail => {}
            }
        }
        if none_passes {
            sure |= self.all() - &numbered;
        }
        let maybe = &sure | &gap;
        Some(Bounds::range(sure, maybe))
    }

    /// The test and property of a filter that the numeric rollups answer: one ordering or
    /// `between` of a numeric literal on a property with rollups (see [`NumTest`]).
    pub(super) fn numeric_filter(&self, event: u32, f: &Filter) -> Option<(NumTest, u32)> {
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
                    [k] => ei.props.get(p)?.get(k).map(|vd| vd.days()),
                    _ => None,
                }
            }
            Some(_) => None,
        }
    }

    /// Whether an event property has ever held a list.
    pub(super) fn has_lists(&self, event: u32, prop: u32) -> bool {
        self.catalog.prop_types(event, prop) & ValueType::List.bit() != 0
    }

    /// `contains` on a property without value bitmaps: exact from the text columns
    /// (`super::texts`) for string values; a list may pass too (an element equal to the
    /// literal), so with lists only the strings' customers are sure. A store that cannot be read
    /// leaves the customers to the exact check, which reports the error.
    fn contains_in_texts<'b>(
        &self,
        e: &EventNode,
        (event, ei): (u32, &EventIndex),
        prop: u32,
        lit: &Lit,
        any: &dyn Fn() -> &'b Bounds,
    ) -> Bounds {
        let lists = self.has_lists(event, prop);
        let found = match lit.text.as_deref() {
            None => Ok(RoaringBitmap::new()),
            Some(text) => {
                super::texts::containing(self.store, (event, ei), prop, text, e.from, e.to)
            }
        };
        match found {
            Ok(found) if !lists => Bounds::exact(found),
            Ok(found) => Bounds::range(found, any().maybe.clone()),
            Err(_) => Bounds::range(RoaringBitmap::new(), any().maybe.clone()),
        }
    }

    /// Whether equality on an event property is answered exactly by its value bitmaps.
    pub(super) fn prop_exact(&self, event: u32, prop: u32) -> bool {
        self.indexes.prop_values_indexed(event, prop)
            && self.catalog.prop_types(event, prop) & !INDEXED == 0
    }

    /// Who has at least one event matching the condition (name, filter, window): bounds; with
    /// `columns`, a filter of several conditions may be answered from the event columns.
    fn presence(&self, e: &EventNode, columns: bool) -> Bounds {
        let Some((event, ei)) = e
            .event
            .and_then(|id| Some((id, self.indexes.event_index(id)?)))
        else {
            return Bounds::exact(RoaringBitmap::new());
        };
        if e.window_is_empty() {
            return Bounds::exact(RoaringBitmap::new());
        }
        let Some(f) = &e.filter else {
            if columns {
                if let Some(b) = self.presence_by_columns(e, (event, ei)) {
                    return b;
                }
            }
            return presence_bounds((&Kept(self.store), event), ei, e.from, e.to);
        };
        // Several conditions, or a `not`: exact from the event columns (`super::columns`). Without
        // them (not built yet, or a store that cannot be read), the bounds below and the exact
        // check answer (and report the error).
        if columns && super::columns::compound(f) {
            let found = super::columns::passing(self.store, (event, ei), f, e.from, e.to);
            if let Ok(Some(found)) = found {
                return Bounds::exact(found);
            }
        }
        // Who has an event of the kind in the window, worked out only if a part of the filter
        // needs it: bounds from value bitmaps or numeric rollups are within it already (an
        // event with the value that day is an event of the kind that day), and for a common
        // event it is the union of a hundred-thousand-customer bitmap per day.
        let cell = std::cell::OnceCell::new();
        let kept = Kept(self.store);
        let any = || cell.get_or_init(|| presence_bounds((&kept, event), ei, e.from, e.to));
        let fb = self.filter_bounds(e, (event, ei), f, &any);
        match cell.get() {
            Some(any) => Bounds::range(fb.sure & &any.sure, fb.maybe & &any.maybe),
            None => fb,
        }
    }

    /// Who has an event of the kind in a window that cuts a day (`visited in last 2 hours`):
    /// the whole days from their bitmaps and each cut day from the times of its event columns
    /// (`super::columns`), exact; but a cut day whose columns are neither built nor stored and
    /// whose count rollups' spans leave few customers undecided (at most [`FEW_UNDECIDED`] or an
    /// eighth of the day's) gives bounds from the spans the first time it is asked for in the
    /// folder's life (`crate::index::Columns::ask_day`), the undecided read by the exact check
    /// (saving audiences with windows of many lengths so builds no columns for days it asks
    /// about once). `None` when the window cuts no day (the bitmaps are exact) or the columns
    /// are not to be built yet or cannot be.
    fn presence_by_columns(
        &self,
        e: &EventNode,
        (event, ei): (u32, &EventIndex),
    ) -> Option<Bounds> {
        let win = WindowDays::of(e.from, e.to)?;
        if win.edges.is_empty() {
            return None;
        }
        let every = Filter::And(Vec::new());
        let mut found = match win.whole {
            Some((a, b)) => {
                ei.presence_runs
                    .union((&Kept(self.store), event), &ei.days, &ei.counts, a, b)
            }
            None => RoaringBitmap::new(),
        };
        let mut unsure = RoaringBitmap::new();
        for &(d, a, b) in &win.edges {
            // A day whose spans leave few customers undecided has them read by the exact check
            // the first time, rather than every customer of the day read for its columns; but
            // columns an earlier process stored are loaded (one read, where the undecided are
            // one each).
            let list = ei.counts.get(&d);
            let built = list.is_some() && super::columns::at_hand(self.store, (event, ei), d);
            if let (Some(list), false) = (list, built) {
                let (sure, undecided) = edge_sides(list, a, b);
                if undecided.len() <= FEW_UNDECIDED.max(list.len() as u64 / 8)
                    && !ei.columns.ask_day(&Kept(self.store), event, d)
                {
                    found |= sure;
                    unsure |= undecided;
                    continue;
                }
            }
            let start = crate::model::time::day_start(d);
            let (from, to) = (start + a, start + b);
            found |= super::columns::passing(self.store, (event, ei), &every, from, to).ok()??;
        }
        unsure -= &found;
        let maybe = &found | &unsure;
        Some(Bounds::range(found, maybe))
    }

    /// Who has an event in the window passing the filter: bounds (`ei` is the event's index,
    /// `any()` who has an event in the window at all). Bounds that do not call `any` are within
    /// it.
    fn filter_bounds<'b>(
        &self,
        e: &EventNode,
        (event, ei): (u32, &EventIndex),
        f: &Filter,
        any: &dyn Fn() -> &'b Bounds,
    ) -> Bounds {
        let loose = || Bounds::range(RoaringBitmap::new(), any().maybe.clone());
        match f {
            // Two conditions may each hold on different events, and `not` of a condition on one
            // event says little of another: bounded day by day (`super::days`).
            Filter::And(_) | Filter::Not(_) => self.filter_by_days(e, (event, ei), f),
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
            Filter::Cond { prop: None, test } => match test {
                // No event ever had the property: only `is not set` passes, on every event.
                ValueTest::IsSet { negated: true } => any().clone(),
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
                        |win| numeric_presence((&Kept(self.store), event), ei, p, t, &win),
                    );
                }
                if !self.indexes.prop_values_indexed(event, *p) {
                    if let ValueTest::Contains(lit) = test {
                        return self.contains_in_texts(e, (event, ei), *p, lit, any);
                    }
                    return loose();
                }
                let Some(values) = ei.props.get(p) else {
                    return loose();
                };
                let Some(passing) = passing_values(values, test) else {
                    return loose();
                };
                let Some(win) = WindowDays::of(e.from, e.to) else {
                    return Bounds::exact(RoaringBitmap::new());
                };
                // The window's whole days: exact.
                let mut sure: RoaringBitmap = match win.whole {
                    Some((a, b)) => passing.iter().flat_map(|vd| vd.sets_in(a, b)).union(),
                    None => RoaringBitmap::new(),
                };
                let mut maybe = sure.clone();
                // On a day the window cuts, a customer whose events of this kind that day all lie
                // inside the window's part (the count rollups' span says so) has the passing
                // event inside too: sure, without reading their events; one whose events all lie
                // outside has none inside. A customer may have several partial figures that day:
                // only when every one says so.
                for &(d, a, b) in &win.edges {
                    let cut: RoaringBitmap = passing.iter().filter_map(|vd| vd.day(d)).union();
                    if cut.is_empty() {
                        continue;
                    }
                    let (inside, outside) = cut_day_sides(ei, d, a, b, &cut);
                    sure |= inside;
                    maybe |= cut - outside;
                }
                maybe |= &sure;
                // `contains` passes only strings and lists, and every string is keyed: exact
                // unless the property has held lists.
                let exact = match test {
                    ValueTest::Contains(_) => !self.has_lists(event, *p),
                    _ => self.prop_exact(event, *p),
                };
                if exact {
                    Bounds::range(sure, maybe)
                } else {
                    Bounds::range(sure, any().maybe.clone())
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

/// The value bitmaps of an indexed property whose values pass `test`: looked up for equality,
/// scanned for orderings (integers only) and substrings (strings only); `None` for tests that
/// are not a union of value bitmaps (`!=`: an event with another value, or none of the indexed
/// types, passes it).
pub(super) fn passing_values<'m>(
    values: &'m FastMap<IndexValue, ValueDays>,
    test: &ValueTest,
) -> Option<Vec<&'m ValueDays>> {
    Some(match test {
        ValueTest::Compare { op: CmpOp::Eq, lit } => lookup(values, &[lit]),
        ValueTest::In {
            negated: false,
            lits,
        } => lookup(values, &lits.iter().collect::<Vec<_>>()),
        ValueTest::Compare {
            op: CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge,
            ..
        }
        | ValueTest::Between { .. } => values
            .iter()
            .filter(|(k, _)| orders_and_passes(k, test))
            .map(|(_, vd)| vd)
            .collect(),
        // A literal without text (a boolean) is in no string.
        ValueTest::Contains(lit) => match lit.text.as_deref() {
            Some(text) => containing(values, text),
            None => Vec::new(),
        },
        _ => return None,
    })
}

/// The entries of the string keys that hold `text`.
fn containing<'m, V>(values: &'m FastMap<IndexValue, V>, text: &str) -> Vec<&'m V> {
    let finder = memchr::memmem::Finder::new(text.as_bytes());
    values
        .iter()
        .filter(|(k, _)| matches!(k, IndexValue::Str(s) if finder.find(s.as_bytes()).is_some()))
        .map(|(_, v)| v)
        .collect()
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
pub(crate) fn index_keys<'l>(lit: &'l Lit, keys: &mut Vec<ValueRef<'l>>) {
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

/// Who has an event of the kind in the window: the whole days' bitmaps, and on a day the window
/// cuts, the count rollups' spans: a customer with events of that day wholly inside the window's
/// part is in, one with all of them outside is out, and only the others are undecided.
fn presence_bounds(
    (kept, event): (&dyn DerivedStore, u32),
    ei: &EventIndex,
    from: Timestamp,
    to: Timestamp,
) -> Bounds {
    let Some(win) = WindowDays::of(from, to) else {
        return Bounds::exact(RoaringBitmap::new());
    };
    let mut sure = match win.whole {
        Some((a, b)) => ei
            .presence_runs
            .union((kept, event), &ei.days, &ei.counts, a, b),
        None => RoaringBitmap::new(),
    };
    let mut unsure = RoaringBitmap::new();
    for &(d, a, b) in &win.edges {
        let Some(list) = ei.counts.get(&d) else {
            continue;
        };
        let (s, u) = edge_sides(list, a, b);
        sure |= s;
        unsure |= u;
    }
    let maybe = &sure | &unsure;
    Bounds::range(sure, maybe)
}

/// Of the customers of a day's count list, for the part `a..=b` (milliseconds into the day) of
/// it a window holds: those whose events of the day all lie inside it (by their two-second
/// span), and those with events that may lie both inside and outside.
fn edge_sides(list: &DayList<DayCount>, a: i64, b: i64) -> (RoaringBitmap, RoaringBitmap) {
    let (mut sure, mut unsure) = (RoaringBitmap::new(), RoaringBitmap::new());
    list.for_each(|x| match side(x.first, x.last, a, b) {
        Side::In => {
            sure.insert(x.cust);
        }
        Side::Out => {}
        Side::Both => {
            unsure.insert(x.cust);
        }
    });
    (sure, unsure)
}

/// However many customers a day holds, up to this many undecided by its spans are read rather
/// than its columns built, the first time the day is asked for (`Sources::presence_by_columns`).
const FEW_UNDECIDED: u64 = 256;

/// Customers with a matching event on at least `n` distinct whole days of the window.
fn at_least_n_days(days: &DayBitmaps, e: &EventNode, n: u64) -> RoaringBitmap {
    if n == 0 || n > 366 * 200 {
        return RoaringBitmap::new();
    }
    let Some((first, last)) = WindowDays::of(e.from, e.to).and_then(|w| w.whole) else {
        return RoaringBitmap::new();
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
    let chunk = super::chunk_len(candidates.len());
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
///
/// Made with [`CustomerData::shared`], it serves many conditions per customer (the saved
/// audiences a write touches): the events are decoded once into a [`customer::Decoded`] view,
/// each event condition reads only its event's run within its window, a count stops as soon as
/// its answer is known, and an aggregate without a filter asked again (the same event, window
/// and property in another rule) is answered from the first computation.
pub(crate) struct CustomerData<'s> {
    store: &'s Store,
    events_from: Option<Timestamp>,
    pub(crate) cust: u32,
    profile: Option<Option<crate::model::Fields>>,
    events_loaded: bool,
    /// The bodies of the customer's event blocks, uncompressed, back to back.
    bodies: Vec<u8>,
    /// Each block's first timestamp and byte range in `bodies`.
    blocks: Vec<BlockSpan>,
    /// With [`CustomerData::shared`]: the loaded events decoded, once `decoded_built`.
    decoded: Option<customer::Decoded>,
    decoded_built: bool,
    /// With [`CustomerData::shared`]: this customer's aggregate tallies without a filter so far,
    /// by (event, from, to, property).
    aggregates: Vec<(AggregateKey, customer::Tally)>,
}

/// What an aggregate's tally without a filter depends on: event, window and property.
type AggregateKey = (u32, Timestamp, Timestamp, Option<u32>);

impl<'s> CustomerData<'s> {
    /// The customer loaded (its internal id).
    pub fn customer(&self) -> u32 {
        self.cust
    }

    /// The customer's bucket in the split `name`, from their external id (after a merge, the id
    /// they were merged into).
    pub fn bucket(&self, name: &str) -> Result<u8> {
        Ok(bucket(name, &self.external_id()?))
    }

    /// The customer's external id (after a merge, the id they were merged into).
    pub fn external_id(&self) -> Result<String> {
        self.store.external_id(self.cust)?.ok_or_else(|| {
            crate::error::Error::Internal(format!("customer {} has no external id", self.cust))
        })
    }

    pub fn new(store: &'s Store, events_from: Option<Timestamp>) -> Self {
        CustomerData {
            store,
            events_from,
            cust: 0,
            profile: None,
            events_loaded: false,
            bodies: Vec::new(),
            blocks: Vec::new(),
            decoded: None,
            decoded_built: false,
            aggregates: Vec::new(),
        }
    }

    /// For many conditions per customer: the events are decoded once per customer and shared
    /// by every condition (see the type's documentation).
    pub fn shared(store: &'s Store, events_from: Option<Timestamp>) -> Self {
        CustomerData {
            decoded: Some(customer::Decoded::default()),
            ..CustomerData::new(store, events_from)
        }
    }

    /// Points at another customer; nothing is read until needed.
    pub fn load(&mut self, cust: u32) {
        self.cust = cust;
        self.profile = None;
        self.events_loaded = false;
        self.bodies.clear();
        self.blocks.clear();
        self.decoded_built = false;
        if let Some(d) = &mut self.decoded {
            d.clear();
        }
        self.aggregates.clear();
    }

    /// [`CustomerData::load`], with the customer's events read from `events_from` on (what the
    /// conditions asked about this customer need; `None`: no event is read).
    pub fn load_from(&mut self, cust: u32, events_from: Option<Timestamp>) {
        self.load(cust);
        self.events_from = events_from;
    }

    /// With [`CustomerData::shared`], the customer's block bodies and their events decoded
    /// (built on first use); `None` otherwise.
    pub fn decoded(&mut self) -> Result<Option<(&[u8], &customer::Decoded)>> {
        if self.decoded.is_none() {
            return Ok(None);
        }
        self.events()?;
        let (bodies, blocks) = (&self.bodies, &self.blocks);
        let Some(decoded) = self.decoded.as_mut() else {
            return Ok(None);
        };
        if !self.decoded_built {
            decoded.build(bodies, blocks)?;
            self.decoded_built = true;
        }
        Ok(Some((&self.bodies, &*decoded)))
    }

    /// Whether the customer satisfies the event condition `e`: its tally against its frequency,
    /// from the decoded view when there is one.
    pub fn satisfies(&mut self, e: &EventNode) -> Result<bool> {
        if self.decoded.is_none() {
            return Ok(self.tally(e)?.satisfies(&e.frequency));
        }
        let key = match (e.frequency, &e.filter, e.event) {
            (Frequency::Aggregate { prop, .. }, None, Some(event)) => {
                Some((event, e.from, e.to, prop))
            }
            _ => None,
        };
        if let Some(key) = key {
            if let Some((_, t)) = self.aggregates.iter().find(|(k, _)| *k == key) {
                return Ok(t.satisfies(&e.frequency));
            }
        }
        let enough = customer::enough(&e.frequency);
        let t = match self.decoded()? {
            Some((bodies, decoded)) => customer::tally_decoded(e, bodies, decoded, enough)?,
            None => self.tally(e)?,
        };
        if let Some(key) = key {
            self.aggregates.push((key, t));
        }
        Ok(t.satisfies(&e.frequency))
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
        NodeKind::Event(e) => data.satisfies(e)?,
        NodeKind::Sequence(s) => {
            let (bodies, blocks) = data.events()?;
            let mut hits = Vec::new();
            customer::sequence_hits(s, bodies, blocks, &mut hits)?;
            customer::sequence_holds(s, &hits)
        }
        NodeKind::FirstLast(fl) => {
            event_holds(&fl.inside, child(0), data)? && !event_holds(&fl.outside, child(1), data)?
        }
        NodeKind::Bucket(b) => b.accepts(data.bucket(&b.name)?),
        NodeKind::Audience { inner, .. } => holds(inner, child(0), data)?,
        NodeKind::List { members, .. } => members.contains(data.cust),
        NodeKind::Computed(c) => match &c.expanded {
            Some(x) => holds(x, child(0), data)?,
            None => {
                let cust = data.cust;
                let (bodies, blocks) = data.events()?;
                let v = customer::computed_value(c, cust, bodies, blocks)?;
                customer::passes(v.as_ref().map(ValueView::of), &c.test)
            }
        },
    })
}

/// Whether the customer satisfies the event condition `e`, trusting its bounds where they
/// decide.
fn event_holds(e: &EventNode, b: Option<&Bounds>, data: &mut CustomerData<'_>) -> Result<bool> {
    if let Some(b) = b {
        if b.sure.contains(data.cust) {
            return Ok(true);
        }
        if !b.maybe.contains(data.cust) {
            return Ok(false);
        }
    }
    data.satisfies(e)
}

/// The customers `0..ids` split into ranges for parallel tasks: about four per thread, none
/// under 16,384 ids.
pub(super) fn id_ranges(ids: u32) -> Vec<(u32, u32)> {
    let tasks = (rayon::current_num_threads() * 4) as u32;
    let step = ids.div_ceil(tasks).max(1 << 14);
    (0..ids)
        .step_by(step as usize)
        .map(|lo| (lo, lo.saturating_add(step).min(ids)))
        .collect()
}
