//! Data-quality checks on the raw samples of one stroke.
//!
//! One pass over the samples (plus the two offset segments); no allocation.

use forgeline_schemas::QualityFlags;

use crate::config::QualityConfig;

/// The data-quality flags of `samples` recorded at `sample_rate_hz`.
///
/// `expected_samples` and `expected_sample_rate_hz` come from the feature configuration.
pub fn check_quality(
    samples: &[f32],
    sample_rate_hz: f32,
    expected_samples: usize,
    expected_sample_rate_hz: f32,
    cfg: &QualityConfig,
) -> QualityFlags {
    let mut flags = QualityFlags::OK;
    if samples.len() != expected_samples {
        flags |= QualityFlags::WRONG_LENGTH;
    }
    let rate_ok = sample_rate_hz.is_finite()
        && (sample_rate_hz - expected_sample_rate_hz).abs()
            <= cfg.sample_rate_tolerance * expected_sample_rate_hz;
    if !rate_ok {
        flags |= QualityFlags::WRONG_RATE;
    }

    let clip_level = cfg.full_scale_g * (1.0 - cfg.clip_margin);
    let mut clipped = 0_usize;
    let mut zero_run = 0_usize;
    let mut longest_zero_run = 0_usize;
    let mut same_run = 0_usize;
    let mut longest_same_run = 0_usize;
    let mut previous: Option<f32> = None;
    // Variance over finite samples by shifted sums in f64: a stroke's std must be exact enough
    // to compare with 1e-4 g on top of a DC level of several g. Shifting by the first finite
    // sample (close to the DC level) keeps the sums small, so `s2/n - (s1/n)^2` does not cancel
    // catastrophically; and unlike Welford's update there is no division per sample (that
    // dependent chain was most of this function's time).
    let mut count = 0_u32;
    let mut shift: Option<f64> = None;
    let mut s1 = 0.0_f64;
    let mut s2 = 0.0_f64;
    for &x in samples {
        if x.is_nan() {
            flags |= QualityFlags::NAN;
        } else if x.is_infinite() {
            flags |= QualityFlags::INF;
        }
        if x.abs() >= clip_level {
            clipped += 1;
        }
        if x == 0.0 {
            zero_run += 1;
            longest_zero_run = longest_zero_run.max(zero_run);
        } else {
            zero_run = 0;
        }
        // Exact equality on purpose: a stuck ADC repeats the same code. Zero runs are dropout.
        let same = previous == Some(x) && x != 0.0;
        same_run = if same { same_run + 1 } else { 1 };
        longest_same_run = longest_same_run.max(same_run);
        previous = Some(x);
        if x.is_finite() {
            count += 1;
            let k = *shift.get_or_insert(f64::from(x));
            let d = f64::from(x) - k;
            s1 += d;
            s2 += d * d;
        }
    }
    if clipped >= cfg.clip_min_samples {
        flags |= QualityFlags::CLIPPING;
    }
    if longest_zero_run >= cfg.dropout_run_samples {
        flags |= QualityFlags::DROPOUT;
    }
    let std = if count > 1 {
        let n = f64::from(count);
        let mean_d = s1 / n;
        (s2 / n - mean_d * mean_d).max(0.0).sqrt()
    } else {
        0.0
    };
    if longest_same_run > cfg.stuck_run_samples || std < f64::from(cfg.stuck_min_std_g) {
        flags |= QualityFlags::STUCK;
    }
    if offset_jump(samples, cfg).is_some_and(|jump| jump > cfg.offset_jump_g) {
        flags |= QualityFlags::OFFSET;
    }
    flags
}

