//! OpenTelemetry spans over OTLP/HTTP (JSON encoding), hand-written: a bounded queue and one
//! background thread per node process that batches spans and POSTs them to
//! `{endpoint}/v1/traces`. Built only when [`ENDPOINT_ENV`] is set; otherwise no thread, no
//! queue, and the per-message cost is one `Option` check.
//!
//! One trace per item without propagating context: the trace id is a hash of the item's
//! correlation keys (`asset_id`, `seq`, `acq_time_ns`), which every message carries, so every
//! node computes the same trace id for the same stroke. A node's span id is a hash of the
//! trace id and its node id, so a node also knows its parent's span id: the span of the node
//! that feeds the input (from the graph's input mapping). Acquisition (a source) emits the root.
//!
//! Why not `opentelemetry-otlp`: it pulls in tonic/prost or reqwest plus the SDK (hundreds of
//! crates' worth of compile time on a 2-core CI box) to send what is here ~200 lines of JSON;
//! the OTLP/HTTP JSON encoding is a stable part of the OTLP 1.x specification.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable holding the OTLP/HTTP endpoint, e.g. `http://127.0.0.1:4318`
/// (`/v1/traces` is appended unless the URL already ends with it). Unset or empty: off.
pub const ENDPOINT_ENV: &str = "FORGELINE_OTLP_ENDPOINT";

/// Spans waiting to be sent; when full, new spans are dropped and counted (never blocks a node).
pub const QUEUE_CAPACITY: usize = 4096;
/// Spans per POST at most.
pub const BATCH_MAX: usize = 256;
/// A partial batch is sent after this long.
pub const BATCH_DELAY: Duration = Duration::from_millis(200);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// One finished span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// Trace id ([`trace_id`] of the item).
    pub trace_id: [u8; 16],
    /// This span's id ([`span_id`] of the trace and node).
    pub span_id: [u8; 8],
    /// The upstream node's span, `None` for the root.
    pub parent_span_id: Option<[u8; 8]>,
    /// Span name: the node id.
    pub name: String,
    /// Start, ns since the Unix epoch.
    pub start_ns: u64,
    /// End, ns since the Unix epoch.
    pub end_ns: u64,
    /// Item's asset.
    pub asset_id: String,
    /// Item's sequence number.
    pub seq: u64,
    /// Node kind.
    pub kind: String,
}

/// Errors of the exporter's configuration.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint URL is not `http://host:port[/path]`.
    #[error(
        "{ENDPOINT_ENV}: `{value}`: {reason} (expected http://host:port, e.g. http://127.0.0.1:4318)"
    )]
    BadEndpoint {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A parsed OTLP/HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`.
    pub authority: String,
    /// Request path, ending in `/v1/traces`.
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host:port[/path]`.
    ///
    /// # Errors
    /// [`OtlpError::BadEndpoint`] for another scheme or a missing port.
    pub fn parse(value: &str) -> Result<Self, OtlpError> {
        let bad = |reason: &str| OtlpError::BadEndpoint {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = value.trim().strip_prefix("http://").ok_or_else(|| {
            bad("only plain http:// is supported (use a local collector for TLS)")
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("needs host:port"));
        }
        let path = path.trim_end_matches('/');
        let path = if path.ends_with("v1/traces") {
            format!("/{path}")
        } else if path.is_empty() {
            "/v1/traces".to_owned()
        } else {
            format!("/{path}/v1/traces")
        };
        Ok(Self {
            authority: authority.to_owned(),
            path,
        })
    }
}

fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The trace id of an item: a stable hash of its correlation keys (same in every node, every
/// process, every build). Never all-zero (invalid in OTLP).
pub fn trace_id(asset_id: &str, seq: u64, acq_time_ns: u64) -> [u8; 16] {
    let parts: [&[u8]; 3] = [
        asset_id.as_bytes(),
        &seq.to_le_bytes(),
        &acq_time_ns.to_le_bytes(),
    ];
    let a = fnv1a(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv1a(0x6c62_272e_07bb_0142, &parts);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// The span id of `node`'s span in `trace` (so a child can name its parent). Never all-zero.
pub fn span_id(trace: &[u8; 16], node: &str) -> [u8; 8] {
    let h = fnv1a(0x1f83_d9ab_fb41_bd6b, &[trace, node.as_bytes()]);
    let id = h.to_be_bytes();
    if id == [0; 8] {
        [0, 0, 0, 0, 0, 0, 0, 1]
    } else {
        id
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The OTLP/HTTP JSON body (`ExportTraceServiceRequest`) for `spans` of one node.
pub fn encode(service: &str, spans: &[SpanRecord]) -> String {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let mut span = serde_json::json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": s.name,
                "kind": 1,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": [
                    {"key": "forgeline.asset_id", "value": {"stringValue": s.asset_id}},
                    {"key": "forgeline.seq", "value": {"intValue": s.seq.to_string()}},
                    {"key": "forgeline.node.kind", "value": {"stringValue": s.kind}},
                ],
            });
            if let Some(p) = s.parent_span_id {
                span["parentSpanId"] = serde_json::Value::String(hex(&p));
            }
            span
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "service.namespace", "value": {"stringValue": "forgeline"}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "forgeline-runtime", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }]
    })
    .to_string()
}

/// POSTs one body; returns the HTTP status.
fn post(endpoint: &Endpoint, body: &str) -> std::io::Result<u16> {
    let addr = endpoint
        .authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("endpoint does not resolve"))?;
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        endpoint.path,
        endpoint.authority,
        body.len()
    )?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response `{line}`")))
}

