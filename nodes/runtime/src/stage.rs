//! The [`Stage`] trait: what a node implements. No dora types appear here, so a stage is plain
//! Rust and testable without a daemon.

use crate::config::Validate;
use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use forgeline_schemas::frame::wire::FrameHeader;
use forgeline_schemas::{Frame, Health, Message, SchemaMismatch, arrow};
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
///
/// Record batches are copied once into dora's shared-memory sample when flushed. Frames sent with
/// [`Outbox::send_frame`] under dora are written in place into the sample instead (see
/// [`forgeline_schemas::frame::wire`]): the pixels are never copied between the camera and the
/// receiver.
#[derive(Default)]
pub struct Outbox {
    pub(crate) pending: Vec<(String, RecordBatch)>,
    /// Samples already holding their complete Arrow IPC payload (in-place frames).
    pub(crate) samples: Vec<(String, dora_node_api::DataSample)>,
    /// dora's sample allocator when the stage runs under dora; without it `send_frame` falls
    /// back to a [`Frame`] record batch.
    allocator: Option<dora_node_api::SampleAllocator>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("pending", &self.pending.len())
            .field("samples", &self.samples.len())
            .field("in_place", &self.allocator.is_some())
            .finish()
    }
}

impl Outbox {
    /// An outbox whose [`Outbox::send_frame`] writes frames in place into samples from
    /// `allocator` (the runtime builds one from the dora node; tests may pass
    /// `SampleAllocator::heap()`).
    #[must_use]
    pub fn with_allocator(allocator: dora_node_api::SampleAllocator) -> Self {
        Self {
            allocator: Some(allocator),
            ..Self::default()
        }
    }

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

    /// Queues one frame on output `port`: `fill` writes its `width * height * channels` pixel
    /// bytes. Under dora they are written straight into the shared-memory sample that travels
    /// (the in-place form of [`forgeline_schemas::frame::wire`]: no copy of the pixels after
    /// `fill`); without dora (in-process runs, tests) the frame is queued as a [`Frame`] record
    /// batch. Frames keep their order on a port; against batches on other ports they are sent
    /// after the batches queued in the same call.
    ///
    /// # Errors
    /// [`StageError::Input`] when the header cannot be encoded (a string over 64 KiB, a pixel
    /// count that overflows).
    pub fn send_frame(
        &mut self,
        port: &str,
        header: &FrameHeader,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), StageError> {
        let pixels = header.pixel_len().ok_or_else(|| {
            StageError::Input(format!(
                "frame {} seq {}: {} x {} x {} pixels overflow",
                header.key.asset_id, header.key.seq, header.width, header.height, header.channels
            ))
        })?;
        if let Some(allocator) = &self.allocator {
            let header_len = header.header_len();
            let total = header_len + pixels;
            match in_place_sample(allocator, total) {
                Ok((mut sample, at)) => {
                    header.write(&mut sample[at..at + header_len])?;
                    fill(&mut sample[at + header_len..at + total]);
                    self.samples.push((port.to_owned(), sample));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(
                        port,
                        "no in-place sample ({e}); sending the frame as a batch"
                    );
                }
            }
        }
        let mut data = vec![0u8; pixels];
        fill(&mut data);
        let frame = Frame {
            key: header.key.clone(),
            width: header.width,
            height: header.height,
            channels: header.channels,
            encoding: header.encoding.clone(),
            data,
            source: header.source.clone(),
        };
        self.send(port, std::slice::from_ref(&frame));
        Ok(())
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

    /// Drains the queued messages, keeping the queue's capacity (what the runtime does when it
    /// sends them; for drivers that call a stage in a loop, e.g. benchmarks).
    pub fn drain(&mut self) -> std::vec::Drain<'_, (String, RecordBatch)> {
        self.pending.drain(..)
    }

    /// Takes the queued in-place frames out as the Arrow payloads a receiver gets (port, the
    /// `UInt8` payload), decoding each sample's IPC stream (for tests and custom drivers).
    ///
    /// # Errors
    /// A sample that does not decode (a bug).
    pub fn take_in_place(&mut self) -> Result<Vec<(String, ArrayRef)>, StageError> {
        std::mem::take(&mut self.samples)
            .into_iter()
            .map(|(port, sample)| {
                let array = dora_node_api::arrow_utils::decode_arrow_ipc(&sample)
                    .map_err(|e| StageError::Internal(format!("in-place sample: {e}")))?;
                Ok((port, array.into_inner()))
            })
            .collect()
    }
}

/// A sample of `payload` bytes prepared as a `UInt8` Arrow IPC stream, and where the payload
/// starts in it (dora's `send_output_raw` layout, so receivers decode it as usual).
fn in_place_sample(
    allocator: &dora_node_api::SampleAllocator,
    payload: usize,
) -> eyre::Result<(dora_node_api::DataSample, usize)> {
    let prepared = dora_node_api::arrow_utils::ipc_encode::PreparedUint8Ipc::new(payload)?;
    let mut sample = allocator.allocate(prepared.byte_len())?;
    let at = prepared.encode_header_into(&mut sample)?;
    Ok((sample, at))
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

    /// Called on each tick of a `keep_warm` input (a dora timer in the graph), never with a
    /// message: redo the stage's expensive work on a dummy input, output discarded, so that its
    /// code and data stay in the CPU caches while the line is idle. Skip it when a real message
    /// was handled moments ago. Failures are the stage's to log; nothing is sent. Default:
    /// nothing.
    fn keep_warm(&mut self, _now_ns: u64) {}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use arrow::array::{Array, UInt8Array};
    use forgeline_schemas::Correlation;
    use forgeline_schemas::frame::wire;

    fn header() -> FrameHeader {
        FrameHeader {
            key: Correlation::new("camera-1", 9, 1_000),
            width: 5,
            height: 3,
            channels: 1,
            encoding: "mono8".into(),
            source: "simulated:1".into(),
        }
    }

    #[test]
    fn frames_are_written_in_place_into_the_sample_when_an_allocator_is_given() {
        let mut out = Outbox::with_allocator(dora_node_api::SampleAllocator::heap());
        out.send_frame("frame", &header(), |px| {
            for (i, p) in px.iter_mut().enumerate() {
                *p = u8::try_from(i).unwrap();
            }
        })
        .unwrap();
        assert!(
            out.take().is_empty(),
            "no record batch for an in-place frame"
        );
        let sent = out.take_in_place().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "frame");
        let bytes = sent[0].1.as_any().downcast_ref::<UInt8Array>().unwrap();
        let view = wire::parse(bytes.values()).unwrap();
        assert_eq!(view.key(), header().key);
        assert_eq!(view.pixels, (0..15).collect::<Vec<u8>>().as_slice());
        assert_eq!(
            view.pixels.as_ptr() as usize % wire::ALIGN,
            0,
            "aligned pixels"
        );
    }

    #[test]
    fn without_dora_a_frame_is_a_record_batch() {
        let mut out = Outbox::default();
        out.send_frame("frame", &header(), |px| px.fill(7)).unwrap();
        assert!(out.take_in_place().unwrap().is_empty());
        let sent = out.take();
        let rows = Frame::try_from_batch(&sent[0].1).unwrap();
        assert_eq!(rows[0].key, header().key);
        assert_eq!(rows[0].data, vec![7; 15]);
        assert_eq!(rows[0].source, "simulated:1");
    }

    #[test]
    fn an_overflowing_frame_is_an_input_error() {
        let mut h = header();
        h.width = u32::MAX;
        h.height = u32::MAX;
        h.channels = u32::MAX;
        let e = Outbox::default()
            .send_frame("frame", &h, |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
    }
}
