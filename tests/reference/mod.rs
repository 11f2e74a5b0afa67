//! A naive reference evaluator of the rule language, written for clarity straight from
//! `docs/RULES.md` and independent of the query engine: rule by rule, customer by
//! customer, every event scanned. The differential tests run it beside the engine and fail on any
//! difference. It reads only the parsed [`Rule`] and the customers as [`Db::customer`] returns
//! them, never the indexes or the catalog.
//!
//! Where rules.md leaves a point open, the choice made here is written next to the code that
//! makes it, marked **Choice**; `tests/query_differential.rs` pins each one with a hand-computed
//! answer. The choices, in short:
//! - numbers compare by value whatever their type: `amount = 50` matches `50` and `50.0`;
//! - `=`/`!=`/`in` between a *number written in the rule* and a string value compare the text as
//!   written (the spec's rule); likewise a *date* written in the rule equals a string value with
//!   its text (`d = 2026-01-01` matches the text `"2026-01-01"`, which ingest keeps as text);
//!   a quoted string in the rule never equals a number value, and a boolean never equals a
//!   string (`newsletter = true` does not match the text `"true"`);
//! - a string in the rule that is an RFC 3339 date-time also stands for its instant when compared
//!   with a date-time value (ingest stores such strings as date-times), so
//!   `signup_at = "2026-03-01T12:00:00Z"` matches; a date-time or `N unit ago` never equals text;
//! - a date literal compared with a date-time value means midnight UTC (the spec's rule), also as
//!   the upper end of a trait `between`: `between 2026-03-01 and 2026-03-01` is the instant
//!   midnight only (unlike a window's `between`, whose date end covers its day by the spec's
//!   explicit rule for windows);
//! - ordering (`< <= > >= between`) is defined only for number/number and date-time/date-time
//!   (the spec's table: "numeric or date/time comparison"): never for strings, booleans, lists
//!   or mixed types;
//! - `=` never matches a list trait (a list is not a scalar); `contains` looks into lists (element
//!   equality, as `=`) and into strings (substring; a number or date literal is looked for as its
//!   text as written); `contains` on any other value is false;
//! - `!=` and `not in` are true for a customer whose trait is set and not equal by the rules
//!   above, so `tags != eco` holds for the list `["eco"]` and `age != Gold` for the age `30`;
//! - `N unit ago` is an instant (now − N·unit); as a window end it is inclusive like a date-time;
//! - an aggregate compares the `f64` value of the numeric values (integers widened), summed in
//!   time order.

#![allow(dead_code)] // each test binary uses a different part

use std::cmp::Ordering;
use std::collections::BTreeSet;

use audiencedb::db::Event;
use audiencedb::model::time::{parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::rules::{
    AggregateFn, CmpOp, Computed, EventCondition, Expr, ExprKind, FirstLast, FrequencyKind,
    Literal, LiteralKind, Number, Predicate, PredicateKind, Reducer, Rule, Sequence, Test,
    TimeKind, TimePoint, TraitCondition, Window, WindowKind,
};
use audiencedb::Customer;
use chrono::NaiveDate;

/// The external ids of the customers among `customers` (all known customers: every id seen in a
/// profile or an event) that `rule` selects at `now`, sorted. A rule that names a saved audience
/// is an error: no audience can be saved yet, so every audience is unknown.
pub fn evaluate(rule: &Rule, now: i64, customers: &[Customer]) -> Result<Vec<String>, String> {
    if let Some(name) = audience_named(&rule.expr) {
        return Err(format!("unknown audience {name:?}"));
    }
    let expr = one_reading(&rule.expr, customers)?;
    let members: BTreeSet<String> = customers
        .iter()
        .filter(|c| matches(&expr, c, now))
        .map(|c| c.id.clone())
        .collect();
    Ok(members.into_iter().collect())
}

/// The first audience the expression names, if any.
fn audience_named(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::InAudience(name) => Some(&name.text),
        ExprKind::And(items) | ExprKind::Or(items) => items.iter().find_map(audience_named),
        ExprKind::Not(inner) => audience_named(inner),
        ExprKind::Trait(_)
        | ExprKind::EventOrTrait(_)
        | ExprKind::Event(_)
        | ExprKind::Sequence(_)
        | ExprKind::FirstLast(_)
        | ExprKind::Bucket(_)
        | ExprKind::Everyone => None,
    }
}

