//! Computed traits' definitions: checked, stored as JSON under their name (one record, so a
//! definition is there whole or not at all after a crash), loaded at open into the read state's
//! [`Definitions`], where rules find them, and dropped.
//!
//! A definition never changes once saved (define again after dropping), and cannot be dropped
//! while a saved audience reads it, so no saved audience's members ever depend on a definition
//! other than the one they were computed with. This module keeps no values: a computed trait's
//! value is derived when a rule reads it (`query::computed`, `query::customer`). It writes only
//! through `storage::WriteBatch`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Env, Upkeep};
use crate::error::{corrupt, internal, invalid, Error, Result};
use crate::model::time::Timestamp;
use crate::model::value::ValueType;
use crate::query::footprint::Footprint;
use crate::query::{Definitions, TraitDefinition};
use crate::rules::{self, Reducer};
use crate::storage::{Catalog, Store, WriteBatch};

/// The longest computed trait name.
pub const MAX_TRAIT_NAME_LEN: usize = 64;

/// A computed trait as listed and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComputedTraitInfo {
    pub name: String,
    /// The expression, canonical (`purchased avg(amount) ever`).
    pub expression: String,
    /// When it was defined.
    pub created: Timestamp,
    /// The saved audiences reading it.
    pub used_by: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredTrait {
    name: String,
    expression: String,
    created: Timestamp,
}

/// Adds every stored computed trait to `defs`.
pub(super) fn load(store: &Store, defs: &mut Definitions) -> Result<()> {
    for item in store.computed_trait_definitions() {
        let v = item?;
        let s: StoredTrait = serde_json::from_slice(&v)
            .map_err(|e| corrupt!("bad computed trait definition: {e}"))?;
        let expr = rules::parse_computed(&s.expression)
            .map_err(|e| corrupt!("computed trait {} no longer parses: {e}", s.name))?;
        defs.insert_trait(Arc::new(TraitDefinition {
            name: s.name,
            expr,
            created: s.created,
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
        let stored = StoredTrait {
            name: name.to_owned(),
            expression: expr.to_string(),
            created: now,
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
}

/// The listing of one computed trait.
pub(crate) fn info(defs: &Definitions, d: &TraitDefinition) -> ComputedTraitInfo {
    ComputedTraitInfo {
        name: d.name.clone(),
        expression: d.expr.to_string(),
        created: d.created,
        used_by: defs.trait_users(&d.name),
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
