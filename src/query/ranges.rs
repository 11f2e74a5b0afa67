//! Orderings on a trait (`<`, `<=`, `>`, `>=`, `between`) answered exactly from its range index
//! (`crate::index::ranges`).
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
