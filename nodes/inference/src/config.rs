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
    /// Maximum model age policy, days since `created` in `model.yml`: checked with the first
    /// message, on every model switch and then once per hour; health alarm `model_too_old`
    /// when exceeded (default none: not checked).
    #[serde(default)]
    pub max_model_age_days: Option<f64>,
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
    /// The public keys a rollback re-verifies the previous version with (default
    /// `<dir>/trusted-keys`, as `forgeline model … --registry <dir>`).
    #[serde(default)]
    pub trusted_keys: Option<PathBuf>,
    /// Health checks of a version on probation, measured from what this node scores (default:
    /// every 10 s, 50 rows, flag rate 20 %, no latency limit).
    #[serde(default)]
    pub health: HealthCheck,
}

/// How the node judges a version on probation (`registry.health`); see
/// `forgeline_registry::probation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Judge the scored rows at most this often, ms of message time (`now_ns`, not a timer;
    /// default 10000, at least 1).
    #[serde(default = "default_check_every_ms")]
    pub check_every_ms: u64,
    /// Scored rows a window needs before it is judged (default 50, at least 1).
    #[serde(default = "default_min_rows")]
    pub min_rows: u32,
    /// Highest healthy share of scored rows with `score > thresholds.warning` of the model
    /// itself, 0..=1 (default 0.2; the shipped press model's calibrated false-reject rate is
    /// 0.19 %).
    #[serde(default = "default_max_flag_rate")]
    pub max_flag_rate: f64,
    /// Highest healthy p99 of the inference time per row, ms (default none: not judged).
    #[serde(default)]
    pub max_p99_inference_ms: Option<f64>,
}

fn default_check_every_ms() -> u64 {
    10_000
}

fn default_min_rows() -> u32 {
    50
}

fn default_max_flag_rate() -> f64 {
    0.2
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            check_every_ms: default_check_every_ms(),
            min_rows: default_min_rows(),
            max_flag_rate: default_max_flag_rate(),
            max_p99_inference_ms: None,
        }
    }
}

impl HealthCheck {
    /// The limits of the pure health window.
    #[must_use]
    pub fn limits(&self) -> forgeline_registry::probation::HealthLimits {
        forgeline_registry::probation::HealthLimits {
            min_rows: self.min_rows,
            max_flag_rate: self.max_flag_rate,
            max_p99_inference_ms: self.max_p99_inference_ms,
        }
    }

    /// Every out-of-range key, named by its field path.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, reason: String| {
            problems.push(ConfigProblem {
                field: format!("registry.health.{field}"),
                reason,
            });
        };
        if self.check_every_ms == 0 {
            bad("check_every_ms", "is 0, expected at least 1 (ms)".into());
        }
        if self.min_rows == 0 {
            bad("min_rows", "is 0, expected at least 1 row".into());
        }
        if !(0.0..=1.0).contains(&self.max_flag_rate) {
            bad(
                "max_flag_rate",
                format!(
                    "is {}, expected a share between 0 and 1 (0.2 = 20 %)",
                    self.max_flag_rate
                ),
            );
        }
        if let Some(ms) = self.max_p99_inference_ms
            && !(ms.is_finite() && ms > 0.0)
        {
            bad(
                "max_p99_inference_ms",
                format!("is {ms}, expected a positive number of ms"),
            );
        }
        problems
    }
}

impl RegistryModel {
    /// The registry's `active/<name>/<profile>` pointer (a symlink swapped atomically on each
    /// activation or rollback; see `operators/registry/src/registry.rs`).
    #[must_use]
    pub fn active_link(&self) -> PathBuf {
        self.dir.join("active").join(&self.name).join(&self.profile)
    }

    /// The trusted-keys directory: `trusted_keys`, or `<dir>/trusted-keys`.
    #[must_use]
    pub fn trusted_keys_dir(&self) -> PathBuf {
        self.trusted_keys
            .clone()
            .unwrap_or_else(|| self.dir.join("trusted-keys"))
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
            max_model_age_days: None,
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
        if let Some(reg) = &self.registry {
            problems.extend(reg.health.problems());
        }
        if let Some(days) = self.max_model_age_days
            && !(days.is_finite() && days > 0.0)
        {
            problems.push(ConfigProblem {
                field: "max_model_age_days".into(),
                reason: format!("is {days}, expected a positive number of days"),
            });
        }
        problems
    }
}
