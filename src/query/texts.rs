//! `where PROP contains "TEXT"` on a property with no value bitmaps (too many distinct values:
//! free text, ids), answered exactly from the per-day text columns of `crate::index::texts`:
//! each day of the window that has events of the kind reads its column, built here from the
//! stored events when missing or stale. The columns hold each event's time, so a day the window
//! cuts is answered to the millisecond like a whole one.
//!
//! `TRAIT contains "TEXT"` on a trait without value bitmaps (an email) reads the trait's column
//! the same way, built from the stored profiles and stored for later processes at the folder's
//! write generation, which they check before using it.
//!
//! This module reads the indexes and customers' stored events and profiles; it writes nothing
//! but the columns' cache and the columns as derived records (`crate::index::derived`).

use std::sync::Arc;

use compact_str::CompactString;

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::error::Result;
use crate::index::derived::{self, DerivedStore};
use crate::index::rollup::{mix, ListVersion};
use crate::index::{DayTexts, EventIndex, Indexes, TextColumn};
use crate::model::time::{day_of, Timestamp};
use crate::model::{FastMap, Value};
use crate::storage::view::ValueView;
use crate::storage::Store;

use super::kept::Kept;

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
    // Each day's column on its own thread, then one union.
    let days: Vec<RoaringBitmap> = day_columns(store, (event, ei), prop, from, to)?
        .par_iter()
        .map(|column| {
            let mut out = RoaringBitmap::new();
            column.column.containing(needle, from, to, &mut out);
            out
        })
        .collect();
    Ok(days.into_iter().union())
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
    // Each day's column on its own thread, the counts then added up, the smaller into the larger.
    let counts = day_columns(store, (event, ei), prop, from, to)?
        .par_iter()
        .map(|column| {
            let mut counts = FastMap::default();
            column
                .column
                .count_containing(needle, from, to, &mut counts);
            counts
        })
        .reduce(FastMap::default, |a, b| {
            let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (cust, n) in small {
                *big.entry(cust).or_default() += n;
            }
            big
        });
    Ok(counts)
}

/// The customers whose trait `t` (without value bitmaps; `set` is who has it) is a string
/// containing `needle`, from the trait's column: kept in memory since the last profile change,
/// else stored in the folder at the folder's current write generation, else read from the
/// stored profiles and stored for the next process.
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
            let column = Arc::new(stored_trait_column(store, t, set)?);
            texts.put(t, at, column.clone());
            column
        }
    };
    let mut out = RoaringBitmap::new();
    column.containing(needle, 0, 0, &mut out);
    // The column is the stored profiles'; a write committed but not yet applied to the indexes
    // waits for them, as every other test of the rule does.
    out &= set;
    Ok(out)
}

/// Trait `t`'s column as the stored profiles have it: the record stored at the folder's current
/// write generation, or read from every stored profile and stored (when no write committed
/// meanwhile).
///
/// Every commit of a write (events, profiles, deletes, merges) raises the generation in the
/// batch that changes the profiles, so a record stored at the generation the folder still has
/// holds exactly its profiles' values; any write makes it stale, whichever build made it.
fn stored_trait_column(store: &Store, t: u32, set: &RoaringBitmap) -> Result<TextColumn> {
    let kept = Kept(store);
    let key = derived::trait_texts_key(t);
    let generation = store.generation()?;
    if let Some((column, compressed)) = derived::load_checked_packed(
        &kept,
        &key,
        generation,
        TextColumn::declared_generation,
        |body| TextColumn::decode_trait(body, t),
    ) {
        if compressed {
            // Stored compressed by an earlier build: stored again as is, for the next process.
            store_trait_column(&kept, &key, &column, t, generation);
        }
        return Ok(column);
    }
    // Read after the generation, so never older than the profiles it names: a write committed
    // meanwhile, seen here or not, raised it, and the column is then not stored (or, stored
    // before the raise showed, never used: the folder is past its generation for good).
    // In parts of the id space read in parallel (the last open-ended: ids the indexes do not
    // know yet), as the exact check would read them.
    let top = set.max().map_or(0, |m| m.saturating_add(1));
    let mut bounds: Vec<(u32, Option<u32>)> = super::exec::id_ranges(top)
        .into_iter()
        .map(|(from, to)| (from, Some(to)))
        .collect();
    match bounds.last_mut() {
        Some(last) => last.1 = None,
        None => bounds.push((0, None)),
    }
    let parts: Vec<Vec<(u32, CompactString)>> = bounds
        .par_iter()
        .map(|&(from, to)| {
            let mut found = Vec::new();
            for profile in store.profiles_between(from, to) {
                let (cust, mut fields) = profile?;
                if let Some(i) = fields.iter().position(|(f, _)| *f == t) {
                    if let Value::Str(s) = fields.swap_remove(i).1 {
                        found.push((cust, s));
                    }
                }
            }
            Ok(found)
        })
        .collect::<Result<_>>()?;
    let found: Vec<(u32, CompactString)> = parts.into_iter().flatten().collect();
    let column = TextColumn::new(found.iter().map(|(c, s)| (*c, 0, s.as_str())).collect());
    if store.generation()? == generation {
        store_trait_column(&kept, &key, &column, t, generation);
    }
    Ok(column)
}

