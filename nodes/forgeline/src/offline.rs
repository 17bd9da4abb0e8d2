//! Offline tools over recordings, using the graph's own stages and config in-process:
//! `score`, `train press`, `simulate` and `evaluate`.

use crate::graph::{Graph, in_dir};
use crate::registry;
use eyre::{WrapErr, bail, eyre};
use forgeline_acquisition::dataset::{DatasetPlan, Manifest, generate};
use forgeline_acquisition::{ReplayConfig, ReplaySource, SourceConfig, VibrationSource};
use forgeline_runtime::inprocess::InProcessGraph;
use forgeline_runtime::{InitContext, now_ns};
use forgeline_schemas::{Decision, Score, Waveform};
use forgeline_vibration::{FeatureConfig, FeatureExtractor};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kinds never run by the offline tools: those with side effects on the plant (PLC, files,
/// network), those that produce data themselves, and the monitoring side branches (`health`,
/// `drift`), which watch the line but take no part in a verdict (a model scored offline needs no
/// drift reference).
const NOT_OFFLINE: &[&str] = &[
    "press-acquisition",
    "camera-acquisition",
    "plc-output",
    "plc-sim",
    "telemetry",
    "health",
    "drift",
];

/// The acquisition kinds offline tools feed: `(kind, output port)`.
const ACQUISITION: &[(&str, &str)] = &[
    ("press-acquisition", "waveform"),
    ("camera-acquisition", "frame"),
];

/// Replaces `model_dir` in a config text (for `--model`).
fn override_model_dir(config: Option<&str>, model: &Path) -> eyre::Result<String> {
    let mut v: Value = match config {
        Some(t) if !t.trim().is_empty() => serde_yaml::from_str(t)?,
        _ => Value::Mapping(serde_yaml::Mapping::new()),
    };
    if let Some(m) = v.as_mapping_mut() {
        m.insert("model_dir".into(), model.display().to_string().into());
    }
    Ok(serde_yaml::to_string(&v)?)
}

/// The stages of `graph` that run offline, wired as in the graph. Relative paths in configs are
/// resolved from the graph's directory, as under dora.
pub fn build_offline(
    graph: &Graph,
    model: Option<&Path>,
) -> eyre::Result<(InProcessGraph, String)> {
    let acquisition = ACQUISITION
        .iter()
        .find_map(|(kind, _)| graph.node_of_kind(kind))
        .ok_or_else(|| {
            eyre!(
                "{}: no press-acquisition or camera-acquisition node: nothing to feed recordings into",
                graph.file.display()
            )
        })?
        .id
        .clone();
    let mut g = InProcessGraph::new();
    let origin = graph.file.display().to_string();
    for node in &graph.nodes {
        let Some(kind) = node.kind.as_deref() else {
            continue;
        };
        if NOT_OFFLINE.contains(&kind) {
            continue;
        }
        let entry = registry::find(kind)
            .ok_or_else(|| eyre!("{origin}: node `{}`: unknown kind `{kind}`", node.id))?;
        let mut config = node.config.clone();
        if let Some(model) = model {
            let has_model_dir = config.as_deref().is_some_and(|c| c.contains("model_dir"));
            if kind == "inference" || has_model_dir {
                config = Some(override_model_dir(config.as_deref(), model)?);
            }
        }
        let ctx = InitContext {
            node_id: node.id.clone(),
            outputs: Vec::new(),
            inputs: node.inputs.iter().map(|i| i.0.clone()).collect(),
            restart_count: 0,
        };
        let stage = (entry.build)(config.as_deref(), &origin, &ctx)
            .wrap_err_with(|| format!("{origin}: node `{}` ({kind})", node.id))?;
        g.add_stage(&node.id, stage);
        for (input, from, output) in &node.inputs {
            g.connect(from, output, &node.id, input);
        }
    }
    Ok((g, acquisition))
}

pub(crate) fn absolute(paths: &[PathBuf]) -> eyre::Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| std::path::absolute(p).wrap_err_with(|| format!("bad path {}", p.display())))
        .collect()
}

