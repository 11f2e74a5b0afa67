//! The query engine: a parsed rule becomes the set of customers it describes at one *now*.
//!
//! Work flows through three steps, one module each:
//! 1. `plan`: the AST is resolved against the catalog (names to interned ids) and turned into a
//!    tree of bitmap operations. Every node knows two sets: customers who surely match and
//!    customers who may match. Conditions the bitmaps answer exactly (trait equality, `is set`,
//!    presence on whole days of a window) have equal sets; the rest (ranges, counts, aggregates,
//!    partial days at a window's edge) leave a gap between them.
//! 2. `exec`: the bounds are computed from the indexes, smallest operands first; the customers in
//!    the gap are checked one by one against their stored profile and events, in parallel.
//! 3. `customer`: the exact meaning of every construct for one customer (the residual check, and
//!    what `why` reports).
//!
//! This module reads the indexes and storage through [`Db`]; it never writes.

mod bounds;
mod check;
mod customer;
mod exec;
mod explain;
pub(crate) mod footprint;
pub(crate) mod plan;
pub(crate) mod reading;
mod rollups;
pub(crate) mod subset;
pub mod values;
mod why;

pub use check::Warning;
pub use explain::{Explain, ExplainNode};
pub use reading::Reading;
pub use values::{Top, TopOrder, TopRequest, TopRow};
pub use why::{Why, WhyEvent, WhyNode, EVIDENCE_EVENTS};

use std::time::{Duration, Instant};

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::model::time::Timestamp;
use crate::rules::{self, Rule};
use crate::Db;

