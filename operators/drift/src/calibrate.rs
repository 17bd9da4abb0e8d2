//! Thresholds from the null distribution: what PSI and KS look like when the run-time window
//! *is* drawn from the training distribution.
//!
//! Each simulation draws, for every feature, a reference sample of `n_reference` values and a
//! window of `window` values from the stored quantile function, rebuilds the reference exactly
//! as training does (deciles as bin edges, shares, 101 quantiles) and computes the window's PSI
//! and KS against it. Both sides' sampling noise is therefore in the null distribution. The
//! window statistic is the maximum over features; the PSI and KS thresholds are its upper
//! `1 - rate/2` quantiles, so a window drawn from the training distribution is flagged with
//! probability about `rate` (features are simulated independently; real features are
//! positively correlated, which makes the maximum smaller, so the real rate is at most that).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::DriftError;
use crate::reference::{DriftReference, quantile_at, quantiles_of_sorted};
use crate::stats::{bin_shares, ks, psi};

/// Largest simulated reference size (larger references have negligible sampling noise).
const MAX_SIMULATED_REFERENCE: usize = 5_000;

/// How the thresholds are calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Number of simulated null windows, at least 100. Default 1000.
    pub simulations: usize,
    /// Seed of the simulation (the thresholds are a pure function of reference, window, rate
    /// and seed). Default 0.
    pub seed: u64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            simulations: 1000,
            seed: 0,
        }
    }
}

/// Calibrated thresholds of the window statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A window whose largest per-feature PSI is above this is drifted.
    pub psi: f64,
    /// A window whose largest per-feature KS distance is above this is drifted.
    pub ks: f64,
    /// Target probability that a window from the training distribution is flagged.
    pub target_rate: f64,
    /// Share of the simulated null windows flagged with these thresholds (PSI or KS).
    pub simulated_rate: f64,
    /// Number of simulated windows.
    pub simulations: usize,
    /// Window size calibrated for.
    pub window: usize,
}

/// Upper empirical quantile (`p` in (0, 1)) of `values` (sorted in place).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn upper_quantile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let pos = (p * (n - 1) as f64).clamp(0.0, (n - 1) as f64);
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    if i + 1 < n {
        values[i] + frac * (values[i + 1] - values[i])
    } else {
        values[n - 1]
    }
}

/// Calibrates the PSI and KS thresholds for windows of `window` strokes and a per-window
/// false-alarm rate `rate`.
///
/// # Errors
/// [`DriftError`] when the reference is invalid, `window < 10`, `rate` is not in (0, 0.5) or
/// fewer than 100 simulations are asked for.
#[allow(clippy::cast_possible_truncation)]
pub fn calibrate(
    reference: &DriftReference,
    window: usize,
    rate: f64,
    config: &CalibrationConfig,
) -> Result<Thresholds, DriftError> {
    reference.validate()?;
    let mut problems = Vec::new();
    if window < 10 {
        problems.push(format!(
            "window: found {window}, expected at least 10 strokes"
        ));
    }
    if !(rate > 0.0 && rate < 0.5) {
        problems.push(format!(
            "false_alarm_rate: found {rate}, expected a probability in (0, 0.5)"
        ));
    }
    if config.simulations < 100 {
        problems.push(format!(
            "calibration.simulations: found {}, expected at least 100",
            config.simulations
        ));
    }
    if !problems.is_empty() {
        return Err(DriftError { problems });
    }
    let n_ref = (reference.n_reference as usize).min(MAX_SIMULATED_REFERENCE);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut psi_max = Vec::with_capacity(config.simulations);
    let mut ks_max = Vec::with_capacity(config.simulations);
    let (mut ref_sample, mut win_sample) = (Vec::new(), Vec::new());
    let (mut q, mut edges, mut ref_shares, mut win_shares) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..config.simulations {
        let (mut p_max, mut k_max) = (0.0f64, 0.0f64);
        for f in &reference.features {
            draw_sorted(&f.quantiles, n_ref, &mut rng, &mut ref_sample);
            draw_sorted(&f.quantiles, window, &mut rng, &mut win_sample);
            quantiles_of_sorted(&ref_sample, &mut q);
            deciles_as_edges(&q, &mut edges);
            bin_shares(ref_sample.iter().copied(), &edges, &mut ref_shares);
            bin_shares(win_sample.iter().copied(), &edges, &mut win_shares);
            p_max = p_max.max(psi(&win_shares, &ref_shares));
            k_max = k_max.max(ks(&win_sample, &q));
        }
        psi_max.push(p_max);
        ks_max.push(k_max);
    }
    let flagged_with = |tp: f64, tk: f64| {
        psi_max
            .iter()
            .zip(&ks_max)
            .filter(|(p, k)| **p > tp || **k > tk)
            .count()
    };
    let mut sorted_psi = psi_max.clone();
    let mut sorted_ks = ks_max.clone();
    let tp = upper_quantile(&mut sorted_psi, 1.0 - rate / 2.0);
    let tk = upper_quantile(&mut sorted_ks, 1.0 - rate / 2.0);
    #[allow(clippy::cast_precision_loss)]
    let simulated_rate = flagged_with(tp, tk) as f64 / config.simulations as f64;
    Ok(Thresholds {
        psi: tp,
        ks: tk,
        target_rate: rate,
        simulated_rate,
        simulations: config.simulations,
        window,
    })
}

