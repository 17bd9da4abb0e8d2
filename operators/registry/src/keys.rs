//! minisign keys: generation, loading of secret keys for signing, and the trusted public keys a
//! box accepts packages from.
//!
//! Key files are byte-for-byte minisign's: `minisign -G`/`-S`/`-V` read the files written here and
//! this module reads theirs.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox};
use serde::{Deserialize, Serialize};

use crate::error::PackageError;

/// File name of the public key written by [`generate_keypair`].
pub const PUBLIC_KEY_FILE: &str = "forgeline.pub";
/// File name of the secret key written by [`generate_keypair`].
pub const SECRET_KEY_FILE: &str = "forgeline.key";

/// A minisign key id: 8 bytes, shown as 16 upper-case hex digits like `minisign` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    fn from_slice(bytes: &[u8]) -> Self {
        let mut id = [0u8; 8];
        let n = bytes.len().min(8);
        id[..n].copy_from_slice(&bytes[..n]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // minisign prints the key number as a little-endian u64.
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let n = u64::from_str_radix(&s, 16)
            .map_err(|e| format!("key id {s:?} is not 16 hex digits: {e}"))?;
        Ok(Self(n.to_le_bytes()))
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> Self {
        k.to_string()
    }
}

/// Paths and id of a freshly generated key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKeyPair {
    /// The public key file (give it to every box that must accept this signer's models).
    pub public_key: PathBuf,
    /// The secret key file (mode 0600; keep it off the boxes).
    pub secret_key: PathBuf,
    /// The key id.
    pub key_id: KeyId,
}

/// Generate a minisign key pair in `dir` as [`PUBLIC_KEY_FILE`] and [`SECRET_KEY_FILE`].
///
/// With `password`, the secret key is encrypted like `minisign -G` does (scrypt); without,
/// it is stored unencrypted (`minisign -G -W`). Existing files are never overwritten.
///
/// # Errors
/// [`PackageError::KeyExists`] if either file exists, [`PackageError::Io`] when writing fails,
/// [`PackageError::Key`] if minisign cannot generate the key.
pub fn generate_keypair(
    dir: impl AsRef<Path>,
    password: Option<&str>,
) -> Result<GeneratedKeyPair, PackageError> {
    let dir = dir.as_ref();
    let public_key = dir.join(PUBLIC_KEY_FILE);
    let secret_key = dir.join(SECRET_KEY_FILE);
    for path in [&public_key, &secret_key] {
        if path.exists() {
            return Err(PackageError::KeyExists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| PackageError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key_err = |reason: minisign::PError| PackageError::Key {
        path: secret_key.clone(),
        kind: "secret",
        reason: reason.to_string(),
    };
    let pair = match password {
        Some(p) => KeyPair::generate_encrypted_keypair(Some(p.to_owned())),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(key_err)?;
    let pk_box = pair.pk.to_box().map_err(key_err)?;
    let sk_box = pair.sk.to_box(None).map_err(key_err)?;
    write_new_file(&secret_key, &sk_box.to_bytes(), true)?;
    write_new_file(&public_key, pk_box.into_string().as_bytes(), false)?;
    Ok(GeneratedKeyPair {
        public_key,
        secret_key,
        key_id: KeyId::from_slice(pair.pk.keynum()),
    })
}

fn write_new_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), PackageError> {
    let io = |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = opts.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A secret key loaded for signing.
pub struct SigningKey {
    pub(crate) sk: SecretKey,
    pub(crate) pk: PublicKey,
    pub(crate) path: PathBuf,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Load a minisign secret key file. `password` is required for an encrypted key and must
    /// be `None` for an unencrypted one; nothing is ever prompted for.
    ///
    /// # Errors
    /// [`PackageError::Io`] if the file cannot be read, [`PackageError::Key`] if it is not a
    /// minisign secret key, the password is missing or wrong, or the key is corrupt.
    pub fn load(path: impl AsRef<Path>, password: Option<&str>) -> Result<Self, PackageError> {
        let path = path.as_ref().to_path_buf();
        let text = fs::read_to_string(&path).map_err(|source| PackageError::Io {
            path: path.clone(),
            source,
        })?;
        let key_err = |reason: String| PackageError::Key {
            path: path.clone(),
            kind: "secret",
            reason,
        };
        let sk_box = SecretKeyBox::from_string(&text).map_err(|e| key_err(e.to_string()))?;
        let sk = match password {
            // `from_box` with `None` would prompt on the terminal: never call it that way.
            Some(p) => sk_box.into_secret_key(Some(p.to_owned())),
            None => sk_box
                .into_unencrypted_secret_key()
                .or_else(|e| unencrypted_without_checksum(&text).ok_or(e)),
        }
        .map_err(|e| {
            let hint = if password.is_none() {
                " (if the key is encrypted, give its password)"
            } else {
                ""
            };
            key_err(format!("{e}{hint}"))
        })?;
        let pk = PublicKey::from_secret_key(&sk).map_err(|e| key_err(e.to_string()))?;
        Ok(Self { sk, pk, path })
    }

    /// The key id signatures made with this key carry.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        KeyId::from_slice(self.pk.keynum())
    }
}

/// The minisign 0.11 C tool writes unencrypted keys (`minisign -G -W`) with an all-zero
/// checksum, which the `minisign` crate rejects as corrupt. Accept exactly that case; the key's
/// integrity is still checked, since [`sign`](crate::sign) verifies each signature it makes
/// against the public half stored in the key.
fn unencrypted_without_checksum(text: &str) -> Option<SecretKey> {
    use base64::Engine as _;
    const KDF_ALG: std::ops::Range<usize> = 2..4;
    const CHECKSUM: std::ops::Range<usize> = 126..158;
    let line = text.lines().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()?;
    let zero_checksum = bytes.len() == CHECKSUM.end
        && bytes[KDF_ALG] == [0, 0]
        && bytes[CHECKSUM].iter().all(|b| *b == 0);
    if !zero_checksum {
        return None;
    }
    let sk = SecretKey::from_bytes(&bytes).ok()?;
    // Without a checksum, prove the key whole: a signature made with the seed must verify
    // with the public half (minisign::sign checks that when given the public key).
    let pk = PublicKey::from_secret_key(&sk).ok()?;
    minisign::sign(
        Some(&pk),
        &sk,
        std::io::Cursor::new(b"forgeline key check"),
        Some("key check"),
        Some("key check"),
    )
    .ok()?;
    Some(sk)
}

/// The public keys whose signatures a box accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(KeyId, PublicKey, PathBuf)>,
}

impl TrustedKeys {
    /// An empty set: every package is refused as signed by an untrusted key.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the minisign public key file at `path` (the `minisign.pub` format).
    ///
    /// # Errors
    /// [`PackageError::Io`] if unreadable, [`PackageError::Key`] if it is not a minisign
    /// public key.
    pub fn add_file(&mut self, path: impl AsRef<Path>) -> Result<KeyId, PackageError> {
        let path = path.as_ref().to_path_buf();
        let text = fs::read_to_string(&path).map_err(|source| PackageError::Io {
            path: path.clone(),
            source,
        })?;
        let pk = PublicKeyBox::from_string(&text)
            .and_then(PublicKey::from_box)
            .map_err(|e| PackageError::Key {
                path: path.clone(),
                kind: "public",
                reason: e.to_string(),
            })?;
        let id = KeyId::from_slice(pk.keynum());
        self.keys.retain(|(k, _, _)| *k != id);
        self.keys.push((id, pk, path));
        Ok(id)
    }

    /// Load every `*.pub` file of `dir` (e.g. `/etc/forgeline/trusted-keys/`).
    ///
    /// # Errors
    /// As [`TrustedKeys::add_file`]; also if `dir` cannot be listed.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, PackageError> {
        let dir = dir.as_ref();
        let io = |source| PackageError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "pub") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut keys = Self::new();
        for p in paths {
            keys.add_file(p)?;
        }
        Ok(keys)
    }

    /// Ids of the trusted keys, sorted.
    #[must_use]
    pub fn key_ids(&self) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = self.keys.iter().map(|(k, _, _)| *k).collect();
        ids.sort();
        ids
    }

    /// The public key with this id, if trusted.
    pub(crate) fn get(&self, id: KeyId) -> Option<&PublicKey> {
        self.keys
            .iter()
            .find(|(k, _, _)| *k == id)
            .map(|(_, pk, _)| pk)
    }
}

