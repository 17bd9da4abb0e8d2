//! Typed node configuration, parsed from the graph file.
//!
//! A node's configuration is one YAML document held in the node's `env:` under
//! [`CONFIG_ENV`] in the graph file, so a whole production line is one file:
//!
//! ```yaml
//! - id: threshold
//!   path: ../target/release/forgeline
//!   args: node threshold
//!   env:
//!     FORGELINE_CONFIG: |
//!       warning: 3.0
//!       critical: 6.0
//! ```
//!
//! Parsing reports *every* problem at once (unknown keys, wrong types), each with the node id and
//! the path of the field, like Vector does: after a field error the offending key is removed and
//! parsing is retried, so one typo does not hide the next.

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::fmt;

/// The `env:` key in the graph file that holds a node's YAML configuration.
pub const CONFIG_ENV: &str = "FORGELINE_CONFIG";

/// One problem in a node's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the field (`bands[2].hi_hz`), or `.` for the document itself.
    pub field: String,
    /// What is wrong and, where possible, what would be right.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

/// A node configuration that cannot be used: names where it came from and every problem in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the configuration came from (graph file or `env FORGELINE_CONFIG`).
    pub origin: String,
    /// The node id in the graph.
    pub node_id: String,
    /// Every problem found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: node `{}`: invalid config ({} problem{})",
            self.origin,
            self.node_id,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Semantic checks that serde cannot express (ranges, orderings). Return every problem found.
