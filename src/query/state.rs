//! The read state: what a query reads besides the stored records, and what the writer changes
//! only after a change is durable: the catalog of names, the indexes, the id map, and the saved
//! audiences' rules (for `in audience NAME`). The database handle keeps it behind a read-write
//! lock and hands it to the query engine and to saved audiences explicitly.
//!
//! Owns no records: saved audiences store and load the definitions, the writer fills the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::footprint::Footprint;
use super::plan::SavedRules;
use super::PreparedRule;
use crate::index::Indexes;
use crate::model::time::Timestamp;
use crate::model::FastSet;
use crate::rules::{Computed, Rule};
use crate::storage::{Catalog, IdMap};

/// What readers see: names and statistics, the indexes, the ids and the saved rules. Changed
/// only by the writer, after the change is durable.
pub struct ReadState {
    pub catalog: Catalog,
    pub indexes: Indexes,
    /// Every customer's external and internal id, both ways.
    pub ids: IdMap,
    /// Saved audiences' rules, for `in audience`.
    pub(crate) definitions: Definitions,
}

impl ReadState {
    /// `rule` planned at `now` against this state's catalog, indexes and saved definitions.
    pub(crate) fn plan(
        &self,
        rule: &Rule,
        now: Timestamp,
    ) -> crate::error::Result<super::plan::Plan> {
        super::plan::plan(rule, &self.catalog, &self.indexes, &self.definitions, now)
    }
}

/// A saved audience's definition.
#[derive(Debug)]
pub(crate) struct Definition {
    pub id: u32,
    pub name: String,
    /// The rule; for a loaded list, `in audience NAME` itself, which plans to the list.
    pub rule: PreparedRule,
    /// A member list loaded from elsewhere (`audience load`), instead of a rule of its own.
    pub list: Option<Arc<LoadedList>>,
    pub created: Timestamp,
    pub changed: Timestamp,
}

/// Every saved audience's definition, by name: part of the read state.
#[derive(Debug, Default, Clone)]
pub(crate) struct Definitions {
    by_name: BTreeMap<String, Arc<Definition>>,
    /// Computed traits, by name.
    traits: BTreeMap<String, Arc<TraitDefinition>>,
}

/// A computed trait's definition: a name that reads, in every rule, as the value its
/// expression derives from the customer's events at the rule's *now*.
#[derive(Debug)]
pub(crate) struct TraitDefinition {
    pub name: String,
    /// The expression, parsed; printed canonically when listed.
    pub expr: Computed,
    pub created: Timestamp,
    /// For `p_alive`, `expected count` and `clv`: the kept fit and its bookkeeping.
    pub fit: Option<KeptFit>,
    /// Their customers' histories, kept between rules (`super::predictive`).
    pub cache: Arc<super::HistoryCache>,
}

/// The purchase model a predictive computed trait keeps (`audience::traits` fits and stores
/// it; rules only read it).
#[derive(Debug, Clone)]
pub(crate) struct KeptFit {
    /// The last good fit.
    pub model: Arc<crate::predict::PurchaseModel>,
    /// Stored events of the expression's event when that fit was made.
    pub events_at_fit: u64,
    /// Stored events of the event at the last attempt to refit, good or not.
    pub events_at_try: u64,
    /// Why the last attempt to refit failed, if it did (the fit above is kept).
    pub last_error: Option<String>,
}

/// A member list produced elsewhere (a warehouse's segment) and loaded under a name: the
/// external ids as loaded, and the customers they name today. A customer is in the list when
/// any of its ids (its own or one merged into it) is; an id no customer has yet joins the
/// members when that customer arrives. The members are a function of the ids and the id map:
/// the writer keeps them following the id map ([`Definitions::follow_ids`]), and they are
/// resolved again at every open.
#[derive(Debug)]
pub(crate) struct LoadedList {
    ids: FastSet<Box<str>>,
    members: parking_lot::RwLock<Arc<roaring::RoaringBitmap>>,
}

impl LoadedList {
    /// The list of `ids` (deduplicated), resolved against `map`.
    pub(crate) fn new(ids: FastSet<Box<str>>, map: &IdMap) -> LoadedList {
        let members = ids.iter().filter_map(|id| map.get(id)).collect();
        LoadedList {
            ids,
            members: parking_lot::RwLock::new(Arc::new(members)),
        }
    }

