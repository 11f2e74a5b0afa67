//! The values of one event property, counted in distinct customers: `top` (the values an
//! audience did, against everyone), `recommend` (values that co-occur with one customer's) and
//! `recent` (one customer's values, latest first).
//!
//! The primitive is `who_did_each`: for every indexed value of an (event, property) pair, the
//! exact set of customers who did the event with that value inside a window. It is the union of
//! the value's per-day bitmaps over the window's whole days, plus, on the (at most two) days the
//! window cuts, the customers with an event of that kind and value inside the window: from the
//! day's event columns (`query::columns`) where they are built (not on the window's last day,
//! where a live store's writes land), else those whose events of that
//! kind that day all lie inside the window (the count rollups' spans say so, as for rule
//! conditions) plus those the spans leave undecided and whose stored events of that day show the
//! value inside the window. `top.rs` counts an audience in these sets, `recommend.rs` their
//! co-occurrences, both through `PerCustomer` (each customer's values: the whole days' pairs
//! turned around once and kept with their unions, `crate::index::ByCustomer`) where that is the
//! cheaper, and `recent.rs` reads one customer's stored events only.
//!
//! This module owns those three reads and their result types. It reads the indexes, the catalog
//! and customers' stored events through the `ReadState` and `Store` it is handed (the caller
//! holds the read guard for the whole call); it never writes (the cut days' event columns it asks
//! `query::columns` for may be built and stored there, as derived records), never takes a lock
//! of its own, and does not touch the plan, the bounds or the exact checks of rules beyond
//! calling them.

pub(crate) mod recent;
pub(crate) mod recommend;
pub(crate) mod top;

pub use recent::RecentValue;
pub use recommend::{cosine_sum, Recommendation, Scored};
pub use top::{table, Top, TopOrder, TopRequest, TopRow};

use std::sync::Arc;

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::{Error, Result};
use crate::index::rollup::ListVersion;
use crate::index::{
    ByCustomer, EventColumns, EventIndex, IndexValue, Indexes, Unions, ValueDays, ValueRef, MISSING,
};
use crate::model::time::{day_of, day_start, Timestamp};
use crate::model::value::ValueType;
use crate::model::FastMap;
use crate::model::Value;
use crate::query::ReadState;
use crate::rules::{
    self, EventCondition, Expr, ExprKind, Name, Path, Predicate, PredicateKind, Rule, Span, Test,
    TraitCondition, Window,
};
use crate::storage::view::{self, ValueView};
use crate::storage::Store;

use super::check::{self, Warning};
use super::columns;
use super::plan::{Filter, NodeKind};
use super::rollups::{cut_day_sides, WindowDays};

/// Value types that have per-value bitmaps (the others are never counted by value).
const KEYED: u8 = ValueType::Str.bit() | ValueType::Int.bit() | ValueType::Bool.bit();

/// One (event, property) pair and a window, resolved at one *now*.
#[derive(Debug)]
pub(crate) struct Target {
    /// `None` when no event of that name is stored.
    pub event: Option<u32>,
    /// `None` when no event of that name carries the property.
    pub prop: Option<u32>,
    /// The window as an inclusive range of milliseconds, capped at *now*; empty when
    /// `from > to`.
    pub from: Timestamp,
    pub to: Timestamp,
    /// Unknown event and property names, as the rule language warns of them.
    pub warnings: Vec<Warning>,
}

