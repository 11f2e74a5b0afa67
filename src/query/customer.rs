//! The exact meaning of a condition for one customer, from their stored profile and events: the
//! residual check run on the customers the bitmaps cannot decide, and the ground truth that
//! `why` reports. Everything rules.md says about values lives here.
//!
//! This module only reads values handed to it; it neither loads data nor reads indexes.

use std::cmp::Ordering;

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::model::Value;
use crate::rules::{AggregateFn, CmpOp};
use crate::storage::view::{self, BlockSpan, EventView, ValueView};

use super::plan::{
    compare_f64, compare_u64, op_holds, ComputedNode, EventNode, Filter, Frequency, Lit,
    PlannedReducer, SeqNode, ValueTest,
};

/// Whether a value equals a literal: strings exactly (and a number or date literal by its text
/// as written), numbers numerically, booleans, and instants. A list equals nothing.
pub(crate) fn equals(v: ValueView<'_>, lit: &Lit) -> bool {
    match v {
        ValueView::Str(s) => lit.text.as_deref() == Some(s),
        ValueView::Int(i) => match (lit.int, lit.num) {
            (Some(j), _) => i == j,
            (None, Some(f)) => (i as f64) == f,
            _ => false,
        },
        ValueView::Float(f) => lit.num == Some(f),
        ValueView::Bool(b) => lit.boolean == Some(b),
        ValueView::Time(t) => lit.time == Some(t),
        ValueView::List(_) => false,
    }
}

/// How a value orders against a literal, when the two are of one kind: numbers with numbers,
/// instants with instants (a date means its midnight UTC). Anything else does not order, and an
/// ordering test on it is false.
pub(crate) fn order(v: ValueView<'_>, lit: &Lit) -> Option<Ordering> {
    match v {
        ValueView::Int(i) => match (lit.int, lit.num) {
            (Some(j), _) if !lit.is_str => Some(i.cmp(&j)),
            (None, Some(f)) if !lit.is_str => (i as f64).partial_cmp(&f),
            _ => None,
        },
        ValueView::Float(f) if !lit.is_str => f.partial_cmp(&lit.num?),
        ValueView::Time(t) => Some(t.cmp(&lit.time?)),
        _ => None,
    }
}

/// Whether a value (`None`: the trait or property is missing) passes a test.
pub(crate) fn passes(v: Option<ValueView<'_>>, test: &ValueTest) -> bool {
    match test {
        ValueTest::IsSet { negated } => v.is_some() != *negated,
        _ => v.is_some_and(|v| passes_present(v, test)),
    }
}

pub(crate) fn passes_present(v: ValueView<'_>, test: &ValueTest) -> bool {
    match test {
        ValueTest::Compare { op: CmpOp::Eq, lit } => equals(v, lit),
        ValueTest::Compare { op: CmpOp::Ne, lit } => !equals(v, lit),
        ValueTest::Compare { op, lit } => order(v, lit).is_some_and(|o| op_holds(o, *op)),
        ValueTest::In { negated, lits } => lits.iter().any(|l| equals(v, l)) != *negated,
        ValueTest::Between { low, high } => {
            order(v, low).is_some_and(|o| o != Ordering::Less)
                && order(v, high).is_some_and(|o| o != Ordering::Greater)
        }
        ValueTest::Contains(lit) => match v {
            ValueView::List(items) => items.any(|item| equals(item, lit)),
            ValueView::Str(s) => lit.text.as_deref().is_some_and(|t| s.contains(t)),
            _ => false,
        },
        ValueTest::IsSet { negated } => !negated,
    }
}

/// The value of field `id` in a list of fields (a profile's traits).
pub(crate) fn field(fields: &[(u32, Value)], id: Option<u32>) -> Option<&Value> {
    let id = id?;
    fields.iter().find(|(f, _)| *f == id).map(|(_, v)| v)
}

/// Whether one event's properties pass a filter.
pub(crate) fn filter_passes(e: &EventView<'_>, filter: &Filter) -> Result<bool> {
    filter_passes_by(&|p| e.prop(p), filter)
}

