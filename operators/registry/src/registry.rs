//! The on-disk model registry of one box.
//!
//! ```text
//! <root>/
//!   registry.json                       # the state: installed versions, active pointers, history
//!   store/<name>/<version>/<profile>/   # verified package copies (model files + manifest + sig)
//!   active/<name>/<profile>             # symlink -> ../../store/<name>/<version>/<profile>
//!   .tmp/                               # staging; emptied on every open
//!   .lock                               # flock held while a Registry is open
//! ```
//!
//! `registry.json` is the single source of truth. Every change is write-temp + fsync + rename +
//! fsync(dir), in an order that makes any prefix of an operation recoverable:
//! an install copies into `.tmp/`, verifies the copy, renames it into `store/` and only then
//! records it in `registry.json`; an activation records the new active version in
//! `registry.json` and then swaps the `active/` symlink by rename. On open, leftovers are
//! removed (`.tmp/`, `store/` directories not recorded) and every `active/` symlink is set from
//! `registry.json`. After a power cut the registry therefore has either the old or the new
//! state, never a mix.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::fsutil;
use crate::keys::{KeyId, TrustedKeys};
use crate::package::{self, ModelIdentity, check_name};

/// Name of the state file at the registry root.
pub const STATE_FILE: &str = "registry.json";
const LOCK_FILE: &str = ".lock";
const TMP_DIR: &str = ".tmp";
const STORE_DIR: &str = "store";
const ACTIVE_DIR: &str = "active";
const STATE_FORMAT: u32 = 1;

/// A point in time, nanoseconds since the Unix epoch (UTC). The registry never reads a clock:
/// callers pass the time in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From nanoseconds since the Unix epoch.
    #[must_use]
    pub fn from_unix_ns(ns: u64) -> Self {
        Self(ns)
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub fn unix_ns(self) -> u64 {
        self.0
    }
}

/// The points inside state-changing operations at which a fault hook is asked whether to stop
/// (simulating a power cut there). See [`Registry::set_fault_hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// install: empty staging directory created in `.tmp/`.
    InstallStaged,
    /// install: the first file copied, the others not yet.
    InstallCopyPartial,
    /// install: every file copied, fsynced and the copy verified.
    InstallVerified,
    /// install: staged copy renamed into `store/`, not yet in `registry.json`.
    InstallRenamed,
    /// any change: new `registry.json` written and fsynced in `.tmp/`, not renamed.
    StateTempWritten,
    /// any change: `registry.json` replaced, directory not yet fsynced.
    StateRenamed,
    /// activate/rollback: target re-verified, nothing written yet.
    ActivateVerified,
    /// activate/rollback: new `active/` symlink created in `.tmp/`, not renamed.
    PointerTempCreated,
    /// activate/rollback: `active/` symlink replaced.
    PointerRenamed,
    /// prune: `registry.json` no longer lists the pruned versions; directories still there.
    PruneRecorded,
}

/// Decides, at each [`Step`], whether to simulate a power cut (`true` stops the operation).
pub type FaultHook = Box<dyn FnMut(Step) -> bool + Send>;

/// What was activated or rolled back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `activate`.
    Activate,
    /// `rollback`.
    Rollback,
}

/// One change of the active version, kept forever in `registry.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// When (as passed by the caller).
    pub at: Timestamp,
    /// Profile whose pointer changed.
    pub profile: String,
    /// Activate or rollback.
    pub action: Action,
    /// Version active before, if any.
    pub from: Option<Version>,
    /// Version active after.
    pub to: Version,
    /// Why, as given by the operator.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstalledRecord {
    version: Version,
    profile: String,
    key_id: KeyId,
    manifest_sha256: String,
    installed_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Slot {
    active: Version,
    /// Earlier active versions, most recent last; rollback pops it.
    #[serde(default)]
    previous: Vec<Version>,
    /// Set by an activation on probation (`forgeline model update`): health failures within
    /// it roll back automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probation: Option<Probation>,
}

/// The probation of a freshly activated version: `max_failures` failed health reports before
/// `until` roll it back automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probation {
    /// The version on probation.
    pub version: Version,
    /// Activation time.
    pub since: Timestamp,
    /// End of the probation window.
    pub until: Timestamp,
    /// Failed health reports within the window that trigger the rollback (at least 1).
    pub max_failures: u32,
    /// Failed health reports so far: (when, why).
    #[serde(default)]
    pub failures: Vec<(Timestamp, String)>,
}

