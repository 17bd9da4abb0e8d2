//! Typed configuration of the feature extractor and its validation.
//!
//! Every field has a documented default so that an empty YAML mapping (`{}`) is a working
//! configuration for the stamping press (10 kHz, 2,000-sample strokes). Validation reports every
//! problem at once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A frequency band `[lo_hz, hi_hz)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Lower edge, Hz (inclusive).
    pub lo_hz: f32,
    /// Upper edge, Hz (exclusive).
    pub hi_hz: f32,
}

impl Band {
    /// The band `[lo_hz, hi_hz)`.
    pub const fn new(lo_hz: f32, hi_hz: f32) -> Self {
        Self { lo_hz, hi_hz }
    }
}

/// Feature extraction settings (`press-v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Expected samples per stroke (default 2000). Sets the FFT length (next power of two, 2048)
    /// and the `wrong_length` check.
    pub expected_samples: usize,
    /// Expected sample rate, Hz (default 10000). Used for the `wrong_rate` check, and for the
    /// analysis when the stroke's own rate is not a positive finite number.
    pub expected_sample_rate_hz: f32,
    /// Bands whose log energy is a feature (default: 0-100, 100-200, 200-400, 400-550, 550-750,
    /// 750-1000, 1000-1500, 1500-2500, 2500-3500, 3500-5000 Hz).
    pub bands: Vec<Band>,
    /// The band where healthy strokes put their energy; its share of the total is a feature
    /// (default 200-400 Hz).
    pub nominal_band: Band,
    /// Number of spectral peaks reported (frequency and relative level): the strongest ones,
    /// listed in increasing frequency so that two modes of similar level swapping rank do not
    /// swap features (default 3).
    pub spectral_peaks: usize,
    /// Peaks below this frequency are ignored (default 20 Hz: skips DC and leakage).
    pub peak_min_hz: f32,
    /// Bearing outer-race fault frequency (BPFO), Hz (default 100).
    pub bpfo_hz: f32,
    /// Half-width of the search window around the BPFO and each harmonic, Hz (default 20, so
    /// 80-120 Hz around the fundamental).
    pub bpfo_tolerance_hz: f32,
    /// Number of BPFO harmonics reported, fundamental included (default 3).
    pub bpfo_harmonics: usize,
    /// Band demodulated for the envelope spectrum: the structural resonance that bearing impulses
    /// excite (default 2000-4500 Hz).
    pub envelope_band: Band,
    /// Band whose envelope locates impacts (default 1000-2500 Hz): an impact is a short
    /// broadband pulse, while the 200-400 Hz modes ring for tens of ms and beat with each other,
    /// which would look like extra impacts in a broadband envelope.
    pub impact_band: Band,
    /// Moving-average length applied to the impact-band envelope, ms (default 1).
    pub envelope_smoothing_ms: f32,
    /// An envelope peak counts as an impact when it is at least this fraction of the largest
    /// peak (default 0.3).
    pub impact_peak_fraction: f32,
    /// An impact peak must be the largest envelope value within +/- this many ms (default 10).
    pub impact_min_separation_ms: f32,
    /// Start of the "after the main impact" window, ms after the main impact (default 15). The
    /// post-impact energy is measured on the broadband envelope (ring-down and second hits).
    pub post_impact_start_ms: f32,
    /// Length of the "after the main impact" window, ms (default 60: covers a second hit
    /// 20-60 ms after the first).
    pub post_impact_window_ms: f32,
    /// Data-quality checks.
    pub quality: QualityConfig,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            expected_samples: 2000,
            expected_sample_rate_hz: 10_000.0,
            bands: DEFAULT_BANDS.to_vec(),
            nominal_band: Band::new(200.0, 400.0),
            spectral_peaks: 3,
            peak_min_hz: 20.0,
            bpfo_hz: 100.0,
            bpfo_tolerance_hz: 20.0,
            bpfo_harmonics: 3,
            envelope_band: Band::new(2000.0, 4500.0),
            impact_band: Band::new(1000.0, 2500.0),
            envelope_smoothing_ms: 1.0,
            impact_peak_fraction: 0.3,
            impact_min_separation_ms: 10.0,
            post_impact_start_ms: 15.0,
            post_impact_window_ms: 60.0,
            quality: QualityConfig::default(),
        }
    }
}

