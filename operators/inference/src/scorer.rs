//! [`Scorer`]: one ONNX Runtime session over a model directory, created once.

use std::path::{Path, PathBuf};

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};

use crate::config::{InferenceConfig, OptimizationLevel, Provider, VariantChoice};
use crate::error::InferenceError;
use crate::model_dir::{ModelDir, Task, Thresholds, VariantKind};
use crate::runtime;

/// An execution provider that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedProvider {
    /// The provider.
    pub provider: Provider,
    /// Why it was skipped (not compiled in, not in this ONNX Runtime build, registration error).
    pub reason: String,
}

/// Scores feature vectors with one model. Owns its session and its buffers; not `Sync`.
pub struct Scorer {
    session: Session,
    model_version: String,
    feature_set: String,
    task: Task,
    labels: Vec<String>,
    thresholds: Thresholds,
    feature_names: Vec<String>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    n_features: usize,
    /// Values per output row: 1 for anomaly scores, the label count for classifiers.
    output_width: usize,
    variant: VariantKind,
    file: PathBuf,
    library: PathBuf,
    provider: Provider,
    skipped: Vec<SkippedProvider>,
    input_buf: Vec<f32>,
    output_buf: Vec<f32>,
    warmup_runs_done: u32,
    runs: u64,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer")
            .field("model_version", &self.model_version)
            .field("variant", &self.variant)
            .field("provider", &self.provider)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Scorer {
    /// Load the ONNX Runtime library (once per process), pick the variant, register the
    /// execution providers in the config's order (each skipped one is logged once with its
    /// reason), create the session, check its inputs and outputs against `model.yml`, and run
    /// the warm-up.
    ///
    /// # Errors
    /// [`InferenceError`] naming the library paths tried, the model file, or the field that differs.
    pub fn new(model: &ModelDir, config: &InferenceConfig) -> Result<Self, InferenceError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(InferenceError::Config { problems });
        }
        let meta = model.meta();
        let model_version = model.model_version();
        let variant = match config.variant {
            VariantChoice::Auto => meta.default_variant,
            VariantChoice::Fp32 => VariantKind::Fp32,
            VariantChoice::Int8 => VariantKind::Int8,
        };
        let file = model
            .variant_path(variant)
            .ok_or_else(|| InferenceError::VariantMissing {
                model: model_version.clone(),
                variant: variant.to_string(),
                available: meta
                    .variants
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let (env, library) = runtime::environment(config.onnxruntime_lib.as_deref())?;

        let configure = |e: &dyn std::fmt::Display| InferenceError::Session {
            file: file.clone(),
            stage: "configure a session for",
            reason: e.to_string(),
        };
        let mut builder = Session::builder(&env)
            .map_err(|e| configure(&e))?
            .with_optimization_level(graph_level(config.optimization_level))
            .map_err(|e| configure(&e))?
            .with_intra_threads(config.intra_threads)
            .map_err(|e| configure(&e))?
            .with_inter_threads(config.inter_threads)
            .map_err(|e| configure(&e))?;

        let mut skipped = Vec::new();
        let mut chosen = None;
        for &provider in &config.providers {
            match register(provider, &mut builder, config) {
                Ok(()) => {
                    tracing::info!(model = %model_version, provider = %provider, "execution provider registered");
                    chosen.get_or_insert(provider);
                    if provider == Provider::Cpu {
                        break;
                    }
                }
                Err(reason) => {
                    tracing::warn!(model = %model_version, provider = %provider, reason = %reason, "execution provider skipped");
                    skipped.push(SkippedProvider { provider, reason });
                }
            }
        }
        let Some(provider) = chosen else {
            return Err(InferenceError::NoProvider {
                model: model_version,
                skipped: skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.provider, s.reason))
                    .collect(),
            });
        };

        let session = builder
            .commit_from_file(&file)
            .map_err(|e| InferenceError::Session {
                file: file.clone(),
                stage: "load",
                reason: e.to_string(),
            })?;
        let input = model.input();
        let output = model.output();
        check_outlets(&file, "input", session.inputs(), &input.name, &input.shape)?;
        check_outlets(
            &file,
            "output",
            session.outputs(),
            &output.name,
            &output.shape,
        )?;

