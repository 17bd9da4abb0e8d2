//! The model directory: `model.yml` (format 1) beside the ONNX files it describes.
//!
//! The format is documented in this crate's README. [`ModelDir::load`] parses `model.yml`
//! (unknown keys are rejected), checks that it is self-consistent and that every listed ONNX
//! file exists with the recorded size and sha256, and reports every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the metadata file inside a model directory.
pub const MODEL_FILE: &str = "model.yml";

/// The only `format` this crate reads.
pub const MODEL_FORMAT: u32 = 1;

/// Why a model directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `model.yml` is not valid YAML for format 1 (syntax error, unknown key, wrong type).
    #[error("{path}: {source} (see operators/inference/README.md for the model.yml format)")]
    Yaml {
        /// The `model.yml` file.
        path: PathBuf,
        /// The parser's message, with line and column.
        source: serde_yaml::Error,
    },
    /// `model.yml` parsed, but its content is wrong or does not match the files beside it.
    #[error("{path}: {} problem(s):\n{}", problems.len(), ProblemList(problems))]
    Invalid {
        /// The `model.yml` file.
        path: PathBuf,
        /// Every problem found, each naming its field.
        problems: Vec<Problem>,
    },
}

/// One problem in a `model.yml`: the field (`variants.int8.sha256`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field, e.g. `inputs[0].normalization.std`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// What the model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One anomaly score per row (higher is more anomalous).
    Anomaly,
    /// One probability per label per row.
    Classification,
}

/// A numeric precision in which the model is shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantKind {
    /// 32-bit float model.
    Fp32,
    /// INT8 statically quantized (QDQ) model.
    Int8,
}

impl VariantKind {
    /// The name used in `model.yml` and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Int8 => "int8",
        }
    }
}

impl fmt::Display for VariantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Element type of a model input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// 32-bit float (the only type the scorer feeds or reads today).
    F32,
}

/// Per-feature standardisation applied before the model: `(x - mean) / std`. Both lists empty
/// (the default) means no standardisation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Mean of each feature on the training data.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature on the training data (all > 0).
    pub std: Vec<f32>,
}

/// The model's input tensor.
///
/// Two kinds of input: a **feature vector** (`shape: [-1, N]`, `features` names the N columns,
/// `normalization` standardises them) or an **image-like tensor** (`shape: [-1, C, H, W]` or any
/// rank above 2 with fixed dimensions after the batch; `features` and `normalization` empty:
/// the preprocessing node delivers model-ready values, see `docs/inference.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Shape, `-1` for the batch dimension: `[-1, n_features]` or `[-1, C, H, W]`.
    pub shape: Vec<i64>,
    /// Element type.
    pub dtype: DType,
    /// Feature names, in the order the model expects them (empty for tensors of rank > 2).
    #[serde(default)]
    pub features: Vec<String>,
    /// Standardisation applied by the scorer before the model (empty = none; required for
    /// feature vectors).
    #[serde(default)]
    pub normalization: Normalization,
    /// Memory layout of tensor inputs (`nchw`, `nhwc` or `flat`), checked against each `Tensor`
    /// message's `layout` (default none: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
}

impl InputSpec {
    /// Values per row: the product of the dimensions after the batch dimension (0 when one of
    /// them is not fixed).
    #[must_use]
    pub fn row_len(&self) -> usize {
        self.shape
            .iter()
            .skip(1)
            .map(|d| usize::try_from(*d).unwrap_or(0))
            .product()
    }
}

/// The model's output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Shape: `[-1]` (one score per row) or `[-1, n_labels]`.
    pub shape: Vec<i64>,
    /// Element type.
    pub dtype: DType,
}

/// One ONNX file of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantFile {
    /// File name, relative to the model directory.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Decision thresholds on the score (anomaly) or on the top non-first-label probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Score above which a stroke is flagged.
    pub warning: f64,
    /// Score above which a stroke is rejected.
    pub critical: f64,
}

