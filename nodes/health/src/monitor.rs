//! The health node's logic with time passed in: node liveness, the rolling p95 of the decision
//! latency against the line's budget (alarm at a fraction of it, with hysteresis), and the
//! [`SystemReport`] that goes to telemetry (metrics) and the MQTT health topic.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Health `code` of the health node's periodic report (JSON [`SystemReport`] in the message).
pub const SYSTEM_REPORT_CODE: &str = "system_report";

/// Liveness of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLiveness {
    /// Heard from within the silence limit.
    pub alive: bool,
    /// Seconds since the last message from it.
    pub silent_s: f64,
}

/// One temperature reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Temperature {
    /// Sensor name, e.g. `thermal_zone0/x86_pkg_temp` or `hwmon1/coretemp/Core 0`.
    pub sensor: String,
    /// Degrees Celsius.
    pub celsius: f64,
}

/// What the health node reports every `report_every_ms` (and the metrics telemetry exports).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemReport {
    /// CPU busy fraction over the last interval, 0..=1 (`None` where `/proc/stat` is absent).
    pub cpu_usage_ratio: Option<f64>,
    /// Memory in use (total − available), bytes.
    pub memory_used_bytes: Option<u64>,
    /// Memory installed, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Every temperature the OS exposes.
    pub temperatures: Vec<Temperature>,
    /// Thermal throttling events counted by the OS since boot (sum over CPUs; `None` where
    /// the OS does not expose them).
    pub throttle_events: Option<u64>,
    /// Liveness per watched node.
    pub nodes: BTreeMap<String, NodeLiveness>,
    /// Rolling p95 of acquisition → decision latency, ms (`None` without decisions).
    pub decision_p95_ms: Option<f64>,
    /// The line's latency budget, ms.
    pub budget_ms: f64,
    /// Whether the p95 alarm is raised.
    pub budget_alarm: bool,
}

/// What changed at a check: alarms to raise or clear.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A node fell silent for longer than allowed.
    NodeSilent {
        /// The node.
        node: String,
        /// Seconds since its last message.
        silent_s: f64,
    },
    /// A silent node is back.
    NodeBack {
        /// The node.
        node: String,
    },
    /// p95 reached the alarm fraction of the budget.
    BudgetAlarm {
        /// p95, ms.
        p95_ms: f64,
    },
    /// p95 fell below the clear fraction of the budget.
    BudgetClear {
        /// p95, ms.
        p95_ms: f64,
    },
}

/// Rolling window of the last `cap` latencies with nearest-rank p95.
#[derive(Debug, Clone)]
pub struct P95Window {
    samples: VecDeque<f64>,
    cap: usize,
    scratch: Vec<f64>,
}

impl P95Window {
    /// A window of the last `cap` samples (at least 1).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            samples: VecDeque::with_capacity(cap),
            cap,
            scratch: Vec::with_capacity(cap),
        }
    }

    /// Adds one latency (ms); the oldest falls out when full.
    pub fn push(&mut self, ms: f64) {
        if !ms.is_finite() {
            return;
        }
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Nearest-rank 95th percentile, `None` when empty.
    pub fn p95(&mut self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.samples.iter().copied());
        self.scratch.sort_unstable_by(f64::total_cmp);
        let n = self.scratch.len();
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Some(self.scratch[rank - 1])
    }
}

/// Thresholds of the [`Monitor`].
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// The line's latency budget, ms.
    pub budget_ms: f64,
    /// Raise the alarm when p95 ≥ this fraction of the budget.
    pub alarm_fraction: f64,
    /// Clear it when p95 < this fraction (below `alarm_fraction`: hysteresis).
    pub clear_fraction: f64,
    /// Decisions in the rolling window.
    pub window: usize,
    /// Minimum decisions in the window before the alarm may be raised.
    pub min_samples: usize,
    /// A node silent longer than this (ns) is reported dead.
    pub silence_ns: u64,
}

/// Liveness and latency budget, driven by the node with times passed in.
#[derive(Debug, Clone)]
pub struct Monitor {
    settings: MonitorSettings,
    window: P95Window,
    last_seen: BTreeMap<String, u64>,
    silent: BTreeMap<String, bool>,
    alarm: bool,
}

impl Monitor {
    /// A monitor watching `nodes` (each is considered last seen at `now_ns`, so a node that
    /// never speaks is reported after the silence limit).
    pub fn new(
        settings: MonitorSettings,
        nodes: impl IntoIterator<Item = String>,
        now_ns: u64,
    ) -> Self {
        Self {
            window: P95Window::new(settings.window),
            settings,
            last_seen: nodes.into_iter().map(|n| (n, now_ns)).collect(),
            silent: BTreeMap::new(),
            alarm: false,
        }
    }

    /// A message from `node` arrived at `now_ns`.
    pub fn seen(&mut self, node: &str, now_ns: u64) {
        match self.last_seen.get_mut(node) {
            Some(t) => *t = (*t).max(now_ns),
            None => {
                self.last_seen.insert(node.to_owned(), now_ns);
            }
        }
    }

    /// A decision's acquisition → decision latency, ms.
    pub fn decision_latency(&mut self, ms: f64) {
        self.window.push(ms);
    }

    /// Whether the budget alarm is raised.
    pub fn alarm(&self) -> bool {
        self.alarm
    }

