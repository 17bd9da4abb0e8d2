//! `inference`: one node for every line. Loads a model directory once (checksums, shapes and
//! feature names checked), picks the execution provider from the configured chain, warms up,
//! then scores each message into `score` messages that name the model version and the provider
//! that ran it.
//!
//! - `features` input (`FeatureVector`): strokes whose data quality failed are not scored
//!   (score NaN, flags forwarded), so the threshold turns them into `sensor_fault`.
//! - inputs whose id starts with `tensor` (`Tensor`, e.g. from `image-preprocess`): each row is
//!   checked against the model's input (dtype, shape, layout, byte count) and read in place from
//!   the Arrow buffer.
//!
//! Anomaly models give `score` = the model output and an empty `label`; classification models
//! give `label` = the most probable class and `score` = `1 - P(good_label)`.

use std::time::Instant;

use forgeline_inference::{Scorer, Task, TensorRow};
use std::sync::Arc;

use forgeline_runtime::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, LargeListArray, StringArray, StructArray, UInt32Array,
    UInt64Array,
};
use forgeline_runtime::arrow::datatypes::{
    DataType, Float32Type, Int64Type, SchemaRef, UInt32Type,
};
use forgeline_runtime::arrow::record_batch::RecordBatch;
use forgeline_runtime::columns::Header;
use forgeline_runtime::{InitContext, Input, Outbox, Stage, StageError};
use forgeline_schemas::{
    Correlation, FeatureVector, Health, HealthLevel, QualityFlags, SchemaMismatch, Tensor,
    features, tensor,
};

mod config;
mod probation;

pub use config::{Config, HealthCheck, RegistryModel};
/// The operator crate, for tools that drive the scorer directly (`forgeline bench-model`).
pub use forgeline_inference;

/// The inference stage.
pub struct Inference {
    scorer: Scorer,
    feature_set: String,
    node_id: String,
    max_batch: usize,
    /// Whether the graph declares a `health` output.
    has_health: bool,
    /// The `model_loaded` health event is sent with the first message.
    announced: bool,
    health_seq: u64,
    /// Hot reload from a registry (none with `model_dir`).
    watch: Option<Watch>,
    /// Probation health checks of the version being scored (with `registry`).
    probation: Option<probation::ProbationWatch>,
    /// The maximum-age policy (with `max_model_age_days`).
    age: Option<probation::AgeWatch>,
    /// The last `FeatureVector` payload type that passed the full schema check, and the
    /// record-batch schema built from it: a payload of the same type skips the check.
    features_type: Option<(DataType, SchemaRef, FeatureCols)>,
    /// Per-row results of the message(s) being scored (reused: no allocation per message).
    results: Vec<RowResult>,
    /// `(message, row)` of the rows to score in the current call (reused).
    todo: Vec<(usize, usize)>,
    /// Column indices and first row (in `results`) of each message of the current call (reused).
    layout: Vec<(FeatureCols, usize)>,
    /// Single-value string columns of the `score` message, reused while value and length hold.
    model_column: RepeatedString,
    provider_column: RepeatedString,
    empty_label_column: RepeatedString,
    /// When the last input message arrived (ns): `keep_warm` skips its run right after one.
    last_message_ns: u64,
    /// A failed keep-warm run was logged (once).
    keep_warm_failed: bool,
    /// Keep-warm runs done (logged at stop).
    keep_warm_runs: u64,
}

/// `keep_warm` ticks within this long of a real message do nothing: the session is warm.
const KEEP_WARM_SKIP_NS: u64 = 1_000_000;

/// A string column holding one value on every row, rebuilt only when the value or the row
/// count changes (most messages have one row and the same model version and provider).
#[derive(Default)]
struct RepeatedString {
    value: String,
    array: Option<ArrayRef>,
}

impl RepeatedString {
    /// `value` repeated `rows` times, from the cache when it holds exactly that.
    fn get(&mut self, value: &str, rows: usize) -> ArrayRef {
        match &self.array {
            Some(array) if array.len() == rows && self.value == value => Arc::clone(array),
            _ => {
                let array: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    value, rows,
                )));
                value.clone_into(&mut self.value);
                self.array = Some(Arc::clone(&array));
                array
            }
        }
    }
}