pub trait Validate {
    /// Problems with this configuration; empty when it is usable.
    fn validate(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// Parses `text` (YAML; empty or absent means all defaults) into `C`, collecting every problem.
///
/// # Errors
/// A [`ConfigError`] listing every unknown key, wrong type and failed [`Validate`] check.
pub fn parse_config<C: DeserializeOwned + Validate>(
    text: Option<&str>,
    origin: &str,
    node_id: &str,
) -> Result<C, ConfigError> {
    let fail = |problems| ConfigError {
        origin: origin.to_owned(),
        node_id: node_id.to_owned(),
        problems,
    };
    let mut value = match text.map(str::trim) {
        None | Some("") => Value::Mapping(serde_yaml::Mapping::new()),
        Some(t) => serde_yaml::from_str::<Value>(t).map_err(|e| {
            fail(vec![ConfigProblem {
                field: ".".into(),
                reason: format!("not valid YAML: {e}"),
            }])
        })?,
    };
    if value.is_null() {
        value = Value::Mapping(serde_yaml::Mapping::new());
    }
    let mut problems = Vec::new();
    // Each round removes one offending field; bounded by the document size.
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, C>(value.clone()) {
            Ok(config) => {
                if problems.is_empty() {
                    let semantic = config.validate();
                    if semantic.is_empty() {
                        return Ok(config);
                    }
                    return Err(fail(semantic));
                }
                return Err(fail(problems));
            }
            Err(err) => {
                let path = err.path().to_string();
                let inner = err.into_inner().to_string();
                let (field, removed) = locate_and_remove(&mut value, &path, &inner);
                problems.push(ConfigProblem {
                    field,
                    reason: clean_reason(&inner),
                });
                if !removed {
                    return Err(fail(problems));
                }
            }
        }
    }
    Err(fail(problems))
}

/// serde_yaml appends " at line X column Y" relative to the embedded document; keep the text short.
fn clean_reason(reason: &str) -> String {
    reason.to_owned()
}

/// Finds the field an error is about and removes it from the document so parsing can continue.
/// Returns the field's display path and whether something was removed.
fn locate_and_remove(value: &mut Value, path: &str, reason: &str) -> (String, bool) {
    let segments: Vec<Segment> = parse_path(path);
    // "unknown field `x`" errors point at the containing map; the key is in the message.
    let unknown = reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        .map(str::to_owned);
    let mut display = render(&segments);
    let Some(container) = walk_mut(value, &segments[..segments.len().saturating_sub(1)]) else {
        return (display, false);
    };
    match (unknown, segments.last()) {
        (Some(key), _) => {
            // The path printed by serde_path_to_error already ends in the unknown key.
            let target = if matches!(segments.last(), Some(Segment::Key(k)) if *k == key) {
                container
            } else {
                match walk_mut(value, &segments) {
                    Some(v) => v,
                    None => return (display, false),
                }
            };
            if !matches!(segments.last(), Some(Segment::Key(k)) if *k == key) {
                display = if display == "." {
                    key.clone()
                } else {
                    format!("{display}.{key}")
                };
            }
            let removed = target
                .as_mapping_mut()
                .and_then(|m| m.remove(Value::String(key)))
                .is_some();
            (display, removed)
        }
        (None, Some(Segment::Key(k))) => {
            let removed = container
                .as_mapping_mut()
                .and_then(|m| m.remove(Value::String(k.clone())))
                .is_some();
            (display, removed)
        }
        (None, Some(Segment::Index(i))) => {
            let removed = match container.as_sequence_mut() {
                Some(seq) if *i < seq.len() => {
                    seq.remove(*i);
                    true
                }
                _ => false,
            };
            (display, removed)
        }
        (None, None) => (display, false),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Segment> {
    if path == "." || path.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for part in path.split('.') {
        // serde_path_to_error renders sequences as `field[3]` or `[3]`.
        let mut rest = part;
        if let Some(pos) = rest.find('[') {
            let (name, idx) = rest.split_at(pos);
            if !name.is_empty() {
                out.push(Segment::Key(name.to_owned()));
            }
            rest = idx;
            for chunk in rest.split('[').filter(|c| !c.is_empty()) {
                if let Ok(i) = chunk.trim_end_matches(']').parse() {
                    out.push(Segment::Index(i));
                }
            }
        } else if !rest.is_empty() && rest != "?" {
            out.push(Segment::Key(rest.to_owned()));
        }
    }
    out
}

fn render(segments: &[Segment]) -> String {
    let mut s = String::new();
    for seg in segments {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() { ".".into() } else { s }
}

fn walk_mut<'v>(mut value: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    for seg in segments {
        value = match seg {
            Segment::Key(k) => value.as_mapping_mut()?.get_mut(Value::String(k.clone()))?,
            Segment::Index(i) => value.as_sequence_mut()?.get_mut(*i)?,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Band {
        lo_hz: f32,
        hi_hz: f32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        warning: f32,
        critical: f32,
        bands: Vec<Band>,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self {
                warning: 1.0,
                critical: 2.0,
                bands: vec![],
            }
        }
    }
    impl Validate for Cfg {
        fn validate(&self) -> Vec<ConfigProblem> {
            let mut p = Vec::new();
            if self.warning > self.critical {
                p.push(ConfigProblem {
                    field: "warning".into(),
                    reason: format!(
                        "{} is above critical {}; warning must be <= critical",
                        self.warning, self.critical
                    ),
                });
            }
            p
        }
    }

    #[test]
    fn absent_or_empty_config_gives_defaults() {
        let c: Cfg = parse_config(None, "env", "n").unwrap();
        assert_eq!(c, Cfg::default());
        let c: Cfg = parse_config(Some("  \n"), "env", "n").unwrap();
        assert_eq!(c, Cfg::default());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let text = "warnin: 3\ncritical: high\nbands:\n  - lo_hz: 1\n    hi_hzz: 2\n";
        let err = parse_config::<Cfg>(Some(text), "graphs/x.yml", "threshold").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("graphs/x.yml: node `threshold`"), "{msg}");
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"warnin"), "{fields:?}");
        assert!(fields.contains(&"critical"), "{fields:?}");
        assert!(fields.contains(&"bands[0].hi_hzz"), "{fields:?}");
        assert_eq!(err.problems.len(), 3, "{msg}");
        assert!(
            msg.contains("expected one of"),
            "unknown-field hint missing: {msg}"
        );
    }

    #[test]
    fn semantic_validation_runs_after_parsing() {
        let err = parse_config::<Cfg>(Some("warning: 5\ncritical: 1"), "env", "t").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].field, "warning");
    }

    #[test]
    fn malformed_yaml_is_reported() {
        let err = parse_config::<Cfg>(Some("warning: [1"), "env", "t").unwrap_err();
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }
}
