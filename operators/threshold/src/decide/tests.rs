use forgeline_schemas::{Correlation, QualityFlags};
use proptest::prelude::*;

use super::*;
use crate::config::{Confirm, Hysteresis};

const WARNING: f32 = 2.0;
const CRITICAL: f32 = 3.0;

fn stage(confirm: Confirm, hysteresis: Hysteresis) -> Threshold {
    Threshold::new(ThresholdConfig {
        confirm,
        hysteresis,
        ..ThresholdConfig::with_limits(WARNING, CRITICAL)
    })
    .unwrap()
}

fn score(asset: &str, seq: u64, value: f32) -> Score {
    Score {
        key: Correlation::new(asset, seq, 1_000 + seq),
        score: value,
        model_version: "press-anomaly@1.0.0".into(),
        source: format!("simulated:{seq}"),
        ..Score::default()
    }
}

/// Severity order of a verdict: a milder verdict has a lower rank.
fn rank(d: &Decision) -> u8 {
    match (d.verdict, d.severity) {
        (Verdict::Ok, _) => 0,
        (Verdict::Reject, Severity::Warning) => 1,
        (Verdict::Reject, Severity::Critical) => 2,
        other => panic!("unexpected verdict for a finite score: {other:?}"),
    }
}

/// Feeds `values` for one asset; returns the alert kinds with the index of the stroke.
fn run(stage: &mut Threshold, values: &[f32]) -> Vec<(usize, AlertKind, Severity)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, &v)| {
            stage
                .decide(&score("press-07", i as u64, v), i as u64)
                .alert
                .map(|a| (i, a.kind, a.severity))
        })
        .collect()
}

#[test]
fn verdicts_and_reasons() {
    let mut t = Threshold::new(ThresholdConfig::with_limits(WARNING, CRITICAL)).unwrap();
    let cases = [
        (
            1.0,
            Verdict::Ok,
            Severity::None,
            WARNING,
            "score 1.00 < warning 2.00",
        ),
        (
            1.999,
            Verdict::Ok,
            Severity::None,
            WARNING,
            "score 1.999 < warning 2.00",
        ),
        (
            2.0,
            Verdict::Reject,
            Severity::Warning,
            WARNING,
            "score 2.00 >= warning 2.00",
        ),
        (
            2.5,
            Verdict::Reject,
            Severity::Warning,
            WARNING,
            "score 2.50 >= warning 2.00",
        ),
        (
            3.0,
            Verdict::Reject,
            Severity::Critical,
            CRITICAL,
            "score 3.00 >= critical 3.00",
        ),
        (
            4.21,
            Verdict::Reject,
            Severity::Critical,
            CRITICAL,
            "score 4.21 >= critical 3.00",
        ),
        (
            f32::NAN,
            Verdict::SensorFault,
            Severity::Warning,
            WARNING,
            "non-finite score",
        ),
        (
            f32::INFINITY,
            Verdict::SensorFault,
            Severity::Warning,
            WARNING,
            "non-finite score",
        ),
        (
            f32::NEG_INFINITY,
            Verdict::SensorFault,
            Severity::Warning,
            WARNING,
            "non-finite score",
        ),
    ];
    for (i, (value, verdict, severity, threshold, reason)) in cases.into_iter().enumerate() {
        let input = score("press-07", i as u64, value);
        let d = t.decide(&input, 42 + i as u64).decision;
        assert_eq!(
            (d.verdict, d.severity, d.reason.as_str()),
            (verdict, severity, reason),
            "{value}"
        );
        assert_eq!(d.threshold, threshold);
        assert_eq!(d.key, input.key);
        assert_eq!(d.model_version, "press-anomaly@1.0.0");
        assert_eq!(d.source, input.source);
        assert_eq!(d.decided_time_ns, 42 + i as u64);
        assert!(d.score.to_bits() == value.to_bits());
    }
}

