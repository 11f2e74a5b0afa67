//! The values of one event property, counted in distinct customers: `top` (the values an
//! audience did, against everyone), `recommend` (values that co-occur with one customer's) and
//! `recent` (one customer's values, latest first).
//!
//! The primitive is `who_did_each`: for every indexed value of an (event, property) pair, the
//! exact set of customers who did the event with that value inside a window. It is the union of
//! the value's per-day bitmaps over the window's whole days, plus, on the (at most two) days the
//! window cuts, the customers whose events of that kind that day all lie inside the window (the
//! count rollups' spans say so, as for rule conditions), plus those the spans leave undecided
//! and whose stored events of that day show the value inside the window. `top.rs` intersects
//! these sets with an audience, `recommend.rs` with each other, and `recent.rs` reads one
//! customer's stored events only.
//!
//! This module owns those three reads and their result types. It reads the indexes, the catalog
//! and customers' stored events through the `ReadState` and `Store` it is handed (the caller
//! holds the read guard for the whole call); it never writes, never takes a lock of its own, and
//! does not touch the plan, the bounds or the exact checks of rules beyond calling them.

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
use crate::index::{EventIndex, IndexValue, Indexes, Unions, ValueDays, ValueRef};
use crate::model::time::{day_start, Timestamp};
use crate::model::value::ValueType;
use crate::model::Value;
use crate::query::ReadState;
use crate::rules::{
    self, EventCondition, Expr, ExprKind, Name, Path, Predicate, PredicateKind, Rule, Span, Test,
    TraitCondition, Window,
};
use crate::storage::view::{self, ValueView};
use crate::storage::Store;

use super::check::{self, Warning};
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
        // Everyone who did the event that day (the values' customers among them): the event's
        // own bitmap of the day, else the union of the values'.
        let cut: RoaringBitmap = match ei.days.get(&d) {
            Some(all) => all.clone(),
            None => entries.iter().filter_map(|(_, vd)| vd.days.get(&d)).union(),
        };
        if cut.is_empty() {
            continue;
        }
        // Whose events of the kind that day lie all inside the window's part of it: every
        // value they did that day counts; all outside: none does.
        let (inside, outside) = cut_day_sides(ei, d, a, b, &cut);
        if !inside.is_empty() {
            for (i, (_, vd)) in entries.iter().enumerate() {
                if let Some(bm) = vd.days.get(&d) {
                    extra[i] |= bm & &inside;
                }
            }
        }
        // The others: read that day's events.
        let unsure: Vec<u32> = (cut - inside - outside).iter().collect();
        let from = day_start(d) + a;
        let to = day_start(d) + b;
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
            let set: RoaringBitmap = vd.days.range(first..=last).map(|(_, bm)| bm).union();
            (!set.is_empty()).then(|| ((*k).clone(), set))
        })
        .collect();
    let built = Arc::new(Unions {
        prop,
        first,
        last,
        versions,
        sets,
    });
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
        IndexValue::Str(s) => Value::Str(s.to_string()),
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
