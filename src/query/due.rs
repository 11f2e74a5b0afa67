//! Customers whose timers fell due, answered from the indexes where they can be: what keeps a
//! saved audience true as the clock moves, without reading each due customer's events.
//!
//! For the customers due in one audience at one *now* (a tick), the rule is evaluated as bitmap
//! operations restricted to them: traits from their bitmaps, plain presence (`E in last L`,
//! `E since L ago`, `E ever`) from the day bitmaps and, on a day the window cuts, the count
//! rollups' two-second spans; counts and aggregates without a filter, for fewer than
//! [`FIGURES_UNTIL`] customers, from each one's figures (the kept totals of the whole days and
//! the cut days' rollups, `super::figures`); `and`, `or`, `not` and `in audience` combine them;
//! other conditions (filters, sequences, and the above where those do not serve) take the
//! engine's bounds over everyone when at least [`WHOLE_BOUNDS_FROM`] customers are due (the
//! rollups decide most counts). The same answers serve a write's customers that its own events
//! do not settle (`crate::audience`). The next
//! instant at which time alone may change each customer's answer is bounded from below by the
//! same spans ([`next_from_spans`]): early, never late, so the timers wake the customer at or
//! before its edge, and a wake-up inside a span's two seconds reads the customer. Whatever the
//! indexes cannot decide (what the bounds leave open, a span straddling an edge, an event after
//! *now*, a date-time trait the rule compares with a relative time) is handed back to be read
//! and checked one by one ([`super::subset::answer_each`]).
//!
//! When many audiences are due at one tick, the days with each event of all their due customers
//! are listed once ([`DueDays`]: one pass over the day bitmaps per event for all of them), and
//! each audience's day look-ups (presence over whole days, the latest or first day with the
//! event for the next instants, the whole days a count or an aggregate adds up when their totals
//! are not kept) are binary searches in a customer's own days instead of a pass over the window's
//! day bitmaps per audience. A write's customers that its events leave open are listed the same
//! way when a few audiences ask about them, from the earliest cut of those audiences' windows
//! only: a look-up reaching before a listing's first day ([`CustomerDays::covers`]: `ever`,
//! `before`, fixed dates) passes over the day bitmaps instead. The answers are the same either
//! way. A pass over the day bitmaps for a few customers looks each one up in a day's bitmap
//! rather than intersecting it whole ([`and_few`]); over a window of weeks it goes by the aligned
//! runs of days whose unions are kept (`crate::index::presence`), passing over a run with one
//! look-up for each customer not in its union ([`DayPieces`]).
//!
//! Customers with events of the open day in the two-second span holding *now* (events written at
//! the clock's instant) cannot have a later one there when no stored event of the kind is later
//! than *now* ([`crate::index::EventIndex::latest`]: the spans' ends are capped by it); otherwise
//! they are told from those with a later one by the open day's event columns when they are many
//! ([`later_today`]).
//!
//! This module reads the indexes (and storage only where the engine's bounds or [`later_today`]
//! build event columns); it never writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::error::Result;
use crate::index::derived::DerivedStore;
use crate::index::presence::RunUnion;
use crate::index::rollup::{DayCount, DayList, SPAN_UNIT_MS};
use crate::index::{EventIndex, Indexes};
use crate::model::time::{day_of, day_start, Timestamp, DAY_MS};
use crate::model::FastMap;

use super::exec::Sources;
use super::figures::{self, side_capped};
use super::footprint::{self, Footprint};
use super::kept::Kept;
use super::plan::{self, EventNode, Node, NodeKind, Plan};
use super::rollups::{Side, WindowDays};
use super::subset::{time_traits, Ask, Context, SubsetAnswer};

/// A tick's answer for the due customers of one audience.
#[derive(Debug, Default)]
pub(crate) struct DueAnswer {
    /// The members among the customers the indexes decided, and each one's next instant (a
    /// lower bound: at or before the first instant its answer may change).
    pub decided: SubsetAnswer,
    /// The customers decided in `decided`.
    pub asked: RoaringBitmap,
    /// The customers asked about that the indexes could not decide: to be read.
    pub read: RoaringBitmap,
}

/// The days with each event of some customers (those due at one tick in any audience), taken
/// from the day bitmaps once for every audience asking about them: with many audiences woken
/// together, each one's day look-ups become a binary search in a customer's own days instead of
/// a pass over the window's day bitmaps per audience.
#[derive(Debug, Default)]
pub(crate) struct DueDays {
    custs: RoaringBitmap,
    by_event: FastMap<u32, CustomerDays>,
}

