use proptest::prelude::*;

use super::*;
use crate::config::{DEFAULT_BANDS, QualityConfig};
use crate::testing::{
    FS, Family, N, add_bearing_fault, add_hit, add_impact, jittered_stroke, noise, sine, stroke,
};

fn extractor() -> FeatureExtractor {
    FeatureExtractor::new(FeatureConfig::default()).unwrap()
}

/// Value of feature `name` in `values`.
fn get(ex: &FeatureExtractor, values: &[f32], name: &str) -> f32 {
    let i = ex
        .feature_names()
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no feature {name}"));
    values[i]
}

fn features(ex: &mut FeatureExtractor, x: &[f32]) -> (Vec<f32>, QualityFlags) {
    let mut out = Vec::new();
    let flags = ex.extract(x, FS, &mut out);
    (out, flags)
}

#[test]
fn default_feature_names_are_stable() {
    let ex = extractor();
    let names = ex.feature_names();
    assert_eq!(names.len(), 31);
    assert_eq!(names[0], "band_0_100hz_log10_g2");
    assert_eq!(names[2], "band_200_400hz_log10_g2");
    assert_eq!(names[9], "band_3500_5000hz_log10_g2");
    assert_eq!(
        names[10..].iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "share_200_400hz",
            "peak1_hz",
            "peak1_rel_db",
            "peak2_hz",
            "peak2_rel_db",
            "peak3_hz",
            "peak3_rel_db",
            "spectral_centroid_hz",
            "spectral_spread_hz",
            "rms_log10_g",
            "peak_log10_g",
            "crest_factor_db",
            "kurtosis_log10",
            "env_bpfo_h1_db",
            "env_bpfo_h2_db",
            "env_bpfo_h3_db",
            "impact_time_ms",
            "post_impact_energy_db",
            "impact_count",
            "second_impact_delay_ms",
            "second_impact_rel_db",
        ]
    );
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "feature names must be unique");
}

#[test]
fn names_count_equals_values_count_for_any_config() {
    let configs = [
        FeatureConfig::default(),
        FeatureConfig {
            bands: vec![Band::new(0.0, 1000.0), Band::new(1000.0, 5000.0)],
            spectral_peaks: 0,
            bpfo_harmonics: 1,
            ..FeatureConfig::default()
        },
        FeatureConfig {
            expected_samples: 4096,
            spectral_peaks: 7,
            bpfo_harmonics: 5,
            ..FeatureConfig::default()
        },
    ];
    for cfg in configs {
        let mut ex = FeatureExtractor::new(cfg).unwrap();
        for x in [stroke(1), noise(2, 0.1, 10), Vec::new(), vec![f32::NAN; N]] {
            let (out, _) = features(&mut ex, &x);
            assert_eq!(out.len(), ex.feature_names().len());
        }
    }
}

#[test]
fn extract_does_not_reallocate_after_the_first_call() {
    let mut ex = extractor();
    let mut out = Vec::new();
    ex.extract(&stroke(0), FS, &mut out);
    let internal = ex.buffer_capacity();
    let (out_capacity, out_ptr) = (out.capacity(), out.as_ptr());
    for seed in 1..200_u64 {
        // Normal, short, long, faulty and empty strokes all reuse the same buffers.
        let x = match seed % 5 {
            0 => stroke(seed),
            1 => noise(seed, 0.5, 1500),
            2 => noise(seed, 0.5, 3000),
            3 => vec![f32::NAN; N],
            _ => Vec::new(),
        };
        ex.extract(&x, FS, &mut out);
        assert_eq!(
            ex.buffer_capacity(),
            internal,
            "internal buffer grew at stroke {seed}"
        );
        assert_eq!(out.capacity(), out_capacity, "output grew at stroke {seed}");
        assert_eq!(out.as_ptr(), out_ptr, "output reallocated at stroke {seed}");
    }
}

