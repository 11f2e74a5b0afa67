//! `top`: the values of one event property that an audience did, counted in distinct customers,
//! beside everyone's count and the lift.
//!
//! The audience is the rule's exact members at *now* (the query engine's plan, bounds and exact
//! checks); each value's customers are [`super::who_did_each`]'s exact set, and the members each
//! holds are counted by an intersection per value or, for a small audience, through the members'
//! own values ([`super::PerCustomer`]; same counts). This module ranks and shapes the rows; it
//! never writes.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::error::Result;
use crate::index::IndexValue;
use crate::model::time::Timestamp;
use crate::model::Value;
use crate::query::ReadState;
use crate::storage::Store;

use super::super::check::Warning;
use super::super::run::{plan_and_bounds, Warnings};
use super::super::{exec, PreparedRule};
use super::{require_indexed, target, to_value, who_did_each, PerCustomer, ValueSet};

/// How `top` ranks its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopOrder {
    /// By `customers`, most first (the default).
    #[default]
    Customers,
    /// By `lift`, highest first (then by `customers`), among the values with at least
    /// `min_customers` customers (5 unless given).
    Lift,
}

impl TopOrder {
    /// The least `customers` a row must have unless the request says otherwise: 1 by
    /// customers, 5 by lift (a value two customers did is not a finding).
    pub fn default_min_customers(self) -> u64 {
        match self {
            TopOrder::Customers => 1,
            TopOrder::Lift => 5,
        }
    }
}

/// What `top` is asked: the audience's rule, the event and property whose values are counted,
/// the window (`None`: `ever`), how many rows and in what order.
#[derive(Debug, Clone)]
pub struct TopRequest {
    pub rule: String,
    pub event: String,
    pub property: String,
    /// A window as rules write it (`in last 90 days`, `since 2026-01-01`, ...); `None` is
    /// `ever`.
    pub window: Option<String>,
    /// The most rows returned (10 by default).
    pub limit: usize,
    pub order: TopOrder,
    /// Rows with fewer customers are left out; `None`: [`TopOrder::default_min_customers`].
    pub min_customers: Option<u64>,
}

impl TopRequest {
    /// The top 10 values by customers, over every event up to *now*.
    pub fn new(rule: &str, event: &str, property: &str) -> TopRequest {
        TopRequest {
            rule: rule.to_owned(),
            event: event.to_owned(),
            property: property.to_owned(),
            window: None,
            limit: 10,
            order: TopOrder::Customers,
            min_customers: None,
        }
    }
}

/// One value's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TopRow {
    /// A string, an integer or a boolean (the value types indexed by value).
    pub value: Value,
    /// The audience's customers who did the event with this value in the window.
    pub customers: u64,
    /// `customers / audience` (0 for an empty audience).
    pub share: f64,
    /// Every customer who did the event with this value in the window.
    pub everyone: u64,
    /// `share / (everyone / all customers)`: how much likelier the audience is to have done it
    /// than a customer at large (0 for an empty audience).
    pub lift: f64,
}

/// The answer of `top`.
#[derive(Debug, Clone)]
pub struct Top {
    /// The number of customers the rule matches at *now*.
    pub audience: u64,
    /// The number of known customers (the base of `lift`).
    pub all_customers: u64,
    pub rows: Vec<TopRow>,
    /// The rule's warnings, then the unknown event or property name's.
    pub warnings: Vec<Warning>,
    pub now: Timestamp,
    pub elapsed: Duration,
}

impl Top {
    /// `{"audience": N, "rows": [{"value", "customers", "share", "everyone", "lift"}, ...]}`,
    /// with `"warnings": [text, ...]` when there are any.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "value": r.value.to_json(),
                    "customers": r.customers,
                    "share": r.share,
                    "everyone": r.everyone,
                    "lift": r.lift,
                })
            })
            .collect();
        let mut out = serde_json::json!({ "audience": self.audience, "rows": rows });
        if !self.warnings.is_empty() {
            out["warnings"] = self.warnings.iter().map(|w| w.to_string()).collect();
        }
        out
    }
}

/// The rule's members at `now` and its warnings, under the caller's read guard.
pub(crate) fn members(
    state: &ReadState,
    store: &Store,
    rule: &PreparedRule,
    now: Timestamp,
) -> Result<(RoaringBitmap, Vec<Warning>)> {
    let (planned, bounds, warnings) = plan_and_bounds(state, store, rule, now, Warnings::Listed)?;
    let members = exec::resolve(&planned, &bounds, store)?;
    Ok((members, warnings))
}

