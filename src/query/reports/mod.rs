//! Reports over many customers that are not audiences: the funnel (how far customers get through
//! a journey of steps, and how fast) and the experiment (an audience split by `bucket(NAME)`,
//! each part's rate of meeting a goal, compared with the first part's).
//!
//! Both start from the query engine's answers: the audience and goal rules are run as rules are,
//! and each funnel step is an event condition planned like one, so its names, shorthand and
//! `where` mean exactly what they mean in a rule. Funnel steps are then matched event by event in
//! each candidate customer's stored timeline. This module reads the read state and the store it
//! is handed (the caller holds the read guard for the whole call); it never writes and takes no
//! lock of its own.

pub(crate) mod experiment;
pub(crate) mod funnel;

pub use experiment::table as experiment_table;
pub use experiment::{
    compare, parse_variants, variants_from_json, Experiment, ExperimentRequest, Variant,
};
pub use funnel::table as funnel_table;
pub use funnel::{steps_from_json, Funnel, FunnelRequest, FunnelStep, MAX_STEPS};

use crate::error::{Error, Result};
use crate::rules::{self, ExprKind, WindowKind};

/// A length of time as rules write it after `in last` (`1 hour`, `7 days`, `2 weeks`), in
/// milliseconds.
pub fn parse_within(text: &str) -> Result<i64> {
    let bad = || {
        Error::InvalidInput(format!(
            "{text:?} is not a length of time: write a whole number and a unit, e.g. `30 \
             minutes`, `1 hour`, `7 days`, `2 weeks` (a month is 30 days, a year 365)"
        ))
    };
    let rule = rules::parse(&format!("did x in last {text}")).map_err(|_| bad())?;
    match rule.expr.kind {
        ExprKind::Event(c)
            if c.shorthand.is_none() && c.predicate.is_none() && c.frequency.is_none() =>
        {
            match c.window.map(|w| w.kind) {
                Some(WindowKind::Last(d)) => d.millis().ok_or_else(bad),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// `a / b`, or `None` when `b` is 0.
pub(crate) fn ratio(a: u64, b: u64) -> Option<f64> {
    (b != 0).then(|| a as f64 / b as f64)
}

/// A ratio as the report tables print it (`12.34%`), `-` for none.
fn percent(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |x| format!("{:.2}%", x * 100.0))
}

/// A report JSON field that is a number or null, read back: `None` when it is neither.
fn optional_f64(row: &serde_json::Value, key: &str) -> Option<Option<f64>> {
    match &row[key] {
        serde_json::Value::Null => Some(None),
        x => x.as_f64().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_rules_write_them() {
        assert_eq!(parse_within("1 hour").unwrap(), 3_600_000);
        assert_eq!(parse_within("7 days").unwrap(), 7 * 86_400_000);
        assert_eq!(parse_within("30 minutes").unwrap(), 30 * 60_000);
        for bad in ["", "7", "days", "7 fortnights", "-1 day", "7 days ago"] {
            let e = parse_within(bad).unwrap_err().to_string();
            assert!(e.contains("is not a length of time"), "{bad:?}: {e}");
        }
    }
}
