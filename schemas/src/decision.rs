//! `decision`: the go/no-go verdict for one item.
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `verdict` | `Utf8`: `ok`, `reject`, `sensor_fault`, `no_decision` | |
//! | `severity` | `Utf8`: `none`, `warning`, `critical` | |
//! | `score`, `threshold` | `Float32` | model-specific |
//! | `model_version`, `reason` | `Utf8` | |
//! | `decided_time_ns` | `UInt64` | ns |
//! | `source` | `Utf8` | |

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Float32Type, SchemaRef, UInt64Type};

use crate::Correlation;
use crate::common::{
    BatchReader, Message, SchemaMismatch, build_batch, field, field_with_unit, key_columns,
    message_schema, primitive_column, string_enum, utf8_column,
};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "decision";

/// The verdict on one stroke or part.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Good part / normal stroke.
    Ok,
    /// Anomalous: reject the part / stop the press.
    Reject,
    /// The sensor data is not fit for a verdict (NaN, clipping, dropout, stuck…). Never an `ok`.
    SensorFault,
    /// No verdict could be made in time (fail-safe applies).
    #[default]
    NoDecision,
}

string_enum!(Verdict, "verdict", [
    Ok => "ok",
    Reject => "reject",
    SensorFault => "sensor_fault",
    NoDecision => "no_decision",
]);

/// How severe a reject is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing to report.
    #[default]
    None,
    /// Above the warning threshold.
    Warning,
    /// Above the critical threshold.
    Critical,
}

string_enum!(Severity, "severity", [
    None => "none",
    Warning => "warning",
    Critical => "critical",
]);

/// A verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// Correlation keys.
    pub key: Correlation,
    /// The verdict.
    pub verdict: Verdict,
    /// Severity level.
    pub severity: Severity,
    /// The score the verdict was based on (NaN when none).
    pub score: f32,
    /// The threshold the score was compared with.
    pub threshold: f32,
    /// Model name and version.
    pub model_version: String,
    /// Human-readable reason, e.g. `score 4.2 > critical 3.0` or `sensor: clipping`.
    pub reason: String,
    /// When the decision was made, ns since the Unix epoch (unit = "ns").
    pub decided_time_ns: u64,
    /// Where the item came from (copied along).
    pub source: String,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field("verdict", DataType::Utf8),
            field("severity", DataType::Utf8),
            field("score", DataType::Float32),
            field("threshold", DataType::Float32),
            field("model_version", DataType::Utf8),
            field("reason", DataType::Utf8),
            field_with_unit("decided_time_ns", DataType::UInt64, "ns"),
            field("source", DataType::Utf8),
        ],
    )
});

/// The Arrow schema of `decision` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Decision {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                utf8_column(rows.iter().map(|r| r.verdict.as_str())),
                utf8_column(rows.iter().map(|r| r.severity.as_str())),
                primitive_column::<Float32Type>(rows.iter().map(|r| r.score)),
                primitive_column::<Float32Type>(rows.iter().map(|r| r.threshold)),
                utf8_column(rows.iter().map(|r| r.model_version.as_str())),
                utf8_column(rows.iter().map(|r| r.reason.as_str())),
                primitive_column::<UInt64Type>(rows.iter().map(|r| r.decided_time_ns)),
                utf8_column(rows.iter().map(|r| r.source.as_str())),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored; an unknown verdict or severity
    /// string fails naming the value and the accepted ones.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let verdict = reader.utf8("verdict")?;
        let severity = reader.utf8("severity")?;
        let score = reader.primitive::<Float32Type>("score")?;
        let threshold = reader.primitive::<Float32Type>("threshold")?;
        let model_version = reader.utf8("model_version")?;
        let reason = reader.utf8("reason")?;
        let decided_time_ns = reader.primitive::<UInt64Type>("decided_time_ns")?;
        let source = reader.utf8("source")?;
        (0..reader.num_rows())
            .map(|row| {
                Ok(Self {
                    key: keys.get(row),
                    verdict: reader.parse_enum(verdict, "verdict", row)?,
                    severity: reader.parse_enum(severity, "severity", row)?,
                    score: score.value(row),
                    threshold: threshold.value(row),
                    model_version: model_version.value(row).to_owned(),
                    reason: reason.value(row).to_owned(),
                    decided_time_ns: decided_time_ns.value(row),
                    source: source.value(row).to_owned(),
                })
            })
            .collect()
    }
}

impl Message for Decision {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Decision";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        Decision::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        Decision::try_from_batch(batch)
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

    fn arb_decision() -> impl Strategy<Value = Decision> {
        (
            arb_key(),
            prop::sample::select(Verdict::ALL),
            prop::sample::select(Severity::ALL),
            (finite_f32(), finite_f32()),
            (arb_string(), arb_string()),
            any::<u64>(),
            arb_string(),
        )
            .prop_map(
                |(
                    key,
                    verdict,
                    severity,
                    (score, threshold),
                    (model_version, reason),
                    decided_time_ns,
                    source,
                )| {
                    Decision {
                        key,
                        verdict,
                        severity,
                        score,
                        threshold,
                        model_version,
                        reason,
                        decided_time_ns,
                        source,
                    }
                },
            )
    }

    fn example() -> Vec<Decision> {
        vec![
            Decision {
                key: Correlation::new("press-07", 3, 9),
                verdict: Verdict::Reject,
                severity: Severity::Critical,
                score: 4.2,
                threshold: 3.0,
                model_version: "press-anomaly@1.0.0".into(),
                reason: "score 4.2 > critical 3.0".into(),
                decided_time_ns: 12,
                source: "simulated:3".into(),
            },
            Decision::default(),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_decision(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }
    }

    #[test]
    fn enum_names_round_trip_and_match_serde() {
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), *v);
            assert_eq!(v.to_string(), v.as_str());
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
        }
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(
            Verdict::NAMES,
            ["ok", "reject", "sensor_fault", "no_decision"]
        );
        assert_eq!(Severity::NAMES, ["none", "warning", "critical"]);
        let err = "Reject".parse::<Verdict>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid verdict `Reject`: expected one of ok, reject, sensor_fault, no_decision"
        );
    }

    #[test]
    fn schema_has_units_and_message_metadata() {
        testing::assert_schema_metadata::<Decision>();
        let field = schema().field_with_name("decided_time_ns").unwrap().clone();
        assert_eq!(field.metadata().get("unit").map(String::as_str), Some("ns"));
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }

    #[test]
    fn bad_verdict_and_severity_strings_are_rejected() {
        testing::assert_bad_enum_rejected(&example(), "verdict", Verdict::NAMES);
        testing::assert_bad_enum_rejected(&example(), "severity", Severity::NAMES);
    }
}
