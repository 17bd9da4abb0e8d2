//! `telemetry`: the plant-facing side of a line. Here: a durable JSON-lines decision log (one line
//! per decision, appended and flushed) and operator alerts in the log. MQTT, Prometheus and
//! OpenTelemetry export build on this node.

use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Decision, Health, Verdict};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Configuration of `telemetry`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// JSON-lines decision log, appended to (default `out/decisions.jsonl`, relative to the
    /// graph's directory). Empty string: no log.
    pub decision_log: PathBuf,
    /// Also log every `ok` decision at INFO (default false: only non-ok verdicts).
    pub log_ok: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            decision_log: PathBuf::from("out/decisions.jsonl"),
            log_ok: false,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// The telemetry stage.
pub struct Telemetry {
    log: Option<BufWriter<File>>,
    log_path: PathBuf,
    log_ok: bool,
    counts: [u64; 4],
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

    fn new(config: Config, _ctx: &InitContext) -> eyre::Result<Self> {
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
        tracing::info!(decision_log = %config.decision_log.display(), "telemetry ready");
        Ok(Self {
            log,
            log_path: config.decision_log,
            log_ok: config.log_ok,
            counts: [0; 4],
        })
    }

    fn on_input(&mut self, input: &Input<'_>, _out: &mut Outbox) -> Result<(), StageError> {
        // Inputs named `decision…` carry decisions; every other input carries health events
        // (alerts, node health), so a graph can wire any number of them.
        match input.port {
            p if !p.starts_with("decision") => {
                for h in input.rows::<Health>()? {
                    tracing::warn!(
                        asset = %h.key.asset_id, node = %h.node_id, level = %h.level,
                        code = %h.code, "{}", h.message
                    );
                }
                Ok(())
            }
            _ => {
                for d in input.rows::<Decision>()? {
                    self.counts[verdict_index(d.verdict)] += 1;
                    if d.verdict != Verdict::Ok || self.log_ok {
                        tracing::info!(
                            asset = %d.key.asset_id, seq = d.key.seq, verdict = d.verdict.as_str(),
                            severity = %d.severity, score = d.score, "{}", d.reason
                        );
                    }
                    self.write_line(&d, input.now_ns)?;
                }
                Ok(())
            }
        }
    }

    fn on_stop(&mut self, _now_ns: u64, _out: &mut Outbox) -> Result<(), StageError> {
        let [ok, reject, sensor_fault, no_decision] = self.counts;
        tracing::info!(ok, reject, sensor_fault, no_decision, "decisions logged");
        Ok(())
    }
}