/// What a model being loaded in the background sends back.
type Loaded = Result<(Scorer, String), String>;

/// The registry pointer the node follows, and the model being loaded in the background.
struct Watch {
    link: std::path::PathBuf,
    /// The directory the current scorer was loaded from.
    current: std::path::PathBuf,
    /// A directory that failed to load (not retried until the pointer moves again).
    refused: Option<std::path::PathBuf>,
    every_ns: u64,
    last_check_ns: Option<u64>,
    loading: Option<(std::path::PathBuf, std::sync::mpsc::Receiver<Loaded>)>,
    session: forgeline_inference::InferenceConfig,
}

impl Inference {
    /// Between two messages: installs a model that finished loading in the background (health
    /// `model_switched`, `first_seq` = the seq of the message about to be scored), or refuses
    /// one that failed (health alarm `model_refused`; the old model keeps scoring); otherwise,
    /// at most every `reload_check_ms`, looks at the registry's active pointer and starts
    /// loading (verify + warm up) a newly activated version on a background thread.
    fn poll_reload(&mut self, now_ns: u64, asset_id: &str, first_seq: u64, out: &mut Outbox) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        if let Some((target, rx)) = &watch.loading {
            let result = match rx.try_recv() {
                Ok(result) => result,
                Err(std::sync::mpsc::TryRecvError::Empty) => return,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    Err("the loader thread ended without a result".into())
                }
            };
            let target = target.clone();
            watch.loading = None;
            match result {
                Ok((scorer, feature_set)) => {
                    let old = self.scorer.model_version().to_owned();
                    self.scorer = scorer;
                    self.feature_set = feature_set;
                    watch.current = target;
                    let new = self.scorer.model_version().to_owned();
                    if let Some(p) = self.probation.as_mut() {
                        p.model_switched();
                    }
                    if let Some(age) = self.age.as_mut() {
                        age.model_switched(watch.current.clone());
                    }
                    tracing::info!(node = %self.node_id, old = %old, new = %new, first_seq,
                        provider = self.scorer.provider(), "model switched");
                    self.health(
                        out,
                        asset_id,
                        now_ns,
                        HealthLevel::Ok,
                        "model_switched",
                        format!(
                            "model {old} -> {new} from seq {first_seq} on provider {}",
                            self.scorer.provider()
                        ),
                        first_seq as f64,
                    );
                }
                Err(reason) => {
                    tracing::error!(node = %self.node_id, dir = %target.display(), %reason,
                        "new model refused; the old one keeps scoring");
                    let message = format!(
                        "model in {} refused, {} keeps scoring: {reason}",
                        target.display(),
                        self.scorer.model_version()
                    );
                    watch.refused = Some(target);
                    self.health(
                        out,
                        asset_id,
                        now_ns,
                        HealthLevel::Alarm,
                        "model_refused",
                        message,
                        f64::NAN,
                    );
                }
            }
            return;
        }
        if watch
            .last_check_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < watch.every_ns)
        {
            return;
        }
        watch.last_check_ns = Some(now_ns);
        let Ok(target) = std::fs::canonicalize(&watch.link) else {
            return; // No active version right now (mid-swap or deactivated): keep the current one.
        };
        if target == watch.current || watch.refused.as_ref() == Some(&target) {
            return;
        }
        tracing::info!(node = %self.node_id, dir = %target.display(), "new active model: loading in the background");
        let (tx, rx) = std::sync::mpsc::channel();
        let session = watch.session.clone();
        let dir = target.clone();
        let spawned = std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(move || {
                let loaded = forgeline_inference::ModelDir::load(&dir)
                    .map_err(|e| e.to_string())
                    .and_then(|model| {
                        let set = model.meta().feature_set.clone();
                        Scorer::new(&model, &session)
                            .map(|s| (s, set))
                            .map_err(|e| e.to_string())
                    });
                let _ = tx.send(loaded);
            });
        match spawned {
            Ok(_) => watch.loading = Some((target, rx)),
            Err(e) => {
                tracing::warn!(node = %self.node_id, "cannot start the model loader thread: {e}")
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // The fields of one health event.
    pub(crate) fn health(
        &mut self,
        out: &mut Outbox,
        asset_id: &str,
        now_ns: u64,
        level: HealthLevel,
        code: &str,
        message: String,
        value: f64,
    ) {
        if !self.has_health {
            return;
        }
        self.health_seq += 1;
        out.health(Health {
            key: Correlation::new(asset_id, self.health_seq, now_ns),
            node_id: self.node_id.clone(),
            component: "model".into(),
            level,
            code: code.into(),
            message,
            value,
        });
    }

    /// The scorer in use (model version, provider, counters).
    #[must_use]
    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// The scorer in use, mutable: for benchmarks that run bare ONNX Runtime on the node's own
    /// session (same weights, same arena) next to the node path.
    pub fn scorer_mut(&mut self) -> &mut Scorer {
        &mut self.scorer
    }

    /// Scores the rows of feature messages (already queued messages of one input together):
    /// at most `max_batch` rows per session run. One `score` message per input message.
    fn on_features(
        &mut self,
        batches: &[FeatureMsg<'_>],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut results = std::mem::take(&mut self.results);
        let mut todo = std::mem::take(&mut self.todo);
        let mut layout = std::mem::take(&mut self.layout);
        results.clear();
        todo.clear();
        layout.clear();
        let sent = self
            .score_features(batches, &mut results, &mut todo, &mut layout)
            .and_then(|()| {
                for (msg, (cols, first)) in batches.iter().zip(&layout) {
                    let rows = &results[*first..*first + msg.num_rows()];
                    self.observe(rows);
                    let quality = msg.columns().get(cols.quality_flags).cloned();
                    let score = self.score_batch(msg.columns(), cols, rows, quality)?;
                    out.send_batch("score", score);
                }
                Ok(())
            });
        self.results = results;
        self.todo = todo;
        self.layout = layout;
        sent
    }

    /// The scoring part of [`Inference::on_features`]: fills `results` (one entry per input
    /// row, in order) and `layout` (each message's column indices and first row in `results`).
    fn score_features(
        &mut self,
        batches: &[FeatureMsg<'_>],
        results: &mut Vec<RowResult>,
        todo: &mut Vec<(usize, usize)>,
        layout: &mut Vec<(FeatureCols, usize)>,
    ) -> Result<(), StageError> {
        for (m, msg) in batches.iter().enumerate() {
            let c = msg.cols;
            layout.push((c, results.len()));
            let (sets, flags, values) = c.arrays(msg.columns())?;
            for row in 0..msg.num_rows() {
                results.push(RowResult::NOT_SCORED);
                if !QualityFlags(flags.value(row)).is_ok() {
                    continue;
                }
                let v = row_values(values, row)?;
                if sets.value(row) != self.feature_set || v.len() != self.scorer.row_len() {
                    let key = msg.key(row)?;
                    return Err(StageError::Input(format!(
                        "node {}: asset {} seq {}: model {} expects feature set `{}` with {} values, got `{}` with {} (field `values`)",
                        self.node_id,
                        key.asset_id,
                        key.seq,
                        self.scorer.model_version(),
                        self.feature_set,
                        self.scorer.row_len(),
                        sets.value(row),
                        v.len()
                    )));
                }
                todo.push((m, row));
            }
        }
        let values_of = |m: usize, row: usize| -> Result<&[f32], SchemaMismatch> {
            row_values(layout[m].0.arrays(batches[m].columns())?.2, row)
        };
        let mut rows: Vec<&[f32]> = Vec::new();
        for chunk in todo.chunks(self.max_batch) {
            let one;
            let run: &[&[f32]] = if let [(m, row)] = chunk {
                one = values_of(*m, *row)?;
                std::slice::from_ref(&one)
            } else {
                rows.clear();
                for (m, row) in chunk {
                    rows.push(values_of(*m, *row)?);
                }
                &rows
            };
            let t0 = Instant::now();
            if let Err(e) = self.scorer.infer_rows(run) {
                if let Some(p) = self.probation.as_mut() {
                    p.window.record_run_error(&e.to_string());
                }
                let (m, row) = chunk.get(failing_row(&e)).unwrap_or(&chunk[0]);
                let key = batches[*m].key(*row)?;
                return Err(StageError::Input(format!(
                    "node {}: asset {} seq {}: {e}",
                    self.node_id, key.asset_id, key.seq
                )));
            }
            let elapsed = elapsed_ns(t0);
            let outputs = self.scorer.last_outputs();
            for (i, (m, row)) in chunk.iter().enumerate() {
                results[layout[*m].1 + *row] = RowResult::of(&self.scorer, outputs, i, elapsed);
            }
        }
        Ok(())
    }

    /// The `score` message for `input`: the key and `source` columns are the input's own
    /// (shared, not copied), the rest is built from `rows`.
    fn score_batch(
        &mut self,
        input: &[ArrayRef],
        cols: &FeatureCols,
        rows: &[RowResult],
        quality: Option<ArrayRef>,
    ) -> Result<RecordBatch, StageError> {
        let n = rows.len();
        let column = |i: usize| {
            input.get(i).cloned().ok_or_else(|| {
                StageError::Internal(format!("node {}: input column {i} missing", self.node_id))
            })
        };
        let label: ArrayRef = if rows.iter().all(|r| r.class.is_none()) {
            self.empty_label_column.get("", n)
        } else {
            let labels = self.scorer.labels();
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
                r.class
                    .and_then(|i| labels.get(i))
                    .map_or("", String::as_str)
            })))
        };
        let model = self.model_column.get(self.scorer.model_version(), n);
        let provider = self.provider_column.get(self.scorer.provider(), n);
        let quality = quality.unwrap_or_else(|| Arc::new(UInt32Array::from(vec![0_u32; n])));
        RecordBatch::try_new(
            forgeline_schemas::score::schema(),
            vec![
                column(cols.asset_id)?,
                column(cols.seq)?,
                column(cols.acq_time_ns)?,
                Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
                label,
                model,
                provider,
                quality,
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.inference_ns),
                )),
                column(cols.source)?,
            ],
        )
        .map_err(|e| StageError::Internal(format!("node {}: score batch: {e}", self.node_id)))
    }

    /// Scores the rows of one tensor message, `max_batch` rows per session run, reading the
    /// bytes in place.
    fn on_tensor(
        &mut self,
        port: &str,
        batch: &RecordBatch,
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let header = Header::of(batch, tensor::NAME)?;
        let mismatch = |field: &str, reason: String| SchemaMismatch {
            message: tensor::NAME,
            field: field.to_owned(),
            reason,
        };
        let shapes = batch
            .column_by_name("shape")
            .and_then(|c| c.as_list_opt::<i64>())
            .ok_or_else(|| mismatch("shape", "expected LargeList<Int64>".into()))?;
        let dims = shapes
            .values()
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| mismatch("shape", "expected LargeList<Int64>".into()))?;
        let dtypes = forgeline_runtime::columns::strings(batch, tensor::NAME, "dtype")?;
        let layouts = forgeline_runtime::columns::strings(batch, tensor::NAME, "layout")?;
        let data = batch
            .column_by_name("data")
            .and_then(|c| c.as_binary_opt::<i64>())
            .ok_or_else(|| mismatch("data", "expected LargeBinary".into()))?;
        let offsets = shapes.value_offsets();
        for row in 0..batch.num_rows() {
            let (start, end) = (offset(offsets[row]), offset(offsets[row + 1]));
            let shape = dims.values().get(start..end).ok_or_else(|| {
                mismatch(
                    "shape",
                    format!("row {row}: offsets {start}..{end} out of range"),
                )
            })?;
            let view = TensorRow {
                shape,
                dtype: dtypes.value(row),
                layout: layouts.value(row),
                data: tensor::bytes(batch, row)?,
            };
            self.scorer.check_tensor(row, &view).map_err(|e| {
                let key = header.key(row);
                StageError::Input(format!(
                    "node {} input `{port}`: asset {} seq {}: {e}",
                    self.node_id, key.asset_id, key.seq
                ))
            })?;
        }
        let mut scored = vec![RowResult::NOT_SCORED; batch.num_rows()];
        // Rows are back to back in the values buffer: a run of rows is one slice.
        let bytes = data.value_offsets();
        let all = data.value_data();
        let n = batch.num_rows();
        let mut first = 0;
        while first < n {
            let last = (first + self.max_batch).min(n);
            let slice = all
                .get(offset(bytes[first])..offset(bytes[last]))
                .ok_or_else(|| {
                    mismatch(
                        "data",
                        format!("rows {first}..{last}: offsets out of range"),
                    )
                })?;
            let t0 = Instant::now();
            let probation = &mut self.probation;
            self.scorer
                .infer_tensors(last - first, slice)
                .map_err(|e| {
                    if let Some(p) = probation.as_mut() {
                        p.window.record_run_error(&e.to_string());
                    }
                    let key = header.key(first + failing_row(&e));
                    StageError::Input(format!(
                        "node {} input `{port}`: asset {} seq {}: {e}",
                        self.node_id, key.asset_id, key.seq
                    ))
                })?;
            let elapsed = elapsed_ns(t0);
            let outputs = self.scorer.last_outputs();
            for i in 0..last - first {
                scored[first + i] = RowResult::of(&self.scorer, outputs, i, elapsed);
            }
            first = last;
        }
        self.observe(&scored);
        let cols = FeatureCols::of(batch.schema_ref())?;
        out.send_batch(
            "score",
            self.score_batch(batch.columns(), &cols, &scored, None)?,
        );
        Ok(())
    }

    /// Feeds the probation health window with the rows of one `score` message.
    fn observe(&mut self, rows: &[RowResult]) {
        if let Some(p) = self.probation.as_mut() {
            for r in rows {
                p.window.record(r.score, r.scored, r.inference_ns);
            }
        }
    }

    /// Sends the `model_loaded` health event (model version, variant, provider) once, so that
    /// the provider in use is visible on the health topic and in metrics.
    fn announce(&mut self, asset_id: &str, now_ns: u64, out: &mut Outbox) {
        if self.announced {
            return;
        }
        self.announced = true;
        if !self.has_health {
            return;
        }
        let skipped: Vec<String> = self
            .scorer
            .skipped_providers()
            .iter()
            .map(|s| format!("{}: {}", s.provider, s.reason))
            .collect();
        self.health_seq += 1;
        out.health(Health {
            key: Correlation::new(asset_id, self.health_seq, now_ns),
            node_id: self.node_id.clone(),
            component: "model".into(),
            level: HealthLevel::Ok,
            code: "model_loaded".into(),
            message: format!(
                "model {} variant {} on provider {} (skipped: {})",
                self.scorer.model_version(),
                self.scorer.variant(),
                self.scorer.provider(),
                if skipped.is_empty() {
                    "none".into()
                } else {
                    skipped.join("; ")
                }
            ),
            value: f64::NAN,
        });
    }
}

