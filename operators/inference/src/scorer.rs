//! [`Scorer`]: one ONNX Runtime session over a model directory, created once.

use std::path::{Path, PathBuf};

use ort::ep::{self, ExecutionProvider};
use ort::memory::Allocator;
use ort::session::IoBinding;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Outlet, Tensor, TensorElementType, TensorRef, ValueType};

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
    /// Values per input row (the feature count, or C*H*W for image tensors).
    row_len: usize,
    /// Input dimensions after the batch dimension, from model.yml.
    input_dims: Vec<i64>,
    /// Expected `Tensor::layout` (none: not checked).
    layout: Option<String>,
    /// Index of the good class in `labels` (classification).
    good_index: usize,
    /// `[rows, input_dims...]` of the next run (reused).
    shape_buf: Vec<i64>,
    /// Values per output row: 1 for anomaly scores, the label count for classifiers.
    output_width: usize,
    variant: VariantKind,
    file: PathBuf,
    library: PathBuf,
    provider: Provider,
    skipped: Vec<SkippedProvider>,
    input_buf: Vec<f32>,
    output_buf: Vec<f32>,
    /// Output dimensions after the batch dimension (model.yml).
    output_dims: Vec<i64>,
    /// Whether runs from [`Scorer::input_buf`] go through an [`IoBinding`] (CPU provider, static
    /// dimensions after the batch, a row of at most [`BIND_MAX_VALUES`] values).
    bind: bool,
    /// Pre-bound tensors by batch size (index `rows - 1`), made on first use of that size: at
    /// most [`BIND_MAX_VALUES`] / row length sizes (the press model: 33 sizes, 70 KB if all
    /// are used; 2 MB in the worst case of one value per row).
    bound: Vec<Option<Bound>>,
    warmup_runs_done: u32,
    runs: u64,
    zero_copy_runs: u64,
}

/// The largest input (values) run through [`Bound`] tensors. The binding saves about 0.6 µs
/// per run; copying the input into the bound tensor costs about that much for 1,500 values
/// (6 KB) on the project's box: the optical model's 12,288-value frames ran 3 µs slower bound.
const BIND_MAX_VALUES: usize = 1024;

/// An input and an output tensor allocated once for one batch size and bound to the session:
/// a run then only copies the rows in, with no name lookup and no output allocation inside
/// ONNX Runtime (`session.run` does both each time). On the press model this took 0.55 µs
/// (6 %) off each run on the project's box (`docs/performance.md`, "Inference").
struct Bound {
    input: Tensor<f32>,
    binding: IoBinding,
}

impl Bound {
    fn new(
        session: &Session,
        rows: usize,
        input_dims: &[i64],
        output_dims: &[i64],
    ) -> Result<Self, ort::Error> {
        let shape = |dims: &[i64]| {
            let mut shape = Vec::with_capacity(dims.len() + 1);
            batch_shape(&mut shape, rows, dims);
            shape
        };
        let input = Tensor::<f32>::new(&Allocator::default(), shape(input_dims))?;
        let output = Tensor::<f32>::new(&Allocator::default(), shape(output_dims))?;
        let mut binding = session.create_binding()?;
        binding.bind_input(session.inputs()[0].name(), &input)?;
        binding.bind_output(session.outputs()[0].name(), output)?;
        Ok(Self { input, binding })
    }

