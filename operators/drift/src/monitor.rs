//! The run-time side: a sliding window of the last `window` strokes per feature, compared with
//! the reference every `step` strokes, and a persistent, hysteretic drift alert.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::calibrate::{CalibrationConfig, Thresholds, calibrate};
use crate::error::{DriftError, ShapeMismatch};
use crate::reference::DriftReference;
use crate::stats::{bin_shares, ks, psi};

/// Configuration of the drift monitor. Every field has a default; unknown keys are refused.
///
/// ```yaml
/// window: 200            # strokes per window
/// step: 200              # evaluate every 200 accepted strokes (non-overlapping windows)
/// false_alarm_rate: 0.05 # per window, before persistence
/// persist: 3             # alert after 3 drifted windows in a row
/// clear_after: 3         # clear after 3 quiet windows in a row ...
/// clear_ratio: 0.8       # ... quiet = both statistics below 0.8 x their threshold
/// calibration: { simulations: 1000, seed: 0 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Strokes per window, at least 10. Default 200 (11 minutes at 18 strokes/min).
    pub window: usize,
    /// Accepted strokes between two evaluations, 1..=`window`. Default 0 = `window`
    /// (non-overlapping windows, so consecutive evaluations are independent under no drift).
    pub step: usize,
    /// Probability that a window drawn from the training distribution is flagged as drifted
    /// (calibrated, see [`crate::calibrate`]), in (0, 0.5). Default 0.05.
    pub false_alarm_rate: f64,
    /// Drifted windows in a row that raise the alert, at least 1. Default 3 (with independent
    /// windows the false-alert probability per evaluation is about `false_alarm_rate^persist`).
    pub persist: u32,
    /// Quiet windows in a row that clear a raised alert, at least 1. Default 3.
    pub clear_after: u32,
    /// A window is quiet when both statistics are below `clear_ratio` x their thresholds, in
    /// (0, 1] (hysteresis). Default 0.8.
    pub clear_ratio: f64,
    /// Threshold calibration. Default: 1000 simulations, seed 0.
    pub calibration: CalibrationConfig,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            window: 200,
            step: 0,
            false_alarm_rate: 0.05,
            persist: 3,
            clear_after: 3,
            clear_ratio: 0.8,
            calibration: CalibrationConfig::default(),
        }
    }
}

impl DriftConfig {
    /// The evaluation step in strokes (`step`, or `window` when 0).
    #[must_use]
    pub fn effective_step(&self) -> usize {
        if self.step == 0 {
            self.window
        } else {
            self.step
        }
    }

    /// Every problem of the config (field, value, expectation); empty when valid.
    #[must_use]
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if self.window < 10 {
            p.push((
                "window".into(),
                format!("found {}, expected at least 10 strokes", self.window),
            ));
        }
        if self.step > self.window {
            p.push((
                "step".into(),
                format!(
                    "found {}, expected 0 (= window) or 1..={}",
                    self.step, self.window
                ),
            ));
        }
        if !(self.false_alarm_rate > 0.0 && self.false_alarm_rate < 0.5) {
            p.push((
                "false_alarm_rate".into(),
                format!(
                    "found {}, expected a probability in (0, 0.5)",
                    self.false_alarm_rate
                ),
            ));
        }
        if self.persist == 0 {
            p.push(("persist".into(), "found 0, expected at least 1".into()));
        }
        if self.clear_after == 0 {
            p.push(("clear_after".into(), "found 0, expected at least 1".into()));
        }
        if !(self.clear_ratio > 0.0 && self.clear_ratio <= 1.0) {
            p.push((
                "clear_ratio".into(),
                format!("found {}, expected 0 < ratio <= 1", self.clear_ratio),
            ));
        }
        if self.calibration.simulations < 100 {
            p.push((
                "calibration.simulations".into(),
                format!(
                    "found {}, expected at least 100",
                    self.calibration.simulations
                ),
            ));
        }
        p
    }
}

/// The drift of one feature in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDrift {
    /// Feature name.
    pub name: String,
    /// PSI of the window against the reference bins.
    pub psi: f64,
    /// KS distance of the window to the reference CDF.
    pub ks: f64,
}

/// Whether the alert was raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    /// `persist` drifted windows in a row.
    Raise,
    /// `clear_after` quiet windows in a row after a raise.
    Clear,
}

impl AlertChange {
    /// `raise` / `clear`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raise => "raise",
            Self::Clear => "clear",
        }
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    /// Stroke number of the last stroke in the window.
    pub seq: u64,
    /// Evaluation number (0-based).
    pub evaluation: u64,
    /// Per feature, in feature-vector order.
    pub features: Vec<FeatureDrift>,
    /// Largest PSI and the index of its feature.
    pub psi_max: (f64, usize),
    /// Largest KS distance and the index of its feature.
    pub ks_max: (f64, usize),
    /// Whether this window is drifted (a statistic above its threshold).
    pub drifted: bool,
    /// Drifted windows in a row, this one included.
    pub drifted_in_row: u32,
    /// Whether the drift alert is active after this window.
    pub alert_active: bool,
    /// Set when this window raised or cleared the alert.
    pub alert: Option<AlertChange>,
}

