//! Minimising a smooth function of a few parameters without derivatives: the Nelder–Mead
//! simplex, restarted from its best point until a restart no longer improves the value (one run
//! of the simplex can stall on a ridge; a fresh simplex around the stall point moves on).
//!
//! Pure numbers: it knows nothing of customers or models. A point where the function is not
//! finite (outside the parameters' bounds, an overflow) counts as infinitely bad.

/// Where the minimiser stopped.
#[derive(Debug, Clone)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
}

/// Iterations of one simplex run, at most.
const MAX_ITERATIONS: usize = 20_000;
/// Restarts around the best point, at most.
const MAX_RESTARTS: usize = 12;

/// The minimum of `f` found from `start`, the first simplex `step` wide along each axis.
pub(crate) fn minimise(f: impl Fn(&[f64]) -> f64, start: &[f64], step: f64) -> Minimum {
    let f = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    let mut best = simplex(&f, start, step);
    for _ in 0..MAX_RESTARTS {
        let again = simplex(&f, &best.x, step / 10.0);
        let gain = best.value - again.value;
        let settled = gain <= 1e-12 * (1.0 + best.value.abs());
        if again.value < best.value {
            best = again;
        }
        if settled {
            break;
        }
    }
    best
}

/// One Nelder–Mead run (reflection 1, expansion 2, contraction and shrink 1/2).
fn simplex(f: &impl Fn(&[f64]) -> f64, start: &[f64], step: f64) -> Minimum {
    let n = start.len();
    let mut points: Vec<Vec<f64>> = (0..=n)
        .map(|i| {
            let mut p = start.to_vec();
            if i > 0 {
                p[i - 1] += step;
            }
            p
        })
        .collect();
    let mut values: Vec<f64> = points.iter().map(|p| f(p)).collect();
    let mut order: Vec<usize> = (0..=n).collect();
    for _ in 0..MAX_ITERATIONS {
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let (lo, hi, second) = (order[0], order[n], order[n - 1]);
        let spread = values[hi] - values[lo];
        let width = points
            .iter()
            .flat_map(|p| p.iter().zip(&points[lo]).map(|(a, b)| (a - b).abs()))
            .fold(0.0, f64::max);
        if spread.is_finite() && spread <= 1e-14 * (1.0 + values[lo].abs()) && width <= 1e-10 {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|k| order[..n].iter().map(|&i| points[i][k]).sum::<f64>() / n as f64)
            .collect();
        let along = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&points[hi])
                .map(|(c, h)| c + t * (h - c))
                .collect()
        };
        let reflected = along(-1.0);
        let fr = f(&reflected);
        if fr < values[lo] {
            let expanded = along(-2.0);
            let fe = f(&expanded);
            if fe < fr {
                (points[hi], values[hi]) = (expanded, fe);
            } else {
                (points[hi], values[hi]) = (reflected, fr);
            }
            continue;
        }
        if fr < values[second] {
            (points[hi], values[hi]) = (reflected, fr);
            continue;
        }
        let (contracted, fc) = if fr < values[hi] {
            let c = along(-0.5);
            let v = f(&c);
            (c, v)
        } else {
            let c = along(0.5);
            let v = f(&c);
            (c, v)
        };
        if fc < values[hi].min(fr) {
            (points[hi], values[hi]) = (contracted, fc);
            continue;
        }
        let keep = points[lo].clone();
        for &i in &order[1..] {
            points[i] = points[i]
                .iter()
                .zip(&keep)
                .map(|(p, k)| k + 0.5 * (p - k))
                .collect();
            values[i] = f(&points[i]);
        }
    }
    let lo = (0..=n)
        .min_by(|&i, &j| values[i].total_cmp(&values[j]))
        .unwrap_or(0);
    Minimum {
        x: points.swap_remove(lo),
        value: values[lo],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_rosenbrocks_valley() {
        let rosenbrock = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = minimise(rosenbrock, &[-1.2, 1.0], 0.5);
        assert!((m.x[0] - 1.0).abs() < 1e-6, "{m:?}");
        assert!((m.x[1] - 1.0).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn finds_a_minimum_in_four_dimensions_and_avoids_infinite_regions() {
        // A shifted bowl whose left half-space is forbidden (infinite), as bounds are.
        let target = [0.3, -2.0, 4.0, 1.5];
        let bowl = |x: &[f64]| {
            if x[0] < 0.0 {
                return f64::INFINITY;
            }
            x.iter()
                .zip(target)
                .enumerate()
                .map(|(k, (a, b))| (k + 1) as f64 * (a - b).powi(2))
                .sum::<f64>()
        };
        let m = minimise(bowl, &[1.0, 1.0, 1.0, 1.0], 1.0);
        for (a, b) in m.x.iter().zip(target) {
            assert!((a - b).abs() < 1e-6, "{m:?}");
        }
    }
}
