//! The [`PlcLink`] trait the worker drives, and its Modbus TCP implementation: a client with
//! timeouts, capped exponential backoff and optional write-and-verify ([`ModbusLink`]) plus the
//! register map ([`ModbusPlc`]). The OPC UA implementation is [`crate::OpcUaLink`].

use std::borrow::Cow;
use std::time::Duration;

use forgeline_schemas::Decision;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_modbus::client::{Client as _, Context, tcp};
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

use crate::config::{LinkConfig, RegisterMap};
use crate::encode::Write;

/// A connection to a PLC as the [`crate::PlcWorker`] sees it, whatever the protocol.
///
/// Contract: a request that finds the connection gone returns an error for which
/// [`LinkError::is_connection_lost`] holds and leaves the link disconnected; the worker then
/// paces [`PlcLink::connect`] with [`PlcLink::next_retry_delay`]. A refused request (the PLC
/// answered "no") leaves the link connected.
// The worker runs the link on a current-thread runtime: the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait PlcLink {
    /// Where the link connects (`host:port` or the OPC UA endpoint), for logs and errors.
    fn target(&self) -> &str;
    /// Whether a connection is open (as far as we know: a dead peer shows on the next request).
    fn is_connected(&self) -> bool;
    /// One connection attempt, bounded by `link.connect_timeout_ms`; resets the backoff on
    /// success.
    async fn connect(&mut self) -> Result<(), LinkError>;
    /// The delay before the next reconnect attempt (capped exponential backoff).
    fn next_retry_delay(&mut self) -> Duration;
    /// Closes the connection, if any (best effort, bounded).
    async fn disconnect(&mut self);
    /// Writes every configured signal of `decision` (with write-and-verify when configured).
    async fn write_decision(&mut self, decision: &Decision) -> Result<(), LinkError>;
    /// Whether a heartbeat signal is configured.
    fn has_heartbeat(&self) -> bool;
    /// Writes heartbeat value `counter` (a no-op without a heartbeat signal).
    async fn write_heartbeat(&mut self, counter: u16) -> Result<(), LinkError>;
}

/// A Modbus TCP PLC: a [`ModbusLink`] and the [`RegisterMap`] that says what goes where.
#[derive(Debug)]
pub struct ModbusPlc {
    link: ModbusLink,
    map: RegisterMap,
}

impl ModbusPlc {
    /// A (not yet connected) PLC at `config.address` with register map `map`.
    pub fn new(config: LinkConfig, map: RegisterMap) -> Self {
        Self {
            link: ModbusLink::new(config, map.unit_id),
            map,
        }
    }

    /// The underlying Modbus client (for reads in tests and harnesses).
    pub fn link_mut(&mut self) -> &mut ModbusLink {
        &mut self.link
    }
}

impl PlcLink for ModbusPlc {
    fn target(&self) -> &str {
        self.link.address()
    }

    fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    async fn connect(&mut self) -> Result<(), LinkError> {
        self.link.connect().await
    }

    fn next_retry_delay(&mut self) -> Duration {
        self.link.next_retry_delay()
    }

    async fn disconnect(&mut self) {
        self.link.disconnect().await;
    }

    async fn write_decision(&mut self, decision: &Decision) -> Result<(), LinkError> {
        let writes = self.map.encode(decision);
        self.link.write_all(&writes).await
    }

    fn has_heartbeat(&self) -> bool {
        self.map.heartbeat_register.is_some()
    }

    async fn write_heartbeat(&mut self, counter: u16) -> Result<(), LinkError> {
        match self.map.encode_heartbeat(counter) {
            Some(write) => self.link.write(&write).await,
            None => Ok(()),
        }
    }
}

