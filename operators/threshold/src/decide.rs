//! Per-stroke verdicts and the per-asset operator alert.

use std::collections::HashMap;
use std::fmt;

use forgeline_schemas::{Decision, Score, Severity, Verdict};

use crate::config::{ConfigError, Limits, ThresholdConfig};

/// The threshold stage: a [`Decision`] for every score, and [`Alert`] transitions per asset.
#[derive(Debug, Clone)]
pub struct Threshold {
    cfg: ThresholdConfig,
    limits: Limits,
    assets: HashMap<String, AssetState>,
}

/// What [`Threshold::decide`] returns for one score.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdOutput {
    /// The per-stroke verdict.
    pub decision: Decision,
    /// A raise, escalation or clear of the asset's operator alert, when this stroke causes one.
    pub alert: Option<Alert>,
}

/// A transition of an asset's operator alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The asset whose alarm changed.
    pub asset_id: String,
    /// The stroke that caused the transition.
    pub seq: u64,
    /// Raise, escalate or clear.
    pub kind: AlertKind,
    /// Severity of the alarm: the new one for raise/escalate, the one ending for clear.
    pub severity: Severity,
    /// Operator-facing text, e.g. `press-07: warning alert raised: 3 of the last 5 strokes ...`.
    pub message: String,
    /// When the transition was decided, ns (the `now_ns` passed to `decide`).
    pub time_ns: u64,
}

/// The kind of an [`Alert`] transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// The alarm was off and is now on.
    Raise,
    /// The alarm was on at `warning` and is now `critical`.
    Escalate,
    /// The alarm was on and is now off.
    Clear,
}

impl AlertKind {
    /// Lower-case name (`raise`, `escalate`, `clear`), as in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raise => "raise",
            Self::Escalate => "escalate",
            Self::Clear => "clear",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Alarm state of one asset. The last `m` strokes are bit sets (bit 0 = newest).
#[derive(Debug, Clone, Default)]
struct AssetState {
    /// Strokes that exceeded `warning` (or were sensor faults counting at warning or above).
    exceeded: u64,
    /// Strokes that exceeded `critical` (or were sensor faults counting as critical).
    critical: u64,
    /// The alarm currently raised, if any.
    active: Option<Severity>,
    /// Consecutive strokes below `warning - margin` while the alarm is on.
    calm: u32,
}

impl Threshold {
    /// A threshold stage with the limits given in `cfg`; fails listing every problem, including
    /// `from_model: true` (use [`Threshold::with_model_limits`] for that).
    pub fn new(cfg: ThresholdConfig) -> Result<Self, ConfigError> {
        Self::build(cfg, None)
    }

    /// A threshold stage whose limits come from the model metadata when `cfg.from_model` is set
    /// (`model` is ignored otherwise).
    pub fn with_model_limits(
        cfg: ThresholdConfig,
        model: Option<Limits>,
    ) -> Result<Self, ConfigError> {
        Self::build(cfg, model)
    }

