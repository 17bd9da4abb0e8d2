//! The line's Prometheus metrics, kept by the telemetry node (the line's single exporter) and
//! rendered in the text exposition format 0.0.4. Fed by decisions, scores, the runtime's
//! per-node [`NodeReport`]s, the health node's [`SystemReport`]s and the MQTT engine's counters.

use forgeline_mqtt::Counters as MqttCounters;
use forgeline_node_health::SystemReport;
use forgeline_runtime::observe::{Histogram, LATENCY_BUCKETS_MS, NodeReport};
use forgeline_schemas::{Decision, Score};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic counter (`_total`).
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl MetricType {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One exported metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Family name.
    pub name: &'static str,
    /// Type.
    pub kind: MetricType,
    /// Label names (in order).
    pub labels: &'static [&'static str],
    /// `# HELP` text.
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

use MetricType::{Counter, Gauge, Histogram as Hist};

/// Every metric family the exporter writes (the dashboard test checks against this list).
pub const METRICS: &[MetricDef] = &[
    m(
        "edge_inference_latency_ms",
        Hist,
        &[],
        "Time in the model per item (Score.inference_ns), ms.",
    ),
    m(
        "edge_inference_total",
        Counter,
        &[],
        "Items scored by the model.",
    ),
    m(
        "edge_decision_latency_ms",
        Hist,
        &[],
        "Acquisition to decision logged by telemetry, ms.",
    ),
    m(
        "edge_decisions_total",
        Counter,
        &["verdict"],
        "Decisions by verdict.",
    ),
    m(
        "edge_anomaly_alerts_total",
        Counter,
        &["severity"],
        "Alerts (non-ok decisions) by severity.",
    ),
    m("edge_anomaly_score", Gauge, &[], "Last anomaly score."),
    m(
        "edge_model_version",
        Gauge,
        &["model", "version", "provider"],
        "Model in use (info metric, value 1).",
    ),
    m(
        "edge_cpu_usage_ratio",
        Gauge,
        &[],
        "CPU busy fraction (0..1) over the health node's last interval.",
    ),
    m(
        "edge_memory_used_bytes",
        Gauge,
        &[],
        "Memory in use (MemTotal - MemAvailable).",
    ),
    m("edge_memory_total_bytes", Gauge, &[], "Memory installed."),
    m(
        "edge_temperature_celsius",
        Gauge,
        &["sensor"],
        "Temperatures exposed by the OS.",
    ),
    m(
        "edge_thermal_throttle_events_total",
        Counter,
        &[],
        "CPU thermal throttling events since boot.",
    ),
    m(
        "edge_decision_latency_p95_ms",
        Gauge,
        &[],
        "Rolling p95 of acquisition to decision latency (health node).",
    ),
    m(
        "edge_latency_budget_ms",
        Gauge,
        &[],
        "The line's latency budget.",
    ),
    m(
        "edge_latency_budget_alarm",
        Gauge,
        &[],
        "1 while the p95 is at or above the alarm fraction of the budget.",
    ),
    m(
        "edge_node_up",
        Gauge,
        &["node"],
        "1 when the node reported within the silence limit (health node).",
    ),
    m(
        "edge_node_latency_ms",
        Hist,
        &["node"],
        "Acquisition to arrival at the node, per item, ms (correlation timestamps).",
    ),
    m(
        "edge_node_queue_wait_ms",
        Hist,
        &["node"],
        "Upstream send to arrival at the node (dora transport and input queue), ms.",
    ),
    m(
        "edge_node_queued_arrivals_total",
        Counter,
        &["node"],
        "Inputs that arrived while the node was busy (queueing estimate).",
    ),
    m(
        "edge_node_received_total",
        Counter,
        &["node", "input"],
        "Messages received per input.",
    ),
    m(
        "edge_node_sent_total",
        Counter,
        &["node", "output"],
        "Messages sent per output.",
    ),
    m(
        "edge_node_dropped_total",
        Counter,
        &["node", "input"],
        "Messages dora dropped because the input queue was full.",
    ),
    m(
        "edge_node_errors_total",
        Counter,
        &["node", "class"],
        "Stage errors per class.",
    ),
    m(
        "edge_node_restarts",
        Gauge,
        &["node"],
        "Restarts of the node by dora.",
    ),
    m(
        "edge_mqtt_enqueued_total",
        Counter,
        &[],
        "Messages accepted onto the store-and-forward queue.",
    ),
    m(
        "edge_mqtt_published_total",
        Counter,
        &[],
        "Publishes written to the broker (resends included).",
    ),
    m(
        "edge_mqtt_acked_total",
        Counter,
        &[],
        "PUBACKs received (queued entries removed).",
    ),
    m(
        "edge_mqtt_resent_total",
        Counter,
        &[],
        "Publishes resent after a reconnect.",
    ),
    m(
        "edge_mqtt_dropped_total",
        Counter,
        &["kind"],
        "Queue entries dropped or evicted, by kind.",
    ),
    m(
        "edge_mqtt_backlog",
        Gauge,
        &[],
        "Entries waiting in the queue (not acknowledged).",
    ),
    m(
        "edge_mqtt_backlog_bytes",
        Gauge,
        &[],
        "Bytes counted in the queue.",
    ),
    m(
        "edge_mqtt_connected",
        Gauge,
        &[],
        "1 while connected to the broker.",
    ),
    m(
        "edge_mqtt_reconnects_total",
        Counter,
        &[],
        "Reconnections to the broker.",
    ),
];

