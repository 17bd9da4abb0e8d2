//! The helper nodes `forgeline bench-line` adds to the graphs it runs (`forgeline bench-node
//! <kind>`; not for production lines):
//!
//! - `probe`: listens to every stage's output, and for every item records when each stage sent
//!   it (dora's hybrid-logical-clock timestamp in the message metadata) against the item's
//!   acquisition time (its correlation key). At stop it prints one `BENCH-PROBE {json}` line
//!   with each hop's share and the throughput seen.
//! - `bare-source`, `bare-relay`, `bare-sink`: the bare dora baseline. Minimal nodes on
//!   `dora-node-api` directly (no forgeline runtime, no Arrow schema): a paced source sends a
//!   `UInt64` payload of the size of a waveform message, each relay forwards a payload of the
//!   size the matching stage sends and writes its send time into the payload, the sink prints
//!   `BENCH-BARE {json}` with each hop's latency.
//! - `frame-source`: a forgeline [`Stage`] sending one grey frame of `bytes` pixels per tick
//!   through the runtime's in-place path (`Outbox::send_frame`), its acquisition time taken
//!   just before the send; `bare-sink` reads it like a bare payload (for the frame-hop bench).
//! - `runtime-relay`: `bare-relay`'s work as a forgeline [`Stage`] under the node runtime (the
//!   payload as a one-column record batch): the runtime's own cost per hop, with no stage work,
//!   next to the bare relay in the same run.
//! - `multi-press`: the seeded press simulator for N presses interleaved in one acquisition
//!   node (each at `rate` strokes/min, its own seed and asset id `press-001`…), for the
//!   multi-asset runs. A forgeline [`Stage`], like `press-acquisition`.

use dora_node_api::{DoraNode, Event, MetadataParameters};
use eyre::{WrapErr, eyre};
use forgeline_acquisition::{Pacer, PressSimConfig, PressSimulator, Rate, VibrationSource};
use forgeline_runtime::columns::Header;
use forgeline_runtime::latency::{Latencies, Summary};
use forgeline_runtime::{
    ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate, now_ns, sent_ns,
};
use forgeline_schemas::Waveform;
use forgeline_schemas::arrow::array::{Array, UInt8Array, UInt64Array};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Prefix of the probe's summary line (parsed by `forgeline bench-line`).
pub const PROBE_MARK: &str = "BENCH-PROBE ";
/// Prefix of the bare baseline's summary line (parsed by `forgeline bench-line`).
pub const BARE_MARK: &str = "BENCH-BARE ";

/// Environment variable with the bare node's payload size in bytes.
pub const BARE_BYTES_ENV: &str = "FORGELINE_BENCH_BYTES";
/// Environment variable with the bare node's position in the chain (relay 1, 2, 3…).
pub const BARE_INDEX_ENV: &str = "FORGELINE_BENCH_INDEX";
/// Environment variable: `1` makes the bare source write its payload in place into the
/// shared-memory sample (`send_output_raw`, a `UInt8` payload) instead of sending a `UInt64`
/// array (one copy into the sample).
pub const BARE_RAW_ENV: &str = "FORGELINE_BENCH_RAW";
/// Environment variable with the bare source's rate in items per minute.
pub const BARE_RATE_ENV: &str = "FORGELINE_BENCH_RATE";

/// Runs the helper node `kind`.
///
/// # Errors
/// An unknown kind, a missing or bad environment variable, or a dora failure.
pub fn run(kind: &str) -> eyre::Result<()> {
    match kind {
        "probe" => probe(),
        "bare-source" => bare_source(),
        "bare-relay" => bare_relay(),
        "bare-sink" => bare_sink(),
        "multi-press" => forgeline_runtime::run_node::<MultiPress>(),
        "frame-source" => forgeline_runtime::run_node::<FrameSource>(),
        "runtime-relay" => forgeline_runtime::run_node::<RuntimeRelay>(),
        other => Err(eyre!(
            "unknown bench node `{other}` (kinds: probe, bare-source, bare-relay, bare-sink, multi-press, frame-source, runtime-relay)"
        )),
    }
}

