//! `forgeline model …`: the box's local model registry (signed packages, atomic activation,
//! rollback) and the publishing side (key generation, signing). See docs/model-lifecycle.md.

use crate::download::{DownloadOptions, download};
use clap::Subcommand;
use eyre::eyre;
use forgeline_registry::lifecycle::{check_age, validate_reference, write_reference};
use forgeline_registry::{
    HealthOutcome, Registry, SigningKey, Timestamp, TrustedKeys, Version, generate_keypair, sign,
    unpack, verify,
};
use forgeline_runtime::now_ns;
use std::path::PathBuf;

/// Where the registry lives and whom it trusts.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Registry root.
    #[arg(long, default_value = ".forgeline/models")]
    registry: PathBuf,
    /// Directory of trusted public keys (`*.pub`); default `<registry>/trusted-keys`.
    #[arg(long)]
    trusted: Option<PathBuf>,
    /// Device profile.
    #[arg(long, default_value_t = default_profile())]
    profile: String,
}

fn default_profile() -> String {
    format!("{}-cpu", std::env::consts::ARCH)
}

/// The `model` subcommands.
#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Publishing side: generate a signing key pair (minisign format) into a directory.
    Keygen {
        /// Output directory (forgeline.pub, forgeline.key).
        #[arg(long)]
        dir: PathBuf,
        /// Environment variable holding a password to encrypt the secret key.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Publishing side: sign a model directory (writes manifest.sha256 + manifest.sig).
    Sign {
        /// The model directory.
        model_dir: PathBuf,
        /// Secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Environment variable holding the key's password.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Verify a package (or an installed version with --name/--version).
    Verify {
        /// A package directory to verify.
        model_dir: Option<PathBuf>,
        /// Installed model name.
        #[arg(long)]
        name: Option<String>,
        /// Installed model version.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Install a signed package into the registry (never touches the active model).
    Install {
        /// The package directory.
        package: PathBuf,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// List installed models.
    List {
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Show a model: installed versions, active version, history.
    Show {
        /// Model name.
        name: String,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Make a version active (atomic switch).
    Activate {
        /// Model name.
        name: String,
        /// Version (semver).
        version: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "manual activation")]
        reason: String,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Go back to the previously active version.
    Rollback {
        /// Model name.
        name: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "manual rollback")]
        reason: String,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Publishing side: write a signed package directory as one .tar (for an update server).
    Pack {
        /// The signed model directory.
        model_dir: PathBuf,
        /// Output .tar file.
        #[arg(long)]
        out: PathBuf,
        /// Public key the package must verify against (`forgeline.pub`).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Publishing side: write `reference/reference.json` into a model directory (before
    /// signing): simulated strokes (normal and every fault) through the line's feature
    /// extractor, scored by every variant of the model.
    Reference {
        /// The model directory.
        model_dir: PathBuf,
        /// Strokes per label (normal and each fault family).
        #[arg(long, default_value_t = 8)]
        per_label: u64,
        /// Simulator seed.
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Largest accepted |score - expected| on the box.
        #[arg(long, default_value_t = 1e-3)]
        tolerance: f64,
        /// Largest accepted p95 latency per scored row on the box, ms.
        #[arg(long, default_value_t = 20.0)]
        latency_budget_ms: f64,
    },
    /// Box side: fetch (path, .tar, http:// or https:// URL), verify signature and checksums,
    /// validate on the package's reference set, install, activate on probation, prune old backups.
    Update {
        /// A package directory, a package .tar, or an http:// or https:// URL of a package .tar.
        source: String,
        /// Extra CA certificate(s) (PEM) trusted for https:// besides the system trust store and
        /// the bundled Mozilla roots, e.g. the plant's private CA that signed the update server's
        /// certificate.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Download: longest wait for the TCP connection, seconds.
        #[arg(long, default_value_t = 10.0)]
        connect_timeout_s: f64,
        /// Download: longest wait for any read or write on the connection, seconds.
        #[arg(long, default_value_t = 30.0)]
        read_timeout_s: f64,
        /// Download: largest accepted package, MiB (a bigger one is refused).
        #[arg(long, default_value_t = 1024)]
        max_download_mb: u64,
        /// Probation after activation, minutes: failed health reports within it roll back.
        #[arg(long, default_value_t = 30.0)]
        probation_minutes: f64,
        /// Failed health reports within the probation that roll back automatically.
        #[arg(long, default_value_t = 3)]
        max_failures: u32,
        /// Keep replaced versions at least this long (hours) before pruning them.
        #[arg(long, default_value_t = 24.0)]
        retention_hours: f64,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Report the active model's health (`ok` or `fail`); failures during probation roll back.
    Health {
        /// `ok` or `fail`.
        status: HealthStatus,
        /// Model name.
        #[arg(long)]
        name: String,
        /// Why (kept in the history when it causes a rollback).
        #[arg(long, default_value = "health check")]
        reason: String,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Alarm (exit code 3) when the active model is older than the policy (from `created`).
    CheckAge {
        /// Model name.
        name: String,
        /// Policy: maximum age in days.
        #[arg(long, default_value_t = 180.0)]
        max_age_days: f64,
        #[command(flatten)]
        reg: RegistryArgs,
    },
    /// Remove old versions (never the active one or the rollback target).
    Prune {
        /// Versions to keep per model and profile.
        #[arg(long, default_value_t = 3)]
        keep: usize,
        /// Only remove versions installed more than this many hours ago.
        #[arg(long, default_value_t = 24.0)]
        older_than_hours: f64,
        #[command(flatten)]
        reg: RegistryArgs,
    },
}

/// A health report's status.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Healthy.
    Ok,
    /// Failed.
    Fail,
}

/// Simulated strokes of every label through the line's default feature extractor.
fn reference_rows(per_label: u64, seed: u64) -> eyre::Result<Vec<Vec<f32>>> {
    use forgeline_acquisition::{FaultKind, PressSimConfig, PressSimulator, StrokeLabel};
    let sim = PressSimulator::new(PressSimConfig {
        seed,
        ..PressSimConfig::default()
    })
    .map_err(|e| eyre!("{e}"))?;
    let mut fx =
        forgeline_vibration::FeatureExtractor::new(forgeline_vibration::FeatureConfig::default())
            .map_err(|e| eyre!("{e}"))?;
    let labels = std::iter::once(StrokeLabel::Normal)
        .chain(FaultKind::ALL.iter().map(|f| StrokeLabel::Fault(*f)));
    let mut rows = Vec::new();
    let mut seq = 0;
    for label in labels {
        for _ in 0..per_label {
            let s = sim.stroke_as(seq, label);
            seq += 1;
            let mut v = Vec::new();
            if fx.extract(&s.samples, s.sample_rate_hz, &mut v).is_ok() {
                rows.push(v);
            }
        }
    }
    Ok(rows)
}

fn password(var: Option<&String>) -> eyre::Result<Option<String>> {
    var.map(|v| std::env::var(v).map_err(|_| eyre!("environment variable {v} is not set")))
        .transpose()
}

fn open(reg: &RegistryArgs) -> eyre::Result<Registry> {
    let trusted_dir = reg
        .trusted
        .clone()
        .unwrap_or_else(|| reg.registry.join("trusted-keys"));
    let trusted = TrustedKeys::from_dir(&trusted_dir)
        .map_err(|e| eyre!("trusted keys {}: {e}", trusted_dir.display()))?;
    Registry::open(&reg.registry, trusted).map_err(|e| eyre!("{e}"))
}

fn version(v: &str) -> eyre::Result<Version> {
    Version::parse(v).map_err(|e| eyre!("version `{v}`: {e} (expected semver, e.g. 1.2.0)"))
}

fn now() -> Timestamp {
    Timestamp::from_unix_ns(now_ns())
}

fn trusted_for(reg: &RegistryArgs) -> eyre::Result<TrustedKeys> {
    let dir = reg
        .trusted
        .clone()
        .unwrap_or_else(|| reg.registry.join("trusted-keys"));
    TrustedKeys::from_dir(&dir).map_err(|e| eyre!("trusted keys {}: {e}", dir.display()))
}

/// Runs one `model` subcommand.
pub fn run(cmd: ModelCmd) -> eyre::Result<()> {
    match cmd {
        ModelCmd::Keygen { dir, password_env } => {
            let pw = password(password_env.as_ref())?;
            let k = generate_keypair(&dir, pw.as_deref()).map_err(|e| eyre!("{e}"))?;
            println!("public key: {}", k.public_key.display());
            println!(
                "secret key: {} (keep it off the boxes)",
                k.secret_key.display()
            );
            println!("key id: {}", k.key_id);
        }
        ModelCmd::Sign {
            model_dir,
            key,
            password_env,
        } => {
            let pw = password(password_env.as_ref())?;
            let sk = SigningKey::load(&key, pw.as_deref()).map_err(|e| eyre!("{e}"))?;
            let id = sign(&model_dir, &sk).map_err(|e| eyre!("{e}"))?;
            println!("signed {}@{} with key {}", id.name, id.version, id.key_id);
        }
        ModelCmd::Verify {
            model_dir,
            name,
            version: v,
            reg,
        } => match (model_dir, name, v) {
            (Some(dir), _, _) => {
                let id = verify(&dir, &trusted_for(&reg)?).map_err(|e| eyre!("{e}"))?;
                println!("ok: {}@{} signed by {}", id.name, id.version, id.key_id);
            }
            (None, Some(name), Some(v)) => {
                let r = open(&reg)?;
                let id = r
                    .verify_installed(&name, &version(&v)?, &reg.profile)
                    .map_err(|e| eyre!("{e}"))?;
                println!(
                    "ok: installed {}@{} ({}) intact, signed by {}",
                    id.name, id.version, reg.profile, id.key_id
                );
            }
            _ => {
                return Err(eyre!(
                    "give a package directory, or --name and --version of an installed model"
                ));
            }
        },
        ModelCmd::Install { package, reg } => {
            let mut r = open(&reg)?;
            let m = r
                .install(&package, &reg.profile, now())
                .map_err(|e| eyre!("{e}"))?;
            println!("installed {}@{} for {}", m.name, m.version, m.profile);
        }
        ModelCmd::List { reg } => {
            let r = open(&reg)?;
            for m in r.list() {
                println!("{}@{} {}", m.name, m.version, m.profile);
            }
        }
        ModelCmd::Show { name, reg } => {
            let r = open(&reg)?;
            let s = r.show(&name).map_err(|e| eyre!("{e}"))?;
            println!("{s:#?}");
        }
        ModelCmd::Activate {
            name,
            version: v,
            reason,
            reg,
        } => {
            let mut r = open(&reg)?;
            let a = r
                .activate(&name, &version(&v)?, &reg.profile, &reason, now())
                .map_err(|e| eyre!("{e}"))?;
            println!(
                "active {}@{} for {} (was {:?}): {}",
                a.name,
                v,
                a.profile,
                a.from.map(|v| v.to_string()),
                r.active_link(&name, &reg.profile).display()
            );
        }
        ModelCmd::Rollback { name, reason, reg } => {
            let mut r = open(&reg)?;
            let a = r
                .rollback(&name, &reg.profile, &reason, now())
                .map_err(|e| eyre!("{e}"))?;
            println!(
                "rolled back {} for {} (was {:?}) -> {}",
                a.name,
                a.profile,
                a.from.map(|v| v.to_string()),
                a.dir.display()
            );
        }
        ModelCmd::Pack {
            model_dir,
            out,
            public_key,
        } => {
            let mut trusted = TrustedKeys::new();
            trusted.add_file(&public_key).map_err(|e| eyre!("{e}"))?;
            let id =
                forgeline_registry::pack(&model_dir, &trusted, &out).map_err(|e| eyre!("{e}"))?;
            println!("packed {}@{} into {}", id.name, id.version, out.display());
        }
        ModelCmd::Reference {
            model_dir,
            per_label,
            seed,
            tolerance,
            latency_budget_ms,
        } => {
            let rows = reference_rows(per_label, seed)?;
            let set = write_reference(&model_dir, rows, tolerance, latency_budget_ms)
                .map_err(|e| eyre!("{e}"))?;
            println!(
                "wrote {}/{}: {} rows, variants {:?}, tolerance {tolerance}, latency budget {latency_budget_ms} ms (sign the model next)",
                model_dir.display(),
                forgeline_registry::lifecycle::REFERENCE_FILE,
                set.rows.len(),
                set.expected_scores.keys().collect::<Vec<_>>()
            );
        }
        ModelCmd::Update {
            source,
            ca_cert,
            connect_timeout_s,
            read_timeout_s,
            max_download_mb,
            probation_minutes,
            max_failures,
            retention_hours,
            reg,
        } => update(
            &source,
            &DownloadOptions {
                ca_cert,
                connect_timeout: seconds("--connect-timeout-s", connect_timeout_s)?,
                read_timeout: seconds("--read-timeout-s", read_timeout_s)?,
                max_bytes: max_download_mb.saturating_mul(1 << 20),
            },
            probation_minutes,
            max_failures,
            retention_hours,
            &reg,
        )?,
        ModelCmd::Health {
            status,
            name,
            reason,
            reg,
        } => {
            let mut r = open(&reg)?;
            let outcome = r
                .report_health(
                    &name,
                    &reg.profile,
                    status == HealthStatus::Ok,
                    &reason,
                    now(),
                )
                .map_err(|e| eyre!("{e}"))?;
            match outcome {
                HealthOutcome::Noted => println!("noted"),
                HealthOutcome::ProbationPassed { version } => {
                    println!("probation of {name}@{version} passed");
                }
                HealthOutcome::FailureRecorded {
                    failures,
                    max_failures,
                    ..
                } => {
                    println!("failure {failures} of {max_failures} recorded during probation");
                }
                HealthOutcome::RolledBack(a) => println!(
                    "ROLLED BACK {} from {:?} to {}: {reason}",
                    a.name,
                    a.from.map(|v| v.to_string()),
                    a.to
                ),
            }
        }
        ModelCmd::CheckAge {
            name,
            max_age_days,
            reg,
        } => {
            let r = open(&reg)?;
            let dir = r
                .active_dir(&name, &reg.profile)
                .map_err(|e| eyre!("{e}"))?;
            let age = check_age(&dir, max_age_days, now()).map_err(|e| eyre!("{e}"))?;
            if age.exceeded {
                eprintln!(
                    "ALARM: {} is {:.1} days old (created {}), policy max_age_days {max_age_days}: retrain and publish a new version",
                    age.model, age.age_days, age.created
                );
                std::process::exit(3);
            }
            println!(
                "ok: {} is {:.1} days old (created {}), within max_age_days {max_age_days}",
                age.model, age.age_days, age.created
            );
        }
        ModelCmd::Prune {
            keep,
            older_than_hours,
            reg,
        } => {
            let mut r = open(&reg)?;
            let cutoff = now_ns().saturating_sub((older_than_hours * 3.6e12) as u64);
            for m in r
                .prune(keep, Timestamp::from_unix_ns(cutoff))
                .map_err(|e| eyre!("{e}"))?
            {
                println!("removed {}@{} {}", m.name, m.version, m.profile);
            }
        }
    }
    Ok(())
}

/// A positive, finite number of seconds from a flag.
fn seconds(flag: &str, v: f64) -> eyre::Result<std::time::Duration> {
    if v.is_finite() && v > 0.0 {
        Ok(std::time::Duration::from_secs_f64(v))
    } else {
        Err(eyre!("{flag} {v}: expected a positive number of seconds"))
    }
}

fn update(
    source: &str,
    fetch: &DownloadOptions,
    probation_minutes: f64,
    max_failures: u32,
    retention_hours: f64,
    reg: &RegistryArgs,
) -> eyre::Result<()> {
    let trusted = trusted_for(reg)?;
    let work = tempfile::tempdir().map_err(|e| eyre!("temporary directory: {e}"))?;
    // Downloads land in the registry's own directory (same file system, removed when done).
    let (local, _download): (PathBuf, Option<tempfile::NamedTempFile>) =
        if source.starts_with("http://") || source.starts_with("https://") {
            let dir = reg.registry.join(".downloads");
            std::fs::create_dir_all(&dir).map_err(|e| eyre!("{}: {e}", dir.display()))?;
            let mut file = tempfile::Builder::new()
                .prefix("package-")
                .suffix(".tar")
                .tempfile_in(&dir)
                .map_err(|e| eyre!("temporary file in {}: {e}", dir.display()))?;
            let path = file.path().to_owned();
            let bytes = download(source, file.as_file_mut(), &path, fetch)
                .map_err(|e| eyre!("{e}\nthe active model is unchanged"))?;
            println!("downloaded {source} ({bytes} bytes)");
            (path, Some(file))
        } else {
            (PathBuf::from(source), None)
        };
    // Authentic first: nothing else is looked at before the signature and checksums hold.
    let package = if local.is_dir() {
        verify(&local, &trusted).map_err(|e| eyre!("refused: {e}"))?;
        local
    } else {
        let dir = work.path().join("package");
        unpack(&local, &dir, &trusted).map_err(|e| eyre!("refused: {e}"))?;
        dir
    };
    let id = verify(&package, &trusted).map_err(|e| eyre!("refused: {e}"))?;
    println!(
        "verified {}@{} signed by {}",
        id.name, id.version, id.key_id
    );
    // Good second: the package's own reference set, scored on this box.
    let start = std::time::Instant::now();
    let mut clock = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let checks = validate_reference(&package, &mut clock)
        .map_err(|e| eyre!("refused: {e}\nthe active model is unchanged"))?;
    let summary: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{} {} rows max |err| {:.2e} p95 {:.3} ms",
                c.variant, c.rows, c.max_abs_error, c.p95_latency_ms
            )
        })
        .collect();
    println!("reference validation passed: {}", summary.join("; "));
    let mut r = open(reg)?;
    let at = now();
    match r.install(&package, &reg.profile, at) {
        Ok(m) => println!("installed {}@{} for {}", m.name, m.version, m.profile),
        Err(forgeline_registry::RegistryError::AlreadyInstalled { .. }) => {
            println!("{}@{} already installed", id.name, id.version);
        }
        Err(e) => return Err(eyre!("refused: {e}")),
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let until = Timestamp::from_unix_ns(
        at.unix_ns()
            .saturating_add((probation_minutes.max(0.0) * 6e10) as u64),
    );
    let reason = format!(
        "update from {source}: reference validation passed ({})",
        summary.join("; ")
    );
    let a = r
        .activate_on_probation(
            &id.name,
            &id.version,
            &reg.profile,
            &reason,
            at,
            until,
            max_failures,
        )
        .map_err(|e| eyre!("{e}"))?;
    println!(
        "active {}@{} for {} (was {:?}), on probation for {probation_minutes} min ({max_failures} failed health reports roll back)",
        a.name,
        a.to,
        a.profile,
        a.from.map(|v| v.to_string())
    );
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let cutoff = now_ns().saturating_sub((retention_hours.max(0.0) * 3.6e12) as u64);
    for m in r
        .prune(2, Timestamp::from_unix_ns(cutoff))
        .map_err(|e| eyre!("{e}"))?
    {
        println!(
            "pruned backup {}@{} {} (older than {retention_hours} h)",
            m.name, m.version, m.profile
        );
    }
    Ok(())
}
