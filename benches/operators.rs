//! Criterion benchmarks of the press-line operators on the seeded inputs of
//! `forgeline_benches` (the same generators the tests use):
//!
//! - `press_sim/stroke`: the seeded press simulator, one 2,000-sample stroke;
//! - `features/stroke`: `press-v1` feature extraction (31 values + quality flags) per stroke;
//! - `threshold/decide`: one threshold decision (score walk through ok / warning / critical);
//! - `schema/*`: `to_batch`, `try_from_batch`, the wire conversion dora sees and the zero-copy
//!   readers, for `Waveform`, `FeatureVector`, `Score` and `Decision`;
//! - `plc/encode`: a decision to Modbus register writes with the default register map.
//!
//! Run: `cargo bench -p forgeline-benches --bench operators` (~30 s of measurement once built; short warm-up and
//! measurement windows keep it under 3 minutes on the 2-core box).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // A bench: a panic is the report.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use forgeline_benches::{
    BENCH_SEED, decision, feature_vector, press_simulator, score, score_walk, waveform,
};
use forgeline_plc::RegisterMap;
use forgeline_schemas::arrow::array::make_array;
use forgeline_schemas::{
    Decision, FeatureVector, Message, Score, Waveform, batch_from_struct_array, features,
    to_struct_array,
};
use forgeline_threshold::{Threshold, ThresholdConfig};
use forgeline_vibration::{FeatureConfig, FeatureExtractor};

fn press_sim(c: &mut Criterion) {
    let sim = press_simulator(BENCH_SEED);
    let mut seq = 0u64;
    let mut g = c.benchmark_group("press_sim");
    g.throughput(Throughput::Elements(1));
    g.bench_function("stroke", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1) % 10_000;
            black_box(sim.stroke(seq))
        });
    });
    g.finish();
}

fn feature_extraction(c: &mut Criterion) {
    let strokes = forgeline_benches::press_strokes(BENCH_SEED, 64);
    let mut extractor = FeatureExtractor::new(FeatureConfig::default()).unwrap();
    let mut out = Vec::with_capacity(64);
    let mut i = 0usize;
    let mut g = c.benchmark_group("features");
    g.throughput(Throughput::Elements(1));
    g.bench_function("stroke", |b| {
        b.iter(|| {
            i = (i + 1) % strokes.len();
            let s = &strokes[i];
            out.clear();
            black_box(extractor.extract(&s.samples, s.sample_rate_hz, &mut out))
        });
    });
    g.finish();
}

fn threshold_decide(c: &mut Criterion) {
    let scores = score_walk(400);
    let mut threshold = Threshold::new(ThresholdConfig::with_limits(2.0, 3.0)).unwrap();
    let mut i = 0usize;
    c.bench_function("threshold/decide", |b| {
        b.iter(|| {
            i = (i + 1) % scores.len();
            black_box(threshold.decide(&scores[i], 1_000 + i as u64))
        });
    });
}

/// `to_batch`, `try_from_batch` and the dora wire round trip (struct array → `ArrayData` →
/// array → batch, as the runtime does on both sides) for one row of message `M`.
fn schema_group<M: Message + Clone>(c: &mut Criterion, name: &str, row: &M) {
    let rows = std::slice::from_ref(row);
    let batch = M::to_batch(rows);
    let mut g = c.benchmark_group(format!("schema/{name}"));
    g.bench_function("to_batch", |b| {
        b.iter(|| black_box(M::to_batch(black_box(rows))))
    });
    g.bench_function("try_from_batch", |b| {
        b.iter(|| black_box(M::try_from_batch(black_box(&batch)).unwrap()));
    });
    g.bench_function("wire_round_trip", |b| {
        b.iter(|| {
            let wire = to_struct_array(black_box(&batch));
            let received = make_array(wire.into());
            black_box(batch_from_struct_array(received.as_ref(), M::NAME).unwrap())
        });
    });
    g.finish();
}

fn schemas(c: &mut Criterion) {
    let w = waveform(BENCH_SEED, 3);
    schema_group::<Waveform>(c, "waveform", &w);
    schema_group::<FeatureVector>(c, "features", &feature_vector(3, 31));
    schema_group::<Score>(c, "score", &score(3, 1.25));
    schema_group::<Decision>(c, "decision", &decision(3));

    // The zero-copy readers the stages use on the hot path (no row materialised).
    let wbatch = Waveform::to_batch(&[w]);
    c.bench_function("schema/waveform/samples_zero_copy", |b| {
        b.iter(|| {
            black_box(
                forgeline_schemas::waveform::samples(black_box(&wbatch), 0)
                    .unwrap()
                    .len(),
            )
        });
    });
    let fbatch = FeatureVector::to_batch(&[feature_vector(3, 31)]);
    c.bench_function("schema/features/values_zero_copy", |b| {
        b.iter(|| black_box(features::values(black_box(&fbatch), 0).unwrap().len()));
    });
}

fn plc_encode(c: &mut Criterion) {
    let map = RegisterMap::default();
    let d = decision(11);
    c.bench_function("plc/encode", |b| {
        b.iter(|| black_box(map.encode(black_box(&d))))
    });
    let mut seq = 0u64;
    c.bench_function("plc/encode_fresh_decision", |b| {
        b.iter_batched(
            || {
                seq += 1;
                decision(seq)
            },
            |d| black_box(map.encode(&d)),
            BatchSize::SmallInput,
        );
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50)
}

criterion_group! {
    name = operators;
    config = config();
    targets = press_sim, feature_extraction, threshold_decide, schemas, plc_encode
}
criterion_main!(operators);