/// The expression with each `NAME between A and B` (which reads as a trait condition and as an
/// event condition) given its one reading, as the spec's "one reading per name" says: the trait
/// when some known customer has a trait `NAME` and none has an event `NAME`, an error when both
/// exist, else the event (`did NAME between A and B`; with neither, both readings are nobody).
fn one_reading(expr: &Expr, customers: &[Customer]) -> Result<Expr, String> {
    let all = |items: &[Expr]| -> Result<Vec<Expr>, String> {
        items.iter().map(|e| one_reading(e, customers)).collect()
    };
    let kind = match &expr.kind {
        ExprKind::And(items) => ExprKind::And(all(items)?),
        ExprKind::Or(items) => ExprKind::Or(all(items)?),
        ExprKind::Not(inner) => ExprKind::Not(Box::new(one_reading(inner, customers)?)),
        ExprKind::EventOrTrait(cond) => {
            let name = &cond.path.text;
            let has_event = customers
                .iter()
                .any(|c| c.events.iter().any(|e| e.name == *name));
            let has_trait = customers.iter().any(|c| {
                c.traits
                    .as_deref()
                    .is_some_and(|ts| ts.iter().any(|(n, _)| n == name))
            });
            match (has_event, has_trait) {
                (true, true) => return Err(format!("{name:?} is both an event and a trait")),
                (false, true) => ExprKind::Trait(cond.clone()),
                _ => ExprKind::Event(Box::new(
                    cond.as_event()
                        .expect("the parser only makes this node for event forms"),
                )),
            }
        }
        other => other.clone(),
    };
    Ok(Expr {
        kind,
        span: expr.span,
    })
}

/// Whether one known customer satisfies `expr`.
fn matches(expr: &Expr, customer: &Customer, now: i64) -> bool {
    match &expr.kind {
        ExprKind::And(items) => items.iter().all(|e| matches(e, customer, now)),
        ExprKind::Or(items) => items.iter().any(|e| matches(e, customer, now)),
        // The complement over all known customers: this customer is known, so simply "not".
        ExprKind::Not(inner) => !matches(inner, customer, now),
        ExprKind::Trait(cond) => {
            let traits = customer.traits.as_deref().unwrap_or(&[]);
            field_condition(cond, traits, now)
        }
        ExprKind::Event(cond) => event_condition(cond, &customer.events, now),
        ExprKind::Sequence(seq) => sequence(seq, &customer.events, now),
        ExprKind::FirstLast(fl) => first_last(fl, &customer.events, now),
        ExprKind::Bucket(b) => bucket_test(&b.test, bucket(&b.name.text, &customer.id)),
        ExprKind::InAudience(_) => unreachable!("rejected before evaluation"),
        ExprKind::EventOrTrait(_) => unreachable!("given one reading before evaluation"),
        ExprKind::Everyone => true,
    }
}

// ---------- Conditions on one value: traits, and event properties inside `where` ----------

/// `PATH TEST` against a list of named values (a profile's traits or an event's properties).
fn field_condition(cond: &TraitCondition, fields: &[(String, Value)], now: i64) -> bool {
    // Nested objects are stored flattened under dotted names, so a path is looked up whole.
    let value = fields
        .iter()
        .find(|(name, _)| *name == cond.path.text)
        .map(|(_, v)| v);
    let Some(value) = value else {
        // A condition on a missing trait is false; only `is not set` holds.
        return matches!(cond.test, Test::IsSet { negated: true });
    };
    match &cond.test {
        Test::IsSet { negated } => !negated,
        Test::Compare { op, value: lit } => compare(value, *op, lit, now),
        Test::In { negated, values } => {
            let any = values.iter().any(|lit| equals(value, lit, now));
            // `not in`: set (it is, here) and none of them.
            if *negated {
                !any
            } else {
                any
            }
        }
        Test::Between { low, high } => between(value, low, high, now),
        Test::Contains(lit) => contains(value, lit, now),
    }
}