        let n_features = input.features.len();
        let output_width = match meta.task {
            Task::Anomaly => 1,
            Task::Classification => meta.labels.len(),
        };
        let mut scorer = Self {
            session,
            model_version,
            feature_set: meta.feature_set.clone(),
            task: meta.task,
            labels: meta.labels.clone(),
            thresholds: meta.thresholds,
            feature_names: input.features.clone(),
            mean: input.normalization.mean.clone(),
            inv_std: input.normalization.std.iter().map(|s| 1.0 / s).collect(),
            n_features,
            output_width,
            variant,
            file,
            library,
            provider,
            skipped,
            input_buf: Vec::with_capacity(n_features),
            output_buf: Vec::with_capacity(output_width),
            warmup_runs_done: 0,
            runs: 0,
        };
        scorer.warm_up(config.warmup_runs)?;
        tracing::info!(model = %scorer.model_version, variant = %variant, provider = %provider,
            file = %scorer.file.display(), warmup_runs = scorer.warmup_runs_done, "scorer ready");
        Ok(scorer)
    }

    /// Anomaly score of one stroke's features (normalisation from model.yml applied here).
    ///
    /// # Errors
    /// Wrong feature count, a non-finite feature, a classification model, or a runtime failure.
    pub fn score(&mut self, features: &[f32]) -> Result<f32, InferenceError> {
        self.require(Task::Anomaly, "score")?;
        self.input_buf.clear();
        self.push_row(0, features)?;
        self.run_rows(1)?;
        Ok(self.output_buf[0])
    }

    /// Anomaly scores of several strokes in one run; `out` is cleared and gets one score per row.
    ///
    /// # Errors
    /// As [`Scorer::score`]; the row index names the offending row.
    pub fn score_batch(
        &mut self,
        rows: &[&[f32]],
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        self.require(Task::Anomaly, "score_batch")?;
        out.clear();
        if rows.is_empty() {
            return Ok(());
        }
        self.input_buf.clear();
        for (i, row) in rows.iter().enumerate() {
            self.push_row(i, row)?;
        }
        self.run_rows(rows.len())?;
        out.extend_from_slice(&self.output_buf);
        Ok(())
    }

    /// Class index and per-label probabilities of one input (classification models).
    ///
    /// # Errors
    /// Wrong feature count, a non-finite value, an anomaly model, or a runtime failure.
    pub fn classify(&mut self, input: &[f32]) -> Result<(usize, Vec<f32>), InferenceError> {
        self.require(Task::Classification, "classify")?;
        self.input_buf.clear();
        self.push_row(0, input)?;
        self.run_rows(1)?;
        let best = self
            .output_buf
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        Ok((best, self.output_buf.clone()))
    }

    /// The execution provider actually used (`tensorrt`, `cuda`, `openvino` or `cpu`).
    #[must_use]
    pub fn provider(&self) -> &str {
        self.provider.as_str()
    }

    /// Providers earlier in the priority list that were skipped, with reasons.
    #[must_use]
    pub fn skipped_providers(&self) -> &[SkippedProvider] {
        &self.skipped
    }

    /// The variant loaded.
    #[must_use]
    pub fn variant(&self) -> VariantKind {
        self.variant
    }

    /// `name@version` of the model.
    #[must_use]
    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// The ONNX file loaded.
    #[must_use]
    pub fn model_file(&self) -> &Path {
        &self.file
    }

    /// The ONNX Runtime library in use.
    #[must_use]
    pub fn library_path(&self) -> &Path {
        &self.library
    }

    /// Decision thresholds from model.yml.
    #[must_use]
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Class labels (empty for anomaly models).
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Feature names the model expects, in order.
    #[must_use]
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Warm-up runs completed in [`Scorer::new`].
    #[must_use]
    pub fn warmup_runs_done(&self) -> u32 {
        self.warmup_runs_done
    }

    /// Session runs so far, warm-up included.
    #[must_use]
    pub fn runs(&self) -> u64 {
        self.runs
    }

    fn warm_up(&mut self, runs: u32) -> Result<(), InferenceError> {
        // A row at the training mean: zeros after normalisation.
        for _ in 0..runs {
            self.input_buf.clear();
            self.input_buf.resize(self.n_features, 0.0);
            self.run_rows(1).map_err(|e| InferenceError::Session {
                file: self.file.clone(),
                stage: "warm up",
                reason: e.to_string(),
            })?;
            self.warmup_runs_done += 1;
        }
        Ok(())
    }

    fn require(&self, task: Task, method: &'static str) -> Result<(), InferenceError> {
        if self.task == task {
            return Ok(());
        }
        let name = |t: Task| match t {
            Task::Anomaly => "anomaly",
            Task::Classification => "classification",
        };
        Err(InferenceError::WrongTask {
            model: self.model_version.clone(),
            method,
            needed: name(task),
            actual: name(self.task),
        })
    }

    /// Append one normalised row to the input buffer.
    fn push_row(&mut self, row: usize, values: &[f32]) -> Result<(), InferenceError> {
        if values.len() != self.n_features {
            return Err(InferenceError::InputLength {
                row,
                found: values.len(),
                expected: self.n_features,
                model: self.model_version.clone(),
                feature_set: self.feature_set.clone(),
            });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(InferenceError::NonFinite {
                row,
                feature: self.feature_names[index].clone(),
                index,
                value: values[index],
            });
        }
        self.input_buf.extend(
            values
                .iter()
                .zip(self.mean.iter().zip(&self.inv_std))
                .map(|(x, (m, s))| (x - m) * s),
        );
        Ok(())
    }

    /// Run the session on the first `rows` rows of the input buffer into the output buffer.
    fn run_rows(&mut self, rows: usize) -> Result<(), InferenceError> {
        let run_err = |reason: String| InferenceError::Run {
            model: self.model_version.clone(),
            provider: self.provider.as_str().to_owned(),
            reason,
        };
        let expected = rows * self.output_width;
        let result = (|| -> Result<usize, ort::Error> {
            let input = TensorRef::from_array_view(([rows, self.n_features], &self.input_buf[..]))?;
            let outputs = self.session.run(ort::inputs![input])?;
            let (_, data) = outputs[0].try_extract_tensor::<f32>()?;
            self.output_buf.clear();
            self.output_buf.extend_from_slice(data);
            Ok(data.len())
        })();
        self.runs += 1;
        let found = result.map_err(|e| run_err(e.to_string()))?;
        if found != expected {
            return Err(InferenceError::OutputSize {
                model: self.model_version.clone(),
                output: self.session.outputs()[0].name().to_owned(),
                found,
                expected,
                rows,
            });
        }
        Ok(())
    }
}

