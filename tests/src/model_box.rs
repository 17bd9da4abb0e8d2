//! An edge box for the model-lifecycle tests (`hot_reload_line`, `probation_line`): a key pair
//! (the publishing side), a local registry in a temp dir that trusts it, signed packages of the
//! shipped press model, a finite recording of normal strokes, and the shipped press line
//! following the registry. Every step goes through the `forgeline model …` CLI, as an operator
//! would run it.

use crate::{
    TestGraph, copy_dir_files, dora_run, free_port, read_jsonl_so_far, root, run_forgeline,
};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A temp box with a registry (see the module doc). Dropping it removes everything.
pub struct ModelBox {
    tmp: tempfile::TempDir,
    /// The registry root.
    pub reg: String,
    /// The device profile the registry is used with.
    pub profile: String,
}

/// `forgeline <args>` from the repository root: (success, stdout, stderr).
pub fn fl(args: &[&str]) -> (bool, String, String) {
    run_forgeline(args, &root())
}

impl ModelBox {
    /// A key pair in `keys/`, and a registry in `reg/` that trusts its public key.
    pub fn new(profile: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let reg = tmp.path().join("reg").to_str().unwrap().to_owned();
        let b = Self {
            tmp,
            reg,
            profile: profile.to_owned(),
        };
        let (ok, out, err) = fl(&["model", "keygen", "--dir", &b.path("keys")]);
        assert!(ok, "keygen: {out}{err}");
        std::fs::create_dir_all(b.dir().join("reg/trusted-keys")).unwrap();
        std::fs::copy(
            b.dir().join("keys/forgeline.pub"),
            b.dir().join("reg/trusted-keys/forgeline.pub"),
        )
        .unwrap();
        b
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `p` inside the temp dir, as a string.
    pub fn path(&self, p: &str) -> String {
        self.dir().join(p).to_str().unwrap().to_owned()
    }

    /// `forgeline model <args> --registry <reg> --profile <profile>`.
    pub fn model(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["model"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--registry", &self.reg, "--profile", &self.profile]);
        fl(&all)
    }

    /// The shipped press model as `version`, its `model.yml` text changed by `edit`, with its
    /// own reference set and signed with the box's key. Returns the package directory.
    pub fn package(&self, version: &str, edit: impl FnOnce(String) -> String) -> String {
        let pkg = self.dir().join(format!("pkg-{version}"));
        copy_dir_files(&root().join("models/press-anomaly"), &pkg);
        let yml = std::fs::read_to_string(pkg.join("model.yml")).unwrap();
        assert!(yml.contains("version: 1.0.0"), "model.yml changed: {yml}");
        let yml = yml.replacen("version: 1.0.0", &format!("version: {version}"), 1);
        std::fs::write(pkg.join("model.yml"), edit(yml)).unwrap();
        let p = pkg.to_str().unwrap().to_owned();
        let (ok, out, err) = fl(&["model", "reference", &p, "--per-label", "3"]);
        assert!(ok, "reference {version}: {out}{err}");
        let key = self.path("keys/forgeline.key");
        let (ok, out, err) = fl(&["model", "sign", &p, "--key", &key]);
        assert!(ok, "sign {version}: {out}{err}");
        p
    }

    /// Installs package `pkg` into the registry.
    pub fn install(&self, pkg: &str) {
        let (ok, out, err) = self.model(&["install", pkg]);
        assert!(ok, "install {pkg}: {out}{err}");
    }

    /// Activates `press-anomaly@version`.
    pub fn activate(&self, version: &str) {
        let (ok, out, err) =
            self.model(&["activate", "press-anomaly", version, "--reason", "test"]);
        assert!(ok, "activate {version}: {out}{err}");
    }

    /// `n` normal simulated strokes (seed 11) written as a recording; returns its directory.
    pub fn strokes(&self, n: usize) -> String {
        let data = self.path("strokes");
        crate::simulate_strokes(Path::new(&data), 11, n, 0, 0);
        data
    }

    /// The shipped press line replaying `strokes` at 20 strokes/s and then exiting, its
    /// inference node following this registry (`registry: {dir, name, profile<extra>}`,
    /// `reload_check_ms: 50`), decisions logged to `log`, the PLC at `127.0.0.1:<plc_port>`
    /// (no `plc-sim`). `tag` names the graph file.
    pub fn press_line(
        &self,
        tag: &str,
        strokes: &str,
        registry_extra: &str,
        plc_port: u16,
        log: &Path,
    ) -> TestGraph {
        let mut g = TestGraph::from_shipped("stamping_press.yml", tag);
        g.edit_config("press", |c| {
            c["source"] =
                serde_yaml::from_str(&format!("{{kind: replay, paths: ['{strokes}']}}")).unwrap();
            c["pace"] = serde_yaml::from_str("{rate: 1200}").unwrap(); // 20 strokes/s
            c["exit_when_done"] = Value::Bool(true);
        });
        g.edit_config("inference", |c| {
            let m = c.as_mapping_mut().unwrap();
            m.remove("model_dir");
            m.insert(
                "registry".into(),
                serde_yaml::from_str(&format!(
                    "{{dir: '{}', name: press-anomaly, profile: {}{registry_extra}}}",
                    self.reg, self.profile
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
            c["link"]["address"] = Value::String(format!("127.0.0.1:{plc_port}"));
        });
        g.remove_node("plc-sim");
        g
    }
}

impl ModelBox {
    /// Runs `graph` under dora (from the box's dir, at most 120 s) and, once `log` holds at
    /// least `after` decisions, `forgeline model <args>` on this registry from a second thread,
    /// as an operator would mid-run. Returns (run ok, run output, `Some((decisions seen, CLI
    /// result))` or `None` when the line never logged that many).
    #[allow(clippy::type_complexity)] // (ok, output, optional (seen, CLI result))
    pub fn run_line_and(
        &self,
        graph: &Path,
        log: &Path,
        after: usize,
        args: &[&str],
    ) -> (bool, String, Option<(usize, (bool, String, String))>) {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let cli = s.spawn(|| {
                let started = Instant::now();
                while !done.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                    let seen = read_jsonl_so_far(log).len();
                    if seen >= after {
                        return Some((seen, self.model(args)));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            });
            let (ok, out) = dora_run(graph, self.dir(), 120);
            done.store(true, Ordering::SeqCst);
            (ok, out, cli.join().unwrap())
        })
    }
}

/// The decision log as seq → model version, asserting that every seq between the first and the
/// last was decided exactly once and that there are `strokes` of them (`out`: the run's output,
/// for the failure report).
pub fn decided_once(log: &Path, strokes: usize, out: &str) -> BTreeMap<u64, String> {
    let mut by_seq: BTreeMap<u64, String> = BTreeMap::new();
    for d in &read_jsonl_so_far(log) {
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
        "lost strokes {missing:?} (a node restarted by dora mid-run? {})\n{out}",
        out.contains("node restarted by dora")
    );
    assert_eq!(
        by_seq.len(),
        strokes,
        "every replayed stroke must be decided (seqs {first}..={last})\n{out}"
    );
    by_seq
}