    /// Copies `data` (exactly the bound input's length) in, runs, and hands the output values
    /// to `read`.
    fn run<R>(
        &mut self,
        session: &mut Session,
        data: &[f32],
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, ort::Error> {
        let (_, input) = self.input.try_extract_tensor_mut::<f32>()?;
        if input.len() != data.len() {
            return Err(ort::Error::new(format!(
                "{} input values for a bound input of {}",
                data.len(),
                input.len()
            )));
        }
        input.copy_from_slice(data);
        let outputs = session.run_binding(&self.binding)?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>()?;
        Ok(read(values))
    }
}

/// One row of a `Tensor` message as read zero-copy from its Arrow batch
/// (`forgeline_schemas::tensor::bytes` for `data`).
#[derive(Debug, Clone, Copy)]
pub struct TensorRow<'a> {
    /// `Tensor::shape`: the model's dimensions after the batch, with or without a leading 1.
    pub shape: &'a [i64],
    /// `Tensor::dtype` (the models take `f32`).
    pub dtype: &'a str,
    /// `Tensor::layout` (`nchw`, `nhwc`, `flat`).
    pub layout: &'a str,
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

/// A classification model's verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classified {
    /// Index of the most probable label.
    pub class: usize,
    /// `1 - P(good label)`: the probability that the item must be rejected (the `Score::score`
    /// of a classified item).
    pub reject_probability: f32,
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
            .map_err(|e| configure(&e))?
            .with_memory_pattern(config.memory_pattern)
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

