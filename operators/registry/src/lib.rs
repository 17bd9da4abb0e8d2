//! forgeline-registry: the local model registry of a factory box.
//!
//! - [`package`]: a model directory plus `manifest.sha256` (sha256 and size of every file) and
//!   `manifest.sig` (a minisign signature of the manifest). [`sign`] and [`verify`];
//!   optional `.tar` form with [`pack`] / [`unpack`].
//! - [`keys`]: minisign key pairs ([`generate_keypair`]), secret keys for signing
//!   ([`SigningKey`]) and the public keys a box trusts ([`TrustedKeys`]).
//! - [`registry`]: the on-disk registry ([`Registry`]): install verified packages per profile,
//!   activate atomically, roll back, prune, re-verify; power-cut safe.
//!
//! No clock is read: every timestamp is a parameter ([`Timestamp`]). See README.md for the
//! package format, the registry layout and the guarantees.

pub mod error;
mod fsutil;
pub mod keys;
pub mod manifest;
pub mod package;
pub mod registry;

pub use error::{FileProblem, PackageError, RegistryError};
pub use keys::{GeneratedKeyPair, KeyId, SigningKey, TrustedKeys, generate_keypair};
pub use manifest::{MANIFEST_FILE, Manifest, ManifestEntry, SIGNATURE_FILE};
pub use package::{ModelIdentity, pack, sign, unpack, verify};
pub use registry::{
    Action, Activation, ActiveSlot, FaultHook, HistoryEntry, InstalledModel, ModelStatus, Registry,
    STATE_FILE, Step, Timestamp,
};
/// Semantic versions as used for model versions.
pub use semver::Version;
