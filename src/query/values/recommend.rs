//! `recommend`: values to show one customer, from the values that co-occur with theirs.
//!
//! With `S(v)` the customers who did the event with value `v` inside the window (exact, from
//! [`super::who_did_each`]) and `H` the customer's own values (the `v` whose `S(v)` holds them),
//! every other value `c` scores
//!
//! ```text
//! score(c) = Σ over h in H of |S(h) ∩ S(c)| / sqrt(|S(h)| · |S(c)|)
//! ```
//!
//! the sum of the cosine similarities of `c` with each of the customer's values (the
//! co-occurrence in distinct customers, normalised by the popularity of both values, so that a
//! value everyone did does not win by being everywhere). Values with a score of 0 and the
//! customer's own values are left out; ranked by score, ties by value. A customer with no value
//! in the window (or unknown) gets the most popular values instead, scored `|S(c)| / all
//! customers`. Each `|S(h) ∩ S(c)|` for every candidate `c` at once is a pass over the
//! customers of `S(h)` and their values ([`super::PerCustomer`]), not an intersection per
//! candidate. This module reads the indexes (and the cut days' events); it never writes.

use rayon::prelude::*;

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::model::Value;
use crate::query::ReadState;
use crate::storage::Store;

use super::super::check::Warning;
use super::{require_indexed, target, to_value, who_did_each, PerCustomer};

/// A value and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub value: Value,
    pub score: f64,
}

/// The answer of `recommend`.
#[derive(Debug, Clone)]
pub struct Recommendation {
    /// Best first, ties by value.
    pub values: Vec<Scored>,
    /// Whether these are the most popular values, because the customer had none in the window.
    pub popular: bool,
    /// Unknown event or property names, as the rule language warns of them.
    pub warnings: Vec<Warning>,
}

impl Recommendation {
    /// `[{"value", "score"}, ...]`.
    pub fn to_json(&self) -> serde_json::Value {
        self.values
            .iter()
            .map(|s| serde_json::json!({ "value": s.value.to_json(), "score": s.score }))
            .collect()
    }
}

/// The score of a candidate from its co-occurrences: the cosine of each of the customer's
/// values with it, summed in the order of the customer's values.
pub fn cosine_sum(pairs: impl Iterator<Item = (u64, u64, u64)>) -> f64 {
    pairs
        .map(|(both, own, candidate)| both as f64 / (own as f64 * candidate as f64).sqrt())
        .sum()
}

pub(crate) fn recommend(
    state: &ReadState,
    store: &Store,
    customer: &str,
    (event, property, window): (&str, &str, Option<&str>),
    limit: usize,
    now: Timestamp,
) -> Result<Recommendation> {
    let t = target(state, event, property, window, now)?;
    require_indexed(state, &t, event, property)?;
    let sets = who_did_each(&state.indexes, store, &t)?;
    let cust = state.ids.get(customer);
    let own: Vec<usize> = match cust {
        Some(c) => (0..sets.len()).filter(|&i| sets[i].1.contains(c)).collect(),
        None => Vec::new(),
    };
    let popular = own.is_empty();
    let mut scored: Vec<(usize, f64)> = if popular {
        let all = state.indexes.everyone.len().max(1) as f64;
        (0..sets.len())
            .map(|i| (i, sets[i].1.len() as f64 / all))
            .collect()
    } else if let Some(per) = PerCustomer::new(&sets) {
        // Each own value's co-occurrences with every value, from its customers' values.
        let rows: Vec<Vec<u32>> = own
            .par_iter()
            .map(|&i| {
                let mut row = vec![0u32; sets.len()];
                per.shared_with(&sets[i].1, &mut row);
                row
            })
            .collect();
        (0..sets.len())
            .filter(|j| own.binary_search(j).is_err())
            .filter_map(|j| {
                let cand = &sets[j].1;
                let score = cosine_sum(
                    own.iter()
                        .zip(&rows)
                        .map(|(&i, row)| (u64::from(row[j]), sets[i].1.len(), cand.len())),
                );
                (score > 0.0).then_some((j, score))
            })
            .collect()
    } else {
        (0..sets.len())
            .into_par_iter()
            .filter(|j| own.binary_search(j).is_err())
            .filter_map(|j| {
                let cand = &sets[j].1;
                let score = cosine_sum(own.iter().map(|&i| {
                    let mine = &sets[i].1;
                    (mine.shared_with(cand), mine.len(), cand.len())
                }));
                (score > 0.0).then_some((j, score))
            })
            .collect()
    };
    // `sets` is in value order: ties keep it.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    Ok(Recommendation {
        values: scored
            .into_iter()
            .map(|(i, score)| Scored {
                value: to_value(&sets[i].0),
                score,
            })
            .collect(),
        popular,
        warnings: t.warnings,
    })
}