/// What a literal of the rule stands for once *now* is known.
enum Lit<'a> {
    Str(&'a str),
    Number(&'a Number),
    Bool(bool),
    /// A calendar date: its midnight UTC, and its text `YYYY-MM-DD`.
    Date {
        at: i64,
        text: String,
    },
    /// An instant: a date-time, or `N unit ago` (now − N·unit).
    Instant(i64),
}

fn resolve(lit: &Literal, now: i64) -> Lit<'_> {
    match &lit.kind {
        LiteralKind::Str { text, .. } => Lit::Str(text),
        LiteralKind::Number(n) => Lit::Number(n),
        LiteralKind::Bool(b) => Lit::Bool(*b),
        LiteralKind::Date(d) => Lit::Date {
            at: midnight(*d),
            text: d.format("%Y-%m-%d").to_string(),
        },
        LiteralKind::DateTime(ts) => Lit::Instant(*ts),
        LiteralKind::Ago(d) => Lit::Instant(now - d.millis().expect("the parser bounds it")),
    }
}

/// The instant a literal names when compared with a date-time value: a date's midnight UTC, a
/// date-time, now − N·unit, or a string that is an RFC 3339 date-time.
fn instant(lit: &Lit) -> Option<i64> {
    match lit {
        Lit::Date { at, .. } | Lit::Instant(at) => Some(*at),
        Lit::Str(text) => parse_rfc3339(text),
        Lit::Number(_) | Lit::Bool(_) => None,
    }
}

fn midnight(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
}

/// Equality of a stored value and a literal (`=`, and each value of `in`).
fn equals(value: &Value, lit: &Literal, now: i64) -> bool {
    match (value, resolve(lit, now)) {
        // Exact and case-sensitive.
        (Value::Str(s), Lit::Str(t)) => s == t,
        // The spec: a number written in the rule equals a string value with the same text as
        // written (`product = 12345` matches "12345", `007` matches "007" but not "7").
        (Value::Str(s), Lit::Number(n)) => s == n.text(),
        // Choice: so does a date (ingest keeps a date without a time as text).
        (Value::Str(s), Lit::Date { text, .. }) => *s == text,
        // Choice: numbers are equal by value whatever their type (`50` matches 50 and 50.0).
        // Integers against integers compare exactly, beyond the precision of f64.
        (Value::Int(i), Lit::Number(Number::Int { value, .. })) => i == value,
        (Value::Int(_) | Value::Float(_), Lit::Number(n)) => value.as_f64() == Some(n.as_f64()),
        (Value::Bool(a), Lit::Bool(b)) => *a == b,
        // The spec: a date compared with a date-time means its midnight UTC. Choice: a string
        // that is an RFC 3339 date-time stands for its instant.
        (Value::Time(t), lit) => instant(&lit) == Some(*t),
        // Choice: everything else is unequal: a quoted string never equals a number value, a
        // boolean never equals the text "true", a date-time never equals text, and a list never
        // equals a scalar (`contains` looks into lists).
        _ => false,
    }
}

/// How a stored value orders against a literal, when the two can be ordered at all.
fn order(value: &Value, lit: &Literal, now: i64) -> Option<Ordering> {
    match (value, resolve(lit, now)) {
        (Value::Int(i), Lit::Number(Number::Int { value, .. })) => Some(i.cmp(value)),
        (Value::Int(_) | Value::Float(_), Lit::Number(n)) => {
            value.as_f64()?.partial_cmp(&n.as_f64())
        }
        (Value::Time(t), lit) => Some(t.cmp(&instant(&lit)?)),
        // The spec: ordering is a "numeric or date/time comparison" and never mixes types (a
        // JSON string is never a number, even "12.50"). Choice: so strings, booleans and lists
        // are not ordered at all.
        _ => None,
    }
}

