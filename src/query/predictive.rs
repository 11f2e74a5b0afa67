//! Predictive computed traits' values (`p_alive`, `expected count in next T`, `clv(p) in next
//! T`, `rfm(p)`): derived for each customer at the plan's *now*, never rewritten as event
//! conditions (they have no equivalent in the rule language).
//!
//! The model reducers read one customer's matching events up to *now* (their history, folded
//! as `histories` folds it for the fit) and the purchase model the plan carries; `rfm(p)` ranks
//! each customer among every customer with a matching event in the window, so its values are
//! computed for all of them at once ([`prepare`], before any customer is checked) and kept in
//! the plan. The model reducers' values are computed the same way when the trait's
//! [`HistoryCache`] holds every customer's history (then the node's bounds are exact, and no
//! customer is read), and kept with those histories for the fit and the day of *now* they were
//! computed for, in order of value (`crate::index::totals::Order`): while neither the event's
//! stored events, nor the fit, nor the day changes, a test on the trait is a lookup and, for an
//! ordering, two binary searches and a kept bitmap. This module reads the store and the indexes it is handed; it writes nothing but
//! the caches it is handed, and does not fit models (the kept fit is `audience::traits`').

use std::cmp::Ordering;
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::rollup::ListVersion;
use crate::index::totals::Order;
use crate::index::Ranges;
use crate::model::time::{Timestamp, DAY_MS};
use crate::model::Value;
use crate::predict::{History, PurchaseModel};
use crate::storage::view::BlockSpan;
use crate::storage::Store;

use super::customer::{for_each_match, map_customers_events};
use super::exec::Sources;
use super::histories::{self, day_of, Fold};
use super::plan::{ComputedNode, Node, NodeKind, PlannedReducer};

/// Every customer's value of one computed trait at one *now*, by customer, ascending
/// (customers absent have none).
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub values: Vec<(u32, Value)>,
    /// The customers of `values`: who has a value.
    pub valued: RoaringBitmap,
    /// The model reducers' numbers as a range index, so that an ordering on them (`p_alive <
    /// 0.3`) is a few bitmap operations (`super::ranges::passing`); `None` for `rfm(p)`, and
    /// when `order` holds them.
    pub ranges: Option<Ranges>,
    /// The model reducers' numbers when all are floats (as the models give them), in order, so
    /// that an ordering on them is two binary searches and a kept bitmap
    /// (`super::ranges::passing_in_order`); customers whose value is NaN are left out (NaN
    /// orders against nothing).
    pub order: Option<Order>,
}

impl Table {
    /// The table of `values` (ascending customers), with a range index over them if `ranged`.
    fn new(values: Vec<(u32, Value)>, ranged: bool) -> Table {
        debug_assert!(values.windows(2).all(|w| w[0].0 < w[1].0));
        let valued =
            RoaringBitmap::from_sorted_iter(values.iter().map(|v| v.0)).unwrap_or_default();
        let floats = values.iter().all(|(_, v)| matches!(v, Value::Float(_)));
        let order = (ranged && floats).then(|| {
            let numbers = values
                .iter()
                .filter_map(|(cust, v)| match v {
                    Value::Float(x) if !x.is_nan() => Some((*x, *cust)),
                    _ => None,
                })
                .collect();
            Order::new(numbers, 0.0, Vec::new())
        });
        let ranges = (ranged && !floats).then(|| {
            let mut r = Ranges::default();
            for (cust, v) in &values {
                r.add(*cust, v);
            }
            r
        });
        Table {
            values,
            valued,
            ranges,
            order,
        }
    }

    fn get(&self, cust: u32) -> Option<&Value> {
        self.values
            .binary_search_by_key(&cust, |(c, _)| *c)
            .ok()
            .map(|i| &self.values[i].1)
    }
}

/// Where a plan keeps a [`Table`] once [`prepare`] has computed it.
#[derive(Debug, Default)]
pub(crate) struct TableSlot(parking_lot::Mutex<Option<Arc<Table>>>);

impl TableSlot {
    pub fn get(&self) -> Option<Arc<Table>> {
        self.0.lock().clone()
    }
}

/// Kept with a predictive trait's definition, between plans: every customer's history folded
/// from all their matching events, and the versions of the event's per-day count lists it was
/// read at. It answers a plan at *now* only while those versions are the index's (no event of
/// the kind was added or removed since: every such change edits a day's list) and *now* is at
/// or after the latest matching event (so "up to *now*" is all of them); the values then follow
/// from each fold and the day of *now*, and are kept with the folds ([`Folded::table`]). When
/// the condition has no filter and the reducer reads no value (`p_alive`, `expected count`),
/// the folds come from the event's per-day counts (`histories::folds_from_counts`), read no
/// customer, and are built by the first plan that finds them missing or stale; otherwise each
/// purchaser's blocks are read, by the second such plan (the first derives its values per
/// candidate), so a one-off query does not pay for a read of every purchaser.
#[derive(Debug, Default)]
pub(crate) struct HistoryCache(parking_lot::Mutex<CacheState>);

