//! `where PROP contains "TEXT"` on a property with no value bitmaps (too many distinct values:
//! free text, ids), answered exactly from the per-day text columns of `crate::index::texts`:
//! each day of the window that has events of the kind reads its column, built here from the
//! stored events when missing or stale. The columns hold each event's time, so a day the window
//! cuts is answered to the millisecond like a whole one.
//!
//! `TRAIT contains "TEXT"` on a trait without value bitmaps (an email) reads the trait's column
//! the same way, built from the profiles of who has the trait.
//!
//! This module reads the indexes and customers' stored events and profiles; it writes nothing
//! but the columns' cache.

use std::sync::Arc;

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;
use crate::index::{DayTexts, EventIndex, Indexes, TextColumn};
use crate::model::time::{day_of, day_start, Timestamp, DAY_MS};
use crate::model::{FastMap, Value};
use crate::storage::view::{self, BlockSpan, ValueView};
use crate::storage::Store;

/// The customers with an event of the kind (`event`, index `ei`) in `from..=to` whose property
/// `prop` is a string containing `needle`.
pub(super) fn containing(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    prop: u32,
    needle: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<RoaringBitmap> {
    let mut out = RoaringBitmap::new();
    for column in day_columns(store, (event, ei), prop, from, to)? {
        column.column.containing(needle, from, to, &mut out);
    }
    Ok(out)
}

/// Each customer's number of events of the kind in `from..=to` whose property `prop` is a string
/// containing `needle` (customers with none are left out).
pub(super) fn count_containing(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    prop: u32,
    needle: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<FastMap<u32, u64>> {
    let mut counts = FastMap::default();
    for column in day_columns(store, (event, ei), prop, from, to)? {
        column
            .column
            .count_containing(needle, from, to, &mut counts);
    }
    Ok(counts)
}

/// The customers whose trait `t` (without value bitmaps; `set` is who has it) is a string
/// containing `needle`, from the trait's column, read from the stored profiles when missing or
/// stale.
pub(super) fn trait_containing(
    store: &Store,
    indexes: &Indexes,
    t: u32,
    set: &RoaringBitmap,
    needle: &str,
) -> Result<RoaringBitmap> {
    let texts = indexes.profile_texts();
    let column = match texts.get(t) {
        Some(c) => c,
        None => {
            let at = texts.edits();
            // The profiles of who has the trait, read in parallel as the exact check would.
            let ids: Vec<u32> = set.iter().collect();
            let chunk = (ids.len() / (rayon::current_num_threads() * 8)).clamp(64, 4096);
            let parts: Vec<Vec<(u32, String)>> = ids
                .par_chunks(chunk)
                .map(|ids| {
                    let mut found = Vec::new();
                    for &cust in ids {
                        let Some(mut fields) = store.profile(cust)? else {
                            continue;
                        };
                        if let Some(i) = fields.iter().position(|(f, _)| *f == t) {
                            if let Value::Str(s) = fields.swap_remove(i).1 {
                                found.push((cust, s));
                            }
                        }
                    }
                    Ok(found)
                })
                .collect::<Result<_>>()?;
            let owned: Vec<&(u32, String)> = parts.iter().flatten().collect();
            let values = owned.iter().map(|(c, s)| (*c, 0, s.as_str())).collect();
            let column = Arc::new(TextColumn::new(values));
            texts.put(t, at, column.clone());
            column
        }
    };
    let mut out = RoaringBitmap::new();
    column.containing(needle, 0, 0, &mut out);
    Ok(out)
}

/// The columns of the days in `from..=to` that have events of the kind, built now where missing
/// or stale.
fn day_columns(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    prop: u32,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Arc<DayTexts>>> {
    let from = from.max(0);
    if from > to {
        return Ok(Vec::new());
    }
    // The window's days that have events of the kind, each with its column if it is current.
    let mut columns: Vec<(u32, Option<Arc<DayTexts>>)> = Vec::new();
    let mut missing = Vec::new();
    for (&d, list) in ei.counts.range(day_of(from)..=day_of(to)) {
        let current = list.version();
        let column = ei.texts.get(prop, d, current);
        if column.is_none() {
            missing.push((d, current));
        }
        columns.push((d, column));
    }
    if !missing.is_empty() {
        let built = build(store, (event, ei), prop, &missing)?;
        for (slot, column) in columns.iter_mut().filter(|c| c.1.is_none()).zip(built) {
            ei.texts.put(prop, slot.0, column.clone());
            slot.1 = Some(column);
        }
    }
    Ok(columns.into_iter().filter_map(|(_, c)| c).collect())
}

/// The columns of the `missing` days (ascending, each with its count list's version), in that
/// order: every customer who had the event on one of them has their events read once, from the
/// first of them on.
fn build(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    prop: u32,
    missing: &[(u32, crate::index::rollup::ListVersion)],
) -> Result<Vec<Arc<DayTexts>>> {
    let first = missing[0].0;
    let last = missing[missing.len() - 1].0;
    let wanted = |d: u32| missing.binary_search_by_key(&d, |m| m.0).ok();
    let customers: RoaringBitmap = missing.iter().filter_map(|(d, _)| ei.days.get(d)).union();
    let ids: Vec<u32> = customers.iter().collect();
    let chunk = (ids.len() / (rayon::current_num_threads() * 8)).clamp(64, 4096);
    let end = day_start(last) + DAY_MS - 1;
    // Per task: (slot in `missing`, customer, time, string) of each event with a string value.
    type Found = Vec<(usize, u32, Timestamp, String)>;
    let parts: Vec<Found> = ids
        .par_chunks(chunk)
        .map(|ids| {
            let mut bodies = Vec::new();
            let mut blocks: Vec<BlockSpan> = Vec::new();
            let mut found = Found::new();
            for &cust in ids {
                bodies.clear();
                blocks.clear();
                store.event_bodies_from(cust, day_start(first), &mut bodies, &mut blocks)?;
                // Events before 1970 are on no day of the columns.
                view::for_each_event_between(&bodies, &blocks, 0, end, |e| {
                    if e.event != event {
                        return Ok(());
                    }
                    if let Some(slot) = wanted(day_of(e.ts)) {
                        if let Some(ValueView::Str(s)) = e.prop(prop)? {
                            found.push((slot, cust, e.ts, s.to_owned()));
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(found)
        })
        .collect::<Result<_>>()?;
    let mut by_day: Vec<Vec<(u32, Timestamp, &str)>> = vec![Vec::new(); missing.len()];
    for (slot, cust, ts, s) in parts.iter().flatten() {
        by_day[*slot].push((*cust, *ts, s.as_str()));
    }
    Ok(by_day
        .into_iter()
        .zip(missing)
        .map(|(events, &(_, version))| Arc::new(DayTexts::new(version, events)))
        .collect())
}
