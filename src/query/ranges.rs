//! Orderings on a trait (`<`, `<=`, `>`, `>=`, `between`) answered exactly from its range index
//! (`crate::index::ranges`), and on a kept order of floats (`crate::index::totals::Order`: a
//! model trait's values) from that order.
//!
//! What a value passes is decided by [`customer::order`], the one definition of comparing a
//! value with a literal: integers against an integer literal exactly and against a decimal as
//! `f64`, floats as `f64`, date-times to the millisecond, and nothing else ordering at all. For
//! each kind, `order` is monotone in the value, so the keys that pass are one interval of the
//! kind's key space; its ends are found by binary search over the keys, asking `order` itself,
//! and the customers in it are a range query on the kind's bit slices. Lists, strings, booleans,
//! NaN and missing values never pass an ordering, and are in no slice.
//!
//! This module reads the indexes; it never writes and never reads storage.

use std::cmp::Ordering;

use roaring::RoaringBitmap;

use crate::index::ranges::{float_keys, float_of_key, int_of_key};
use crate::index::totals::Order;
use crate::index::{Ranges, Slices};
use crate::rules::CmpOp;
use crate::storage::view::ValueView;

use super::customer::order;
use super::plan::{Lit, ValueTest};

/// The ends a test puts on values: a lower end (`Some(strict)`), an upper end, with their literals.
struct Ends<'a> {
    low: Option<(&'a Lit, bool)>,
    high: Option<(&'a Lit, bool)>,
}

impl<'a> Ends<'a> {
    /// The ends of an ordering test; `None` for tests that are not orderings.
    fn of(test: &'a ValueTest) -> Option<Ends<'a>> {
        Some(match test {
            ValueTest::Compare { op, lit } => match op {
                CmpOp::Lt => Ends {
                    low: None,
                    high: Some((lit, true)),
                },
                CmpOp::Le => Ends {
                    low: None,
                    high: Some((lit, false)),
                },
                CmpOp::Gt => Ends {
                    low: Some((lit, true)),
                    high: None,
                },
                CmpOp::Ge => Ends {
                    low: Some((lit, false)),
                    high: None,
                },
                CmpOp::Eq | CmpOp::Ne => return None,
            },
            ValueTest::Between { low, high } => Ends {
                low: Some((low, false)),
                high: Some((high, false)),
            },
            _ => return None,
        })
    }
}

/// The customers whose value of the trait passes an ordering test (exactly); `None` when the
/// test is not an ordering.
pub(super) fn passing(ranges: &Ranges, test: &ValueTest) -> Option<RoaringBitmap> {
    let ends = Ends::of(test)?;
    let (fmin, fmax) = float_keys();
    let mut out = within(&ranges.ints, &ends, (0, u64::MAX), |k| {
        ValueView::Int(int_of_key(k))
    });
    out |= within(&ranges.times, &ends, (0, u64::MAX), |k| {
        ValueView::Time(int_of_key(k))
    });
    out |= within(&ranges.floats, &ends, (fmin, fmax), |k| {
        ValueView::Float(float_of_key(k))
    });
    Some(out)
}

/// The customers of a kept order of floats (`crate::index::totals::Order`) whose value passes
/// an ordering test, exactly; `None` when the test is not an ordering. As for the slices, what
/// passes is what [`order`] says of each float, which is monotone in it: the passing values are
/// one run of the order, found by two binary searches.
pub(super) fn passing_in_order(o: &Order, test: &ValueTest) -> Option<RoaringBitmap> {
    let ends = Ends::of(test)?;
    // Above the lower end: false, then true, as values grow; below the upper end: true, then
    // false.
    let above = |x: f64| match ends.low {
        None => true,
        Some((lit, strict)) => match order(ValueView::Float(x), lit) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => !strict,
            _ => false,
        },
    };
    let below = |x: f64| match ends.high {
        None => true,
        Some((lit, strict)) => match order(ValueView::Float(x), lit) {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => !strict,
            _ => false,
        },
    };
    let lo = o.position(|x| !above(x));
    let hi = o.position(below);
    if lo >= hi {
        return Some(RoaringBitmap::new());
    }
    Some(match (lo, hi == o.values.len()) {
        (0, _) => o.before(hi),
        (_, true) => o.from(lo),
        _ => o.from(lo) - o.from(hi),
    })
}

/// The customers of one kind whose value lies within the ends; `domain` is the kind's keys
/// (every key indexed is in it) and `view` the value of a key.
fn within(
    slices: &Slices,
    ends: &Ends<'_>,
    domain: (u64, u64),
    view: impl Fn(u64) -> ValueView<'static>,
) -> RoaringBitmap {
    if slices.is_empty() {
        return RoaringBitmap::new();
    }
    let (dmin, dmax) = domain;
    // Above the lower end: false, then true, as keys grow.
    let above = |k: u64| match ends.low {
        None => true,
        Some((lit, strict)) => match order(view(k), lit) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => !strict,
            _ => false,
        },
    };
    // Below the upper end: true, then false.
    let below = |k: u64| match ends.high {
        None => true,
        Some((lit, strict)) => match order(view(k), lit) {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => !strict,
            _ => false,
        },
    };
    let (Some(lo), Some(hi)) = (first_true(dmin, dmax, above), last_true(dmin, dmax, below)) else {
        return RoaringBitmap::new();
    };
    // The whole domain's ends stand for "no end": cheaper for the slices.
    let lo = if lo == dmin { 0 } else { lo };
    let hi = if hi == dmax { u64::MAX } else { hi };
    slices.range(lo, hi)
}

