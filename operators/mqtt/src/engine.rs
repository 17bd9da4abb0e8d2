//! The telemetry engine: [`Telemetry::enqueue`] stores a message durably and returns; a worker
//! thread publishes the queue in order and removes each entry once the broker acked it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use forgeline_schemas::{Correlation, Decision, Health, HealthLevel, Score};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions,
    NetworkOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{MqttConfig, Topics, tls_client_config};
use crate::error::MqttError;
use crate::payload::{alert_payload, health_payload, score_payload};
use crate::store::{Admission, DropReason, Kind, Store};

/// Payload of the retained status message published on connect.
pub const STATUS_ONLINE: &str = "online";
/// Payload of the retained status Last Will (and of the status published on clean shutdown).
pub const STATUS_OFFLINE: &str = "offline";
/// Largest topic + payload accepted by [`Telemetry::enqueue`] (the MQTT packet limit is set
/// to 1 MiB, so a queued entry can never block the queue by being unsendable).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Capacity of the event channel; events beyond it are counted in [`Counters::events_lost`].
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// A message to publish.
#[derive(Debug, Clone, Copy)]
pub enum Outbound<'a> {
    /// A decision for the `alerts` topic (see [`crate::is_alert`] for which ones to send).
    Alert(&'a Decision),
    /// A score for the `scores` topic (sampled, QoS 0).
    Score(&'a Score),
    /// A health event for the `health` topic.
    Health(&'a Health),
}

/// What [`Telemetry::enqueue`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On the durable queue (fsync'd for alerts and health): accepted, will be published.
    Queued {
        /// Queue entry id (global order of acceptance).
        id: u64,
    },
    /// A score not published by configuration (`publish_scores: false` or sampling).
    Skipped,
    /// Not accepted (counted in [`Counters::dropped`]).
    Dropped(DropReason),
}

/// Something the node should know (and may publish as [`Health`], see
/// [`TelemetryEvent::to_health`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TelemetryEvent {
    /// The broker became unreachable (once per outage, not per retry).
    BrokerDown {
        /// Why (connection error).
        reason: String,
        /// Entries queued at that moment.
        backlog: u64,
    },
    /// The broker is reachable again after an outage.
    BrokerRecovered {
        /// How long it was unreachable.
        gap: Duration,
        /// Entries queued at reconnection (being sent now).
        backlog: u64,
    },
    /// The queue reached its cap and data was dropped (raised once, re-armed when the queue
    /// falls below 90 % of the cap).
    QueueFull {
        /// The highest-priority kind dropped so far in this episode.
        kind: Kind,
        /// Entries dropped so far, all kinds, since start.
        dropped_total: u64,
        /// Counted bytes queued.
        backlog_bytes: u64,
    },
    /// The queue failed in the worker (disk error); it retries.
    StoreFailed {
        /// The error.
        error: String,
    },
}

