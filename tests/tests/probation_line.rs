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

use forgeline_tests::model_box::{ModelBox, decided_once, fl};
use forgeline_tests::{
    free_port, model_switched_seqs, pymodbus_server, read_jsonl_so_far as logged,
};

const PROFILE: &str = "x86_64-cpu";
/// Strokes replayed (20 strokes/s: about 25 s of line time).
const STROKES: usize = 500;
/// Decisions logged before the bad version is pushed.
const UPDATE_AFTER: usize = 20;

#[test]
fn a_bad_model_on_probation_is_rolled_back_by_the_running_line() {
    let mb = ModelBox::new(PROFILE);
    let reg = mb.reg.clone();
    let good = mb.package("1.0.0", |yml| yml);
    // Bad: every stroke's score is above this warning threshold.
    let bad = mb.package("1.1.0", |yml| {
        let line = yml
            .lines()
            .find(|l| l.trim_start().starts_with("warning: "))
            .expect("model.yml has thresholds.warning")
            .to_owned();
        let indent = &line[..line.len() - line.trim_start().len()];
        yml.replacen(&line, &format!("{indent}warning: 1.0e-9"), 1)
    });
    mb.install(&good);
    mb.activate("1.0.0");

    let data = mb.strokes(STROKES);
    let port = free_port();
    let (_plc, _writes) = pymodbus_server(port);
    let log = mb.dir().join("decisions.jsonl");
    let g = mb.press_line(
        "probation_line",
        &data,
        ", health: {check_every_ms: 1000, min_rows: 10}",
        port,
        &log,
    );
    let graph = g.write().to_path_buf();

    // Mid-run, once the line is deciding with 1.0.0: the update, as an operator would run it.
    let (ok, out, update) = mb.run_line_and(
        &graph,
        &log,
        UPDATE_AFTER,
        &[
            "update",
            &bad,
            "--probation-minutes",
            "10",
            "--max-failures",
            "2",
        ],
    );
    let (seen_before, (up_ok, up_out, up_err)) =
        update.unwrap_or_else(|| panic!("the line never logged {UPDATE_AFTER} decisions:\n{out}"));
    assert!(up_ok, "model update 1.1.0 mid-run: {up_out}{up_err}");
    assert!(up_out.contains("on probation"), "{up_out}");
    assert!(ok, "dora run failed:\n{out}");

    // Every stroke decided exactly once.
    let by_seq = decided_once(&log, STROKES, &out);
    let first = *by_seq.keys().next().unwrap();
    let last = *by_seq.keys().next_back().unwrap();

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
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mb.dir().join("reg/registry.json")).unwrap())
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
