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
use crate::rules::Rule;
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

/// A saved audience's definition.
#[derive(Debug)]
pub(crate) struct Definition {
    pub id: u32,
    pub name: String,
    pub rule: PreparedRule,
    pub created: Timestamp,
    pub changed: Timestamp,
}

/// Every saved audience's definition, by name: part of the read state.
#[derive(Debug, Default, Clone)]
pub(crate) struct Definitions {
    by_name: BTreeMap<String, Arc<Definition>>,
}

impl SavedRules for Definitions {
    fn saved_rule(&self, name: &str) -> Option<&Rule> {
        self.by_name.get(name).map(|d| d.rule.rule())
    }

    fn saved_names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

impl Definitions {
    pub(crate) fn insert(&mut self, d: Arc<Definition>) {
        self.by_name.insert(d.name.clone(), d);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
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
