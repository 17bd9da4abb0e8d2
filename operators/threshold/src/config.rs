//! Typed threshold configuration and its validation (every problem reported at once).

use std::fmt;

use forgeline_schemas::Severity;
use serde::{Deserialize, Serialize};

/// Largest supported confirmation window `confirm.m` (strokes).
pub const MAX_CONFIRM_WINDOW: u32 = 64;

/// Settings of the threshold stage.
///
/// Either give `warning` and `critical`, or set `from_model: true` and build the stage with
/// [`Threshold::with_model_limits`](crate::Threshold::with_model_limits) from the limits stored
/// in the model metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Score at or above which a stroke is a `reject` of severity `warning` (no default).
    #[serde(default)]
    pub warning: Option<f32>,
    /// Score at or above which a stroke is a `reject` of severity `critical` (no default).
    #[serde(default)]
    pub critical: Option<f32>,
    /// Take `warning` and `critical` from the model metadata at start (default false).
    #[serde(default)]
    pub from_model: bool,
    /// The model directory whose calibrated `thresholds` are used when `from_model` is true
    /// (read by the threshold node at start).
    #[serde(default)]
    pub model_dir: Option<std::path::PathBuf>,
    /// N-of-M confirmation of the operator alert (default 1 of 1: every exceedance raises).
    #[serde(default)]
    pub confirm: Confirm,
    /// When a raised alert clears (default: at the first stroke below `warning`).
    #[serde(default)]
    pub hysteresis: Hysteresis,
    /// Severity of `sensor_fault` decisions; sensor faults also count towards the alert at this
    /// severity unless it is `none` (default `warning`).
    #[serde(default = "default_sensor_fault_severity")]
    pub sensor_fault_severity: Severity,
    /// What the line decides on, plural, for operator alert texts ("3 of the last 20 parts …"):
    /// `strokes` (default) on a press, `parts` on an inspection line.
    #[serde(default = "default_items")]
    pub items: String,
}

fn default_sensor_fault_severity() -> Severity {
    Severity::Warning
}

fn default_items() -> String {
    "strokes".into()
}

impl ThresholdConfig {
    /// Explicit limits, everything else default.
    pub fn with_limits(warning: f32, critical: f32) -> Self {
        Self {
            warning: Some(warning),
            critical: Some(critical),
            from_model: false,
            model_dir: None,
            confirm: Confirm::default(),
            hysteresis: Hysteresis::default(),
            sensor_fault_severity: default_sensor_fault_severity(),
            items: default_items(),
        }
    }
}

/// Raise the alert only when at least `n` of the last `m` strokes exceed `warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    /// Exceedances needed (default 1).
    pub n: u32,
    /// Window length in strokes, `n <= m <= 64` (default 1).
    pub m: u32,
}

impl Default for Confirm {
    fn default() -> Self {
        Self { n: 1, m: 1 }
    }
}

/// When a raised alert clears: after `clear_after` consecutive strokes scoring below
/// `warning - margin`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    /// How far below `warning` a score must fall to count towards clearing (default 0).
    pub margin: f32,
    /// Consecutive calm strokes needed to clear (default 1).
    pub clear_after: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            margin: 0.0,
            clear_after: 1,
        }
    }
}

/// The score limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Warning limit.
    pub warning: f32,
    /// Critical limit (`>= warning`).
    pub critical: f32,
}

/// One thing wrong with a [`ThresholdConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// The field, as a path (e.g. `confirm.n`).
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

/// A [`ThresholdConfig`] that cannot be used; lists every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid threshold config ({} problem(s)): {}",
    .problems.len(),
    .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct ConfigError {
    /// Every problem found, in field order.
    pub problems: Vec<ConfigProblem>,
}