#[test]
fn quality_flags_give_a_sensor_fault_naming_them() {
    let mut t = Threshold::new(ThresholdConfig::with_limits(WARNING, CRITICAL)).unwrap();
    let mut input = score("press-07", 1, 0.5);
    input.quality = QualityFlags::CLIPPING | QualityFlags::DROPOUT;
    let d = t.decide(&input, 0).decision;
    assert_eq!(d.verdict, Verdict::SensorFault);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.reason, "sensor fault: clipping|dropout");
}

#[test]
fn sensor_fault_severity_is_configurable_and_none_leaves_the_alarm_alone() {
    let mut t = Threshold::new(ThresholdConfig {
        sensor_fault_severity: Severity::None,
        ..ThresholdConfig::with_limits(WARNING, CRITICAL)
    })
    .unwrap();
    let mut input = score("press-07", 1, f32::NAN);
    input.quality = QualityFlags::NAN;
    let out = t.decide(&input, 0);
    assert_eq!(
        (out.decision.verdict, out.decision.severity),
        (Verdict::SensorFault, Severity::None)
    );
    assert_eq!(out.alert, None);

    // At the default (warning) a sensor fault counts as an exceedance.
    let mut t = Threshold::new(ThresholdConfig::with_limits(WARNING, CRITICAL)).unwrap();
    let alert = t.decide(&input, 0).alert.unwrap();
    assert_eq!(
        (alert.kind, alert.severity),
        (AlertKind::Raise, Severity::Warning)
    );
    assert!(
        alert.message.contains("sensor fault: nan"),
        "{}",
        alert.message
    );
}

#[test]
fn n_of_m_raises_on_the_nth_exceedance_in_the_window() {
    let mut t = stage(
        Confirm { n: 3, m: 5 },
        Hysteresis {
            margin: 0.0,
            clear_after: 100,
        },
    );
    // Exceedances at 0, 4, 8 are never 3 within 5 strokes; 10, 12 make 8, 10, 12.
    let values = [
        2.5, 1.0, 1.0, 1.0, 2.5, 1.0, 1.0, 1.0, 2.5, 1.0, 2.5, 1.0, 2.5, 1.0,
    ];
    assert_eq!(
        run(&mut t, &values),
        [(12, AlertKind::Raise, Severity::Warning)]
    );
    assert_eq!(t.active_alert("press-07"), Some(Severity::Warning));
    assert_eq!(t.active_alert("press-08"), None);
}

#[test]
fn confirmed_critical_escalates_a_warning_alert() {
    let mut t = stage(
        Confirm { n: 2, m: 3 },
        Hysteresis {
            margin: 0.0,
            clear_after: 100,
        },
    );
    let transitions = run(&mut t, &[2.5, 2.5, 3.5, 1.0, 3.5, 3.5]);
    assert_eq!(
        transitions,
        [
            (1, AlertKind::Raise, Severity::Warning),
            (4, AlertKind::Escalate, Severity::Critical)
        ]
    );
    let mut t = stage(Confirm { n: 2, m: 3 }, Hysteresis::default());
    let out: Vec<_> = [3.5, 3.5]
        .iter()
        .enumerate()
        .map(|(i, &v)| t.decide(&score("a", i as u64, v), 7))
        .collect();
    let alert = out[1].alert.clone().unwrap();
    assert_eq!(
        (alert.kind, alert.severity, alert.seq, alert.time_ns),
        (AlertKind::Raise, Severity::Critical, 1, 7)
    );
    assert_eq!(alert.asset_id, "a");
    assert!(
        alert.message.starts_with(
            "a: critical alert raised: 2 of the last 3 strokes at or above critical 3.00"
        ),
        "{}",
        alert.message
    );
}

