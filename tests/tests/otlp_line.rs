//! OpenTelemetry spans from a real dora run: every node of the press line gets
//! `FORGELINE_OTLP_ENDPOINT` pointing at a tiny OTLP/HTTP receiver in this test; each stroke's
//! spans (from at least press, features, inference, threshold) share one trace id and form a
//! parent → child chain along the graph with ordered start times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use forgeline_tests::{TestGraph, dora_run, free_port, manifest, simulate_strokes};
use serde_json::Value as Json;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accepts OTLP/HTTP JSON posts on loopback; returns (port, bodies, stop flag, thread).
fn receiver() -> (
    u16,
    Arc<Mutex<Vec<String>>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (b, s) = (Arc::clone(&bodies), Arc::clone(&stop));
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let Ok(n) = conn.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        assert!(head.starts_with("POST /v1/traces "), "{head}");
                        break Some(body[..len].to_owned());
                    }
                }
            };
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            );
            if let Some(body) = body {
                b.lock().unwrap().push(body);
            }
        }
    });
    (port, bodies, stop, t)
}

#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: Option<String>,
    node: String,
    start: u64,
    seq: u64,
}

#[test]
fn each_stroke_is_one_trace_across_the_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("strokes");
    simulate_strokes(&data, 5, 8, 1, 5000);
    let strokes = manifest(&data).len();
    assert_eq!(strokes, 18);

    let (port, bodies, stop, thread) = receiver();
    let mut g = TestGraph::from_shipped("stamping_press.yml", "otlp_line");
    g.edit_config("press", |c| {
        c["source"] =
            serde_yaml::from_str(&format!("{{kind: replay, paths: ['{}']}}", data.display()))
                .unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 600}").unwrap();
        c["exit_when_done"] = Value::Bool(true);
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(tmp.path().join("d.jsonl").to_str().unwrap().into());
        c["metrics"] = serde_yaml::from_str(&format!("{{port: {}}}", free_port())).unwrap();
    });
    g.remove_node("plc-sim");
    let nodes: Vec<String> = g.doc["nodes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &nodes {
        g.edit_node(id, |n| {
            if !n["env"].is_mapping() {
                n["env"] = Value::Mapping(serde_yaml::Mapping::new());
            }
            n["env"]["FORGELINE_OTLP_ENDPOINT"] = Value::String(format!("http://127.0.0.1:{port}"));
        });
    }
    let graph = g.write().to_path_buf();
    let (ok, out) = dora_run(&graph, tmp.path(), 90);
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert!(ok, "dora run failed:\n{out}");

    let mut spans = Vec::new();
    for body in bodies.lock().unwrap().iter() {
        let v: Json = serde_json::from_str(body).unwrap();
        for rs in v["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    let attr = |k: &str| {
                        s["attributes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|a| a["key"] == k)
                            .map(|a| a["value"].clone())
                            .unwrap()
                    };
                    let trace = s["traceId"].as_str().unwrap().to_owned();
                    assert_eq!(trace.len(), 32);
                    spans.push(Span {
                        trace,
                        id: s["spanId"].as_str().unwrap().to_owned(),
                        parent: s["parentSpanId"].as_str().map(str::to_owned),
                        node: s["name"].as_str().unwrap().to_owned(),
                        start: s["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                        seq: attr("forgeline.seq")["intValue"]
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap(),
                    });
                }
            }
        }
    }
    let mut traces: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for s in spans {
        traces.entry(s.trace.clone()).or_default().push(s);
    }
    assert_eq!(
        traces.len(),
        strokes,
        "one trace per stroke: {:?}",
        traces.keys()
    );
    // Strokes that reached a decision must show the whole chain; one lost on the way (dora may
    // drop a stroke sent before a slow-starting node subscribed) still has its root span.
    let decided: std::collections::BTreeSet<u64> =
        forgeline_tests::read_jsonl(&tmp.path().join("d.jsonl"))
            .iter()
            .map(|d| d["seq"].as_u64().unwrap())
            .collect();
    assert!(
        decided.len() >= strokes - 2,
        "only {} strokes decided",
        decided.len()
    );
    for (trace, spans) in &traces {
        let seqs: std::collections::BTreeSet<u64> = spans.iter().map(|s| s.seq).collect();
        assert_eq!(seqs.len(), 1, "trace {trace} mixes strokes {seqs:?}");
        let by_node: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.node.as_str(), s)).collect();
        assert!(
            by_node.contains_key("press"),
            "trace {trace} has no root: {spans:?}"
        );
        if !seqs.iter().all(|s| decided.contains(s)) {
            continue;
        }
        for node in ["press", "features", "inference", "threshold"] {
            assert!(
                by_node.contains_key(node),
                "trace {trace} lacks {node}: {spans:?}"
            );
        }
        assert_eq!(by_node["press"].parent, None, "acquisition is the root");
        for (child, parent) in [
            ("features", "press"),
            ("inference", "features"),
            ("threshold", "inference"),
        ] {
            let (c, p) = (by_node[child], by_node[parent]);
            assert_eq!(
                c.parent.as_deref(),
                Some(p.id.as_str()),
                "{child}'s parent is {parent}"
            );
            assert!(c.start >= p.start, "{child} starts after {parent}");
        }
        // Telemetry takes two item inputs (score from inference, decision from threshold): one
        // span each; the decision's is the threshold's child.
        let telemetry: Vec<&Span> = spans.iter().filter(|s| s.node == "telemetry").collect();
        if !telemetry.is_empty() {
            assert!(
                telemetry
                    .iter()
                    .any(|t| t.parent.as_deref() == Some(by_node["threshold"].id.as_str())),
                "telemetry's decision span is the threshold's child: {telemetry:?}"
            );
        }
    }
}
