//! The health of a model version measured from the running line, for its probation.
//!
//! A [`HealthWindow`] accumulates what the inference node scored since the last check (per row:
//! the score, whether the row was scored at all, the inference time; per failed session run:
//! the reason) and [`HealthWindow::evaluate`] turns it into a [`Verdict`] once it holds
//! [`HealthLimits::min_rows`] scored rows (or at once after a run error). The verdict is what
//! the node reports with [`crate::Registry::report_health`] while the version is on probation.
//!
//! Unhealthy, in this order of precedence:
//! - any failed session run;
//! - any non-finite score on a row that was scored;
//! - the flag rate (scored rows with `score > thresholds.warning` of the model itself) above
//!   [`HealthLimits::max_flag_rate`];
//! - the p99 of the inference time per row above [`HealthLimits::max_p99_inference_ms`], when set.
//!
//! No clock is read and nothing is allocated per row once the window's buffers have grown to
//! the size of one check interval (they are cleared, not freed, by [`HealthWindow::reset`]).
//!
//! ```
//! use forgeline_registry::probation::{HealthLimits, HealthWindow};
//! let limits = HealthLimits { min_rows: 4, ..HealthLimits::default() };
//! let mut window = HealthWindow::default();
//! for score in [0.1, 0.2, 0.9, 0.95] {
//!     window.record(score, true, 200_000);
//! }
//! let verdict = window.evaluate(0.5, &limits).expect("4 rows: enough");
//! assert!(!verdict.healthy);
//! assert_eq!(verdict.reason, "flag rate 50.0 % over 4 rows > max_flag_rate 20.0 %");
//! ```

use std::path::Path;

use semver::Version;

/// The limits a window is judged against (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthLimits {
    /// Scored rows a window needs before it is judged (default 50; a run error is judged at
    /// once).
    pub min_rows: u32,
    /// Highest healthy share of scored rows above the model's `thresholds.warning`, 0..=1
    /// (default 0.2: the shipped press model's calibrated false-reject rate is 0.19 %).
    pub max_flag_rate: f64,
    /// Highest healthy p99 of the inference time per row, ms (default none: not judged).
    pub max_p99_inference_ms: Option<f64>,
}

impl Default for HealthLimits {
    fn default() -> Self {
        Self {
            min_rows: 50,
            max_flag_rate: 0.2,
            max_p99_inference_ms: None,
        }
    }
}

/// The judgement of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether every limit held.
    pub healthy: bool,
    /// The figure, the limit and the window size, e.g. `flag rate 100.0 % over 50 rows >
    /// max_flag_rate 20.0 %` (the failed limit when unhealthy, all figures when healthy).
    pub reason: String,
    /// Rows in the window (scored or not).
    pub rows: u64,
    /// Scored rows in the window.
    pub scored_rows: u64,
    /// Share of scored rows above the warning threshold (0 with no scored row).
    pub flag_rate: f64,
    /// p99 of the inference time per scored row, ms (0 with no scored row).
    pub p99_inference_ms: f64,
}

/// What the line scored since the last check.
#[derive(Debug, Clone, Default)]
pub struct HealthWindow {
    rows: u64,
    /// Scores of the scored rows.
    scores: Vec<f32>,
    /// Inference time of the scored rows, ns (reordered by `evaluate`).
    inference_ns: Vec<u64>,
    run_errors: u64,
    first_run_error: Option<String>,
}

impl HealthWindow {
    /// One row of a `score` message: its score, whether the model scored it (rows whose data
    /// quality failed are passed on unscored, with a NaN score, and are not the model's fault),
    /// and the inference time of the run that scored it.
    pub fn record(&mut self, score: f32, scored: bool, inference_ns: u64) {
        self.rows += 1;
        if scored {
            self.scores.push(score);
            self.inference_ns.push(inference_ns);
        }
    }

    /// A session run that failed (`reason` is kept for the first one of the window).
    pub fn record_run_error(&mut self, reason: &str) {
        self.run_errors += 1;
        if self.first_run_error.is_none() {
            self.first_run_error = Some(reason.to_owned());
        }
    }

    /// Rows recorded since the last reset (scored or not).
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Scored rows recorded since the last reset.
    #[must_use]
    pub fn scored_rows(&self) -> u64 {
        self.scores.len() as u64
    }

    /// Starts a new window (keeps the buffers' capacity).
    pub fn reset(&mut self) {
        self.rows = 0;
        self.scores.clear();
        self.inference_ns.clear();
        self.run_errors = 0;
        self.first_run_error = None;
    }

