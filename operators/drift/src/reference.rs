//! The training-time reference distribution of every feature: the `drift:` section of a model
//! directory's `model.yml`, written by `tools/python/forgeline_ml/drift_reference.py`.
//!
//! ```yaml
//! drift:
//!   format: 1
//!   n_reference: 600            # training strokes the reference was computed from
//!   features:
//!     - name: rms_log10_g
//!       edges: [-0.22, -0.21, ...]        # interior PSI bin edges (training deciles, deduplicated)
//!       proportions: [0.1, 0.1, ...]      # share of training strokes per bin (len(edges) + 1)
//!       quantiles: [-0.25, ..., -0.15]    # 101 quantiles, 0 % .. 100 % (the CDF, for KS)
//! ```
//!
//! A value `x` falls in bin `i` = the number of edges `<= x` (numpy's
//! `searchsorted(edges, x, side="right")`).

use serde::{Deserialize, Serialize};

use crate::error::DriftError;

/// Format of the `drift:` section understood here.
pub const REFERENCE_FORMAT: u32 = 1;
/// Number of points of the stored quantile function (0 %, 1 %, ..., 100 %).
pub const QUANTILE_POINTS: usize = 101;

/// The reference distribution of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureReference {
    /// Feature name (as in the model's `inputs[0].features`).
    pub name: String,
    /// Interior bin edges, strictly increasing (may be empty for a constant feature: one bin).
    pub edges: Vec<f64>,
    /// Share of the training strokes in each bin; `edges.len() + 1` values summing to 1.
    pub proportions: Vec<f64>,
    /// The quantile function at 0 %, 1 %, ..., 100 % ([`QUANTILE_POINTS`] values,
    /// non-decreasing).
    pub quantiles: Vec<f64>,
}

/// The reference of every feature, in the order of the feature vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftReference {
    /// Format version; must be [`REFERENCE_FORMAT`].
    pub format: u32,
    /// Number of training strokes the reference was computed from (the calibration simulates
    /// references of this size, so their sampling noise is part of the null distribution).
    pub n_reference: u64,
    /// One entry per feature, in feature-vector order.
    pub features: Vec<FeatureReference>,
}

