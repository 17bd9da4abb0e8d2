//! Test helpers shared by the message modules: strategies and generic schema checks.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, make_array, new_null_array};
use arrow::datatypes::{DataType, Field, Schema};
use proptest::prelude::*;

use crate::common::{ACQ_TIME_NS, ASSET_ID, MESSAGE_KEY, Message, SEQ, UNIT_KEY, VERSION_KEY};
use crate::{Correlation, batch_from_struct_array, to_struct_array};

/// Any correlation key.
pub(crate) fn arb_key() -> impl Strategy<Value = Correlation> {
    (arb_string(), any::<u64>(), any::<u64>()).prop_map(|(asset_id, seq, acq_time_ns)| {
        Correlation {
            asset_id,
            seq,
            acq_time_ns,
        }
    })
}

/// Short strings, non-ASCII included.
pub(crate) fn arb_string() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

/// Any f32 but NaN (NaN != NaN would make row equality fail; NaN has its own bitwise tests).
pub(crate) fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN is tested bitwise elsewhere", |x| !x.is_nan())
}

/// Any f64 but NaN.
pub(crate) fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is tested bitwise elsewhere", |x| !x.is_nan())
}

/// rows -> batch -> struct array -> `ArrayData` -> array (what dora does) -> batch -> rows.
pub(crate) fn wire_round_trip<M: Message>(rows: &[M]) -> Vec<M> {
    let wire = to_struct_array(&M::to_batch(rows));
    let received = make_array(wire.to_data());
    let batch = batch_from_struct_array(received.as_ref(), M::NAME).unwrap();
    let back = M::try_from_batch(&batch).unwrap();
    assert_eq!(
        M::try_from_wire(received.as_ref()).unwrap().len(),
        back.len()
    );
    back
}

/// `batch` with column `name` replaced by `array` (declared nullable, so nulls are allowed).
pub(crate) fn replace_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    let index = schema.index_of(name).unwrap();
    fields[index] = Field::new(name, array.data_type().clone(), true);
    columns[index] = array;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// The schema carries the message metadata, the correlation fields first, no nullable field, and
/// `to_batch` uses it.
pub(crate) fn assert_schema_metadata<M: Message>() {
    let schema = M::schema();
    assert!(
        Arc::ptr_eq(&schema, &M::schema()),
        "schema() must be built once"
    );
    assert_eq!(
        schema.metadata().get(MESSAGE_KEY).map(String::as_str),
        Some(M::NAME)
    );
    assert_eq!(
        schema.metadata().get(VERSION_KEY).map(String::as_str),
        Some("1")
    );
    let names: Vec<&str> = schema
        .fields()
        .iter()
        .take(3)
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, [ASSET_ID, SEQ, ACQ_TIME_NS]);
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(1).data_type(), &DataType::UInt64);
    assert_eq!(schema.field(2).data_type(), &DataType::UInt64);
    assert_eq!(
        schema.field(2).metadata().get(UNIT_KEY).map(String::as_str),
        Some("ns")
    );
    for field in schema.fields() {
        assert!(!field.is_nullable(), "{} is nullable", field.name());
    }
    assert_eq!(M::to_batch(&[]).schema(), schema);
}

/// For every field of `M`'s schema: a batch without it, with it of the wrong type, or with a null
/// in it fails naming it; an extra field is ignored. `rows` must not be empty.
pub(crate) fn assert_every_field_checked<M: Message + PartialEq + std::fmt::Debug>(rows: &[M]) {
    assert!(!rows.is_empty());
    let batch = M::to_batch(rows);
    let n = batch.num_rows();
    for field in M::schema().fields() {
        let name = field.name();

        let mut missing = batch.clone();
        missing.remove_column(batch.schema().index_of(name).unwrap());
        let err = M::try_from_batch(&missing).unwrap_err();
        assert_eq!((err.message, err.field.as_str()), (M::NAME, name.as_str()));
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
        assert!(err.reason.contains("missing"), "{err}");

        let wrong = replace_column(&batch, name, Arc::new(BooleanArray::from(vec![true; n])));
        let err = M::try_from_batch(&wrong).unwrap_err();
        assert_eq!(err.field, *name, "{err}");
        assert!(
            err.reason.contains("expected type") && err.reason.contains("Boolean"),
            "{err}"
        );

        let nulls = replace_column(&batch, name, new_null_array(field.data_type(), n));
        let err = M::try_from_batch(&nulls).unwrap_err();
        assert_eq!(err.field, *name, "{err}");
        assert!(err.reason.contains("null"), "{err}");
    }

    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("extra", DataType::Boolean, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(BooleanArray::from(vec![false; n])));
    let extra = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    assert_eq!(
        M::try_from_batch(&extra).unwrap(),
        M::try_from_batch(&batch).unwrap()
    );
}

/// An enum column holding `bad` in row 0 fails naming the field, the value and the accepted names.
pub(crate) fn assert_bad_enum_rejected<M: Message + std::fmt::Debug>(
    rows: &[M],
    column: &str,
    accepted: &[&str],
) {
    let batch = M::to_batch(rows);
    let mut values = vec!["bogus"];
    values.resize(batch.num_rows(), accepted[0]);
    let bad = replace_column(
        &batch,
        column,
        Arc::new(arrow::array::StringArray::from(values)),
    );
    let err = M::try_from_batch(&bad).unwrap_err();
    assert_eq!(err.field, column);
    let text = err.to_string();
    assert!(
        text.contains(&format!("`{column}`")) && text.contains("`bogus`"),
        "{text}"
    );
    for name in accepted {
        assert!(text.contains(name), "{text} does not list {name}");
    }
}