/// How the thresholds were calibrated (held-out normal strokes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Number of held-out normal strokes scored.
    pub n_samples: u64,
    /// Variant whose scores were used.
    #[serde(default)]
    pub variant: Option<VariantKind>,
    /// Warning = max normal score x this margin.
    #[serde(default)]
    pub warning_margin: Option<f64>,
    /// Critical = max normal score x this margin.
    #[serde(default)]
    pub critical_margin: Option<f64>,
    /// Score quantiles on normal data (`p50`, `p90`, `p99`, `p99_5`, `p99_9`, `max`).
    pub quantiles: BTreeMap<String, f64>,
    /// Share of validation normal strokes above the warning threshold, percent.
    #[serde(default)]
    pub validation_false_reject_pct: Option<f64>,
}

/// FP32 vs INT8 comparison made when the model was quantized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Int8Check {
    /// Metric compared (e.g. `balanced_accuracy_pct`).
    pub metric: String,
    /// Metric of the FP32 model.
    pub fp32: f64,
    /// Metric of the INT8 model.
    pub int8: f64,
    /// `fp32 - int8`, in points.
    pub drop_points: f64,
    /// Largest accepted drop.
    pub max_drop_points: f64,
    /// Whether INT8 was accepted (otherwise only FP32 ships).
    pub accepted: bool,
    /// Share of rows with the same decision, percent.
    pub decision_agreement_pct: f64,
    /// Pearson correlation of FP32 and INT8 scores.
    pub score_correlation: f64,
    /// FP32 file size, bytes.
    pub fp32_size: u64,
    /// INT8 file size, bytes.
    pub int8_size: u64,
    /// `fp32_size / int8_size`.
    pub size_ratio: f64,
    /// Rows used to calibrate the quantization ranges.
    pub calibration_rows: u64,
    /// Whether weights had per-channel scales.
    pub per_channel: bool,
}

/// What the model was trained on (informational; every field optional).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // Field names are self-describing training statistics.
pub struct TrainingSummary {
    pub source: Option<String>,
    pub rows: Option<u64>,
    pub files: Option<u64>,
    pub split_by_file: Option<bool>,
    pub train_rows: Option<u64>,
    pub calibration_rows: Option<u64>,
    pub validation_rows: Option<u64>,
    pub synthetic_faults: Option<u64>,
    pub seed: Option<u64>,
    pub algorithm: Option<String>,
    pub parameters: Option<u64>,
    pub epochs: Option<u64>,
    pub final_loss: Option<f64>,
    pub constant_features: Option<Vec<String>>,
    pub onnx_vs_numpy_max_abs: Option<f64>,
}

/// The content of `model.yml`, format 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Format version of this file; must be 1.
    pub format: u32,
    /// Model name, e.g. `press-anomaly`.
    pub name: String,
    /// Model version, semver.
    pub version: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// What the model computes.
    pub task: Task,
    /// Feature set of the input (e.g. `press-v1`).
    pub feature_set: String,
    /// Input tensors (exactly one today).
    pub inputs: Vec<InputSpec>,
    /// Output tensors (exactly one today).
    pub outputs: Vec<OutputSpec>,
    /// ONNX files by precision.
    pub variants: BTreeMap<VariantKind, VariantFile>,
    /// Variant used when the config says `auto`.
    pub default_variant: VariantKind,
    /// Decision thresholds.
    pub thresholds: Thresholds,
    /// Class labels (classification only; empty for anomaly models).
    #[serde(default)]
    pub labels: Vec<String>,
    /// The label of good parts (classification only; default: the first label). The score of
    /// a classified item is `1 - P(good_label)`, the probability that it must be rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_label: Option<String>,
    /// Threshold calibration summary.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// FP32 vs INT8 comparison.
    #[serde(default)]
    pub int8_check: Option<Int8Check>,
    /// Training data summary.
    #[serde(default)]
    pub training: Option<TrainingSummary>,
    /// Per-feature training distributions for drift detection (`drift:` section written by
    /// `tools/python/forgeline_ml/drift_reference.py`); kept untyped here and parsed and
    /// validated by `forgeline-drift` (`DriftReference`), which owns its format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<serde_yaml::Value>,
    /// How images are prepared for an image model (`preprocess:` section, read by the
    /// `image-preprocess` node). Inside `model.yml`, so covered by its signature. Default none
    /// (the node's own defaults: stretch, mean 0, std 1, pad 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessMeta>,
}

