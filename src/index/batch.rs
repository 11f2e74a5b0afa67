//! One write's index changes applied at once, on several threads.
//!
//! A write's changes ([`Changes`]) are grouped before the state lock is taken: per event id, the
//! write's events of that kind in customer order (each customer's in time order), and the profile
//! changes. Under the lock, [`Indexes::apply`] cuts them into tasks that own disjoint parts of the
//! indexes: per event, its day bitmaps and count rollups, its numeric rollups, and its property
//! value bitmaps; and one task for all the traits. The tasks run on the writer's thread and on
//! helper threads it starts for the write (not on rayon's pool, where the import's parsing of the
//! next batch would run first). Within a task, a customer's events of one day are folded into one
//! bitmap insertion and one rollup entry before they reach the shared structures.
//!
//! This module owns the grouping, the tasks, and the per-family functions that
//! [`Indexes::add_event`] (one event, as rebuild and recovery add them) uses too, so the batched
//! and the one-by-one paths share their meaning; `verify` compares what a write built with a
//! rebuild that adds one event at a time.

use std::sync::OnceLock;

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use super::rollup::{self, DayCount, DayNumbers};
use super::{
    add_to, insert, remove_from, slot, value_chunk, DayBitmaps, DayCounts, DayFigures, DirtyChunks,
    EventIndex, Family, FastMap, FastSet, IndexValue, Indexes, TraitIndex, ValueDays, ValueRef,
};
use crate::model::time::day_of;
use crate::model::StoredEvent;
use crate::model::Value;

/// Writes with fewer events than this are applied on the writer's thread alone, unless
/// configured otherwise: starting a thread costs more than it saves.
pub const PARALLEL_FROM: usize = 4096;

/// The traits of a profile, by trait id.
type Traits<'a> = &'a [(u32, Value)];

/// One write's changes, grouped for [`Indexes::apply`]. Borrowed from the write's records.
#[derive(Default)]
pub struct Changes<'a> {
    /// Every customer the write touched with data, or created.
    customers: Vec<u32>,
    /// (customer, indexed traits before, traits after).
    profiles: Vec<(u32, Option<Traits<'a>>, Traits<'a>)>,
    /// Per event id, its events in this write, by customer.
    events: Vec<(u32, Vec<(u32, &'a StoredEvent)>)>,
    /// Where each event id's group is in `events`.
    slots: FastMap<u32, usize>,
    event_count: usize,
}

impl<'a> Changes<'a> {
    /// Adds one customer's changes: whether the write created them, their profile (the traits
    /// indexed before, if they had a profile, and after), and their new events. Add each
    /// customer once; the events of one customer should be in time order (any order is correct,
    /// time order is cheaper).
    pub fn customer(
        &mut self,
        cust: u32,
        is_new: bool,
        profile: Option<(Option<Traits<'a>>, Traits<'a>)>,
        events: &'a [StoredEvent],
    ) {
        if is_new || profile.is_some() || !events.is_empty() {
            self.customers.push(cust);
        }
        if let Some((old, new)) = profile {
            self.profiles.push((cust, old, new));
        }
        for e in events {
            let next = self.events.len();
            let i = *self.slots.entry(e.event).or_insert(next);
            if i == next {
                self.events.push((e.event, Vec::new()));
            }
            self.events[i].1.push((cust, e));
        }
        self.event_count += events.len();
    }
}

/// What a task decided beyond its own structures, merged into the indexes after the tasks.
#[derive(Default)]
pub(super) struct Outcome {
    pub changed: Vec<Family>,
    /// (event, property) pairs that lost their value bitmaps.
    pub unindexed: Vec<(u32, u32)>,
    /// (event, property) pairs that get no rollups.
    pub unrolled: Vec<(u32, u32)>,
}

/// A disjoint part of the indexes and the changes it takes.
enum Task<'x, 'a> {
    Traits {
        profiles: &'x mut RoaringBitmap,
        traits: &'x mut FastMap<u32, TraitIndex>,
        unindexed: &'x mut FastSet<u32>,
        changes: &'x [(u32, Option<Traits<'a>>, Traits<'a>)],
    },
    Days {
        days: &'x mut DayBitmaps,
        dirty: &'x mut DirtyChunks,
        counts: &'x mut DayCounts,
        group: &'x [(u32, &'a StoredEvent)],
    },
    Numbers {
        event: u32,
        numbers: &'x mut FastMap<u32, DayFigures>,
        unrolled: &'x FastSet<(u32, u32)>,
        group: &'x [(u32, &'a StoredEvent)],
    },
    Values {
        event: u32,
        props: &'x mut FastMap<u32, FastMap<IndexValue, ValueDays>>,
        unindexed: &'x FastSet<(u32, u32)>,
        group: &'x [(u32, &'a StoredEvent)],
    },
}