    /// The verdict on this window against the model's own `thresholds.warning` (`warning`),
    /// or `None` while it holds fewer than `limits.min_rows` scored rows and no run error. The
    /// window is not reset: call [`HealthWindow::reset`] once the verdict is used.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // Row counts and ns far below 2^52.
    pub fn evaluate(&mut self, warning: f64, limits: &HealthLimits) -> Option<Verdict> {
        let scored = self.scores.len() as u64;
        if self.run_errors == 0 && scored < u64::from(limits.min_rows.max(1)) {
            return None;
        }
        let flagged = self
            .scores
            .iter()
            .filter(|s| f64::from(**s) > warning)
            .count() as u64;
        let non_finite = self.scores.iter().filter(|s| !s.is_finite()).count() as u64;
        let flag_rate = if scored == 0 {
            0.0
        } else {
            flagged as f64 / scored as f64
        };
        let p99_inference_ms = self.p99_ns() as f64 / 1e6;
        let over = format!("over {scored} rows");
        let mut verdict = Verdict {
            healthy: false,
            reason: String::new(),
            rows: self.rows,
            scored_rows: scored,
            flag_rate,
            p99_inference_ms,
        };
        verdict.reason = if self.run_errors > 0 {
            format!(
                "{} failed session run(s) {over}: {}",
                self.run_errors,
                self.first_run_error.as_deref().unwrap_or("unknown error")
            )
        } else if non_finite > 0 {
            format!("{non_finite} non-finite score(s) {over}")
        } else if flag_rate > limits.max_flag_rate {
            format!(
                "flag rate {:.1} % {over} > max_flag_rate {:.1} %",
                flag_rate * 100.0,
                limits.max_flag_rate * 100.0
            )
        } else if let Some(max) = limits
            .max_p99_inference_ms
            .filter(|max| p99_inference_ms > *max)
        {
            format!("p99 inference {p99_inference_ms:.3} ms {over} > max_p99_inference_ms {max} ms")
        } else {
            verdict.healthy = true;
            format!(
                "flag rate {:.1} % {over} <= max_flag_rate {:.1} %, p99 inference {p99_inference_ms:.3} ms",
                flag_rate * 100.0,
                limits.max_flag_rate * 100.0
            )
        };
        Some(verdict)
    }

    /// Nearest-rank p99 of the inference times (0 when empty); reorders them.
    fn p99_ns(&mut self) -> u64 {
        let n = self.inference_ns.len();
        if n == 0 {
            return 0;
        }
        // Nearest rank: ceil(0.99 n), 1-based.
        let rank = (n * 99).div_ceil(100).max(1);
        *self.inference_ns.select_nth_unstable(rank - 1).1
    }
}

