//! The feature extractor on the plant simulator (`forgeline-acquisition`): normal strokes are
//! clean and stable, every process fault family stands out, every sensor fault is flagged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use forgeline_acquisition::{
    FaultKind, PressSimConfig, PressSimulator, SensorFaultKind, StrokeLabel,
};
use forgeline_vibration::{FeatureConfig, FeatureExtractor, QualityFlags};

struct Bench {
    sim: PressSimulator,
    ex: FeatureExtractor,
    out: Vec<f32>,
    /// Mean and standard deviation of each feature over normal strokes.
    normal: Vec<(f32, f32)>,
}

impl Bench {
    fn new() -> Self {
        let sim = PressSimulator::new(PressSimConfig::default()).unwrap();
        let ex = FeatureExtractor::new(FeatureConfig::default()).unwrap();
        let mut bench = Self {
            sim,
            ex,
            out: Vec::new(),
            normal: Vec::new(),
        };
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|seq| {
                let flags = bench.extract(seq, StrokeLabel::Normal, 1.0);
                assert!(flags.is_ok(), "normal stroke {seq} flagged {flags}");
                assert_eq!(bench.feature("impact_count"), 1.0, "normal stroke {seq}");
                bench.out.clone()
            })
            .collect();
        bench.normal = (0..rows[0].len())
            .map(|i| {
                let mean = rows.iter().map(|r| r[i]).sum::<f32>() / rows.len() as f32;
                let var =
                    rows.iter().map(|r| (r[i] - mean).powi(2)).sum::<f32>() / rows.len() as f32;
                (mean, var.sqrt())
            })
            .collect();
        for (seq, row) in rows.iter().enumerate() {
            let (name, z) = bench.largest_z(row);
            assert!(
                z < 6.0,
                "normal stroke {seq}: {name} at {z} standard deviations"
            );
        }
        bench
    }

    fn extract(&mut self, seq: u64, label: StrokeLabel, severity: f32) -> QualityFlags {
        let stroke = self.sim.stroke_with(seq, label, severity);
        self.ex
            .extract(&stroke.samples, stroke.sample_rate_hz, &mut self.out)
    }

    fn feature(&self, name: &str) -> f32 {
        let i = self
            .ex
            .feature_names()
            .iter()
            .position(|n| n == name)
            .unwrap();
        self.out[i]
    }

    /// The feature furthest from normal, in normal standard deviations (floored at 1e-3).
    fn largest_z(&self, row: &[f32]) -> (String, f32) {
        self.ex
            .feature_names()
            .iter()
            .zip(row)
            .zip(&self.normal)
            .map(|((name, &v), &(mean, sd))| (name.clone(), ((v - mean) / sd.max(1e-3)).abs()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
    }
}

#[test]
fn simulated_strokes() {
    let mut b = Bench::new();
    let families = [
        FaultKind::DieWear,
        FaultKind::DoubleHit,
        FaultKind::CrackedTooling,
        FaultKind::BearingOuterRace,
        FaultKind::Misfeed,
    ];
    // Severity 0.5 is the subtle end of each family; die wear is the hardest (min |z| 4.6).
    for (severity, min_z) in [(0.5, 4.0), (1.0, 8.0)] {
        for family in families {
            for seq in 1000..1030 {
                let flags = b.extract(seq, StrokeLabel::Fault(family), severity);
                assert!(flags.is_ok(), "{family:?} {seq}: {flags}");
                let (name, z) = b.largest_z(&b.out.clone());
                assert!(
                    z > min_z,
                    "{family:?} x{severity} stroke {seq}: largest |z| {z} ({name})"
                );
                if family == FaultKind::DoubleHit {
                    assert!(
                        b.feature("impact_count") >= 2.0,
                        "double hit {seq} not counted"
                    );
                    let delay = b.feature("second_impact_delay_ms");
                    assert!(
                        (19.0..=61.0).contains(&delay),
                        "double hit {seq}: delay {delay} ms"
                    );
                }
            }
        }
    }
    let sensor = [
        (SensorFaultKind::Clipping, QualityFlags::CLIPPING),
        (SensorFaultKind::Dropout, QualityFlags::DROPOUT),
        (SensorFaultKind::Nan, QualityFlags::NAN),
        (SensorFaultKind::Stuck, QualityFlags::STUCK),
        (SensorFaultKind::OffsetJump, QualityFlags::OFFSET),
    ];
    for severity in [0.5, 1.0] {
        for (kind, flag) in sensor {
            for seq in 2000..2030 {
                let flags = b.extract(seq, StrokeLabel::Sensor(kind), severity);
                assert!(
                    flags.contains(flag),
                    "{kind:?} x{severity} stroke {seq}: flags {flags}"
                );
            }
        }
    }
}
