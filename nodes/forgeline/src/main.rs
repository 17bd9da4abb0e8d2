//! `forgeline`: the built-in nodes of every line (`forgeline node <kind>`, one multi-call binary so
//! that CI and the edge box build and store one executable), plus the tools around them.

mod bench;
mod bench_model;
mod bench_nodes;
mod check;
mod download;
mod graph;
mod model_cmd;
mod offline;
mod registry;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "forgeline",
    version,
    about = "Edge-AI inspection lines on dora-rs"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a built-in node (used by graphs: `path: …/forgeline`, `args: node <kind>`).
    Node {
        /// The node kind, e.g. `vibration-features`.
        kind: String,
        /// Validate the config in FORGELINE_CONFIG and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Validate graph files and every node's config.
    Check {
        /// Graph files to check.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        /// Do not run `dora validate --strict-types`.
        #[arg(long)]
        skip_dora: bool,
    },
    /// List the built-in node kinds.
    Nodes,
    /// Score recordings with a graph's own stages and config, in-process: one JSON line per
    /// stroke `{"file","seq","score","decision"}`.
    Score {
        /// The graph whose stages and config to use.
        graph: PathBuf,
        /// Use this model directory instead of the graph's.
        #[arg(long)]
        model: Option<PathBuf>,
        /// WAV/CSV files (press lines) or PNG/JPEG/TIFF images (optical lines), or directories.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the predictions (JSON lines).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train a detector from normal recordings.
    Train {
        #[command(subcommand)]
        what: TrainCmd,
    },
    /// Write a dataset of simulated strokes (WAV + manifest.csv) from the seeded press model.
    Simulate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Simulator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Normal strokes.
        #[arg(long, default_value_t = 400)]
        normal: usize,
        /// Strokes of every fault and sensor-fault family (0: normal only).
        #[arg(long, default_value_t = 0)]
        per_fault: usize,
        /// Stroke number of the first stroke.
        #[arg(long, default_value_t = 0)]
        first_seq: u64,
    },
    /// Write a labelled dataset of simulated part images (`good/`, `defect/`, manifest.csv).
    SimulateImages {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Simulator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Good parts.
        #[arg(long, default_value_t = 300)]
        good: usize,
        /// Parts of each defect kind (scratch, crack, spot, missing).
        #[arg(long, default_value_t = 75)]
        per_defect: usize,
        /// Frame number of the first image.
        #[arg(long, default_value_t = 0)]
        first_seq: u64,
        /// Defect size and contrast factor in (0, 3].
        #[arg(long, default_value_t = 1.0)]
        severity: f32,
        /// Colour channels: 1 (grey) or 3 (RGB).
        #[arg(long, default_value_t = 1)]
        channels: u32,
    },
    /// End-to-end latency of a line under dora (acquisition → PLC node), with the same stages
    /// fused in one process as the baseline, measured in the same run.
    BenchLine {
        /// The graph to run (its press-acquisition node is paced at `--rate`).
        graph: PathBuf,
        /// Strokes per minute.
        #[arg(long, default_value_t = 600.0)]
        rate: f64,
        /// How long to run (each run of `--saturate` and `--presses`).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Step the rate up (10 to 4,000 strokes/s) until drops or lag appear.
        #[arg(long)]
        saturate: bool,
        /// Multi-asset runs: comma-separated numbers of presses at 18 strokes/min each.
        #[arg(long, value_delimiter = ',')]
        presses: Vec<usize>,
        /// Skip the Python reference pipeline baseline.
        #[arg(long)]
        no_python: bool,
        /// Skip the bare dora chain baseline.
        #[arg(long)]
        no_bare: bool,
        /// Graph CPU per stroke: replay recorded strokes through the line at this many
        /// strokes/s for --seconds and for a third of it; the CPU time of dora and every node
        /// per extra stroke (start-up excluded), against the fused and Python baselines per core.
        #[arg(long)]
        per_core: Option<f64>,
    },
    /// Latency and throughput of a model directory per variant and provider: bare ONNX Runtime
    /// (the floor), the inference node's path (Arrow in, scorer, Arrow out) and the Python ORT
    /// API (the baseline), measured in the same run.
    BenchModel {
        /// The model directory (model.yml + ONNX files).
        model_dir: PathBuf,
        /// Timed runs per path.
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        /// Untimed runs before them.
        #[arg(long, default_value_t = 1_000)]
        warmup: usize,
        /// Rows per message and per session run.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// `fp32`, `int8` or `all`.
        #[arg(long, default_value = "all")]
        variant: String,
        /// Providers to measure, each on its own (unavailable ones are reported and skipped).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "tensorrt,cuda,openvino,cpu"
        )]
        providers: Vec<String>,
        /// ONNX Runtime intra-op threads (the Python baseline uses the same).
        #[arg(long, default_value_t = 1)]
        intra_threads: usize,
        /// Skip the Python ORT baseline.
        #[arg(long)]
        no_python: bool,
        /// Untimed pause before each run (ms); the node path is then timed first: its cost for
        /// the first message after an idle spell.
        #[arg(long, default_value_t = 0)]
        idle_ms: u64,
        /// With --idle-ms: call the node's keep-warm every this many ms during the pause.
        #[arg(long, default_value_t = 0)]
        keep_warm_ms: u64,
    },
    /// Helper nodes of `bench-line` (probe, bare dora chain, multi-press source).
    #[command(hide = true)]
    BenchNode {
        /// `probe`, `bare-source`, `bare-relay`, `bare-sink` or `multi-press`.
        kind: String,
    },
    /// The local model registry: keygen, sign, verify, install, list, show, activate, rollback, prune.
    Model {
        #[command(subcommand)]
        cmd: model_cmd::ModelCmd,
    },
    /// Compare predictions (from `score`) with a simulated dataset's manifest.
    Evaluate {
        /// Dataset directory (with manifest.csv).
        dataset: PathBuf,
        /// Predictions file (JSON lines).
        preds: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrainCmd {
    /// Anomaly detector for a press, from normal strokes only.
    Press {
        /// Directories or files of normal strokes (WAV/CSV).
        #[arg(long, required = true, num_args = 1..)]
        normal: Vec<PathBuf>,
        /// Model directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Take the feature extractor's config from this graph (default: built-in defaults).
        #[arg(long)]
        graph: Option<PathBuf>,
        /// Seed for splits, initialisation and calibration.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Model version (semver).
        #[arg(long, default_value = "1.0.0")]
        version: String,
        /// Extra options passed to the Python trainer (e.g. `--epochs 200`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Good/defect CNN classifier for the optical line, from `<images>/good` and
    /// `<images>/defect` (PNG/JPEG/TIFF, grey or RGB, any size).
    Optical {
        /// Folder with `good/` and `defect/` subfolders of images.
        #[arg(long)]
        images: PathBuf,
        /// Model directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Seed for splits, initialisation, augmentation and calibration.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Model version (semver).
        #[arg(long, default_value = "1.0.0")]
        version: String,
        /// Side of the square grey model input, pixels.
        #[arg(long, default_value_t = offline::optical::DEFAULT_SIZE)]
        size: u32,
        /// Extra options passed to the Python trainer (e.g. `--epochs 20`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Node { kind, .. } => {
            let Some(node) = registry::find(&kind) else {
                eprintln!(
                    "error: unknown node kind `{kind}` (kinds: {})",
                    registry::names()
                );
                return ExitCode::from(2);
            };
            match (node.run)() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Check { graphs, skip_dora } => {
            let opts = check::CheckOptions { skip_dora };
            let mut errors = 0;
            for g in &graphs {
                let findings = check::check_graph(g, &opts);
                for f in &findings {
                    eprintln!("{f}");
                }
                let n = findings
                    .iter()
                    .filter(|f| f.level == check::Level::Error)
                    .count();
                if n == 0 {
                    println!("ok: {}", g.display());
                }
                errors += n;
            }
            if errors > 0 {
                eprintln!("{errors} error(s)");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Score {
            graph,
            model,
            inputs,
            out,
        } => {
            // Which execution provider ran, and why the ones before it in the chain were skipped.
            forgeline_runtime::init_tracing_or("score", "warn,forgeline_inference=info");
            report(offline::score(&graph, model.as_deref(), &inputs, &out))
        }
        Cmd::Train {
            what:
                TrainCmd::Press {
                    normal,
                    out,
                    graph,
                    seed,
                    version,
                    extra,
                },
        } => report(offline::train_press(
            &normal,
            &out,
            graph.as_deref(),
            seed,
            &version,
            &extra,
        )),
        Cmd::Train {
            what:
                TrainCmd::Optical {
                    images,
                    out,
                    seed,
                    version,
                    size,
                    extra,
                },
        } => report(offline::optical::train_optical(
            &images, &out, seed, &version, size, &extra,
        )),
        Cmd::SimulateImages {
            out,
            seed,
            good,
            per_defect,
            first_seq,
            severity,
            channels,
        } => report(offline::optical::simulate_images(
            &out, seed, good, per_defect, first_seq, severity, channels,
        )),
        Cmd::Simulate {
            out,
            seed,
            normal,
            per_fault,
            first_seq,
        } => report(offline::simulate(&out, seed, normal, per_fault, first_seq)),
        Cmd::BenchLine {
            graph,
            rate,
            seconds,
            saturate,
            presses,
            no_python,
            no_bare,
            per_core,
        } => report(bench::bench_line(
            &graph,
            &bench::BenchOptions {
                rate,
                seconds,
                saturate,
                presses,
                no_python,
                no_bare,
                per_core,
            },
        )),
        Cmd::BenchModel {
            model_dir,
            runs,
            warmup,
            batch,
            variant,
            providers,
            intra_threads,
            no_python,
            idle_ms,
            keep_warm_ms,
        } => report(bench_model::parse_and_run(
            &model_dir,
            runs,
            warmup,
            batch,
            &variant,
            &providers,
            intra_threads,
            no_python,
            idle_ms,
            keep_warm_ms,
        )),
        Cmd::BenchNode { kind } => report(bench_nodes::run(&kind)),
        Cmd::Model { cmd } => report(model_cmd::run(cmd)),
        Cmd::Evaluate { dataset, preds } => match offline::evaluate(&dataset, &preds) {
            Ok(e) => {
                println!("balanced_accuracy: {:.4}", e.balanced_accuracy());
                println!("false_reject_pct: {:.3}", e.false_reject_pct());
                for (label, (ok, n)) in &e.per_label {
                    println!(
                        "recall {label}: {ok}/{n} ({:.1}%)",
                        100.0 * *ok as f64 / (*n).max(1) as f64
                    );
                }
                for (exp, row) in &e.confusion {
                    println!("confusion {exp}: {row:?}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => report(Err(e)),
        },
        Cmd::Nodes => {
            for k in registry::kinds() {
                println!("{}", k.kind);
            }
            ExitCode::SUCCESS
        }
    }
}

fn report(result: eyre::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