/// The line's metric state.
#[derive(Debug, Clone, Default)]
pub struct LineMetrics {
    inference_latency: Histogram,
    inference_total: u64,
    decision_latency: Histogram,
    decisions: BTreeMap<&'static str, u64>,
    alerts: BTreeMap<&'static str, u64>,
    last_score: Option<f64>,
    models: BTreeMap<(String, String, String), ()>,
    nodes: BTreeMap<String, NodeReport>,
    system: Option<SystemReport>,
}

impl LineMetrics {
    /// Counts a score from inference.
    pub fn on_score(&mut self, s: &Score) {
        self.inference_total += 1;
        self.inference_latency.observe(s.inference_ns as f64 / 1e6);
        if s.score.is_finite() {
            self.last_score = Some(f64::from(s.score));
        }
        let (model, version) = s
            .model_version
            .split_once('@')
            .unwrap_or((s.model_version.as_str(), ""));
        let key = (model.to_owned(), version.to_owned(), s.provider.clone());
        if !self.models.contains_key(&key) {
            // A new model (or provider) replaces the old one: the info metric shows what runs.
            self.models.clear();
            self.models.insert(key, ());
        }
    }

    /// Counts a decision logged at `now_ns`.
    pub fn on_decision(&mut self, d: &Decision, now_ns: u64) {
        self.decision_latency
            .observe(now_ns.saturating_sub(d.key.acq_time_ns) as f64 / 1e6);
        *self.decisions.entry(d.verdict.as_str()).or_default() += 1;
        if forgeline_mqtt::is_alert(d) {
            *self.alerts.entry(d.severity.as_str()).or_default() += 1;
        }
        if self.inference_total == 0 && d.score.is_finite() {
            // Without a score input the decision's score is the best we have.
            self.last_score = Some(f64::from(d.score));
        }
    }

    /// Stores a node's latest runtime report.
    pub fn on_node_report(&mut self, r: NodeReport) {
        self.nodes.insert(r.node.clone(), r);
    }

    /// Stores the health node's latest report.
    pub fn on_system_report(&mut self, r: SystemReport) {
        self.system = Some(r);
    }