impl TelemetryEvent {
    /// Machine-readable code: `broker_down`, `broker_recovered`, `queue_full`, `queue_error`.
    pub fn code(&self) -> &'static str {
        match self {
            TelemetryEvent::BrokerDown { .. } => "broker_down",
            TelemetryEvent::BrokerRecovered { .. } => "broker_recovered",
            TelemetryEvent::QueueFull { .. } => "queue_full",
            TelemetryEvent::StoreFailed { .. } => "queue_error",
        }
    }

    /// The event as a [`Health`] message (component `mqtt`) for `asset_id`, numbered `seq`,
    /// at `now_ns`. `value` is the backlog (entries), or the bytes queued for `queue_full`.
    pub fn to_health(&self, asset_id: &str, node_id: &str, seq: u64, now_ns: u64) -> Health {
        #[expect(clippy::cast_precision_loss, reason = "counts as a gauge value")]
        let (level, message, value) = match self {
            TelemetryEvent::BrokerDown { reason, backlog } => (
                HealthLevel::Warning,
                format!("MQTT broker unreachable ({reason}); buffering to disk"),
                *backlog as f64,
            ),
            TelemetryEvent::BrokerRecovered { gap, backlog } => (
                HealthLevel::Ok,
                format!(
                    "MQTT broker reachable again after {:.1} s; sending {backlog} buffered",
                    gap.as_secs_f64()
                ),
                *backlog as f64,
            ),
            TelemetryEvent::QueueFull {
                kind,
                dropped_total,
                backlog_bytes,
            } => (
                if *kind == Kind::Score {
                    HealthLevel::Warning
                } else {
                    HealthLevel::Alarm
                },
                format!(
                    "telemetry queue full: dropping {}s ({dropped_total} dropped in total)",
                    kind.as_str()
                ),
                *backlog_bytes as f64,
            ),
            TelemetryEvent::StoreFailed { error } => (
                HealthLevel::Alarm,
                format!("telemetry queue: {error}"),
                f64::NAN,
            ),
        };
        Health {
            key: Correlation::new(asset_id, seq, now_ns),
            node_id: node_id.into(),
            component: "mqtt".into(),
            level,
            code: self.code().into(),
            message,
            value,
        }
    }
}

/// A snapshot of the engine's counters (monotonic since start, except the gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Entries accepted onto the queue.
    pub enqueued: u64,
    /// Publishes written to the broker connection (resends included).
    pub published: u64,
    /// Of those, publishes of entries already published before a reconnect (duplicates the
    /// broker may deliver: at-least-once).
    pub resent: u64,
    /// PUBACKs received for queued QoS 1 entries (alerts, health).
    pub acked: u64,
    /// Entries dropped or evicted, per kind (index: score, health, alert).
    pub dropped: [u64; 3],
    /// Scores not published by configuration or sampling.
    pub scores_skipped: u64,
    /// Gauge: entries waiting in the queue (not yet acked).
    pub backlog: u64,
    /// Gauge: counted bytes in the queue.
    pub backlog_bytes: u64,
    /// Gauge: connected to the broker now.
    pub connected: bool,
    /// Successful connections after the first.
    pub reconnects: u64,
    /// Events not delivered because the event channel was full.
    pub events_lost: u64,
}

impl Counters {
    /// Dropped entries of `kind`.
    pub fn dropped_of(&self, kind: Kind) -> u64 {
        self.dropped[kind as usize]
    }
}

#[derive(Default)]
struct Shared {
    enqueued: AtomicU64,
    published: AtomicU64,
    resent: AtomicU64,
    acked: AtomicU64,
    dropped: [AtomicU64; 3],
    scores_skipped: AtomicU64,
    connected: AtomicBool,
    reconnects: AtomicU64,
    events_lost: AtomicU64,
    score_counter: AtomicU64,
    alarm_armed: AtomicBool,
    /// Set to ask the worker to stop; the deadline until which it may drain the queue.
    stop: Mutex<Option<Instant>>,
}

struct Events {
    tx: SyncSender<TelemetryEvent>,
    shared: Arc<Shared>,
}

