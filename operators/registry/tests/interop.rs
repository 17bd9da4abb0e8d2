//! Compatibility with the reference `minisign` tool, both ways.
//!
//! `tests/data/minisign-cli/` was made with the minisign 0.11 CLI: `minisign -G -W` (a
//! test-only unencrypted key) and `minisign -S` over a manifest written with `sha256sum`/`stat`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use forgeline_registry::{KeyId, SigningKey, TrustedKeys, Version, sign, verify};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minisign-cli")
}

fn cli_key_id() -> KeyId {
    KeyId::try_from("57D32DCDCE17560E".to_string()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn package_signed_by_the_minisign_cli_verifies() {
    let mut trusted = TrustedKeys::new();
    assert_eq!(
        trusted.add_file(data().join("cli.pub")).unwrap(),
        cli_key_id()
    );
    let id = verify(data().join("package"), &trusted).unwrap();
    assert_eq!(id.name, "cli-signed");
    assert_eq!(id.version, Version::new(0, 3, 0));
    assert_eq!(id.key_id, cli_key_id());
}

#[test]
fn secret_key_made_by_the_minisign_cli_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("pkg");
    copy_dir(&data().join("package"), &pkg);
    fs::write(pkg.join("weights.bin"), b"retrained").unwrap();
    let sk = SigningKey::load(data().join("cli-test-only.key"), None).unwrap();
    assert_eq!(sk.key_id(), cli_key_id());
    sign(&pkg, &sk).unwrap();
    let mut trusted = TrustedKeys::new();
    trusted.add_file(data().join("cli.pub")).unwrap();
    verify(&pkg, &trusted).unwrap();
}

#[test]
fn corrupt_key_without_checksum_is_refused() {
    // Same shape as the CLI's unencrypted key (zero checksum) but one seed byte changed.
    use base64::Engine as _;
    let text = fs::read_to_string(data().join("cli-test-only.key")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(&lines[1]).unwrap();
    bytes[70] ^= 0x01;
    lines[1] = engine.encode(&bytes);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("corrupt.key");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = SigningKey::load(&path, None).unwrap_err();
    assert!(err.to_string().contains("corrupt.key"), "{err}");
}

#[test]
#[ignore = "the CLI's scrypt parameters need 1 GiB of memory and ~18 s in a debug build; run with --ignored"]
fn encrypted_secret_key_made_by_the_minisign_cli_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("pkg");
    copy_dir(&data().join("package"), &pkg);
    let key = data().join("cli-encrypted-test-only.key");
    assert!(SigningKey::load(&key, Some("not it")).is_err());
    let sk = SigningKey::load(&key, Some("pw")).unwrap();
    let id = sign(&pkg, &sk).unwrap();
    let mut trusted = TrustedKeys::new();
    assert_eq!(
        trusted.add_file(data().join("cli-encrypted.pub")).unwrap(),
        id.key_id
    );
    verify(&pkg, &trusted).unwrap();
}

/// Needs the `minisign` CLI (Debian package `minisign`, installed by `scripts/setup.sh`): fails
/// without it, naming the fix, or skips with `FORGELINE_ALLOW_MISSING_PEERS=1`.
#[test]
fn minisign_cli_verifies_our_signature() {
    if Command::new("minisign").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("FORGELINE_ALLOW_MISSING_PEERS").is_some(),
            "the minisign CLI is not on PATH: run scripts/setup.sh (or `apt-get install minisign`); \
             set FORGELINE_ALLOW_MISSING_PEERS=1 to skip this test instead"
        );
        eprintln!("SKIPPED: minisign CLI not on PATH");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (sk, _) = common::keys(tmp.path(), "k");
    let pkg = common::fake_model(&tmp.path().join("m"), "press", "1.0.0");
    sign(&pkg, &sk).unwrap();
    let check = |manifest: &str| {
        Command::new("minisign")
            .args(["-V", "-q", "-p"])
            .arg(tmp.path().join("k/forgeline.pub"))
            .arg("-m")
            .arg(pkg.join(manifest))
            .arg("-x")
            .arg(pkg.join("manifest.sig"))
            .output()
            .unwrap()
    };
    let out = check("manifest.sha256");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it refuses an altered manifest, so the check above means something.
    let mut m = fs::read(pkg.join("manifest.sha256")).unwrap();
    m[70] ^= 1;
    fs::write(pkg.join("altered"), m).unwrap();
    assert!(!check("altered").status.success());
    // The CLI also signs with a secret key written by generate_keypair.
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(tmp.path().join("k/forgeline.key"))
        .arg("-m")
        .arg(pkg.join("altered"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
