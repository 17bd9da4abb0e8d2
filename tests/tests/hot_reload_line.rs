//! Issue #10, "Done means": sign → install → activate → hot reload during a running graph.
//!
//! Two signed versions of the shipped press model (1.0.0 and a copy marked 1.1.0) are
//! installed into a temp registry with the `forgeline model …` CLI, 1.0.0 is activated, and
//! the shipped press line runs under a real dora daemon with its inference node following the
//! registry (`registry: {dir, name, profile}`, short `reload_check_ms`). The press replays a
//! finite set of simulated strokes at 20 strokes/s and ends the run when they are all sent.
//! Once the first decisions are logged, a background thread activates 1.1.0. From the decision
//! log: every stroke is decided exactly once (no lost or duplicated seq), the model version
//! changes at one precise seq and never back, the switch did happen, and the inference node
//! logged `model switched` naming that seq. Real dora daemon, real pymodbus server as the PLC,
//! loopback only; bounded by `--stop-after` and by the finite replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forgeline_tests::{
    TestGraph, copy_dir_files as copy_dir, dora_run, free_port, model_switched_seqs as switched_at,
    pymodbus_server, read_jsonl_so_far as logged, root, run_forgeline,
};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PROFILE: &str = "x86_64-cpu";
/// Strokes replayed (20 strokes/s: about 15 s of line time).
const STROKES: usize = 300;
/// Decisions logged before the new version is activated.
const ACTIVATE_AFTER: usize = 20;

fn fl(args: &[&str]) -> (bool, String, String) {
    run_forgeline(args, &root())
}

#[test]
fn activating_a_new_version_mid_run_switches_at_one_seq_without_losing_a_stroke() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p).to_str().unwrap().to_owned();
    let reg = t("reg");
    let reg_args = ["--registry", reg.as_str(), "--profile", PROFILE];

    // Publishing side: a key pair, two signed packages. Box side: trust the key, install both,
    // activate 1.0.0.
    let (ok, out, err) = fl(&["model", "keygen", "--dir", &t("keys")]);
    assert!(ok, "keygen: {out}{err}");
    std::fs::create_dir_all(tmp.path().join("reg/trusted-keys")).unwrap();
    std::fs::copy(
        tmp.path().join("keys/forgeline.pub"),
        tmp.path().join("reg/trusted-keys/forgeline.pub"),
    )
    .unwrap();
    for version in ["1.0.0", "1.1.0"] {
        let pkg = tmp.path().join(format!("pkg-{version}"));
        copy_dir(&root().join("models/press-anomaly"), &pkg);
        let yml = std::fs::read_to_string(pkg.join("model.yml")).unwrap();
        assert!(yml.contains("version: 1.0.0"), "model.yml changed: {yml}");
        std::fs::write(
            pkg.join("model.yml"),
            yml.replacen("version: 1.0.0", &format!("version: {version}"), 1),
        )
        .unwrap();
        let p = pkg.to_str().unwrap();
        let (ok, out, err) = fl(&["model", "sign", p, "--key", &t("keys/forgeline.key")]);
        assert!(ok, "sign {version}: {out}{err}");
        let (ok, out, err) = fl(&[&["model", "install", p][..], &reg_args].concat());
        assert!(ok, "install {version}: {out}{err}");
    }
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

    // A finite stream: normal simulated strokes, replayed and then the press exits.
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

    let mut g = TestGraph::from_shipped("stamping_press.yml", "hot_reload_line");
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
                "{{dir: '{reg}', name: press-anomaly, profile: {PROFILE}}}"
            ))
            .unwrap(),
        );
        m.insert("reload_check_ms".into(), Value::from(50));
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(log.to_str().unwrap().into());
        // Another test's line may hold the shipped metrics port.
        c["metrics"]["port"] = Value::from(free_port());
    });
    g.edit_config("plc", |c| {
        c["link"]["address"] = Value::String(format!("127.0.0.1:{port}"));
    });
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();

    // Mid-run, once the line is demonstrably deciding with 1.0.0: activate 1.1.0 from the CLI,
    // as an operator would. Bounded: gives up when the run is over.
    let done = Arc::new(AtomicBool::new(false));
    let activator = {
        let done = Arc::clone(&done);
        let log = log.clone();
        let reg = reg.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let seen = logged(&log).len();
                if seen >= ACTIVATE_AFTER {
                    let r = fl(&[
                        "model",
                        "activate",
                        "press-anomaly",
                        "1.1.0",
                        "--reason",
                        "test",
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
    let activation = activator.join().unwrap();
    let (seen_before, (act_ok, act_out, act_err)) = activation
        .unwrap_or_else(|| panic!("the line never logged {ACTIVATE_AFTER} decisions:\n{out}"));
    assert!(act_ok, "activate 1.1.0 mid-run: {act_out}{act_err}");
    assert!(ok, "dora run failed:\n{out}");

    // Every stroke decided exactly once, in the seq range the replay sent.
    let decisions = logged(&log);
    let mut by_seq: BTreeMap<u64, String> = BTreeMap::new();
    for d in &decisions {
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
    assert!(
        missing.is_empty(),
        "lost strokes {missing:?} (a node restarted by dora mid-run, e.g. killed by another \
         test's `pkill`? {})\n{out}",
        out.contains("node restarted by dora")
    );
    assert_eq!(
        by_seq.len(),
        STROKES,
        "every replayed stroke must be decided (seqs {first}..={last})\n{out}"
    );

    // The version changes at one seq, from 1.0.0 to 1.1.0, and never back.
    let old = "press-anomaly@1.0.0";
    let new = "press-anomaly@1.1.0";
    let unexpected: Vec<(&u64, &String)> = by_seq
        .iter()
        .filter(|(_, v)| v.as_str() != old && v.as_str() != new)
        .collect();
    assert!(
        unexpected.is_empty(),
        "decisions by another model version: {unexpected:?}"
    );
    let switch = by_seq
        .iter()
        .find(|(_, v)| v.as_str() == new)
        .map(|(s, _)| *s)
        .unwrap_or_else(|| panic!("1.1.0 never scored a stroke (switch did not happen)\n{out}"));
    let interleaved: Vec<u64> = by_seq
        .iter()
        .filter(|(s, v)| (**s < switch) != (v.as_str() == old))
        .map(|(s, _)| *s)
        .collect();
    assert!(
        interleaved.is_empty(),
        "versions interleave around the switch at seq {switch}: {interleaved:?}"
    );
    assert!(
        switch > first,
        "1.0.0 must have scored the first strokes (switch at the first seq {first})"
    );
    // The switch came after the activation, which came after ACTIVATE_AFTER decisions.
    assert!(
        switch >= first + seen_before as u64,
        "switch at seq {switch} before the activation (after {seen_before} decisions from {first})"
    );

    eprintln!(
        "hot reload: {} strokes decided (seqs {first}..={last}), 1.1.0 activated after {seen_before} \
         decisions, switch at seq {switch}",
        by_seq.len()
    );

    // The node said so, naming the same seq.
    let mut logged_switches = switched_at(&out);
    logged_switches.dedup(); // The same event may be echoed by a second logger.
    assert_eq!(
        logged_switches,
        vec![switch],
        "the inference node must log one `model switched` naming seq {switch}\n{out}"
    );
}
