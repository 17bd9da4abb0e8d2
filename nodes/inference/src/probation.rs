//! Health of the running model, measured from what the node scores: probation reports to the
//! registry (automatic rollback of a bad version) and the maximum-age policy.
//!
//! Registry and model-directory I/O runs on short-lived background threads (as the model
//! loader does), so that scoring never waits on a disk or on the registry lock; results come
//! back through a channel and are turned into health events between two messages.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};

use forgeline_registry::lifecycle::{AgeCheck, AgeError, check_age};
use forgeline_registry::probation::{HealthLimits, HealthWindow, Verdict, peek_probation};
use forgeline_registry::{HealthOutcome, Registry, RegistryError, Timestamp, TrustedKeys};
use forgeline_runtime::Outbox;
use forgeline_schemas::HealthLevel;

use crate::{Inference, RegistryModel};

/// What a background health report did.
enum Report {
    /// Nothing reported, and why (the version is not on probation, the registry is locked…).
    Skipped(String),
    /// Reported to the registry.
    Reported(Box<Reported>),
    /// The report failed (the registry cannot be opened, a rollback failed…).
    Failed(String),
}

/// A report the registry took: the version judged, the verdict and what the registry did.
struct Reported {
    version: String,
    verdict: Verdict,
    outcome: HealthOutcome,
}

/// Probation health checks: the window of what the current version scored, and the report in
/// flight.
pub(crate) struct ProbationWatch {
    registry: RegistryModel,
    limits: HealthLimits,
    every_ns: u64,
    /// Start of the current window (message time); `None` until the first message.
    window_start_ns: Option<u64>,
    /// Rows scored by the current version since the window started.
    pub(crate) window: HealthWindow,
    reporting: Option<Receiver<Report>>,
}

impl ProbationWatch {
    pub(crate) fn new(registry: &RegistryModel) -> Self {
        Self {
            limits: registry.health.limits(),
            every_ns: registry.health.check_every_ms.saturating_mul(1_000_000),
            registry: registry.clone(),
            window_start_ns: None,
            window: HealthWindow::default(),
            reporting: None,
        }
    }

    /// Another version scores from now on: what the old one scored is not its health.
    pub(crate) fn model_switched(&mut self) {
        self.window.reset();
        self.window_start_ns = None;
    }
}

/// Reports `verdict` on `version` (`x.y.z`) if, and only if, that version is the active one
/// and on probation. Lock-free look first, so the registry is locked only during a probation.
fn report(registry: &RegistryModel, version: &str, verdict: Verdict, now_ns: u64) -> Report {
    let (name, profile) = (registry.name.as_str(), registry.profile.as_str());
    match peek_probation(&registry.dir, name, profile) {
        Some(v) if v.to_string() == version => {}
        Some(v) => return Report::Skipped(format!("{v} is on probation, not {version}")),
        None => return Report::Skipped("no version on probation".into()),
    }
    let keys_dir = registry.trusted_keys_dir();
    let trusted = match TrustedKeys::from_dir(&keys_dir) {
        Ok(keys) => keys,
        Err(e) => {
            return Report::Failed(format!(
                "trusted keys {} (field `registry.trusted_keys`): {e}",
                keys_dir.display()
            ));
        }
    };
    let mut reg = match Registry::open(&registry.dir, trusted) {
        Ok(reg) => reg,
        Err(RegistryError::Locked { .. }) => {
            return Report::Skipped("registry locked by a `forgeline model` command".into());
        }
        Err(e) => return Report::Failed(e.to_string()),
    };
    match reg.probation(name, profile) {
        Some(p) if p.version.to_string() == version => {}
        _ => return Report::Skipped(format!("{version} is no longer on probation")),
    }
    match reg.report_health(
        name,
        profile,
        verdict.healthy,
        &verdict.reason,
        Timestamp::from_unix_ns(now_ns),
    ) {
        Ok(outcome) => Report::Reported(Box::new(Reported {
            version: version.to_owned(),
            verdict,
            outcome,
        })),
        Err(e) => Report::Failed(e.to_string()),
    }
}

