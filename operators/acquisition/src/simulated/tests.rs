//! Behaviour tests of the press model: determinism, the healthy spectrum, and what each fault
//! family does to the signal. Spectra are computed with rustfft, independently of the model.

use proptest::prelude::*;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use super::*;

const FS: f64 = 10_000.0;

fn sim() -> PressSimulator {
    PressSimulator::new(PressSimConfig::default()).unwrap()
}

/// Power per FFT bin of the (finite) samples, with the bin width in Hz.
fn power_spectrum(samples: &[f32]) -> (Vec<f64>, f64) {
    let mut buf: Vec<Complex<f64>> = samples
        .iter()
        .map(|&v| Complex::new(f64::from(v), 0.0))
        .collect();
    FftPlanner::new()
        .plan_fft_forward(buf.len())
        .process(&mut buf);
    let half = buf.len() / 2;
    let power = buf[..=half].iter().map(|c| c.norm_sqr()).collect();
    (power, FS / samples.len() as f64)
}

fn band_energy(samples: &[f32], lo: f64, hi: f64) -> f64 {
    let (power, df) = power_spectrum(samples);
    power
        .iter()
        .enumerate()
        .filter(|(k, _)| (lo..hi).contains(&(*k as f64 * df)))
        .map(|(_, p)| p)
        .sum()
}

fn band_fraction(samples: &[f32], lo: f64, hi: f64) -> f64 {
    band_energy(samples, lo, hi) / band_energy(samples, 0.0, FS)
}

/// Power-weighted mean frequency in `lo..hi` Hz.
fn centroid(samples: &[f32], lo: f64, hi: f64) -> f64 {
    let (power, df) = power_spectrum(samples);
    let (mut num, mut den) = (0.0, 0.0);
    for (k, p) in power.iter().enumerate() {
        let f = k as f64 * df;
        if (lo..hi).contains(&f) {
            num += f * p;
            den += p;
        }
    }
    num / den
}

