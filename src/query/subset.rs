//! A rule's answer for a chosen set of customers at one *now*, and for each of them the next
//! instant at which time alone may change it: what keeping a saved audience true needs after a
//! write (the customers it touched) or when timers fall due.
//!
//! Few customers are checked one by one on their stored data; many (a large import, a new
//! audience) first get the plan's bounds from the bitmaps, so only the customers in between are
//! read; their next instants come from the day bitmaps and the count rollups' spans, and only
//! the customers those cannot place are read for them.
//!
//! This module reads the indexes and storage; it never writes.

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;

use crate::index::rollup::SPAN_UNIT_MS;
use crate::index::{EventIndex, Indexes};
use crate::model::time::{day_of, day_start, Timestamp, DAY_MS};
use crate::model::value::ValueType;
use crate::rules::Rule;
use crate::storage::{Catalog, IdMap, Store};

use super::due;
use super::exec::{self, holds, CustomerData, Sources};
use super::footprint::{self, Footprint};
use super::plan::{self, Plan, SavedRules};

/// The answer for each customer asked about.
#[derive(Debug, Default)]
pub(crate) struct SubsetAnswer {
    /// Those who satisfy the rule.
    pub members: RoaringBitmap,
    /// For each customer asked about (who still exists), the next instant after *now* at which
    /// the answer may change by time alone, if any.
    pub next: Vec<(u32, Option<Timestamp>)>,
}

/// What the rule is evaluated against.
pub(crate) struct Context<'a> {
    pub store: &'a Store,
    pub catalog: &'a Catalog,
    pub indexes: &'a Indexes,
    /// Every customer's external id (for `bucket(NAME)`'s kept buckets).
    pub ids: &'a IdMap,
    pub saved: &'a dyn SavedRules,
    /// From how many customers asked about the bitmaps are worth computing first
    /// ([`crate::Config::audience_bulk_from`]).
    pub bulk_from: u64,
}

/// Who satisfies `rule` at `now`: the query engine's own path (bounds, then the exact check
/// of the customers between them), with `cx`'s saved rules; no next instants are computed.
pub(crate) fn members(cx: &Context<'_>, rule: &Rule, now: Timestamp) -> Result<RoaringBitmap> {
    let plan = plan::plan(rule, cx.catalog, cx.indexes, cx.saved, now)?;
    let sources = Sources {
        indexes: cx.indexes,
        catalog: cx.catalog,
        store: cx.store,
        ids: Some(cx.ids),
    };
    super::predictive::prepare(&plan.root, &sources)?;
    let bounds = sources.bounds(&plan.root);
    exec::resolve(&plan, &bounds, cx.store)
}

/// Whether a customer with no stored data (no traits, no events) satisfies `rule` at `now`:
/// what a new customer's answer is for an audience whose rule reads nothing it wrote. `true`
/// when no unused id is at hand to ask with (the cautious answer: re-evaluate).
pub(crate) fn holds_without_data(cx: &Context<'_>, rule: &Rule, now: Timestamp) -> Result<bool> {
    let nobody = u32::MAX;
    if cx.indexes.everyone.contains(nobody) {
        return Ok(true);
    }
    let plan = plan::plan(rule, cx.catalog, cx.indexes, cx.saved, now)?;
    let mut data = CustomerData::new(cx.store, plan.events_from);
    data.load(nobody);
    holds(&plan.root, None, &mut data)
}

/// One rule to answer for some customers: its footprint, and whom to answer for.
pub(crate) struct Ask<'r> {
    pub rule: &'r Rule,
    pub fp: &'r Footprint,
    pub custs: &'r RoaringBitmap,
}

/// Where a customer's events must be read from to check `plan` and find its next instant.
fn read_from(plan: &Plan, fp: &Footprint, now: Timestamp) -> Option<Timestamp> {
    if !fp.moves_with_time() {
        return plan.events_from;
    }
    let candidates = footprint::candidates_read_from(fp, now);
    Some(plan.events_from.map_or(candidates, |f| f.min(candidates)))
}