/// What the probe or the bare sink prints at stop.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ChainReport {
    /// `(hop name, percentiles)` in line order.
    pub hops: Vec<(String, Summary)>,
    /// End to end: acquisition (or source send) → last stage's send (or the sink).
    pub end_to_end: Option<Summary>,
    /// Items that went all the way through.
    pub completed: u64,
    /// Items seen at the first port.
    pub started: u64,
    /// Completed items per second between the first and the last completion.
    pub items_per_s: f64,
    /// Messages dora dropped from the probe's (or sink's) own input queues.
    pub own_drops: u64,
}

/// The probe's input ids, in line order: a hop is from the previous port's send to this one's.
const PROBE_PORTS: [&str; 5] = ["waveform", "features", "score", "decision", "applied"];

fn probe() -> eyre::Result<()> {
    let (_node, mut events) =
        DoraNode::init_from_env().map_err(|e| eyre!("probe: cannot connect to dora: {e}"))?;
    // Send times per item: [acq, waveform, features, score, decision, applied].
    let mut items: HashMap<(String, u64), [u64; 6]> = HashMap::new();
    let mut hops: Vec<Latencies> = (0..PROBE_PORTS.len())
        .map(|_| Latencies::with_capacity(1_000_000))
        .collect();
    let mut end_to_end = Latencies::with_capacity(1_000_000);
    let (mut started, mut completed) = (0u64, 0u64);
    let (mut first_done, mut last_done) = (0u64, 0u64);
    let mut own_drops = 0u64;
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, metadata, data } => {
                let Some(stage) = PROBE_PORTS.iter().position(|p| *p == id.as_str()) else {
                    continue;
                };
                let send = sent_ns(&metadata);
                let array = data.into_inner();
                let Ok(batch) = forgeline_schemas::batch_from_struct_array(array.as_ref(), "probe")
                else {
                    continue;
                };
                let Ok(header) = Header::of(&batch, "probe") else {
                    continue;
                };
                for row in 0..batch.num_rows() {
                    let key = header.key(row);
                    if stage == 0 {
                        started += 1;
                    }
                    let entry = items
                        .entry((key.asset_id.clone(), key.seq))
                        .or_insert([0; 6]);
                    entry[0] = key.acq_time_ns;
                    entry[stage + 1] = send;
                    if stage + 1 == entry.len() - 1 {
                        // Last port: the item is complete; every earlier port has been seen
                        // unless the probe's own queue dropped it.
                        if let Some(t) = items.remove(&(key.asset_id, key.seq)) {
                            if t.iter().all(|&x| x > 0) {
                                for (h, l) in hops.iter_mut().enumerate() {
                                    l.record(t[h + 1].saturating_sub(t[h]));
                                }
                                end_to_end.record(t[5].saturating_sub(t[0]));
                            }
                            completed += 1;
                            let now = now_ns();
                            if first_done == 0 {
                                first_done = now;
                            }
                            last_done = now;
                        }
                    }
                }
            }
            Event::Stop(_) => break,
            _ => {}
        }
        for (_, n) in events.drain_drop_counts() {
            own_drops += n;
        }
    }
    let names = [
        "acquisition (tick → waveform sent)",
        "features (waveform sent → features sent)",
        "inference (features sent → score sent)",
        "threshold (score sent → decision sent)",
        "plc (decision sent → applied sent)",
    ];
    #[allow(clippy::cast_precision_loss)]
    let items_per_s = if last_done > first_done && completed > 1 {
        (completed - 1) as f64 / ((last_done - first_done) as f64 / 1e9)
    } else {
        0.0
    };
    let report = ChainReport {
        hops: names
            .iter()
            .zip(&hops)
            .filter_map(|(n, l)| l.summary().map(|s| ((*n).to_owned(), s)))
            .collect(),
        end_to_end: end_to_end.summary(),
        completed,
        started,
        items_per_s,
        own_drops,
    };
    println!("{PROBE_MARK}{}", serde_json::to_string(&report)?);
    Ok(())
}

fn env_u64(name: &str) -> eyre::Result<u64> {
    let text = std::env::var(name).wrap_err_with(|| format!("bench node: {name} is not set"))?;
    text.trim()
        .parse()
        .wrap_err_with(|| format!("bench node: {name}={text:?}, expected an unsigned integer"))
}

/// Payload words for `bytes` bytes: at least 8 words (seq + 7 time slots).
fn words(bytes: u64) -> usize {
    usize::try_from(bytes / 8).unwrap_or(usize::MAX).max(8)
}