impl ThresholdConfig {
    /// Checks every field and resolves the limits (from `model` when `from_model` is set).
    ///
    /// `model` is the pair stored in the model metadata, if any; it is only read when
    /// `from_model` is true.
    pub fn resolve(&self, model: Option<Limits>) -> Result<Limits, ConfigError> {
        let mut problems = Vec::new();
        let mut push = |field: &'static str, problem: String| {
            problems.push(ConfigProblem { field, problem });
        };
        if self.items.trim().is_empty() {
            push(
                "items",
                "is empty; name what is decided, plural (e.g. `strokes`, `parts`)".into(),
            );
        }
        let (warning, critical) = match (self.from_model, model) {
            (false, _) => {
                if self.warning.is_none() {
                    push(
                        "warning",
                        "is missing; set it, or set `from_model: true`".into(),
                    );
                }
                if self.critical.is_none() {
                    push(
                        "critical",
                        "is missing; set it, or set `from_model: true`".into(),
                    );
                }
                (self.warning, self.critical)
            }
            (true, model) => {
                if self.warning.is_some() || self.critical.is_some() {
                    push(
                        "from_model",
                        "is true but `warning`/`critical` are also set; use one or the other"
                            .into(),
                    );
                }
                if model.is_none() {
                    push(
                        "from_model",
                        "is true but the model metadata holds no thresholds; set `warning` and \
                         `critical` in the config"
                            .into(),
                    );
                }
                (model.map(|l| l.warning), model.map(|l| l.critical))
            }
        };
        let source = if self.from_model {
            " (from the model)"
        } else {
            ""
        };
        for (field, value) in [("warning", warning), ("critical", critical)] {
            if let Some(v) = value.filter(|v| !v.is_finite()) {
                push(field, format!("is {v}{source}; expected a finite number"));
            }
        }
        if let (Some(w), Some(c)) = (warning, critical)
            && w.is_finite()
            && c.is_finite()
            && w > c
        {
            push(
                "warning",
                format!(
                    "is {w}, greater than `critical` {c}{source}; expected warning <= critical"
                ),
            );
        }
        let Confirm { n, m } = self.confirm;
        if n == 0 {
            push("confirm.n", "is 0; expected at least 1".into());
        }
        if m == 0 || m > MAX_CONFIRM_WINDOW {
            push(
                "confirm.m",
                format!("is {m}; expected 1 to {MAX_CONFIRM_WINDOW}"),
            );
        }
        if n > m {
            push(
                "confirm.n",
                format!("is {n}, greater than `confirm.m` {m}; expected n <= m"),
            );
        }
        let margin = self.hysteresis.margin;
        if !(margin.is_finite() && margin >= 0.0) {
            push(
                "hysteresis.margin",
                format!("is {margin}; expected a finite number >= 0"),
            );
        }
        if self.hysteresis.clear_after == 0 {
            push("hysteresis.clear_after", "is 0; expected at least 1".into());
        }
        match (warning, critical) {
            (Some(warning), Some(critical)) if problems.is_empty() => {
                Ok(Limits { warning, critical })
            }
            _ => Err(ConfigError { problems }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn minimal_yaml_uses_documented_defaults() {
        let cfg: ThresholdConfig = serde_yaml::from_str("warning: 2.0\ncritical: 3.0").unwrap();
        assert_eq!(cfg, ThresholdConfig::with_limits(2.0, 3.0));
        assert_eq!(cfg.confirm, Confirm { n: 1, m: 1 });
        assert_eq!(
            cfg.hysteresis,
            Hysteresis {
                margin: 0.0,
                clear_after: 1
            }
        );
        assert_eq!(cfg.sensor_fault_severity, Severity::Warning);
        assert_eq!(
            cfg.resolve(None).unwrap(),
            Limits {
                warning: 2.0,
                critical: 3.0
            }
        );
    }

    #[test]
    fn full_yaml_parses() {
        let yaml = "from_model: true\nconfirm: {n: 3, m: 5}\nhysteresis: {margin: 0.5, clear_after: 10}\n\
                    sensor_fault_severity: critical\n";
        let cfg: ThresholdConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(cfg.confirm, Confirm { n: 3, m: 5 });
        assert_eq!(cfg.sensor_fault_severity, Severity::Critical);
        let limits = Limits {
            warning: 1.0,
            critical: 2.0,
        };
        assert_eq!(cfg.resolve(Some(limits)).unwrap(), limits);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        for yaml in [
            "warning: 1\ncritical: 2\nwarn: 1",
            "warning: 1\ncritical: 2\nconfirm: {n: 1, m: 1, k: 2}",
            "warning: 1\ncritical: 2\nhysteresis: {clear: 2}",
        ] {
            let err = serde_yaml::from_str::<ThresholdConfig>(yaml).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{yaml}: {err}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = ThresholdConfig {
            warning: Some(5.0),
            critical: Some(3.0),
            confirm: Confirm { n: 4, m: 2 },
            hysteresis: Hysteresis {
                margin: -1.0,
                clear_after: 0,
            },
            ..ThresholdConfig::with_limits(0.0, 0.0)
        };
        let err = cfg.resolve(None).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "warning",
                "confirm.n",
                "hysteresis.margin",
                "hysteresis.clear_after"
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("invalid threshold config (4 problem(s)): "),
            "{text}"
        );
        assert!(
            text.contains(
                "`warning`: is 5, greater than `critical` 3; expected warning <= critical"
            ),
            "{text}"
        );
        assert!(
            text.contains("`confirm.n`: is 4, greater than `confirm.m` 2"),
            "{text}"
        );

        let cfg = ThresholdConfig {
            warning: Some(f32::NAN),
            critical: None,
            confirm: Confirm { n: 0, m: 65 },
            ..ThresholdConfig::with_limits(0.0, 0.0)
        };
        let fields: Vec<&str> = cfg
            .resolve(None)
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["critical", "warning", "confirm.n", "confirm.m"]);
    }

    #[test]
    fn from_model_needs_model_limits_and_no_explicit_ones() {
        let cfg = ThresholdConfig {
            from_model: true,
            model_dir: None,
            ..ThresholdConfig::with_limits(1.0, 2.0)
        };
        let err = cfg.resolve(None).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems.iter().all(|p| p.field == "from_model"));
        let cfg = ThresholdConfig {
            warning: None,
            critical: None,
            ..cfg
        };
        let err = cfg
            .resolve(Some(Limits {
                warning: 3.0,
                critical: 1.0,
            }))
            .unwrap_err();
        assert!(err.to_string().contains("(from the model)"), "{err}");
    }
}
