//! The range index of a trait: its integer, float and date-time values as bit-sliced bitmaps,
//! so that `<`, `<=`, `>`, `>=` and `between` on a trait are bitmap operations.
//!
//! Each kind of value (integers, floats, date-times) has its own [`Slices`]: who has a value of
//! that kind, and for each of the 64 bits of the value's order-preserving key ([`int_key`],
//! [`float_key`]) who has that bit set. Who has a key in `[lo, hi]` is then at most two passes
//! over the 64 slices (O'Neil and Quass's comparison of bit-sliced indexes), whatever the number
//! of distinct values: date-times are nearly all distinct, where a map of value to bitmap would
//! union one bitmap per customer.
//!
//! This module knows keys, not rules: which keys a comparison covers is the query layer's to
//! work out (it owns what comparing a value with a literal means). It owns no storage.

use roaring::RoaringBitmap;

use crate::model::Value;

/// Bits in a key.
const BITS: usize = 64;
const SIGN: u64 = 1 << 63;

/// The key of an integer or a date-time: ordered as the number is.
pub fn int_key(i: i64) -> u64 {
    (i as u64) ^ SIGN
}

/// The integer or date-time of a key (the inverse of [`int_key`]).
pub fn int_of_key(k: u64) -> i64 {
    (k ^ SIGN) as i64
}

/// The key of a float that is a number: ordered as the number is (`-0.0` just below `0.0`).
/// `None` for NaN, which orders against nothing and is not indexed.
pub fn float_key(f: f64) -> Option<u64> {
    if f.is_nan() {
        return None;
    }
    let bits = f.to_bits();
    Some(if bits & SIGN != 0 { !bits } else { bits | SIGN })
}

/// The float of a key (the inverse of [`float_key`]).
pub fn float_of_key(k: u64) -> f64 {
    f64::from_bits(if k & SIGN != 0 { k & !SIGN } else { !k })
}

/// The keys of floats that are numbers: from `-inf` to `+inf`.
pub fn float_keys() -> (u64, u64) {
    (
        float_key(f64::NEG_INFINITY).expect("a number"),
        float_key(f64::INFINITY).expect("a number"),
    )
}

/// One kind's bit-sliced index. Empty (`slices` too) when no customer has a value of the kind,
/// so that an index emptied by removals equals one never filled.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Slices {
    /// Customers with a value of this kind.
    pub exists: RoaringBitmap,
    /// Customers whose key has bit `i` set: 64 bitmaps, or none when `exists` is empty.
    pub bits: Vec<RoaringBitmap>,
}

impl Slices {
    pub fn is_empty(&self) -> bool {
        self.exists.is_empty()
    }

    /// Records that `cust` has the value of key `k`.
    pub fn add(&mut self, cust: u32, k: u64) {
        if self.bits.is_empty() {
            self.bits = vec![RoaringBitmap::new(); BITS];
        }
        self.exists.insert(cust);
        for (i, bm) in self.bits.iter_mut().enumerate() {
            if k >> i & 1 == 1 {
                bm.insert(cust);
            }
        }
    }

    /// Forgets that `cust` has the value of key `k`.
    pub fn remove(&mut self, cust: u32, k: u64) {
        if !self.exists.remove(cust) {
            return;
        }
        for (i, bm) in self.bits.iter_mut().enumerate() {
            if k >> i & 1 == 1 {
                bm.remove(cust);
            }
        }
        if self.exists.is_empty() {
            self.bits = Vec::new();
        }
    }

    /// Removes every customer of `custs`, whatever their keys.
    pub fn purge(&mut self, custs: &RoaringBitmap) {
        self.exists -= custs;
        if self.exists.is_empty() {
            self.bits = Vec::new();
        } else {
            for bm in &mut self.bits {
                *bm -= custs;
            }
        }
    }

    /// Customers whose key is in `lo..=hi`.
    pub fn range(&self, lo: u64, hi: u64) -> RoaringBitmap {
        if lo > hi || self.is_empty() {
            return RoaringBitmap::new();
        }
        match (lo == 0, hi == u64::MAX) {
            (true, true) => self.exists.clone(),
            (true, false) => self.at_most(hi),
            (false, true) => self.at_least(lo),
            (false, false) => {
                let mut out = self.at_least(lo);
                if !out.is_empty() {
                    out &= self.at_most(hi);
                }
                out
            }
        }
    }

