//! The forgeline node runtime: owns the dora event loop so that each stage is plain Rust.
//!
//! A node's `main` is one line:
//!
//! ```ignore
//! fn main() -> eyre::Result<()> {
//!     forgeline_runtime::run_node::<MyStage>()
//! }
//! ```
//!
//! The runtime:
//! - parses the stage's typed config from the graph file ([`config`]) and reports every problem
//!   at once with the node id and field;
//! - sets up `tracing` (key-value logs on stderr, which dora collects per node);
//! - maps dora events to [`Stage`] calls, converts Arrow payloads, and sends what the stage queued;
//! - counts messages per port, errors per class and dora's queue drops ([`Counters`]);
//! - turns a bad message into a logged, counted event instead of a dead node; only
//!   [`StageError::Internal`] ends the node (dora's `restart_policy` may restart it);
//! - supports `--check-config`: a node binary validates its config and exits, which is how
//!   `forgeline check` validates nodes it does not know.

pub mod columns;
pub mod config;
pub mod counters;
pub mod inprocess;
pub mod latency;
pub mod observe;
pub mod otlp;
mod run;
pub mod stage;

pub use config::{CONFIG_ENV, ConfigError, ConfigProblem, Validate, parse_config};
pub use counters::Counters;
pub use forgeline_schemas::arrow;
pub use run::{
    RunSummary, check_config_from_env, init_tracing, init_tracing_or, now_ns, run_node, run_stage,
    sent_ns,
};
pub use stage::{Idle, InitContext, Input, Outbox, Stage, StageError, UpstreamEvent};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use forgeline_schemas::SchemaMismatch;

/// The output port on which the runtime and stages publish [`forgeline_schemas::Health`] events.
pub const HEALTH_PORT: &str = "health";

/// Checks that `batch` has every field of `schema` with the same data type (extra fields are
/// allowed), so zero-copy accessors can be used without further checks.
///
/// # Errors
/// [`SchemaMismatch`] naming the first missing or mistyped field.
pub fn check_fields(
    batch: &RecordBatch,
    schema: &SchemaRef,
    message: &'static str,
) -> Result<(), SchemaMismatch> {
    for field in schema.fields() {
        match batch.schema().field_with_name(field.name()) {
            Err(_) => {
                return Err(SchemaMismatch {
                    message,
                    field: field.name().clone(),
                    reason: "missing".into(),
                });
            }
            Ok(found) if !found.data_type().equals_datatype(field.data_type()) => {
                return Err(SchemaMismatch {
                    message,
                    field: field.name().clone(),
                    reason: format!(
                        "expected {:?}, found {:?}",
                        field.data_type(),
                        found.data_type()
                    ),
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
