//! A Modbus TCP PLC simulator: coils and holding registers in memory, every write counted (and
//! logged at debug level: `FORGELINE_LOG=plc_sim=debug`).
//!
//! It is the engine of the `plc-sim` node, so the default graph exchanges real Modbus frames
//! on loopback. Supported function codes: 1 (read coils), 3 (read holding registers), 5, 6,
//! 15, 16 (writes); others get `IllegalFunction`, out-of-range addresses `IllegalDataAddress`.

use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

/// Simulator configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Address to listen on. Default `127.0.0.1:5020` (loopback; 502 needs root).
    pub bind: String,
    /// Number of coils (addresses `0..coils`). Default `64`.
    pub coils: u16,
    /// Number of holding registers (addresses `0..holding_registers`). Default `256`.
    pub holding_registers: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:5020".into(),
            coils: 64,
            holding_registers: 256,
        }
    }
}

/// A failure of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be opened.
    #[error("plc-sim: cannot listen on `{bind}` (`bind`): {source}")]
    Bind {
        /// The configured address.
        bind: String,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime or its thread could not be started.
    #[error("plc-sim: cannot start its runtime: {0}")]
    Runtime(std::io::Error),
    /// The server stopped accepting connections.
    #[error("plc-sim on {bind}: server failed: {source}")]
    Serve {
        /// The bound address.
        bind: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The simulator's memory at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimSnapshot {
    /// Coil values, index = address.
    pub coils: Vec<bool>,
    /// Holding register values, index = address.
    pub holding_registers: Vec<u16>,
    /// Number of write requests applied.
    pub writes: u64,
}

/// Shared memory of the simulated PLC; clones share it.
#[derive(Debug, Clone)]
pub struct SimImage(Arc<Mutex<SimSnapshot>>);

impl SimImage {
    /// All-zero memory of `coils` coils and `holding_registers` registers.
    pub fn new(coils: u16, holding_registers: u16) -> Self {
        Self(Arc::new(Mutex::new(SimSnapshot {
            coils: vec![false; usize::from(coils)],
            holding_registers: vec![0; usize::from(holding_registers)],
            writes: 0,
        })))
    }

    /// A copy of the current memory.
    pub fn snapshot(&self) -> SimSnapshot {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies one Modbus request, as the server does for each frame.
    pub fn apply(&self, request: Request<'_>) -> Result<Response, ExceptionCode> {
        let mut memory = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let memory = &mut *memory;
        match request {
            Request::ReadCoils(address, count) => Ok(Response::ReadCoils(
                span(&memory.coils, address, count)?.to_vec(),
            )),
            Request::ReadHoldingRegisters(address, count) => Ok(Response::ReadHoldingRegisters(
                span(&memory.holding_registers, address, count)?.to_vec(),
            )),
            Request::WriteSingleCoil(address, value) => {
                span_mut(&mut memory.coils, address, 1)?[0] = value;
                memory.writes += 1;
                tracing::debug!(target: "plc_sim", fc = 5, address, value, "write coil");
                Ok(Response::WriteSingleCoil(address, value))
            }
            Request::WriteMultipleCoils(address, values) => {
                let count =
                    u16::try_from(values.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                span_mut(&mut memory.coils, address, count)?.copy_from_slice(&values);
                memory.writes += 1;
                tracing::debug!(target: "plc_sim", fc = 15, address, values = ?values, "write coils");
                Ok(Response::WriteMultipleCoils(address, count))
            }
            Request::WriteSingleRegister(address, word) => {
                span_mut(&mut memory.holding_registers, address, 1)?[0] = word;
                memory.writes += 1;
                tracing::debug!(target: "plc_sim", fc = 6, address, word, "write register");
                Ok(Response::WriteSingleRegister(address, word))
            }
            Request::WriteMultipleRegisters(address, words) => {
                let count =
                    u16::try_from(words.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                span_mut(&mut memory.holding_registers, address, count)?.copy_from_slice(&words);
                memory.writes += 1;
                tracing::debug!(target: "plc_sim", fc = 16, address, words = ?words, "write registers");
                Ok(Response::WriteMultipleRegisters(address, count))
            }
            other => {
                tracing::warn!(target: "plc_sim", function = %other.function_code(), "unsupported function");
                Err(ExceptionCode::IllegalFunction)
            }
        }
    }
}

fn bounds(len: usize, address: u16, count: u16) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let (start, end) = (
        usize::from(address),
        usize::from(address) + usize::from(count),
    );
    if count == 0 || end > len {
        Err(ExceptionCode::IllegalDataAddress)
    } else {
        Ok(start..end)
    }
}

fn span<T>(values: &[T], address: u16, count: u16) -> Result<&[T], ExceptionCode> {
    Ok(&values[bounds(values.len(), address, count)?])
}

fn span_mut<T>(values: &mut [T], address: u16, count: u16) -> Result<&mut [T], ExceptionCode> {
    let range = bounds(values.len(), address, count)?;
    Ok(&mut values[range])
}

/// The Modbus service: every connection shares one [`SimImage`].
struct SimService(SimImage);

impl tokio_modbus::server::Service for SimService {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        ready(self.0.apply(request))
    }
}

/// Opens the listening socket of `config.bind` and the simulator's memory.
pub async fn bind(config: &SimConfig) -> Result<(TcpListener, SimImage), SimError> {
    let listener = TcpListener::bind(config.bind.as_str())
        .await
        .map_err(|source| SimError::Bind {
            bind: config.bind.clone(),
            source,
        })?;
    Ok((
        listener,
        SimImage::new(config.coils, config.holding_registers),
    ))
}

/// Serves Modbus TCP on `listener` with memory `image` until `shutdown` completes (any number
/// of clients, any unit id).
pub async fn serve(
    listener: TcpListener,
    image: SimImage,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let bind = listener.local_addr().map_err(SimError::Runtime)?;
    tracing::info!(target: "plc_sim", %bind, "plc-sim listening");
    let server = Server::new(listener);
    let on_connected = |stream, peer: SocketAddr| {
        let image = image.clone();
        async move {
            tracing::info!(target: "plc_sim", %peer, "client connected");
            accept_tcp_connection(stream, peer, move |_| Ok(Some(SimService(image.clone()))))
        }
    };
    let on_process_error =
        |error: std::io::Error| tracing::debug!(target: "plc_sim", %error, "connection ended");
    tokio::select! {
        result = server.serve(&on_connected, on_process_error) => {
            result.map_err(|source| SimError::Serve { bind, source })
        }
        () = shutdown => Ok(()),
    }
}

/// Runs the simulator on the calling thread until the process ends (the `plc-sim` node's main).
pub fn run_simulator(config: &SimConfig) -> Result<(), SimError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    runtime.block_on(async {
        let (listener, image) = bind(config).await?;
        serve(listener, image, std::future::pending()).await
    })
}

/// A simulator running on its own thread; stops when dropped.
#[derive(Debug)]
pub struct Simulator {
    local_addr: SocketAddr,
    image: SimImage,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), SimError>>>,
}

