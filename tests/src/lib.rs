//! Helpers for forgeline's cross-crate tests: where the built binaries and the dora CLI are,
//! real peers (pymodbus) started and always stopped, graphs derived from the shipped ones.
//!
//! These tests run the release `forgeline` binary that `scripts/setup.sh` builds (the same one
//! the graphs start), and the dora CLI from the project venv.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

pub mod model_box;

use serde_yaml::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn must_exist(p: PathBuf, hint: &str) -> PathBuf {
    assert!(p.exists(), "{} is missing: {hint}", p.display());
    p
}

/// The release `forgeline` binary the graphs use.
pub fn forgeline() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    must_exist(
        target.join("release/forgeline"),
        "build it with `cargo build --release -p forgeline` (scripts/setup.sh does)",
    )
}

/// The dora CLI of the project venv.
pub fn dora() -> PathBuf {
    must_exist(
        root().join(".venv/bin/dora"),
        "run scripts/setup.sh (pip install dora-rs-cli==1.1.0)",
    )
}

/// The project venv's Python.
pub fn python() -> PathBuf {
    must_exist(root().join(".venv/bin/python"), "run scripts/setup.sh")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped (even when the test fails).
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `forgeline` with `args`, returning (success, stdout, stderr).
pub fn run_forgeline(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let o = Command::new(forgeline())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A pymodbus TCP server (not ours) on `port`; each write request it receives arrives on the
/// returned channel as a JSON value `{"fc", "address", "values"}`.
pub fn pymodbus_server(port: u16) -> (Guard, mpsc::Receiver<serde_json::Value>) {
    python_peer(
        "operators/plc/tests/pymodbus_peer.py",
        port,
        Stdio::inherit(),
        |v| v,
        Duration::from_secs(20),
        "pymodbus server did not start within 20 s",
    )
}

/// Starts a python test peer `<script> server --port <port>` that prints `READY` once it
/// listens, then one JSON object per event on stdout; each one, passed through `pick`, arrives on
/// the returned channel. Panics with `not_ready` if `READY` does not come within `ready_within`.
fn python_peer(
    script: &str,
    port: u16,
    stderr: Stdio,
    pick: fn(serde_json::Value) -> serde_json::Value,
    ready_within: Duration,
    not_ready: &str,
) -> (Guard, mpsc::Receiver<serde_json::Value>) {
    let mut child = Command::new(python())
        .arg(root().join(script))
        .args(["server", "--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("READY") {
                let _ = ready_tx.send(());
            } else if let Ok(v) = serde_json::from_str(&line)
                && tx.send(pick(v)).is_err()
            {
                break;
            }
        }
    });
    let guard = Guard(child);
    ready_rx.recv_timeout(ready_within).expect(not_ready);
    (guard, rx)
}

/// A graph derived from a shipped one, written next to it (so relative paths and `types/`
/// resolve as for the original) and removed when dropped.
pub struct TestGraph {
    /// The parsed graph, to edit before [`TestGraph::write`].
    pub doc: Value,
    path: PathBuf,
}

impl TestGraph {
    /// Loads `graphs/<name>` for editing; `tag` makes the written file name unique.
    pub fn from_shipped(name: &str, tag: &str) -> Self {
        let src = root().join("graphs").join(name);
        let doc = serde_yaml::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
        let path = root()
            .join("graphs")
            .join(format!("_test_{tag}_{}.yml", std::process::id()));
        Self { doc, path }
    }

