//! Per-node observability kept by the runtime: end-to-end latency from the correlation
//! timestamps, time spent in dora's queues, periodic counter reports on the `health` port, and
//! one OpenTelemetry span per item (see [`crate::otlp`]).
//!
//! Every node that declares a `health` output sends a [`NodeReport`] (code [`REPORT_CODE`],
//! JSON in the message text) at most every [`REPORT_INTERVAL_ENV`] ms (default 1000), and once
//! more when it stops. The `telemetry` node turns the reports of every node into Prometheus
//! metrics (one exporter per line); the `health` node uses them for liveness.

use crate::counters::Counters;
use crate::otlp::{OtlpExporter, SpanRecord, span_id, trace_id};
use crate::stage::{InitContext, Outbox};
use arrow::array::{Array, ArrayRef, StringArray, StructArray, UInt64Array};
use forgeline_schemas::{Correlation, Health, HealthLevel, arrow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Health `code` of the runtime's periodic counter report.
pub const REPORT_CODE: &str = "node_report";
/// Health `component` of the runtime's reports.
pub const REPORT_COMPONENT: &str = "runtime";
/// Environment variable: ms between two counter reports (default 1000; 0 disables them).
pub const REPORT_INTERVAL_ENV: &str = "FORGELINE_REPORT_INTERVAL_MS";
/// An input with this id (mapped from a dora timer, e.g. `report_tick: dora/timer/secs/1`) only
/// wakes the runtime so an idle node still sends its report (liveness); the stage never sees it.
/// dora 1.1's `recv_timeout` cannot do this: cancelling its wait lost input messages under load.
pub const REPORT_TICK_INPUT: &str = "report_tick";
/// An input with this id (mapped from a dora timer, e.g. `keep_warm: dora/timer/millis/5`)
/// calls [`crate::Stage::keep_warm`] instead of `on_input`: a stage whose work is slow from cold
/// CPU caches (a model run) redoes it on a dummy input so that the next real message, after a
/// pause between strokes, finds it warm. Not counted as a received message.
pub const KEEP_WARM_INPUT: &str = "keep_warm";

/// Bucket upper bounds (ms) shared by every latency histogram of forgeline.
pub const LATENCY_BUCKETS_MS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// A fixed-bucket latency histogram in ms ([`LATENCY_BUCKETS_MS`]), Prometheus-style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last entry counts those above the last
    /// bound (`+Inf`).
    pub counts: Vec<u64>,
    /// Sum of all observations, ms.
    pub sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            sum: 0.0,
        }
    }
}

impl Histogram {
    /// Records one observation in ms (negative values, from clock skew, count as 0).
    pub fn observe(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if self.counts.len() != LATENCY_BUCKETS_MS.len() + 1 {
            self.counts.resize(LATENCY_BUCKETS_MS.len() + 1, 0);
        }
        self.counts[i] += 1;
        self.sum += ms;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Cumulative counts per bound (`le`), the last one being `+Inf` (= [`Histogram::count`]).
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            })
            .collect()
    }
}

/// What a node's runtime reports periodically on its `health` port (cumulative since the node
/// process started; a restart starts from zero, which Prometheus treats as a counter reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// Node id in the graph.
    pub node: String,
    /// Node kind (`threshold`…).
    pub kind: String,
    /// How many times dora restarted the node.
    pub restarts: u32,
    /// Messages received per input.
    pub received: BTreeMap<String, u64>,
    /// Messages sent per output.
    pub sent: BTreeMap<String, u64>,
    /// Messages dora dropped per input (queue full).
    pub dropped: BTreeMap<String, u64>,
    /// Stage errors per class.
    pub errors: BTreeMap<String, u64>,
    /// Sends that dora refused.
    pub send_failures: u64,
    /// Acquisition → arrival at this node, ms, per item received (from `acq_time_ns`).
    pub latency_ms: Histogram,
    /// Send by the upstream node → arrival here, ms (time in dora's transport and queue).
    pub queue_wait_ms: Histogram,
    /// Items whose input was still waiting in the queue when this node finished the previous
    /// one, i.e. arrivals that found the node busy (an estimate of queueing; dora 1.1 does not
    /// expose queue lengths to nodes).
    pub queued_arrivals: u64,
}

impl NodeReport {
    /// Wraps the report in a [`Health`] event (`component` [`REPORT_COMPONENT`], code
    /// [`REPORT_CODE`], `value` = total messages received).
    pub fn to_health(&self, asset_id: &str, seq: u64, now_ns: u64) -> Health {
        Health {
            key: Correlation::new(asset_id, seq, now_ns),
            node_id: self.node.clone(),
            component: REPORT_COMPONENT.into(),
            level: HealthLevel::Ok,
            code: REPORT_CODE.into(),
            message: serde_json::to_string(self).unwrap_or_default(),
            value: self.received.values().sum::<u64>() as f64,
        }
    }

