//! ModbusLink, PlcWorker and the simulator against real Modbus TCP peers on loopback:
//! a pymodbus server and client (`tests/pymodbus_peer.py`) and our own simulator.
//!
//! The pymodbus tests need the project venv (`.venv/bin/python` with `pymodbus` from
//! `operators/plc/requirements-test.txt`, installed by `scripts/setup.sh`; override with
//! `FORGELINE_PYTHON`). Without it they fail naming the fix, or skip with
//! `FORGELINE_ALLOW_MISSING_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{decision, free_port, python, wait_event, wait_until};

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use forgeline_plc::{
    LinkConfig, ModbusLink, PlcConfig, PlcHealthEvent, PlcWorker, RegisterMap, SimConfig,
    Simulator, Write, model_version_code,
};
use forgeline_schemas::{Correlation, Decision, Severity, Verdict};

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pymodbus_peer.py")
}

/// One write request as logged by the pymodbus server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoggedWrite {
    fc: u64,
    address: u16,
    values: Vec<u16>,
}

/// A pymodbus Modbus TCP server child process.
struct PyServer {
    child: Child,
    stdin: Option<ChildStdin>,
    log: mpsc::Receiver<LoggedWrite>,
}

impl PyServer {
    fn start(python: &PathBuf, port: u16) -> Self {
        let mut child = Command::new(python)
            .arg(peer_script())
            .args(["server", "--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (log_tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if line.starts_with("READY") {
                    let _ = ready_tx.send(());
                } else if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = log_tx.send(LoggedWrite {
                        fc: json["fc"].as_u64().unwrap(),
                        address: json["address"].as_u64().unwrap() as u16,
                        values: json["values"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_u64().unwrap() as u16)
                            .collect(),
                    });
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("pymodbus server did not become ready in 30 s");
        Self { child, stdin, log }
    }

    /// The next `n` logged writes (waits up to 5 s for them).
    fn wait_writes(&self, n: usize) -> Vec<LoggedWrite> {
        (0..n)
            .map(|i| {
                self.log
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| panic!("write {i} of {n} not logged"))
            })
            .collect()
    }

    /// Every write logged so far (after a short settle).
    fn drain_writes(&self) -> Vec<LoggedWrite> {
        std::thread::sleep(Duration::from_millis(100));
        self.log.try_iter().collect()
    }

