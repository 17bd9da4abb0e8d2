//! The PLC worker over OPC UA against an independent server: python `asyncua` from PyPI
//! (`tests/asyncua_peer.py`), which logs every Write service call it receives.
//!
//! Needs the project venv (`.venv/bin/python` with `asyncua` from
//! `operators/plc/requirements-test.txt`, installed by `scripts/setup.sh`; override with
//! `FORGELINE_PYTHON`). Without it the tests fail naming the fix, or skip with
//! `FORGELINE_ALLOW_MISSING_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{decision, free_port, python, wait_event, wait_until};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use forgeline_plc::{
    LinkConfig, LinkKind, OpcUaNodes, PlcConfig, PlcHealthEvent, PlcWorker, severity_code,
    verdict_code,
};
use forgeline_schemas::{Correlation, Decision, Severity, Verdict};
use serde_json::{Value, json};

/// The asyncua server child process; every Write call it receives arrives on `log` as
/// `[{"node", "value", "status"}, ...]`.
struct UaServer {
    child: Child,
    _stdin: Option<ChildStdin>,
    log: mpsc::Receiver<Vec<Value>>,
}

impl UaServer {
    fn start(python: &PathBuf, port: u16) -> Self {
        let mut child = Command::new(python)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/asyncua_peer.py"))
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
            for line in stdout.lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = ready_tx.send(());
                } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = log_tx.send(v["writes"].as_array().cloned().unwrap_or_default());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("asyncua server did not become ready in 30 s");
        Self {
            child,
            _stdin: stdin,
            log,
        }
    }

    /// Waits (up to 10 s) for the next logged Write call that touches more than one node
    /// (a decision; heartbeats are single-node writes), collecting heartbeat values meanwhile.
    fn next_decision_write(&self, heartbeats: &mut Vec<u64>) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let writes = self
                .log
                .recv_timeout(left)
                .expect("no decision write logged by the OPC UA server within 10 s");
            if writes.len() == 1 && writes[0]["node"] == "ns=2;s=Press.Heartbeat" {
                heartbeats.push(writes[0]["value"].as_u64().unwrap());
            } else {
                return writes;
            }
        }
    }

    /// Reads the log until `heartbeats` holds at least `n` values (up to 10 s per write).
    fn wait_heartbeats(&self, heartbeats: &mut Vec<u64>, n: usize) {
        while heartbeats.len() < n {
            let writes = self
                .log
                .recv_timeout(Duration::from_secs(10))
                .expect("no heartbeat logged by the OPC UA server within 10 s");
            assert!(
                writes.len() == 1 && writes[0]["node"] == "ns=2;s=Press.Heartbeat",
                "only heartbeats expected now: {writes:?}"
            );
            heartbeats.push(writes[0]["value"].as_u64().unwrap());
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for UaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nodes() -> OpcUaNodes {
    let id = |name: &str| Some(format!("ns=2;s=Press.{name}"));
    OpcUaNodes {
        reject: id("Reject"),
        verdict: id("Verdict"),
        severity: id("Severity"),
        score: id("Score"),
        seq: id("Seq"),
        model_version: id("ModelVersion"),
        heartbeat: id("Heartbeat"),
        fail_safe: id("FailSafe"),
    }
}

fn config(port: u16, verify_writes: bool) -> PlcConfig {
    let mut config = PlcConfig {
        link: LinkConfig {
            kind: LinkKind::Opcua,
            address: LinkConfig::default().address,
            endpoint: Some(format!("opc.tcp://127.0.0.1:{port}/")),
            nodes: nodes(),
            connect_timeout_ms: 5000,
            request_timeout_ms: 2000,
            backoff_initial_ms: 50,
            backoff_max_ms: 400,
            verify_writes,
            ..LinkConfig::default()
        },
        ..PlcConfig::default()
    };
    config.registers.heartbeat_period_ms = 100;
    config.validate("test").unwrap();
    config
}

/// What the server must have received for `d`: every signal, in order, seq last, all Good.
fn expected_writes(d: &Decision) -> Vec<Value> {
    let score = if d.score.is_nan() {
        json!("NaN")
    } else {
        json!(f64::from(d.score))
    };
    let fail_safe = d.reason.starts_with(forgeline_plc::FAIL_SAFE_PREFIX);
    [
        ("Reject", json!(d.verdict != Verdict::Ok)),
        ("Verdict", json!(verdict_code(d.verdict))),
        ("Severity", json!(severity_code(d.severity))),
        ("Score", score),
        ("ModelVersion", json!(d.model_version)),
        ("FailSafe", json!(fail_safe)),
        ("Seq", json!(d.key.seq)),
    ]
    .into_iter()
    .map(|(name, value)| json!({"node": format!("ns=2;s=Press.{name}"), "value": value, "status": "Good"}))
    .collect()
}

#[test]
fn each_signal_is_written_after_each_verdict_and_the_heartbeat_advances() {
    let Some(python) = python("asyncua") else {
        return;
    };
    let port = free_port();
    let server = UaServer::start(&python, port);
    // verify_writes: every write is also read back from the server and compared.
    let worker = PlcWorker::spawn(config(port, true)).unwrap();
    let stats = worker.stats();
    let mut heartbeats = Vec::new();
    let fail_safe =
        forgeline_plc::FailSafeConfig::default().decision(Correlation::new("press-07", 104, 9), 10);
    for (i, d) in [
        decision(100, Verdict::Ok, Severity::None, 0.5),
        decision(101, Verdict::Reject, Severity::Warning, 2.5),
        decision(102, Verdict::SensorFault, Severity::None, f32::NAN),
        decision(103, Verdict::Reject, Severity::Critical, 9.25),
        fail_safe,
    ]
    .into_iter()
    .enumerate()
    {
        worker.submit(d.clone());
        wait_until(
            "the decision to be written",
            Duration::from_secs(10),
            || stats.snapshot().written == i as u64 + 1,
        );
        assert_eq!(
            server.next_decision_write(&mut heartbeats),
            expected_writes(&d),
            "decision {i} ({})",
            d.verdict
        );
    }
    // The heartbeat keeps advancing by one per write.
    server.wait_heartbeats(&mut heartbeats, 4);
    assert!(
        heartbeats.windows(2).all(|w| w[1] == w[0] + 1),
        "heartbeat values {heartbeats:?}"
    );
    // (The server logs before it answers: our count may trail its log by one.)
    wait_until("4 heartbeats acknowledged", Duration::from_secs(10), || {
        stats.snapshot().heartbeats >= 4
    });
    let snapshot = stats.snapshot();
    assert_eq!((snapshot.failed, snapshot.dropped), (0, 0), "{snapshot:?}");
    assert!(snapshot.connected, "{snapshot:?}");
    assert!(
        worker.drain_health().is_empty(),
        "no health event while all is well"
    );
    worker.shutdown();
}

#[test]
fn a_write_the_server_refuses_is_reported_and_the_session_stays_up() {
    let Some(python) = python("asyncua") else {
        return;
    };
    let port = free_port();
    let _server = UaServer::start(&python, port);
    let mut config = config(port, false);
    // A node that does not exist on the server.
    config.link.nodes.severity = Some("ns=2;s=Press.NoSuchNode".into());
    let worker = PlcWorker::spawn(config).unwrap();
    worker.submit(decision(1, Verdict::Reject, Severity::Critical, 5.0));
    let PlcHealthEvent::WriteFailed { error, key } =
        wait_event(&worker, "plc_write_failed", Duration::from_secs(10))
    else {
        unreachable!()
    };
    assert_eq!(key.seq, 1);
    // asyncua answers BadUserAccessDenied for an unknown node; other servers BadNodeIdUnknown.
    assert!(
        error.contains("link.nodes.severity") && error.contains("refused with Bad"),
        "{error}"
    );
    let stats = worker.stats();
    wait_until(
        "a heartbeat after the refusal",
        Duration::from_secs(10),
        || stats.snapshot().heartbeats >= 2,
    );
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.failed, snapshot.reconnects),
        (1, 0),
        "{snapshot:?}"
    );
    assert!(snapshot.connected, "{snapshot:?}");
}