impl DriftReference {
    /// Checks every feature and reports every problem at once.
    ///
    /// # Errors
    /// [`DriftError`] with one line per problem (field path, value, expectation).
    pub fn validate(&self) -> Result<(), DriftError> {
        let mut p = Vec::new();
        if self.format != REFERENCE_FORMAT {
            p.push(format!(
                "drift.format: found {}, expected {REFERENCE_FORMAT}",
                self.format
            ));
        }
        if self.n_reference < 10 {
            p.push(format!(
                "drift.n_reference: found {}, expected at least 10 training strokes",
                self.n_reference
            ));
        }
        if self.features.is_empty() {
            p.push("drift.features: empty, expected one entry per feature".into());
        }
        for (i, f) in self.features.iter().enumerate() {
            let at = format!("drift.features[{i}] ({})", f.name);
            if !f.edges.iter().all(|e| e.is_finite()) || !f.edges.windows(2).all(|w| w[0] < w[1]) {
                p.push(format!(
                    "{at}.edges: expected finite, strictly increasing values, found {:?}",
                    f.edges
                ));
            }
            let sum: f64 = f.proportions.iter().sum();
            if f.proportions.len() != f.edges.len() + 1 {
                p.push(format!(
                    "{at}.proportions: found {} values, expected len(edges) + 1 = {}",
                    f.proportions.len(),
                    f.edges.len() + 1
                ));
            } else if !f.proportions.iter().all(|x| (0.0..=1.0).contains(x))
                || (sum - 1.0).abs() > 1e-6
            {
                p.push(format!(
                    "{at}.proportions: expected shares in [0, 1] summing to 1, found sum {sum}"
                ));
            }
            if f.quantiles.len() != QUANTILE_POINTS {
                p.push(format!(
                    "{at}.quantiles: found {} values, expected {QUANTILE_POINTS} (0 %..100 %)",
                    f.quantiles.len()
                ));
            } else if !f.quantiles.iter().all(|q| q.is_finite())
                || !f.quantiles.windows(2).all(|w| w[0] <= w[1])
            {
                p.push(format!(
                    "{at}.quantiles: expected finite, non-decreasing values"
                ));
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(DriftError { problems: p })
        }
    }
}

impl DriftReference {
    /// The reference of training `rows` (one slice of raw feature values per stroke, in
    /// `names` order), built exactly as `drift_reference.py` builds it: 101 quantiles, the
    /// deciles as edges (deduplicated), the share of rows per bin. For tests and tools; the
    /// shipped models get theirs from training.
    ///
    /// # Errors
    /// [`DriftError`] when a row's length differs from `names`, a value is not finite, or
    /// there are fewer than 10 rows.
    #[allow(clippy::cast_precision_loss)]
    pub fn from_rows(names: &[String], rows: &[Vec<f32>]) -> Result<Self, DriftError> {
        let mut problems = Vec::new();
        if rows.len() < 10 {
            problems.push(format!(
                "{} training rows, expected at least 10",
                rows.len()
            ));
        }
        for (i, r) in rows.iter().enumerate() {
            if r.len() != names.len() {
                problems.push(format!(
                    "row {i}: {} values, expected {}",
                    r.len(),
                    names.len()
                ));
            } else if !r.iter().all(|v| v.is_finite()) {
                problems.push(format!("row {i}: non-finite value"));
            }
        }
        if !problems.is_empty() {
            return Err(DriftError { problems });
        }
        let mut features = Vec::with_capacity(names.len());
        let mut column = Vec::with_capacity(rows.len());
        for (j, name) in names.iter().enumerate() {
            column.clear();
            column.extend(rows.iter().map(|r| f64::from(r[j])));
            column.sort_by(f64::total_cmp);
            let mut quantiles = Vec::new();
            quantiles_of_sorted(&column, &mut quantiles);
            let mut edges = Vec::new();
            crate::calibrate::deciles_as_edges(&quantiles, &mut edges);
            let mut proportions = Vec::new();
            crate::stats::bin_shares(column.iter().copied(), &edges, &mut proportions);
            features.push(FeatureReference {
                name: name.clone(),
                edges,
                proportions,
                quantiles,
            });
        }
        Ok(Self {
            format: REFERENCE_FORMAT,
            n_reference: rows.len() as u64,
            features,
        })
    }
}

impl FeatureReference {
    /// The PSI bin of `x`: the number of edges `<= x`.
    #[must_use]
    pub fn bin(&self, x: f64) -> usize {
        bin_of(&self.edges, x)
    }

    /// The reference CDF at `x`, `P(X <= x)`, linear between the stored quantiles.
    #[must_use]
    pub fn cdf(&self, x: f64) -> f64 {
        cdf_at(&self.quantiles, x, false)
    }

    /// The left limit of the reference CDF at `x`, `P(X < x)`.
    #[must_use]
    pub fn cdf_below(&self, x: f64) -> f64 {
        cdf_at(&self.quantiles, x, true)
    }

    /// The reference quantile function at `u` in [0, 1] (inverse CDF, linear between points).
    #[must_use]
    pub fn quantile(&self, u: f64) -> f64 {
        quantile_at(&self.quantiles, u)
    }
}

/// The bin of `x` for interior `edges`: the number of edges `<= x`.
#[must_use]
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e <= x)
}

/// CDF of a piecewise-linear quantile function `q` (equally spaced probabilities 0..=1) at `x`;
/// `strict`: `P(X < x)` instead of `P(X <= x)`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn cdf_at(q: &[f64], x: f64, strict: bool) -> f64 {
    let n = q.len();
    if n < 2 {
        return 0.0;
    }
    let k = if strict {
        q.partition_point(|v| *v < x)
    } else {
        q.partition_point(|v| *v <= x)
    };
    if k == 0 {
        return 0.0;
    }
    if k == n {
        return 1.0;
    }
    // q[k-1] (<= or <) x (< or <=) q[k]; strictly q[k-1] < q[k] in both cases.
    let lo = q[k - 1];
    let hi = q[k];
    let frac = if hi > lo { (x - lo) / (hi - lo) } else { 0.0 };
    ((k - 1) as f64 + frac.clamp(0.0, 1.0)) / (n - 1) as f64
}

