//! Which saved audiences read what: each audience's footprint (computed once per change of the
//! definitions, not per write), and the audiences indexed by the event names and trait paths
//! their rules read, with `in audience` followed transitively. From a write's [`Touched`], the
//! audiences it can change and, for each, the customers to re-evaluate, at a cost that follows
//! what the write touched and how many audiences read it, not how many audiences are saved.
//!
//! Time-driven changes are not here: the timers (`timers.rs`) and the audiences' wake-up
//! instants (`mod.rs`) handle those. This module reads definitions and, once per build, asks the
//! query engine whether a customer with no data is in each audience; it keeps no members.

use std::collections::BTreeMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::model::FastMap;
use crate::query::footprint::Footprint;
use crate::query::subset::{self, Context};
use crate::query::{Definition, Definitions};
use crate::storage::Catalog;

use super::Touched;

/// One saved audience as maintenance needs it: its definition and what its rule reads.
#[derive(Debug, Clone)]
pub(super) struct Reader {
    pub def: Arc<Definition>,
    pub fp: Arc<Footprint>,
}

/// The saved audiences by what they read.
#[derive(Debug, Default)]
pub(super) struct Readers {
    /// Every saved audience, by id.
    pub by_id: BTreeMap<u32, Reader>,
    /// Event name → the audiences whose rules read that event, sorted.
    by_event: FastMap<String, Vec<u32>>,
    /// Trait path → the audiences whose rules read that trait, sorted.
    by_trait: FastMap<String, Vec<u32>>,
    /// The audiences a customer with no data at all is in (`not ...`, `everyone`, counts of
    /// zero): a new customer may enter these whatever its first write holds. Every other
    /// audience needs the new customer to have something its rule reads.
    empty_members: Vec<u32>,
    /// The audiences whose rules read the customer's ids (`bucket(NAME)`, loaded lists): a
    /// customer who gains an id, a new one included, may enter or leave them.
    id_readers: Vec<u32>,
}

impl Readers {
    /// Indexes `defs` (the read state's definitions). `cx` answers, at `now`, whether a
    /// customer with no data is in each audience; that answer does not move with time (no
    /// event, no trait: every window and relative time compares nothing).
    pub fn build(defs: &Definitions, cx: &Context<'_>, now: Timestamp) -> Result<Readers> {
        let mut r = Readers::default();
        for d in defs.iter() {
            let fp = Footprint::of(d.rule.rule(), defs);
            for e in &fp.events {
                r.by_event.entry(e.clone()).or_default().push(d.id);
            }
            for t in &fp.traits {
                r.by_trait.entry(t.clone()).or_default().push(d.id);
            }
            // A rule that reads the ids has no answer without one (`bucket(NAME)`); every
            // customer who gains an id, each new one included, is asked.
            if fp.ids {
                r.id_readers.push(d.id);
            } else if subset::holds_without_data(cx, d.rule.rule(), now)? {
                r.empty_members.push(d.id);
            }
            r.by_id.insert(
                d.id,
                Reader {
                    def: d.clone(),
                    fp: Arc::new(fp),
                },
            );
        }
        for ids in r.by_event.values_mut().chain(r.by_trait.values_mut()) {
            ids.sort_unstable();
            ids.dedup();
        }
        r.empty_members.sort_unstable();
        Ok(r)
    }

    /// Adds to `out`, for each audience the write can have changed, the customers whose answer
    /// it can have changed: those who got one of the rule's events or had one of its traits
    /// changed, new customers for audiences a customer with no data is in, customers who gained
    /// an id (new ones included) for audiences reading the ids, and customers in `all` for
    /// every audience.
    pub fn touched(&self, t: &Touched, catalog: &Catalog, out: &mut BTreeMap<u32, RoaringBitmap>) {
        if !t.all.is_empty() {
            for &id in self.by_id.keys() {
                *out.entry(id).or_default() |= &t.all;
            }
        }
        if !t.new.is_empty() {
            for &id in &self.empty_members {
                *out.entry(id).or_default() |= &t.new;
            }
        }
        if !t.ids.is_empty() {
            for &id in &self.id_readers {
                *out.entry(id).or_default() |= &t.ids;
            }
        }
        let mut add = |ids: Option<&Vec<u32>>, custs: &RoaringBitmap| {
            for &id in ids.into_iter().flatten() {
                *out.entry(id).or_default() |= custs;
            }
        };
        for (&e, custs) in &t.events {
            add(self.by_event.get(catalog.event_name(e)), custs);
        }
        for (&tr, custs) in &t.traits {
            add(self.by_trait.get(catalog.trait_name(tr)), custs);
        }
    }
}