/// Whether the properties `prop` gives (by property id: the first value stored under it, if
/// any) pass a filter: [`filter_passes`] for properties held any way.
pub(crate) fn filter_passes_by<'v, F>(prop: &F, filter: &Filter) -> Result<bool>
where
    F: Fn(u32) -> Result<Option<ValueView<'v>>>,
{
    Ok(match filter {
        Filter::And(items) => {
            for f in items {
                if !filter_passes_by(prop, f)? {
                    return Ok(false);
                }
            }
            true
        }
        Filter::Or(items) => {
            for f in items {
                if filter_passes_by(prop, f)? {
                    return Ok(true);
                }
            }
            false
        }
        Filter::Not(inner) => !filter_passes_by(prop, inner)?,
        Filter::Cond { prop: id, test } => {
            let v = match id {
                Some(p) => prop(*p)?,
                None => None,
            };
            passes(v, test)
        }
    })
}

/// The events of one customer that an event condition counts, folded as it goes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub count: u64,
    /// Over the events whose aggregated property is a number.
    pub numbers: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// With a `distinct(prop)` frequency: how many different values of it the events held.
    pub distinct: u64,
}

impl Tally {
    fn add_number(&mut self, x: f64) {
        if self.numbers == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.numbers += 1;
        self.sum += x;
    }

    /// Counts one matching event, and adds its `agg_prop` (the aggregated property, when the
    /// frequency is an aggregate) when that is a number.
    fn add_event(&mut self, e: &EventView<'_>, agg_prop: Option<Option<u32>>) -> Result<()> {
        self.count += 1;
        if let Some(Some(p)) = agg_prop {
            if let Some(x) = e.prop(p)?.and_then(ValueView::as_f64) {
                self.add_number(x);
            }
        }
        Ok(())
    }

    /// The aggregate over the numbers seen: a sum of none is 0, the others are undefined.
    pub fn aggregate(&self, func: AggregateFn) -> Option<f64> {
        match func {
            AggregateFn::Sum => Some(self.sum),
            _ if self.numbers == 0 => None,
            AggregateFn::Avg => Some(self.sum / self.numbers as f64),
            AggregateFn::Min => Some(self.min),
            AggregateFn::Max => Some(self.max),
        }
    }

    /// Whether the tally satisfies the condition's frequency.
    pub fn satisfies(&self, f: &Frequency) -> bool {
        match *f {
            Frequency::Count { op, n } => compare_u64(self.count, op, n),
            Frequency::Aggregate {
                func, op, value, ..
            } => self
                .aggregate(func)
                .is_some_and(|x| compare_f64(x, op, value)),
            Frequency::Distinct { op, n, .. } => compare_u64(self.distinct, op, n),
        }
    }
}