impl Task<'_, '_> {
    /// A rough cost, to start the largest tasks first.
    fn weight(&self) -> usize {
        match self {
            Task::Traits { changes, .. } => changes.iter().map(|(_, _, n)| n.len()).sum(),
            Task::Days { group, .. } => group.len(),
            Task::Numbers { group, .. } | Task::Values { group, .. } => {
                group.iter().map(|(_, e)| e.props.len()).sum()
            }
        }
    }

    fn run(self, bounds: (usize, usize)) -> Outcome {
        let (value_bound, rollup_bound) = bounds;
        let mut out = Outcome::default();
        match self {
            Task::Traits {
                profiles,
                traits,
                unindexed,
                changes,
            } => {
                let mut profiles_changed = false;
                for (cust, old, new) in changes {
                    if let Some(old) = old {
                        profiles_changed |= profiles.remove(*cust);
                        for (t, v) in *old {
                            remove_trait(traits, &mut out.changed, *cust, *t, v);
                        }
                    }
                    profiles_changed |= profiles.insert(*cust);
                    for (t, v) in *new {
                        add_trait(traits, unindexed, &mut out, value_bound, *cust, *t, v);
                    }
                }
                if profiles_changed {
                    out.changed.push(Family::Profiles);
                }
            }
            Task::Days {
                days,
                dirty,
                counts,
                group,
            } => add_days(days, dirty, counts, group),
            Task::Numbers {
                event,
                numbers,
                unrolled,
                group,
            } => add_numbers(event, numbers, unrolled, rollup_bound, group, &mut out),
            Task::Values {
                event,
                props,
                unindexed,
                group,
            } => add_values(event, props, unindexed, value_bound, group, &mut out),
        }
        out
    }
}

/// How many threads a large write may use: the machine's cores.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs the tasks, largest first, on this thread and `threads - 1` helpers.
fn run_all(mut tasks: Vec<Task<'_, '_>>, threads: usize, bounds: (usize, usize)) -> Vec<Outcome> {
    let threads = threads.min(tasks.len());
    if threads <= 1 {
        return tasks.into_iter().map(|t| t.run(bounds)).collect();
    }
    // Popped from the end: the heaviest first, so the last ones to start are short.
    tasks.sort_by_key(Task::weight);
    let queue = Mutex::new(tasks);
    let drain = || {
        let mut outs = Vec::new();
        loop {
            let Some(task) = queue.lock().pop() else {
                break outs;
            };
            outs.push(task.run(bounds));
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(drain)).collect();
        let mut outs = drain();
        for h in helpers {
            match h.join() {
                Ok(more) => outs.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        outs
    })
}

impl Changes<'_> {
    /// How many events the changes add.
    pub fn events(&self) -> usize {
        self.event_count
    }
}

impl Indexes {
    /// Applies one write's changes: profiles (old traits out, new in) and events. Writes with at
    /// least `parallel_from` events are applied on every core (see the module comment); the
    /// result is the same as adding each customer's profile and events one by one.
    pub fn apply(&mut self, changes: &Changes<'_>, parallel_from: usize) {
        let threads = if changes.event_count >= parallel_from {
            threads()
        } else {
            1
        };
        self.apply_on(changes, threads);
    }

