//! A signed model package: a model directory plus `manifest.sha256` and `manifest.sig`.
//!
//! [`sign`] writes both files; [`verify`] checks, in this order, that the package is signed,
//! by a trusted key, that the signature matches the manifest, that every file matches the
//! manifest (nothing missing, extra, truncated or altered), and reads the model's name and
//! version from `model.yml`. `manifest.sig` is a minisign signature, so
//! `minisign -Vm manifest.sha256 -x manifest.sig -p forgeline.pub` checks it too.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use minisign::SignatureBox;
use semver::Version;
use serde::Deserialize;

use crate::error::PackageError;
use crate::fsutil;
use crate::keys::{KeyId, SigningKey, TrustedKeys, key_id_of_signature};
use crate::manifest::{MANIFEST_FILE, Manifest, SIGNATURE_FILE, check_rel_path, sha256_bytes};

/// The metadata file whose `name` and `version` identify a model.
pub const MODEL_FILE: &str = "model.yml";

/// Who a verified package is and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// Model name from `model.yml`.
    pub name: String,
    /// Model version from `model.yml`.
    pub version: Version,
    /// Id of the key that signed the manifest.
    pub key_id: KeyId,
    /// sha256 of `manifest.sha256` (hex): one value that pins every file of the package.
    pub manifest_sha256: String,
}

/// The `model.yml` fields this crate needs; the rest is `forgeline-inference`'s business.
#[derive(Deserialize)]
struct IdentityFields {
    name: Option<String>,
    version: Option<String>,
}

/// Whether `name` can be a model name (it becomes a directory name in the registry).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-128 characters of letters, digits, '-', '_', '.', not starting with '.'"
        ))
    }
}

/// Read `name` and `version` from `<dir>/model.yml`.
fn read_identity(dir: &Path) -> Result<(String, Version), PackageError> {
    let path = dir.join(MODEL_FILE);
    let text = fs::read_to_string(&path).map_err(|source| PackageError::Io {
        path: path.clone(),
        source,
    })?;
    let bad = |reason: String| PackageError::ModelIdentity {
        path: path.clone(),
        reason,
    };
    let fields: IdentityFields =
        serde_yaml::from_str(&text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let name = fields
        .name
        .ok_or_else(|| bad("field `name` is missing".into()))?;
    check_name(&name).map_err(|r| bad(format!("field `name`: {r}")))?;
    let version = fields
        .version
        .ok_or_else(|| bad("field `version` is missing".into()))?;
    let version = Version::parse(&version).map_err(|e| {
        bad(format!(
            "field `version`: {version:?} is not a semantic version like 1.2.0: {e}"
        ))
    })?;
    Ok((name, version))
}

/// Sign the model directory `model_dir` with `key`: write `manifest.sha256` (every file's
/// sha256 and size) and `manifest.sig` (minisign signature of the manifest, trusted comment
/// `forgeline-model <name> <version>`). Existing manifest and signature are replaced.
///
/// # Errors
/// [`PackageError::ModelIdentity`] if `model.yml` lacks a valid `name`/`version`,
/// [`PackageError::UnsupportedPath`] for symlinks or odd file names, [`PackageError::Io`],
/// [`PackageError::Sign`].
pub fn sign(model_dir: impl AsRef<Path>, key: &SigningKey) -> Result<ModelIdentity, PackageError> {
    let dir = model_dir.as_ref();
    let (name, version) = read_identity(dir)?;
    let manifest = Manifest::compute(dir)?.render();
    let manifest_path = dir.join(MANIFEST_FILE);
    let trusted_comment = format!("forgeline-model {name} {version}");
    let sig = minisign::sign(
        Some(&key.pk),
        &key.sk,
        Cursor::new(manifest.as_bytes()),
        Some(&trusted_comment),
        Some("signature from forgeline secret key"),
    )
    .map_err(|e| PackageError::Sign {
        path: manifest_path.clone(),
        reason: e.to_string(),
    })?;
    write_replace(&manifest_path, manifest.as_bytes())?;
    write_replace(&dir.join(SIGNATURE_FILE), sig.into_string().as_bytes())?;
    fsutil::sync_dir(dir).map_err(|source| PackageError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(ModelIdentity {
        name,
        version,
        key_id: key.key_id(),
        manifest_sha256: sha256_bytes(manifest.as_bytes()),
    })
}

/// Replace `path` by write-temp + fsync + rename.
fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PackageError::Io { path: p, source }
    };
    fsutil::write_synced(&tmp, bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Verify the package at `model_dir` against `trusted` keys.
///
/// # Errors
/// In the order checked: [`PackageError::Unsigned`], [`PackageError::MissingManifest`],
/// [`PackageError::MalformedSignature`], [`PackageError::UntrustedKey`],
/// [`PackageError::BadSignature`], [`PackageError::MalformedManifest`],
/// [`PackageError::Contents`] (every missing, extra, truncated, altered file, by name),
/// [`PackageError::ModelIdentity`]; [`PackageError::Io`] on read failures.
pub fn verify(
    model_dir: impl AsRef<Path>,
    trusted: &TrustedKeys,
) -> Result<ModelIdentity, PackageError> {
    let dir = model_dir.as_ref();
    let sig_path = dir.join(SIGNATURE_FILE);
    let manifest_path = dir.join(MANIFEST_FILE);
    let sig_text = match fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PackageError::Unsigned {
                dir: dir.to_path_buf(),
                file: sig_path,
            });
        }
        Err(source) => {
            return Err(PackageError::Io {
                path: sig_path,
                source,
            });
        }
    };
    // Read once; the bytes verified are the bytes parsed.
    let manifest_bytes = match fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PackageError::MissingManifest {
                dir: dir.to_path_buf(),
                file: manifest_path,
            });
        }
        Err(source) => {
            return Err(PackageError::Io {
                path: manifest_path,
                source,
            });
        }
    };
    let sig =
        SignatureBox::from_string(&sig_text).map_err(|e| PackageError::MalformedSignature {
            path: sig_path.clone(),
            reason: e.to_string(),
        })?;
    let key_id = key_id_of_signature(&sig);
    let pk = trusted
        .get(key_id)
        .ok_or_else(|| PackageError::UntrustedKey {
            path: sig_path.clone(),
            key_id,
            trusted: trusted.key_ids(),
        })?;
    minisign::verify(pk, &sig, Cursor::new(&manifest_bytes), true, false, false).map_err(|e| {
        PackageError::BadSignature {
            path: sig_path.clone(),
            manifest: manifest_path.clone(),
            key_id,
            reason: e.to_string(),
        }
    })?;
    let text = String::from_utf8(manifest_bytes).map_err(|_| PackageError::MalformedManifest {
        path: manifest_path.clone(),
        line: 1,
        reason: "not UTF-8".into(),
    })?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    let problems = manifest.check(dir)?;
    if !problems.is_empty() {
        return Err(PackageError::Contents {
            dir: dir.to_path_buf(),
            problems,
        });
    }
    let (name, version) = read_identity(dir)?;
    Ok(ModelIdentity {
        name,
        version,
        key_id,
        manifest_sha256: sha256_bytes(text.as_bytes()),
    })
}

