//! Hot reload from a local registry, in-process: two signed versions of a model installed, the
//! second activated while strokes stream in. Every seq is scored exactly once, the model
//! version changes at one seq and never back, the scores after the switch are the new model's,
//! and a version that fails to load is refused while the old one keeps scoring.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forgeline_inference::{InferenceConfig, ModelDir, ModelMeta, Provider, Scorer, VariantKind};
use forgeline_node_inference::{Config, Inference, RegistryModel};
use forgeline_registry::{Registry, SigningKey, Timestamp, TrustedKeys, Version};
use forgeline_runtime::arrow::array::ArrayRef;
use forgeline_runtime::{InitContext, Input, Outbox, Stage};
use forgeline_schemas::{Correlation, FeatureVector, Health, QualityFlags, Score};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../operators/inference/tests/data"
);
const PROFILE: &str = "x86_64-cpu";

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

fn session() -> InferenceConfig {
    InferenceConfig {
        providers: vec![Provider::Cpu],
        warmup_runs: 1,
        ..Default::default()
    }
}

/// A signed copy of press-tiny with `version`, running `variant` by default.
fn package(root: &Path, key: &SigningKey, version: &str, variant: VariantKind) -> PathBuf {
    let dir = root.join(format!("pkg-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(Path::new(DATA).join("press-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(dir.join("model.yml")).unwrap();
    let mut meta: ModelMeta = serde_yaml::from_str(&text).unwrap();
    meta.version = version.into();
    meta.default_variant = variant;
    std::fs::write(dir.join("model.yml"), serde_yaml::to_string(&meta).unwrap()).unwrap();
    forgeline_registry::sign(&dir, key).unwrap();
    dir
}

fn message(seq: u64, values: &[f32]) -> ArrayRef {
    let row = FeatureVector {
        key: Correlation::new("press-1", seq, seq),
        feature_set: "press-v1".into(),
        values: values.to_vec(),
        quality: QualityFlags::OK,
        source: String::new(),
    };
    Arc::new(forgeline_schemas::to_struct_array(
        &FeatureVector::to_batch(&[row]),
    ))
}

fn feed(node: &mut Inference, seq: u64, values: &[f32]) -> (Vec<Score>, Vec<Health>) {
    let data = message(seq, values);
    let mut out = Outbox::default();
    let input = Input {
        port: "features",
        data: &data,
        now_ns: seq * 1_000_000, // 1 ms per stroke: reload_check_ms 0 looks at every one
        sent_ns: 0,
    };
    node.on_input(&input, &mut out).unwrap();
    let mut scores = Vec::new();
    let mut health = Vec::new();
    for (port, batch) in out.take() {
        match port.as_str() {
            "score" => scores.extend(Score::try_from_batch(&batch).unwrap()),
            "health" => health.extend(Health::try_from_batch(&batch).unwrap()),
            other => panic!("unexpected port {other}"),
        }
    }
    (scores, health)
}

#[test]
fn activation_mid_stream_switches_at_one_seq_and_a_bad_model_is_refused() {
    let root = std::env::temp_dir().join(format!("forgeline-hot-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("keys")).unwrap();
    let pair = forgeline_registry::generate_keypair(root.join("keys"), None).unwrap();
    let key = SigningKey::load(&pair.secret_key, None).unwrap();
    let v1 = package(&root, &key, "0.1.0", VariantKind::Fp32);
    let v2 = package(&root, &key, "0.2.0", VariantKind::Int8);
    let v3 = package(&root, &key, "0.3.0", VariantKind::Fp32);
    let trusted = TrustedKeys::from_dir(root.join("keys")).unwrap();
    let mut reg = Registry::open(root.join("registry"), trusted).unwrap();
    let now = Timestamp::from_unix_ns(1);
    for pkg in [&v1, &v2, &v3] {
        reg.install(pkg, PROFILE, now).unwrap();
    }
    reg.activate("press-tiny", &Version::new(0, 1, 0), PROFILE, "first", now)
        .unwrap();

    let config = Config {
        model_dir: None,
        registry: Some(RegistryModel {
            dir: root.join("registry"),
            name: "press-tiny".into(),
            profile: PROFILE.into(),
        }),
        reload_check_ms: 0,
        session: session(),
    };
    let ctx = InitContext {
        node_id: "inference".into(),
        outputs: vec!["score".into(), "health".into()],
        inputs: vec!["features".into()],
        restart_count: 0,
    };
    let mut node = Inference::new(config, &ctx).unwrap();
    let rows = samples();
    let v2_dir = ModelDir::load(reg.active_dir("press-tiny", PROFILE).unwrap()).unwrap();
    assert_eq!(v2_dir.model_version(), "press-tiny@0.1.0");

    let mut scored: Vec<Score> = Vec::new();
    let mut events: Vec<Health> = Vec::new();
    let mut seq = 0_u64;
    let mut step = |node: &mut Inference, scored: &mut Vec<Score>, events: &mut Vec<Health>| {
        let (s, h) = feed(node, seq, &rows[(seq as usize) % rows.len()]);
        scored.extend(s);
        events.extend(h);
        seq += 1;
    };
    for _ in 0..20 {
        step(&mut node, &mut scored, &mut events);
    }
    reg.activate(
        "press-tiny",
        &Version::new(0, 2, 0),
        PROFILE,
        "retrained",
        now,
    )
    .unwrap();
    // Stream on until the new version scores (the load runs on a background thread); bounded.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !scored.last().unwrap().model_version.ends_with("0.2.0") {
        assert!(Instant::now() < deadline, "the new model never took over");
        step(&mut node, &mut scored, &mut events);
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..10 {
        step(&mut node, &mut scored, &mut events);
    }

    // Every seq exactly once, in order.
    let seqs: Vec<u64> = scored.iter().map(|s| s.key.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    // One switch, at one seq, never back.
    let switch_at = scored
        .iter()
        .position(|s| s.model_version == "press-tiny@0.2.0")
        .unwrap();
    assert!(switch_at >= 20);
    assert!(
        scored[..switch_at]
            .iter()
            .all(|s| s.model_version == "press-tiny@0.1.0")
    );
    assert!(
        scored[switch_at..]
            .iter()
            .all(|s| s.model_version == "press-tiny@0.2.0")
    );
    // The health event names the first seq scored by the new model.
    let switched: Vec<&Health> = events
        .iter()
        .filter(|h| h.code == "model_switched")
        .collect();
    assert_eq!(switched.len(), 1);
    assert_eq!(switched[0].value, switch_at as f64);
    assert!(
        switched[0]
            .message
            .contains("press-tiny@0.1.0 -> press-tiny@0.2.0")
    );
    // Scores after the switch are the new model's (INT8), before it the old one's (FP32).
    let dir = reg.active_dir("press-tiny", PROFILE).unwrap();
    let mut int8 = Scorer::new(&ModelDir::load(&dir).unwrap(), &session()).unwrap();
    let mut fp32 = Scorer::new(&ModelDir::load(&v1).unwrap(), &session()).unwrap();
    for s in &scored {
        let values = &rows[(s.key.seq as usize) % rows.len()];
        let expected = if s.key.seq < switch_at as u64 {
            fp32.score(values).unwrap()
        } else {
            int8.score(values).unwrap()
        };
        assert!(
            (s.score - expected).abs() <= 1e-5 * expected.abs().max(1e-3),
            "seq {}",
            s.key.seq
        );
    }

    // A version whose file is damaged after install is refused; 0.2.0 keeps scoring.
    let v3_store = {
        reg.activate("press-tiny", &Version::new(0, 3, 0), PROFILE, "bad", now)
            .unwrap();
        reg.active_dir("press-tiny", PROFILE).unwrap()
    };
    let onnx = v3_store.join("model.fp32.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !events.iter().any(|h| h.code == "model_refused") {
        assert!(
            Instant::now() < deadline,
            "the damaged model was never refused"
        );
        step(&mut node, &mut scored, &mut events);
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..5 {
        step(&mut node, &mut scored, &mut events);
    }
    let refused = events.iter().find(|h| h.code == "model_refused").unwrap();
    assert_eq!(refused.level, forgeline_schemas::HealthLevel::Alarm);
    assert!(refused.message.contains("sha256"), "{}", refused.message);
    assert!(
        scored
            .iter()
            .skip(switch_at)
            .all(|s| s.model_version == "press-tiny@0.2.0")
    );
    let _ = std::fs::remove_dir_all(&root);
}
