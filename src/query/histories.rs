//! Every customer's purchase history, as the predictive models read it (`crate::predict`): for
//! one event condition (`purchased`, `purchased where amount > 0`, `purchased product X`) and
//! one *now*, each customer's distinct UTC days with a matching event up to *now*, reduced to
//! the repeat count, the first-to-last span, the first-day-to-now age and the mean value of the
//! repeat days, as the models' literature (and the `lifetimes` package) count them.
//!
//! The condition is planned as a rule is, so its names, shorthand and `where` mean what they
//! mean in a rule; its customers come from the bitmaps, and each one's stored events are walked
//! once. This module reads the read state and the store it is handed (the caller holds the read
//! guard); it never writes and takes no lock of its own. The models themselves are not here.

use crate::error::{Error, Result};
use crate::model::time::{Timestamp, DAY_MS};
use crate::model::value::ValueType;
use crate::predict::{History, TimeUnit};
use crate::rules::{self, ExprKind, Rule};
use crate::storage::Store;

use super::check::{self, Warning};
use super::customer::{for_each_match, map_customers_events};
use super::run::event_condition;
use super::ReadState;

/// Whose histories, of what, in which unit.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// An event condition without frequency or window: `purchased`, `purchased where amount >
    /// 0`. Its events up to *now* are the purchases.
    pub event: String,
    /// A numeric property of those events whose values are spend (`amount`), if any.
    pub value: Option<String>,
    pub unit: TimeUnit,
}

/// The histories of every customer with at least one purchase up to *now*.
#[derive(Debug, Clone, Default)]
pub struct Histories {
    /// Internal customer ids, ascending, one per history.
    pub customers: Vec<u32>,
    pub histories: Vec<History>,
    /// Unknown names, as the rule language warns of them.
    pub warnings: Vec<Warning>,
}

/// The histories by external customer id, as the handle answers them.
#[derive(Debug, Clone, Default)]
pub struct CustomerHistories {
    /// External id and history, in internal id order.
    pub histories: Vec<(String, History)>,
    /// Unknown names, as the rule language warns of them.
    pub warnings: Vec<Warning>,
}

/// The event condition of `req` as a rule, checked to carry no frequency and no window.
fn purchase_rule(text: &str) -> Result<Rule> {
    let not_an_event = |why: String| {
        Error::InvalidInput(format!(
            "{text:?} does not name purchases: {why}; write an event, with a property value or \
             a `where` if needed, e.g. `purchased` or `purchased where amount > 0`"
        ))
    };
    let rule = rules::parse(text).map_err(|e| not_an_event(e.message().to_owned()))?;
    let ExprKind::Event(cond) = &rule.expr.kind else {
        return Err(not_an_event("it is not an event condition".into()));
    };
    if cond.frequency.is_some() || cond.window.is_some() {
        return Err(not_an_event(
            "it has a frequency or a window (the models read every purchase up to now)".into(),
        ));
    }
    Ok(rule)
}

/// A whole UTC day's number.
pub(crate) fn day_of(t: Timestamp) -> i64 {
    t.div_euclid(DAY_MS)
}

/// Folds one customer's matching events, in time order, into their history.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fold {
    first_day: Option<i64>,
    last_day: i64,
    repeat_days: u32,
    /// The numbers of the current day so far (`None`: none yet), and the repeat days before it
    /// that had numbers: their sums' total and how many.
    day_sum: Option<f64>,
    repeat_sum: f64,
    valued_days: u32,
}

impl Fold {
    pub(crate) fn add(&mut self, day: i64, value: Option<f64>) {
        match self.first_day {
            None => {
                self.first_day = Some(day);
                self.last_day = day;
            }
            Some(_) if day != self.last_day => {
                self.close_day();
                self.repeat_days += 1;
                self.last_day = day;
            }
            Some(_) => {}
        }
        if let Some(v) = value {
            *self.day_sum.get_or_insert(0.0) += v;
        }
    }

    /// Ends the current day: its sum counts towards the mean if it was a repeat day with a
    /// number.
    fn close_day(&mut self) {
        if let Some(sum) = self.day_sum.take() {
            if self.repeat_days > 0 {
                self.repeat_sum += sum;
                self.valued_days += 1;
            }
        }
    }