    /// [`Indexes::apply`] on a given number of threads (tests force both paths).
    pub fn apply_on(&mut self, changes: &Changes<'_>, threads: usize) {
        for &cust in &changes.customers {
            self.add_customer(cust);
        }
        for (e, _) in &changes.events {
            self.events.entry(*e).or_default();
        }
        if !changes.profiles.is_empty() {
            self.profile_texts.changed();
        }
        for (cust, _, _) in &changes.profiles {
            insert(&mut self.trait_patch, *cust);
        }
        let bounds = (self.value_bound, self.rollup_bound);
        let Indexes {
            profiles,
            traits,
            events,
            unindexed_traits,
            unindexed_props,
            unrolled_props,
            changed,
            ..
        } = self;
        let mut tasks = Vec::with_capacity(1 + 3 * changes.events.len());
        if !changes.profiles.is_empty() {
            tasks.push(Task::Traits {
                profiles,
                traits,
                unindexed: unindexed_traits,
                changes: &changes.profiles,
            });
        }
        for (id, ei) in events.iter_mut() {
            let Some(&i) = changes.slots.get(id) else {
                continue;
            };
            let group = &changes.events[i].1[..];
            let EventIndex {
                days,
                days_dirty,
                props,
                counts,
                numbers,
                // Derived from the lists, which know when they change: nothing to do here.
                count_runs: _,
                number_runs: _,
                presence_runs: _,
                texts: _,
                columns: _,
                unions: _,
                count_totals: _,
                number_totals: _,
                latest,
            } = ei;
            if let Some(top) = group.iter().map(|(_, e)| e.ts).max() {
                *latest = (*latest).max(top);
            }
            tasks.push(Task::Days {
                days,
                dirty: days_dirty,
                counts,
                group,
            });
            tasks.push(Task::Numbers {
                event: *id,
                numbers,
                unrolled: unrolled_props,
                group,
            });
            tasks.push(Task::Values {
                event: *id,
                props,
                unindexed: unindexed_props,
                group,
            });
        }
        let outcomes = run_all(tasks, threads, bounds);
        for out in outcomes {
            changed.extend(out.changed);
            unindexed_props.extend(out.unindexed);
            unrolled_props.extend(out.unrolled);
        }
    }
}

/// Where a trait value's keys go, and its keys: a list's indexable elements into the element
/// bitmaps, a scalar's indexable value into the value bitmaps.
fn trait_keys<'t, 'v>(
    ti: &'t mut TraitIndex,
    v: &'v Value,
) -> (
    &'t mut FastMap<IndexValue, RoaringBitmap>,
    impl Iterator<Item = ValueRef<'v>>,
) {
    let (bitmaps, items) = match v {
        Value::List(items) => (&mut ti.elements, &items[..]),
        scalar => (&mut ti.values, std::slice::from_ref(scalar)),
    };
    (bitmaps, items.iter().filter_map(ValueRef::of))
}

/// Adds a trait value of a customer; past the value bound, the trait keeps only who has it.
pub(super) fn add_trait(
    traits: &mut FastMap<u32, TraitIndex>,
    unindexed: &mut FastSet<u32>,
    out: &mut Outcome,
    value_bound: usize,
    cust: u32,
    t: u32,
    v: &Value,
) {
    out.changed.push(Family::Trait(t));
    let ti = traits.entry(t).or_default();
    ti.set.insert(cust);
    ti.ranges.add(cust, v);
    if unindexed.contains(&t) {
        return;
    }
    let (bitmaps, keys) = trait_keys(ti, v);
    for k in keys {
        add_to(bitmaps, k, cust);
    }
    if ti.values.len() + ti.elements.len() > value_bound {
        ti.values = FastMap::default();
        ti.elements = FastMap::default();
        unindexed.insert(t);
        out.changed.push(Family::Unindexed);
    }
}

/// Removes a trait value of a customer, dropping what becomes empty.
pub(super) fn remove_trait(
    traits: &mut FastMap<u32, TraitIndex>,
    changed: &mut Vec<Family>,
    cust: u32,
    t: u32,
    v: &Value,
) {
    let Some(ti) = traits.get_mut(&t) else {
        return;
    };
    changed.push(Family::Trait(t));
    ti.set.remove(cust);
    ti.ranges.remove(cust, v);
    let (bitmaps, keys) = trait_keys(ti, v);
    for k in keys {
        remove_from(bitmaps, k, cust);
    }
    if ti.set.is_empty() && ti.values.is_empty() && ti.elements.is_empty() {
        traits.remove(&t);
    }
}

/// The end of the run of `group[i..]` that is one customer's events of one UTC day (when each
/// customer's events are in time order, all of them), and that day.
fn day_run(group: &[(u32, &StoredEvent)], i: usize) -> (usize, u32) {
    let (cust, e) = group[i];
    let day = day_of(e.ts);
    let mut j = i + 1;
    while j < group.len() && group[j].0 == cust && day_of(group[j].1.ts) == day {
        j += 1;
    }
    (j, day)
}

