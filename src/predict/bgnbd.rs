//! The BG/NBD model (Fader, Hardie and Lee, "Counting your customers the easy way", 2005): while
//! alive, a customer buys as a Poisson process whose rate is Gamma(r, alpha) across customers;
//! after each purchase they drop out with a probability that is Beta(a, b) across customers.
//! Its likelihood, its maximum-likelihood fit, the probability that a customer is still alive and
//! the expected number of purchases in a coming period, from a [`History`].

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::optimise::minimise;
use super::{grouped, ln_gamma, log_sum_exp, History, MIN_REPEAT_CUSTOMERS};

/// Fitted BG/NBD parameters (alpha in the fit's time unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// The parts of a customer's log-likelihood that depend only on the parameters and their
/// frequency `x`: `ln Γ(r+x) − ln Γ(r) + r ln alpha + ln Γ(a+b) + ln Γ(b+x) − ln Γ(b) −
/// ln Γ(a+b+x)`, and `ln a − ln(b+x−1)`.
#[derive(Debug, Clone, Copy)]
struct Terms {
    frequency: u32,
    head: f64,
    dropout: f64,
}

/// Parameters are searched as logarithms within these bounds (e^-15 to e^15).
const LOG_BOUND: f64 = 15.0;

impl BgNbd {
    /// The log-likelihood of one customer's (frequency, recency, age).
    pub fn log_likelihood_of(&self, h: &History) -> f64 {
        self.log_likelihood_with(h, &self.terms(h.frequency))
    }

    /// The terms of the log-likelihood that depend on the frequency alone (the log-gammas):
    /// the same for every customer with that many repeat purchases.
    fn terms(&self, frequency: u32) -> Terms {
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(frequency);
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        Terms {
            frequency,
            head: a1 + a2,
            dropout: a.ln() - (b + x - 1.0).ln(),
        }
    }

    /// The log-likelihood of `h` from its frequency's [`Terms`]: the same operations, in the
    /// same order, as without them.
    fn log_likelihood_with(&self, h: &History, t: &Terms) -> f64 {
        let x = f64::from(h.frequency);
        let a3 = -(self.r + x) * (self.alpha + h.age).ln();
        let a4 = if h.frequency > 0 {
            t.dropout - (self.r + x) * (self.alpha + h.recency).ln()
        } else {
            f64::NEG_INFINITY
        };
        t.head + log_sum_exp(a3, a4)
    }

    /// The log-likelihood of all the histories.
    pub fn log_likelihood(&self, histories: &[History]) -> f64 {
        histories.iter().map(|h| self.log_likelihood_of(h)).sum()
    }

    /// The weighted log-likelihood of histories grouped by frequency (as [`grouped`] sorts
    /// them): each frequency's log-gammas worked out once.
    fn grouped_log_likelihood(&self, groups: &[(History, f64)]) -> f64 {
        let mut terms: Option<Terms> = None;
        groups
            .iter()
            .map(|(h, w)| {
                let t = match terms {
                    Some(t) if t.frequency == h.frequency => t,
                    _ => *terms.insert(self.terms(h.frequency)),
                };
                w * self.log_likelihood_with(h, &t)
            })
            .sum()
    }

    /// The parameters of greatest likelihood for the histories. Fewer than
    /// [`MIN_REPEAT_CUSTOMERS`] customers with a repeat purchase, or a likelihood that does not
    /// reach a finite maximum, is [`Error::InvalidInput`] saying so.
    pub fn fit(histories: &[History]) -> Result<BgNbd> {
        let repeat = histories.iter().filter(|h| h.frequency > 0).count();
        if repeat < MIN_REPEAT_CUSTOMERS {
            return Err(Error::InvalidInput(format!(
                "the purchase model needs at least {MIN_REPEAT_CUSTOMERS} customers with a \
                 repeat purchase (a second day with the event) to be fitted; there are {repeat} \
                 of {} customers",
                histories.len()
            )));
        }
        let groups = grouped(histories);
        let n = histories.len() as f64;
        let objective = |p: &[f64]| {
            if p.iter().any(|v| v.abs() > LOG_BOUND) {
                return f64::INFINITY;
            }
            let model = BgNbd::from_logs(p);
            let total: f64 = groups
                .par_chunks(4096)
                .map(|chunk| model.grouped_log_likelihood(chunk))
                .sum();
            -total / n
        };
        let best = minimise(objective, &[0.0; 4], 1.0);
        let model = BgNbd::from_logs(&best.x);
        let at_bound = best.x.iter().any(|v| v.abs() >= LOG_BOUND - 1e-6);
        if !best.value.is_finite() || at_bound {
            return Err(Error::InvalidInput(format!(
                "the purchase model could not be fitted to these {} customers (the likelihood \
                 has no maximum inside the parameters' bounds: r {:.3e}, alpha {:.3e}, a {:.3e}, \
                 b {:.3e})",
                histories.len(),
                model.r,
                model.alpha,
                model.a,
                model.b
            )));
        }
        Ok(model)
    }

