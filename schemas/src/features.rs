//! `features`: the feature vector of one stroke plus its data-quality flags.
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `feature_set` | `Utf8` | |
//! | `values` | `LargeList<Float32>` | per feature set |
//! | `quality_flags` | `UInt32` | bit set, see [`QualityFlags`] |
//! | `source` | `Utf8` | |

use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Float32Type, SchemaRef, UInt32Type};

use crate::Correlation;
use crate::common::{
    BatchReader, Message, SchemaMismatch, build_batch, field, key_columns, list_column, list_of,
    message_schema, primitive_column, utf8_column,
};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "features";

/// Data-quality flags, a bit set. Any flag set means the stroke is not fit for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QualityFlags(pub u32);

impl QualityFlags {
    /// No problem found.
    pub const OK: Self = Self(0);
    /// A sample is NaN.
    pub const NAN: Self = Self(1 << 0);
    /// A sample is +/-Inf.
    pub const INF: Self = Self(1 << 1);
    /// Samples sit at the sensor's full scale (clipping).
    pub const CLIPPING: Self = Self(1 << 2);
    /// The signal is flat or stuck at one value.
    pub const STUCK: Self = Self(1 << 3);
    /// A run of exact zeros (dropout).
    pub const DROPOUT: Self = Self(1 << 4);
    /// The stroke does not have the expected number of samples.
    pub const WRONG_LENGTH: Self = Self(1 << 5);
    /// The sample rate is not the expected one.
    pub const WRONG_RATE: Self = Self(1 << 6);
    /// The DC level jumped (offset jump / sensor mounting problem).
    pub const OFFSET: Self = Self(1 << 7);

    /// Every defined flag with its name, lowest bit first.
    pub const NAMED: [(Self, &'static str); 8] = [
        (Self::NAN, "nan"),
        (Self::INF, "inf"),
        (Self::CLIPPING, "clipping"),
        (Self::STUCK, "stuck"),
        (Self::DROPOUT, "dropout"),
        (Self::WRONG_LENGTH, "wrong_length"),
        (Self::WRONG_RATE, "wrong_rate"),
        (Self::OFFSET, "offset"),
    ];

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Whether no flag is set (the stroke is fit for a verdict).
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Names of the set flags, lowest bit first (e.g. `["nan", "clipping"]`); empty when ok.
    ///
    /// Bits that no flag defines (from a newer producer) are reported as one `unknown`, so a
    /// non-ok value never yields an empty list.
    pub fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Self::NAMED
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        let known = Self::NAMED.iter().fold(0, |bits, (flag, _)| bits | flag.0);
        if self.0 & !known != 0 {
            names.push("unknown");
        }
        names
    }
}

impl BitOr for QualityFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for QualityFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.insert(rhs);
    }
}

/// `ok`, or the set flags joined by `|` (e.g. `nan|clipping`), for reasons and logs.
impl fmt::Display for QualityFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            f.write_str("ok")
        } else {
            f.write_str(&self.names().join("|"))
        }
    }
}

/// Features of one stroke. The meaning of each value is given by `feature_set`
/// (e.g. `press-v1`), whose ordered names live in the operator that computes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureVector {
    /// Correlation keys.
    pub key: Correlation,
    /// Name and version of the feature set, e.g. `press-v1`.
    pub feature_set: String,
    /// The feature values, in the feature set's order.
    pub values: Vec<f32>,
    /// Data-quality flags computed from the raw samples.
    pub quality: QualityFlags,
    /// Where the stroke came from (copied from the waveform).
    pub source: String,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field("feature_set", DataType::Utf8),
            field("values", list_of(DataType::Float32)),
            field("quality_flags", DataType::UInt32),
            field("source", DataType::Utf8),
        ],
    )
});

/// The Arrow schema of `features` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl FeatureVector {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                utf8_column(rows.iter().map(|r| r.feature_set.as_str())),
                list_column::<Float32Type>(rows.iter().map(|r| r.values.as_slice())),
                primitive_column::<UInt32Type>(rows.iter().map(|r| r.quality.0)),
                utf8_column(rows.iter().map(|r| r.source.as_str())),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let feature_set = reader.utf8("feature_set")?;
        let values = reader.list::<Float32Type>("values")?;
        let quality = reader.primitive::<UInt32Type>("quality_flags")?;
        let source = reader.utf8("source")?;
        (0..reader.num_rows())
            .map(|row| {
                Ok(Self {
                    key: keys.get(row),
                    feature_set: feature_set.value(row).to_owned(),
                    values: values.row(&reader, row)?.to_vec(),
                    quality: QualityFlags(quality.value(row)),
                    source: source.value(row).to_owned(),
                })
            })
            .collect()
    }
}

