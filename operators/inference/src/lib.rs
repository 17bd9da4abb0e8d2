//! forgeline-inference: scores feature vectors with an ONNX model through ONNX Runtime.
//!
//! The inference stage of a line: features in, one anomaly score (or class probabilities) out.
//! A model is a directory ([`ModelDir`]) holding `model.yml` (format 1, see the README) and
//! FP32 / INT8 ONNX files. [`Scorer`] loads the ONNX Runtime shared library once per process
//! (see [`runtime`]), creates one session with the configured execution providers, checks the
//! graph against `model.yml`, warms up, and then scores rows with reused buffers.
//!
//! ```no_run
//! use forgeline_inference::{InferenceConfig, ModelDir, Scorer};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = ModelDir::load("models/press-anomaly")?;
//! let mut scorer = Scorer::new(&model, &InferenceConfig::default())?;
//! let score = scorer.score(&vec![0.0; model.input().features.len()])?;
//! println!("{score} on {}", scorer.provider());
//! # Ok(()) }
//! ```
//!
//! No dora types and no clock here: the node measures latency and builds `Score` messages.

pub mod config;
pub mod error;
pub mod model_dir;
pub mod runtime;
pub mod scorer;

pub use config::{InferenceConfig, OptimizationLevel, Provider, TensorRtOptions, VariantChoice};
pub use error::InferenceError;
pub use model_dir::{
    ModelDir, ModelError, ModelMeta, PreprocessMeta, Problem, ResizeKind, Task, Thresholds,
    VariantKind,
};
pub use runtime::{EXPECTED_ORT_VERSION, LibraryError};
pub use scorer::{Classified, Scorer, SkippedProvider, TensorRow};
