//! The inference stage without dora: tensor input on a classifier, shape/dtype errors, and
//! batched vs unbatched scoring. Real ONNX Runtime sessions on the fixtures of
//! `operators/inference/tests/data`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use forgeline_inference::{InferenceConfig, ModelDir, Provider, Scorer};
use forgeline_node_inference::{Config, Inference};
use forgeline_runtime::arrow::array::ArrayRef;
use forgeline_runtime::{InitContext, Input, Outbox, Stage, StageError};
use forgeline_schemas::{Correlation, FeatureVector, QualityFlags, Score, Tensor};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../operators/inference/tests/data"
);

fn samples() -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(Path::new(DATA).join("press-tiny-samples.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<f32> = line
                .split(',')
                .skip(2)
                .map(|c| c.parse().unwrap())
                .collect();
            cells[..cells.len() - 1].to_vec()
        })
        .collect()
}

fn session(max_batch: usize) -> InferenceConfig {
    InferenceConfig {
        providers: vec![Provider::Cpu],
        warmup_runs: 1,
        max_batch,
        ..Default::default()
    }
}

fn stage(model: &str, max_batch: usize, outputs: &[&str]) -> Inference {
    let config = Config::with_model_dir(PathBuf::from(DATA).join(model), session(max_batch));
    let ctx = InitContext {
        node_id: "inference".into(),
        outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
        inputs: vec!["features".into(), "tensor".into()],
        restart_count: 0,
    };
    Inference::new(config, &ctx).unwrap()
}

fn call(stage: &mut Inference, port: &str, data: &ArrayRef) -> Result<Outbox, StageError> {
    let mut out = Outbox::default();
    let input = Input {
        port,
        data,
        now_ns: 1,
        sent_ns: 1,
    };
    stage.on_input(&input, &mut out).map(|()| out)
}

fn scores(out: &Outbox) -> Vec<Score> {
    out.pending()
        .iter()
        .filter(|(port, _)| port == "score")
        .flat_map(|(_, b)| Score::try_from_batch(b).unwrap())
        .collect()
}

fn tensor(seq: u64, shape: Vec<i64>, dtype: &str, values: &[f32]) -> Tensor {
    Tensor {
        key: Correlation::new("camera-1", seq, seq * 10),
        shape,
        dtype: dtype.into(),
        layout: "flat".into(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        source: format!("test:{seq}"),
    }
}

fn array<M: forgeline_schemas::Message>(rows: &[M]) -> ArrayRef {
    Arc::new(forgeline_schemas::to_struct_array(&M::to_batch(rows)))
}

#[test]
fn tensors_are_classified_with_label_and_reject_probability() {
    let mut node = stage("classifier-tiny", 1, &["score", "health"]);
    let model = ModelDir::load(Path::new(DATA).join("classifier-tiny")).unwrap();
    let mut reference = Scorer::new(&model, &session(1)).unwrap();
    let rows: Vec<Tensor> = samples()
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, v)| tensor(i as u64, vec![1, 30], "f32", v))
        .collect();
    // One message of 20 frames, and the same frames one per message (shape without the 1).
    let out = call(&mut node, "tensor", &array(&rows)).unwrap();
    let mut got = scores(&out);
    for (i, v) in samples().iter().take(20).enumerate() {
        let one = tensor(i as u64, vec![30], "f32", v);
        got.extend(scores(
            &call(&mut node, "tensor_front", &array(&[one])).unwrap(),
        ));
    }
    assert_eq!(got.len(), 40);
    let mut labels = std::collections::BTreeSet::new();
    for (i, s) in got.iter().enumerate() {
        let (best, probs) = reference.classify(&samples()[i % 20]).unwrap();
        assert_eq!(s.key.seq, (i % 20) as u64);
        assert_eq!(s.label, ["good", "dent", "crack"][best], "row {i}");
        assert!(
            (s.score - (1.0 - probs[0])).abs() < 1e-6,
            "row {i}: {} vs {probs:?}",
            s.score
        );
        assert_eq!(s.model_version, "classifier-tiny@0.1.0");
        assert_eq!(s.provider, "cpu");
        assert!(s.inference_ns > 0);
        labels.insert(s.label.clone());
    }
    assert!(labels.len() >= 2, "{labels:?}");
    // The tensor bytes were read in place: classifier-tiny has an identity normalisation...
    // but mean 0 / std 1 is still a listed normalisation, so the values were decoded.
    assert_eq!(node.scorer().zero_copy_runs(), 0);
    // The first message announced the model and the provider on `health`.
    let health: Vec<_> = out
        .pending()
        .iter()
        .filter(|(p, _)| p == "health")
        .collect();
    assert_eq!(health.len(), 1);
    let event = forgeline_schemas::Health::try_from_batch(&health[0].1).unwrap();
    assert_eq!(event[0].code, "model_loaded");
    assert!(
        event[0].message.contains("provider cpu"),
        "{}",
        event[0].message
    );
}