/// Each listed customer's days with one event from a first day on, in increasing order.
#[derive(Debug, Default)]
pub(super) struct CustomerDays {
    /// The first day listed: a look-up of days before it is not answered here
    /// ([`CustomerDays::covers`]).
    from: u32,
    /// The listed customers' places (shared by every event's list).
    places: Arc<Places>,
    /// Where each customer's days start in `days` (by its place), and where the last one's end.
    at: Vec<u32>,
    days: Vec<u32>,
}

/// The places of some customers in their ascending order, found by a look-up in a table over
/// the range of their ids (not a search per customer: the days of every due customer are
/// placed for each day with the event).
#[derive(Debug, Default)]
struct Places {
    custs: Vec<u32>,
    /// By id minus the first customer's: the place, or anything for an id not listed.
    table: Vec<u32>,
}

impl Places {
    fn new(custs: &RoaringBitmap) -> Places {
        let custs: Vec<u32> = custs.iter().collect();
        let (first, last) = match (custs.first(), custs.last()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => return Places::default(),
        };
        let mut table = vec![0u32; (last - first) as usize + 1];
        for (i, &c) in custs.iter().enumerate() {
            table[(c - first) as usize] = i as u32;
        }
        Places { custs, table }
    }

    /// The place of `cust`, if listed.
    fn of(&self, cust: u32) -> Option<usize> {
        let first = *self.custs.first()?;
        let i = *self.table.get(cust.checked_sub(first)? as usize)? as usize;
        (self.custs.get(i) == Some(&cust)).then_some(i)
    }
}

impl CustomerDays {
    /// Whether every day from `day` on is listed.
    pub(super) fn covers(&self, day: u32) -> bool {
        day >= self.from
    }

    /// The days of `cust` with the event, in increasing order.
    fn of(&self, cust: u32) -> &[u32] {
        match self.places.of(cust) {
            Some(i) => &self.days[self.at[i] as usize..self.at[i + 1] as usize],
            None => &[],
        }
    }

    /// The days of `cust` with the event in `a..=b`, in increasing order.
    pub(super) fn days_in(&self, cust: u32, a: u32, b: u32) -> impl Iterator<Item = u32> + '_ {
        debug_assert!(
            self.covers(a),
            "days from {a} asked of a listing from {}",
            self.from
        );
        let days = self.of(cust);
        let from = days.partition_point(|&x| x < a);
        days[from..].iter().copied().take_while(move |&x| x <= b)
    }

    /// The first day of `cust` with the event in `a..=b`.
    fn first_in(&self, cust: u32, a: u32, b: u32) -> Option<u32> {
        self.days_in(cust, a, b).next()
    }

    /// The last day of `cust` with the event in `a..=b`.
    fn last_in(&self, cust: u32, a: u32, b: u32) -> Option<u32> {
        debug_assert!(
            self.covers(a),
            "days from {a} asked of a listing from {}",
            self.from
        );
        let days = self.of(cust);
        let i = days.partition_point(|&x| x <= b);
        i.checked_sub(1).map(|i| days[i]).filter(|&x| x >= a)
    }
}

impl DueDays {
    /// The days of `events` from day `from` on for the customers of `custs` (with `from` 0, every
    /// day the indexes hold).
    pub(crate) fn build(ix: &Indexes, custs: RoaringBitmap, events: &[u32], from: u32) -> DueDays {
        let places = Arc::new(Places::new(&custs));
        let n = places.custs.len();
        let by_event = events
            .par_iter()
            .filter_map(|&e| {
                let ei = ix.event_index(e)?;
                // (place, day) in day order; each customer's count, one place on.
                let mut pairs: Vec<(u32, u32)> = Vec::new();
                let mut at = vec![0u32; n + 1];
                for (&day, bm) in ei.days.range(from..) {
                    for c in &(&custs & bm) {
                        let i = places.of(c).expect("a listed customer");
                        at[i + 1] += 1;
                        pairs.push((i as u32, day));
                    }
                }
                // Each customer's run of days starts where the ones before it end; the pairs
                // come by day, so each run comes out in increasing order without a sort.
                for i in 1..at.len() {
                    at[i] += at[i - 1];
                }
                let mut next = at[..n].to_vec();
                let mut days = vec![0u32; pairs.len()];
                for (i, day) in pairs {
                    let slot = &mut next[i as usize];
                    days[*slot as usize] = day;
                    *slot += 1;
                }
                Some((
                    e,
                    CustomerDays {
                        from,
                        places: places.clone(),
                        at,
                        days,
                    },
                ))
            })
            .collect::<Vec<_>>();
        DueDays {
            custs,
            by_event: by_event.into_iter().collect(),
        }
    }

    /// The days of event `e`, when listed (for every customer of the due answer asking: see
    /// [`answer_due_with`]).
    pub(super) fn event(&self, e: u32) -> Option<&CustomerDays> {
        self.by_event.get(&e)
    }
}

