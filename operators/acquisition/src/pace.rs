//! Stroke pacing on an injected clock: how many strokes are due now.
//!
//! The press runs at a fixed rate (18 strokes/min); a simulated or replayed line must emit
//! strokes at that rate, or as fast as the pipeline takes them for batch evaluation. [`Pacer`]
//! takes the time as an argument, so it is deterministic and testable; after a stall it catches
//! up by at most `max_burst` strokes and drops the rest (counted), so a paused node does not flood
//! the line when it resumes.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ConfigError, Problems};

/// How fast strokes come.
///
/// YAML: a number is strokes per minute (`rate: 18`), the word `max` is as fast as possible
/// (`rate: max`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Strokes per minute (finite, > 0).
    StrokesPerMin(f64),
    /// No pacing: every call to [`Pacer::due`] returns `max_burst` strokes.
    AsFastAsPossible,
}

impl Rate {
    /// The press line's nominal rate, 18 strokes/min.
    pub const PRESS: Self = Self::StrokesPerMin(18.0);

    /// The period between strokes in ns, `None` for [`Rate::AsFastAsPossible`].
    pub fn period_ns(self) -> Option<f64> {
        match self {
            Self::StrokesPerMin(r) => Some(60.0e9 / r),
            Self::AsFastAsPossible => None,
        }
    }

    fn check(self, p: &mut Problems) {
        if let Self::StrokesPerMin(r) = self {
            p.check(r.is_finite() && r > 0.0 && r <= 60.0e9, || {
                format!(
                    "rate: found {r} strokes/min, expected a number > 0 (at most 6e10) or `max`"
                )
            });
        }
    }
}

impl Default for Rate {
    fn default() -> Self {
        Self::PRESS
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StrokesPerMin(r) => write!(f, "{r} strokes/min"),
            Self::AsFastAsPossible => f.write_str("as fast as possible"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::StrokesPerMin(r) => serializer.serialize_f64(*r),
            Self::AsFastAsPossible => serializer.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("strokes per minute (a number > 0) or `max`")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rate, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(Rate::StrokesPerMin(v))
                } else {
                    Err(E::custom(format!(
                        "rate: found {v}, expected strokes per minute > 0 or `max`"
                    )))
                }
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                self.visit_f64(v as f64)
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                if v == "max" {
                    Ok(Rate::AsFastAsPossible)
                } else {
                    Err(E::custom(format!(
                        "rate: found `{v}`, expected strokes per minute (a number) or `max`"
                    )))
                }
            }
        }
        deserializer.deserialize_any(RateVisitor)
    }
}

/// Pacing configuration.
///
/// ```yaml
/// rate: 18        # strokes per minute, or `max`
/// max_burst: 1    # most strokes released by one call after a stall
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaceConfig {
    /// Strokes per minute or `max`. Default 18.
    pub rate: Rate,
    /// Most strokes one [`Pacer::due`] call releases; strokes missed beyond it are dropped and
    /// counted. At least 1. Default 1.
    pub max_burst: u64,
}

impl Default for PaceConfig {
    fn default() -> Self {
        Self {
            rate: Rate::PRESS,
            max_burst: 1,
        }
    }
}

impl PaceConfig {
    /// Checks every field, reporting all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] naming each bad field, its value and what is expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::new("pace");
        self.rate.check(&mut p);
        p.check(self.max_burst >= 1, || {
            "max_burst: found 0, expected at least 1".to_owned()
        });
        p.finish()
    }
}

/// Releases strokes at a [`Rate`] on a clock passed in (ns, any monotonic origin).
///
/// The first call to [`Pacer::due`] starts the schedule and releases one stroke; stroke `k` is then
/// due at `start + k * period`. Each call releases the strokes that fell due since the last call,
/// at most `max_burst`; the older ones are skipped (see [`Pacer::dropped`]). A clock that goes
/// backwards releases nothing.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: Rate,
    max_burst: u64,
    start_ns: Option<u64>,
    /// Index of the next stroke on the schedule (released or dropped so far).
    next: u64,
    dropped: u64,
}