/// One `FeatureVector` message as the node reads it: the payload's columns in place when its
/// Arrow type is the one already checked (no record batch is built per message), else the
/// checked record batch; and the indices of the columns the node uses.
struct FeatureMsg<'a> {
    data: FeatureData<'a>,
    cols: FeatureCols,
}

enum FeatureData<'a> {
    View(&'a StructArray),
    Batch(RecordBatch),
}

impl FeatureMsg<'_> {
    fn columns(&self) -> &[ArrayRef] {
        match &self.data {
            FeatureData::View(s) => s.columns(),
            FeatureData::Batch(b) => b.columns(),
        }
    }

    fn num_rows(&self) -> usize {
        match &self.data {
            FeatureData::View(s) => s.len(),
            FeatureData::Batch(b) => b.num_rows(),
        }
    }

    /// The message as a record batch, built on demand (error reports, the first key).
    fn to_batch(&self) -> RecordBatch {
        match &self.data {
            // A view has no nulls at the top level (checked when it was made).
            FeatureData::View(s) => RecordBatch::from((*s).clone()),
            FeatureData::Batch(b) => b.clone(),
        }
    }

    /// The correlation key of `row` (for error reports).
    fn key(&self, row: usize) -> Result<Correlation, SchemaMismatch> {
        Ok(Header::of(&self.to_batch(), features::NAME)?.key(row))
    }
}