impl Simulator {
    /// Binds `config.bind` (port 0 picks a free port) and serves on a new thread.
    pub fn start(config: &SimConfig) -> Result<Self, SimError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SimError::Runtime)?;
        let (listener, image) = runtime.block_on(bind(config))?;
        let local_addr = listener.local_addr().map_err(SimError::Runtime)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = image.clone();
        let thread = std::thread::Builder::new()
            .name("plc-sim".into())
            .spawn(move || {
                runtime.block_on(serve(listener, served, async {
                    let _ = stopped.await;
                }))
            })
            .map_err(SimError::Runtime)?;
        Ok(Self {
            local_addr,
            image,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A copy of the simulated memory.
    pub fn snapshot(&self) -> SimSnapshot {
        self.image.snapshot()
    }

    /// The shared memory (to preset values, e.g. an input the PLC would set).
    pub fn image(&self) -> &SimImage {
        &self.image
    }

    /// Stops serving and waits for the thread; returns how the server ended.
    pub fn stop(mut self) -> Result<(), SimError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), SimError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(SimError::Runtime(std::io::Error::other(
                "plc-sim thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(target: "plc_sim", %error, "plc-sim ended with an error");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn image_applies_writes_and_rejects_out_of_range() {
        let image = SimImage::new(8, 4);
        assert_eq!(
            image.apply(Request::WriteSingleCoil(7, true)),
            Ok(Response::WriteSingleCoil(7, true))
        );
        assert_eq!(
            image.apply(Request::WriteMultipleRegisters(2, Cow::Owned(vec![5, 6]))),
            Ok(Response::WriteMultipleRegisters(2, 2))
        );
        assert_eq!(
            image.apply(Request::WriteSingleRegister(4, 1)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            image.apply(Request::WriteMultipleRegisters(3, Cow::Owned(vec![1, 2]))),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            image.apply(Request::ReadHoldingRegisters(0, 0)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            image.apply(Request::ReadInputRegisters(0, 1)),
            Err(ExceptionCode::IllegalFunction)
        );
        assert_eq!(
            image.apply(Request::ReadHoldingRegisters(1, 3)),
            Ok(Response::ReadHoldingRegisters(vec![0, 5, 6]))
        );
        let snapshot = image.snapshot();
        assert_eq!(
            snapshot.coils,
            [false, false, false, false, false, false, false, true]
        );
        assert_eq!(snapshot.holding_registers, [0, 0, 5, 6]);
        assert_eq!(snapshot.writes, 2, "refused writes are not counted");
    }
}