/// Evaluates `ask`'s rule at `now` for its customers (those that exist) from the indexes (see
/// the module's documentation), with the due customers' days listed once for all audiences
/// (`days`, when it lists them).
pub(crate) fn answer_due_with(
    cx: &Context<'_>,
    ask: &Ask<'_>,
    now: Timestamp,
    days: Option<&DueDays>,
) -> Result<DueAnswer> {
    let custs = ask.custs & &cx.indexes.everyone;
    if custs.is_empty() {
        return Ok(DueAnswer::default());
    }
    let plan = plan::plan(ask.rule, cx.catalog, cx.indexes, cx.saved, now)?;
    Ok(answer_planned(cx, ask, &plan, custs, now, days))
}

/// [`answer_due_with`] for a rule already planned at `now` (`plan`): a write plans each
/// audience's rule once for what its events settle and for what is asked of the indexes.
pub(crate) fn answer_due_planned(
    cx: &Context<'_>,
    ask: &Ask<'_>,
    plan: &Plan,
    now: Timestamp,
    days: Option<&DueDays>,
) -> DueAnswer {
    let custs = ask.custs & &cx.indexes.everyone;
    if custs.is_empty() {
        return DueAnswer::default();
    }
    answer_planned(cx, ask, plan, custs, now, days)
}

fn answer_planned(
    cx: &Context<'_>,
    ask: &Ask<'_>,
    plan: &Plan,
    custs: RoaringBitmap,
    now: Timestamp,
    days: Option<&DueDays>,
) -> DueAnswer {
    // Every customer asked about below is one of `custs`: the days serve all or none.
    let days = days.filter(|x| custs.is_subset(&x.custs));
    let sources = Sources {
        indexes: cx.indexes,
        catalog: cx.catalog,
        store: cx.store,
        ids: Some(cx.ids),
    };
    let (sure, maybe) = within(&sources, &plan.root, &custs, days);
    let (lower, unresolved) = next_from_spans_with(cx, ask.fp, &custs, now, days);
    let read = (&maybe - &sure) | unresolved;
    let asked = &custs - &read;
    let next = asked.iter().map(|c| (c, lower.get(&c).copied())).collect();
    DueAnswer {
        decided: SubsetAnswer {
            members: sure & &asked,
            next,
        },
        asked,
        read,
    }
}

/// Bounds of `node` for the customers of `d` only: `(sure, maybe)` with `sure ⊆ maybe ⊆ d`.
/// Nodes the indexes do not answer here leave all of `d` undecided.
fn within(
    s: &Sources<'_>,
    node: &Node,
    d: &RoaringBitmap,
    days: Option<&DueDays>,
) -> (RoaringBitmap, RoaringBitmap) {
    if d.is_empty() {
        return (RoaringBitmap::new(), RoaringBitmap::new());
    }
    let undecided = || (RoaringBitmap::new(), d.clone());
    match &node.kind {
        NodeKind::Everyone => (d.clone(), d.clone()),
        NodeKind::Not(inner) => {
            let (sure, maybe) = within(s, inner, d, days);
            (d - &maybe, d - &sure)
        }
        NodeKind::And(items) => {
            // Each item is asked only about those the items before may still let through.
            let (mut sure, mut maybe) = (d.clone(), d.clone());
            for n in items {
                let (s_n, m_n) = within(s, n, &maybe, days);
                sure &= &s_n;
                maybe = m_n;
            }
            sure &= &maybe;
            (sure, maybe)
        }
        NodeKind::Or(items) => {
            // Each item is asked only about those no item before surely lets through.
            let (mut sure, mut maybe, mut rest) =
                (RoaringBitmap::new(), RoaringBitmap::new(), d.clone());
            for n in items {
                let (s_n, m_n) = within(s, n, &rest, days);
                rest -= &s_n;
                sure |= s_n;
                maybe |= m_n;
            }
            maybe |= &sure;
            (sure, maybe)
        }
        NodeKind::Trait { .. } => {
            let b = s.bounds(node);
            (b.sure & d, b.maybe & d)
        }
        NodeKind::Event(e) if plain_presence(e) => presence_within(s, e, d, days),
        NodeKind::Audience { inner, .. } => within(s, inner, d, days),
        NodeKind::Computed(c) => match &c.expanded {
            Some(x) => within(s, x, d, days),
            None => undecided(),
        },
        NodeKind::List { members, .. } => {
            let m = &**members & d;
            (m.clone(), m)
        }
        // Counts and aggregates without a filter, for not too many customers: each one's
        // figures from the kept totals and the cut days (`figures.rs`), where they serve.
        NodeKind::Event(e) if figures::serves(e) && d.len() < FIGURES_UNTIL => {
            let listed = e.event.and_then(|id| days?.event(id));
            figures::within(s.indexes, e, d, listed).unwrap_or_else(|| engine_bounds(s, node, d))
        }
        _ => engine_bounds(s, node, d),
    }
}

