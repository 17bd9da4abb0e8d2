//! Hot reload from a local registry, in-process: two signed versions of a model installed, the
//! second activated while strokes stream in. Every seq is scored exactly once, the model
//! version changes at one seq and never back, the scores after the switch are the new model's,
//! and a version that fails to load is refused while the old one keeps scoring.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forgeline_inference::{InferenceConfig, ModelDir, ModelMeta, Provider, Scorer, VariantKind};
use forgeline_node_inference::{Config, HealthCheck, Inference, RegistryModel};
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
    package_of(root, key, "press-tiny", version, variant)
}

/// A signed copy of test model `model` with `version`, running `variant` by default.
fn package_of(
    root: &Path,
    key: &SigningKey,
    model: &str,
    version: &str,
    variant: VariantKind,
) -> PathBuf {
    let dir = root.join(format!("pkg-{model}-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(Path::new(DATA).join(model)).unwrap() {
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
    // 1 ms per stroke: reload_check_ms 0 looks at every one.
    feed_at_ns(node, seq, values, seq * 1_000_000)
}

/// Feeds stroke `seq` at `now_ns`; returns the scores and health events it produced.
fn feed_at_ns(
    node: &mut Inference,
    seq: u64,
    values: &[f32],
    now_ns: u64,
) -> (Vec<Score>, Vec<Health>) {
    call(node, "features", &message(seq, values), now_ns)
}

/// One message on input `port` at `now_ns`; the scores and health events it produced.
fn call(
    node: &mut Inference,
    port: &str,
    data: &ArrayRef,
    now_ns: u64,
) -> (Vec<Score>, Vec<Health>) {
    let mut out = Outbox::default();
    let input = Input {
        port,
        data,
        now_ns,
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
            trusted_keys: None,
            health: HealthCheck::default(),
        }),
        reload_check_ms: 0,
        session: session(),
        max_model_age_days: None,
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

// ---- Probation health from the running line (issue #10) ----

/// Message time of stroke `seq`: a realistic Unix time (2026-11-25) plus 1 ms per stroke.
const T0_NS: u64 = 1_795_564_800_000_000_000;

fn feed_at(node: &mut Inference, seq: u64, values: &[f32]) -> (Vec<Score>, Vec<Health>) {
    feed_at_ns(node, seq, values, T0_NS + seq * 1_000_000)
}

/// A registry in a fresh temp dir with press-tiny 1.0.0 (active) and 1.1.0 installed; 1.1.0's
/// `thresholds.warning` is `warning_110` (tiny = every stroke flagged). Returns (root, registry).
fn registry_with_two_versions(tag: &str, warning_110: f64) -> (PathBuf, Registry) {
    registry_with_two_versions_of(tag, "press-tiny", warning_110)
}

/// [`registry_with_two_versions`] for test model `model`.
fn registry_with_two_versions_of(tag: &str, model: &str, warning_110: f64) -> (PathBuf, Registry) {
    let root = std::env::temp_dir().join(format!("forgeline-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("keys")).unwrap();
    let pair = forgeline_registry::generate_keypair(root.join("keys"), None).unwrap();
    let key = SigningKey::load(&pair.secret_key, None).unwrap();
    let v1 = package_of(&root, &key, model, "1.0.0", VariantKind::Fp32);
    let v2 = package_of(&root, &key, model, "1.1.0", VariantKind::Fp32);
    let yml = v2.join("model.yml");
    let mut meta: ModelMeta =
        serde_yaml::from_str(&std::fs::read_to_string(&yml).unwrap()).unwrap();
    meta.thresholds.warning = warning_110;
    std::fs::write(&yml, serde_yaml::to_string(&meta).unwrap()).unwrap();
    forgeline_registry::sign(&v2, &key).unwrap();
    let trusted = TrustedKeys::from_dir(root.join("keys")).unwrap();
    let mut reg = Registry::open(root.join("registry"), trusted).unwrap();
    let at = Timestamp::from_unix_ns(T0_NS);
    reg.install(&v1, PROFILE, at).unwrap();
    reg.install(&v2, PROFILE, at).unwrap();
    reg.activate(model, &Version::new(1, 0, 0), PROFILE, "first", at)
        .unwrap();
    (root, reg)
}

fn following(root: &Path, health: HealthCheck, max_model_age_days: Option<f64>) -> Inference {
    following_model(root, "press-tiny", "features", health, max_model_age_days)
}

/// An inference node following test model `model` in the registry at `root`, fed on `input`.
fn following_model(
    root: &Path,
    model: &str,
    input: &str,
    health: HealthCheck,
    max_model_age_days: Option<f64>,
) -> Inference {
    let config = Config {
        model_dir: None,
        registry: Some(RegistryModel {
            dir: root.join("registry"),
            name: model.into(),
            profile: PROFILE.into(),
            // The key pair's directory: only `*.pub` files are read from it.
            trusted_keys: Some(root.join("keys")),
            health,
        }),
        reload_check_ms: 0,
        session: session(),
        max_model_age_days,
    };
    let ctx = InitContext {
        node_id: "inference".into(),
        outputs: vec!["score".into(), "health".into()],
        inputs: vec![input.into()],
        restart_count: 0,
    };
    Inference::new(config, &ctx).unwrap()
}

/// The "update": `model` 1.1.0 activated on probation for an hour of message time from
/// `T0_NS`, two failed health reports rolling it back.
fn on_probation_for_an_hour(reg: &mut Registry, model: &str) {
    reg.activate_on_probation(
        model,
        &Version::new(1, 1, 0),
        PROFILE,
        "update",
        Timestamp::from_unix_ns(T0_NS),
        Timestamp::from_unix_ns(T0_NS + 3_600_000_000_000),
        2,
    )
    .unwrap();
}

/// Streams strokes from `*seq` on (1 ms of message time each, 2 ms of real time so the
/// background threads get to run) until `until` holds; bounded by 120 s.
fn stream_until(
    node: &mut Inference,
    seq: &mut u64,
    scored: &mut Vec<Score>,
    events: &mut Vec<Health>,
    what: &str,
    until: impl Fn(&[Score], &[Health]) -> bool,
) {
    let rows = samples();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !until(scored, events) {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; health events: {events:#?}"
        );
        let (s, h) = feed_at(node, *seq, &rows[(*seq as usize) % rows.len()]);
        scored.extend(s);
        events.extend(h);
        *seq += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_bad_version_on_probation_is_rolled_back_by_the_line_itself() {
    let (root, mut reg) = registry_with_two_versions("probation-bad", 1e-9);
    let health = HealthCheck {
        check_every_ms: 10,
        min_rows: 10,
        ..HealthCheck::default()
    };
    let mut node = following(&root, health, None);
    let (mut seq, mut scored, mut events) = (0_u64, Vec::new(), Vec::new());
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "20 strokes",
        |s, _| s.len() >= 20,
    );
    // The "update": 1.1.0 on probation, two failed health reports roll back. The probation
    // window ends far after the message times the node reports with.
    on_probation_for_an_hour(&mut reg, "press-tiny");
    drop(reg); // Release the lock: the node reports to the registry by itself.
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "the switch to 1.1.0",
        |s, _| s.last().unwrap().model_version.ends_with("@1.1.0"),
    );
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "the switch back to 1.0.0",
        |s, _| s.last().unwrap().model_version.ends_with("@1.0.0"),
    );
    let rows = samples();
    for _ in 0..5 {
        let (s, h) = feed_at(&mut node, seq, &rows[(seq as usize) % rows.len()]);
        scored.extend(s);
        events.extend(h);
        seq += 1;
    }

    // Every seq exactly once, in order; 1.0.0 → 1.1.0 → 1.0.0, each change at one seq.
    let seqs: Vec<u64> = scored.iter().map(|s| s.key.seq).collect();
    assert_eq!(seqs, (0..seq).collect::<Vec<_>>());
    let mut runs: Vec<(String, u64)> = Vec::new();
    for s in &scored {
        if runs.last().is_none_or(|(v, _)| *v != s.model_version) {
            runs.push((s.model_version.clone(), s.key.seq));
        }
    }
    let versions: Vec<&str> = runs.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        versions,
        ["press-tiny@1.0.0", "press-tiny@1.1.0", "press-tiny@1.0.0"]
    );
    // One failure recorded, then the rollback (max_failures 2), each naming the flag rate.
    let codes: Vec<&str> = events
        .iter()
        .map(|h| h.code.as_str())
        .filter(|c| c.starts_with("model_probation") || *c == "model_rolled_back")
        .collect();
    assert_eq!(codes, ["model_probation_failure", "model_rolled_back"]);
    let failure = events
        .iter()
        .find(|h| h.code == "model_probation_failure")
        .unwrap();
    assert_eq!(failure.level, forgeline_schemas::HealthLevel::Warning);
    assert!(
        failure.message.contains("failed health check 1 of 2")
            && failure.message.contains("flag rate 100.0 % over")
            && failure.message.contains("> max_flag_rate 20.0 %"),
        "{}",
        failure.message
    );
    let rolled = events
        .iter()
        .find(|h| h.code == "model_rolled_back")
        .unwrap();
    assert_eq!(rolled.level, forgeline_schemas::HealthLevel::Alarm);
    assert!(
        rolled.message.contains("1.1.0 rolled back to 1.0.0"),
        "{}",
        rolled.message
    );
    // The switch back is announced naming the first seq 1.0.0 scored again.
    let switched: Vec<&Health> = events
        .iter()
        .filter(|h| h.code == "model_switched")
        .collect();
    assert_eq!(switched.len(), 2);
    assert_eq!(switched[1].value, runs[2].1 as f64);
    // The registry's history names the automatic rollback and both reasons.
    let reg = Registry::open(
        root.join("registry"),
        TrustedKeys::from_dir(root.join("keys")).unwrap(),
    )
    .unwrap();
    let status = reg.show("press-tiny").unwrap();
    let last = status.history.last().unwrap();
    assert_eq!(last.action, forgeline_registry::Action::Rollback);
    assert_eq!(
        (last.from.clone(), last.to.clone()),
        (Some(Version::new(1, 1, 0)), Version::new(1, 0, 0))
    );
    assert!(
        last.reason
            .starts_with("auto-rollback: 2 failed health check(s) during the probation of 1.1.0")
            && last.reason.matches("flag rate 100.0 %").count() == 2,
        "{}",
        last.reason
    );
    assert!(reg.probation("press-tiny", PROFILE).is_none());
    drop(reg);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_good_version_passes_its_probation_and_an_old_model_raises_the_age_alarm() {
    // 1.1.0 keeps the calibrated thresholds: the samples are all normal strokes.
    let (root, mut reg) = registry_with_two_versions("probation-good", 0.5215);
    let health = HealthCheck {
        check_every_ms: 10,
        min_rows: 10,
        ..HealthCheck::default()
    };
    // press-tiny was created 2025-01-01: about 693 days old at T0.
    let mut node = following(&root, health, Some(365.0));
    reg.activate_on_probation(
        "press-tiny",
        &Version::new(1, 1, 0),
        PROFILE,
        "update",
        Timestamp::from_unix_ns(T0_NS),
        // 100 strokes of message time.
        Timestamp::from_unix_ns(T0_NS + 100_000_000),
        2,
    )
    .unwrap();
    drop(reg);
    let (mut seq, mut scored, mut events) = (0_u64, Vec::new(), Vec::new());
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "probation passed",
        |_, h| h.iter().any(|e| e.code == "model_probation_passed"),
    );
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "two age alarms",
        |_, h| h.iter().filter(|e| e.code == "model_too_old").count() >= 2,
    );
    assert!(
        !events
            .iter()
            .any(|h| h.code == "model_probation_failure" || h.code == "model_rolled_back"),
        "{events:#?}"
    );
    let passed = events
        .iter()
        .find(|h| h.code == "model_probation_passed")
        .unwrap();
    assert!(
        passed.message.contains("probation of 1.1.0 passed"),
        "{}",
        passed.message
    );
    assert!(scored.last().unwrap().model_version.ends_with("@1.1.0"));
    // One alarm at start (1.0.0), one after the switch (1.1.0), both naming the policy.
    let old: Vec<&Health> = events
        .iter()
        .filter(|h| h.code == "model_too_old")
        .collect();
    assert_eq!(old[0].level, forgeline_schemas::HealthLevel::Alarm);
    assert!(
        old[0]
            .message
            .contains("press-tiny@1.0.0 created 2025-01-01T00:00:00Z")
            && old[0].message.contains("max_model_age_days 365"),
        "{}",
        old[0].message
    );
    assert!((old[0].value - 693.0).abs() < 1.0, "{}", old[0].value);
    assert!(
        old[1].message.contains("press-tiny@1.1.0"),
        "{}",
        old[1].message
    );
    let reg = Registry::open(
        root.join("registry"),
        TrustedKeys::from_dir(root.join("keys")).unwrap(),
    )
    .unwrap();
    assert!(reg.probation("press-tiny", PROFILE).is_none());
    assert_eq!(
        reg.show("press-tiny").unwrap().active[0].version,
        Version::new(1, 1, 0)
    );
    drop(reg);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_model_within_the_age_policy_raises_no_alarm_and_bad_health_keys_are_named() {
    let dir = Path::new(DATA).join("press-tiny");
    let mut config = Config::with_model_dir(&dir, session());
    config.max_model_age_days = Some(10_000.0);
    let ctx = InitContext {
        node_id: "inference".into(),
        outputs: vec!["score".into(), "health".into()],
        inputs: vec!["features".into()],
        restart_count: 0,
    };
    let mut node = Inference::new(config, &ctx).unwrap();
    let rows = samples();
    let mut events = Vec::new();
    for seq in 0..100 {
        let (_, h) = feed_at(&mut node, seq, &rows[(seq as usize) % rows.len()]);
        events.extend(h);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(events.iter().any(|h| h.code == "model_loaded"));
    assert!(
        !events
            .iter()
            .any(|h| h.code.starts_with("model_age") || h.code == "model_too_old"),
        "{events:#?}"
    );

    // Out-of-range keys are reported together, by field path.
    use forgeline_runtime::Validate;
    let text = "registry: {dir: /nonexistent, name: m, profile: p, health: {check_every_ms: 0, \
                min_rows: 0, max_flag_rate: 1.5, max_p99_inference_ms: -1}}\nmax_model_age_days: 0\n";
    let config: Config = serde_yaml::from_str(text).unwrap();
    let fields: Vec<String> = config.validate().into_iter().map(|p| p.field).collect();
    for field in [
        "registry.health.check_every_ms",
        "registry.health.min_rows",
        "registry.health.max_flag_rate",
        "registry.health.max_p99_inference_ms",
        "max_model_age_days",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not in {fields:?}"
        );
    }
    let unknown = serde_yaml::from_str::<Config>(
        "registry: {dir: d, name: m, profile: p, health: {check_every: 5}}\n",
    )
    .unwrap_err();
    assert!(unknown.to_string().contains("check_every"), "{unknown}");
    let defaults: Config =
        serde_yaml::from_str("registry: {dir: d, name: m, profile: p}\n").unwrap();
    assert_eq!(defaults.registry.unwrap().health, HealthCheck::default());
}

#[test]
fn while_the_registry_is_locked_windows_are_skipped_and_nothing_is_recorded() {
    let (root, mut reg) = registry_with_two_versions("probation-locked", 1e-9);
    let health = HealthCheck {
        check_every_ms: 10,
        min_rows: 10,
        ..HealthCheck::default()
    };
    let mut node = following(&root, health, None);
    on_probation_for_an_hour(&mut reg, "press-tiny");
    // `reg` keeps the lock, as a long `forgeline model …` command would.
    let (mut seq, mut scored, mut events) = (0_u64, Vec::new(), Vec::new());
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "the switch to 1.1.0",
        |s, _| {
            s.last()
                .is_some_and(|s| s.model_version.ends_with("@1.1.0"))
        },
    );
    let switched_at = seq;
    // 100 strokes of 1 ms: about ten bad windows judged, each skipped (registry locked).
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "100 strokes",
        |s, _| s.len() as u64 >= switched_at + 100,
    );
    assert!(
        !events.iter().any(|h| h.code.starts_with("model_probation")
            || h.code == "model_rolled_back"
            || h.code == "model_health_report_failed"),
        "{events:#?}"
    );
    assert!(scored.last().unwrap().model_version.ends_with("@1.1.0"));
    assert!(
        reg.probation("press-tiny", PROFILE)
            .unwrap()
            .failures
            .is_empty()
    );
    // Lock released: the next bad windows are reported and roll back.
    drop(reg);
    stream_until(
        &mut node,
        &mut seq,
        &mut scored,
        &mut events,
        "the rollback",
        |_, h| h.iter().any(|e| e.code == "model_rolled_back"),
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// One classifier-tiny frame as a `Tensor` message at `T0_NS + seq` ms; the scores and health
/// events it produced.
fn feed_tensor_at(node: &mut Inference, seq: u64, values: &[f32]) -> (Vec<Score>, Vec<Health>) {
    let row = forgeline_schemas::Tensor {
        key: Correlation::new("camera-1", seq, seq),
        shape: vec![1, 30],
        dtype: "f32".into(),
        layout: "flat".into(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        source: format!("test:{seq}"),
    };
    let data: ArrayRef = Arc::new(forgeline_schemas::to_struct_array(
        &forgeline_schemas::Tensor::to_batch(&[row]),
    ));
    call(node, "tensor", &data, T0_NS + seq * 1_000_000)
}

#[test]
fn a_bad_classifier_on_probation_is_rolled_back_through_tensor_inputs() {
    // 1.1.0's warning threshold is below any reject probability: every frame is flagged.
    let (root, mut reg) =
        registry_with_two_versions_of("probation-tensor", "classifier-tiny", 1e-9);
    let health = HealthCheck {
        check_every_ms: 10,
        min_rows: 10,
        ..HealthCheck::default()
    };
    let mut node = following_model(&root, "classifier-tiny", "tensor", health, None);
    let rows = samples();
    let (mut seq, mut scored, mut events) = (0_u64, Vec::<Score>::new(), Vec::<Health>::new());
    let step =
        |node: &mut Inference, seq: &mut u64, scored: &mut Vec<Score>, events: &mut Vec<Health>| {
            let (s, h) = feed_tensor_at(node, *seq, &rows[(*seq as usize) % rows.len()]);
            scored.extend(s);
            events.extend(h);
            *seq += 1;
            std::thread::sleep(Duration::from_millis(2));
        };
    for _ in 0..20 {
        step(&mut node, &mut seq, &mut scored, &mut events);
    }
    on_probation_for_an_hour(&mut reg, "classifier-tiny");
    drop(reg); // The node reports to the registry by itself.
    let deadline = Instant::now() + Duration::from_secs(120);
    let back = |s: &[Score]| {
        let mut seen_new = false;
        s.iter().any(|x| {
            seen_new |= x.model_version.ends_with("@1.1.0");
            seen_new && x.model_version.ends_with("@1.0.0")
        })
    };
    while !back(&scored) {
        assert!(
            Instant::now() < deadline,
            "no rollback; health events: {events:#?}"
        );
        step(&mut node, &mut seq, &mut scored, &mut events);
    }

    // Every frame scored once, with a label; 1.0.0 → 1.1.0 → 1.0.0, each change at one seq.
    let seqs: Vec<u64> = scored.iter().map(|s| s.key.seq).collect();
    assert_eq!(seqs, (0..seq).collect::<Vec<_>>());
    assert!(scored.iter().all(|s| !s.label.is_empty()));
    let mut versions: Vec<&str> = Vec::new();
    for s in &scored {
        if versions.last() != Some(&s.model_version.as_str()) {
            versions.push(&s.model_version);
        }
    }
    assert_eq!(
        versions,
        [
            "classifier-tiny@1.0.0",
            "classifier-tiny@1.1.0",
            "classifier-tiny@1.0.0"
        ]
    );
    let rolled = events
        .iter()
        .find(|h| h.code == "model_rolled_back")
        .unwrap_or_else(|| panic!("no model_rolled_back event: {events:#?}"));
    assert!(
        rolled.message.contains("flag rate 100.0 %"),
        "{}",
        rolled.message
    );
    let _ = std::fs::remove_dir_all(&root);
}