impl WindowReport {
    /// Up to `n` features with the largest PSI, largest first: `name psi=.. ks=..`.
    #[must_use]
    pub fn top_features(&self, n: usize) -> String {
        let mut idx: Vec<usize> = (0..self.features.len()).collect();
        idx.sort_by(|a, b| self.features[*b].psi.total_cmp(&self.features[*a].psi));
        idx.iter()
            .take(n)
            .map(|&i| {
                let f = &self.features[i];
                format!("{} psi={:.3} ks={:.3}", f.name, f.psi, f.ks)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sliding-window drift monitor over the features of a stroke stream.
#[derive(Debug, Clone)]
pub struct DriftMonitor {
    reference: DriftReference,
    config: DriftConfig,
    thresholds: Thresholds,
    windows: Vec<VecDeque<f64>>,
    since_eval: usize,
    evaluations: u64,
    drifted_in_row: u32,
    quiet_in_row: u32,
    active: bool,
    skipped: u64,
    sorted: Vec<f64>,
    shares: Vec<f64>,
}

impl DriftMonitor {
    /// Validates reference and config and calibrates the thresholds.
    ///
    /// # Errors
    /// [`DriftError`] listing every problem of the reference and the config.
    pub fn new(reference: DriftReference, config: DriftConfig) -> Result<Self, DriftError> {
        let mut problems: Vec<String> = config
            .problems()
            .into_iter()
            .map(|(f, r)| format!("{f}: {r}"))
            .collect();
        if let Err(e) = reference.validate() {
            problems.extend(e.problems);
        }
        if !problems.is_empty() {
            return Err(DriftError { problems });
        }
        let thresholds = calibrate(
            &reference,
            config.window,
            config.false_alarm_rate,
            &config.calibration,
        )?;
        let windows = vec![VecDeque::with_capacity(config.window + 1); reference.features.len()];
        Ok(Self {
            reference,
            config,
            thresholds,
            windows,
            since_eval: 0,
            evaluations: 0,
            drifted_in_row: 0,
            quiet_in_row: 0,
            active: false,
            skipped: 0,
            sorted: Vec::new(),
            shares: Vec::new(),
        })
    }

    /// The calibrated thresholds.
    #[must_use]
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    /// Number of features monitored.
    #[must_use]
    pub fn feature_count(&self) -> usize {
        self.reference.features.len()
    }

    /// Strokes skipped so far (data-quality flags set or a non-finite value).
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the drift alert is active.
    #[must_use]
    pub fn alert_active(&self) -> bool {
        self.active
    }

    /// Adds stroke `seq`'s feature `values`. A stroke with `quality_ok == false` or any
    /// non-finite value is skipped (a sensor fault is not drift). Returns a report when this
    /// stroke completes an evaluation step.
    ///
    /// # Errors
    /// [`ShapeMismatch`] when `values` does not have one value per reference feature.
    pub fn push(
        &mut self,
        seq: u64,
        values: &[f32],
        quality_ok: bool,
    ) -> Result<Option<WindowReport>, ShapeMismatch> {
        if values.len() != self.windows.len() {
            return Err(ShapeMismatch {
                seq,
                found: values.len(),
                expected: self.windows.len(),
            });
        }
        if !quality_ok || !values.iter().all(|v| v.is_finite()) {
            self.skipped += 1;
            return Ok(None);
        }
        for (w, &v) in self.windows.iter_mut().zip(values) {
            if w.len() == self.config.window {
                w.pop_front();
            }
            w.push_back(f64::from(v));
        }
        self.since_eval += 1;
        let full = self
            .windows
            .first()
            .is_some_and(|w| w.len() == self.config.window);
        if !full || self.since_eval < self.config.effective_step() {
            return Ok(None);
        }
        self.since_eval = 0;
        Ok(Some(self.evaluate(seq)))
    }

    fn evaluate(&mut self, seq: u64) -> WindowReport {
        let mut features = Vec::with_capacity(self.windows.len());
        let (mut psi_max, mut ks_max) = ((0.0f64, 0usize), (0.0f64, 0usize));
        for (i, (w, f)) in self
            .windows
            .iter()
            .zip(&self.reference.features)
            .enumerate()
        {
            self.sorted.clear();
            self.sorted.extend(w.iter().copied());
            self.sorted.sort_by(f64::total_cmp);
            bin_shares(self.sorted.iter().copied(), &f.edges, &mut self.shares);
            let p = psi(&self.shares, &f.proportions);
            let k = ks(&self.sorted, &f.quantiles);
            if p > psi_max.0 {
                psi_max = (p, i);
            }
            if k > ks_max.0 {
                ks_max = (k, i);
            }
            features.push(FeatureDrift {
                name: f.name.clone(),
                psi: p,
                ks: k,
            });
        }
        let t = &self.thresholds;
        let drifted = psi_max.0 > t.psi || ks_max.0 > t.ks;
        let quiet = psi_max.0 < t.psi * self.config.clear_ratio
            && ks_max.0 < t.ks * self.config.clear_ratio;
        self.drifted_in_row = if drifted { self.drifted_in_row + 1 } else { 0 };
        self.quiet_in_row = if quiet { self.quiet_in_row + 1 } else { 0 };
        let alert = if !self.active && self.drifted_in_row >= self.config.persist {
            self.active = true;
            Some(AlertChange::Raise)
        } else if self.active && self.quiet_in_row >= self.config.clear_after {
            self.active = false;
            Some(AlertChange::Clear)
        } else {
            None
        };
        let report = WindowReport {
            seq,
            evaluation: self.evaluations,
            features,
            psi_max,
            ks_max,
            drifted,
            drifted_in_row: self.drifted_in_row,
            alert_active: self.active,
            alert,
        };
        self.evaluations += 1;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::deciles_as_edges;
    use crate::reference::FeatureReference;
    use rand::Rng;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn reference() -> DriftReference {
        let q: Vec<f64> = (0..=100)
            .map(|k| {
                crate::testing::normal_quantile((f64::from(k) / 100.0).clamp(0.00135, 0.99865))
            })
            .collect();
        let mut edges = Vec::new();
        deciles_as_edges(&q, &mut edges);
        DriftReference {
            format: 1,
            n_reference: 2000,
            features: (0..3)
                .map(|i| FeatureReference {
                    name: format!("f{i}"),
                    edges: edges.clone(),
                    proportions: vec![0.1; 10],
                    quantiles: q.clone(),
                })
                .collect(),
        }
    }

    fn small_config() -> DriftConfig {
        DriftConfig {
            window: 100,
            persist: 2,
            clear_after: 2,
            ..DriftConfig::default()
        }
    }

    fn normal(rng: &mut ChaCha8Rng, shift: f64) -> f32 {
        // Box-Muller
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        #[allow(clippy::cast_possible_truncation)]
        let v = ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() + shift) as f32;
        v
    }

    #[test]
    fn raises_after_persist_drifted_windows_and_clears_with_hysteresis() {
        let mut m = DriftMonitor::new(reference(), small_config()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut reports = Vec::new();
        for seq in 0..2000u64 {
            let shift = if (600..1200).contains(&seq) { 1.0 } else { 0.0 };
            let v = [
                normal(&mut rng, 0.0),
                normal(&mut rng, shift),
                normal(&mut rng, 0.0),
            ];
            if let Some(r) = m.push(seq, &v, true).unwrap() {
                reports.push(r);
            }
        }
        assert_eq!(reports.len(), 20);
        let raised: Vec<u64> = reports
            .iter()
            .filter(|r| r.alert == Some(AlertChange::Raise))
            .map(|r| r.seq)
            .collect();
        let cleared: Vec<u64> = reports
            .iter()
            .filter(|r| r.alert == Some(AlertChange::Clear))
            .map(|r| r.seq)
            .collect();
        // Shift from stroke 600: windows ending 699 and 799 are drifted -> raise at 799.
        assert_eq!(raised, vec![799], "{reports:#?}");
        assert_eq!(cleared, vec![1399]);
        let r = reports.iter().find(|r| r.seq == 799).unwrap();
        assert_eq!(r.psi_max.1, 1, "the shifted feature is named");
        assert!(r.top_features(1).starts_with("f1 psi="));
    }

    #[test]
    fn sensor_faults_are_skipped_and_shape_is_checked() {
        let mut m = DriftMonitor::new(reference(), small_config()).unwrap();
        assert_eq!(m.push(0, &[0.0, f32::NAN, 0.0], true).unwrap(), None);
        assert_eq!(m.push(1, &[0.0, 0.0, 0.0], false).unwrap(), None);
        assert_eq!(m.skipped(), 2);
        let e = m.push(2, &[0.0], true).unwrap_err();
        assert!(e.to_string().contains("1 values") && e.to_string().contains("3 features"));
    }

    #[test]
    fn bad_config_lists_every_problem() {
        let c = DriftConfig {
            window: 5,
            step: 9,
            persist: 0,
            clear_ratio: 2.0,
            ..DriftConfig::default()
        };
        let e = DriftMonitor::new(reference(), c).unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
    }
}