pub(crate) fn key_id_of_signature(sig: &minisign::SignatureBox) -> KeyId {
    KeyId::from_slice(sig.keynum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_and_ids_match() {
        let dir = tempfile::tempdir().unwrap();
        let generated = generate_keypair(dir.path(), None).unwrap();
        let sk = SigningKey::load(&generated.secret_key, None).unwrap();
        assert_eq!(sk.key_id(), generated.key_id);
        let mut trusted = TrustedKeys::new();
        assert_eq!(
            trusted.add_file(&generated.public_key).unwrap(),
            generated.key_id
        );
        let text = fs::read_to_string(&generated.public_key).unwrap();
        // minisign's own format: comment line naming the id, then one base64 line.
        assert!(text.starts_with(&format!(
            "untrusted comment: minisign public key: {}",
            generated.key_id
        )));
        assert_eq!(text.lines().count(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&generated.secret_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_to_overwrite_keys() {
        let dir = tempfile::tempdir().unwrap();
        generate_keypair(dir.path(), None).unwrap();
        let err = generate_keypair(dir.path(), None).unwrap_err();
        assert!(matches!(err, PackageError::KeyExists { .. }), "{err}");
    }

    #[test]
    fn encrypted_key_needs_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let generated = generate_keypair(dir.path(), Some("press line 4")).unwrap();
        let err = SigningKey::load(&generated.secret_key, None).unwrap_err();
        assert!(err.to_string().contains("give its password"), "{err}");
        let err = SigningKey::load(&generated.secret_key, Some("wrong")).unwrap_err();
        assert!(err.to_string().contains("forgeline.key"), "{err}");
        let sk = SigningKey::load(&generated.secret_key, Some("press line 4")).unwrap();
        assert_eq!(sk.key_id(), generated.key_id);
    }

    #[test]
    fn garbage_public_key_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pub");
        fs::write(&path, "untrusted comment: x\nnot-base64\n").unwrap();
        let err = TrustedKeys::new().add_file(&path).unwrap_err();
        assert!(err.to_string().contains("bad.pub"), "{err}");
    }

    #[test]
    fn key_id_string_round_trip() {
        let id = KeyId([1, 2, 3, 4, 5, 6, 7, 0xAB]);
        let s = String::from(id);
        assert_eq!(s, "AB07060504030201");
        assert_eq!(KeyId::try_from(s).unwrap(), id);
    }
}
