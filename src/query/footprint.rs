//! What a rule reads, from its AST: the traits, events and saved audiences it names (saved
//! audiences followed into their own rules), and the relative lengths of time (`last 30 days`,
//! `7 days ago`) that make its answer move with the clock. From these follow which writes can
//! change a customer's answer and at which instants time alone can change it.
//!
//! This module reads ASTs, and customers' data through [`CustomerData`]; it knows nothing of
//! bitmaps and never writes.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::model::FastMap;
use crate::rules::Duration as RuleDuration;
use crate::rules::{
    EventCondition, Expr, ExprKind, LiteralKind, Predicate, PredicateKind, Rule, Test, TimeKind,
    Window, WindowKind,
};
use crate::storage::view::{self, ValueView};
use crate::storage::Catalog;

use super::exec::CustomerData;
use super::plan::SavedRules;

/// What a rule (with the saved audiences it names) reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Footprint {
    /// Trait paths named in trait conditions.
    pub traits: BTreeSet<String>,
    /// Event names named in event conditions.
    pub events: BTreeSet<String>,
    /// Saved audiences named, directly or through other saved audiences.
    pub audiences: BTreeSet<String>,
    /// Computed traits named: each reads its expression's event, and moves with its window.
    pub computed: BTreeSet<String>,
    /// Every relative length of time, in milliseconds, sorted and without repeats.
    pub lengths: Vec<i64>,
    /// Whether an event's property is compared with a relative time (`where shipped < 3 days
    /// ago`): then a property value, not only the event's own time, can cross an edge.
    pub relative_props: bool,
    /// Whether the rule reads the customer's ids (`bucket(NAME)`, or a loaded list named
    /// directly or through other saved audiences): then a customer's answer can change when
    /// its ids do (a new customer, an id merged into it), whatever else it holds.
    pub ids: bool,
}

impl Footprint {
    /// The footprint of `rule`; saved audiences it names are followed through `saved` (an
    /// unknown one, or a cycle, is simply not followed: planning reports those).
    pub fn of(rule: &Rule, saved: &dyn SavedRules) -> Footprint {
        let mut f = Footprint::default();
        f.expr(&rule.expr, saved);
        f.lengths.sort_unstable();
        f.lengths.dedup();
        f
    }

    /// Whether the answer can change by time alone for some customer.
    pub fn moves_with_time(&self) -> bool {
        !self.lengths.is_empty() || !self.events.is_empty()
    }

    /// The longest relative length (0 without any).
    pub fn longest(&self) -> i64 {
        self.lengths.last().copied().unwrap_or(0)
    }

    fn expr(&mut self, e: &Expr, saved: &dyn SavedRules) {
        match &e.kind {
            ExprKind::And(items) | ExprKind::Or(items) => {
                items.iter().for_each(|i| self.expr(i, saved));
            }
            ExprKind::Not(inner) => self.expr(inner, saved),
            ExprKind::Everyone => {}
            // A bucket moves with neither time nor events, only with the customer's id: only a
            // new customer (a merge under a new id makes one) needs its answer.
            ExprKind::Bucket(_) => self.ids = true,
            ExprKind::Trait(c) | ExprKind::EventOrTrait(c)
                if saved.computed_trait(&c.path.text).is_some() =>
            {
                // A computed trait reads its event in its window (and no stored trait): the
                // comparison's own relative times move it too.
                if let Some(computed) = saved.computed_trait(&c.path.text) {
                    self.computed.insert(c.path.text.clone());
                    self.event_condition(&computed.event);
                    self.window(computed.event.window.as_ref());
                }
                test_lengths(&c.test, &mut self.lengths);
            }
            ExprKind::Trait(c) => {
                self.traits.insert(c.path.text.clone());
                test_lengths(&c.test, &mut self.lengths);
            }
            // Either reading may be the one taken (it follows what is stored), so both count.
            ExprKind::EventOrTrait(c) => {
                self.traits.insert(c.path.text.clone());
                self.events.insert(c.path.text.clone());
                test_lengths(&c.test, &mut self.lengths);
            }
            ExprKind::InAudience(name) => {
                if self.audiences.insert(name.text.clone()) {
                    self.ids |= saved.saved_list(&name.text).is_some();
                    if let Some(rule) = saved.saved_rule(&name.text) {
                        self.expr(&rule.expr, saved);
                    }
                }
            }
            ExprKind::Event(ec) => {
                self.event_condition(ec);
                self.window(ec.window.as_ref());
            }
            // `first`/`last`: the window's edges move as for the event, and so does the range
            // before (after) it that must hold no matching event.
            ExprKind::FirstLast(fl) => {
                self.event_condition(&fl.event);
                self.window(fl.event.window.as_ref());
            }
            // The wait T makes the answer move at a + T (`then not B`: the customer enters then).
            ExprKind::Sequence(seq) => {
                seq.steps.iter().for_each(|step| self.event_condition(step));
                self.window(seq.window.as_ref());
                self.lengths.extend(seq.within.millis());
            }
        }
    }