fn compare(value: &Value, op: CmpOp, lit: &Literal, now: i64) -> bool {
    match op {
        CmpOp::Eq => equals(value, lit, now),
        // The spec: `!=` is "is set and differs"; the value is set here.
        CmpOp::Ne => !equals(value, lit, now),
        CmpOp::Lt => order(value, lit, now) == Some(Ordering::Less),
        CmpOp::Le => matches!(
            order(value, lit, now),
            Some(Ordering::Less | Ordering::Equal)
        ),
        CmpOp::Gt => order(value, lit, now) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(
            order(value, lit, now),
            Some(Ordering::Greater | Ordering::Equal)
        ),
    }
}

/// `between low and high`, both ends included.
fn between(value: &Value, low: &Literal, high: &Literal, now: i64) -> bool {
    let above_low = matches!(
        order(value, low, now),
        Some(Ordering::Greater | Ordering::Equal)
    );
    // Choice: a date as the upper end is its midnight, as everywhere in trait conditions (the
    // whole-day rule of rules.md is written for windows only).
    let below_high = matches!(
        order(value, high, now),
        Some(Ordering::Less | Ordering::Equal)
    );
    above_low && below_high
}

/// `contains`: a list holds the value, or a string holds it as a substring.
fn contains(value: &Value, lit: &Literal, now: i64) -> bool {
    match value {
        // Element equality, with the same rules as `=` (so `5` finds 5, 5.0 and "5").
        Value::List(items) => items.iter().any(|item| equals(item, lit, now)),
        Value::Str(s) => match resolve(lit, now) {
            Lit::Str(t) => s.contains(t),
            // Choice: a number or a date written in the rule is looked for as its text.
            Lit::Number(n) => s.contains(n.text()),
            Lit::Date { text, .. } => s.contains(&text),
            // Choice: booleans, date-times and `N unit ago` are not text.
            Lit::Bool(_) | Lit::Instant(_) => false,
        },
        // Choice: only lists and strings contain anything.
        _ => false,
    }
}

// ---------- Conditions on events ----------

fn event_condition(cond: &EventCondition, events: &[Event], now: i64) -> bool {
    let matching: Vec<&Event> = events
        .iter()
        .filter(|e| in_window(cond, e.timestamp, now))
        .filter(|e| event_matches(cond, e, now))
        .collect();
    let count = matching.len() as u64;
    let Some(frequency) = &cond.frequency else {
        return count >= 1; // at least once
    };
    match &frequency.kind {
        FrequencyKind::AtLeast(n) => count >= *n,
        FrequencyKind::AtMost(n) => count <= *n,
        FrequencyKind::Exactly(n) => count == *n,
        FrequencyKind::Count { op, count: n } => compare_ord(count.cmp(n), *op),
        FrequencyKind::Aggregate {
            func,
            property,
            op,
            value,
        } => {
            // Missing or non-numeric values (text like "12.50", booleans, dates, lists) are left
            // out of the aggregate; the events still count for `count` and `times`.
            let numbers: Vec<f64> = matching
                .iter()
                .filter_map(|e| {
                    e.properties
                        .iter()
                        .find(|(name, _)| *name == property.text)
                        .and_then(|(_, v)| v.as_f64())
                })
                .collect();
            let aggregate = match func {
                // A sum over no values is 0.
                AggregateFn::Sum => Some(numbers.iter().sum::<f64>()),
                // avg, min and max over no values are undefined: the condition is false.
                AggregateFn::Avg if numbers.is_empty() => None,
                AggregateFn::Avg => Some(numbers.iter().sum::<f64>() / numbers.len() as f64),
                AggregateFn::Min => numbers.iter().copied().reduce(f64::min),
                AggregateFn::Max => numbers.iter().copied().reduce(f64::max),
            };
            match aggregate.and_then(|a| a.partial_cmp(&value.as_f64())) {
                Some(ordering) => compare_ord(ordering, *op),
                None => false,
            }
        }
        FrequencyKind::Distinct {
            property,
            op,
            count: n,
        } => {
            // Choice: one representative per value; lists and missing properties are no value.
            let mut seen: Vec<&Value> = Vec::new();
            for e in &matching {
                let Some((_, v)) = e.properties.iter().find(|(name, _)| *name == property.text)
                else {
                    continue;
                };
                if !matches!(v, Value::List(_)) && !seen.iter().any(|s| exactly_same(s, v)) {
                    seen.push(v);
                }
            }
            compare_ord((seen.len() as u64).cmp(n), *op)
        }
    }
}

