//! `drift`: is the line still seeing the strokes the model was trained on? Feature vectors in;
//! every `step` strokes, the drift of the last `window` strokes per feature (PSI and KS against
//! the training distribution stored in the model's `model.yml`, thresholds calibrated for a
//! known false-alarm rate) out on `drift`, and a drift alert (raise / clear, after `persist`
//! drifted windows in a row, with hysteresis) out on `alert` and in the log at WARN.

use std::path::{Path, PathBuf};

use forgeline_drift::{AlertChange, DriftConfig, DriftMonitor, DriftReference, WindowReport};
use forgeline_inference::ModelDir;
use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Correlation, FeatureVector, Health, HealthLevel};
use serde::Deserialize;

/// Output with one health event per evaluated window (`code: drift_window`).
pub const DRIFT_PORT: &str = "drift";
/// Output with the drift alert's raise / clear events (`code: drift_alert_raise|clear`).
pub const ALERT_PORT: &str = "alert";

/// Configuration of `drift`.
///
/// ```yaml
/// model_dir: ../models/press-anomaly   # its model.yml has the `drift:` reference
/// monitor: { window: 200, persist: 3, false_alarm_rate: 0.05 }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Model directory whose `model.yml` holds the `drift:` reference (required).
    pub model_dir: PathBuf,
    /// Window, step, false-alarm rate, persistence, hysteresis, calibration
    /// (`forgeline_drift::DriftConfig`; default: window 200, step = window, 5 % per window,
    /// persist 3, clear after 3 windows below 0.8 x threshold, 1000 simulations).
    #[serde(default)]
    pub monitor: DriftConfig,
}

/// Reads and parses the `drift:` section of the model at `dir`.
///
/// # Errors
/// A message naming the directory and what is wrong (model invalid, no `drift:` section, the
/// section does not parse or validate).
pub fn load_reference(dir: &Path) -> Result<DriftReference, String> {
    let model = ModelDir::load(dir).map_err(|e| e.to_string())?;
    let section = model.meta().drift.clone().ok_or_else(|| {
        format!(
            "{}/model.yml has no `drift:` section: retrain the model (forgeline train press writes it)",
            dir.display()
        )
    })?;
    let reference: DriftReference = serde_yaml::from_value(section)
        .map_err(|e| format!("{}/model.yml: drift: {e}", dir.display()))?;
    reference
        .validate()
        .map_err(|e| format!("{}/model.yml: {e}", dir.display()))?;
    let n_inputs = model.meta().inputs.first().map_or(0, |i| i.features.len());
    if reference.features.len() != n_inputs {
        return Err(format!(
            "{}/model.yml: drift reference has {} features, the model input {}",
            dir.display(),
            reference.features.len(),
            n_inputs
        ));
    }
    Ok(reference)
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = self
            .monitor
            .problems()
            .into_iter()
            .map(|(field, reason)| ConfigProblem {
                field: format!("monitor.{field}"),
                reason,
            })
            .collect();
        if let Err(reason) = load_reference(&self.model_dir) {
            problems.push(ConfigProblem {
                field: "model_dir".into(),
                reason,
            });
        }
        problems
    }
}

/// The drift stage.
pub struct Drift {
    monitor: DriftMonitor,
    node_id: String,
    send_drift: bool,
    send_alert: bool,
}

impl Drift {
    fn window_event(&self, r: &WindowReport, key: &Correlation) -> Health {
        let t = self.monitor.thresholds();
        let name = |i: usize| r.features.get(i).map_or("", |f| f.name.as_str());
        let detail = serde_json::json!({
            "window_end_seq": r.seq,
            "evaluation": r.evaluation,
            "drifted": r.drifted,
            "drifted_in_row": r.drifted_in_row,
            "alert_active": r.alert_active,
            "psi_max": r.psi_max.0,
            "psi_feature": name(r.psi_max.1),
            "ks_max": r.ks_max.0,
            "ks_feature": name(r.ks_max.1),
            "psi_threshold": t.psi,
            "ks_threshold": t.ks,
            "features": r.features,
        });
        Health {
            key: key.clone(),
            node_id: self.node_id.clone(),
            component: "drift".into(),
            level: if r.drifted {
                HealthLevel::Warning
            } else {
                HealthLevel::Ok
            },
            code: "drift_window".into(),
            message: detail.to_string(),
            value: r.psi_max.0,
        }
    }

    fn alert_event(&self, r: &WindowReport, change: AlertChange, key: &Correlation) -> Health {
        let t = self.monitor.thresholds();
        let message = match change {
            AlertChange::Raise => format!(
                "feature drift: {} windows of {} strokes in a row beyond the training distribution (last ends at stroke {}; PSI threshold {:.3}, KS threshold {:.3}); most drifted: {}",
                r.drifted_in_row,
                t.window,
                r.seq,
                t.psi,
                t.ks,
                r.top_features(3)
            ),
            AlertChange::Clear => format!(
                "feature drift cleared at stroke {}: {} quiet windows in a row",
                r.seq,
                self.monitor.config().clear_after
            ),
        };
        Health {
            key: key.clone(),
            node_id: self.node_id.clone(),
            component: "drift".into(),
            level: match change {
                AlertChange::Raise => HealthLevel::Warning,
                AlertChange::Clear => HealthLevel::Ok,
            },
            code: format!("drift_alert_{}", change.as_str()),
            message,
            value: r.psi_max.0,
        }
    }
}

