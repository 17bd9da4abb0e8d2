//! Bare ONNX Runtime `session.run` (the floor) and `run_binding` on pre-bound tensors (the floor
//! of the scorer's own call on the CPU) vs the `Scorer` (normalisation, run, output copy) on the
//! shipped press model, one stroke and a batch of 16. The model-level harness with the
//! Arrow node path and the Python baseline is `forgeline bench-model` (docs/inference.md).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // Bench harness.

use criterion::{Criterion, criterion_group, criterion_main};
use forgeline_inference::{InferenceConfig, ModelDir, Provider, Scorer, VariantChoice};
use std::hint::black_box;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/press-anomaly");

fn inference(c: &mut Criterion) {
    let model =
        ModelDir::load(MODEL).expect("models/press-anomaly (scripts/make-default-model.sh)");
    for variant in [VariantChoice::Fp32, VariantChoice::Int8] {
        let config = InferenceConfig {
            variant,
            providers: vec![Provider::Cpu],
            ..Default::default()
        };
        let mut scorer = Scorer::new(&model, &config).expect("ONNX Runtime from .venv");
        let n = scorer.row_len();
        // Rows at the training mean plus a deterministic ramp.
        let raw: Vec<f32> = model
            .input()
            .normalization
            .mean
            .iter()
            .cycle()
            .take(n * 16)
            .enumerate()
            .map(|(i, m)| m * (1.0 + 0.01 * (i % 7) as f32))
            .collect();
        let prebuilt = scorer.normalised(&raw);
        for batch in [1_usize, 16] {
            let rows: Vec<&[f32]> = raw.chunks(n).take(batch).collect();
            let input = &prebuilt[..n * batch];
            let name = format!("{}/{variant:?}/batch{batch}", model.model_version());
            c.bench_function(&format!("{name}/bare_ort"), |b| {
                b.iter(|| black_box(scorer.run_prebuilt(batch, black_box(input)).unwrap()));
            });
            c.bench_function(&format!("{name}/bare_ort_bound"), |b| {
                b.iter(|| {
                    black_box(
                        scorer
                            .run_prebuilt_bound(batch, black_box(input))
                            .unwrap()
                            .expect("the CPU scorer binds inputs this small"),
                    )
                });
            });
            c.bench_function(&format!("{name}/scorer"), |b| {
                b.iter(|| black_box(scorer.infer_rows(black_box(&rows)).unwrap()[0]));
            });
        }
    }
}

criterion_group!(benches, inference);
criterion_main!(benches);
