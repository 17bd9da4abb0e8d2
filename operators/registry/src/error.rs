//! Error domains of the registry: [`PackageError`] for keys, signing and verification of one
//! model package; [`RegistryError`] for the on-disk registry.
//!
//! Every message names the thing (file, key id, model, version, profile), what is wrong and,
//! where there is one, what would fix it.

use std::fmt;
use std::path::PathBuf;

use semver::Version;

use crate::keys::KeyId;

/// One file of a package that does not match the signed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Listed in the manifest, absent from the directory.
    Missing {
        /// Path relative to the package directory (`/`-separated).
        path: String,
    },
    /// Present in the directory, not listed in the manifest.
    Extra {
        /// Path relative to the package directory.
        path: String,
    },
    /// Shorter than the manifest says (an interrupted copy or download).
    Truncated {
        /// Path relative to the package directory.
        path: String,
        /// Size recorded in the manifest, bytes.
        expected: u64,
        /// Size found, bytes.
        actual: u64,
    },
    /// Content differs from the manifest (sha256 or a larger size).
    Modified {
        /// Path relative to the package directory.
        path: String,
        /// sha256 recorded in the manifest (hex).
        expected_sha256: String,
        /// sha256 found (hex).
        actual_sha256: String,
    },
    /// A symlink, socket or other entry that is not a regular file or directory.
    NotRegularFile {
        /// Path relative to the package directory.
        path: String,
    },
}

impl FileProblem {
    /// The file concerned, relative to the package directory.
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            Self::Missing { path }
            | Self::Extra { path }
            | Self::Truncated { path, .. }
            | Self::Modified { path, .. }
            | Self::NotRegularFile { path } => path,
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "{path}: missing (listed in the manifest)"),
            Self::Extra { path } => write!(f, "{path}: extra file (not in the signed manifest)"),
            Self::Truncated {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{path}: truncated ({actual} bytes, the manifest says {expected})"
            ),
            Self::Modified {
                path,
                expected_sha256,
                actual_sha256,
            } => write!(
                f,
                "{path}: tampered or corrupt (sha256 {actual_sha256}, the manifest says {expected_sha256})"
            ),
            Self::NotRegularFile { path } => {
                write!(f, "{path}: not a regular file (symlinks are not allowed)")
            }
        }
    }
}

struct Problems<'a>(&'a [FileProblem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

struct KeyIds<'a>(&'a [KeyId]);

impl fmt::Display for KeyIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