/// How an image is fitted to the model's input size (`preprocess.resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeKind {
    /// Scale each axis independently (aspect ratio not kept).
    Stretch,
    /// Keep the aspect ratio, cover the target and cut the centre.
    CenterCrop,
    /// Keep the aspect ratio, fit the whole frame, border filled with `pad`.
    Letterbox,
}

/// Preprocessing of an image model (`preprocess:` in `model.yml`); every key optional, the
/// `image-preprocess` node's defaults apply to the missing ones.
///
/// ```yaml
/// preprocess:
///   resize: stretch
///   mean: [0.0]
///   std: [1.0]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessMeta {
    /// `stretch`, `center_crop` or `letterbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeKind>,
    /// Per-channel mean on the 0..1 pixel scale (one value, or one per channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation on the 0..1 pixel scale (one value, or one per channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    /// Letterbox border, raw pixel value 0..255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<u8>,
}

/// A validated model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: PathBuf,
    meta: ModelMeta,
}

impl ModelDir {
    /// Read and validate `<dir>/model.yml` and the ONNX files it lists (existence, size, sha256).
    ///
    /// # Errors
    /// [`ModelError::Io`] when `model.yml` cannot be read, [`ModelError::Yaml`] when it does not
    /// parse (unknown keys included), [`ModelError::Invalid`] with every problem found otherwise.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, ModelError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MODEL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let meta: ModelMeta = serde_yaml::from_str(&text).map_err(|source| ModelError::Yaml {
            path: path.clone(),
            source,
        })?;
        let mut problems = meta.problems();
        for (kind, variant) in &meta.variants {
            check_variant_file(&dir, *kind, variant, &mut problems);
        }
        if problems.is_empty() {
            Ok(Self { dir, meta })
        } else {
            Err(ModelError::Invalid { path, problems })
        }
    }

    /// The directory holding `model.yml`.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed metadata.
    #[must_use]
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// `name@version`, as carried in `Score::model_version`.
    #[must_use]
    pub fn model_version(&self) -> String {
        format!("{}@{}", self.meta.name, self.meta.version)
    }

    /// Path of the ONNX file of `kind`, if the model ships that variant.
    #[must_use]
    pub fn variant_path(&self, kind: VariantKind) -> Option<PathBuf> {
        self.meta
            .variants
            .get(&kind)
            .map(|v| self.dir.join(&v.file))
    }

    /// The single input's spec (validated to exist).
    #[must_use]
    pub fn input(&self) -> &InputSpec {
        &self.meta.inputs[0]
    }

    /// Index in `labels` of the good class (classification models): `good_label`, or 0.
    #[must_use]
    pub fn good_index(&self) -> usize {
        self.meta
            .good_label
            .as_ref()
            .and_then(|g| self.meta.labels.iter().position(|l| l == g))
            .unwrap_or(0)
    }

    /// The single output's spec (validated to exist).
    #[must_use]
    pub fn output(&self) -> &OutputSpec {
        &self.meta.outputs[0]
    }
}

