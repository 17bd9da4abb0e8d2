//! What the probation health window costs per scored row, next to what scoring that row costs,
//! measured in the same run: `cargo run --release -p forgeline-node-inference --example
//! health_window_cost [rows]`.
//!
//! Baseline: `Scorer::score` of press-tiny (30 features, CPU, one row per run, as the press
//! line scores). Figure: `HealthWindow::record` per row plus one `evaluate` + `reset` per
//! window of 50 rows (the defaults: `min_rows` 50), i.e. the node's whole per-row overhead,
//! over 50 passes of the scored rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use forgeline_inference::{InferenceConfig, ModelDir, Provider, Scorer};
use forgeline_registry::probation::{HealthLimits, HealthWindow};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../operators/inference/tests/data"
);

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .map_or(20_000, |a| a.parse().expect("rows: a positive integer"));
    let model = ModelDir::load(Path::new(DATA).join("press-tiny")).unwrap();
    let session = InferenceConfig {
        providers: vec![Provider::Cpu],
        warmup_runs: 10,
        ..Default::default()
    };
    let mut scorer = Scorer::new(&model, &session).unwrap();
    let row = vec![0.5_f32; scorer.row_len()];

    let t0 = Instant::now();
    let mut scores = Vec::with_capacity(rows);
    for _ in 0..rows {
        scores.push(scorer.score(black_box(&row)).unwrap());
    }
    let score_ns = t0.elapsed().as_nanos() as f64 / rows as f64;

    let limits = HealthLimits::default();
    let warning = scorer.thresholds().warning;
    let mut window = HealthWindow::default();
    let mut verdicts = 0_u64;
    // 50 passes over the scored rows: the window's cost is far below the timer's noise on one.
    const PASSES: usize = 50;
    let t0 = Instant::now();
    for (i, s) in std::iter::repeat_n(&scores, PASSES).flatten().enumerate() {
        window.record(black_box(*s), true, black_box(40_000 + i as u64 % 1000));
        if let Some(v) = window.evaluate(warning, &limits) {
            black_box(v);
            verdicts += 1;
            window.reset();
        }
    }
    let window_ns = t0.elapsed().as_nanos() as f64 / (rows * PASSES) as f64;
    println!(
        "health window: {window_ns:.1} ns/row (record + evaluate/reset every {} rows, {verdicts} windows judged)",
        limits.min_rows
    );
    println!(
        "baseline, Scorer::score press-tiny on CPU: {score_ns:.0} ns/row; window overhead {:.3} % of it",
        100.0 * window_ns / score_ns
    );
}
