//! A write deciding a saved audience by itself: what the events a write just stored for a
//! customer say about a rule's answer for that customer, without reading the customer.
//!
//! Two things can be known from the written events alone, against the rule's plan at *now*:
//!
//! - **Forced**: one written event `x` fixes the answer whatever else the customer holds. A
//!   presence condition (`E in last N`, `E where p = v ...`, `at least 1`) whose window holds
//!   `x` is true; `not` of it is false; an `and` with a false part is false, an `or` with a true
//!   part true. The event stays in its window until one of its own candidate instants (its time
//!   plus one of the rule's relative lengths, or a millisecond more), so the answer holds until
//!   the earliest of those after *now*: that is the customer's next instant (at or before the
//!   first change, never after it).
//! - **Direction**: adding an event can only make each condition reading it truer (a count
//!   `>= n` or `> n`, a `sum >` / `>=` with a number of at least 0, a `max >` / `>=`, a `min <`
//!   / `<=`, under an even number of `not`s: **up**), only falser (**down**: `<=` counts, sums
//!   the other way), or neither (the event fails every filter naming it, or has no number for
//!   the aggregate: **untouched**); anything else (averages, sequences, `first`/`last`,
//!   computed traits, `= n` counts) is **unknown**. A kept
//!   member stays one after events that are all up or untouched, a kept non-member after events
//!   all down or untouched, and in both cases its timer stays valid: the answer at each instant
//!   can only have moved the way it already was. The caller says whether the kept answer is
//!   exact for the customer and nothing else in the write bears on the rule.
//!
//! Rules whose property tests compare with relative times (`where shipped < 3 days ago`) are
//! never decided here: their filters move with the clock.
//!
//! This module reads plans, footprints and the written events; it reads no storage or index and
//! writes nothing.

use roaring::RoaringBitmap;

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::model::{FastMap, StoredEvent};
use crate::rules::{AggregateFn, CmpOp};
use crate::storage::view::ValueView;

use super::customer::filter_passes_by;
use super::footprint::Footprint;
use super::plan::{EventNode, Filter, Frequency, Node, NodeKind, Plan};
use super::subset::{Context, SubsetAnswer};

/// What a write's events decided for one rule's customers.
#[derive(Debug, Default)]
pub(crate) struct SettledSome {
    /// The customers whose answer was forced, each one's answer and next instant.
    pub forced: SubsetAnswer,
    /// The customers in `forced`.
    pub forced_custs: RoaringBitmap,
    /// The customers whose kept answer and timer stay.
    pub unchanged: RoaringBitmap,
}

/// [`settle`] for each of `custs` that exists and got events in the write (`written`, by
/// customer), against a rule planned at `now` (`plan`); `kept(c)` is customer `c`'s kept answer when it
/// is exact and nothing else in the write bears on the rule. The others are left to be read.
/// Only for a rule [`may_settle`] allows.
pub(crate) fn settle_some(
    cx: &Context<'_>,
    plan: &Plan,
    fp: &Footprint,
    custs: &RoaringBitmap,
    written: &FastMap<u32, Vec<StoredEvent>>,
    now: Timestamp,
    kept: impl Fn(u32) -> Option<bool>,
) -> Result<SettledSome> {
    let mut out = SettledSome::default();
    out.forced.next.reserve(custs.len() as usize);
    for c in custs {
        let Some(events) = written.get(&c) else {
            continue;
        };
        if !cx.indexes.everyone.contains(c) {
            continue;
        }
        match settle(&plan.root, fp, events, now, || kept(c))? {
            Settled::Forced { member, next } => {
                // Customers come in increasing order: each is pushed at the end.
                if member {
                    push(&mut out.forced.members, c);
                }
                out.forced.next.push((c, next));
                push(&mut out.forced_custs, c);
            }
            Settled::Unchanged => {
                push(&mut out.unchanged, c);
            }
            Settled::Read => {}
        }
    }
    Ok(out)
}

/// Adds `c` to `b`: at the end when it is above every member (the common case here), else in
/// its place.
fn push(b: &mut RoaringBitmap, c: u32) {
    if b.try_push(c).is_err() {
        b.insert(c);
    }
}

