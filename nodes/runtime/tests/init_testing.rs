//! The runtime's event loop driven by `DoraNode::init_testing` (no daemon): messages in, stage
//! calls, messages out; bad messages counted, not fatal; internal errors fatal.
#![allow(clippy::unwrap_used)]

use dora_node_api::DoraNode;
use dora_node_api::dora_core::config::NodeId;
use dora_node_api::integration_testing::integration_testing_format::{
    IncomingEvent, InputData, TimedIncomingEvent,
};
use dora_node_api::integration_testing::{
    IntegrationTestInput, TestingInput, TestingOptions, TestingOutput, drain_outputs,
    output_channel,
};
use forgeline_runtime::{InitContext, Input, Outbox, Stage, StageError, Validate, run_stage};
use forgeline_schemas::{Correlation, Health, Waveform, waveform};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Test stage: forwards waveforms whose RMS is below `max_rms`, fails hard on seq 666.
struct Gate {
    max_rms: f32,
    /// `keep_warm` calls.
    warmed: Arc<AtomicUsize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateConfig {
    max_rms: f32,
}
impl Validate for GateConfig {}

impl Stage for Gate {
    type Config = GateConfig;
    const KIND: &'static str = "test-gate";
    fn new(c: GateConfig, _: &InitContext) -> eyre::Result<Self> {
        Ok(Self {
            max_rms: c.max_rms,
            warmed: Arc::default(),
        })
    }
    fn keep_warm(&mut self, _now_ns: u64) {
        self.warmed.fetch_add(1, Ordering::Relaxed);
    }
    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        let batch = input.batch::<Waveform>()?;
        let rows = Waveform::try_from_batch(&batch)?;
        for (i, row) in rows.iter().enumerate() {
            if row.key.seq == 666 {
                return Err(StageError::Internal("seq 666".into()));
            }
            let s = waveform::samples(&batch, i)?;
            let rms = (s.iter().map(|x| x * x).sum::<f32>() / s.len().max(1) as f32).sqrt();
            if rms <= self.max_rms {
                out.send("waveform", std::slice::from_ref(row));
            } else {
                out.health(Health {
                    key: row.key.clone(),
                    node_id: "gate".into(),
                    code: "rms_high".into(),
                    ..Default::default()
                });
            }
        }
        Ok(())
    }
}

fn wave(seq: u64, amp: f32) -> Waveform {
    Waveform {
        key: Correlation::new("press-1", seq, 1_000 + seq),
        sample_rate_hz: 10_000.0,
        samples: vec![amp; 100],
        source: format!("test:{seq}"),
    }
}

fn write_ipc(dir: &Path, name: &str, w: &Waveform) -> PathBuf {
    let batch = Waveform::to_batch(std::slice::from_ref(w));
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema()).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    path
}

fn input_event(t: f64, id: &str, data: InputData) -> TimedIncomingEvent {
    TimedIncomingEvent {
        time_offset_secs: t,
        event: IncomingEvent::Input {
            id: id.to_owned().into(),
            metadata: None,
            data: Some(Box::new(data)),
        },
    }
}

fn run(
    events: Vec<TimedIncomingEvent>,
) -> (eyre::Result<forgeline_runtime::RunSummary>, Vec<String>) {
    let (result, ids, _) = run_counting(events);
    (result, ids)
}

/// [`run`], also returning how often the stage's `keep_warm` was called.
fn run_counting(
    events: Vec<TimedIncomingEvent>,
) -> (
    eyre::Result<forgeline_runtime::RunSummary>,
    Vec<String>,
    usize,
) {
    let (tx, mut rx) = output_channel();
    let input = TestingInput::Input(IntegrationTestInput::new(
        "gate".parse::<NodeId>().unwrap(),
        events,
    ));
    let (node, stream) = DoraNode::init_testing(
        input,
        TestingOutput::ToChannel(tx),
        TestingOptions {
            skip_output_time_offsets: true,
        },
    )
    .unwrap();
    let warmed = Arc::new(AtomicUsize::new(0));
    let gate = Gate {
        max_rms: 1.0,
        warmed: Arc::clone(&warmed),
    };
    let result = run_stage(node, stream, gate, "gate");
    let ids = drain_outputs(&mut rx)
        .into_iter()
        .map(|o| o["id"].as_str().unwrap_or("?").to_owned())
        .collect();
    (result, ids, warmed.load(Ordering::Relaxed))
}