#[test]
fn wrong_tensor_shape_dtype_or_size_is_refused_naming_the_field() {
    let mut node = stage("classifier-tiny", 1, &["score"]);
    let v = samples()[0].clone();
    let cases = [
        (tensor(3, vec![1, 29], "f32", &v[..29]), "`shape`", "[30]"),
        (tensor(4, vec![1, 30], "u8", &v), "`dtype`", "\"f32\""),
        (
            Tensor {
                data: vec![0; 12],
                ..tensor(5, vec![1, 30], "f32", &v)
            },
            "`data`",
            "120 bytes",
        ),
    ];
    for (row, field, expected) in cases {
        let seq = row.key.seq;
        let err = call(&mut node, "tensor", &array(&[row])).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StageError::Input(_)), "{text}");
        for needle in [field, expected, "inference", &format!("seq {seq}")] {
            assert!(text.contains(needle), "{needle:?} missing in: {text}");
        }
    }
    // The node goes on with the next good message.
    let good = call(
        &mut node,
        "tensor",
        &array(&[tensor(6, vec![30], "f32", &v)]),
    )
    .unwrap();
    assert_eq!(scores(&good).len(), 1);
}

#[test]
fn a_non_finite_value_in_a_batched_run_names_its_own_row() {
    // Rows 0..4 of one tensor message scored in one run (max_batch 4): the NaN in row 2 must
    // be reported with row 2's key, not with the run's first row.
    let mut node = stage("classifier-tiny", 4, &["score"]);
    let rows: Vec<Tensor> = samples()
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.clone();
            if i == 2 {
                v[7] = f32::NAN;
            }
            tensor(40 + i as u64, vec![30], "f32", &v)
        })
        .collect();
    let text = call(&mut node, "tensor", &array(&rows))
        .unwrap_err()
        .to_string();
    assert!(text.contains("seq 42"), "{text}");
    assert!(!text.contains("seq 40"), "{text}");

    // The same for queued feature messages scored together.
    let mut node = stage("press-tiny", 4, &["score"]);
    let feats: Vec<FeatureVector> = samples()
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.clone();
            if i == 1 {
                v[3] = f32::INFINITY;
            }
            features(50 + i as u64, &v, QualityFlags::OK)
        })
        .collect();
    let text = call(&mut node, "features", &array(&feats))
        .unwrap_err()
        .to_string();
    assert!(text.contains("seq 51"), "{text}");
}

fn features(seq: u64, values: &[f32], quality: QualityFlags) -> FeatureVector {
    FeatureVector {
        key: Correlation::new("press-1", seq, seq),
        feature_set: "press-v1".into(),
        values: values.to_vec(),
        quality,
        ..Default::default()
    }
}

#[test]
fn batched_and_unbatched_scoring_give_identical_scores() {
    let rows: Vec<FeatureVector> = samples()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let q = if i % 7 == 3 {
                QualityFlags(1)
            } else {
                QualityFlags::OK
            };
            features(i as u64, v, q)
        })
        .collect();
    let mut results = Vec::new();
    for max_batch in [1, 4, 64] {
        let mut node = stage("press-tiny", max_batch, &["score"]);
        let mut got = Vec::new();
        for chunk in rows.chunks(10) {
            got.extend(scores(&call(&mut node, "features", &array(chunk)).unwrap()));
        }
        let runs = node.scorer().runs() - u64::from(node.scorer().warmup_runs_done());
        results.push((max_batch, runs, got));
    }
    let (_, runs_1, unbatched) = &results[0];
    assert_eq!(unbatched.len(), rows.len());
    for (max_batch, runs, batched) in &results[1..] {
        assert!(
            runs < runs_1,
            "max_batch {max_batch}: {runs} runs, unbatched {runs_1}"
        );
        for (a, b) in unbatched.iter().zip(batched) {
            assert_eq!(a.key, b.key);
            assert_eq!(a.quality, b.quality);
            if a.quality.is_ok() {
                // Not bit-identical: ONNX Runtime's CPU GEMM takes another kernel for one row
                // than for several, which moves the last bit or two of an f32.
                let tolerance = 1e-5 * a.score.abs().max(1e-3);
                assert!(
                    (a.score - b.score).abs() <= tolerance,
                    "seq {} max_batch {max_batch}: {} vs {}",
                    a.key.seq,
                    a.score,
                    b.score
                );
            } else {
                assert!(a.score.is_nan() && b.score.is_nan());
            }
        }
    }
}