/// The replay settings of the graph's acquisition node (sample rate, stroke length, trigger),
/// with `paths` replaced.
fn replay_config(graph: &Graph, paths: Vec<PathBuf>) -> eyre::Result<ReplayConfig> {
    let mut replay = ReplayConfig::default();
    if let Some(text) = graph
        .node_of_kind("press-acquisition")
        .and_then(|n| n.config.as_deref())
    {
        let v: Value = serde_yaml::from_str(text)?;
        if let Some(Ok(SourceConfig::Replay(r))) =
            v.get("source").map(|s| serde_yaml::from_value(s.clone()))
        {
            replay = r;
        }
    }
    replay.paths = paths;
    replay.looping = false;
    Ok(replay)
}

/// `forgeline score`: one JSON line per stroke `{"file","seq","score","decision"}`.
pub fn score(
    graph: &Path,
    model: Option<&Path>,
    inputs: &[PathBuf],
    out: &Path,
) -> eyre::Result<()> {
    let graph = Graph::load(graph).map_err(|e| eyre!(e))?;
    if graph.node_of_kind("camera-acquisition").is_some() {
        return optical::score_images(&graph, model, inputs, out);
    }
    let replay = replay_config(&graph, absolute(inputs)?)?;
    score_items(&graph, model, out, "stroke", false, move || {
        let mut source = ReplaySource::new(replay).map_err(|e| eyre!("{e}"))?;
        Ok(offline_items(
            move || source.next_stroke(),
            |stroke, now| OfflineItem {
                file: stroke.source.clone(),
                seq: stroke.seq,
                port: "waveform",
                batch: Waveform::to_batch(&[stroke.into_waveform("replay", now)]),
                now,
            },
        ))
    })
}

/// One recording fed to the graph's acquisition output by the offline tools.
pub(crate) struct OfflineItem {
    /// The file it came from (reported per line and in errors).
    pub file: String,
    /// Its sequence number.
    pub seq: u64,
    /// The acquisition node's output port it is published on.
    pub port: &'static str,
    /// The message.
    pub batch: forgeline_schemas::arrow::record_batch::RecordBatch,
    /// Its acquisition time.
    pub now: u64,
}

/// The items of one offline run, or the reason one could not be read (reported, then skipped).
pub(crate) type OfflineItems = Box<dyn Iterator<Item = Result<OfflineItem, String>>>;

/// The items of a source whose `next` gives recordings (`None`: exhausted; `Some(Err)`: one
/// unreadable recording), each stamped with the time it is read and made an item by `item`.
pub(crate) fn offline_items<T, E: std::fmt::Display>(
    mut next: impl FnMut() -> Option<Result<T, E>> + 'static,
    item: impl Fn(T, u64) -> OfflineItem + 'static,
) -> OfflineItems {
    Box::new(std::iter::from_fn(move || {
        Some(
            next()?
                .map(|t| item(t, now_ns()))
                .map_err(|e| e.to_string()),
        )
    }))
}

/// The loop shared by `forgeline score` for every line: builds the graph's stages in-process
/// (inside the graph's directory, so its relative paths hold), publishes each item on the
/// acquisition node, and writes one JSON line per item `{"file","seq","score",["label",]
/// "decision","severity","reason","model_version"[,"provider"]}` (`provider`: the execution
/// provider that ran the model). A bad item is named on stderr and skipped.
pub(crate) fn score_items(
    graph: &Graph,
    model: Option<&Path>,
    out: &Path,
    noun: &str,
    with_label: bool,
    items: impl FnOnce() -> eyre::Result<OfflineItems>,
) -> eyre::Result<()> {
    let model = model.map(std::path::absolute).transpose()?;
    let out = std::path::absolute(out)?;
    let mut writer = BufWriter::new(
        std::fs::File::create(&out).wrap_err_with(|| format!("cannot create {}", out.display()))?,
    );
    let (scored, errors) = in_dir(&graph.dir(), || {
        let (mut g, acquisition) = build_offline(graph, model.as_deref())?;
        let (mut scored, mut errors) = (0u64, 0u64);
        for next in items()? {
            let item = match next {
                Ok(item) => item,
                Err(e) => {
                    eprintln!("error: {e}");
                    errors += 1;
                    continue;
                }
            };
            let file = item.file;
            let mut emitted = Vec::new();
            if let Err((node, e)) =
                g.publish(&acquisition, item.port, item.batch, item.now, &mut emitted)
            {
                eprintln!("error: {file}: node `{node}`: {e}");
                errors += 1;
                continue;
            }
            let mut score = None;
            let mut decision = None;
            for (_, port, batch) in &emitted {
                match port.as_str() {
                    "score" => score = Score::try_from_batch(batch)?.into_iter().next(),
                    "decision" => decision = Decision::try_from_batch(batch)?.into_iter().next(),
                    _ => {}
                }
            }
            let Some(decision) = decision else {
                eprintln!("error: {file}: the graph produced no decision for this {noun}");
                errors += 1;
                continue;
            };
            let s = score.as_ref().map_or(decision.score, |s| s.score);
            let mut line = serde_json::json!({
                "file": file,
                "seq": item.seq,
                "score": if s.is_finite() { serde_json::json!(s) } else { serde_json::Value::Null },
                "decision": decision.verdict.as_str(),
                "severity": decision.severity.as_str(),
                "reason": decision.reason,
                "model_version": decision.model_version,
            });
            if let Some(score) = &score {
                line["provider"] = serde_json::json!(score.provider);
            }
            if with_label {
                line["label"] = serde_json::json!(score.map(|s| s.label));
            }
            writeln!(writer, "{line}")?;
            scored += 1;
        }
        Ok((scored, errors))
    })?;
    writer.flush()?;
    eprintln!(
        "scored {scored} {noun}(s), {errors} error(s) -> {}",
        out.display()
    );
    if scored == 0 && errors > 0 {
        bail!("nothing could be scored");
    }
    Ok(())
}