/// The maximum-age policy: checked with the first message, on every switch, then hourly.
pub(crate) struct AgeWatch {
    max_days: f64,
    dir: PathBuf,
    /// Message time of the last check; `None` asks for one with the next message.
    last_check_ns: Option<u64>,
    pending: Option<Receiver<Result<AgeCheck, AgeError>>>,
}

/// How often the age is checked again, ns.
const AGE_EVERY_NS: u64 = 3_600 * 1_000_000_000;

impl AgeWatch {
    pub(crate) fn new(max_days: f64, dir: PathBuf) -> Self {
        Self {
            max_days,
            dir,
            last_check_ns: None,
            pending: None,
        }
    }

    /// A new model directory is scoring: check its age with the next message.
    pub(crate) fn model_switched(&mut self, dir: PathBuf) {
        self.dir = dir;
        self.last_check_ns = None;
    }
}

impl Inference {
    /// Between two messages: turns a finished health report into health events; otherwise, at
    /// most every `registry.health.check_every_ms` of message time, judges the window and
    /// reports the verdict on a background thread.
    pub(crate) fn poll_probation(&mut self, now_ns: u64, asset_id: &str, out: &mut Outbox) {
        let Some(p) = self.probation.as_mut() else {
            return;
        };
        if let Some(rx) = &p.reporting {
            let report = match rx.try_recv() {
                Ok(report) => report,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    Report::Failed("the health reporter thread ended without a result".into())
                }
            };
            p.reporting = None;
            self.on_report(report, now_ns, asset_id, out);
            return;
        }
        let start = *p.window_start_ns.get_or_insert(now_ns);
        if now_ns.saturating_sub(start) < p.every_ns {
            return;
        }
        let Some(verdict) = p
            .window
            .evaluate(self.scorer.thresholds().warning, &p.limits)
        else {
            return; // Too few rows yet: the window grows until it has enough.
        };
        p.window.reset();
        p.window_start_ns = Some(now_ns);
        let version = self.scorer.model_version().rsplit_once('@').map_or_else(
            || self.scorer.model_version().to_owned(),
            |(_, v)| v.to_owned(),
        );
        tracing::debug!(node = %self.node_id, version = %version, healthy = verdict.healthy,
            reason = %verdict.reason, "health window judged");
        let (tx, rx) = std::sync::mpsc::channel();
        let registry = p.registry.clone();
        let spawned = std::thread::Builder::new()
            .name("health-report".into())
            .spawn(move || {
                let _ = tx.send(report(&registry, &version, verdict, now_ns));
            });
        match spawned {
            Ok(_) => p.reporting = Some(rx),
            Err(e) => {
                tracing::warn!(node = %self.node_id, "cannot start the health reporter thread: {e}");
            }
        }
    }

    fn on_report(&mut self, report: Report, now_ns: u64, asset_id: &str, out: &mut Outbox) {
        match report {
            Report::Skipped(why) => {
                tracing::debug!(node = %self.node_id, %why, "health window not reported");
            }
            Report::Failed(why) => {
                tracing::warn!(node = %self.node_id, %why, "health report failed");
                self.health(
                    out,
                    asset_id,
                    now_ns,
                    HealthLevel::Warning,
                    "model_health_report_failed",
                    format!("cannot report the model's health to the registry: {why}"),
                    f64::NAN,
                );
            }
            Report::Reported(reported) => {
                let Reported {
                    version,
                    verdict,
                    outcome,
                } = *reported;
                match outcome {
                    HealthOutcome::Noted => {
                        tracing::debug!(node = %self.node_id, %version, reason = %verdict.reason,
                        "healthy window during probation");
                    }
                    HealthOutcome::ProbationPassed { version } => {
                        tracing::info!(node = %self.node_id, %version, reason = %verdict.reason,
                        "model probation passed");
                        self.health(
                            out,
                            asset_id,
                            now_ns,
                            HealthLevel::Ok,
                            "model_probation_passed",
                            format!("probation of {version} passed ({})", verdict.reason),
                            verdict.flag_rate,
                        );
                    }
                    HealthOutcome::FailureRecorded {
                        failures,
                        max_failures,
                        ..
                    } => {
                        tracing::warn!(node = %self.node_id, %version, failures, max_failures,
                        reason = %verdict.reason, "model probation failure");
                        self.health(
                        out,
                        asset_id,
                        now_ns,
                        HealthLevel::Warning,
                        "model_probation_failure",
                        format!(
                            "{version} on probation: failed health check {failures} of {max_failures}: {}",
                            verdict.reason
                        ),
                        verdict.flag_rate,
                    );
                    }
                    HealthOutcome::RolledBack(a) => {
                        tracing::error!(node = %self.node_id, from = %version, to = %a.to,
                        reason = %verdict.reason, "model rolled back");
                        self.health(
                        out,
                        asset_id,
                        now_ns,
                        HealthLevel::Alarm,
                        "model_rolled_back",
                        format!(
                            "{} {version} rolled back to {} after failed health checks on probation: {}",
                            a.name, a.to, verdict.reason
                        ),
                        verdict.flag_rate,
                    );
                    }
                }
            }
        }
    }

    /// Between two messages: alarm `model_too_old` from a finished age check; otherwise, with
    /// the first message, after a switch and then hourly (message time), checks the age of the
    /// current model directory on a background thread.
    pub(crate) fn poll_age(&mut self, now_ns: u64, asset_id: &str, out: &mut Outbox) {
        let Some(age) = self.age.as_mut() else {
            return;
        };
        if let Some(rx) = &age.pending {
            let result = match rx.try_recv() {
                Ok(result) => result,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => Err(AgeError {
                    dir: age.dir.clone(),
                    reason: "the age checker thread ended without a result".into(),
                }),
            };
            age.pending = None;
            match result {
                Ok(check) if check.exceeded => {
                    tracing::error!(node = %self.node_id, model = %check.model,
                        created = %check.created, age_days = check.age_days,
                        max_age_days = check.max_age_days, "model too old");
                    self.health(
                        out,
                        asset_id,
                        now_ns,
                        HealthLevel::Alarm,
                        "model_too_old",
                        format!(
                            "model {} created {} is {:.1} days old, policy max_model_age_days {}: retrain and update it",
                            check.model, check.created, check.age_days, check.max_age_days
                        ),
                        check.age_days,
                    );
                }
                Ok(check) => {
                    tracing::debug!(node = %self.node_id, model = %check.model,
                        age_days = check.age_days, "model age within policy");
                }
                Err(e) => {
                    tracing::warn!(node = %self.node_id, "{e}");
                    self.health(
                        out,
                        asset_id,
                        now_ns,
                        HealthLevel::Warning,
                        "model_age_unknown",
                        format!("max_model_age_days: {e}"),
                        f64::NAN,
                    );
                }
            }
            return;
        }
        if age
            .last_check_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < AGE_EVERY_NS)
        {
            return;
        }
        age.last_check_ns = Some(now_ns);
        let (tx, rx) = std::sync::mpsc::channel();
        let (dir, max_days) = (age.dir.clone(), age.max_days);
        let spawned = std::thread::Builder::new()
            .name("model-age".into())
            .spawn(move || {
                let _ = tx.send(check_age(&dir, max_days, Timestamp::from_unix_ns(now_ns)));
            });
        match spawned {
            Ok(_) => age.pending = Some(rx),
            Err(e) => {
                tracing::warn!(node = %self.node_id, "cannot start the model age thread: {e}");
            }
        }
    }
}
