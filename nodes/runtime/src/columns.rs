//! Column readers for stages that read a few fields of a message without decoding (and copying)
//! the large ones, e.g. the correlation keys of a waveform while its samples stay in place.

use forgeline_schemas::arrow::array::{Array, AsArray, Float32Array, StringArray, UInt64Array};
use forgeline_schemas::arrow::datatypes::{Float32Type, UInt64Type};
use forgeline_schemas::arrow::record_batch::RecordBatch;
use forgeline_schemas::{Correlation, SchemaMismatch};

/// The correlation keys of every item of a payload: the rows of a forgeline record batch (a
/// `StructArray` with the key columns), or the one frame of an in-place frame payload
/// (`UInt8`, [`forgeline_schemas::frame::wire`]).
///
/// # Errors
/// [`SchemaMismatch`] naming `message` and the field when the payload is neither.
pub fn item_keys(
    data: &forgeline_schemas::arrow::array::ArrayRef,
    message: &'static str,
) -> Result<Vec<Correlation>, SchemaMismatch> {
    if let Some(bytes) = data
        .as_any()
        .downcast_ref::<forgeline_schemas::arrow::array::UInt8Array>()
    {
        let frame = forgeline_schemas::frame::wire::parse(bytes.values())?;
        return Ok(vec![frame.key()]);
    }
    let batch = forgeline_schemas::batch_from_struct_array(data.as_ref(), message)?;
    let header = Header::of(&batch, message)?;
    Ok((0..batch.num_rows()).map(|row| header.key(row)).collect())
}

fn column<'a>(
    batch: &'a RecordBatch,
    message: &'static str,
    name: &str,
) -> Result<&'a dyn Array, SchemaMismatch> {
    batch
        .column_by_name(name)
        .map(AsRef::as_ref)
        .ok_or_else(|| SchemaMismatch {
            message,
            field: name.to_owned(),
            reason: "missing".into(),
        })
}

fn wrong(message: &'static str, name: &str, expected: &str, found: &dyn Array) -> SchemaMismatch {
    SchemaMismatch {
        message,
        field: name.to_owned(),
        reason: format!("expected {expected}, found {:?}", found.data_type()),
    }
}

/// A `Utf8` column.
///
/// # Errors
/// [`SchemaMismatch`] when missing or of another type.
pub fn strings<'a>(
    batch: &'a RecordBatch,
    message: &'static str,
    name: &str,
) -> Result<&'a StringArray, SchemaMismatch> {
    let c = column(batch, message, name)?;
    c.as_string_opt::<i32>()
        .ok_or_else(|| wrong(message, name, "Utf8", c))
}

/// A `UInt64` column.
///
/// # Errors
/// [`SchemaMismatch`] when missing or of another type.
pub fn u64s<'a>(
    batch: &'a RecordBatch,
    message: &'static str,
    name: &str,
) -> Result<&'a UInt64Array, SchemaMismatch> {
    let c = column(batch, message, name)?;
    c.as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| wrong(message, name, "UInt64", c))
}

/// A `Float32` column.
///
/// # Errors
/// [`SchemaMismatch`] when missing or of another type.
pub fn f32s<'a>(
    batch: &'a RecordBatch,
    message: &'static str,
    name: &str,
) -> Result<&'a Float32Array, SchemaMismatch> {
    let c = column(batch, message, name)?;
    c.as_primitive_opt::<Float32Type>()
        .ok_or_else(|| wrong(message, name, "Float32", c))
}

/// The correlation keys and `source` of every row, read without touching the payload columns.
#[derive(Debug)]
pub struct Header<'a> {
    asset_id: &'a StringArray,
    seq: &'a UInt64Array,
    acq_time_ns: &'a UInt64Array,
    source: Option<&'a StringArray>,
}

impl<'a> Header<'a> {
    /// Reads the key columns (and `source`, when the message has one) of `batch`.
    ///
    /// # Errors
    /// [`SchemaMismatch`] naming a missing or mistyped key column.
    pub fn of(batch: &'a RecordBatch, message: &'static str) -> Result<Self, SchemaMismatch> {
        Ok(Self {
            asset_id: strings(batch, message, "asset_id")?,
            seq: u64s(batch, message, "seq")?,
            acq_time_ns: u64s(batch, message, "acq_time_ns")?,
            source: strings(batch, message, "source").ok(),
        })
    }

    /// The correlation keys of `row`.
    pub fn key(&self, row: usize) -> Correlation {
        Correlation::new(
            self.asset_id.value(row),
            self.seq.value(row),
            self.acq_time_ns.value(row),
        )
    }

    /// The `source` of `row` (empty when the message has none).
    pub fn source(&self, row: usize) -> &'a str {
        self.source.map_or("", |s| s.value(row))
    }
}

/// A `UInt32` column.
///
/// # Errors
/// [`SchemaMismatch`] when missing or of another type.
pub fn u32s<'a>(
    batch: &'a RecordBatch,
    message: &'static str,
    name: &str,
) -> Result<&'a forgeline_schemas::arrow::array::UInt32Array, SchemaMismatch> {
    let c = column(batch, message, name)?;
    c.as_primitive_opt::<forgeline_schemas::arrow::datatypes::UInt32Type>()
        .ok_or_else(|| wrong(message, name, "UInt32", c))
}