#[test]
fn pure_sines_land_in_their_band_and_peak() {
    let mut ex = extractor();
    for freq in [
        60.0, 150.0, 300.0, 470.0, 650.0, 880.0, 1234.0, 2050.0, 3010.0, 4210.0,
    ] {
        let mut x = sine(freq, 1.0, FS, N);
        for (v, n) in x.iter_mut().zip(noise(7, 0.001, N)) {
            *v += n;
        }
        let (out, flags) = features(&mut ex, &x);
        assert!(flags.is_ok(), "{freq} Hz: {flags}");
        let band_values = &out[..DEFAULT_BANDS.len()];
        let loudest = (0..band_values.len())
            .max_by(|&a, &b| band_values[a].total_cmp(&band_values[b]))
            .unwrap();
        let band = DEFAULT_BANDS[loudest];
        assert!(
            band.lo_hz <= freq && freq < band.hi_hz,
            "{freq} Hz landed in {band:?}"
        );
        // Mean square of a 1 g sine is 0.5 g²; nearly all of it in the band.
        assert!(
            (band_values[loudest] - 0.5_f32.log10()).abs() < 0.05,
            "{freq} Hz: {band_values:?}"
        );
        // The strongest listed peak is the tone, with nearly all the energy.
        let strongest = (1..=3)
            .max_by(|&a, &b| {
                let level = |i| get(&ex, &out, &format!("peak{i}_rel_db"));
                level(a).total_cmp(&level(b))
            })
            .unwrap();
        let peak = get(&ex, &out, &format!("peak{strongest}_hz"));
        assert!((peak - freq).abs() < 1.5, "{freq} Hz: peak at {peak} Hz");
        assert!(get(&ex, &out, &format!("peak{strongest}_rel_db")) > -0.5);
        let rms = 10_f32.powf(get(&ex, &out, "rms_log10_g"));
        assert!(
            (rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01,
            "rms {rms}"
        );
        let centroid = get(&ex, &out, "spectral_centroid_hz");
        assert!(
            (centroid - freq).abs() < 0.02 * freq + 10.0,
            "{freq} Hz: centroid {centroid}"
        );
        let share = get(&ex, &out, "share_200_400hz");
        let inside = (200.0..400.0).contains(&freq);
        assert_eq!(share > 0.95, inside, "{freq} Hz: share {share}");
        assert!(inside || share < 0.05, "{freq} Hz: share {share}");
        // A sine: kurtosis 1.5, crest factor sqrt(2) = 3 dB.
        assert!((get(&ex, &out, "kurtosis_log10") - 1.5_f32.log10()).abs() < 0.02);
        let crest = get(&ex, &out, "crest_factor_db");
        assert!(
            (crest - 3.01).abs() < 0.1,
            "{freq} Hz: crest factor {crest} dB"
        );
    }
}

#[test]
fn the_strongest_peaks_are_listed_in_frequency_order() {
    let mut ex = extractor();
    for (low_amp, high_amp, expected_gap_db) in [(1.0, 0.1, 20.0), (0.1, 1.0, -20.0)] {
        let x: Vec<f32> = sine(320.0, low_amp, FS, N)
            .iter()
            .zip(sine(680.0, high_amp, FS, N))
            .zip(sine(1500.0, 0.01, FS, N))
            .map(|((a, b), c)| a + b + c)
            .collect();
        let (out, _) = features(&mut ex, &x);
        // Two strongest of three tones, in frequency order; the third is 1500 Hz.
        let hz: Vec<f32> = (1..=3)
            .map(|i| get(&ex, &out, &format!("peak{i}_hz")))
            .collect();
        assert!(
            (hz[0] - 320.0).abs() < 1.5 && (hz[1] - 680.0).abs() < 1.5,
            "{hz:?}"
        );
        assert!((hz[2] - 1500.0).abs() < 1.5, "{hz:?}");
        let gap = get(&ex, &out, "peak1_rel_db") - get(&ex, &out, "peak2_rel_db");
        assert!((gap - expected_gap_db).abs() < 0.5, "gap {gap}");
    }
}

#[test]
fn missing_peaks_are_reported_at_the_floor() {
    let mut ex = FeatureExtractor::new(FeatureConfig {
        spectral_peaks: 5,
        ..FeatureConfig::default()
    })
    .unwrap();
    // A pure tone has one peak; the rest of the spectrum is numerically flat but can hold
    // rounding ripples, so only check that a constant has none.
    let (out, _) = features(&mut ex, &vec![1.0; N]);
    for i in 1..=5 {
        assert_eq!(get(&ex, &out, &format!("peak{i}_hz")), 0.0);
        assert_eq!(get(&ex, &out, &format!("peak{i}_rel_db")), MISSING_PEAK_DB);
    }
}

#[test]
fn kurtosis_of_a_gaussian_is_three() {
    let x = noise(11, 1.0, 200_000);
    let k = Moments::of(&x).kurtosis();
    assert!((k - 3.0).abs() < 0.05, "kurtosis {k}");
    let mut ex = extractor();
    let (out, _) = features(&mut ex, &noise(12, 0.3, N));
    let k = 10_f32.powf(get(&ex, &out, "kurtosis_log10"));
    assert!((k - 3.0).abs() < 0.4, "kurtosis {k}");
    // An impulsive stroke is far from Gaussian.
    let (out, _) = features(&mut ex, &stroke(3));
    assert!(10_f32.powf(get(&ex, &out, "kurtosis_log10")) > 5.0);
}

#[test]
fn envelope_level_rises_for_an_impulse_train_at_the_bpfo() {
    let mut ex = extractor();
    let (healthy, _) = features(&mut ex, &stroke(5));
    let mut faulty_signal = stroke(5);
    add_bearing_fault(&mut faulty_signal, 100.0, 0.5);
    let (faulty, flags) = features(&mut ex, &faulty_signal);
    assert!(flags.is_ok(), "{flags}");
    for h in 1..=3 {
        let name = format!("env_bpfo_h{h}_db");
        let (before, after) = (get(&ex, &healthy, &name), get(&ex, &faulty, &name));
        assert!(after > before + 6.0, "{name}: {before} dB -> {after} dB");
    }
    // A train at another rate does not excite the BPFO window as much.
    let mut other_signal = stroke(5);
    add_bearing_fault(&mut other_signal, 160.0, 0.5);
    let (other, _) = features(&mut ex, &other_signal);
    assert!(get(&ex, &faulty, "env_bpfo_h1_db") > get(&ex, &other, "env_bpfo_h1_db") + 6.0);
}

#[test]
fn a_double_hit_is_counted_and_timed() {
    let mut ex = extractor();
    // The four modes beat with each other: the impact band must not mistake that for hits.
    for seed in 0..10 {
        let (single, _) = features(&mut ex, &stroke(seed));
        assert_eq!(get(&ex, &single, "impact_count"), 1.0, "seed {seed}");
        assert_eq!(get(&ex, &single, "second_impact_delay_ms"), 0.0);
        assert!((get(&ex, &single, "impact_time_ms") - 40.0).abs() < 1.0);
    }
    let (single, _) = features(&mut ex, &stroke(8));
    for (delay, strength) in [(20.0, 0.5), (33.3, 0.8), (47.1, 0.65), (60.0, 0.5)] {
        let mut x = stroke(8);
        add_hit(&mut x, 40.0 + delay, strength);
        let (double, flags) = features(&mut ex, &x);
        assert!(flags.is_ok(), "{flags}");
        assert_eq!(get(&ex, &double, "impact_count"), 2.0, "delay {delay}");
        let measured = get(&ex, &double, "second_impact_delay_ms");
        assert!(
            (measured - delay).abs() < 1.0,
            "delay {delay}: measured {measured}"
        );
        let (before, after) = (
            get(&ex, &single, "post_impact_energy_db"),
            get(&ex, &double, "post_impact_energy_db"),
        );
        // The second ring adds to the first (by an amount that depends on the mode phases).
        assert!(
            after > before + 0.5,
            "delay {delay}: post-impact energy {before} -> {after} dB"
        );
        let (before, after) = (
            get(&ex, &single, "second_impact_rel_db"),
            get(&ex, &double, "second_impact_rel_db"),
        );
        assert!(
            after > before + 6.0,
            "delay {delay}: second impact {before} -> {after} dB"
        );
    }
}

#[test]
fn non_finite_samples_give_all_nan_features() {
    let mut ex = extractor();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = stroke(9);
        x[700] = bad;
        let (out, flags) = features(&mut ex, &x);
        assert!(flags.contains(QualityFlags::NAN) || flags.contains(QualityFlags::INF));
        assert!(out.iter().all(|v| v.is_nan()), "{bad}: {out:?}");
    }
}

