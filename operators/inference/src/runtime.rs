//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: nothing is linked or downloaded at build time, and `ort`
//! would panic at first use if the library were missing. So the library is located and checked
//! here first, and a clear error names every path tried and the version expected.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

/// Major.minor of ONNX Runtime this crate is built against (`ort` 2.0.0-rc.15, API 31).
pub const EXPECTED_ORT_VERSION: &str = "1.31";

/// Environment variable naming the library (the same one `ort` reads).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Why the ONNX Runtime library cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LibraryError {
    /// No candidate file was found.
    #[error(
        "ONNX Runtime {EXPECTED_ORT_VERSION}.x shared library not found; tried:\n{}\n\
         fix: install it with `.venv/bin/pip install -r tools/python/requirements.txt`, or set \
         `onnxruntime_lib` in the inference config or {ORT_DYLIB_ENV} to libonnxruntime.so.{EXPECTED_ORT_VERSION}.x",
        tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound {
        /// Each path or pattern tried, with why it was not used.
        tried: Vec<String>,
    },
    /// A file was found but could not be loaded as ONNX Runtime.
    #[error(
        "cannot load ONNX Runtime from {path} (expected version {EXPECTED_ORT_VERSION}.x): {reason}"
    )]
    Load {
        /// The library file.
        path: PathBuf,
        /// The loader's reason.
        reason: String,
    },
}

/// Where a library came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLibrary {
    /// The library file.
    pub path: PathBuf,
    /// How it was found: `config`, `ORT_DYLIB_PATH` or `search`.
    pub via: &'static str,
}

/// Locate the library: `explicit` (config), then `ORT_DYLIB_PATH`, then
/// `.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*` under the current
/// directory and its ancestors, then under the executable's ancestors. An explicit setting that
/// points nowhere is an error, not a reason to guess.
///
/// # Errors
/// [`LibraryError::NotFound`] listing every path tried.
pub fn find_library(explicit: Option<&Path>) -> Result<FoundLibrary, LibraryError> {
    let mut tried = Vec::new();
    if let Some(path) = explicit {
        return check_candidate(path, &mut tried, "config onnxruntime_lib")
            .map(|path| FoundLibrary {
                path,
                via: "config",
            })
            .ok_or(LibraryError::NotFound { tried });
    }
    if let Some(env) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(env);
        return check_candidate(&path, &mut tried, ORT_DYLIB_ENV)
            .map(|path| FoundLibrary {
                path,
                via: ORT_DYLIB_ENV,
            })
            .ok_or(LibraryError::NotFound { tried });
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        roots.extend(exe_dir.ancestors().map(Path::to_path_buf));
    }
    let mut seen = std::collections::HashSet::new();
    for root in roots.into_iter().filter(|r| seen.insert(r.clone())) {
        if let Some(path) = search_venv(&root, &mut tried) {
            return Ok(FoundLibrary {
                path,
                via: "search",
            });
        }
    }
    Err(LibraryError::NotFound { tried })
}

fn check_candidate(path: &Path, tried: &mut Vec<String>, source: &str) -> Option<PathBuf> {
    if !path.is_file() {
        tried.push(format!("{} (from {source}): no such file", path.display()));
        return None;
    }
    match version_from_name(path) {
        Some(v) if !is_expected_version(&v) => {
            tried.push(format!(
                "{} (from {source}): version {v}, expected {EXPECTED_ORT_VERSION}.x",
                path.display()
            ));
            None
        }
        _ => Some(path.to_path_buf()),
    }
}

