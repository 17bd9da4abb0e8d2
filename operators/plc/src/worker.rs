//! The PLC worker: a thread with a tokio current-thread runtime that owns the [`PlcLink`]
//! (Modbus TCP or OPC UA, chosen by `link.kind`), so the node's event loop never blocks on the
//! PLC.
//!
//! - [`PlcWorker::submit`] never blocks: the queue holds `worker.capacity` decisions and drops
//!   the oldest when full (counted in [`PlcStatsSnapshot::dropped`]).
//! - The heartbeat register is written every `heartbeat_period_ms`.
//! - While the link is down the worker retries with capped exponential backoff and keeps only
//!   the latest decision (every decision writes the same register set, so that is the latest
//!   state of every register; no replay of stale rejects), or every decision in order with
//!   `replay_backlog: true` (bounded by `capacity`). It emits [`PlcHealthEvent::Down`] and
//!   [`PlcHealthEvent::Recovered`] through a channel that the node drains.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use forgeline_schemas::{Correlation, Decision, Health, HealthLevel};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{ConfigError, LinkKind, PlcConfig};
use crate::link::{LinkError, ModbusPlc, PlcLink};
use crate::opcua::OpcUaLink;

/// Counters of the worker, updated by its thread, read by anyone.
#[derive(Debug, Default)]
pub struct PlcStats {
    submitted: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    superseded: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    heartbeats: AtomicU64,
    backlog: AtomicU64,
    last_write_latency_us: AtomicU64,
    connected: AtomicBool,
}

/// A copy of [`PlcStats`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlcStatsSnapshot {
    /// Decisions submitted. Once the worker has stopped (see [`PlcWorker::stop`]):
    /// `submitted = written + failed + dropped + superseded + backlog` (no decision is lost
    /// silently).
    pub submitted: u64,
    /// Decisions written completely.
    pub written: u64,
    /// Decisions (and heartbeats) whose write was refused by the PLC or failed verification
    /// (not retried).
    pub failed: u64,
    /// Decisions dropped because the queue (or the replay backlog) was full.
    pub dropped: u64,
    /// Decisions superseded by a newer one while the link was down (not replayed).
    pub superseded: u64,
    /// Successful reconnections after the link was lost.
    pub reconnects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Heartbeat values written.
    pub heartbeats: u64,
    /// Decisions waiting in the worker for the link right now.
    pub backlog: u64,
    /// Time to write the last decision (all its requests), µs.
    pub last_write_latency_us: u64,
    /// Whether the link is up.
    pub connected: bool,
}

impl PlcStats {
    /// The current values.
    pub fn snapshot(&self) -> PlcStatsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PlcStatsSnapshot {
            submitted: load(&self.submitted),
            written: load(&self.written),
            failed: load(&self.failed),
            dropped: load(&self.dropped),
            superseded: load(&self.superseded),
            reconnects: load(&self.reconnects),
            connect_failures: load(&self.connect_failures),
            heartbeats: load(&self.heartbeats),
            backlog: load(&self.backlog),
            last_write_latency_us: load(&self.last_write_latency_us),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A health event of the PLC link, for the node to publish (see [`PlcHealthEvent::to_health`]).
#[derive(Debug, Clone, PartialEq)]
pub enum PlcHealthEvent {
    /// The link went down (or the first connection failed). Code `plc_down`, level alarm.
    Down {
        /// Why, e.g. `PLC 127.0.0.1:502: cannot connect: connection refused`.
        error: String,
    },
    /// The link is back. Code `plc_recovered`, level ok.
    Recovered {
        /// How long it was down.
        gap: Duration,
        /// Failed connection attempts during the gap.
        connect_failures: u64,
        /// Decisions superseded (not replayed) during the gap.
        superseded: u64,
        /// Decisions dropped (queue full) during the gap.
        dropped: u64,
        /// Decisions waiting to be written at recovery.
        backlog: u64,
    },
    /// The PLC refused a write or verification failed (not retried). Code `plc_write_failed`,
    /// level warning.
    WriteFailed {
        /// Item concerned (the heartbeat has the default key).
        key: Correlation,
        /// Why.
        error: String,
    },
}

impl PlcHealthEvent {
    /// Machine-readable code: `plc_down`, `plc_recovered` or `plc_write_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Down { .. } => "plc_down",
            Self::Recovered { .. } => "plc_recovered",
            Self::WriteFailed { .. } => "plc_write_failed",
        }
    }

