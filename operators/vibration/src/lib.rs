//! Press-stroke vibration features (`press-v1`) and data-quality checks.
//!
//! [`FeatureExtractor::extract`] turns one stroke of accelerometer samples (g) into a feature
//! vector for the anomaly model plus the stroke's [`QualityFlags`]: band energies, spectral
//! peaks and shape, time-domain statistics, the bearing envelope spectrum at the BPFO and its
//! harmonics, and impact descriptors for double hits. Plain Rust: no dora types, no clock.
//!
//! ```
//! use forgeline_vibration::{FeatureConfig, FeatureExtractor};
//!
//! let mut extractor = FeatureExtractor::new(FeatureConfig::default())?;
//! let stroke: Vec<f32> = (0..2000).map(|i| (i as f32 * 0.188).sin() + 0.01 * (i % 7) as f32).collect();
//! let mut features = Vec::new();
//! let flags = extractor.extract(&stroke, 10_000.0, &mut features);
//! assert!(flags.is_ok());
//! assert_eq!(features.len(), extractor.feature_names().len());
//! # Ok::<(), forgeline_vibration::ConfigError>(())
//! ```

mod config;
mod extractor;
mod quality;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
pub(crate) mod testing;

pub use config::{Band, ConfigError, ConfigProblem, DEFAULT_BANDS, FeatureConfig, QualityConfig};
pub use extractor::{FEATURE_SET, FeatureExtractor};
pub use forgeline_schemas::QualityFlags;
pub use quality::{check_quality, offset_jump};