    /// The report carried by `h`: `None` when `h` is not a report, `Some(Err)` when it is one
    /// that does not parse (names the node and the reason).
    pub fn from_health(h: &Health) -> Option<Result<Self, String>> {
        (h.code == REPORT_CODE).then(|| {
            serde_json::from_str(&h.message)
                .map_err(|e| format!("node report from `{}`: {e}", h.node_id))
        })
    }
}

/// The correlation keys of every row of an item message (waveform, features, score,
/// decision…), `None` for other payloads. Health events carry keys too, but theirs name the
/// event, not an item, so they are left out (recognised by their `component` and `code` fields).
fn keys_of(data: &ArrayRef) -> Option<(&StringArray, &UInt64Array, &UInt64Array)> {
    let s = data.as_any().downcast_ref::<StructArray>()?;
    if s.column_by_name("component").is_some() && s.column_by_name("code").is_some() {
        return None;
    }
    let asset = s
        .column_by_name(forgeline_schemas::common::ASSET_ID)?
        .as_any()
        .downcast_ref::<StringArray>()?;
    let seq = s
        .column_by_name(forgeline_schemas::common::SEQ)?
        .as_any()
        .downcast_ref::<UInt64Array>()?;
    let acq = s
        .column_by_name(forgeline_schemas::common::ACQ_TIME_NS)?
        .as_any()
        .downcast_ref::<UInt64Array>()?;
    Some((asset, seq, acq))
}

/// At most this many items of one message get a span (a batch of thousands would flood the
/// exporter; forgeline messages carry one item).
const MAX_SPANS_PER_MESSAGE: usize = 64;

struct PendingSpan {
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    asset_id: String,
    seq: u64,
    start_ns: u64,
}

/// The runtime's observer of one node: fed by the event loop, it keeps the [`NodeReport`],
/// sends it on the `health` port, and emits spans when an OTLP endpoint is configured.
pub struct Observer {
    report: NodeReport,
    has_health: bool,
    interval_ns: u64,
    last_report_ns: u64,
    report_seq: u64,
    /// Input id → node id that feeds it (`None` for timers).
    sources: BTreeMap<String, Option<String>>,
    /// True when no input carries items (a source node such as acquisition): its spans are
    /// the roots, emitted when it sends.
    is_source: bool,
    exporter: Option<OtlpExporter>,
    pending: Vec<PendingSpan>,
    /// The first input that carried items: its spans get the node's span id (the one children
    /// name as parent); spans of other item inputs (e.g. the PLC's `acquired`) get their own.
    primary_port: Option<String>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("node", &self.report.node)
            .field("tracing", &self.exporter.is_some())
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Builds the observer of a node. `sources` maps each input id to the node that feeds it
    /// (`None` for timers); the OTLP exporter is built only when [`crate::otlp::ENDPOINT_ENV`]
    /// is set.
    pub fn new(kind: &str, ctx: &InitContext, sources: BTreeMap<String, Option<String>>) -> Self {
        let interval_ms = std::env::var(REPORT_INTERVAL_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1000);
        let exporter = OtlpExporter::from_env(&ctx.node_id);
        Self::with_exporter(kind, ctx, sources, interval_ms, exporter)
    }

    /// The observer of a dora node (its outputs, inputs and their sources from the graph).
    pub fn from_dora(kind: &str, node: &dora_node_api::DoraNode) -> Self {
        let config = node.node_config();
        let ctx = InitContext {
            node_id: node.id().to_string(),
            outputs: config.outputs.iter().map(ToString::to_string).collect(),
            inputs: config.inputs.keys().map(ToString::to_string).collect(),
            restart_count: node.restart_count(),
        };
        let sources = input_sources(
            config
                .inputs
                .iter()
                .map(|(id, input)| (id.to_string(), input.mapping.to_string())),
        );
        Self::new(kind, &ctx, sources)
    }

    /// As [`Observer::new`] with an explicit report interval and exporter (tests, benches).
    pub fn with_exporter(
        kind: &str,
        ctx: &InitContext,
        sources: BTreeMap<String, Option<String>>,
        interval_ms: u64,
        exporter: Option<OtlpExporter>,
    ) -> Self {
        let is_source = sources.values().all(Option::is_none);
        Self {
            report: NodeReport {
                node: ctx.node_id.clone(),
                kind: kind.to_owned(),
                restarts: ctx.restart_count,
                ..NodeReport::default()
            },
            has_health: ctx.outputs.iter().any(|o| o == crate::HEALTH_PORT),
            interval_ns: interval_ms.saturating_mul(1_000_000),
            last_report_ns: 0,
            report_seq: 0,
            sources,
            is_source,
            exporter,
            pending: Vec::new(),
            primary_port: None,
        }
    }

