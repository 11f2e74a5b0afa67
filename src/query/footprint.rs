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
    TimePoint, Window, WindowKind,
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
    /// (event, length) pairs at which only a customer's latest event up to *now* can change the
    /// answer: the event is read only by conditions `E in last L` or `E since L ago` without a
    /// filter or a count, so an earlier event leaving the window changes nothing while a later
    /// one is still in it (see [`next_candidates`]).
    pub latest_only: BTreeSet<(String, i64)>,
}

/// What [`Footprint::of`] gathers on the way, to find [`Footprint::latest_only`].
#[derive(Default)]
struct Presence {
    /// (event, length) of each condition `E in last L` / `E since L ago` without filter or count.
    windows: BTreeSet<(String, i64)>,
    /// Events read in any other way.
    other: BTreeSet<String>,
}

impl Footprint {
    /// The footprint of `rule`; saved audiences it names are followed through `saved` (an
    /// unknown one, or a cycle, is simply not followed: planning reports those).
    pub fn of(rule: &Rule, saved: &dyn SavedRules) -> Footprint {
        let mut f = Footprint::default();
        let mut p = Presence::default();
        f.expr(&rule.expr, saved, &mut p);
        f.lengths.sort_unstable();
        f.lengths.dedup();
        f.latest_only = p
            .windows
            .into_iter()
            .filter(|(e, _)| !p.other.contains(e))
            .collect();
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

    fn expr(&mut self, e: &Expr, saved: &dyn SavedRules, p: &mut Presence) {
        match &e.kind {
            ExprKind::And(items) | ExprKind::Or(items) => {
                items.iter().for_each(|i| self.expr(i, saved, p));
            }
            ExprKind::Not(inner) => self.expr(inner, saved, p),
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
                p.other.insert(c.path.text.clone());
                self.traits.insert(c.path.text.clone());
                self.events.insert(c.path.text.clone());
                test_lengths(&c.test, &mut self.lengths);
            }
            ExprKind::InAudience(name) => {
                if self.audiences.insert(name.text.clone()) {
                    self.ids |= saved.saved_list(&name.text).is_some();
                    if let Some(rule) = saved.saved_rule(&name.text) {
                        self.expr(&rule.expr, saved, p);
                    }
                }
            }
            ExprKind::Event(ec) => {
                match presence_window(ec) {
                    Some(len) => {
                        p.windows.insert((ec.event.text.clone(), len));
                    }
                    None => {
                        p.other.insert(ec.event.text.clone());
                    }
                }
                self.event_condition(ec);
                self.window(ec.window.as_ref());
            }
            // `first`/`last`: the window's edges move as for the event, and so does the range
            // before (after) it that must hold no matching event.
            ExprKind::FirstLast(fl) => {
                p.other.insert(fl.event.event.text.clone());
                self.event_condition(&fl.event);
                self.window(fl.event.window.as_ref());
            }
            // The wait T makes the answer move at a + T (`then not B`: the customer enters then).
            ExprKind::Sequence(seq) => {
                for step in &seq.steps {
                    p.other.insert(step.event.text.clone());
                    self.event_condition(step);
                }
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

/// The length `L` of `E in last L` or `E since L ago` without a filter, shorthand or count: a
/// condition whose answer at time `t` is whether the latest event up to `t` is in the window.
fn presence_window(ec: &EventCondition) -> Option<i64> {
    if ec.predicate.is_some() || ec.shorthand.is_some() || ec.frequency.is_some() {
        return None;
    }
    match &ec.window.as_ref()?.kind {
        WindowKind::Last(d) => d.millis(),
        WindowKind::Since(TimePoint {
            kind: TimeKind::Ago(d),
            ..
        }) => d.millis(),
        _ => None,
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
/// with `active[i]` (the others are left as they are); `listed` holds those `i`, so that the
/// cost follows the active footprints, not all of them. `by_event` lists, for each event id, the
/// indexes of the footprints reading it. `data` must hold the events from the earliest
/// [`candidates_read_from`] of the active footprints on: an event earlier than a footprint
/// needs has no candidate after `now` for it, so reading from earlier changes nothing.
pub(crate) fn next_candidates(
    fps: &[&Footprint],
    by_event: &ByEvent,
    active: &[bool],
    listed: &[usize],
    data: &mut CustomerData<'_>,
    now: Timestamp,
    next: &mut [Option<Timestamp>],
) -> Result<()> {
    let mut with_lengths = false;
    for &i in listed {
        debug_assert!(active[i]);
        next[i] = None;
        with_lengths |= !fps[i].lengths.is_empty();
    }
    if listed.is_empty() {
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
                for &i in listed {
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
            for (i, latest) in readers.iter().filter(|(i, _)| active[*i]) {
                let i = *i;
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
                let future = run.partition_point(|d| d.ts <= now);
                if let Some(d) = run.get(future) {
                    next[i] = Some(next[i].map_or(d.ts, |n| n.min(d.ts)));
                }
                for &len in &fps[i].lengths {
                    let at = if latest.contains(&len) {
                        // Only the latest event up to now can leave the window; the later ones
                        // enter it (above), and earlier ones leave while it is still in.
                        future.checked_sub(1)
                    } else {
                        Some(run.partition_point(|d| d.ts.saturating_add(len) < now))
                    };
                    let Some(d) = at.and_then(|at| run.get(at)) else {
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
            for &(i, _) in readers.iter().filter(|(i, _)| active[*i]) {
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

/// The footprints reading each event, for [`next_candidates`]: per event id, each reader's index
/// in the footprints given and the lengths at which only its latest event counts
/// ([`Footprint::latest_only`]).
pub(crate) type ByEvent = FastMap<u32, Vec<(usize, Vec<i64>)>>;

/// [`ByEvent`] for `fps`, with the catalog's event ids (names never stored are left out).
pub(crate) fn by_event(fps: &[&Footprint], catalog: &Catalog) -> ByEvent {
    let mut out = ByEvent::default();
    for (i, fp) in fps.iter().enumerate() {
        for name in &fp.events {
            let Some(e) = catalog.event_id(name) else {
                continue;
            };
            let latest = fp
                .latest_only
                .range((name.clone(), i64::MIN)..=(name.clone(), i64::MAX))
                .map(|(_, len)| *len)
                .collect();
            out.entry(e).or_default().push((i, latest));
        }
    }
    out
}

/// Where a customer's events must be read from for [`for_each_candidate`] at `now`.
pub(crate) fn candidates_read_from(fp: &Footprint, now: Timestamp) -> Timestamp {
    if fp.relative_props {
        Timestamp::MIN
    } else {
        now.saturating_sub(fp.longest()).saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse;

    struct Saved(Vec<(&'static str, Rule)>);

    impl SavedRules for Saved {
        fn saved_rule(&self, name: &str) -> Option<&Rule> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, r)| r)
        }
        fn saved_names(&self) -> Vec<String> {
            self.0.iter().map(|(n, _)| n.to_string()).collect()
        }
    }

    fn latest_only(rule: &str, saved: &Saved) -> Vec<(String, i64)> {
        let fp = Footprint::of(&parse(rule).unwrap(), saved);
        fp.latest_only.into_iter().collect()
    }

    #[test]
    fn only_plain_presence_windows_count_the_latest_event_alone() {
        const H: i64 = 3_600_000;
        let none = Saved(Vec::new());
        let pair = |e: &str, l: i64| (e.to_owned(), l);
        assert_eq!(
            latest_only("viewed in last 2 hours", &none),
            [pair("viewed", 2 * H)]
        );
        assert_eq!(
            latest_only(
                "added_to_cart since 45 minutes ago and not purchased in last 1 hour and tier = x",
                &none
            ),
            [pair("added_to_cart", 45 * 60_000), pair("purchased", H)]
        );
        // Both lengths of one event, each a presence window.
        assert_eq!(
            latest_only("viewed in last 1 hour or not viewed in last 2 hours", &none),
            [pair("viewed", H), pair("viewed", 2 * H)]
        );
        // Any other reading of the event takes it out, wherever it is.
        for rule in [
            "viewed in last 2 hours and viewed at least 2 times in last 3 hours",
            "viewed in last 2 hours and viewed where amount > 1 in last 1 hour",
            "viewed in last 2 hours or viewed between 3 hours ago and 1 hour ago",
            "viewed in last 2 hours or viewed before 1 hour ago",
            "viewed in last 2 hours and not viewed then purchased within 1 hour",
            "viewed in last 2 hours and first viewed in last 1 hour",
            "viewed in last 2 hours and viewed between 2026-01-01 and 2026-02-01",
            "viewed in last 2 hours and viewed ever",
            "viewed in last 2 hours and in audience other",
        ] {
            let saved = Saved(vec![(
                "other",
                parse("viewed sum(amount) > 3 in last 1 hour").unwrap(),
            )]);
            assert_eq!(latest_only(rule, &saved), [], "{rule}");
        }
        // Followed into saved audiences.
        let saved = Saved(vec![("recent", parse("viewed in last 1 hour").unwrap())]);
        assert_eq!(
            latest_only("in audience recent and purchased in last 2 hours", &saved),
            [pair("purchased", 2 * H), pair("viewed", H)]
        );
    }
}