impl Events {
    fn send(&self, event: TelemetryEvent) {
        tracing::info!(code = event.code(), ?event, "mqtt telemetry event");
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(event)
        {
            self.shared.events_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The MQTT telemetry engine. Create with [`Telemetry::start`]; no method blocks on the network.
pub struct Telemetry {
    config: MqttConfig,
    topics: Topics,
    store: Arc<Store>,
    shared: Arc<Shared>,
    events: Arc<Events>,
    wake: Arc<Notify>,
    stop_wake: Arc<Notify>,
    worker: Option<JoinHandle<()>>,
}

impl Telemetry {
    /// Validates `config`, opens (or reopens) the queue and starts the worker. Entries left
    /// from an earlier run (even a killed one) are published first. Returns the engine and the
    /// receiver of its [`TelemetryEvent`]s.
    pub fn start(config: MqttConfig) -> Result<(Self, Receiver<TelemetryEvent>), MqttError> {
        config.check()?;
        let options = mqtt_options(&config)?;
        let store = Arc::new(Store::open(&config.queue_path, config.disk_cap_bytes)?);
        let shared = Arc::new(Shared::default());
        shared.alarm_armed.store(true, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::sync_channel(EVENT_CHANNEL_CAPACITY);
        let events = Arc::new(Events {
            tx,
            shared: Arc::clone(&shared),
        });
        let wake = Arc::new(Notify::new());
        let stop_wake = Arc::new(Notify::new());
        let worker = Worker {
            options,
            connect_timeout_s: config.connect_timeout_s,
            status_topic: Topics::new(&config).status().to_owned(),
            window: usize::from(config.inflight),
            backoff_min: Duration::from_millis(config.reconnect_min_ms),
            backoff_max: Duration::from_millis(config.reconnect_max_ms),
            store: Arc::clone(&store),
            shared: Arc::clone(&shared),
            events: Arc::clone(&events),
            wake: Arc::clone(&wake),
            stop_wake: Arc::clone(&stop_wake),
            max_published_id: 0,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MqttError::Worker(e.to_string()))?;
        let handle = std::thread::Builder::new()
            .name("mqtt-telemetry".into())
            .spawn(move || runtime.block_on(worker.run()))
            .map_err(|e| MqttError::Worker(e.to_string()))?;
        Ok((
            Self {
                topics: Topics::new(&config),
                config,
                store,
                shared,
                events,
                wake,
                stop_wake,
                worker: Some(handle),
            },
            rx,
        ))
    }

    /// The topics this engine publishes to.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Puts `message` on the durable queue and returns; for alerts and health the entry is
    /// fsync'd to disk before this returns (then the message counts as accepted). Handed over
    /// at `now_ns` (for the payload's `latency_ms`). Never waits for the network.
    pub fn enqueue(&self, message: Outbound<'_>, now_ns: u64) -> Result<Outcome, MqttError> {
        let device = &self.config.device;
        let (kind, topic, payload) = match message {
            Outbound::Alert(d) => (
                Kind::Alert,
                self.topics.alerts(&d.key.asset_id),
                alert_payload(d, device, now_ns),
            ),
            Outbound::Health(h) => (
                Kind::Health,
                self.topics.health(&h.key.asset_id),
                health_payload(h, device),
            ),
            Outbound::Score(s) => {
                let n = self.shared.score_counter.fetch_add(1, Ordering::Relaxed);
                if !self.config.publish_scores
                    || !n.is_multiple_of(u64::from(self.config.score_sample_every))
                {
                    self.shared.scores_skipped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome::Skipped);
                }
                (
                    Kind::Score,
                    self.topics.scores(&s.key.asset_id),
                    score_payload(s, device, now_ns),
                )
            }
        };
        if topic.len() + payload.len() > MAX_MESSAGE_BYTES {
            self.shared.dropped[kind as usize].fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                kind = kind.as_str(),
                topic,
                bytes = payload.len(),
                limit = MAX_MESSAGE_BYTES,
                "telemetry message too large, dropped"
            );
            return Ok(Outcome::Dropped(DropReason::TooLarge));
        }
        let admission = self.store.append(
            kind,
            &topic,
            payload.as_bytes(),
            self.config.max_score_backlog,
        )?;
        let outcome = match admission {
            Admission::Stored { id, evicted } => {
                self.shared.enqueued.fetch_add(1, Ordering::Relaxed);
                for k in Kind::ALL {
                    let n = evicted[k as usize];
                    if n > 0 {
                        self.shared.dropped[k as usize].fetch_add(n, Ordering::Relaxed);
                        self.raise_queue_full(k);
                    }
                }
                self.wake.notify_one();
                Outcome::Queued { id }
            }
            Admission::Dropped(reason) => {
                self.shared.dropped[kind as usize].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    kind = kind.as_str(),
                    ?reason,
                    topic,
                    "telemetry entry dropped"
                );
                if reason != DropReason::ScoreBacklog {
                    self.raise_queue_full(kind);
                }
                Outcome::Dropped(reason)
            }
        };
        let stats = self.store.stats();
        if stats.total_bytes() < self.store.cap_bytes() / 10 * 9 {
            self.shared.alarm_armed.store(true, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    fn raise_queue_full(&self, kind: Kind) {
        if self.shared.alarm_armed.swap(false, Ordering::Relaxed) {
            let counters = self.counters();
            self.events.send(TelemetryEvent::QueueFull {
                kind,
                dropped_total: counters.dropped.iter().sum(),
                backlog_bytes: counters.backlog_bytes,
            });
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let s = &self.shared;
        let stats = self.store.stats();
        Counters {
            enqueued: s.enqueued.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
            resent: s.resent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            dropped: [0, 1, 2].map(|i| s.dropped[i].load(Ordering::Relaxed)),
            scores_skipped: s.scores_skipped.load(Ordering::Relaxed),
            backlog: stats.total_entries(),
            backlog_bytes: stats.total_bytes(),
            connected: s.connected.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            events_lost: s.events_lost.load(Ordering::Relaxed),
        }
    }

    /// Stops: while connected, keeps publishing until the queue is empty or `drain` has passed,
    /// then publishes the retained `offline` status and disconnects. What is left stays on disk
    /// for the next start. Returns the final counters.
    pub fn shutdown(mut self, drain: Duration) -> Counters {
        self.stop(drain);
        self.counters()
    }

    fn stop(&mut self, drain: Duration) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + drain);
        self.stop_wake.notify_one();
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("mqtt worker thread panicked");
        }
        if let Err(e) = self.store.sync() {
            tracing::warn!(error = %e, "telemetry queue: final sync failed");
        }
    }
}

impl Drop for Telemetry {
    /// Stops without draining (publishes `offline` if connected); the queue stays on disk.
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.stop(Duration::ZERO);
        }
    }
}

