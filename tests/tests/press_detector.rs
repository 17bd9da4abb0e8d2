//! `forgeline train press` on normal strokes only, then `forgeline score` with the line's own
//! graph on a held-out set of another seed with every fault and sensor-fault family:
//! balanced accuracy over {ok, reject, sensor_fault} ≥ 99 %, false rejects ≤ 0.5 %.
//! Also: a model whose input does not match the features is refused naming node and field.

use forgeline_tests::{root, run_forgeline};

#[test]
fn trained_on_normal_strokes_the_detector_separates_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_str().unwrap().to_owned();
    let (train, heldout, model, preds) = (p("train"), p("heldout"), p("model"), p("preds.jsonl"));
    let steps: [Vec<&str>; 4] = [
        vec![
            "simulate", "--out", &train, "--seed", "11", "--normal", "500",
        ],
        vec![
            "train",
            "press",
            "--normal",
            &train,
            "--out",
            &model,
            "--seed",
            "0",
            "--graph",
            "graphs/stamping_press.yml",
            "--",
            "--quiet",
        ],
        vec![
            "simulate",
            "--out",
            &heldout,
            "--seed",
            "12",
            "--normal",
            "400",
            "--per-fault",
            "30",
            "--first-seq",
            "1000000",
        ],
        vec![
            "score",
            "graphs/stamping_press.yml",
            "--model",
            &model,
            &heldout,
            "--out",
            &preds,
        ],
    ];
    for args in &steps {
        let (ok, out, err) = run_forgeline(args, &root());
        assert!(ok, "forgeline {args:?} failed:\n{out}\n{err}");
        if args[0] == "score" {
            // The graph's provider chain is logged: each provider skipped with its reason, then
            // the one registered (no GPU provider here, so the CPU).
            assert!(
                err.contains("execution provider skipped") && err.contains("provider=tensorrt"),
                "{err}"
            );
            assert!(
                err.contains("execution provider registered") && err.contains("provider=cpu"),
                "{err}"
            );
        }
    }
    // Every prediction records the provider that ran the model.
    let lines = forgeline_tests::read_jsonl(std::path::Path::new(&preds));
    assert!(!lines.is_empty());
    for line in &lines {
        assert_eq!(line["provider"], "cpu", "{line}");
    }
    let (ok, out, err) = run_forgeline(&["evaluate", &heldout, &preds], &root());
    assert!(ok, "{err}");
    println!("{out}");
    let value = |key: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("balanced_accuracy") >= 0.99, "{out}");
    assert!(value("false_reject_pct") <= 0.5, "{out}");
    // Every family is reported, none missing.
    for family in [
        "die_wear",
        "double_hit",
        "cracked_tooling",
        "bearing_outer_race",
        "misfeed",
        "clipping",
        "dropout",
        "nan",
        "stuck",
        "offset_jump",
    ] {
        assert!(
            out.contains(&format!("recall {family}: ")),
            "{family} missing:\n{out}"
        );
    }
}

#[test]
fn a_model_that_does_not_fit_the_features_is_refused_naming_node_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let preds = tmp.path().join("p.jsonl");
    let (ok, _, err) = run_forgeline(
        &["simulate", "--out", data.to_str().unwrap(), "--normal", "3"],
        &root(),
    );
    assert!(ok, "{err}");
    // A real model directory whose input has another feature count than the press features.
    let wrong = root().join("operators/inference/tests/data/press-tiny");
    let (ok, _, err) = run_forgeline(
        &[
            "score",
            "graphs/stamping_press.yml",
            "--model",
            wrong.to_str().unwrap(),
            data.to_str().unwrap(),
            "--out",
            preds.to_str().unwrap(),
        ],
        &root(),
    );
    assert!(!ok, "scoring with a mismatched model must fail");
    assert!(err.contains("node `inference`"), "{err}");
    assert!(
        err.contains("field `values`") || err.contains("feature"),
        "{err}"
    );
    assert!(
        err.matches("error: ").count() >= 3,
        "one error per stroke, the others still tried:\n{err}"
    );
}