#[test]
fn alert_texts_name_what_the_line_decides_on() {
    // An inspection line says "parts", in the raise and in the clear text.
    let mut t = Threshold::new(ThresholdConfig {
        items: "parts".into(),
        confirm: Confirm { n: 2, m: 3 },
        hysteresis: Hysteresis {
            margin: 0.0,
            clear_after: 2,
        },
        ..ThresholdConfig::with_limits(WARNING, CRITICAL)
    })
    .unwrap();
    let texts: Vec<String> = [3.5, 3.5, 0.1, 0.1]
        .iter()
        .enumerate()
        .filter_map(|(i, &v)| t.decide(&score("cam", i as u64, v), 0).alert)
        .map(|a| a.message)
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("2 of the last 3 parts at or above"),
        "{texts:?}"
    );
    assert!(texts[1].contains("2 consecutive parts below"), "{texts:?}");

    let err = Threshold::new(ThresholdConfig {
        items: " ".into(),
        ..ThresholdConfig::with_limits(WARNING, CRITICAL)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("items"), "{err}");
}

#[test]
fn hysteresis_prevents_flapping_around_the_warning_level() {
    let oscillating: Vec<f32> = (0..100)
        .map(|i| if i % 2 == 0 { 2.1 } else { 1.9 })
        .collect();
    // Without hysteresis the alarm flaps on every stroke: the test below can fail.
    let mut plain = stage(Confirm::default(), Hysteresis::default());
    assert_eq!(run(&mut plain, &oscillating).len(), 100);
    // A margin: 1.9 is not below 2.0 - 0.5, so the alarm stays up.
    let mut margin = stage(
        Confirm::default(),
        Hysteresis {
            margin: 0.5,
            clear_after: 1,
        },
    );
    assert_eq!(
        run(&mut margin, &oscillating),
        [(0, AlertKind::Raise, Severity::Warning)]
    );
    // K consecutive normal strokes: never three in a row, so the alarm stays up.
    let mut count = stage(
        Confirm::default(),
        Hysteresis {
            margin: 0.0,
            clear_after: 3,
        },
    );
    assert_eq!(
        run(&mut count, &oscillating),
        [(0, AlertKind::Raise, Severity::Warning)]
    );
    // Three calm strokes in a row clear it (the oscillation ended on a calm 1.9, so the second
    // 1.0 is the third), naming the severity that ends.
    let transitions = run(&mut count, &[1.0, 1.0, 1.0]);
    assert_eq!(transitions, [(1, AlertKind::Clear, Severity::Warning)]);
    assert_eq!(count.active_alert("press-07"), None);
}

#[test]
fn a_clear_starts_a_fresh_window() {
    let mut t = stage(
        Confirm { n: 2, m: 4 },
        Hysteresis {
            margin: 0.0,
            clear_after: 1,
        },
    );
    // Raise at 1, clear at 2; the exceedances at 0 and 1 are forgotten, so 3 alone does not
    // re-raise; 3 and 4 do.
    let transitions = run(&mut t, &[2.5, 2.5, 1.0, 2.5, 2.5]);
    assert_eq!(
        transitions,
        [
            (1, AlertKind::Raise, Severity::Warning),
            (2, AlertKind::Clear, Severity::Warning),
            (4, AlertKind::Raise, Severity::Warning)
        ]
    );
}

#[test]
fn assets_have_independent_alarms() {
    let mut t = stage(Confirm { n: 2, m: 2 }, Hysteresis::default());
    assert_eq!(t.decide(&score("press-01", 0, 2.5), 0).alert, None);
    assert_eq!(t.decide(&score("press-02", 0, 2.5), 0).alert, None);
    let alert = t.decide(&score("press-01", 1, 2.5), 0).alert.unwrap();
    assert_eq!(alert.asset_id, "press-01");
    assert_eq!(t.active_alert("press-02"), None);
}

