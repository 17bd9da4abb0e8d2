//! `health`: alarms and status reports from any node.
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `node_id`, `component` | `Utf8` | |
//! | `level` | `Utf8`: `ok`, `warning`, `alarm` | |
//! | `code`, `message` | `Utf8` | |
//! | `value` | `Float64` | per `code` (NaN when none) |

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Float64Type, SchemaRef};

use crate::Correlation;
use crate::common::{
    BatchReader, Message, SchemaMismatch, build_batch, field, key_columns, message_schema,
    primitive_column, string_enum, utf8_column,
};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "health";

/// Health level.
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
pub enum HealthLevel {
    /// All good.
    #[default]
    Ok,
    /// Degraded, attention needed.
    Warning,
    /// Alarm: something that matters is not working.
    Alarm,
}

string_enum!(HealthLevel, "health level", [
    Ok => "ok",
    Warning => "warning",
    Alarm => "alarm",
]);

/// A health event. `key.seq` is the health event's own sequence number per node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// Correlation keys (`asset_id` of the line/asset concerned, the event's `seq`, its time).
    pub key: Correlation,
    /// Node that reports.
    pub node_id: String,
    /// Component within the node, e.g. `plc-link`, `broker`, `sensor`.
    pub component: String,
    /// Level.
    pub level: HealthLevel,
    /// Machine-readable code, e.g. `plc_down`, `deadline_missed`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// A numeric value for the event (backlog size, latency…), NaN when none.
    pub value: f64,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field("node_id", DataType::Utf8),
            field("component", DataType::Utf8),
            field("level", DataType::Utf8),
            field("code", DataType::Utf8),
            field("message", DataType::Utf8),
            field("value", DataType::Float64),
        ],
    )
});

/// The Arrow schema of `health` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Health {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                utf8_column(rows.iter().map(|r| r.node_id.as_str())),
                utf8_column(rows.iter().map(|r| r.component.as_str())),
                utf8_column(rows.iter().map(|r| r.level.as_str())),
                utf8_column(rows.iter().map(|r| r.code.as_str())),
                utf8_column(rows.iter().map(|r| r.message.as_str())),
                primitive_column::<Float64Type>(rows.iter().map(|r| r.value)),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored; an unknown level string fails
    /// naming the value and the accepted ones.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let node_id = reader.utf8("node_id")?;
        let component = reader.utf8("component")?;
        let level = reader.utf8("level")?;
        let code = reader.utf8("code")?;
        let message = reader.utf8("message")?;
        let value = reader.primitive::<Float64Type>("value")?;
        (0..reader.num_rows())
            .map(|row| {
                Ok(Self {
                    key: keys.get(row),
                    node_id: node_id.value(row).to_owned(),
                    component: component.value(row).to_owned(),
                    level: reader.parse_enum(level, "level", row)?,
                    code: code.value(row).to_owned(),
                    message: message.value(row).to_owned(),
                    value: value.value(row),
                })
            })
            .collect()
    }
}

impl Message for Health {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Health";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        Health::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        Health::try_from_batch(batch)
    }
    fn key(&self) -> &Correlation {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, arb_key, arb_string, finite_f64};
    use proptest::prelude::*;

    fn arb_health() -> impl Strategy<Value = Health> {
        (
            arb_key(),
            (arb_string(), arb_string()),
            prop::sample::select(HealthLevel::ALL),
            (arb_string(), arb_string()),
            finite_f64(),
        )
            .prop_map(
                |(key, (node_id, component), level, (code, message), value)| Health {
                    key,
                    node_id,
                    component,
                    level,
                    code,
                    message,
                    value,
                },
            )
    }

    fn example() -> Vec<Health> {
        vec![Health {
            key: Correlation::new("line-1", 1, 2),
            node_id: "plc".into(),
            component: "plc-link".into(),
            level: HealthLevel::Alarm,
            code: "plc_down".into(),
            message: "no answer from 10.0.0.5:502 for 3 s".into(),
            value: 3.0,
        }]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_health(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }
    }

    #[test]
    fn nan_value_survives_bitwise() {
        let mut rows = example();
        rows[0].value = f64::NAN;
        let back = testing::wire_round_trip(&rows);
        assert_eq!(back[0].value.to_bits(), f64::NAN.to_bits());
        assert_eq!(back[0].message, example()[0].message);
    }

    #[test]
    fn level_names_round_trip() {
        for level in HealthLevel::ALL {
            assert_eq!(level.as_str().parse::<HealthLevel>().unwrap(), *level);
            assert_eq!(
                serde_json::to_string(level).unwrap(),
                format!("\"{level}\"")
            );
        }
        assert_eq!(HealthLevel::NAMES, ["ok", "warning", "alarm"]);
    }

    #[test]
    fn schema_has_message_metadata() {
        testing::assert_schema_metadata::<Health>();
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }

    #[test]
    fn bad_level_string_is_rejected() {
        testing::assert_bad_enum_rejected(&example(), "level", HealthLevel::NAMES);
    }
}