    /// Health level.
    pub fn level(&self) -> HealthLevel {
        match self {
            Self::Down { .. } => HealthLevel::Alarm,
            Self::Recovered { .. } => HealthLevel::Ok,
            Self::WriteFailed { .. } => HealthLevel::Warning,
        }
    }

    /// Human-readable message.
    pub fn message(&self) -> String {
        match self {
            Self::Down { error } => format!("PLC link down: {error}"),
            Self::Recovered {
                gap,
                connect_failures,
                superseded,
                dropped,
                backlog,
            } => format!(
                "PLC link recovered after {} ms ({connect_failures} failed attempts, {superseded} decisions superseded, \
                 {dropped} dropped, {backlog} to write)",
                gap.as_millis()
            ),
            Self::WriteFailed { key, error } => format!(
                "PLC write for {} seq {} failed: {error}",
                key.asset_id, key.seq
            ),
        }
    }

    /// The numeric value: gap in ms for `Recovered`, NaN otherwise.
    pub fn value(&self) -> f64 {
        match self {
            Self::Recovered { gap, .. } => gap.as_secs_f64() * 1000.0,
            _ => f64::NAN,
        }
    }

    /// As a `health` message from `node_id` with correlation `key` (the node's event seq/time).
    pub fn to_health(&self, node_id: &str, key: Correlation) -> Health {
        Health {
            key,
            node_id: node_id.to_owned(),
            component: "plc-link".into(),
            level: self.level(),
            code: self.code().into(),
            message: self.message(),
            value: self.value(),
        }
    }
}

/// A failure to start the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The thread or its runtime could not be started.
    #[error("PLC worker: cannot start its thread or runtime: {0}")]
    Start(std::io::Error),
    /// The link could not be set up from the configuration.
    #[error("PLC worker: {0}")]
    Link(LinkError),
}

/// State shared by the node side and the worker thread.
#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Decision>>,
    capacity: usize,
    wake: Notify,
    stop: AtomicBool,
    stats: Arc<PlcStats>,
}

/// Handle on the PLC worker thread. Dropping it stops the thread after a last flush attempt.
#[derive(Debug)]
pub struct PlcWorker {
    shared: Arc<Shared>,
    health: mpsc::Receiver<PlcHealthEvent>,
    thread: Option<JoinHandle<()>>,
}