    /// Customers whose key is at least `c`: walking from the top bit, `eq` holds who equals `c`
    /// so far and `gt` who is already above it.
    fn at_least(&self, c: u64) -> RoaringBitmap {
        let mut gt = RoaringBitmap::new();
        let mut eq = self.exists.clone();
        for i in (0..BITS).rev() {
            let s = &self.bits[i];
            if c >> i & 1 == 1 {
                eq &= s;
            } else if !s.is_empty() {
                gt |= &eq & s;
                eq -= s;
            }
            if eq.is_empty() {
                break;
            }
        }
        gt | eq
    }

    /// Customers whose key is at most `c` (see [`Slices::at_least`]).
    fn at_most(&self, c: u64) -> RoaringBitmap {
        let mut lt = RoaringBitmap::new();
        let mut eq = self.exists.clone();
        for i in (0..BITS).rev() {
            let s = &self.bits[i];
            if c >> i & 1 == 1 {
                if !s.is_empty() {
                    lt |= &eq - s;
                    eq &= s;
                } else {
                    lt |= eq;
                    eq = RoaringBitmap::new();
                }
            } else {
                eq -= s;
            }
            if eq.is_empty() {
                break;
            }
        }
        lt | eq
    }
}

/// The range index of one trait: its integers, floats and date-times. Strings, booleans and
/// lists never order, so they are not here.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ranges {
    pub ints: Slices,
    pub floats: Slices,
    pub times: Slices,
}

impl Ranges {
    pub fn is_empty(&self) -> bool {
        self.ints.is_empty() && self.floats.is_empty() && self.times.is_empty()
    }

    /// The slices and key of a value, for the values that order.
    fn slot(&mut self, v: &Value) -> Option<(&mut Slices, u64)> {
        match v {
            Value::Int(i) => Some((&mut self.ints, int_key(*i))),
            Value::Time(t) => Some((&mut self.times, int_key(*t))),
            Value::Float(f) => Some((&mut self.floats, float_key(*f)?)),
            Value::Str(_) | Value::Bool(_) | Value::List(_) => None,
        }
    }

    pub fn add(&mut self, cust: u32, v: &Value) {
        if let Some((s, k)) = self.slot(v) {
            s.add(cust, k);
        }
    }

    pub fn remove(&mut self, cust: u32, v: &Value) {
        if let Some((s, k)) = self.slot(v) {
            s.remove(cust, k);
        }
    }

    pub fn purge(&mut self, custs: &RoaringBitmap) {
        for s in [&mut self.ints, &mut self.floats, &mut self.times] {
            s.purge(custs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_order_as_the_numbers_do() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in ints.windows(2) {
            assert!(int_key(w[0]) < int_key(w[1]));
            assert_eq!(int_of_key(int_key(w[0])), w[0]);
        }
        let floats = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -0.0,
            0.0,
            1e-300,
            2.5,
            f64::INFINITY,
        ];
        for w in floats.windows(2) {
            assert!(float_key(w[0]) < float_key(w[1]), "{} {}", w[0], w[1]);
            let back = float_of_key(float_key(w[0]).unwrap());
            assert_eq!(back.to_bits(), w[0].to_bits());
        }
        assert_eq!(float_key(f64::NAN), None);
    }

    proptest! {
        /// Every range equals a scan of the keys, after additions and removals.
        #[test]
        fn ranges_equal_a_scan(
            keys in prop::collection::vec(prop_oneof![any::<u64>(), 0u64..64, (u64::MAX - 64)..=u64::MAX], 1..60),
            removed in prop::collection::vec(any::<bool>(), 60),
            probes in prop::collection::vec(any::<u64>(), 4),
        ) {
            let mut s = Slices::default();
            let mut kept = Vec::new();
            for (c, k) in keys.iter().enumerate() {
                s.add(c as u32, *k);
            }
            for (c, k) in keys.iter().enumerate() {
                if removed[c] {
                    s.remove(c as u32, *k);
                } else {
                    kept.push((c as u32, *k));
                }
            }
            let mut bounds: Vec<u64> = probes.clone();
            bounds.extend(keys.iter().flat_map(|k| [*k, k.wrapping_sub(1), k.wrapping_add(1)]));
            bounds.extend([0, u64::MAX]);
            for lo in bounds.iter().step_by(3) {
                for hi in bounds.iter().step_by(2) {
                    let want: RoaringBitmap = kept
                        .iter()
                        .filter(|(_, k)| lo <= k && k <= hi)
                        .map(|(c, _)| *c)
                        .collect();
                    prop_assert_eq!(s.range(*lo, *hi), want, "{}..={}", lo, hi);
                }
            }
            if kept.is_empty() {
                prop_assert_eq!(s, Slices::default());
            }
        }
    }
}