/// Stores trait `t`'s column read at write generation `generation`, as is, not compressed: a
/// fresh process's first `contains` reads it whole, and its text is then the stored bytes
/// themselves, where decompressing 2.2 MB of emails (100k customers) cost more than the rest of
/// the load.
fn store_trait_column(kept: &Kept, key: &[u8], column: &TextColumn, t: u32, generation: u64) {
    kept.save(
        key,
        &derived::pack_plain(&column.encode_trait(t, generation)),
    );
}

/// The columns of the days in `from..=to` that have events of the kind: those kept in memory
/// while their day's count list is unchanged, else those stored in the folder read from events
/// with the list's fingerprint (`crate::index::derived`), else built now from the stored events
/// and stored for the next process.
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
            missing.push((d, current, list.fingerprint()));
        }
        columns.push((d, column));
    }
    if missing.is_empty() {
        return Ok(columns.into_iter().filter_map(|(_, c)| c).collect());
    }
    let kept = Kept(store);
    let loaded: Vec<Option<Arc<DayTexts>>> = missing
        .par_iter()
        .map(|&(d, version, fp)| {
            derived::load_checked(
                &kept,
                &derived::texts_key(event, prop, d),
                fp,
                DayTexts::declared_fingerprint,
                |body| DayTexts::decode(body, d, version),
            )
            .map(Arc::new)
        })
        .collect();
    let unbuilt: Vec<(u32, ListVersion)> = missing
        .iter()
        .zip(&loaded)
        .filter(|(_, l)| l.is_none())
        .map(|(&(d, v, _), _)| (d, v))
        .collect();
    let built = if unbuilt.is_empty() {
        Vec::new()
    } else {
        build(store, (event, ei), prop, &unbuilt)?
    };
    built.par_iter().zip(&unbuilt).for_each(|(c, &(d, _))| {
        // As is, not compressed: a later process reads the column in place.
        kept.save(
            &derived::texts_key(event, prop, d),
            &derived::pack_plain(&c.encode(d)),
        )
    });
    let mut built = built.into_iter();
    let mut loaded = loaded.into_iter();
    for slot in columns.iter_mut().filter(|c| c.1.is_none()) {
        let column = match loaded.next().flatten() {
            Some(c) => c,
            None => built
                .next()
                .ok_or_else(|| crate::error::internal!("a day's text column was not built"))?,
        };
        ei.texts.put(prop, slot.0, column.clone());
        slot.1 = Some(column);
    }
    Ok(columns.into_iter().filter_map(|(_, c)| c).collect())
}

/// The columns of the `missing` days (ascending, each with its count list's version), in that
/// order: the strings of `prop` of every event of the kind on those days, and the fingerprint
/// of all those events (with a string or not: what the day's count list has when they are its
/// events).
fn build(
    store: &Store,
    (event, ei): (u32, &EventIndex),
    prop: u32,
    missing: &[(u32, ListVersion)],
) -> Result<Vec<Arc<DayTexts>>> {
    let found = super::columns::events_on_days(store, (event, ei), missing, |cust, e| {
        Ok(Some(match e.prop(prop)? {
            Some(ValueView::Str(s)) => (cust, e.ts, Some(s.to_owned())),
            _ => (cust, e.ts, None),
        }))
    })?;
    Ok(found
        .par_iter()
        .zip(missing)
        .map(|(day, &(_, version))| {
            let fp = day.iter().fold(0u64, |fp, e| fp.wrapping_add(mix(e.0)));
            let events = day
                .iter()
                .filter_map(|(c, t, s)| Some((*c, *t, s.as_deref()?)))
                .collect();
            Arc::new(DayTexts::new(version, fp, events))
        })
        .collect())
}
