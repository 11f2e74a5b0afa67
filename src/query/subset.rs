//! A rule's answer for a chosen set of customers at one *now*, and for each of them the next
//! instant at which time alone may change it: what keeping a saved audience true needs after a
//! write (the customers it touched) or when timers fall due.
//!
//! Few customers are checked one by one on their stored data; many (a large import, a new
//! audience) first get the plan's bounds from the bitmaps, so only the customers in between are
//! read, and only customers with events near the rule's edges get their next instant computed.
//!
//! This module reads the indexes and storage; it never writes.

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;
use crate::index::Indexes;
use crate::model::time::{Timestamp, DAY_MS};
use crate::model::value::ValueType;
use crate::rules::Rule;
use crate::storage::{Catalog, Store};

use super::exec::{holds, CustomerData, Sources};
use super::footprint::{self, Footprint};
use super::plan::{self, SavedRules};

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
    pub saved: &'a dyn SavedRules,
}

/// The customers asked about from which on the bitmaps are worth computing first.
const BULK: u64 = 2048;

/// Evaluates `rule` (whose footprint is `fp`) at `now` for the customers in `custs` that exist.
pub(crate) fn answer(
    cx: &Context<'_>,
    rule: &Rule,
    fp: &Footprint,
    custs: &RoaringBitmap,
    now: Timestamp,
) -> Result<SubsetAnswer> {
    let plan = plan::plan(rule, cx.catalog, cx.saved, now)?;
    let events = footprint::event_ids(fp, cx.catalog);
    let custs = custs & &cx.indexes.everyone;
    if custs.is_empty() {
        return Ok(SubsetAnswer::default());
    }
    let timed = fp.moves_with_time();
    let bulk = custs.len() >= BULK;
    let bounds = bulk.then(|| {
        Sources {
            indexes: cx.indexes,
            catalog: cx.catalog,
        }
        .bounds(&plan.root)
    });
    let horizon = (bulk && timed).then(|| horizon(cx, fp, &events, now));
    let read_from = match (plan.events_from, timed) {
        (Some(f), true) => Some(f.min(footprint::candidates_read_from(fp, now))),
        (None, true) => Some(footprint::candidates_read_from(fp, now)),
        (f, false) => f,
    };

    let ids: Vec<u32> = custs.iter().collect();
    let chunk = (ids.len() / (rayon::current_num_threads() * 8)).clamp(64, 4096);
    let parts: Vec<SubsetAnswer> = ids
        .par_chunks(chunk)
        .map(|ids| {
            let mut data = CustomerData::new(cx.store, read_from);
            let mut out = SubsetAnswer {
                members: RoaringBitmap::new(),
                next: Vec::with_capacity(ids.len()),
            };
            for &cust in ids {
                data.load(cust);
                if holds(&plan.root, bounds.as_ref(), &mut data)? {
                    out.members.insert(cust);
                }
                let next = if timed && horizon.as_ref().is_none_or(|h| h.contains(cust)) {
                    footprint::next_candidate(fp, &events, &mut data, now)?
                } else {
                    None
                };
                out.next.push((cust, next));
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let mut all = SubsetAnswer {
        members: parts.iter().map(|p| &p.members).union(),
        next: Vec::with_capacity(ids.len()),
    };
    for p in parts {
        all.next.extend(p.next);
    }
    Ok(all)
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
    let mut set = parts.union();
    if !fp.lengths.is_empty() {
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
    }
    set
}