#[test]
fn tensor_bytes_are_read_in_place_when_the_model_has_no_normalisation() {
    // classifier-tiny's normalisation is the identity (mean 0, std 1): a copy that lists none
    // must give the same outputs, read straight from the Arrow buffer.
    let dir = std::env::temp_dir().join(format!(
        "forgeline-node-inference-zc-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(Path::new(DATA).join("classifier-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(dir.join("model.yml")).unwrap();
    let mut meta: forgeline_inference::ModelMeta = serde_yaml::from_str(&text).unwrap();
    meta.inputs[0].normalization = forgeline_inference::model_dir::Normalization::default();
    std::fs::write(dir.join("model.yml"), serde_yaml::to_string(&meta).unwrap()).unwrap();

    let mut copy = Inference::new(
        Config::with_model_dir(dir.clone(), session(8)),
        &InitContext {
            node_id: "inference".into(),
            outputs: vec!["score".into()],
            inputs: vec!["tensor".into()],
            restart_count: 0,
        },
    )
    .unwrap();
    let mut original = stage("classifier-tiny", 8, &["score"]);
    let rows: Vec<Tensor> = samples()
        .iter()
        .take(16)
        .enumerate()
        .map(|(i, v)| tensor(i as u64, vec![1, 30], "f32", v))
        .collect();
    let a = scores(&call(&mut copy, "tensor", &array(&rows)).unwrap());
    let b = scores(&call(&mut original, "tensor", &array(&rows)).unwrap());
    assert_eq!(
        copy.scorer().zero_copy_runs(),
        2,
        "16 rows, max_batch 8: two in-place runs"
    );
    assert_eq!(original.scorer().zero_copy_runs(), 0);
    assert_eq!(a.len(), 16);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.label, y.label);
        assert!((x.score - y.score).abs() < 1e-6);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn queued_messages_are_scored_together_and_a_bad_one_costs_only_itself() {
    let rows: Vec<FeatureVector> = samples()
        .iter()
        .take(6)
        .enumerate()
        .map(|(i, v)| features(i as u64, v, QualityFlags::OK))
        .collect();
    let arrays: Vec<ArrayRef> = rows
        .iter()
        .map(|r| array(std::slice::from_ref(r)))
        .collect();
    let inputs: Vec<Input<'_>> = arrays
        .iter()
        .map(|data| Input {
            port: "features",
            data,
            now_ns: 1,
            sent_ns: 1,
        })
        .collect();
    let mut one_by_one = stage("press-tiny", 1, &["score"]);
    let mut expected = Vec::new();
    for input in &inputs {
        let mut out = Outbox::default();
        one_by_one.on_input(input, &mut out).unwrap();
        expected.extend(scores(&out));
    }
    let mut batched = stage("press-tiny", 8, &["score"]);
    assert_eq!(batched.max_input_batch(), 8);
    let before = batched.scorer().runs();
    let mut out = Outbox::default();
    batched.on_inputs(&inputs, &mut out).unwrap();
    assert_eq!(
        batched.scorer().runs() - before,
        1,
        "six queued messages, one run"
    );
    assert_eq!(
        out.pending().len(),
        6,
        "one score message per input message"
    );
    let got = scores(&out);
    for (a, b) in expected.iter().zip(&got) {
        assert_eq!(a.key, b.key);
        assert!((a.score - b.score).abs() <= 1e-5 * a.score.abs().max(1e-3));
    }
    // A message with 29 features in the group: refused, the five others still scored.
    let mut bad_rows = rows.clone();
    bad_rows[2].values.pop();
    let bad_arrays: Vec<ArrayRef> = bad_rows
        .iter()
        .map(|r| array(std::slice::from_ref(r)))
        .collect();
    let bad_inputs: Vec<Input<'_>> = bad_arrays
        .iter()
        .map(|data| Input {
            port: "features",
            data,
            now_ns: 1,
            sent_ns: 1,
        })
        .collect();
    let mut out = Outbox::default();
    let err = batched.on_inputs(&bad_inputs, &mut out).unwrap_err();
    assert!(err.to_string().contains("seq 2"), "{err}");
    let seqs: Vec<u64> = scores(&out).iter().map(|s| s.key.seq).collect();
    assert_eq!(seqs, [0, 1, 3, 4, 5]);
}

/// A `FeatureVector` payload without the field `drop`.
fn without_field(rows: &[FeatureVector], drop: &str) -> ArrayRef {
    use forgeline_runtime::arrow::array::{Array, StructArray};
    let full = array(rows);
    let structs = full.as_any().downcast_ref::<StructArray>().unwrap();
    let (fields, columns): (Vec<_>, Vec<_>) = structs
        .fields()
        .iter()
        .zip(structs.columns())
        .filter(|(f, _)| f.name() != drop)
        .map(|(f, c)| (Arc::clone(f), Arc::clone(c)))
        .unzip();
    Arc::new(StructArray::new(fields.into(), columns, None))
}

#[test]
fn the_schema_check_is_cached_per_payload_type_but_never_skipped_for_another_type() {
    let rows: Vec<FeatureVector> = samples()
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, v)| features(i as u64, v, QualityFlags::OK))
        .collect();
    let mut node = stage("press-tiny", 8, &["score"]);
    let one = array(&rows[..1]);
    let first = scores(&call(&mut node, "features", &one).unwrap());
    // Same payload type again (the cached path), then a payload missing a field: refused,
    // naming the field, although a good payload was checked just before.
    let again = scores(&call(&mut node, "features", &one).unwrap());
    let key_score =
        |v: &[Score]| -> Vec<_> { v.iter().map(|s| (s.key.clone(), s.score)).collect() };
    assert_eq!(key_score(&first), key_score(&again));
    let err = call(&mut node, "features", &without_field(&rows[..1], "values")).unwrap_err();
    // The message of the full check (`check_fields`), not of a later column read (which
    // would say "missing (expected type ...)").
    assert!(
        err.to_string().ends_with("field `values`: missing"),
        "{err}"
    );
    // Back to good payloads of another row count: the cached single-value columns follow the
    // row count and name the model and provider on every row.
    let three = scores(&call(&mut node, "features", &array(&rows[1..])).unwrap());
    let one_more = scores(&call(&mut node, "features", &one).unwrap());
    assert_eq!(three.len(), 3);
    assert_eq!(key_score(&one_more), key_score(&first));
    for s in three.iter().chain(&one_more) {
        assert_eq!(s.model_version, node.scorer().model_version());
        assert_eq!(s.provider, node.scorer().provider());
        assert!(s.label.is_empty() && s.score.is_finite(), "{s:?}");
    }
}