/// What a write's events for one customer decide about a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The answer at *now* is `member`, and stays so until at least `next` (`None`: forever).
    Forced {
        member: bool,
        next: Option<Timestamp>,
    },
    /// The kept answer and timer stay as they are.
    Unchanged,
    /// The customer must be read.
    Read,
}

/// How adding an event moves a condition's answer at every instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Untouched,
    Up,
    Down,
    Unknown,
}

impl Direction {
    fn and(self, other: Direction) -> Direction {
        use Direction::*;
        match (self, other) {
            (Untouched, d) | (d, Untouched) => d,
            (Up, Up) => Up,
            (Down, Down) => Down,
            _ => Unknown,
        }
    }

    fn flip(self) -> Direction {
        match self {
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
            d => d,
        }
    }
}

/// Whether a rule with footprint `fp` can ever be decided here: no relative times in property
/// tests, no computed traits.
pub(crate) fn may_settle(fp: &Footprint) -> bool {
    !fp.relative_props && fp.computed.is_empty()
}

/// What the events `written` (all the write stored for one customer) decide about the rule
/// planned as `root` at `now` with footprint `fp`. `kept()` is the kept answer when it is exact
/// for the customer and nothing else the write did bears on the rule (`None` otherwise: then
/// only a forced answer settles it); it is asked only when no event forces the answer (a
/// look-up in the audience's members). Only for a rule [`may_settle`] allows.
pub(crate) fn settle(
    root: &Node,
    fp: &Footprint,
    written: &[StoredEvent],
    now: Timestamp,
    kept: impl FnOnce() -> Option<bool>,
) -> Result<Settled> {
    let mut forced: Option<(bool, Option<Timestamp>)> = None;
    let mut direction = Direction::Untouched;
    for x in written {
        if let Some(member) = force(root, x)? {
            let next = next_after(fp, x.ts, now);
            forced = Some(match forced {
                // Two events each fixing the answer agree on it; each one's instant is a lower
                // bound of the change, so the later one is too (`None`: it never changes).
                Some((m, n)) if m == member => (m, n.zip(next).map(|(a, b)| a.max(b))),
                Some(_) => return Ok(Settled::Read),
                None => (member, next),
            });
        }
        direction = direction.and(moves(root, x, true)?);
    }
    if let Some((member, next)) = forced {
        return Ok(Settled::Forced { member, next });
    }
    if direction == Direction::Unknown {
        return Ok(Settled::Read);
    }
    Ok(match (kept(), direction) {
        (Some(_), Direction::Untouched)
        | (Some(true), Direction::Up)
        | (Some(false), Direction::Down) => Settled::Unchanged,
        _ => Settled::Read,
    })
}

/// The earliest candidate instant after `now` of an event at `ts`: its time plus one of the
/// rule's relative lengths (or a millisecond more, when that is not after `now`). `None` when
/// it has none: no window edge ever reaches it.
fn next_after(fp: &Footprint, ts: Timestamp, now: Timestamp) -> Option<Timestamp> {
    fp.lengths
        .iter()
        .filter_map(|d| {
            let at = ts.saturating_add(*d);
            let c = if at > now { at } else { at.saturating_add(1) };
            (c > now).then_some(c)
        })
        .min()
}

/// Whether event `x` passes an event condition's filter.
fn passes(en: &EventNode, x: &StoredEvent) -> Result<bool> {
    let Some(filter) = &en.filter else {
        return Ok(true);
    };
    filter_passes(filter, x)
}

fn filter_passes(filter: &Filter, x: &StoredEvent) -> Result<bool> {
    filter_passes_by(
        &|id| {
            Ok(x.props
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, v)| ValueView::of(v)))
        },
        filter,
    )
}

/// Whether an event condition reads `x`: its event, and a filter `x` passes.
fn reads(en: &EventNode, x: &StoredEvent) -> Result<bool> {
    Ok(en.event == Some(x.event) && passes(en, x)?)
}