impl Stage for Drift {
    type Config = Config;
    const KIND: &'static str = "drift";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let reference = load_reference(&config.model_dir).map_err(|e| eyre::eyre!(e))?;
        let monitor = DriftMonitor::new(reference, config.monitor)?;
        let t = monitor.thresholds();
        tracing::info!(
            window = t.window,
            psi_threshold = t.psi,
            ks_threshold = t.ks,
            per_window_rate = t.simulated_rate,
            features = monitor.feature_count(),
            "drift thresholds calibrated"
        );
        Ok(Self {
            monitor,
            node_id: ctx.node_id.clone(),
            send_drift: ctx.outputs.iter().any(|o| o == DRIFT_PORT),
            send_alert: ctx.outputs.iter().any(|o| o == ALERT_PORT),
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        for fv in input.rows::<FeatureVector>()? {
            let report = self
                .monitor
                .push(fv.key.seq, &fv.values, fv.quality.is_ok())
                .map_err(|e| StageError::Input(e.to_string()))?;
            let Some(r) = report else { continue };
            tracing::info!(
                seq = r.seq, drifted = r.drifted, psi_max = r.psi_max.0, ks_max = r.ks_max.0,
                top = %r.top_features(3), "drift window"
            );
            if self.send_drift {
                out.send(DRIFT_PORT, &[self.window_event(&r, &fv.key)]);
            }
            if let Some(change) = r.alert {
                let event = self.alert_event(&r, change, &fv.key);
                tracing::warn!(asset = %fv.key.asset_id, seq = r.seq, code = %event.code, "DRIFT ALERT: {}", event.message);
                if self.send_alert {
                    out.send(ALERT_PORT, &[event]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forgeline_schemas::{QualityFlags, to_struct_array};
    use std::sync::Arc;

    fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
    }

    fn config(model: &str, monitor: &str) -> Config {
        serde_yaml::from_str(&format!(
            "model_dir: {}\nmonitor: {monitor}\n",
            repo(model).display()
        ))
        .unwrap()
    }

    #[test]
    fn config_problems_name_the_field_and_a_model_without_reference() {
        let c = config("operators/inference/tests/data/press-tiny", "{window: 5}");
        let fields: Vec<String> = c.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["monitor.window", "model_dir"]);
        let p = c.validate().pop().unwrap();
        assert!(p.reason.contains("no `drift:` section"), "{}", p.reason);
        assert!(
            serde_yaml::from_str::<Config>("model_dir: x\nwindow: 5\n").is_err(),
            "unknown keys are refused"
        );
        assert!(config("models/press-anomaly", "{}").validate().is_empty());
    }

    #[test]
    fn shifted_features_give_window_reports_and_an_alert_on_the_ports() {
        let c = config(
            "models/press-anomaly",
            "{window: 20, persist: 2, calibration: {simulations: 200}}",
        );
        let reference = load_reference(&c.model_dir).unwrap();
        let ctx = InitContext {
            node_id: "drift".into(),
            outputs: vec![DRIFT_PORT.into(), ALERT_PORT.into()],
            inputs: vec!["features".into()],
            restart_count: 0,
        };
        let mut stage = Drift::new(c, &ctx).unwrap();
        let mut out = Outbox::default();
        for seq in 0..40u64 {
            // Every feature at its training maximum + 1: far outside the reference.
            #[allow(clippy::cast_possible_truncation)]
            let values: Vec<f32> = reference
                .features
                .iter()
                .map(|f| (f.quantiles[100] + 1.0) as f32)
                .collect();
            let fv = FeatureVector {
                key: Correlation::new("press-01", seq, seq * 1000),
                feature_set: "press-v1".into(),
                values,
                quality: QualityFlags::OK,
                source: "test".into(),
            };
            let data: forgeline_schemas::arrow::array::ArrayRef =
                Arc::new(to_struct_array(&FeatureVector::to_batch(&[fv])));
            let input = Input {
                port: "features",
                data: &data,
                now_ns: seq,
                sent_ns: seq,
            };
            stage.on_input(&input, &mut out).unwrap();
        }
        let sent = out.take();
        let windows: Vec<Health> = sent
            .iter()
            .filter(|(p, _)| p == DRIFT_PORT)
            .flat_map(|(_, b)| Health::try_from_batch(b).unwrap())
            .collect();
        let alerts: Vec<Health> = sent
            .iter()
            .filter(|(p, _)| p == ALERT_PORT)
            .flat_map(|(_, b)| Health::try_from_batch(b).unwrap())
            .collect();
        assert_eq!(windows.len(), 2);
        assert!(windows.iter().all(|w| w.level == HealthLevel::Warning));
        let detail: serde_json::Value = serde_json::from_str(&windows[0].message).unwrap();
        assert_eq!(detail["drifted"], true);
        assert_eq!(detail["features"].as_array().unwrap().len(), 31);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].code, "drift_alert_raise");
        assert_eq!(alerts[0].key.seq, 39);
        assert!(alerts[0].message.contains("psi="), "{}", alerts[0].message);
    }
}
