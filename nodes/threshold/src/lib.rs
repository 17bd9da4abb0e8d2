//! `threshold`: one `score` in, one `decision` out (`ok | reject | sensor_fault`, severity,
//! reason), plus operator alerts (raise / escalate / clear with N-of-M confirmation and
//! hysteresis) on `alert` as health events and in the log.

use forgeline_inference::ModelDir;
use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Correlation, Health, HealthLevel, Score, Severity, Verdict};
use forgeline_threshold::{AlertKind, Limits, Threshold, ThresholdConfig};
use serde::Deserialize;

/// Configuration of `threshold`: the threshold rules; `model_dir` when `from_model: true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Config(pub ThresholdConfig);

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let model = match (&self.0.model_dir, self.0.from_model) {
            (Some(dir), true) => match model_limits(dir) {
                Ok(l) => Some(l),
                Err(e) => {
                    return vec![ConfigProblem {
                        field: "model_dir".into(),
                        reason: e,
                    }];
                }
            },
            _ => None,
        };
        match self.0.resolve(model) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| ConfigProblem {
                    field: p.field.to_owned(),
                    reason: p.problem,
                })
                .collect(),
        }
    }
}

fn model_limits(dir: &std::path::Path) -> Result<Limits, String> {
    let model = ModelDir::load(dir).map_err(|e| e.to_string())?;
    let t = &model.meta().thresholds;
    #[allow(clippy::cast_possible_truncation)]
    Ok(Limits {
        warning: t.warning as f32,
        critical: t.critical as f32,
    })
}

/// The threshold stage.
pub struct ThresholdStage {
    threshold: Threshold,
    node_id: String,
    alerts: u64,
}

impl Stage for ThresholdStage {
    type Config = Config;
    const KIND: &'static str = "threshold";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let model = match (&config.0.model_dir, config.0.from_model) {
            (Some(dir), true) => Some(model_limits(dir).map_err(|e| eyre::eyre!(e))?),
            _ => None,
        };
        let threshold =
            Threshold::with_model_limits(config.0, model).map_err(|e| eyre::eyre!("{e}"))?;
        let l = threshold.limits();
        tracing::info!(
            warning = l.warning,
            critical = l.critical,
            "threshold ready"
        );
        Ok(Self {
            threshold,
            node_id: ctx.node_id.clone(),
            alerts: 0,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let scores = input.rows::<Score>()?;
        let mut decisions = Vec::with_capacity(scores.len());
        for score in &scores {
            let result = self.threshold.decide(score, input.now_ns);
            let d = &result.decision;
            match d.verdict {
                Verdict::Ok => {
                    tracing::debug!(asset = %d.key.asset_id, seq = d.key.seq, score = d.score, "ok");
                }
                _ => tracing::info!(
                    asset = %d.key.asset_id, seq = d.key.seq, verdict = %d.verdict,
                    severity = %d.severity, score = d.score, reason = %d.reason, "verdict"
                ),
            }
            if let Some(alert) = result.alert {
                self.alerts += 1;
                let level = match (alert.kind, alert.severity) {
                    (AlertKind::Clear, _) => HealthLevel::Ok,
                    (_, Severity::Critical) => HealthLevel::Alarm,
                    _ => HealthLevel::Warning,
                };
                // The operator alert: in the log at WARN and on the `alert` output.
                tracing::warn!(
                    asset = %alert.asset_id, seq = alert.seq, kind = alert.kind.as_str(),
                    severity = %alert.severity, "OPERATOR ALERT: {}", alert.message
                );
                out.send(
                    "alert",
                    &[Health {
                        key: Correlation::new(alert.asset_id.clone(), alert.seq, d.key.acq_time_ns),
                        node_id: self.node_id.clone(),
                        component: "anomaly".into(),
                        level,
                        code: format!("alert_{}", alert.kind.as_str()),
                        message: alert.message,
                        value: f64::from(d.score),
                    }],
                );
            }
            decisions.push(result.decision);
        }
        out.send("decision", &decisions);
        Ok(())
    }
}
