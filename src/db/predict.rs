//! The predictions half of the handle: purchase histories (`crate::query::histories`) and the
//! purchase model fitted to them (`crate::predict`). Delegations only: no counting or fitting
//! here.

use super::Db;
use crate::error::Result;
use crate::model::time::Timestamp;
use crate::predict::PurchaseModel;
use crate::query::histories::{self, CustomerHistories, HistoryRequest};

impl Db {
    /// Every customer's purchase history at `now` (see [`HistoryRequest`]): external id and
    /// [`crate::predict::History`], for every customer with a matching event up to `now`, in
    /// internal id order; and the warnings of the event condition's unknown names.
    pub fn purchase_histories(
        &self,
        request: &HistoryRequest,
        now: Timestamp,
    ) -> Result<CustomerHistories> {
        let state = self.state.read();
        let h = histories::histories(&state, &self.store, request, now)?;
        let histories = h
            .customers
            .iter()
            .zip(h.histories)
            .filter_map(|(&c, h)| Some((state.ids.external(c)?.to_owned(), h)))
            .collect();
        Ok(CustomerHistories {
            histories,
            warnings: h.warnings,
        })
    }

    /// The purchase model (BG/NBD, and Gamma–Gamma when `request.value` names the spend)
    /// fitted by maximum likelihood to every customer's history at `now`. Too few repeat
    /// customers, a value property that is not numeric, or a likelihood without a maximum is
    /// [`crate::Error::InvalidInput`] saying so.
    pub fn fit_purchases(&self, request: &HistoryRequest, now: Timestamp) -> Result<PurchaseModel> {
        let h = {
            let state = self.state.read();
            histories::histories(&state, &self.store, request, now)?
        };
        PurchaseModel::fit(&h.histories, request.unit, request.value.is_some(), now)
    }

    /// The purchase model of the predictive computed trait `name` fitted on its events up to
    /// `now`, without changing the kept fit (`trait show NAME --now T`). A trait without a
    /// model is refused; a fit that fails is [`crate::Error::InvalidInput`] saying why.
    pub fn fit_trait_at(&self, name: &str, now: Timestamp) -> Result<PurchaseModel> {
        let state = self.state.read();
        crate::audience::fit_trait(&state, &self.store, name, now)
    }
}