impl PlcWorker {
    /// Validates `config` and starts the worker thread (it connects in the background).
    pub fn spawn(config: PlcConfig) -> Result<Self, WorkerError> {
        config.validate("PLC worker config")?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(config.worker.capacity)),
            capacity: config.worker.capacity,
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            stats: Arc::new(PlcStats::default()),
        });
        let (health_tx, health) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WorkerError::Start)?;
        let worker_shared = Arc::clone(&shared);
        let spawn = std::thread::Builder::new().name("plc-link".into());
        let thread = match config.link.kind {
            LinkKind::Modbus => {
                let link = ModbusPlc::new(config.link.clone(), config.registers.clone());
                spawn.spawn(move || {
                    runtime.block_on(Worker::new(config, link, worker_shared, health_tx).run());
                })
            }
            LinkKind::Opcua => {
                let link = OpcUaLink::new(config.link.clone(), config.registers.reject_on.clone())
                    .map_err(WorkerError::Link)?;
                spawn.spawn(move || {
                    runtime.block_on(Worker::new(config, link, worker_shared, health_tx).run());
                })
            }
        }
        .map_err(WorkerError::Start)?;
        Ok(Self {
            shared,
            health,
            thread: Some(thread),
        })
    }

    /// Queues a decision for the PLC. Never blocks (beyond a short lock); when the queue is
    /// full the oldest queued decision is dropped and counted.
    pub fn submit(&self, decision: Decision) {
        {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= self.shared.capacity {
                queue.pop_front();
                PlcStats::add(&self.shared.stats.dropped, 1);
            }
            queue.push_back(decision);
            PlcStats::add(&self.shared.stats.submitted, 1);
        }
        self.shared.wake.notify_one();
    }

    /// Stops the worker like [`PlcWorker::shutdown`] (a last flush if the link is up) and
    /// returns the final counters, for which `submitted = written + failed + dropped +
    /// superseded + backlog`. Later calls return the same counters; later submits are not written.
    pub fn stop(&mut self) -> PlcStatsSnapshot {
        self.stop_and_join();
        self.shared.stats.snapshot()
    }

    /// The worker's counters (live; read them with [`PlcStats::snapshot`]).
    pub fn stats(&self) -> Arc<PlcStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Health events since the last call, oldest first (never blocks).
    pub fn drain_health(&self) -> Vec<PlcHealthEvent> {
        self.health.try_iter().collect()
    }

    /// Waits up to `timeout` for the next health event (for tests and shutdown paths).
    pub fn wait_health(&self, timeout: Duration) -> Option<PlcHealthEvent> {
        self.health.recv_timeout(timeout).ok()
    }

    /// Stops the worker: it writes what it holds if the link is up (bounded by the request
    /// timeout per write), then the thread ends.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("PLC worker thread panicked");
        }
    }
}

impl Drop for PlcWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The worker's state, living on its thread.
struct Worker<L: PlcLink> {
    config: PlcConfig,
    shared: Arc<Shared>,
    health: mpsc::Sender<PlcHealthEvent>,
    link: L,
    /// Decisions taken from the queue, not yet written.
    pending: VecDeque<Decision>,
    heartbeat: u16,
    heartbeat_due: bool,
    retry_at: Instant,
    /// Set while the link is down: since when, and counters at that moment.
    outage: Option<Outage>,
}

struct Outage {
    since: Instant,
    stats_at_start: PlcStatsSnapshot,
}

impl<L: PlcLink> Worker<L> {
    fn new(
        config: PlcConfig,
        link: L,
        shared: Arc<Shared>,
        health: mpsc::Sender<PlcHealthEvent>,
    ) -> Self {
        Self {
            config,
            shared,
            health,
            link,
            pending: VecDeque::new(),
            heartbeat: 0,
            heartbeat_due: false,
            retry_at: Instant::now(),
            outage: None,
        }
    }

    fn stats(&self) -> &PlcStats {
        &self.shared.stats
    }