/// RMS over consecutive 2 ms windows.
fn envelope(samples: &[f32]) -> Vec<f64> {
    samples
        .chunks(20)
        .map(|w| (w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / w.len() as f64).sqrt())
        .collect()
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn longest_run(samples: &[f32], same: impl Fn(f32, f32) -> bool) -> usize {
    let (mut best, mut run) = (0, 0);
    for i in 0..samples.len() {
        run = if i > 0 && same(samples[i], samples[i - 1]) {
            run + 1
        } else {
            1
        };
        best = best.max(run);
    }
    best
}

fn zero_run(samples: &[f32]) -> usize {
    let (mut best, mut run) = (0, 0);
    for &v in samples {
        run = if v == 0.0 { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

fn mean(samples: &[f32]) -> f64 {
    samples.iter().map(|&v| f64::from(v)).sum::<f64>() / samples.len() as f64
}

fn fault(kind: FaultKind) -> StrokeLabel {
    StrokeLabel::Fault(kind)
}

fn sensor(kind: SensorFaultKind) -> StrokeLabel {
    StrokeLabel::Sensor(kind)
}

const SEQS: std::ops::Range<u64> = 0..64;

#[test]
fn same_seed_and_seq_give_identical_strokes_and_others_differ() {
    let (a, b) = (sim(), sim());
    let bits = |s: &Stroke| s.samples.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for seq in [0, 1, 17, u64::MAX] {
        assert_eq!(bits(&a.stroke(seq)), bits(&b.stroke(seq)), "seq {seq}");
        assert_ne!(a.stroke(seq).samples, a.stroke(seq.wrapping_add(1)).samples);
    }
    let other = PressSimulator::new(PressSimConfig {
        seed: 43,
        ..PressSimConfig::default()
    })
    .unwrap();
    assert_ne!(a.stroke(5).samples, other.stroke(5).samples);
    assert_eq!(a.stroke(3).source, "simulated:42");
}

#[test]
fn iteration_yields_stroke_n_in_order_and_resumes_after_seek() {
    let mut source = sim();
    for seq in 0..3 {
        let stroke = source.next_stroke().unwrap().unwrap();
        assert_eq!(stroke.seq, seq);
        assert_eq!(stroke, sim().stroke(seq));
    }
    // A restarted node seeks to where it was and reproduces the same stroke.
    let mut restarted = sim();
    restarted.seek(2);
    assert_eq!(restarted.next_stroke().unwrap().unwrap(), sim().stroke(2));
    assert!(
        source.describe().contains("next stroke 3"),
        "{}",
        source.describe()
    );
}

#[test]
fn normal_strokes_put_most_energy_in_200_to_400_hz_and_peak_at_a_few_g() {
    for seq in SEQS {
        let stroke = sim().stroke(seq);
        assert_eq!(stroke.label, Some(StrokeLabel::Normal));
        assert_eq!(stroke.samples.len(), 2000);
        assert_eq!(stroke.sample_rate_hz, 10_000.0);
        let fraction = band_fraction(&stroke.samples, 200.0, 400.0);
        assert!(
            fraction > 0.8,
            "seq {seq}: only {fraction:.3} of the energy in 200-400 Hz"
        );
        let p = peak(&stroke.samples);
        assert!((2.0..8.0).contains(&p), "seq {seq}: peak {p} g");
        // The impact lands at ~20 ms: nothing big before 17 ms, the peak within 18-35 ms.
        let argmax = stroke.samples.iter().enumerate().fold(0, |m, (i, v)| {
            if v.abs() > stroke.samples[m].abs() {
                i
            } else {
                m
            }
        });
        assert!(
            (180..350).contains(&argmax),
            "seq {seq}: peak at sample {argmax}"
        );
        assert!(
            peak(&stroke.samples[..170]) < 0.2,
            "seq {seq}: signal before the impact"
        );
    }
}

#[test]
fn strokes_vary_from_stroke_to_stroke_within_the_jitter() {
    let centroids: Vec<f64> = SEQS
        .map(|seq| centroid(&sim().stroke(seq).samples, 150.0, 450.0))
        .collect();
    let (lo, hi) = centroids
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &c| (l.min(c), h.max(c)));
    assert!(hi - lo > 1.0, "no jitter: {centroids:?}");
    assert!(hi - lo < 40.0, "too much jitter: {centroids:?}");
}

#[test]
fn die_wear_lowers_the_resonances_and_lengthens_the_ring() {
    let s = sim();
    for seq in SEQS {
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        let worn = s.stroke_as(seq, fault(FaultKind::DieWear)).samples;
        let (cn, cw) = (
            centroid(&normal, 150.0, 450.0),
            centroid(&worn, 150.0, 450.0),
        );
        assert!(cw < cn - 10.0, "seq {seq}: centroid {cn:.1} -> {cw:.1} Hz");
        assert!(
            cw > cn * 0.85,
            "seq {seq}: die wear is not subtle: {cn:.1} -> {cw:.1} Hz"
        );
        // Less damping: more of the energy is left after 60 ms.
        let tail = |x: &[f32]| rms(&x[600..]) / rms(x);
        assert!(tail(&worn) > tail(&normal), "seq {seq}");
    }
}

#[test]
fn die_wear_shift_grows_with_severity() {
    let s = sim();
    let c: Vec<f64> = [0.5, 1.0, 2.0]
        .map(|sev| {
            centroid(
                &s.stroke_with(3, fault(FaultKind::DieWear), sev).samples,
                150.0,
                450.0,
            )
        })
        .to_vec();
    assert!(c[0] > c[1] && c[1] > c[2], "{c:?}");
}

/// Largest second difference (a crude high-pass: gain 0.04 at 300 Hz, 4 at 5 kHz) in `x`.
fn max_second_difference(x: &[f32]) -> f32 {
    x.windows(3)
        .map(|w| (w[0] - 2.0 * w[1] + w[2]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn double_hit_has_a_second_impact_20_to_60_ms_after_the_first() {
    let s = sim();
    let env_max = |x: &[f32]| envelope(x).into_iter().fold(0.0, f64::max);
    let (mut second_peaks, mut rises) = (0, 0);
    for seq in 0..400 {
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        let double = s.stroke_as(seq, fault(FaultKind::DoubleHit)).samples;
        // The healthy part is shared, so the first differing sample is the second impact.
        let first_hit = normal.iter().position(|v| v.abs() > 1.0).unwrap();
        let second_hit = normal
            .iter()
            .zip(&double)
            .position(|(a, b)| a != b)
            .unwrap();
        let delay_ms = (second_hit - first_hit) as f64 / 10.0;
        assert!(
            (18.0..62.0).contains(&delay_ms),
            "seq {seq}: second hit {delay_ms} ms after the first"
        );
        // Every second impact shows as a broadband spike where the healthy stroke has none.
        let window = second_hit.saturating_sub(2)..second_hit + 10;
        let (spike_n, spike_d) = (
            max_second_difference(&normal[window.clone()]),
            max_second_difference(&double[window]),
        );
        assert!(
            spike_d > 3.0 * spike_n,
            "seq {seq}: broadband spike {spike_n:.3} -> {spike_d:.3} g"
        );
        // The envelope rises above the healthy ring-down…
        if env_max(&double[second_hit..second_hit + 60])
            > 1.3 * env_max(&normal[second_hit..second_hit + 60])
        {
            rises += 1;
        }
        // …and peaks again: the 10 ms after the second impact carry more energy than the 10 ms
        // before it.
        if rms(&double[second_hit..second_hit + 100]) > rms(&double[second_hit - 100..second_hit]) {
            second_peaks += 1;
        }
    }
    // The model is linear: a second impact landing in anti-phase with the ringing modes partly
    // cancels them (about 5 % of strokes), so not every double hit shows a
    // clean second envelope peak.
    let n = 400;
    assert!(
        rises >= n * 9 / 10,
        "envelope rise in {rises} of {n} strokes"
    );
    assert!(
        second_peaks >= n * 9 / 10,
        "second envelope peak in {second_peaks} of {n} strokes"
    );
}

#[test]
fn cracked_tooling_adds_a_550_to_750_hz_mode_with_sidebands() {
    let s = sim();
    for seq in SEQS {
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        let cracked = s.stroke_as(seq, fault(FaultKind::CrackedTooling)).samples;
        let (en, ec) = (
            band_energy(&normal, 500.0, 800.0),
            band_energy(&cracked, 500.0, 800.0),
        );
        assert!(
            ec > 3.0 * en,
            "seq {seq}: 500-800 Hz energy {en:.3} -> {ec:.3}"
        );
        // Not trivially huge: the 200-400 Hz modes still dominate.
        assert!(band_fraction(&cracked, 200.0, 400.0) > 0.6, "seq {seq}");
        // Sidebands: the modulated mode spreads over more bins than an unmodulated one would.
        let (power, df) = power_spectrum(&cracked);
        let band: Vec<f64> = power
            .iter()
            .enumerate()
            .filter(|(k, _)| (500.0..800.0).contains(&(*k as f64 * df)))
            .map(|(_, p)| *p)
            .collect();
        let max = band.iter().copied().fold(0.0, f64::max);
        let strong = band.iter().filter(|p| **p > 0.05 * max).count();
        assert!(
            strong >= 5,
            "seq {seq}: only {strong} strong bins in 500-800 Hz"
        );
    }
}

#[test]
fn bearing_outer_race_adds_energy_above_2_khz() {
    let s = sim();
    for seq in SEQS {
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        let bearing = s.stroke_as(seq, fault(FaultKind::BearingOuterRace)).samples;
        let (en, eb) = (
            band_energy(&normal, 2_000.0, 5_000.0),
            band_energy(&bearing, 2_000.0, 5_000.0),
        );
        assert!(
            eb > 3.0 * en,
            "seq {seq}: > 2 kHz energy {en:.3} -> {eb:.3}"
        );
        assert!(
            band_fraction(&bearing, 200.0, 400.0) > 0.6,
            "seq {seq}: not subtle"
        );
    }
}

#[test]
fn misfeed_is_weaker_with_a_different_mode_mix() {
    let s = sim();
    for seq in SEQS {
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        let misfeed = s.stroke_as(seq, fault(FaultKind::Misfeed)).samples;
        assert!(rms(&misfeed) < 0.6 * rms(&normal), "seq {seq}");
        assert!(
            peak(&misfeed) > 0.5,
            "seq {seq}: a misfeed still rings the press"
        );
        let (cn, cm) = (
            centroid(&normal, 150.0, 450.0),
            centroid(&misfeed, 150.0, 450.0),
        );
        assert!(
            cm > cn + 15.0,
            "seq {seq}: mode mix unchanged: {cn:.1} -> {cm:.1} Hz"
        );
    }
}

#[test]
fn clipping_sits_at_full_scale() {
    let s = sim();
    for seq in SEQS {
        let clipped = s.stroke_as(seq, sensor(SensorFaultKind::Clipping)).samples;
        let at_full_scale = clipped.iter().filter(|v| v.abs() == 50.0).count();
        assert!(
            at_full_scale >= 3,
            "seq {seq}: {at_full_scale} samples at full scale"
        );
        assert!(clipped.iter().all(|v| v.abs() <= 50.0));
        assert!(peak(&s.stroke_as(seq, StrokeLabel::Normal).samples) < 25.0);
    }
}

#[test]
fn dropout_has_a_run_of_exact_zeros() {
    let s = sim();
    for seq in SEQS {
        let dropped = s.stroke_as(seq, sensor(SensorFaultKind::Dropout)).samples;
        assert!(
            zero_run(&dropped) >= 200,
            "seq {seq}: longest zero run {}",
            zero_run(&dropped)
        );
        assert!(
            zero_run(&s.stroke_as(seq, StrokeLabel::Normal).samples) < 2,
            "seq {seq}"
        );
    }
}

#[test]
fn nan_fault_has_non_finite_samples_and_others_do_not() {
    let s = sim();
    for seq in SEQS {
        let bad = s.stroke_as(seq, sensor(SensorFaultKind::Nan)).samples;
        assert!(bad.iter().any(|v| v.is_nan()), "seq {seq}");
        assert!(
            bad.iter().any(|v| v.is_infinite()),
            "seq {seq}: severity 1 adds an Inf"
        );
        for label in StrokeLabel::ALL
            .into_iter()
            .filter(|l| *l != sensor(SensorFaultKind::Nan))
        {
            assert!(
                s.stroke_as(seq, label)
                    .samples
                    .iter()
                    .all(|v| v.is_finite()),
                "{label}"
            );
        }
    }
}

#[test]
fn stuck_sensor_holds_one_value() {
    let s = sim();
    for seq in SEQS {
        let stuck = s.stroke_as(seq, sensor(SensorFaultKind::Stuck)).samples;
        let run = longest_run(&stuck, |a, b| a.to_bits() == b.to_bits());
        assert!(run >= 1500, "seq {seq}: longest constant run {run}");
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        assert!(longest_run(&normal, |a, b| a.to_bits() == b.to_bits()) < 3);
    }
}

#[test]
fn offset_jump_shifts_the_dc_level_mid_stroke() {
    let s = sim();
    for seq in SEQS {
        let jumped = s
            .stroke_as(seq, sensor(SensorFaultKind::OffsetJump))
            .samples;
        let normal = s.stroke_as(seq, StrokeLabel::Normal).samples;
        let dc_step = |x: &[f32]| (mean(&x[1_500..]) - mean(&x[..150])).abs();
        assert!(
            dc_step(&jumped) > 0.8,
            "seq {seq}: step {}",
            dc_step(&jumped)
        );
        assert!(
            dc_step(&normal) < 0.1,
            "seq {seq}: step {}",
            dc_step(&normal)
        );
    }
}

#[test]
fn probabilities_pick_labels_at_the_configured_rates() {
    let config = PressSimConfig {
        faults: FaultRates {
            die_wear: 0.2,
            ..FaultRates::default()
        },
        sensor_faults: SensorFaultRates {
            dropout: 0.1,
            ..SensorFaultRates::default()
        },
        ..PressSimConfig::default()
    };
    let s = PressSimulator::new(config).unwrap();
    let labels: Vec<StrokeLabel> = (0..2_000).map(|seq| s.stroke(seq).label.unwrap()).collect();
    let share = |l: StrokeLabel| labels.iter().filter(|x| **x == l).count() as f64 / 2_000.0;
    assert!(
        (0.17..0.23).contains(&share(fault(FaultKind::DieWear))),
        "{}",
        share(fault(FaultKind::DieWear))
    );
    assert!((0.08..0.12).contains(&share(sensor(SensorFaultKind::Dropout))));
    assert!((0.66..0.74).contains(&share(StrokeLabel::Normal)));
    // Labels drawn by the probabilities produce the same signal as a forced label.
    let seq = (0..)
        .find(|&q| labels[q as usize] == fault(FaultKind::DieWear))
        .unwrap();
    assert_eq!(
        s.stroke(seq).samples,
        s.stroke_as(seq, fault(FaultKind::DieWear)).samples
    );
}

#[test]
fn schedule_forces_faults_and_severity_on_given_strokes() {
    let config: PressSimConfig = serde_yaml::from_str(
        "faults: { die_wear: 1.0 }\nschedule:\n  - { seq: 3, fault: normal }\n  - { seq: 4, fault: double_hit, severity: 2.0 }\n",
    )
    .unwrap();
    let s = PressSimulator::new(config).unwrap();
    assert_eq!(s.stroke(2).label, Some(fault(FaultKind::DieWear)));
    assert_eq!(s.stroke(3).label, Some(StrokeLabel::Normal));
    assert_eq!(s.stroke(3).samples, sim().stroke(3).samples);
    assert_eq!(
        s.stroke(4).samples,
        s.stroke_with(4, fault(FaultKind::DoubleHit), 2.0).samples
    );
    assert_ne!(
        s.stroke(4).samples,
        s.stroke_with(4, fault(FaultKind::DoubleHit), 1.0).samples
    );
}

#[test]
fn yaml_defaults_are_the_documented_ones_and_unknown_keys_are_refused() {
    let config: PressSimConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(config, PressSimConfig::default());
    assert_eq!(
        (
            config.seed,
            config.sample_rate_hz,
            config.samples_per_stroke
        ),
        (42, 10_000.0, 2_000)
    );
    assert_eq!(
        (
            config.full_scale_g,
            config.noise_g,
            config.hum_g,
            config.fault_severity
        ),
        (50.0, 0.02, 0.03, 1.0)
    );
    let err = serde_yaml::from_str::<PressSimConfig>("faults: { die_waer: 0.1 }").unwrap_err();
    assert!(err.to_string().contains("die_waer"), "{err}");
    let err = serde_yaml::from_str::<PressSimConfig>("schedule: [{ seq: 1, fault: wobble }]")
        .unwrap_err();
    assert!(err.to_string().contains("wobble"), "{err}");
}

#[test]
fn validation_reports_every_problem_at_once() {
    let config = PressSimConfig {
        sample_rate_hz: 4_000.0,
        full_scale_g: 2.0,
        noise_g: -0.1,
        faults: FaultRates {
            die_wear: 0.8,
            misfeed: 1.5,
            ..FaultRates::default()
        },
        sensor_faults: SensorFaultRates {
            nan: 0.5,
            ..SensorFaultRates::default()
        },
        fault_severity: 0.0,
        schedule: vec![
            ScheduledFault {
                seq: 1,
                fault: StrokeLabel::Normal,
                severity: Some(9.0),
            },
            ScheduledFault {
                seq: 1,
                fault: StrokeLabel::Normal,
                severity: None,
            },
        ],
        ..PressSimConfig::default()
    };
    let err = PressSimulator::new(config).unwrap_err();
    let text = err.to_string();
    for needle in [
        "sample_rate_hz: found 4000",
        "full_scale_g: found 2",
        "noise_g: found -0.1",
        "faults.misfeed: found 1.5",
        "sum to 1.3",
        "fault_severity: found 0",
        "schedule[0].severity: found 9",
        "schedule[1].seq",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert_eq!(err.problems.len(), 8, "{text}");
    let short = PressSimConfig {
        samples_per_stroke: 500,
        ..PressSimConfig::default()
    };
    assert!(
        short
            .validate()
            .unwrap_err()
            .to_string()
            .contains("samples_per_stroke: found 500")
    );
}

#[test]
fn other_rates_and_lengths_keep_the_physics_in_hz() {
    let config = PressSimConfig {
        sample_rate_hz: 20_000.0,
        samples_per_stroke: 6_000,
        ..PressSimConfig::default()
    };
    let stroke = PressSimulator::new(config).unwrap().stroke(1);
    assert_eq!(stroke.samples.len(), 6_000);
    let (power, _) = power_spectrum(&stroke.samples);
    let df = 20_000.0 / 6_000.0;
    let total: f64 = power.iter().sum();
    let band: f64 = power
        .iter()
        .enumerate()
        .filter(|(k, _)| (200.0..400.0).contains(&(*k as f64 * df)))
        .map(|(_, p)| p)
        .sum();
    assert!(band / total > 0.8, "{}", band / total);
}

#[test]
#[ignore = "timing: cargo test -p forgeline-acquisition --release -- --ignored --nocapture"]
fn generation_time_per_stroke() {
    let s = sim();
    let labels = StrokeLabel::ALL;
    let start = std::time::Instant::now();
    let n = 2_000;
    let mut sink = 0.0;
    for seq in 0..n {
        sink += s
            .stroke_as(seq, labels[seq as usize % labels.len()])
            .samples[100];
    }
    let per = start.elapsed() / n as u32;
    println!("{per:?} per stroke ({sink})");
    assert!(per < std::time::Duration::from_millis(5));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_stroke_has_the_configured_shape_and_stays_in_range(
        seed in any::<u64>(),
        seq in any::<u64>(),
        label in prop::sample::select(StrokeLabel::ALL.to_vec()),
        severity in 0.05_f32..3.0,
    ) {
        let s = PressSimulator::new(PressSimConfig { seed, ..PressSimConfig::default() }).unwrap();
        let stroke = s.stroke_with(seq, label, severity);
        prop_assert_eq!(stroke.samples.len(), 2000);
        prop_assert_eq!(stroke.label, Some(label));
        let nan = label == StrokeLabel::Sensor(SensorFaultKind::Nan);
        for v in &stroke.samples {
            prop_assert!(v.is_finite() || nan);
            prop_assert!(!v.is_finite() || v.abs() <= 50.0);
        }
        let again = s.stroke_with(seq, label, severity);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&stroke.samples), bits(&again.samples));
    }
}
