//! The `inference` node's typed config.

use std::path::PathBuf;

use forgeline_inference::{InferenceConfig, ModelDir, ModelError};
use forgeline_runtime::{ConfigProblem, Validate};
use serde::Deserialize;

/// Configuration of `inference`: the model comes from `model_dir` or from a local registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model directory (model.yml + ONNX files), relative to the graph's directory.
    /// Exactly one of `model_dir` and `registry` (default none).
    #[serde(default)]
    pub model_dir: Option<PathBuf>,
    /// Follow the active version of a model in a local registry and switch to a newly
    /// activated one between two messages (hot reload; default none).
    #[serde(default)]
    pub registry: Option<RegistryModel>,
    /// With `registry`: how often the active pointer is looked at, at most, in ms (default
    /// 1000; one `readlink` per check).
    #[serde(default = "default_reload_check_ms")]
    pub reload_check_ms: u64,
    /// ONNX Runtime session settings: variant, provider chain, threads, warm-up, library path,
    /// `max_batch`.
    #[serde(default)]
    pub session: InferenceConfig,
}

fn default_reload_check_ms() -> u64 {
    1000
}

/// A model in a local registry (`forgeline model …`, `operators/registry`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryModel {
    /// The registry root directory.
    pub dir: PathBuf,
    /// Model name, e.g. `press-anomaly`.
    pub name: String,
    /// Device profile, e.g. `x86_64-cpu`.
    pub profile: String,
}

impl RegistryModel {
    /// The registry's `active/<name>/<profile>` pointer (a symlink swapped atomically on each
    /// activation or rollback; see `operators/registry/src/registry.rs`).
    #[must_use]
    pub fn active_link(&self) -> PathBuf {
        self.dir.join("active").join(&self.name).join(&self.profile)
    }
}

impl Config {
    /// A config for one fixed model directory.
    #[must_use]
    pub fn with_model_dir(model_dir: impl Into<PathBuf>, session: InferenceConfig) -> Self {
        Self {
            model_dir: Some(model_dir.into()),
            registry: None,
            reload_check_ms: default_reload_check_ms(),
            session,
        }
    }

    /// The model directory to load now: `model_dir`, or the registry's active version.
    ///
    /// # Errors
    /// A message naming the field and the path when neither resolves.
    pub fn current_dir(&self) -> Result<PathBuf, String> {
        match (&self.model_dir, &self.registry) {
            (Some(dir), None) => Ok(dir.clone()),
            (None, Some(reg)) => {
                let link = reg.active_link();
                std::fs::canonicalize(&link).map_err(|e| {
                    format!(
                        "registry: no active version of {} for profile {} ({}: {e}); run `forgeline model activate`",
                        reg.name,
                        reg.profile,
                        link.display()
                    )
                })
            }
            _ => Err("set exactly one of `model_dir` and `registry`".into()),
        }
    }

    /// Loads and validates the configured model directory.
    ///
    /// # Errors
    /// [`ModelError`] naming the file and field, or the reason the directory is unknown.
    pub fn load_model(&self) -> Result<ModelDir, String> {
        let dir = self.current_dir()?;
        ModelDir::load(&dir).map_err(|e: ModelError| e.to_string())
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = self
            .session
            .problems()
            .into_iter()
            .map(|reason| ConfigProblem {
                field: "session".into(),
                reason,
            })
            .collect();
        if let Err(reason) = self.load_model() {
            problems.push(ConfigProblem {
                field: if self.registry.is_some() {
                    "registry".into()
                } else {
                    "model_dir".into()
                },
                reason,
            });
        }
        problems
    }
}