#[test]
fn server_down_then_back_gives_down_recovered_and_the_latest_state() {
    let Some(python) = python("asyncua") else {
        return;
    };
    let port = free_port();
    let server = UaServer::start(&python, port);
    let worker = PlcWorker::spawn(config(port, false)).unwrap();
    let stats = worker.stats();
    let mut heartbeats = Vec::new();
    let first = decision(1, Verdict::Ok, Severity::None, 0.1);
    worker.submit(first.clone());
    assert_eq!(
        server.next_decision_write(&mut heartbeats),
        expected_writes(&first)
    );
    // (The server logs before it answers: wait for our side to have the answer too.)
    wait_until(
        "the first decision acknowledged",
        Duration::from_secs(10),
        || stats.snapshot().written == 1,
    );

    server.kill();
    wait_event(&worker, "plc_down", Duration::from_secs(15));
    // While down: two stale rejects, then the latest state (ok). No replay of the rejects.
    worker.submit(decision(2, Verdict::Reject, Severity::Critical, 9.0));
    worker.submit(decision(3, Verdict::Reject, Severity::Warning, 4.0));
    let latest = decision(4, Verdict::Ok, Severity::None, 0.2);
    worker.submit(latest.clone());
    std::thread::sleep(Duration::from_millis(300)); // retries fail meanwhile

    let server = UaServer::start(&python, port);
    let PlcHealthEvent::Recovered {
        superseded,
        connect_failures,
        gap,
        ..
    } = wait_event(&worker, "plc_recovered", Duration::from_secs(20))
    else {
        unreachable!()
    };
    assert_eq!(superseded, 2, "the two stale rejects are superseded");
    assert!(connect_failures >= 1, "{connect_failures}");
    assert_eq!(
        server.next_decision_write(&mut heartbeats),
        expected_writes(&latest),
        "the restarted server gets the latest state first"
    );
    let before = heartbeats.len();
    server.wait_heartbeats(&mut heartbeats, before + 2);
    assert!(
        heartbeats[before + 1] == heartbeats[before] + 1,
        "{heartbeats:?}"
    );
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.written, snapshot.superseded, snapshot.reconnects),
        (2, 2, 1),
        "{snapshot:?}"
    );
    eprintln!(
        "OPC UA outage gap {} ms, {connect_failures} failed reconnects",
        gap.as_millis()
    );
}
