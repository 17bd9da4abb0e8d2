//! `health`: the box and the line at a glance. On each `tick` it reads CPU, memory,
//! temperatures and thermal throttling ([`system`]), checks that every node spoke recently
//! (their runtime reports on `health` ports), and compares the rolling p95 of the
//! acquisition → decision latency with the line's budget ([`monitor`]). It sends a
//! [`SystemReport`] every `report_every_ms` and an alarm/clear [`Health`] event on every
//! transition; telemetry turns both into metrics and MQTT health messages.

pub mod monitor;
pub mod system;

pub use monitor::{Monitor, MonitorSettings, SYSTEM_REPORT_CODE, SystemReport, Transition};

use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Correlation, Decision, Health, HealthLevel};
use serde::Deserialize;
use std::path::PathBuf;
use system::SystemReader;

/// Configuration of `health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The line's acquisition → decision budget, ms (default 3300: one stroke at 18/min).
    pub budget_ms: f64,
    /// Alarm when the p95 reaches this fraction of the budget (default 0.8).
    pub alarm_fraction: f64,
    /// Clear when the p95 falls below this fraction (default 0.7; hysteresis).
    pub clear_fraction: f64,
    /// Decisions in the rolling p95 window (default 200).
    pub window: usize,
    /// Decisions needed before the budget alarm may be raised (default 20).
    pub min_samples: usize,
    /// A node silent for longer than this is alarmed (default 10000 ms; runtime reports come
    /// every second, so this is ten missed reports).
    pub silence_ms: u64,
    /// Nodes expected to speak even if never heard from (default: none; every node heard on an
    /// input is watched from then on).
    pub watch: Vec<String>,
    /// Interval of [`SystemReport`]s, ms (default 5000).
    pub report_every_ms: u64,
    /// `asset_id` put on the events (default `line`).
    pub asset_id: String,
    /// Root of `/proc` and `/sys` (default `/`; tests point it at a fake tree).
    pub sys_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            budget_ms: 3300.0,
            alarm_fraction: 0.8,
            clear_fraction: 0.7,
            window: 200,
            min_samples: 20,
            silence_ms: 10_000,
            watch: Vec::new(),
            report_every_ms: 5000,
            asset_id: "line".into(),
            sys_root: PathBuf::from("/"),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |field: &str, reason: String| {
            p.push(ConfigProblem {
                field: field.into(),
                reason,
            });
        };
        if !(self.budget_ms.is_finite() && self.budget_ms > 0.0) {
            bad(
                "budget_ms",
                format!("{}: must be a positive number of ms", self.budget_ms),
            );
        }
        if !(self.alarm_fraction > 0.0 && self.alarm_fraction <= 1.0) {
            bad(
                "alarm_fraction",
                format!("{}: must be in (0, 1]", self.alarm_fraction),
            );
        }
        if !(self.clear_fraction > 0.0 && self.clear_fraction <= self.alarm_fraction) {
            bad(
                "clear_fraction",
                format!(
                    "{}: must be in (0, alarm_fraction = {}]",
                    self.clear_fraction, self.alarm_fraction
                ),
            );
        }
        if self.window == 0 {
            bad("window", "0: must be at least 1".into());
        }
        if self.silence_ms == 0 {
            bad("silence_ms", "0: must be at least 1".into());
        }
        p
    }
}

/// The health stage.
pub struct HealthNode {
    config: Config,
    node_id: String,
    monitor: Monitor,
    reader: SystemReader,
    last_report_ns: Option<u64>,
    last_throttle: Option<u64>,
    seq: u64,
}

impl HealthNode {
    fn event(
        &mut self,
        now_ns: u64,
        component: &str,
        level: HealthLevel,
        code: &str,
        message: String,
        value: f64,
    ) -> Health {
        self.seq += 1;
        Health {
            key: Correlation::new(self.config.asset_id.clone(), self.seq, now_ns),
            node_id: self.node_id.clone(),
            component: component.into(),
            level,
            code: code.into(),
            message,
            value,
        }
    }

