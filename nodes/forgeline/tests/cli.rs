//! The `forgeline` binary as a user meets it: node kinds, unknown kinds, `--check-config`.
//! (Being an integration test of this package also makes cargo build the binary with the same
//! features as every other test, so CI compiles the dependencies once.)

use std::process::Command;

fn forgeline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forgeline"))
}

#[test]
fn lists_every_built_in_node_kind() {
    let o = forgeline().arg("nodes").output().unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for kind in [
        "press-acquisition",
        "vibration-features",
        "inference",
        "threshold",
        "plc-output",
        "plc-sim",
        "telemetry",
    ] {
        assert!(
            out.lines().any(|l| l == kind),
            "{kind} missing from:\n{out}"
        );
    }
}

#[test]
fn an_unknown_node_kind_is_refused_with_the_list() {
    let o = forgeline().args(["node", "tresholds"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown node kind `tresholds`") && err.contains("threshold"),
        "{err}"
    );
}

#[test]
fn check_config_validates_the_environment_config() {
    let ok = forgeline()
        .args(["node", "telemetry", "--check-config"])
        .env("FORGELINE_CONFIG", "decision_log: ''\n")
        .env("FORGELINE_NODE_ID", "telemetry")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = forgeline()
        .args(["node", "press-acquisition", "--check-config"])
        .env(
            "FORGELINE_CONFIG",
            "asset_id: p1\npace: { rate: -3 }\nsourc: {}\n",
        )
        .env("FORGELINE_NODE_ID", "press")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("node `press`") && err.contains("sourc"),
        "{err}"
    );
}

/// `forgeline bench-model MODEL ARGS…` on the shipped press model; its stdout, after checking
/// that it succeeded.
#[allow(clippy::unwrap_used)] // Test helper: a panic is the failure report.
fn bench_model(args: &[&str]) -> String {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/press-anomaly");
    let o = forgeline()
        .args(["bench-model", model, "--no-python"])
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `forgeline bench-model` on the shipped press model (a real ONNX Runtime session): every path
/// of both variants is measured, an unavailable provider is named with its reason, and the
/// idle mode (a pause before each run, keep-warm runs during it) runs too. No figure is judged.
#[test]
fn bench_model_measures_every_path_and_names_skipped_providers() {
    let out = bench_model(&["--runs", "50", "--warmup", "5", "--providers", "cuda,cpu"]);
    for variant in ["fp32", "int8"] {
        for path in [
            "bare ORT session.run",
            "bare ORT run_binding",
            "scorer (no Arrow)",
            "node path (Arrow in/out)",
        ] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(variant) && l.contains("cpu") && l.contains(path)),
                "{variant} {path} missing:\n{out}"
            );
        }
    }
    assert!(
        out.contains("on cuda: skipped"),
        "the skipped provider and why:\n{out}"
    );

    let out = bench_model(&[
        "--runs",
        "3",
        "--warmup",
        "1",
        "--providers",
        "cpu",
        "--variant",
        "fp32",
        "--idle-ms",
        "20",
        "--keep-warm-ms",
        "5",
    ]);
    assert!(out.contains("idle mode: 20 ms pause"), "{out}");
    assert!(out.contains("node path (Arrow in/out)"), "{out}");
}

/// `forgeline score` on the optical graph: the line's own stages in-process on a folder of
/// images (simulated by `forgeline simulate-images`), one JSON line per image with the model's
/// label, the decision and the provider; a file that is not an image is named and skipped.
#[test]
fn score_on_images_gives_one_line_per_image_and_names_a_bad_file() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let o = forgeline()
        .args([
            "simulate-images",
            "--seed",
            "4",
            "--good",
            "3",
            "--per-defect",
            "1",
        ])
        .arg("--out")
        .arg(&images)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(images.join("good/zz_not_an_image.png"), b"not a png").unwrap();
    let preds = tmp.path().join("preds.jsonl");
    let o = forgeline()
        .arg("score")
        .arg(format!("{root}/graphs/optical_inspection.yml"))
        .arg("--model")
        .arg(format!("{root}/models/optical-defects"))
        .arg(&images)
        .arg("--out")
        .arg(&preds)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("zz_not_an_image.png") && l.contains("not a recognised image")),
        "{err}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7, "3 good + 4 defects: {lines:?}");
    for l in &lines {
        let file = l["file"].as_str().unwrap();
        assert!(file.ends_with(".png") && !file.contains("zz_"), "{l}");
        assert_eq!(l["provider"], "cpu", "{l}");
        assert!(
            ["good", "defect"].contains(&l["label"].as_str().unwrap()),
            "{l}"
        );
        assert!(
            ["ok", "reject"].contains(&l["decision"].as_str().unwrap()),
            "{l}"
        );
    }
    // The shipped model tells the defects from the good parts (99 % balanced accuracy on 400).
    let rejected = |dir: &str| {
        lines
            .iter()
            .filter(|l| l["file"].as_str().unwrap().contains(dir))
            .filter(|l| l["decision"] == "reject")
            .count()
    };
    assert!(rejected("/defect/") >= 3, "{lines:?}");
    assert!(rejected("/good/") <= 1, "{lines:?}");
}