/// The feature extractor config of the graph's `vibration-features` node (default if none).
fn feature_config(graph: Option<&Graph>) -> eyre::Result<FeatureConfig> {
    let text = graph
        .and_then(|g| g.node_of_kind("vibration-features"))
        .and_then(|n| n.config.clone());
    Ok(match text {
        Some(t) if !t.trim().is_empty() => serde_yaml::from_str(&t)?,
        _ => FeatureConfig::default(),
    })
}

/// The repository's Python tooling: `(python, PYTHONPATH)`.
pub(crate) fn python_tools() -> eyre::Result<(PathBuf, PathBuf)> {
    let mut starts = vec![std::env::current_dir()?];
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    for start in starts {
        for dir in start.ancestors() {
            let tools = dir.join("tools/python");
            if tools.join("forgeline_ml").is_dir() {
                let python = std::env::var_os("FORGELINE_PYTHON")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| dir.join(".venv/bin/python"));
                if !python.exists() {
                    bail!("{} not found: run scripts/setup.sh first", python.display());
                }
                return Ok((python, tools));
            }
        }
    }
    bail!("tools/python/forgeline_ml not found above the current directory or the forgeline binary")
}

/// `forgeline train press`: features of normal strokes (Rust, the graph's extractor) → the
/// Python trainer (autoencoder, ONNX export, INT8 quantization, calibration) → a model directory.
pub fn train_press(
    normal: &[PathBuf],
    out: &Path,
    graph: Option<&Path>,
    seed: u64,
    version: &str,
    extra: &[String],
) -> eyre::Result<()> {
    let graph = graph.map(Graph::load).transpose().map_err(|e| eyre!(e))?;
    let mut extractor =
        FeatureExtractor::new(feature_config(graph.as_ref())?).map_err(|e| eyre!("{e}"))?;
    let replay = match &graph {
        Some(g) => replay_config(g, absolute(normal)?)?,
        None => ReplayConfig {
            paths: absolute(normal)?,
            ..ReplayConfig::default()
        },
    };
    let mut source = ReplaySource::new(replay).map_err(|e| eyre!("{e}"))?;
    let csv = std::env::temp_dir().join(format!("forgeline-train-{}.csv", std::process::id()));
    let mut w = BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(w, "file,seq,{}", extractor.feature_names().join(","))?;
    let (mut rows, mut skipped) = (0u64, 0u64);
    let mut values = Vec::new();
    while let Some(next) = source.next_stroke() {
        let stroke = match next {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: {e}");
                skipped += 1;
                continue;
            }
        };
        let q = extractor.extract(&stroke.samples, stroke.sample_rate_hz, &mut values);
        if !q.is_ok() {
            eprintln!("skipped {}: data quality {q}", stroke.source);
            skipped += 1;
            continue;
        }
        let file = stroke.source.replace(',', "_");
        let vals: Vec<String> = values.iter().map(|v| format!("{v:.7e}")).collect();
        writeln!(w, "{file},{},{}", stroke.seq, vals.join(","))?;
        rows += 1;
    }
    w.flush()?;
    drop(w);
    eprintln!(
        "features of {rows} normal stroke(s) ({skipped} skipped) -> {}",
        csv.display()
    );
    if rows < 50 {
        bail!("only {rows} usable normal strokes: record at least a few hundred");
    }
    let (python, tools) = python_tools()?;
    let status = Command::new(&python)
        .args(["-m", "forgeline_ml.train_press", "--features"])
        .arg(&csv)
        .arg("--out")
        .arg(out)
        .args(["--seed", &seed.to_string(), "--version", version])
        .args(extra)
        .env("PYTHONPATH", &tools)
        .status()
        .wrap_err_with(|| format!("cannot run {}", python.display()))?;
    let _ = std::fs::remove_file(&csv);
    if !status.success() {
        bail!("training failed ({status})");
    }
    Ok(())
}