/// What `f` makes of each customer of `who`, given their stored events from `from` on (block
/// bodies and spans, as [`for_each_match`] reads them), for those it makes something of, in id
/// order; the customers are split across rayon's pool and each task reuses its buffers.
pub(crate) fn map_customers_events<T: Send>(
    store: &crate::storage::Store,
    who: &roaring::RoaringBitmap,
    from: Timestamp,
    f: impl Fn(u32, &[u8], &[BlockSpan]) -> Result<Option<T>> + Sync,
) -> Result<Vec<(u32, T)>> {
    use rayon::prelude::*;
    let ids: Vec<u32> = who.iter().collect();
    let chunk = super::chunk_len(ids.len());
    let parts: Vec<Vec<(u32, T)>> = ids
        .par_chunks(chunk)
        .map(|custs| {
            let (mut bodies, mut blocks) = (Vec::new(), Vec::new());
            let mut out = Vec::with_capacity(custs.len());
            for &cust in custs {
                bodies.clear();
                blocks.clear();
                store.event_bodies_from(cust, from, &mut bodies, &mut blocks)?;
                if let Some(x) = f(cust, &bodies, &blocks)? {
                    out.push((cust, x));
                }
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// Calls `f` with each of a customer's events that an event condition counts (name, window,
/// filter), in time order. `bodies` holds their blocks' bodies and `blocks` each block's first
/// timestamp and byte range, in time order.
pub(crate) fn for_each_match<'a>(
    node: &EventNode,
    bodies: &'a [u8],
    blocks: &[BlockSpan],
    mut f: impl FnMut(&EventView<'a>) -> Result<()>,
) -> Result<()> {
    let Some(event) = node.event else {
        return Ok(());
    };
    view::for_each_event_between(bodies, blocks, node.from, node.to, |e| {
        if e.event != event {
            return Ok(());
        }
        if let Some(filter) = &node.filter {
            if !filter_passes(&e, filter)? {
                return Ok(());
            }
        }
        f(&e)
    })
}

/// Folds a customer's events for one event condition (see [`for_each_match`]).
pub(crate) fn tally(node: &EventNode, bodies: &[u8], blocks: &[BlockSpan]) -> Result<Tally> {
    let mut t = Tally::default();
    let agg_prop = aggregated(&node.frequency);
    let mut seen = Distinct::of(&node.frequency);
    for_each_match(node, bodies, blocks, |e| {
        seen.add(e)?;
        t.add_event(e, agg_prop)
    })?;
    t.distinct = seen.seen.len() as u64;
    Ok(t)
}

/// The property an aggregate frequency folds (`Some(None)`: one never seen), `None` for others.
fn aggregated(f: &Frequency) -> Option<Option<u32>> {
    match *f {
        Frequency::Aggregate { prop, .. } => Some(prop),
        Frequency::Count { .. } | Frequency::Distinct { .. } => None,
    }
}

/// One value as `distinct(prop)` tells values apart, the way `with same` does: text exactly,
/// booleans, instants, and numbers by exact value, so an integer and a float of the same whole
/// value are one value (`3` and `3.0`), but the text `"3"` is another. Lists are no value here
/// (`=` never matches a list): an event with a list, like one without the property, adds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum DistinctValue<'a> {
    /// A whole number: every integer, and a float with no fraction within the integers' range.
    Whole(i64),
    /// Any other float, by its bits (no stored float is NaN: JSON has none).
    Fraction(u64),
    Text(&'a str),
    Bool(bool),
    Time(Timestamp),
}

/// 2^63 as a float: floats in [-2^63, 2^63) with no fraction convert to `i64` exactly.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

impl<'a> DistinctValue<'a> {
    pub fn of(v: ValueView<'a>) -> Option<Self> {
        Some(match v {
            ValueView::Int(i) => DistinctValue::Whole(i),
            ValueView::Float(f) if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) => {
                DistinctValue::Whole(f as i64)
            }
            ValueView::Float(f) => DistinctValue::Fraction(f.to_bits()),
            ValueView::Str(s) => DistinctValue::Text(s),
            ValueView::Bool(b) => DistinctValue::Bool(b),
            ValueView::Time(t) => DistinctValue::Time(t),
            ValueView::List(_) => return None,
        })
    }

    /// As a rule would write it: numbers and booleans bare, text quoted, instants in RFC 3339.
    pub fn display(&self) -> String {
        match *self {
            DistinctValue::Whole(i) => i.to_string(),
            DistinctValue::Fraction(bits) => f64::from_bits(bits).to_string(),
            DistinctValue::Text(s) => format!("{s:?}"),
            DistinctValue::Bool(b) => b.to_string(),
            DistinctValue::Time(t) => crate::model::time::format_rfc3339(t),
        }
    }
}

/// The different values of a `distinct(prop)` frequency's property among the events added
/// (nothing for any other frequency).
#[derive(Debug, Default)]
pub(crate) struct Distinct<'a> {
    prop: Option<u32>,
    pub seen: std::collections::HashSet<DistinctValue<'a>>,
}

impl<'a> Distinct<'a> {
    pub fn of(f: &Frequency) -> Self {
        Distinct {
            prop: match *f {
                Frequency::Distinct { prop, .. } => prop,
                _ => None,
            },
            seen: Default::default(),
        }
    }

    pub fn add(&mut self, e: &EventView<'a>) -> Result<()> {
        if let Some(p) = self.prop {
            if let Some(v) = e.prop(p)?.and_then(DistinctValue::of) {
                self.seen.insert(v);
            }
        }
        Ok(())
    }
}

/// The value of a computed trait for one customer (see [`ComputedNode`]), from their matching
/// events in the window: `count` and `distinct(p)` an integer (0 without events), `sum(p)`
/// a float (0 without numbers), `avg/min/max(p)` a float over the events whose property is a
/// number (none without), `top(p)` the value held by the most events (ties: the smallest in
/// [`top_order`]; none without), `first time`/`last time` the earliest/latest event's instant;
/// the predictive reducers as `super::predictive` derives them.
pub(crate) fn computed_value(
    c: &ComputedNode,
    cust: u32,
    bodies: &[u8],
    blocks: &[BlockSpan],
) -> Result<Option<Value>> {
    let with = |frequency: Frequency| EventNode {
        frequency,
        ..c.events.clone()
    };
    Ok(match c.reducer {
        PlannedReducer::Count => Some(Value::Int(tally(&c.events, bodies, blocks)?.count as i64)),
        PlannedReducer::Aggregate { func, prop } => {
            let node = with(Frequency::Aggregate {
                func,
                prop,
                op: CmpOp::Eq,
                value: 0.0,
            });
            tally(&node, bodies, blocks)?
                .aggregate(func)
                .map(Value::Float)
        }
        PlannedReducer::Distinct(prop) => {
            let node = with(Frequency::Distinct {
                prop,
                op: CmpOp::Eq,
                n: 0,
            });
            Some(Value::Int(tally(&node, bodies, blocks)?.distinct as i64))
        }
        PlannedReducer::Top(prop) => {
            let Some(p) = prop else {
                return Ok(None);
            };
            let mut counts: std::collections::HashMap<DistinctValue<'_>, u64> =
                std::collections::HashMap::new();
            for_each_match(&c.events, bodies, blocks, |e| {
                if let Some(v) = e.prop(p)?.and_then(DistinctValue::of) {
                    *counts.entry(v).or_default() += 1;
                }
                Ok(())
            })?;
            counts
                .into_iter()
                .max_by(|(a, n), (b, m)| n.cmp(m).then_with(|| top_order(b, a)))
                .map(|(v, _)| v.to_value())
        }
        PlannedReducer::FirstTime | PlannedReducer::LastTime => {
            let last = c.reducer == PlannedReducer::LastTime;
            let mut found = None;
            for_each_match(&c.events, bodies, blocks, |e| {
                if last || found.is_none() {
                    found = Some(e.ts);
                }
                Ok(())
            })?;
            found.map(Value::Time)
        }
        PlannedReducer::PAlive | PlannedReducer::Expected { .. } | PlannedReducer::Clv { .. } => {
            super::predictive::model_value(c, bodies, blocks)?
        }
        PlannedReducer::Rfm(_) => super::predictive::table_value(c, cust)?,
    })
}

/// The order in which `top(p)` breaks a tie (the smallest wins): numbers by value, then text
/// (bytewise), then `false` before `true`, then instants.
pub(crate) fn top_order(a: &DistinctValue<'_>, b: &DistinctValue<'_>) -> Ordering {
    fn rank(v: &DistinctValue<'_>) -> u8 {
        match v {
            DistinctValue::Whole(_) | DistinctValue::Fraction(_) => 0,
            DistinctValue::Text(_) => 1,
            DistinctValue::Bool(_) => 2,
            DistinctValue::Time(_) => 3,
        }
    }
    let num = |v: &DistinctValue<'_>| match *v {
        DistinctValue::Whole(i) => i as f64,
        DistinctValue::Fraction(bits) => f64::from_bits(bits),
        _ => 0.0,
    };
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (DistinctValue::Whole(x), DistinctValue::Whole(y)) => x.cmp(y),
        (DistinctValue::Text(x), DistinctValue::Text(y)) => x.cmp(y),
        (DistinctValue::Bool(x), DistinctValue::Bool(y)) => x.cmp(y),
        (DistinctValue::Time(x), DistinctValue::Time(y)) => x.cmp(y),
        _ => num(a).total_cmp(&num(b)),
    })
}

