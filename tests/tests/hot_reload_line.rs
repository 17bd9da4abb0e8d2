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

use forgeline_tests::model_box::{ModelBox, decided_once};
use forgeline_tests::{free_port, model_switched_seqs as switched_at, pymodbus_server};

const PROFILE: &str = "x86_64-cpu";
/// Strokes replayed (20 strokes/s: about 15 s of line time).
const STROKES: usize = 300;
/// Decisions logged before the new version is activated.
const ACTIVATE_AFTER: usize = 20;

#[test]
fn activating_a_new_version_mid_run_switches_at_one_seq_without_losing_a_stroke() {
    // Publishing side: a key pair, two signed packages. Box side: trust the key, install both,
    // activate 1.0.0.
    let mb = ModelBox::new(PROFILE);
    for version in ["1.0.0", "1.1.0"] {
        mb.install(&mb.package(version, |yml| yml));
    }
    mb.activate("1.0.0");

    // A finite stream: normal simulated strokes, replayed and then the press exits.
    let data = mb.strokes(STROKES);
    let port = free_port();
    let (_plc, _writes) = pymodbus_server(port);
    let log = mb.dir().join("decisions.jsonl");
    let g = mb.press_line("hot_reload_line", &data, "", port, &log);
    let graph = g.write().to_path_buf();

    // Mid-run, once the line is demonstrably deciding with 1.0.0: activate 1.1.0 from the CLI,
    // as an operator would.
    let (ok, out, activation) = mb.run_line_and(
        &graph,
        &log,
        ACTIVATE_AFTER,
        &["activate", "press-anomaly", "1.1.0", "--reason", "test"],
    );
    let (seen_before, (act_ok, act_out, act_err)) = activation
        .unwrap_or_else(|| panic!("the line never logged {ACTIVATE_AFTER} decisions:\n{out}"));
    assert!(act_ok, "activate 1.1.0 mid-run: {act_out}{act_err}");
    assert!(ok, "dora run failed:\n{out}");

    // Every stroke decided exactly once, in the seq range the replay sent.
    let by_seq = decided_once(&log, STROKES, &out);
    let first = *by_seq.keys().next().unwrap();
    let last = *by_seq.keys().next_back().unwrap();

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