/// The rumqttc options for `config` (client id, keep-alive, Last Will, credentials, TLS).
fn mqtt_options(config: &MqttConfig) -> Result<MqttOptions, MqttError> {
    let mut options = MqttOptions::new(
        config.effective_client_id(),
        config.host.clone(),
        config.port,
    );
    options
        .set_keep_alive(Duration::from_secs(u64::from(config.keepalive_s)))
        .set_clean_session(true)
        .set_inflight(config.inflight.saturating_add(1))
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_last_will(LastWill::new(
            Topics::new(config).status(),
            STATUS_OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_client_config(tls)?,
        )));
    }
    Ok(options)
}

/// What a publish request in flight stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Status,
    Entry(Kind, u64),
}

struct Worker {
    options: MqttOptions,
    connect_timeout_s: u64,
    status_topic: String,
    window: usize,
    backoff_min: Duration,
    backoff_max: Duration,
    store: Arc<Store>,
    shared: Arc<Shared>,
    events: Arc<Events>,
    wake: Arc<Notify>,
    stop_wake: Arc<Notify>,
    max_published_id: u64,
}

/// The bookkeeping of one connection.
struct Session {
    client: AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    /// Publish requests handed to rumqttc whose packet id is not known yet, in order.
    requested: VecDeque<Sent>,
    /// QoS 1 publishes awaiting PUBACK, by packet id.
    by_pkid: HashMap<u16, Sent>,
    /// A publish that rumqttc holds back because its packet id is still in use.
    collided: Option<(u16, Sent)>,
    /// Queue entries requested and not yet acked (QoS 1) or written (QoS 0).
    outstanding: usize,
    /// Highest entry id requested in this session.
    cursor: u64,
    /// Acked entries to remove from the queue.
    done: Vec<(Kind, u64)>,
}

fn qos(kind: Kind) -> QoS {
    match kind {
        Kind::Score => QoS::AtMostOnce,
        Kind::Health | Kind::Alert => QoS::AtLeastOnce,
    }
}

