//! The exact meaning of a condition for one customer, from their stored profile and events: the
//! residual check run on the customers the bitmaps cannot decide, and the ground truth that
//! `why` reports. Everything rules.md says about values lives here.
//!
//! This module only reads values handed to it; it neither loads data nor reads indexes.

use std::cmp::Ordering;

use crate::error::Result;
use crate::model::Value;
use crate::rules::{AggregateFn, CmpOp};
use crate::storage::view::{self, BlockSpan, EventView, ValueView};

use super::plan::{
    compare_f64, compare_u64, op_holds, EventNode, Filter, Frequency, Lit, ValueTest,
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
    Ok(match filter {
        Filter::And(items) => {
            for f in items {
                if !filter_passes(e, f)? {
                    return Ok(false);
                }
            }
            true
        }
        Filter::Or(items) => {
            for f in items {
                if filter_passes(e, f)? {
                    return Ok(true);
                }
            }
            false
        }
        Filter::Not(inner) => !filter_passes(e, inner)?,
        Filter::Cond { prop, test } => {
            let v = match prop {
                Some(p) => e.prop(*p)?,
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
        }
    }
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
    for (start, range) in blocks {
        if *start > node.to {
            break;
        }
        let mut past_window = false;
        view::for_each_event(*start, &bodies[range.clone()], |e| {
            if e.ts > node.to {
                past_window = true;
                return Ok(false);
            }
            if e.event != event || e.ts < node.from {
                return Ok(true);
            }
            if let Some(filter) = &node.filter {
                if !filter_passes(&e, filter)? {
                    return Ok(true);
                }
            }
            f(&e)?;
            Ok(true)
        })?;
        if past_window {
            break;
        }
    }
    Ok(())
}

/// Folds a customer's events for one event condition (see [`for_each_match`]).
pub(crate) fn tally(node: &EventNode, bodies: &[u8], blocks: &[BlockSpan]) -> Result<Tally> {
    let mut t = Tally::default();
    let agg_prop = match node.frequency {
        Frequency::Aggregate { prop, .. } => Some(prop),
        Frequency::Count { .. } => None,
    };
    for_each_match(node, bodies, blocks, |e| {
        t.count += 1;
        if let Some(prop) = agg_prop {
            let x = match prop {
                Some(p) => e.prop(p)?.and_then(ValueView::as_f64),
                None => None,
            };
            if let Some(x) = x {
                t.add_number(x);
            }
        }
        Ok(())
    })?;
    Ok(t)
}
