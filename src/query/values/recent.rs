//! `recent`: one customer's distinct values of an event property, latest first (the "recently
//! viewed" strip). Read from the customer's stored events only, so it works for any property,
//! indexed or not. This module reads one customer's event blocks; it never writes and reads no
//! bitmap.

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::model::Value;
use crate::query::ReadState;
use crate::storage::view::ValueView;
use crate::storage::Store;

use super::super::check::Warning;
use super::{for_each_value, target};

/// One of a customer's values, with the time of the latest event that had it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentValue {
    pub value: Value,
    pub at: Timestamp,
}

impl RecentValue {
    /// `{"value", "at"}`, `at` in RFC 3339.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "value": self.value.to_json(),
            "at": crate::model::time::format_rfc3339(self.at),
        })
    }
}

/// A scalar value read in place, owned; `None` for lists (`recent` lists scalars only).
fn scalar(v: ValueView<'_>) -> Option<Value> {
    Some(match v {
        ValueView::Str(s) => Value::Str(s.into()),
        ValueView::Int(i) => Value::Int(i),
        ValueView::Float(f) => Value::Float(f),
        ValueView::Bool(b) => Value::Bool(b),
        ValueView::Time(t) => Value::Time(t),
        ValueView::List(_) => return None,
    })
}

pub(crate) fn recent(
    state: &ReadState,
    store: &Store,
    customer: &str,
    event: &str,
    property: &str,
    limit: usize,
    now: Timestamp,
) -> Result<(Vec<RecentValue>, Vec<Warning>)> {
    let t = target(state, event, property, None, now)?;
    let (Some(e), Some(p), Some(cust)) = (t.event, t.prop, state.ids.get(customer)) else {
        return Ok((Vec::new(), t.warnings));
    };
    let (mut bodies, mut blocks) = (Vec::new(), Vec::new());
    store.event_bodies_from(cust, t.from, &mut bodies, &mut blocks)?;
    // Every (time, value) in time order; an event later in a customer's timeline at the same
    // millisecond is the later one.
    let mut seen: Vec<(Timestamp, ValueView<'_>)> = Vec::new();
    for_each_value(&bodies, &blocks, e, p, t.from, t.to, |ts, v| {
        if !matches!(v, ValueView::List(_)) {
            seen.push((ts, v));
        }
    })?;
    let mut out: Vec<RecentValue> = Vec::new();
    let mut taken: Vec<ValueView<'_>> = Vec::new();
    for &(ts, v) in seen.iter().rev() {
        if out.len() >= limit {
            break;
        }
        if taken.contains(&v) {
            continue;
        }
        taken.push(v);
        if let Some(value) = scalar(v) {
            out.push(RecentValue { value, at: ts });
        }
    }
    Ok((out, t.warnings))
}
