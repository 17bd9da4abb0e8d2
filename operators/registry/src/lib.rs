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
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use forgeline_registry::{PackageError, SigningKey, TrustedKeys, generate_keypair, sign, verify};
//! let tmp = tempfile::tempdir()?;
//! let keys = generate_keypair(tmp.path().join("keys"), None)?;
//! let model = tmp.path().join("press-anomaly");
//! std::fs::create_dir(&model)?;
//! std::fs::write(model.join("model.yml"), "name: press-anomaly\nversion: 1.2.0\n")?;
//! std::fs::write(model.join("model.fp32.onnx"), b"weights")?;
//!
//! sign(&model, &SigningKey::load(&keys.secret_key, None)?)?;
//! let mut trusted = TrustedKeys::new();
//! trusted.add_file(&keys.public_key)?;
//! let id = verify(&model, &trusted)?;
//! assert_eq!((id.name.as_str(), id.version.to_string()), ("press-anomaly", "1.2.0".into()));
//!
//! std::fs::write(model.join("model.fp32.onnx"), b"tampered")?;
//! let err = verify(&model, &trusted).unwrap_err();
//! assert!(matches!(err, PackageError::Contents { .. }));
//! assert!(err.to_string().contains("model.fp32.onnx"));
//! # Ok(())
//! # }
//! ```

pub mod error;
mod fsutil;
pub mod keys;
pub mod lifecycle;
pub mod manifest;
pub mod package;
pub mod probation;
pub mod registry;

pub use error::{FileProblem, PackageError, RegistryError};
pub use keys::{GeneratedKeyPair, KeyId, SigningKey, TrustedKeys, generate_keypair};
pub use manifest::{MANIFEST_FILE, Manifest, ManifestEntry, SIGNATURE_FILE};
pub use package::{ModelIdentity, pack, sign, unpack, verify};
pub use registry::{
    Action, Activation, ActiveSlot, FaultHook, HealthOutcome, HistoryEntry, InstalledModel,
    ModelStatus, Probation, Registry, STATE_FILE, Step, Timestamp,
};
/// Semantic versions as used for model versions.
pub use semver::Version;