/// The default analysis bands (0-5 kHz, finer where the fault families live).
pub const DEFAULT_BANDS: [Band; 10] = [
    Band::new(0.0, 100.0),
    Band::new(100.0, 200.0),
    Band::new(200.0, 400.0),
    Band::new(400.0, 550.0),
    Band::new(550.0, 750.0),
    Band::new(750.0, 1000.0),
    Band::new(1000.0, 1500.0),
    Band::new(1500.0, 2500.0),
    Band::new(2500.0, 3500.0),
    Band::new(3500.0, 5000.0),
];

/// Data-quality check settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Sensor full scale, g (default 50).
    pub full_scale_g: f32,
    /// A sample clips when `|x| >= full_scale_g * (1 - clip_margin)` (default 0.01, i.e. 1 %).
    pub clip_margin: f32,
    /// `clipping` is set when at least this many samples clip (default 3).
    pub clip_min_samples: usize,
    /// `stuck` is set when a run of identical non-zero values is longer than this (default 20).
    pub stuck_run_samples: usize,
    /// `stuck` is also set when the standard deviation is below this, g (default 1e-4).
    pub stuck_min_std_g: f32,
    /// `dropout` is set by a run of exact zeros at least this long (default 10).
    pub dropout_run_samples: usize,
    /// Relative tolerance of the `wrong_rate` check (default 0.001, i.e. 0.1 %).
    pub sample_rate_tolerance: f32,
    /// Length of the first and last segments compared by the `offset` check, samples
    /// (default 150 = 15 ms: shorter than the quiet time before the impact, which the
    /// simulator puts at 18-22 ms; cut to half the stroke for strokes shorter than two
    /// segments).
    pub offset_segment_samples: usize,
    /// `offset` is set when the mean of the first and last segments differ by more than this, g
    /// (default 0.5).
    pub offset_jump_g: f32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            full_scale_g: 50.0,
            clip_margin: 0.01,
            clip_min_samples: 3,
            stuck_run_samples: 20,
            stuck_min_std_g: 1e-4,
            dropout_run_samples: 10,
            sample_rate_tolerance: 0.001,
            offset_segment_samples: 150,
            offset_jump_g: 0.5,
        }
    }
}

/// One thing wrong with a [`FeatureConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// The field, as a path (e.g. `bands[2].hi_hz`, `quality.full_scale_g`).
    pub field: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

/// A [`FeatureConfig`] that cannot be used; lists every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid vibration feature config ({} problem(s)): {}",
    .problems.len(),
    .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct ConfigError {
    /// Every problem found, in field order.
    pub problems: Vec<ConfigProblem>,
}

/// Collects problems while validating.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigProblem {
            field: field.into(),
            problem: problem.into(),
        });
    }

    fn positive(&mut self, field: &str, value: f32) {
        if !(value.is_finite() && value > 0.0) {
            self.push(field, format!("is {value}; expected a finite number > 0"));
        }
    }

    fn fraction(&mut self, field: &str, value: f32) {
        if !(value.is_finite() && value > 0.0 && value < 1.0) {
            self.push(
                field,
                format!("is {value}; expected a fraction strictly between 0 and 1"),
            );
        }
    }

    fn band(&mut self, field: &str, band: Band, nyquist: f32) {
        if !(band.lo_hz.is_finite() && band.hi_hz.is_finite()) {
            self.push(
                field,
                format!("is {}-{} Hz; expected finite edges", band.lo_hz, band.hi_hz),
            );
        } else if band.lo_hz < 0.0 || band.hi_hz <= band.lo_hz {
            self.push(
                field,
                format!(
                    "is {}-{} Hz; expected 0 <= lo_hz < hi_hz",
                    band.lo_hz, band.hi_hz
                ),
            );
        } else if band.lo_hz >= nyquist {
            self.push(
                field,
                format!(
                    "starts at {} Hz, at or above the Nyquist frequency {nyquist} Hz of \
                     expected_sample_rate_hz",
                    band.lo_hz
                ),
            );
        }
    }
}

