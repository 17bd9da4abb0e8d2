//! Error types of the crate, one enum per domain.

use std::path::PathBuf;

/// One problem found in a [`crate::MqttConfig`]; validation reports all of them at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mqtt config: `{field}` = {value}: {problem}")]
pub struct ConfigProblem {
    /// The config key, e.g. `factory` or `tls.client_key_file`.
    pub field: &'static str,
    /// The offending value, as written in the config (quoted for strings).
    pub value: String,
    /// What is wrong and what would fix it.
    pub problem: String,
}

/// Errors of the local durable queue (user errors: bad path; external: disk).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The queue file could not be created or opened.
    #[error(
        "queue {path}: cannot open ({reason}); check that the directory exists, is writable, and that no other process holds the queue"
    )]
    Open {
        /// The queue file.
        path: PathBuf,
        /// The underlying error.
        reason: String,
    },
    /// A read or write transaction on the queue failed.
    #[error("queue {path}: {operation} failed: {reason}")]
    Io {
        /// The queue file.
        path: PathBuf,
        /// What was being done (`append`, `remove acked`, `read next`…).
        operation: &'static str,
        /// The underlying error.
        reason: String,
    },
    /// A stored entry does not decode (the file was written by something else, or is damaged).
    #[error("queue {path}: entry {id} is corrupt: {reason}")]
    Corrupt {
        /// The queue file.
        path: PathBuf,
        /// The entry's id.
        id: u64,
        /// What does not decode.
        reason: String,
    },
}

/// Errors of the telemetry engine.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid mqtt config ({} problem(s)):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigProblem>),
    /// A TLS file (CA, client certificate or key) could not be read or used.
    #[error("mqtt config: `{field}` = {path}: {reason}")]
    Tls {
        /// The config key, e.g. `tls.ca_file`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The durable queue failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The worker thread could not be started.
    #[error("mqtt worker thread: cannot start: {0}")]
    Worker(String),
}
