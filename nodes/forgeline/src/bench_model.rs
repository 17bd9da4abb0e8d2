//! `forgeline bench-model`: latency and throughput of one model directory, per variant and per
//! execution provider, with its floor and its baseline measured in the same run:
//!
//! - **bare ORT**: `session.run` on a prebuilt, already normalised input (the floor);
//! - **bare ORT bound**: the same input copied into tensors bound once to the session and one
//!   `run_binding`, which is how the scorer calls ONNX Runtime on the CPU provider (the floor of
//!   its own call: node path over this is the cost of the Arrow and runtime layer, with the
//!   scorer's checks and standardisation);
//! - **scorer**: `Scorer::infer_rows` (normalisation + run + output copy, no Arrow);
//! - **node path**: what the `inference` node does per message without dora: an Arrow
//!   `FeatureVector` (or `Tensor`) message in, the stage, an Arrow `Score` message out;
//! - **Python ORT**: `tools/python/forgeline_ml/bench_ort.py` on the same file, the same input
//!   and the same thread settings (CPU provider only: the PyPI wheel has no other).
//!
//! Bare, scorer and node path are interleaved call by call so that machine noise hits them alike,
//! all three on the node's own ONNX Runtime session (the same weights and arena in cache).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use eyre::WrapErr;
use forgeline_node_inference::forgeline_inference::{
    InferenceConfig, ModelDir, Provider, Scorer, Task, VariantChoice, VariantKind,
};
use forgeline_node_inference::{Config, Inference};
use forgeline_runtime::arrow::array::ArrayRef;
use forgeline_runtime::latency::{Latencies, Summary};
use forgeline_runtime::{InitContext, Input, Outbox, Stage};
use forgeline_schemas::{Correlation, FeatureVector, QualityFlags, Tensor};

/// Options of `bench-model`.
#[derive(Debug, Clone)]
pub struct BenchModelOptions {
    /// Timed runs per path.
    pub runs: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Rows per message and per session run.
    pub batch: usize,
    /// Variants to measure (those the model ships).
    pub variants: Vec<VariantKind>,
    /// Providers to try, each on its own.
    pub providers: Vec<Provider>,
    /// ONNX Runtime intra-op threads (the same for Python).
    pub intra_threads: usize,
    /// Skip the Python baseline.
    pub no_python: bool,
    /// Untimed pause before each iteration (ms), after which the node path is timed first: the
    /// cost of the first message after an idle spell (a press at 18 strokes/min idles 3.3 s).
    pub idle_ms: u64,
    /// During each pause, the node's `keep_warm` every this many ms (0: none), the last one half
    /// an interval before the message, as the graph's `keep_warm` timer would on average.
    pub keep_warm_ms: u64,
}

/// The floor: `session.run` on a prebuilt input.
const BARE_RUN: &str = "bare ORT session.run";
/// The floor of the scorer's own call (CPU provider): `run_binding` on pre-bound tensors.
const BARE_BOUND: &str = "bare ORT run_binding";
/// What the inference node does per message.
const NODE_PATH: &str = "node path (Arrow in/out)";
/// The baseline: the Python ORT API on the same file and input.
const PYTHON: &str = "Python ORT API";

/// One measured path.
struct Row {
    variant: VariantKind,
    provider: String,
    path: &'static str,
    summary: Summary,
    rows_per_s: f64,
}

