//! The Gamma–Gamma model of spend per purchase (Fader and Hardie, 2013, after Colombo and
//! Jiang): a customer's purchase values are Gamma(p, nu) around their own mean, and nu is
//! Gamma(q, v) across customers. Fitted by maximum likelihood to the repeat customers' number of
//! repeat purchases and mean repeat value; it gives each customer's expected value of a purchase.

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::optimise::minimise;
use super::{ln_gamma, History, MIN_REPEAT_CUSTOMERS};

/// Fitted Gamma–Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

const LOG_BOUND: f64 = 15.0;

/// A repeat customer as the likelihood reads them, with the logarithms that do not depend on
/// the parameters worked out once.
struct Spender {
    x: f64,
    m: f64,
    ln_x: f64,
    ln_m: f64,
}

impl GammaGamma {
    /// The parameters of greatest likelihood for the histories' repeat customers with a
    /// positive mean value (the others tell the model nothing). Too few of them, or no finite
    /// maximum, is [`Error::InvalidInput`] saying so.
    pub fn fit(histories: &[History]) -> Result<GammaGamma> {
        let spenders: Vec<Spender> = histories
            .iter()
            .filter(|h| h.frequency > 0 && h.monetary > 0.0 && h.monetary.is_finite())
            .map(|h| {
                let x = f64::from(h.frequency);
                Spender {
                    x,
                    m: h.monetary,
                    ln_x: x.ln(),
                    ln_m: h.monetary.ln(),
                }
            })
            .collect();
        if spenders.len() < MIN_REPEAT_CUSTOMERS {
            return Err(Error::InvalidInput(format!(
                "the spend model needs at least {MIN_REPEAT_CUSTOMERS} customers with a repeat \
                 purchase of positive value to be fitted; there are {}",
                spenders.len()
            )));
        }
        let n = spenders.len() as f64;
        let objective = |l: &[f64]| {
            if l.iter().any(|v| v.abs() > LOG_BOUND) {
                return f64::INFINITY;
            }
            let (p, q, v) = (l[0].exp(), l[1].exp(), l[2].exp());
            let (ln_gamma_q, ln_v) = (ln_gamma(q), v.ln());
            let total: f64 = spenders
                .par_chunks(4096)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|s| {
                            let px = p * s.x;
                            ln_gamma(px + q) - ln_gamma(px) - ln_gamma_q
                                + q * ln_v
                                + (px - 1.0) * s.ln_m
                                + px * s.ln_x
                                - (px + q) * (s.x * s.m + v).ln()
                        })
                        .sum::<f64>()
                })
                .sum();
            -total / n
        };
        let best = minimise(objective, &[0.0; 3], 1.0);
        let model = GammaGamma {
            p: best.x[0].exp(),
            q: best.x[1].exp(),
            v: best.x[2].exp(),
        };
        let at_bound = best.x.iter().any(|v| v.abs() >= LOG_BOUND - 1e-6);
        if !best.value.is_finite() || at_bound || model.q <= 1.0 {
            return Err(Error::InvalidInput(format!(
                "the spend model could not be fitted to these {} customers (p {:.3e}, q {:.3e}, \
                 v {:.3e}; q must be over 1 for a mean spend to exist)",
                spenders.len(),
                model.p,
                model.q,
                model.v
            )));
        }
        Ok(model)
    }

    /// The expected value of one of the customer's purchases: the population mean
    /// `p v / (q - 1)` weighted against their own mean repeat value by how many repeat
    /// purchases they have.
    pub fn expected_value(&self, h: &History) -> f64 {
        let GammaGamma { p, q, v } = *self;
        let x = f64::from(h.frequency);
        let population = p * v / (q - 1.0);
        if h.frequency == 0 {
            return population;
        }
        let weight = p * x / (p * x + q - 1.0);
        (1.0 - weight) * population + weight * h.monetary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_without_repeats_is_expected_to_spend_the_population_mean() {
        let m = GammaGamma {
            p: 6.25,
            q: 3.74,
            v: 15.44,
        };
        let none = History {
            frequency: 0,
            recency: 0.0,
            age: 10.0,
            monetary: 0.0,
        };
        let want = 6.25 * 15.44 / 2.74;
        assert!((m.expected_value(&none) - want).abs() < 1e-12);
        // Many repeat purchases pull the estimate towards the customer's own mean.
        let loyal = History {
            frequency: 200,
            monetary: 100.0,
            ..none
        };
        assert!((m.expected_value(&loyal) - 100.0).abs() < 1.0);
    }
}