/// The model's result for one row (NaN / no class / 0 ns where not scored).
#[derive(Debug, Clone, Copy)]
struct RowResult {
    score: f32,
    class: Option<usize>,
    inference_ns: u64,
    /// Whether the model scored the row (rows whose data quality failed are passed on).
    scored: bool,
}

impl RowResult {
    const NOT_SCORED: Self = Self {
        score: f32::NAN,
        class: None,
        inference_ns: 0,
        scored: false,
    };

    /// The result of row `i` of a run's outputs.
    fn of(scorer: &Scorer, outputs: &[f32], i: usize, elapsed_ns: u64) -> Self {
        let width = scorer.output_width();
        let values = &outputs[i * width..(i + 1) * width];
        let (score, class) = match scorer.task() {
            Task::Anomaly => (values[0], None),
            Task::Classification => {
                let verdict = scorer.classified(values);
                (verdict.reject_probability, Some(verdict.class))
            }
        };
        Self {
            score,
            class,
            inference_ns: elapsed_ns,
            scored: true,
        }
    }
}

/// Column indices of the fields the node reads or forwards, in one message's schema (a
/// `FeatureVector`; a `Tensor` has the same key and `source` columns, which is all the
/// `score` message takes from it).
#[derive(Debug, Clone, Copy)]
struct FeatureCols {
    asset_id: usize,
    seq: usize,
    acq_time_ns: usize,
    source: usize,
    feature_set: usize,
    values: usize,
    quality_flags: usize,
}

