//! Arrow schemas of every message that flows between forgeline nodes.
//!
//! One module per message. Each module has:
//! - the Arrow [`Schema`](arrow::datatypes::Schema) of the message, built once (`schema()`),
//!   with units in field metadata (`unit = "g"`, `"Hz"`, `"ns"`) and the schema metadata
//!   `forgeline.message = <name>`, `forgeline.version = 1`;
//! - a plain Rust struct (the *row view*) implementing [`Message`];
//! - `to_batch(&[Row]) -> RecordBatch` and `try_from_batch(&RecordBatch) -> Result<Vec<Row>, SchemaMismatch>`
//!   that names the offending field when a batch does not match;
//! - for large payloads, zero-copy readers that return a slice of the batch's buffer
//!   ([`waveform::samples`], [`features::values`], [`frame::pixels`], [`tensor::bytes`]).
//!
//! Every message carries the correlation keys ([`Correlation`]): the asset, the sequence number
//! (stroke or frame number) and the acquisition timestamp in ns, so any stage can measure the
//! end-to-end latency and join results. They are the first three columns of every schema.
//!
//! On the wire (dora), a message is a `StructArray` whose fields are the schema's fields; see
//! [`to_struct_array`] / [`batch_from_struct_array`], or [`Message::to_wire`] /
//! [`Message::try_from_wire`]. The dora typed-port definitions are generated from these schemas
//! by [`types_yaml`].
//!
//! ```
//! use forgeline_schemas::{Correlation, Message, Waveform, waveform};
//!
//! let stroke = Waveform {
//!     key: Correlation::new("press-07", 1, 1_700_000_000_000_000_000),
//!     sample_rate_hz: 25_600.0,
//!     samples: vec![0.0, 0.5, -0.5],
//!     source: "simulated:42".into(),
//! };
//! let wire = Waveform::to_wire(std::slice::from_ref(&stroke));
//! let batch = forgeline_schemas::batch_from_struct_array(&wire, waveform::NAME)?;
//! assert_eq!(waveform::samples(&batch, 0)?, &[0.0, 0.5, -0.5]);
//! assert_eq!(Waveform::try_from_batch(&batch)?, vec![stroke]);
//! # Ok::<(), forgeline_schemas::SchemaMismatch>(())
//! ```

pub mod common;
pub mod decision;
pub mod features;
pub mod frame;
pub mod health;
pub mod score;
pub mod tensor;
pub mod types_yaml;
pub mod waveform;

#[cfg(test)]
mod testing;

/// The Arrow crate this crate is built with (dora 1.1's Arrow 59): use it to avoid a second copy.
pub use arrow;

pub use common::{
    Correlation, Message, ParseEnumError, SchemaMismatch, batch_from_struct_array, to_struct_array,
};
pub use decision::{Decision, Severity, Verdict};
pub use features::{FeatureVector, QualityFlags};
pub use frame::Frame;
pub use health::{Health, HealthLevel};
pub use score::Score;
pub use tensor::Tensor;
pub use waveform::Waveform;