/// Resolves an event name, a property name and a window (`None`: `ever`) at `now`, exactly as
/// the rule `did EVENT where PROPERTY is set WINDOW` would resolve them; its warnings are the
/// rule's. A window that is not one of the rule language's windows is [`Error::InvalidInput`].
pub(crate) fn target(
    state: &ReadState,
    event: &str,
    property: &str,
    window: Option<&str>,
    now: Timestamp,
) -> Result<Target> {
    let window = window.map(parse_window).transpose()?;
    let span = Span::new(0, 0);
    let cond = EventCondition {
        event: Name {
            text: event.to_owned(),
            span,
        },
        shorthand: None,
        predicate: Some(Predicate {
            kind: PredicateKind::Cond(TraitCondition {
                path: Path {
                    text: property.to_owned(),
                    span,
                },
                test: Test::IsSet { negated: false },
                span,
            }),
            span,
        }),
        frequency: None,
        window,
        span,
    };
    let rule = Rule {
        expr: Expr {
            kind: ExprKind::Event(Box::new(cond)),
            span,
        },
    };
    let planned = state.plan(&rule, now)?;
    let NodeKind::Event(e) = planned.root.kind else {
        return Err(Error::Internal(
            "an event condition planned as another node".into(),
        ));
    };
    let prop = match &e.filter {
        Some(Filter::Cond { prop, .. }) => *prop,
        _ => None,
    };
    Ok(Target {
        event: e.event,
        prop,
        from: e.from,
        to: e.to,
        warnings: check::warnings(&rule, &state.catalog, &state.indexes, &state.definitions),
    })
}

/// A window as the rule language writes it (`in last 90 days`, `since 2026-01-01`,
/// `before 30 days ago`, `between 2026-03-01 and 2026-03-31`, `ever`).
pub(crate) fn parse_window(text: &str) -> Result<Window> {
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "{text:?} is not a window{why}: write it as in a rule, e.g. `in last 90 days`, \
             `since 2026-01-01`, `before 30 days ago`, `between 2026-03-01 and 2026-03-31` or \
             `ever`"
        ))
    };
    let rule = rules::parse(&format!("did x {text}")).map_err(|e| {
        let mut why = format!(" ({}", e.message());
        if let Some(s) = e.suggestion() {
            why.push_str(&format!(", did you mean '{s}'?"));
        }
        why.push(')');
        bad(&why)
    })?;
    match rule.expr.kind {
        ExprKind::Event(c)
            if c.shorthand.is_none() && c.predicate.is_none() && c.frequency.is_none() =>
        {
            c.window.ok_or_else(|| bad(""))
        }
        _ => Err(bad("")),
    }
}

/// Refuses an (event, property) pair whose values have no per-value bitmaps: over the value
/// bound, or holding only values of types that are never indexed (floats, date-times, lists).
/// Unknown names pass (they count nothing, and the warnings say so).
pub(crate) fn require_indexed(
    state: &ReadState,
    t: &Target,
    event: &str,
    property: &str,
) -> Result<()> {
    let (Some(e), Some(p)) = (t.event, t.prop) else {
        return Ok(());
    };
    let not_indexed = |message: String| Error::NotIndexed {
        event: event.to_owned(),
        property: property.to_owned(),
        message,
    };
    if !state.indexes.prop_values_indexed(e, p) {
        return Err(not_indexed(format!(
            "property '{property}' of event '{event}' has more than {} distinct values, so its \
             values are not indexed and cannot be counted: the limit is the value bound \
             (`Config::value_bound`, {} by default), set when the database is opened",
            state.indexes.value_bound(),
            crate::Config::new("").value_bound,
        )));
    }
    let types = state.catalog.prop_types(e, p);
    if types != 0 && types & KEYED == 0 {
        let names = crate::storage::catalog::type_names(types).join(", ");
        return Err(not_indexed(format!(
            "property '{property}' of event '{event}' holds {names} values, which are not \
             indexed by value (only strings, integers and booleans are; `Config::value_bound` \
             limits how many): it cannot be counted by value"
        )));
    }
    Ok(())
}