impl DistinctValue<'_> {
    /// The value as a stored value: a whole number an integer.
    pub fn to_value(self) -> Value {
        match self {
            DistinctValue::Whole(i) => Value::Int(i),
            DistinctValue::Fraction(bits) => Value::Float(f64::from_bits(bits)),
            DistinctValue::Text(s) => Value::Str(s.into()),
            DistinctValue::Bool(b) => Value::Bool(b),
            DistinctValue::Time(t) => Value::Time(t),
        }
    }
}

/// One of a customer's events that some step of a sequence may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'a> {
    pub ts: i64,
    /// Bit `j` set: the event is step `j`'s event, in its range, passing its filter.
    pub mask: u32,
    /// The value of the `with same` property, if the sequence has one and the event has it.
    pub value: Option<ValueView<'a>>,
    pub view: EventView<'a>,
}

/// What the sequence matchers read of an event a step may use: its time, which steps it is
/// (bit `j` for step `j`) and its `with same` value. Held by [`Hit`] (an event read from the
/// customer's blocks) and by the event columns' hits (`super::columns`).
pub(crate) trait StepEvent {
    fn ts(&self) -> i64;
    fn mask(&self) -> u32;
    fn value(&self) -> Option<ValueView<'_>>;
}

impl StepEvent for Hit<'_> {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn mask(&self) -> u32 {
        self.mask
    }
    fn value(&self) -> Option<ValueView<'_>> {
        self.value
    }
}

