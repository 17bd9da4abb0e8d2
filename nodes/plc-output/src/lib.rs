//! `plc-output`: decisions to the PLC over Modbus TCP, in time or fail-safe.
//!
//! - Every acquired item (input `acquired`, e.g. `press/waveform`) gets a deadline
//!   (`fail_safe.deadline_ms` after acquisition). A decision in time is written; none in time
//!   (inference crashed, a node restarted, data was lost) → the configured fail-safe verdict is
//!   written for that item and an alarm goes out. A verdict after its deadline is logged and
//!   counted, never applied out of order.
//! - Writes go through a worker thread with a bounded queue, so a slow or dead PLC never blocks
//!   the event loop; while the PLC is down the worker retries with backoff and keeps the latest
//!   state; `plc_down` / `plc_recovered` go out on `health`.
//! - Every decision applied is also sent on `applied` (for latency measurement and audit).

use forgeline_plc::{DeadlineOutcome, DeadlineTracker, FailSafeConfig, PlcConfig, PlcWorker};
use forgeline_runtime::latency::Latencies;
use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Correlation, Decision, Health, HealthLevel};
use serde::Deserialize;

/// Configuration of `plc-output`: link, register map, worker and fail-safe (see
/// `operators/plc/README.md` for the register map table).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Config(pub PlcConfig);

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        match self.0.validate("") {
            Ok(()) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| ConfigProblem {
                    field: p.field,
                    reason: format!("found {}, expected {}", p.value, p.expected),
                })
                .collect(),
        }
    }
}

/// The PLC output stage.
pub struct PlcOutput {
    worker: PlcWorker,
    tracker: DeadlineTracker,
    fail_safe: FailSafeConfig,
    node_id: String,
    health_seq: u64,
    late: u64,
    fail_safes: u64,
    /// Acquisition → this node, for every verdict decided by the line (fail-safes excluded).
    latency: Latencies,
}

impl PlcOutput {
    fn alarm(
        &mut self,
        out: &mut Outbox,
        key: &Correlation,
        level: HealthLevel,
        code: &str,
        message: String,
        value: f64,
    ) {
        self.health_seq += 1;
        out.health(Health {
            key: Correlation::new(key.asset_id.clone(), self.health_seq, key.acq_time_ns),
            node_id: self.node_id.clone(),
            component: "plc".into(),
            level,
            code: code.into(),
            message,
            value,
        });
    }

    fn apply(&mut self, decision: Decision, now_ns: u64, out: &mut Outbox) {
        let latency_ms = now_ns.saturating_sub(decision.key.acq_time_ns) as f64 / 1e6;
        tracing::debug!(asset = %decision.key.asset_id, seq = decision.key.seq, verdict = decision.verdict.as_str(), latency_ms, "to PLC");
        out.send("applied", std::slice::from_ref(&decision));
        self.worker.submit(decision);
    }

    fn fail_safe(&mut self, key: Correlation, now_ns: u64, out: &mut Outbox) {
        self.fail_safes += 1;
        let decision = self.fail_safe.decision(key.clone(), now_ns);
        tracing::warn!(asset = %key.asset_id, seq = key.seq, verdict = decision.verdict.as_str(), "FAIL-SAFE: {}", decision.reason);
        self.alarm(
            out,
            &key,
            HealthLevel::Alarm,
            "deadline_missed",
            decision.reason.clone(),
            f64::from(u32::try_from(self.fail_safes).unwrap_or(u32::MAX)),
        );
        self.apply(decision, now_ns, out);
    }

    fn housekeeping(&mut self, now_ns: u64, out: &mut Outbox) {
        for key in self.tracker.expire(now_ns) {
            self.fail_safe(key, now_ns, out);
        }
        for event in self.worker.drain_health() {
            let h = event.to_health(&self.node_id, Correlation::new("plc", 0, now_ns));
            tracing::warn!(code = %h.code, "{}", h.message);
            self.health_seq += 1;
            out.health(Health {
                key: Correlation::new(h.key.asset_id.clone(), self.health_seq, now_ns),
                ..h
            });
        }
    }
}

impl Stage for PlcOutput {
    type Config = Config;
    const KIND: &'static str = "plc-output";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let fail_safe = config.0.fail_safe.clone();
        let tracker = DeadlineTracker::new(fail_safe.max_pending);
        tracing::info!(plc = %config.0.link.target(), deadline_ms = fail_safe.deadline_ms, "PLC output ready");
        let worker = PlcWorker::spawn(config.0).map_err(|e| eyre::eyre!("{e}"))?;
        Ok(Self {
            worker,
            tracker,
            fail_safe,
            node_id: ctx.node_id.clone(),
            health_seq: 0,
            late: 0,
            fail_safes: 0,
            latency: Latencies::with_capacity(1_000_000),
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let now = input.now_ns;
        // Expire first, so a decision can never overtake its own fail-safe.
        self.housekeeping(now, out);
        match input.port {
            "decision" => {
                for d in input.rows::<Decision>()? {
                    match self.tracker.on_decision(&d, now) {
                        DeadlineOutcome::Accepted | DeadlineOutcome::Unknown => {
                            self.latency.record(now.saturating_sub(d.key.acq_time_ns));
                            self.apply(d, now, out);
                        }
                        DeadlineOutcome::Late { late_by_ns } => {
                            self.late += 1;
                            tracing::warn!(asset = %d.key.asset_id, seq = d.key.seq, late_by_ms = late_by_ns as f64 / 1e6, "late verdict not applied (fail-safe stands)");
                            self.alarm(out, &d.key, HealthLevel::Warning, "late_verdict", format!("verdict for seq {} arrived {:.1} ms after its deadline; not applied", d.key.seq, late_by_ns as f64 / 1e6), late_by_ns as f64 / 1e6);
                        }
                    }
                }
            }
            "acquired" => {
                // Any item message, or an in-place frame (the optical line's camera).
                for key in forgeline_runtime::columns::item_keys(input.data, "acquired")? {
                    let deadline = self.fail_safe.deadline_ns(key.acq_time_ns);
                    if let Some(evicted) = self.tracker.register(key, deadline) {
                        self.fail_safe(evicted, now, out);
                    }
                }
            }
            _ => {} // timer ticks: housekeeping only
        }
        Ok(())
    }

    fn on_stop(&mut self, now_ns: u64, out: &mut Outbox) -> Result<(), StageError> {
        self.housekeeping(now_ns, out);
        // Stop the worker first (a last flush), so the accounting below is final.
        let s = self.worker.stop();
        tracing::info!(
            ?s,
            late = self.late,
            fail_safes = self.fail_safes,
            "PLC output stopped"
        );
        // Parsed by tests (`tests/tests/plc_restart.rs`): keep the format stable.
        tracing::info!(
            "PLC accounting: submitted={} written={} superseded={} dropped={} failed={} backlog={} \
             reconnects={} heartbeats={} connect_failures={}",
            s.submitted,
            s.written,
            s.superseded,
            s.dropped,
            s.failed,
            s.backlog,
            s.reconnects,
            s.heartbeats,
            s.connect_failures
        );
        if let Some(summary) = self.latency.summary() {
            // Parsed by `forgeline bench-line`: keep the prefix stable.
            tracing::info!("LATENCY acquisition->plc {summary}");
        }
        Ok(())
    }
}
