//! The [`Stage`] trait: what a node implements. No dora types appear here, so a stage is plain
//! Rust and testable without a daemon.

use crate::config::Validate;
use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use forgeline_schemas::{Health, Message, SchemaMismatch, arrow};
use serde::de::DeserializeOwned;

/// How bad an error on one message is (Arroyo-style error domains).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Bad input data (malformed message, bad file, out-of-range value): logged, counted, and the
    /// node carries on with the next message.
    #[error("bad input: {0}")]
    Input(String),
    /// A peer (PLC, broker, disk) failed: logged and counted; the stage retries on its own.
    #[error("external failure: {0}")]
    External(String),
    /// A bug or an unrecoverable state: the node exits non-zero (dora may restart it).
    #[error("internal error: {0}")]
    Internal(String),
}

impl StageError {
    /// The error class as a metric label.
    pub fn class(&self) -> &'static str {
        match self {
            StageError::Input(_) => "input",
            StageError::External(_) => "external",
            StageError::Internal(_) => "internal",
        }
    }
}

impl From<SchemaMismatch> for StageError {
    fn from(e: SchemaMismatch) -> Self {
        StageError::Input(e.to_string())
    }
}

/// Context given to a stage when it is built.
#[derive(Debug, Clone)]
pub struct InitContext {
    /// The node id in the graph (e.g. `features`).
    pub node_id: String,
    /// The declared outputs of the node in the graph.
    pub outputs: Vec<String>,
    /// The declared inputs of the node in the graph.
    pub inputs: Vec<String>,
    /// How many times dora restarted this node (0 on the first start).
    pub restart_count: u32,
}

/// One input message handed to a stage.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The input id as named in the graph (`inputs:` key).
    pub port: &'a str,
    /// The raw Arrow payload (a `StructArray` for forgeline messages, `Null` for timer ticks).
    pub data: &'a ArrayRef,
    /// Wall-clock time when the runtime received the message, ns since the Unix epoch.
    pub now_ns: u64,
    /// When the sender sent it (dora's hybrid logical clock), ns since the Unix epoch.
    pub sent_ns: u64,
}

impl Input<'_> {
    /// The payload as a record batch of message `M` (zero-copy: the batch's columns are views
    /// into the received buffer).
    ///
    /// # Errors
    /// [`SchemaMismatch`] naming the port and field when the payload is not an `M`.
    pub fn batch<M: Message>(&self) -> Result<RecordBatch, SchemaMismatch> {
        let batch = forgeline_schemas::batch_from_struct_array(self.data.as_ref(), M::NAME)
            .map_err(|mut e| {
                e.reason = format!("on input `{}`: {}", self.port, e.reason);
                e
            })?;
        // Check the layout once here so stages can use the zero-copy accessors freely.
        crate::check_fields(&batch, &M::schema(), M::NAME)?;
        Ok(batch)
    }

    /// The payload decoded into owned rows of message `M`.
    ///
    /// # Errors
    /// [`SchemaMismatch`] naming the port and field when the payload is not an `M`.
    pub fn rows<M: Message>(&self) -> Result<Vec<M>, SchemaMismatch> {
        M::try_from_batch(&self.batch::<M>()?)
    }
}

/// Messages a stage wants sent, flushed by the runtime after each call.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(crate) pending: Vec<(String, RecordBatch)>,
}

impl Outbox {
    /// Queues a record batch on output `port`.
    pub fn send_batch(&mut self, port: &str, batch: RecordBatch) {
        self.pending.push((port.to_owned(), batch));
    }

    /// Queues rows of message `M` on output `port` as one batch.
    pub fn send<M: Message>(&mut self, port: &str, rows: &[M]) {
        if !rows.is_empty() {
            self.send_batch(port, M::to_batch(rows));
        }
    }

    /// Queues a health event on the `health` output (if the graph declares it).
    pub fn health(&mut self, event: Health) {
        self.send(crate::HEALTH_PORT, &[event]);
    }

    /// Messages queued so far (for tests of stages).
    pub fn pending(&self) -> &[(String, RecordBatch)] {
        &self.pending
    }

    /// Takes the queued messages out (for tests and custom drivers).
    pub fn take(&mut self) -> Vec<(String, RecordBatch)> {
        std::mem::take(&mut self.pending)
    }
}

/// What a stage wants the runtime to do when no input is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Block until the next event (the normal case).
    Wait,
    /// Call [`Stage::on_idle`] again as soon as the event queue is empty (free-running sources).
    Spin,
    /// The stage is done (e.g. a replay ran out): stop and exit cleanly. Downstream inputs close,
    /// so a finite replay ends the whole dataflow.
    Exit,
}

/// An upstream change that a stage may want to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// An input will receive no more data.
    InputClosed(String),
    /// An upstream node was restarted by dora.
    NodeRestarted(String),
    /// An upstream node failed (exited non-zero).
    NodeFailed {
        /// The node that failed.
        node: String,
        /// Its error message.
        error: String,
    },
}

/// One stage of a line: a dora node's logic, without dora.
///
/// The runtime parses [`Stage::Config`] from the graph file, calls [`Stage::new`] once, then
/// [`Stage::on_input`] for each message, and [`Stage::on_stop`] at the end.
pub trait Stage: Sized + 'static {
    /// The node's typed configuration (`#[serde(deny_unknown_fields, default)]`).
    type Config: DeserializeOwned + Validate;
    /// The node kind, e.g. `vibration-features` (used in logs and `forgeline node <kind>`).
    const KIND: &'static str;

    /// Builds the stage from its configuration.
    ///
    /// # Errors
    /// Any error here is reported with the node id and the node exits non-zero.
    fn new(config: Self::Config, ctx: &InitContext) -> eyre::Result<Self>;

    /// Handles one input message.
    ///
    /// # Errors
    /// See [`StageError`] for what the runtime does with each class.
    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError>;

    /// Most messages of one input the runtime may hand over together through
    /// [`Stage::on_inputs`] when several are already queued (default 1: one at a time).
    fn max_input_batch(&self) -> usize {
        1
    }

    /// Handles messages of the same input that were already queued, in arrival order (called
    /// instead of [`Stage::on_input`] only when [`Stage::max_input_batch`] is above 1, e.g. to
    /// score them in one model run). The default handles them one by one and returns the first
    /// error after trying all of them.
    ///
    /// # Errors
    /// As for [`Stage::on_input`].
    fn on_inputs(&mut self, inputs: &[Input<'_>], out: &mut Outbox) -> Result<(), StageError> {
        let mut first_error = None;
        for input in inputs {
            if let Err(e) = self.on_input(input, out) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Called when the event queue is empty and the stage asked to [`Idle::Spin`], or after each
    /// input to ask how to wait next. `now_ns` is wall-clock time.
    ///
    /// # Errors
    /// As for [`Stage::on_input`].
    fn on_idle(&mut self, _now_ns: u64, _out: &mut Outbox) -> Result<Idle, StageError> {
        Ok(Idle::Wait)
    }

    /// Reacts to upstream changes (closed inputs, restarted or failed nodes).
    ///
    /// # Errors
    /// As for [`Stage::on_input`].
    fn on_upstream(
        &mut self,
        _event: &UpstreamEvent,
        _now_ns: u64,
        _out: &mut Outbox,
    ) -> Result<(), StageError> {
        Ok(())
    }

    /// Called once before the node exits (flush buffers, write final state).
    ///
    /// # Errors
    /// As for [`Stage::on_input`].
    fn on_stop(&mut self, _now_ns: u64, _out: &mut Outbox) -> Result<(), StageError> {
        Ok(())
    }
}
