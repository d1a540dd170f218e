//! The Universal Scalability Law fitted to a closed-model ramp: X(N) = λN / (1 + σ(N−1) + κN(N−1)),
//! predicting the peak throughput and the concurrency that reaches it.
//!
//! Fitted by least squares on the linear form N/X = 1/λ + (σ/λ)(N−1) + (κ/λ)N(N−1), which needs
//! three steps rather than the six the `usl` crate asks for, and cannot panic (that crate panics
//! on too few points and on a failed fit).

use chokepoint_evidence::{LoadModel, LoadRun};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The fit of a closed-model ramp's error-free steps; `None` for an open-model ramp or too few
/// steps.
pub(crate) fn fit_ramp(run: &LoadRun) -> Option<UslFit> {
    if run.model != LoadModel::Closed {
        return None;
    }
    let points: Vec<(f64, f64)> = run
        .steps
        .iter()
        .filter(|s| s.errors == 0)
        .map(|s| (s.offered, s.throughput_rps))
        .collect();
    UslFit::fit(&points).map(|fit| UslFit {
        sigma: crate::impact::round(fit.sigma),
        kappa: crate::impact::round(fit.kappa),
        lambda_rps: crate::impact::round(fit.lambda_rps),
        peak_concurrency: fit.peak_concurrency.map(crate::impact::round),
        peak_throughput_rps: crate::impact::round(fit.peak_throughput_rps),
    })
}

/// A fitted USL model and what it predicts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UslFit {
    /// Contention (serialization), σ.
    pub sigma: f64,
    /// Coherency (crosstalk), κ.
    pub kappa: f64,
    /// Throughput of one connection alone, λ, in requests per second.
    pub lambda_rps: f64,
    /// The concurrency at which throughput peaks (`null` when κ ≤ 0: it only levels off).
    pub peak_concurrency: Option<f64>,
    /// The highest throughput the model predicts, in requests per second.
    pub peak_throughput_rps: f64,
}

impl UslFit {
    /// Fits (concurrency, throughput) points; `None` with fewer than three usable points or a
    /// degenerate fit.
    pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
        let points: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|&(n, x)| n >= 1.0 && x > 0.0)
            .collect();
        if points.len() < 3 {
            return None;
        }
        // Normal equations for y = a + b·u + c·v.
        let mut m = [[0.0f64; 4]; 3];
        for &(n, x) in &points {
            let row = [1.0, n - 1.0, n * (n - 1.0)];
            let y = n / x;
            for i in 0..3 {
                for j in 0..3 {
                    m[i][j] += row[i] * row[j];
                }
                m[i][3] += row[i] * y;
            }
        }
        let [a, b, c] = solve(m)?;
        if a <= 0.0 {
            return None;
        }
        let (lambda, sigma, kappa) = (1.0 / a, (b / a).max(0.0), (c / a).max(0.0));
        let throughput = |n: f64| lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0));
        let (peak_concurrency, peak_throughput_rps) = if kappa > 1e-12 {
            let n = ((1.0 - sigma) / kappa).sqrt().max(1.0);
            (Some(n), throughput(n))
        } else if sigma > 1e-12 {
            (None, lambda / sigma)
        } else {
            (None, f64::INFINITY)
        };
        peak_throughput_rps.is_finite().then_some(UslFit {
            sigma,
            kappa,
            lambda_rps: lambda,
            peak_concurrency,
            peak_throughput_rps,
        })
    }
}

/// Gaussian elimination with partial pivoting on a 3×4 augmented matrix.
fn solve(mut m: [[f64; 4]; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col];
        for (row, values) in m.iter_mut().enumerate() {
            if row != col {
                let factor = values[col] / pivot_row[col];
                for (value, pivot_value) in values.iter_mut().zip(pivot_row).skip(col) {
                    *value -= factor * pivot_value;
                }
            }
        }
    }
    Some([m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usl(n: f64, sigma: f64, kappa: f64, lambda: f64) -> f64 {
        lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
    }

    #[test]
    fn recovers_the_parameters_of_exact_points() {
        let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
            .iter()
            .map(|&n| (n, usl(n, 0.05, 0.002, 100.0)))
            .collect();
        let fit = UslFit::fit(&points).expect("a fit");
        assert!(
            (fit.sigma - 0.05).abs() < 1e-6
                && (fit.kappa - 0.002).abs() < 1e-6
                && (fit.lambda_rps - 100.0).abs() < 1e-3
        );
        let peak = fit.peak_concurrency.expect("retrograde");
        assert!((peak - (0.95f64 / 0.002).sqrt()).abs() < 1e-3);
        assert!((fit.peak_throughput_rps - usl(peak, 0.05, 0.002, 100.0)).abs() < 1e-6);
    }

    #[test]
    fn a_plateau_without_retrograde_levels_off_at_lambda_over_sigma() {
        let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|&n| (n, usl(n, 0.5, 0.0, 40.0)))
            .collect();
        let fit = UslFit::fit(&points).expect("a fit");
        assert_eq!(fit.peak_concurrency, None);
        assert!((fit.peak_throughput_rps - 80.0).abs() < 1e-6);
    }

    #[test]
    fn too_few_points_give_no_fit() {
        assert_eq!(UslFit::fit(&[(1.0, 10.0), (2.0, 19.0)]), None);
    }
}
