//! Randomness for the generator: a thin wrapper over `ChaCha8Rng` with the few distributions the
//! shop needs, written out here so that the output depends only on the ChaCha8 stream (not on how a
//! `rand` release happens to implement ranges or floats).
//!
//! Every customer gets its own stream: the key comes from the seed, the stream number from the
//! customer's index. A customer's data therefore depends on (seed, index) alone, never on which
//! thread generated it or on how many customers came before it.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The stream number reserved for shop-wide data (catalog, id keys); customers use their index.
const SHOP_STREAM: u64 = u64::MAX;

/// A deterministic random source.
pub(crate) struct Rand {
    inner: ChaCha8Rng,
}

impl Rand {
    /// The 32-byte ChaCha key that every stream of one seed shares.
    pub(crate) fn key(seed: u64) -> [u8; 32] {
        ChaCha8Rng::seed_from_u64(seed).get_seed()
    }

    /// The stream of customer `index`.
    pub(crate) fn customer(key: &[u8; 32], index: u64) -> Self {
        let mut inner = ChaCha8Rng::from_seed(*key);
        inner.set_stream(index);
        Rand { inner }
    }

    /// The stream for shop-wide data, distinct from every customer's.
    pub(crate) fn shop(key: &[u8; 32]) -> Self {
        Self::customer(key, SHOP_STREAM)
    }

    /// 64 uniform bits.
    pub(crate) fn bits(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift; the bias is below 2^-40 for our `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.bits()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo < hi);
        lo + self.below(hi.abs_diff(lo)) as i64
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box-Muller, one of the pair).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and shape.
    pub(crate) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Exponential with the given mean.
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// An exponential delay in milliseconds with the given mean, at least `min_ms`.
    pub(crate) fn delay_ms(&mut self, min_ms: i64, mean_ms: f64) -> i64 {
        min_ms + self.exp(mean_ms) as i64
    }

    /// Poisson with mean `lambda`: exact for small means, normal approximation for large ones.
    pub(crate) fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0;
            let mut p = self.unit();
            while p > limit {
                k += 1;
                p *= self.unit();
            }
            k
        } else {
            (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64
        }
    }

    /// Geometric count of failures before a success, with the given mean (0, 1, 2, ...).
    pub(crate) fn geometric(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        let q = mean / (1.0 + mean); // probability of another failure
        ((1.0 - self.unit()).ln() / q.ln()).floor() as u64
    }

    /// An index drawn from a cumulative weight table (non-decreasing, last entry the total).
    pub(crate) fn pick(&mut self, cdf: &[f64]) -> usize {
        let total = cdf.last().copied().unwrap_or(0.0);
        let u = self.unit() * total;
        cdf.partition_point(|&c| c <= u)
            .min(cdf.len().saturating_sub(1))
    }

    /// An index drawn from a short table of weights (linear scan; for tables of a few entries).
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut u = self.below(u64::from(total)) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if u < w {
                return i;
            }
            u -= w;
        }
        weights.len() - 1
    }
}

/// A bijection on `u64` (the SplitMix64 finaliser): distinct inputs give distinct outputs, and the
/// outputs look random. Used for ids that must be unique and look opaque.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Builds a cumulative table from weights.
pub(crate) fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut total = 0.0;
    weights
        .into_iter()
        .map(|w| {
            total += w;
            total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_seed_and_index_only() {
        let key = Rand::key(7);
        let a: Vec<u64> = (0..4).map(|_| Rand::customer(&key, 3).bits()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rand::customer(&key, 3).bits(),
            Rand::customer(&key, 4).bits()
        );
        assert_ne!(
            Rand::customer(&key, 3).bits(),
            Rand::customer(&Rand::key(8), 3).bits()
        );
        assert_ne!(Rand::shop(&key).bits(), Rand::customer(&key, 0).bits());
    }

    #[test]
    fn distributions_have_the_right_means() {
        let mut r = Rand::customer(&Rand::key(1), 0);
        let n = 200_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!((mean(&mut || r.unit()) - 0.5).abs() < 0.01);
        assert!((mean(&mut || r.normal())).abs() < 0.02);
        assert!((mean(&mut || r.exp(3.0)) - 3.0).abs() < 0.05);
        assert!((mean(&mut || r.poisson(4.0) as f64) - 4.0).abs() < 0.05);
        assert!((mean(&mut || r.poisson(50.0) as f64) - 50.0).abs() < 0.2);
        assert!((mean(&mut || r.geometric(2.5) as f64) - 2.5).abs() < 0.05);
        assert!((mean(&mut || r.below(10) as f64) - 4.5).abs() < 0.05);
        let cdf = cumulative([1.0, 0.0, 3.0]);
        let picks: Vec<usize> = (0..10_000).map(|_| r.pick(&cdf)).collect();
        assert!(!picks.contains(&1));
        let threes = picks.iter().filter(|&&i| i == 2).count();
        assert!((7_000..8_000).contains(&threes));
        assert_eq!(r.weighted(&[0, 5, 0]), 1);
    }

    #[test]
    fn mix64_is_injective_on_a_sample() {
        let mut seen: Vec<u64> = (0..100_000).map(mix64).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100_000);
    }
}
