//! Correlation keys, errors, the [`Message`] trait and the Arrow helpers shared by every message.
//!
//! The helpers that build schemas, write columns and read columns live here once, so every
//! message module is a short, declarative list of its fields.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, LargeBinaryArray, LargeListArray, PrimitiveArray,
    RecordBatch, StringArray, StructArray,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};

/// Field-metadata key holding a field's physical unit (`ns`, `Hz`, `g`).
pub const UNIT_KEY: &str = "unit";
/// Schema-metadata key holding the message name (e.g. `waveform`).
pub const MESSAGE_KEY: &str = "forgeline.message";
/// Schema-metadata key holding the message schema version.
pub const VERSION_KEY: &str = "forgeline.version";
/// The version of every message schema in this crate (value of [`VERSION_KEY`]).
pub const SCHEMA_VERSION: u32 = 1;
/// Name used in [`SchemaMismatch::field`] when the problem concerns the whole message
/// (e.g. the wire array is not a struct) rather than one field.
pub const WHOLE_MESSAGE: &str = "<message>";

/// Column name of [`Correlation::asset_id`] (first column of every message).
pub const ASSET_ID: &str = "asset_id";
/// Column name of [`Correlation::seq`] (second column of every message).
pub const SEQ: &str = "seq";
/// Column name of [`Correlation::acq_time_ns`] (third column of every message, unit `ns`).
pub const ACQ_TIME_NS: &str = "acq_time_ns";

/// The keys every message carries so that results can be joined and latency measured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Correlation {
    /// Which machine the item comes from (e.g. `press-07`, `camera-2`).
    pub asset_id: String,
    /// Stroke number or frame number, monotonically increasing per asset.
    pub seq: u64,
    /// Acquisition timestamp, ns since the Unix epoch (unit = "ns").
    pub acq_time_ns: u64,
}

impl Correlation {
    /// Correlation keys for item `seq` of `asset_id`, acquired at `acq_time_ns`.
    pub fn new(asset_id: impl Into<String>, seq: u64, acq_time_ns: u64) -> Self {
        Self {
            asset_id: asset_id.into(),
            seq,
            acq_time_ns,
        }
    }
}

/// A record batch that does not match a message schema.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}: field `{field}`: {reason}")]
pub struct SchemaMismatch {
    /// Message name, e.g. `waveform`.
    pub message: &'static str,
    /// The field that is missing or has the wrong type/value ([`WHOLE_MESSAGE`] for the whole array).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A string that is not one of an enum's names (e.g. a verdict `maybe`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what} `{value}`: expected one of {}", .expected.join(", "))]
pub struct ParseEnumError {
    /// What was parsed, e.g. `verdict`.
    pub what: &'static str,
    /// The rejected value.
    pub value: String,
    /// The accepted values.
    pub expected: &'static [&'static str],
}

/// A message type that travels between nodes: its Arrow schema and its conversions.
///
/// Implemented by every message row type so that the node runtime can be generic.
pub trait Message: Sized {
    /// Message name, the value of the schema's `forgeline.message` metadata (e.g. `waveform`).
    const NAME: &'static str;
    /// Short name of the dora type (e.g. `Waveform`); the full URN is
    /// `forgeline/messages/v1/<DORA_TYPE>` (see [`crate::types_yaml::urn`]).
    const DORA_TYPE: &'static str;
    /// The message's Arrow schema (built once).
    fn schema() -> SchemaRef;
    /// Rows to one record batch with [`Message::schema`].
    fn to_batch(rows: &[Self]) -> RecordBatch;
    /// A record batch back to rows; fails naming the field that does not match.
    fn try_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaMismatch>;
    /// The row's correlation keys.
    fn key(&self) -> &Correlation;

    /// Rows to what goes on the dora wire: a `StructArray` whose fields are the schema's.
    fn to_wire(rows: &[Self]) -> StructArray {
        to_struct_array(&Self::to_batch(rows))
    }

    /// What came off the dora wire back to rows.
    fn try_from_wire(array: &dyn Array) -> Result<Vec<Self>, SchemaMismatch> {
        Self::try_from_batch(&batch_from_struct_array(array, Self::NAME)?)
    }
}

/// A record batch as the `StructArray` that goes on the dora wire (no copy of the buffers).
pub fn to_struct_array(batch: &RecordBatch) -> StructArray {
    StructArray::from(batch.clone())
}

