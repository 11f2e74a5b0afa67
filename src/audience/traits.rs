//! Computed traits' definitions: checked, stored as JSON under their name (one record, so a
//! definition is there whole or not at all after a crash), loaded at open into the read state's
//! [`Definitions`], where rules find them, and dropped.
//!
//! A definition never changes once saved (define again after dropping), and cannot be dropped
//! while a saved audience reads it, so no saved audience's members ever depend on a definition
//! other than the one they were computed with. This module keeps no values: a computed trait's
//! value is derived when a rule reads it (`query::computed`, `query::customer`). It writes only
//! through `storage::WriteBatch`.
//!
//! A predictive trait (`p_alive`, `expected count in next T`, `clv(p) in next T`) also keeps
//! its purchase model, fitted here on the store's events up to *now* when it is defined, again
//! when its event's stored events have grown by a tenth since the last attempt
//! ([`super::Audiences::refit_grown`], after each write), and on request; the fit is stored in
//! the definition's record, so it is there whole after a crash and survives reopening.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Env, Upkeep};
use crate::error::{corrupt, internal, invalid, Error, Result};
use crate::model::time::Timestamp;
use crate::model::value::ValueType;
use crate::predict::{BgNbd, GammaGamma, PurchaseModel, TimeUnit};
use crate::query::footprint::Footprint;
use crate::query::histories::{self, HistoryRequest};
use crate::query::{Definitions, KeptFit, ReadState, TraitDefinition};
use crate::rules::{self, Reducer};
use crate::storage::{Catalog, Store, WriteBatch};

/// The longest computed trait name.
pub const MAX_TRAIT_NAME_LEN: usize = 64;

/// A computed trait as listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComputedTraitInfo {
    pub name: String,
    /// The expression, canonical (`purchased avg(amount) ever`).
    pub expression: String,
    /// When it was defined.
    pub created: Timestamp,
    /// The saved audiences reading it.
    pub used_by: Vec<String>,
    /// The kept purchase model of `p_alive`, `expected count` and `clv` (see
    /// [`crate::predict::PurchaseModel::to_json`]); absent for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<serde_json::Value>,
    /// Why the last refit failed, if it did (the model above is the last good fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refit_error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredTrait {
    name: String,
    expression: String,
    created: Timestamp,
    /// The kept purchase model of a predictive trait (absent for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fit: Option<StoredFit>,
}

/// A kept fit as stored: the parameters and the bookkeeping of [`KeptFit`].
#[derive(Serialize, Deserialize)]
struct StoredFit {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
    spend: Option<[f64; 3]>,
    time_unit: String,
    customers: u64,
    repeat_customers: u64,
    log_likelihood: f64,
    fitted_at: Timestamp,
    events_at_fit: u64,
    events_at_try: u64,
    last_error: Option<String>,
}

impl StoredFit {
    fn of(f: &KeptFit) -> StoredFit {
        let m = &f.model;
        StoredFit {
            r: m.bgnbd.r,
            alpha: m.bgnbd.alpha,
            a: m.bgnbd.a,
            b: m.bgnbd.b,
            spend: m.gamma_gamma.map(|g| [g.p, g.q, g.v]),
            time_unit: m.unit.name().to_owned(),
            customers: m.customers,
            repeat_customers: m.repeat_customers,
            log_likelihood: m.log_likelihood,
            fitted_at: m.fitted_at,
            events_at_fit: f.events_at_fit,
            events_at_try: f.events_at_try,
            last_error: f.last_error.clone(),
        }
    }

    fn kept(self) -> Result<KeptFit> {
        let unit = TimeUnit::parse(&self.time_unit)
            .ok_or_else(|| corrupt!("a kept fit's time unit {:?}", self.time_unit))?;
        Ok(KeptFit {
            model: Arc::new(PurchaseModel {
                bgnbd: BgNbd {
                    r: self.r,
                    alpha: self.alpha,
                    a: self.a,
                    b: self.b,
                },
                gamma_gamma: self.spend.map(|[p, q, v]| GammaGamma { p, q, v }),
                unit,
                customers: self.customers,
                repeat_customers: self.repeat_customers,
                log_likelihood: self.log_likelihood,
                fitted_at: self.fitted_at,
            }),
            events_at_fit: self.events_at_fit,
            events_at_try: self.events_at_try,
            last_error: self.last_error,
        })
    }
}

/// The time unit of every kept fit: weeks, as the models' literature and `lifetimes` count.
pub const FIT_UNIT: TimeUnit = TimeUnit::Weeks;

/// Whether stored events of a kept fit's event have grown by a tenth since the last attempt to
/// fit (`events_at_try`), so the fit is made again.
pub(crate) fn grown(events_now: u64, events_at_try: u64) -> bool {
    events_now.saturating_mul(10) >= events_at_try.saturating_mul(11) && events_now > events_at_try
}

