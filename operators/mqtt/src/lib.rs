//! MQTT telemetry for forgeline with durable store-and-forward.
//!
//! The `telemetry` node calls [`Telemetry::enqueue`] for each alert (non-ok [`Decision`]),
//! sampled [`Score`] and [`Health`] event. The message is turned into a versioned JSON payload
//! ([`payload`]), appended to a local redb queue ([`store`], fsync'd for alerts and health)
//! and `enqueue` returns: from then on the message is accepted and survives a process kill.
//! A worker thread publishes the queue in order once the broker is reachable and removes each
//! entry only after the broker's PUBACK (at-least-once, in order, no loss). The queue is capped
//! in bytes: when full, scores are dropped first, then health, alerts last; every drop is
//! counted and raises a [`TelemetryEvent::QueueFull`] alarm.
//!
//! No dora types and no wall clock: the hand-over time is passed to `enqueue`. The worker
//! measures outage gaps with the monotonic clock.
//!
//! ```no_run
//! use forgeline_mqtt::{MqttConfig, Outbound, Telemetry};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = MqttConfig::from_yaml("factory: f1\nline: l2\ndevice: edge-1\nqueue_path: /tmp/q.redb")?;
//! let (telemetry, events) = Telemetry::start(config)?;
//! # let decision = forgeline_schemas::Decision::default();
//! telemetry.enqueue(Outbound::Alert(&decision), 1_700_000_000_000_000_000)?;
//! for event in events.try_iter() { println!("{}", event.code()); }
//! println!("{:?}", telemetry.counters());
//! # Ok(()) }
//! ```
//!
//! [`Decision`]: forgeline_schemas::Decision
//! [`Score`]: forgeline_schemas::Score
//! [`Health`]: forgeline_schemas::Health

pub mod config;
pub mod engine;
pub mod error;
pub mod payload;
pub mod store;

pub use config::{MqttConfig, TlsConfig, Topics};
pub use engine::{Counters, Outbound, Outcome, Telemetry, TelemetryEvent};
pub use error::{ConfigProblem, MqttError, StoreError};
pub use payload::{PAYLOAD_SCHEMA, alert_payload, health_payload, is_alert, score_payload};
pub use store::{DropReason, Kind};
