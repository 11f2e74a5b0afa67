//! The experiment report: an audience split by `bucket(NAME)` into variants, each variant's rate
//! of meeting a goal, and each later variant compared with the first.
//!
//! Variant i holds the audience's customers whose bucket falls in its share, the first variant
//! taking the lowest buckets (`50,50`: buckets 0–49 and 50–99; `5,95`: a 5% holdout first). The
//! audience and the goal are rules run at the same *now*; a customer converted when they are in
//! the goal's members.
//!
//! The comparison of variant i with the first (rates p0 = x0/n0, pi = xi/ni):
//! - difference pi − p0, with the 95% Wald interval
//!   (pi − p0) ± 1.959964 · √(p0(1 − p0)/n0 + pi(1 − pi)/ni);
//! - the two-sided p-value of the two-proportion z-test with the pooled rate p = (x0 + xi)/(n0 + ni):
//!   z = (pi − p0) / √(p(1 − p)(1/n0 + 1/ni)), p-value = erfc(|z|/√2) = 2(1 − Φ(|z|)).
//!
//! When either variant is empty the comparison is left out (`None`); when the pooled rate is 0
//! or 1 both variants converted alike, the difference and its interval are 0 and the p-value 1.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::model::bucket::{bucket, BUCKETS};
use crate::model::time::Timestamp;
use crate::query::ReadState;
use crate::rules::words;
use crate::storage::Store;

use super::super::check::Warning;
use super::super::values::top::members;
use super::super::PreparedRule;
use super::{optional_f64, percent, ratio};

/// The two-sided 97.5% point of the standard normal distribution.
const Z_975: f64 = 1.959_963_984_540_054;

/// What an experiment report is asked.
#[derive(Debug, Clone)]
pub struct ExperimentRequest {
    /// The split's name, as `bucket(NAME)` takes it: a plain name.
    pub name: String,
    /// The rule of the customers in the experiment.
    pub audience: String,
    /// The rule a customer meets when they converted.
    pub goal: String,
    /// Each variant's share of the buckets, in percent, first variant first; they add up to
    /// 100. `[50, 50]` by default.
    pub variants: Vec<u8>,
}

impl ExperimentRequest {
    pub fn new(name: &str, audience: &str, goal: &str) -> ExperimentRequest {
        ExperimentRequest {
            name: name.to_owned(),
            audience: audience.to_owned(),
            goal: goal.to_owned(),
            variants: vec![50, 50],
        }
    }
}

/// Parses a list of shares as the CLI and the socket take it: `50,50`, `5,95`, `34,33,33`.
pub fn parse_variants(text: &str) -> Result<Vec<u8>> {
    text.split(',')
        .map(|s| {
            s.trim().parse::<u8>().map_err(|_| {
                Error::InvalidInput(format!(
                    "{text:?} is not a list of variant shares: write whole percentages \
                     separated by commas that add up to 100, e.g. `50,50` or `5,95`"
                ))
            })
        })
        .collect()
}

/// One variant's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Its share of the buckets, in percent.
    pub share: u8,
    /// The buckets it holds, `low..=high`.
    pub buckets: (u8, u8),
    /// The audience's customers in it.
    pub customers: u64,
    /// Those of them who meet the goal.
    pub converted: u64,
    /// `converted / customers`; `None` for an empty variant.
    pub rate: Option<f64>,
    /// `rate − the first variant's rate`; `None` for the first variant and when either is
    /// empty. So are the three below.
    pub difference: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: Option<f64>,
}

/// The answer of an experiment report.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub variants: Vec<Variant>,
    /// The audience's size (every variant's customers together).
    pub audience: u64,
    /// The audience rule's warnings, then the goal's.
    pub warnings: Vec<Warning>,
    pub now: Timestamp,
    pub elapsed: Duration,
}

impl Experiment {
    /// `{"variants": [{"share", "customers", "converted", "rate", "difference", "ci_low",
    /// "ci_high", "p_value"}, ...]}`, with `"warnings": [text, ...]` when there are any.
    pub fn to_json(&self) -> serde_json::Value {
        let variants: Vec<serde_json::Value> = self
            .variants
            .iter()
            .map(|v| {
                serde_json::json!({
                    "share": v.share,
                    "customers": v.customers,
                    "converted": v.converted,
                    "rate": v.rate,
                    "difference": v.difference,
                    "ci_low": v.ci_low,
                    "ci_high": v.ci_high,
                    "p_value": v.p_value,
                })
            })
            .collect();
        let mut out = serde_json::json!({ "variants": variants });
        if !self.warnings.is_empty() {
            out["warnings"] = self.warnings.iter().map(|w| w.to_string()).collect();
        }
        out
    }
}