/// Stored events of `expr`'s event, whatever their properties and time: what "the data has
/// grown" counts.
fn event_count(catalog: &Catalog, expr: &rules::Computed) -> u64 {
    catalog
        .event_id(&expr.event.event.text)
        .and_then(|e| catalog.event_info(e))
        .map_or(0, |i| i.count)
}

/// The purchase model of the predictive trait `name` (`expr`) fitted on its events up to
/// `now`: BG/NBD, and Gamma–Gamma on `clv`'s property. Too few repeat customers is an error
/// naming how many are needed and how many there are.
pub(crate) fn fit(
    state: &ReadState,
    store: &Store,
    name: &str,
    expr: &rules::Computed,
    now: Timestamp,
) -> Result<PurchaseModel> {
    let head = rules::EventCondition {
        window: None,
        frequency: None,
        ..expr.event.clone()
    };
    let value = match &expr.reducer {
        Reducer::Clv { property, .. } => Some(property.text.clone()),
        _ => None,
    };
    let req = HistoryRequest {
        event: head.to_string(),
        value,
        unit: FIT_UNIT,
    };
    let h = histories::histories(state, store, &req, now)?;
    PurchaseModel::fit(&h.histories, FIT_UNIT, req.value.is_some(), now).map_err(|e| {
        let e = match e {
            Error::InvalidInput(why) => why,
            other => other.to_string(),
        };
        invalid!(
            "computed trait {name}: the purchase model cannot be fitted on {head} up to {}: {e}",
            crate::model::time::format_rfc3339(now)
        )
    })
}

/// The model of the predictive trait `name` fitted at `now`, not kept.
pub(crate) fn fit_trait(
    state: &ReadState,
    store: &Store,
    name: &str,
    now: Timestamp,
) -> Result<PurchaseModel> {
    let def = state
        .definitions
        .get_trait(name)
        .ok_or_else(|| Error::NotFound(format!("computed trait {name:?}")))?;
    if !def.expr.reducer.is_model() {
        return Err(invalid!(
            "computed trait {name} ({}) keeps no purchase model: only p_alive, expected count \
             and clv are fitted",
            def.expr
        ));
    }
    fit(state, store, name, &def.expr, now)
}

/// Refuses `rule` for a saved audience when it reads a predictive computed trait (directly or
/// through the audiences it names): their values move with every day and every refit, which
/// saved audiences do not follow.
pub(crate) fn refuse_predictive(rule: &rules::Rule, defs: &Definitions) -> Result<()> {
    let fp = Footprint::of(rule, defs);
    let predictive: Vec<&str> = fp
        .computed
        .iter()
        .filter(|n| {
            defs.get_trait(n)
                .is_some_and(|d| d.expr.reducer.is_predictive())
        })
        .map(String::as_str)
        .collect();
    if predictive.is_empty() {
        return Ok(());
    }
    Err(invalid!(
        "a saved audience cannot read the predictive trait{} {}: {} value{} move{} with every day \
         and every refit of the model, which saved audiences do not follow yet; query it instead",
        if predictive.len() == 1 { "" } else { "s" },
        predictive.join(", "),
        if predictive.len() == 1 {
            "its"
        } else {
            "their"
        },
        if predictive.len() == 1 { "" } else { "s" },
        if predictive.len() == 1 { "s" } else { "" },
    ))
}

/// Adds every stored computed trait to `defs`.
pub(super) fn load(store: &Store, defs: &mut Definitions) -> Result<()> {
    for item in store.computed_trait_definitions() {
        let v = item?;
        let s: StoredTrait = serde_json::from_slice(&v)
            .map_err(|e| corrupt!("bad computed trait definition: {e}"))?;
        let expr = rules::parse_computed(&s.expression)
            .map_err(|e| corrupt!("computed trait {} no longer parses: {e}", s.name))?;
        let fit = s.fit.map(StoredFit::kept).transpose()?;
        defs.insert_trait(Arc::new(TraitDefinition {
            name: s.name,
            expr,
            created: s.created,
            fit,
            cache: Default::default(),
        }));
    }
    Ok(())
}

/// Checks a computed trait's name: a plain name of the rule language that is not a keyword, at
/// most [`MAX_TRAIT_NAME_LEN`] bytes.
pub fn check_trait_name(name: &str) -> Result<()> {
    if !rules::words::is_name(name) || rules::words::is_keyword(name) {
        return Err(invalid!(
            "computed trait name {name:?}: use letters, digits and '_', starting with a letter \
             or '_', and no keyword of the rule language"
        ));
    }
    if name.len() > MAX_TRAIT_NAME_LEN {
        return Err(invalid!(
            "computed trait name {name:?} is longer than {MAX_TRAIT_NAME_LEN} bytes"
        ));
    }
    Ok(())
}