    /// Decisions counted per verdict.
    pub fn decisions(&self) -> &BTreeMap<&'static str, u64> {
        &self.decisions
    }

    /// The text exposition of every metric, with the MQTT engine's counters when publishing.
    pub fn render(&self, mqtt: Option<&MqttCounters>) -> String {
        let mut w = Writer::default();
        for def in METRICS {
            w.header(def);
            self.family(def.name, mqtt, &mut w);
        }
        w.out
    }

    #[allow(clippy::too_many_lines)]
    fn family(&self, name: &str, mqtt: Option<&MqttCounters>, w: &mut Writer) {
        let sys = self.system.as_ref();
        match name {
            "edge_inference_latency_ms" => w.histogram(name, &[], &self.inference_latency),
            "edge_inference_total" => w.sample(name, &[], self.inference_total as f64),
            "edge_decision_latency_ms" => w.histogram(name, &[], &self.decision_latency),
            "edge_decisions_total" => {
                for v in forgeline_schemas::Verdict::NAMES {
                    let n = self.decisions.get(v).copied().unwrap_or(0);
                    w.sample(name, &[("verdict", v)], n as f64);
                }
            }
            "edge_anomaly_alerts_total" => {
                for s in forgeline_schemas::Severity::NAMES {
                    let n = self.alerts.get(s).copied().unwrap_or(0);
                    w.sample(name, &[("severity", s)], n as f64);
                }
            }
            "edge_anomaly_score" => {
                if let Some(s) = self.last_score {
                    w.sample(name, &[], s);
                }
            }
            "edge_model_version" => {
                for (m, v, p) in self.models.keys() {
                    w.sample(name, &[("model", m), ("version", v), ("provider", p)], 1.0);
                }
            }
            "edge_cpu_usage_ratio" => w.opt(name, sys.and_then(|s| s.cpu_usage_ratio)),
            "edge_memory_used_bytes" => {
                w.opt(
                    name,
                    sys.and_then(|s| s.memory_used_bytes).map(|b| b as f64),
                );
            }
            "edge_memory_total_bytes" => {
                w.opt(
                    name,
                    sys.and_then(|s| s.memory_total_bytes).map(|b| b as f64),
                );
            }
            "edge_temperature_celsius" => {
                for t in sys.map(|s| s.temperatures.as_slice()).unwrap_or_default() {
                    w.sample(name, &[("sensor", &t.sensor)], t.celsius);
                }
            }
            "edge_thermal_throttle_events_total" => {
                w.opt(name, sys.and_then(|s| s.throttle_events).map(|n| n as f64));
            }
            "edge_decision_latency_p95_ms" => w.opt(name, sys.and_then(|s| s.decision_p95_ms)),
            "edge_latency_budget_ms" => w.opt(name, sys.map(|s| s.budget_ms)),
            "edge_latency_budget_alarm" => {
                w.opt(name, sys.map(|s| f64::from(u8::from(s.budget_alarm))));
            }
            "edge_node_up" => {
                for (node, l) in sys.map(|s| &s.nodes).into_iter().flatten() {
                    w.sample(name, &[("node", node)], f64::from(u8::from(l.alive)));
                }
            }
            "edge_node_latency_ms" => {
                for (node, r) in &self.nodes {
                    w.histogram(name, &[("node", node)], &r.latency_ms);
                }
            }
            "edge_node_queue_wait_ms" => {
                for (node, r) in &self.nodes {
                    w.histogram(name, &[("node", node)], &r.queue_wait_ms);
                }
            }
            "edge_node_queued_arrivals_total" => {
                for (node, r) in &self.nodes {
                    w.sample(name, &[("node", node)], r.queued_arrivals as f64);
                }
            }
            "edge_node_received_total" | "edge_node_sent_total" | "edge_node_dropped_total" => {
                let label = if name == "edge_node_sent_total" {
                    "output"
                } else {
                    "input"
                };
                for (node, r) in &self.nodes {
                    let map = match name {
                        "edge_node_received_total" => &r.received,
                        "edge_node_sent_total" => &r.sent,
                        _ => &r.dropped,
                    };
                    for (port, n) in map {
                        w.sample(name, &[("node", node), (label, port)], *n as f64);
                    }
                }
            }
            "edge_node_errors_total" => {
                for (node, r) in &self.nodes {
                    for (class, n) in &r.errors {
                        w.sample(name, &[("node", node), ("class", class)], *n as f64);
                    }
                }
            }
            "edge_node_restarts" => {
                for (node, r) in &self.nodes {
                    w.sample(name, &[("node", node)], f64::from(r.restarts));
                }
            }
            _ => {
                if let Some(c) = mqtt {
                    mqtt_family(name, c, w);
                }
            }
        }
    }
}

fn mqtt_family(name: &str, c: &MqttCounters, w: &mut Writer) {
    let v = match name {
        "edge_mqtt_enqueued_total" => c.enqueued,
        "edge_mqtt_published_total" => c.published,
        "edge_mqtt_acked_total" => c.acked,
        "edge_mqtt_resent_total" => c.resent,
        "edge_mqtt_backlog" => c.backlog,
        "edge_mqtt_backlog_bytes" => c.backlog_bytes,
        "edge_mqtt_connected" => u64::from(c.connected),
        "edge_mqtt_reconnects_total" => c.reconnects,
        "edge_mqtt_dropped_total" => {
            for (kind, i) in [("score", 0), ("health", 1), ("alert", 2)] {
                w.sample(name, &[("kind", kind)], c.dropped[i] as f64);
            }
            return;
        }
        _ => return,
    };
    w.sample(name, &[], v as f64);
}

