//! The query engine: a parsed rule becomes the set of customers it describes at one *now*.
//!
//! Work flows through three steps, one module each:
//! 1. `plan`: the AST is resolved against the catalog (names to interned ids) and turned into a
//!    tree of bitmap operations. Every node knows two sets: customers who surely match and
//!    customers who may match. Conditions the bitmaps answer exactly (trait equality, `is set`,
//!    trait orderings, presence on whole days of a window) have equal sets; the rest (counts, aggregates,
//!    partial days at a window's edge) leave a gap between them.
//! 2. `exec`: the bounds are computed from the indexes, smallest operands first; the customers in
//!    the gap are checked one by one against their stored profile and events, in parallel.
//! 3. `customer`: the exact meaning of every construct for one customer (the residual check, and
//!    what `why` reports).
//!
//! `run.rs` holds the entry points: each takes the read state (`state.rs`: catalog, indexes, ids,
//! saved rules) and the store explicitly, as the database handle passes them. This module reads
//! the indexes and storage and never writes; it does not know the database handle.

mod bounds;
mod check;
mod columns;
mod computed;
mod customer;
mod days;
pub(crate) mod due;
pub(crate) mod exec;
mod explain;
mod figures;
pub(crate) mod footprint;
pub mod histories;
mod kept;
pub(crate) mod plan;
mod predictive;
pub(crate) use predictive::HistoryCache;
mod ranges;
pub(crate) mod reading;
pub mod reports;
mod rollups;
mod run;
pub(crate) mod settle;
pub mod sql;
pub(crate) mod state;
pub(crate) mod subset;
mod texts;
mod totals;
pub mod values;
mod why;

pub use check::Warning;
pub use explain::{Explain, ExplainNode};
pub use reading::Reading;
pub use values::{Top, TopOrder, TopRequest, TopRow};
pub use why::{Why, WhyEvent, WhyNode, EVIDENCE_EVENTS};

pub(crate) use run::{check, computed_values, explain, run, walk_member_ids, why, Warnings};
pub(crate) use state::{Definition, Definitions, KeptFit, LoadedList, ReadState, TraitDefinition};

use std::time::Duration;

use roaring::RoaringBitmap;

use crate::error::Result;
use crate::model::time::Timestamp;
use crate::rules::{self, Rule};

/// A rule parsed once, to run many times at different *now*s.
#[derive(Debug, Clone)]
pub struct PreparedRule {
    text: String,
    rule: Rule,
}

impl PreparedRule {
    /// Parses `text`; a bad rule is [`crate::Error::Rule`].
    pub fn new(text: &str) -> Result<PreparedRule> {
        Ok(PreparedRule {
            text: text.to_owned(),
            rule: rules::parse(text)?,
        })
    }

    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The rule with each `NAME between A and B` written as the reading it has in this store
    /// (see [`reading::pin`]); the rule as written when it has none.
    pub(crate) fn pinned(
        self,
        catalog: &crate::storage::Catalog,
        indexes: &crate::index::Indexes,
        saved: &dyn plan::SavedRules,
    ) -> Result<PreparedRule> {
        let pinned = reading::pin(&self.rule, catalog, indexes, saved)?;
        if pinned == self.rule {
            return Ok(self);
        }
        PreparedRule::new(&rules::print(&pinned))
    }
}

/// The customers a rule describes at one *now*, as internal ids.
#[derive(Debug, Clone)]
pub struct Audience {
    members: RoaringBitmap,
    now: Timestamp,
    elapsed: Duration,
    warnings: Vec<Warning>,
}

impl Audience {
    pub(crate) fn new(members: RoaringBitmap, now: Timestamp, elapsed: Duration) -> Audience {
        Audience {
            members,
            now,
            elapsed,
            warnings: Vec::new(),
        }
    }

    /// The number of members.
    pub fn len(&self) -> u64 {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members' internal ids.
    pub fn bitmap(&self) -> &RoaringBitmap {
        &self.members
    }

    /// Takes the members' internal ids.
    pub fn into_bitmap(self) -> RoaringBitmap {
        self.members
    }

    /// The evaluation time the rule was run at.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// How long the evaluation took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// What the rule says that its writer probably did not mean (unknown names, values no
    /// customer has), each with the nearest known name or value. Empty for the kept members of
    /// a saved audience: those were checked when the audience was saved.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
}

/// How many customers one rayon task takes when many are read one by one: about eight tasks per
/// thread, each between 64 and 4,096 customers.
pub(crate) fn chunk_len(n: usize) -> usize {
    (n / (rayon::current_num_threads() * 8)).clamp(64, 4096)
}