/// Evaluates the rule of `ask` at `now` for the customers asked about that exist. Many
/// customers ([`Context::bulk_from`] or more) are answered as the query engine answers: the
/// bounds from the bitmaps, then only the customers between them read; their next instants are
/// placed by day from the day bitmaps ([`Schedule`]) and, for those whose answer may move on
/// the open day, bounded from below by the count rollups' spans ([`due::next_from_spans`]: at
/// most two seconds early, never late), so only the customers the spans cannot place are read
/// for them. Fewer customers are checked one by one, as [`answer_each`] does.
pub(crate) fn answer(cx: &Context<'_>, ask: &Ask<'_>, now: Timestamp) -> Result<SubsetAnswer> {
    let custs = ask.custs & &cx.indexes.everyone;
    if custs.len() < cx.bulk_from.max(1) {
        let one = Ask {
            custs: &custs,
            ..*ask
        };
        return Ok(answer_each(cx, std::slice::from_ref(&one), now)?
            .pop()
            .unwrap_or_default());
    }
    let (rule, fp) = (ask.rule, ask.fp);
    let plan = plan::plan(rule, cx.catalog, cx.indexes, cx.saved, now)?;
    let events = footprint::event_ids(fp, cx.catalog);
    let bounds = Sources {
        indexes: cx.indexes,
        catalog: cx.catalog,
        store: cx.store,
        ids: Some(cx.ids),
    }
    .bounds(&plan.root);
    // Only the customers between the bounds are read to decide them.
    let gap = &(&bounds.maybe - &bounds.sure) & &custs;

    // Next instants without reading, where the indexes place them.
    let mut placed: Vec<(u32, Option<Timestamp>)> = Vec::with_capacity(custs.len() as usize);
    let mut unscheduled = custs.clone();
    let mut read_next = RoaringBitmap::new();
    if fp.moves_with_time() {
        let s = Schedule::from_bitmaps(cx, fp, &events, now);
        let exact = &s.exact & &custs;
        unscheduled -= &exact;
        let (lower, unresolved) = due::next_from_spans(cx, fp, &exact, now);
        placed.extend(
            (&exact - &unresolved)
                .iter()
                .map(|c| (c, lower.get(&c).copied())),
        );
        read_next = unresolved;
        for (day, set) in &s.by_day {
            let set = set & &unscheduled;
            unscheduled -= &set;
            placed.extend(set.iter().map(|c| (c, Some(day_start(*day)))));
        }
    }
    placed.extend(unscheduled.iter().map(|c| (c, None)));

    let read_from = read_from(&plan, fp, now);
    let ids: Vec<u32> = (&gap | &read_next).iter().collect();
    let by_event = footprint::by_event(&[fp], cx.catalog);
    let parts: Vec<SubsetAnswer> = ids
        .par_chunks(super::chunk_len(ids.len()))
        .map(|ids| {
            // The customer's events decoded once serve the rule and its next instant.
            let mut data = CustomerData::shared(cx.store, read_from);
            let mut out = SubsetAnswer::default();
            let mut next = [None];
            for &cust in ids {
                data.load(cust);
                if gap.contains(cust) && holds(&plan.root, Some(&bounds), &mut data)? {
                    out.members.insert(cust);
                }
                if read_next.contains(cust) {
                    footprint::next_candidates(
                        &[fp],
                        &by_event,
                        &[true],
                        &[0],
                        &mut data,
                        now,
                        &mut next,
                    )?;
                    out.next.push((cust, next[0]));
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let mut all = merge(parts, custs.len() as usize);
    all.members |= &bounds.sure & &custs;
    all.next.extend(placed);
    Ok(all)
}

/// Evaluates several rules at `now`, each for its customers, one customer at a time: a
/// customer's data is read once for every rule that asks about it (what a write touching a
/// few customers, with many saved audiences, needs), its events from where the longest window
/// of those rules needs them. Returns one answer per ask, in order.
pub(crate) fn answer_each(
    cx: &Context<'_>,
    asks: &[Ask<'_>],
    now: Timestamp,
) -> Result<Vec<SubsetAnswer>> {
    struct Prepared<'r> {
        plan: Plan,
        fp: &'r Footprint,
        custs: RoaringBitmap,
    }
    // Asks about nobody who exists (a clock step's audiences whose due customers the indexes
    // all decided) are answered empty: their rules are not planned, and their windows do not
    // widen what every customer read is read from.
    let named: Vec<usize> = (0..asks.len())
        .filter(|&i| !asks[i].custs.is_disjoint(&cx.indexes.everyone))
        .collect();
    if named.len() < asks.len() {
        let some: Vec<Ask<'_>> = named
            .iter()
            .map(|&i| Ask {
                rule: asks[i].rule,
                fp: asks[i].fp,
                custs: asks[i].custs,
            })
            .collect();
        let mut out: Vec<SubsetAnswer> = asks.iter().map(|_| SubsetAnswer::default()).collect();
        if !some.is_empty() {
            for (i, a) in named.into_iter().zip(answer_each(cx, &some, now)?) {
                out[i] = a;
            }
        }
        return Ok(out);
    }
    let prepared: Vec<Prepared<'_>> = asks
        .iter()
        .map(|a| {
            Ok(Prepared {
                plan: plan::plan(a.rule, cx.catalog, cx.indexes, cx.saved, now)?,
                fp: a.fp,
                custs: a.custs & &cx.indexes.everyone,
            })
        })
        .collect::<Result<_>>()?;
    // Each customer's events are read from where the asks that name it need them.
    let from: Vec<Option<Timestamp>> = prepared
        .iter()
        .map(|p| read_from(&p.plan, p.fp, now))
        .collect();
    // Every (customer, ask) pair, by customer: each customer is read once and answered for
    // the asks that name it, at a cost that follows the pairs, not customers times asks.
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        pairs.extend(p.custs.iter().map(|c| (c, i as u32)));
    }
    pairs.sort_unstable();
    let by_customer: Vec<&[(u32, u32)]> = pairs.chunk_by(|a, b| a.0 == b.0).collect();
    // The asks by the events their footprints read, for one pass over each customer's events
    // that finds every ask's next instant.
    let fps: Vec<&Footprint> = prepared.iter().map(|p| p.fp).collect();
    let by_event = footprint::by_event(&fps, cx.catalog);
    // Each task's answers as (ask, customer, member, next instant), in customer order.
    type Answered = (u32, u32, bool, Option<Timestamp>);
    let parts: Vec<Vec<Answered>> = by_customer
        .par_chunks(super::chunk_len(by_customer.len()))
        .map(|custs| {
            let mut data = CustomerData::shared(cx.store, None);
            let mut out: Vec<Answered> = Vec::new();
            let mut timed = vec![false; prepared.len()];
            let mut listed: Vec<usize> = Vec::new();
            let mut next = vec![None; prepared.len()];
            for asks in custs {
                let cust = asks[0].0;
                let read_from = asks.iter().filter_map(|&(_, i)| from[i as usize]).min();
                data.load_from(cust, read_from);
                let first = out.len();
                listed.clear();
                for &(_, i) in *asks {
                    let p = &prepared[i as usize];
                    if p.fp.moves_with_time() {
                        timed[i as usize] = true;
                        listed.push(i as usize);
                    }
                    let member = holds(&p.plan.root, None, &mut data)?;
                    out.push((i, cust, member, None));
                }
                footprint::next_candidates(
                    &fps, &by_event, &timed, &listed, &mut data, now, &mut next,
                )?;
                for a in &mut out[first..] {
                    let i = a.0 as usize;
                    if timed[i] {
                        a.3 = next[i];
                    }
                }
                for &i in &listed {
                    timed[i] = false;
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let mut members: Vec<Vec<u32>> = prepared.iter().map(|_| Vec::new()).collect();
    let mut next: Vec<Vec<(u32, Option<Timestamp>)>> = prepared
        .iter()
        .map(|p| Vec::with_capacity(p.custs.len() as usize))
        .collect();
    for (i, cust, member, at) in parts.into_iter().flatten() {
        if member {
            members[i as usize].push(cust);
        }
        next[i as usize].push((cust, at));
    }
    Ok(members
        .into_iter()
        .zip(next)
        .map(|(members, next)| SubsetAnswer {
            // Each ask's customers came in customer order.
            members: RoaringBitmap::from_sorted_iter(members)
                .expect("customers in increasing order"),
            next,
        })
        .collect())
}

/// Customers per parallel task: enough tasks to balance, few enough to keep each one's buffers.
fn merge(parts: Vec<SubsetAnswer>, customers: usize) -> SubsetAnswer {
    let mut all = SubsetAnswer {
        members: parts.iter().map(|p| &p.members).union(),
        next: Vec::with_capacity(customers),
    };
    for p in parts {
        all.next.extend(p.next);
    }
    all
}

/// For many customers at once, when their answers may next change by time alone, worked out
/// from the day bitmaps so that only a few customers' events are read.
///
/// An event on day `e` puts its candidate instants (see [`footprint::for_each_candidate`]) for
/// a relative length `d` on day `e + q` or `e + q + 1`, where `q` is `d` in whole days (`q = 0`
/// for the event's own time). So a customer whose events put no candidate day on the open day
/// (the day of *now*) has no candidate before the start of the earliest later candidate day:
/// waking it at that day's start, when [`crate::audience`]'s timers open the day and re-evaluate
/// it exactly, is early or on time, never late. Customers with a candidate day on the open day,
/// or with a date-time trait the rule names, are in `exact`: their instants are bounded by the
/// spans ([`due::next_from_spans`]) or found from their events.
///
/// Two refinements keep the exact set to the customers whose answer can move today: the event's
/// own time is a candidate only for an event after *now*, so of the days up to the open one only
/// the open day's customers who may have one (their two-second span reaches past *now*) count;
/// and for a length at which only the latest event counts ([`Footprint::latest_only`]) a
/// customer is placed by its latest day with the event, not its earliest (one with an event on
/// a day after the cut days is woken on that day + `q`, not re-evaluated today).
struct Schedule {
    /// Customers whose next instant is found within the open day (from the spans, or their
    /// stored data).
    exact: RoaringBitmap,
    /// The others with a candidate after the open day: woken at the start of these days.
    /// Disjoint from `exact` and from each other. Everyone else never changes by time alone.
    by_day: Vec<(u32, RoaringBitmap)>,
}

impl Schedule {
    fn from_bitmaps(cx: &Context<'_>, fp: &Footprint, events: &[u32], now: Timestamp) -> Schedule {
        if fp.relative_props {
            // A property's date-time, not the event's day, places its candidates.
            return Schedule {
                exact: horizon(cx, fp, events, now),
                by_day: Vec::new(),
            };
        }
        let open = day_of(now.max(0));
        let from = day_of(footprint::candidates_read_from(fp, now).max(0));
        let latest = footprint::by_event(&[fp], cx.catalog);
        let mut exact = time_traits(cx, fp);
        // Candidate days after the open one, as (day, customers): a customer is woken at the
        // earliest day it is listed under.
        let mut listed: Vec<(u32, &RoaringBitmap)> = Vec::new();
        let mut made: Vec<(u32, RoaringBitmap)> = Vec::new();
        for &e in events {
            let Some(ei) = cx.indexes.event_index(e) else {
                continue;
            };
            let days = &ei.days;
            let on = |d: Option<u32>| d.and_then(|d| days.get(&d));
            let (past, future) = today(ei, open, now);
            // The event's own time: only an event after *now* is a candidate, today or later.
            exact |= &future;
            listed.extend(days.range(open.saturating_add(1)..).map(|(d, b)| (*d, b)));
            let latest: &[i64] = latest
                .get(&e)
                .and_then(|r| r.first())
                .map_or(&[], |(_, l)| &l[..]);
            for &len in &fp.lengths {
                let q = u32::try_from(len / DAY_MS).unwrap_or(u32::MAX);
                let cut = [open.checked_sub(q.saturating_add(1)), open.checked_sub(q)];
                if q == 0 || !latest.contains(&len) {
                    // Every event's day e puts a candidate on day e + q or e + q + 1.
                    exact |= cut.into_iter().filter_map(on).union();
                    let first = (open.saturating_sub(q) + 1).max(from);
                    listed.extend(days.range(first..).map(|(d, b)| (d.saturating_add(q), b)));
                    continue;
                }
                // Only the latest event up to now counts (`Footprint::latest_only`): a customer
                // with an event on a later day than the cut days (today's up to now among
                // them) has its candidate on that day + q, after the open day.
                let mut later = past.clone();
                made.push((open.saturating_add(q), past.clone()));
                for d in (open.saturating_sub(q) + 1..open).rev() {
                    if d < from {
                        break;
                    }
                    if let Some(b) = days.get(&d) {
                        let set = b - &later;
                        later |= b;
                        if !set.is_empty() {
                            made.push((d.saturating_add(q), set));
                        }
                    }
                }
                exact |= cut.into_iter().filter_map(on).union() - &later;
            }
        }
        listed.extend(made.iter().map(|(d, b)| (*d, b)));
        listed.sort_unstable_by_key(|(d, _)| *d);
        let mut seen = exact.clone();
        let mut by_day = Vec::new();
        for run in listed.chunk_by(|a, b| a.0 == b.0) {
            let mut set = run.iter().map(|(_, b)| *b).union();
            set -= &seen;
            if !set.is_empty() {
                seen |= &set;
                by_day.push((run[0].0, set));
            }
        }
        Schedule { exact, by_day }
    }
}

/// Of the customers with the event on the open day: those with one certainly at or before
/// `now`, and those who may have one after it (the count rollups' two-second spans say so).
fn today(ei: &EventIndex, open: u32, now: Timestamp) -> (RoaringBitmap, RoaringBitmap) {
    let (mut past, mut future) = (RoaringBitmap::new(), RoaringBitmap::new());
    let at = now - day_start(open);
    match ei.counts.get(&open) {
        Some(list) => list.for_each(|x| {
            if i64::from(x.first) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1 <= at {
                past.insert(x.cust);
            }
            if i64::from(x.last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1 > at {
                future.insert(x.cust);
            }
        }),
        // No spans: anyone of the day may have a later event.
        None => future = ei.days.get(&open).cloned().unwrap_or_default(),
    }
    (past, future)
}

/// Customers with a date-time (or list) trait the rule names, when it has relative lengths:
/// such a trait's value is a candidate instant the day bitmaps know nothing of.
pub(super) fn time_traits(cx: &Context<'_>, fp: &Footprint) -> RoaringBitmap {
    let mut set = RoaringBitmap::new();
    if fp.lengths.is_empty() {
        return set;
    }
    let timed = ValueType::Time.bit() | ValueType::List.bit();
    for name in &fp.traits {
        let Some(t) = cx.catalog.trait_id(name) else {
            continue;
        };
        if cx.catalog.trait_types(t) & timed != 0 {
            if let Some(ti) = cx.indexes.trait_index(t) {
                set |= &ti.set;
            }
        }
    }
    set
}

/// The customers who can have an instant after `now` at which time changes their answer: those
/// with one of the rule's events from `now - longest - 1` on (any time, with relative property
/// tests), and those with a date-time trait the rule names, when it has relative lengths.
fn horizon(cx: &Context<'_>, fp: &Footprint, events: &[u32], now: Timestamp) -> RoaringBitmap {
    let from = footprint::candidates_read_from(fp, now);
    let from_day = u32::try_from(from.max(0) / DAY_MS).unwrap_or(u32::MAX);
    let mut parts: Vec<&RoaringBitmap> = Vec::new();
    for &e in events {
        if let Some(ei) = cx.indexes.event_index(e) {
            parts.extend(ei.days.range(from_day..).map(|(_, b)| b));
        }
    }
    parts.union() | time_traits(cx, fp)
}