#[test]
fn faulty_but_finite_strokes_still_get_finite_features() {
    let mut ex = extractor();
    let mut clipped = stroke(10);
    for v in &mut clipped {
        *v = (*v * 20.0).clamp(-50.0, 50.0);
    }
    let cases = [
        ("empty", Vec::new()),
        ("zeros", vec![0.0; N]),
        ("constant", vec![3.0; N]),
        ("short", stroke(10)[..300].to_vec()),
        ("long", noise(10, 1.0, 5000)),
        ("clipped", clipped),
    ];
    for (what, x) in cases {
        let (out, flags) = features(&mut ex, &x);
        assert!(!flags.is_ok(), "{what} should be flagged");
        assert!(out.iter().all(|v| v.is_finite()), "{what}: {out:?}");
    }
}

#[test]
fn the_stroke_rate_is_used_for_frequencies() {
    let mut ex = extractor();
    let x = sine(300.0, 1.0, 20_000.0, N);
    let mut out = Vec::new();
    let flags = ex.extract(&x, 20_000.0, &mut out);
    assert_eq!(flags, QualityFlags::WRONG_RATE);
    assert!((get(&ex, &out, "peak1_hz") - 300.0).abs() < 1.5);
}

/// Mean and standard deviation of every feature over `count` jittered normal strokes.
fn normal_statistics(ex: &mut FeatureExtractor, count: u64) -> (Vec<Vec<f32>>, Vec<(f32, f32)>) {
    let rows: Vec<Vec<f32>> = (0..count)
        .map(|s| features(ex, &jittered_stroke(s, Family::Normal)).0)
        .collect();
    let stats = (0..ex.feature_names().len())
        .map(|i| {
            let mean = rows.iter().map(|r| r[i]).sum::<f32>() / rows.len() as f32;
            let var = rows.iter().map(|r| (r[i] - mean).powi(2)).sum::<f32>() / rows.len() as f32;
            (mean, var.sqrt())
        })
        .collect();
    (rows, stats)
}