/// Counts, aggregates, filters, sequences, `first`/`last`: the engine's bounds over everyone,
/// when enough customers are asked about to be worth them (a count's rollups decide most
/// customers; reading each costs far more than a bitmap); else all of `d` undecided.
fn engine_bounds(
    s: &Sources<'_>,
    node: &Node,
    d: &RoaringBitmap,
) -> (RoaringBitmap, RoaringBitmap) {
    if d.len() >= WHOLE_BOUNDS_FROM {
        let b = s.bounds(node);
        (b.sure & d, b.maybe & d)
    } else {
        (RoaringBitmap::new(), d.clone())
    }
}

/// Up to how many customers asked about a count or an aggregate [`within`] answers them one by
/// one from their figures (a few binary searches each) rather than by the engine's bounds.
const FIGURES_UNTIL: u64 = 4096;

/// From how many customers asked about a node [`within`] does not answer itself is given the
/// engine's bounds over everyone instead of being left to be read.
const WHOLE_BOUNDS_FROM: u64 = 128;

/// Whether an event condition is presence alone: any matching event in the window, no filter.
fn plain_presence(e: &EventNode) -> bool {
    e.filter.is_none() && e.frequency.holds_for_any_presence() && !e.frequency.holds_for_none()
}

/// Who of `d` has the event in its window: whole days from the day bitmaps, a cut day from the
/// count rollups' spans (all of the day's events inside the window's part: in; all outside:
/// out; else undecided).
fn presence_within(
    s: &Sources<'_>,
    e: &EventNode,
    d: &RoaringBitmap,
    days: Option<&DueDays>,
) -> (RoaringBitmap, RoaringBitmap) {
    let nobody = (RoaringBitmap::new(), RoaringBitmap::new());
    let Some((event, ei)) = e
        .event
        .and_then(|id| Some((id, s.indexes.event_index(id)?)))
    else {
        return nobody;
    };
    let Some(win) = WindowDays::of(e.from, e.to) else {
        return nobody;
    };
    let listed = e.event.and_then(|id| days?.event(id));
    let mut sure = RoaringBitmap::new();
    let mut rest = d.clone();
    if let (Some((a, b)), Some(listed)) = (
        win.whole,
        listed.filter(|l| win.whole.is_some_and(|w| l.covers(w.0))),
    ) {
        // Each customer's own days, listed once for every audience due at this tick.
        sure.extend(d.iter().filter(|&c| listed.first_in(c, a, b).is_some()));
        rest -= &sure;
    } else if let Some((a, b)) = win.whole {
        let hit = DayPieces::new(&Kept(s.store), (event, ei), (a, b), b).present(&rest);
        rest -= &hit;
        sure |= hit;
    }
    let mut unsure = RoaringBitmap::new();
    for &(day, a, b) in &win.edges {
        let on = day_customers(ei, day, &rest);
        if on.is_empty() {
            continue;
        }
        let Some(found) = spans(ei, day, &on) else {
            unsure |= on;
            continue;
        };
        let mut listed = RoaringBitmap::new();
        for (c, first, last) in found {
            listed.insert(c);
            match side_capped(first, last, (a, b), day, ei.latest) {
                Side::In => {
                    sure.insert(c);
                }
                Side::Out => {}
                Side::Both => {
                    unsure.insert(c);
                }
            }
        }
        // In the day's bitmap but not its list: not expected, and left undecided.
        unsure |= on - listed;
    }
    let maybe = &sure | &unsure;
    (sure, maybe)
}

/// The customers of `d` with the event on `day`.
fn day_customers(ei: &EventIndex, day: u32, d: &RoaringBitmap) -> RoaringBitmap {
    ei.days
        .get(&day)
        .map(|bm| and_few(d, bm))
        .unwrap_or_default()
}

/// An event's days `a..=b` cut into pieces for a pass over them for some customers: the aligned
/// runs of days whose unions are kept (`crate::index::presence`: loaded or built the first
/// time), each passed over whole by the customers not in its union, and the days between them,
/// looked at one by one. A pass over a long window for a few customers then costs a look-up per
/// run instead of one per day (at a million customers each look-up in a day's bitmap is a few
/// cache misses). Windows shorter than [`RUNS_FROM`] days are all single days, and so is every
/// day after `until` (the open day, written to by the writes: its runs would be built again at
/// each) or from the one holding the event's latest stored event on.
struct DayPieces<'a> {
    ei: &'a EventIndex,
    a: u32,
    b: u32,
    runs: Vec<(u32, u32, Arc<RunUnion>)>,
}

