//! Anomaly score to verdict: per-stroke decisions and the operator alert.
//!
//! [`Threshold::decide`] turns each [`Score`](forgeline_schemas::Score) into a
//! [`Decision`](forgeline_schemas::Decision) (`ok`, `reject` at `warning` or `critical`, or
//! `sensor_fault`) and tracks, per asset, an operator alarm raised after N-of-M confirmation and
//! cleared with hysteresis. Plain Rust: no dora types, time is passed in.
//!
//! ```
//! use forgeline_schemas::{Correlation, Score, Severity, Verdict};
//! use forgeline_threshold::{AlertKind, Threshold, ThresholdConfig};
//!
//! let mut threshold = Threshold::new(ThresholdConfig::with_limits(2.0, 3.0))?;
//! let score = Score { key: Correlation::new("press-07", 1, 0), score: 4.21, ..Score::default() };
//! let out = threshold.decide(&score, 1_000);
//! assert_eq!(out.decision.verdict, Verdict::Reject);
//! assert_eq!(out.decision.severity, Severity::Critical);
//! assert_eq!(out.decision.reason, "score 4.21 >= critical 3.00");
//! assert_eq!(out.alert.map(|a| a.kind), Some(AlertKind::Raise));
//! # Ok::<(), forgeline_threshold::ConfigError>(())
//! ```

mod config;
mod decide;

pub use config::{
    ConfigError, ConfigProblem, Confirm, Hysteresis, Limits, MAX_CONFIRM_WINDOW, ThresholdConfig,
};
pub use decide::{Alert, AlertKind, Threshold, ThresholdOutput};