#[test]
fn model_limits_are_used_when_from_model() {
    let cfg = ThresholdConfig {
        warning: None,
        critical: None,
        from_model: true,
        model_dir: None,
        ..ThresholdConfig::with_limits(0.0, 0.0)
    };
    assert!(Threshold::new(cfg.clone()).is_err());
    let mut t = Threshold::with_model_limits(
        cfg,
        Some(Limits {
            warning: 0.1,
            critical: 0.2,
        }),
    )
    .unwrap();
    assert_eq!(
        t.limits(),
        Limits {
            warning: 0.1,
            critical: 0.2
        }
    );
    let d = t.decide(&score("p", 0, 0.15), 0).decision;
    assert_eq!(
        (d.verdict, d.severity),
        (Verdict::Reject, Severity::Warning)
    );
    assert_eq!(d.reason, "score 0.15 >= warning 0.10");
}

fn limits() -> impl Strategy<Value = (f32, f32)> {
    (-100.0_f32..100.0, 0.0_f32..50.0).prop_map(|(w, gap)| (w, w + gap))
}

proptest! {
    #[test]
    fn sensor_flags_never_yield_ok(
        (warning, critical) in limits(),
        flags in 1_u32..=u32::MAX,
        value in prop_oneof![any::<f32>(), Just(f32::NAN), -1e3_f32..1e3],
        severity in prop::sample::select(Severity::ALL),
    ) {
        let mut t = Threshold::new(ThresholdConfig {
            sensor_fault_severity: severity,
            ..ThresholdConfig::with_limits(warning, critical)
        }).unwrap();
        let mut input = score("p", 0, value);
        input.quality = QualityFlags(flags);
        let d = t.decide(&input, 0).decision;
        prop_assert_eq!(d.verdict, Verdict::SensorFault);
        prop_assert_eq!(d.severity, severity);
        prop_assert!(d.reason.starts_with("sensor fault: "), "{}", d.reason);
    }

    #[test]
    fn a_higher_score_never_yields_a_milder_verdict(
        (warning, critical) in limits(),
        a in -200.0_f32..200.0,
        b in -200.0_f32..200.0,
    ) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut t = Threshold::new(ThresholdConfig::with_limits(warning, critical)).unwrap();
        let low_d = t.decide(&score("p", 0, low), 0).decision;
        let high_d = t.decide(&score("p", 1, high), 0).decision;
        prop_assert!(rank(&high_d) >= rank(&low_d), "{} -> {:?}, {} -> {:?}", low, low_d, high, high_d);
        prop_assert_eq!(low_d.verdict == Verdict::Ok, low < warning);
    }

    /// Against a reference model: the alarm is raised exactly at the first stroke where the
    /// last `m` strokes hold at least `n` exceedances.
    #[test]
    fn n_of_m_matches_a_sliding_window_count(
        (n, m) in (1_u32..=8).prop_flat_map(|m| (1..=m, Just(m))),
        exceed in prop::collection::vec(any::<bool>(), 0..60),
    ) {
        let mut t = stage(Confirm { n, m }, Hysteresis { margin: 0.0, clear_after: 1000 });
        let values: Vec<f32> = exceed.iter().map(|&e| if e { 2.5 } else { 1.0 }).collect();
        let raised: Vec<usize> = run(&mut t, &values).into_iter().map(|(i, kind, _)| {
            assert_eq!(kind, AlertKind::Raise);
            i
        }).collect();
        let expected = (0..exceed.len()).find(|&i| {
            let start = (i + 1).saturating_sub(m as usize);
            exceed[start..=i].iter().filter(|&&e| e).count() >= n as usize
        });
        prop_assert_eq!(raised, expected.into_iter().collect::<Vec<_>>());
    }

    /// With a margin, a score wandering within the margin below `warning` never clears a
    /// raised alarm, so transitions come only from real recoveries.
    #[test]
    fn no_clear_while_within_the_margin(
        wobble in prop::collection::vec(1.51_f32..2.49, 1..80),
    ) {
        let mut t = stage(Confirm::default(), Hysteresis { margin: 0.5, clear_after: 1 });
        let mut values = vec![2.5];
        values.extend(wobble);
        prop_assert_eq!(run(&mut t, &values), vec![(0, AlertKind::Raise, Severity::Warning)]);
    }
}