/// `forgeline simulate`: a dataset of WAV strokes from the seeded press simulator.
pub fn simulate(
    out: &Path,
    seed: u64,
    normal: usize,
    per_fault: usize,
    first_seq: u64,
) -> eyre::Result<()> {
    let mut plan = if per_fault == 0 {
        DatasetPlan::training(normal)
    } else {
        DatasetPlan::held_out(normal, per_fault)
    };
    plan.first_seq = first_seq;
    let manifest = generate(out, seed, &plan).map_err(|e| eyre!("{e}"))?;
    eprintln!(
        "wrote {} stroke(s) and manifest.csv to {}",
        manifest.rows.len(),
        out.display()
    );
    Ok(())
}

/// Scores of a predictions file against a dataset manifest.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// `expected -> predicted -> count`.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// `label -> (correct, total)`.
    pub per_label: BTreeMap<String, (u64, u64)>,
}

impl Evaluation {
    /// Mean per-class recall over the expected classes present.
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = self
            .confusion
            .iter()
            .map(|(exp, row)| {
                let total: u64 = row.values().sum();
                row.get(exp).copied().unwrap_or(0) as f64 / total.max(1) as f64
            })
            .collect();
        recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
    }

    /// Share of normal strokes rejected (or flagged), in %.
    pub fn false_reject_pct(&self) -> f64 {
        let Some(row) = self.confusion.get("ok") else {
            return 0.0;
        };
        let total: u64 = row.values().sum();
        let wrong = total - row.get("ok").copied().unwrap_or(0);
        100.0 * wrong as f64 / total.max(1) as f64
    }
}

/// `forgeline evaluate`: compares predictions with the dataset's manifest.
pub fn evaluate(dataset: &Path, preds: &Path) -> eyre::Result<Evaluation> {
    let manifest = match Manifest::read(dataset) {
        Ok(m) => m,
        // An optical dataset (`good/`, `defect/`, labels `good`, `scratch`...).
        Err(press) => match optical::read_manifest(dataset) {
            Ok(m) => return optical::evaluate(&m, preds),
            Err(optical) => bail!("{press} (nor an optical dataset: {optical})"),
        },
    };
    let mut by_file = BTreeMap::new();
    let f =
        std::fs::File::open(preds).wrap_err_with(|| format!("cannot open {}", preds.display()))?;
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .wrap_err_with(|| format!("{}:{}: not JSON", preds.display(), n + 1))?;
        let file = v["file"].as_str().unwrap_or_default();
        let name = Path::new(file)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(file)
            .to_owned();
        by_file.insert(name, v["decision"].as_str().unwrap_or("missing").to_owned());
    }
    let mut eval = Evaluation::default();
    for row in &manifest.rows {
        let expected = row.expected_verdict().to_owned();
        let got = by_file
            .get(&row.file)
            .cloned()
            .unwrap_or_else(|| "missing".into());
        *eval
            .confusion
            .entry(expected.clone())
            .or_default()
            .entry(got.clone())
            .or_default() += 1;
        let e = eval.per_label.entry(row.label.to_string()).or_default();
        e.1 += 1;
        if got == expected {
            e.0 += 1;
        }
    }
    Ok(eval)
}