impl std::fmt::Display for Experiment {
    /// The table `audiencedb experiment` prints (see [`table`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&table(&self.variants))
    }
}

/// The table of an experiment, as the CLI and the REPL print it: a row per variant (its
/// buckets, customers, converted, rate, and against the first variant the difference, its 95%
/// interval and the p-value).
pub fn table(variants: &[Variant]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8}  {:>7}  {:>9}  {:>9}  {:>7}  {:>10}  {:>21}  {:>8}",
        "variant",
        "buckets",
        "customers",
        "converted",
        "rate",
        "difference",
        "95% interval",
        "p-value"
    );
    for (i, v) in variants.iter().enumerate() {
        let interval = match (v.ci_low, v.ci_high) {
            (Some(a), Some(b)) => format!("{} .. {}", percent(Some(a)), percent(Some(b))),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<8}  {:>7}  {:>9}  {:>9}  {:>7}  {:>10}  {:>21}  {:>8}",
            i + 1,
            format!("{}-{}", v.buckets.0, v.buckets.1),
            v.customers,
            v.converted,
            percent(v.rate),
            percent(v.difference),
            interval,
            v.p_value.map_or("-".to_owned(), |p| format!("{p:.4}")),
        );
    }
    out
}

/// The variants of an experiment's JSON (see [`Experiment::to_json`]) read back, as the REPL
/// reads the socket's `EXPERIMENT` answer; `None` for JSON of another shape. The buckets follow
/// from the shares.
pub fn variants_from_json(v: &serde_json::Value) -> Option<Vec<Variant>> {
    let mut low = 0u8;
    v["variants"]
        .as_array()?
        .iter()
        .map(|s| {
            let share = u8::try_from(s["share"].as_u64()?).ok()?;
            let buckets = (low, low.checked_add(share)?.checked_sub(1)?);
            low += share;
            Some(Variant {
                share,
                buckets,
                customers: s["customers"].as_u64()?,
                converted: s["converted"].as_u64()?,
                rate: optional_f64(s, "rate")?,
                difference: optional_f64(s, "difference")?,
                ci_low: optional_f64(s, "ci_low")?,
                ci_high: optional_f64(s, "ci_high")?,
                p_value: optional_f64(s, "p_value")?,
            })
        })
        .collect()
}

/// Refuses a name `bucket(NAME)` could not take and shares that are not a split of 100.
fn validate(req: &ExperimentRequest) -> Result<()> {
    if !words::is_name(&req.name) {
        return Err(Error::InvalidInput(format!(
            "{:?} is not an experiment name: use letters, digits and `_`, not starting with a \
             digit (the name `bucket(NAME)` takes in rules)",
            req.name
        )));
    }
    let total: u32 = req.variants.iter().map(|&s| u32::from(s)).sum();
    if req.variants.len() < 2 || req.variants.contains(&0) || total != u32::from(BUCKETS) {
        return Err(Error::InvalidInput(format!(
            "the variants' shares {:?} are not a split: give at least two whole percentages, \
             none 0, that add up to 100 (e.g. `50,50`, or `5,95` for a 5% holdout)",
            req.variants
        )));
    }
    Ok(())
}

/// The comparison of `(x, n)` with the first variant's `(x0, n0)`: difference, interval and
/// p-value, as the module says.
pub fn compare(x0: u64, n0: u64, x: u64, n: u64) -> Option<(f64, f64, f64, f64)> {
    if n0 == 0 || n == 0 {
        return None;
    }
    let (p0, p) = (x0 as f64 / n0 as f64, x as f64 / n as f64);
    let difference = p - p0;
    let pooled = (x0 + x) as f64 / (n0 + n) as f64;
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / n0 as f64 + 1.0 / n as f64)).sqrt();
    if se_pooled == 0.0 {
        return Some((0.0, 0.0, 0.0, 1.0));
    }
    let z = difference / se_pooled;
    let p_value = libm::erfc(z.abs() / std::f64::consts::SQRT_2);
    let se = (p0 * (1.0 - p0) / n0 as f64 + p * (1.0 - p) / n as f64).sqrt();
    Some((
        difference,
        difference - Z_975 * se,
        difference + Z_975 * se,
        p_value,
    ))
}

