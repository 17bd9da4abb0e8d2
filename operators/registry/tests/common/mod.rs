//! Helpers shared by the integration tests: keys and small model directories.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};

use forgeline_registry::{SigningKey, TrustedKeys, generate_keypair};

/// A key pair in `dir/<tag>/`: the signing key and a trust set holding only its public key.
pub fn keys(dir: &Path, tag: &str) -> (SigningKey, TrustedKeys) {
    let kdir = dir.join(tag);
    let generated = generate_keypair(&kdir, None).unwrap();
    let sk = SigningKey::load(&generated.secret_key, None).unwrap();
    let mut trusted = TrustedKeys::new();
    trusted.add_file(&generated.public_key).unwrap();
    (sk, trusted)
}

/// A minimal model directory: `model.yml` with name and version, a weights file, a nested file.
pub fn fake_model(dir: &Path, name: &str, version: &str) -> PathBuf {
    fs::create_dir_all(dir.join("extra")).unwrap();
    fs::write(
        dir.join("model.yml"),
        format!("format: 1\nname: {name}\nversion: {version}\n"),
    )
    .unwrap();
    let weights: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    fs::write(dir.join("weights.bin"), weights).unwrap();
    fs::write(dir.join("extra/labels.txt"), "ok\nreject\n").unwrap();
    dir.to_path_buf()
}

/// The committed real model fixture of forgeline-inference.
pub fn press_tiny_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/tests/data/press-tiny")
}

/// A copy of press-tiny in `dir` with `name` and `version` rewritten: a valid model directory
/// for `ModelDir::load`, so the registry accepts it.
pub fn press_model(dir: &Path, name: &str, version: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(press_tiny_src()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let yml = fs::read_to_string(dir.join("model.yml")).unwrap();
    let mut out = String::new();
    for line in yml.lines() {
        if line.starts_with("name: ") {
            out.push_str(&format!("name: {name}\n"));
        } else if line.starts_with("version: ") {
            out.push_str(&format!("version: {version}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    fs::write(dir.join("model.yml"), out).unwrap();
    dir.to_path_buf()
}

/// A signed press model package at `<root>/pkg-<name>-<version>`.
pub fn signed_press(root: &Path, sk: &SigningKey, name: &str, version: &str) -> PathBuf {
    let dir = press_model(&root.join(format!("pkg-{name}-{version}")), name, version);
    forgeline_registry::sign(&dir, sk).unwrap();
    dir
}