        let row_len = input.row_len();
        let output_dims = output.shape.get(1..).unwrap_or_default().to_vec();
        let bind = provider == Provider::Cpu
            && row_len <= BIND_MAX_VALUES
            && input.shape[1..].iter().chain(&output_dims).all(|d| *d > 0);
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
            row_len,
            input_dims: input.shape[1..].to_vec(),
            layout: input.layout.clone(),
            good_index: model.good_index(),
            shape_buf: Vec::with_capacity(input.shape.len()),
            output_width,
            variant,
            file,
            library,
            provider,
            skipped,
            input_buf: Vec::with_capacity(row_len),
            output_buf: Vec::with_capacity(output_width),
            output_dims,
            bind,
            bound: Vec::new(),
            warmup_runs_done: 0,
            runs: 0,
            zero_copy_runs: 0,
        };
        scorer.check_binding();
        scorer.warm_up(config.warmup_runs)?;
        tracing::info!(model = %scorer.model_version, variant = %variant, provider = %provider,
            file = %scorer.file.display(), warmup_runs = scorer.warmup_runs_done,
            memory_arena = config.memory_arena, memory_pattern = config.memory_pattern,
            io_binding = scorer.bind, "scorer ready");
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
        out.extend_from_slice(self.infer_rows(rows)?);
        Ok(())
    }

    /// Raw model outputs for several rows in one session run (normalisation applied): one value
    /// per row for anomaly models, [`Scorer::output_width`] probabilities per row for classifiers.
    /// The slice is valid until the next call.
    ///
    /// # Errors
    /// Wrong value count or a non-finite value (the row index names the offending row), or a
    /// runtime failure.
    pub fn infer_rows(&mut self, rows: &[&[f32]]) -> Result<&[f32], InferenceError> {
        self.input_buf.clear();
        self.output_buf.clear();
        if rows.is_empty() {
            return Ok(&self.output_buf);
        }
        for (i, row) in rows.iter().enumerate() {
            self.push_row(i, row)?;
        }
        self.run_rows(rows.len())?;
        Ok(&self.output_buf)
    }

    /// Checks one tensor message row against the model's input: dtype `f32`, shape equal to the
    /// model's dimensions after the batch (a leading 1 allowed), layout when model.yml names
    /// one, and byte count.
    ///
    /// # Errors
    /// [`InferenceError::TensorMismatch`] naming the field, the expected and the found value.
    pub fn check_tensor(&self, row: usize, tensor: &TensorRow<'_>) -> Result<(), InferenceError> {
        let mismatch =
            |field: &'static str, expected: String, found: String| InferenceError::TensorMismatch {
                model: self.model_version.clone(),
                row,
                field,
                expected,
                found,
            };
        if tensor.dtype != "f32" {
            return Err(mismatch(
                "dtype",
                "\"f32\"".into(),
                format!("{:?}", tensor.dtype),
            ));
        }
        let dims = match tensor.shape.split_first() {
            Some((1, rest)) if rest.len() == self.input_dims.len() => rest,
            _ => tensor.shape,
        };
        if dims != self.input_dims.as_slice() {
            return Err(mismatch(
                "shape",
                format!("{:?} (or with a leading 1)", self.input_dims),
                format!("{:?}", tensor.shape),
            ));
        }
        if let Some(layout) = &self.layout
            && !tensor.layout.eq_ignore_ascii_case(layout)
        {
            return Err(mismatch(
                "layout",
                format!("{layout:?}"),
                format!("{:?}", tensor.layout),
            ));
        }
        let bytes = self.row_len * std::mem::size_of::<f32>();
        if tensor.data.len() != bytes {
            return Err(mismatch(
                "data",
                format!("{bytes} bytes ({} f32 values)", self.row_len),
                format!("{} bytes", tensor.data.len()),
            ));
        }
        Ok(())
    }

    /// Raw model outputs for `rows` tensor rows laid out back to back in `data` (little-endian
    /// f32, e.g. the values buffer of a `Tensor` batch's `data` column, rows checked with
    /// [`Scorer::check_tensor`]). When the model has no normalisation and `data` is aligned for
    /// f32 (always so for Arrow buffers of f32 rows), ONNX Runtime reads `data` in place (no
    /// copy); otherwise the values are decoded into a reused buffer.
    ///
    /// # Errors
    /// [`InferenceError::TensorMismatch`] for a wrong byte count, [`InferenceError::NonFinite`]
    /// for a NaN or infinite value, or a runtime failure.
    pub fn infer_tensors(&mut self, rows: usize, data: &[u8]) -> Result<&[f32], InferenceError> {
        let row_bytes = self.row_len * std::mem::size_of::<f32>();
        if data.len() != rows * row_bytes {
            return Err(InferenceError::TensorMismatch {
                model: self.model_version.clone(),
                row: 0,
                field: "data",
                expected: format!("{} bytes for {rows} row(s)", rows * row_bytes),
                found: format!("{} bytes", data.len()),
            });
        }
        self.output_buf.clear();
        if rows == 0 {
            return Ok(&self.output_buf);
        }
        let in_place = if self.mean.is_empty() && cfg!(target_endian = "little") {
            bytemuck::try_cast_slice::<u8, f32>(data).ok()
        } else {
            None
        };
        if let Some(values) = in_place {
            if let Some(i) = first_non_finite(values) {
                return Err(self.non_finite(i / self.row_len, i % self.row_len, values[i]));
            }
            self.zero_copy_runs += 1;
            return self.run_view(rows, values);
        }
        // Decoded into the input buffer (a copy of the aligned floats, or from the bytes), the
        // raw values checked, then standardised in place.
        self.input_buf.clear();
        match bytemuck::try_cast_slice::<u8, f32>(data) {
            Ok(values) if cfg!(target_endian = "little") => {
                self.input_buf.extend_from_slice(values)
            }
            _ => self.input_buf.extend(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
        }
        if let Some(i) = first_non_finite(&self.input_buf) {
            return Err(self.non_finite(i / self.row_len, i % self.row_len, self.input_buf[i]));
        }
        standardise_rows(&mut self.input_buf, self.row_len, &self.mean, &self.inv_std);
        self.run_rows(rows)?;
        Ok(&self.output_buf)
    }

    /// The floor of every benchmark: one bare `session.run` on `rows` prebuilt, already
    /// normalised rows (`[rows, input_dims...]`, read in place), returning the first output
    /// value read straight from ONNX Runtime's output tensor (no copy, no checks, no counters).
    ///
    /// # Errors
    /// A runtime failure.
    pub fn run_prebuilt(&mut self, rows: usize, data: &[f32]) -> Result<f32, InferenceError> {
        batch_shape(&mut self.shape_buf, rows, &self.input_dims);
        let result = (|| -> Result<f32, ort::Error> {
            let input = TensorRef::from_array_view((self.shape_buf.as_slice(), data))?;
            let outputs = self.session.run(ort::inputs![input])?;
            let (_, values) = outputs[0].try_extract_tensor::<f32>()?;
            Ok(values.first().copied().unwrap_or(f32::NAN))
        })();
        result.map_err(|e| self.run_error(&e))
    }

    /// The floor of the scorer's own call: `data` (`rows` prebuilt, already normalised rows)
    /// copied into the tensors bound for that batch size, one `run_binding`, the first output
    /// value read in place (no checks, no counters). `None` when the scorer does not bind
    /// (providers other than the CPU, inputs over [`BIND_MAX_VALUES`] values): its floor is then
    /// [`Scorer::run_prebuilt`].
    ///
    /// # Errors
    /// A runtime failure.
    pub fn run_prebuilt_bound(
        &mut self,
        rows: usize,
        data: &[f32],
    ) -> Result<Option<f32>, InferenceError> {
        if !self.binds(rows) {
            return Ok(None);
        }
        self.run_bound_with(rows, Some(data), |values, _| {
            values.first().copied().unwrap_or(f32::NAN)
        })
        .map(Some)
        .map_err(|e| self.run_error(&e))
    }

    /// Standardises `values` (a multiple of the row length) as the scorer does before a run;
    /// identity for models without normalisation. For building benchmark inputs.
    #[must_use]
    pub fn normalised(&self, values: &[f32]) -> Vec<f32> {
        let mut out = values.to_vec();
        standardise_rows(&mut out, self.row_len, &self.mean, &self.inv_std);
        out
    }

    /// The verdict of a classifier on one row of outputs (the label probabilities).
    #[must_use]
    pub fn classified(&self, probabilities: &[f32]) -> Classified {
        let class = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let good = probabilities.get(self.good_index).copied().unwrap_or(0.0);
        Classified {
            class,
            reject_probability: 1.0 - good,
        }
    }

    /// The outputs of the last run (as returned by [`Scorer::infer_rows`] or
    /// [`Scorer::infer_tensors`]).
    #[must_use]
    pub fn last_outputs(&self) -> &[f32] {
        &self.output_buf
    }

    /// What the model computes.
    #[must_use]
    pub fn task(&self) -> Task {
        self.task
    }

    /// Output values per row: 1 for anomaly models, the label count for classifiers.
    #[must_use]
    pub fn output_width(&self) -> usize {
        self.output_width
    }

    /// Values per input row (feature count, or the product of a tensor's dimensions).
    #[must_use]
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The model input's dimensions after the batch dimension.
    #[must_use]
    pub fn input_dims(&self) -> &[i64] {
        &self.input_dims
    }

    /// Runs in which ONNX Runtime read a tensor message's bytes in place (no copy).
    #[must_use]
    pub fn zero_copy_runs(&self) -> u64 {
        self.zero_copy_runs
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

    /// One run on a dummy row, result discarded: keeps the session's weights and code in the
    /// CPU caches while the line is idle. After one idle second the inference node's path took
    /// 466 µs at p50 on the project's box, 87 µs with one of these every 10 ms
    /// (`docs/performance.md`, "Keep warm"). Counted in [`Scorer::runs`] like any run.
    ///
    /// # Errors
    /// [`InferenceError::Session`] when the run fails.
    pub fn keep_warm(&mut self) -> Result<(), InferenceError> {
        self.run_dummy("keep warm")
    }

    /// Whether runs of small inputs go through tensors bound to the session (see [`Bound`]).
    #[must_use]
    pub fn uses_io_binding(&self) -> bool {
        self.bind
    }

    /// A bound input is rewritten in place between runs. That relies on ONNX Runtime reading
    /// the CPU tensor it was bound to, not a copy taken at bind time: so it does (1.31, CPU
    /// provider), but ort's documentation does not promise it, and the library is chosen at run
    /// time. Checked once here on two different rows against `session.run`; on any difference
    /// or failure the scorer stops binding, with a warning, and uses `session.run` throughout.
    fn check_binding(&mut self) {
        if !self.binds(1) {
            return;
        }
        for value in [0.0_f32, 1.0] {
            self.input_buf.clear();
            self.input_buf.resize(self.row_len, value);
            let bound = self.run_bound_with(1, None, |values, _| values.to_vec());
            let data = std::mem::take(&mut self.input_buf);
            let mut plain = Vec::new();
            batch_shape(&mut self.shape_buf, 1, &self.input_dims);
            let direct = run_session(&mut self.session, &self.shape_buf, &data, &mut plain);
            self.input_buf = data;
            let reason = match (bound, direct) {
                (Ok(b), Ok(_))
                    if b.len() == plain.len()
                        && b.iter()
                            .zip(&plain)
                            .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs())) =>
                {
                    continue;
                }
                (Ok(b), Ok(_)) => format!("bound run gave {b:?}, session.run {plain:?}"),
                (Err(e), _) => format!("bound run failed: {e}"),
                (_, Err(e)) => format!("session.run failed: {e}"),
            };
            tracing::warn!(model = %self.model_version, %reason,
                "IoBinding disagrees with session.run on this ONNX Runtime: not binding");
            self.bind = false;
            self.bound.clear();
            return;
        }
    }

    fn warm_up(&mut self, runs: u32) -> Result<(), InferenceError> {
        for _ in 0..runs {
            self.run_dummy("warm up")?;
            self.warmup_runs_done += 1;
        }
        Ok(())
    }

    /// One run on a row at the training mean (zeros after normalisation), result discarded.
    fn run_dummy(&mut self, stage: &'static str) -> Result<(), InferenceError> {
        self.input_buf.clear();
        self.input_buf.resize(self.row_len, 0.0);
        self.run_rows(1).map_err(|e| InferenceError::Session {
            file: self.file.clone(),
            stage,
            reason: e.to_string(),
        })
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
        if values.len() != self.row_len {
            return Err(InferenceError::InputLength {
                row,
                found: values.len(),
                expected: self.row_len,
                model: self.model_version.clone(),
                feature_set: self.feature_set.clone(),
            });
        }
        if let Some(index) = first_non_finite(values) {
            return Err(self.non_finite(row, index, values[index]));
        }
        let start = self.input_buf.len();
        self.input_buf.extend_from_slice(values);
        standardise_rows(
            &mut self.input_buf[start..],
            self.row_len,
            &self.mean,
            &self.inv_std,
        );
        Ok(())
    }

    fn run_error(&self, e: &ort::Error) -> InferenceError {
        InferenceError::Run {
            model: self.model_version.clone(),
            provider: self.provider.as_str().to_owned(),
            reason: e.to_string(),
        }
    }

    fn non_finite(&self, row: usize, index: usize, value: f32) -> InferenceError {
        InferenceError::NonFinite {
            row,
            feature: self
                .feature_names
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("element {index}")),
            index,
            value,
        }
    }

    /// Run the session on the first `rows` rows of the input buffer into the output buffer:
    /// through the pre-bound tensors for that batch size where the scorer binds, else
    /// `session.run` reading the buffer in place.
    fn run_rows(&mut self, rows: usize) -> Result<(), InferenceError> {
        if self.binds(rows) {
            return self.run_bound(rows);
        }
        let data = std::mem::take(&mut self.input_buf);
        let result = self.run_view(rows, &data).map(|_| ());
        self.input_buf = data;
        result
    }

    /// Whether a run of `rows` rows from the input buffer goes through [`Bound`] tensors: on the
    /// CPU provider, for inputs of at most [`BIND_MAX_VALUES`] values. Larger inputs (image
    /// tensors) are read in place by `session.run`: copying them into a bound tensor would
    /// cost more than the binding saves.
    fn binds(&self, rows: usize) -> bool {
        self.bind && rows > 0 && rows.saturating_mul(self.row_len) <= BIND_MAX_VALUES
    }

    /// [`Scorer::run_rows`] through the [`Bound`] tensors of `rows` rows.
    fn run_bound(&mut self, rows: usize) -> Result<(), InferenceError> {
        let result = self.run_bound_with(rows, None, |values, out| {
            out.clear();
            out.extend_from_slice(values);
            values.len()
        });
        self.finish_run(rows, result).map(|_| ())
    }

    /// One run through the [`Bound`] tensors of `rows` rows (made on first use, kept for the
    /// next run of that size): `data`, or the input buffer when `None`, is copied in; `read`
    /// gets the output values and the output buffer.
    fn run_bound_with<R>(
        &mut self,
        rows: usize,
        data: Option<&[f32]>,
        read: impl FnOnce(&[f32], &mut Vec<f32>) -> R,
    ) -> Result<R, ort::Error> {
        let slot = rows.saturating_sub(1);
        if self.bound.len() <= slot {
            self.bound.resize_with(slot + 1, || None);
        }
        let mut bound = match self.bound[slot].take() {
            Some(bound) => bound,
            None => Bound::new(&self.session, rows, &self.input_dims, &self.output_dims)?,
        };
        let out = &mut self.output_buf;
        let result = bound.run(
            &mut self.session,
            data.unwrap_or(&self.input_buf),
            |values| read(values, out),
        );
        self.bound[slot] = Some(bound);
        result
    }

    /// Run the session on `rows` rows of `data` (read in place) into the output buffer.
    fn run_view(&mut self, rows: usize, data: &[f32]) -> Result<&[f32], InferenceError> {
        batch_shape(&mut self.shape_buf, rows, &self.input_dims);
        let result = run_session(
            &mut self.session,
            &self.shape_buf,
            data,
            &mut self.output_buf,
        );
        self.finish_run(rows, result)
    }

    /// Counts a run and checks its output size (`result`: the values it gave, or its error).
    fn finish_run(
        &mut self,
        rows: usize,
        result: Result<usize, ort::Error>,
    ) -> Result<&[f32], InferenceError> {
        let expected = rows * self.output_width;
        self.runs += 1;
        let found = result.map_err(|e| self.run_error(&e))?;
        if found != expected {
            return Err(InferenceError::OutputSize {
                model: self.model_version.clone(),
                output: self.session.outputs()[0].name().to_owned(),
                found,
                expected,
                rows,
            });
        }
        Ok(&self.output_buf)
    }
}

