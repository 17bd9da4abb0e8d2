//! `manifest.sha256`: the sha256 and size of every file of a package, sorted by path.
//!
//! ```text
//! # forgeline package manifest v1: sha256  size  path
//! 8bdccda9…a47d  19965  model.fp32.onnx
//! 2c1f…09be  2211  model.yml
//! ```
//!
//! Paths are relative, `/`-separated, UTF-8 without control characters, sorted by byte value,
//! unique. `manifest.sha256` and `manifest.sig` at the top level are not listed (the signature
//! covers the manifest, the manifest covers everything else). The size is kept so that a
//! truncated copy is reported as such rather than as a mere hash mismatch.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{FileProblem, PackageError};

/// File name of the manifest inside a package.
pub const MANIFEST_FILE: &str = "manifest.sha256";
/// File name of the minisign signature of the manifest inside a package.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// First line of every manifest.
pub const MANIFEST_HEADER: &str = "# forgeline package manifest v1: sha256  size  path";

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the package directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content, lower-case hex.
    pub sha256: String,
}

/// Every file of a package with its size and sha256, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The files, sorted by path, unique.
    pub entries: Vec<ManifestEntry>,
}

/// An entry found while walking a package directory.
pub(crate) enum Found {
    File(String),
    Other(String),
}

/// Walk `dir` recursively; top-level manifest and signature are skipped. Sorted by path.
pub(crate) fn walk(dir: &Path) -> Result<Vec<Found>, PackageError> {
    let mut out = Vec::new();
    walk_into(dir, dir, &mut out)?;
    out.sort_by(|a, b| found_path(a).cmp(found_path(b)));
    Ok(out)
}

fn found_path(f: &Found) -> &str {
    match f {
        Found::File(p) | Found::Other(p) => p,
    }
}

fn walk_into(root: &Path, dir: &Path, out: &mut Vec<Found>) -> Result<(), PackageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let rel = relative_name(root, &path)?;
        if dir == root && (rel == MANIFEST_FILE || rel == SIGNATURE_FILE) {
            continue;
        }
        // symlink_metadata: a symlink is reported, never followed out of the package.
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk_into(root, &path, out)?;
        } else if meta.is_file() {
            out.push(Found::File(rel));
        } else {
            out.push(Found::Other(rel));
        }
    }
    Ok(())
}

fn relative_name(root: &Path, path: &Path) -> Result<String, PackageError> {
    let unsupported = |reason: &str| PackageError::UnsupportedPath {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let rel = path
        .strip_prefix(root)
        .map_err(|_| unsupported("outside the package directory"))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let s = c
            .as_os_str()
            .to_str()
            .ok_or_else(|| unsupported("file name is not UTF-8"))?;
        parts.push(s);
    }
    let joined = parts.join("/");
    check_rel_path(&joined).map_err(|reason| unsupported(&reason))?;
    Ok(joined)
}

/// Whether `p` is a safe relative package path; the reason if not.
pub(crate) fn check_rel_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.chars().any(char::is_control) {
        return Err("file name contains a control character (newline, tab…)".into());
    }
    if p.contains('\\') {
        return Err("backslash in path (use '/')".into());
    }
    for part in p.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "path component {part:?} not allowed (relative paths without '.', '..' or '//')"
            ));
        }
    }
    Ok(())
}