fn z(value: f32, (mean, sd): (f32, f32)) -> f32 {
    (value - mean) / sd.max(1e-3)
}

#[test]
fn normal_strokes_give_stable_features() {
    // The anomaly model standardises each feature over normal strokes: no normal stroke may
    // sit far out on any feature (e.g. a peak swapping rank, or a beat counted as an impact).
    let mut ex = extractor();
    let (rows, stats) = normal_statistics(&mut ex, 60);
    for (seed, row) in rows.iter().enumerate() {
        for ((name, &v), &stat) in ex.feature_names().iter().zip(row).zip(&stats) {
            assert!(
                z(v, stat).abs() < 6.0,
                "seed {seed}: {name} = {v}, normal {stat:?}"
            );
        }
        assert_eq!(get(&ex, row, "impact_count"), 1.0, "seed {seed}");
    }
}

#[test]
fn every_fault_family_stands_out_from_normal_strokes() {
    let mut ex = extractor();
    let (_, stats) = normal_statistics(&mut ex, 60);
    let families = [
        (Family::DieWear, "die wear"),
        (Family::DoubleHit, "double hit"),
        (Family::CrackedTooling, "cracked tooling"),
        (Family::BearingOuterRace, "bearing"),
        (Family::Misfeed, "misfeed"),
    ];
    for (family, what) in families {
        for seed in 1000..1010 {
            let (out, flags) = features(&mut ex, &jittered_stroke(seed, family));
            assert!(flags.is_ok(), "{what}: {flags}");
            let (name, score) = ex
                .feature_names()
                .iter()
                .zip(&out)
                .zip(&stats)
                .map(|((name, &v), &stat)| (name, z(v, stat).abs()))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(
                score > 8.0,
                "{what} seed {seed}: largest |z| only {score} ({name})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Realistic clean strokes (sensor noise plus an impact anywhere in the middle of the
    /// stroke) never raise a quality flag, and every feature is finite.
    #[test]
    fn clean_noisy_strokes_never_flag(
        seed in any::<u64>(),
        noise_std in 0.001_f32..0.5,
        impact_g in 0.0_f32..20.0,
        impact_ms in 40.0_f32..120.0,
        freq in 150.0_f32..1000.0,
        tau_ms in 5.0_f32..40.0,
    ) {
        let mut x = noise(seed, noise_std, N);
        add_impact(&mut x, impact_ms, impact_g, freq, tau_ms);
        let mut ex = FeatureExtractor::new(FeatureConfig::default()).unwrap();
        let mut out = Vec::new();
        let flags = ex.extract(&x, FS, &mut out);
        prop_assert!(flags.is_ok(), "flags {}", flags);
        prop_assert!(out.iter().all(|v| v.is_finite()));
        prop_assert_eq!(
            crate::check_quality(&x, FS, N, FS, &QualityConfig::default()),
            QualityFlags::OK
        );
    }
}