pub(crate) fn top(
    state: &ReadState,
    store: &Store,
    req: &TopRequest,
    now: Timestamp,
) -> Result<Top> {
    let started = Instant::now();
    let rule = PreparedRule::new(&req.rule)?;
    let t = target(state, &req.event, &req.property, req.window.as_deref(), now)?;
    require_indexed(state, &t, &req.event, &req.property)?;
    let (members, mut warnings) = members(state, store, &rule, now)?;
    warnings.extend(t.warnings.iter().cloned());
    let sets = who_did_each(&state.indexes, store, &t)?;
    let min = req
        .min_customers
        .unwrap_or_else(|| req.order.default_min_customers());
    let all = state.indexes.everyone.len();
    let customers = audience_counts(&sets, &members, all);
    let mut counted: Vec<(IndexValue, u64, u64)> = sets
        .iter()
        .zip(customers)
        .map(|((k, set), customers)| (k.clone(), customers, set.len()))
        .filter(|&(_, customers, _)| customers >= min)
        .collect();
    rank(&mut counted, req.order);
    counted.truncate(req.limit);
    let audience = members.len();
    let rows = counted
        .into_iter()
        .map(|(k, customers, everyone)| row(&k, customers, everyone, audience, all))
        .collect();
    Ok(Top {
        audience,
        all_customers: all,
        rows,
        warnings,
        now,
        elapsed: started.elapsed(),
    })
}

/// Members per value above which an audience is counted by intersections (see
/// [`audience_counts`]): about the members whose values cost what one container's intersection
/// does.
const PER_VALUE: u64 = 1024;

/// For each set, how many of `members` it holds. A small audience is counted through its
/// customers' values ([`PerCustomer`]: a pass over each member's few values); a large one by an
/// intersection per value, which is then the cheaper: the audience's bitmap is mostly dense
/// containers, and one container's intersection costs about what [`PER_VALUE`] members' values
/// do. Small: under half of all `all` customers and under [`PER_VALUE`] members per value
/// (at 1M customers, 48,448 members over 1,000 products are counted through their values, and
/// 121,862 over 20 categories by intersections).
pub(crate) fn audience_counts(
    sets: &[(IndexValue, ValueSet)],
    members: &RoaringBitmap,
    all: u64,
) -> Vec<u64> {
    let small = members.len().saturating_mul(2) < all
        && members.len() < (sets.len() as u64).saturating_mul(PER_VALUE);
    let per = if small { PerCustomer::new(sets) } else { None };
    match per {
        Some(per) => {
            let mut counts = vec![0u32; sets.len()];
            per.count(members, &mut counts);
            counts.into_iter().map(u64::from).collect()
        }
        None => sets
            .par_iter()
            .map(|(_, set)| set.intersection_len(members))
            .collect(),
    }
}

/// Sorts (value, customers, everyone) rows: by customers, most first, or by lift, highest first,
/// then by customers; ties by value ascending (strings before integers before booleans). Lift
/// is compared exactly: within one answer it is proportional to customers / everyone.
pub(crate) fn rank(rows: &mut [(IndexValue, u64, u64)], order: TopOrder) {
    let by_lift = |a: &(IndexValue, u64, u64), b: &(IndexValue, u64, u64)| {
        // a.1 / a.2 against b.1 / b.2, without rounding.
        (u128::from(b.1) * u128::from(a.2)).cmp(&(u128::from(a.1) * u128::from(b.2)))
    };
    rows.sort_unstable_by(|a, b| {
        let first = match order {
            TopOrder::Customers => Ordering::Equal,
            TopOrder::Lift => by_lift(a, b),
        };
        first.then(b.1.cmp(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
}

/// A row with its ratios.
fn row(k: &IndexValue, customers: u64, everyone: u64, audience: u64, all: u64) -> TopRow {
    let share = if audience == 0 {
        0.0
    } else {
        customers as f64 / audience as f64
    };
    let lift = if audience == 0 || everyone == 0 {
        0.0
    } else {
        share / (everyone as f64 / all as f64)
    };
    TopRow {
        value: to_value(k),
        customers,
        share,
        everyone,
        lift,
    }
}

impl std::fmt::Display for Top {
    /// The table `audiencedb top` prints (see [`table`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&table(self.audience, &self.rows))
    }
}

/// The table of a `top` answer, as the CLI and the REPL print it: the audience's size, then a
/// row per value (value, customers, share, everyone, lift).
pub fn table(audience: u64, rows: &[TopRow]) -> String {
    use std::fmt::Write;
    let mut out = format!("audience: {audience} customers\n");
    // Strings as they are, as rules write values.
    let values: Vec<String> = rows
        .iter()
        .map(|r| match &r.value {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        })
        .collect();
    let width = values
        .iter()
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .max("value".len());
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:>7}  {:>9}  {:>7}",
        "value", "customers", "share", "everyone", "lift"
    );
    for (r, v) in rows.iter().zip(&values) {
        let _ = writeln!(
            out,
            "{v:<width$}  {:>9}  {:>6.2}%  {:>9}  {:>7.2}",
            r.customers,
            r.share * 100.0,
            r.everyone,
            r.lift
        );
    }
    if rows.is_empty() {
        out.push_str("(no value)\n");
    }
    out
}