/// Why `expr` cannot be computed from what the store knows, if it cannot: an aggregate of a
/// property that the event has only ever held as something other than a number.
fn check_types(catalog: &Catalog, expr: &rules::Computed) -> Result<()> {
    let Reducer::Aggregate { func, property } = &expr.reducer else {
        return Ok(());
    };
    let event = &expr.event.event.text;
    let (Some(e), Some(p)) = (catalog.event_id(event), catalog.prop_id(&property.text)) else {
        return Ok(());
    };
    let types = catalog.prop_types(e, p);
    let numeric = ValueType::Int.bit() | ValueType::Float.bit();
    if types != 0 && types & numeric == 0 {
        let seen: Vec<&str> = ValueType::ALL
            .into_iter()
            .filter(|t| types & t.bit() != 0)
            .map(ValueType::name)
            .collect();
        return Err(invalid!(
            "{}({}) needs a number, but {event}'s property {} has only held {} values",
            func.keyword(),
            property.text,
            property.text,
            seen.join(", ")
        ));
    }
    Ok(())
}

impl super::Audiences {
    /// Defines the computed trait `name` as `expression`. Refused, with nothing changed, for a
    /// name that is not a plain name, that is already a computed trait, a stored trait or an
    /// event, for an expression that does not parse, and for an aggregate of a property the
    /// event has only held as something other than a number.
    pub(crate) fn define_trait(
        &self,
        _: &mut Upkeep,
        env: &Env<'_>,
        name: &str,
        expression: &str,
    ) -> Result<ComputedTraitInfo> {
        check_trait_name(name)?;
        let expr = rules::parse_computed(expression)?;
        let now = env.clock.now();
        let state = env.state.read();
        if let Some(old) = state.definitions.get_trait(name) {
            return Err(invalid!(
                "computed trait {name} is already defined as \"{}\": drop it first",
                old.expr
            ));
        }
        if state.catalog.trait_id(name).is_some() {
            return Err(invalid!(
                "{name} is a stored trait (set by identify): a computed trait needs a name of \
                 its own"
            ));
        }
        if state.catalog.event_id(name).is_some() {
            return Err(invalid!(
                "{name} is an event name: a computed trait of that name would read two ways in \
                 rules; choose another name"
            ));
        }
        let readers: Vec<&str> = state
            .definitions
            .iter()
            .filter(|d| {
                Footprint::of(d.rule.rule(), &state.definitions)
                    .traits
                    .contains(name)
            })
            .map(|d| d.name.as_str())
            .collect();
        if !readers.is_empty() {
            return Err(invalid!(
                "the saved audience{} {} already read{} a trait named {name}: defining it would \
                 change {} meaning; change or drop {} first",
                if readers.len() == 1 { "" } else { "s" },
                readers.join(", "),
                if readers.len() == 1 { "s" } else { "" },
                if readers.len() == 1 { "its" } else { "their" },
                if readers.len() == 1 { "it" } else { "them" },
            ));
        }
        check_types(&state.catalog, &expr)?;
        let fit = if expr.reducer.is_model() {
            let model = fit(&state, env.store, name, &expr, now)?;
            let events = event_count(&state.catalog, &expr);
            Some(KeptFit {
                model: Arc::new(model),
                events_at_fit: events,
                events_at_try: events,
                last_error: None,
            })
        } else {
            None
        };
        let stored = StoredTrait {
            name: name.to_owned(),
            expression: expr.to_string(),
            created: now,
            fit: fit.as_ref().map(StoredFit::of),
        };
        let mut batch = WriteBatch::new();
        batch.put_computed_trait(
            name,
            serde_json::to_vec(&stored).map_err(|e| internal!("computed trait: {e}"))?,
        );
        env.store.commit(batch)?;
        drop(state);
        let def = Arc::new(TraitDefinition {
            name: name.to_owned(),
            expr,
            created: now,
            fit,
            cache: Default::default(),
        });
        let mut st = env.state.write();
        st.definitions.insert_trait(def.clone());
        Ok(info(&st.definitions, &def))
    }

    /// Drops the computed trait `name`. Refused, naming them, while saved audiences read it.
    pub(crate) fn drop_trait(&self, _: &mut Upkeep, env: &Env<'_>, name: &str) -> Result<()> {
        {
            let state = env.state.read();
            if state.definitions.get_trait(name).is_none() {
                return Err(Error::NotFound(format!("computed trait {name:?}")));
            }
            let users = state.definitions.trait_users(name);
            if !users.is_empty() {
                return Err(invalid!(
                    "computed trait {name} is used by the saved audience{} {}: change or drop {} \
                     first",
                    if users.len() == 1 { "" } else { "s" },
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" }
                ));
            }
        }
        let mut batch = WriteBatch::new();
        batch.remove_computed_trait(name);
        env.store.commit(batch)?;
        env.state.write().definitions.remove_trait(name);
        Ok(())
    }

