//! The PLC restarts mid-run: the stamping press line under a real dora daemon, a real Modbus TCP
//! server that is not ours (pymodbus) as the PLC, stopped a few seconds into the run and started
//! again on the same port. Checks: `plc_down` then `plc_recovered` (with the gap's counts) are
//! logged; the restarted PLC gets the CURRENT state first (a later seq than anything before the
//! outage, no replay of the stale decisions), then every following decision in order; the
//! heartbeat resumes; and no decision is lost silently (the node's final accounting balances
//! and agrees with the health event and with what each PLC saw).
#![allow(clippy::unwrap_used)]

use forgeline_tests::{TestGraph, dora_run, free_port, pymodbus_server};
use serde_json::Value as Json;
use serde_yaml::Value;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// `(seq, verdict code, fail-safe flag)` of every decision block (8 registers at address 0)
/// and the heartbeat values (register 8) a PLC received, in order.
fn plc_writes(writes: &Receiver<Json>) -> (Vec<(u64, u64, u64)>, Vec<u64>) {
    let (mut decisions, mut heartbeats) = (Vec::new(), Vec::new());
    while let Ok(w) = writes.try_recv() {
        let values: Vec<u64> = w["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        match (w["address"].as_u64(), values.len()) {
            (Some(0), 8) => decisions.push(((values[4] << 16) | values[5], values[0], values[7])),
            (Some(8), 1) => heartbeats.push(values[0]),
            _ => {}
        }
    }
    (decisions, heartbeats)
}

