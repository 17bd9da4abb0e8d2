//! `inference`: one node for every line. Loads a model directory once (checksums, shapes and
//! feature names checked), picks the execution provider from the configured chain, warms up,
//! then scores each `features` message into a `score` message that names the model version and
//! the provider that ran it. Strokes whose data quality failed are not scored (score NaN, flags
//! forwarded), so the threshold turns them into `sensor_fault`.

use forgeline_inference::{InferenceConfig, ModelDir, Scorer};
use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{FeatureVector, Score, features};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;

/// Configuration of `inference`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model directory (model.yml + ONNX files), relative to the graph's directory.
    pub model_dir: PathBuf,
    /// ONNX Runtime session settings: variant, provider chain, threads, warm-up, library path.
    #[serde(default)]
    pub session: InferenceConfig,
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = self
            .session
            .problems()
            .into_iter()
            .map(|reason| ConfigProblem {
                field: "session".into(),
                reason,
            })
            .collect();
        if let Err(e) = ModelDir::load(&self.model_dir) {
            problems.push(ConfigProblem {
                field: "model_dir".into(),
                reason: e.to_string(),
            });
        }
        problems
    }
}

/// The inference stage.
pub struct Inference {
    scorer: Scorer,
    feature_set: String,
    n_features: usize,
}

impl Stage for Inference {
    type Config = Config;
    const KIND: &'static str = "inference";

    fn new(config: Config, _ctx: &InitContext) -> eyre::Result<Self> {
        let model = ModelDir::load(&config.model_dir).map_err(|e| eyre::eyre!("{e}"))?;
        let feature_set = model.meta().feature_set.clone();
        let scorer = Scorer::new(&model, &config.session).map_err(|e| eyre::eyre!("{e}"))?;
        for skipped in scorer.skipped_providers() {
            tracing::info!(?skipped, "execution provider skipped");
        }
        tracing::info!(
            model = scorer.model_version(),
            provider = scorer.provider(),
            variant = scorer.variant().as_str(),
            warmup_runs = scorer.warmup_runs_done(),
            "model loaded"
        );
        Ok(Self {
            n_features: scorer.feature_names().len(),
            scorer,
            feature_set,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let batch = input.batch::<FeatureVector>()?;
        let header = forgeline_runtime::columns::Header::of(&batch, "features")?;
        let sets = forgeline_runtime::columns::strings(&batch, "features", "feature_set")?;
        let flags = forgeline_runtime::columns::u32s(&batch, "features", "quality_flags")?;
        let mut scores = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = header.key(row);
            let quality = forgeline_schemas::QualityFlags(flags.value(row));
            let values = features::values(&batch, row)?;
            let (score, inference_ns) = if quality.is_ok() {
                if sets.value(row) != self.feature_set || values.len() != self.n_features {
                    return Err(StageError::Input(format!(
                        "asset {} seq {}: model {} expects feature set `{}` with {} values, got `{}` with {} (field `values`)",
                        key.asset_id,
                        key.seq,
                        self.scorer.model_version(),
                        self.feature_set,
                        self.n_features,
                        sets.value(row),
                        values.len()
                    )));
                }
                let t0 = Instant::now();
                let s = self
                    .scorer
                    .score(values)
                    .map_err(|e| StageError::Input(format!("seq {}: {e}", key.seq)))?;
                (
                    s,
                    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
                )
            } else {
                (f32::NAN, 0)
            };
            scores.push(Score {
                key,
                score,
                label: String::new(),
                model_version: self.scorer.model_version().to_owned(),
                provider: self.scorer.provider().to_owned(),
                quality,
                inference_ns,
                source: header.source(row).to_owned(),
            });
        }
        out.send("score", &scores);
        Ok(())
    }
}