/// Absolute difference between the means of the first and last segments, g; `None` when the
/// stroke is too short to have two segments or a segment holds a non-finite sample.
pub fn offset_jump(samples: &[f32], cfg: &QualityConfig) -> Option<f32> {
    let segment = cfg.offset_segment_samples.min(samples.len() / 2);
    if segment == 0 {
        return None;
    }
    let mean = |part: &[f32]| -> f64 {
        part.iter().map(|&x| f64::from(x)).sum::<f64>() / part.len() as f64
    };
    let first = mean(&samples[..segment]);
    let last = mean(&samples[samples.len() - segment..]);
    let jump = (first - last).abs();
    jump.is_finite().then_some(jump as f32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use crate::testing::{FS, N, noise, stroke};

    fn flags_of(x: &[f32], rate: f32) -> QualityFlags {
        check_quality(x, rate, N, FS, &QualityConfig::default())
    }

    #[test]
    fn a_clean_stroke_has_no_flag() {
        for seed in 0..20 {
            assert_eq!(flags_of(&stroke(seed), FS), QualityFlags::OK, "seed {seed}");
        }
    }

    /// Each fault sets exactly its own flag on an otherwise clean stroke.
    #[test]
    fn each_flag_fires_on_its_fault_alone() {
        let clean = stroke(1);
        let with = |edit: &dyn Fn(&mut Vec<f32>)| {
            let mut x = clean.clone();
            edit(&mut x);
            x
        };
        let cases: Vec<(&str, Vec<f32>, f32, QualityFlags)> = vec![
            ("nan", with(&|x| x[100] = f32::NAN), FS, QualityFlags::NAN),
            (
                "inf",
                with(&|x| x[1999] = f32::NEG_INFINITY),
                FS,
                QualityFlags::INF,
            ),
            (
                "clipping",
                with(&|x| {
                    for i in [500, 510, 530] {
                        x[i] = 49.6;
                    }
                }),
                FS,
                QualityFlags::CLIPPING,
            ),
            (
                "stuck run",
                with(&|x| x[900..925].fill(0.123)),
                FS,
                QualityFlags::STUCK,
            ),
            ("flat", vec![0.25; N], FS, QualityFlags::STUCK),
            (
                "dropout",
                with(&|x| x[1200..1210].fill(0.0)),
                FS,
                QualityFlags::DROPOUT,
            ),
            (
                "short",
                clean[..1999].to_vec(),
                FS,
                QualityFlags::WRONG_LENGTH,
            ),
            (
                "long",
                with(&|x| x.push(0.01)),
                FS,
                QualityFlags::WRONG_LENGTH,
            ),
            (
                "slow rate",
                clean.clone(),
                9_000.0,
                QualityFlags::WRONG_RATE,
            ),
            (
                "nan rate",
                clean.clone(),
                f32::NAN,
                QualityFlags::WRONG_RATE,
            ),
            (
                "offset jump",
                with(&|x| x[1000..].iter_mut().for_each(|v| *v += 0.8)),
                FS,
                QualityFlags::OFFSET,
            ),
        ];
        for (what, x, rate, expected) in cases {
            assert_eq!(flags_of(&x, rate), expected, "{what}");
        }
    }

    #[test]
    fn limits_are_exclusive_where_documented() {
        let clean = stroke(2);
        // Two clipped samples are tolerated, three are not.
        let mut x = clean.clone();
        x[10] = 49.6;
        x[20] = -49.6;
        assert_eq!(flags_of(&x, FS), QualityFlags::OK);
        x[30] = 50.0;
        assert_eq!(flags_of(&x, FS), QualityFlags::CLIPPING);
        // A run of 20 identical values is allowed, 21 is stuck.
        let mut x = clean.clone();
        x[300..320].fill(0.5);
        assert_eq!(flags_of(&x, FS), QualityFlags::OK);
        x[320] = 0.5;
        assert_eq!(flags_of(&x, FS), QualityFlags::STUCK);
        // Nine zeros in a row are not a dropout, ten are.
        let mut x = clean.clone();
        x[600..609].fill(0.0);
        assert_eq!(flags_of(&x, FS), QualityFlags::OK);
        x[609] = 0.0;
        assert_eq!(flags_of(&x, FS), QualityFlags::DROPOUT);
        // Within 0.1 % of the rate is fine.
        assert_eq!(flags_of(&clean, 10_009.0), QualityFlags::OK);
        assert_eq!(flags_of(&clean, 10_011.0), QualityFlags::WRONG_RATE);
    }

    #[test]
    fn offset_jump_measures_the_step() {
        let mut x = noise(3, 0.01, N);
        x[1000..].iter_mut().for_each(|v| *v += 2.0);
        let jump = offset_jump(&x, &QualityConfig::default()).unwrap();
        assert!((jump - 2.0).abs() < 0.01, "{jump}");
        assert_eq!(offset_jump(&[1.0], &QualityConfig::default()), None);
        assert_eq!(
            offset_jump(&[1.0, f32::NAN], &QualityConfig::default()),
            None
        );
    }
}
