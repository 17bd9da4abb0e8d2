//! The update policies around the registry: the reference set a package ships to prove the
//! model is *good* on this box before it is activated, and the maximum model age.
//!
//! Reference set: `reference/reference.json` inside the model package (so it is covered by the
//! signed manifest):
//!
//! ```json
//! { "format": 1, "tolerance": 0.001, "latency_budget_ms": 5.0,
//!   "rows": [[...31 raw feature values...], ...],
//!   "expected_scores": { "fp32": [0.41, ...], "int8": [0.43, ...] } }
//! ```
//!
//! [`validate_reference`] scores every row with `forgeline_inference::Scorer` (CPU provider,
//! read-only use) for every variant listed, and refuses when a score differs from the
//! expected one by more than `tolerance` or the 95th percentile of the per-row latency
//! exceeds `latency_budget_ms`. The time source is passed in (no clock is read here).

use std::path::{Path, PathBuf};

use forgeline_inference::{
    InferenceConfig, ModelDir, Provider, Scorer, VariantChoice, VariantKind,
};
use serde::{Deserialize, Serialize};

use crate::registry::Timestamp;

/// Path of the reference set inside a model package.
pub const REFERENCE_FILE: &str = "reference/reference.json";
/// Format of `reference.json` understood here.
pub const REFERENCE_FORMAT: u32 = 1;

/// The content of `reference/reference.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSet {
    /// Must be [`REFERENCE_FORMAT`].
    pub format: u32,
    /// Largest accepted |score - expected| per row.
    pub tolerance: f64,
    /// Largest accepted 95th-percentile latency of one scored row, ms.
    pub latency_budget_ms: f64,
    /// Raw feature rows (the model's input order).
    pub rows: Vec<Vec<f32>>,
    /// Expected score per row, per variant (`fp32`, `int8`).
    pub expected_scores: std::collections::BTreeMap<String, Vec<f32>>,
}

/// A failed or impossible reference validation.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The package ships no reference set.
    #[error(
        "{path}: missing: the package ships no reference set, so it cannot be validated (publish it with `forgeline model reference`)"
    )]
    Missing {
        /// Expected path.
        path: PathBuf,
    },
    /// The reference set does not parse or is inconsistent.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model cannot be loaded or run.
    #[error("{dir}: model cannot be scored: {reason}")]
    Model {
        /// The model directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Scores or latency out of bounds; every problem listed.
    #[error("{dir}: reference validation failed:\n  {}", problems.join("\n  "))]
    Failed {
        /// The model directory.
        dir: PathBuf,
        /// One line per problem (variant, row, expected, got, tolerance / latency, budget).
        problems: Vec<String>,
    },
}

/// What a passed validation measured, per variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantValidation {
    /// `fp32` / `int8`.
    pub variant: String,
    /// Rows scored.
    pub rows: usize,
    /// Largest |score - expected|.
    pub max_abs_error: f64,
    /// 95th percentile of the per-row latency, ms.
    pub p95_latency_ms: f64,
}

fn variant_kind(name: &str) -> Option<(VariantKind, VariantChoice)> {
    match name {
        "fp32" => Some((VariantKind::Fp32, VariantChoice::Fp32)),
        "int8" => Some((VariantKind::Int8, VariantChoice::Int8)),
        _ => None,
    }
}