    fn build(cfg: ThresholdConfig, model: Option<Limits>) -> Result<Self, ConfigError> {
        let limits = cfg.resolve(model)?;
        Ok(Self {
            cfg,
            limits,
            assets: HashMap::new(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The configuration in use.
    pub fn config(&self) -> &ThresholdConfig {
        &self.cfg
    }

    /// The severity of `asset_id`'s raised alarm, `None` when it is off (or the asset unknown).
    pub fn active_alert(&self, asset_id: &str) -> Option<Severity> {
        self.assets.get(asset_id).and_then(|a| a.active)
    }

    /// The per-stroke verdict on `score`, decided at `now_ns`, and the alarm transition it causes.
    ///
    /// - quality flags set: `sensor_fault` (severity `sensor_fault_severity`), reason
    ///   `sensor fault: <flags>`; never `ok`;
    /// - non-finite score: `sensor_fault`, reason `non-finite score`;
    /// - `score >= critical`: `reject` / `critical`; `score >= warning`: `reject` / `warning`;
    /// - otherwise `ok` / `none`.
    pub fn decide(&mut self, score: &Score, now_ns: u64) -> ThresholdOutput {
        let Limits { warning, critical } = self.limits;
        let s = score.score;
        let (verdict, severity, threshold, reason) = if !score.quality.is_ok() {
            (
                Verdict::SensorFault,
                self.cfg.sensor_fault_severity,
                warning,
                format!("sensor fault: {}", score.quality),
            )
        } else if !s.is_finite() {
            (
                Verdict::SensorFault,
                self.cfg.sensor_fault_severity,
                warning,
                "non-finite score".to_owned(),
            )
        } else if s >= critical {
            (
                Verdict::Reject,
                Severity::Critical,
                critical,
                format!("score {} >= critical {}", num(s), num(critical)),
            )
        } else if s >= warning {
            (
                Verdict::Reject,
                Severity::Warning,
                warning,
                format!("score {} >= warning {}", num(s), num(warning)),
            )
        } else {
            (
                Verdict::Ok,
                Severity::None,
                warning,
                format!("score {} < warning {}", num(s), num(warning)),
            )
        };
        let decision = Decision {
            key: score.key.clone(),
            verdict,
            severity,
            score: s,
            threshold,
            model_version: score.model_version.clone(),
            reason,
            decided_time_ns: now_ns,
            source: score.source.clone(),
        };
        let alert = self.update_alarm(&decision, now_ns);
        ThresholdOutput { decision, alert }
    }

    /// Feeds one decision into its asset's N-of-M window and hysteresis.
    fn update_alarm(&mut self, decision: &Decision, now_ns: u64) -> Option<Alert> {
        // What this stroke counts as: the severity it exceeds, or `None` for a calm stroke.
        let counted = match decision.verdict {
            Verdict::SensorFault if decision.severity == Severity::None => return None,
            Verdict::SensorFault | Verdict::Reject => decision.severity,
            Verdict::Ok | Verdict::NoDecision => Severity::None,
        };
        let calm = decision.verdict == Verdict::Ok
            && decision.score < self.limits.warning - self.cfg.hysteresis.margin;
        let confirm = self.cfg.confirm;
        let window_mask = if confirm.m >= 64 {
            u64::MAX
        } else {
            (1_u64 << confirm.m) - 1
        };
        let asset_id = &decision.key.asset_id;
        // Look up before inserting so that known assets cost no key allocation per stroke.
        if !self.assets.contains_key(asset_id) {
            self.assets.insert(asset_id.clone(), AssetState::default());
        }
        let state = self.assets.get_mut(asset_id)?;
        state.exceeded =
            ((state.exceeded << 1) | u64::from(counted >= Severity::Warning)) & window_mask;
        state.critical =
            ((state.critical << 1) | u64::from(counted >= Severity::Critical)) & window_mask;
        let exceeded = state.exceeded.count_ones();
        let critical = state.critical.count_ones();
        let confirmed = if critical >= confirm.n {
            Severity::Critical
        } else if exceeded >= confirm.n {
            Severity::Warning
        } else {
            Severity::None
        };
        let alert = |kind: AlertKind, severity: Severity, message: String| Alert {
            asset_id: asset_id.clone(),
            seq: decision.key.seq,
            kind,
            severity,
            message,
            time_ns: now_ns,
        };
        let evidence = |level: Severity, count: u32| {
            let limit = if level == Severity::Critical {
                self.limits.critical
            } else {
                self.limits.warning
            };
            format!(
                "{count} of the last {} {} at or above {level} {} (or sensor faults); last: {}",
                confirm.m,
                self.cfg.items,
                num(limit),
                decision.reason
            )
        };
        match state.active {
            None if confirmed > Severity::None => {
                state.active = Some(confirmed);
                state.calm = 0;
                let count = if confirmed == Severity::Critical {
                    critical
                } else {
                    exceeded
                };
                Some(alert(
                    AlertKind::Raise,
                    confirmed,
                    format!(
                        "{asset_id}: {confirmed} alert raised: {}",
                        evidence(confirmed, count)
                    ),
                ))
            }
            None => None,
            Some(active) => {
                if active < Severity::Critical && confirmed == Severity::Critical {
                    state.active = Some(Severity::Critical);
                    state.calm = 0;
                    return Some(alert(
                        AlertKind::Escalate,
                        Severity::Critical,
                        format!(
                            "{asset_id}: alert escalated to critical: {}",
                            evidence(Severity::Critical, critical)
                        ),
                    ));
                }
                state.calm = if calm { state.calm + 1 } else { 0 };
                if state.calm < self.cfg.hysteresis.clear_after {
                    return None;
                }
                // Start afresh: old exceedances must not re-raise the alarm at once.
                *state = AssetState::default();
                let below = self.limits.warning - self.cfg.hysteresis.margin;
                Some(alert(
                    AlertKind::Clear,
                    active,
                    format!(
                        "{asset_id}: {active} alert cleared: {} consecutive {} below {}",
                        self.cfg.hysteresis.clear_after,
                        self.cfg.items,
                        num(below)
                    ),
                ))
            }
        }
    }
}

/// A number for reasons: two decimals when that is exact enough to be unambiguous (`3.00`,
/// `4.21`), else the shortest representation that round-trips (`2.999`, `1e-5`).
fn num(x: f32) -> String {
    let fixed = format!("{x:.2}");
    if fixed.parse::<f32>().is_ok_and(|back| back == x) {
        fixed
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests;