impl FeatureCols {
    /// Indices by name (`usize::MAX` for the feature-only fields a tensor lacks).
    fn of(schema: &SchemaRef) -> Result<Self, SchemaMismatch> {
        let find = |name: &str| {
            schema.index_of(name).map_err(|_| SchemaMismatch {
                message: features::NAME,
                field: name.to_owned(),
                reason: "missing".into(),
            })
        };
        let optional = |name: &str| schema.index_of(name).unwrap_or(usize::MAX);
        Ok(Self {
            asset_id: find("asset_id")?,
            seq: find("seq")?,
            acq_time_ns: find("acq_time_ns")?,
            source: find("source")?,
            feature_set: optional("feature_set"),
            values: optional("values"),
            quality_flags: optional("quality_flags"),
        })
    }

    /// The `feature_set`, `quality_flags` and `values` arrays of a `FeatureVector` batch.
    fn arrays<'a>(
        &self,
        columns: &'a [ArrayRef],
    ) -> Result<(&'a StringArray, &'a UInt32Array, &'a LargeListArray), SchemaMismatch> {
        let wrong = |field: &str, expected: &str| SchemaMismatch {
            message: features::NAME,
            field: field.to_owned(),
            reason: format!("expected {expected}"),
        };
        let col = |i: usize| columns.get(i);
        let sets = col(self.feature_set)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| wrong("feature_set", "Utf8"))?;
        let flags = col(self.quality_flags)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| wrong("quality_flags", "UInt32"))?;
        let values = col(self.values)
            .and_then(|c| c.as_list_opt::<i64>())
            .ok_or_else(|| wrong("values", "LargeList<Float32>"))?;
        Ok((sets, flags, values))
    }
}

