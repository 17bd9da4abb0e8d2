//! Errors of the inference stage.

use std::path::PathBuf;

use crate::model_dir::ModelError;
use crate::runtime::LibraryError;

/// Why a scorer cannot be built or a row cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The inference config has bad values.
    #[error("inference config: {}", problems.join("; "))]
    Config {
        /// Every problem found.
        problems: Vec<String>,
    },
    /// The ONNX Runtime library is missing or unusable.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// The model directory is invalid.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The config asks for a variant the model does not ship.
    #[error(
        "{model}: variant {variant} requested by the config, but model.yml lists only [{available}]"
    )]
    VariantMissing {
        /// `name@version`.
        model: String,
        /// Requested variant.
        variant: String,
        /// Variants the model ships.
        available: String,
    },
    /// Every execution provider in the config's list was skipped.
    #[error("no execution provider could be registered for {model}: {}; add `cpu` to `providers`", skipped.join("; "))]
    NoProvider {
        /// `name@version`.
        model: String,
        /// `provider: reason` for each one skipped.
        skipped: Vec<String>,
    },
    /// ONNX Runtime rejected the model file or the session options.
    #[error("ONNX Runtime cannot {stage} {file}: {reason}")]
    Session {
        /// The ONNX file.
        file: PathBuf,
        /// What was being done (`load`, `configure`, `warm up`).
        stage: &'static str,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The ONNX graph's inputs or outputs do not match `model.yml`.
    #[error(
        "{file}: {field} is {found} in the ONNX graph but {expected} in model.yml (re-export the model or fix model.yml)"
    )]
    Signature {
        /// The ONNX file.
        file: PathBuf,
        /// What differs, e.g. `input features shape`.
        field: String,
        /// Value in model.yml.
        expected: String,
        /// Value in the ONNX graph.
        found: String,
    },
    /// A row has the wrong number of features.
    #[error("row {row}: {found} features, model {model} expects {expected} ({feature_set})")]
    InputLength {
        /// Row index within the batch (0 for `score`).
        row: usize,
        /// Values received.
        found: usize,
        /// Values expected.
        expected: usize,
        /// `name@version`.
        model: String,
        /// Feature set the model expects.
        feature_set: String,
    },
    /// A feature value is NaN or infinite (the stroke should have been flagged upstream).
    #[error("row {row}: feature {feature} (index {index}) is {value}, expected a finite number")]
    NonFinite {
        /// Row index within the batch.
        row: usize,
        /// Feature name from model.yml.
        feature: String,
        /// Feature index.
        index: usize,
        /// The value.
        value: f32,
    },
    /// ONNX Runtime failed while running the model.
    #[error("running {model} on {provider} failed: {reason}")]
    Run {
        /// `name@version`.
        model: String,
        /// Execution provider.
        provider: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The model produced an output of an unexpected size.
    #[error("{model}: output {output} has {found} values for {rows} row(s), expected {expected}")]
    OutputSize {
        /// `name@version`.
        model: String,
        /// Output name.
        output: String,
        /// Values received.
        found: usize,
        /// Values expected.
        expected: usize,
        /// Rows in the batch.
        rows: usize,
    },
    /// A tensor message does not fit the model's input (shape, dtype, layout or byte count).
    #[error("{model}: tensor row {row}: field `{field}` is {found}, the model expects {expected}")]
    TensorMismatch {
        /// `name@version`.
        model: String,
        /// Row index within the message.
        row: usize,
        /// The `Tensor` field that differs (`shape`, `dtype`, `layout`, `data`).
        field: &'static str,
        /// What the model's input spec needs.
        expected: String,
        /// What the message carries.
        found: String,
    },
    /// A method was called on a model of the other task.
    #[error("{model} is a {actual} model; {method} needs a {needed} model")]
    WrongTask {
        /// `name@version`.
        model: String,
        /// The method called.
        method: &'static str,
        /// Task the method needs.
        needed: &'static str,
        /// Task of the model.
        actual: &'static str,
    },
}