fn bare_source() -> eyre::Result<()> {
    let bytes = env_u64(BARE_BYTES_ENV)?;
    let rate = env_u64(BARE_RATE_ENV)?;
    #[allow(clippy::cast_precision_loss)]
    let mut pacer = Pacer::new(Rate::StrokesPerMin(rate as f64)).with_max_burst(1_000);
    let (mut node, mut events) =
        DoraNode::init_from_env().map_err(|e| eyre!("bare-source: cannot connect to dora: {e}"))?;
    let mut seq = 0u64;
    let raw = std::env::var_os(BARE_RAW_ENV).is_some_and(|v| v == "1");
    let len = words(bytes) * 8;
    let mut payload = vec![0u64; words(bytes)];
    while let Some(event) = events.recv() {
        match event {
            Event::Input { .. } if raw => {
                for _ in 0..pacer.due(now_ns()) {
                    seq += 1;
                    // Written in place into the shared-memory sample: no payload copy.
                    node.send_output_raw(
                        "out".to_owned().into(),
                        MetadataParameters::default(),
                        len,
                        |buf| {
                            buf[..8].copy_from_slice(&seq.to_le_bytes());
                            buf[8..16].copy_from_slice(&now_ns().to_le_bytes());
                        },
                    )
                    .map_err(|e| eyre!("bare-source: send failed: {e}"))?;
                }
            }
            Event::Input { .. } => {
                for _ in 0..pacer.due(now_ns()) {
                    seq += 1;
                    payload[0] = seq;
                    payload[1] = now_ns();
                    node.send_output(
                        "out".to_owned().into(),
                        MetadataParameters::default(),
                        UInt64Array::from(payload.clone()),
                    )
                    .map_err(|e| eyre!("bare-source: send failed: {e}"))?;
                }
            }
            Event::Stop(_) => break,
            _ => {}
        }
    }
    Ok(())
}

fn bare_relay() -> eyre::Result<()> {
    let bytes = env_u64(BARE_BYTES_ENV)?;
    let index = usize::try_from(env_u64(BARE_INDEX_ENV)?)?;
    if !(1..=5).contains(&index) {
        return Err(eyre!(
            "bare-relay: {BARE_INDEX_ENV}={index}, expected 1 to 5"
        ));
    }
    let (mut node, mut events) =
        DoraNode::init_from_env().map_err(|e| eyre!("bare-relay: cannot connect to dora: {e}"))?;
    let mut payload = vec![0u64; words(bytes)];
    while let Some(event) = events.recv() {
        match event {
            Event::Input { data, .. } => {
                let array = data.into_inner();
                let Some(input) = array.as_any().downcast_ref::<UInt64Array>() else {
                    continue;
                };
                let n = input.len().min(index + 1);
                payload[..n].copy_from_slice(&input.values()[..n]);
                payload[index + 1] = now_ns();
                node.send_output(
                    "out".to_owned().into(),
                    MetadataParameters::default(),
                    UInt64Array::from(payload.clone()),
                )
                .map_err(|e| eyre!("bare-relay: send failed: {e}"))?;
            }
            Event::Stop(_) => break,
            _ => {}
        }
    }
    Ok(())
}