/// The smallest key of `a..=b` where `pred` (false, then true) holds.
fn first_true(mut a: u64, mut b: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    if !pred(b) {
        return None;
    }
    while a < b {
        let m = a + (b - a) / 2;
        if pred(m) {
            b = m;
        } else {
            a = m + 1;
        }
    }
    Some(a)
}

/// The largest key of `a..=b` where `pred` (true, then false) holds.
fn last_true(mut a: u64, mut b: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    if !pred(a) {
        return None;
    }
    while a < b {
        let m = b - (b - a) / 2;
        if pred(m) {
            a = m;
        } else {
            b = m - 1;
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ranges::int_key;

    #[test]
    fn binary_searches_find_the_edges() {
        for edge in [0u64, 1, 7, u64::MAX - 1, u64::MAX] {
            assert_eq!(first_true(0, u64::MAX, |k| k >= edge), Some(edge));
            assert_eq!(last_true(0, u64::MAX, |k| k <= edge), Some(edge));
        }
        assert_eq!(first_true(0, 10, |_| false), None);
        assert_eq!(last_true(0, 10, |_| false), None);
        assert_eq!(first_true(5, 5, |_| true), Some(5));
        assert_eq!(int_of_key(int_key(-3)), -3);
    }
}

#[cfg(test)]
mod order_tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::model::Value;
    use crate::query::customer::passes;

    fn number(x: f64) -> Lit {
        let int = (x.fract() == 0.0 && x.abs() < 1e15).then_some(x as i64);
        Lit {
            text: Some(x.to_string()),
            int,
            num: Some(x),
            boolean: None,
            time: None,
            is_str: false,
        }
    }

    /// Orderings answered from a kept order of floats equal each value tested alone, and the
    /// bit slices' answer, at the values themselves, between them and beyond them.
    #[test]
    fn an_order_of_floats_answers_as_each_value_does() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [0usize, 1, 3, 300, 5_000] {
            let mut floats: Vec<(u32, f64)> = (0..n as u32)
                .map(|c| {
                    let x = match rng.random_range(0..12) {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => -0.0,
                        3 => 0.0,
                        _ => f64::from(rng.random_range(-40..40i32)) / 8.0,
                    };
                    (c * 2 + 1, x)
                })
                .collect();
            floats.sort_by_key(|f| f.0);
            let numbers = floats
                .iter()
                .filter(|f| !f.1.is_nan())
                .map(|&(c, x)| (x, c))
                .collect();
            let o = Order::new(numbers, 0.0, Vec::new());
            let mut slices = Ranges::default();
            for &(c, x) in &floats {
                slices.add(c, &Value::Float(x));
            }
            let mut lits: Vec<Lit> = [-6.0, -0.5, 0.0, 0.125, 1.0, 2.5, 5.0, 1e300]
                .into_iter()
                .map(number)
                .collect();
            lits.push(Lit {
                text: Some("abc".into()),
                int: None,
                num: None,
                boolean: None,
                time: None,
                is_str: true,
            });
            for a in &lits {
                let mut tests: Vec<ValueTest> = [CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge]
                    .into_iter()
                    .map(|op| ValueTest::Compare { op, lit: a.clone() })
                    .collect();
                for b in &lits {
                    tests.push(ValueTest::Between {
                        low: a.clone(),
                        high: b.clone(),
                    });
                }
                for t in &tests {
                    let want: RoaringBitmap = floats
                        .iter()
                        .filter(|&&(_, x)| passes(Some(ValueView::Float(x)), t))
                        .map(|f| f.0)
                        .collect();
                    assert_eq!(passing_in_order(&o, t).unwrap(), want, "{n} {t:?}");
                    assert_eq!(passing(&slices, t).unwrap(), want, "{n} {t:?}");
                }
            }
        }
    }
}