/// Runs the benchmark and prints one table, then the goals of issue #5 with their verdicts.
///
/// # Errors
/// An invalid model directory, no usable provider at all, or a failing run.
pub fn bench_model(model_dir: &Path, opts: &BenchModelOptions) -> eyre::Result<()> {
    eyre::ensure!(
        opts.runs > 0 && opts.batch > 0,
        "--runs and --batch must be at least 1"
    );
    let model = ModelDir::load(model_dir).map_err(|e| eyre::eyre!("{e}"))?;
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut library = String::new();
    for &variant in &opts.variants {
        if model.variant_path(variant).is_none() {
            notes.push(format!(
                "{variant}: not shipped by {}",
                model.model_version()
            ));
            continue;
        }
        for &provider in &opts.providers {
            let session = InferenceConfig {
                variant: match variant {
                    VariantKind::Fp32 => VariantChoice::Fp32,
                    VariantKind::Int8 => VariantChoice::Int8,
                },
                providers: vec![provider],
                intra_threads: opts.intra_threads,
                inter_threads: 1,
                warmup_runs: 0,
                max_batch: opts.batch,
                ..Default::default()
            };
            let mut scorer = match Scorer::new(&model, &session) {
                Ok(s) => s,
                Err(e) => {
                    notes.push(format!("{variant} on {provider}: skipped: {e}"));
                    continue;
                }
            };
            library = scorer.library_path().display().to_string();
            let mut measured = measure(&model, model_dir, &mut scorer, &session, opts)
                .wrap_err_with(|| format!("{variant} on {provider}"))?;
            if provider == Provider::Cpu && !opts.no_python {
                match python(&mut scorer, opts) {
                    Ok(summary) => measured.push(summary),
                    Err(e) => notes.push(format!("{variant}: Python baseline skipped: {e:#}")),
                }
            }
            rows.extend(measured.into_iter().map(|(path, summary, rows_per_s)| Row {
                variant,
                provider: provider.as_str().to_owned(),
                path,
                summary,
                rows_per_s,
            }));
        }
    }
    eyre::ensure!(!rows.is_empty(), "nothing measured: {}", notes.join("; "));
    print_table(&model, opts, &library, &rows, &notes);
    Ok(())
}