/// Quantile function (linear between equally spaced points) at `u` in [0, 1].
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub(crate) fn quantile_at(q: &[f64], u: f64) -> f64 {
    let n = q.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = u.clamp(0.0, 1.0) * (n - 1) as f64;
    let i = (pos.floor() as usize).min(n - 1);
    if i + 1 >= n {
        return q[n - 1];
    }
    let frac = pos - i as f64;
    q[i] + frac * (q[i + 1] - q[i])
}

/// Empirical quantiles of sorted `values` at 0 %, 1 %, ..., 100 % (numpy's default linear
/// interpolation), written into `out`.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub(crate) fn quantiles_of_sorted(sorted: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let n = sorted.len();
    if n == 0 {
        return;
    }
    for k in 0..QUANTILE_POINTS {
        let pos = k as f64 / (QUANTILE_POINTS - 1) as f64 * (n - 1) as f64;
        let i = pos.floor() as usize;
        let frac = pos - i as f64;
        let v = if i + 1 < n {
            sorted[i] + frac * (sorted[i + 1] - sorted[i])
        } else {
            sorted[n - 1]
        };
        out.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_ref() -> FeatureReference {
        // U(0, 1): quantiles k/100, deciles as edges.
        FeatureReference {
            name: "u".into(),
            edges: (1..10).map(|k| f64::from(k) / 10.0).collect(),
            proportions: vec![0.1; 10],
            quantiles: (0..=100).map(|k| f64::from(k) / 100.0).collect(),
        }
    }

    #[test]
    fn bins_count_edges_at_or_below() {
        let r = uniform_ref();
        assert_eq!(r.bin(-1.0), 0);
        assert_eq!(r.bin(0.1), 1); // on an edge: the upper bin (numpy side="right")
        assert_eq!(r.bin(0.55), 5);
        assert_eq!(r.bin(7.0), 9);
    }

    #[test]
    fn cdf_and_quantile_of_uniform() {
        let r = uniform_ref();
        assert!((r.cdf(0.255) - 0.255).abs() < 1e-12);
        assert_eq!(r.cdf(-0.1), 0.0);
        assert_eq!(r.cdf(1.0), 1.0);
        assert!((r.quantile(0.375) - 0.375).abs() < 1e-12);
    }

    #[test]
    fn cdf_of_a_constant_feature_jumps_at_the_constant() {
        let c = vec![1.0; QUANTILE_POINTS];
        assert_eq!(cdf_at(&c, 1.0, false), 1.0);
        assert_eq!(cdf_at(&c, 1.0, true), 0.0);
        assert_eq!(cdf_at(&c, 0.5, false), 0.0);
        assert_eq!(cdf_at(&c, 2.0, true), 1.0);
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut r = DriftReference {
            format: 2,
            n_reference: 600,
            features: vec![uniform_ref()],
        };
        r.features[0].proportions.pop();
        r.features[0].quantiles[3] = -5.0;
        let e = r.validate().unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
        assert!(e.to_string().contains("drift.format: found 2"));
        assert!(e.to_string().contains("drift.features[0] (u).proportions"));
        assert!(e.to_string().contains("non-decreasing"));
    }

    #[test]
    fn quantiles_of_sorted_match_numpy_linear() {
        // numpy.quantile([0, 1, 2, 3, 4], 0.37) == 1.48
        let mut out = Vec::new();
        quantiles_of_sorted(&[0.0, 1.0, 2.0, 3.0, 4.0], &mut out);
        assert_eq!(out.len(), QUANTILE_POINTS);
        assert!((out[37] - 1.48).abs() < 1e-12);
        assert_eq!(out[100], 4.0);
    }
}