impl Worker {
    fn stop_deadline(&self) -> Option<Instant> {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(mut self) {
        let mut backoff = self.backoff_min;
        let mut down_since: Option<Instant> = None;
        let mut ever_connected = false;
        loop {
            if self.stop_deadline().is_some() {
                return;
            }
            let (client, mut eventloop) = AsyncClient::new(self.options.clone(), self.window + 16);
            let mut network = NetworkOptions::new();
            network.set_connection_timeout(self.connect_timeout_s);
            eventloop.set_network_options(network);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let poller = tokio::spawn(poll_events(eventloop, tx));
            let mut session = Session {
                client,
                events: rx,
                requested: VecDeque::new(),
                by_pkid: HashMap::new(),
                collided: None,
                outstanding: 0,
                cursor: 0,
                done: Vec::new(),
            };
            let reason = match self.await_connack(&mut session).await {
                Ok(true) => {
                    backoff = self.backoff_min;
                    self.shared.connected.store(true, Ordering::Relaxed);
                    if ever_connected {
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ever_connected = true;
                    let backlog = self.store.stats().total_entries();
                    tracing::info!(backlog, "connected to MQTT broker");
                    if let Some(since) = down_since.take() {
                        self.events.send(TelemetryEvent::BrokerRecovered {
                            gap: since.elapsed(),
                            backlog,
                        });
                    }
                    let reason = self.serve(&mut session).await;
                    self.shared.connected.store(false, Ordering::Relaxed);
                    reason
                }
                Ok(false) => None,
                Err(reason) => Some(reason),
            };
            drop(session);
            poller.abort();
            let Some(reason) = reason else {
                return; // stopped
            };
            if down_since.is_none() {
                down_since = Some(Instant::now());
                self.events.send(TelemetryEvent::BrokerDown {
                    reason,
                    backlog: self.store.stats().total_entries(),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.stop_wake.notified() => return,
            }
            backoff = (backoff * 2).min(self.backoff_max);
        }
    }

    /// `Ok(true)` once connected, `Ok(false)` when asked to stop, `Err` on failure.
    async fn await_connack(&self, session: &mut Session) -> Result<bool, String> {
        loop {
            tokio::select! {
                event = session.events.recv() => match event {
                    Some(Ok(Event::Incoming(Incoming::ConnAck(_)))) => return Ok(true),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("event loop ended".into()),
                },
                () = self.stop_wake.notified() => {
                    self.stop_wake.notify_one();
                    return Ok(false);
                }
            }
        }
    }

    /// Publishes the queue until the connection fails (returns why) or a stop completes (None).
    async fn serve(&mut self, session: &mut Session) -> Option<String> {
        if session
            .client
            .try_publish(&self.status_topic, QoS::AtLeastOnce, true, STATUS_ONLINE)
            .is_ok()
        {
            session.requested.push_back(Sent::Status);
        }
        loop {
            if let Err(e) = self.fill(session) {
                self.events.send(TelemetryEvent::StoreFailed {
                    error: e.to_string(),
                });
            }
            if let Some(deadline) = self.stop_deadline() {
                let drained = session.outstanding == 0 && self.store.stats().total_entries() == 0;
                if drained || Instant::now() >= deadline {
                    self.go_offline(session).await;
                    return None;
                }
            }
            let stopping = self.stop_deadline().is_some();
            tokio::select! {
                event = session.events.recv() => {
                    let mut next = Some(event);
                    while let Some(event) = next {
                        match event {
                            Some(Ok(event)) => self.handle(session, &event),
                            Some(Err(e)) => return Some(e.to_string()),
                            None => return Some("event loop ended".into()),
                        }
                        next = session.events.try_recv().ok().map(Some);
                    }
                    self.remove_done(session);
                }
                () = self.wake.notified() => {}
                () = self.stop_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(20)), if stopping => {}
            }
        }
    }

    fn remove_done(&self, session: &mut Session) {
        if session.done.is_empty() {
            return;
        }
        match self.store.remove(&session.done) {
            Ok(_) => session.done.clear(),
            Err(e) => self.events.send(TelemetryEvent::StoreFailed {
                error: e.to_string(),
            }),
        }
    }

    /// Hands the next queued entries to rumqttc, up to the in-flight window.
    fn fill(&mut self, session: &mut Session) -> Result<(), crate::error::StoreError> {
        while session.outstanding < self.window {
            let batch = self
                .store
                .next_batch(session.cursor, self.window - session.outstanding)?;
            if batch.is_empty() {
                return Ok(());
            }
            for entry in batch {
                if session
                    .client
                    .try_publish(entry.topic, qos(entry.kind), false, entry.payload)
                    .is_err()
                {
                    // Request channel full: try again on the next turn.
                    return Ok(());
                }
                session
                    .requested
                    .push_back(Sent::Entry(entry.kind, entry.id));
                session.outstanding += 1;
                session.cursor = entry.id;
            }
        }
        Ok(())
    }

    fn handle(&mut self, session: &mut Session, event: &Event) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let sent = match session.collided {
                    Some((held, sent)) if held == *pkid => {
                        session.collided = None;
                        Some(sent)
                    }
                    _ => session.requested.pop_front(),
                };
                if let Some(Sent::Entry(_, id)) = sent {
                    self.shared.published.fetch_add(1, Ordering::Relaxed);
                    if id <= self.max_published_id {
                        self.shared.resent.fetch_add(1, Ordering::Relaxed);
                    }
                    self.max_published_id = self.max_published_id.max(id);
                }
                match sent {
                    Some(Sent::Entry(Kind::Score, id)) => {
                        session.done.push((Kind::Score, id));
                        session.outstanding -= 1;
                    }
                    Some(sent) => {
                        session.by_pkid.insert(*pkid, sent);
                    }
                    None => tracing::warn!(pkid, "publish event without a request"),
                }
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                if let Some(sent) = session.requested.pop_front() {
                    session.collided = Some((*pkid, sent));
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => match session.by_pkid.remove(&ack.pkid) {
                Some(Sent::Entry(kind, id)) => {
                    self.shared.acked.fetch_add(1, Ordering::Relaxed);
                    session.done.push((kind, id));
                    session.outstanding -= 1;
                }
                Some(Sent::Status) => {}
                None => tracing::warn!(pkid = ack.pkid, "PUBACK for an unknown packet id"),
            },
            _ => {}
        }
    }

    /// Publishes the retained `offline` status, waits briefly for its PUBACK, disconnects.
    async fn go_offline(&mut self, session: &mut Session) {
        if session
            .client
            .try_publish(&self.status_topic, QoS::AtLeastOnce, true, STATUS_OFFLINE)
            .is_err()
        {
            return;
        }
        session.requested.push_back(Sent::Status);
        let wait = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                event = session.events.recv() => match event {
                    Some(Ok(event)) => {
                        let acked_offline = matches!(&event, Event::Incoming(Incoming::PubAck(ack))
                            if session.by_pkid.get(&ack.pkid) == Some(&Sent::Status)
                                && session.requested.is_empty());
                        self.handle(session, &event);
                        if acked_offline {
                            break;
                        }
                    }
                    _ => return,
                },
                () = &mut wait => break,
            }
        }
        self.remove_done(session);
        let _ = session.client.try_disconnect();
        // Let the event loop write the DISCONNECT.
        let flush = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(flush);
        loop {
            tokio::select! {
                event = session.events.recv() => if !matches!(event, Some(Ok(_))) { return },
                () = &mut flush => return,
            }
        }
    }
}