fn file(path: PathBuf) -> InputData {
    InputData::ArrowFile {
        path,
        batch_index: 0,
        column: None,
    }
}

#[test]
fn messages_flow_and_bad_input_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write_ipc(dir.path(), "ok.arrow", &wave(1, 0.5));
    let loud = write_ipc(dir.path(), "loud.arrow", &wave(2, 3.0));
    let ok2 = write_ipc(dir.path(), "ok2.arrow", &wave(3, 0.1));
    let events = vec![
        input_event(0.0, "waveform", file(ok)),
        // Not a struct: a bare list of numbers.
        input_event(
            0.01,
            "waveform",
            InputData::JsonObject {
                data: serde_json::json!([1, 2, 3]),
                data_type: None,
            },
        ),
        input_event(0.02, "waveform", file(loud)),
        input_event(0.03, "waveform", file(ok2)),
        TimedIncomingEvent {
            time_offset_secs: 0.05,
            event: IncomingEvent::Stop,
        },
    ];
    let (result, ids) = run(events);
    let summary = result.unwrap();
    assert_eq!(
        ids,
        vec!["waveform", "health", "waveform"],
        "outputs in order"
    );
    assert_eq!(summary.counters.received.get("waveform"), Some(&4));
    assert_eq!(summary.counters.errors.get("input"), Some(&1));
    assert_eq!(summary.counters.sent.get("waveform"), Some(&2));
    assert!(summary.stopped);
}

#[test]
fn internal_error_ends_the_node_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_ipc(dir.path(), "bad.arrow", &wave(666, 0.5));
    let events = vec![
        input_event(0.0, "waveform", file(bad)),
        TimedIncomingEvent {
            time_offset_secs: 0.05,
            event: IncomingEvent::Stop,
        },
    ];
    let (result, _) = run(events);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("seq 666"), "{err}");
    assert!(err.contains("gate"), "{err}");
}

#[test]
fn report_tick_only_wakes_the_runtime_and_never_reaches_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write_ipc(dir.path(), "ok.arrow", &wave(1, 0.5));
    let tick = || InputData::JsonObject {
        data: serde_json::json!([0]),
        data_type: None,
    };
    let events = vec![
        input_event(0.0, forgeline_runtime::observe::REPORT_TICK_INPUT, tick()),
        input_event(0.01, "waveform", file(ok)),
        input_event(0.02, forgeline_runtime::observe::REPORT_TICK_INPUT, tick()),
        TimedIncomingEvent {
            time_offset_secs: 0.05,
            event: IncomingEvent::Stop,
        },
    ];
    let (result, ids) = run(events);
    let summary = result.unwrap();
    // Handed to the Gate, a tick (not a Waveform) would be an input error.
    assert_eq!(summary.counters.errors.get("input"), None);
    assert_eq!(summary.counters.received.get("waveform"), Some(&1));
    assert_eq!(
        summary
            .counters
            .received
            .get(forgeline_runtime::observe::REPORT_TICK_INPUT),
        None
    );
    assert_eq!(ids, vec!["waveform"]);
}

#[test]
fn keep_warm_ticks_call_the_stage_hook_and_are_not_messages() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write_ipc(dir.path(), "ok.arrow", &wave(1, 0.5));
    let tick = || InputData::JsonObject {
        data: serde_json::json!([0]),
        data_type: None,
    };
    let warm = forgeline_runtime::observe::KEEP_WARM_INPUT;
    let events = vec![
        input_event(0.0, warm, tick()),
        input_event(0.01, "waveform", file(ok)),
        input_event(0.02, warm, tick()),
        input_event(0.03, warm, tick()),
        TimedIncomingEvent {
            time_offset_secs: 0.05,
            event: IncomingEvent::Stop,
        },
    ];
    let (result, ids, warmed) = run_counting(events);
    let summary = result.unwrap();
    assert_eq!(warmed, 3, "one keep_warm call per tick");
    // Handed to `on_input`, a tick (not a Waveform) would be an input error.
    assert_eq!(summary.counters.errors.get("input"), None);
    assert_eq!(summary.counters.received.get(warm), None);
    assert_eq!(summary.counters.received.get("waveform"), Some(&1));
    assert_eq!(ids, vec!["waveform"], "a tick sends nothing");
}