type Measured = Vec<(&'static str, Summary, f64)>;

/// Bare ORT, scorer and node path, interleaved.
fn measure(
    model: &ModelDir,
    model_dir: &Path,
    scorer: &mut Scorer,
    session: &InferenceConfig,
    opts: &BenchModelOptions,
) -> eyre::Result<Measured> {
    let raw = inputs(scorer, opts.batch);
    let prebuilt = scorer.normalised(&raw);
    let message = message(model, scorer, &raw, opts.batch);
    let row_len = scorer.row_len();
    let row_refs: Vec<&[f32]> = raw.chunks(row_len).collect();
    let mut node = Inference::new(
        Config::with_model_dir(model_dir, session.clone()),
        &InitContext {
            node_id: "inference".into(),
            outputs: vec!["score".into()],
            inputs: vec!["features".into(), "tensor".into()],
            restart_count: 0,
        },
    )?;
    let port = if model.input().shape.len() > 2 {
        "tensor"
    } else {
        "features"
    };
    let binds = node
        .scorer_mut()
        .run_prebuilt_bound(opts.batch, &prebuilt)?
        .is_some();
    let mut lat: [Latencies; 4] = std::array::from_fn(|_| Latencies::with_capacity(opts.runs));
    let mut out = Outbox::default();
    let (mut floor_first, mut bound_first, mut node_first) = (f32::NAN, f32::NAN, f32::NAN);
    // Time spent in each path over the timed runs (throughput = rows / time in the path).
    let mut spent = [0_u64; 4];
    for i in 0..opts.warmup + opts.runs {
        // After an idle spell the node path goes first, so that it meets what a message after
        // a pause meets; otherwise it goes last (interleaved: noise hits the paths alike).
        let idle_first = opts.idle_ms > 0;
        let mut node_time = std::time::Duration::ZERO;
        let mut sent = Vec::new();
        if idle_first {
            pause(&mut node, opts);
            (node_time, sent) = node_path(&mut node, port, &message, &mut out, i == 0)?;
        }
        // All paths on the node's own session: the same weights and arena in cache.
        let t0 = Instant::now();
        floor_first = node.scorer_mut().run_prebuilt(opts.batch, &prebuilt)?;
        let t1 = Instant::now();
        if binds {
            bound_first = node
                .scorer_mut()
                .run_prebuilt_bound(opts.batch, &prebuilt)?
                .unwrap_or(f32::NAN);
        }
        let t2 = Instant::now();
        node.scorer_mut().infer_rows(&row_refs)?;
        let t3 = Instant::now();
        if !idle_first {
            (node_time, sent) = node_path(&mut node, port, &message, &mut out, i == 0)?;
        }
        if i >= opts.warmup {
            for (k, d) in [t1 - t0, t2 - t1, t3 - t2, node_time]
                .into_iter()
                .enumerate()
            {
                lat[k].record(nanos(d));
                spent[k] += nanos(d);
            }
        } else if i == 0 {
            node_first = first_score(&sent);
        }
    }
    if model.meta().task == Task::Anomaly {
        for (path, first) in [(NODE_PATH, node_first), (BARE_BOUND, bound_first)] {
            eyre::ensure!(
                (floor_first - first).abs() <= 1e-4 || (path == BARE_BOUND && !binds),
                "{path} scored {first} but bare ORT session.run gave {floor_first} on the same row"
            );
        }
    }
    let n = (opts.runs * opts.batch) as f64;
    let mut result = Vec::new();
    for (k, (path, lat)) in [BARE_RUN, BARE_BOUND, "scorer (no Arrow)", NODE_PATH]
        .into_iter()
        .zip(&lat)
        .enumerate()
    {
        if path == BARE_BOUND && !binds {
            continue;
        }
        let summary = lat
            .summary()
            .ok_or_else(|| eyre::eyre!("no samples recorded"))?;
        result.push((path, summary, n / (spent[k] as f64 / 1e9)));
    }
    Ok(result)
}

type Sent = Vec<(String, forgeline_runtime::arrow::record_batch::RecordBatch)>;

/// One message through the node (Arrow in, stage, Arrow out), timed; the messages it queued are
/// dropped as the runtime's send would take them (kept when `keep` is set, for a check).
fn node_path(
    node: &mut Inference,
    port: &str,
    message: &ArrayRef,
    out: &mut Outbox,
    keep: bool,
) -> eyre::Result<(std::time::Duration, Sent)> {
    let t = Instant::now();
    let now = forgeline_runtime::now_ns();
    let input = Input {
        port,
        data: message,
        now_ns: now,
        sent_ns: now,
    };
    node.on_input(&input, out)
        .map_err(|e| eyre::eyre!("node path: {e}"))?;
    // As the runtime does after each message: the queued messages leave (here dropped instead
    // of sent), the queue keeps its capacity.
    let sent = if keep {
        out.drain().collect()
    } else {
        out.drain().for_each(drop);
        Vec::new()
    };
    Ok((t.elapsed(), sent))
}

/// `--idle-ms`: sleeps that long, calling the node's `keep_warm` every `--keep-warm-ms` on the
/// way (the last one half an interval before the message).
fn pause(node: &mut Inference, opts: &BenchModelOptions) {
    let ms = std::time::Duration::from_millis;
    if opts.keep_warm_ms == 0 {
        std::thread::sleep(ms(opts.idle_ms));
        return;
    }
    let mut left = opts.idle_ms.saturating_sub(opts.keep_warm_ms / 2);
    while left > 0 {
        let step = opts.keep_warm_ms.min(left);
        std::thread::sleep(ms(step));
        left -= step;
        node.keep_warm(forgeline_runtime::now_ns());
    }
    std::thread::sleep(ms(opts.keep_warm_ms / 2));
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn first_score(sent: &[(String, forgeline_runtime::arrow::record_batch::RecordBatch)]) -> f32 {
    sent.iter()
        .find(|(p, _)| p == "score")
        .and_then(|(_, b)| forgeline_schemas::Score::try_from_batch(b).ok())
        .and_then(|s| s.first().map(|s| s.score))
        .unwrap_or(f32::NAN)
}

/// `batch` deterministic rows in the model's raw input units: around the training mean for
/// feature models (within two standard deviations), in [0, 1) for tensors.
fn inputs(scorer: &Scorer, batch: usize) -> Vec<f32> {
    let n = scorer.row_len();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1_u64 << 24) as f32
    };
    let unit: Vec<f32> = (0..n * batch).map(|_| uniform()).collect();
    // A standardised value u*4-2 maps back to mean + std * (u*4-2).
    let probe = scorer.normalised(&vec![0.0; n]);
    let one = scorer.normalised(&vec![1.0; n]);
    unit.iter()
        .enumerate()
        .map(|(i, u)| {
            let j = i % n;
            let inv_std = one[j] - probe[j];
            if probe[j] == 0.0 && (inv_std - 1.0).abs() < f32::EPSILON {
                *u // identity normalisation: tensor-like values in [0, 1)
            } else {
                let z = u * 4.0 - 2.0;
                (z - probe[j]) / inv_std
            }
        })
        .collect()
}