/// Whether two values are one value for `distinct`: as `same_value`, but an integer and a float
/// only when the float is exactly that integer (no rounding of large integers to floats).
fn exactly_same(a: &Value, b: &Value) -> bool {
    let int_float = |i: i64, f: f64| {
        f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) && f as i64 == i
    };
    match (a, b) {
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => int_float(*i, *f),
        (Value::Float(x), Value::Float(y)) => x == y,
        _ => same_value(a, b),
    }
}

/// Whether an event is the one an event condition names, passing its shorthand and `where` (the
/// window and the frequency aside).
pub fn event_matches(cond: &EventCondition, e: &Event, now: i64) -> bool {
    e.name == cond.event.text
        && cond.shorthand.as_ref().is_none_or(|s| {
            e.properties
                .iter()
                .any(|(name, v)| *name == s.property.text && equals(v, &s.value, now))
        })
        && cond
            .predicate
            .as_ref()
            .is_none_or(|p| predicate(p, &e.properties, now))
}

/// A sequence, straight from rules.md: `A then B then C within T` needs events a < b < c
/// (strictly) with c − a ≤ T; `A then not B within T` an a with a + T ≤ now and no b with
/// a < b ≤ a + T. The window holds the first step's event; only events up to now count.
///
/// **Choice** (`with same P`): a first-step event without P starts no sequence (not even a
/// `then not` one); a later event has the same P when both values are strings, booleans or
/// instants and equal, or both numbers and numerically equal (`3` and `3.0`); a list is never
/// the same as anything (as `=` never matches a list).
fn sequence(seq: &Sequence, events: &[Event], now: i64) -> bool {
    let t = seq.within.millis().expect("the parser bounds it");
    fn value<'e>(seq: &Sequence, e: &'e Event) -> Option<&'e Value> {
        let p = &seq.same.as_ref()?.text;
        e.properties.iter().find(|(n, _)| n == p).map(|(_, v)| v)
    }
    let same = |a: &Event, b: &Event| match (&seq.same, value(seq, a), value(seq, b)) {
        (None, _, _) => true,
        (Some(_), Some(x), Some(y)) => same_value(x, y),
        _ => false,
    };
    let step = |i: usize, e: &Event| e.timestamp <= now && event_matches(&seq.steps[i], e, now);
    let firsts = events.iter().filter(|a| {
        step(0, a)
            && window_holds(seq.window.as_ref(), a.timestamp, now)
            && (seq.same.is_none() || value(seq, a).is_some())
    });
    if seq.negated {
        return firsts.clone().any(|a| {
            a.timestamp + t <= now
                && !events.iter().any(|b| {
                    step(1, b)
                        && a.timestamp < b.timestamp
                        && b.timestamp <= a.timestamp + t
                        && same(a, b)
                })
        });
    }
    /// Whether steps `j..` can follow an event at `prev`, each strictly after the one before and
    /// at most at `limit`.
    fn rest(
        j: usize,
        prev: i64,
        events: &[Event],
        ok: &dyn Fn(usize, &Event) -> bool,
        limit: i64,
        steps: usize,
    ) -> bool {
        j == steps
            || events.iter().any(|b| {
                b.timestamp > prev
                    && b.timestamp <= limit
                    && ok(j, b)
                    && rest(j + 1, b.timestamp, events, ok, limit, steps)
            })
    }
    firsts.into_iter().any(|a| {
        let ok = |j: usize, b: &Event| step(j, b) && same(a, b);
        rest(
            1,
            a.timestamp,
            events,
            &ok,
            a.timestamp + t,
            seq.steps.len(),
        )
    })
}