impl<'a> DayPieces<'a> {
    fn new(
        kept: &dyn DerivedStore,
        (event, ei): (u32, &'a EventIndex),
        (a, b): (u32, u32),
        until: u32,
    ) -> DayPieces<'a> {
        let last = b.min(until).min(day_of(ei.latest).saturating_sub(1));
        let runs = if last >= a && last - a + 1 >= RUNS_FROM {
            ei.presence_runs
                .runs_within((kept, event), &ei.days, &ei.counts, a, last)
        } else {
            Vec::new()
        };
        DayPieces { ei, a, b, runs }
    }

    /// The pieces in day order: (first day, last day, the union when a run).
    fn pieces(&self) -> Vec<(u32, u32, Option<&RoaringBitmap>)> {
        let mut out = Vec::with_capacity(2 * self.runs.len() + 1);
        let mut d = self.a;
        for (first, last, r) in &self.runs {
            if *first > d {
                out.push((d, first - 1, None));
            }
            out.push((*first, *last, Some(r.members())));
            d = last + 1;
        }
        if d <= self.b {
            out.push((d, self.b, None));
        }
        out
    }

    /// Who of `d` has the event on any of the days.
    fn present(&self, d: &RoaringBitmap) -> RoaringBitmap {
        let mut rest = d.clone();
        let mut found = RoaringBitmap::new();
        for (first, last, union) in self.pieces() {
            match union {
                Some(u) => {
                    let hit = and_few(&rest, u);
                    rest -= &hit;
                    found |= hit;
                }
                None => {
                    for (_, bm) in self.ei.days.range(first..=last) {
                        let hit = and_few(&rest, bm);
                        if !hit.is_empty() {
                            rest -= &hit;
                            found |= hit;
                            if rest.is_empty() {
                                break;
                            }
                        }
                    }
                }
            }
            if rest.is_empty() {
                break;
            }
        }
        found
    }

    /// Calls `f(day, hit, rest)` for each day with the event (in day order, or from the last
    /// day back with `rev`) where `hit`, the customers of `rest` with the event that day, is not
    /// empty; `f` takes out of `rest` the customers it is done with. Stops when `rest` is empty.
    /// The same calls as a pass over every day's bitmap: a run is passed over only by customers
    /// with none of its days.
    fn each_hit(
        &self,
        rest: &mut RoaringBitmap,
        rev: bool,
        mut f: impl FnMut(u32, RoaringBitmap, &mut RoaringBitmap),
    ) {
        let mut pieces = self.pieces();
        if rev {
            pieces.reverse();
        }
        for (first, last, union) in pieces {
            if rest.is_empty() {
                return;
            }
            // Those of `rest` who may have the event in the piece.
            let mut cand = match union {
                Some(u) => and_few(rest, u),
                None => rest.clone(),
            };
            if cand.is_empty() {
                continue;
            }
            let mut visit = |day: u32, bm: &RoaringBitmap| {
                let hit = and_few(&cand, bm);
                if !hit.is_empty() {
                    let before = rest.len();
                    f(day, hit, rest);
                    if rest.len() != before {
                        cand &= &*rest;
                    }
                }
                !cand.is_empty()
            };
            let days = self.ei.days.range(first..=last);
            if rev {
                for (&day, bm) in days.rev() {
                    if !visit(day, bm) {
                        break;
                    }
                }
            } else {
                for (&day, bm) in days {
                    if !visit(day, bm) {
                        break;
                    }
                }
            }
        }
    }
}

/// From how many days long a window's pass over its day bitmaps goes by [`DayPieces`]' runs.
const RUNS_FROM: u32 = 16;

/// `few & bm`: by a look-up in `bm` per customer when `few` holds at most [`FEW`] (a write's
/// customers left to one audience, a few due ones), which costs less than intersecting `bm`'s
/// containers whole and allocates nothing when none is in `bm`; else the intersection.
fn and_few(few: &RoaringBitmap, bm: &RoaringBitmap) -> RoaringBitmap {
    if few.len() <= FEW {
        few.iter().filter(|&c| bm.contains(c)).collect()
    } else {
        few & bm
    }
}

/// Up to how many customers [`and_few`] looks each one up.
const FEW: u64 = 16;

/// The customers of `custs` grouped by the day `day_of` gives each (those it gives none left out).
fn by_day(
    custs: &RoaringBitmap,
    day_of: impl Fn(u32) -> Option<u32>,
) -> BTreeMap<u32, RoaringBitmap> {
    let mut out: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
    for c in custs {
        if let Some(day) = day_of(c) {
            out.entry(day).or_default().insert(c);
        }
    }
    out
}

