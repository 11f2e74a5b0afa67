//! Running rules: the entry points the database handle delegates to. Each takes the read state
//! (behind its lock, when the guard need not be held for the whole call) and the store
//! explicitly; none writes.

use std::time::Instant;

use parking_lot::RwLock;

use super::state::ReadState;
use super::{exec, plan};
use super::{Audience, Explain, PreparedRule, Warning, Why};
use crate::error::{Error, Result};
use crate::model::time::Timestamp;
use crate::storage::Store;

/// Whether an evaluation lists the rule's warnings.
#[derive(Clone, Copy)]
pub(crate) enum Warnings {
    Listed,
    /// For callers that never show them: the upkeep of saved audiences (their rules were
    /// checked when saved) and the socket's `QUERY` (a client asks `CHECK` for them).
    Skipped,
}

/// The customers `rule` describes at `now`. The read lock is held while the rule is planned and
/// its bounds computed, not while the customers in the gap are checked against storage.
pub(crate) fn run(
    state: &RwLock<ReadState>,
    store: &Store,
    rule: &PreparedRule,
    now: Timestamp,
    warn: Warnings,
) -> Result<Audience> {
    let started = Instant::now();
    let (plan, bounds, warnings) = plan_and_bounds(&state.read(), store, rule, now, warn)?;
    let members = exec::resolve(&plan, &bounds, store)?;
    Ok(Audience {
        members,
        now,
        elapsed: started.elapsed(),
        warnings,
    })
}

/// What `rule` says that its writer probably did not mean, against `state`; nothing is
/// evaluated (see `Db::check`).
pub(crate) fn check(state: &ReadState, rule: &PreparedRule) -> Result<Vec<Warning>> {
    state.plan(&rule.rule, crate::model::time::now())?;
    Ok(super::check::warnings(
        &rule.rule,
        &state.catalog,
        &state.indexes,
        &state.definitions,
    ))
}

/// The plan of a rule at `now`, with each node's estimated and exact size and its time.
pub(crate) fn explain(
    state: &RwLock<ReadState>,
    store: &Store,
    rule: &PreparedRule,
    now: Timestamp,
) -> Result<Explain> {
    let (plan, bounds, warnings) =
        plan_and_bounds(&state.read(), store, rule, now, Warnings::Listed)?;
    let mut explained = super::explain::explain(&rule.text, &plan, &bounds, store)?;
    explained.warnings = warnings;
    Ok(explained)
}

/// A rule's plan at `now` and its bounds from the indexes.
fn planned(
    state: &ReadState,
    store: &Store,
    rule: &crate::rules::Rule,
    now: Timestamp,
) -> Result<(plan::Plan, exec::Bounds)> {
    let plan = state.plan(rule, now)?;
    let sources = exec::Sources {
        indexes: &state.indexes,
        catalog: &state.catalog,
        store,
        ids: Some(&state.ids),
    };
    super::predictive::prepare(&plan.root, &sources)?;
    let bounds = sources.bounds(&plan.root);
    Ok((plan, bounds))
}

/// A rule's plan at `now`, its bounds from the indexes and its warnings, from one read state
/// (also the start of `values::top`'s audience). The store is read only to build the text
/// columns of `contains` on properties without value bitmaps (`super::texts`).
pub(crate) fn plan_and_bounds(
    state: &ReadState,
    store: &Store,
    rule: &PreparedRule,
    now: Timestamp,
    warn: Warnings,
) -> Result<(plan::Plan, exec::Bounds, Vec<Warning>)> {
    let (plan, bounds) = planned(state, store, &rule.rule, now)?;
    let warnings = match warn {
        Warnings::Listed => super::check::warnings(
            &rule.rule,
            &state.catalog,
            &state.indexes,
            &state.definitions,
        ),
        Warnings::Skipped => Vec::new(),
    };
    Ok((plan, bounds, warnings))
}

/// A rule that is one event condition (a funnel step, the purchases of the purchase models),
/// planned at `now`: its event node (name, filter, window capped at *now*) and the customers
/// who satisfy it, exactly.
pub(crate) fn event_condition(
    state: &ReadState,
    store: &Store,
    rule: &crate::rules::Rule,
    now: Timestamp,
) -> Result<(plan::EventNode, roaring::RoaringBitmap)> {
    let (planned, bounds) = planned(state, store, rule, now)?;
    let who = exec::resolve(&planned, &bounds, store)?;
    let plan::NodeKind::Event(node) = planned.root.kind else {
        return Err(Error::Internal(
            "an event condition planned as another node".into(),
        ));
    };
    Ok((*node, who))
}

/// Whether one customer satisfies `rule` at `now`, clause by clause (see `Db::why`). An unknown
/// customer is [`Error::NotFound`].
pub(crate) fn why(
    state: &RwLock<ReadState>,
    store: &Store,
    customer: &str,
    rule: &PreparedRule,
    now: Timestamp,
) -> Result<Why> {
    let cust = state
        .read()
        .ids
        .get(customer)
        .ok_or_else(|| Error::NotFound(format!("customer {customer:?}")))?;
    let state = state.read();
    super::why::why(
        store,
        &state.catalog,
        &state.indexes,
        &state.definitions,
        &rule.rule,
        &rule.text,
        customer,
        cust,
        now,
    )
}

/// Calls `f` with the members' external ids after `after`, in byte order, until it returns
/// false: few members are looked up in the id map and sorted, many are streamed from storage's
/// id records, which are kept in that order.
pub(crate) fn walk_member_ids(
    state: &RwLock<ReadState>,
    store: &Store,
    audience: &Audience,
    after: Option<&str>,
    mut f: impl FnMut(&str) -> Result<bool>,
) -> Result<()> {
    let members = audience.bitmap();
    let everyone = state.read().indexes.everyone.len();
    if members.len().saturating_mul(16) < everyone {
        // Few members: look each up and sort.
        let mut ids = Vec::with_capacity(members.len() as usize);
        {
            let state = state.read();
            for cust in members {
                if let Some(id) = state.ids.external(cust) {
                    if after.is_none_or(|a| id > a) {
                        ids.push(id.to_owned());
                    }
                }
            }
        }
        ids.sort_unstable();
        for id in &ids {
            if !f(id)? {
                break;
            }
        }
        return Ok(());
    }
    for item in store.ids_after(after) {
        let (id, cust) = item?;
        if members.contains(cust) && !f(&id)? {
            break;
        }
    }
    Ok(())
}

/// The value of every computed trait for customer `cust` at `now`, by name (`None`: the trait
/// has no value for them).
pub(crate) fn computed_values(
    state: &ReadState,
    store: &Store,
    cust: u32,
    now: Timestamp,
) -> Result<Vec<(String, Option<crate::model::Value>)>> {
    let mut out = Vec::new();
    for d in state.definitions.traits() {
        let rule = crate::rules::parse(&format!("{} is set", d.name))?;
        let planned = state.plan(&rule, now)?;
        let plan::NodeKind::Computed(c) = &planned.root.kind else {
            return Err(Error::Internal(format!(
                "computed trait {} did not plan as one",
                d.name
            )));
        };
        super::predictive::prepare(
            &planned.root,
            &exec::Sources {
                indexes: &state.indexes,
                catalog: &state.catalog,
                store,
                ids: Some(&state.ids),
            },
        )?;
        let mut data = exec::CustomerData::new(store, planned.events_from);
        data.load(cust);
        let (bodies, blocks) = data.events()?;
        let value = super::customer::computed_value(c, cust, bodies, blocks)?;
        out.push((d.name.clone(), value));
    }
    Ok(out)
}