/// What [`Registry::report_health`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthOutcome {
    /// A healthy report, or a failure outside any probation (nothing recorded).
    Noted,
    /// The probation window is over: the version is kept for good (probation cleared).
    ProbationPassed {
        /// The version that passed.
        version: Version,
    },
    /// A failure recorded during probation, below the rollback limit.
    FailureRecorded {
        /// Failures within the window so far.
        failures: u32,
        /// The limit that rolls back.
        max_failures: u32,
        /// End of the window.
        until: Timestamp,
    },
    /// The limit was reached: rolled back to the previous version.
    RolledBack(Activation),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelState {
    #[serde(default)]
    installed: Vec<InstalledRecord>,
    /// Active version per profile.
    #[serde(default)]
    slots: BTreeMap<String, Slot>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: u32,
    #[serde(default)]
    models: BTreeMap<String, ModelState>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            format: STATE_FORMAT,
            models: BTreeMap::new(),
        }
    }
}

/// One installed (name, version, profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: Version,
    /// Profile (`x86_64-cpu`, `aarch64-cpu`, `cuda`…).
    pub profile: String,
    /// Key that signed it.
    pub key_id: KeyId,
    /// sha256 of its manifest (pins every file).
    pub manifest_sha256: String,
    /// When it was installed (as passed by the caller).
    pub installed_at: Timestamp,
    /// Its directory in the store.
    pub dir: PathBuf,
    /// Whether it is the active version of its profile.
    pub active: bool,
}

/// The active version of a model on one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSlot {
    /// Profile.
    pub profile: String,
    /// Active version.
    pub version: Version,
    /// The version `rollback` would return to.
    pub previous: Option<Version>,
    /// The active version's directory in the store.
    pub dir: PathBuf,
}

/// Everything the registry knows about one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    /// Model name.
    pub name: String,
    /// Installed versions, newest first, per profile.
    pub installed: Vec<InstalledModel>,
    /// Active version per profile.
    pub active: Vec<ActiveSlot>,
    /// Every activation and rollback, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// The result of an activation or rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// Model name.
    pub name: String,
    /// Profile.
    pub profile: String,
    /// Version active before.
    pub from: Option<Version>,
    /// Version active now.
    pub to: Version,
    /// Its directory in the store.
    pub dir: PathBuf,
}

/// An open registry: holds the lock until dropped.
pub struct Registry {
    root: PathBuf,
    trusted: TrustedKeys,
    state: State,
    _lock: File,
    fault: Option<FaultHook>,
    tmp_seq: u64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.root)
            .field("trusted", &self.trusted.key_ids())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + use<> {
    let path = path.to_path_buf();
    move |source| RegistryError::Io { path, source }
}

fn check_profile(profile: &str) -> Result<(), RegistryError> {
    let ok = !profile.is_empty()
        && profile.len() <= 64
        && profile.as_bytes()[0].is_ascii_alphanumeric()
        && profile
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidProfile {
            profile: profile.to_owned(),
        })
    }
}

