//! The query half of the handle: rules run against the read state and the store, by the query
//! engine (`crate::query`), which is handed both explicitly. Delegations only: no planning or
//! evaluation here.

use super::Db;
use crate::error::Result;
use crate::model::time::Timestamp;
use crate::query::{self, Audience, Explain, PreparedRule, Warning, Warnings, Why};

impl Db {
    /// Parses a rule once for [`Db::query_prepared`].
    pub fn prepare(&self, rule: &str) -> Result<PreparedRule> {
        PreparedRule::new(rule)
    }

    /// The customers `rule` describes at `now` (milliseconds UTC). A rule that does not parse is
    /// [`crate::Error::Rule`]; one that cannot be evaluated (an unknown audience) is
    /// [`crate::Error::Evaluation`].
    pub fn query(&self, rule: &str, now: Timestamp) -> Result<Audience> {
        self.query_prepared(&PreparedRule::new(rule)?, now)
    }

    /// `rule` at `now` as one SQL query over the tables of `export tables`, in `dialect`: it
    /// returns the members' ids, sorted (see [`crate::query::sql`]).
    pub fn sql(&self, rule: &str, dialect: query::sql::Dialect, now: Timestamp) -> Result<String> {
        let rule = PreparedRule::new(rule)?;
        query::sql::to_sql(&self.state.read(), &rule, dialect, now)
    }

    /// Runs a prepared rule at `now`.
    pub fn query_prepared(&self, rule: &PreparedRule, now: Timestamp) -> Result<Audience> {
        query::run(&self.state, &self.store, rule, now, Warnings::Listed)
    }

    /// [`Db::query_prepared`] without listing warnings, for callers that never show them: the
    /// upkeep of saved audiences (their rules were checked when saved) and the socket's `QUERY`
    /// (a client asks `CHECK` for them).
    pub(crate) fn query_quiet(&self, rule: &PreparedRule, now: Timestamp) -> Result<Audience> {
        query::run(&self.state, &self.store, rule, now, Warnings::Skipped)
    }

    /// What `rule` says that its writer probably did not mean, against what is stored now:
    /// unknown event, trait and property names, values no customer has, each with the nearest
    /// known name or value. Nothing is evaluated. A rule that does not parse is
    /// [`crate::Error::Rule`]; one that cannot be evaluated (an unknown audience, a name with two
    /// readings) is [`crate::Error::Evaluation`], as [`Db::query`] would answer.
    pub fn check(&self, rule: &str) -> Result<Vec<Warning>> {
        let prepared = PreparedRule::new(rule)?;
        query::check(&self.state.read(), &prepared)
    }

    /// The plan of a rule at `now`, with each node's estimated and exact size and its time.
    pub fn explain(&self, rule: &str, now: Timestamp) -> Result<Explain> {
        self.explain_prepared(&PreparedRule::new(rule)?, now)
    }

    /// [`Db::explain`] for a prepared rule.
    pub fn explain_prepared(&self, rule: &PreparedRule, now: Timestamp) -> Result<Explain> {
        query::explain(&self.state, &self.store, rule, now)
    }

    /// Whether one customer satisfies `rule` at `now`, clause by clause, with the trait values
    /// and events that decided each clause and the next instant the answer changes by time
    /// alone. An unknown customer is [`crate::Error::NotFound`].
    pub fn why(&self, customer: &str, rule: &str, now: Timestamp) -> Result<Why> {
        self.why_prepared(customer, &PreparedRule::new(rule)?, now)
    }

    /// [`Db::why`] for a prepared rule.
    pub fn why_prepared(&self, customer: &str, rule: &PreparedRule, now: Timestamp) -> Result<Why> {
        query::why(&self.state, &self.store, customer, rule, now)
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
        query::walk_member_ids(&self.state, &self.store, audience, None, |id| {
            f(id).map(|()| true)
        })
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
            query::walk_member_ids(&self.state, &self.store, audience, after, |id| {
                page.push(id.to_owned());
                Ok(page.len() < limit)
            })?;
        }
        Ok(page)
    }
}