/// The `StructArray` received from dora back to a record batch (no copy of the buffers).
///
/// Fails when `array` is not a struct array or has null rows (a null message). Field types are
/// checked later, by the message's `try_from_batch`.
pub fn batch_from_struct_array(
    array: &dyn Array,
    message: &'static str,
) -> Result<RecordBatch, SchemaMismatch> {
    let Some(structs) = array.as_any().downcast_ref::<StructArray>() else {
        return Err(SchemaMismatch {
            message,
            field: WHOLE_MESSAGE.to_owned(),
            reason: format!(
                "expected a Struct array (one field per schema column), got {}",
                array.data_type()
            ),
        });
    };
    if structs.null_count() > 0 {
        return Err(SchemaMismatch {
            message,
            field: WHOLE_MESSAGE.to_owned(),
            reason: format!(
                "{} of {} rows are null; every row must be a message",
                structs.null_count(),
                structs.len()
            ),
        });
    }
    Ok(RecordBatch::from(structs.clone()))
}

// ---------------------------------------------------------------------------------------------
// Schema building.

/// A non-nullable field.
pub(crate) fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

/// A non-nullable field with a `unit` metadata entry.
pub(crate) fn field_with_unit(name: &str, data_type: DataType, unit: &str) -> Field {
    field(name, data_type).with_metadata(HashMap::from([(UNIT_KEY.to_owned(), unit.to_owned())]))
}

/// The list type dora's `List<T>` stands for: `LargeList` of a nullable `item` field.
pub(crate) fn list_of(item: DataType) -> DataType {
    DataType::LargeList(Arc::new(Field::new("item", item, true)))
}

/// The schema of message `name`: the correlation fields, then `fields`, plus the schema metadata.
pub(crate) fn message_schema(name: &str, fields: impl IntoIterator<Item = Field>) -> SchemaRef {
    let mut all = vec![
        field(ASSET_ID, DataType::Utf8),
        field(SEQ, DataType::UInt64),
        field_with_unit(ACQ_TIME_NS, DataType::UInt64, "ns"),
    ];
    all.extend(fields);
    let metadata = HashMap::from([
        (MESSAGE_KEY.to_owned(), name.to_owned()),
        (VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(all, metadata))
}

// ---------------------------------------------------------------------------------------------
// Column writers.

/// The three correlation columns of `keys`.
pub(crate) fn key_columns<'a>(
    keys: impl Iterator<Item = &'a Correlation> + Clone,
) -> [ArrayRef; 3] {
    [
        utf8_column(keys.clone().map(|k| k.asset_id.as_str())),
        primitive_column::<UInt64Type>(keys.clone().map(|k| k.seq)),
        primitive_column::<UInt64Type>(keys.map(|k| k.acq_time_ns)),
    ]
}

/// A `Utf8` column.
pub(crate) fn utf8_column<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// A primitive column (`UInt64`, `Float32`…).
pub(crate) fn primitive_column<T: ArrowPrimitiveType>(
    values: impl Iterator<Item = T::Native>,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::from_iter_values(values))
}

/// A `LargeBinary` column.
pub(crate) fn binary_column<'a>(values: impl Iterator<Item = &'a [u8]>) -> ArrayRef {
    Arc::new(LargeBinaryArray::from_iter_values(values))
}

/// A `LargeList<T>` column (no nulls), one list per row, values copied once into one buffer.
pub(crate) fn list_column<'a, T: ArrowPrimitiveType>(
    lists: impl Iterator<Item = &'a [T::Native]> + Clone,
) -> ArrayRef {
    let total: usize = lists.clone().map(<[T::Native]>::len).sum();
    let mut values = Vec::with_capacity(total);
    for list in lists.clone() {
        values.extend_from_slice(list);
    }
    let offsets = OffsetBuffer::<i64>::from_lengths(lists.map(<[T::Native]>::len));
    let DataType::LargeList(item) = list_of(T::DATA_TYPE) else {
        unreachable!("list_of always returns a LargeList")
    };
    let values = PrimitiveArray::<T>::new(ScalarBuffer::from(values), None);
    Arc::new(LargeListArray::new(item, offsets, Arc::new(values), None))
}

/// Assembles a batch from columns built by the writers above, in schema order.
///
/// The columns are built by this crate from typed rows to match `schema`, so a failure here is
/// a bug in this crate (caught by the round-trip tests), never bad input.
#[expect(
    clippy::expect_used,
    reason = "columns are built to match the schema; a bug otherwise"
)]
pub(crate) fn build_batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema, columns)
        .expect("forgeline-schemas built columns that do not match its own schema")
}

// ---------------------------------------------------------------------------------------------
// Column readers.

/// Typed, checked access to the columns of one batch of message `message`.
pub(crate) struct BatchReader<'a> {
    batch: &'a RecordBatch,
    message: &'static str,
}

/// The correlation columns of a batch.
pub(crate) struct KeyColumns<'a> {
    asset_id: &'a StringArray,
    seq: &'a PrimitiveArray<UInt64Type>,
    acq_time_ns: &'a PrimitiveArray<UInt64Type>,
}