impl Pacer {
    /// A pacer at `rate` releasing at most one stroke per call. A rate that is not finite and
    /// positive releases nothing: validate configs with [`PaceConfig::validate`].
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            max_burst: 1,
            start_ns: None,
            next: 0,
            dropped: 0,
        }
    }

    /// A pacer from a validated config.
    ///
    /// # Errors
    /// [`ConfigError`] when the config is invalid.
    pub fn from_config(config: PaceConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(config.rate).with_max_burst(config.max_burst))
    }

    /// Sets the most strokes one call may release (at least 1).
    #[must_use]
    pub fn with_max_burst(mut self, max_burst: u64) -> Self {
        self.max_burst = max_burst.max(1);
        self
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Strokes skipped because more than `max_burst` fell due between two calls.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Strokes due at `now_ns` since the last call (0..=`max_burst`).
    pub fn due(&mut self, now_ns: u64) -> u64 {
        let Some(period) = self.rate.period_ns() else {
            return self.max_burst;
        };
        if !(period.is_finite() && period > 0.0) {
            return 0;
        }
        let start = *self.start_ns.get_or_insert(now_ns);
        let Some(elapsed) = now_ns.checked_sub(start) else {
            return 0;
        };
        // Strokes 0..=floor(elapsed / period) are due by now.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let due_total = (elapsed as f64 / period).floor() as u64 + 1;
        let pending = due_total.saturating_sub(self.next);
        let released = pending.min(self.max_burst);
        self.dropped += pending - released;
        self.next += pending;
        released
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn press_rate_releases_one_stroke_every_3_33_s() {
        let mut p = Pacer::new(Rate::StrokesPerMin(18.0));
        assert_eq!(
            p.due(5 * S),
            1,
            "first call starts the schedule with a stroke"
        );
        assert_eq!(p.due(5 * S + 3 * S), 0);
        assert_eq!(p.due(5 * S + 3_333_333_334), 1);
        assert_eq!(p.due(5 * S + 3_400_000_000), 0);
        assert_eq!(p.due(5 * S + 6_666_666_667), 1);
        assert_eq!(p.dropped(), 0);
    }

    #[test]
    fn a_stall_releases_at_most_max_burst_and_counts_the_rest() {
        let mut p = Pacer::new(Rate::StrokesPerMin(60.0)).with_max_burst(3);
        assert_eq!(p.due(0), 1);
        assert_eq!(p.due(10 * S), 3, "10 strokes fell due, 3 released");
        assert_eq!(p.dropped(), 7);
        assert_eq!(p.due(10 * S + S / 2), 0, "no catch-up of the dropped ones");
        assert_eq!(p.due(11 * S), 1);
    }

    #[test]
    fn clock_going_backwards_releases_nothing() {
        let mut p = Pacer::new(Rate::StrokesPerMin(60.0));
        assert_eq!(p.due(10 * S), 1);
        assert_eq!(p.due(2 * S), 0);
        assert_eq!(p.due(11 * S), 1);
    }

    #[test]
    fn as_fast_as_possible_releases_max_burst_every_call() {
        let mut p = Pacer::new(Rate::AsFastAsPossible).with_max_burst(8);
        assert_eq!(p.due(0), 8);
        assert_eq!(p.due(0), 8);
        assert_eq!(Pacer::new(Rate::AsFastAsPossible).due(7), 1);
    }

    #[test]
    fn invalid_rates_release_nothing_and_are_refused_by_validation() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Pacer::new(Rate::StrokesPerMin(r)).due(S), 0, "{r}");
            let err = PaceConfig {
                rate: Rate::StrokesPerMin(r),
                max_burst: 0,
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.problems.len(), 2, "{err}");
            assert!(
                err.to_string().contains("rate: found") && err.to_string().contains("max_burst")
            );
        }
    }

    #[test]
    fn yaml_rate_is_a_number_or_max() {
        let c: PaceConfig = serde_yaml::from_str("rate: 18").unwrap();
        assert_eq!(
            c,
            PaceConfig {
                rate: Rate::StrokesPerMin(18.0),
                max_burst: 1
            }
        );
        let c: PaceConfig = serde_yaml::from_str("rate: max\nmax_burst: 4").unwrap();
        assert_eq!(
            c,
            PaceConfig {
                rate: Rate::AsFastAsPossible,
                max_burst: 4
            }
        );
        let c: PaceConfig = serde_yaml::from_str("rate: 22.5").unwrap();
        assert_eq!(c.rate, Rate::StrokesPerMin(22.5));
        assert_eq!(
            serde_yaml::from_str::<PaceConfig>("{}").unwrap(),
            PaceConfig::default()
        );
        for bad in ["rate: fast", "rate: 0", "rate: -3", "rat: 18"] {
            let err = serde_yaml::from_str::<PaceConfig>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("rate") || err.contains("rat"), "{bad}: {err}");
        }
        for rate in [Rate::AsFastAsPossible, Rate::StrokesPerMin(18.0)] {
            let yaml = serde_yaml::to_string(&rate).unwrap();
            assert_eq!(serde_yaml::from_str::<Rate>(&yaml).unwrap(), rate);
        }
    }

    proptest! {
        #[test]
        fn never_more_than_elapsed_times_rate_plus_one(
            rate in 0.5_f64..100_000.0,
            max_burst in 1_u64..50,
            start in 0_u64..1_000_000 * S,
            steps in prop::collection::vec(0_u64..20 * S, 1..60),
        ) {
            let mut p = Pacer::new(Rate::StrokesPerMin(rate)).with_max_burst(max_burst);
            let mut now = start;
            let mut total = p.due(now);
            prop_assert_eq!(total, 1);
            for step in steps {
                now += step;
                let due = p.due(now);
                prop_assert!(due <= max_burst);
                total += due;
                let elapsed_min = (now - start) as f64 / 60.0e9;
                prop_assert!(total as f64 <= elapsed_min * rate + 1.0 + 1e-6,
                    "{} released after {} min at {}/min", total, elapsed_min, rate);
                // Released + dropped accounts for every stroke due: no loss, no invention.
                let scheduled = (elapsed_min * rate).floor() as u64 + 1;
                prop_assert!((total + p.dropped()).abs_diff(scheduled) <= 1);
            }
        }

        #[test]
        fn frequent_calls_lose_nothing(
            rate in 1.0_f64..600.0,
            calls in 1_usize..400,
        ) {
            // Calls every 10 ms, well under the period: nothing is dropped.
            let mut p = Pacer::new(Rate::StrokesPerMin(rate));
            let mut total = 0;
            let mut now = 0;
            for _ in 0..calls {
                total += p.due(now);
                now += S / 100;
            }
            prop_assert_eq!(p.dropped(), 0);
            let elapsed_min = (now - S / 100) as f64 / 60.0e9;
            prop_assert!(total as f64 >= elapsed_min * rate - 1e-6, "{} < {}", total, elapsed_min * rate);
        }
    }
}
