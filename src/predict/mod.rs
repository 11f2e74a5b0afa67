//! Predictions of repeat purchasing: the BG/NBD model of how often and how long customers keep
//! buying (`bgnbd`) and the Gamma–Gamma model of how much they spend per purchase
//! (`gamma_gamma`), each fitted by maximum likelihood (`optimise`) to per-customer purchase
//! histories ([`History`]).
//!
//! Pure numbers: this layer owns the models' formulas, their fitting and the checks that a fit
//! is possible. It reads no store and knows no rule; turning stored events into histories is the
//! query layer's (`query::histories`); only the error type and time formatting are imported.

mod bgnbd;
mod gamma_gamma;
mod optimise;

pub use bgnbd::BgNbd;
pub use gamma_gamma::GammaGamma;

/// One customer's purchase history as the models read it, counted in whole UTC days and
/// expressed in the fit's time unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    /// Repeat purchases: the number of distinct days with a purchase after the first such day.
    pub frequency: u32,
    /// From the first purchase day to the last, in time units (0 without repeat purchases).
    pub recency: f64,
    /// From the first purchase day to the day of *now*, in time units.
    pub age: f64,
    /// The mean of the repeat days' values (each day's values summed; the first day left
    /// out); 0 without repeat purchases or values.
    pub monetary: f64,
}

/// The time unit the models count in. Fitted parameters depend on it (the BG/NBD `alpha` is in
/// it); predictions do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Days,
    Weeks,
}

impl TimeUnit {
    /// Days in one unit.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Days => 1.0,
            TimeUnit::Weeks => 7.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Days => "days",
            TimeUnit::Weeks => "weeks",
        }
    }

    /// `days` or `weeks` (singular too); anything else is `None`.
    pub fn parse(text: &str) -> Option<TimeUnit> {
        match text.trim().to_ascii_lowercase().as_str() {
            "day" | "days" => Some(TimeUnit::Days),
            "week" | "weeks" => Some(TimeUnit::Weeks),
            _ => None,
        }
    }
}

/// Customers with at least one repeat purchase that a fit needs, at least: with fewer, the
/// likelihood is too flat for the parameters to mean anything.
pub const MIN_REPEAT_CUSTOMERS: usize = 20;

/// The histories with equal (frequency, recency, age) counted once each: the BG/NBD likelihood
/// depends on nothing else, and real data repeats those triples many times.
pub(crate) fn grouped(histories: &[History]) -> Vec<(History, f64)> {
    let mut keys: Vec<(u32, u64, u64)> = histories
        .iter()
        .map(|h| (h.frequency, h.recency.to_bits(), h.age.to_bits()))
        .collect();
    keys.sort_unstable();
    let mut out: Vec<(History, f64)> = Vec::new();
    for (frequency, recency, age) in keys {
        match out.last_mut() {
            Some((h, w))
                if h.frequency == frequency
                    && h.recency.to_bits() == recency
                    && h.age.to_bits() == age =>
            {
                *w += 1.0
            }
            _ => out.push((
                History {
                    frequency,
                    recency: f64::from_bits(recency),
                    age: f64::from_bits(age),
                    monetary: 0.0,
                },
                1.0,
            )),
        }
    }
    out
}

/// `ln Γ(x)` for x > 0.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// `ln(e^a + e^b)` without overflow.
pub(crate) fn log_sum_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// A fitted purchase model: BG/NBD for how often customers buy and whether they are still
/// buying, and, when the purchases carry a value, Gamma–Gamma for how much.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseModel {
    pub bgnbd: BgNbd,
    /// `None` when no value property was given.
    pub gamma_gamma: Option<GammaGamma>,
    pub unit: TimeUnit,
    /// Customers fitted (every customer with a purchase up to `fitted_at`).
    pub customers: u64,
    /// Of them, customers with a repeat purchase.
    pub repeat_customers: u64,
    /// The BG/NBD log-likelihood of the fitted parameters.
    pub log_likelihood: f64,
    /// The *now* the histories were read at (milliseconds UTC).
    pub fitted_at: i64,
}

impl PurchaseModel {
    /// Fits BG/NBD to the histories and, if `with_spend`, Gamma–Gamma to their values.
    pub fn fit(
        histories: &[History],
        unit: TimeUnit,
        with_spend: bool,
        fitted_at: i64,
    ) -> crate::error::Result<PurchaseModel> {
        let bgnbd = BgNbd::fit(histories)?;
        let gamma_gamma = with_spend.then(|| GammaGamma::fit(histories)).transpose()?;
        Ok(PurchaseModel {
            log_likelihood: bgnbd.log_likelihood(histories),
            bgnbd,
            gamma_gamma,
            unit,
            customers: histories.len() as u64,
            repeat_customers: histories.iter().filter(|h| h.frequency > 0).count() as u64,
            fitted_at,
        })
    }

    /// The expected value of purchases in the next `t` time units: the expected count times
    /// the expected value of one purchase (`None` without a spend model).
    pub fn expected_spend(&self, h: &History, t: f64) -> Option<f64> {
        let gg = self.gamma_gamma?;
        Some(self.bgnbd.expected_count(h, t) * gg.expected_value(h))
    }

    /// `{"r", "alpha", "a", "b", "p", "q", "v", "time_unit", "customers", "repeat_customers",
    /// "log_likelihood", "fitted_at"}` (`p`, `q`, `v` null without a spend model; `fitted_at`
    /// in RFC 3339).
    pub fn to_json(&self) -> serde_json::Value {
        let gg = self.gamma_gamma;
        serde_json::json!({
            "r": self.bgnbd.r,
            "alpha": self.bgnbd.alpha,
            "a": self.bgnbd.a,
            "b": self.bgnbd.b,
            "p": gg.map(|g| g.p),
            "q": gg.map(|g| g.q),
            "v": gg.map(|g| g.v),
            "time_unit": self.unit.name(),
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
            "log_likelihood": self.log_likelihood,
            "fitted_at": crate::model::time::format_rfc3339(self.fitted_at),
        })
    }
}
