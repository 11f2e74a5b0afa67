//! Every customer's purchase history, as the predictive models read it (`crate::predict`): for
//! one event condition (`purchased`, `purchased where amount > 0`, `purchased product X`) and
//! one *now*, each customer's distinct UTC days with a matching event up to *now*, reduced to
//! the repeat count, the first-to-last span, the first-day-to-now age and the mean value of the
//! repeat days, as the models' literature (and the `lifetimes` package) count them.
//!
//! The condition is planned as a rule is, so its names, shorthand and `where` mean what they
//! mean in a rule; its customers come from the bitmaps, and each one's stored events are walked
//! once, or, for a condition without a filter and histories without values, the days come from
//! the event's per-day counts without reading a block (`folds_from_counts`). This module reads
//! the read state and the store it is handed (the caller holds the read guard); it never writes
//! and takes no lock of its own. The models themselves are not here.

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::rollup::SPAN_UNIT_MS;
use crate::index::DayCounts;
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

/// Customers' folds read from an event's per-day counts (see [`folds_from_counts`]).
#[derive(Debug, Default)]
pub(crate) struct CountFolds {
    /// Ascending customers, each with their fold; the undecided left out.
    pub folds: Vec<(u32, Fold)>,
    /// Customers whose first event of the kind on the day of *now* may lie on either side of
    /// it (in the same 2-second unit): to be folded from their blocks.
    pub undecided: RoaringBitmap,
    /// At or after the latest event of the kind up to *now* (the end of its 2-second unit).
    pub latest: Timestamp,
}

/// Every customer's fold of their events of one kind up to `now`, without values, from the
/// event's per-day counts (`EventIndex::counts`: who had events of the kind on each day, with
/// the 2-second units of their first and last) instead of their blocks. Without a filter and
/// without values, a history is only the days with an event of the kind, which the counts
/// list exactly: the same folds [`history_of`] makes from the blocks. Days after the day of
/// `now` are left out; on that day a customer's entry counts when their first event of it is
/// surely at or before `now`, not when it is surely after, and makes them undecided otherwise.
pub(crate) fn folds_from_counts(counts: &DayCounts, now: Timestamp) -> CountFolds {
    let today = day_of(now);
    let mut pairs: Vec<u64> = Vec::new();
    let mut undecided = RoaringBitmap::new();
    let mut latest = Timestamp::MIN;
    for (&day, list) in counts {
        let d = i64::from(day);
        if d > today {
            break;
        }
        let start = d * DAY_MS;
        list.for_each(|x| {
            if x.count == 0 {
                return;
            }
            if d == today {
                let first = start + i64::from(x.first) * SPAN_UNIT_MS;
                if first > now {
                    return;
                }
                if first + SPAN_UNIT_MS - 1 > now {
                    undecided.insert(x.cust);
                    return;
                }
            }
            latest = latest.max(start + i64::from(x.last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1);
            pairs.push(u64::from(x.cust) << 32 | u64::from(day));
        });
    }
    pairs.par_sort_unstable();
    let mut folds: Vec<(u32, Fold)> = Vec::new();
    for p in pairs {
        let (cust, day) = ((p >> 32) as u32, i64::from(p as u32));
        if undecided.contains(cust) {
            continue;
        }
        match folds.last_mut() {
            Some((c, f)) if *c == cust => f.add(day, None),
            _ => {
                let mut f = Fold::default();
                f.add(day, None);
                folds.push((cust, f));
            }
        }
    }
    CountFolds {
        folds,
        undecided,
        latest: latest.min(now),
    }
}

/// Whether the customers' histories of `node` (events up to its end) without values can be
/// read from the event's per-day counts ([`folds_from_counts`]): no filter, every event of the
/// kind from the first.
pub(crate) fn countable(node: &super::plan::EventNode, value: Option<u32>) -> bool {
    node.event.is_some() && node.filter.is_none() && value.is_none() && node.from <= 0
}

/// Merges folds read from the blocks of some customers (`extra`, ascending) into `folds`
/// (ascending, none of the same customers).
pub(crate) fn merge_folds<T>(folds: Vec<(u32, T)>, extra: Vec<(u32, T)>) -> Vec<(u32, T)> {
    if extra.is_empty() {
        return folds;
    }
    let mut out = Vec::with_capacity(folds.len() + extra.len());
    let (mut a, mut b) = (folds.into_iter().peekable(), extra.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.0 < y.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
    out
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
    let read = |who: &RoaringBitmap| {
        map_customers_events(store, who, node.from, |_, bodies, blocks| {
            history_of(&node, value, bodies, blocks, now, req.unit)
        })
    };
    let counted = node
        .event
        .and_then(|e| state.indexes.event_index(e))
        .filter(|_| countable(&node, value));
    let found = match counted {
        Some(ei) => {
            let cf = folds_from_counts(&ei.counts, now);
            let today = day_of(now);
            let folds = cf
                .folds
                .into_iter()
                .filter_map(|(c, f)| Some((c, f.finish(today, req.unit)?)))
                .collect();
            merge_folds(folds, read(&cf.undecided)?)
        }
        None => read(&who)?,
    };
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