impl ModelMeta {
    /// Every consistency problem of the metadata on its own (files are not looked at).
    #[must_use]
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                field: field.to_owned(),
                message,
            })
        };
        if self.format != MODEL_FORMAT {
            bad(
                "format",
                format!("{} is not supported, expected {MODEL_FORMAT}", self.format),
            );
        }
        if self.name.trim().is_empty() {
            bad(
                "name",
                "is empty, expected a model name such as press-anomaly".into(),
            );
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            bad(
                "version",
                format!(
                    "{:?} is not semver ({e}), expected MAJOR.MINOR.PATCH such as 1.0.0",
                    self.version
                ),
            );
        }
        if self.created.trim().is_empty() {
            bad("created", "is empty, expected an RFC 3339 time".into());
        }
        if self.inputs.len() == 1 && self.inputs[0].shape.len() > 2 {
            let input = &self.inputs[0];
            if input.shape.iter().skip(1).any(|d| *d <= 0) {
                bad(
                    "inputs[0].shape",
                    format!(
                        "is {:?}, expected fixed dimensions > 0 after the batch dimension",
                        input.shape
                    ),
                );
            }
            if !input.features.is_empty() {
                bad(
                    "inputs[0].features",
                    "must be empty for a tensor input of rank > 2".into(),
                );
            }
            if !(input.normalization.mean.is_empty() && input.normalization.std.is_empty()) {
                bad(
                    "inputs[0].normalization",
                    "must be empty for a tensor input of rank > 2 (normalise in the preprocessing node)".into(),
                );
            }
        } else if self.inputs.len() == 1 {
            let input = &self.inputs[0];
            let n = input.features.len();
            if n == 0 {
                bad(
                    "inputs[0].features",
                    "is empty, expected the ordered feature names".into(),
                );
            }
            if input.shape.len() != 2 || input.shape[1] != i64::try_from(n).unwrap_or(-1) {
                bad(
                    "inputs[0].shape",
                    format!(
                        "is {:?}, expected [-1, {n}] (batch, one column per listed feature)",
                        input.shape
                    ),
                );
            }
            let norm = &input.normalization;
            let none = norm.mean.is_empty() && norm.std.is_empty();
            if norm.mean.len() != n && !none {
                bad(
                    "inputs[0].normalization.mean",
                    format!(
                        "has {} values, expected {n} (one per feature)",
                        norm.mean.len()
                    ),
                );
            }
            if norm.std.len() != n && !none {
                bad(
                    "inputs[0].normalization.std",
                    format!(
                        "has {} values, expected {n} (one per feature)",
                        norm.std.len()
                    ),
                );
            }
            if let Some(i) = norm.mean.iter().position(|v| !v.is_finite()) {
                bad(
                    "inputs[0].normalization.mean",
                    format!("value {i} ({}) is not finite", norm.mean[i]),
                );
            }
            if let Some(i) = norm.std.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                let name = input.features.get(i).map_or("?", String::as_str);
                bad(
                    "inputs[0].normalization.std",
                    format!(
                        "value {i} ({name}) is {}, expected a finite value > 0",
                        norm.std[i]
                    ),
                );
            }
        } else {
            bad(
                "inputs",
                format!("has {} entries, expected exactly 1", self.inputs.len()),
            );
        }
        if let Some(pre) = &self.preprocess {
            let channels = self.inputs.first().filter(|i| i.shape.len() == 4).map(|i| {
                match i.layout.as_deref() {
                    Some("nhwc") => i.shape[3],
                    _ => i.shape[1],
                }
            });
            if channels.is_none() {
                bad(
                    "preprocess",
                    "is only for image models (input shape [-1, C, H, W] or [-1, H, W, C])".into(),
                );
            }
            for (key, values) in [("mean", &pre.mean), ("std", &pre.std)] {
                let Some(values) = values else { continue };
                let fits = values.len() == 1
                    || channels.is_some_and(|c| i64::try_from(values.len()) == Ok(c));
                if !fits {
                    bad(
                        &format!("preprocess.{key}"),
                        format!(
                            "has {} values, expected 1 or one per input channel ({})",
                            values.len(),
                            channels.map_or_else(|| "?".into(), |c| c.to_string())
                        ),
                    );
                }
                let wrong = |v: &f32| !v.is_finite() || (key == "std" && *v <= 0.0);
                if let Some(i) = values.iter().position(wrong) {
                    bad(
                        &format!("preprocess.{key}"),
                        format!(
                            "value {i} is {}, expected a finite value{}",
                            values[i],
                            if key == "std" { " > 0" } else { "" }
                        ),
                    );
                }
            }
        }
        if self.outputs.len() == 1 {
            let shape = &self.outputs[0].shape;
            match self.task {
                Task::Anomaly => {
                    if !(shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) {
                        bad(
                            "outputs[0].shape",
                            format!("is {shape:?}, expected [-1] or [-1, 1] (one score per row)"),
                        );
                    }
                    if !self.labels.is_empty() {
                        bad("labels", "must be empty for task anomaly".into());
                    }
                }
                Task::Classification => {
                    let n = i64::try_from(self.labels.len()).unwrap_or(-1);
                    if let Some(good) = &self.good_label
                        && !self.labels.contains(good)
                    {
                        bad(
                            "good_label",
                            format!("{good:?} is not one of labels {:?}", self.labels),
                        );
                    }
                    if self.labels.len() < 2 {
                        bad(
                            "labels",
                            format!(
                                "has {} labels, expected at least 2 for task classification",
                                self.labels.len()
                            ),
                        );
                    }
                    if shape.len() != 2 || shape[1] != n {
                        bad(
                            "outputs[0].shape",
                            format!("is {shape:?}, expected [-1, {n}] (one probability per label)"),
                        );
                    }
                }
            }
        } else {
            bad(
                "outputs",
                format!("has {} entries, expected exactly 1", self.outputs.len()),
            );
        }
        if self.variants.is_empty() {
            bad("variants", "is empty, expected at least fp32".into());
        }
        if !self.variants.contains_key(&self.default_variant) {
            bad(
                "default_variant",
                format!(
                    "is {}, but variants lists no such file",
                    self.default_variant
                ),
            );
        }
        let t = self.thresholds;
        if !(t.warning.is_finite() && t.critical.is_finite() && t.warning < t.critical) {
            bad(
                "thresholds",
                format!(
                    "warning {} / critical {}: expected finite values with warning < critical",
                    t.warning, t.critical
                ),
            );
        }
        out
    }
}