/// Day bitmaps and count rollups of one event: one insertion and one rollup entry per run of a
/// customer's events on one day.
pub(super) fn add_days(
    days: &mut DayBitmaps,
    dirty: &mut DirtyChunks,
    counts: &mut DayCounts,
    group: &[(u32, &StoredEvent)],
) {
    let mut i = 0;
    while i < group.len() {
        let (end, day) = day_run(group, i);
        let cust = group[i].0;
        let mut figures: Option<DayCount> = None;
        for (_, e) in &group[i..end] {
            let unit = rollup::span_unit(e.ts, day);
            let one = DayCount {
                cust,
                count: 1,
                first: unit,
                last: unit,
            };
            match &mut figures {
                Some(f) => rollup::Partial::merge(f, &one),
                None => figures = Some(one),
            }
        }
        if insert(days.entry(day).or_default(), cust) {
            dirty.mark(day);
        }
        if let Some(f) = figures {
            counts.entry(day).or_default().add(f);
        }
        i = end;
    }
}

/// The number an event property contributes to numeric rollups: integers and floats, as the
/// exact check aggregates them.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Numeric rollups of one event: per run of a customer's events on one day, one entry per
/// property. The first `rollup_bound` numeric properties of an event get rollups, in the order
/// they arrive; later ones are recorded in `out.unrolled`.
pub(super) fn add_numbers(
    event: u32,
    numbers: &mut FastMap<u32, DayFigures>,
    unrolled: &FastSet<(u32, u32)>,
    rollup_bound: usize,
    group: &[(u32, &StoredEvent)],
    out: &mut Outcome,
) {
    let mut pending: Vec<(u32, DayNumbers)> = Vec::new();
    let mut i = 0;
    while i < group.len() {
        let (end, day) = day_run(group, i);
        let cust = group[i].0;
        pending.clear();
        for (_, e) in &group[i..end] {
            for (p, v) in &e.props {
                let Some(x) = number(v) else {
                    continue;
                };
                if unrolled.contains(&(event, *p)) || out.unrolled.contains(&(event, *p)) {
                    continue;
                }
                if !numbers.contains_key(p) {
                    if numbers.len() >= rollup_bound {
                        out.unrolled.push((event, *p));
                        out.changed.push(Family::Unindexed);
                        continue;
                    }
                    numbers.insert(*p, DayFigures::new());
                }
                let one = DayNumbers::of(cust, x);
                match pending.iter_mut().find(|(q, _)| q == p) {
                    Some((_, f)) => rollup::Partial::merge(f, &one),
                    None => pending.push((*p, one)),
                }
            }
        }
        for (p, f) in &pending {
            if let Some(figures) = numbers.get_mut(p) {
                figures.entry(day).or_default().add(*f);
            }
        }
        i = end;
    }
}

/// Groups from this many events on are sorted before their values are added ([`add_sorted`]).
const SORT_VALUES_FROM: usize = 64;

/// Property value bitmaps of one event. An (event, property) that reaches more than
/// `value_bound` distinct values loses its bitmaps (and their snapshot records) and is recorded
/// in `out.unindexed`.
pub(super) fn add_values(
    event: u32,
    props: &mut FastMap<u32, FastMap<IndexValue, ValueDays>>,
    unindexed: &FastSet<(u32, u32)>,
    value_bound: usize,
    group: &[(u32, &StoredEvent)],
    out: &mut Outcome,
) {
    if group.len() < SORT_VALUES_FROM
        || !add_sorted(event, props, unindexed, value_bound, group, out)
    {
        add_each(event, props, unindexed, value_bound, group, out);
    }
}

/// [`add_values`] one event at a time.
fn add_each(
    event: u32,
    props: &mut FastMap<u32, FastMap<IndexValue, ValueDays>>,
    unindexed: &FastSet<(u32, u32)>,
    value_bound: usize,
    group: &[(u32, &StoredEvent)],
    out: &mut Outcome,
) {
    for &(cust, e) in group {
        let day = day_of(e.ts);
        for (p, v) in &e.props {
            let Some(k) = ValueRef::of(v) else {
                continue;
            };
            if unindexed.contains(&(event, *p)) || out.unindexed.contains(&(event, *p)) {
                continue;
            }
            let values = props.entry(*p).or_default();
            if let Some(vd) = values.get_mut(&k) {
                if insert(vd.days_mut().entry(day).or_default(), cust) {
                    vd.dirty.mark(value_chunk(day));
                }
                continue;
            }
            if values.len() >= value_bound {
                // Too many values: drop the property's bitmaps, and their snapshot records.
                for (dropped, vd) in values.iter() {
                    let mut chunks: Vec<u32> = vd.days().keys().map(|d| value_chunk(*d)).collect();
                    chunks.dedup();
                    out.changed.extend(
                        chunks
                            .into_iter()
                            .map(|c| Family::EventProp(event, *p, dropped.clone(), c)),
                    );
                }
                props.remove(p);
                out.unindexed.push((event, *p));
                out.changed.push(Family::Unindexed);
                continue;
            }
            let (_, vd) = slot(values, k);
            vd.dirty.mark(value_chunk(day));
            vd.days_mut().entry(day).or_default().insert(cust);
        }
    }
}