    /// This list without `ids` (a deleted customer's), or `None` when it holds none of them.
    /// The members stay as they are: the id map's change removes the customer from them.
    pub(crate) fn without(&self, ids: &[&str]) -> Option<LoadedList> {
        if !ids.iter().any(|id| self.ids.contains(*id)) {
            return None;
        }
        let mut kept = self.ids.clone();
        for id in ids {
            kept.remove(*id);
        }
        Some(LoadedList {
            ids: kept,
            members: parking_lot::RwLock::new(self.members()),
        })
    }

    /// The external ids as loaded.
    pub(crate) fn ids(&self) -> &FastSet<Box<str>> {
        &self.ids
    }

    /// The customers named by the list today.
    pub(crate) fn members(&self) -> Arc<roaring::RoaringBitmap> {
        self.members.read().clone()
    }

    fn update(&self, f: impl FnOnce(&mut roaring::RoaringBitmap)) {
        let mut m = self.members.write();
        f(Arc::make_mut(&mut m));
    }
}

impl SavedRules for Definitions {
    fn saved_rule(&self, name: &str) -> Option<&Rule> {
        self.by_name.get(name).map(|d| d.rule.rule())
    }

    fn saved_list(&self, name: &str) -> Option<Arc<roaring::RoaringBitmap>> {
        self.by_name
            .get(name)
            .and_then(|d| d.list.as_ref())
            .map(|l| l.members())
    }

    fn saved_names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    fn computed_trait(&self, name: &str) -> Option<&Computed> {
        self.traits.get(name).map(|d| &d.expr)
    }

    fn computed_model(
        &self,
        name: &str,
    ) -> Option<(Arc<crate::predict::PurchaseModel>, Arc<super::HistoryCache>)> {
        let d = self.traits.get(name)?;
        Some((d.fit.as_ref()?.model.clone(), d.cache.clone()))
    }
}

impl Definitions {
    pub(crate) fn insert(&mut self, d: Arc<Definition>) {
        self.by_name.insert(d.name.clone(), d);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    pub(crate) fn insert_trait(&mut self, d: Arc<TraitDefinition>) {
        self.traits.insert(d.name.clone(), d);
    }

    pub(crate) fn remove_trait(&mut self, name: &str) {
        self.traits.remove(name);
    }

    pub(crate) fn get_trait(&self, name: &str) -> Option<&Arc<TraitDefinition>> {
        self.traits.get(name)
    }

    /// Every computed trait, by name.
    pub(crate) fn traits(&self) -> impl Iterator<Item = &Arc<TraitDefinition>> {
        self.traits.values()
    }

    /// The saved audiences whose rules read the computed trait `name` (directly or through
    /// the audiences they name).
    pub(crate) fn trait_users(&self, name: &str) -> Vec<String> {
        self.by_name
            .values()
            .filter(|d| Footprint::of(d.rule.rule(), self).computed.contains(name))
            .map(|d| d.name.clone())
            .collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Definition>> {
        self.by_name.get(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Definition>> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether any saved audience is a loaded list.
    pub(crate) fn has_lists(&self) -> bool {
        self.by_name.values().any(|d| d.list.is_some())
    }

    /// Keeps the loaded lists' members following the id map after a write changed it:
    /// `removed` customers (deleted or merged away) leave every list, and each `(external,
    /// customer)` that now resolves (a new customer's id, an id merged into a customer) puts
    /// the customer in the lists holding that id.
    pub(crate) fn follow_ids<'a>(
        &self,
        removed: &roaring::RoaringBitmap,
        resolved: impl IntoIterator<Item = (&'a str, u32)> + Clone,
    ) {
        for list in self.by_name.values().filter_map(|d| d.list.as_ref()) {
            let gone = !removed.is_empty() && !removed.is_disjoint(&list.members());
            let joined: Vec<u32> = resolved
                .clone()
                .into_iter()
                .filter(|(external, _)| list.ids.contains(*external))
                .map(|(_, c)| c)
                .collect();
            if gone || !joined.is_empty() {
                list.update(|m| {
                    *m -= removed;
                    m.extend(joined);
                });
            }
        }
    }

    /// The other audiences whose rules name `name`, directly or through others.
    pub(crate) fn dependents(&self, name: &str) -> Vec<String> {
        self.by_name
            .values()
            .filter(|d| {
                d.name != name && Footprint::of(d.rule.rule(), self).audiences.contains(name)
            })
            .map(|d| d.name.clone())
            .collect()
    }
}
