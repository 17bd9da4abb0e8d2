//! forgeline-plc: the link from decisions to the PLC that acts on them, over Modbus TCP or
//! OPC UA.
//!
//! - [`RegisterMap::encode`] (pure): a [`Decision`](forgeline_schemas::Decision) to the coil
//!   and register writes of the configured map.
//! - [`DeadlineTracker`] (pure, time passed in): items awaiting a verdict; late verdicts are
//!   reported and never applied; expired items get the [`FailSafeConfig`] verdict.
//! - [`ModbusLink`]: tokio-modbus TCP client with timeouts, capped exponential backoff and
//!   optional write-and-verify.
//! - [`OpcUaLink`]: async-opcua client writing the same signals to configured node ids, with
//!   OPC UA security (policy, mode, certificates, user token).
//! - [`PlcLink`]: what the worker needs from a link; both link kinds implement it.
//! - [`PlcWorker`]: a thread with a current-thread tokio runtime owning the link; `submit` never
//!   blocks; heartbeat; backlog policy while down; health events and counters.
//! - [`sim`]: a Modbus TCP PLC simulator, the engine of the `plc-sim` node.
//!
//! No dora types here; the pure parts never read a clock.

pub mod config;
pub mod deadline;
pub mod encode;
pub mod link;
pub mod opcua;
pub mod sim;
pub mod worker;

pub use config::{
    ConfigError, ConfigProblem, FAIL_SAFE_PREFIX, FailSafeConfig, LinkConfig, LinkKind, OpcUaNodes,
    PlcConfig, RegisterMap, ScoreFormat, SecurityMode, SecurityPolicy, WordOrder, WorkerConfig,
};
pub use deadline::{DeadlineCounts, DeadlineOutcome, DeadlineTracker};
pub use encode::{Write, is_fail_safe, model_version_code, severity_code, verdict_code};
pub use link::{Backoff, LinkError, ModbusLink, ModbusPlc, PlcLink};
pub use opcua::OpcUaLink;
pub use sim::{SimConfig, SimError, SimImage, SimSnapshot, Simulator, run_simulator};
pub use worker::{PlcHealthEvent, PlcStats, PlcStatsSnapshot, PlcWorker, WorkerError};