fn bare_sink() -> eyre::Result<()> {
    let relays = usize::try_from(env_u64(BARE_INDEX_ENV)?)?;
    let (_node, mut events) =
        DoraNode::init_from_env().map_err(|e| eyre!("bare-sink: cannot connect to dora: {e}"))?;
    let mut hops: Vec<Latencies> = (0..=relays)
        .map(|_| Latencies::with_capacity(1_000_000))
        .collect();
    let mut end_to_end = Latencies::with_capacity(1_000_000);
    let (mut completed, mut first, mut last, mut own_drops) = (0u64, 0u64, 0u64, 0u64);
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } => {
                // `tap*` inputs mirror the probe's fan-out in the line (every hop's output also
                // goes to one more receiver); only `in`, the end of the chain, is measured.
                if id.as_str() != "in" {
                    continue;
                }
                let now = now_ns();
                let array = data.into_inner();
                let raw_words: Vec<u64>;
                let v: &[u64] = if let Some(words) = relay_words(&array) {
                    words.values()
                } else if let Some(frame) = array
                    .as_any()
                    .downcast_ref::<UInt8Array>()
                    .and_then(|b| forgeline_schemas::frame::wire::parse(b.values()).ok())
                {
                    // An in-place frame from `frame-source`: its seq and acquisition time.
                    raw_words = vec![frame.seq, frame.acq_time_ns];
                    &raw_words
                } else if let Some(bytes) = array.as_any().downcast_ref::<UInt8Array>() {
                    // A raw source's payload: the words of interest, little-endian.
                    raw_words = bytes.values()[..bytes.len().min(8 * (relays + 2))]
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect();
                    &raw_words
                } else {
                    continue;
                };
                if v.len() < relays + 2 {
                    continue;
                }
                // v[1] = source send, v[1 + k] = relay k send.
                for (h, l) in hops.iter_mut().enumerate() {
                    let to = if h == relays { now } else { v[h + 2] };
                    l.record(to.saturating_sub(v[h + 1]));
                }
                end_to_end.record(now.saturating_sub(v[1]));
                completed += 1;
                if first == 0 {
                    first = now;
                }
                last = now;
            }
            Event::Stop(_) => break,
            _ => {}
        }
        for (_, n) in events.drain_drop_counts() {
            own_drops += n;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let items_per_s = if last > first && completed > 1 {
        (completed - 1) as f64 / ((last - first) as f64 / 1e9)
    } else {
        0.0
    };
    let report = ChainReport {
        hops: hops
            .iter()
            .enumerate()
            .filter_map(|(h, l)| l.summary().map(|s| (format!("bare hop {}", h + 1), s)))
            .collect(),
        end_to_end: end_to_end.summary(),
        completed,
        started: completed,
        items_per_s,
        own_drops,
    };
    println!("{BARE_MARK}{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Configuration of the `multi-press` bench node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiPressConfig {
    /// Number of simulated presses (default 1).
    pub presses: usize,
    /// Strokes per minute of each press (default 18).
    pub rate: f64,
    /// Seed of press `i` is `seed + i` (default 7).
    pub seed: u64,
}

impl Default for MultiPressConfig {
    fn default() -> Self {
        Self {
            presses: 1,
            rate: 18.0,
            seed: 7,
        }
    }
}

impl Validate for MultiPressConfig {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if !(1..=10_000).contains(&self.presses) {
            problems.push(ConfigProblem {
                field: "presses".into(),
                reason: format!("found {}, expected 1 to 10000", self.presses),
            });
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            problems.push(ConfigProblem {
                field: "rate".into(),
                reason: format!("found {}, expected strokes per minute > 0", self.rate),
            });
        }
        problems
    }
}

/// N presses in one acquisition node: press `i` starts `i / N` of a period after press 0, so
/// the strokes of all presses interleave evenly.
pub struct MultiPress {
    presses: Vec<(String, PressSimulator, Pacer)>,
    period_ns: u64,
    start_ns: Option<u64>,
}

impl Stage for MultiPress {
    type Config = MultiPressConfig;
    const KIND: &'static str = "multi-press";

    fn new(config: MultiPressConfig, _ctx: &InitContext) -> eyre::Result<Self> {
        let presses = (0..config.presses)
            .map(|i| {
                let sim = PressSimulator::new(PressSimConfig {
                    seed: config.seed + i as u64,
                    ..PressSimConfig::default()
                })
                .map_err(|e| eyre!("{e}"))?;
                Ok((
                    format!("press-{:03}", i + 1),
                    sim,
                    Pacer::new(Rate::StrokesPerMin(config.rate)).with_max_burst(1),
                ))
            })
            .collect::<eyre::Result<Vec<_>>>()?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let period_ns = (60.0e9 / config.rate) as u64;
        Ok(Self {
            presses,
            period_ns,
            start_ns: None,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let now = input.now_ns;
        let start = *self.start_ns.get_or_insert(now);
        let n = self.presses.len() as u64;
        for (i, (asset, sim, pacer)) in self.presses.iter_mut().enumerate() {
            // Press i's schedule starts at start + i * period / n.
            let offset = start + self.period_ns / n * i as u64;
            if now < offset {
                continue;
            }
            for _ in 0..pacer.due(now) {
                if let Some(Ok(stroke)) = sim.next_stroke() {
                    let row: Waveform = stroke.into_waveform(asset.clone(), now);
                    out.send("waveform", &[row]);
                }
            }
        }
        Ok(())
    }
}

/// Configuration of the `frame-source` bench node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameSourceConfig {
    /// Pixels per frame (a `bytes x 1` grey frame; default 4 MiB).
    pub bytes: u32,
    /// Frames per tick (default 1).
    pub per_tick: u32,
}

impl Default for FrameSourceConfig {
    fn default() -> Self {
        Self {
            bytes: 4 * 1024 * 1024,
            per_tick: 1,
        }
    }
}

impl Validate for FrameSourceConfig {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.bytes == 0 {
            problems.push(ConfigProblem {
                field: "bytes".into(),
                reason: "expected at least 1 pixel".into(),
            });
        }
        problems
    }
}