    /// Fits the predictive trait `name` again on its events up to *now* and keeps the new fit.
    /// A fit that fails keeps the last good one: the failure is recorded (`trait show` says it)
    /// and returned. Refused for a trait without a model.
    pub(crate) fn refit_trait(
        &self,
        _: &mut Upkeep,
        env: &Env<'_>,
        name: &str,
    ) -> Result<ComputedTraitInfo> {
        let now = env.clock.now();
        let def = env
            .state
            .read()
            .definitions
            .get_trait(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("computed trait {name:?}")))?;
        if def.fit.is_none() {
            return Err(invalid!(
                "computed trait {name} ({}) keeps no purchase model: only p_alive, expected \
                 count and clv are fitted",
                def.expr
            ));
        }
        refit(env, &def, now)?;
        get(&env.state.read().definitions, name)
    }

    /// Refits every predictive trait whose event's stored events have grown by a tenth since
    /// its last fit or attempt. A failure keeps the last good fit and is recorded, not
    /// returned: the write that grew the data has succeeded.
    pub(crate) fn refit_grown(&self, _: &mut Upkeep, env: &Env<'_>) -> Result<()> {
        let due: Vec<Arc<TraitDefinition>> = {
            let state = env.state.read();
            state
                .definitions
                .traits()
                .filter(|d| {
                    d.fit.as_ref().is_some_and(|f| {
                        grown(event_count(&state.catalog, &d.expr), f.events_at_try)
                    })
                })
                .cloned()
                .collect()
        };
        let now = env.clock.now();
        for d in due {
            match refit(env, &d, now) {
                Ok(()) | Err(Error::InvalidInput(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Fits `def` again at `now` and stores the outcome: the new fit, or the old one with the
/// failure recorded (then the failure is returned, saying the last good fit is kept).
fn refit(env: &Env<'_>, def: &TraitDefinition, now: Timestamp) -> Result<()> {
    let old = def
        .fit
        .as_ref()
        .ok_or_else(|| internal!("refit of a trait without a fit"))?;
    let (outcome, events) = {
        let state = env.state.read();
        (
            fit(&state, env.store, &def.name, &def.expr, now),
            event_count(&state.catalog, &def.expr),
        )
    };
    let (kept, result) = match outcome {
        Ok(model) => (
            KeptFit {
                model: Arc::new(model),
                events_at_fit: events,
                events_at_try: events,
                last_error: None,
            },
            Ok(()),
        ),
        Err(e) => {
            let why = e.to_string();
            (
                KeptFit {
                    events_at_try: events,
                    last_error: Some(why.clone()),
                    ..old.clone()
                },
                Err(invalid!(
                    "{why}; the fit of {} is kept",
                    crate::model::time::format_rfc3339(old.model.fitted_at)
                )),
            )
        }
    };
    let stored = StoredTrait {
        name: def.name.clone(),
        expression: def.expr.to_string(),
        created: def.created,
        fit: Some(StoredFit::of(&kept)),
    };
    let mut batch = WriteBatch::new();
    batch.put_computed_trait(
        &def.name,
        serde_json::to_vec(&stored).map_err(|e| internal!("computed trait: {e}"))?,
    );
    env.store.commit(batch)?;
    env.state
        .write()
        .definitions
        .insert_trait(Arc::new(TraitDefinition {
            name: def.name.clone(),
            expr: def.expr.clone(),
            created: def.created,
            fit: Some(kept),
            cache: def.cache.clone(),
        }));
    result
}

/// The listing of one computed trait.
pub(crate) fn info(defs: &Definitions, d: &TraitDefinition) -> ComputedTraitInfo {
    ComputedTraitInfo {
        name: d.name.clone(),
        expression: d.expr.to_string(),
        created: d.created,
        used_by: defs.trait_users(&d.name),
        model: d.fit.as_ref().map(|f| f.model.to_json()),
        refit_error: d.fit.as_ref().and_then(|f| f.last_error.clone()),
    }
}

/// Every computed trait, by name.
pub(crate) fn list(defs: &Definitions) -> Vec<ComputedTraitInfo> {
    defs.traits().map(|d| info(defs, d)).collect()
}

/// One computed trait, or [`Error::NotFound`].
pub(crate) fn get(defs: &Definitions, name: &str) -> Result<ComputedTraitInfo> {
    defs.get_trait(name)
        .map(|d| info(defs, d))
        .ok_or_else(|| Error::NotFound(format!("computed trait {name:?}")))
}