fn check_variant_file(
    dir: &Path,
    kind: VariantKind,
    variant: &VariantFile,
    problems: &mut Vec<Problem>,
) {
    let field = |f: &str| format!("variants.{kind}.{f}");
    let rel = Path::new(&variant.file);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        problems.push(Problem {
            field: field("file"),
            message: format!(
                "{:?} must be a plain relative path inside the model directory",
                variant.file
            ),
        });
        return;
    }
    let path = dir.join(rel);
    let (size, digest) = match hash_file(&path) {
        Ok(found) => found,
        Err(e) => {
            problems.push(Problem {
                field: field("file"),
                message: format!("cannot read {}: {e}", path.display()),
            });
            return;
        }
    };
    if size != variant.size {
        problems.push(Problem {
            field: field("size"),
            message: format!(
                "{} has {size} bytes, model.yml says {} (file changed or truncated)",
                path.display(),
                variant.size
            ),
        });
    }
    if !digest.eq_ignore_ascii_case(&variant.sha256) {
        problems.push(Problem {
            field: field("sha256"),
            message: format!(
                "{} has sha256 {digest}, model.yml says {} (file changed or corrupted: re-export the model)",
                path.display(),
                variant.sha256
            ),
        });
    }
}

/// Size and lower-case hex sha256 of a file.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 16];
    let mut size = 0_u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    let hex = digest.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok((size, hex))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PRESS_TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/press-tiny");

    fn meta() -> ModelMeta {
        let text = std::fs::read_to_string(Path::new(PRESS_TINY).join(MODEL_FILE)).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    #[test]
    fn shipped_test_model_is_consistent() {
        let dir = ModelDir::load(PRESS_TINY).unwrap();
        assert_eq!(dir.meta().task, Task::Anomaly);
        assert_eq!(dir.input().features.len(), 30);
        assert!(dir.variant_path(VariantKind::Int8).is_some());
        assert_eq!(dir.model_version(), "press-tiny@0.1.0");
    }

    #[test]
    fn reports_every_problem_at_once_with_field_names() {
        let mut m = meta();
        m.format = 2;
        m.version = "1.0".into();
        m.inputs[0].normalization.std[3] = 0.0;
        m.thresholds.critical = m.thresholds.warning / 2.0;
        let fields: Vec<String> = m.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "format",
                "version",
                "inputs[0].normalization.std",
                "thresholds"
            ]
        );
    }

    #[test]
    fn feature_count_must_match_shape_and_normalization() {
        let mut m = meta();
        m.inputs[0].features.pop();
        let problems = m.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.field == "inputs[0].shape" && p.message.contains("[-1, 29]")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.field == "inputs[0].normalization.mean")
        );
    }

    #[test]
    fn default_variant_must_exist() {
        let mut m = meta();
        m.variants.remove(&VariantKind::Int8);
        m.default_variant = VariantKind::Int8;
        assert!(m.problems().iter().any(|p| p.field == "default_variant"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let text = std::fs::read_to_string(Path::new(PRESS_TINY).join(MODEL_FILE)).unwrap();
        let text = text.replace("task: anomaly", "task: anomaly\ntreshold: 3");
        let err = serde_yaml::from_str::<ModelMeta>(&text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("treshold"), "{err}");
    }

    #[test]
    fn tensor_inputs_have_fixed_dims_and_no_feature_names() {
        let mut m = meta();
        m.inputs[0].shape = vec![-1, 3, 8, 8];
        m.inputs[0].features.clear();
        m.inputs[0].normalization = Normalization::default();
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        assert_eq!(m.inputs[0].row_len(), 192);
        m.inputs[0].shape = vec![-1, 3, -1, 8];
        m.inputs[0].features = vec!["x".into()];
        let fields: Vec<String> = m.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["inputs[0].shape", "inputs[0].features"]);
    }

    #[test]
    fn good_label_must_be_a_label() {
        let mut m = meta();
        m.task = Task::Classification;
        m.labels = vec!["good".into(), "defect".into()];
        m.outputs[0].shape = vec![-1, 2];
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        m.good_label = Some("ok".into());
        let problems = m.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "good_label");
    }

    #[test]
    fn classification_needs_labels_matching_the_output() {
        let mut m = meta();
        m.task = Task::Classification;
        let fields: Vec<String> = m.problems().into_iter().map(|p| p.field).collect();
        assert!(
            fields.contains(&"labels".to_owned())
                && fields.contains(&"outputs[0].shape".to_owned()),
            "{fields:?}"
        );
    }

    #[test]
    fn preprocess_section_parses_and_is_checked_against_the_image_input() {
        let mut m = meta();
        m.preprocess = Some(PreprocessMeta::default());
        let fields: Vec<String> = m.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["preprocess"],
            "a feature model has no image to preprocess"
        );

        m.inputs[0].shape = vec![-1, 3, 8, 8];
        m.inputs[0].features.clear();
        m.inputs[0].normalization.mean.clear();
        m.inputs[0].normalization.std.clear();
        let section = "resize: center_crop\nmean: [0.5, 0.5, 0.5]\nstd: [0.25]\npad: 114\n";
        m.preprocess = Some(serde_yaml::from_str(section).unwrap());
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        let p = m.preprocess.clone().unwrap();
        assert_eq!(p.resize, Some(ResizeKind::CenterCrop));
        assert_eq!(p.pad, Some(114));
        // Round trip through model.yml text.
        let back: ModelMeta = serde_yaml::from_str(&serde_yaml::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.preprocess, m.preprocess);

        m.preprocess = Some(PreprocessMeta {
            mean: Some(vec![0.5, 0.5]),
            std: Some(vec![0.0]),
            ..PreprocessMeta::default()
        });
        let problems = m.problems();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["preprocess.mean", "preprocess.std"],
            "{problems:?}"
        );
        assert!(problems[0].message.contains("one per input channel (3)"));
        assert!(problems[1].message.contains("> 0"));

        let unknown = serde_yaml::from_str::<PreprocessMeta>("resize: stretch\nscale: 2\n");
        assert!(unknown.is_err(), "unknown keys are refused");
    }
}
