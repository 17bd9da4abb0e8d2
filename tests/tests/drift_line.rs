//! The drift node in the stamping press line under a real dora daemon: a simulated press whose
//! die is worn on every stroke (severity 1), small windows, and the drift alert must reach the
//! telemetry node (which logs it and would publish it on the MQTT alerts topic). A control run
//! with a healthy press raises no drift alert.
#![allow(clippy::unwrap_used)]

use forgeline_tests::{TestGraph, dora_run, free_port};
use serde_yaml::Value;

fn run_line(die_wear: f64, tag: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut g = TestGraph::from_shipped("stamping_press.yml", tag);
    g.edit_config("press", |c| {
        c["source"] = serde_yaml::from_str(&format!(
            "{{kind: simulated, seed: 21, faults: {{die_wear: {die_wear}}}}}"
        ))
        .unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 3000}").unwrap(); // 50 strokes/s
    });
    g.edit_config("drift", |c| {
        c["monitor"] = serde_yaml::from_str(
            "{window: 40, persist: 3, clear_after: 2, false_alarm_rate: 0.02, calibration: {simulations: 500}}",
        )
        .unwrap();
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(tmp.path().join("d.jsonl").to_str().unwrap().into());
    });
    g.edit_config("plc", |c| {
        c["link"]["address"] = Value::String(format!("127.0.0.1:{port}"));
    });
    g.edit_config("plc-sim", |c| {
        c["bind"] = Value::String(format!("127.0.0.1:{port}"));
    });
    let graph = g.write().to_path_buf();
    // 20 s at 50 strokes/s: ~1,000 strokes, 25 windows of 40.
    let (_ok, out) = dora_run(&graph, tmp.path(), 20);
    out
}

#[test]
fn worn_die_raises_a_drift_alert_that_reaches_telemetry_and_a_healthy_press_does_not() {
    let out = run_line(1.0, "drift_worn");
    assert!(
        out.contains("drift thresholds calibrated"),
        "drift node did not start:\n{out}"
    );
    let telemetry_saw_it = out
        .lines()
        .any(|l| l.contains("telemetry") && l.contains("drift_alert_raise"));
    assert!(
        telemetry_saw_it,
        "no drift alert in the telemetry node's output:\n{out}"
    );

    let out = run_line(0.0, "drift_healthy");
    assert!(
        out.contains("drift window"),
        "no drift window evaluated:\n{out}"
    );
    assert!(
        !out.contains("drift_alert_raise"),
        "false drift alert on a healthy press:\n{out}"
    );
}