/// `first EVENT WINDOW` / `last EVENT WINDOW`, straight from rules.md: among the customer's
/// matching events up to now, the earliest (latest) one's time lies in the window; false
/// without a matching event.
fn first_last(fl: &FirstLast, events: &[Event], now: i64) -> bool {
    let times = events
        .iter()
        .filter(|e| e.timestamp <= now && event_matches(&fl.event, e, now))
        .map(|e| e.timestamp);
    let chosen = if fl.last { times.max() } else { times.min() };
    chosen.is_some_and(|ts| in_window(&fl.event, ts, now))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Time(x), Value::Time(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.as_f64() == b.as_f64()
        }
        _ => false,
    }
}

fn compare_ord(ordering: Ordering, op: CmpOp) -> bool {
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    }
}

/// A `where` predicate over one event's properties: the trait-condition grammar applied to them.
fn predicate(p: &Predicate, properties: &[(String, Value)], now: i64) -> bool {
    match &p.kind {
        PredicateKind::And(items) => items.iter().all(|q| predicate(q, properties, now)),
        PredicateKind::Or(items) => items.iter().any(|q| predicate(q, properties, now)),
        PredicateKind::Not(inner) => !predicate(inner, properties, now),
        PredicateKind::Cond(cond) => field_condition(cond, properties, now),
    }
}

/// Whether an event at `ts` falls in the condition's window. Every window ends at *now*: events
/// after now count in no window.
pub fn in_window(cond: &EventCondition, ts: i64, now: i64) -> bool {
    window_holds(cond.window.as_ref(), ts, now)
}

/// Whether an event at `ts` falls in a window (`None`: `ever`), which ends at *now*.
pub fn window_holds(window: Option<&Window>, ts: i64, now: i64) -> bool {
    if ts > now {
        return false;
    }
    let Some(window) = window else {
        return true; // no window means `ever`
    };
    match &window.kind {
        // now − N·unit < ts ≤ now
        WindowKind::Last(d) => ts > now - d.millis().expect("the parser bounds it"),
        WindowKind::Ever => true,
        // T ≤ ts ≤ now
        WindowKind::Since(t) => ts >= start_of(t, now),
        // ts < T (and ≤ now)
        WindowKind::Before(t) => ts < start_of(t, now),
        // A date start is its midnight; a date end covers its whole day (up to, not including,
        // the next midnight); a date-time or `N unit ago` end is included.
        WindowKind::Between(from, to) => {
            let after_start = ts >= start_of(from, now);
            let before_end = match to.kind {
                TimeKind::Date(d) => ts < midnight(d) + DAY_MS,
                TimeKind::DateTime(_) | TimeKind::Ago(_) => ts <= start_of(to, now),
            };
            after_start && before_end
        }
    }
}

/// The instant a time point names: a date's midnight UTC, a date-time, or now − N·unit.
fn start_of(t: &TimePoint, now: i64) -> i64 {
    match t.kind {
        TimeKind::Date(d) => midnight(d),
        TimeKind::DateTime(ts) => ts,
        TimeKind::Ago(d) => now - d.millis().expect("the parser bounds it"),
    }
}

/// `bucket(NAME)` as rules.md defines it: the first 8 bytes of SHA-256 of the UTF-8 text
/// `NAME:ID`, read as a big-endian unsigned integer, modulo 100.
pub fn bucket(name: &str, id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{name}:{id}").as_bytes());
    let first: [u8; 8] = digest[..8]
        .try_into()
        .expect("a SHA-256 digest has 32 bytes");
    (u64::from_be_bytes(first) % 100) as i64
}