    /// One check at `now_ns`: reads the machine, checks liveness and budget, queues the
    /// transitions and (when due) the report.
    pub fn check(&mut self, now_ns: u64, out: &mut Outbox) {
        let reading = self.reader.read();
        let mut report = SystemReport {
            cpu_usage_ratio: reading.cpu_usage_ratio,
            memory_used_bytes: reading.memory_used_bytes,
            memory_total_bytes: reading.memory_total_bytes,
            temperatures: reading.temperatures,
            throttle_events: reading.throttle_events,
            ..SystemReport::default()
        };
        for t in self.monitor.check(now_ns, &mut report) {
            let h = match t {
                Transition::NodeSilent { node, silent_s } => self.event(
                    now_ns,
                    &node,
                    HealthLevel::Alarm,
                    "node_silent",
                    format!("node `{node}` silent for {silent_s:.1} s (limit {} ms)", self.config.silence_ms),
                    silent_s,
                ),
                Transition::NodeBack { node } => self.event(
                    now_ns,
                    &node,
                    HealthLevel::Ok,
                    "node_back",
                    format!("node `{node}` is reporting again"),
                    f64::NAN,
                ),
                Transition::BudgetAlarm { p95_ms } => self.event(
                    now_ns,
                    "latency",
                    HealthLevel::Alarm,
                    "latency_budget",
                    format!(
                        "p95 acquisition→decision latency {p95_ms:.1} ms ≥ {:.0} % of the {} ms budget",
                        self.config.alarm_fraction * 100.0,
                        self.config.budget_ms
                    ),
                    p95_ms,
                ),
                Transition::BudgetClear { p95_ms } => self.event(
                    now_ns,
                    "latency",
                    HealthLevel::Ok,
                    "latency_budget_ok",
                    format!("p95 latency {p95_ms:.1} ms back below {:.0} % of the budget", self.config.clear_fraction * 100.0),
                    p95_ms,
                ),
            };
            tracing::warn!(code = %h.code, "{}", h.message);
            out.health(h);
        }
        if let (Some(prev), Some(now)) = (self.last_throttle, report.throttle_events)
            && now > prev
        {
            let h = self.event(
                now_ns,
                "cpu",
                HealthLevel::Warning,
                "thermal_throttling",
                format!("CPU thermal throttling: {} new events", now - prev),
                (now - prev) as f64,
            );
            out.health(h);
        }
        self.last_throttle = report.throttle_events.or(self.last_throttle);
        let due = self
            .last_report_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.config.report_every_ms * 1_000_000);
        if due {
            self.last_report_ns = Some(now_ns);
            let level = if report.budget_alarm || report.nodes.values().any(|n| !n.alive) {
                HealthLevel::Alarm
            } else {
                HealthLevel::Ok
            };
            let message = serde_json::to_string(&report).unwrap_or_default();
            let h = self.event(
                now_ns,
                "system",
                level,
                SYSTEM_REPORT_CODE,
                message,
                report.cpu_usage_ratio.unwrap_or(f64::NAN),
            );
            out.health(h);
        }
    }
}