/// Which of `steps` an event is (bit `j` for step `j`): its event, inside the step's range,
/// passing the step's filter. The steps of a sequence and of a funnel.
pub(crate) fn step_mask<'n>(
    steps: impl IntoIterator<Item = &'n EventNode>,
    e: &EventView<'_>,
) -> Result<u32> {
    let mut mask = 0u32;
    for (j, n) in steps.into_iter().enumerate() {
        if n.event == Some(e.event) && n.from <= e.ts && e.ts <= n.to {
            let passes = match &n.filter {
                Some(f) => filter_passes(e, f)?,
                None => true,
            };
            if passes {
                mask |= 1 << j;
            }
        }
    }
    Ok(mask)
}

/// The customer's events that the steps of `s` may use, in time order, into `out` (cleared).
pub(crate) fn sequence_hits<'a>(
    s: &SeqNode,
    bodies: &'a [u8],
    blocks: &[BlockSpan],
    out: &mut Vec<Hit<'a>>,
) -> Result<()> {
    out.clear();
    let from = s.steps.iter().map(|n| n.from).min().unwrap_or(0);
    let to = s.steps.iter().map(|n| n.to).max().unwrap_or(-1);
    // A step whose event was never stored matches nothing: no sequence can form, but `then
    // not` of it holds on every first-step event whose wait is over.
    let unmatched = |i: usize, n: &EventNode| n.event.is_none() && !(s.negated && i == 1);
    if from > to || s.steps.iter().enumerate().any(|(i, n)| unmatched(i, n)) {
        return Ok(());
    }
    let same = s.same.flatten();
    view::for_each_event_between(bodies, blocks, from, to, |e| {
        let mask = step_mask(&s.steps, &e)?;
        if mask != 0 {
            let value = match same {
                Some(p) => e.prop(p)?,
                None => None,
            };
            out.push(Hit {
                ts: e.ts,
                mask,
                value,
                view: e,
            });
        }
        Ok(())
    })
}

/// Whether two values of the `with same` property are the same: strings, booleans and instants
/// when equal, numbers by value (`3` and `3.0`); a list is never the same as anything, as `=`
/// never matches a list.
pub(crate) fn same_value(a: ValueView<'_>, b: ValueView<'_>) -> bool {
    match (a, b) {
        (ValueView::Str(x), ValueView::Str(y)) => x == y,
        (ValueView::Bool(x), ValueView::Bool(y)) => x == y,
        (ValueView::Time(x), ValueView::Time(y)) => x == y,
        (ValueView::Int(x), ValueView::Int(y)) => x == y,
        (ValueView::Int(_) | ValueView::Float(_), ValueView::Int(_) | ValueView::Float(_)) => {
            a.as_f64() == b.as_f64()
        }
        _ => false,
    }
}