/// `shape = [rows, dims...]` (reusing its allocation).
fn batch_shape(shape: &mut Vec<i64>, rows: usize, dims: &[i64]) {
    shape.clear();
    shape.push(i64::try_from(rows).unwrap_or(i64::MAX));
    shape.extend_from_slice(dims);
}

/// Standardises each `row_len` row of `values` in place: `(x - mean) * inv_std`, element by
/// element (nothing when the model has no normalisation: `mean` empty). Indexed loops over
/// slices of one length, so the compiler vectorises them.
fn standardise_rows(values: &mut [f32], row_len: usize, mean: &[f32], inv_std: &[f32]) {
    if mean.is_empty() || row_len == 0 {
        return;
    }
    debug_assert!(mean.len() == row_len && inv_std.len() == row_len);
    let n = row_len.min(mean.len()).min(inv_std.len());
    let (mean, inv_std) = (&mean[..n], &inv_std[..n]);
    for row in values.chunks_exact_mut(row_len) {
        let row = &mut row[..n];
        for i in 0..n {
            row[i] = (row[i] - mean[i]) * inv_std[i];
        }
    }
}

/// The index of the first NaN or infinite value. The common all-finite case is one branch-free
/// (vectorised) pass.
fn first_non_finite(values: &[f32]) -> Option<usize> {
    if values.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return None;
    }
    values.iter().position(|v| !v.is_finite())
}

/// One `session.run` on a view of `data` shaped `shape`; the single output is copied into `out`.
fn run_session(
    session: &mut Session,
    shape: &[i64],
    data: &[f32],
    out: &mut Vec<f32>,
) -> Result<usize, ort::Error> {
    let input = TensorRef::from_array_view((shape, data))?;
    let outputs = session.run(ort::inputs![input])?;
    let (_, values) = outputs[0].try_extract_tensor::<f32>()?;
    out.clear();
    out.extend_from_slice(values);
    Ok(values.len())
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
    match provider {
        Provider::Cpu => ep::CPU::default()
            .with_arena_allocator(config.memory_arena)
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
