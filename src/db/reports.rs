//! The reports half of the handle: the funnel and the experiment (`crate::query::reports`), each
//! handed the read state and the store explicitly. Delegations only: no counting here.

use super::Db;
use crate::error::Result;
use crate::model::time::Timestamp;
use crate::query::reports::{experiment, funnel};
use crate::query::reports::{Experiment, ExperimentRequest, Funnel, FunnelRequest};

impl Db {
    /// How many customers (of `request.audience`, or everyone) reach each step of a funnel at
    /// `now`, with the conversion from the previous and the first step and the median time from
    /// the previous step; see [`FunnelRequest`] and [`Funnel`]. A step that is not a plain
    /// event condition, or a bad window or limit, is [`crate::Error::InvalidInput`].
    pub fn funnel(&self, request: &FunnelRequest, now: Timestamp) -> Result<Funnel> {
        let state = self.state.read();
        funnel::funnel(&state, &self.store, request, now)
    }

    /// The audience of `request` split by `bucket(NAME)` into its variants at `now`, each
    /// variant's customers meeting the goal, and each later variant compared with the first
    /// (difference, 95% interval, two-sided p-value); see [`ExperimentRequest`] and
    /// [`Experiment`].
    pub fn experiment(&self, request: &ExperimentRequest, now: Timestamp) -> Result<Experiment> {
        let state = self.state.read();
        experiment::experiment(&state, &self.store, request, now)
    }
}