/// Whether an evaluation lists the rule's warnings.
#[derive(Clone, Copy)]
enum Warnings {
    Listed,
    Skipped,
}

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
    ) -> Result<PreparedRule> {
        let pinned = reading::pin(&self.rule, catalog, indexes)?;
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

impl Db {
    /// Parses a rule once for [`Db::query_prepared`].
    pub fn prepare(&self, rule: &str) -> Result<PreparedRule> {
        PreparedRule::new(rule)
    }

    /// The customers `rule` describes at `now` (milliseconds UTC). A rule that does not parse is
    /// [`Error::Rule`]; one that cannot be evaluated (an unknown audience) is
    /// [`Error::Evaluation`].
    pub fn query(&self, rule: &str, now: Timestamp) -> Result<Audience> {
        self.query_prepared(&PreparedRule::new(rule)?, now)
    }

    /// Runs a prepared rule at `now`.
    pub fn query_prepared(&self, rule: &PreparedRule, now: Timestamp) -> Result<Audience> {
        self.run(rule, now, Warnings::Listed)
    }

    /// [`Db::query_prepared`] without listing warnings, for callers that never show them: the
    /// upkeep of saved audiences (their rules were checked when saved) and the socket's `QUERY`
    /// (a client asks `CHECK` for them).
    pub(crate) fn query_quiet(&self, rule: &PreparedRule, now: Timestamp) -> Result<Audience> {
        self.run(rule, now, Warnings::Skipped)
    }

    fn run(&self, rule: &PreparedRule, now: Timestamp, warn: Warnings) -> Result<Audience> {
        let started = Instant::now();
        let (plan, bounds, warnings) = self.plan_and_bounds(rule, now, warn)?;
        let members = exec::resolve(&plan, &bounds, self.store())?;
        Ok(Audience {
            members,
            now,
            elapsed: started.elapsed(),
            warnings,
        })
    }

    /// What `rule` says that its writer probably did not mean, against what is stored now:
    /// unknown event, trait and property names, values no customer has, each with the nearest
    /// known name or value. Nothing is evaluated. A rule that does not parse is
    /// [`Error::Rule`]; one that cannot be evaluated (an unknown audience, a name with two
    /// readings) is [`Error::Evaluation`], as [`Db::query`] would answer.
    pub fn check(&self, rule: &str) -> Result<Vec<Warning>> {
        let prepared = PreparedRule::new(rule)?;
        let state = self.read();
        plan::plan(
            &prepared.rule,
            &state.catalog,
            &state.indexes,
            &state.definitions,
            crate::model::time::now(),
        )?;
        Ok(check::warnings(
            &prepared.rule,
            &state.catalog,
            &state.indexes,
        ))
    }

    /// The plan of a rule at `now`, with each node's estimated and exact size and its time.
    pub fn explain(&self, rule: &str, now: Timestamp) -> Result<Explain> {
        self.explain_prepared(&PreparedRule::new(rule)?, now)
    }

    /// [`Db::explain`] for a prepared rule.
    pub fn explain_prepared(&self, rule: &PreparedRule, now: Timestamp) -> Result<Explain> {
        let (plan, bounds, warnings) = self.plan_and_bounds(rule, now, Warnings::Listed)?;
        let mut explained = explain::explain(&rule.text, &plan, &bounds, self.store())?;
        explained.warnings = warnings;
        Ok(explained)
    }

    /// A rule's plan at `now`, its bounds from the indexes and its warnings, read under one
    /// read guard.
    fn plan_and_bounds(
        &self,
        rule: &PreparedRule,
        now: Timestamp,
        warn: Warnings,
    ) -> Result<(plan::Plan, exec::Bounds, Vec<Warning>)> {
        let state = self.read();
        let plan = plan::plan(
            &rule.rule,
            &state.catalog,
            &state.indexes,
            &state.definitions,
            now,
        )?;
        let sources = exec::Sources {
            indexes: &state.indexes,
            catalog: &state.catalog,
        };
        let bounds = sources.bounds(&plan.root);
        let warnings = match warn {
            Warnings::Listed => check::warnings(&rule.rule, &state.catalog, &state.indexes),
            Warnings::Skipped => Vec::new(),
        };
        Ok((plan, bounds, warnings))
    }

    /// Whether one customer satisfies `rule` at `now`, clause by clause, with the trait values
    /// and events that decided each clause and the next instant the answer changes by time
    /// alone. An unknown customer is [`Error::NotFound`].
    pub fn why(&self, customer: &str, rule: &str, now: Timestamp) -> Result<Why> {
        self.why_prepared(customer, &PreparedRule::new(rule)?, now)
    }

    /// [`Db::why`] for a prepared rule.
    pub fn why_prepared(&self, customer: &str, rule: &PreparedRule, now: Timestamp) -> Result<Why> {
        let cust = self
            .internal_id(customer)?
            .ok_or_else(|| Error::NotFound(format!("customer {customer:?}")))?;
        let state = self.read();
        why::why(
            self.store(),
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

    /// The members' external ids in byte order of the ids.
    pub fn member_ids(&self, audience: &Audience) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(audience.len() as usize);
        self.for_each_member_id(audience, |id| {
            ids.push(id.to_owned());
            Ok(())
        })?;
        Ok(ids)
    }

    /// Calls `f` with each member's external id, in byte order of the ids, without holding them
    /// all: large audiences are streamed from the id map, which storage keeps in that order.
    pub fn for_each_member_id(
        &self,
        audience: &Audience,
        mut f: impl FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        self.walk_member_ids(audience, None, |id| f(id).map(|()| true))
    }

    /// A page of members: at most `limit` external ids after `after` (from the first without
    /// it), in byte order. Pass the last id of a page as `after` to get the next.
    pub fn member_page(
        &self,
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut page = Vec::with_capacity(limit.min(4096));
        if limit > 0 {
            self.walk_member_ids(audience, after, |id| {
                page.push(id.to_owned());
                Ok(page.len() < limit)
            })?;
        }
        Ok(page)
    }

    /// Calls `f` with the members' external ids after `after`, in order, until it returns false.
    fn walk_member_ids(
        &self,
        audience: &Audience,
        after: Option<&str>,
        mut f: impl FnMut(&str) -> Result<bool>,
    ) -> Result<()> {
        let members = audience.bitmap();
        let everyone = self.read().indexes.everyone.len();
        if members.len().saturating_mul(16) < everyone {
            // Few members: look each up and sort.
            let mut ids = Vec::with_capacity(members.len() as usize);
            {
                let state = self.read();
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
        for item in self.store().ids_after(after) {
            let (id, cust) = item?;
            if members.contains(cust) && !f(&id)? {
                break;
            }
        }
        Ok(())
    }
}
