//! `forgeline model …`: the box's local model registry (signed packages, atomic activation,
//! rollback) and the publishing side (key generation, signing). See docs/model-lifecycle.md.

use clap::Subcommand;
use eyre::eyre;
use forgeline_registry::{
    Registry, SigningKey, Timestamp, TrustedKeys, Version, generate_keypair, sign, verify,
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