impl Stage for HealthNode {
    type Config = Config;
    const KIND: &'static str = "health";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let settings = MonitorSettings {
            budget_ms: config.budget_ms,
            alarm_fraction: config.alarm_fraction,
            clear_fraction: config.clear_fraction,
            window: config.window,
            min_samples: config.min_samples,
            silence_ns: config.silence_ms.saturating_mul(1_000_000),
        };
        let now = forgeline_runtime::now_ns();
        Ok(Self {
            monitor: Monitor::new(settings, config.watch.clone(), now),
            reader: SystemReader::new(config.sys_root.clone()),
            node_id: ctx.node_id.clone(),
            config,
            last_report_ns: None,
            last_throttle: None,
            seq: 0,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        // `tick` (a timer): check. `decision…`: latency. Anything else: health events and
        // runtime reports of the node that sent them (liveness).
        match input.port {
            "tick" => self.check(input.now_ns, out),
            p if p.starts_with("decision") => {
                for d in input.rows::<Decision>()? {
                    let decided = if d.decided_time_ns > 0 {
                        d.decided_time_ns
                    } else {
                        input.now_ns
                    };
                    self.monitor
                        .decision_latency(decided.saturating_sub(d.key.acq_time_ns) as f64 / 1e6);
                }
            }
            _ => {
                for h in input.rows::<Health>()? {
                    self.monitor.seen(&h.node_id, input.now_ns);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use forgeline_runtime::arrow;
    use forgeline_schemas::Message;

    fn node(config: Config) -> HealthNode {
        let ctx = InitContext {
            node_id: "health".into(),
            outputs: vec!["health".into()],
            inputs: vec![],
            restart_count: 0,
        };
        HealthNode::new(config, &ctx).unwrap()
    }

    fn feed<M: Message>(n: &mut HealthNode, port: &str, rows: &[M], now_ns: u64, out: &mut Outbox) {
        let data: ArrayRef =
            std::sync::Arc::new(forgeline_schemas::to_struct_array(&M::to_batch(rows)));
        let input = Input {
            port,
            data: &data,
            now_ns,
            sent_ns: now_ns,
        };
        n.on_input(&input, out).unwrap();
    }

    #[test]
    fn slow_decisions_raise_the_budget_alarm_and_report_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut n = node(Config {
            budget_ms: 100.0,
            min_samples: 5,
            sys_root: tmp.path().into(),
            ..Config::default()
        });
        let base = forgeline_runtime::now_ns();
        let mut out = Outbox::default();
        let decisions: Vec<Decision> = (0..5)
            .map(|i| Decision {
                key: Correlation::new("press-01", i, base),
                decided_time_ns: base + 90_000_000, // 90 ms of a 100 ms budget
                ..Decision::default()
            })
            .collect();
        feed(&mut n, "decision", &decisions, base, &mut out);
        let tick: ArrayRef = std::sync::Arc::new(arrow::array::NullArray::new(1));
        n.on_input(
            &Input {
                port: "tick",
                data: &tick,
                now_ns: base + 1,
                sent_ns: 0,
            },
            &mut out,
        )
        .unwrap();
        let events: Vec<Health> = out
            .take()
            .iter()
            .flat_map(|(_, b)| Health::try_from_batch(b).unwrap())
            .collect();
        let alarm = events
            .iter()
            .find(|h| h.code == "latency_budget")
            .expect("alarm");
        assert_eq!(alarm.level, HealthLevel::Alarm);
        assert!((alarm.value - 90.0).abs() < 1e-9);
        let report = events
            .iter()
            .find(|h| h.code == SYSTEM_REPORT_CODE)
            .expect("report");
        let r: SystemReport = serde_json::from_str(&report.message).unwrap();
        assert!(r.budget_alarm);
        assert_eq!(r.decision_p95_ms, Some(90.0));
    }

    #[test]
    fn a_node_that_stops_reporting_is_alarmed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut n = node(Config {
            silence_ms: 1000,
            sys_root: tmp.path().into(),
            ..Config::default()
        });
        let t0 = forgeline_runtime::now_ns();
        let mut out = Outbox::default();
        let h = Health {
            node_id: "features".into(),
            code: "node_report".into(),
            ..Health::default()
        };
        feed(&mut n, "features_health", &[h], t0, &mut out);
        n.check(t0 + 500_000_000, &mut out);
        assert!(
            !out.take()
                .iter()
                .flat_map(|(_, b)| Health::try_from_batch(b).unwrap())
                .any(|h| h.code == "node_silent")
        );
        n.check(t0 + 1_500_000_000, &mut out);
        let silent: Vec<Health> = out
            .take()
            .iter()
            .flat_map(|(_, b)| Health::try_from_batch(b).unwrap())
            .filter(|h| h.code == "node_silent")
            .collect();
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].component, "features");
    }
}
