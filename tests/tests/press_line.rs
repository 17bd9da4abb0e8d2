//! The stamping press line under a real dora daemon, on recorded WAV strokes (every fault and
//! sensor-fault family), with a real Modbus TCP server that is not ours (pymodbus) as the PLC:
//! every stroke gets the expected verdict, in the decision log and in the PLC's registers.
#![allow(clippy::unwrap_used)]

use forgeline_tests::{
    TestGraph, dora_run, free_port, manifest, pymodbus_server, read_jsonl, simulate_strokes,
};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Verdict codes of the default register map (operators/plc/README.md).
fn verdict_code(v: &str) -> u64 {
    match v {
        "ok" => 1,
        "reject" => 2,
        "sensor_fault" => 3,
        _ => 0,
    }
}

#[test]
fn press_line_gives_every_recorded_stroke_its_verdict_and_tells_the_plc() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("strokes");
    let data_s = data.to_str().unwrap();
    // A held-out set: another seed than the model's training set, every family.
    simulate_strokes(&data, 3, 12, 2, 5000);
    let expected = manifest(&data);
    assert_eq!(expected.len(), 12 + 10 * 2);
    // Bad recordings among the good ones: each is reported naming the file, the line goes on.
    std::fs::write(data.join("zz_malformed.wav"), b"RIFF\x00\x00not a wav").unwrap();
    let short: Vec<f32> = vec![0.1; 1500];
    write_wav(&data.join("zz_short.wav"), &short, 10_000);
    write_wav(&data.join("zz_rate.wav"), &vec![0.1; 2000], 8_000);

    let port = free_port();
    let (_plc, writes) = pymodbus_server(port);
    let log = tmp.path().join("decisions.jsonl");

    let mut g = TestGraph::from_shipped("stamping_press.yml", "press_line");
    g.edit_config("press", |c| {
        c["source"] =
            serde_yaml::from_str(&format!("{{kind: replay, paths: ['{data_s}']}}")).unwrap();
        c["pace"] = serde_yaml::from_str("{rate: 600}").unwrap();
        c["exit_when_done"] = Value::Bool(true);
    });
    g.edit_config("telemetry", |c| {
        c["decision_log"] = Value::String(log.to_str().unwrap().into());
    });
    g.edit_config("plc", |c| {
        c["link"]["address"] = Value::String(format!("127.0.0.1:{port}"));
    });
    g.remove_node("plc-sim");
    let graph = g.write().to_path_buf();

    let (ok, out) = dora_run(&graph, tmp.path(), 120);
    assert!(ok, "dora run failed:\n{out}");
    // The graph's `keep_warm` timer ran the model between strokes, and was never counted (or
    // scored) as a message.
    let stopped = out
        .lines()
        .find(|l| l.contains("inference stopped"))
        .unwrap_or_else(|| panic!("no stop line from the inference node:\n{out}"));
    let warm_runs: u64 = stopped
        .split("keep_warm_runs=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no keep_warm_runs in: {stopped}"));
    assert!(warm_runs > 0, "{stopped}");
    assert!(
        !out.lines()
            .any(|l| l.contains("run: stopped node=inference") && l.contains("keep_warm")),
        "keep_warm ticks counted as messages:\n{out}"
    );
    // dora-node-api warns once per typed input that it cannot check our custom type URNs (with
    // the whole dataflow in the line): the runtime filters that callsite out of the node logs.
    assert!(
        !out.contains("unknown input type URN"),
        "dora's custom-type warnings reach the logs:\n{}",
        out.chars().take(4000).collect::<String>()
    );
    assert!(
        out.len() < 2_000_000,
        "{} bytes of log for 32 strokes",
        out.len()
    );
    for bad in ["zz_malformed.wav", "zz_short.wav", "zz_rate.wav"] {
        assert!(
            out.lines()
                .any(|l| l.contains("skipped a stroke") && l.contains(bad)),
            "no error naming {bad}:\n{out}"
        );
    }

    // Every stroke, exactly once, with the verdict its label calls for.
    let decisions = read_jsonl(&log);
    let mut seen = BTreeMap::new();
    for d in &decisions {
        let file = Path::new(d["source"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            seen.insert(file.clone(), d.clone()).is_none(),
            "{file} decided twice"
        );
    }
    let mut wrong = Vec::new();
    for (file, want) in &expected {
        match seen.get(file) {
            None => wrong.push(format!("{file}: no decision")),
            Some(d) if d["verdict"] != want.as_str() => {
                wrong.push(format!(
                    "{file}: expected {want}, got {} ({})",
                    d["verdict"], d["reason"]
                ));
            }
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong of {}:\n{}\n{out}",
        wrong.len(),
        expected.len(),
        wrong.join("\n")
    );

    // The PLC saw each decision: a register block write starting at the verdict register (0)
    // carrying verdict, severity, score (2 words), seq (2 words, big-endian words).
    let mut plc_seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut heartbeats = 0;
    while let Ok(w) = writes.try_recv() {
        let address = w["address"].as_u64().unwrap();
        let values: Vec<u64> = w["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        if address == 0 && values.len() >= 6 {
            plc_seen.insert((values[4] << 16) | values[5], values[0]);
        }
        if address == 8 || (address <= 8 && address as usize + values.len() > 8) {
            heartbeats += 1;
        }
    }
    for d in &decisions {
        let seq = d["seq"].as_u64().unwrap();
        let code = plc_seen.get(&seq).copied();
        assert_eq!(
            code,
            Some(verdict_code(d["verdict"].as_str().unwrap())),
            "PLC verdict register for seq {seq}"
        );
    }
    assert!(
        heartbeats >= 2,
        "the heartbeat register must advance (saw {heartbeats} writes)"
    );
}

/// A mono float32 WAV (written by hand: the tests crate has no audio dependency).
fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    let data_len = (samples.len() * 4) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 4).to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&32u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}