    /// The relative lengths of a window.
    fn window(&mut self, w: Option<&Window>) {
        let Some(w) = w else {
            return;
        };
        let lengths = &mut self.lengths;
        let mut push = |d: &RuleDuration| lengths.extend(d.millis());
        let point = |k: &TimeKind, push: &mut dyn FnMut(&RuleDuration)| {
            if let TimeKind::Ago(d) = k {
                push(d);
            }
        };
        match &w.kind {
            WindowKind::Last(d) => push(d),
            WindowKind::Ever => {}
            WindowKind::Since(t) | WindowKind::Before(t) => point(&t.kind, &mut push),
            WindowKind::Between(a, b) => {
                point(&a.kind, &mut push);
                point(&b.kind, &mut push);
            }
        }
    }

    /// The event an event condition names, and the relative times of its property tests.
    fn event_condition(&mut self, ec: &EventCondition) {
        self.events.insert(ec.event.text.clone());
        let before = self.lengths.len();
        if let Some(p) = &ec.predicate {
            predicate_lengths(p, &mut self.lengths);
        }
        if let Some(sh) = &ec.shorthand {
            if let LiteralKind::Ago(d) = &sh.value.kind {
                self.lengths.extend(d.millis());
            }
        }
        self.relative_props |= self.lengths.len() > before;
    }
}

fn predicate_lengths(p: &Predicate, out: &mut Vec<i64>) {
    match &p.kind {
        PredicateKind::And(items) | PredicateKind::Or(items) => {
            items.iter().for_each(|i| predicate_lengths(i, out));
        }
        PredicateKind::Not(inner) => predicate_lengths(inner, out),
        PredicateKind::Cond(c) => test_lengths(&c.test, out),
    }
}

fn test_lengths(t: &Test, out: &mut Vec<i64>) {
    let mut lit = |l: &crate::rules::Literal| {
        if let LiteralKind::Ago(d) = &l.kind {
            out.extend(d.millis());
        }
    };
    match t {
        Test::Compare { value, .. } | Test::Contains(value) => lit(value),
        Test::In { values, .. } => values.iter().for_each(lit),
        Test::Between { low, high } => {
            lit(low);
            lit(high);
        }
        Test::IsSet { .. } => {}
    }
}

/// The footprint's events as the catalog's ids (names never stored have none), sorted.
pub(crate) fn event_ids(f: &Footprint, catalog: &Catalog) -> Vec<u32> {
    let mut ids: Vec<u32> = f
        .events
        .iter()
        .filter_map(|e| catalog.event_id(e))
        .collect();
    ids.sort_unstable();
    ids
}