/// Why a key could not be made or read, or a package could not be signed or verified.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A key file is not a minisign key of the expected kind, or its password is wrong.
    #[error("{path}: not a usable minisign {kind} key: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// `public` or `secret`.
        kind: &'static str,
        /// What is wrong (from the minisign parser).
        reason: String,
    },
    /// `generate_keypair` refuses to overwrite an existing key file.
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The package has no `manifest.sig`.
    #[error(
        "{dir} is not signed: {file} is missing (sign it with the model owner's key: `forgeline model sign`)"
    )]
    Unsigned {
        /// The package directory.
        dir: PathBuf,
        /// The missing signature file.
        file: PathBuf,
    },
    /// The package has a signature but no `manifest.sha256`.
    #[error("{dir}: {file} is missing, so the signature covers nothing (re-sign the package)")]
    MissingManifest {
        /// The package directory.
        dir: PathBuf,
        /// The missing manifest file.
        file: PathBuf,
    },
    /// `manifest.sig` is not a minisign signature.
    #[error("{path}: not a minisign signature: {reason}")]
    MalformedSignature {
        /// The signature file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signature was made by a key that is not in the trusted set.
    #[error(
        "{path}: signed by key {key_id}, which is not trusted (trusted keys: {}); add its .pub file to the trusted keys only if you trust its owner",
        KeyIds(trusted)
    )]
    UntrustedKey {
        /// The signature file.
        path: PathBuf,
        /// Key id named in the signature.
        key_id: KeyId,
        /// Key ids that are trusted.
        trusted: Vec<KeyId>,
    },
    /// The signature does not match `manifest.sha256` (or its trusted comment was altered).
    #[error("{path}: bad signature by key {key_id} over {manifest}: {reason}")]
    BadSignature {
        /// The signature file.
        path: PathBuf,
        /// The signed manifest.
        manifest: PathBuf,
        /// Key id named in the signature.
        key_id: KeyId,
        /// The verifier's reason.
        reason: String,
    },
    /// `manifest.sha256` does not follow the format.
    #[error("{path}:{line}: malformed manifest: {reason}")]
    MalformedManifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// Files of the package do not match the signed manifest.
    #[error("{dir}: {} file(s) do not match the signed manifest:\n{}", problems.len(), Problems(problems))]
    Contents {
        /// The package directory.
        dir: PathBuf,
        /// Every mismatch found.
        problems: Vec<FileProblem>,
    },
    /// A file name cannot go into a manifest.
    #[error("{path}: cannot be packaged: {reason}")]
    UnsupportedPath {
        /// The file.
        path: PathBuf,
        /// Why (not UTF-8, control character, symlink…).
        reason: String,
    },
    /// `model.yml` lacks a usable `name` or `version`.
    #[error("{path}: {reason}")]
    ModelIdentity {
        /// The `model.yml` file.
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// Signing failed inside minisign.
    #[error("signing {path} failed: {reason}")]
    Sign {
        /// The manifest being signed.
        path: PathBuf,
        /// minisign's reason.
        reason: String,
    },
    /// A `.tar` package holds an entry that cannot be unpacked safely.
    #[error("{path}: entry {entry:?} refused: {reason}")]
    UnsafeArchiveEntry {
        /// The archive.
        path: PathBuf,
        /// The entry's path as stored.
        entry: String,
        /// Why (absolute path, `..`, link, device…).
        reason: String,
    },
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory of the registry could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Another process holds the registry lock.
    #[error("{path} is locked by another process (another `forgeline model` command is running)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// `registry.json` cannot be parsed.
    #[error(
        "{path}: corrupt registry state: {reason} (restore it from a backup; it is only ever replaced whole)"
    )]
    CorruptState {
        /// `registry.json`.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A package failed verification.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The package verified but is not a valid forgeline model directory.
    #[error("{dir}: not a valid model directory: {source}")]
    InvalidModel {
        /// The staged copy that was checked.
        dir: PathBuf,
        /// What `ModelDir::load` reported.
        source: forgeline_inference::ModelError,
    },
    /// A profile name is not usable.
    #[error(
        "profile {profile:?} is invalid: use lowercase letters, digits, '-' and '_' (e.g. x86_64-cpu, aarch64-cpu, cuda)"
    )]
    InvalidProfile {
        /// The profile given.
        profile: String,
    },
    /// This name, version and profile is installed already.
    #[error("{name} {version} ({profile}) is already installed at {dir}")]
    AlreadyInstalled {
        /// Model name.
        name: String,
        /// Model version.
        version: Version,
        /// Profile.
        profile: String,
        /// Where it is.
        dir: PathBuf,
    },
    /// No such model, version or profile is installed.
    #[error("{name} {version} ({profile}) is not installed (see `forgeline model list`)")]
    NotInstalled {
        /// Model name.
        name: String,
        /// Model version, `*` when no version of the model is installed.
        version: String,
        /// Profile.
        profile: String,
    },
    /// No version of the model is active on the profile.
    #[error("no version of {name} is active on profile {profile}")]
    NotActive {
        /// Model name.
        name: String,
        /// Profile.
        profile: String,
    },
    /// The version asked for is active already.
    #[error("{name} {version} is already active on profile {profile}")]
    AlreadyActive {
        /// Model name.
        name: String,
        /// Model version.
        version: Version,
        /// Profile.
        profile: String,
    },
    /// Rollback has no earlier version to go back to.
    #[error(
        "cannot roll back {name} on profile {profile}: no previous version is installed (active: {active})"
    )]
    NoPrevious {
        /// Model name.
        name: String,
        /// Profile.
        profile: String,
        /// The active version.
        active: Version,
    },
    /// The package is not the one verified or recorded (changed while being installed, or
    /// replaced in the store).
    #[error(
        "{dir}: package changed: manifest sha256 is {actual}, expected {expected} (re-install it from a trusted source)"
    )]
    PackageChanged {
        /// The package directory.
        dir: PathBuf,
        /// sha256 of the manifest that was verified or recorded.
        expected: String,
        /// sha256 of the manifest found.
        actual: String,
    },
    /// A fault-injection hook stopped the operation at this step (tests only).
    #[error("operation interrupted at step {step:?} (fault injection)")]
    Interrupted {
        /// Where it stopped.
        step: crate::registry::Step,
    },
}