/// The order [`add_sorted`] sorts values in (any total order does).
fn value_order(a: &ValueRef<'_>, b: &ValueRef<'_>) -> std::cmp::Ordering {
    let rank = |v: &ValueRef<'_>| match v {
        ValueRef::Str(_) => 0,
        ValueRef::Int(_) => 1,
        ValueRef::Bool(_) => 2,
    };
    match (a, b) {
        (ValueRef::Str(x), ValueRef::Str(y)) => x.cmp(y),
        (ValueRef::Int(x), ValueRef::Int(y)) => x.cmp(y),
        (ValueRef::Bool(x), ValueRef::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// [`add_values`] for a large group: every (property, value, day, customer) is listed and
/// sorted first, so that each value's bitmaps are looked up once and each day's bitmap once per
/// value, and customers arrive in order (appends, for new customers), instead of three hash or
/// tree lookups with cache misses per property of every event. Gives the same indexes. Returns
/// `false`, having changed nothing, when the group would take a property past `value_bound`:
/// which values were listed when it was dropped depends on the order of events, so that rare
/// group is left to [`add_each`].
fn add_sorted(
    event: u32,
    props: &mut FastMap<u32, FastMap<IndexValue, ValueDays>>,
    unindexed: &FastSet<(u32, u32)>,
    value_bound: usize,
    group: &[(u32, &StoredEvent)],
    out: &mut Outcome,
) -> bool {
    // Each distinct (property, value) gets a number as first seen (one hash per item), and the
    // numbers a rank in (property, value) order: the items then sort as plain integers, where
    // comparing their strings took most of this function's time.
    let mut numbers: FastMap<(u32, ValueRef<'_>), u32> = FastMap::default();
    let mut distinct: Vec<(u32, ValueRef<'_>)> = Vec::new();
    let mut items: Vec<(u32, u32, u32)> = Vec::with_capacity(group.len() * 2);
    for &(cust, e) in group {
        let day = day_of(e.ts);
        for (p, v) in &e.props {
            if let Some(k) = ValueRef::of(v) {
                if !unindexed.contains(&(event, *p)) {
                    let n = *numbers.entry((*p, k)).or_insert_with(|| {
                        distinct.push((*p, k));
                        (distinct.len() - 1) as u32
                    });
                    items.push((n, day, cust));
                }
            }
        }
    }
    drop(numbers);
    let mut order: Vec<u32> = (0..distinct.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (pa, ka) = &distinct[a as usize];
        let (pb, kb) = &distinct[b as usize];
        pa.cmp(pb).then_with(|| value_order(ka, kb))
    });
    let mut rank = vec![0u32; distinct.len()];
    for (r, &n) in order.iter().enumerate() {
        rank[n as usize] = r as u32;
    }
    // (rank, day, customer) in one integer: the order of (property, value, day, customer).
    let mut keyed: Vec<u128> = items
        .iter()
        .map(|&(n, day, cust)| {
            (u128::from(rank[n as usize]) << 64) | (u128::from(day) << 32) | u128::from(cust)
        })
        .collect();
    drop(items);
    keyed.sort_unstable();
    let key_of = |k: u128| distinct[order[(k >> 64) as usize] as usize];
    let day_of_key = |k: u128| (k >> 32) as u32;
    // The runs of equal (property, value).
    let runs = || {
        keyed
            .chunk_by(|a, b| a >> 64 == b >> 64)
            .map(|run| (key_of(run[0]).0, key_of(run[0]).1, run))
    };
    // New values per property, against the bound.
    let mut new_values: Option<(u32, usize)> = None;
    for (p, k, _) in runs() {
        if out.unindexed.contains(&(event, p)) {
            continue;
        }
        let (have, known) = props
            .get(&p)
            .map_or((0, false), |v| (v.len(), v.contains_key(&k)));
        let count = match new_values {
            Some((q, n)) if q == p => n,
            _ => 0,
        } + usize::from(!known);
        if have + count > value_bound {
            return false;
        }
        new_values = Some((p, count));
    }
    for (p, k, run) in runs() {
        if out.unindexed.contains(&(event, p)) {
            continue;
        }
        let (_, vd) = slot(props.entry(p).or_default(), k);
        for day in run.chunk_by(|a, b| day_of_key(*a) == day_of_key(*b)) {
            let d = day_of_key(day[0]);
            let bm = vd.days_mut().entry(d).or_default();
            let mut changed = false;
            for &k in day {
                changed |= insert(bm, k as u32);
            }
            if changed {
                vd.dirty.mark(value_chunk(d));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::DAY_MS;

    fn ev(ts: i64, event: u32, props: Vec<(u32, Value)>) -> StoredEvent {
        StoredEvent { ts, event, props }
    }

    /// Customers with events on a few days, of two kinds, with string, integer and float
    /// properties, some of them past the bounds.
    /// A customer, their profile (if any) and their events.
    type Sample = (u32, Option<Vec<(u32, Value)>>, Vec<StoredEvent>);

    fn sample() -> Vec<Sample> {
        let mut out = Vec::new();
        for cust in 0..300u32 {
            let mut events = Vec::new();
            for k in 0..(cust % 17 + 1) {
                let ts =
                    20_000 * DAY_MS + i64::from(cust % 5 + k / 4) * DAY_MS + i64::from(k) * 61_000;
                let mut props = vec![
                    (0, Value::Str(format!("p-{}", (cust + k) % 40).into())),
                    (1, Value::Int(i64::from(k))),
                    (2, Value::Float(f64::from(cust) * 0.1 + 0.01)),
                ];
                if k % 3 == 0 {
                    props.push((3 + k % 4, Value::Int(i64::from(cust))));
                }
                events.push(ev(ts, k % 2, props));
            }
            let profile = (cust % 3 != 0).then(|| {
                vec![
                    (0, Value::Str(["Gold", "Silver"][cust as usize % 2].into())),
                    (1, Value::Int(i64::from(cust % 50))),
                    (2, Value::List(vec![Value::Str("eco".into())])),
                ]
            });
            out.push((cust, profile, events));
        }
        out
    }

    #[test]
    fn batched_equals_one_by_one_on_one_and_several_threads() {
        for (value_bound, rollup_bound) in [(1000, 8), (30, 3), (2, 1)] {
            let data = sample();
            let mut one = Indexes::with_bounds(value_bound, rollup_bound);
            for (cust, profile, events) in &data {
                if let Some(p) = profile {
                    one.add_profile(*cust, p);
                }
                for e in events {
                    one.add_event(*cust, e);
                }
            }
            let mut expect = one.take_changed();
            expect.retain(|f| !matches!(f, Family::Version));
            for threads in [1, 2, 4] {
                let mut batched = Indexes::with_bounds(value_bound, rollup_bound);
                // Two writes: the second changes profiles set by the first.
                for half in data.chunks(150) {
                    let mut changes = Changes::default();
                    for (cust, profile, events) in half {
                        changes.customer(
                            *cust,
                            true,
                            profile.as_deref().map(|p| (None, p)),
                            events,
                        );
                    }
                    batched.apply_on(&changes, threads);
                }
                assert_eq!(
                    one.differences(&batched),
                    Vec::<String>::new(),
                    "bounds {value_bound}/{rollup_bound}, {threads} threads"
                );
                let mut changed = batched.take_changed();
                changed.retain(|f| !matches!(f, Family::Version));
                assert!(
                    changed == expect,
                    "the same families are marked for the snapshot"
                );
            }
        }
    }

    #[test]
    fn a_changed_profile_replaces_the_old_values() {
        let old = vec![(0, Value::Str("Gold".into())), (1, Value::Int(3))];
        let new = vec![(0, Value::Str("Silver".into()))];
        let mut ix = Indexes::new(1000);
        ix.add_profile(7, &old);
        let mut changes = Changes::default();
        changes.customer(7, false, Some((Some(&old), &new)), &[]);
        ix.apply_on(&changes, 2);
        let mut expect = Indexes::new(1000);
        expect.add_profile(7, &new);
        assert_eq!(ix.differences(&expect), Vec::<String>::new());
    }
}
