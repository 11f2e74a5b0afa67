//! The saved-audience half of the handle: each method lends saved audiences (`crate::audience`)
//! the store and the read state, and, for a change, the writer's [`Upkeep`], which only the
//! holder of the writer lock can reach. Delegations only: members, timers and the feed are
//! `crate::audience`'s.

use super::write::Writer;
use super::Db;
use crate::audience::{
    self, AudienceDiff, AudienceInfo, AudienceNames, Change, ComputedTraitInfo, Env, Subscription,
    Touched,
};
use crate::error::Result;
use crate::model::time::Timestamp;
use crate::query::Audience;

impl Writer {
    /// Brings every saved audience to the clock's time and, with `touched`, up to date with a
    /// write that changed those customers.
    pub(super) fn maintain_audiences(
        &mut self,
        db: &Db,
        touched: Option<&Touched>,
    ) -> Result<usize> {
        db.audiences
            .maintain(&mut self.upkeep, &db.audience_env(), touched)
    }

    /// Refits the predictive traits whose event has grown by a tenth since their last fit.
    pub(super) fn refit_grown_traits(&mut self, db: &Db) -> Result<()> {
        db.audiences
            .refit_grown(&mut self.upkeep, &db.audience_env())
    }

    /// Removes deleted or merged-away customers from every saved audience, reported as exits.
    pub(super) fn forget_in_audiences(&mut self, db: &Db, customers: &[(u32, &str)]) -> Result<()> {
        db.audiences.forget(&mut self.upkeep, &db.store, customers)
    }
}

