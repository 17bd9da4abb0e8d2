//! `telemetry`: the plant-facing side of a line: a JSON-lines decision log (one line per
//! decision, appended and flushed), operator alerts in the log, and, when `mqtt:` is configured,
//! every alert (non-`ok` decision) and health event published to the plant's MQTT broker through
//! a durable store-and-forward queue (nothing accepted is lost while the broker is down).
//!
//! It is also the line's single Prometheus exporter (`metrics:`, [`metrics::METRICS`]): it
//! already receives every decision and, on its health inputs, every node's runtime report
//! ([`NodeReport`]) and the health node's [`SystemReport`], so one port serves the whole line.

pub mod exporter;
pub mod metrics;

pub use exporter::{MetricsConfig, MetricsServer};
pub use metrics::{LineMetrics, METRICS, MetricDef, MetricType};

use forgeline_mqtt::{MqttConfig, Outbound, Outcome, Telemetry as Mqtt, TelemetryEvent};
use forgeline_node_health::{SYSTEM_REPORT_CODE, SystemReport};
use forgeline_runtime::observe::NodeReport;
use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Decision, Health, HealthLevel, Score, Verdict};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// Configuration of `telemetry`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// JSON-lines decision log, appended to (default `out/decisions.jsonl`, relative to the
    /// graph's directory). Empty string: no log.
    pub decision_log: PathBuf,
    /// Also log every `ok` decision at INFO (default false: only non-ok verdicts).
    pub log_ok: bool,
    /// Publish alerts and health events to an MQTT broker (default: off). See
    /// `operators/mqtt/README.md` for every key.
    pub mqtt: Option<MqttConfig>,
    /// Serve Prometheus metrics on `GET /metrics` (default: off; `metrics: {}` binds
    /// 127.0.0.1:9464). See [`MetricsConfig`].
    pub metrics: Option<MetricsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            decision_log: PathBuf::from("out/decisions.jsonl"),
            log_ok: false,
            mqtt: None,
            metrics: None,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        self.mqtt
            .as_ref()
            .map(|m| {
                m.validate()
                    .into_iter()
                    .map(|p| ConfigProblem {
                        field: format!("mqtt.{}", p.field),
                        reason: format!("{}: {}", p.value, p.problem),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The telemetry stage.
pub struct Telemetry {
    log: Option<BufWriter<File>>,
    log_path: PathBuf,
    log_ok: bool,
    counts: [u64; 4],
    mqtt: Option<(SharedMqtt, std::sync::mpsc::Receiver<TelemetryEvent>)>,
    node_id: String,
    event_seq: u64,
    metrics: Arc<Mutex<LineMetrics>>,
    server: Option<MetricsServer>,
}

/// The MQTT engine, shared with the metrics endpoint (which reads its counters on scrape).
type SharedMqtt = Arc<Mutex<Option<Mqtt>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take metrics or alerts down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Ok => 0,
        Verdict::Reject => 1,
        Verdict::SensorFault => 2,
        Verdict::NoDecision => 3,
    }
}

impl Telemetry {
    /// Hands a message to the MQTT queue (never blocks on the network) and forwards the queue's
    /// own events (broker down/recovered, queue full) as health events.
    fn publish(
        &mut self,
        msg: Outbound<'_>,
        now_ns: u64,
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let Some((mqtt, events)) = self.mqtt.as_ref() else {
            return Ok(());
        };
        let result = match lock(mqtt).as_ref() {
            Some(m) => m.enqueue(msg, now_ns),
            None => return Ok(()),
        };
        match result {
            Ok(Outcome::Dropped(reason)) => tracing::warn!(?reason, "MQTT message dropped"),
            Ok(_) => {}
            Err(e) => return Err(StageError::External(format!("mqtt queue: {e}"))),
        }
        let pending: Vec<TelemetryEvent> = events.try_iter().collect();
        for event in pending {
            self.event_seq += 1;
            let h = event.to_health("telemetry", &self.node_id, self.event_seq, now_ns);
            tracing::warn!(code = event.code(), "{}", h.message);
            out.health(h);
        }
        Ok(())
    }

    fn write_line(&mut self, d: &Decision, now_ns: u64) -> Result<(), StageError> {
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        let line = serde_json::json!({
            "asset_id": d.key.asset_id,
            "seq": d.key.seq,
            "acq_time_ns": d.key.acq_time_ns,
            "decided_time_ns": d.decided_time_ns,
            "logged_time_ns": now_ns,
            "latency_ms": now_ns.saturating_sub(d.key.acq_time_ns) as f64 / 1e6,
            "verdict": d.verdict.as_str(),
            "severity": d.severity.to_string(),
            "score": if d.score.is_finite() { serde_json::json!(d.score) } else { serde_json::Value::Null },
            "threshold": d.threshold,
            "model_version": d.model_version,
            "reason": d.reason,
            "source": d.source,
        });
        writeln!(log, "{line}")
            .and_then(|()| log.flush())
            .map_err(|e| {
                StageError::External(format!("decision log {}: {e}", self.log_path.display()))
            })
    }
}

impl Stage for Telemetry {
    type Config = Config;
    const KIND: &'static str = "telemetry";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let log = if config.decision_log.as_os_str().is_empty() {
            None
        } else {
            if let Some(dir) = config
                .decision_log
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    eyre::eyre!("decision_log: cannot create {}: {e}", dir.display())
                })?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.decision_log)
                .map_err(|e| {
                    eyre::eyre!(
                        "decision_log: cannot open {}: {e}",
                        config.decision_log.display()
                    )
                })?;
            Some(BufWriter::new(f))
        };
        let mqtt = match config.mqtt {
            None => None,
            Some(m) => {
                if let Some(dir) = m.queue_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        eyre::eyre!("mqtt.queue_path: cannot create {}: {e}", dir.display())
                    })?;
                }
                tracing::info!(broker = %format!("{}:{}", m.host, m.port), "MQTT publishing on");
                let (engine, events) = Mqtt::start(m).map_err(|e| eyre::eyre!("mqtt: {e}"))?;
                Some((Arc::new(Mutex::new(Some(engine))), events))
            }
        };
        let metrics = Arc::new(Mutex::new(LineMetrics::default()));
        let server = match &config.metrics {
            None => None,
            Some(mc) => {
                let state = Arc::clone(&metrics);
                let engine = mqtt.as_ref().map(|(m, _)| Arc::clone(m));
                let render: exporter::Render = Arc::new(move || {
                    let counters = engine
                        .as_ref()
                        .and_then(|m| lock(m).as_ref().map(Mqtt::counters));
                    lock(&state).render(counters.as_ref())
                });
                // A taken port must not stop decisions and alerts: logged loudly, line goes on.
                match MetricsServer::start(mc, render) {
                    Ok(server) => {
                        tracing::info!(addr = %server.addr(), "Prometheus metrics at http://{}/metrics", server.addr());
                        Some(server)
                    }
                    Err(e) => {
                        tracing::error!("{e}; metrics are off for this run");
                        None
                    }
                }
            }
        };
        tracing::info!(decision_log = %config.decision_log.display(), "telemetry ready");
        Ok(Self {
            log,
            log_path: config.decision_log,
            log_ok: config.log_ok,
            counts: [0; 4],
            mqtt,
            node_id: ctx.node_id.clone(),
            event_seq: 0,
            metrics,
            server,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        // Inputs named `decision…` carry decisions, `score…` scores (metrics only); every other
        // input carries health events (alerts, node health, runtime reports), so a graph can
        // wire any number of them.
        match input.port {
            p if p.starts_with("score") => {
                let scores = input.rows::<Score>()?;
                let mut m = lock(&self.metrics);
                for s in &scores {
                    m.on_score(s);
                }
                Ok(())
            }
            p if !p.starts_with("decision") => {
                for h in input.rows::<Health>()? {
                    // Runtime counter reports feed metrics only (one per node per second).
                    if let Some(report) = NodeReport::from_health(&h) {
                        match report {
                            Ok(r) => lock(&self.metrics).on_node_report(r),
                            Err(e) => return Err(StageError::Input(e)),
                        }
                        continue;
                    }
                    if h.code == SYSTEM_REPORT_CODE {
                        match serde_json::from_str::<SystemReport>(&h.message) {
                            Ok(r) => lock(&self.metrics).on_system_report(r),
                            Err(e) => {
                                return Err(StageError::Input(format!(
                                    "system report from `{}`: {e}",
                                    h.node_id
                                )));
                            }
                        }
                    }
                    if h.level == HealthLevel::Ok && h.code == SYSTEM_REPORT_CODE {
                        tracing::debug!(node = %h.node_id, code = %h.code, "{}", h.message);
                    } else {
                        tracing::warn!(
                            asset = %h.key.asset_id, node = %h.node_id, level = %h.level,
                            code = %h.code, "{}", h.message
                        );
                    }
                    self.publish(Outbound::Health(&h), input.now_ns, out)?;
                }
                Ok(())
            }
            _ => {
                for d in input.rows::<Decision>()? {
                    self.counts[verdict_index(d.verdict)] += 1;
                    lock(&self.metrics).on_decision(&d, input.now_ns);
                    if d.verdict != Verdict::Ok || self.log_ok {
                        tracing::info!(
                            asset = %d.key.asset_id, seq = d.key.seq, verdict = d.verdict.as_str(),
                            severity = %d.severity, score = d.score, "{}", d.reason
                        );
                    }
                    self.write_line(&d, input.now_ns)?;
                    if forgeline_mqtt::is_alert(&d) {
                        self.publish(Outbound::Alert(&d), input.now_ns, out)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn on_stop(&mut self, _now_ns: u64, _out: &mut Outbox) -> Result<(), StageError> {
        let [ok, reject, sensor_fault, no_decision] = self.counts;
        tracing::info!(ok, reject, sensor_fault, no_decision, "decisions logged");
        if let Some((mqtt, _)) = self.mqtt.take() {
            // What is not sent within the drain time stays in the durable queue for next start.
            let engine = lock(&mqtt).take();
            if let Some(engine) = engine {
                let c = engine.shutdown(std::time::Duration::from_secs(2));
                tracing::info!(?c, "MQTT stopped");
            }
        }
        self.server = None;
        Ok(())
    }
}