/// The version of `name` on `profile` that is on probation in the registry at `root`, read
/// without taking the registry lock (so that a node looking every few seconds never makes an
/// operator's `forgeline model …` command fail with "locked"). `registry.json` is only ever
/// replaced whole (written aside, then renamed), so the read sees one state or the next.
/// `None` when there is no probation, no such model or profile, or the file cannot be read.
/// Take the lock ([`crate::Registry::open`]) before acting on the answer.
#[must_use]
pub fn peek_probation(root: &Path, name: &str, profile: &str) -> Option<Version> {
    let text = std::fs::read_to_string(root.join(crate::STATE_FILE)).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    let version = state
        .get("models")?
        .get(name)?
        .get("slots")?
        .get(profile)?
        .get("probation")?
        .get("version")?
        .as_str()?;
    Version::parse(version).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn limits(min_rows: u32) -> HealthLimits {
        HealthLimits {
            min_rows,
            ..HealthLimits::default()
        }
    }

    #[test]
    fn no_verdict_before_min_rows_and_unscored_rows_do_not_count() {
        let mut w = HealthWindow::default();
        for _ in 0..49 {
            w.record(0.1, true, 1000);
        }
        for _ in 0..10 {
            w.record(f32::NAN, false, 0);
        }
        assert_eq!((w.rows(), w.scored_rows()), (59, 49));
        assert!(w.evaluate(0.5, &limits(50)).is_none());
        w.record(0.1, true, 1000);
        let v = w.evaluate(0.5, &limits(50)).unwrap();
        assert!(v.healthy, "{}", v.reason);
        assert_eq!((v.rows, v.scored_rows), (60, 50));
        assert!(
            v.reason.contains("flag rate 0.0 % over 50 rows"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn every_row_flagged_is_unhealthy_naming_figure_limit_and_window() {
        let mut w = HealthWindow::default();
        for _ in 0..50 {
            w.record(0.3, true, 1000);
        }
        let v = w.evaluate(0.01, &limits(50)).unwrap();
        assert!(!v.healthy);
        assert_eq!(
            v.reason,
            "flag rate 100.0 % over 50 rows > max_flag_rate 20.0 %"
        );
        assert!((v.flag_rate - 1.0).abs() < 1e-12);
    }

    #[test]
    fn flag_rate_at_the_limit_is_healthy_and_above_it_is_not() {
        let mut w = HealthWindow::default();
        for i in 0..10 {
            w.record(if i < 2 { 0.9 } else { 0.1 }, true, 1);
        }
        assert!(w.evaluate(0.5, &limits(10)).unwrap().healthy); // 20 % == limit
        w.record(0.9, true, 1);
        let v = w.evaluate(0.5, &limits(10)).unwrap();
        assert!(!v.healthy, "3 of 11 = 27 % > 20 %");
        assert!(
            v.reason.starts_with("flag rate 27.3 % over 11 rows"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_run_error_is_judged_at_once_and_wins() {
        let mut w = HealthWindow::default();
        w.record(0.1, true, 1);
        assert!(w.evaluate(0.5, &limits(50)).is_none());
        w.record_run_error("onnxruntime: bad input");
        w.record_run_error("second");
        let v = w.evaluate(0.5, &limits(50)).unwrap();
        assert!(!v.healthy);
        assert_eq!(
            v.reason,
            "2 failed session run(s) over 1 rows: onnxruntime: bad input"
        );
    }

    #[test]
    fn a_non_finite_score_on_a_scored_row_is_unhealthy() {
        let mut w = HealthWindow::default();
        for _ in 0..9 {
            w.record(0.1, true, 1);
        }
        w.record(f32::INFINITY, true, 1);
        let v = w.evaluate(0.5, &limits(10)).unwrap();
        assert!(!v.healthy);
        assert_eq!(v.reason, "1 non-finite score(s) over 10 rows");
    }

    #[test]
    fn p99_limit_is_off_by_default_and_judged_when_set() {
        let mut w = HealthWindow::default();
        for i in 0..100_u64 {
            w.record(0.1, true, (i + 1) * 1_000_000); // 1..=100 ms
        }
        let v = w.evaluate(0.5, &limits(100)).unwrap();
        assert!(v.healthy);
        assert!(
            (v.p99_inference_ms - 99.0).abs() < 1e-9,
            "{}",
            v.p99_inference_ms
        );
        let strict = HealthLimits {
            max_p99_inference_ms: Some(50.0),
            ..limits(100)
        };
        let v = w.evaluate(0.5, &strict).unwrap();
        assert!(!v.healthy);
        assert_eq!(
            v.reason,
            "p99 inference 99.000 ms over 100 rows > max_p99_inference_ms 50 ms"
        );
    }

    #[test]
    fn reset_starts_an_empty_window() {
        let mut w = HealthWindow::default();
        for _ in 0..5 {
            w.record(0.9, true, 1);
        }
        w.record_run_error("x");
        w.reset();
        assert_eq!((w.rows(), w.scored_rows()), (0, 0));
        assert!(w.evaluate(0.5, &limits(1)).is_none());
    }

    #[test]
    fn peek_reads_the_probation_without_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(peek_probation(tmp.path(), "m", "p"), None);
        std::fs::write(
            tmp.path().join(crate::STATE_FILE),
            r#"{"format":1,"models":{"m":{"slots":{"p":{"active":"1.1.0","previous":["1.0.0"],
            "probation":{"version":"1.1.0","since":1,"until":2,"max_failures":2}}}}}}"#,
        )
        .unwrap();
        assert_eq!(
            peek_probation(tmp.path(), "m", "p"),
            Some(Version::new(1, 1, 0))
        );
        assert_eq!(peek_probation(tmp.path(), "m", "other"), None);
    }

    proptest! {
        /// The verdict's flag rate is the share of scored rows above the warning, and the
        /// window is healthy exactly when that share is within the limit (no errors, finite
        /// scores, no p99 limit).
        #[test]
        fn verdict_matches_the_flag_share(
            scores in proptest::collection::vec(0.0_f32..1.0, 1..300),
            unscored in 0_usize..20,
            warning in 0.0_f64..1.0,
            max_flag_rate in 0.0_f64..1.0,
        ) {
            let mut w = HealthWindow::default();
            for s in &scores {
                w.record(*s, true, 1);
            }
            for _ in 0..unscored {
                w.record(f32::NAN, false, 0);
            }
            let l = HealthLimits { min_rows: 1, max_flag_rate, max_p99_inference_ms: None };
            let v = w.evaluate(warning, &l).unwrap();
            let flagged = scores.iter().filter(|s| f64::from(**s) > warning).count();
            let rate = flagged as f64 / scores.len() as f64;
            prop_assert!((v.flag_rate - rate).abs() < 1e-12);
            prop_assert_eq!(v.healthy, rate <= max_flag_rate);
            prop_assert_eq!(v.rows, (scores.len() + unscored) as u64);
            let window = format!("over {} rows", scores.len());
            prop_assert!(v.reason.contains(&window), "{}", v.reason);
        }

        /// The p99 is one of the recorded times, no smaller than 99 % of them.
        #[test]
        fn p99_is_a_recorded_time_above_99_percent(
            times in proptest::collection::vec(0_u64..1_000_000_000, 1..500),
        ) {
            let mut w = HealthWindow::default();
            for t in &times {
                w.record(0.0, true, *t);
            }
            let v = w.evaluate(1.0, &HealthLimits { min_rows: 1, ..HealthLimits::default() }).unwrap();
            let p99_ns = (v.p99_inference_ms * 1e6).round() as u64;
            prop_assert!(times.contains(&p99_ns));
            let at_or_below = times.iter().filter(|t| **t <= p99_ns).count();
            prop_assert!(at_or_below * 100 >= times.len() * 99);
        }
    }
}
