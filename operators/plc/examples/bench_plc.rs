//! Verdict in → PLC register written: latency of the PLC worker against a pymodbus server
//! (not ours), with a bare tokio-modbus loop as the baseline in the same run.
//!
//! ```sh
//! cargo run --release -p forgeline-plc --example bench_plc -- [--n 2000] [--rate 200]
//! ```
//!
//! Starts `tests/pymodbus_peer.py server` (the project venv's Python, or `FORGELINE_PYTHON`)
//! on a free loopback port, then measures, for N decisions submitted at a fixed rate:
//!
//! - `worker ack`: `PlcWorker::submit` → the server acknowledged every write of the decision
//!   (reject coil FC5 + one 8-register FC16 block), seen as the worker's `written` counter
//!   (polled with `yield_now`, so a few µs of observation cost are included);
//! - `worker ack+verify`: the same with `verify_writes: true`: the worker reads every write
//!   back and compares, so the figure is submit → value confirmed by a read-back;
//! - `bare write` / `bare write+read-back`: the same requests from a plain tokio-modbus client
//!   in a loop, no queue, no thread hop: the floor, so the difference is our overhead.
//!
//! The heartbeat is off during the run so every request belongs to a decision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forgeline_plc::{LinkConfig, PlcConfig, PlcWorker, RegisterMap, Write};
use forgeline_schemas::{Correlation, Decision, Severity, Verdict};
use tokio_modbus::client::{Reader as _, Writer as _};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_pymodbus(port: u16) -> Server {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("FORGELINE_PYTHON")
        .map_or_else(|| manifest.join("../../.venv/bin/python"), PathBuf::from);
    let mut child = Command::new(&python)
        .arg(manifest.join("tests/pymodbus_peer.py"))
        .args(["server", "--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (set FORGELINE_PYTHON)",
                python.display()
            )
        });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("READY"), "pymodbus server: {line}");
    // Keep draining its write log so the pipe never fills.
    std::thread::spawn(move || for _ in stdout.lines() {});
    Server(child)
}

fn decision(seq: u64) -> Decision {
    Decision {
        key: Correlation::new("press-07", seq, seq),
        verdict: if seq.is_multiple_of(7) {
            Verdict::Reject
        } else {
            Verdict::Ok
        },
        severity: Severity::None,
        score: seq as f32 * 0.01,
        threshold: 3.0,
        model_version: "press-anomaly@1.2.0".into(),
        reason: String::new(),
        decided_time_ns: seq,
        source: "bench".into(),
    }
}

/// p50, p95, p99, max of `samples` (µs).
fn summary(name: &str, samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    format!(
        "| {name:<22} | {:>6} | {:>8.0} | {:>8.0} | {:>8.0} | {:>8.0} |",
        samples.len(),
        at(0.50),
        at(0.95),
        at(0.99),
        samples[samples.len() - 1]
    )
}

/// Calls `once(i)` N times, starting the i-th call at `start + i / rate`; returns µs per call.
fn paced(n: usize, rate: f64, mut once: impl FnMut(u64) -> Duration) -> Vec<f64> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    (0..n)
        .map(|i| {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            once(i as u64 + 1).as_secs_f64() * 1e6
        })
        .collect()
}

fn worker_run(port: u16, n: usize, rate: f64, verify: bool) -> Vec<f64> {
    let mut config = PlcConfig {
        link: LinkConfig {
            address: format!("127.0.0.1:{port}"),
            verify_writes: verify,
            ..LinkConfig::default()
        },
        ..PlcConfig::default()
    };
    config.registers.heartbeat_register = None;
    let worker = PlcWorker::spawn(config).unwrap();
    let stats = worker.stats();
    let connected = Instant::now();
    while !stats.snapshot().connected {
        assert!(
            connected.elapsed() < Duration::from_secs(10),
            "worker did not connect"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let samples = paced(n, rate, |seq| {
        let target = stats.snapshot().written + 1;
        let started = Instant::now();
        worker.submit(decision(seq));
        while stats.snapshot().written < target {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "decision {seq} not written"
            );
            std::thread::yield_now();
        }
        started.elapsed()
    });
    let s = stats.snapshot();
    assert_eq!((s.failed, s.dropped, s.superseded), (0, 0, 0), "{s:?}");
    worker.shutdown();
    samples
}

fn bare_run(port: u16, n: usize, rate: f64, read_back: bool) -> Vec<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let map = RegisterMap::default();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut ctx = tokio_modbus::client::tcp::attach_slave(stream, tokio_modbus::Slave(1));
        let mut samples = Vec::with_capacity(n);
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now();
        for i in 0..n {
            tokio::time::sleep_until(start + period * i as u32).await;
            let started = Instant::now();
            for write in map.encode(&decision(i as u64 + 1)) {
                match write {
                    Write::Coil { address, value } => {
                        ctx.write_single_coil(address, value)
                            .await
                            .unwrap()
                            .unwrap();
                        if read_back {
                            ctx.read_coils(address, 1).await.unwrap().unwrap();
                        }
                    }
                    Write::Registers { address, words } => {
                        ctx.write_multiple_registers(address, &words)
                            .await
                            .unwrap()
                            .unwrap();
                        if read_back {
                            let count = words.len() as u16;
                            let read = ctx
                                .read_holding_registers(address, count)
                                .await
                                .unwrap()
                                .unwrap();
                            assert_eq!(read, words);
                        }
                    }
                }
            }
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        samples
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut rate) = (2000_usize, 200.0_f64);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--n" => n = value.parse().expect("--n: a count"),
            "--rate" => rate = value.parse().expect("--rate: decisions per second"),
            other => panic!("unknown argument {other} (expected --n, --rate)"),
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = start_pymodbus(port);
    println!(
        "verdict in -> PLC write acknowledged, pymodbus 3.15 server on loopback, {n} decisions at {rate}/s \
         (coil FC5 + 8-register FC16 each), latency in µs"
    );
    println!(
        "| {:<22} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "path", "n", "p50", "p95", "p99", "max"
    );
    println!("|{}|", ["-"; 6].map(|_| "---").join("|"));
    // Warm-up (connection, Python's first-call costs), not reported.
    let _ = bare_run(port, 50, rate, false);
    println!(
        "{}",
        summary("bare write (baseline)", &mut bare_run(port, n, rate, false))
    );
    println!(
        "{}",
        summary("worker ack", &mut worker_run(port, n, rate, false))
    );
    println!(
        "{}",
        summary("bare write+read-back", &mut bare_run(port, n, rate, true))
    );
    println!(
        "{}",
        summary("worker ack+verify", &mut worker_run(port, n, rate, true))
    );
}