impl KeyColumns<'_> {
    /// The correlation keys of `row`.
    pub(crate) fn get(&self, row: usize) -> Correlation {
        Correlation {
            asset_id: self.asset_id.value(row).to_owned(),
            seq: self.seq.value(row),
            acq_time_ns: self.acq_time_ns.value(row),
        }
    }
}

/// A `LargeList` column of primitives whose items have been checked for nulls.
pub(crate) struct ListColumn<'a, T: ArrowPrimitiveType> {
    name: &'static str,
    offsets: &'a [i64],
    values: &'a [T::Native],
}

impl<'a, T: ArrowPrimitiveType> ListColumn<'a, T> {
    /// The items of `row`, a slice of the values buffer (no copy).
    pub(crate) fn row(
        &self,
        reader: &BatchReader<'_>,
        row: usize,
    ) -> Result<&'a [T::Native], SchemaMismatch> {
        let bounds = self.offsets.get(row).zip(self.offsets.get(row + 1));
        let slice = bounds.and_then(|(&start, &end)| {
            let start = usize::try_from(start).ok()?;
            let end = usize::try_from(end).ok()?;
            self.values.get(start..end)
        });
        slice.ok_or_else(|| {
            reader.mismatch(
                self.name,
                format!(
                    "row {row}: list offsets do not address the values buffer (batch has {} rows, {} values)",
                    self.offsets.len().saturating_sub(1),
                    self.values.len()
                ),
            )
        })
    }
}

impl<'a> BatchReader<'a> {
    /// A reader for `batch`, reporting errors against `message`.
    pub(crate) fn new(batch: &'a RecordBatch, message: &'static str) -> Self {
        Self { batch, message }
    }

    /// Number of rows.
    pub(crate) fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// A mismatch on `field`.
    pub(crate) fn mismatch(&self, field: &str, reason: impl Into<String>) -> SchemaMismatch {
        SchemaMismatch {
            message: self.message,
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// Fails unless `row` is a row of the batch.
    pub(crate) fn check_row(&self, field: &str, row: usize) -> Result<(), SchemaMismatch> {
        if row < self.num_rows() {
            Ok(())
        } else {
            Err(self.mismatch(
                field,
                format!(
                    "row {row} out of range: the batch has {} rows",
                    self.num_rows()
                ),
            ))
        }
    }

    /// Column `name`, checked to exist, to have type `expected` and to hold no nulls.
    ///
    /// For `LargeList` only the item type is compared (not the item field's name or nullability).
    fn column(&self, name: &str, expected: &DataType) -> Result<&'a ArrayRef, SchemaMismatch> {
        let column = self.batch.column_by_name(name).ok_or_else(|| {
            let present: Vec<&str> = self
                .batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            self.mismatch(
                name,
                format!(
                    "missing (expected type {expected}; the batch has [{}])",
                    present.join(", ")
                ),
            )
        })?;
        let actual = column.data_type();
        let same = match (expected, actual) {
            (DataType::LargeList(e), DataType::LargeList(a)) => e.data_type() == a.data_type(),
            _ => expected == actual,
        };
        if !same {
            return Err(self.mismatch(name, format!("expected type {expected}, got {actual}")));
        }
        if column.null_count() > 0 {
            return Err(self.mismatch(
                name,
                format!(
                    "{} null value(s); the field is not nullable",
                    column.null_count()
                ),
            ));
        }
        Ok(column)
    }

    /// Column `name` downcast to `A` after checking its type against `expected`.
    fn typed<A: Array + 'static>(
        &self,
        name: &str,
        expected: &DataType,
    ) -> Result<&'a A, SchemaMismatch> {
        let column = self.column(name, expected)?;
        column.as_any().downcast_ref::<A>().ok_or_else(|| {
            self.mismatch(
                name,
                format!("type {expected} is not backed by the expected array kind"),
            )
        })
    }

    /// The correlation columns.
    pub(crate) fn keys(&self) -> Result<KeyColumns<'a>, SchemaMismatch> {
        Ok(KeyColumns {
            asset_id: self.utf8(ASSET_ID)?,
            seq: self.primitive::<UInt64Type>(SEQ)?,
            acq_time_ns: self.primitive::<UInt64Type>(ACQ_TIME_NS)?,
        })
    }

    /// A `Utf8` column.
    pub(crate) fn utf8(&self, name: &str) -> Result<&'a StringArray, SchemaMismatch> {
        self.typed::<StringArray>(name, &DataType::Utf8)
    }

    /// A primitive column of Arrow type `T`.
    pub(crate) fn primitive<T: ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<&'a PrimitiveArray<T>, SchemaMismatch> {
        self.typed::<PrimitiveArray<T>>(name, &T::DATA_TYPE)
    }

    /// A `LargeBinary` column.
    pub(crate) fn binary(&self, name: &str) -> Result<&'a LargeBinaryArray, SchemaMismatch> {
        self.typed::<LargeBinaryArray>(name, &DataType::LargeBinary)
    }

    /// A `LargeList<T>` column whose items hold no nulls.
    pub(crate) fn list<T: ArrowPrimitiveType>(
        &self,
        name: &'static str,
    ) -> Result<ListColumn<'a, T>, SchemaMismatch> {
        let lists = self.typed::<LargeListArray>(name, &list_of(T::DATA_TYPE))?;
        let items = lists.values();
        if items.null_count() > 0 {
            return Err(self.mismatch(
                name,
                format!(
                    "{} null list item(s); list items must not be null",
                    items.null_count()
                ),
            ));
        }
        let items = items
            .as_any()
            .downcast_ref::<PrimitiveArray<T>>()
            .ok_or_else(|| {
                self.mismatch(name, format!("list items are not a {} array", T::DATA_TYPE))
            })?;
        Ok(ListColumn {
            name,
            offsets: lists.value_offsets(),
            values: items.values(),
        })
    }

    /// The enum value in `row` of the `Utf8` column `column` named `name`.
    pub(crate) fn parse_enum<E>(
        &self,
        column: &StringArray,
        name: &str,
        row: usize,
    ) -> Result<E, SchemaMismatch>
    where
        E: std::str::FromStr<Err = ParseEnumError>,
    {
        column
            .value(row)
            .parse()
            .map_err(|e: ParseEnumError| self.mismatch(name, format!("row {row}: {e}")))
    }
}