/// Bin edges as training builds them: the 10 %, ..., 90 % quantiles, deduplicated.
pub(crate) fn deciles_as_edges(quantiles: &[f64], edges: &mut Vec<f64>) {
    edges.clear();
    edges.extend((1..10).filter_map(|k| quantiles.get(k * 10).copied()));
    edges.dedup();
}

fn draw_sorted(quantiles: &[f64], n: usize, rng: &mut ChaCha8Rng, out: &mut Vec<f64>) {
    out.clear();
    out.extend((0..n).map(|_| quantile_at(quantiles, rng.random::<f64>())));
    out.sort_by(f64::total_cmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::FeatureReference;

    pub(crate) fn normal_reference(features: usize) -> DriftReference {
        // Standard normal quantiles at 0..100 % (tails clipped at +/-3).
        let q: Vec<f64> = (0..=100)
            .map(|k| {
                let u = (f64::from(k) / 100.0).clamp(0.00135, 0.99865);
                crate::testing::normal_quantile(u)
            })
            .collect();
        let mut edges = Vec::new();
        deciles_as_edges(&q, &mut edges);
        DriftReference {
            format: 1,
            n_reference: 600,
            features: (0..features)
                .map(|i| FeatureReference {
                    name: format!("f{i}"),
                    edges: edges.clone(),
                    proportions: vec![0.1; 10],
                    quantiles: q.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn thresholds_hit_the_target_rate_on_the_simulation() {
        let r = normal_reference(5);
        let t = calibrate(&r, 200, 0.05, &CalibrationConfig::default()).unwrap();
        assert!(t.psi > 0.0 && t.ks > 0.0);
        // Union of two 2.5 % tails: between 2.5 % and 5 %.
        assert!(
            (0.02..=0.055).contains(&t.simulated_rate),
            "{}",
            t.simulated_rate
        );
        // Bigger windows, less noise: lower thresholds.
        let big = calibrate(&r, 800, 0.05, &CalibrationConfig::default()).unwrap();
        assert!(big.psi < t.psi && big.ks < t.ks, "{big:?} vs {t:?}");
        // Deterministic.
        assert_eq!(
            t,
            calibrate(&r, 200, 0.05, &CalibrationConfig::default()).unwrap()
        );
    }

    #[test]
    fn bad_parameters_are_all_reported() {
        let r = normal_reference(1);
        let e = calibrate(
            &r,
            5,
            0.7,
            &CalibrationConfig {
                simulations: 10,
                seed: 0,
            },
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
    }
}