    pub(crate) fn finish(mut self, today: i64, unit: TimeUnit) -> Option<History> {
        let first = self.first_day?;
        self.close_day();
        let days = unit.days();
        Some(History {
            frequency: self.repeat_days,
            recency: (self.last_day - first) as f64 / days,
            age: (today - first) as f64 / days,
            monetary: if self.valued_days > 0 {
                self.repeat_sum / f64::from(self.valued_days)
            } else {
                0.0
            },
        })
    }
}

/// One customer's history from their events matching `node` (read in time order from
/// `bodies`), the values of `value` summed per day, at `now`; `None` without a matching event.
/// The same fold as [`histories`], so a computed trait's value for one customer is the one the
/// model was fitted on.
pub(crate) fn history_of(
    node: &super::plan::EventNode,
    value: Option<u32>,
    bodies: &[u8],
    blocks: &[crate::storage::view::BlockSpan],
    now: Timestamp,
    unit: TimeUnit,
) -> Result<Option<History>> {
    let mut fold = Fold::default();
    for_each_match(node, bodies, blocks, |e| {
        let v = match value {
            Some(p) => e.prop(p)?.and_then(|v| v.as_f64()),
            None => None,
        };
        fold.add(day_of(e.ts), v);
        Ok(())
    })?;
    Ok(fold.finish(day_of(now), unit))
}

pub(crate) fn histories(
    state: &ReadState,
    store: &Store,
    req: &HistoryRequest,
    now: Timestamp,
) -> Result<Histories> {
    let rule = purchase_rule(&req.event)?;
    let warnings = check::warnings(&rule, &state.catalog, &state.indexes, &state.definitions);
    let (node, who) = event_condition(state, store, &rule, now)?;
    let value = match (&req.value, node.event) {
        (None, _) => None,
        (Some(name), event) => {
            let prop = state.catalog.prop_id(name);
            let types = match (event, prop) {
                (Some(e), Some(p)) => state.catalog.prop_types(e, p),
                _ => 0,
            };
            let numeric = ValueType::Int.bit() | ValueType::Float.bit();
            if types & numeric == 0 {
                let holds = match crate::storage::catalog::type_names(types) {
                    names if names.is_empty() => "nothing".to_owned(),
                    names => names.join(", "),
                };
                return Err(Error::InvalidInput(format!(
                    "{name:?} of {:?} is never a number (it holds {holds}): a spend model needs \
                     a numeric property",
                    req.event,
                )));
            }
            prop
        }
    };
    let found = map_customers_events(store, &who, node.from, |_, bodies, blocks| {
        history_of(&node, value, bodies, blocks, now, req.unit)
    })?;
    let mut out = Histories {
        warnings,
        ..Histories::default()
    };
    for (cust, h) in found {
        out.customers.push(cust);
        out.histories.push(h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_counts_days_and_leaves_the_first_day_out_of_the_mean() {
        let mut f = Fold::default();
        // Day 10: two purchases (10 + 5); day 12: 30; day 12 again: 6; day 17: 12.
        for (day, v) in [(10, 10.0), (10, 5.0), (12, 30.0), (12, 6.0), (17, 12.0)] {
            f.add(day, Some(v));
        }
        let h = f.finish(24, TimeUnit::Weeks).unwrap();
        assert_eq!(h.frequency, 2);
        assert!((h.recency - 1.0).abs() < 1e-12);
        assert!((h.age - 2.0).abs() < 1e-12);
        assert!((h.monetary - 24.0).abs() < 1e-12, "(36 + 12) / 2");
        let mut once = Fold::default();
        once.add(3, Some(99.0));
        once.add(3, Some(1.0));
        let h = once.finish(3, TimeUnit::Days).unwrap();
        assert_eq!(
            (h.frequency, h.recency, h.age, h.monetary),
            (0, 0.0, 0.0, 0.0)
        );
        assert!(Fold::default().finish(3, TimeUnit::Days).is_none());
        // A repeat day without a number (text, missing) is left out of the mean, not a 0.
        let mut gaps = Fold::default();
        for (day, v) in [
            (1, Some(5.0)),
            (2, None),
            (3, Some(8.0)),
            (3, None),
            (4, Some(4.0)),
        ] {
            gaps.add(day, v);
        }
        let h = gaps.finish(4, TimeUnit::Days).unwrap();
        assert_eq!((h.frequency, h.monetary), (3, 6.0));
    }
}