/// Counters of an exporter.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans accepted onto the queue.
    pub queued: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Spans the collector accepted (2xx).
    pub exported: AtomicU64,
    /// Spans lost to failed POSTs (collector down or refusing).
    pub failed: AtomicU64,
}

/// The span exporter of one node process.
#[derive(Debug)]
pub struct OtlpExporter {
    tx: Option<SyncSender<SpanRecord>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<ExportStats>,
}

impl OtlpExporter {
    /// The exporter configured by [`ENDPOINT_ENV`], or `None` when it is unset, empty, or
    /// invalid (logged as an error: a bad endpoint must not stop the line).
    pub fn from_env(service: &str) -> Option<Self> {
        let value = std::env::var(ENDPOINT_ENV).ok()?;
        if value.trim().is_empty() {
            return None;
        }
        match Endpoint::parse(&value) {
            Ok(e) => Some(Self::start(e, service)),
            Err(e) => {
                tracing::error!("{e}; tracing stays off");
                None
            }
        }
    }

    /// Starts the background sender for `endpoint`.
    pub fn start(endpoint: Endpoint, service: &str) -> Self {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let stats = Arc::new(ExportStats::default());
        let s = Arc::clone(&stats);
        let service = service.to_owned();
        let worker = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run_worker(&endpoint, &service, &rx, &s))
            .ok();
        tracing::info!("OTLP span export on");
        Self {
            tx: Some(tx),
            worker,
            stats,
        }
    }

    /// Queues a span; never blocks (a full queue drops and counts it).
    pub fn export(&self, span: SpanRecord) {
        let Some(tx) = self.tx.as_ref() else { return };
        match tx.try_send(span) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The exporter's counters.
    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    /// Sends what is queued and stops the worker (bounded by the socket timeouts).
    pub fn shutdown(mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let s = &self.stats;
        tracing::info!(
            queued = s.queued.load(Ordering::Relaxed),
            exported = s.exported.load(Ordering::Relaxed),
            dropped = s.dropped.load(Ordering::Relaxed),
            failed = s.failed.load(Ordering::Relaxed),
            "OTLP span export stopped"
        );
    }
}

fn run_worker(endpoint: &Endpoint, service: &str, rx: &Receiver<SpanRecord>, stats: &ExportStats) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut first_at = Instant::now();
    let mut warned = false;
    loop {
        let wait = if batch.is_empty() {
            Duration::from_secs(3600)
        } else {
            BATCH_DELAY.saturating_sub(first_at.elapsed())
        };
        let closed = match rx.recv_timeout(wait) {
            Ok(span) => {
                if batch.is_empty() {
                    first_at = Instant::now();
                }
                batch.push(span);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due =
            batch.len() >= BATCH_MAX || (!batch.is_empty() && first_at.elapsed() >= BATCH_DELAY);
        if (due || closed) && !batch.is_empty() {
            let n = batch.len() as u64;
            match post(endpoint, &encode(service, &batch)) {
                Ok(code) if (200..300).contains(&code) => {
                    stats.exported.fetch_add(n, Ordering::Relaxed);
                }
                other => {
                    stats.failed.fetch_add(n, Ordering::Relaxed);
                    if !warned {
                        tracing::warn!(endpoint = %endpoint.authority, result = ?other, "OTLP export failed; spans dropped (counted)");
                        warned = true;
                    }
                }
            }
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = trace_id("press-01", 7, 1_700_000_000_000_000_000);
        assert_eq!(a, trace_id("press-01", 7, 1_700_000_000_000_000_000));
        assert_ne!(a, trace_id("press-01", 8, 1_700_000_000_000_000_000));
        assert_ne!(a, trace_id("press-02", 7, 1_700_000_000_000_000_000));
        assert_ne!(span_id(&a, "features"), span_id(&a, "inference"));
        // Pinned: a change of the hash would split traces between old and new nodes.
        assert_eq!(hex(&trace_id("press-01", 1, 2)).len(), 32);
        assert_eq!(trace_id("press-01", 1, 2), trace_id("press-01", 1, 2));
    }

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        assert_eq!(
            Endpoint::parse("http://h:1/v1/traces").unwrap().path,
            "/v1/traces"
        );
        assert_eq!(
            Endpoint::parse("http://h:1/otlp/").unwrap().path,
            "/otlp/v1/traces"
        );
        assert!(Endpoint::parse("https://h:1").is_err());
        assert!(Endpoint::parse("http://host").is_err());
    }

    #[test]
    fn exporter_posts_json_batches_to_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                            .unwrap();
                        return (head.to_owned(), body.to_owned());
                    }
                }
            }
        });
        let exporter = OtlpExporter::start(
            Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            "features",
        );
        let t = trace_id("press-01", 3, 99);
        exporter.export(SpanRecord {
            trace_id: t,
            span_id: span_id(&t, "features"),
            parent_span_id: Some(span_id(&t, "press")),
            name: "features".into(),
            start_ns: 100,
            end_ns: 200,
            asset_id: "press-01".into(),
            seq: 3,
            kind: "vibration-features".into(),
        });
        let stats = Arc::clone(&exporter.stats);
        exporter.shutdown();
        let (head, body) = receiver.join().unwrap();
        assert!(head.starts_with("POST /v1/traces HTTP/1.1"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], hex(&t));
        assert_eq!(span["parentSpanId"], hex(&span_id(&t, "press")));
        assert_eq!(span["startTimeUnixNano"], "100");
        assert_eq!(stats.exported.load(Ordering::Relaxed), 1);
    }
}