    fn from_logs(p: &[f64]) -> BgNbd {
        BgNbd {
            r: p[0].exp(),
            alpha: p[1].exp(),
            a: p[2].exp(),
            b: p[3].exp(),
        }
    }

    /// The probability that the customer has not dropped out by the end of their history
    /// (1 for a customer without repeat purchases: in this model one drops out only after a
    /// purchase).
    pub fn p_alive(&self, h: &History) -> f64 {
        if h.frequency == 0 {
            return 1.0;
        }
        1.0 / (1.0 + self.dropout_odds(h))
    }

    /// `a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)`: the odds of having dropped out (x > 0).
    fn dropout_odds(&self, h: &History) -> f64 {
        let x = f64::from(h.frequency);
        let log = self.a.ln() - (self.b + x - 1.0).ln()
            + (self.r + x) * ((self.alpha + h.age).ln() - (self.alpha + h.recency).ln());
        log.exp()
    }

    /// The expected number of purchases (repeat days) in the next `t` time units.
    pub fn expected_count(&self, h: &History, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(h.frequency);
        let z = t / (alpha + h.age + t);
        // The paper's 2F1(r+x, b+x; a+b+x-1; z) through Euler's transformation,
        // (1-z)^(c-a-b) 2F1(c-a, c-b; c; z): its first two arguments stay small whatever x is,
        // so the series converges quickly, and (1-z)^(r+x) times (1-z)^(c-a-b) is (1-z)^(a-1).
        let c = a + b + x - 1.0;
        let f = hyp2f1(a + b - 1.0 - r, a - 1.0, c, z);
        let head = c / (a - 1.0);
        let body = 1.0 - (1.0 - z).powf(a - 1.0) * f;
        let denominator = if h.frequency > 0 {
            1.0 + self.dropout_odds(h)
        } else {
            1.0
        };
        head * body / denominator
    }
}

/// The Gauss hypergeometric series 2F1(a, b; c; z) for 0 <= z < 1, summed until a term no
/// longer changes the sum.
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for n in 0..1_000_000u32 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-17 * sum.abs() {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters the paper publishes for the CDNOW sample, in weeks.
    const PAPER: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn the_series_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1-z)/z and 2F1(a, b; b; z) = (1-z)^-a.
        for z in [0.0001, 0.1, 0.5, 0.9, 0.99] {
            let want = -(1.0f64 - z).ln() / z;
            assert!(
                (hyp2f1(1.0, 1.0, 2.0, z) - want).abs() < 1e-12 * want,
                "{z}"
            );
            let want = (1.0f64 - z).powf(-0.7);
            assert!(
                (hyp2f1(0.7, 3.5, 3.5, z) - want).abs() < 1e-12 * want,
                "{z}"
            );
        }
    }

    #[test]
    fn a_customer_without_repeats_is_alive_and_repeat_buyers_fade_with_silence() {
        let h = |frequency, recency, age| History {
            frequency,
            recency,
            age,
            monetary: 0.0,
        };
        assert_eq!(PAPER.p_alive(&h(0, 0.0, 30.0)), 1.0);
        let recent = PAPER.p_alive(&h(3, 29.0, 30.0));
        let silent = PAPER.p_alive(&h(3, 5.0, 30.0));
        assert!(
            recent > silent && silent > 0.0 && recent < 1.0,
            "{recent} {silent}"
        );
        // More time ahead, more purchases expected; none in no time.
        let x = h(2, 20.0, 30.0);
        assert_eq!(PAPER.expected_count(&x, 0.0), 0.0);
        assert!(PAPER.expected_count(&x, 10.0) < PAPER.expected_count(&x, 20.0));
    }

    #[test]
    fn too_few_repeat_customers_is_an_error_that_says_how_many_are_needed() {
        let one = History {
            frequency: 1,
            recency: 1.0,
            age: 2.0,
            monetary: 0.0,
        };
        let err = BgNbd::fit(&[one; 5]).unwrap_err().to_string();
        assert!(err.contains("at least 20 customers"), "{err}");
    }

    #[test]
    fn the_expected_count_agrees_with_the_series_summed_directly() {
        // The untransformed series of the paper converges for small z: both ways agree.
        let h = History {
            frequency: 4,
            recency: 20.0,
            age: 38.0,
            monetary: 0.0,
        };
        let t = 5.0;
        let BgNbd { r, alpha, a, b } = PAPER;
        let x = 4.0;
        let z = t / (alpha + h.age + t);
        let direct = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let want = (a + b + x - 1.0) / (a - 1.0)
            * (1.0 - ((alpha + h.age) / (alpha + h.age + t)).powf(r + x) * direct)
            / (1.0 + PAPER.dropout_odds(&h));
        let got = PAPER.expected_count(&h, t);
        assert!((got - want).abs() < 1e-10, "{got} {want}");
    }
}