impl Message for FeatureVector {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Features";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        FeatureVector::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        FeatureVector::try_from_batch(batch)
    }
    fn key(&self) -> &Correlation {
        &self.key
    }
}

/// The feature values of row `row`: a slice of the batch's Float32 values buffer (no copy).
pub fn values(batch: &RecordBatch, row: usize) -> Result<&[f32], SchemaMismatch> {
    let reader = BatchReader::new(batch, NAME);
    reader.check_row("values", row)?;
    reader.list::<Float32Type>("values")?.row(&reader, row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, arb_key, arb_string, finite_f32};
    use proptest::prelude::*;

    fn arb_features() -> impl Strategy<Value = FeatureVector> {
        (
            arb_key(),
            arb_string(),
            prop::collection::vec(finite_f32(), 0..16),
            any::<u32>(),
            arb_string(),
        )
            .prop_map(
                |(key, feature_set, values, quality, source)| FeatureVector {
                    key,
                    feature_set,
                    values,
                    quality: QualityFlags(quality),
                    source,
                },
            )
    }

    fn example() -> Vec<FeatureVector> {
        vec![
            FeatureVector {
                key: Correlation::new("press-07", 11, 5),
                feature_set: "press-v1".into(),
                values: vec![1.0, 2.0, 3.0],
                quality: QualityFlags::OK,
                source: "simulated:1".into(),
            },
            FeatureVector {
                key: Correlation::new("press-07", 12, 6),
                feature_set: "press-v1".into(),
                values: vec![4.0],
                quality: QualityFlags::NAN | QualityFlags::CLIPPING,
                source: "simulated:1".into(),
            },
        ]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_features(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }

        #[test]
        fn zero_copy_values_match_rows(rows in prop::collection::vec(arb_features(), 1..6)) {
            let batch = FeatureVector::to_batch(&rows);
            for (i, row) in rows.iter().enumerate() {
                prop_assert_eq!(values(&batch, i).unwrap(), row.values.as_slice());
            }
        }

        #[test]
        fn union_contains_both_and_names_are_sorted_by_bit(a in any::<u32>(), b in any::<u32>()) {
            let (a, b) = (QualityFlags(a), QualityFlags(b));
            let mut c = a;
            c.insert(b);
            prop_assert_eq!(c, a | b);
            prop_assert!(c.contains(a) && c.contains(b));
            prop_assert_eq!(c.is_ok(), a.is_ok() && b.is_ok());
            prop_assert_eq!(c.names().is_empty(), c.is_ok());
        }
    }

    #[test]
    fn quality_flag_names() {
        assert_eq!(QualityFlags::OK.names(), Vec::<&str>::new());
        assert_eq!(QualityFlags::OK.to_string(), "ok");
        let flags = QualityFlags::OFFSET | QualityFlags::NAN | QualityFlags::WRONG_RATE;
        assert_eq!(flags.names(), ["nan", "wrong_rate", "offset"]);
        assert_eq!(flags.to_string(), "nan|wrong_rate|offset");
        assert_eq!(QualityFlags(1 << 20).names(), ["unknown"]);
        let all = QualityFlags::NAMED
            .iter()
            .fold(QualityFlags::OK, |acc, (f, _)| acc | *f);
        assert_eq!(all, QualityFlags(0xff));
        assert_eq!(
            all.names(),
            [
                "nan",
                "inf",
                "clipping",
                "stuck",
                "dropout",
                "wrong_length",
                "wrong_rate",
                "offset"
            ]
        );
        assert!(!all.contains(QualityFlags(1 << 8)));
        assert!(QualityFlags::OK.is_ok() && !QualityFlags::STUCK.is_ok());
    }

    #[test]
    fn schema_has_message_metadata() {
        testing::assert_schema_metadata::<FeatureVector>();
        assert_eq!(
            schema()
                .field_with_name("quality_flags")
                .unwrap()
                .data_type(),
            &DataType::UInt32
        );
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }

    #[test]
    fn values_slice_points_into_the_batch_buffer() {
        let batch = FeatureVector::to_batch(&example());
        let slice = values(&batch, 1).unwrap();
        let data = batch.column(4).to_data();
        let buffer = &data.child_data()[0].buffers()[0];
        let start = buffer.as_ptr() as usize;
        let ptr = slice.as_ptr() as usize;
        assert!(start <= ptr && ptr + size_of_val(slice) <= start + buffer.len());
        assert_eq!(slice, &[4.0]);
    }
}