    /// The report as it stands.
    pub fn report(&self) -> &NodeReport {
        &self.report
    }

    /// Called when an input arrives, before the stage sees it: latency and queue-wait per item,
    /// and the start of the item's span.
    pub fn on_input(&mut self, port: &str, data: &ArrayRef, now_ns: u64, sent_ns: u64) {
        let frame_keys;
        let (asset, seq, acq) = match keys_of(data) {
            Some(keys) => keys,
            None => {
                // An in-place frame (`UInt8`, `frame::wire`): its one key.
                let Some(frame) = data
                    .as_any()
                    .downcast_ref::<arrow::array::UInt8Array>()
                    .and_then(|b| forgeline_schemas::frame::wire::parse(b.values()).ok())
                else {
                    return;
                };
                frame_keys = (
                    StringArray::from(vec![frame.asset_id]),
                    UInt64Array::from(vec![frame.seq]),
                    UInt64Array::from(vec![frame.acq_time_ns]),
                );
                (&frame_keys.0, &frame_keys.1, &frame_keys.2)
            }
        };
        if sent_ns > 0 {
            self.report
                .queue_wait_ms
                .observe(now_ns.saturating_sub(sent_ns) as f64 / 1e6);
        }
        for row in 0..acq.len() {
            self.report
                .latency_ms
                .observe(now_ns.saturating_sub(acq.value(row)) as f64 / 1e6);
        }
        if self.exporter.is_none() {
            return;
        }
        let parent_node = self.sources.get(port).cloned().flatten();
        let primary = self.primary_port.get_or_insert_with(|| port.to_owned()) == port;
        let own = if primary {
            self.report.node.clone()
        } else {
            format!("{}/{port}", self.report.node)
        };
        for row in 0..acq.len().min(MAX_SPANS_PER_MESSAGE) {
            let trace = trace_id(asset.value(row), seq.value(row), acq.value(row));
            self.pending.push(PendingSpan {
                trace,
                id: span_id(&trace, &own),
                parent: parent_node.as_deref().map(|p| span_id(&trace, p)),
                asset_id: asset.value(row).to_owned(),
                seq: seq.value(row),
                // The span covers the hop into this node too (from the upstream send).
                start_ns: if sent_ns > 0 {
                    sent_ns.min(now_ns)
                } else {
                    now_ns
                },
            });
        }
    }

    /// Counts an arrival that found the node busy (the runtime calls it when an input was
    /// already waiting after the previous one was handled).
    pub fn on_queued_arrival(&mut self) {
        self.report.queued_arrivals += 1;
    }

    /// Called after the stage handled an input: ends the spans started by [`Observer::on_input`].
    pub fn after_input(&mut self) {
        let Some(exporter) = self.exporter.as_ref() else {
            return;
        };
        let end_ns = crate::now_ns();
        for p in self.pending.drain(..) {
            exporter.export(SpanRecord {
                trace_id: p.trace,
                span_id: p.id,
                parent_span_id: p.parent,
                name: self.report.node.clone(),
                start_ns: p.start_ns,
                end_ns: end_ns.max(p.start_ns),
                asset_id: p.asset_id,
                seq: p.seq,
                kind: self.report.kind.clone(),
            });
        }
    }

    /// Called before the runtime sends what a stage queued: a source node's items start their
    /// trace here (root span from acquisition to send).
    pub fn before_send(&mut self, out: &Outbox, now_ns: u64) {
        if !self.is_source {
            return;
        }
        let Some(exporter) = self.exporter.as_ref() else {
            return;
        };
        for (port, batch) in &out.pending {
            if port == crate::HEALTH_PORT {
                continue;
            }
            let data: ArrayRef = std::sync::Arc::new(forgeline_schemas::to_struct_array(batch));
            let Some((asset, seq, acq)) = keys_of(&data) else {
                continue;
            };
            for row in 0..acq.len().min(MAX_SPANS_PER_MESSAGE) {
                let trace = trace_id(asset.value(row), seq.value(row), acq.value(row));
                exporter.export(SpanRecord {
                    trace_id: trace,
                    span_id: span_id(&trace, &self.report.node),
                    parent_span_id: None,
                    name: self.report.node.clone(),
                    start_ns: acq.value(row).min(now_ns),
                    end_ns: now_ns,
                    asset_id: asset.value(row).to_owned(),
                    seq: seq.value(row),
                    kind: self.report.kind.clone(),
                });
            }
        }
    }