#[test]
fn keep_warm_runs_the_model_when_idle_and_not_right_after_a_message() {
    let mut node = stage("press-tiny", 1, &["score"]);
    let row = features(1, &samples()[0], QualityFlags::OK);
    let before = node.scorer().runs();
    // Idle since start: a keep-warm tick runs the model once, and sends nothing (no outbox).
    node.keep_warm(10_000_000);
    assert_eq!(node.scorer().runs(), before + 1);
    // A message at 20 ms (one run), then ticks: 0.5 ms after it nothing, 2 ms after it a run.
    let mut out = Outbox::default();
    let data = array(&[row]);
    let input = Input {
        port: "features",
        data: &data,
        now_ns: 20_000_000,
        sent_ns: 20_000_000,
    };
    node.on_input(&input, &mut out).unwrap();
    assert_eq!(node.scorer().runs(), before + 2);
    node.keep_warm(20_500_000);
    assert_eq!(
        node.scorer().runs(),
        before + 2,
        "skipped: a message was scored 0.5 ms ago"
    );
    node.keep_warm(22_000_000);
    assert_eq!(node.scorer().runs(), before + 3);
    // The scores are those of a node without keep-warm runs.
    let mut cold = stage("press-tiny", 1, &["score"]);
    let again = scores(&call(&mut cold, "features", &data).unwrap());
    assert_eq!(scores(&out)[0].score, again[0].score);
}
