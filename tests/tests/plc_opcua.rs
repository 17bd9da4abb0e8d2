//! The stamping press line under a real dora daemon with the PLC on OPC UA: `plc-output` with
//! `link.kind: opcua` writing to an independent OPC UA server (python `asyncua` from PyPI).
//! Checks every node of every decision write, the heartbeat advancing, and that the node's
//! final accounting matches what the server received.
#![allow(clippy::unwrap_used)]

use forgeline_tests::{TestGraph, asyncua_server, dora_run, free_port};
use serde_json::Value as Json;
use serde_yaml::Value;

/// The value written to `Press.<name>` in one Write call.
fn value<'a>(call: &'a [Json], name: &str) -> &'a Json {
    let node = format!("ns=2;s=Press.{name}");
    &call
        .iter()
        .find(|w| w["node"] == node.as_str())
        .unwrap_or_else(|| panic!("no {node} in {call:?}"))["value"]
}

#[test]
fn press_line_writes_every_signal_to_an_opcua_server() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, calls) = asyncua_server(port);

    let mut g = TestGraph::from_shipped("stamping_press.yml", "plc_opcua");
    g.edit_config("press", |c| {
        c["source"] = serde_yaml::from_str("{kind: simulated, seed: 11}").unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 600}").unwrap();
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(String::new());
    });
    g.edit_config("plc", |c| {
        let id = |name: &str| format!("'ns=2;s=Press.{name}'");
        c["link"] = serde_yaml::from_str(&format!(
            "{{kind: opcua, endpoint: 'opc.tcp://127.0.0.1:{port}/', connect_timeout_ms: 5000, \
             request_timeout_ms: 2000, nodes: {{reject: {}, verdict: {}, severity: {}, score: {}, \
             seq: {}, model_version: {}, fail_safe: {}, heartbeat: {}}}}}",
            id("Reject"),
            id("Verdict"),
            id("Severity"),
            id("Score"),
            id("Seq"),
            id("ModelVersion"),
            id("FailSafe"),
            id("Heartbeat"),
        ))
        .unwrap();
        c["registers"] = serde_yaml::from_str("{heartbeat_period_ms: 200}").unwrap();
    });
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();

    let (ok, out) = dora_run(&graph, tmp.path(), 10);
    assert!(ok, "dora run failed:\n{out}");

    // Fail-safes are legitimate (a loaded machine can miss a stroke's deadline at start-up);
    // they must then be written as such. Show them.
    for line in out
        .lines()
        .filter(|l| l.contains("FAIL-SAFE") || l.contains("late verdict"))
    {
        eprintln!("{line}");
    }
    let (mut decisions, mut heartbeats) = (Vec::new(), Vec::new());
    while let Ok(call) = calls.try_recv() {
        let call = call.as_array().unwrap().clone();
        assert!(
            call.iter().all(|w| w["status"] == "Good"),
            "the server refused a write: {call:?}"
        );
        if call.len() == 1 && call[0]["node"] == "ns=2;s=Press.Heartbeat" {
            heartbeats.push(call[0]["value"].as_u64().unwrap());
        } else {
            decisions.push(call);
        }
    }
    assert!(
        decisions.len() >= 20,
        "decisions on the server: {}\n{out}",
        decisions.len()
    );
    let (mut seqs, mut fail_safes) = (Vec::new(), 0_usize);
    for call in &decisions {
        assert_eq!(
            call.len(),
            7,
            "every signal but the heartbeat, in one call: {call:?}"
        );
        assert_eq!(
            call[6]["node"], "ns=2;s=Press.Seq",
            "seq is written last: {call:?}"
        );
        let verdict = value(call, "Verdict").as_u64().unwrap();
        assert!((1..=3).contains(&verdict), "{call:?}");
        assert_eq!(
            value(call, "Reject").as_bool(),
            Some(verdict != 1),
            "{call:?}"
        );
        assert!(value(call, "Severity").as_u64().unwrap() <= 2, "{call:?}");
        if value(call, "FailSafe").as_bool() == Some(true) {
            // The fail-safe verdict: reject, no score, no model.
            fail_safes += 1;
            assert_eq!(
                (verdict, value(call, "Score").as_str()),
                (2, Some("NaN")),
                "{call:?}"
            );
            assert_eq!(value(call, "ModelVersion"), "", "{call:?}");
        } else {
            assert_eq!(value(call, "FailSafe").as_bool(), Some(false), "{call:?}");
            assert!(
                value(call, "ModelVersion")
                    .as_str()
                    .is_some_and(|v| v.starts_with("press-anomaly@")),
                "{call:?}"
            );
            assert!(value(call, "Score").is_number(), "{call:?}");
        }
        seqs.push(value(call, "Seq").as_u64().unwrap());
    }
    // Every stroke exactly once (a fail-safe may be written after the next stroke's verdict).
    seqs.sort_unstable();
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "every stroke exactly once: {seqs:?}");
    }
    assert!(
        fail_safes * 4 < decisions.len(),
        "mostly real verdicts: {fail_safes} fail-safes of {}",
        decisions.len()
    );
    assert!(heartbeats.len() >= 5, "heartbeats: {heartbeats:?}");
    for pair in heartbeats.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "heartbeat advances by one: {heartbeats:?}"
        );
    }
    // The node's own accounting agrees with the server.
    let accounting = out
        .lines()
        .find(|l| l.contains("PLC accounting:"))
        .unwrap_or_else(|| panic!("no accounting in the plc node's stop log:\n{out}"));
    assert!(
        accounting.contains(&format!("written={} ", decisions.len()))
            && accounting.contains("failed=0 ")
            && accounting.contains("reconnects=0 "),
        "{accounting} vs {} decisions on the server",
        decisions.len()
    );
}