/// Capped exponential backoff: `initial, 2*initial, 4*initial, … max, max, …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max` (`max >= initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A failure talking to the PLC.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The TCP connection could not be opened.
    #[error(
        "PLC {address}: cannot connect: {source} (is the PLC or plc-sim running and `link.address` right?)"
    )]
    Connect {
        /// `link.address`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP connection attempt timed out.
    #[error("PLC {address}: connect timed out after {timeout_ms} ms (`link.connect_timeout_ms`)")]
    ConnectTimeout {
        /// `link.address`.
        address: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// A request was made while not connected.
    #[error("PLC {address}: {operation}: not connected")]
    NotConnected {
        /// `link.address`.
        address: String,
        /// What was attempted, e.g. `write registers 0..7`.
        operation: String,
    },
    /// No response within the request timeout; the connection is dropped.
    #[error(
        "PLC {address}: {operation}: no response within {timeout_ms} ms (`link.request_timeout_ms`)"
    )]
    Timeout {
        /// `link.address`.
        address: String,
        /// What was attempted.
        operation: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The connection failed during a request (closed, reset, bad frame); it is dropped.
    #[error("PLC {address}: {operation}: {source}")]
    Transport {
        /// `link.address`.
        address: String,
        /// What was attempted.
        operation: String,
        /// Why.
        source: tokio_modbus::Error,
    },
    /// The PLC answered with a Modbus exception (the connection stays up).
    #[error(
        "PLC {address} (unit {unit_id}): {operation}: refused with Modbus exception {code} \
         (check `registers` against the PLC's memory map and `registers.unit_id`)"
    )]
    Exception {
        /// `link.address`.
        address: String,
        /// Unit id used.
        unit_id: u8,
        /// What was attempted.
        operation: String,
        /// The exception.
        code: ExceptionCode,
    },
    /// Write-and-verify read back something else than was written.
    #[error(
        "PLC {address}: verify {operation}: read back {actual:?}, wrote {expected:?} (is another master writing there?)"
    )]
    VerifyMismatch {
        /// `link.address`.
        address: String,
        /// What was verified.
        operation: String,
        /// Values written (coils as 0/1).
        expected: Vec<u16>,
        /// Values read back.
        actual: Vec<u16>,
    },
    /// The PLC answered with a response of another kind than the request.
    #[error("PLC {address}: {operation}: unexpected response {response}")]
    UnexpectedResponse {
        /// `link.address`.
        address: String,
        /// What was attempted.
        operation: String,
        /// The response received.
        response: String,
    },
    /// OPC UA: the connection or session could not be established (discovery, secure channel,
    /// certificates, user token) or was lost during a request; it is dropped.
    #[error("PLC {endpoint}: {operation}: {reason}")]
    OpcUaConnection {
        /// `link.endpoint`.
        endpoint: String,
        /// What was attempted, e.g. `connect` or `write 7 nodes`.
        operation: String,
        /// Why (the OPC UA status code and its text).
        reason: String,
    },
    /// OPC UA: the server refused the request or the write of one node (the session stays up).
    #[error(
        "PLC {endpoint}: {operation}: refused with {status} (check `link.nodes` against the \
         server's address space, the variable's data type and the user's write access)"
    )]
    OpcUaRefused {
        /// `link.endpoint`.
        endpoint: String,
        /// What was refused, e.g. `write link.nodes.verdict (ns=2;s=Press.Verdict)`.
        operation: String,
        /// The OPC UA status code, e.g. `BadTypeMismatch`.
        status: String,
    },
    /// OPC UA write-and-verify read back something else than was written.
    #[error(
        "PLC {endpoint}: verify {node}: read back {actual}, wrote {expected} (is another client writing there?)"
    )]
    OpcUaVerifyMismatch {
        /// `link.endpoint`.
        endpoint: String,
        /// The signal and node id.
        node: String,
        /// The value written.
        expected: String,
        /// The value read back.
        actual: String,
    },
}

impl LinkError {
    /// Whether the connection is gone (retry after reconnecting) rather than the request
    /// refused (retrying the same write would fail again).
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::ConnectTimeout { .. }
                | Self::NotConnected { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
                | Self::OpcUaConnection { .. }
        )
    }
}

/// A Modbus TCP client for one PLC unit.
///
/// Every request has a timeout; a timeout or transport error drops the connection (the next
/// response could belong to the stale request), and [`ModbusLink::connect`] opens a new one.
/// The caller paces reconnects with [`ModbusLink::next_retry_delay`].
pub struct ModbusLink {
    config: LinkConfig,
    unit_id: u8,
    context: Option<Context>,
    backoff: Backoff,
}

