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

/// The in-place wire form of a frame: one `UInt8` payload holding a small binary header and then
/// the pixels, so that a camera can write the pixels straight into dora's shared-memory sample
/// (no copy between the image and the transport) and the receiver reads them in place.
///
/// Under dora, `camera-acquisition` sends this form (the runtime's `Outbox::send_frame`); stages
/// run in one process (`forgeline score`, tests) get the [`Frame`] record batch instead, and
/// `image-preprocess` accepts both. Layout, little-endian:
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 8 | magic `FLFRAME` + version byte `1` |
/// | 8 | 4 | header length `H` (a multiple of 64: the pixels start 64-byte aligned) |
/// | 12 | 4 | width |
/// | 16 | 4 | height |
/// | 20 | 4 | channels |
/// | 24 | 8 | seq |
/// | 32 | 8 | acq_time_ns |
/// | 40 | 2 + 2 + 2 | byte lengths of asset_id, encoding, source |
/// | 46 | … | asset_id, encoding, source (UTF-8), zero padding up to `H` |
/// | `H` | width × height × channels | pixels, row-major, interleaved |
pub mod wire {
    use super::{Frame, NAME};
    use crate::{Correlation, SchemaMismatch};

    /// First 8 bytes of every in-place frame.
    pub const MAGIC: [u8; 8] = *b"FLFRAME\x01";
    /// Alignment of the pixels inside the payload.
    pub const ALIGN: usize = 64;
    const FIXED: usize = 46;

