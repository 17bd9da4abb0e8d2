//! Helpers shared by the PLC peer tests (`modbus_peers`, `opcua_peers`): the project venv's
//! Python with a peer library, free loopback ports, waiting, and a decision to send.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses its own subset.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use forgeline_plc::{PlcHealthEvent, PlcWorker};
use forgeline_schemas::{Correlation, Decision, Severity, Verdict};

/// The Python that can `import module` (`FORGELINE_PYTHON`, else the project's `.venv`).
///
/// The peers are part of the test setup (`scripts/setup.sh` installs them from
/// `operators/plc/requirements-test.txt`), so a missing one fails the test, naming the fix. Set
/// `FORGELINE_ALLOW_MISSING_PEERS=1` to skip such tests instead (`None`, with a `SKIPPED` line).
///
/// # Panics
/// When `module` cannot be imported and skipping is not allowed.
pub fn python(module: &str) -> Option<PathBuf> {
    let python = std::env::var_os("FORGELINE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let why = format!(
        "{} cannot import {module}: run scripts/setup.sh (or `.venv/bin/pip install -r \
         operators/plc/requirements-test.txt`, or set FORGELINE_PYTHON)",
        python.display()
    );
    assert!(
        std::env::var_os("FORGELINE_ALLOW_MISSING_PEERS").is_some(),
        "{why}; set FORGELINE_ALLOW_MISSING_PEERS=1 to skip the peer tests instead"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `done` every 10 ms; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The worker's next health event with `code` (others are skipped); panics after `limit`.
pub fn wait_event(worker: &PlcWorker, code: &str, limit: Duration) -> PlcHealthEvent {
    let start = Instant::now();
    loop {
        let left = limit
            .checked_sub(start.elapsed())
            .unwrap_or_else(|| panic!("no `{code}` health event within {limit:?}"));
        if let Some(event) = worker.wait_health(left)
            && event.code() == code
        {
            return event;
        }
    }
}

/// A decision for press `press-07`, stroke `seq`.
pub fn decision(seq: u64, verdict: Verdict, severity: Severity, score: f32) -> Decision {
    Decision {
        key: Correlation::new("press-07", seq, 1_000 + seq),
        verdict,
        severity,
        score,
        threshold: 3.0,
        model_version: "press-anomaly@1.2.0".into(),
        reason: format!("score {score}"),
        decided_time_ns: 2_000 + seq,
        source: "test".into(),
    }
}
