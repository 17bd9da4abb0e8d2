//! `tensor`: a model-ready tensor (e.g. a preprocessed frame).
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `shape` | `LargeList<Int64>` | elements per axis, outermost first |
//! | `dtype`, `layout` | `Utf8` (`f32`/`u8`/`i8`; `nchw`/`nhwc`/`flat`) | |
//! | `data` | `LargeBinary` | little-endian elements |
//! | `source` | `Utf8` | |

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Int64Type, SchemaRef};

use crate::Correlation;
use crate::common::{
    BatchReader, Message, SchemaMismatch, binary_column, build_batch, field, key_columns,
    list_column, list_of, message_schema, utf8_column,
};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "tensor";

/// A dense tensor in little-endian bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    /// Correlation keys.
    pub key: Correlation,
    /// Shape, outermost first (e.g. `[1, 1, 224, 224]`).
    pub shape: Vec<i64>,
    /// Element type: `f32`, `u8` or `i8`.
    pub dtype: String,
    /// Layout name: `nchw` or `nhwc` (or `flat`).
    pub layout: String,
    /// Little-endian element bytes.
    pub data: Vec<u8>,
    /// Where the item came from.
    pub source: String,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field("shape", list_of(DataType::Int64)),
            field("dtype", DataType::Utf8),
            field("layout", DataType::Utf8),
            field("data", DataType::LargeBinary),
            field("source", DataType::Utf8),
        ],
    )
});

/// The Arrow schema of `tensor` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Tensor {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                list_column::<Int64Type>(rows.iter().map(|r| r.shape.as_slice())),
                utf8_column(rows.iter().map(|r| r.dtype.as_str())),
                utf8_column(rows.iter().map(|r| r.layout.as_str())),
                binary_column(rows.iter().map(|r| r.data.as_slice())),
                utf8_column(rows.iter().map(|r| r.source.as_str())),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored. The byte count is not checked
    /// against the shape and dtype here: that is the consumer's validation.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let shape = reader.list::<Int64Type>("shape")?;
        let dtype = reader.utf8("dtype")?;
        let layout = reader.utf8("layout")?;
        let data = reader.binary("data")?;
        let source = reader.utf8("source")?;
        (0..reader.num_rows())
            .map(|row| {
                Ok(Self {
                    key: keys.get(row),
                    shape: shape.row(&reader, row)?.to_vec(),
                    dtype: dtype.value(row).to_owned(),
                    layout: layout.value(row).to_owned(),
                    data: data.value(row).to_vec(),
                    source: source.value(row).to_owned(),
                })
            })
            .collect()
    }
}

impl Message for Tensor {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Tensor";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        Tensor::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        Tensor::try_from_batch(batch)
    }
    fn key(&self) -> &Correlation {
        &self.key
    }
}

/// The element bytes of tensor `row`: a slice of the batch's binary values buffer (no copy).
pub fn bytes(batch: &RecordBatch, row: usize) -> Result<&[u8], SchemaMismatch> {
    let reader = BatchReader::new(batch, NAME);
    reader.check_row("data", row)?;
    Ok(reader.binary("data")?.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, arb_key, arb_string};
    use proptest::prelude::*;

    fn arb_tensor() -> impl Strategy<Value = Tensor> {
        (
            arb_key(),
            prop::collection::vec(any::<i64>(), 0..5),
            (arb_string(), arb_string()),
            prop::collection::vec(any::<u8>(), 0..256),
            arb_string(),
        )
            .prop_map(|(key, shape, (dtype, layout), data, source)| Tensor {
                key,
                shape,
                dtype,
                layout,
                data,
                source,
            })
    }

    fn example() -> Vec<Tensor> {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        vec![Tensor {
            key: Correlation::new("camera-2", 7, 8),
            shape: vec![1, 1, 2, 2],
            dtype: "f32".into(),
            layout: "nchw".into(),
            data,
            source: "simulated:7".into(),
        }]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_tensor(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }

        #[test]
        fn zero_copy_bytes_match_rows(rows in prop::collection::vec(arb_tensor(), 1..6)) {
            let batch = Tensor::to_batch(&rows);
            for (i, row) in rows.iter().enumerate() {
                prop_assert_eq!(bytes(&batch, i).unwrap(), row.data.as_slice());
            }
        }
    }

    #[test]
    fn bytes_point_into_the_batch_buffer() {
        let batch = Tensor::to_batch(&example());
        let slice = bytes(&batch, 0).unwrap();
        let data = batch.column(6).to_data();
        let buffer = &data.buffers()[1];
        let start = buffer.as_ptr() as usize;
        let ptr = slice.as_ptr() as usize;
        assert!(start <= ptr && ptr + slice.len() <= start + buffer.len());
        assert_eq!(slice.len(), 16);
    }

    #[test]
    fn schema_has_message_metadata() {
        testing::assert_schema_metadata::<Tensor>();
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }
}