/// A bucket's test: the bucket compared as a whole number with the whole numbers written.
fn bucket_test(test: &Test, b: i64) -> bool {
    let int = |l: &Literal| match &l.kind {
        LiteralKind::Number(Number::Int { value, .. }) => *value,
        other => panic!("the parser lets only whole numbers into a bucket test, not {other:?}"),
    };
    match test {
        Test::Compare { op, value } => {
            let v = int(value);
            match op {
                CmpOp::Eq => b == v,
                CmpOp::Ne => b != v,
                CmpOp::Lt => b < v,
                CmpOp::Le => b <= v,
                CmpOp::Gt => b > v,
                CmpOp::Ge => b >= v,
            }
        }
        Test::In { negated, values } => values.iter().any(|v| int(v) == b) != *negated,
        Test::Between { low, high } => int(low) <= b && b <= int(high),
        other => panic!("the parser refuses {other:?} after bucket(NAME)"),
    }
}

// ---------- Computed traits ----------

/// [`evaluate`] with computed traits: each customer gets, as a trait named after each of
/// `traits`, the value its expression derives from their events at `now` (none: no trait),
/// and the rule is evaluated over those traits as over stored ones (a computed trait is a
/// trait in every rule: same comparisons, same `is set`).
pub fn evaluate_computed(
    rule: &Rule,
    now: i64,
    customers: &[Customer],
    traits: &[(&str, &Computed)],
) -> Result<Vec<String>, String> {
    let with: Vec<Customer> = customers
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let mut fields = c.traits.take().unwrap_or_default();
            fields.retain(|(n, _)| !traits.iter().any(|(t, _)| t == n));
            for (name, expr) in traits {
                let v = match expr.reducer {
                    Reducer::Rfm(_) => rfm_values(expr, customers, now)
                        .into_iter()
                        .find(|(id, _)| *id == c.id)
                        .map(|(_, v)| v),
                    _ => computed_value(expr, &c.events, now),
                };
                if let Some(v) = v {
                    fields.push((name.to_string(), v));
                }
            }
            c.traits = Some(fields);
            c
        })
        .collect();
    evaluate(rule, now, &with)
}

/// A computed trait's value over one customer's events, straight from rules.md: the matching
/// events in the window up to *now*; `count` and `distinct(p)` are whole numbers (0 without
/// any), `sum(p)` a number (0 without numbers), `avg/min/max(p)` numbers over the numeric values
/// (none without), `top(p)` the most frequent value (ties: the smallest, numbers before text
/// before booleans before instants), `first time`/`last time` an instant.
pub fn computed_value(expr: &Computed, events: &[Event], now: i64) -> Option<Value> {
    let cond = &expr.event;
    let matching: Vec<&Event> = events
        .iter()
        .filter(|e| in_window(cond, e.timestamp, now) && event_matches(cond, e, now))
        .collect();
    let prop = |e: &Event, p: &str| {
        e.properties
            .iter()
            .find(|(name, _)| name == p)
            .map(|(_, v)| v.clone())
    };
    match &expr.reducer {
        Reducer::Count => Some(Value::Int(matching.len() as i64)),
        Reducer::Aggregate { func, property } => {
            let numbers: Vec<f64> = matching
                .iter()
                .filter_map(|e| prop(e, &property.text)?.as_f64())
                .collect();
            let x = match func {
                AggregateFn::Sum => Some(numbers.iter().sum::<f64>()),
                AggregateFn::Avg if numbers.is_empty() => None,
                AggregateFn::Avg => Some(numbers.iter().sum::<f64>() / numbers.len() as f64),
                AggregateFn::Min => numbers.iter().copied().reduce(f64::min),
                AggregateFn::Max => numbers.iter().copied().reduce(f64::max),
            };
            x.map(Value::Float)
        }
        Reducer::Distinct(p) | Reducer::Top(p) => {
            // One representative per value (as `distinct(p)` in rules), with its count.
            let mut seen: Vec<(Value, u64)> = Vec::new();
            for e in &matching {
                let Some(v) = prop(e, &p.text) else { continue };
                if matches!(v, Value::List(_)) {
                    continue;
                }
                match seen.iter_mut().find(|(s, _)| exactly_same(s, &v)) {
                    Some((_, n)) => *n += 1,
                    None => seen.push((v, 1)),
                }
            }
            if matches!(expr.reducer, Reducer::Distinct(_)) {
                return Some(Value::Int(seen.len() as i64));
            }
            let most = seen.iter().map(|(_, n)| *n).max()?;
            let mut best: Vec<Value> = seen
                .into_iter()
                .filter(|(_, n)| *n == most)
                .map(|(v, _)| v)
                .collect();
            best.sort_by(top_order);
            // A whole float is that integer (3.0 is the value 3).
            best.into_iter().next().map(|v| match v {
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Value::Int(f as i64),
                v => v,
            })
        }
        Reducer::FirstTime => matching.iter().map(|e| e.timestamp).min().map(Value::Time),
        Reducer::LastTime => matching.iter().map(|e| e.timestamp).max().map(Value::Time),
        Reducer::Rfm(_) => panic!("rfm(p) ranks a population: use rfm_values"),
        Reducer::PAlive | Reducer::Expected { .. } | Reducer::Clv { .. } => {
            panic!("the purchase models are checked against lifetimes (tests/predict.rs)")
        }
    }
}