impl Registry {
    /// Open (creating if needed) the registry at `root`, take its lock, clean what an
    /// interrupted operation left and make every `active/` symlink match `registry.json`.
    /// Packages are accepted only when signed by one of `trusted`.
    ///
    /// # Errors
    /// [`RegistryError::Locked`] if another process has it open, [`RegistryError::CorruptState`]
    /// if `registry.json` does not parse, [`RegistryError::Io`].
    pub fn open(root: impl Into<PathBuf>, trusted: TrustedKeys) -> Result<Self, RegistryError> {
        let root = root.into();
        for d in [root.clone(), root.join(STORE_DIR), root.join(ACTIVE_DIR)] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(RegistryError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let state = load_state(&root.join(STATE_FILE))?;
        let mut registry = Self {
            root,
            trusted,
            state,
            _lock: lock,
            fault: None,
            tmp_seq: 0,
        };
        registry.recover()?;
        Ok(registry)
    }

    /// The registry root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Install a fault hook, asked at every [`Step`]; returning `true` stops the operation
    /// there with [`RegistryError::Interrupted`] and no clean-up, as a power cut would. For
    /// tests of power-cut safety (here and in callers); `None` removes it.
    pub fn set_fault_hook(&mut self, hook: Option<FaultHook>) {
        self.fault = hook;
    }

    fn at(&mut self, step: Step) -> Result<(), RegistryError> {
        let stop = self.fault.as_mut().is_some_and(|hook| hook(step));
        if stop {
            Err(RegistryError::Interrupted { step })
        } else {
            Ok(())
        }
    }

    fn tmp_path(&mut self, what: &str) -> PathBuf {
        self.tmp_seq += 1;
        self.root
            .join(TMP_DIR)
            .join(format!("{what}.{}", self.tmp_seq))
    }

    fn store_dir(&self, name: &str, version: &Version, profile: &str) -> PathBuf {
        self.root
            .join(STORE_DIR)
            .join(name)
            .join(version.to_string())
            .join(profile)
    }

    /// The `active/<name>/<profile>` symlink (it may not exist if nothing is active). Point a
    /// node's `model_dir` here to follow activations on restart.
    #[must_use]
    pub fn active_link(&self, name: &str, profile: &str) -> PathBuf {
        self.root.join(ACTIVE_DIR).join(name).join(profile)
    }

    // ---------------------------------------------------------------- recovery

    fn recover(&mut self) -> Result<(), RegistryError> {
        let tmp = self.root.join(TMP_DIR);
        fsutil::remove_any(&tmp).map_err(io_err(&tmp))?;
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        fsutil::sync_dir(&self.root).map_err(io_err(&self.root))?;
        self.sweep_store()?;
        self.sweep_pointers()
    }

    /// Remove `store/` directories that `registry.json` does not record (an install cut after
    /// its rename, or a prune cut before its delete).
    fn sweep_store(&mut self) -> Result<(), RegistryError> {
        let store = self.root.join(STORE_DIR);
        for name_entry in read_dir_names(&store)? {
            let name_dir = store.join(&name_entry);
            let model = self.state.models.get(&name_entry).cloned();
            for version_entry in read_dir_names_if_dir(&name_dir)? {
                let version_dir = name_dir.join(&version_entry);
                for profile_entry in read_dir_names_if_dir(&version_dir)? {
                    let recorded = model.as_ref().is_some_and(|m| {
                        m.installed.iter().any(|r| {
                            r.version.to_string() == version_entry && r.profile == profile_entry
                        })
                    });
                    if !recorded {
                        let orphan = version_dir.join(&profile_entry);
                        tracing::warn!(dir = %orphan.display(), "removing unrecorded store entry left by an interrupted operation");
                        self.discard(&orphan)?;
                    }
                }
                self.remove_if_empty_or_file(&version_dir)?;
            }
            self.remove_if_empty_or_file(&name_dir)?;
        }
        for (name, model) in &self.state.models {
            for r in &model.installed {
                let dir = self.store_dir(name, &r.version, &r.profile);
                if !dir.is_dir() {
                    tracing::error!(dir = %dir.display(), model = %name, version = %r.version, "registry.json lists a version whose directory is missing; verify_installed will fail for it");
                }
            }
        }
        Ok(())
    }

    fn remove_if_empty_or_file(&mut self, path: &Path) -> Result<(), RegistryError> {
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        if !meta.is_dir() {
            return self.discard(path);
        }
        if fs::read_dir(path).map_err(io_err(path))?.next().is_none() {
            fs::remove_dir(path).map_err(io_err(path))?;
            if let Some(parent) = path.parent() {
                fsutil::sync_dir(parent).map_err(io_err(parent))?;
            }
        }
        Ok(())
    }

    /// Move `path` into `.tmp/` (atomic) and delete it there: a cut mid-delete leaves nothing
    /// half-removed in the store.
    fn discard(&mut self, path: &Path) -> Result<(), RegistryError> {
        let tmp = self.tmp_path("discard");
        fs::rename(path, &tmp).map_err(io_err(path))?;
        if let Some(parent) = path.parent() {
            fsutil::sync_dir(parent).map_err(io_err(parent))?;
        }
        fsutil::remove_any(&tmp).map_err(io_err(&tmp))
    }

    /// Make `active/` match `registry.json` exactly.
    fn sweep_pointers(&mut self) -> Result<(), RegistryError> {
        let active = self.root.join(ACTIVE_DIR);
        for name_entry in read_dir_names(&active)? {
            let name_dir = active.join(&name_entry);
            let slots = self
                .state
                .models
                .get(&name_entry)
                .map(|m| m.slots.clone())
                .unwrap_or_default();
            for profile_entry in read_dir_names_if_dir(&name_dir)? {
                if !slots.contains_key(&profile_entry) {
                    self.discard(&name_dir.join(&profile_entry))?;
                }
            }
            self.remove_if_empty_or_file(&name_dir)?;
        }
        let wanted: Vec<(String, String, Version)> = self
            .state
            .models
            .iter()
            .flat_map(|(n, m)| {
                m.slots
                    .iter()
                    .map(move |(p, s)| (n.clone(), p.clone(), s.active.clone()))
            })
            .collect();
        for (name, profile, version) in wanted {
            let link = self.active_link(&name, &profile);
            let target = pointer_target(&name, &version, &profile);
            if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                tracing::warn!(link = %link.display(), target = %target.display(), "repairing active pointer from registry.json");
                self.set_pointer(&name, &version, &profile)?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- durable writes

    fn write_state(&mut self, new: State) -> Result<(), RegistryError> {
        let json = serde_json::to_vec_pretty(&new).map_err(|e| RegistryError::CorruptState {
            path: self.root.join(STATE_FILE),
            reason: format!("cannot serialise: {e}"),
        })?;
        let tmp = self.tmp_path("registry.json");
        fsutil::write_synced(&tmp, &json).map_err(io_err(&tmp))?;
        self.at(Step::StateTempWritten)?;
        let path = self.root.join(STATE_FILE);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.at(Step::StateRenamed)?;
        fsutil::sync_dir(&self.root).map_err(io_err(&self.root))?;
        self.state = new;
        Ok(())
    }

    fn set_pointer(
        &mut self,
        name: &str,
        version: &Version,
        profile: &str,
    ) -> Result<(), RegistryError> {
        let link = self.active_link(name, profile);
        let link_dir = self.root.join(ACTIVE_DIR).join(name);
        if !link_dir.is_dir() {
            fs::create_dir_all(&link_dir).map_err(io_err(&link_dir))?;
            let active = self.root.join(ACTIVE_DIR);
            fsutil::sync_dir(&active).map_err(io_err(&active))?;
        }
        let tmp = self.tmp_path("pointer");
        make_symlink(&pointer_target(name, version, profile), &tmp).map_err(io_err(&tmp))?;
        self.at(Step::PointerTempCreated)?;
        fs::rename(&tmp, &link).map_err(io_err(&link))?;
        self.at(Step::PointerRenamed)?;
        fsutil::sync_dir(&link_dir).map_err(io_err(&link_dir))
    }

    // ---------------------------------------------------------------- operations

    /// Verify the package at `package_dir` (signature, hashes, and `ModelDir::load` of
    /// forgeline-inference) and install it for `profile`: copy into `.tmp/`,
    /// fsync, verify the copy (signature, hashes, same manifest), rename into
    /// `store/<name>/<version>/<profile>/`, record it. The active model is never touched.
    ///
    /// # Errors
    /// [`RegistryError::InvalidProfile`], [`RegistryError::Package`] (any verification
    /// failure), [`RegistryError::AlreadyInstalled`], [`RegistryError::InvalidModel`],
    /// [`RegistryError::PackageChanged`] if the source changed while being copied,
    /// [`RegistryError::Io`].
    pub fn install(
        &mut self,
        package_dir: impl AsRef<Path>,
        profile: &str,
        at: Timestamp,
    ) -> Result<InstalledModel, RegistryError> {
        let src = package_dir.as_ref();
        check_profile(profile)?;
        let identity = package::verify(src, &self.trusted)?;
        let dest = self.store_dir(&identity.name, &identity.version, profile);
        if self
            .record(&identity.name, &identity.version, profile)
            .is_some()
        {
            return Err(RegistryError::AlreadyInstalled {
                name: identity.name,
                version: identity.version,
                profile: profile.to_owned(),
                dir: dest,
            });
        }
        // "Good" as well as authentic: model.yml and the ONNX files it lists must validate.
        // Checked on the source so the errors name the package's files; the copy is then
        // proven byte-identical to the signed content.
        forgeline_inference::ModelDir::load(src).map_err(|source| RegistryError::InvalidModel {
            dir: src.to_path_buf(),
            source,
        })?;
        let stage = self.tmp_path("install");
        fs::create_dir(&stage).map_err(io_err(&stage))?;
        self.at(Step::InstallStaged)?;
        for (i, rel) in package::package_files(src)?.iter().enumerate() {
            let to = stage.join(rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fsutil::copy_synced(&src.join(rel), &to).map_err(io_err(&to))?;
            if i == 0 {
                self.at(Step::InstallCopyPartial)?;
            }
        }
        fsutil::sync_tree_dirs(&stage).map_err(io_err(&stage))?;
        // Verify what will be installed, not what was looked at: the source may have changed.
        let copied = match package::verify(&stage, &self.trusted) {
            Ok(c) => c,
            Err(e) => {
                let _ = fsutil::remove_any(&stage);
                return Err(e.into());
            }
        };
        if copied != identity {
            let _ = fsutil::remove_any(&stage);
            return Err(RegistryError::PackageChanged {
                dir: src.to_path_buf(),
                expected: identity.manifest_sha256,
                actual: copied.manifest_sha256,
            });
        }
        self.at(Step::InstallVerified)?;
        let version_dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        if !version_dir.is_dir() {
            fs::create_dir_all(&version_dir).map_err(io_err(&version_dir))?;
            for d in version_dir.ancestors().skip(1).take(2) {
                fsutil::sync_dir(d).map_err(io_err(d))?;
            }
        }
        fs::rename(&stage, &dest).map_err(io_err(&dest))?;
        self.at(Step::InstallRenamed)?;
        fsutil::sync_dir(&version_dir).map_err(io_err(&version_dir))?;
        let record = InstalledRecord {
            version: identity.version.clone(),
            profile: profile.to_owned(),
            key_id: identity.key_id,
            manifest_sha256: identity.manifest_sha256.clone(),
            installed_at: at,
        };
        let mut new = self.state.clone();
        new.models
            .entry(identity.name.clone())
            .or_default()
            .installed
            .push(record.clone());
        self.write_state(new)?;
        tracing::info!(model = %identity.name, version = %identity.version, profile, key_id = %identity.key_id, "model installed");
        Ok(self.view(&identity.name, &record))
    }

    fn record(&self, name: &str, version: &Version, profile: &str) -> Option<&InstalledRecord> {
        self.state
            .models
            .get(name)?
            .installed
            .iter()
            .find(|r| &r.version == version && r.profile == profile)
    }

    fn view(&self, name: &str, r: &InstalledRecord) -> InstalledModel {
        let active = self
            .state
            .models
            .get(name)
            .and_then(|m| m.slots.get(&r.profile))
            .is_some_and(|s| s.active == r.version);
        InstalledModel {
            name: name.to_owned(),
            version: r.version.clone(),
            profile: r.profile.clone(),
            key_id: r.key_id,
            manifest_sha256: r.manifest_sha256.clone(),
            installed_at: r.installed_at,
            dir: self.store_dir(name, &r.version, &r.profile),
            active,
        }
    }

    /// Every installed model: by name, then profile, then version newest first.
    #[must_use]
    pub fn list(&self) -> Vec<InstalledModel> {
        let mut out: Vec<InstalledModel> = self
            .state
            .models
            .iter()
            .flat_map(|(n, m)| m.installed.iter().map(move |r| self.view(n, r)))
            .collect();
        out.sort_by(|a, b| {
            (&a.name, &a.profile)
                .cmp(&(&b.name, &b.profile))
                .then_with(|| b.version.cmp(&a.version))
        });
        out
    }

    /// Installed versions, active versions and history of `name`.
    ///
    /// # Errors
    /// [`RegistryError::NotInstalled`] if the registry has never seen `name`.
    pub fn show(&self, name: &str) -> Result<ModelStatus, RegistryError> {
        let model = self
            .state
            .models
            .get(name)
            .ok_or_else(|| RegistryError::NotInstalled {
                name: name.to_owned(),
                version: "*".into(),
                profile: "*".into(),
            })?;
        let installed = self.list().into_iter().filter(|m| m.name == name).collect();
        let active = model
            .slots
            .iter()
            .map(|(p, s)| ActiveSlot {
                profile: p.clone(),
                version: s.active.clone(),
                previous: s.previous.last().cloned(),
                dir: self.store_dir(name, &s.active, p),
            })
            .collect();
        Ok(ModelStatus {
            name: name.to_owned(),
            installed,
            active,
            history: model.history.clone(),
        })
    }

    /// Re-verify an installed version: signature by a (still) trusted key, every file's
    /// sha256 and size, and that it is the very package that was installed.
    ///
    /// # Errors
    /// [`RegistryError::NotInstalled`], [`RegistryError::Package`],
    /// [`RegistryError::PackageChanged`].
    pub fn verify_installed(
        &self,
        name: &str,
        version: &Version,
        profile: &str,
    ) -> Result<ModelIdentity, RegistryError> {
        let record =
            self.record(name, version, profile)
                .ok_or_else(|| RegistryError::NotInstalled {
                    name: name.to_owned(),
                    version: version.to_string(),
                    profile: profile.to_owned(),
                })?;
        let dir = self.store_dir(name, version, profile);
        let identity = package::verify(&dir, &self.trusted)?;
        if identity.manifest_sha256 != record.manifest_sha256
            || identity.name != name
            || &identity.version != version
        {
            return Err(RegistryError::PackageChanged {
                dir,
                expected: record.manifest_sha256.clone(),
                actual: identity.manifest_sha256,
            });
        }
        Ok(identity)
    }

    /// Make `version` the active version of `name` on `profile`, after re-verifying it. The
    /// previously active version becomes the rollback target. Recorded in the history with
    /// `reason` and `at`.
    ///
    /// # Errors
    /// [`RegistryError::NotInstalled`], [`RegistryError::AlreadyActive`], any
    /// [`Registry::verify_installed`] error, [`RegistryError::Io`].
    pub fn activate(
        &mut self,
        name: &str,
        version: &Version,
        profile: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<Activation, RegistryError> {
        self.activate_inner(name, version, profile, reason, at, None)
    }

    /// [`Registry::activate`], with the new version on probation until `until`: once
    /// `max_failures` (at least 1) failed [`Registry::report_health`] calls fall before
    /// `until`, the registry rolls back to the previous version by itself. The probation is
    /// written in the same state update as the activation (power-cut safe).
    ///
    /// # Errors
    /// As [`Registry::activate`].
    #[allow(clippy::too_many_arguments)] // activate's six plus the two probation terms
    pub fn activate_on_probation(
        &mut self,
        name: &str,
        version: &Version,
        profile: &str,
        reason: &str,
        at: Timestamp,
        until: Timestamp,
        max_failures: u32,
    ) -> Result<Activation, RegistryError> {
        let probation = Probation {
            version: version.clone(),
            since: at,
            until,
            max_failures: max_failures.max(1),
            failures: Vec::new(),
        };
        self.activate_inner(name, version, profile, reason, at, Some(probation))
    }

    /// The probation of the active version of `name` on `profile`, if any.
    #[must_use]
    pub fn probation(&self, name: &str, profile: &str) -> Option<&Probation> {
        self.slot(name, profile)?.probation.as_ref()
    }

    /// A health report on the active version of `name` on `profile` (from the health node, an
    /// operator or `forgeline model health`). A failure during the active version's probation
    /// is recorded; the `max_failures`-th rolls back to the previous version with the reasons
    /// in the history. A report after the window ends the probation.
    ///
    /// # Errors
    /// [`RegistryError::NotActive`], and any [`Registry::rollback`] error.
    pub fn report_health(
        &mut self,
        name: &str,
        profile: &str,
        healthy: bool,
        reason: &str,
        at: Timestamp,
    ) -> Result<HealthOutcome, RegistryError> {
        check_profile(profile)?;
        let slot = self.active_slot(name, profile)?.clone();
        let Some(mut probation) = slot.probation.clone() else {
            return Ok(HealthOutcome::Noted);
        };
        if at > probation.until {
            self.set_probation(name, profile, None)?;
            tracing::info!(model = name, profile, version = %probation.version, "probation passed");
            return Ok(HealthOutcome::ProbationPassed {
                version: probation.version,
            });
        }
        if healthy {
            return Ok(HealthOutcome::Noted);
        }
        probation.failures.push((at, reason.to_owned()));
        #[allow(clippy::cast_possible_truncation)]
        let failures = probation.failures.len() as u32;
        if failures >= probation.max_failures {
            let reasons: Vec<&str> = probation.failures.iter().map(|(_, r)| r.as_str()).collect();
            let why = format!(
                "auto-rollback: {failures} failed health check(s) during the probation of {}: {}",
                probation.version,
                reasons.join("; ")
            );
            tracing::warn!(model = name, profile, "{why}");
            return self
                .rollback(name, profile, &why, at)
                .map(HealthOutcome::RolledBack);
        }
        let until = probation.until;
        let max_failures = probation.max_failures;
        self.set_probation(name, profile, Some(probation))?;
        Ok(HealthOutcome::FailureRecorded {
            failures,
            max_failures,
            until,
        })
    }

    fn activate_inner(
        &mut self,
        name: &str,
        version: &Version,
        profile: &str,
        reason: &str,
        at: Timestamp,
        probation: Option<Probation>,
    ) -> Result<Activation, RegistryError> {
        check_profile(profile)?;
        self.verify_installed(name, version, profile)?;
        let current = self.slot(name, profile).cloned();
        if current.as_ref().is_some_and(|s| &s.active == version) {
            return Err(RegistryError::AlreadyActive {
                name: name.to_owned(),
                version: version.clone(),
                profile: profile.to_owned(),
            });
        }
        self.at(Step::ActivateVerified)?;
        let mut previous = current
            .as_ref()
            .map(|s| s.previous.clone())
            .unwrap_or_default();
        previous.retain(|v| v != version);
        if let Some(s) = &current {
            previous.push(s.active.clone());
        }
        let from = current.map(|s| s.active);
        self.switch(
            name,
            profile,
            version,
            (previous, probation),
            from,
            Action::Activate,
            reason,
            at,
        )
    }

    /// Return `name` on `profile` to the version active before the current one (repeatable:
    /// each rollback goes one activation further back).
    ///
    /// # Errors
    /// [`RegistryError::NotActive`], [`RegistryError::NoPrevious`], any
    /// [`Registry::verify_installed`] error for the target, [`RegistryError::Io`].
    pub fn rollback(
        &mut self,
        name: &str,
        profile: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<Activation, RegistryError> {
        check_profile(profile)?;
        let slot = self.active_slot(name, profile)?.clone();
        let mut previous = slot.previous.clone();
        // Versions removed since they were active are skipped.
        while previous
            .last()
            .is_some_and(|v| self.record(name, v, profile).is_none())
        {
            previous.pop();
        }
        let Some(target) = previous.pop() else {
            return Err(RegistryError::NoPrevious {
                name: name.to_owned(),
                profile: profile.to_owned(),
                active: slot.active,
            });
        };
        self.verify_installed(name, &target, profile)?;
        self.at(Step::ActivateVerified)?;
        self.switch(
            name,
            profile,
            &target,
            (previous, None),
            Some(slot.active),
            Action::Rollback,
            reason,
            at,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn switch(
        &mut self,
        name: &str,
        profile: &str,
        to: &Version,
        (previous, probation): (Vec<Version>, Option<Probation>),
        from: Option<Version>,
        action: Action,
        reason: &str,
        at: Timestamp,
    ) -> Result<Activation, RegistryError> {
        let mut new = self.state.clone();
        let model = new.models.entry(name.to_owned()).or_default();
        model.slots.insert(
            profile.to_owned(),
            Slot {
                active: to.clone(),
                previous,
                probation,
            },
        );
        model.history.push(HistoryEntry {
            at,
            profile: profile.to_owned(),
            action,
            from: from.clone(),
            to: to.clone(),
            reason: reason.to_owned(),
        });
        self.write_state(new)?;
        self.set_pointer(name, to, profile)?;
        tracing::info!(model = name, profile, from = ?from.as_ref().map(Version::to_string), to = %to, ?action, reason, "active model switched");
        Ok(Activation {
            name: name.to_owned(),
            profile: profile.to_owned(),
            from,
            to: to.clone(),
            dir: self.store_dir(name, to, profile),
        })
    }

    fn slot(&self, name: &str, profile: &str) -> Option<&Slot> {
        self.state.models.get(name)?.slots.get(profile)
    }

    /// The slot of `name` on `profile`, which must have an active version.
    fn active_slot(&self, name: &str, profile: &str) -> Result<&Slot, RegistryError> {
        self.slot(name, profile)
            .ok_or_else(|| RegistryError::NotActive {
                name: name.to_owned(),
                profile: profile.to_owned(),
            })
    }

    /// Writes the state with the probation of `name` on `profile` replaced by `probation`.
    fn set_probation(
        &mut self,
        name: &str,
        profile: &str,
        probation: Option<Probation>,
    ) -> Result<(), RegistryError> {
        let mut new = self.state.clone();
        if let Some(s) = new
            .models
            .get_mut(name)
            .and_then(|m| m.slots.get_mut(profile))
        {
            s.probation = probation;
        }
        self.write_state(new)
    }

    /// The store directory of the active version of `name` on `profile`.
    ///
    /// # Errors
    /// [`RegistryError::NotActive`].
    pub fn active_dir(&self, name: &str, profile: &str) -> Result<PathBuf, RegistryError> {
        let slot = self.active_slot(name, profile)?;
        Ok(self.store_dir(name, &slot.active, profile))
    }

    /// Remove installed versions that are not among the `keep_n` newest (semver) of their
    /// model and profile and were installed before `older_than`. The active version and the
    /// rollback target of each profile are never removed. Returns what was removed.
    ///
    /// # Errors
    /// [`RegistryError::Io`].
    pub fn prune(
        &mut self,
        keep_n: usize,
        older_than: Timestamp,
    ) -> Result<Vec<InstalledModel>, RegistryError> {
        let mut new = self.state.clone();
        let mut removed = Vec::new();
        for (name, model) in &mut new.models {
            let mut by_profile: BTreeMap<String, Vec<InstalledRecord>> = BTreeMap::new();
            for r in &model.installed {
                by_profile
                    .entry(r.profile.clone())
                    .or_default()
                    .push(r.clone());
            }
            for (profile, mut records) in by_profile {
                records.sort_by(|a, b| b.version.cmp(&a.version));
                let slot = model.slots.get(&profile);
                for r in records.into_iter().skip(keep_n) {
                    let protected = slot.is_some_and(|s| {
                        s.active == r.version || s.previous.last() == Some(&r.version)
                    });
                    if !protected && r.installed_at < older_than {
                        removed.push((name.clone(), r));
                    }
                }
            }
            model
                .installed
                .retain(|r| !removed.iter().any(|(n, x)| n == name && x == r));
            for (profile, slot) in &mut model.slots {
                slot.previous.retain(|v| {
                    !removed
                        .iter()
                        .any(|(n, x)| n == name && &x.profile == profile && &x.version == v)
                });
            }
        }
        if removed.is_empty() {
            return Ok(Vec::new());
        }
        let views: Vec<InstalledModel> = removed.iter().map(|(n, r)| self.view(n, r)).collect();
        self.write_state(new)?;
        self.at(Step::PruneRecorded)?;
        for v in &views {
            self.discard(&v.dir)?;
            let version_dir = v.dir.parent().map(Path::to_path_buf).unwrap_or_default();
            self.remove_if_empty_or_file(&version_dir)?;
            tracing::info!(model = %v.name, version = %v.version, profile = %v.profile, "pruned");
        }
        Ok(views)
    }

    /// Trusted signing keys of this registry.
    #[must_use]
    pub fn trusted_keys(&self) -> &TrustedKeys {
        &self.trusted
    }
}

fn pointer_target(name: &str, version: &Version, profile: &str) -> PathBuf {
    Path::new("..")
        .join("..")
        .join(STORE_DIR)
        .join(name)
        .join(version.to_string())
        .join(profile)
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "active pointers are symlinks: unix only",
    ))
}

fn load_state(path: &Path) -> Result<State, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => {
            return Err(RegistryError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |reason: String| RegistryError::CorruptState {
        path: path.to_path_buf(),
        reason,
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if state.format != STATE_FORMAT {
        return Err(corrupt(format!(
            "format {} is not the supported {STATE_FORMAT}",
            state.format
        )));
    }
    for (name, model) in &state.models {
        check_name(name).map_err(|r| corrupt(format!("model {r}")))?;
        for r in &model.installed {
            check_profile(&r.profile).map_err(|e| corrupt(e.to_string()))?;
        }
        for p in model.slots.keys() {
            check_profile(p).map_err(|e| corrupt(e.to_string()))?;
        }
    }
    Ok(state)
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, RegistryError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn read_dir_names_if_dir(dir: &Path) -> Result<Vec<String>, RegistryError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => read_dir_names(dir),
        Ok(_) => Ok(Vec::new()),
        Err(source) => Err(RegistryError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}
