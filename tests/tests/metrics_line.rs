//! The shipped press line under a real dora daemon on recorded strokes, its Prometheus endpoint
//! (telemetry node) scraped while it runs: names, types, label sets and bucket layout as
//! documented, and counts that agree with the decision log and with each node's own counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

#[path = "metrics_support.rs"]
mod support;

use forgeline_tests::{TestGraph, free_port, manifest, read_jsonl, simulate_strokes};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Exposition, Line, scrape, wait_for};

const STROKES: usize = 26;

#[test]
fn scraped_metrics_agree_with_the_decision_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("strokes");
    simulate_strokes(&data, 4, 6, 2, 9000);
    assert_eq!(manifest(&data).len(), STROKES);

    let port = free_port();
    let log = tmp.path().join("decisions.jsonl");
    let mut g = TestGraph::from_shipped("stamping_press.yml", "metrics_line");
    g.edit_config("press", |c| {
        c["source"] =
            serde_yaml::from_str(&format!("{{kind: replay, paths: ['{}']}}", data.display()))
                .unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 600}").unwrap();
        // Stay up (idle) after the replay so the endpoint can be scraped with final counts.
        c["exit_when_done"] = Value::Bool(false);
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(log.to_str().unwrap().into());
        c["metrics"] = serde_yaml::from_str(&format!("{{port: {port}}}")).unwrap();
    });
    g.edit_config("health", |c| {
        c["report_every_ms"] = Value::from(1000);
    });
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();
    let mut line = Line::start(&graph, tmp.path(), 120);

    // Final once the decision log has settled (every stroke decided, or no new decision for
    // 3 s: the decision log is the reference) and every stage's report has caught up with it.
    let mut last = (0, std::time::Instant::now());
    let mut last_text = String::new();
    let final_scrape = wait_for(Duration::from_secs(90), || {
        let n = read_jsonl(&log).len();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        let settled = n == STROKES || (n > 0 && last.1.elapsed() > Duration::from_secs(3));
        let text = scrape(port)?;
        last_text.clone_from(&text);
        let e = Exposition::parse(&text).ok()?;
        let done = settled
            && e.sum("edge_decisions_total", &[]) as usize == n
            && e.sum("edge_node_latency_ms_count", &[("node", "threshold")]) as usize == n
            && e.sum("edge_node_received_total", &[("node", "inference")]) as usize >= n
            && e.sum(
                "edge_node_sent_total",
                &[("node", "threshold"), ("output", "decision")],
            ) as usize
                == n
            && e.find("edge_cpu_usage_ratio", &[]).count() == 1;
        done.then_some((text, e, n))
    });
    let run_log = line.stop();
    let Some((text, e, n)) = final_scrape else {
        panic!(
            "metrics never agreed with the decision log ({} lines); last scrape:\n{}\nrun:\n{run_log}",
            read_jsonl(&log).len(),
            last_text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    };

    // Types as documented.
    for (name, kind) in [
        ("edge_inference_latency_ms", "histogram"),
        ("edge_inference_total", "counter"),
        ("edge_anomaly_alerts_total", "counter"),
        ("edge_anomaly_score", "gauge"),
        ("edge_model_version", "gauge"),
        ("edge_cpu_usage_ratio", "gauge"),
        ("edge_memory_used_bytes", "gauge"),
        ("edge_temperature_celsius", "gauge"),
        ("edge_node_latency_ms", "histogram"),
        ("edge_node_dropped_total", "counter"),
        ("edge_mqtt_backlog", "gauge"),
    ] {
        assert_eq!(
            e.types.get(name).map(String::as_str),
            Some(kind),
            "{name}\n{text}"
        );
    }

    // Histogram layout: the documented buckets, cumulative, +Inf = count.
    let les: Vec<&str> = e
        .find("edge_inference_latency_ms_bucket", &[])
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(
        les,
        [
            "0.1", "0.25", "0.5", "1", "2", "5", "10", "25", "50", "100", "250", "500", "1000",
            "+Inf"
        ]
    );
    let buckets: Vec<f64> = e
        .find("edge_inference_latency_ms_bucket", &[])
        .map(|s| s.value)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert_eq!(
        buckets.last().copied(),
        Some(e.one("edge_inference_latency_ms_count", &[]))
    );
    assert!(n >= STROKES - 2, "only {n} of {STROKES} strokes decided");
    // Scores seen by telemetry: at most what inference sent (dora 1.1 was seen to lose a score
    // message now and then without counting a drop; the per-node counters make that visible).
    let scores_sent = e.one(
        "edge_node_sent_total",
        &[("node", "inference"), ("output", "score")],
    );
    let scores_seen = e.one("edge_inference_total", &[]);
    assert!(
        scores_seen > 0.0 && scores_seen <= scores_sent,
        "{scores_seen} vs {scores_sent}"
    );
    assert_eq!(e.one("edge_inference_latency_ms_count", &[]), scores_seen);

    // Counts agree with the decision log.
    let decisions = read_jsonl(&log);
    assert_eq!(decisions.len(), n);
    let mut verdicts: BTreeMap<String, f64> = BTreeMap::new();
    let mut severities: BTreeMap<String, f64> = BTreeMap::new();
    for d in &decisions {
        *verdicts
            .entry(d["verdict"].as_str().unwrap().into())
            .or_default() += 1.0;
        if d["verdict"] != "ok" {
            *severities
                .entry(d["severity"].as_str().unwrap().into())
                .or_default() += 1.0;
        }
    }
    for v in ["ok", "reject", "sensor_fault", "no_decision"] {
        assert_eq!(
            e.one("edge_decisions_total", &[("verdict", v)]),
            verdicts.get(v).copied().unwrap_or(0.0),
            "verdict {v}"
        );
    }
    for s in ["none", "warning", "critical"] {
        assert_eq!(
            e.one("edge_anomaly_alerts_total", &[("severity", s)]),
            severities.get(s).copied().unwrap_or(0.0),
            "alerts of severity {s}"
        );
    }
    assert_eq!(
        e.sum("edge_anomaly_alerts_total", &[]),
        decisions.iter().filter(|d| d["verdict"] != "ok").count() as f64
    );

    // Model info metric: exactly one, with the three labels.
    let models: Vec<_> = e.find("edge_model_version", &[]).collect();
    assert_eq!(models.len(), 1, "{models:?}");
    let m = &models[0].labels;
    assert_eq!(
        m.keys().map(String::as_str).collect::<Vec<_>>(),
        ["model", "provider", "version"]
    );
    assert_eq!(m["model"], "press-anomaly");
    assert_eq!(m["provider"], "cpu");
    assert_eq!(models[0].value, 1.0);

    // Per-node end-to-end latency: each later stage sees every item later than the one before.
    let sum = |node: &str| e.one("edge_node_latency_ms_sum", &[("node", node)]);
    assert!(sum("features") > 0.0);
    assert!(sum("features") <= sum("inference"), "features vs inference");
    assert!(
        sum("inference") <= sum("threshold"),
        "inference vs threshold"
    );
    assert!(
        e.one(
            "edge_node_received_total",
            &[("node", "inference"), ("input", "features")]
        ) as usize
            >= n
    );
    assert_eq!(
        e.one(
            "edge_node_sent_total",
            &[("node", "threshold"), ("output", "decision")]
        ) as usize,
        n
    );
    // No item was dropped on the verdict path (timer ticks may be dropped by dora while a node
    // is busy; that is not data).
    let dropped: Vec<_> = e
        .find("edge_node_dropped_total", &[])
        .filter(|s| s.labels["input"] != "tick" && s.value > 0.0)
        .collect();
    assert!(
        dropped.is_empty(),
        "queues sized for this pace: {dropped:?}"
    );

    // Resources and liveness from the health node.
    let cpu = e.one("edge_cpu_usage_ratio", &[]);
    assert!((0.0..=1.0).contains(&cpu), "{cpu}");
    assert!(e.one("edge_memory_total_bytes", &[]) > 0.0);
    for node in ["press", "features", "inference", "threshold"] {
        assert_eq!(
            e.one("edge_node_up", &[("node", node)]),
            1.0,
            "{node} alive"
        );
    }
    assert_eq!(e.one("edge_latency_budget_ms", &[]), 3300.0);
    assert_eq!(e.one("edge_latency_budget_alarm", &[]), 0.0);
}