/// Where a customer's events of one day stand against a window's cut (`now - len`), from the
/// first and last two-second spans of the day that starts at `start`.
enum AgainstCut {
    /// Every event of the day is before the cut.
    Before,
    /// The first event is at or after the cut, and leaves the window at this instant (after
    /// `now`).
    Leaves(Timestamp),
    /// The spans cannot tell: the customer is read.
    Unknown,
}

fn against_cut(start: i64, first: u16, last: u16, cut: i64, len: i64, now: i64) -> AgainstCut {
    let first_lo = start + i64::from(first) * SPAN_UNIT_MS;
    let last_hi = start + i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1;
    if last_hi < cut {
        AgainstCut::Before
    } else if first_lo >= cut && first_lo.saturating_add(len) > now {
        AgainstCut::Leaves(first_lo.saturating_add(len))
    } else {
        AgainstCut::Unknown
    }
}

/// The span of each customer of `custs` on `day` (their events lie in `[first·2 s, last·2 s +
/// 2 s)` of the day), merged over its partial entries, in customer order; `None` when the day
/// has no count rollup. Customers without an entry are left out.
fn spans(ei: &EventIndex, day: u32, custs: &RoaringBitmap) -> Option<Vec<(u32, u16, u16)>> {
    let list: &DayList<DayCount> = ei.counts.get(&day)?;
    let (head, tail) = list.parts();
    let mut out: Vec<(u32, u16, u16)> = Vec::with_capacity(custs.len() as usize);
    if custs.len() as usize * 16 >= head.len() {
        for x in head.iter().filter(|x| custs.contains(x.cust)) {
            out.push((x.cust, x.first, x.last));
        }
    } else {
        for c in custs {
            if let Ok(i) = head.binary_search_by_key(&c, |x| x.cust) {
                out.push((c, head[i].first, head[i].last));
            }
        }
    }
    for x in tail.iter().filter(|x| custs.contains(x.cust)) {
        match out.binary_search_by_key(&x.cust, |o| o.0) {
            Ok(i) => {
                out[i].1 = out[i].1.min(x.first);
                out[i].2 = out[i].2.max(x.last);
            }
            Err(i) => out.insert(i, (x.cust, x.first, x.last)),
        }
    }
    Some(out)
}

/// Of `undecided`, customers with the event on the open day whose span reaches past `now`,
/// those who may have one after `now`. When they are many (at least a quarter of the day's
/// customers: events written at the clock's instant, which a two-second span cannot tell from
/// a later one) the day's event columns say exactly (built once for every audience reading the
/// event, until the day's count list changes); otherwise, or when the columns are not to be
/// built yet, all of them.
fn later_today(
    cx: &Context<'_>,
    (event, ei): (u32, &EventIndex),
    open: u32,
    now: Timestamp,
    undecided: RoaringBitmap,
) -> RoaringBitmap {
    let on_day = ei.days.get(&open).map_or(0, |b| b.len());
    if undecided.len() < COLUMNS_FROM || undecided.len() * 4 < on_day {
        return undecided;
    }
    match super::columns::later_on_day(cx.store, (event, ei), open, now) {
        Ok(Some(later)) => undecided & later,
        // A failure to build them leaves the customers to be read, which reports it.
        Ok(None) | Err(_) => undecided,
    }
}

/// From how many customers [`later_today`] asks the day's event columns.
const COLUMNS_FROM: u64 = 64;

/// For the customers of `d`, a lower bound of the next instant after `now` at which the answer
/// of a rule with footprint `fp` may change by time alone (absent: none), as
/// [`footprint::next_candidates`] finds it exactly, from the day bitmaps and the count rollups'
/// spans; and the customers for whom the spans cannot give one (to be read).
///
/// Per event of the rule and relative length `L` (cut = *now* − `L`): where only the latest
/// event counts, the latest event up to *now* at or after the cut puts the candidate at its
/// time + `L`, so the last span of the latest day with the event bounds it; otherwise the first
/// event at or after the cut does, bounded by the first span of the first day with one at or
/// after the cut. A span within which the candidate may fall at or before *now*, a cut day whose
/// events lie both sides of the cut (where the first event at or after it is not known), and an
/// event that may be after *now* (whose own time is a candidate) leave the customer to be read.
pub(crate) fn next_from_spans(
    cx: &Context<'_>,
    fp: &Footprint,
    d: &RoaringBitmap,
    now: Timestamp,
) -> (FastMap<u32, Timestamp>, RoaringBitmap) {
    next_from_spans_with(cx, fp, d, now, None)
}