    /// Queues a [`NodeReport`] on the `health` port when the node has one and the interval has
    /// passed (always when `force`, e.g. at stop).
    pub fn maybe_report(
        &mut self,
        counters: &Counters,
        now_ns: u64,
        force: bool,
        out: &mut Outbox,
    ) {
        if !self.has_health || self.interval_ns == 0 {
            return;
        }
        if !force && now_ns.saturating_sub(self.last_report_ns) < self.interval_ns {
            return;
        }
        self.last_report_ns = now_ns;
        self.report_seq += 1;
        let r = &mut self.report;
        r.received.clone_from(&counters.received);
        r.sent.clone_from(&counters.sent);
        r.dropped.clone_from(&counters.dropped);
        r.errors = counters
            .errors
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        r.send_failures = counters.send_failures;
        out.health(self.report.to_health("", self.report_seq, now_ns));
    }

    /// Flushes the span exporter (waits at most its flush timeout). Called when the node stops.
    pub fn finish(&mut self) {
        if let Some(e) = self.exporter.take() {
            e.shutdown();
        }
    }
}

/// Input id → feeding node id (`None` for timers and other dora built-ins), from the input
/// mappings as dora prints them (`node/output`, `dora/timer/…`).
pub fn input_sources<'a>(
    mappings: impl IntoIterator<Item = (String, String)> + 'a,
) -> BTreeMap<String, Option<String>> {
    mappings
        .into_iter()
        .map(|(input, mapping)| {
            let source = mapping
                .split_once('/')
                .map(|(node, _)| node.to_owned())
                .filter(|n| n != "dora");
            (input, source)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use forgeline_schemas::Decision;

    fn ctx(outputs: &[&str]) -> InitContext {
        InitContext {
            node_id: "threshold".into(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            inputs: vec!["score".into()],
            restart_count: 0,
        }
    }

    #[test]
    fn histogram_buckets_are_prometheus_le() {
        let mut h = Histogram::default();
        for ms in [0.05, 0.1, 0.2, 3.0, 1000.0, 5000.0, -1.0] {
            h.observe(ms);
        }
        let c = h.cumulative();
        assert_eq!(c.len(), LATENCY_BUCKETS_MS.len() + 1);
        assert_eq!(c[0], 3, "0.05, 0.1 and the clamped -1 are <= 0.1");
        assert_eq!(c[1], 4);
        assert_eq!(c[5], 5, "3.0 <= 5");
        assert_eq!(c[12], 6, "1000 <= 1000");
        assert_eq!(c[13], 7);
        assert_eq!(h.count(), 7);
    }

    #[test]
    fn report_measures_latency_and_round_trips_through_health() {
        let mut obs = Observer::with_exporter(
            "threshold",
            &ctx(&["decision", "health"]),
            input_sources([("score".to_owned(), "inference/score".to_owned())]),
            1000,
            None,
        );
        let d = Decision {
            key: Correlation::new("press-01", 5, 1_000_000_000),
            ..Decision::default()
        };
        let data: ArrayRef =
            std::sync::Arc::new(forgeline_schemas::to_struct_array(&Decision::to_batch(&[
                d,
            ])));
        // Arrives 3 ms after acquisition, 1 ms after it was sent.
        obs.on_input("score", &data, 1_003_000_000, 1_002_000_000);
        let mut counters = Counters::default();
        counters.received.insert("score".into(), 1);
        let mut out = Outbox::default();
        obs.maybe_report(&counters, 2_000_000_000, false, &mut out);
        obs.maybe_report(&counters, 2_100_000_000, false, &mut out);
        assert_eq!(out.pending().len(), 1, "one report per interval");
        let h = &Health::try_from_batch(&out.pending()[0].1).unwrap()[0];
        let r = NodeReport::from_health(h).unwrap().unwrap();
        assert_eq!(r.node, "threshold");
        assert_eq!(r.received["score"], 1);
        assert_eq!(r.latency_ms.cumulative()[5], 1, "3 ms falls in le=5");
        assert_eq!(r.latency_ms.cumulative()[4], 0, "not in le=2");
        assert_eq!(r.queue_wait_ms.cumulative()[3], 1, "1 ms in le=1");
        obs.maybe_report(&counters, 2_100_000_000, true, &mut out);
        assert_eq!(out.pending().len(), 2, "forced report at stop");
    }

    #[test]
    fn no_health_port_no_report_and_timers_are_not_sources() {
        let mut obs = Observer::with_exporter(
            "press-acquisition",
            &ctx(&["waveform"]),
            input_sources([("tick".to_owned(), "dora/timer/millis/50".to_owned())]),
            1,
            None,
        );
        let mut out = Outbox::default();
        obs.maybe_report(&Counters::default(), 10_000_000_000, true, &mut out);
        assert!(out.pending().is_empty());
        assert!(obs.is_source);
        assert_eq!(
            input_sources([("a".to_owned(), "press/waveform".to_owned())])["a"].as_deref(),
            Some("press")
        );
    }
}
