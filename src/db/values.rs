//! The values half of the handle: `top`, `recommend` and `recent` (`crate::query::values`), each
//! handed the read state and the store explicitly. Delegations only: no counting here.

use super::Db;
use crate::error::Result;
use crate::model::time::Timestamp;
use crate::query::values::{recent, recommend, top};
use crate::query::values::{RecentValue, Recommendation, Top, TopRequest};
use crate::query::Warning;

impl Db {
    /// The values of `request.property` of `request.event` that the customers matching
    /// `request.rule` at `now` did in the window, counted in distinct customers, ranked; see
    /// [`TopRequest`] and [`Top`]. A property without per-value bitmaps is
    /// [`crate::Error::NotIndexed`]; unknown names give warnings ([`Top::warnings`]).
    pub fn top(&self, request: &TopRequest, now: Timestamp) -> Result<Top> {
        let state = self.state.read();
        top::top(&state, &self.store, request, now)
    }

    /// Values to show one customer: the values of `property` of `event` that co-occur, in
    /// distinct customers within the window (`None`: `ever`), with the customer's own, scored
    /// as [`Recommendation`] says, best first, at most `limit`. A property without per-value
    /// bitmaps is [`crate::Error::NotIndexed`].
    pub fn recommend(
        &self,
        customer: &str,
        event: &str,
        property: &str,
        window: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Recommendation> {
        let state = self.state.read();
        recommend::recommend(
            &state,
            &self.store,
            customer,
            (event, property, window),
            limit,
            now,
        )
    }

    /// One customer's distinct values of `property` of `event` up to `now`, latest first, at
    /// most `limit`, with the unknown names' warnings. An unknown customer has none.
    pub fn recent(
        &self,
        customer: &str,
        event: &str,
        property: &str,
        limit: usize,
        now: Timestamp,
    ) -> Result<(Vec<RecentValue>, Vec<Warning>)> {
        let state = self.state.read();
        recent::recent(&state, &self.store, customer, event, property, limit, now)
    }
}