/// Calls `f` with each instant after `now` at which the customer's answer may change by time
/// alone: when one of the rule's events happens (it enters windows), and when it, a date-time
/// trait, or (with `relative_props`) a date-time property is exactly one of the rule's relative
/// lengths in the past, or a millisecond more. Every change happens at one of these instants;
/// most of them change nothing. `data` must hold the customer's events from
/// `now - longest - 1` on (or all of them with `relative_props`).
pub(crate) fn for_each_candidate(
    fp: &Footprint,
    events: &[u32],
    data: &mut CustomerData<'_>,
    now: Timestamp,
    mut f: impl FnMut(Timestamp),
) -> Result<()> {
    let lengths = &fp.lengths;
    let edges = |t: Timestamp, f: &mut dyn FnMut(Timestamp)| {
        for d in lengths {
            for c in [t.saturating_add(*d), t.saturating_add(*d).saturating_add(1)] {
                if c > now {
                    f(c);
                }
            }
        }
    };
    if !lengths.is_empty() {
        for (_, v) in data.profile()? {
            time_values(ValueView::of(v), &mut |t| edges(t, &mut f));
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let (bodies, blocks) = data.events()?;
    for (start, range) in blocks {
        view::for_each_event(*start, &bodies[range.clone()], |e| {
            if events.binary_search(&e.event).is_ok() {
                if e.ts > now {
                    f(e.ts);
                }
                edges(e.ts, &mut f);
                if fp.relative_props {
                    for (_, v) in e.props()? {
                        time_values(ValueView::of(&v), &mut |t| edges(t, &mut f));
                    }
                }
            }
            Ok(true)
        })?;
    }
    Ok(())
}

/// The instants a value holds: a date-time, or the date-times in a list.
fn time_values(v: ValueView<'_>, f: &mut dyn FnMut(Timestamp)) {
    match v {
        ValueView::Time(t) => f(t),
        ValueView::List(items) => {
            items.any(|item| {
                if let ValueView::Time(t) = item {
                    f(t);
                }
                false
            });
        }
        _ => {}
    }
}

/// The earliest of [`for_each_candidate`]'s instants for several footprints at once:
/// `next[i]` becomes the earliest instant after `now` at which an answer under
/// `fps[i]` may change by time alone, for each `i`
/// with `active[i]` (the others are left as they are). `by_event` lists, for each event id, the
/// indexes of the footprints reading it. `data` must hold the events from the earliest
/// [`candidates_read_from`] of the active footprints on: an event earlier than a footprint
/// needs has no candidate after `now` for it, so reading from earlier changes nothing.
pub(crate) fn next_candidates(
    fps: &[&Footprint],
    by_event: &FastMap<u32, Vec<usize>>,
    active: &[bool],
    data: &mut CustomerData<'_>,
    now: Timestamp,
    next: &mut [Option<Timestamp>],
) -> Result<()> {
    let mut any = false;
    let mut with_lengths = false;
    for (i, fp) in fps.iter().enumerate() {
        if active[i] {
            next[i] = None;
            any = true;
            with_lengths |= !fp.lengths.is_empty();
        }
    }
    if !any {
        return Ok(());
    }
    let edges = |i: usize, t: Timestamp, next: &mut [Option<Timestamp>]| {
        for d in &fps[i].lengths {
            let at = t.saturating_add(*d);
            let c = if at > now { at } else { at.saturating_add(1) };
            if c > now {
                next[i] = Some(next[i].map_or(c, |n| n.min(c)));
            }
        }
    };
    if with_lengths {
        for (_, v) in data.profile()? {
            time_values(ValueView::of(v), &mut |t| {
                for i in (0..fps.len()).filter(|&i| active[i]) {
                    edges(i, t, next);
                }
            });
        }
    }
    if by_event.is_empty() {
        return Ok(());
    }
    if let Some((bodies, decoded)) = data.decoded()? {
        // Each event's run is in time order, and an event's candidates grow with its time: the
        // earliest candidate of a length is the first event far enough back to reach *now*.
        for (&event, readers) in by_event {
            let run = decoded.run(event);
            if run.is_empty() {
                continue;
            }
            for &i in readers.iter().filter(|&&i| active[i]) {
                if fps[i].relative_props {
                    for d in run {
                        if d.ts > now {
                            next[i] = Some(next[i].map_or(d.ts, |n| n.min(d.ts)));
                        }
                        edges(i, d.ts, next);
                        for (_, v) in d.view(bodies).props()? {
                            time_values(ValueView::of(&v), &mut |t| edges(i, t, next));
                        }
                    }
                    continue;
                }
                if let Some(d) = run.get(run.partition_point(|d| d.ts <= now)) {
                    next[i] = Some(next[i].map_or(d.ts, |n| n.min(d.ts)));
                }
                for &len in &fps[i].lengths {
                    let first = run.partition_point(|d| d.ts.saturating_add(len) < now);
                    let Some(d) = run.get(first) else {
                        continue;
                    };
                    let at = d.ts.saturating_add(len);
                    let c = if at > now { at } else { at.saturating_add(1) };
                    if c > now {
                        next[i] = Some(next[i].map_or(c, |n| n.min(c)));
                    }
                }
            }
        }
        return Ok(());
    }
    let (bodies, blocks) = data.events()?;
    for (start, range) in blocks {
        view::for_each_event(*start, &bodies[range.clone()], |e| {
            let Some(readers) = by_event.get(&e.event) else {
                return Ok(true);
            };
            for &i in readers.iter().filter(|&&i| active[i]) {
                if e.ts > now {
                    next[i] = Some(next[i].map_or(e.ts, |n| n.min(e.ts)));
                }
                edges(i, e.ts, next);
                if fps[i].relative_props {
                    for (_, v) in e.props()? {
                        time_values(ValueView::of(&v), &mut |t| edges(i, t, next));
                    }
                }
            }
            Ok(true)
        })?;
    }
    Ok(())
}

/// Where a customer's events must be read from for [`for_each_candidate`] at `now`.
pub(crate) fn candidates_read_from(fp: &Footprint, now: Timestamp) -> Timestamp {
    if fp.relative_props {
        Timestamp::MIN
    } else {
        now.saturating_sub(fp.longest()).saturating_sub(1)
    }
}