/// Drives one connection's event loop, forwarding every event until the first error.
async fn poll_events(
    mut eventloop: EventLoop,
    tx: tokio::sync::mpsc::UnboundedSender<Result<Event, ConnectionError>>,
) {
    loop {
        let event = eventloop.poll().await;
        let failed = event.is_err();
        if tx.send(event).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine whose broker port has nothing listening: everything stays queued.
    fn offline(dir: &tempfile::TempDir, tweak: impl FnOnce(&mut MqttConfig)) -> Telemetry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = MqttConfig {
            port,
            queue_path: dir.path().join("q.redb"),
            reconnect_min_ms: 50,
            reconnect_max_ms: 100,
            ..MqttConfig::default()
        };
        tweak(&mut config);
        Telemetry::start(config).unwrap().0
    }

    fn score(seq: u64) -> Score {
        Score {
            key: Correlation::new("press-07", seq, 0),
            ..Score::default()
        }
    }

    #[test]
    fn scores_are_skipped_unless_enabled_and_sampled() {
        let dir = tempfile::tempdir().unwrap();
        let off = offline(&dir, |_| {});
        assert_eq!(
            off.enqueue(Outbound::Score(&score(0)), 0).unwrap(),
            Outcome::Skipped
        );
        drop(off);
        let on = offline(&dir, |c| {
            c.publish_scores = true;
            c.score_sample_every = 3;
        });
        let queued = (0..9)
            .filter(|&i| {
                matches!(
                    on.enqueue(Outbound::Score(&score(i)), 0).unwrap(),
                    Outcome::Queued { .. }
                )
            })
            .count();
        assert_eq!(queued, 3);
        let c = on.counters();
        assert_eq!((c.enqueued, c.scores_skipped, c.backlog), (3, 6, 3));
    }

    #[test]
    fn oversized_messages_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let t = offline(&dir, |_| {});
        let decision = Decision {
            reason: "x".repeat(MAX_MESSAGE_BYTES),
            ..Decision::default()
        };
        assert_eq!(
            t.enqueue(Outbound::Alert(&decision), 0).unwrap(),
            Outcome::Dropped(DropReason::TooLarge)
        );
        assert_eq!(t.counters().dropped_of(Kind::Alert), 1);
        assert_eq!(t.counters().backlog, 0);
    }

    #[test]
    fn unreachable_broker_raises_one_broker_down_and_keeps_the_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = MqttConfig {
            port,
            queue_path: dir.path().join("q.redb"),
            reconnect_min_ms: 20,
            reconnect_max_ms: 20,
            ..MqttConfig::default()
        };
        let (t, events) = Telemetry::start(config).unwrap();
        t.enqueue(Outbound::Alert(&Decision::default()), 0).unwrap();
        let first = events.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first.code(), "broker_down");
        // Many retries later, still one event.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(events.try_iter().count(), 0);
        let c = t.shutdown(Duration::from_millis(100));
        assert!(!c.connected);
        assert_eq!((c.backlog, c.published), (1, 0));
    }

    #[test]
    fn events_become_health_messages() {
        let down = TelemetryEvent::BrokerDown {
            reason: "refused".into(),
            backlog: 12,
        };
        let h = down.to_health("line-2", "telemetry", 4, 99);
        assert_eq!(
            (
                h.code.as_str(),
                h.level,
                h.value,
                h.key.seq,
                h.key.acq_time_ns
            ),
            ("broker_down", HealthLevel::Warning, 12.0, 4, 99)
        );
        let full = TelemetryEvent::QueueFull {
            kind: Kind::Alert,
            dropped_total: 3,
            backlog_bytes: 100,
        };
        assert_eq!(full.to_health("l", "n", 0, 0).level, HealthLevel::Alarm);
        let recovered = TelemetryEvent::BrokerRecovered {
            gap: Duration::from_secs(2),
            backlog: 5,
        };
        let h = recovered.to_health("l", "n", 0, 0);
        assert_eq!(
            (h.level, h.code.as_str()),
            (HealthLevel::Ok, "broker_recovered")
        );
        assert!(h.message.contains("2.0 s"), "{}", h.message);
    }
}