    /// Checks liveness and the budget at `now_ns`; returns the transitions (each raised once,
    /// cleared once) and fills the liveness/latency part of `report`.
    pub fn check(&mut self, now_ns: u64, report: &mut SystemReport) -> Vec<Transition> {
        let mut out = Vec::new();
        report.nodes.clear();
        for (node, seen) in &self.last_seen {
            let silent_ns = now_ns.saturating_sub(*seen);
            let silent_s = silent_ns as f64 / 1e9;
            let is_silent = silent_ns > self.settings.silence_ns;
            let was = self.silent.insert(node.clone(), is_silent).unwrap_or(false);
            if is_silent && !was {
                out.push(Transition::NodeSilent {
                    node: node.clone(),
                    silent_s,
                });
            } else if !is_silent && was {
                out.push(Transition::NodeBack { node: node.clone() });
            }
            report.nodes.insert(
                node.clone(),
                NodeLiveness {
                    alive: !is_silent,
                    silent_s,
                },
            );
        }
        let p95 = self.window.p95();
        if let Some(p95) = p95 {
            let s = &self.settings;
            if !self.alarm
                && self.window.len() >= s.min_samples
                && p95 >= s.alarm_fraction * s.budget_ms
            {
                self.alarm = true;
                out.push(Transition::BudgetAlarm { p95_ms: p95 });
            } else if self.alarm && p95 < s.clear_fraction * s.budget_ms {
                self.alarm = false;
                out.push(Transition::BudgetClear { p95_ms: p95 });
            }
        }
        report.decision_p95_ms = p95;
        report.budget_ms = self.settings.budget_ms;
        report.budget_alarm = self.alarm;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn settings() -> MonitorSettings {
        MonitorSettings {
            budget_ms: 1000.0,
            alarm_fraction: 0.8,
            clear_fraction: 0.7,
            window: 20,
            min_samples: 10,
            silence_ns: 5 * S,
        }
    }

    #[test]
    fn p95_is_nearest_rank_over_the_last_window() {
        let mut w = P95Window::new(100);
        assert_eq!(w.p95(), None);
        for i in 1..=100 {
            w.push(f64::from(i));
        }
        assert_eq!(w.p95(), Some(95.0));
        // 100 more at 1 ms push every old one out.
        for _ in 0..100 {
            w.push(1.0);
        }
        assert_eq!(w.p95(), Some(1.0));
        w.push(f64::NAN);
        assert_eq!(w.len(), 100, "NaN ignored");
    }

    #[test]
    fn budget_alarm_at_80_percent_with_hysteresis() {
        let mut m = Monitor::new(settings(), [], 0);
        let mut r = SystemReport::default();
        // 9 slow decisions: not enough samples yet.
        for _ in 0..9 {
            m.decision_latency(900.0);
        }
        assert!(m.check(S, &mut r).is_empty());
        m.decision_latency(900.0);
        assert_eq!(
            m.check(S, &mut r),
            vec![Transition::BudgetAlarm { p95_ms: 900.0 }]
        );
        assert!(r.budget_alarm);
        assert!(m.check(S, &mut r).is_empty(), "raised once");
        // 20 decisions at 750 ms: below 80 % but above the 70 % clear level: stays raised.
        for _ in 0..20 {
            m.decision_latency(750.0);
        }
        assert!(m.check(S, &mut r).is_empty());
        assert!(m.alarm());
        // At 600 ms (< 70 %) it clears, once.
        for _ in 0..20 {
            m.decision_latency(600.0);
        }
        assert_eq!(
            m.check(S, &mut r),
            vec![Transition::BudgetClear { p95_ms: 600.0 }]
        );
        assert!(!r.budget_alarm);
        // Exactly 80 % raises again.
        for _ in 0..20 {
            m.decision_latency(800.0);
        }
        assert_eq!(
            m.check(S, &mut r),
            vec![Transition::BudgetAlarm { p95_ms: 800.0 }]
        );
    }

    #[test]
    fn p95_ignores_a_few_outliers() {
        let mut m = Monitor::new(settings(), [], 0);
        let mut r = SystemReport::default();
        // 1 of 20 above budget is the top 5 %: p95 is the 19th value.
        for i in 0..20 {
            m.decision_latency(if i == 0 { 5000.0 } else { 100.0 });
        }
        assert!(m.check(S, &mut r).is_empty());
        assert_eq!(r.decision_p95_ms, Some(100.0));
    }

    #[test]
    fn silent_node_alarms_once_and_recovers() {
        let mut m = Monitor::new(settings(), ["features".to_owned()], 0);
        let mut r = SystemReport::default();
        m.seen("inference", 0);
        assert!(m.check(4 * S, &mut r).is_empty());
        m.seen("inference", 4 * S);
        let t = m.check(6 * S, &mut r);
        assert_eq!(
            t,
            vec![Transition::NodeSilent {
                node: "features".into(),
                silent_s: 6.0
            }]
        );
        assert!(!r.nodes["features"].alive && r.nodes["inference"].alive);
        assert!(m.check(7 * S, &mut r).is_empty(), "raised once");
        m.seen("features", 8 * S);
        assert_eq!(
            m.check(8 * S, &mut r),
            vec![Transition::NodeBack {
                node: "features".into()
            }]
        );
        // Reports round-trip as JSON (what telemetry parses).
        let back: SystemReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
