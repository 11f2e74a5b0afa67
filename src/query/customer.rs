//! The exact meaning of a condition for one customer, from their stored profile and events: the
//! residual check run on the customers the bitmaps cannot decide, and the ground truth that
//! `why` reports. Everything rules.md says about values lives here.
//!
//! This module only reads values handed to it; it neither loads data nor reads indexes.

use std::cmp::Ordering;

use crate::model::Value;
use crate::rules::{AggregateFn, CmpOp};
use crate::storage::StoredEvent;

use super::plan::{
    compare_f64, compare_u64, op_holds, EventNode, Filter, Frequency, Lit, ValueTest,
};

/// Whether a value equals a literal: strings exactly (and a number or date literal by its text
/// as written), numbers numerically, booleans, and instants. A list equals nothing.
pub(crate) fn equals(v: &Value, lit: &Lit) -> bool {
    match v {
        Value::Str(s) => lit.text.as_deref() == Some(s.as_str()),
        Value::Int(i) => match (lit.int, lit.num) {
            (Some(j), _) => *i == j,
            (None, Some(f)) => (*i as f64) == f,
            _ => false,
        },
        Value::Float(f) => lit.num == Some(*f),
        Value::Bool(b) => lit.boolean == Some(*b),
        Value::Time(t) => lit.time == Some(*t),
        Value::List(_) => false,
    }
}

/// How a value orders against a literal, when the two are of one kind: numbers with numbers,
/// instants with instants (a date means its midnight UTC). Anything else does not order, and an
/// ordering test on it is false.
pub(crate) fn order(v: &Value, lit: &Lit) -> Option<Ordering> {
    match v {
        Value::Int(i) => match (lit.int, lit.num) {
            (Some(j), _) if !lit.is_str => Some(i.cmp(&j)),
            (None, Some(f)) if !lit.is_str => (*i as f64).partial_cmp(&f),
            _ => None,
        },
        Value::Float(f) if !lit.is_str => f.partial_cmp(&lit.num?),
        Value::Time(t) => Some(t.cmp(&lit.time?)),
        _ => None,
    }
}

/// Whether a value (`None`: the trait or property is missing) passes a test.
pub(crate) fn passes(v: Option<&Value>, test: &ValueTest) -> bool {
    match test {
        ValueTest::IsSet { negated } => v.is_some() != *negated,
        _ => v.is_some_and(|v| passes_present(v, test)),
    }
}

fn passes_present(v: &Value, test: &ValueTest) -> bool {
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
            Value::List(items) => items.iter().any(|item| equals(item, lit)),
            Value::Str(s) => lit.text.as_deref().is_some_and(|t| s.contains(t)),
            _ => false,
        },
        ValueTest::IsSet { negated } => !negated,
    }
}

/// The value of field `id` in a list of fields.
pub(crate) fn field(fields: &[(u32, Value)], id: Option<u32>) -> Option<&Value> {
    let id = id?;
    fields.iter().find(|(f, _)| *f == id).map(|(_, v)| v)
}

/// Whether one event's properties pass a filter.
pub(crate) fn filter_passes(props: &[(u32, Value)], filter: &Filter) -> bool {
    match filter {
        Filter::And(items) => items.iter().all(|f| filter_passes(props, f)),
        Filter::Or(items) => items.iter().any(|f| filter_passes(props, f)),
        Filter::Not(inner) => !filter_passes(props, inner),
        Filter::Cond { prop, test } => passes(field(props, *prop), test),
    }
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

    /// Whether the tally satisfies the condition's frequency.
    pub fn satisfies(&self, f: &Frequency) -> bool {
        match *f {
            Frequency::Count { op, n } => compare_u64(self.count, op, n),
            Frequency::Aggregate {
                func, op, value, ..
            } => {
                let got = match func {
                    AggregateFn::Sum => Some(self.sum),
                    _ if self.numbers == 0 => None,
                    AggregateFn::Avg => Some(self.sum / self.numbers as f64),
                    AggregateFn::Min => Some(self.min),
                    AggregateFn::Max => Some(self.max),
                };
                got.is_some_and(|x| compare_f64(x, op, value))
            }
        }
    }
}

/// Whether an event is one that the condition counts (name, window and filter).
pub(crate) fn counts(node: &EventNode, e: &StoredEvent) -> bool {
    Some(e.event) == node.event
        && node.from <= e.ts
        && e.ts <= node.to
        && node
            .filter
            .as_ref()
            .is_none_or(|f| filter_passes(&e.props, f))
}

/// Folds a customer's events (in time order) for one event condition.
pub(crate) fn tally(node: &EventNode, events: &[StoredEvent]) -> Tally {
    let mut t = Tally::default();
    let agg_prop = match node.frequency {
        Frequency::Aggregate { prop, .. } => Some(prop),
        Frequency::Count { .. } => None,
    };
    for e in events {
        if e.ts > node.to {
            break;
        }
        if !counts(node, e) {
            continue;
        }
        t.count += 1;
        if let Some(prop) = agg_prop {
            if let Some(x) = field(&e.props, prop).and_then(Value::as_f64) {
                t.add_number(x);
            }
        }
    }
    t
}
