//! `score`: the model's output for one item.
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `score` | `Float32` | model-specific (NaN when the model did not run) |
//! | `label`, `model_version`, `provider` | `Utf8` | |
//! | `quality_flags` | `UInt32` | bit set, see [`QualityFlags`] |
//! | `inference_ns` | `UInt64` | ns |
//! | `source` | `Utf8` | |

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Float32Type, SchemaRef, UInt32Type, UInt64Type};

use crate::common::{
    BatchReader, Message, SchemaMismatch, build_batch, field, field_with_unit, key_columns,
    message_schema, primitive_column, utf8_column,
};
use crate::{Correlation, QualityFlags};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "score";

/// Output of the inference stage for one stroke or frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Score {
    /// Correlation keys.
    pub key: Correlation,
    /// Anomaly score (press) or defect probability (optical). NaN when the model did not run.
    pub score: f32,
    /// Predicted class label for classifiers (`good`, `defect`…); empty for anomaly scores.
    pub label: String,
    /// Model name and version, e.g. `press-anomaly@1.0.0`.
    pub model_version: String,
    /// Execution provider that ran the model (`cpu`, `cuda`, `tensorrt`, `openvino`).
    pub provider: String,
    /// Data-quality flags forwarded from the features (the model is skipped when set).
    pub quality: QualityFlags,
    /// Time spent in the model, ns (unit = "ns").
    pub inference_ns: u64,
    /// Where the item came from (copied along).
    pub source: String,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field("score", DataType::Float32),
            field("label", DataType::Utf8),
            field("model_version", DataType::Utf8),
            field("provider", DataType::Utf8),
            field("quality_flags", DataType::UInt32),
            field_with_unit("inference_ns", DataType::UInt64, "ns"),
            field("source", DataType::Utf8),
        ],
    )
});

/// The Arrow schema of `score` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Score {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                primitive_column::<Float32Type>(rows.iter().map(|r| r.score)),
                utf8_column(rows.iter().map(|r| r.label.as_str())),
                utf8_column(rows.iter().map(|r| r.model_version.as_str())),
                utf8_column(rows.iter().map(|r| r.provider.as_str())),
                primitive_column::<UInt32Type>(rows.iter().map(|r| r.quality.0)),
                primitive_column::<UInt64Type>(rows.iter().map(|r| r.inference_ns)),
                utf8_column(rows.iter().map(|r| r.source.as_str())),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let score = reader.primitive::<Float32Type>("score")?;
        let label = reader.utf8("label")?;
        let model_version = reader.utf8("model_version")?;
        let provider = reader.utf8("provider")?;
        let quality = reader.primitive::<UInt32Type>("quality_flags")?;
        let inference_ns = reader.primitive::<UInt64Type>("inference_ns")?;
        let source = reader.utf8("source")?;
        Ok((0..reader.num_rows())
            .map(|row| Self {
                key: keys.get(row),
                score: score.value(row),
                label: label.value(row).to_owned(),
                model_version: model_version.value(row).to_owned(),
                provider: provider.value(row).to_owned(),
                quality: QualityFlags(quality.value(row)),
                inference_ns: inference_ns.value(row),
                source: source.value(row).to_owned(),
            })
            .collect())
    }
}

impl Message for Score {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Score";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        Score::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        Score::try_from_batch(batch)
    }
    fn key(&self) -> &Correlation {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, arb_key, arb_string, finite_f32};
    use proptest::prelude::*;

    fn arb_score() -> impl Strategy<Value = Score> {
        (
            arb_key(),
            finite_f32(),
            (arb_string(), arb_string(), arb_string()),
            any::<u32>(),
            any::<u64>(),
            arb_string(),
        )
            .prop_map(
                |(key, score, (label, model_version, provider), quality, inference_ns, source)| {
                    Score {
                        key,
                        score,
                        label,
                        model_version,
                        provider,
                        quality: QualityFlags(quality),
                        inference_ns,
                        source,
                    }
                },
            )
    }

    fn example() -> Vec<Score> {
        vec![Score {
            key: Correlation::new("press-07", 3, 9),
            score: 0.25,
            label: String::new(),
            model_version: "press-anomaly@1.0.0".into(),
            provider: "cpu".into(),
            quality: QualityFlags::OK,
            inference_ns: 120_000,
            source: "simulated:3".into(),
        }]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_score(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }
    }

    #[test]
    fn nan_score_survives() {
        let mut rows = example();
        rows[0].score = f32::NAN;
        assert!(testing::wire_round_trip(&rows)[0].score.is_nan());
    }

    #[test]
    fn schema_has_units_and_message_metadata() {
        testing::assert_schema_metadata::<Score>();
        let field = schema().field_with_name("inference_ns").unwrap().clone();
        assert_eq!(field.metadata().get("unit").map(String::as_str), Some("ns"));
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }
}
