//! `waveform`: one stroke of accelerometer samples.
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `sample_rate_hz` | `Float32` | Hz |
//! | `samples` | `LargeList<Float32>` | g |
//! | `source` | `Utf8` | |

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Float32Type, SchemaRef};

use crate::Correlation;
use crate::common::{
    BatchReader, Message, SchemaMismatch, build_batch, field, field_with_unit, key_columns,
    list_column, list_of, message_schema, primitive_column, utf8_column,
};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "waveform";

/// One stroke: `samples` in g at `sample_rate_hz`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Waveform {
    /// Correlation keys.
    pub key: Correlation,
    /// Sample rate in Hz (unit = "Hz").
    pub sample_rate_hz: f32,
    /// Acceleration samples in g (unit = "g").
    pub samples: Vec<f32>,
    /// Where the stroke came from: `simulated:<seed>` or the recording's file name.
    pub source: String,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field_with_unit("sample_rate_hz", DataType::Float32, "Hz"),
            field_with_unit("samples", list_of(DataType::Float32), "g"),
            field("source", DataType::Utf8),
        ],
    )
});

/// The Arrow schema of `waveform` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Waveform {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                primitive_column::<Float32Type>(rows.iter().map(|r| r.sample_rate_hz)),
                list_column::<Float32Type>(rows.iter().map(|r| r.samples.as_slice())),
                utf8_column(rows.iter().map(|r| r.source.as_str())),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let sample_rate_hz = reader.primitive::<Float32Type>("sample_rate_hz")?;
        let samples = reader.list::<Float32Type>("samples")?;
        let source = reader.utf8("source")?;
        (0..reader.num_rows())
            .map(|row| {
                Ok(Self {
                    key: keys.get(row),
                    sample_rate_hz: sample_rate_hz.value(row),
                    samples: samples.row(&reader, row)?.to_vec(),
                    source: source.value(row).to_owned(),
                })
            })
            .collect()
    }
}

impl Message for Waveform {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Waveform";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        Waveform::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        Waveform::try_from_batch(batch)
    }
    fn key(&self) -> &Correlation {
        &self.key
    }
}

/// The samples of stroke `row`, in g: a slice of the batch's Float32 values buffer (no copy).
///
/// This is the hot-path read: no row is materialised.
pub fn samples(batch: &RecordBatch, row: usize) -> Result<&[f32], SchemaMismatch> {
    let reader = BatchReader::new(batch, NAME);
    reader.check_row("samples", row)?;
    reader.list::<Float32Type>("samples")?.row(&reader, row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, arb_key, arb_string, finite_f32};
    use proptest::prelude::*;

    fn arb_waveform() -> impl Strategy<Value = Waveform> {
        (
            arb_key(),
            finite_f32(),
            prop::collection::vec(finite_f32(), 0..64),
            arb_string(),
        )
            .prop_map(|(key, sample_rate_hz, samples, source)| Waveform {
                key,
                sample_rate_hz,
                samples,
                source,
            })
    }

    fn example() -> Vec<Waveform> {
        vec![
            Waveform {
                key: Correlation::new("press-07", 1, 1_700_000_000_000_000_000),
                sample_rate_hz: 25_600.0,
                samples: vec![0.0, 1.5, -2.25],
                source: "simulated:42".into(),
            },
            Waveform {
                key: Correlation::new("press-07", 2, 1_700_000_000_100_000_000),
                sample_rate_hz: 25_600.0,
                samples: vec![],
                source: "simulated:42".into(),
            },
        ]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_waveform(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }

        #[test]
        fn zero_copy_samples_match_rows(rows in prop::collection::vec(arb_waveform(), 1..6)) {
            let batch = Waveform::to_batch(&rows);
            for (i, row) in rows.iter().enumerate() {
                prop_assert_eq!(samples(&batch, i).unwrap(), row.samples.as_slice());
            }
        }
    }

    #[test]
    fn nan_samples_survive_bitwise() {
        let mut rows = example();
        rows[0].samples = vec![f32::NAN, -f32::NAN, f32::from_bits(0x7fc0_0001)];
        rows[0].sample_rate_hz = f32::NAN;
        let back = testing::wire_round_trip(&rows);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back[0].samples), bits(&rows[0].samples));
        assert_eq!(back[0].sample_rate_hz.to_bits(), f32::NAN.to_bits());
    }

    #[test]
    fn samples_slice_points_into_the_batch_buffer() {
        let batch = Waveform::to_batch(&example());
        let wire = crate::to_struct_array(&batch);
        let batch = crate::batch_from_struct_array(&wire, NAME).unwrap();
        let slice = samples(&batch, 0).unwrap();
        let lists = batch.column(4).to_data();
        let buffer = &lists.child_data()[0].buffers()[0];
        let start = buffer.as_ptr() as usize;
        let end = start + buffer.len();
        let ptr = slice.as_ptr() as usize;
        assert!(
            start <= ptr && ptr + size_of_val(slice) <= end,
            "slice is a copy"
        );
        assert_eq!(slice, &[0.0, 1.5, -2.25]);
        assert!(samples(&batch, 1).unwrap().is_empty());
    }

    #[test]
    fn samples_of_a_sliced_batch_follow_the_slice() {
        let mut rows = example();
        rows.push(Waveform {
            samples: vec![9.0, 8.0],
            ..rows[0].clone()
        });
        let batch = Waveform::to_batch(&rows).slice(1, 2);
        assert!(samples(&batch, 0).unwrap().is_empty());
        assert_eq!(samples(&batch, 1).unwrap(), &[9.0, 8.0]);
        assert_eq!(
            Waveform::try_from_batch(&batch).unwrap(),
            rows[1..].to_vec()
        );
    }

    #[test]
    fn samples_out_of_range_row_names_the_field() {
        let batch = Waveform::to_batch(&example());
        let err = samples(&batch, 2).unwrap_err();
        assert_eq!(err.field, "samples");
        assert!(err.reason.contains("row 2 out of range"), "{err}");
    }

    #[test]
    fn schema_has_units_and_message_metadata() {
        testing::assert_schema_metadata::<Waveform>();
        let schema = schema();
        let unit = |name: &str| {
            schema
                .field_with_name(name)
                .unwrap()
                .metadata()
                .get("unit")
                .cloned()
        };
        assert_eq!(unit("sample_rate_hz").as_deref(), Some("Hz"));
        assert_eq!(unit("samples").as_deref(), Some("g"));
        assert_eq!(unit("source"), None);
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }

    #[test]
    fn list_of_nulls_is_rejected() {
        use arrow::array::{Array, Float32Array, LargeListArray};
        use std::sync::Arc;
        let batch = Waveform::to_batch(&example());
        let DataType::LargeList(item) = list_of(DataType::Float32) else {
            unreachable!()
        };
        let values = Float32Array::from(vec![Some(1.0), None, Some(2.0)]);
        let lists = LargeListArray::new(
            item,
            arrow::buffer::OffsetBuffer::from_lengths([3, 0]),
            Arc::new(values),
            None,
        );
        assert_eq!(lists.len(), 2);
        let batch = testing::replace_column(&batch, "samples", Arc::new(lists));
        let err = Waveform::try_from_batch(&batch).unwrap_err();
        assert_eq!(err.field, "samples");
        assert!(err.reason.contains("null list item"), "{err}");
    }
}
