//! A tiny HTTP/1.1 listener serving `GET /metrics` (Prometheus text format) on one thread.
//! Hand-written on `std::net`: one scrape every few seconds needs no async runtime or HTTP
//! framework, and it adds nothing to the build.

use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// `metrics:` in the telemetry node's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to bind (default `127.0.0.1`: loopback only; set `0.0.0.0` to let a
    /// Prometheus on another machine scrape).
    pub bind: IpAddr,
    /// TCP port (default 9464; 0 picks a free one, logged at start).
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9464,
        }
    }
}

/// Renders the exposition text on each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The running endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds and starts serving.
    ///
    /// # Errors
    /// The bind error, naming the address (port in use, address not local…).
    pub fn start(config: &MetricsConfig, render: Render) -> Result<Self, String> {
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr).map_err(|e| {
            format!("metrics: cannot listen on {addr}: {e} (set metrics.port to a free port)")
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("metrics: {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("metrics: {addr}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let worker = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &render),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!("metrics: accept: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|e| format!("metrics: cannot start thread: {e}"))?;
        Ok(Self {
            addr,
            stop,
            worker: Some(worker),
        })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn serve(mut stream: TcpStream, render: &Render) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the request head (bounded: 8 KiB).
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", render()),
        ("GET", "/") => (
            "200 OK",
            "forgeline telemetry: metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "404 Not Found",
            "not found; metrics are at GET /metrics\n".to_owned(),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_404() {
        let server = MetricsServer::start(
            &MetricsConfig {
                port: 0,
                ..MetricsConfig::default()
            },
            Arc::new(|| "edge_inference_total 3\n".to_owned()),
        )
        .unwrap();
        assert!(server.addr().ip().is_loopback());
        let r = get(server.addr(), "/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.ends_with("\r\n\r\nedge_inference_total 3\n"), "{r}");
        assert!(get(server.addr(), "/nope").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn port_in_use_is_reported_with_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = MetricsServer::start(
            &MetricsConfig {
                port,
                ..MetricsConfig::default()
            },
            Arc::new(String::new),
        )
        .unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