/// [`next_from_spans`], with the customers' days from `days` where it lists them (the same days
/// as the day bitmaps', looked up per customer instead of a pass over the bitmaps).
fn next_from_spans_with(
    cx: &Context<'_>,
    fp: &Footprint,
    d: &RoaringBitmap,
    now: Timestamp,
    days: Option<&DueDays>,
) -> (FastMap<u32, Timestamp>, RoaringBitmap) {
    let mut lower: FastMap<u32, Timestamp> = FastMap::default();
    if !fp.moves_with_time() {
        return (lower, RoaringBitmap::new());
    }
    // Property times place candidates the day bitmaps know nothing of; and near the epoch the
    // windows reach before day 0.
    if fp.relative_props || now.saturating_sub(fp.longest()) < 2 * DAY_MS {
        return (lower, d.clone());
    }
    let mut unresolved = time_traits(cx, fp) & d;
    let open = day_of(now);
    let by_event = footprint::by_event(&[fp], cx.catalog);
    let mut put = |c: u32, t: Timestamp| {
        lower.entry(c).and_modify(|x| *x = (*x).min(t)).or_insert(t);
    };
    for e in footprint::event_ids(fp, cx.catalog) {
        let Some(ei) = cx.indexes.event_index(e) else {
            continue;
        };
        // An event after *now* is a candidate itself (it enters the windows): read. None is
        // when no stored event of the kind is later than *now* (events written at the clock's
        // instant fill the span holding it, but are not after it).
        let later_stored = ei.latest > now;
        if later_stored {
            for (_, bm) in ei.days.range(open.saturating_add(1)..) {
                unresolved |= d & bm;
            }
        }
        let today = if later_stored {
            day_customers(ei, open, d)
        } else {
            RoaringBitmap::new()
        };
        if !today.is_empty() {
            let at = now - day_start(open);
            let undecided = match spans(ei, open, &today) {
                Some(found) => {
                    let mut past = RoaringBitmap::new();
                    for (c, _, last) in found {
                        if i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1 <= at {
                            past.insert(c);
                        }
                    }
                    today - past
                }
                None => today,
            };
            unresolved |= later_today(cx, (e, ei), open, now, undecided);
        }
        let latest: &[i64] = by_event
            .get(&e)
            .and_then(|r| r.first())
            .map_or(&[], |(_, l)| &l[..]);
        for &len in &fp.lengths {
            let cut = now.saturating_sub(len);
            let cut_day = day_of(cut);
            let mut rest = d - &unresolved;
            let listed = days.and_then(|x| x.event(e)).filter(|l| l.covers(cut_day));
            if latest.contains(&len) {
                // The latest day with the event, from today back to the cut's day: from each
                // customer's listed days, or a pass over the day bitmaps.
                let hits: Vec<(u32, RoaringBitmap)> = match listed {
                    Some(listed) => by_day(&rest, |c| listed.last_in(c, cut_day, open))
                        .into_iter()
                        .rev()
                        .collect(),
                    None => {
                        let mut hits = Vec::new();
                        DayPieces::new(
                            &Kept(cx.store),
                            (e, ei),
                            (cut_day, open),
                            open.saturating_sub(1),
                        )
                        .each_hit(&mut rest, true, |day, hit, rest| {
                            *rest -= &hit;
                            hits.push((day, hit));
                        });
                        hits
                    }
                };
                for (day, hit) in hits {
                    let Some(found) = spans(ei, day, &hit) else {
                        unresolved |= hit;
                        continue;
                    };
                    let start = day_start(day);
                    let mut listed = RoaringBitmap::new();
                    for (c, _, last) in found {
                        listed.insert(c);
                        let lo = start + i64::from(last) * SPAN_UNIT_MS;
                        let hi = lo + SPAN_UNIT_MS - 1;
                        if lo.saturating_add(len) > now {
                            put(c, lo.saturating_add(len));
                        } else if hi.saturating_add(len).saturating_add(1) > now {
                            unresolved.insert(c);
                        }
                    }
                    unresolved |= hit - listed;
                }
            } else if let Some(days) = listed {
                // The first day with the event at or after the cut, from each customer's listed
                // days; one whose events of the cut's day all lie before the cut moves on to its
                // next day.
                let mut pending = by_day(&rest, |c| days.first_in(c, cut_day, open));
                while let Some((day, hit)) = pending.pop_first() {
                    let Some(found) = spans(ei, day, &hit) else {
                        unresolved |= hit;
                        continue;
                    };
                    let start = day_start(day);
                    let mut listed = RoaringBitmap::new();
                    for (c, first, last) in found {
                        listed.insert(c);
                        match against_cut(start, first, last, cut, len, now) {
                            // Every event of the day is before the cut: a later day decides.
                            AgainstCut::Before => {
                                if let Some(next) = days.first_in(c, day.saturating_add(1), open) {
                                    pending.entry(next).or_default().insert(c);
                                }
                            }
                            AgainstCut::Leaves(at) => put(c, at),
                            AgainstCut::Unknown => {
                                unresolved.insert(c);
                            }
                        }
                    }
                    unresolved |= hit - listed;
                }
            } else {
                // The first day with the event at or after the cut.
                let pieces = DayPieces::new(
                    &Kept(cx.store),
                    (e, ei),
                    (cut_day, open),
                    open.saturating_sub(1),
                );
                pieces.each_hit(&mut rest, false, |day, hit, rest| {
                    let Some(found) = spans(ei, day, &hit) else {
                        *rest -= &hit;
                        unresolved |= hit;
                        return;
                    };
                    let start = day_start(day);
                    let mut listed = RoaringBitmap::new();
                    for (c, first, last) in found {
                        listed.insert(c);
                        match against_cut(start, first, last, cut, len, now) {
                            // Every event of the day is before the cut: a later day decides.
                            AgainstCut::Before => continue,
                            AgainstCut::Leaves(at) => put(c, at),
                            AgainstCut::Unknown => {
                                unresolved.insert(c);
                            }
                        }
                        rest.remove(c);
                    }
                    let missing = hit - listed;
                    *rest -= &missing;
                    unresolved |= missing;
                });
            }
        }
    }
    (lower, unresolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::derived::NoStore;

    /// An event's index with each of 60 customers on random days of 0..200, the latest event
    /// on day 199.
    fn index(seed: u64) -> EventIndex {
        let mut seed = seed;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut ei = EventIndex::default();
        for c in 0..60u32 {
            // Some customers on many days, some on few, some on none.
            let n = [0, 1, 3, 10, 40][c as usize % 5];
            for _ in 0..n {
                let day = next(200) as u32;
                ei.days.entry(day).or_default().insert(c);
                ei.counts.entry(day).or_default().add(DayCount {
                    cust: c,
                    count: 1,
                    first: 0,
                    last: 0,
                });
            }
        }
        ei.days.entry(199).or_default().insert(0);
        ei.counts.entry(199).or_default().add(DayCount {
            cust: 0,
            count: 1,
            first: 0,
            last: 0,
        });
        ei.latest = day_start(199) + 1000;
        ei
    }

    /// What `f` does with a day's customers: takes out all of them, or only the even ones (the
    /// odd ones go on to later days, as a customer whose events of the cut day are all before
    /// the cut does).
    fn take(all: bool) -> impl FnMut(u32, RoaringBitmap, &mut RoaringBitmap) {
        move |_, hit, rest| {
            for c in &hit {
                if all || c % 2 == 0 {
                    rest.remove(c);
                }
            }
        }
    }

    #[test]
    fn pieces_make_the_same_calls_as_a_pass_over_every_day() {
        for seed in 0..6 {
            let ei = index(seed);
            for (a, b) in [
                (0u32, 199u32),
                (3, 150),
                (16, 31),
                (5, 20),
                (100, 199),
                (0, 12),
                (64, 191),
            ] {
                for until in [b, b.saturating_sub(1), a + 20] {
                    let pieces = DayPieces::new(&NoStore, (1, &ei), (a, b), until);
                    if b - a >= 40 && until >= a + 20 {
                        assert!(!pieces.runs.is_empty(), "{a}..={b}: runs are used");
                    }
                    for custs in [
                        (0..60).collect::<RoaringBitmap>(),
                        (0..60).filter(|c| c % 7 == 3).collect(),
                        [4u32, 9, 13].into_iter().collect(),
                    ] {
                        // Present on any day.
                        let naive: RoaringBitmap = ei
                            .days
                            .range(a..=b)
                            .map(|(_, bm)| bm & &custs)
                            .fold(RoaringBitmap::new(), |x, y| x | y);
                        assert_eq!(pieces.present(&custs), naive, "{a}..={b}");
                        for rev in [false, true] {
                            for all in [true, false] {
                                let mut calls = Vec::new();
                                let mut rest = custs.clone();
                                let mut f = take(all);
                                pieces.each_hit(&mut rest, rev, |day, hit, rest| {
                                    calls.push((day, hit.clone()));
                                    f(day, hit, rest);
                                });
                                let mut want = Vec::new();
                                let mut left = custs.clone();
                                let mut g = take(all);
                                let days: Vec<(u32, &RoaringBitmap)> =
                                    ei.days.range(a..=b).map(|(d, bm)| (*d, bm)).collect();
                                let order: Vec<_> = if rev {
                                    days.into_iter().rev().collect()
                                } else {
                                    days
                                };
                                for (day, bm) in order {
                                    if left.is_empty() {
                                        break;
                                    }
                                    let hit = bm & &left;
                                    if !hit.is_empty() {
                                        want.push((day, hit.clone()));
                                        g(day, hit, &mut left);
                                    }
                                }
                                assert_eq!(calls, want, "{a}..={b} until {until} rev {rev}");
                                assert_eq!(rest, left);
                            }
                        }
                    }
                }
            }
        }
    }
}