/// The message the node receives: one `FeatureVector` (or `Tensor`) batch of `batch` rows.
fn message(model: &ModelDir, scorer: &Scorer, raw: &[f32], batch: usize) -> ArrayRef {
    let n = scorer.row_len();
    if model.input().shape.len() > 2 {
        let rows: Vec<Tensor> = (0..batch)
            .map(|i| Tensor {
                key: Correlation::new("bench", i as u64, 0),
                shape: scorer.input_dims().to_vec(),
                dtype: "f32".into(),
                layout: model
                    .input()
                    .layout
                    .clone()
                    .unwrap_or_else(|| "nchw".into()),
                data: raw[i * n..(i + 1) * n]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                source: "bench".into(),
            })
            .collect();
        Arc::new(forgeline_schemas::to_struct_array(&Tensor::to_batch(&rows)))
    } else {
        let rows: Vec<FeatureVector> = (0..batch)
            .map(|i| FeatureVector {
                key: Correlation::new("bench", i as u64, 0),
                feature_set: model.meta().feature_set.clone(),
                values: raw[i * n..(i + 1) * n].to_vec(),
                quality: QualityFlags::OK,
                source: "bench".into(),
            })
            .collect();
        Arc::new(forgeline_schemas::to_struct_array(
            &FeatureVector::to_batch(&rows),
        ))
    }
}

/// The project root: the ancestor of the current directory (or of the executable) that holds
/// `tools/python/forgeline_ml/bench_ort.py`.
fn project_root() -> Option<PathBuf> {
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    starts.into_iter().flatten().find_map(|start| {
        start
            .ancestors()
            .find(|d| d.join("tools/python/forgeline_ml/bench_ort.py").is_file())
            .map(Path::to_path_buf)
    })
}

