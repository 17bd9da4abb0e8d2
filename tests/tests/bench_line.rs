//! Smoke test of `forgeline bench-line`: the harness runs the press line under a real dora
//! daemon (with its probe and the bare dora chain), and a multi-asset run, and prints figures
//! that parse. No timing is asserted (the machine is shared): only that every figure is there,
//! is consistent (p50 ≤ p99 ≤ max, items counted) and that the strokes went through.
#![allow(clippy::unwrap_used)]

use forgeline_tests::{TestGraph, free_port, root, run_forgeline};
use std::collections::BTreeMap;

/// The `BENCH kind=<kind> k=v …` lines of `out` as maps.
fn bench_lines(out: &str, kind: &str) -> Vec<BTreeMap<String, String>> {
    out.lines()
        .filter(|l| l.starts_with(&format!("BENCH kind={kind} ")))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn num(m: &BTreeMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no `{k}` in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("`{k}` is not a number in {m:?}"))
}

/// The shipped press line on free loopback ports (its PLC simulator binds 5020 otherwise).
fn press_line(tag: &str) -> TestGraph {
    let port = free_port();
    let mut g = TestGraph::from_shipped("stamping_press.yml", tag);
    let address = format!("127.0.0.1:{port}");
    g.edit_config("plc", |c| c["link"]["address"] = address.clone().into());
    g.edit_config("plc-sim", |c| c["bind"] = address.clone().into());
    g
}

#[test]
fn bench_line_prints_latency_hops_baselines_and_throughput() {
    let g = press_line("bench");
    let path = g.write().to_str().unwrap().to_owned();
    let (ok, out, err) = run_forgeline(
        &[
            "bench-line",
            &path,
            "--rate",
            "1200",
            "--seconds",
            "8",
            "--no-python",
        ],
        &root(),
    );
    assert!(ok, "bench-line failed:\n{out}\n{err}");

    let line = bench_lines(&out, "line");
    assert_eq!(line.len(), 1, "one line summary:\n{out}");
    let l = &line[0];
    assert!(
        num(l, "n") >= 20.0,
        "20 strokes/s for 8 s: at least 20 reach the PLC:\n{out}"
    );
    assert!(num(l, "p50") > 0.0 && num(l, "p50") <= num(l, "p99"));
    assert!(num(l, "p99") <= num(l, "p999") && num(l, "p999") <= num(l, "max"));
    num(l, "dropped");

    let hops = bench_lines(&out, "hop");
    assert_eq!(
        hops.len(),
        5,
        "acquisition, features, inference, threshold, plc:\n{out}"
    );
    for (i, h) in hops.iter().enumerate() {
        assert_eq!(num(h, "index") as usize, i);
        assert!(
            num(h, "p50") >= 0.0 && num(h, "p50") <= num(h, "p99"),
            "{h:?}"
        );
        if i > 0 {
            // Every stage hop has its bare dora counterpart, measured in the same run.
            assert!(num(h, "bare_p50") > 0.0, "bare hop {i} missing:\n{out}");
        }
    }
    assert!(out.contains("fused in one process (baseline)"), "{out}");
    assert!(out.contains("bare dora chain"), "{out}");
    // The same chain with its relays under the forgeline runtime, hop by hop.
    assert!(out.contains("relays under the forgeline runtime"), "{out}");
    let runtime = bench_lines(&out, "runtime_hop");
    assert_eq!(runtime.len(), 5, "five relay hops:\n{out}");
    for h in &runtime {
        assert!(
            num(h, "bare_p50") > 0.0 && num(h, "runtime_p50") > 0.0,
            "{h:?}"
        );
    }
    let t = bench_lines(&out, "throughput");
    assert!(t.is_empty(), "no Python ratio with --no-python");
    assert!(out.contains("| fused in one process |"), "{out}");
}

#[test]
fn bench_line_runs_several_presses_in_one_acquisition_node() {
    let g = press_line("bench_multi");
    let path = g.write().to_str().unwrap().to_owned();
    let (ok, out, err) = run_forgeline(
        &["bench-line", &path, "--presses", "20", "--seconds", "8"],
        &root(),
    );
    assert!(ok, "bench-line --presses failed:\n{out}\n{err}");
    let multi = bench_lines(&out, "multi");
    assert_eq!(multi.len(), 1, "{out}");
    let m = &multi[0];
    assert_eq!(num(m, "presses") as usize, 20);
    // 20 presses at 18 strokes/min = 6 strokes/s: a few seconds of them reach the PLC.
    assert!(num(m, "n") >= 10.0, "{out}");
    assert!(num(m, "p50") <= num(m, "p99"));
}

#[test]
fn bench_line_measures_the_graphs_cpu_per_stroke() {
    let g = press_line("bench_cpu");
    let path = g.write().to_str().unwrap().to_owned();
    let (ok, out, err) = run_forgeline(
        &[
            "bench-line",
            &path,
            "--per-core",
            "200",
            "--seconds",
            "6",
            "--no-python",
        ],
        &root(),
    );
    assert!(ok, "bench-line --per-core failed:\n{out}\n{err}");
    let rows = bench_lines(&out, "per_core");
    assert_eq!(rows.len(), 1, "{out}");
    let r = &rows[0];
    // Strokes per CPU-second of the whole graph (start-up excluded) and of the fused baseline.
    assert!(
        num(r, "graph").is_finite() && num(r, "graph") > 0.0,
        "{out}"
    );
    assert!(num(r, "fused") > 0.0, "{out}");
    assert!(
        !r.contains_key("python"),
        "no Python figure with --no-python"
    );
    assert!(out.contains("start-up excluded"), "{out}");
}