/// The optical line's offline tools: `score` on images, `train optical`, and `evaluate` against
/// an optical dataset's manifest.
pub mod optical {
    use super::{OfflineItem, absolute, offline_items, python_tools, score_items};
    use crate::graph::Graph;
    use eyre::{WrapErr, bail, eyre};
    use forgeline_node_camera_acquisition::forgeline_vision::{
        self as vision, Camera, DType, Layout, PreprocessConfig, Preprocessor, ReplayCamera,
        ReplayConfig, ResizeMode,
    };
    use forgeline_schemas::Frame;
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufWriter, Write};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Side of the square grey images the trainer gets (the model's input size).
    pub const DEFAULT_SIZE: u32 = 192;

    /// `forgeline score` for a graph with a `camera-acquisition` node: one JSON line per image
    /// `{"file","seq","score","label","decision",...}`. A bad image is reported by name on
    /// stderr and skipped.
    pub fn score_images(
        graph: &Graph,
        model: Option<&Path>,
        inputs: &[PathBuf],
        out: &Path,
    ) -> eyre::Result<()> {
        let inputs = absolute(inputs)?;
        score_items(graph, model, out, "image", true, move || {
            let mut camera =
                ReplayCamera::new(ReplayConfig::from_paths(inputs)).map_err(|e| eyre!("{e}"))?;
            Ok(offline_items(
                move || camera.next_frame(),
                |raw, now| OfflineItem {
                    file: raw.source.clone(),
                    seq: raw.seq,
                    port: "frame",
                    batch: Frame::to_batch(&[raw.into_frame("replay", now)]),
                    now,
                },
            ))
        })
    }

    /// Writes a `.npy` file (format 1.0, C order) of `dims` from raw little-endian `bytes`.
    fn write_npy(path: &Path, descr: &str, dims: &[usize], bytes: &[u8]) -> eyre::Result<()> {
        let shape = match dims {
            [n] => format!("({n},)"),
            _ => format!(
                "({})",
                dims.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let len = u16::try_from(header.len()).map_err(|_| eyre!("npy header too long"))?;
        let mut f = BufWriter::new(
            std::fs::File::create(path)
                .wrap_err_with(|| format!("cannot create {}", path.display()))?,
        );
        f.write_all(b"\x93NUMPY\x01\x00")?;
        f.write_all(&len.to_le_bytes())?;
        f.write_all(header.as_bytes())?;
        f.write_all(bytes)?;
        f.flush()?;
        Ok(())
    }

    /// `forgeline train optical`: every image under `<images>/good` and `<images>/defect`
    /// (PNG/JPEG/TIFF, grey or RGB, any size; recursively) is turned into a `size` x `size` grey
    /// image by the line's own preprocessing (bilinear stretch, RGB to luma), then the Python
    /// trainer fits the CNN, exports FP32 and INT8 ONNX and writes the model directory.
    pub fn train_optical(
        images: &Path,
        out: &Path,
        seed: u64,
        version: &str,
        size: u32,
        extra: &[String],
    ) -> eyre::Result<()> {
        let mut pre = Preprocessor::new(PreprocessConfig {
            width: size,
            height: size,
            resize: ResizeMode::Stretch,
            channels: 1,
            layout: Layout::Nchw,
            dtype: DType::U8,
            mean: vec![0.0],
            std: vec![1.0],
            pad: 0,
        })
        .map_err(|e| eyre!("--size {size}: {e}"))?;
        let (mut pixels, mut labels, mut files) = (Vec::new(), Vec::new(), Vec::new());
        let mut skipped = 0u64;
        let mut buf = Vec::new();
        for (label, folder) in [(0i64, "good"), (1i64, "defect")] {
            let dir = images.join(folder);
            if !dir.is_dir() {
                bail!(
                    "{}: no `{folder}` folder: expected {}/good and {}/defect with the images",
                    dir.display(),
                    images.display(),
                    images.display()
                );
            }
            let mut camera = ReplayCamera::new(ReplayConfig::from_paths([dir.clone()]))
                .map_err(|e| eyre!("{}: {e}", dir.display()))?;
            while let Some(next) = camera.next_frame() {
                let raw = match next {
                    Ok(raw) => raw,
                    Err(e) => {
                        eprintln!("skipped: {e}");
                        skipped += 1;
                        continue;
                    }
                };
                if let Err(e) = pre.run_raw(&raw, &mut buf) {
                    eprintln!("skipped: {e}");
                    skipped += 1;
                    continue;
                }
                pixels.extend_from_slice(&buf);
                labels.push(label);
                files.push(raw.source.replace('\n', " "));
            }
        }
        let good = labels.iter().filter(|l| **l == 0).count();
        let defect = labels.len() - good;
        eprintln!(
            "{} image(s): {good} good, {defect} defect ({skipped} skipped), {size}x{size} grey",
            labels.len()
        );
        if good < 10 || defect < 10 {
            bail!(
                "{}: {good} good and {defect} defect images: need at least 10 of each (a few hundred recommended)",
                images.display()
            );
        }
        let work = tempfile::Builder::new()
            .prefix("forgeline-optical-")
            .tempdir()?;
        let n = labels.len();
        let s = size as usize;
        write_npy(&work.path().join("images.npy"), "|u1", &[n, s, s], &pixels)?;
        let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        write_npy(&work.path().join("labels.npy"), "<i8", &[n], &label_bytes)?;
        std::fs::write(work.path().join("files.txt"), files.join("\n"))?;
        let (python, tools) = python_tools()?;
        let status = Command::new(&python)
            .args(["-m", "forgeline_ml.train_optical", "--images"])
            .arg(work.path())
            .arg("--out")
            .arg(out)
            .args(["--seed", &seed.to_string(), "--version", version])
            .args(["--source", &images.display().to_string()])
            .args(extra)
            .env("PYTHONPATH", &tools)
            .status()
            .wrap_err_with(|| format!("cannot run {}", python.display()))?;
        if !status.success() {
            bail!("training failed ({status})");
        }
        Ok(())
    }

    /// `forgeline simulate-images`: a labelled dataset of simulated part images.
    pub fn simulate_images(
        out: &Path,
        seed: u64,
        good: usize,
        per_defect: usize,
        first_seq: u64,
        severity: f32,
        channels: u32,
    ) -> eyre::Result<()> {
        let camera = vision::SimulatedCameraConfig {
            seed,
            severity,
            channels,
            ..vision::SimulatedCameraConfig::default()
        };
        let counts = vision::DatasetCounts::balanced(good, per_defect);
        let manifest = vision::dataset::generate_dataset_with(out, &camera, &counts, first_seq)
            .map_err(|e| eyre!("{e}"))?;
        eprintln!(
            "wrote {} image(s) and manifest.csv to {}",
            manifest.rows.len(),
            out.display()
        );
        Ok(())
    }

    /// An optical dataset's `manifest.csv`.
    ///
    /// # Errors
    /// The file cannot be read or a line is malformed.
    pub fn read_manifest(dir: &Path) -> eyre::Result<vision::Manifest> {
        vision::Manifest::read(dir).map_err(|e| eyre!("{e}"))
    }

    /// Predictions against an optical manifest (matched by file name).
    pub fn evaluate(manifest: &vision::Manifest, preds: &Path) -> eyre::Result<super::Evaluation> {
        let mut by_file = BTreeMap::new();
        let f = std::fs::File::open(preds)
            .wrap_err_with(|| format!("cannot open {}", preds.display()))?;
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line?;
            let v: serde_json::Value = serde_json::from_str(&line)
                .wrap_err_with(|| format!("{}:{}: not JSON", preds.display(), n + 1))?;
            let file = v["file"].as_str().unwrap_or_default();
            let name = file_name(file);
            by_file.insert(name, v["decision"].as_str().unwrap_or("missing").to_owned());
        }
        let mut eval = super::Evaluation::default();
        for row in &manifest.rows {
            let expected = row.expected_verdict().to_owned();
            let got = by_file
                .get(&file_name(&row.file))
                .cloned()
                .unwrap_or_else(|| "missing".into());
            *eval
                .confusion
                .entry(expected.clone())
                .or_default()
                .entry(got.clone())
                .or_default() += 1;
            let e = eval.per_label.entry(row.label.to_string()).or_default();
            e.1 += 1;
            if got == expected {
                e.0 += 1;
            }
        }
        Ok(eval)
    }

    fn file_name(path: &str) -> String {
        Path::new(path)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(path)
            .to_owned()
    }
}
