//! rms-gate: the smallest complete forgeline node. It sits between acquisition and features,
//! forwards strokes whose RMS lies in a plausible band, and reports the others on `health`.

use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Correlation, Health, HealthLevel, Waveform, waveform};
use serde::Deserialize;

/// The node's config, from `FORGELINE_CONFIG` in the graph file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Below this RMS (g) the sensor is probably loose or dead.
    min_rms_g: f32,
    /// Above this RMS (g) something is badly wrong.
    max_rms_g: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_rms_g: 0.05,
            max_rms_g: 20.0,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if !(self.min_rms_g >= 0.0 && self.min_rms_g < self.max_rms_g) {
            problems.push(ConfigProblem {
                field: "min_rms_g".into(),
                reason: format!("must be >= 0 and below max_rms_g ({})", self.max_rms_g),
            });
        }
        problems
    }
}

struct RmsGate {
    config: Config,
    node_id: String,
}

impl Stage for RmsGate {
    type Config = Config;
    const KIND: &'static str = "rms-gate";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        Ok(Self {
            config,
            node_id: ctx.node_id.clone(),
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let batch = input.batch::<Waveform>()?;
        for (row, stroke) in Waveform::try_from_batch(&batch)?.into_iter().enumerate() {
            let samples = waveform::samples(&batch, row)?;
            let rms =
                (samples.iter().map(|x| x * x).sum::<f32>() / samples.len().max(1) as f32).sqrt();
            if rms >= self.config.min_rms_g && rms <= self.config.max_rms_g {
                out.send("waveform", &[stroke]);
            } else {
                out.health(Health {
                    key: Correlation::new(
                        stroke.key.asset_id.clone(),
                        stroke.key.seq,
                        stroke.key.acq_time_ns,
                    ),
                    node_id: self.node_id.clone(),
                    component: "sensor".into(),
                    level: HealthLevel::Warning,
                    code: "rms_out_of_band".into(),
                    message: format!(
                        "stroke {} RMS {rms:.3} g outside [{}, {}] g",
                        stroke.key.seq, self.config.min_rms_g, self.config.max_rms_g
                    ),
                    value: f64::from(rms),
                });
            }
        }
        Ok(())
    }
}

fn main() -> eyre::Result<()> {
    forgeline_runtime::run_node::<RmsGate>()
}