fn graph_level(level: OptimizationLevel) -> GraphOptimizationLevel {
    match level {
        OptimizationLevel::Disable => GraphOptimizationLevel::Disable,
        OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
        OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
        OptimizationLevel::Layout => GraphOptimizationLevel::Level3,
        OptimizationLevel::All => GraphOptimizationLevel::All,
    }
}

/// Register one provider on the builder, or say why not.
#[allow(clippy::unnecessary_wraps)] // Fallible only with the accelerator features on.
fn register(
    provider: Provider,
    builder: &mut SessionBuilder,
    config: &InferenceConfig,
) -> Result<(), String> {
    let _ = config; // Used only by the TensorRT options.
    match provider {
        Provider::Cpu => ep::CPU::default()
            .with_arena_allocator(true)
            .register(builder)
            .map_err(|e| e.to_string()),
        #[cfg(feature = "tensorrt")]
        Provider::Tensorrt => {
            let trt = &config.tensorrt;
            let mut ep = ep::TensorRT::default()
                .with_fp16(trt.fp16)
                .with_int8(trt.int8);
            if let Some(dir) = &trt.engine_cache_dir {
                ep = ep
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display());
            }
            if let Some(table) = &trt.calibration_table {
                ep = ep.with_int8_calibration_table_name(table);
            }
            register_available(&ep, builder)
        }
        #[cfg(feature = "cuda")]
        Provider::Cuda => register_available(&ep::CUDA::default(), builder),
        #[cfg(feature = "openvino")]
        Provider::Openvino => register_available(&ep::OpenVINO::default(), builder),
        #[allow(unreachable_patterns)] // Reached only for providers whose feature is off.
        other => Err(format!(
            "forgeline-inference was built without the `{other}` cargo feature (rebuild with --features {other})"
        )),
    }
}

#[cfg(any(feature = "cuda", feature = "tensorrt", feature = "openvino"))]
fn register_available<E: ExecutionProvider>(
    ep: &E,
    builder: &mut SessionBuilder,
) -> Result<(), String> {
    match E::is_available() {
        Ok(true) => ep
            .register(builder)
            .map_err(|e| format!("{} registration failed: {e}", E::NAME)),
        Ok(false) => Err(format!(
            "the loaded ONNX Runtime has no {} (a CPU-only build such as the PyPI `onnxruntime` wheel)",
            E::NAME
        )),
        Err(e) => Err(format!("cannot ask ONNX Runtime for {}: {e}", E::NAME)),
    }
}

/// The graph must have exactly one input (output) named and shaped as in model.yml, of type f32.
fn check_outlets(
    file: &Path,
    kind: &str,
    outlets: &[Outlet],
    name: &str,
    shape: &[i64],
) -> Result<(), InferenceError> {
    let mismatch = |field: String, expected: String, found: String| InferenceError::Signature {
        file: file.to_path_buf(),
        field,
        expected,
        found,
    };
    if outlets.len() != 1 {
        let names: Vec<&str> = outlets.iter().map(Outlet::name).collect();
        return Err(mismatch(
            format!("{kind} count"),
            format!("1 ({name})"),
            format!("{} ({names:?})", outlets.len()),
        ));
    }
    let outlet = &outlets[0];
    if outlet.name() != name {
        return Err(mismatch(
            format!("{kind} name"),
            format!("{name:?}"),
            format!("{:?}", outlet.name()),
        ));
    }
    let ValueType::Tensor {
        ty,
        shape: graph_shape,
        ..
    } = outlet.dtype()
    else {
        return Err(mismatch(
            format!("{kind} {name} type"),
            "a tensor".into(),
            format!("{:?}", outlet.dtype()),
        ));
    };
    if *ty != TensorElementType::Float32 {
        return Err(mismatch(
            format!("{kind} {name} dtype"),
            "f32".into(),
            format!("{ty:?}"),
        ));
    }
    let dims: Vec<i64> = graph_shape.iter().copied().collect();
    let compatible = dims.len() == shape.len()
        && dims
            .iter()
            .zip(shape)
            .all(|(g, m)| g == m || *g < 0 || *m < 0);
    if !compatible {
        return Err(mismatch(
            format!("{kind} {name} shape"),
            format!("{shape:?}"),
            format!("{dims:?}"),
        ));
    }
    Ok(())
}