/// What decided a sequence for one customer: the indexes (into the hits) of the events that
/// formed it (every step's, in order), or for `then not` of the first step's event whose wait
/// passed without the second (`formed`), or else of the latest attempt and the event that broke
/// it (`broken`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Witness {
    pub formed: Vec<usize>,
    pub broken: Vec<usize>,
}

/// Whether the sequence holds over `hits` ([`sequence_hits`]): one pass in time order without
/// `with same` (for each step, the latest start of a partial match that reached it), a scan
/// from each start with it.
pub(crate) fn sequence_holds<H: StepEvent>(s: &SeqNode, hits: &[H]) -> bool {
    if s.same.is_some() {
        return sequence_witness(s, hits).is_some_and(|w| !w.formed.is_empty());
    }
    let k = s.steps.len();
    if s.negated {
        // From the latest events back: `next_b` is the earliest second-step event strictly
        // after the current instant.
        let mut next_b: Option<i64> = None;
        let mut end = hits.len();
        while end > 0 {
            let ts = hits[end - 1].ts();
            let mut start = end - 1;
            while start > 0 && hits[start - 1].ts() == ts {
                start -= 1;
            }
            let group = &hits[start..end];
            let limit = ts.saturating_add(s.within);
            if group.iter().any(|h| h.mask() & 1 != 0) && next_b.is_none_or(|b| b > limit) {
                return true;
            }
            if group.iter().any(|h| h.mask() & 2 != 0) {
                next_b = Some(ts);
            }
            end = start;
        }
        return false;
    }
    // best[j]: the latest first-step instant of a partial match through step j, all of whose
    // events are strictly before the current instant (updates wait for the instant's end).
    let mut best = [None::<i64>; crate::rules::MAX_STEPS];
    let mut i = 0;
    while i < hits.len() {
        let ts = hits[i].ts();
        let mut next = best;
        while i < hits.len() && hits[i].ts() == ts {
            let mask = hits[i].mask();
            for j in 0..k {
                if mask & (1 << j) == 0 {
                    continue;
                }
                let start = match j {
                    0 => Some(ts),
                    _ => best[j - 1].filter(|&a| ts <= a.saturating_add(s.within)),
                };
                if let Some(a) = start {
                    next[j] = Some(next[j].map_or(a, |b| b.max(a)));
                }
            }
            i += 1;
        }
        if next[k - 1].is_some() {
            return true;
        }
        best = next;
    }
    false
}

/// The events that formed or broke the sequence (see [`Witness`]); `None` when no first-step
/// event is in range. Quadratic in the hits: for `why`, and for `with same`.
pub(crate) fn sequence_witness<H: StepEvent>(s: &SeqNode, hits: &[H]) -> Option<Witness> {
    let k = s.steps.len();
    let same = |a: &H, b: &H| match s.same {
        None => true,
        Some(_) => matches!((a.value(), b.value()), (Some(x), Some(y)) if same_value(x, y)),
    };
    let mut last_attempt: Option<Witness> = None;
    for (i, a) in hits.iter().enumerate() {
        if a.mask() & 1 == 0 {
            continue;
        }
        let limit = a.ts().saturating_add(s.within);
        if s.negated {
            let broke = hits[i + 1..]
                .iter()
                .take_while(|b| b.ts() <= limit)
                .position(|b| b.ts() > a.ts() && b.mask() & 2 != 0 && same(a, b));
            match broke {
                None => {
                    return Some(Witness {
                        formed: vec![i],
                        broken: Vec::new(),
                    })
                }
                Some(p) => {
                    last_attempt = Some(Witness {
                        formed: Vec::new(),
                        broken: vec![i, i + 1 + p],
                    })
                }
            }
            continue;
        }
        // The earliest event for each step after the previous one's: optimal for this start.
        let mut chain = vec![i];
        let mut cur = a.ts();
        for (p, b) in hits.iter().enumerate().skip(i + 1) {
            if b.ts() > limit || chain.len() == k {
                break;
            }
            if b.ts() > cur && b.mask() & (1 << chain.len()) != 0 && same(a, b) {
                cur = b.ts();
                chain.push(p);
            }
        }
        if chain.len() == k {
            return Some(Witness {
                formed: chain,
                broken: Vec::new(),
            });
        }
        last_attempt = Some(Witness {
            formed: Vec::new(),
            broken: chain,
        });
    }
    last_attempt
}

