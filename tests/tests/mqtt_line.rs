//! The press line publishing to the plant's MQTT broker: a real mosquitto started here, the line
//! under a real dora daemon on recorded strokes, and an independent `mosquitto_sub` subscriber:
//! every non-`ok` decision arrives as an alert on `factory/…/asset/…/alerts`, exactly once.

use forgeline_tests::{
    Guard, TestGraph, dora_run, free_port, manifest, read_jsonl, simulate_strokes,
};
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn every_alert_of_the_line_reaches_an_independent_subscriber() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("strokes");
    simulate_strokes(&data, 4, 6, 2, 7000);
    assert_eq!(manifest(&data).len(), 26);

    let port = free_port();
    let conf = tmp.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"),
    )
    .unwrap();
    let _broker = Guard(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package, installed by scripts/setup.sh)"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut sub = Guard(
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-v",
                "-t",
                "factory/+/line/+/asset/+/alerts",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));

    let log = tmp.path().join("decisions.jsonl");
    let queue = tmp.path().join("mqtt-queue.redb");
    let mut g = TestGraph::from_shipped("stamping_press.yml", "mqtt_line");
    g.edit_config("press", |c| {
        c["source"] =
            serde_yaml::from_str(&format!("{{kind: replay, paths: ['{}']}}", data.display()))
                .unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 600}").unwrap();
        c["exit_when_done"] = Value::Bool(true);
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(log.to_str().unwrap().into());
        c["mqtt"] = serde_yaml::from_str(&format!(
            "{{port: {port}, factory: f1, line: press-line, device: edge-test, queue_path: '{}'}}",
            queue.display()
        ))
        .unwrap();
    });
    // No PLC in this test: plc-output keeps retrying in the background, telemetry is unaffected.
    // (plc-sim has no inputs, so it would keep the dataflow alive until --stop-after.)
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();
    let (ok, out) = dora_run(&graph, tmp.path(), 60);
    assert!(ok, "dora run failed:\n{out}");
    if std::env::var_os("FL_DEBUG").is_some() {
        eprintln!("{out}");
    }

    std::thread::sleep(Duration::from_secs(1));
    let _ = sub.0.kill();
    let mut received = String::new();
    sub.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut received)
        .unwrap();

    let alerts: Vec<serde_json::Value> = received
        .lines()
        .filter_map(|l| l.split_once(' '))
        .inspect(|(topic, _)| {
            assert_eq!(*topic, "factory/f1/line/press-line/asset/press-01/alerts")
        })
        .map(|(_, payload)| serde_json::from_str(payload).unwrap())
        .collect();
    let got: Vec<u64> = alerts
        .iter()
        .map(|a| a["sequence"].as_u64().unwrap())
        .collect();
    let want: BTreeSet<u64> = read_jsonl(&log)
        .iter()
        .filter(|d| d["verdict"] != "ok")
        .map(|d| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(want.len(), 20, "2 strokes of each of the 10 fault families");
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        want,
        "alerts received vs non-ok decisions"
    );
    assert_eq!(got.len(), want.len(), "each alert exactly once: {got:?}");
}