#[derive(Default)]
struct Writer {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

impl Writer {
    fn header(&mut self, def: &MetricDef) {
        let _ = writeln!(self.out, "# HELP {} {}", def.name, def.help);
        let _ = writeln!(self.out, "# TYPE {} {}", def.name, def.kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(v));
    }

    fn opt(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.sample(name, &[], v);
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let cumulative = h.cumulative();
        for (i, c) in cumulative.iter().enumerate() {
            let le = LATENCY_BUCKETS_MS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| number(*b));
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, *c as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forgeline_schemas::{Correlation, Severity, Verdict};

    #[test]
    fn exposition_has_types_labels_and_cumulative_buckets() {
        let mut m = LineMetrics::default();
        m.on_score(&Score {
            score: 0.5,
            model_version: "press-anomaly@1.0.0".into(),
            provider: "cpu".into(),
            inference_ns: 300_000,
            ..Score::default()
        });
        for (i, (verdict, severity)) in [
            (Verdict::Ok, Severity::None),
            (Verdict::Reject, Severity::Critical),
            (Verdict::SensorFault, Severity::Warning),
        ]
        .into_iter()
        .enumerate()
        {
            let d = Decision {
                key: Correlation::new("press-01", i as u64, 1_000_000_000),
                verdict,
                severity,
                ..Decision::default()
            };
            m.on_decision(&d, 1_004_000_000);
        }
        let text = m.render(Some(&MqttCounters {
            published: 2,
            backlog: 1,
            ..MqttCounters::default()
        }));
        for def in METRICS {
            assert!(
                text.contains(&format!("# TYPE {} {}\n", def.name, def.kind.as_str())),
                "{}",
                def.name
            );
        }
        assert!(text.contains("edge_inference_total 1\n"));
        assert!(text.contains("edge_inference_latency_ms_bucket{le=\"0.25\"} 0\n"));
        assert!(text.contains("edge_inference_latency_ms_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("edge_inference_latency_ms_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("edge_decision_latency_ms_bucket{le=\"5\"} 3\n"));
        assert!(text.contains("edge_decisions_total{verdict=\"reject\"} 1\n"));
        assert!(text.contains("edge_anomaly_alerts_total{severity=\"critical\"} 1\n"));
        assert!(text.contains("edge_anomaly_alerts_total{severity=\"warning\"} 1\n"));
        assert!(text.contains(
            "edge_model_version{model=\"press-anomaly\",version=\"1.0.0\",provider=\"cpu\"} 1\n"
        ));
        assert!(text.contains("edge_mqtt_published_total 2\n"));
        assert!(text.contains("edge_mqtt_backlog 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1000.0), "1000");
    }

    #[test]
    fn every_metric_in_the_grafana_dashboard_is_exported() {
        let dashboard = include_str!("../../../docs/grafana/forgeline-dashboard.json");
        let v: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        let mut exprs = Vec::new();
        for p in v["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                exprs.push(t["expr"].as_str().unwrap().to_owned());
            }
        }
        let mut used = std::collections::BTreeSet::new();
        for e in &exprs {
            let bytes = e.as_bytes();
            let mut i = 0;
            while let Some(at) = e[i..].find("edge_") {
                let start = i + at;
                let end = start
                    + bytes[start..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                        .count();
                used.insert(e[start..end].to_owned());
                i = end;
            }
        }
        assert!(used.len() >= 20, "dashboard uses {used:?}");
        for name in &used {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| METRICS.iter().any(|d| d.name == *f && d.kind == Hist))
                .unwrap_or(name);
            assert!(
                METRICS.iter().any(|d| d.name == family),
                "dashboard uses `{name}`, which the exporter does not write"
            );
        }
        for required in [
            "edge_inference_latency_ms_bucket",
            "edge_anomaly_alerts_total",
            "edge_anomaly_score",
            "edge_model_version",
            "edge_cpu_usage_ratio",
            "edge_temperature_celsius",
            "edge_node_dropped_total",
            "edge_mqtt_backlog",
        ] {
            assert!(used.contains(required), "dashboard lacks {required}");
        }
    }

    #[test]
    fn every_name_follows_prometheus_conventions() {
        for def in METRICS {
            assert!(def.name.starts_with("edge_"));
            assert_eq!(
                def.name.ends_with("_total"),
                def.kind == Counter,
                "{}: counters and only counters end in _total",
                def.name
            );
        }
    }
}