    async fn run(mut self) {
        let period = Duration::from_millis(self.config.registers.heartbeat_period_ms.max(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let heartbeat_on = self.link.has_heartbeat();
        loop {
            let stopping = self.shared.stop.load(Ordering::Relaxed);
            self.take_queue();
            if !self.link.is_connected() && Instant::now() >= self.retry_at {
                self.connect().await;
            }
            if self.link.is_connected() {
                self.flush().await;
            }
            if stopping {
                break;
            }
            let retry_at = self.retry_at;
            let down = !self.link.is_connected();
            tokio::select! {
                () = self.shared.wake.notified() => {}
                _ = ticker.tick(), if heartbeat_on => self.heartbeat_due = true,
                () = tokio::time::sleep_until(retry_at), if down => {}
            }
        }
        self.link.disconnect().await;
    }

    /// Moves queued decisions into `pending`, applying the backlog policy while down.
    fn take_queue(&mut self) {
        {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.pending.extend(queue.drain(..));
        }
        if !self.link.is_connected() {
            if self.config.worker.replay_backlog {
                let excess = self
                    .pending
                    .len()
                    .saturating_sub(self.config.worker.capacity);
                self.pending.drain(..excess);
                PlcStats::add(&self.stats().dropped, excess as u64);
            } else {
                let superseded = self.pending.len().saturating_sub(1);
                self.pending.drain(..superseded);
                PlcStats::add(&self.stats().superseded, superseded as u64);
            }
        }
        self.stats()
            .backlog
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    async fn connect(&mut self) {
        match self.link.connect().await {
            Ok(()) => {
                self.stats().connected.store(true, Ordering::Relaxed);
                tracing::info!(plc = %self.link.target(), "PLC link up");
                if let Some(outage) = self.outage.take() {
                    PlcStats::add(&self.stats().reconnects, 1);
                    let now = self.stats().snapshot();
                    let event = PlcHealthEvent::Recovered {
                        gap: outage.since.elapsed(),
                        connect_failures: now.connect_failures
                            - outage.stats_at_start.connect_failures,
                        superseded: now.superseded - outage.stats_at_start.superseded,
                        dropped: now.dropped - outage.stats_at_start.dropped,
                        backlog: self.pending.len() as u64,
                    };
                    tracing::info!(code = event.code(), message = %event.message(), "PLC link recovered");
                    self.emit(event);
                }
                // A heartbeat right away tells the PLC we are back.
                self.heartbeat_due |= self.link.has_heartbeat();
            }
            Err(error) => {
                PlcStats::add(&self.stats().connect_failures, 1);
                self.link_lost(&error);
            }
        }
    }

    /// Records that the link is down (once per outage) and schedules the next attempt.
    fn link_lost(&mut self, error: &LinkError) {
        self.stats().connected.store(false, Ordering::Relaxed);
        self.retry_at = Instant::now() + self.link.next_retry_delay();
        if self.outage.is_none() {
            tracing::warn!(plc = %self.link.target(), %error, "PLC link down");
            self.outage = Some(Outage {
                since: Instant::now(),
                stats_at_start: self.stats().snapshot(),
            });
            self.emit(PlcHealthEvent::Down {
                error: error.to_string(),
            });
        }
    }

    /// Writes pending decisions in order, then the heartbeat if due.
    async fn flush(&mut self) {
        while let Some(decision) = self.pending.front() {
            let started = Instant::now();
            match self.link.write_decision(decision).await {
                Ok(()) => {
                    let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.stats()
                        .last_write_latency_us
                        .store(latency, Ordering::Relaxed);
                    PlcStats::add(&self.stats().written, 1);
                    tracing::debug!(asset_id = %decision.key.asset_id, seq = decision.key.seq, verdict = %decision.verdict, latency_us = latency, "decision written to PLC");
                    self.pending.pop_front();
                }
                Err(error) if error.is_connection_lost() => {
                    self.link_lost(&error);
                    self.stats()
                        .backlog
                        .store(self.pending.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(error) => {
                    PlcStats::add(&self.stats().failed, 1);
                    tracing::warn!(asset_id = %decision.key.asset_id, seq = decision.key.seq, %error, "PLC refused a decision");
                    let key = decision.key.clone();
                    self.emit(PlcHealthEvent::WriteFailed {
                        key,
                        error: error.to_string(),
                    });
                    self.pending.pop_front();
                }
            }
        }
        self.stats().backlog.store(0, Ordering::Relaxed);
        if self.heartbeat_due && self.link.has_heartbeat() {
            match self.link.write_heartbeat(self.heartbeat).await {
                Ok(()) => {
                    self.heartbeat_due = false;
                    self.heartbeat = self.heartbeat.wrapping_add(1);
                    PlcStats::add(&self.stats().heartbeats, 1);
                }
                Err(error) if error.is_connection_lost() => self.link_lost(&error),
                Err(error) => {
                    self.heartbeat_due = false;
                    PlcStats::add(&self.stats().failed, 1);
                    self.emit(PlcHealthEvent::WriteFailed {
                        key: Correlation::default(),
                        error: error.to_string(),
                    });
                }
            }
        }
    }

    fn emit(&self, event: PlcHealthEvent) {
        // The node may have stopped draining (shutting down): nothing to do then.
        let _ = self.health.send(event);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::LinkConfig;

    fn unreachable_config(capacity: usize, replay_backlog: bool) -> PlcConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = PlcConfig {
            link: LinkConfig {
                address: format!("127.0.0.1:{port}"),
                backoff_initial_ms: 5,
                backoff_max_ms: 20,
                ..LinkConfig::default()
            },
            ..PlcConfig::default()
        };
        config.worker.capacity = capacity;
        config.worker.replay_backlog = replay_backlog;
        config
    }

    /// The stats once `done` holds (or after 5 s, for the assertions to report).
    fn settle(worker: &PlcWorker, done: impl Fn(&PlcStatsSnapshot) -> bool) -> PlcStatsSnapshot {
        let start = std::time::Instant::now();
        loop {
            let stats = worker.stats().snapshot();
            if done(&stats) || start.elapsed() > Duration::from_secs(5) {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn decision(seq: u64) -> Decision {
        Decision {
            key: Correlation::new("press-07", seq, seq),
            ..Decision::default()
        }
    }

    #[test]
    fn submit_never_blocks_and_reports_down_with_backlog_coalesced() {
        let worker = PlcWorker::spawn(unreachable_config(4, false)).unwrap();
        let event = worker.wait_health(Duration::from_secs(5)).unwrap();
        assert_eq!(event.code(), "plc_down");
        assert_eq!(event.level(), HealthLevel::Alarm);
        let started = std::time::Instant::now();
        for seq in 0..1000 {
            worker.submit(decision(seq));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "submit blocked: {:?}",
            started.elapsed()
        );
        // Let the worker wake up and coalesce (bounded wait: the machine may be loaded).
        let stats = settle(&worker, |s| {
            s.dropped + s.superseded + s.backlog == 1000 && s.connect_failures >= 2
        });
        assert!(!stats.connected);
        assert!(stats.connect_failures >= 2, "keeps retrying: {stats:?}");
        assert!(
            stats.backlog <= 1,
            "only the latest decision is kept: {stats:?}"
        );
        assert_eq!(
            stats.dropped + stats.superseded + stats.backlog,
            1000,
            "{stats:?}"
        );
        assert!(worker.drain_health().is_empty(), "one plc_down per outage");
        let health = event.to_health("plc", Correlation::new("line-1", 1, 2));
        assert_eq!(
            (health.code.as_str(), health.component.as_str()),
            ("plc_down", "plc-link")
        );
    }

    #[test]
    fn replay_backlog_keeps_at_most_capacity() {
        let worker = PlcWorker::spawn(unreachable_config(3, true)).unwrap();
        assert_eq!(
            worker.wait_health(Duration::from_secs(5)).unwrap().code(),
            "plc_down"
        );
        for seq in 0..10 {
            worker.submit(decision(seq));
        }
        let stats = settle(&worker, |s| s.backlog + s.dropped == 10);
        assert_eq!(stats.backlog, 3, "{stats:?}");
        assert_eq!(stats.dropped, 7, "{stats:?}");
        assert_eq!(stats.superseded, 0, "{stats:?}");
    }

    #[test]
    fn invalid_config_is_refused_before_starting() {
        let mut config = PlcConfig::default();
        config.worker.capacity = 0;
        let err = PlcWorker::spawn(config).unwrap_err();
        assert!(err.to_string().contains("worker.capacity"), "{err}");
    }

    #[test]
    fn recovered_event_reports_gap_and_counts() {
        let event = PlcHealthEvent::Recovered {
            gap: Duration::from_millis(1500),
            connect_failures: 4,
            superseded: 10,
            dropped: 0,
            backlog: 1,
        };
        assert_eq!(event.code(), "plc_recovered");
        assert!((event.value() - 1500.0).abs() < 1e-9);
        assert!(
            event.message().contains("1500 ms")
                && event.message().contains("10 decisions superseded")
        );
    }
}
