//! `forgeline check <graph.yml>…`: validates graphs and every node's config before anything runs.
//!
//! Checks, per file, and reports every problem with file, node id and field:
//! - the YAML parses and has a `nodes:` list, each node has a unique `id`;
//! - every input names an existing `node/output` (or a `dora/timer/...`), and sets `queue_size`
//!   on purpose (dora's silent default of 10 drops the oldest message under load);
//! - built-in nodes (`path: …/forgeline`, `args: node <kind>`) have a known kind and a valid
//!   `FORGELINE_CONFIG`; other nodes built on the forgeline runtime are asked with `--check-config`;
//! - finally `dora validate --strict-types` checks the graph and its typed ports, when the dora CLI
//!   is installed (the project venv's or one on `PATH`).

use crate::registry;
use forgeline_runtime::CONFIG_ENV;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The graph must not run like this.
    Error,
    /// Worth fixing; the graph can run.
    Warning,
}

/// One finding about a graph file.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// The graph file.
    pub file: PathBuf,
    /// Node id, when the finding is about one node.
    pub node: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(f, "{level}: {}", self.file.display())?;
        if let Some(node) = &self.node {
            write!(f, ": node `{node}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Options for [`check_graph`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Skip `dora validate` even when the CLI is available.
    pub skip_dora: bool,
}

/// Checks one graph file and returns every finding.
pub fn check_graph(file: &Path, opts: &CheckOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut push = |level, node: Option<&str>, message: String| {
        findings.push(Finding {
            level,
            file: file.to_path_buf(),
            node: node.map(str::to_owned),
            message,
        });
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            push(Level::Error, None, format!("cannot read: {e}"));
            return findings;
        }
    };
    let doc: Value = match serde_yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            push(Level::Error, None, format!("not valid YAML: {e}"));
            return findings;
        }
    };
    let Some(nodes) = doc.get("nodes").and_then(Value::as_sequence) else {
        push(
            Level::Error,
            None,
            "no `nodes:` list: a graph is a mapping with a `nodes:` sequence".into(),
        );
        return findings;
    };
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let graph_env = doc.get("env");

    // Pass 1: ids and outputs.
    let mut outputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let Some(id) = node.get("id").and_then(Value::as_str) else {
            push(Level::Error, None, format!("nodes[{i}]: missing `id`"));
            continue;
        };
        if outputs.contains_key(id) {
            push(Level::Error, Some(id), "duplicate node id".into());
        }
        let outs = node
            .get("outputs")
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        outputs.insert(id.to_owned(), outs);
    }

    // Pass 2: inputs, kinds, configs.
    for node in nodes {
        let Some(id) = node.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Some(inputs) = node.get("inputs").and_then(Value::as_mapping) {
            for (name, spec) in inputs {
                let name = name.as_str().unwrap_or("?");
                let (source, queue) = match spec {
                    Value::String(s) => (Some(s.as_str()), None),
                    Value::Mapping(m) => (
                        m.get("source").and_then(Value::as_str),
                        m.get("queue_size").and_then(Value::as_u64),
                    ),
                    _ => (None, None),
                };
                let Some(source) = source else {
                    push(
                        Level::Error,
                        Some(id),
                        format!("input `{name}`: no source (expected `node/output`)"),
                    );
                    continue;
                };
                if source.starts_with("dora/") {
                    continue;
                }
                match source.split_once('/') {
                    Some((from, output)) => match outputs.get(from) {
                        None => push(
                            Level::Error,
                            Some(id),
                            format!("input `{name}`: source node `{from}` does not exist"),
                        ),
                        Some(outs) if !outs.contains(output) => push(
                            Level::Error,
                            Some(id),
                            format!(
                                "input `{name}`: node `{from}` has no output `{output}` (it has: {})",
                                outs.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ),
                        Some(_) => {}
                    },
                    None => push(
                        Level::Error,
                        Some(id),
                        format!("input `{name}`: source `{source}` is not `node/output`"),
                    ),
                }
                if queue.is_none() {
                    push(
                        Level::Warning,
                        Some(id),
                        format!(
                            "input `{name}`: no `queue_size`; dora's default of 10 drops the oldest message silently under load — size it on purpose"
                        ),
                    );
                }
            }
        }

        let config_text = match crate::graph::config_value(node, graph_env) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                push(
                    Level::Error,
                    Some(id),
                    format!("env `{CONFIG_ENV}` must be a YAML text block (use `|`)"),
                );
                continue;
            }
        };
        let path = node.get("path").and_then(Value::as_str);
        let args = node.get("args").and_then(Value::as_str).unwrap_or("");
        let origin = file.display().to_string();
        let Some(path) = path else {
            continue; // operators / custom runtimes: dora validate covers them
        };
        if crate::graph::is_forgeline_binary(path) {
            let mut words = args.split_whitespace();
            if words.next() != Some("node") {
                push(
                    Level::Error,
                    Some(id),
                    format!(
                        "`args: {args}`: built-in nodes are started as `args: node <kind>` (kinds: {})",
                        registry::names()
                    ),
                );
                continue;
            }
            let Some(kind) = words.next() else {
                push(
                    Level::Error,
                    Some(id),
                    format!("`args`: missing node kind (kinds: {})", registry::names()),
                );
                continue;
            };
            match registry::find(kind) {
                None => push(
                    Level::Error,
                    Some(id),
                    format!("unknown node kind `{kind}` (kinds: {})", registry::names()),
                ),
                Some(k) => {
                    let checked = crate::graph::in_dir(base, || {
                        Ok((k.check)(config_text.as_deref(), &origin, id))
                    })
                    .unwrap_or_else(|e| {
                        Err(forgeline_runtime::ConfigError {
                            origin: origin.clone(),
                            node_id: id.to_owned(),
                            problems: vec![forgeline_runtime::ConfigProblem {
                                field: ".".into(),
                                reason: e.to_string(),
                            }],
                        })
                    });
                    if let Err(e) = checked {
                        for p in e.problems {
                            push(Level::Error, Some(id), format!("config ({kind}): {p}"));
                        }
                    }
                }
            }
        } else if let Some(text) = &config_text {
            // A custom node on the forgeline runtime: ask the binary itself.
            let exe = base.join(path);
            if exe.is_file() {
                match Command::new(&exe)
                    .args(args.split_whitespace())
                    .arg("--check-config")
                    .env(CONFIG_ENV, text)
                    .env("FORGELINE_NODE_ID", id)
                    .output()
                {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => {
                        let report = String::from_utf8_lossy(&o.stderr);
                        push(
                            Level::Error,
                            Some(id),
                            format!("config: {}", report.trim().trim_start_matches("Error: ")),
                        );
                    }
                    Err(e) => push(
                        Level::Warning,
                        Some(id),
                        format!("cannot run `{}` --check-config: {e}", exe.display()),
                    ),
                }
            } else {
                push(
                    Level::Warning,
                    Some(id),
                    format!(
                        "`{}` is not built yet; its config was not checked",
                        exe.display()
                    ),
                );
            }
        }
    }

    if !opts.skip_dora {
        match dora_cli() {
            Some(dora) => match Command::new(&dora)
                .args(["validate", "--strict-types"])
                .arg(file)
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => push(
                    Level::Error,
                    None,
                    format!(
                        "`dora validate --strict-types` failed:\n{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                ),
                Err(e) => push(
                    Level::Warning,
                    None,
                    format!("cannot run {}: {e}", dora.display()),
                ),
            },
            None => push(
                Level::Warning,
                None,
                "dora CLI not found (run scripts/setup.sh); typed ports not checked".into(),
            ),
        }
    }
    findings
}

/// The dora CLI: `DORA_CLI`, the project venv's, or the one on `PATH`.
pub fn dora_cli() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DORA_CLI") {
        return Some(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let candidate = d.join(".venv/bin/dora");
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("dora"))
            .find(|p| p.is_file())
    })
}
