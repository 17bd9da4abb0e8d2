//! `forgeline bench-line`: the end-to-end latency of a line under dora (acquisition → PLC node,
//! from the correlation timestamps), with the same stages fused in one process as the baseline
//! measured in the same run.

use crate::check::dora_cli;
use crate::graph::{Graph, in_dir};
use eyre::{WrapErr, bail, eyre};
use forgeline_acquisition::{PressSimConfig, PressSimulator, VibrationSource};
use forgeline_runtime::latency::Latencies;
use forgeline_runtime::now_ns;
use forgeline_schemas::Waveform;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Removes the derived graph file when dropped.
struct TempGraph(PathBuf);
impl Drop for TempGraph {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn edit_config(doc: &mut Value, kind: &str, f: impl Fn(&mut Value)) -> eyre::Result<()> {
    let nodes = doc["nodes"]
        .as_sequence_mut()
        .ok_or_else(|| eyre!("no nodes"))?;
    for node in nodes {
        let is_kind = crate::graph::builtin_kind(node) == Some(kind);
        if !is_kind {
            continue;
        }
        let text = node["env"]["FORGELINE_CONFIG"]
            .as_str()
            .unwrap_or("{}")
            .to_owned();
        let mut config: Value = serde_yaml::from_str(&text)?;
        if config.is_null() {
            config = Value::Mapping(serde_yaml::Mapping::new());
        }
        f(&mut config);
        if !node["env"].is_mapping() {
            node["env"] = Value::Mapping(serde_yaml::Mapping::new());
        }
        node["env"]["FORGELINE_CONFIG"] = Value::String(serde_yaml::to_string(&config)?);
    }
    Ok(())
}

fn parse_ms(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(&format!("{key}=")).nth(1)?;
    rest.trim_end_matches(|c: char| !c.is_ascii_digit())
        .split("ms")
        .next()?
        .parse()
        .ok()
}

/// Runs the benchmark and prints the table.
pub fn bench_line(graph_path: &Path, rate: f64, seconds: u64) -> eyre::Result<()> {
    let graph = Graph::load(graph_path).map_err(|e| eyre!(e))?;
    let mut doc: Value = serde_yaml::from_str(&std::fs::read_to_string(graph_path)?)?;
    edit_config(&mut doc, "press-acquisition", |c| {
        c["pace"] = serde_yaml::from_str(&format!("{{rate: {rate}}}")).unwrap_or_default();
    })?;
    edit_config(&mut doc, "telemetry", |c| {
        c["decision_log"] = Value::String(String::new());
    })?;
    let derived = graph
        .dir()
        .join(format!("_bench_{}.yml", std::process::id()));
    std::fs::write(&derived, serde_yaml::to_string(&doc)?)?;
    let _cleanup = TempGraph(derived.clone());
    let dora = dora_cli().ok_or_else(|| eyre!("dora CLI not found: run scripts/setup.sh"))?;
    let logs = tempfile::tempdir()?;
    eprintln!(
        "running {} under dora for {seconds} s at {rate} strokes/min …",
        graph_path.display()
    );
    let out = Command::new(&dora)
        .arg("run")
        .arg(std::path::absolute(&derived)?)
        .args(["--stop-after", &format!("{seconds}s")])
        .current_dir(logs.path())
        .output()
        .wrap_err("cannot run dora")?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("dora run failed:\n{log}");
    }
    let line = log
        .lines()
        .find(|l| l.contains("LATENCY acquisition->plc"))
        .ok_or_else(|| {
            eyre!("no latency line from the plc node (did any stroke reach it?):\n{log}")
        })?;
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dora dropped messages"))
        .collect();
    let n: usize = line
        .split("n=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);

    // Baseline: the same stages, same config, fused in one process, on the same simulator.
    let fused = in_dir(&graph.dir(), || {
        let (mut g, acquisition) = crate::offline::build_offline(&graph, None)?;
        let mut sim = PressSimulator::new(PressSimConfig::default()).map_err(|e| eyre!("{e}"))?;
        let mut lat = Latencies::with_capacity(n.max(100));
        for _ in 0..n.max(100) {
            let Some(Ok(stroke)) = sim.next_stroke() else {
                continue;
            };
            let t0 = now_ns();
            let batch = Waveform::to_batch(&[stroke.into_waveform("bench", t0)]);
            let mut emitted = Vec::new();
            g.publish(&acquisition, "waveform", batch, t0, &mut emitted)
                .map_err(|(node, e)| eyre!("node {node}: {e}"))?;
            lat.record(now_ns() - t0);
        }
        lat.summary().ok_or_else(|| eyre!("no baseline sample"))
    })?;

    println!("| pipeline | strokes | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| dora graph, acquisition → plc node | {n} | {:.3} | {:.3} | {:.3} | {:.3} |",
        parse_ms(line, "p50").unwrap_or(f64::NAN),
        parse_ms(line, "p95").unwrap_or(f64::NAN),
        parse_ms(line, "p99").unwrap_or(f64::NAN),
        parse_ms(line, "max").unwrap_or(f64::NAN)
    );
    println!(
        "| fused in one process (baseline) | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
        fused.n, fused.p50, fused.p95, fused.p99, fused.max
    );
    println!(
        "dropped messages: {}",
        if dropped.is_empty() {
            "none".to_owned()
        } else {
            dropped.join("; ")
        }
    );
    Ok(())
}