/// The answer `x` alone fixes for `node`, if any.
fn force(node: &Node, x: &StoredEvent) -> Result<Option<bool>> {
    Ok(match &node.kind {
        NodeKind::Event(en) => {
            let present = en.frequency.holds_for_any_presence()
                && en.from <= x.ts
                && x.ts <= en.to
                && reads(en, x)?;
            present.then_some(true)
        }
        NodeKind::Not(inner) => force(inner, x)?.map(|v| !v),
        NodeKind::And(items) | NodeKind::Or(items) => {
            // `and`: one false part decides it, and so do parts all true; `or` the other way.
            let decisive = matches!(node.kind, NodeKind::Or(_));
            let mut all = true;
            for item in items {
                match force(item, x)? {
                    Some(v) if v == decisive => return Ok(Some(decisive)),
                    Some(_) => {}
                    None => all = false,
                }
            }
            all.then_some(!decisive)
        }
        NodeKind::Audience { inner, .. } => force(inner, x)?,
        _ => None,
    })
}

/// How adding an event with the aggregated property's number `number` (`None`: not a number,
/// or missing) moves `FUNC(prop) OP v` at every instant. An event without a number adds nothing
/// to any aggregate. A finite number `y` only raises a sum when `y >= 0` (the exact check adds
/// the numbers in time order from 0, and rounding is monotone, so every partial sum after it is
/// at least what it was) and only lowers it when `y <= 0`; it only raises a maximum and only
/// lowers a minimum, and makes an undefined one (no number: false) defined, so only `max >` /
/// `>=` and `min <` / `<=` move one way. The mean moves either way.
fn aggregate_moves(func: AggregateFn, op: CmpOp, number: Option<f64>) -> Direction {
    let Some(y) = number else {
        return Direction::Untouched;
    };
    if !y.is_finite() {
        return Direction::Unknown;
    }
    let up_ops = matches!(op, CmpOp::Gt | CmpOp::Ge);
    let down_ops = matches!(op, CmpOp::Lt | CmpOp::Le);
    match func {
        AggregateFn::Sum if y == 0.0 => Direction::Untouched,
        AggregateFn::Sum if up_ops => {
            if y > 0.0 {
                Direction::Up
            } else {
                Direction::Down
            }
        }
        AggregateFn::Sum if down_ops => {
            if y > 0.0 {
                Direction::Down
            } else {
                Direction::Up
            }
        }
        AggregateFn::Max if up_ops => Direction::Up,
        AggregateFn::Min if down_ops => Direction::Up,
        _ => Direction::Unknown,
    }
}

/// How adding `x` moves `node`'s answer (`positive`: under an even number of `not`s).
fn moves(node: &Node, x: &StoredEvent, positive: bool) -> Result<Direction> {
    let d = match &node.kind {
        NodeKind::And(items) | NodeKind::Or(items) => {
            let mut d = Direction::Untouched;
            for item in items {
                d = d.and(moves(item, x, positive)?);
            }
            return Ok(d);
        }
        NodeKind::Not(inner) => return moves(inner, x, !positive),
        NodeKind::Audience { inner, .. } => return moves(inner, x, positive),
        NodeKind::Event(en) => {
            if !reads(en, x)? {
                Direction::Untouched
            } else {
                match en.frequency {
                    Frequency::Count {
                        op: CmpOp::Ge | CmpOp::Gt,
                        ..
                    } => Direction::Up,
                    Frequency::Count {
                        op: CmpOp::Le | CmpOp::Lt,
                        ..
                    } => Direction::Down,
                    Frequency::Aggregate { func, prop, op, .. } => {
                        let number = prop.and_then(|p| {
                            x.props
                                .iter()
                                .find(|(id, _)| *id == p)
                                .and_then(|(_, v)| ValueView::of(v).as_f64())
                        });
                        aggregate_moves(func, op, number)
                    }
                    _ => Direction::Unknown,
                }
            }
        }
        NodeKind::Sequence(seq) => {
            let mut d = Direction::Untouched;
            for step in &seq.steps {
                if reads(step, x)? {
                    d = Direction::Unknown;
                }
            }
            d
        }
        NodeKind::FirstLast(fl) => {
            if reads(&fl.inside, x)? || reads(&fl.outside, x)? {
                Direction::Unknown
            } else {
                Direction::Untouched
            }
        }
        // Not reached for a rule `may_settle` allows; unknown to be safe.
        NodeKind::Computed(_) => Direction::Unknown,
        NodeKind::Trait { .. }
        | NodeKind::Everyone
        | NodeKind::Bucket(_)
        | NodeKind::List { .. } => Direction::Untouched,
    };
    Ok(if positive { d } else { d.flip() })
}