/// The feature values of `row`, in place (a slice of the list's child buffer).
fn row_values(values: &LargeListArray, row: usize) -> Result<&[f32], SchemaMismatch> {
    let mismatch = |reason: String| SchemaMismatch {
        message: features::NAME,
        field: "values".into(),
        reason,
    };
    let items = values
        .values()
        .as_primitive_opt::<Float32Type>()
        .ok_or_else(|| mismatch("expected LargeList<Float32>".into()))?;
    if values.is_null(row) || items.null_count() > 0 {
        return Err(mismatch(format!("row {row}: null list or null items")));
    }
    let offsets = values.value_offsets();
    let bounds = offsets.get(row).zip(offsets.get(row + 1));
    bounds
        .and_then(|(s, e)| items.values().get(offset(*s)..offset(*e)))
        .ok_or_else(|| {
            mismatch(format!(
                "row {row}: list offsets do not address the values buffer ({} values)",
                items.len()
            ))
        })
}

/// The row of a run (0-based within it) that an error names, or 0 for errors of the whole run.
fn failing_row(e: &forgeline_inference::InferenceError) -> usize {
    use forgeline_inference::InferenceError as E;
    match e {
        E::NonFinite { row, .. } | E::InputLength { row, .. } | E::TensorMismatch { row, .. } => {
            *row
        }
        _ => 0,
    }
}

