//! Benchmarks of the optical line under a real dora daemon (ignored by default; they print
//! figures, they do not assert timings):
//!
//! - `optical_line_latency`: the shipped graph (simulated 300x300 grey camera, INT8 model on CPU)
//!   at 30 parts/s for 20 s: frame acquired -> verdict at the PLC node, p50/p95/p99/p99.9/max
//!   (the PLC node's `LATENCY acquisition->plc` line) and the parts decided per second.
//! - `frame_hop_vs_small_message`: two bare dora chains in the same run, source -> sink, one
//!   carrying 4 MiB per message (a 1182x1182 RGB frame) and one 1 KiB, 10 messages/s each:
//!   the hop latency at p50 of each and their ratio, for three senders: a bare dora node sending
//!   an Arrow array (`send_output`: one copy into the sample), a bare dora node writing in place
//!   (`send_output_raw`), and a forgeline `Stage` sending in-place frames (`Outbox::send_frame`,
//!   the camera's path).
//!
//! Run: `cargo test --release -p forgeline-tests --test optical_bench -- --ignored --nocapture --test-threads 1`
#![allow(clippy::unwrap_used)]

use forgeline_tests::{TestGraph, dora_run, forgeline, free_port, read_jsonl, root};
use serde_yaml::Value;

#[test]
#[ignore = "benchmark: run explicitly (see the module doc)"]
fn optical_line_latency() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = tmp.path().join("decisions.jsonl");
    let mut g = TestGraph::from_shipped("optical_inspection.yml", "optical_bench");
    g.edit_node("camera", |n| {
        n["inputs"]["tick"] = Value::String("dora/timer/millis/5".into());
    });
    g.edit_config("camera", |c| {
        c["pace"] = serde_yaml::from_str("{fps: 30}").unwrap();
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(log.to_str().unwrap().into());
    });
    g.edit_config("plc", |c| {
        c["link"]["address"] = Value::String(format!("127.0.0.1:{port}"));
    });
    g.edit_config("plc-sim", |c| {
        c["bind"] = Value::String(format!("127.0.0.1:{port}"));
    });
    let graph = g.write().to_path_buf();
    let seconds = 20;
    let (_, out) = dora_run(&graph, tmp.path(), seconds);
    let latency = out
        .lines()
        .find(|l| l.contains("LATENCY acquisition->plc"))
        .unwrap_or_else(|| panic!("no LATENCY line from the PLC node:\n{out}"));
    let decisions = read_jsonl(&log);
    let fail_safes = out.lines().filter(|l| l.contains("fail-safe")).count();
    println!("optical line, 300x300 grey, INT8 CPU, 30 parts/s offered, {seconds} s:");
    println!("  {}", latency.trim());
    println!(
        "  decided {} parts = {:.1} parts/s; log lines mentioning fail-safe: {fail_safes}",
        decisions.len(),
        decisions.len() as f64 / seconds as f64
    );
    assert!(!decisions.is_empty(), "no decision logged:\n{out}");
}

#[test]
#[ignore = "benchmark: run explicitly (see the module doc)"]
fn frame_hop_vs_small_message() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = forgeline();
    let exe = exe.to_str().unwrap();
    let mut nodes = Vec::new();
    for (name, bytes, raw) in [
        ("frame4m", 4 * 1024 * 1024, 0),
        ("small1k", 1024, 0),
        ("frame4m-raw", 4 * 1024 * 1024, 1),
        ("small1k-raw", 1024, 1),
    ] {
        nodes.push(format!(
            "- id: {name}-source\n  path: {exe}\n  args: bench-node bare-source\n  shared_memory_pool_size: 64MB\n  inputs: {{ tick: dora/timer/millis/10 }}\n  outputs: [out]\n  env: {{ FORGELINE_BENCH_BYTES: \"{bytes}\", FORGELINE_BENCH_RATE: \"600\", FORGELINE_BENCH_RAW: \"{raw}\" }}\n"
        ));
        nodes.push(format!(
            "- id: {name}-sink\n  path: {exe}\n  args: bench-node bare-sink\n  inputs: {{ in: {{ source: {name}-source/out, queue_size: 1000 }} }}\n  env: {{ FORGELINE_BENCH_INDEX: \"0\" }}\n"
        ));
    }
    // The forgeline runtime's own path: a `Stage` sending in-place frames (`Outbox::send_frame`).
    for (name, bytes) in [("fl-frame4m", 4 * 1024 * 1024), ("fl-small1k", 1024)] {
        nodes.push(format!(
            "- id: {name}-source\n  path: {exe}\n  args: bench-node frame-source\n  shared_memory_pool_size: 64MB\n  inputs: {{ tick: dora/timer/millis/100 }}\n  outputs: [frame]\n  env: {{ FORGELINE_CONFIG: \"bytes: {bytes}\" }}\n"
        ));
        nodes.push(format!(
            "- id: {name}-sink\n  path: {exe}\n  args: bench-node bare-sink\n  inputs: {{ in: {{ source: {name}-source/frame, queue_size: 1000 }} }}\n  env: {{ FORGELINE_BENCH_INDEX: \"0\" }}\n"
        ));
    }
    let graph = root()
        .join("graphs")
        .join(format!("_test_hop_bench_{}.yml", std::process::id()));
    std::fs::write(&graph, format!("nodes:\n{}", nodes.concat())).unwrap();
    let (_, out) = dora_run(&graph, tmp.path(), 20);
    let _ = std::fs::remove_file(&graph);
    let mut p50 = Vec::new();
    for name in [
        "frame4m-sink",
        "small1k-sink",
        "frame4m-raw-sink",
        "small1k-raw-sink",
        "fl-frame4m-sink",
        "fl-small1k-sink",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!(" {name}:")) && l.contains("BENCH-BARE "))
            .map(str::to_owned);
        let Some(line) = line else {
            continue;
        };
        let json: serde_json::Value =
            serde_json::from_str(line.split("BENCH-BARE ").nth(1).unwrap()).unwrap();
        let e2e = &json["end_to_end"];
        println!(
            "{name}: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms, n {}",
            e2e["p50"], e2e["p95"], e2e["p99"], e2e["max"], e2e["n"]
        );
        p50.push(e2e["p50"].as_f64().unwrap());
    }
    if p50.len() == 6 {
        println!(
            "4 MiB hop / 1 KiB hop at p50, Arrow array sent with send_output (one copy into the sample): {:.2}x",
            p50[0] / p50[1]
        );
        println!(
            "4 MiB hop / 1 KiB hop at p50, written in place into the sample (send_output_raw): {:.2}x (goal <= 1.5x)",
            p50[2] / p50[3]
        );
        println!(
            "4 MiB hop / 1 KiB hop at p50, forgeline runtime, frames written in place (Outbox::send_frame): {:.2}x (goal <= 1.5x)",
            p50[4] / p50[5]
        );
    } else {
        println!("could not attribute the BENCH-BARE lines to their sinks:\n{out}");
    }
    assert!(out.contains("BENCH-BARE "), "no sink report:\n{out}");
}