#[derive(Debug, Default)]
struct CacheState {
    kept: Option<Arc<Folded>>,
    /// A plan found it missing or stale since it was last built.
    asked: bool,
}

#[derive(Debug)]
struct Folded {
    versions: Vec<(u32, ListVersion)>,
    latest: Timestamp,
    /// Ascending customers, each with their fold.
    folds: Vec<(u32, Fold)>,
    /// Every customer's value, as computed from these folds for a model, a reducer and a day
    /// of *now* (the only part of *now* a value reads, as the age in whole days), the latest
    /// last; at most [`KEPT_TABLES`]. They go with the folds: a write of the event, which
    /// makes the folds stale, drops them too.
    tables: parking_lot::Mutex<Vec<KeptTable>>,
}

/// Value tables kept with one set of folds, at most (a few days, reducers or refits apart).
const KEPT_TABLES: usize = 4;

/// One kept value table and what it was computed for.
#[derive(Debug)]
struct KeptTable {
    /// The fit the values come from: a refit is a new model, so its values are computed anew.
    model: Arc<PurchaseModel>,
    reducer: PlannedReducer,
    today: i64,
    table: Arc<Table>,
}

impl Folded {
    /// Every customer's value of `c`'s model reducer under `model` on the day of `c`'s *now*:
    /// kept, or computed now and kept.
    fn table(&self, c: &ComputedNode, model: &Arc<PurchaseModel>) -> Arc<Table> {
        let today = day_of(c.events.to);
        let mut kept = self.tables.lock();
        let found = kept.iter().position(|k| {
            Arc::ptr_eq(&k.model, model) && k.reducer == c.reducer && k.today == today
        });
        if let Some(i) = found {
            let k = kept.remove(i);
            let table = k.table.clone();
            kept.push(k);
            return table;
        }
        let values: Vec<(u32, Value)> = self
            .folds
            .par_iter()
            .filter_map(|(cust, fold)| {
                let h = fold.finish(today, model.unit)?;
                Some((*cust, from_history(c, model, &h)?))
            })
            .collect();
        let table = Arc::new(Table::new(values, true));
        if kept.len() >= KEPT_TABLES {
            kept.remove(0);
        }
        kept.push(KeptTable {
            model: model.clone(),
            reducer: c.reducer,
            today,
            table: table.clone(),
        });
        table
    }
}

impl HistoryCache {
    /// The folds valid for `c` at its *now*: kept, built now (at once from the counts, else on
    /// the second ask), or `None`.
    fn folds(&self, sources: &Sources<'_>, c: &ComputedNode) -> Result<Option<Arc<Folded>>> {
        let Some(event) = c.events.event else {
            return Ok(None);
        };
        let Some(ei) = sources.indexes.event_index(event) else {
            return Ok(None);
        };
        let versions: Vec<(u32, ListVersion)> =
            ei.counts.iter().map(|(&d, l)| (d, l.version())).collect();
        let now = c.events.to;
        let mut st = self.0.lock();
        if let Some(k) = &st.kept {
            if k.versions == versions {
                return Ok((now >= k.latest).then(|| k.clone()));
            }
        }
        // Folds from the per-day counts cost no read of a customer: built at the first ask.
        let counted = histories::countable(&c.events, value_prop(c));
        if !st.asked && !counted {
            st.asked = true;
            return Ok(None);
        }
        let built = Arc::new(fold_all(sources, c, versions)?);
        st.kept = Some(built.clone());
        st.asked = false;
        Ok((now >= built.latest).then_some(built))
    }
}

/// The property whose values a model reducer's histories carry (`clv(p)`'s).
fn value_prop(c: &ComputedNode) -> Option<u32> {
    match c.reducer {
        PlannedReducer::Clv { prop, .. } => prop,
        _ => None,
    }
}