/// One of a customer's loaded events in a [`Decoded`] view: its time, its event id, and where
/// its encoded properties lie in the customer's block bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodedEvent {
    pub event: u32,
    pub ts: Timestamp,
    props: (u32, u32),
}

impl DecodedEvent {
    /// The event as a view into `bodies` (the bodies it was decoded from).
    pub fn view<'a>(&self, bodies: &'a [u8]) -> EventView<'a> {
        let (start, end) = (self.props.0 as usize, self.props.1 as usize);
        EventView::from_parts(self.ts, self.event, &bodies[start..end])
    }
}

/// A customer's loaded events decoded once, grouped by event id, each group in stored (time)
/// order: what lets many conditions over one customer (the saved audiences a write touches)
/// share one decode, each condition then looking only at its own event's run within its window,
/// found by binary search, instead of walking every event of every block again.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    events: Vec<DecodedEvent>,
}

impl Decoded {
    pub fn clear(&mut self) {
        self.events.clear();
    }

    /// Decodes the events of `blocks` (byte ranges in `bodies`).
    pub fn build(&mut self, bodies: &[u8], blocks: &[BlockSpan]) -> Result<()> {
        self.events.clear();
        let base = bodies.as_ptr() as usize;
        for (start, range) in blocks {
            view::for_each_event(*start, &bodies[range.clone()], |e| {
                let at = e.props_bytes().as_ptr() as usize - base;
                let end = at + e.props_bytes().len();
                let (Ok(at), Ok(end)) = (u32::try_from(at), u32::try_from(end)) else {
                    return Err(crate::error::internal!("event bodies past 4 GiB"));
                };
                self.events.push(DecodedEvent {
                    event: e.event,
                    ts: e.ts,
                    props: (at, end),
                });
                Ok(true)
            })?;
        }
        // Stable: each event's run keeps the stored order, which is time order.
        self.events.sort_by_key(|e| e.event);
        Ok(())
    }

    /// The events of id `event`, in stored (time) order.
    pub fn run(&self, event: u32) -> &[DecodedEvent] {
        let lo = self.events.partition_point(|e| e.event < event);
        let hi = lo + self.events[lo..].partition_point(|e| e.event == event);
        &self.events[lo..hi]
    }

    /// The events of id `event` from `from` to `to` (both included).
    pub fn window(&self, event: u32, from: Timestamp, to: Timestamp) -> &[DecodedEvent] {
        let run = self.run(event);
        let lo = run.partition_point(|e| e.ts < from);
        let hi = lo + run[lo..].partition_point(|e| e.ts <= to);
        &run[lo..hi]
    }
}

/// How many matching events decide a frequency: a count's answer is known once the count
/// reaches `n` (`>= n`) or passes it (any other comparison with `n`); an aggregate needs them all.
pub(crate) fn enough(f: &Frequency) -> Option<u64> {
    match *f {
        Frequency::Count { op: CmpOp::Ge, n } => Some(n),
        Frequency::Count { n, .. } => Some(n.saturating_add(1)),
        Frequency::Aggregate { .. } | Frequency::Distinct { .. } => None,
    }
}

