//! Seeded inputs shared by the criterion benchmarks (`benches/*.rs`) and their tests: press
//! strokes from the seeded simulator and one message of every press-line schema built from them.
//!
//! Every generator is a pure function of its arguments, so a benchmark measures the same work on
//! every machine and every run, and the tests below check the inputs are what the benches claim
//! (a normal stroke is 2,000 samples at 10 kHz, the features are the `press-v1` set…).
//!
//! ```
//! let strokes = forgeline_benches::press_strokes(7, 4);
//! assert_eq!(strokes.len(), 4);
//! assert_eq!(strokes[0].samples.len(), 2_000);
//! ```

use forgeline_acquisition::{PressSimConfig, PressSimulator, Stroke};
use forgeline_schemas::{
    Correlation, Decision, FeatureVector, QualityFlags, Score, Severity, Verdict, Waveform,
};

/// Seed used by every benchmark unless it says otherwise.
pub const BENCH_SEED: u64 = 7;

/// Asset id stamped on every generated message.
pub const ASSET_ID: &str = "press-01";

/// Acquisition time stamped on every generated message (a fixed instant, ns since the epoch).
pub const ACQ_TIME_NS: u64 = 1_764_000_000_000_000_000;

/// A simulator with the default press (10 kHz, 2,000 samples per stroke) and no faults.
///
/// # Panics
/// Never: the default configuration is valid (checked by this crate's tests).
#[must_use]
#[allow(clippy::expect_used)] // A constant, valid configuration: a panic here is a bug.
pub fn press_simulator(seed: u64) -> PressSimulator {
    PressSimulator::new(PressSimConfig {
        seed,
        ..PressSimConfig::default()
    })
    .expect("the default press simulator config is valid")
}

/// Normal strokes `0..n` of the seeded press.
#[must_use]
pub fn press_strokes(seed: u64, n: usize) -> Vec<Stroke> {
    let sim = press_simulator(seed);
    (0..n as u64).map(|seq| sim.stroke(seq)).collect()
}

/// Stroke `seq` of the seeded press as a `waveform` row.
#[must_use]
pub fn waveform(seed: u64, seq: u64) -> Waveform {
    press_simulator(seed)
        .stroke(seq)
        .into_waveform(ASSET_ID, ACQ_TIME_NS)
}

/// A `features` row with `n` values (the press-v1 set has 31), deterministic in `seq`.
#[must_use]
pub fn feature_vector(seq: u64, n: usize) -> FeatureVector {
    #[allow(clippy::cast_precision_loss)]
    let values = (0..n)
        .map(|i| ((seq as usize * 31 + i) % 97) as f32 * 0.125)
        .collect();
    FeatureVector {
        key: Correlation::new(ASSET_ID, seq, ACQ_TIME_NS),
        feature_set: "press-v1".into(),
        values,
        quality: QualityFlags::default(),
        source: format!("simulated:{BENCH_SEED}"),
    }
}

/// A `score` row as the inference stage emits it, with `score` as the anomaly score.
#[must_use]
pub fn score(seq: u64, score: f32) -> Score {
    Score {
        key: Correlation::new(ASSET_ID, seq, ACQ_TIME_NS),
        score,
        label: String::new(),
        model_version: "press-anomaly@1.0.0".into(),
        provider: "cpu".into(),
        quality: QualityFlags::default(),
        inference_ns: 9_800,
        source: format!("simulated:{BENCH_SEED}"),
    }
}

/// A `decision` row as the threshold stage emits it (a critical reject).
#[must_use]
pub fn decision(seq: u64) -> Decision {
    Decision {
        key: Correlation::new(ASSET_ID, seq, ACQ_TIME_NS),
        verdict: Verdict::Reject,
        severity: Severity::Critical,
        score: 4.2,
        threshold: 3.0,
        model_version: "press-anomaly@1.0.0".into(),
        reason: "score 4.200 >= critical 3.000".into(),
        decided_time_ns: ACQ_TIME_NS + 150_000,
        source: format!("simulated:{BENCH_SEED}"),
    }
}

/// Scores that walk through ok, warning and critical (for threshold benches): `n` values in
/// `[0, 4)`.
#[must_use]
pub fn score_walk(n: usize) -> Vec<Score> {
    #[allow(clippy::cast_precision_loss)]
    (0..n)
        .map(|i| score(i as u64, (i % 40) as f32 * 0.1))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn strokes_are_deterministic_and_the_default_press_shape() {
        let a = press_strokes(BENCH_SEED, 3);
        let b = press_strokes(BENCH_SEED, 3);
        assert_eq!(a, b);
        assert_ne!(a[0].samples, a[1].samples, "strokes differ from each other");
        assert_ne!(press_strokes(BENCH_SEED + 1, 1)[0].samples, a[0].samples);
        for s in &a {
            assert_eq!(s.samples.len(), 2_000);
            assert!((s.sample_rate_hz - 10_000.0).abs() < f32::EPSILON);
            assert!(s.samples.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn every_generated_message_round_trips_its_schema() {
        let w = waveform(BENCH_SEED, 5);
        assert_eq!(w.key.seq, 5);
        assert_eq!(
            Waveform::try_from_batch(&Waveform::to_batch(std::slice::from_ref(&w))).unwrap(),
            vec![w]
        );
        let f = feature_vector(5, 31);
        assert_eq!(f.values.len(), 31);
        assert_eq!(
            FeatureVector::try_from_batch(&FeatureVector::to_batch(std::slice::from_ref(&f)))
                .unwrap(),
            vec![f]
        );
        let s = score(5, 1.5);
        assert_eq!(
            Score::try_from_batch(&Score::to_batch(std::slice::from_ref(&s))).unwrap(),
            vec![s]
        );
        let d = decision(5);
        assert_eq!(
            Decision::try_from_batch(&Decision::to_batch(std::slice::from_ref(&d))).unwrap(),
            vec![d]
        );
    }

    #[test]
    fn the_score_walk_crosses_every_band() {
        let walk = score_walk(40);
        assert!(walk.iter().any(|s| s.score < 1.0));
        assert!(walk.iter().any(|s| s.score > 3.5));
    }
}