/// Every customer's fold of all their matching events (none left out by *now*).
fn fold_all(
    sources: &Sources<'_>,
    c: &ComputedNode,
    versions: Vec<(u32, ListVersion)>,
) -> Result<Folded> {
    let all = super::plan::EventNode {
        from: Timestamp::MIN,
        to: Timestamp::MAX,
        ..c.events.clone()
    };
    let counted = all
        .event
        .and_then(|e| sources.indexes.event_index(e))
        .filter(|_| histories::countable(&all, value_prop(c)));
    if let Some(ei) = counted {
        // Up to the end of time: no customer is undecided.
        let cf = histories::folds_from_counts(&ei.counts, Timestamp::MAX);
        debug_assert!(cf.undecided.is_empty());
        return Ok(Folded {
            versions,
            latest: cf.latest,
            folds: cf.folds,
            tables: Default::default(),
        });
    }
    let who = sources
        .bounds(&Node {
            kind: NodeKind::Event(Box::new(all.clone())),
            span: Default::default(),
            reading: None,
        })
        .maybe;
    let value = value_prop(c);
    let found = map_customers_events(sources.store, &who, Timestamp::MIN, |_, bodies, blocks| {
        let mut fold = Fold::default();
        let mut latest = None;
        for_each_match(&all, bodies, blocks, |e| {
            let v = match value {
                Some(p) => e.prop(p)?.and_then(|v| v.as_f64()),
                None => None,
            };
            fold.add(day_of(e.ts), v);
            latest = Some(latest.map_or(e.ts, |l: Timestamp| l.max(e.ts)));
            Ok(())
        })?;
        Ok(latest.map(|l| (fold, l)))
    })?;
    let latest = found
        .iter()
        .map(|(_, (_, l))| *l)
        .max()
        .unwrap_or(Timestamp::MIN);
    Ok(Folded {
        versions,
        latest,
        folds: found.into_iter().map(|(c, (f, _))| (c, f)).collect(),
        tables: Default::default(),
    })
}

/// The model reducer's value for one history (see [`model_value`]).
fn from_history(c: &ComputedNode, model: &PurchaseModel, h: &History) -> Option<Value> {
    let units = |ms: i64| ms as f64 / (DAY_MS as f64 * model.unit.days());
    match c.reducer {
        PlannedReducer::PAlive => Some(Value::Float(model.bgnbd.p_alive(h))),
        PlannedReducer::Expected { horizon } => {
            Some(Value::Float(model.bgnbd.expected_count(h, units(horizon))))
        }
        PlannedReducer::Clv { horizon, .. } => {
            model.expected_spend(h, units(horizon)).map(Value::Float)
        }
        _ => None,
    }
}

/// The value of a model reducer (`p_alive`, `expected count`, `clv`) for the customer whose
/// events are `bodies`: from their history of matching events up to the plan's *now* and the
/// kept model. No value without a matching event, without a kept model, and for `clv` without a
/// spend model.
pub(crate) fn model_value(
    c: &ComputedNode,
    bodies: &[u8],
    blocks: &[BlockSpan],
) -> Result<Option<Value>> {
    let Some(model) = &c.model else {
        return Ok(None);
    };
    let value_prop = match c.reducer {
        PlannedReducer::Clv { prop, .. } => prop,
        _ => None,
    };
    let now = c.events.to;
    let Some(h) =
        super::histories::history_of(&c.events, value_prop, bodies, blocks, now, model.unit)?
    else {
        return Ok(None);
    };
    Ok(from_history(c, model, &h))
}

/// The value of `rfm(p)` for `cust`, from the table [`prepare`] made.
pub(crate) fn table_value(c: &ComputedNode, cust: u32) -> Result<Option<Value>> {
    let table = c.table.as_ref().and_then(|t| t.get()).ok_or_else(|| {
        Error::Internal(format!(
            "the values of computed trait {} were not computed before a customer was checked",
            c.name
        ))
    })?;
    Ok(table.get(cust).cloned())
}