/// The Python ORT API on the same file, input and threads.
fn python(
    scorer: &mut Scorer,
    opts: &BenchModelOptions,
) -> eyre::Result<(&'static str, Summary, f64)> {
    let root = project_root().ok_or_else(|| {
        eyre::eyre!("tools/python/forgeline_ml/bench_ort.py not found above the current directory")
    })?;
    let python = root.join(".venv/bin/python");
    eyre::ensure!(
        python.is_file(),
        "{} not found (run scripts/setup.sh)",
        python.display()
    );
    let raw = inputs(scorer, opts.batch);
    let prebuilt = scorer.normalised(&raw);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.f32");
    std::fs::write(
        &input,
        prebuilt
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let shape: Vec<String> = std::iter::once(opts.batch.to_string())
        .chain(scorer.input_dims().iter().map(ToString::to_string))
        .collect();
    let output = std::process::Command::new(&python)
        .env("PYTHONPATH", root.join("tools/python"))
        .args(["-m", "forgeline_ml.bench_ort", "--model"])
        .arg(scorer.model_file())
        .arg("--input")
        .arg(&input)
        .args(["--shape", &shape.join(",")])
        .args(["--runs", &opts.runs.to_string()])
        .args(["--warmup", &opts.warmup.to_string()])
        .args(["--intra-threads", &opts.intra_threads.to_string()])
        .args(["--inter-threads", "1"])
        .output()
        .wrap_err_with(|| format!("cannot run {}", python.display()))?;
    eyre::ensure!(
        output.status.success(),
        "bench_ort.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&output.stdout).wrap_err("bench_ort.py printed no JSON")?;
    let ms = |k: &str| -> eyre::Result<f64> {
        v[k].as_f64()
            .map(|ns| ns / 1e6)
            .ok_or_else(|| eyre::eyre!("bench_ort.py output has no `{k}`"))
    };
    let floor = scorer.run_prebuilt(opts.batch, &prebuilt)?;
    let theirs = v["first_output"].as_f64().unwrap_or(f64::NAN);
    eyre::ensure!(
        (f64::from(floor) - theirs).abs() < 1e-4,
        "Python's first output {theirs} differs from Rust's {floor}: not the same model/input"
    );
    Ok((
        PYTHON,
        Summary {
            n: opts.runs,
            p50: ms("p50_ns")?,
            p95: ms("p95_ns")?,
            p99: ms("p99_ns")?,
            p999: ms("p999_ns")?,
            max: ms("max_ns")?,
        },
        v["throughput_rows_per_s"].as_f64().unwrap_or(f64::NAN),
    ))
}

fn print_table(
    model: &ModelDir,
    opts: &BenchModelOptions,
    library: &str,
    rows: &[Row],
    notes: &[String],
) {
    println!(
        "model {} ({}), batch {}, {} runs after {} warm-up, intra_threads {}, inter_threads 1",
        model.model_version(),
        model.dir().display(),
        opts.batch,
        opts.runs,
        opts.warmup,
        opts.intra_threads
    );
    println!("ONNX Runtime: {library}");
    if opts.idle_ms > 0 {
        let warm = if opts.keep_warm_ms > 0 {
            format!("the node's keep-warm every {} ms", opts.keep_warm_ms)
        } else {
            "no keep-warm".to_owned()
        };
        println!(
            "idle mode: {} ms pause before each run ({warm}); the node path is timed first after it, bare ORT and the scorer after the node path (warm)",
            opts.idle_ms
        );
    }
    println!(
        "{:<7} {:<9} {:<26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12}",
        "variant",
        "provider",
        "path",
        "p50 µs",
        "p95 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "rows/s",
        "p50 vs run"
    );
    let us = |ms: f64| ms * 1e3;
    let mut verdicts = Vec::new();
    for r in rows {
        let same = |path: &str| {
            rows.iter()
                .find(|b| b.variant == r.variant && b.provider == r.provider && b.path == path)
                .map(|b| b.summary)
        };
        let bare = same(BARE_RUN);
        let overhead = bare.map(|b| 100.0 * (r.summary.p50 - b.p50) / b.p50);
        println!(
            "{:<7} {:<9} {:<26} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>11.0} {:>12}",
            r.variant.as_str(),
            r.provider,
            r.path,
            us(r.summary.p50),
            us(r.summary.p95),
            us(r.summary.p99),
            us(r.summary.p999),
            us(r.summary.max),
            r.rows_per_s,
            match overhead {
                Some(o) if !r.path.starts_with("bare") => format!("{o:+.1}%"),
                _ => "-".into(),
            }
        );
        if r.path == NODE_PATH {
            if let Some(o) = overhead {
                verdicts.push(format!(
                    "{} {}: node path overhead over bare session.run at p50 {o:+.1}% (goal <= 5%): {}",
                    r.variant,
                    r.provider,
                    if o <= 5.0 { "met" } else { "NOT met" }
                ));
            }
            if let Some(b) = same(BARE_BOUND) {
                verdicts.push(format!(
                    "{} {}: node path over the scorer's own ORT call (bare run_binding) at p50 {:+.1}% ({:+.2} µs: the Arrow and runtime layer with the scorer's checks)",
                    r.variant,
                    r.provider,
                    100.0 * (r.summary.p50 - b.p50) / b.p50,
                    us(r.summary.p50 - b.p50)
                ));
            }
            if let Some(py) = same(PYTHON) {
                verdicts.push(format!(
                    "{} {}: node path p99 {:.1} µs vs Python ORT p99 {:.1} µs (goal: at or below): {}",
                    r.variant,
                    r.provider,
                    us(r.summary.p99),
                    us(py.p99),
                    if r.summary.p99 <= py.p99 { "met" } else { "NOT met" }
                ));
            }
        }
    }
    for v in verdicts {
        println!("{v}");
    }
    for n in notes {
        println!("note: {n}");
    }
}

/// Parses the command-line values of `bench-model` and runs it.
///
/// # Errors
/// An unknown variant or provider name, or what [`bench_model`] returns.
#[allow(clippy::too_many_arguments)] // One per command-line option.
pub fn parse_and_run(
    model_dir: &Path,
    runs: usize,
    warmup: usize,
    batch: usize,
    variant: &str,
    providers: &[String],
    intra_threads: usize,
    no_python: bool,
    idle_ms: u64,
    keep_warm_ms: u64,
) -> eyre::Result<()> {
    let variants = match variant {
        "fp32" => vec![VariantKind::Fp32],
        "int8" => vec![VariantKind::Int8],
        "all" => vec![VariantKind::Fp32, VariantKind::Int8],
        other => eyre::bail!("--variant {other:?}: expected fp32, int8 or all"),
    };
    let providers = providers
        .iter()
        .map(|p| {
            serde_yaml::from_str::<Provider>(p).map_err(|_| {
                eyre::eyre!("--providers: {p:?} is not one of tensorrt, cuda, openvino, cpu")
            })
        })
        .collect::<eyre::Result<Vec<_>>>()?;
    bench_model(
        model_dir,
        &BenchModelOptions {
            runs,
            warmup,
            batch,
            variants,
            providers,
            intra_threads: intra_threads.max(1),
            no_python,
            idle_ms,
            keep_warm_ms,
        },
    )
}
