//! Telemetry cost per decision, with its baseline in the same run:
//! - `telemetry/decision_log_line` (baseline): what telemetry did before metrics/MQTT: one JSON
//!   line written and flushed to the decision log;
//! - `telemetry/metrics_update`: the Prometheus state update for one decision (under its lock);
//! - `telemetry/alert_payload`: the versioned MQTT JSON payload of one alert;
//! - `telemetry/enqueue_alert`: durable store-and-forward enqueue of one alert (redb, fsync'd;
//!   no broker, so nothing is drained while measuring: the queue grows);
//! - `telemetry/per_alert_total`: all of the above for one alert;
//! - `telemetry/render_scrape`: one `/metrics` rendering (per scrape, not per decision);
//! - `observe/…`: the runtime's per-message observer with tracing off (no OTLP endpoint)
//!   against doing nothing: the cost of tracing off.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use forgeline_benches::decision;
use forgeline_mqtt::{MqttConfig, Outbound, Telemetry};
use forgeline_node_telemetry::LineMetrics;
use forgeline_runtime::arrow::array::ArrayRef;
use forgeline_runtime::observe::{Observer, input_sources};
use forgeline_runtime::{InitContext, Outbox};
use forgeline_schemas::Decision;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::sync::Mutex;

fn log_line(log: &mut impl Write, d: &Decision, now_ns: u64) {
    // Same fields as the telemetry node's decision log.
    let line = serde_json::json!({
        "asset_id": d.key.asset_id, "seq": d.key.seq, "acq_time_ns": d.key.acq_time_ns,
        "decided_time_ns": d.decided_time_ns, "logged_time_ns": now_ns,
        "latency_ms": now_ns.saturating_sub(d.key.acq_time_ns) as f64 / 1e6,
        "verdict": d.verdict.as_str(), "severity": d.severity.to_string(), "score": d.score,
        "threshold": d.threshold, "model_version": d.model_version, "reason": d.reason,
        "source": d.source,
    });
    writeln!(log, "{line}").unwrap();
    log.flush().unwrap();
}

fn telemetry(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = BufWriter::new(std::fs::File::create(tmp.path().join("d.jsonl")).unwrap());
    let metrics = Mutex::new(LineMetrics::default());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = MqttConfig::from_yaml(&format!(
        "port: {closed}\nfactory: f\nline: l\ndevice: bench\nqueue_path: {}\ndisk_cap_bytes: 1000000000",
        tmp.path().join("q.redb").display()
    ))
    .unwrap();
    let (mqtt, _events) = Telemetry::start(config).unwrap();
    let d = decision(1);
    let now = d.decided_time_ns + 1_000_000;
    let mut g = c.benchmark_group("telemetry");
    g.bench_function("decision_log_line", |b| {
        b.iter(|| log_line(&mut log, black_box(&d), now))
    });
    g.bench_function("metrics_update", |b| {
        b.iter(|| metrics.lock().unwrap().on_decision(black_box(&d), now));
    });
    g.bench_function("alert_payload", |b| {
        b.iter(|| forgeline_mqtt::alert_payload(black_box(&d), "bench", now));
    });
    g.bench_function("enqueue_alert", |b| {
        b.iter(|| mqtt.enqueue(Outbound::Alert(black_box(&d)), now).unwrap());
    });
    g.bench_function("per_alert_total", |b| {
        b.iter(|| {
            log_line(&mut log, &d, now);
            metrics.lock().unwrap().on_decision(&d, now);
            mqtt.enqueue(Outbound::Alert(black_box(&d)), now).unwrap()
        });
    });
    let counters = mqtt.counters();
    g.bench_function("render_scrape", |b| {
        b.iter(|| metrics.lock().unwrap().render(Some(&counters)).len());
    });
    g.finish();
    let _ = mqtt.shutdown(std::time::Duration::from_millis(10));
}

fn observe(c: &mut Criterion) {
    let ctx = InitContext {
        node_id: "telemetry".into(),
        outputs: vec![],
        inputs: vec!["decision".into()],
        restart_count: 0,
    };
    let sources = input_sources([("decision".to_owned(), "threshold/decision".to_owned())]);
    let mut observer = Observer::with_exporter("telemetry", &ctx, sources, 1000, None);
    let data: ArrayRef =
        std::sync::Arc::new(forgeline_schemas::to_struct_array(&Decision::to_batch(&[
            decision(1),
        ])));
    let mut out = Outbox::default();
    let counters = forgeline_runtime::Counters::default();
    let mut g = c.benchmark_group("observe");
    g.bench_function("baseline_nothing", |b| b.iter(|| black_box(&data)));
    g.bench_function("per_message_metrics_tracing_off", |b| {
        b.iter(|| {
            observer.on_input("decision", black_box(&data), 2_000_000_000_000_000_000, 1);
            observer.after_input();
            observer.before_send(&out, 0);
            observer.maybe_report(&counters, 0, false, &mut out);
        });
    });
    g.finish();
}

criterion_group!(benches, telemetry, observe);
criterion_main!(benches);