/// For every indexed value of the target's (event, property), the customers who did the event
/// with that value inside the window, exactly; values nobody did in the window are left out.
/// In the indexes' value order.
pub(crate) fn who_did_each(
    indexes: &Indexes,
    store: &Store,
    t: &Target,
) -> Result<Vec<(IndexValue, ValueSet)>> {
    let (Some(event), Some(prop)) = (t.event, t.prop) else {
        return Ok(Vec::new());
    };
    let Some(ei) = indexes.event_index(event) else {
        return Ok(Vec::new());
    };
    let Some(values) = ei.props.get(&prop) else {
        return Ok(Vec::new());
    };
    let Some(win) = WindowDays::of(t.from, t.to) else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<(&IndexValue, &ValueDays)> = values.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let position = |key: &IndexValue| entries.binary_search_by(|(k, _)| (*k).cmp(key)).ok();
    // Per value, the customers the cut days add.
    let mut extra: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); entries.len()];
    for &(d, a, b) in &win.edges {
        let from = day_start(d) + a;
        let to = day_start(d) + b;
        // A day before the window's last, from the day's columns where they are built: a pass
        // over the day's events. Not the last day: on a live store writes land there, and each
        // would have the next call rebuild that day's columns.
        if d < day_of(t.to) {
            if let Some(col) = columns::one_day(store, (event, ei), d)? {
                if let Some(col) = col {
                    cut_day_from_columns(&col, prop, (from, to), values, &position, &mut extra);
                }
                continue;
            }
        }
        // Everyone who did the event that day (the values' customers among them): the event's
        // own bitmap of the day, else the union of the values'.
        let cut: RoaringBitmap = match ei.days.get(&d) {
            Some(all) => all.clone(),
            None => entries.iter().filter_map(|(_, vd)| vd.day(d)).union(),
        };
        if cut.is_empty() {
            continue;
        }
        // Whose events of the kind that day lie all inside the window's part of it: every
        // value they did that day counts; all outside: none does.
        let (inside, outside) = cut_day_sides(ei, d, a, b, &cut);
        if !inside.is_empty() {
            for (i, (_, vd)) in entries.iter().enumerate() {
                if let Some(bm) = vd.day(d) {
                    extra[i] |= bm & &inside;
                }
            }
        }
        // The others: read that day's events.
        let unsure: Vec<u32> = (cut - inside - outside).iter().collect();
        let found: Vec<(usize, u32)> = unsure
            .par_chunks(256)
            .map(|custs| {
                let mut out = Vec::new();
                let (mut bodies, mut blocks) = (Vec::new(), Vec::new());
                for &cust in custs {
                    bodies.clear();
                    blocks.clear();
                    store.event_bodies_from(cust, from, &mut bodies, &mut blocks)?;
                    for_each_value(&bodies, &blocks, event, prop, from, to, |_, v| {
                        if let Some(k) = key_of(v) {
                            if let Some(i) =
                                values.get_key_value(&k).and_then(|(key, _)| position(key))
                            {
                                out.push((i, cust));
                            }
                        }
                    })?;
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        for (i, cust) in found {
            extra[i].insert(cust);
        }
    }
    let whole = win
        .whole
        .map(|(first, last)| whole_days(ei, prop, &entries, first, last));
    let sets = entries
        .par_iter()
        .zip(extra.into_par_iter())
        .filter_map(|((k, _), extra)| {
            let days = whole.as_ref().and_then(|w| {
                let at = w.sets.binary_search_by(|(v, _)| v.cmp(k)).ok()?;
                Some((w.clone(), at))
            });
            let set = match days {
                Some((w, at)) => {
                    let extra = if extra.is_empty() {
                        extra
                    } else {
                        extra - &w.sets[at].1
                    };
                    ValueSet::new(Some((w, at)), extra)
                }
                None => ValueSet::new(None, extra),
            };
            (set.len() > 0).then(|| ((*k).clone(), set))
        })
        .collect();
    Ok(sets)
}

/// Adds to `extra` (a bitmap per entry, `position` finding an index value's) the customers
/// with an event in `from..=to` carrying each value of `prop`, from one day's columns: each
/// distinct value of the day looked up once, then a pass over the day's events (by customer,
/// so each value's customers come ascending).
fn cut_day_from_columns<'k>(
    col: &EventColumns,
    prop: u32,
    (from, to): (Timestamp, Timestamp),
    values: &'k FastMap<IndexValue, ValueDays>,
    position: &impl Fn(&'k IndexValue) -> Option<usize>,
    extra: &mut [RoaringBitmap],
) {
    let Some(pc) = col.prop(prop) else {
        return;
    };
    let at: Vec<Option<usize>> = pc
        .values
        .iter()
        .map(|v| {
            let k = key_of(ValueView::of(v))?;
            values.get_key_value(&k).and_then(|(key, _)| position(key))
        })
        .collect();
    for (i, (&cust, &ts)) in col.custs.iter().zip(&col.times).enumerate() {
        if ts < from || ts > to {
            continue;
        }
        let id = pc.ids[i];
        if id == MISSING {
            continue;
        }
        if let Some(p) = at[id as usize] {
            // A plain insert: `try_push` would rescan a dense container's words on every push.
            extra[p].insert(cust);
        }
    }
}

/// One value's customers in a window, without copying the kept union of its whole days: that
/// union (shared with the cache) and the customers the cut days add beyond it (disjoint from it).
#[derive(Debug, Clone)]
pub(crate) struct ValueSet {
    days: Option<(Arc<Unions>, usize)>,
    extra: RoaringBitmap,
    /// How many customers both parts hold (asked for often: counted once).
    len: u64,
}

impl ValueSet {
    fn new(days: Option<(Arc<Unions>, usize)>, extra: RoaringBitmap) -> ValueSet {
        let len = days.as_ref().map_or(0, |(w, at)| w.sets[*at].1.len()) + extra.len();
        ValueSet { days, extra, len }
    }

    fn days(&self) -> Option<&RoaringBitmap> {
        self.days.as_ref().map(|(w, at)| &w.sets[*at].1)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn contains(&self, cust: u32) -> bool {
        self.days().is_some_and(|d| d.contains(cust)) || self.extra.contains(cust)
    }

    /// How many of `other` are in the set.
    pub fn intersection_len(&self, other: &RoaringBitmap) -> u64 {
        self.days().map_or(0, |d| d.intersection_len(other)) + self.extra.intersection_len(other)
    }

    /// How many customers two sets share (each set's two parts are disjoint, so the four
    /// pairs' counts add up).
    pub fn shared_with(&self, other: &ValueSet) -> u64 {
        let mut n = other.intersection_len(&self.extra);
        if let Some(d) = self.days() {
            n += other.intersection_len(d);
        }
        n
    }
}

/// Counts, for every value of [`who_did_each`]'s sets, how many of some customers its set
/// holds, through each customer's values rather than an intersection per value: the whole
/// days' pairs turned around ([`ByCustomer`], kept with the unions) and the cut days' pairs
/// (few) turned around per call. Exactly `set.intersection_len(custs)` for every set.
pub(crate) struct PerCustomer<'a> {
    /// The whole days' pairs by customer, and per position in their unions the set's position
    /// in the sets counted ([`NO_SET`]: none).
    whole: Option<(&'a ByCustomer, Vec<u32>)>,
    /// The cut days' (customer, set position) pairs, ascending, and their customers.
    extra: Vec<(u32, u32)>,
    extra_custs: RoaringBitmap,
}

/// A value of the kept unions without a set among those counted.
const NO_SET: u32 = u32::MAX;

/// Audiences of more customers than this are counted in parallel slices of ids.
const PARALLEL_COUNT: u64 = 100_000;

impl<'a> PerCustomer<'a> {
    /// `None` when the whole days' pairs cannot be turned around (see [`ByCustomer::new`]).
    pub fn new(sets: &'a [(IndexValue, ValueSet)]) -> Option<PerCustomer<'a>> {
        let whole = sets.iter().find_map(|(_, s)| s.days.as_ref().map(|d| &d.0));
        let whole = match whole {
            Some(unions) => {
                // `who_did_each` takes every value's whole days from one kept union.
                if sets.iter().any(|(_, s)| {
                    s.days
                        .as_ref()
                        .is_some_and(|(u, _)| !Arc::ptr_eq(u, unions))
                }) {
                    return None;
                }
                let by = unions.by_customer()?;
                let mut map = vec![NO_SET; unions.sets.len()];
                for (j, (_, s)) in sets.iter().enumerate() {
                    if let Some((_, at)) = &s.days {
                        map[*at] = j as u32;
                    }
                }
                Some((by, map))
            }
            None => None,
        };
        let mut extra: Vec<(u32, u32)> = sets
            .iter()
            .enumerate()
            .flat_map(|(j, (_, s))| s.extra.iter().map(move |c| (c, j as u32)))
            .collect();
        extra.sort_unstable();
        let mut custs: Vec<u32> = Vec::with_capacity(extra.len());
        for &(c, _) in &extra {
            // Ascending, with a customer once per value it has: kept once.
            if custs.last() != Some(&c) {
                custs.push(c);
            }
        }
        let mut extra_custs = RoaringBitmap::new();
        crate::index::add_ascending(&mut extra_custs, &custs);
        Some(PerCustomer {
            whole,
            extra,
            extra_custs,
        })
    }

    /// Adds to `counts[j]` (a slot per set) how many of `custs` set `j` holds.
    pub fn count(&self, custs: &RoaringBitmap, counts: &mut [u32]) {
        if let Some((by, map)) = &self.whole {
            let add = |counts: &mut [u32], c: u32| {
                for &at in by.of(c) {
                    let j = map[at as usize];
                    if j != NO_SET {
                        counts[j as usize] += 1;
                    }
                }
            };
            if custs.len() > PARALLEL_COUNT {
                let slices = custs.max().map_or(0, |m| (m >> 16) + 1);
                let parts: Vec<Vec<u32>> = (0..slices)
                    .into_par_iter()
                    .map(|s| {
                        let mut part = vec![0u32; counts.len()];
                        let lo = s << 16;
                        for c in custs.range(lo..=(lo | 0xFFFF)) {
                            add(&mut part, c);
                        }
                        part
                    })
                    .collect();
                for part in parts {
                    for (n, m) in counts.iter_mut().zip(part) {
                        *n += m;
                    }
                }
            } else {
                for c in custs {
                    add(counts, c);
                }
            }
        }
        if !self.extra.is_empty() {
            let both = custs & &self.extra_custs;
            let mut k = 0;
            for c in &both {
                while self.extra[k].0 < c {
                    k += 1;
                }
                while k < self.extra.len() && self.extra[k].0 == c {
                    counts[self.extra[k].1 as usize] += 1;
                    k += 1;
                }
            }
        }
    }

    /// For every set, how many customers it shares with `set` (both parts of `set` counted).
    pub fn shared_with(&self, set: &ValueSet, counts: &mut [u32]) {
        if let Some(d) = set.days() {
            self.count(d, counts);
        }
        self.count(&set.extra, counts);
    }
}

/// Each value's customers over the whole days `first..=last`: kept from an earlier call while
/// the event's count lists of those days are unchanged, built (and kept) otherwise.
fn whole_days(
    ei: &EventIndex,
    prop: u32,
    entries: &[(&IndexValue, &ValueDays)],
    first: u32,
    last: u32,
) -> Arc<Unions> {
    let versions: Vec<(u32, ListVersion)> = ei
        .counts
        .range(first..=last)
        .map(|(&d, list)| (d, list.version()))
        .collect();
    if let Some(kept) = ei.unions.get(prop, first, last, &versions) {
        return kept;
    }
    let sets = entries
        .par_iter()
        .filter_map(|(k, vd)| {
            let set: RoaringBitmap = vd.sets_in(first, last).union();
            (!set.is_empty()).then(|| ((*k).clone(), set))
        })
        .collect();
    let built = Arc::new(Unions::new(prop, (first, last), versions, sets));
    ei.unions.put(built.clone());
    built
}

/// Calls `f` with the time and value of `prop` of each event `event` in `from..=to` among the
/// blocks, in time order.
pub(crate) fn for_each_value<'a>(
    bodies: &'a [u8],
    blocks: &[view::BlockSpan],
    event: u32,
    prop: u32,
    from: Timestamp,
    to: Timestamp,
    mut f: impl FnMut(Timestamp, ValueView<'a>),
) -> Result<()> {
    view::for_each_event_between(bodies, blocks, from, to, |e| {
        if e.event == event {
            if let Some(v) = e.prop(prop)? {
                f(e.ts, v);
            }
        }
        Ok(())
    })
}

/// An index key as the library's value type.
pub(crate) fn to_value(k: &IndexValue) -> Value {
    match k {
        IndexValue::Str(s) => Value::Str(s[..].into()),
        IndexValue::Int(i) => Value::Int(*i),
        IndexValue::Bool(b) => Value::Bool(*b),
    }
}

/// The index key of a value read in place (see [`ValueRef::of`]).
pub(crate) fn key_of(v: ValueView<'_>) -> Option<ValueRef<'_>> {
    match v {
        ValueView::Str(s) => Some(ValueRef::Str(s)),
        ValueView::Int(i) => Some(ValueRef::Int(i)),
        ValueView::Bool(b) => Some(ValueRef::Bool(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency needed for a unit test).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % u64::from(below)) as u32
        }
    }

    #[test]
    fn counts_through_customers_equal_the_intersections() {
        let mut rng = Lcg(17);
        // Ids over several slices of 65,536, sets of every density, some values only in the
        // cut days, some only in the whole days, one of the kept unions not among the sets.
        let span = 300_000;
        let mut whole = Vec::new();
        let mut extras = Vec::new();
        for v in 0..40u32 {
            let dense = [5, 500, 40_000, 150_000][v as usize % 4];
            let mut days: RoaringBitmap = (0..dense).map(|_| rng.next(span)).collect();
            let mut extra: RoaringBitmap = (0..rng.next(300)).map(|_| rng.next(span)).collect();
            if v % 7 == 3 {
                days.clear();
            }
            if v % 5 == 1 {
                extra.clear();
            }
            extra -= &days;
            whole.push((IndexValue::Int(i64::from(v)), days));
            extras.push(extra);
        }
        let kept: Vec<(IndexValue, RoaringBitmap)> = whole
            .iter()
            .filter(|(_, d)| !d.is_empty())
            .cloned()
            .collect();
        let unions = Arc::new(Unions::new(1, (0, 9), Vec::new(), kept));
        let mut sets: Vec<(IndexValue, ValueSet)> = whole
            .iter()
            .zip(extras)
            .filter_map(|((k, _), extra)| {
                let at = unions.sets.binary_search_by(|(v, _)| v.cmp(k)).ok();
                let set = ValueSet::new(at.map(|at| (unions.clone(), at)), extra);
                (set.len() > 0).then(|| (k.clone(), set))
            })
            .collect();
        assert!(sets[2].1.days().is_some());
        sets.remove(2);
        let per = PerCustomer::new(&sets).expect("few pairs");
        for size in [0, 1, 3_000, 60_000, 200_000, 290_000] {
            let custs: RoaringBitmap = (0..size).map(|_| rng.next(span + 1_000)).collect();
            let mut counts = vec![0u32; sets.len()];
            per.count(&custs, &mut counts);
            for (j, (_, set)) in sets.iter().enumerate() {
                assert_eq!(
                    u64::from(counts[j]),
                    set.intersection_len(&custs),
                    "value {j}, {size} customers"
                );
            }
        }
        for (i, (_, own)) in sets.iter().enumerate() {
            let mut row = vec![0u32; sets.len()];
            per.shared_with(own, &mut row);
            for (j, (_, set)) in sets.iter().enumerate() {
                assert_eq!(
                    u64::from(row[j]),
                    own.shared_with(set),
                    "values {i} and {j}"
                );
            }
        }
        // Without whole days: the cut days' pairs alone.
        let cut_only: Vec<(IndexValue, ValueSet)> = sets
            .iter()
            .map(|(k, s)| (k.clone(), ValueSet::new(None, s.extra.clone())))
            .collect();
        let per = PerCustomer::new(&cut_only).expect("no whole days");
        let custs: RoaringBitmap = (0..50_000).map(|_| rng.next(span)).collect();
        let mut counts = vec![0u32; cut_only.len()];
        per.count(&custs, &mut counts);
        for (j, (_, set)) in cut_only.iter().enumerate() {
            assert_eq!(
                u64::from(counts[j]),
                set.intersection_len(&custs),
                "cut value {j}"
            );
        }
    }
}
