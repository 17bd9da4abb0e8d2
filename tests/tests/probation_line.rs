//! Issue #10: the running line rolls a bad model back by itself.
//!
//! The shipped press line runs under a real dora daemon with its inference node following a
//! temp registry (1.0.0 active) and judging the version it scores (`registry.health:
//! {check_every_ms: 1000, min_rows: 10}`). Once the first decisions are logged, `forgeline model
//! update` installs a "bad" 1.1.0 — the same ONNX, but `thresholds.warning` so small that every
//! stroke is flagged — and activates it on probation (`--probation-minutes 10 --max-failures
//! 2`); its reference set is its own, so it passes validation. The inference node switches to
//! it, measures a 100 % flag rate, reports two failed health checks and the registry rolls back
//! to 1.0.0, which the node switches back to. From the decision log: every stroke decided
//! exactly once, model versions 1.0.0 → 1.1.0 → 1.0.0, each change at one seq, never
//! interleaved; the registry history names the auto-rollback and its flag-rate reason; the
//! line logged `model_rolled_back`. Real dora daemon, real pymodbus server as the PLC, loopback
//! only; bounded by `--stop-after` and by the finite replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forgeline_tests::{
    TestGraph, copy_dir_files as copy_dir, dora_run, free_port, model_switched_seqs,
    pymodbus_server, read_jsonl_so_far as logged, root, run_forgeline,
};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PROFILE: &str = "x86_64-cpu";
/// Strokes replayed (20 strokes/s: about 25 s of line time).
const STROKES: usize = 500;
/// Decisions logged before the bad version is pushed.
const UPDATE_AFTER: usize = 20;

fn fl(args: &[&str]) -> (bool, String, String) {
    run_forgeline(args, &root())
}

/// The shipped press model as `version`; `edit` changes model.yml's text before the reference
/// set is written and the package signed.
fn package(tmp: &Path, version: &str, edit: impl FnOnce(String) -> String) -> String {
    let pkg = tmp.join(format!("pkg-{version}"));
    copy_dir(&root().join("models/press-anomaly"), &pkg);
    let yml = std::fs::read_to_string(pkg.join("model.yml")).unwrap();
    assert!(yml.contains("version: 1.0.0"), "model.yml changed: {yml}");
    let yml = yml.replacen("version: 1.0.0", &format!("version: {version}"), 1);
    std::fs::write(pkg.join("model.yml"), edit(yml)).unwrap();
    let p = pkg.to_str().unwrap().to_owned();
    let (ok, out, err) = fl(&["model", "reference", &p, "--per-label", "3"]);
    assert!(ok, "reference {version}: {out}{err}");
    let key = tmp.join("keys/forgeline.key");
    let (ok, out, err) = fl(&["model", "sign", &p, "--key", key.to_str().unwrap()]);
    assert!(ok, "sign {version}: {out}{err}");
    p
}