    /// Everything of a frame but its pixels.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct FrameHeader {
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
        /// Where the frame came from.
        pub source: String,
    }

    /// A received in-place frame: the header's fields and the pixels, borrowed from the payload.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct FrameView<'a> {
        /// Asset id.
        pub asset_id: &'a str,
        /// Sequence number.
        pub seq: u64,
        /// Acquisition time, ns since the Unix epoch.
        pub acq_time_ns: u64,
        /// Width in pixels.
        pub width: u32,
        /// Height in pixels.
        pub height: u32,
        /// Channels.
        pub channels: u32,
        /// Pixel encoding.
        pub encoding: &'a str,
        /// Where the frame came from.
        pub source: &'a str,
        /// The pixels, in place.
        pub pixels: &'a [u8],
    }

    impl FrameView<'_> {
        /// The correlation keys (owned).
        pub fn key(&self) -> Correlation {
            Correlation::new(self.asset_id, self.seq, self.acq_time_ns)
        }
    }

    impl FrameHeader {
        /// The header of `frame`.
        pub fn of(frame: &Frame) -> Self {
            Self {
                key: frame.key.clone(),
                width: frame.width,
                height: frame.height,
                channels: frame.channels,
                encoding: frame.encoding.clone(),
                source: frame.source.clone(),
            }
        }

        /// Pixel bytes the header announces (`width * height * channels`), `None` on overflow.
        pub fn pixel_len(&self) -> Option<usize> {
            let n = u64::from(self.width)
                .checked_mul(u64::from(self.height))?
                .checked_mul(u64::from(self.channels))?;
            usize::try_from(n).ok()
        }

        /// Bytes of the header including its padding (where the pixels start).
        pub fn header_len(&self) -> usize {
            let strings = self.key.asset_id.len() + self.encoding.len() + self.source.len();
            (FIXED + strings).div_ceil(ALIGN) * ALIGN
        }

        /// Writes the header into `buf[..self.header_len()]` and returns that length.
        ///
        /// # Errors
        /// A string over 65,535 bytes, or `buf` shorter than the header.
        pub fn write(&self, buf: &mut [u8]) -> Result<usize, SchemaMismatch> {
            let len = self.header_len();
            let mismatch = |field: &str, reason: String| SchemaMismatch {
                message: NAME,
                field: field.to_owned(),
                reason,
            };
            let Some(buf) = buf.get_mut(..len) else {
                return Err(mismatch(
                    "header",
                    format!("buffer of {} bytes, the header needs {len}", buf.len()),
                ));
            };
            let strings = [
                ("asset_id", self.key.asset_id.as_bytes()),
                ("encoding", self.encoding.as_bytes()),
                ("source", self.source.as_bytes()),
            ];
            let mut lens = [0u16; 3];
            for (i, (field, s)) in strings.iter().enumerate() {
                lens[i] = u16::try_from(s.len())
                    .map_err(|_| mismatch(field, format!("{} bytes, at most 65535", s.len())))?;
            }
            buf[..8].copy_from_slice(&MAGIC);
            // `len` is at most 46 + 3 × 65,535 rounded up: fits in u32.
            buf[8..12].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
            buf[12..16].copy_from_slice(&self.width.to_le_bytes());
            buf[16..20].copy_from_slice(&self.height.to_le_bytes());
            buf[20..24].copy_from_slice(&self.channels.to_le_bytes());
            buf[24..32].copy_from_slice(&self.key.seq.to_le_bytes());
            buf[32..40].copy_from_slice(&self.key.acq_time_ns.to_le_bytes());
            for (i, l) in lens.iter().enumerate() {
                buf[40 + 2 * i..42 + 2 * i].copy_from_slice(&l.to_le_bytes());
            }
            let mut at = FIXED;
            for (_, s) in strings {
                buf[at..at + s.len()].copy_from_slice(s);
                at += s.len();
            }
            buf[at..].fill(0);
            Ok(len)
        }
    }

    /// Whether `payload` starts like an in-place frame.
    pub fn is_frame(payload: &[u8]) -> bool {
        payload.starts_with(&MAGIC)
    }

    /// Reads an in-place frame without copying its pixels.
    ///
    /// # Errors
    /// [`SchemaMismatch`] naming the field when the payload is truncated, has another magic,
    /// a string that is not UTF-8, or a pixel count other than `width * height * channels`.
    pub fn parse(payload: &[u8]) -> Result<FrameView<'_>, SchemaMismatch> {
        let mismatch = |field: &str, reason: String| SchemaMismatch {
            message: NAME,
            field: field.to_owned(),
            reason,
        };
        if payload.len() < FIXED {
            return Err(mismatch(
                "header",
                format!(
                    "payload of {} bytes is shorter than a frame header ({FIXED})",
                    payload.len()
                ),
            ));
        }
        if !is_frame(payload) {
            return Err(mismatch(
                "header",
                "not an in-place frame (magic `FLFRAME\\x01` missing)".into(),
            ));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let u16_at = |at: usize| usize::from(u16::from_le_bytes([payload[at], payload[at + 1]]));
        let header_len = usize::try_from(u32_at(8)).unwrap_or(usize::MAX);
        let (width, height, channels) = (u32_at(12), u32_at(16), u32_at(20));
        let (seq, acq_time_ns) = (u64_at(24), u64_at(32));
        let lens = [u16_at(40), u16_at(42), u16_at(44)];
        let strings_end = FIXED + lens.iter().sum::<usize>();
        if header_len < strings_end || header_len > payload.len() {
            return Err(mismatch(
                "header",
                format!(
                    "header length {header_len} does not fit a payload of {} bytes with {} bytes of strings",
                    payload.len(),
                    strings_end - FIXED
                ),
            ));
        }
        let mut at = FIXED;
        let mut strs = [""; 3];
        for (i, field) in ["asset_id", "encoding", "source"].iter().enumerate() {
            strs[i] = std::str::from_utf8(&payload[at..at + lens[i]])
                .map_err(|e| mismatch(field, format!("not UTF-8: {e}")))?;
            at += lens[i];
        }
        let pixels = &payload[header_len..];
        let expected = u64::from(width) * u64::from(height) * u64::from(channels);
        if pixels.len() as u64 != expected {
            return Err(mismatch(
                "data",
                format!(
                    "{} pixel bytes, width {width} x height {height} x channels {channels} = {expected}",
                    pixels.len()
                ),
            ));
        }
        Ok(FrameView {
            asset_id: strs[0],
            seq,
            acq_time_ns,
            width,
            height,
            channels,
            encoding: strs[1],
            source: strs[2],
            pixels,
        })
    }

    /// `frame` in the in-place form (header + pixels, one copy): for tests and tools.
    ///
    /// # Errors
    /// As [`FrameHeader::write`].
    pub fn encode(frame: &Frame) -> Result<Vec<u8>, SchemaMismatch> {
        let header = FrameHeader::of(frame);
        let mut out = vec![0u8; header.header_len() + frame.data.len()];
        let at = header.write(&mut out)?;
        out[at..].copy_from_slice(&frame.data);
        Ok(out)
    }
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

    #[test]
    fn in_place_frames_round_trip_with_aligned_pixels() {
        let frame = example().remove(0);
        let bytes = wire::encode(&frame).unwrap();
        assert_eq!(wire::FrameHeader::of(&frame).header_len() % wire::ALIGN, 0);
        let view = wire::parse(&bytes).unwrap();
        assert_eq!(view.key(), frame.key);
        assert_eq!(
            (view.width, view.height, view.channels),
            (frame.width, frame.height, frame.channels)
        );
        assert_eq!((view.encoding, view.source), ("mono8", "simulated:7"));
        assert_eq!(view.pixels, frame.data.as_slice());
        assert_eq!(
            (view.pixels.as_ptr() as usize - bytes.as_ptr() as usize) % wire::ALIGN,
            0
        );
    }

    #[test]
    fn bad_in_place_frames_name_the_field() {
        let frame = example().remove(0);
        let bytes = wire::encode(&frame).unwrap();
        let e = wire::parse(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(e.field, "data");
        assert!(e.reason.contains("7 pixel bytes"), "{e}");
        let e = wire::parse(&bytes[..20]).unwrap_err();
        assert_eq!(e.field, "header");
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(wire::parse(&other).unwrap_err().reason.contains("magic"));
        let mut cut = bytes.clone();
        cut.truncate(50);
        assert_eq!(wire::parse(&cut).unwrap_err().field, "header");
    }

    proptest! {
        #[test]
        fn in_place_form_round_trips(frame in arb_frame()) {
            let mut frame = frame;
            // The in-place form requires a consistent pixel count.
            frame.width = frame.data.len() as u32;
            frame.height = 1;
            frame.channels = 1;
            let bytes = wire::encode(&frame).unwrap();
            let view = wire::parse(&bytes).unwrap();
            prop_assert_eq!(view.key(), frame.key.clone());
            prop_assert_eq!(view.pixels, frame.data.as_slice());
            prop_assert_eq!(view.source, frame.source.as_str());
            prop_assert_eq!(view.encoding, frame.encoding.as_str());
        }

        #[test]
        fn parse_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = bytes;
            if bytes.len() >= 8 {
                bytes[..8].copy_from_slice(&wire::MAGIC);
            }
            let _ = wire::parse(&bytes);
        }
    }
}