impl Db {
    /// What saved audiences work against: this database's store, read state and settings.
    pub(super) fn audience_env(&self) -> Env<'_> {
        Env {
            store: &self.store,
            state: &self.state,
            clock: &self.config.clock,
            bulk_from: self.config.audience_bulk_from,
            due_days_from: self.config.audience_due_days_from,
            write_days_from: self.config.audience_write_days_from,
        }
    }

    /// Saves an audience: `rule` under `name`, replacing the rule saved under that name if any.
    /// The rule is checked (it parses, every audience it names exists, no cycle) before
    /// anything changes. Its members are computed at the audiences' time and kept from then on;
    /// each entry and exit (against the old rule's members, or every member for a new name) goes
    /// to the change feed. Audiences that name this one are recomputed with it.
    pub fn define_audience(&self, name: &str, rule: &str) -> Result<AudienceInfo> {
        audience::check_name(name)?;
        let prepared = crate::query::PreparedRule::new(rule)?;
        let mut w = self.writer.lock();
        self.audiences
            .define(&mut w.upkeep, &self.audience_env(), name, prepared, None)
    }

    /// Loads a member list produced elsewhere (a warehouse's segment) as the audience `name`:
    /// the customers with these external ids (their own or one merged into them), now and as
    /// they arrive; an id of a deleted customer leaves the list with it. Usable in rules as `in
    /// audience NAME` and listed by `audiences_of`. Loading again under the same name replaces
    /// the ids (entries and exits in the feed; the audiences naming it follow). Refused, with
    /// nothing changed, for a name that holds a rule, for no ids, or for an id that is not a
    /// valid customer id.
    pub fn load_audience<I, S>(&self, name: &str, ids: I) -> Result<AudienceInfo>
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let ids = ids.into_iter().map(Into::into).collect();
        let mut w = self.writer.lock();
        self.audiences
            .load_list(&mut w.upkeep, &self.audience_env(), name, ids)
    }

    /// Drops a saved audience. Refused, with their names, while other audiences name it.
    /// Its members are not reported as leaving; its past changes stay in the feed.
    pub fn drop_audience(&self, name: &str) -> Result<()> {
        let mut w = self.writer.lock();
        self.audiences
            .drop_audience(&mut w.upkeep, &self.audience_env(), name)
    }

    /// Defines the computed trait `name` as `expression` (`purchased avg(amount) ever`): from
    /// then on `name` is a trait in every rule, its value derived from each customer's events
    /// at the rule's *now* (`docs/RULES.md`, "Computed traits"). Refused, with nothing changed
    /// ([`crate::Error::InvalidInput`], or [`crate::Error::Rule`] for an expression that does
    /// not parse), for a name already defined, stored by identify, an event's, or read as a
    /// trait by a saved audience, and for an aggregate of a property that is never a number.
    pub fn define_trait(&self, name: &str, expression: &str) -> Result<ComputedTraitInfo> {
        let mut w = self.writer.lock();
        self.audiences
            .define_trait(&mut w.upkeep, &self.audience_env(), name, expression)
    }

    /// Drops a computed trait. Refused, naming them, while saved audiences read it.
    pub fn drop_trait(&self, name: &str) -> Result<()> {
        let mut w = self.writer.lock();
        self.audiences
            .drop_trait(&mut w.upkeep, &self.audience_env(), name)
    }

    /// Fits the predictive computed trait `name` (`p_alive`, `expected count`, `clv`) again
    /// on its events up to the clock's *now*, and keeps the new fit. A fit that fails (too few
    /// repeat customers, ...) keeps the last good one, records why (`trait show` says it) and
    /// is [`crate::Error::InvalidInput`] saying so; a trait without a model is refused.
    pub fn refit_trait(&self, name: &str) -> Result<ComputedTraitInfo> {
        let mut w = self.writer.lock();
        self.audiences
            .refit_trait(&mut w.upkeep, &self.audience_env(), name)
    }

    /// Every computed trait, by name.
    pub fn computed_traits(&self) -> Vec<ComputedTraitInfo> {
        audience::computed_traits(&self.state.read().definitions)
    }

    /// One computed trait, or [`crate::Error::NotFound`].
    pub fn computed_trait(&self, name: &str) -> Result<ComputedTraitInfo> {
        audience::computed_trait(&self.state.read().definitions, name)
    }

    /// Every saved audience, by name.
    pub fn audiences(&self) -> Vec<AudienceInfo> {
        self.audiences.list(&self.state.read())
    }

    /// One saved audience, or [`crate::Error::NotFound`].
    pub fn audience(&self, name: &str) -> Result<AudienceInfo> {
        self.audiences.get(&self.state.read(), name)
    }

    /// A saved audience's members as kept (exact at the audiences' time).
    pub fn audience_members(&self, name: &str) -> Result<Audience> {
        self.audiences.members(&self.state.read(), name)
    }

    /// Who was in a saved audience at `at`: its rule evaluated at that *now* (traits are as
    /// they are today: the store keeps no history of them).
    pub fn audience_members_at(&self, name: &str, at: Timestamp) -> Result<Audience> {
        let rule = audience::saved_rule(&self.state.read(), name)?;
        self.query_quiet(&rule, at)
    }

    /// What saving `rule` under `name` would change, computed without saving anything: the
    /// size before and after, and who would enter and leave, at the audiences' time.
    pub fn diff_audience(&self, name: &str, rule: &str) -> Result<AudienceDiff> {
        self.audiences.diff(&self.audience_env(), name, rule)
    }

    /// The saved audiences a customer is in, by name (none for an unknown customer): the call
    /// a page makes to personalise itself. Answered from the kept members; the names are
    /// shared with the database's table of names, not copied (iterate for `&str`s, or
    /// [`AudienceNames::to_vec`] for owned strings).
    pub fn audiences_of(&self, customer: &str) -> Result<AudienceNames> {
        let cust = self.state.read().ids.get(customer);
        Ok(cust.map_or_else(AudienceNames::default, |c| self.audiences.of(c)))
    }

    /// [`Db::audiences_of`] by internal id.
    pub fn audiences_of_internal(&self, cust: u32) -> AudienceNames {
        self.audiences.of(cust)
    }

    /// The time saved audiences are exact at.
    pub fn audiences_as_of(&self) -> Timestamp {
        self.audiences.as_of()
    }

    /// Moves saved audiences to the clock's time: customers whose membership may have changed
    /// by time alone since are re-evaluated. Returns the number of entries and exits. Every
    /// write does this first; a server calls it on a timer.
    pub fn advance_audiences(&self) -> Result<usize> {
        self.writer.lock().maintain_audiences(self, None)
    }

    /// Listens to every entry and exit from now on.
    pub fn subscribe(&self) -> Subscription {
        self.audiences.subscribe()
    }

    /// Up to `limit` stored changes after position `after` (0: from the oldest kept), in order.
    /// A position older than the oldest kept change is an error: read the members afresh.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.audiences.changes_since(&self.store, after, limit)
    }

    /// How many subscriptions are live.
    pub fn subscriber_count(&self) -> usize {
        self.audiences.subscriber_count()
    }

    /// The position of the latest change (0 before any).
    pub fn feed_position(&self) -> u64 {
        self.audiences.feed_position()
    }
}