#[test]
fn a_bad_model_on_probation_is_rolled_back_by_the_running_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p).to_str().unwrap().to_owned();
    let reg = t("reg");
    let reg_args = ["--registry", reg.as_str(), "--profile", PROFILE];

    let (ok, out, err) = fl(&["model", "keygen", "--dir", &t("keys")]);
    assert!(ok, "keygen: {out}{err}");
    std::fs::create_dir_all(tmp.path().join("reg/trusted-keys")).unwrap();
    std::fs::copy(
        tmp.path().join("keys/forgeline.pub"),
        tmp.path().join("reg/trusted-keys/forgeline.pub"),
    )
    .unwrap();
    let good = package(tmp.path(), "1.0.0", |yml| yml);
    // Bad: every stroke's score is above this warning threshold.
    let bad = package(tmp.path(), "1.1.0", |yml| {
        let line = yml
            .lines()
            .find(|l| l.trim_start().starts_with("warning: "))
            .expect("model.yml has thresholds.warning")
            .to_owned();
        let indent = &line[..line.len() - line.trim_start().len()];
        yml.replacen(&line, &format!("{indent}warning: 1.0e-9"), 1)
    });
    let (ok, out, err) = fl(&[&["model", "install", good.as_str()][..], &reg_args].concat());
    assert!(ok, "install 1.0.0: {out}{err}");
    let (ok, out, err) = fl(&[
        &[
            "model",
            "activate",
            "press-anomaly",
            "1.0.0",
            "--reason",
            "test",
        ][..],
        &reg_args,
    ]
    .concat());
    assert!(ok, "activate 1.0.0: {out}{err}");

    let data = t("strokes");
    let (ok, out, err) = fl(&[
        "simulate",
        "--out",
        &data,
        "--seed",
        "11",
        "--normal",
        &STROKES.to_string(),
    ]);
    assert!(ok, "simulate: {out}{err}");

    let port = free_port();
    let (_plc, _writes) = pymodbus_server(port);
    let log = tmp.path().join("decisions.jsonl");

    let mut g = TestGraph::from_shipped("stamping_press.yml", "probation_line");
    g.edit_config("press", |c| {
        c["source"] =
            serde_yaml::from_str(&format!("{{kind: replay, paths: ['{data}']}}")).unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 1200}").unwrap(); // 20 strokes/s
        c["exit_when_done"] = Value::Bool(true);
    });
    g.edit_config("inference", |c| {
        let m = c.as_mapping_mut().unwrap();
        m.remove("model_dir");
        m.insert(
            "registry".into(),
            serde_yaml::from_str(&format!(
                "{{dir: '{reg}', name: press-anomaly, profile: {PROFILE}, \
                 health: {{check_every_ms: 1000, min_rows: 10}}}}"
            ))
            .unwrap(),
        );
        m.insert("reload_check_ms".into(), Value::from(50));
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(log.to_str().unwrap().into());
        c["metrics"]["port"] = Value::from(free_port());
    });
    g.edit_config("plc", |c| {
        c["link"]["address"] = Value::String(format!("127.0.0.1:{port}"));
    });
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();

    // Mid-run, once the line is deciding with 1.0.0: the update, as an operator would run it.
    let done = Arc::new(AtomicBool::new(false));
    let updater = {
        let done = Arc::clone(&done);
        let log = log.clone();
        let reg = reg.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let seen = logged(&log).len();
                if seen >= UPDATE_AFTER {
                    let r = fl(&[
                        "model",
                        "update",
                        &bad,
                        "--probation-minutes",
                        "10",
                        "--max-failures",
                        "2",
                        "--registry",
                        &reg,
                        "--profile",
                        PROFILE,
                    ]);
                    return Some((seen, r));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })
    };
    let (ok, out) = dora_run(&graph, tmp.path(), 120);
    done.store(true, Ordering::SeqCst);
    let (seen_before, (up_ok, up_out, up_err)) = updater
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("the line never logged {UPDATE_AFTER} decisions:\n{out}"));
    assert!(up_ok, "model update 1.1.0 mid-run: {up_out}{up_err}");
    assert!(up_out.contains("on probation"), "{up_out}");
    assert!(ok, "dora run failed:\n{out}");

    // Every stroke decided exactly once.
    let mut by_seq: BTreeMap<u64, String> = BTreeMap::new();
    for d in &logged(&log) {
        let seq = d["seq"].as_u64().unwrap();
        let version = d["model_version"].as_str().unwrap_or_default().to_owned();
        assert!(
            by_seq.insert(seq, version).is_none(),
            "seq {seq} decided twice\n{out}"
        );
    }
    let first = *by_seq.keys().next().unwrap();
    let last = *by_seq.keys().next_back().unwrap();
    let missing: Vec<u64> = (first..=last).filter(|s| !by_seq.contains_key(s)).collect();
    assert!(missing.is_empty(), "lost strokes {missing:?}\n{out}");
    assert_eq!(by_seq.len(), STROKES, "seqs {first}..={last}\n{out}");

    // 1.0.0 → 1.1.0 → 1.0.0, each change at one seq (runs of one version, in this order).
    let mut runs: Vec<(String, u64, u64)> = Vec::new(); // (version, first seq, strokes)
    for (seq, v) in &by_seq {
        match runs.last_mut() {
            Some((run_v, _, n)) if run_v == v => *n += 1,
            _ => runs.push((v.clone(), *seq, 1)),
        }
    }
    let versions: Vec<&str> = runs.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(
        versions,
        [
            "press-anomaly@1.0.0",
            "press-anomaly@1.1.0",
            "press-anomaly@1.0.0"
        ],
        "version runs (version, first seq, strokes): {runs:?}\n{out}"
    );
    assert!(
        runs[1].1 >= first + seen_before as u64,
        "1.1.0 scored seq {} before the update (after {seen_before} decisions from {first})",
        runs[1].1
    );
    // The bad version flagged what it scored: the decisions say so.
    let bad_ok = logged(&log)
        .iter()
        .filter(|d| d["model_version"] == "press-anomaly@1.1.0" && d["verdict"] == "ok")
        .count();
    eprintln!(
        "probation: {} strokes decided (seqs {first}..={last}); update after {seen_before} \
         decisions; version runs {runs:?}; 1.1.0 decisions with verdict ok: {bad_ok}",
        by_seq.len()
    );

    // The registry: 1.0.0 active again, the history names the auto-rollback and the reason.
    let (ok, show, err) = fl(&[
        "model",
        "show",
        "press-anomaly",
        "--registry",
        &reg,
        "--profile",
        PROFILE,
    ]);
    assert!(ok, "model show: {show}{err}");
    assert!(
        show.contains("auto-rollback: 2 failed health check(s) during the probation of 1.1.0")
            && show.contains("flag rate 100.0 % over")
            && show.contains("> max_flag_rate 20.0 %"),
        "model show must name the automatic rollback and its reason:\n{show}"
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("reg/registry.json")).unwrap(),
    )
    .unwrap();
    let slot = &state["models"]["press-anomaly"]["slots"][PROFILE];
    assert_eq!(slot["active"], "1.0.0", "{state:#}");
    assert!(slot.get("probation").is_none(), "{state:#}");

    // The line said so on its health topic (logged by telemetry and the inference node).
    assert!(
        out.contains("model_rolled_back") || out.contains("model rolled back"),
        "no model_rolled_back health event in the run's log:\n{out}"
    );
    assert!(out.contains("model_probation_failure"), "{out}");
    for line in out.lines().filter(|l| {
        l.contains("code=model_probation_failure") || l.contains("code=model_rolled_back")
    }) {
        eprintln!("{line}");
    }
    // The node logged both switches, naming the seqs where each version took over.
    let mut switches = model_switched_seqs(&out);
    switches.dedup(); // The same event may be echoed by a second logger.
    assert_eq!(
        switches,
        vec![runs[1].1, runs[2].1],
        "the inference node must log `model switched` at seq {} (to 1.1.0) and {} (back)\n{out}",
        runs[1].1,
        runs[2].1
    );
}