impl FeatureConfig {
    /// Checks every field; returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if self.expected_samples < 16 {
            p.push(
                "expected_samples",
                format!("is {}; expected at least 16", self.expected_samples),
            );
        } else if self.expected_samples > 1 << 20 {
            p.push(
                "expected_samples",
                format!("is {}; expected at most 1048576", self.expected_samples),
            );
        }
        p.positive("expected_sample_rate_hz", self.expected_sample_rate_hz);
        let nyquist = self.expected_sample_rate_hz / 2.0;
        if self.bands.is_empty() {
            p.push("bands", "is empty; expected at least one band");
        }
        for (i, band) in self.bands.iter().enumerate() {
            p.band(&format!("bands[{i}]"), *band, nyquist);
        }
        p.band("nominal_band", self.nominal_band, nyquist);
        if !(self.peak_min_hz.is_finite() && self.peak_min_hz >= 0.0) {
            p.push(
                "peak_min_hz",
                format!("is {}; expected a finite number >= 0", self.peak_min_hz),
            );
        }
        p.positive("bpfo_hz", self.bpfo_hz);
        p.positive("bpfo_tolerance_hz", self.bpfo_tolerance_hz);
        if self.bpfo_tolerance_hz.is_finite()
            && self.bpfo_hz.is_finite()
            && self.bpfo_tolerance_hz >= self.bpfo_hz / 2.0
        {
            p.push(
                "bpfo_tolerance_hz",
                format!(
                    "is {}; expected less than half of bpfo_hz ({}) so harmonic windows do not overlap",
                    self.bpfo_tolerance_hz, self.bpfo_hz
                ),
            );
        }
        if self.bpfo_harmonics == 0 || self.bpfo_harmonics > 10 {
            p.push(
                "bpfo_harmonics",
                format!("is {}; expected 1 to 10", self.bpfo_harmonics),
            );
        }
        if self.spectral_peaks > 10 {
            p.push(
                "spectral_peaks",
                format!("is {}; expected 0 to 10", self.spectral_peaks),
            );
        }
        p.band("envelope_band", self.envelope_band, nyquist);
        p.band("impact_band", self.impact_band, nyquist);
        p.positive("envelope_smoothing_ms", self.envelope_smoothing_ms);
        p.fraction("impact_peak_fraction", self.impact_peak_fraction);
        p.positive("impact_min_separation_ms", self.impact_min_separation_ms);
        p.positive("post_impact_start_ms", self.post_impact_start_ms);
        p.positive("post_impact_window_ms", self.post_impact_window_ms);

        let q = &self.quality;
        p.positive("quality.full_scale_g", q.full_scale_g);
        p.fraction("quality.clip_margin", q.clip_margin);
        if q.clip_min_samples == 0 {
            p.push("quality.clip_min_samples", "is 0; expected at least 1");
        }
        if q.stuck_run_samples < 2 {
            p.push(
                "quality.stuck_run_samples",
                format!("is {}; expected at least 2", q.stuck_run_samples),
            );
        }
        if !(q.stuck_min_std_g.is_finite() && q.stuck_min_std_g >= 0.0) {
            p.push(
                "quality.stuck_min_std_g",
                format!("is {}; expected a finite number >= 0", q.stuck_min_std_g),
            );
        }
        if q.dropout_run_samples < 2 {
            p.push(
                "quality.dropout_run_samples",
                format!("is {}; expected at least 2", q.dropout_run_samples),
            );
        }
        p.fraction("quality.sample_rate_tolerance", q.sample_rate_tolerance);
        if q.offset_segment_samples == 0 {
            p.push(
                "quality.offset_segment_samples",
                "is 0; expected at least 1",
            );
        }
        p.positive("quality.offset_jump_g", q.offset_jump_g);

        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p.0 })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_is_the_default_and_valid() {
        let cfg: FeatureConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(cfg, FeatureConfig::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_yaml::from_str::<FeatureConfig>("bpfo: 100").unwrap_err();
        assert!(err.to_string().contains("unknown field `bpfo`"), "{err}");
        let err = serde_yaml::from_str::<FeatureConfig>("quality: {full_scale: 50}").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `full_scale`"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = FeatureConfig {
            expected_samples: 4,
            bands: vec![Band::new(400.0, 200.0), Band::new(6000.0, 7000.0)],
            bpfo_hz: f32::NAN,
            impact_peak_fraction: 1.5,
            quality: QualityConfig {
                full_scale_g: -1.0,
                dropout_run_samples: 0,
                ..QualityConfig::default()
            },
            ..FeatureConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "expected_samples",
                "bands[0]",
                "bands[1]",
                "bpfo_hz",
                "impact_peak_fraction",
                "quality.full_scale_g",
                "quality.dropout_run_samples"
            ]
        );
        let text = err.to_string();
        assert!(text.contains("7 problem(s)"), "{text}");
        assert!(
            text.contains("`bands[0]`: is 400-200 Hz; expected 0 <= lo_hz < hi_hz"),
            "{text}"
        );
        assert!(text.contains("Nyquist"), "{text}");
    }
}