/// Computes the tables of every `rfm(p)` test in the plan under `node` that has none yet.
pub(crate) fn prepare(node: &Node, sources: &Sources<'_>) -> Result<()> {
    match &node.kind {
        NodeKind::And(items) | NodeKind::Or(items) => {
            for i in items {
                prepare(i, sources)?;
            }
        }
        NodeKind::Not(inner) | NodeKind::Audience { inner, .. } => prepare(inner, sources)?,
        NodeKind::Computed(c) => {
            let Some(slot) = &c.table else {
                return Ok(());
            };
            let mut kept = slot.0.lock();
            if kept.is_some() {
                return Ok(());
            }
            if let PlannedReducer::Rfm(prop) = c.reducer {
                let who = sources.bounds(&event_node(c)).maybe;
                *kept = Some(Arc::new(rfm_table(sources.store, c, prop, &who)?));
            } else if let (Some(cache), Some(model)) = (&c.histories, &c.model) {
                if let Some(folded) = cache.folds(sources, c)? {
                    *kept = Some(folded.table(c, model));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether the plan under `node` tests a predictive computed trait.
pub(crate) fn reads_predictive(node: &Node) -> bool {
    match &node.kind {
        NodeKind::And(items) | NodeKind::Or(items) => items.iter().any(reads_predictive),
        NodeKind::Not(inner) | NodeKind::Audience { inner, .. } => reads_predictive(inner),
        NodeKind::Computed(c) => matches!(
            c.reducer,
            PlannedReducer::PAlive
                | PlannedReducer::Expected { .. }
                | PlannedReducer::Clv { .. }
                | PlannedReducer::Rfm(_)
        ),
        _ => false,
    }
}

fn event_node(c: &ComputedNode) -> Node {
    Node {
        kind: NodeKind::Event(Box::new(c.events.clone())),
        span: Default::default(),
        reading: None,
    }
}

/// One customer's recency (whole UTC days from their latest matching event in the window to
/// *now*), frequency (matching events) and monetary value (the sum of `p`'s numbers).
#[derive(Debug, Clone, Copy)]
struct Rfm {
    days: i64,
    count: u64,
    sum: f64,
}

fn rfm_table(
    store: &Store,
    c: &ComputedNode,
    prop: Option<u32>,
    who: &RoaringBitmap,
) -> Result<Table> {
    let now = c.events.to;
    let rows = map_customers_events(store, who, c.events.from, |_, bodies, blocks| {
        let (mut count, mut last, mut sum) = (0u64, Timestamp::MIN, 0.0f64);
        for_each_match(&c.events, bodies, blocks, |e| {
            count += 1;
            last = last.max(e.ts);
            if let Some(p) = prop {
                if let Some(x) = e.prop(p)?.and_then(|v| v.as_f64()) {
                    sum += x;
                }
            }
            Ok(())
        })?;
        let days = now.div_euclid(DAY_MS) - last.div_euclid(DAY_MS);
        Ok((count > 0).then_some(Rfm { days, count, sum }))
    })?;
    debug_assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
    let recency = Ranks::new(rows.iter().map(|(_, r)| (-r.days) as f64).collect());
    let frequency = Ranks::new(rows.iter().map(|(_, r)| r.count as f64).collect());
    let monetary = Ranks::new(rows.iter().map(|(_, r)| r.sum).collect());
    let values = rows
        .iter()
        .map(|(cust, r)| {
            let digits = format!(
                "{}{}{}",
                recency.score((-r.days) as f64),
                frequency.score(r.count as f64),
                monetary.score(r.sum)
            );
            (*cust, Value::Str(digits.into()))
        })
        .collect();
    Ok(Table::new(values, false))
}

/// A population's values, sorted, to score one of them (higher is better).
struct Ranks(Vec<f64>);

impl Ranks {
    fn new(mut values: Vec<f64>) -> Ranks {
        values.sort_by(f64::total_cmp);
        Ranks(values)
    }

    /// The quintile of `v` (1 to 5, 5 best) by its mid-rank: with `below` customers worse and
    /// `equal` customers tied with it (itself included) among `n`,
    /// `1 + floor(5 · (below + equal / 2) / n)`. Tied customers share a score; a population of
    /// one, or of equal values, scores 3 (the middle: nothing tells them apart).
    fn score(&self, v: f64) -> u64 {
        let below = self
            .0
            .partition_point(|x| x.total_cmp(&v) == Ordering::Less);
        let upto = self
            .0
            .partition_point(|x| x.total_cmp(&v) != Ordering::Greater);
        quintile(below as u64, (upto - below) as u64, self.0.len() as u64)
    }
}

/// `1 + floor(5 · (2·below + equal) / (2·n))`, in whole numbers (see [`Ranks::score`]).
pub(crate) fn quintile(below: u64, equal: u64, n: u64) -> u64 {
    1 + (5 * (2 * below + equal)) / (2 * n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_by_mid_rank() {
        // Five distinct values: one per quintile.
        let r = Ranks::new(vec![3.0, 1.0, 5.0, 2.0, 4.0]);
        let scores: Vec<u64> = [1.0, 2.0, 3.0, 4.0, 5.0].map(|v| r.score(v)).to_vec();
        assert_eq!(scores, vec![1, 2, 3, 4, 5]);
        // One customer, or all tied: the middle.
        assert_eq!(Ranks::new(vec![7.0]).score(7.0), 3);
        assert_eq!(Ranks::new(vec![1.0; 9]).score(1.0), 3);
        // Ten distinct values: two per quintile.
        let r = Ranks::new((0..10).map(f64::from).collect());
        let scores: Vec<u64> = (0..10).map(|v| r.score(f64::from(v))).collect();
        assert_eq!(scores, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // Ties share the score of their mid-rank: 1, then three 2s, then 5.
        let r = Ranks::new(vec![1.0, 2.0, 2.0, 2.0, 3.0]);
        assert_eq!([1.0, 2.0, 3.0].map(|v| r.score(v)), [1, 3, 5]);
        // Never past 5, never below 1.
        for n in 1..40u64 {
            for below in 0..n {
                for equal in 1..=n - below {
                    let q = quintile(below, equal, n);
                    assert!((1..=5).contains(&q), "{below} {equal} {n}: {q}");
                }
            }
        }
    }
}