/// [`tally`] over a [`Decoded`] view of the same events. With `enough`, counting stops once
/// that many events matched (the count is then `enough`): for a count condition, whose answer
/// no further event can change. Same events, same order, so the same tally (sums included).
pub(crate) fn tally_decoded(
    node: &EventNode,
    bodies: &[u8],
    decoded: &Decoded,
    enough: Option<u64>,
) -> Result<Tally> {
    let mut t = Tally::default();
    let Some(event) = node.event else {
        return Ok(t);
    };
    if node.window_is_empty() {
        return Ok(t);
    }
    let agg_prop = aggregated(&node.frequency);
    let mut seen = Distinct::of(&node.frequency);
    for d in decoded.window(event, node.from, node.to) {
        if enough.is_some_and(|n| t.count >= n) {
            break;
        }
        let e = d.view(bodies);
        if let Some(filter) = &node.filter {
            if !filter_passes(&e, filter)? {
                continue;
            }
        }
        seen.add(&e)?;
        t.add_event(&e, agg_prop)?;
    }
    t.distinct = seen.seen.len() as u64;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::StoredEvent;
    use crate::storage::codec;

    /// Events close together in time order (ties included), of ids 0..3, with an `amount` (property 7) that is
    /// an integer, a float, a string or missing.
    fn events() -> impl Strategy<Value = Vec<StoredEvent>> {
        prop::collection::vec((0i64..6, 0u32..3, 0u8..4, -5i64..20), 0..40).prop_map(|raw| {
            let mut ts = 1_000;
            raw.into_iter()
                .map(|(step, event, kind, x)| {
                    ts += step;
                    let amount = match kind {
                        0 => Some(Value::Int(x)),
                        1 => Some(Value::Float(x as f64 / 3.0)),
                        2 => Some(Value::Str(x.to_string().into())),
                        _ => None,
                    };
                    StoredEvent {
                        ts,
                        event,
                        props: amount.map(|v| (7, v)).into_iter().collect(),
                    }
                })
                .collect()
        })
    }

    fn node() -> impl Strategy<Value = EventNode> {
        let op = prop::sample::select(CmpOp::ALL.to_vec());
        let func = prop::sample::select(AggregateFn::ALL.to_vec());
        let frequency = prop_oneof![
            (op.clone(), 0u64..5).prop_map(|(op, n)| Frequency::Count { op, n }),
            (func, op.clone(), -5i64..30).prop_map(|(func, op, v)| Frequency::Aggregate {
                func,
                prop: Some(7),
                op,
                value: v as f64,
            }),
        ];
        let filter = prop::option::of((op, -5i64..20).prop_map(|(op, x)| Filter::Cond {
            prop: Some(7),
            test: ValueTest::Compare {
                op,
                lit: Lit::resolve(
                    &crate::rules::Literal {
                        kind: crate::rules::LiteralKind::Number(crate::rules::Number::Int {
                            value: x,
                            text: x.to_string(),
                        }),
                        span: crate::rules::Span::new(0, 0),
                    },
                    0,
                ),
            },
        }));
        (
            prop::option::weighted(0.9, 0u32..3),
            filter,
            frequency,
            990i64..1_100,
            0i64..80,
        )
            .prop_map(|(event, filter, frequency, from, len)| EventNode {
                event,
                filter,
                frequency,
                from,
                // Sometimes empty (`to < from`); events often at either end.
                to: from + len - 10,
            })
    }

    proptest! {
        /// The decoded view counts, sums and decides exactly what the walk over the blocks
        /// does, whatever the split into blocks, with and without stopping a count early.
        #[test]
        fn a_decoded_view_tallies_as_the_walk_does(
            events in events(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            node in node(),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(events.len() + 1)).collect();
            cuts.extend([0, events.len()]);
            cuts.sort_unstable();
            cuts.dedup();
            let (mut bodies, mut blocks) = (Vec::new(), Vec::new());
            for w in cuts.windows(2) {
                let part = &events[w[0]..w[1]];
                if let Some(first) = part.first() {
                    let at = bodies.len();
                    codec::put_block_body(&mut bodies, part);
                    blocks.push((first.ts, at..bodies.len()));
                }
            }
            let walked = tally(&node, &bodies, &blocks).unwrap();
            let mut decoded = Decoded::default();
            decoded.build(&bodies, &blocks).unwrap();
            let all = tally_decoded(&node, &bodies, &decoded, None).unwrap();
            prop_assert_eq!(
                (all.count, all.numbers, all.sum.to_bits(), all.min.to_bits(), all.max.to_bits()),
                (walked.count, walked.numbers, walked.sum.to_bits(), walked.min.to_bits(),
                 walked.max.to_bits())
            );
            let early = tally_decoded(&node, &bodies, &decoded, enough(&node.frequency)).unwrap();
            prop_assert_eq!(early.satisfies(&node.frequency), walked.satisfies(&node.frequency));
        }
    }
}