impl std::fmt::Debug for ModbusLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusLink")
            .field("address", &self.config.address)
            .field("unit_id", &self.unit_id)
            .field("connected", &self.context.is_some())
            .finish_non_exhaustive()
    }
}

impl ModbusLink {
    /// A link (not yet connected) to `config.address`, unit `unit_id`.
    pub fn new(config: LinkConfig, unit_id: u8) -> Self {
        let backoff = Backoff::new(
            Duration::from_millis(config.backoff_initial_ms),
            Duration::from_millis(config.backoff_max_ms),
        );
        Self {
            config,
            unit_id,
            context: None,
            backoff,
        }
    }

    /// `host:port` of the PLC.
    pub fn address(&self) -> &str {
        &self.config.address
    }

    /// Whether a connection is open (as far as we know: a dead peer shows on the next request).
    pub fn is_connected(&self) -> bool {
        self.context.is_some()
    }

    /// One connection attempt, bounded by `connect_timeout_ms`. Resets the backoff on success.
    pub async fn connect(&mut self) -> Result<(), LinkError> {
        self.context = None;
        let limit = self.config.connect_timeout_ms;
        let stream = timeout(
            Duration::from_millis(limit),
            TcpStream::connect(self.config.address.as_str()),
        )
        .await
        .map_err(|_| LinkError::ConnectTimeout {
            address: self.config.address.clone(),
            timeout_ms: limit,
        })?
        .map_err(|source| LinkError::Connect {
            address: self.config.address.clone(),
            source,
        })?;
        // Small frames, latency matters: no Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(address = %self.config.address, error = %e, "cannot set TCP_NODELAY");
        }
        self.context = Some(tcp::attach_slave(stream, Slave(self.unit_id)));
        self.backoff.reset();
        Ok(())
    }

    /// The delay before the next reconnect attempt (capped exponential backoff).
    pub fn next_retry_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }

    /// Closes the connection, if any (best effort).
    pub async fn disconnect(&mut self) {
        if let Some(mut context) = self.context.take() {
            let _ = timeout(self.request_timeout(), context.disconnect()).await;
        }
    }

    /// Performs one write; with `verify_writes`, reads it back and compares.
    pub async fn write(&mut self, write: &Write) -> Result<(), LinkError> {
        let operation = format!("write {}", write.describe());
        let request = match write {
            Write::Coil { address, value } => Request::WriteSingleCoil(*address, *value),
            Write::Registers { address, words } if words.len() == 1 => {
                Request::WriteSingleRegister(*address, words[0])
            }
            Write::Registers { address, words } => {
                Request::WriteMultipleRegisters(*address, Cow::Owned(words.clone()))
            }
        };
        self.call(request, &operation).await?;
        if self.config.verify_writes {
            self.verify(write).await?;
        }
        Ok(())
    }

    /// Performs `writes` in order, stopping at the first failure.
    pub async fn write_all(&mut self, writes: &[Write]) -> Result<(), LinkError> {
        for write in writes {
            self.write(write).await?;
        }
        Ok(())
    }

    /// Reads `count` holding registers from `address` (FC3).
    pub async fn read_holding_registers(
        &mut self,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, LinkError> {
        let operation = format!("read {count} holding registers at {address}");
        match self
            .call(Request::ReadHoldingRegisters(address, count), &operation)
            .await?
        {
            Response::ReadHoldingRegisters(words) => Ok(words),
            other => Err(self.unexpected(operation, &other)),
        }
    }

    /// Reads `count` coils from `address` (FC1).
    pub async fn read_coils(&mut self, address: u16, count: u16) -> Result<Vec<bool>, LinkError> {
        let operation = format!("read {count} coils at {address}");
        match self
            .call(Request::ReadCoils(address, count), &operation)
            .await?
        {
            Response::ReadCoils(mut coils) => {
                // Coils come packed in bytes: drop the padding bits.
                coils.truncate(usize::from(count));
                Ok(coils)
            }
            other => Err(self.unexpected(operation, &other)),
        }
    }

    async fn verify(&mut self, write: &Write) -> Result<(), LinkError> {
        let (expected, actual) = match write {
            Write::Coil { address, value } => {
                let read = self.read_coils(*address, 1).await?;
                (
                    vec![u16::from(*value)],
                    read.into_iter().map(u16::from).collect(),
                )
            }
            Write::Registers { address, words } => {
                let count = u16::try_from(words.len()).unwrap_or(u16::MAX);
                (
                    words.clone(),
                    self.read_holding_registers(*address, count).await?,
                )
            }
        };
        if expected == actual {
            Ok(())
        } else {
            Err(LinkError::VerifyMismatch {
                address: self.config.address.clone(),
                operation: write.describe(),
                expected,
                actual,
            })
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    fn unexpected(&self, operation: String, response: &Response) -> LinkError {
        LinkError::UnexpectedResponse {
            address: self.config.address.clone(),
            operation,
            response: format!("{response:?}"),
        }
    }

    /// One request with the request timeout; drops the connection when it is lost.
    async fn call(
        &mut self,
        request: Request<'static>,
        operation: &str,
    ) -> Result<Response, LinkError> {
        let address = self.config.address.clone();
        let limit = self.request_timeout();
        let Some(context) = self.context.as_mut() else {
            return Err(LinkError::NotConnected {
                address,
                operation: operation.to_owned(),
            });
        };
        let outcome = timeout(limit, context.call(request)).await;
        match outcome {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(LinkError::Exception {
                address,
                unit_id: self.unit_id,
                operation: operation.to_owned(),
                code,
            }),
            Ok(Err(source)) => {
                self.context = None;
                Err(LinkError::Transport {
                    address,
                    operation: operation.to_owned(),
                    source,
                })
            }
            Err(_) => {
                self.context = None;
                Err(LinkError::Timeout {
                    address,
                    operation: operation.to_owned(),
                    timeout_ms: self.config.request_timeout_ms,
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(450));
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(450), ms(450)]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(100));
    }

    #[test]
    fn errors_say_whether_the_connection_is_lost() {
        let lost = LinkError::NotConnected {
            address: "a:1".into(),
            operation: "write coil 0".into(),
        };
        assert!(lost.is_connection_lost());
        let refused = LinkError::Exception {
            address: "a:1".into(),
            unit_id: 1,
            operation: "write register 9".into(),
            code: ExceptionCode::IllegalDataAddress,
        };
        assert!(!refused.is_connection_lost());
        assert!(
            refused.to_string().contains("write register 9"),
            "{refused}"
        );
    }

    #[test]
    fn a_silent_peer_times_out_and_drops_the_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Accepts TCP (the kernel completes the handshake) but never answers Modbus.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        runtime.block_on(async {
            let mut link = ModbusLink::new(
                LinkConfig {
                    address: format!("127.0.0.1:{port}"),
                    request_timeout_ms: 50,
                    ..LinkConfig::default()
                },
                1,
            );
            link.connect().await.unwrap();
            let started = std::time::Instant::now();
            let err = link.read_holding_registers(0, 1).await.unwrap_err();
            assert!(
                matches!(err, LinkError::Timeout { timeout_ms: 50, .. }),
                "{err}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(err.is_connection_lost());
            assert!(!link.is_connected(), "a timed-out connection is dropped");
        });
        drop(silent);
    }

    #[test]
    fn connect_to_a_closed_port_fails_fast_and_requests_say_not_connected() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Bind then drop: nobody listens on that port any more.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut link = ModbusLink::new(
                LinkConfig {
                    address: format!("127.0.0.1:{port}"),
                    ..LinkConfig::default()
                },
                1,
            );
            let err = link.connect().await.unwrap_err();
            assert!(matches!(err, LinkError::Connect { .. }), "{err}");
            assert!(err.is_connection_lost());
            let err = link
                .write(&Write::Coil {
                    address: 0,
                    value: true,
                })
                .await
                .unwrap_err();
            assert!(matches!(err, LinkError::NotConnected { .. }), "{err}");
        });
    }
}