pub(crate) fn experiment(
    state: &ReadState,
    store: &Store,
    req: &ExperimentRequest,
    now: Timestamp,
) -> Result<Experiment> {
    let started = Instant::now();
    validate(req)?;
    let audience_rule = PreparedRule::new(&req.audience)?;
    let goal_rule = PreparedRule::new(&req.goal)?;
    let (audience, mut warnings) = members(state, store, &audience_rule, now)?;
    let (goal, goal_warnings) = members(state, store, &goal_rule, now)?;
    warnings.extend(goal_warnings);

    // Which variant each bucket belongs to.
    let mut of_bucket = [0usize; BUCKETS as usize];
    let mut ranges = Vec::with_capacity(req.variants.len());
    let mut low = 0usize;
    for (i, &share) in req.variants.iter().enumerate() {
        let high = low + usize::from(share);
        of_bucket[low..high].fill(i);
        ranges.push((low as u8, (high - 1) as u8));
        low = high;
    }
    let ids: Vec<u32> = audience.iter().collect();
    let parts: Vec<Vec<RoaringBitmap>> = ids
        .par_chunks(4096)
        .map(|custs| {
            let mut split = vec![RoaringBitmap::new(); req.variants.len()];
            for &cust in custs {
                let id = state.ids.external(cust).ok_or_else(|| {
                    Error::Internal(format!("customer {cust} is a member but has no id"))
                })?;
                split[of_bucket[usize::from(bucket(&req.name, id))]].insert(cust);
            }
            Ok(split)
        })
        .collect::<Result<_>>()?;
    let mut split = vec![RoaringBitmap::new(); req.variants.len()];
    for part in parts {
        for (all, some) in split.iter_mut().zip(part) {
            *all |= some;
        }
    }
    let counts: Vec<(u64, u64)> = split
        .iter()
        .map(|s| (s.intersection_len(&goal), s.len()))
        .collect();
    let variants = counts
        .iter()
        .enumerate()
        .map(|(i, &(x, n))| {
            let cmp = if i == 0 {
                None
            } else {
                compare(counts[0].0, counts[0].1, x, n)
            };
            Variant {
                share: req.variants[i],
                buckets: ranges[i],
                customers: n,
                converted: x,
                rate: ratio(x, n),
                difference: cmp.map(|c| c.0),
                ci_low: cmp.map(|c| c.1),
                ci_high: cmp.map(|c| c.2),
                p_value: cmp.map(|c| c.3),
            }
        })
        .collect();
    Ok(Experiment {
        name: req.name.clone(),
        variants,
        audience: audience.len(),
        warnings,
        now,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    /// A worked textbook exercise: x1 = 28 of n1 = 254 against x2 = 36 of n2 = 301, "z =
    /// −0.344, two-tailed P = 0.7307". The second group is our variant, the first our control:
    /// z = +0.344 here, the same p-value. The digits past the textbook's were computed with
    /// Python's standard library (`math.erfc(abs(z) / math.sqrt(2))`, z from the pooled
    /// formula): z = 0.344135, p = 0.730745, difference 0.009365, interval −0.043807 .. 0.062537.
    #[test]
    fn agrees_with_a_worked_example() {
        let (d, lo, hi, p) = compare(28, 254, 36, 301).unwrap();
        assert!(close(p, 0.7307, 5e-5), "p-value {p}");
        assert!(close(p, 0.730_745, 1e-6), "p-value {p}");
        assert!(close(d, 36.0 / 301.0 - 28.0 / 254.0, 1e-15));
        assert!(close(lo, -0.043_807, 1e-6), "ci_low {lo}");
        assert!(close(hi, 0.062_537, 1e-6), "ci_high {hi}");
    }

    #[test]
    fn edges() {
        assert_eq!(compare(0, 0, 1, 10), None);
        assert_eq!(compare(1, 10, 0, 0), None);
        // Nobody or everybody converted on both sides: no difference to test.
        assert_eq!(compare(0, 10, 0, 20), Some((0.0, 0.0, 0.0, 1.0)));
        assert_eq!(compare(10, 10, 20, 20), Some((0.0, 0.0, 0.0, 1.0)));
        // Equal rates: z = 0, p = 1.
        let (d, _, _, p) = compare(5, 10, 10, 20).unwrap();
        assert_eq!((d, p), (0.0, 1.0));
        // A large difference is significant.
        let (_, lo, _, p) = compare(100, 1000, 200, 1000).unwrap();
        assert!(p < 1e-9 && lo > 0.0, "{p} {lo}");
    }

    #[test]
    fn shares_must_split_the_buckets() {
        let mut req = ExperimentRequest::new("t", "everyone", "everyone");
        assert!(validate(&req).is_ok());
        for bad in [vec![100], vec![50, 49], vec![0, 100], vec![60, 60]] {
            req.variants = bad.clone();
            let e = validate(&req).unwrap_err().to_string();
            assert!(e.contains("not a split"), "{bad:?}: {e}");
        }
        req.variants = vec![5, 95];
        req.name = "9lives".into();
        assert!(validate(&req)
            .unwrap_err()
            .to_string()
            .contains("not an experiment name"));
        assert_eq!(parse_variants("5, 95").unwrap(), vec![5, 95]);
        assert!(parse_variants("50;50").is_err());
        assert!(parse_variants("-5,105").is_err());
    }
}