fn offset(o: i64) -> usize {
    usize::try_from(o).unwrap_or(usize::MAX)
}

fn elapsed_ns(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Stage for Inference {
    type Config = Config;
    const KIND: &'static str = "inference";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let current = config.current_dir().map_err(|e| eyre::eyre!("{e}"))?;
        let model = config.load_model().map_err(|e| eyre::eyre!("{e}"))?;
        let watch = config.registry.as_ref().map(|reg| Watch {
            link: reg.active_link(),
            current: current.clone(),
            refused: None,
            every_ns: config.reload_check_ms.saturating_mul(1_000_000),
            last_check_ns: None,
            loading: None,
            session: config.session.clone(),
        });
        let probation = config.registry.as_ref().map(probation::ProbationWatch::new);
        let age = config
            .max_model_age_days
            .map(|max_days| probation::AgeWatch::new(max_days, current.clone()));
        let feature_set = model.meta().feature_set.clone();
        let scorer = Scorer::new(&model, &config.session).map_err(|e| eyre::eyre!("{e}"))?;
        tracing::info!(
            node = %ctx.node_id,
            model = scorer.model_version(),
            provider = scorer.provider(),
            variant = scorer.variant().as_str(),
            warmup_runs = scorer.warmup_runs_done(),
            max_batch = config.session.max_batch,
            "model loaded"
        );
        Ok(Self {
            scorer,
            feature_set,
            node_id: ctx.node_id.clone(),
            max_batch: config.session.max_batch.max(1),
            has_health: ctx
                .outputs
                .iter()
                .any(|o| o == forgeline_runtime::HEALTH_PORT),
            announced: false,
            health_seq: 0,
            watch,
            probation,
            age,
            features_type: None,
            results: Vec::new(),
            todo: Vec::new(),
            layout: Vec::new(),
            model_column: RepeatedString::default(),
            provider_column: RepeatedString::default(),
            empty_label_column: RepeatedString::default(),
            last_message_ns: 0,
            keep_warm_failed: false,
            keep_warm_runs: 0,
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        self.last_message_ns = input.now_ns;
        if input.port.starts_with("tensor") {
            let batch = input.batch::<Tensor>()?;
            self.before_message(|| first_key(&batch), input.now_ns, out);
            self.on_tensor(input.port, &batch, out)
        } else if input.port.starts_with("features") {
            let msg = self.features_msg(input)?;
            self.before_message(|| first_key(&msg.to_batch()), input.now_ns, out);
            self.on_features(std::slice::from_ref(&msg), out)
        } else {
            Err(StageError::Input(format!(
                "node {}: unknown input `{}`: expected `features` (FeatureVector) or an id starting with `tensor` (Tensor)",
                self.node_id, input.port
            )))
        }
    }

    fn max_input_batch(&self) -> usize {
        self.max_batch
    }

    fn on_inputs(&mut self, inputs: &[Input<'_>], out: &mut Outbox) -> Result<(), StageError> {
        if let Some(first) = inputs.first() {
            self.last_message_ns = first.now_ns;
        }
        self.on_queued(inputs, out)
    }

    /// One model run on a dummy row, result discarded, unless a message was scored within the
    /// last millisecond: after one idle second the node path then took 87 µs at p50 instead of
    /// 466 µs cold with the press model on the project's box (`docs/performance.md`, "Keep
    /// warm").
    fn keep_warm(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.last_message_ns) < KEEP_WARM_SKIP_NS {
            return;
        }
        match self.scorer.keep_warm() {
            Ok(()) => self.keep_warm_runs += 1,
            Err(e) if !self.keep_warm_failed => {
                self.keep_warm_failed = true;
                tracing::warn!(node = %self.node_id, "keep-warm run failed (logged once): {e}");
            }
            Err(_) => {}
        }
    }

    fn on_stop(&mut self, _now_ns: u64, _out: &mut Outbox) -> Result<(), StageError> {
        tracing::info!(
            node = %self.node_id,
            model = %self.scorer.model_version(),
            runs = self.scorer.runs(),
            keep_warm_runs = self.keep_warm_runs,
            "inference stopped"
        );
        Ok(())
    }
}

impl Inference {
    /// Model reload and the one-off `model_loaded` event, before a message is scored. The
    /// message's first key is read only when one of them has something to do.
    fn before_message(
        &mut self,
        first: impl FnOnce() -> (String, u64),
        now_ns: u64,
        out: &mut Outbox,
    ) {
        if self.watch.is_none() && self.announced && self.age.is_none() {
            return;
        }
        let (asset, seq) = first();
        self.poll_reload(now_ns, &asset, seq, out);
        self.announce(&asset, now_ns, out);
        self.poll_probation(now_ns, &asset, out);
        self.poll_age(now_ns, &asset, out);
    }

    /// The payload of a `features` input as a `FeatureVector` message. The full schema check
    /// ([`Input::batch`]) runs once per distinct payload type; a payload whose Arrow type equals
    /// the last checked one (pointer-equal `Fields` compare in O(1)) is read in place with the
    /// cached column indices.
    fn features_msg<'a>(&mut self, input: &Input<'a>) -> Result<FeatureMsg<'a>, StageError> {
        let data: &'a ArrayRef = input.data;
        if let Some((checked, _, cols)) = &self.features_type
            && data.data_type() == checked
            && let Some(structs) = data.as_any().downcast_ref::<StructArray>()
            && structs.null_count() == 0
        {
            return Ok(FeatureMsg {
                data: FeatureData::View(structs),
                cols: *cols,
            });
        }
        let batch = input.batch::<FeatureVector>()?;
        let cols = FeatureCols::of(batch.schema_ref())?;
        self.features_type = Some((data.data_type().clone(), batch.schema(), cols));
        Ok(FeatureMsg {
            data: FeatureData::Batch(batch),
            cols,
        })
    }

    /// `on_inputs` body: queued feature messages scored together; anything else one by one.
    fn on_queued(&mut self, inputs: &[Input<'_>], out: &mut Outbox) -> Result<(), StageError> {
        let all_features = inputs.iter().all(|i| i.port.starts_with("features"));
        if inputs.len() < 2 || !all_features {
            let mut first_error = None;
            for input in inputs {
                if let Err(e) = self.on_input(input, out) {
                    first_error.get_or_insert(e);
                }
            }
            return first_error.map_or(Ok(()), Err);
        }
        let batches = inputs
            .iter()
            .map(|i| self.features_msg(i))
            .collect::<Result<Vec<_>, _>>();
        if let Ok(batches) = batches {
            self.before_message(|| first_key(&batches[0].to_batch()), inputs[0].now_ns, out);
            if self.on_features(&batches, out).is_ok() {
                return Ok(());
            }
        }
        // One bad message must not cost the others their scores: score them one by one.
        let mut first_error = None;
        for input in inputs {
            if let Err(e) = self.on_input(input, out) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Asset and seq of the first row (empty / 0 for an empty message).
fn first_key(batch: &RecordBatch) -> (String, u64) {
    Header::of(batch, "")
        .ok()
        .filter(|_| batch.num_rows() > 0)
        .map(|h| {
            let key = h.key(0);
            (key.asset_id, key.seq)
        })
        .unwrap_or_default()
}