    fn node_mut(&mut self, id: &str) -> &mut Value {
        self.doc["nodes"]
            .as_sequence_mut()
            .unwrap()
            .iter_mut()
            .find(|n| n["id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("no node `{id}`"))
    }

    /// Edits node `id`'s `FORGELINE_CONFIG` (parsed as YAML).
    pub fn edit_config(&mut self, id: &str, f: impl FnOnce(&mut Value)) {
        let node = self.node_mut(id);
        let text = node["env"]["FORGELINE_CONFIG"]
            .as_str()
            .unwrap_or("{}")
            .to_owned();
        let mut config: Value = serde_yaml::from_str(&text).unwrap();
        if config.is_null() {
            config = Value::Mapping(serde_yaml::Mapping::new());
        }
        f(&mut config);
        if !node["env"].is_mapping() {
            node["env"] = Value::Mapping(serde_yaml::Mapping::new());
        }
        node["env"]["FORGELINE_CONFIG"] = Value::String(serde_yaml::to_string(&config).unwrap());
    }

    /// Edits node `id` itself (inputs, restart policy…).
    pub fn edit_node(&mut self, id: &str, f: impl FnOnce(&mut Value)) {
        f(self.node_mut(id));
    }

    /// Removes node `id`.
    pub fn remove_node(&mut self, id: &str) {
        self.doc["nodes"]
            .as_sequence_mut()
            .unwrap()
            .retain(|n| n["id"].as_str() != Some(id));
    }

    /// Writes the graph and returns its path.
    pub fn write(&self) -> &Path {
        std::fs::write(&self.path, serde_yaml::to_string(&self.doc).unwrap()).unwrap();
        &self.path
    }
}

impl Drop for TestGraph {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A recording of simulated strokes in `dir` (`forgeline simulate --seed … --normal …
/// --per-fault … --first-seq …`): `normal` normal strokes and `per_fault` of each fault
/// family, seqs from `first_seq`.
pub fn simulate_strokes(dir: &Path, seed: u64, normal: usize, per_fault: usize, first_seq: u64) {
    let (ok, out, err) = run_forgeline(
        &[
            "simulate",
            "--out",
            dir.to_str().unwrap(),
            "--seed",
            &seed.to_string(),
            "--normal",
            &normal.to_string(),
            "--per-fault",
            &per_fault.to_string(),
            "--first-seq",
            &first_seq.to_string(),
        ],
        &root(),
    );
    assert!(ok, "simulate: {out}{err}");
}

/// Runs a graph under a real dora daemon (`dora run`, which starts and always stops its own
/// daemon), from `cwd` (where dora writes its `out/` logs). The run ends when every node has
/// finished (`--exit-when-nodes-finish`: timers do not keep it alive), with `--stop-after` as a
/// backstop.
/// Returns (success, combined output).
pub fn dora_run(graph: &Path, cwd: &Path, stop_after_s: u64) -> (bool, String) {
    let o = Command::new(dora())
        .arg("run")
        .arg(graph)
        .arg("--exit-when-nodes-finish")
        .args(["--stop-after", &format!("{stop_after_s}s")])
        .current_dir(cwd)
        .output()
        .unwrap();
    let mut log = String::from_utf8_lossy(&o.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.success(), log)
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The lines of a JSON-lines file that a running graph is still writing: a line still being
/// written (not yet valid JSON) is skipped; a missing file reads as empty.
pub fn read_jsonl_so_far(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Copies the plain files of `from` (not its subdirectories) into `to`, created if needed.
pub fn copy_dir_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `first_seq` of each `model switched` / `model_switched` line an inference node logged in a
/// run's output (`dora_run`), in order.
pub fn model_switched_seqs(out: &str) -> Vec<u64> {
    out.lines()
        .filter(|l| l.contains("model switched") || l.contains("model_switched"))
        .filter_map(|l| {
            let rest = &l[l.find("first_seq")? + "first_seq".len()..];
            let digits: String = rest
                .trim_start_matches(['=', ':', ' ', '"'])
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// `file -> expected verdict` from a simulated dataset's manifest.csv.
pub fn manifest(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("manifest.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.first()?.to_string(), f.get(3)?.to_string()))
        })
        .collect()
}

/// A python `asyncua` OPC UA server (not ours) at `opc.tcp://127.0.0.1:<port>/` with writable
/// variables `ns=2;s=Press.{Reject,Verdict,Severity,Score,Seq,ModelVersion,FailSafe,Heartbeat}`
/// (`operators/plc/tests/asyncua_peer.py`); each Write call it receives arrives on the returned
/// channel as a JSON array of `{"node", "value", "status"}`.
pub fn asyncua_server(port: u16) -> (Guard, mpsc::Receiver<serde_json::Value>) {
    python_peer(
        "operators/plc/tests/asyncua_peer.py",
        port,
        Stdio::null(),
        |v| v["writes"].clone(),
        Duration::from_secs(30),
        "asyncua server did not start within 30 s (pip install -r operators/plc/requirements-test.txt)",
    )
}