/// `.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*` under `root`.
fn search_venv(root: &Path, tried: &mut Vec<String>) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let pattern = lib.join("python3*/site-packages/onnxruntime/capi/libonnxruntime.so*");
    let Ok(entries) = std::fs::read_dir(&lib) else {
        tried.push(format!("{}: no .venv/lib", pattern.display()));
        return None;
    };
    let mut pythons: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    let mut found_any = false;
    for python in pythons {
        let capi = python.join("site-packages/onnxruntime/capi");
        let Ok(files) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut libs: Vec<PathBuf> = files
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
            })
            .collect();
        // Newest name last; prefer the expected version, then an unversioned name.
        libs.sort();
        for candidate in libs.iter().rev() {
            found_any = true;
            if let Some(path) = check_candidate(candidate, tried, "search") {
                return Some(path);
            }
        }
    }
    if !found_any {
        tried.push(format!("{}: no match", pattern.display()));
    }
    None
}

/// `1.31.1` from `libonnxruntime.so.1.31.1`; `None` for an unversioned name.
fn version_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let v = name.strip_prefix("libonnxruntime.so.")?;
    (!v.is_empty()).then(|| v.to_owned())
}

fn is_expected_version(version: &str) -> bool {
    version == EXPECTED_ORT_VERSION || version.starts_with(&format!("{EXPECTED_ORT_VERSION}."))
}

struct Loaded {
    env: Environment,
    path: PathBuf,
}

// ort allows one environment per process; a failed attempt leaves this empty so it can be retried.
static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library on first use.
/// Later calls reuse it; an explicit path different from the loaded one is logged and ignored
/// (a process cannot hold two ONNX Runtimes).
///
/// # Errors
/// [`LibraryError`] when the library cannot be found or loaded.
pub fn environment(explicit: Option<&Path>) -> Result<(Environment, PathBuf), LibraryError> {
    let mut guard = RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(loaded) = guard.as_ref() {
        if let Some(path) = explicit {
            // Still report a config that points nowhere, even though a library is loaded.
            find_library(Some(path))?;
            if path != loaded.path {
                tracing::warn!(requested = %path.display(), loaded = %loaded.path.display(),
                    "ONNX Runtime already loaded in this process; using the loaded library");
            }
        }
        return Ok((loaded.env.clone(), loaded.path.clone()));
    }
    let found = find_library(explicit)?;
    let load_err = |reason: String| LibraryError::Load {
        path: found.path.clone(),
        reason,
    };
    let builder = ort::init_from(&found.path).map_err(|e| load_err(e.to_string()))?;
    let env = builder
        .with_name("forgeline")
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    tracing::info!(path = %found.path.display(), via = found.via, "loaded ONNX Runtime");
    *guard = Some(Loaded {
        env: env.clone(),
        path: found.path.clone(),
    });
    Ok((env, found.path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_venv_library_from_the_crate_dir() {
        // cargo runs tests in the crate dir; the project venv is two levels up.
        if std::env::var_os(ORT_DYLIB_ENV).is_some() {
            return; // The variable wins by design; covered by the integration tests.
        }
        let found = find_library(None).unwrap();
        assert_eq!(found.via, "search");
        assert!(
            found
                .path
                .to_string_lossy()
                .contains("libonnxruntime.so.1.31"),
            "{found:?}"
        );
    }

    #[test]
    fn explicit_missing_path_names_the_path_and_version() {
        let err = find_library(Some(Path::new("/nonexistent/libonnxruntime.so.1.31.1")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/libonnxruntime.so.1.31.1"),
            "{err}"
        );
        assert!(err.contains("1.31.x"), "{err}");
    }

    #[test]
    fn wrong_version_in_file_name_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("forgeline-inference-ver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libonnxruntime.so.1.20.0");
        std::fs::write(&lib, b"not a library").unwrap();
        let err = find_library(Some(&lib)).unwrap_err().to_string();
        assert!(err.contains("version 1.20.0, expected 1.31.x"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions_are_parsed_from_file_names() {
        assert_eq!(
            version_from_name(Path::new("/x/libonnxruntime.so.1.31.1")).as_deref(),
            Some("1.31.1")
        );
        assert_eq!(version_from_name(Path::new("/x/libonnxruntime.so")), None);
        assert!(
            is_expected_version("1.31.1")
                && !is_expected_version("1.310.0")
                && !is_expected_version("1.3")
        );
    }
}
