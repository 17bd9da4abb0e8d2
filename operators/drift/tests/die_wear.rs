//! The drift operator on the line's own signal chain, in-process: the press simulator's strokes
//! through the line's feature extractor into the drift monitor. A reference from 600 normal
//! strokes (seed 1, like the shipped model); a long normal stream of another seed stays quiet;
//! a die-wear progression raises the alert and names the drifting features.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test]: a panic is the failure report

use forgeline_acquisition::{FaultKind, PressSimConfig, PressSimulator, StrokeLabel};
use forgeline_drift::{AlertChange, DriftConfig, DriftMonitor, DriftReference, WindowReport};
use forgeline_vibration::{FeatureConfig, FeatureExtractor};

fn simulator(seed: u64) -> PressSimulator {
    PressSimulator::new(PressSimConfig {
        seed,
        ..PressSimConfig::default()
    })
    .unwrap()
}

fn reference(extractor: &mut FeatureExtractor) -> DriftReference {
    let sim = simulator(1);
    let mut rows = Vec::new();
    for seq in 0..600 {
        let s = sim.stroke_as(seq, StrokeLabel::Normal);
        let mut v = Vec::new();
        assert!(
            extractor
                .extract(&s.samples, s.sample_rate_hz, &mut v)
                .is_ok()
        );
        rows.push(v);
    }
    DriftReference::from_rows(extractor.feature_names(), &rows).unwrap()
}

/// Runs `strokes` (seq, label, severity) through features and the monitor.
fn run(
    monitor: &mut DriftMonitor,
    extractor: &mut FeatureExtractor,
    sim: &PressSimulator,
    strokes: impl Iterator<Item = (u64, StrokeLabel, f32)>,
) -> Vec<WindowReport> {
    let mut v = Vec::new();
    let mut reports = Vec::new();
    for (seq, label, severity) in strokes {
        let s = sim.stroke_with(seq, label, severity);
        let flags = extractor.extract(&s.samples, s.sample_rate_hz, &mut v);
        if let Some(r) = monitor.push(seq, &v, flags.is_ok()).unwrap() {
            reports.push(r);
        }
    }
    reports
}

#[test]
fn long_normal_stream_stays_quiet_and_die_wear_progression_raises_the_alert() {
    let mut extractor = FeatureExtractor::new(FeatureConfig::default()).unwrap();
    let reference = reference(&mut extractor);
    let config = DriftConfig::default(); // window 200, 5 % per window, 3 in a row
    let mut quiet = DriftMonitor::new(reference.clone(), config.clone()).unwrap();
    let t = quiet.thresholds().clone();
    println!(
        "thresholds (window {}): psi {:.4} ks {:.4}, simulated per-window rate {:.3} (target {})",
        t.window, t.psi, t.ks, t.simulated_rate, t.target_rate
    );

    // 20,000 normal strokes of another seed: 100 independent windows, no alert.
    let sim = simulator(5);
    let normal = run(
        &mut quiet,
        &mut extractor,
        &sim,
        (0..20_000).map(|seq| (seq, StrokeLabel::Normal, 1.0)),
    );
    assert_eq!(normal.len(), 100);
    let drifted = normal.iter().filter(|r| r.drifted).count();
    println!("normal stream: {drifted} of 100 windows flagged, alerts: 0 expected");
    assert!(
        normal.iter().all(|r| r.alert.is_none()),
        "false drift alert on a normal stream: {:?}",
        normal
            .iter()
            .find(|r| r.alert.is_some())
            .map(|r| r.top_features(3))
    );
    // The realised per-window rate is near the calibrated one (binomial, 100 windows at 5 %:
    // P(more than 15) < 1e-4).
    assert!(drifted <= 15, "{drifted} of 100 normal windows flagged");

    // Die wear progression: 1,000 healthy strokes, then severity rising 0.05 -> 1.0 over
    // 4,000 strokes.
    let mut worn = DriftMonitor::new(reference, config).unwrap();
    let wear = |seq: u64| -> (u64, StrokeLabel, f32) {
        if seq < 1000 {
            (seq, StrokeLabel::Normal, 1.0)
        } else {
            #[allow(clippy::cast_precision_loss)]
            let s = 0.05 + 0.95 * ((seq - 1000) as f32 / 4000.0);
            (seq, StrokeLabel::Fault(FaultKind::DieWear), s.min(1.0))
        }
    };
    let reports = run(&mut worn, &mut extractor, &sim, (0..5000).map(wear));
    let raise = reports
        .iter()
        .find(|r| r.alert == Some(AlertChange::Raise))
        .expect("die wear must raise the drift alert");
    let severity = wear(raise.seq).2;
    println!(
        "die wear: alert at stroke {} (severity {severity:.2}); top: {}",
        raise.seq,
        raise.top_features(3)
    );
    assert!(
        raise.seq >= 1000 + 3 * 200 - 1,
        "raised before the wear could persist"
    );
    assert!(severity < 0.8, "alert late: severity {severity}");
    assert!(
        reports
            .iter()
            .filter(|r| r.seq < 1000)
            .all(|r| !r.alert_active)
    );
}