/// The files of a package in the order they are copied or packed: manifest entries, then the
/// manifest, then the signature. Read from the (already verified) manifest.
pub(crate) fn package_files(dir: &Path) -> Result<Vec<String>, PackageError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = fs::read_to_string(&manifest_path).map_err(|source| PackageError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    let mut files: Vec<String> = manifest.entries.into_iter().map(|e| e.path).collect();
    files.push(MANIFEST_FILE.into());
    files.push(SIGNATURE_FILE.into());
    Ok(files)
}

/// Write the signed package at `model_dir` as an uncompressed tar file `out` (files in manifest
/// order, mtime 0, mode 0644, owner 0: the same package always gives the same bytes).
/// The package is verified against `trusted` first.
///
/// # Errors
/// Any [`verify`] error; [`PackageError::Io`] when writing `out`.
pub fn pack(
    model_dir: impl AsRef<Path>,
    trusted: &TrustedKeys,
    out: impl AsRef<Path>,
) -> Result<ModelIdentity, PackageError> {
    let dir = model_dir.as_ref();
    let out = out.as_ref();
    let identity = verify(dir, trusted)?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PackageError::Io { path: p, source }
    };
    let file = fs::File::create(out).map_err(io(out))?;
    let mut builder = tar::Builder::new(file);
    for rel in package_files(dir)? {
        let full = dir.join(&rel);
        let bytes = fs::read(&full).map_err(io(&full))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &rel, bytes.as_slice())
            .map_err(io(out))?;
    }
    let file = builder.into_inner().map_err(io(out))?;
    file.sync_all().map_err(io(out))?;
    Ok(identity)
}

/// Unpack the tar package `archive` into `dest` (created; must not exist) and verify it.
/// Only regular files and directories with safe relative paths are accepted.
///
/// # Errors
/// [`PackageError::UnsafeArchiveEntry`] for absolute paths, `..`, links or devices,
/// [`PackageError::Io`], then any [`verify`] error.
pub fn unpack(
    archive: impl AsRef<Path>,
    dest: impl AsRef<Path>,
    trusted: &TrustedKeys,
) -> Result<ModelIdentity, PackageError> {
    let archive = archive.as_ref();
    let dest = dest.as_ref();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PackageError::Io { path: p, source }
    };
    fs::create_dir(dest).map_err(io(dest))?;
    let file = fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().map_err(io(archive))? {
        let mut entry = entry.map_err(io(archive))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: &str| PackageError::UnsafeArchiveEntry {
            path: archive.to_path_buf(),
            entry: raw.clone(),
            reason: reason.to_owned(),
        };
        let rel = raw.trim_end_matches('/');
        check_rel_path(rel).map_err(|r| refuse(&r))?;
        let target = dest.join(rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&target).map_err(io(&target))?,
            tar::EntryType::Regular => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io(&target))?;
                std::io::copy(&mut entry, &mut out).map_err(io(&target))?;
                out.sync_all().map_err(io(&target))?;
            }
            _ => return Err(refuse("only regular files and directories are allowed")),
        }
    }
    fsutil::sync_tree_dirs(dest).map_err(io(dest))?;
    verify(dest, trusted)
}