/// Sends frames through the forgeline runtime's in-place path (see the module doc).
pub struct FrameSource {
    config: FrameSourceConfig,
    seq: u64,
}

impl Stage for FrameSource {
    type Config = FrameSourceConfig;
    const KIND: &'static str = "frame-source";

    fn new(config: FrameSourceConfig, _ctx: &InitContext) -> eyre::Result<Self> {
        Ok(Self { config, seq: 0 })
    }

    fn on_input(&mut self, _input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        for _ in 0..self.config.per_tick {
            self.seq += 1;
            let header = forgeline_schemas::frame::wire::FrameHeader {
                key: forgeline_schemas::Correlation::new("bench", self.seq, now_ns()),
                width: self.config.bytes,
                height: 1,
                channels: 1,
                encoding: "mono8".into(),
                source: "bench".into(),
            };
            // The pixels a camera would write in place; the hop is measured from here.
            out.send_frame("frame", &header, |px| px[0] = 1)?;
        }
        Ok(())
    }
}

/// The column of a `runtime-relay` payload.
pub const RELAY_COLUMN: &str = "payload";

/// The words of a bare chain payload: a `UInt64` array (bare relays), or the same words in the
/// `payload` column of a one-column batch (runtime relays).
fn relay_words(array: &forgeline_schemas::arrow::array::ArrayRef) -> Option<&UInt64Array> {
    let any = array.as_any();
    any.downcast_ref::<UInt64Array>().or_else(|| {
        any.downcast_ref::<forgeline_schemas::arrow::array::StructArray>()
            .and_then(|s| s.column_by_name(RELAY_COLUMN))
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
    })
}

/// `bare-relay` under the forgeline runtime (see the module doc). Configured by the same
/// environment variables as `bare-relay`; its config is empty.
pub struct RuntimeRelay {
    index: usize,
    payload: Vec<u64>,
    schema: forgeline_schemas::arrow::datatypes::SchemaRef,
}

/// Configuration of `runtime-relay`: none (the bare chain's environment variables are read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeRelayConfig {}

impl Validate for RuntimeRelayConfig {
    fn validate(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

impl Stage for RuntimeRelay {
    type Config = RuntimeRelayConfig;
    const KIND: &'static str = "runtime-relay";

    fn new(_config: RuntimeRelayConfig, _ctx: &InitContext) -> eyre::Result<Self> {
        let bytes = env_u64(BARE_BYTES_ENV)?;
        let index = usize::try_from(env_u64(BARE_INDEX_ENV)?)?;
        if !(1..=5).contains(&index) {
            return Err(eyre!(
                "runtime-relay: {BARE_INDEX_ENV}={index}, expected 1 to 5"
            ));
        }
        let schema = std::sync::Arc::new(forgeline_schemas::arrow::datatypes::Schema::new(vec![
            forgeline_schemas::arrow::datatypes::Field::new(
                RELAY_COLUMN,
                forgeline_schemas::arrow::datatypes::DataType::UInt64,
                false,
            ),
        ]));
        Ok(Self {
            index,
            payload: vec![0u64; words(bytes)],
            schema,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let upstream = relay_words(input.data)
            .ok_or_else(|| StageError::Input("runtime-relay: expected a UInt64 payload".into()))?;
        let n = upstream.len().min(self.index + 1);
        self.payload[..n].copy_from_slice(&upstream.values()[..n]);
        self.payload[self.index + 1] = now_ns();
        let column: forgeline_schemas::arrow::array::ArrayRef =
            std::sync::Arc::new(UInt64Array::from(self.payload.clone()));
        let batch = forgeline_schemas::arrow::record_batch::RecordBatch::try_new(
            std::sync::Arc::clone(&self.schema),
            vec![column],
        )
        .map_err(|e| StageError::Internal(format!("runtime-relay: {e}")))?;
        out.send_batch("out", batch);
        Ok(())
    }
}