/// `rfm(p)` for every customer with a matching event in the window at `now`, straight from
/// rules.md: recency (whole UTC days from the latest matching event to *now*, fewer is better),
/// frequency (matching events) and monetary value (the sum of `p`'s numbers), each scored among
/// those customers by mid-rank: sort the values worst first, give tied customers the mean of
/// the positions (0, 1, ...) they occupy, and score `1 + floor(5 (position + 1/2) / N)`.
pub fn rfm_values(expr: &Computed, customers: &[Customer], now: i64) -> Vec<(String, Value)> {
    let Reducer::Rfm(p) = &expr.reducer else {
        panic!("not rfm");
    };
    let cond = &expr.event;
    let mut rows: Vec<(String, [f64; 3])> = Vec::new();
    for c in customers {
        let matching: Vec<&Event> = c
            .events
            .iter()
            .filter(|e| in_window(cond, e.timestamp, now) && event_matches(cond, e, now))
            .collect();
        let Some(last) = matching.iter().map(|e| e.timestamp).max() else {
            continue;
        };
        let days = now.div_euclid(DAY_MS) - last.div_euclid(DAY_MS);
        let sum: f64 = matching
            .iter()
            .filter_map(|e| {
                e.properties
                    .iter()
                    .find(|(n, _)| *n == p.text)
                    .and_then(|(_, v)| v.as_f64())
            })
            .sum();
        // Higher is better in each column.
        rows.push((c.id.clone(), [-(days as f64), matching.len() as f64, sum]));
    }
    let n = rows.len() as f64;
    let score = |col: usize, v: f64| {
        let mut values: Vec<f64> = rows.iter().map(|(_, r)| r[col]).collect();
        values.sort_by(f64::total_cmp);
        let positions: Vec<f64> = (0..values.len())
            .filter(|&i| values[i] == v)
            .map(|i| i as f64)
            .collect();
        let mean = positions.iter().sum::<f64>() / positions.len() as f64;
        1 + (5.0 * (mean + 0.5) / n).floor() as u64
    };
    rows.iter()
        .map(|(id, r)| {
            let text = format!("{}{}{}", score(0, r[0]), score(1, r[1]), score(2, r[2]));
            (id.clone(), Value::Str(text.into()))
        })
        .collect()
}

/// The tie-break order of `top(p)`: numbers by value, then text, then booleans (false first),
/// then instants.
fn top_order(a: &Value, b: &Value) -> Ordering {
    let rank = |v: &Value| match v {
        Value::Int(_) | Value::Float(_) => 0,
        Value::Str(_) => 1,
        Value::Bool(_) => 2,
        Value::Time(_) => 3,
        Value::List(_) => 4,
    };
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) => x.cmp(y),
        _ => a
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0)),
    })
}