/// Implements `ALL`, `NAMES`, `as_str`, `Display` and `FromStr` for a fieldless enum whose
/// wire form is a snake_case string.
macro_rules! string_enum {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The wire names of [`Self::ALL`], in the same order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The wire name (snake_case), as stored in the Arrow `Utf8` column.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::common::ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err($crate::common::ParseEnumError {
                        what: $what,
                        value: s.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Int32Array};

    #[test]
    fn non_struct_array_is_rejected_naming_the_type() {
        let array = Int32Array::from(vec![1, 2, 3]);
        let err = batch_from_struct_array(&array, "waveform").unwrap_err();
        assert_eq!(err.field, WHOLE_MESSAGE);
        assert!(err.to_string().contains("Int32"), "{err}");
        assert!(err.to_string().starts_with("waveform: "), "{err}");
    }

    #[test]
    fn null_struct_rows_are_rejected() {
        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let fields = vec![Field::new("ok", DataType::Boolean, false)];
        let nulls = arrow::buffer::NullBuffer::from(vec![true, false]);
        let array = StructArray::new(fields.into(), vec![flags], Some(nulls));
        let err = batch_from_struct_array(&array, "score").unwrap_err();
        assert!(err.reason.contains("1 of 2 rows are null"), "{err}");
    }

    #[test]
    fn struct_array_round_trip_keeps_buffers() {
        let batch = build_batch(
            message_schema("test", [field("x", DataType::Utf8)]),
            vec![
                utf8_column(["a"].into_iter()),
                primitive_column::<UInt64Type>([1].into_iter()),
                primitive_column::<UInt64Type>([2].into_iter()),
                utf8_column(["y"].into_iter()),
            ],
        );
        let wire = to_struct_array(&batch);
        let back = batch_from_struct_array(&wire, "test").unwrap();
        assert_eq!(back.num_rows(), 1);
        assert_eq!(back.num_columns(), 4);
        assert_eq!(
            back.column(3).to_data().buffers()[1].as_ptr(),
            batch.column(3).to_data().buffers()[1].as_ptr()
        );
    }

    #[test]
    fn list_column_offsets_follow_lengths() {
        let rows: [&[f32]; 3] = [&[1.0, 2.0], &[], &[3.0]];
        let column = list_column::<arrow::datatypes::Float32Type>(rows.iter().copied());
        let lists = column.as_any().downcast_ref::<LargeListArray>().unwrap();
        assert_eq!(lists.value_offsets(), &[0, 2, 2, 3]);
        assert_eq!(lists.data_type(), &list_of(DataType::Float32));
    }

    #[test]
    fn parse_enum_error_lists_accepted_values() {
        let err = ParseEnumError {
            what: "verdict",
            value: "maybe".into(),
            expected: &["ok", "reject"],
        };
        assert_eq!(
            err.to_string(),
            "invalid verdict `maybe`: expected one of ok, reject"
        );
    }
}