/// The number after `key=` in `line`.
fn field(line: &str, key: &str) -> u64 {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no `{key}=` in {line}"))
        + key.len()
        + 1;
    line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// The number just before `suffix` in `line` (e.g. `12 decisions superseded`).
fn number_before(line: &str, suffix: &str) -> u64 {
    let end = line
        .find(suffix)
        .unwrap_or_else(|| panic!("no `{suffix}` in {line}"));
    let digits: String = line[..end]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn plc_restart_mid_run_gives_down_recovered_current_state_and_no_silent_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let (first_plc, first_writes) = pymodbus_server(port);

    let mut g = TestGraph::from_shipped("stamping_press.yml", "plc_restart");
    g.edit_config("press", |c| {
        c["source"] = serde_yaml::from_str("{kind: simulated, seed: 7}").unwrap();
        // 20 strokes/s: a 2 s outage spans ~40 decisions.
        c["pace"] = serde_yaml::from_str("{rate: 1200}").unwrap();
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(String::new());
    });
    g.edit_config("plc", |c| {
        c["link"]["address"] = Value::String(format!("127.0.0.1:{port}"));
        c["link"]["backoff_initial_ms"] = Value::from(50);
        c["link"]["backoff_max_ms"] = Value::from(400);
        c["registers"] = serde_yaml::from_str("{heartbeat_period_ms: 200}").unwrap();
    });
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();

    // The PLC goes away 5 s into the run (an abrupt kill, like a power loss) and comes back
    // on the same port 2 s later. The thread hands the new server back to keep it alive.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        drop(first_plc);
        std::thread::sleep(Duration::from_secs(2));
        pymodbus_server(port)
    });
    let (ok, out) = dora_run(&graph, tmp.path(), 14);
    let (_second_plc, second_writes) = restarter.join().unwrap();
    assert!(ok, "dora run failed:\n{out}");

    // Health: plc_down, then plc_recovered with the gap's counts.
    let down = out.find("plc_down");
    let recovered_line = out
        .lines()
        .find(|l| l.contains("PLC link recovered after"))
        .unwrap_or_else(|| panic!("no plc_recovered logged:\n{out}"));
    assert!(
        down.is_some_and(|d| d < out.find("PLC link recovered after").unwrap()),
        "plc_down must be logged before plc_recovered:\n{out}"
    );
    let superseded_in_gap = number_before(recovered_line, "decisions superseded");
    let failed_attempts = number_before(recovered_line, "failed attempts");
    assert!(failed_attempts >= 1, "{recovered_line}");
    assert!(
        superseded_in_gap >= 5,
        "at 20 strokes/s a 2 s outage supersedes many decisions: {recovered_line}"
    );

    // Final accounting of the node: every decision is written, superseded, dropped, failed or
    // still in the backlog.
    let accounting = out
        .lines()
        .find(|l| l.contains("PLC accounting:"))
        .unwrap_or_else(|| panic!("no accounting in the plc node's stop log:\n{out}"));
    let [
        submitted,
        written,
        superseded,
        dropped,
        failed,
        backlog,
        reconnects,
    ] = [
        "submitted",
        "written",
        "superseded",
        "dropped",
        "failed",
        "backlog",
        "reconnects",
    ]
    .map(|k| field(accounting, k));
    assert_eq!(
        submitted,
        written + superseded + dropped + failed + backlog,
        "{accounting}"
    );
    assert_eq!((dropped, failed, reconnects), (0, 0, 1), "{accounting}");
    assert_eq!(
        superseded, superseded_in_gap,
        "one outage: {accounting} / {recovered_line}"
    );
    // Fail-safes are legitimate here (a loaded machine can miss a stroke's deadline at
    // start-up); each is written as such and counts like any decision.
    let fail_safe_alarms = out.lines().filter(|l| l.contains("FAIL-SAFE:")).count();

    // What each PLC saw.
    let (before, heartbeats_before) = plc_writes(&first_writes);
    let (after, heartbeats_after) = plc_writes(&second_writes);
    assert!(
        before.len() >= 10,
        "decisions before the outage: {before:?}"
    );
    assert!(after.len() >= 10, "decisions after the recovery: {after:?}");
    assert!(heartbeats_before.len() >= 2, "{heartbeats_before:?}");
    let last_before = before.iter().map(|w| w.0).max().unwrap();
    let first_after = after[0].0;
    // The restarted PLC first gets the current state: a later stroke than anything before the
    // outage. Everything between was superseded (the last one the old PLC logged may have been
    // superseded too, when it died before answering).
    assert!(
        first_after > last_before,
        "stale decision replayed: first after {first_after}, last before {last_before}"
    );
    let skipped = first_after - last_before - 1;
    assert!(
        superseded == skipped || superseded == skipped + 1,
        "superseded {superseded} vs strokes skipped on the PLC {skipped} \
         (last before {last_before}, first after {first_after})"
    );
    // Then every decision, none missing, none twice (a fail-safe may be written after the next
    // stroke's verdict, so compare sorted).
    for (name, writes) in [("after recovery", &after), ("before the outage", &before)] {
        let mut seqs: Vec<u64> = writes.iter().map(|w| w.0).collect();
        seqs.sort_unstable();
        for pair in seqs.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "gap or duplicate {name}: {seqs:?}");
        }
    }
    // Written = what the two PLCs acknowledged (the old one may have logged one more).
    let seen = (before.len() + after.len()) as u64;
    assert!(
        written == seen || written + 1 == seen,
        "written {written}, PLCs logged {seen}"
    );
    // Fail-safe writes on the PLCs: at most one per alarm (some may have been superseded).
    let fail_safe_writes = after.iter().chain(&before).filter(|w| w.2 == 1).count();
    assert!(
        fail_safe_writes <= fail_safe_alarms,
        "{fail_safe_writes} fail-safe writes, {fail_safe_alarms} alarms"
    );
    // The heartbeat resumes on the new PLC, advancing.
    assert!(
        heartbeats_after.len() >= 3,
        "heartbeat after recovery: {heartbeats_after:?}"
    );
    for pair in heartbeats_after.windows(2) {
        assert_eq!(pair[1], pair[0].wrapping_add(1), "{heartbeats_after:?}");
    }
    eprintln!("{recovered_line}\n{accounting}");
}
