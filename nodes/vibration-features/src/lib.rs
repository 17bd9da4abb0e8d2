//! `vibration-features`: one `waveform` in, one `features` out (band energies, peaks, RMS, crest,
//! kurtosis, envelope levels) plus data-quality flags. FFT plans and buffers are made once.

use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{FeatureVector, Waveform, waveform};
use forgeline_vibration::{FEATURE_SET, FeatureConfig, FeatureExtractor};
use serde::Deserialize;

/// Configuration of `vibration-features`: the feature extractor's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Config(pub FeatureConfig);

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        match self.0.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| ConfigProblem {
                    field: p.field,
                    reason: p.problem,
                })
                .collect(),
        }
    }
}

/// The feature stage.
pub struct VibrationFeatures {
    extractor: FeatureExtractor,
    values: Vec<f32>,
}

impl Stage for VibrationFeatures {
    type Config = Config;
    const KIND: &'static str = "vibration-features";

    fn new(config: Config, _ctx: &InitContext) -> eyre::Result<Self> {
        let extractor = FeatureExtractor::new(config.0).map_err(|e| eyre::eyre!("{e}"))?;
        tracing::info!(
            feature_set = FEATURE_SET,
            features = extractor.feature_names().len(),
            "feature extractor ready"
        );
        Ok(Self {
            extractor,
            values: Vec::new(),
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let batch = input.batch::<Waveform>()?;
        let header = forgeline_runtime::columns::Header::of(&batch, "waveform")?;
        let rates = forgeline_runtime::columns::f32s(&batch, "waveform", "sample_rate_hz")?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = header.key(row);
            // Zero-copy: the samples are read straight from the received buffer.
            let samples = waveform::samples(&batch, row)?;
            let quality = self
                .extractor
                .extract(samples, rates.value(row), &mut self.values);
            if !quality.is_ok() {
                tracing::warn!(asset = %key.asset_id, seq = key.seq, flags = ?quality.names(), "data quality");
            }
            rows.push(FeatureVector {
                key,
                feature_set: FEATURE_SET.to_owned(),
                values: self.values.clone(),
                quality,
                source: header.source(row).to_owned(),
            });
        }
        out.send("features", &rows);
        Ok(())
    }
}