/// sha256 of a file, lower-case hex, streamed.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// sha256 of bytes, lower-case hex.
pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Manifest {
    /// Hash every file under `dir` (except the manifest and signature themselves).
    ///
    /// # Errors
    /// [`PackageError::UnsupportedPath`] for a symlink or other non-regular file or a name
    /// that cannot be written in a manifest, [`PackageError::Io`] when reading fails.
    pub fn compute(dir: impl AsRef<Path>) -> Result<Self, PackageError> {
        let dir = dir.as_ref();
        let mut entries = Vec::new();
        for found in walk(dir)? {
            match found {
                Found::File(path) => {
                    let full = dir.join(&path);
                    let sha256 = sha256_file(&full).map_err(|source| PackageError::Io {
                        path: full.clone(),
                        source,
                    })?;
                    // Size from the bytes hashed would race a writer just the same; take it
                    // from metadata after hashing so a growing file shows up at verify.
                    let size = fs::metadata(&full)
                        .map_err(|source| PackageError::Io {
                            path: full.clone(),
                            source,
                        })?
                        .len();
                    entries.push(ManifestEntry { path, size, sha256 });
                }
                Found::Other(path) => {
                    return Err(PackageError::UnsupportedPath {
                        path: dir.join(path),
                        reason: "not a regular file or directory (symlinks are not packaged)"
                            .into(),
                    });
                }
            }
        }
        Ok(Self { entries })
    }

    /// The manifest text, header first, one line per file.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::from(MANIFEST_HEADER);
        s.push('\n');
        for e in &self.entries {
            s.push_str(&format!("{}  {}  {}\n", e.sha256, e.size, e.path));
        }
        s
    }

    /// Parse manifest text; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`PackageError::MalformedManifest`] naming the line: wrong header, bad hash, bad size,
    /// unsafe or unsorted/duplicate path.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PackageError> {
        let bad = |line: usize, reason: String| PackageError::MalformedManifest {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut lines = text.split('\n').enumerate();
        match lines.next() {
            Some((_, h)) if h == MANIFEST_HEADER => {}
            _ => return Err(bad(1, format!("first line must be {MANIFEST_HEADER:?}"))),
        }
        let mut entries: Vec<ManifestEntry> = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            if line.is_empty() {
                // Only the final newline may leave an empty piece.
                if n == text.split('\n').count() {
                    continue;
                }
                return Err(bad(n, "empty line".into()));
            }
            let mut parts = line.splitn(3, "  ");
            let (Some(sha), Some(size), Some(p)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(n, "expected `<sha256>  <size>  <path>`".into()));
            };
            if sha.len() != 64
                || !sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(bad(
                    n,
                    format!("sha256 {sha:?} is not 64 lower-case hex digits"),
                ));
            }
            let size: u64 = size
                .parse()
                .map_err(|e| bad(n, format!("size {size:?} is not a byte count: {e}")))?;
            check_rel_path(p).map_err(|r| bad(n, format!("path {p:?}: {r}")))?;
            if p == MANIFEST_FILE || p == SIGNATURE_FILE {
                return Err(bad(n, format!("{p} cannot list itself")));
            }
            if let Some(prev) = entries.last()
                && prev.path.as_str() >= p
            {
                return Err(bad(
                    n,
                    format!(
                        "path {p:?} is not after {:?} (paths must be sorted and unique)",
                        prev.path
                    ),
                ));
            }
            entries.push(ManifestEntry {
                path: p.to_owned(),
                size,
                sha256: sha.to_owned(),
            });
        }
        Ok(Self { entries })
    }

    /// Compare `dir` with this manifest; every mismatch is returned (empty = all good).
    ///
    /// # Errors
    /// [`PackageError::Io`] when the directory cannot be read at all.
    pub fn check(&self, dir: impl AsRef<Path>) -> Result<Vec<FileProblem>, PackageError> {
        let dir = dir.as_ref();
        let mut problems = Vec::new();
        for e in &self.entries {
            let full: PathBuf = dir.join(&e.path);
            let meta = match fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    problems.push(FileProblem::Missing {
                        path: e.path.clone(),
                    });
                    continue;
                }
                Err(source) => return Err(PackageError::Io { path: full, source }),
            };
            if !meta.is_file() {
                problems.push(FileProblem::NotRegularFile {
                    path: e.path.clone(),
                });
                continue;
            }
            if meta.len() < e.size {
                problems.push(FileProblem::Truncated {
                    path: e.path.clone(),
                    expected: e.size,
                    actual: meta.len(),
                });
                continue;
            }
            let actual = sha256_file(&full).map_err(|source| PackageError::Io {
                path: full.clone(),
                source,
            })?;
            if actual != e.sha256 || meta.len() != e.size {
                problems.push(FileProblem::Modified {
                    path: e.path.clone(),
                    expected_sha256: e.sha256.clone(),
                    actual_sha256: actual,
                });
            }
        }
        let listed: BTreeSet<&str> = self.entries.iter().map(|e| e.path.as_str()).collect();
        let found = match walk(dir) {
            Ok(f) => f,
            // A name that cannot be listed is by definition not in the manifest.
            Err(PackageError::UnsupportedPath { path, .. }) => {
                problems.push(FileProblem::Extra {
                    path: path.to_string_lossy().into_owned(),
                });
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        for f in found {
            match f {
                Found::File(p) if !listed.contains(p.as_str()) => {
                    problems.push(FileProblem::Extra { path: p });
                }
                Found::Other(p) if !listed.contains(p.as_str()) => {
                    problems.push(FileProblem::NotRegularFile { path: p });
                }
                _ => {}
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compute_render_parse_round_trip_and_skips_signature_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("b.bin"), b"bbb").unwrap();
        fs::write(dir.path().join("sub/a.txt"), b"a").unwrap();
        fs::write(dir.path().join(MANIFEST_FILE), b"old").unwrap();
        fs::write(dir.path().join(SIGNATURE_FILE), b"old").unwrap();
        let m = Manifest::compute(dir.path()).unwrap();
        let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["b.bin", "sub/a.txt"]);
        assert_eq!(m.entries[0].size, 3);
        // sha256("bbb")
        assert_eq!(
            m.entries[0].sha256,
            "3e744b9dc39389baf0c5a0660589b8402f3dbb49b89b3e75f2c9355852a3c677"
        );
        let text = m.render();
        assert_eq!(Manifest::parse(&text, Path::new("m")).unwrap(), m);
        assert!(m.check(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn parse_rejects_unsafe_unsorted_and_bad_lines() {
        let sha = "a".repeat(64);
        let cases = [
            (
                format!("{MANIFEST_HEADER}\n{sha}  1  ../etc/passwd\n"),
                2,
                "..",
            ),
            (format!("{MANIFEST_HEADER}\n{sha}  1  /abs\n"), 2, "\"\""),
            (
                format!("{MANIFEST_HEADER}\n{sha}  1  b\n{sha}  1  a\n"),
                3,
                "sorted",
            ),
            (
                format!("{MANIFEST_HEADER}\n{sha}  1  a\n{sha}  1  a\n"),
                3,
                "unique",
            ),
            (format!("{MANIFEST_HEADER}\nxyz  1  a\n"), 2, "hex"),
            (
                format!("{MANIFEST_HEADER}\n{sha}  -1  a\n"),
                2,
                "byte count",
            ),
            ("not a manifest\n".to_string(), 1, "first line"),
            (
                format!("{MANIFEST_HEADER}\n\n{sha}  1  a\n"),
                2,
                "empty line",
            ),
        ];
        for (text, line, needle) in cases {
            let err = Manifest::parse(&text, Path::new("x/manifest.sha256")).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("manifest.sha256:{line}:")) && msg.contains(needle),
                "{text:?} → {msg}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_at_compute_and_reported_at_check() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"a").unwrap();
        let m = Manifest::compute(dir.path()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        assert!(matches!(
            Manifest::compute(dir.path()),
            Err(PackageError::UnsupportedPath { .. })
        ));
        assert_eq!(
            m.check(dir.path()).unwrap(),
            [FileProblem::NotRegularFile {
                path: "link".into()
            }]
        );
    }

    proptest! {
        /// Any set of safe names renders to a manifest that parses back identically.
        #[test]
        fn render_parse_round_trip(
            files in proptest::collection::btree_map("[a-z0-9_.-]{1,8}(/[a-z0-9_ -]{1,8}){0,2}", (any::<u64>(), proptest::array::uniform32(any::<u8>())), 0..8)
        ) {
            let entries: Vec<ManifestEntry> = files
                .into_iter()
                .filter(|(p, _)| check_rel_path(p).is_ok() && p != MANIFEST_FILE && p != SIGNATURE_FILE)
                .map(|(path, (size, h))| ManifestEntry { path, size, sha256: hex(&h) })
                .collect();
            let m = Manifest { entries };
            prop_assert_eq!(Manifest::parse(&m.render(), Path::new("m")).unwrap(), m);
        }
    }
}