    /// Abrupt stop, like a PLC losing power.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the pymodbus server logs `write` (FC6 for one register, as the link sends it).
fn logged_form(write: &Write) -> LoggedWrite {
    match write {
        Write::Coil { address, value } => LoggedWrite {
            fc: 5,
            address: *address,
            values: vec![u16::from(*value)],
        },
        Write::Registers { address, words } => LoggedWrite {
            fc: if words.len() == 1 { 6 } else { 16 },
            address: *address,
            values: words.clone(),
        },
    }
}

fn link_config(port: u16) -> LinkConfig {
    LinkConfig {
        address: format!("127.0.0.1:{port}"),
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        ..LinkConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads the decision registers (0..8) and the reject coil with a separate client.
fn read_plc(port: u16) -> (bool, Vec<u16>) {
    runtime().block_on(async {
        let mut link = ModbusLink::new(link_config(port), 1);
        link.connect().await.unwrap();
        let coil = link.read_coils(0, 1).await.unwrap()[0];
        let registers = link.read_holding_registers(0, 9).await.unwrap();
        (coil, registers)
    })
}

/// Checks every register of the default map against `d`.
fn assert_plc_holds(coil: bool, registers: &[u16], d: &Decision) {
    assert_eq!(coil, d.verdict != Verdict::Ok, "reject coil");
    assert_eq!(
        registers[0],
        forgeline_plc::verdict_code(d.verdict),
        "verdict register"
    );
    assert_eq!(
        registers[1],
        forgeline_plc::severity_code(d.severity),
        "severity register"
    );
    let score = f32::from_bits((u32::from(registers[2]) << 16) | u32::from(registers[3]));
    assert_eq!(score.to_bits(), d.score.to_bits(), "score registers");
    assert_eq!(
        (u64::from(registers[4]) << 16) | u64::from(registers[5]),
        d.key.seq,
        "seq registers"
    );
    assert_eq!(
        registers[6],
        model_version_code(&d.model_version),
        "model version register"
    );
    assert_eq!(
        registers[7],
        u16::from(forgeline_plc::is_fail_safe(d)),
        "fail-safe register"
    );
}

#[test]
fn link_writes_what_encode_says_to_a_pymodbus_server_and_reads_it_back() {
    let Some(python) = python("pymodbus") else {
        return;
    };
    let port = free_port();
    let server = PyServer::start(&python, port);
    let map = RegisterMap::default();
    let d = decision(77, Verdict::Reject, Severity::Critical, 4.25);
    let writes = map.encode(&d);
    runtime().block_on(async {
        let mut link = ModbusLink::new(
            LinkConfig {
                verify_writes: true,
                ..link_config(port)
            },
            1,
        );
        link.connect().await.unwrap();
        link.write_all(&writes).await.unwrap();
        // An address the server does not have: a Modbus exception, and the link stays up.
        let err = link
            .write(&Write::Registers {
                address: 60_000,
                words: vec![1, 2],
            })
            .await
            .unwrap_err();
        assert!(!err.is_connection_lost(), "{err}");
        assert!(err.to_string().contains("registers 60000..60001"), "{err}");
        assert!(link.is_connected());
        assert_eq!(link.read_holding_registers(0, 2).await.unwrap(), [2, 2]);
    });
    let (coil, registers) = read_plc(port);
    assert_plc_holds(coil, &registers, &d);
    // The server saw exactly our requests, in encode order, then the refused one (verify reads
    // are not writes).
    let mut expected: Vec<LoggedWrite> = writes.iter().map(logged_form).collect();
    expected.push(LoggedWrite {
        fc: 16,
        address: 60_000,
        values: vec![1, 2],
    });
    assert_eq!(server.wait_writes(expected.len()), expected);
}

fn worker_config(port: u16, heartbeat_period_ms: u64) -> PlcConfig {
    let mut config = PlcConfig {
        link: link_config(port),
        ..PlcConfig::default()
    };
    config.registers.heartbeat_period_ms = heartbeat_period_ms;
    config
}

#[test]
fn worker_writes_each_register_and_the_heartbeat_advances() {
    let Some(python) = python("pymodbus") else {
        return;
    };
    let port = free_port();
    let _server = PyServer::start(&python, port);
    let worker = PlcWorker::spawn(worker_config(port, 50)).unwrap();
    let stats = worker.stats();
    for (i, (verdict, severity, score)) in [
        (Verdict::Ok, Severity::None, 0.5),
        (Verdict::Reject, Severity::Warning, 2.5),
        (Verdict::SensorFault, Severity::None, f32::NAN),
        (Verdict::NoDecision, Severity::None, -1.0),
    ]
    .into_iter()
    .enumerate()
    {
        let d = decision(100 + i as u64, verdict, severity, score);
        let before = stats.snapshot().written;
        worker.submit(d.clone());
        wait_until("the decision to be written", Duration::from_secs(5), || {
            stats.snapshot().written > before
        });
        let (coil, registers) = read_plc(port);
        assert_plc_holds(coil, &registers, &d);
    }
    // The heartbeat register (8) advances.
    let heartbeat = || read_plc(port).1[8];
    let first = heartbeat();
    wait_until(
        "the heartbeat to advance twice",
        Duration::from_secs(5),
        || heartbeat().wrapping_sub(first) >= 2,
    );
    let snapshot = stats.snapshot();
    assert!(
        snapshot.connected && snapshot.heartbeats >= 2,
        "{snapshot:?}"
    );
    assert_eq!((snapshot.failed, snapshot.dropped), (0, 0), "{snapshot:?}");
    assert!(snapshot.last_write_latency_us > 0, "{snapshot:?}");
    eprintln!(
        "last decision write latency on loopback (pymodbus): {} us",
        snapshot.last_write_latency_us
    );
    assert!(
        worker.drain_health().is_empty(),
        "no health event while all is well"
    );
}

#[test]
fn plc_restart_gives_down_then_recovered_and_the_latest_decision_wins() {
    let Some(python) = python("pymodbus") else {
        return;
    };
    let port = free_port();
    let server = PyServer::start(&python, port);
    let worker = PlcWorker::spawn(worker_config(port, 50)).unwrap();
    let stats = worker.stats();
    worker.submit(decision(1, Verdict::Ok, Severity::None, 0.1));
    wait_until("the first decision", Duration::from_secs(5), || {
        stats.snapshot().written == 1
    });

    server.kill();
    wait_event(&worker, "plc_down", Duration::from_secs(5));
    // While down: two stale rejects then the latest state (ok). No replay of the rejects.
    worker.submit(decision(2, Verdict::Reject, Severity::Critical, 9.0));
    worker.submit(decision(3, Verdict::Reject, Severity::Warning, 4.0));
    let latest = decision(4, Verdict::Ok, Severity::None, 0.2);
    worker.submit(latest.clone());
    std::thread::sleep(Duration::from_millis(150)); // the link keeps retrying meanwhile

    let server = PyServer::start(&python, port);
    let PlcHealthEvent::Recovered {
        gap,
        superseded,
        connect_failures,
        ..
    } = wait_event(&worker, "plc_recovered", Duration::from_secs(10))
    else {
        unreachable!()
    };
    assert!(gap >= Duration::from_millis(150), "gap {gap:?}");
    assert_eq!(superseded, 2, "the two stale rejects are superseded");
    assert!(connect_failures >= 1);
    wait_until("the latest decision", Duration::from_secs(5), || {
        stats.snapshot().written == 2
    });
    let (coil, registers) = read_plc(port);
    assert_plc_holds(coil, &registers, &latest);
    // The restarted PLC saw only the latest decision's writes (and heartbeats).
    let decision_writes: Vec<LoggedWrite> = server
        .drain_writes()
        .into_iter()
        .filter(|w| !(w.fc == 6 && w.address == 8))
        .collect();
    let expected: Vec<LoggedWrite> = RegisterMap::default()
        .encode(&latest)
        .iter()
        .map(logged_form)
        .collect();
    assert_eq!(decision_writes, expected);
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.reconnects, snapshot.superseded, snapshot.backlog),
        (1, 2, 0),
        "{snapshot:?}"
    );
    eprintln!(
        "outage gap {} ms, {connect_failures} failed reconnects",
        gap.as_millis()
    );
}

#[test]
fn our_simulator_is_served_and_read_back_by_a_pymodbus_client() {
    let Some(python) = python("pymodbus") else {
        return;
    };
    let sim = Simulator::start(&SimConfig {
        bind: "127.0.0.1:0".into(),
        ..SimConfig::default()
    })
    .unwrap();
    let output = Command::new(&python)
        .arg(peer_script())
        .args([
            "client",
            "--port",
            &sim.local_addr().port().to_string(),
            "--unit",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["write_coil_error"], false, "{json}");
    assert_eq!(json["write_registers_error"], false, "{json}");
    assert_eq!(json["write_register_error"], false, "{json}");
    assert_eq!(
        json["coils"],
        serde_json::json!([false, false, false, true, false, false, false, false])
    );
    assert_eq!(json["registers"], serde_json::json!([1, 2, 3, 0xBEEF]));
    assert_eq!(json["register20"], serde_json::json!([7]));
    assert_eq!(json["out_of_range_is_error"], true, "{json}");
    let snapshot = sim.snapshot();
    assert!(snapshot.coils[3]);
    assert_eq!(&snapshot.holding_registers[10..14], &[1, 2, 3, 0xBEEF]);
    assert_eq!(snapshot.holding_registers[20], 7);
    assert_eq!(snapshot.writes, 3);
    sim.stop().unwrap();
}

/// Runs without Python: the worker against our simulator (the default graph's path).
#[test]
fn worker_drives_our_simulator() {
    let sim = Simulator::start(&SimConfig {
        bind: "127.0.0.1:0".into(),
        ..SimConfig::default()
    })
    .unwrap();
    let worker = PlcWorker::spawn(worker_config(sim.local_addr().port(), 20)).unwrap();
    let stats = worker.stats();
    let fail_safe =
        forgeline_plc::FailSafeConfig::default().decision(Correlation::new("press-07", 42, 5), 6);
    worker.submit(fail_safe.clone());
    wait_until("the fail-safe decision", Duration::from_secs(5), || {
        stats.snapshot().written == 1
    });
    let snapshot = sim.snapshot();
    assert_plc_holds(
        snapshot.coils[0],
        &snapshot.holding_registers[..9],
        &fail_safe,
    );
    assert_eq!(snapshot.holding_registers[7], 1, "fail-safe register set");
    wait_until("heartbeats", Duration::from_secs(5), || {
        sim.snapshot().holding_registers[8] >= 2
    });
    worker.shutdown();
}