/// Reads `reference/reference.json` of `dir`.
///
/// # Errors
/// [`ValidationError::Missing`], [`ValidationError::Malformed`].
pub fn read_reference(dir: &Path) -> Result<ReferenceSet, ValidationError> {
    let path = dir.join(REFERENCE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ValidationError::Missing { path });
        }
        Err(e) => {
            return Err(ValidationError::Malformed {
                path,
                reason: e.to_string(),
            });
        }
    };
    let set: ReferenceSet =
        serde_json::from_slice(&bytes).map_err(|e| ValidationError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let mut problems = Vec::new();
    if set.format != REFERENCE_FORMAT {
        problems.push(format!(
            "format: found {}, expected {REFERENCE_FORMAT}",
            set.format
        ));
    }
    if !(set.tolerance.is_finite() && set.tolerance >= 0.0) {
        problems.push(format!(
            "tolerance: found {}, expected a finite value >= 0",
            set.tolerance
        ));
    }
    if !(set.latency_budget_ms.is_finite() && set.latency_budget_ms > 0.0) {
        problems.push(format!(
            "latency_budget_ms: found {}, expected a positive number",
            set.latency_budget_ms
        ));
    }
    if set.rows.is_empty() {
        problems.push("rows: empty, expected at least one reference row".into());
    }
    if set.expected_scores.is_empty() {
        problems.push("expected_scores: empty, expected scores for at least one variant".into());
    }
    for (v, scores) in &set.expected_scores {
        if variant_kind(v).is_none() {
            problems.push(format!(
                "expected_scores.{v}: unknown variant, expected fp32 or int8"
            ));
        }
        if scores.len() != set.rows.len() {
            problems.push(format!(
                "expected_scores.{v}: {} scores for {} rows",
                scores.len(),
                set.rows.len()
            ));
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(ValidationError::Malformed {
            path,
            reason: problems.join("; "),
        })
    }
}

fn scorer_for(model: &ModelDir, choice: VariantChoice) -> Result<Scorer, String> {
    let config = InferenceConfig {
        variant: choice,
        providers: vec![Provider::Cpu],
        ..InferenceConfig::default()
    };
    Scorer::new(model, &config).map_err(|e| e.to_string())
}

/// Scores the reference rows of the model at `dir` for every variant listed and checks scores
/// and latency. `now_ns` is a monotonic clock in ns (latency only).
///
/// # Errors
/// Any [`ValidationError`]; [`ValidationError::Failed`] lists every out-of-bound score and
/// latency at once.
#[allow(clippy::cast_precision_loss)]
pub fn validate_reference(
    dir: &Path,
    now_ns: &mut dyn FnMut() -> u64,
) -> Result<Vec<VariantValidation>, ValidationError> {
    let set = read_reference(dir)?;
    let model = ModelDir::load(dir).map_err(|e| ValidationError::Model {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (variant, expected) in &set.expected_scores {
        let Some((kind, choice)) = variant_kind(variant) else {
            continue;
        };
        if model.variant_path(kind).is_none() {
            problems.push(format!(
                "{variant}: the reference lists it but model.yml has no such variant"
            ));
            continue;
        }
        let mut scorer = scorer_for(&model, choice).map_err(|reason| ValidationError::Model {
            dir: dir.to_path_buf(),
            reason,
        })?;
        let mut latencies = Vec::with_capacity(set.rows.len());
        let mut max_err = 0.0f64;
        for (i, (row, want)) in set.rows.iter().zip(expected).enumerate() {
            let t0 = now_ns();
            let got = scorer.score(row);
            latencies.push(now_ns().saturating_sub(t0) as f64 / 1e6);
            match got {
                Ok(got) => {
                    let err = (f64::from(got) - f64::from(*want)).abs();
                    if !err.is_finite() || err > set.tolerance {
                        problems.push(format!(
                            "{variant} row {i}: score {got}, expected {want} +/- {}",
                            set.tolerance
                        ));
                    }
                    max_err = max_err.max(err);
                }
                Err(e) => problems.push(format!("{variant} row {i}: cannot be scored: {e}")),
            }
        }
        latencies.sort_by(f64::total_cmp);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let p95 = latencies
            .get(((latencies.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        if p95 > set.latency_budget_ms {
            problems.push(format!(
                "{variant}: p95 latency {p95:.3} ms per row exceeds the budget of {} ms",
                set.latency_budget_ms
            ));
        }
        out.push(VariantValidation {
            variant: variant.clone(),
            rows: set.rows.len(),
            max_abs_error: max_err,
            p95_latency_ms: p95,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ValidationError::Failed {
            dir: dir.to_path_buf(),
            problems,
        })
    }
}

/// Writes `reference/reference.json` into the model directory `dir` (publishing side, before
/// signing): scores `rows` with every variant of the model.
///
/// # Errors
/// [`ValidationError::Model`] when the model cannot be scored, [`ValidationError::Malformed`]
/// when the file cannot be written.
pub fn write_reference(
    dir: &Path,
    rows: Vec<Vec<f32>>,
    tolerance: f64,
    latency_budget_ms: f64,
) -> Result<ReferenceSet, ValidationError> {
    let model_err = |reason: String| ValidationError::Model {
        dir: dir.to_path_buf(),
        reason,
    };
    let model = ModelDir::load(dir).map_err(|e| model_err(e.to_string()))?;
    let mut expected_scores = std::collections::BTreeMap::new();
    for name in ["fp32", "int8"] {
        let Some((kind, choice)) = variant_kind(name) else {
            continue;
        };
        if model.variant_path(kind).is_none() {
            continue;
        }
        let mut scorer = scorer_for(&model, choice).map_err(model_err)?;
        let scores = rows
            .iter()
            .map(|r| scorer.score(r).map_err(|e| model_err(e.to_string())))
            .collect::<Result<Vec<f32>, _>>()?;
        expected_scores.insert(name.to_owned(), scores);
    }
    let set = ReferenceSet {
        format: REFERENCE_FORMAT,
        tolerance,
        latency_budget_ms,
        rows,
        expected_scores,
    };
    let path = dir.join(REFERENCE_FILE);
    let write = || -> std::io::Result<()> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let json = serde_json::to_vec(&set).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)
    };
    write().map_err(|e| ValidationError::Malformed {
        path: path.clone(),
        reason: format!("cannot write: {e}"),
    })?;
    Ok(set)
}

/// The age of a model against the maximum-age policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgeCheck {
    /// `name@version` from `model.yml`.
    pub model: String,
    /// `created` from `model.yml` (RFC 3339 UTC).
    pub created: String,
    /// Age at the time of the check, days.
    pub age_days: f64,
    /// The policy.
    pub max_age_days: f64,
    /// Whether the model is older than the policy allows (alarm).
    pub exceeded: bool,
}

/// A model whose age cannot be determined.
#[derive(Debug, thiserror::Error)]
#[error("{dir}: cannot tell the model's age: {reason}")]
pub struct AgeError {
    /// The model directory.
    pub dir: PathBuf,
    /// Why.
    pub reason: String,
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
#[must_use]
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with('Z') || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Checks the model at `dir` (e.g. a registry's `active/<name>/<profile>` link) against
/// `max_age_days`, its age counted from `created` in `model.yml` (the training time). Reads
/// no lock, so a health node can call it while the registry is in use.
///
/// # Errors
/// [`AgeError`] when `model.yml` cannot be read or `created` does not parse.
#[allow(clippy::cast_precision_loss)]
pub fn check_age(dir: &Path, max_age_days: f64, now: Timestamp) -> Result<AgeCheck, AgeError> {
    let err = |reason: String| AgeError {
        dir: dir.to_path_buf(),
        reason,
    };
    let model = ModelDir::load(dir).map_err(|e| err(e.to_string()))?;
    let created = model.meta().created.clone();
    let secs = parse_rfc3339_utc(&created).ok_or_else(|| {
        err(format!(
            "created `{created}` is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SSZ)"
        ))
    })?;
    let now_s = (now.unix_ns() / 1_000_000_000) as i64;
    let age_days = (now_s - secs) as f64 / 86_400.0;
    Ok(AgeCheck {
        model: model.model_version(),
        created,
        age_days,
        max_age_days,
        exceeded: age_days > max_age_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_to_unix_seconds() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2026-11-25T00:00:00Z"),
            Some(1_795_564_800)
        );
        assert_eq!(parse_rfc3339_utc("2000-03-01T12:30:15Z"), Some(951_913_815));
        assert_eq!(parse_rfc3339_utc("2026-13-25T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_utc("2026-11-25 00:00:00"), None);
    }
}
