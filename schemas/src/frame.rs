//! `frame`: one camera image.
//!
//! | field | Arrow type | unit |
//! |---|---|---|
//! | `asset_id`, `seq`, `acq_time_ns` | `Utf8`, `UInt64`, `UInt64` | -, -, ns |
//! | `width`, `height`, `channels` | `UInt32` | px, px, - |
//! | `encoding` | `Utf8` (`mono8`, `rgb8`) | |
//! | `data` | `LargeBinary` | row-major interleaved pixels |
//! | `source` | `Utf8` | |

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef, UInt32Type};

use crate::Correlation;
use crate::common::{
    BatchReader, Message, SchemaMismatch, binary_column, build_batch, field, key_columns,
    message_schema, primitive_column, utf8_column,
};

/// Message name (`forgeline.message` schema metadata).
pub const NAME: &str = "frame";

/// One camera frame, raw pixels, row-major, interleaved channels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// Correlation keys.
    pub key: Correlation,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels: 1 (mono) or 3 (RGB).
    pub channels: u32,
    /// Pixel encoding: `mono8` or `rgb8`.
    pub encoding: String,
    /// Pixel bytes, `width * height * channels` long.
    pub data: Vec<u8>,
    /// Where the frame came from.
    pub source: String,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    message_schema(
        NAME,
        [
            field("width", DataType::UInt32),
            field("height", DataType::UInt32),
            field("channels", DataType::UInt32),
            field("encoding", DataType::Utf8),
            field("data", DataType::LargeBinary),
            field("source", DataType::Utf8),
        ],
    )
});

/// The Arrow schema of `frame` (built once).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Frame {
    /// Rows to one record batch with [`schema`].
    pub fn to_batch(rows: &[Self]) -> RecordBatch {
        let [asset_id, seq, acq_time_ns] = key_columns(rows.iter().map(|r| &r.key));
        build_batch(
            schema(),
            vec![
                asset_id,
                seq,
                acq_time_ns,
                primitive_column::<UInt32Type>(rows.iter().map(|r| r.width)),
                primitive_column::<UInt32Type>(rows.iter().map(|r| r.height)),
                primitive_column::<UInt32Type>(rows.iter().map(|r| r.channels)),
                utf8_column(rows.iter().map(|r| r.encoding.as_str())),
                binary_column(rows.iter().map(|r| r.data.as_slice())),
                utf8_column(rows.iter().map(|r| r.source.as_str())),
            ],
        )
    }

    /// A record batch back to rows. Extra fields are ignored. The pixel count is not checked
    /// against `width * height * channels` here: that is the consumer's validation.
    pub fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        let reader = BatchReader::new(batch, NAME);
        let keys = reader.keys()?;
        let width = reader.primitive::<UInt32Type>("width")?;
        let height = reader.primitive::<UInt32Type>("height")?;
        let channels = reader.primitive::<UInt32Type>("channels")?;
        let encoding = reader.utf8("encoding")?;
        let data = reader.binary("data")?;
        let source = reader.utf8("source")?;
        Ok((0..reader.num_rows())
            .map(|row| Self {
                key: keys.get(row),
                width: width.value(row),
                height: height.value(row),
                channels: channels.value(row),
                encoding: encoding.value(row).to_owned(),
                data: data.value(row).to_vec(),
                source: source.value(row).to_owned(),
            })
            .collect())
    }
}

impl Message for Frame {
    const NAME: &'static str = NAME;
    const DORA_TYPE: &'static str = "Frame";

    fn schema() -> SchemaRef {
        schema()
    }
    fn to_batch(rows: &[Self]) -> RecordBatch {
        Frame::to_batch(rows)
    }
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch> {
        Frame::try_from_batch(batch)
    }
    fn key(&self) -> &Correlation {
        &self.key
    }
}

/// The pixel bytes of frame `row`: a slice of the batch's binary values buffer (no copy).
pub fn pixels(batch: &RecordBatch, row: usize) -> Result<&[u8], SchemaMismatch> {
    let reader = BatchReader::new(batch, NAME);
    reader.check_row("data", row)?;
    Ok(reader.binary("data")?.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, arb_key, arb_string};
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            arb_key(),
            (any::<u32>(), any::<u32>(), any::<u32>()),
            arb_string(),
            prop::collection::vec(any::<u8>(), 0..256),
            arb_string(),
        )
            .prop_map(
                |(key, (width, height, channels), encoding, data, source)| Frame {
                    key,
                    width,
                    height,
                    channels,
                    encoding,
                    data,
                    source,
                },
            )
    }

    fn example() -> Vec<Frame> {
        vec![Frame {
            key: Correlation::new("camera-2", 7, 8),
            width: 4,
            height: 2,
            channels: 1,
            encoding: "mono8".into(),
            data: (0..8).collect(),
            source: "simulated:7".into(),
        }]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire(rows in prop::collection::vec(arb_frame(), 0..6)) {
            prop_assert_eq!(testing::wire_round_trip(&rows), rows);
        }

        #[test]
        fn zero_copy_pixels_match_rows(rows in prop::collection::vec(arb_frame(), 1..6)) {
            let batch = Frame::to_batch(&rows);
            for (i, row) in rows.iter().enumerate() {
                prop_assert_eq!(pixels(&batch, i).unwrap(), row.data.as_slice());
            }
        }
    }

    #[test]
    fn pixels_point_into_the_batch_buffer() {
        let batch = Frame::to_batch(&example());
        let slice = pixels(&batch, 0).unwrap();
        let data = batch.column(7).to_data();
        let buffer = &data.buffers()[1];
        let start = buffer.as_ptr() as usize;
        let ptr = slice.as_ptr() as usize;
        assert!(start <= ptr && ptr + slice.len() <= start + buffer.len());
        assert_eq!(slice, (0..8).collect::<Vec<u8>>());
        assert_eq!(pixels(&batch, 1).unwrap_err().field, "data");
    }

    #[test]
    fn schema_has_message_metadata() {
        testing::assert_schema_metadata::<Frame>();
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        testing::assert_every_field_checked(&example());
    }
}
