//! A graph file as forgeline reads it: nodes, their kind (for built-in nodes), their config text
//! and their edges. Shared by `check`, `score` and `train`.

use forgeline_runtime::CONFIG_ENV;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// Whether a node's `path` is the `forgeline` binary (a built-in node).
pub fn is_forgeline_binary(path: &str) -> bool {
    Path::new(path).file_name().and_then(|n| n.to_str()) == Some("forgeline")
}

/// The built-in kind of a node (`path: …/forgeline`, `args: node <kind>`), if it is one.
pub fn builtin_kind(node: &Value) -> Option<&str> {
    if !is_forgeline_binary(node.get("path")?.as_str()?) {
        return None;
    }
    let mut words = node.get("args")?.as_str()?.split_whitespace();
    match (words.next(), words.next()) {
        (Some("node"), Some(kind)) => Some(kind),
        _ => None,
    }
}

/// A node's `FORGELINE_CONFIG` value: its own `env:`, else the graph-level `env:`.
pub fn config_value<'a>(node: &'a Value, graph_env: Option<&'a Value>) -> Option<&'a Value> {
    node.get("env")
        .and_then(|e| e.get(CONFIG_ENV))
        .or_else(|| graph_env.and_then(|e| e.get(CONFIG_ENV)))
}

/// One node of a graph file.
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// Node id.
    pub id: String,
    /// Built-in kind (`path: …/forgeline`, `args: node <kind>`), if it is one.
    pub kind: Option<String>,
    /// `FORGELINE_CONFIG` text (node-level, else graph-level).
    pub config: Option<String>,
    /// `(input id, source node, source output)` for node-sourced inputs.
    pub inputs: Vec<(String, String, String)>,
}

/// A parsed graph file.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The file it came from.
    pub file: PathBuf,
    /// Its nodes, in file order.
    pub nodes: Vec<GraphNode>,
}

impl Graph {
    /// Reads and parses a graph file.
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it.
    pub fn load(file: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        let doc: Value = serde_yaml::from_str(&text)
            .map_err(|e| format!("{}: not valid YAML: {e}", file.display()))?;
        let nodes = doc
            .get("nodes")
            .and_then(Value::as_sequence)
            .ok_or_else(|| format!("{}: no `nodes:` list", file.display()))?;
        let graph_env = doc.get("env");
        let mut out = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let id = node
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: nodes[{i}]: missing `id`", file.display()))?;
            let kind = builtin_kind(node).map(str::to_owned);
            let config = config_value(node, graph_env)
                .and_then(Value::as_str)
                .map(str::to_owned);
            let inputs = node
                .get("inputs")
                .and_then(Value::as_mapping)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            let src = match v {
                                Value::String(s) => s.as_str(),
                                Value::Mapping(m) => m.get("source")?.as_str()?,
                                _ => return None,
                            };
                            let (n, o) = src.split_once('/')?;
                            let k = k.as_str()?;
                            (n != "dora").then(|| (k.to_owned(), n.to_owned(), o.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(GraphNode {
                id: id.to_owned(),
                kind,
                config,
                inputs,
            });
        }
        Ok(Self {
            file: file.to_path_buf(),
            nodes: out,
        })
    }

    /// The first node of built-in `kind`.
    pub fn node_of_kind(&self, kind: &str) -> Option<&GraphNode> {
        self.nodes.iter().find(|n| n.kind.as_deref() == Some(kind))
    }

    /// The directory node paths and config paths are relative to.
    pub fn dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Runs `f` with the current directory set to `dir`: node config paths are relative to the
/// graph's directory, as under dora, which starts nodes there.
///
/// # Errors
/// `dir` cannot be entered, or `f`'s error.
pub fn in_dir<T>(dir: &Path, f: impl FnOnce() -> eyre::Result<T>) -> eyre::Result<T> {
    use eyre::WrapErr;
    let back = std::env::current_dir()?;
    std::env::set_current_dir(dir).wrap_err_with(|| format!("cannot enter {}", dir.display()))?;
    let r = f();
    std::env::set_current_dir(back)?;
    r
}
