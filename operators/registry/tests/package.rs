//! Signing and verification of model packages: each refusal is the right one and names the file.

mod common;

use std::fs;

use common::{fake_model, keys, press_model};
use forgeline_registry::{
    FileProblem, MANIFEST_FILE, PackageError, SIGNATURE_FILE, TrustedKeys, Version, pack, sign,
    unpack, verify,
};

#[test]
fn sign_then_verify_gives_the_identity_and_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "press-anomaly", "1.2.0");
    let signed = sign(&dir, &sk).unwrap();
    let verified = verify(&dir, &trusted).unwrap();
    assert_eq!(signed, verified);
    assert_eq!(verified.name, "press-anomaly");
    assert_eq!(verified.version, Version::new(1, 2, 0));
    assert_eq!(verified.key_id, sk.key_id());

    let manifest = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
    let paths: Vec<&str> = manifest
        .lines()
        .skip(1)
        .map(|l| l.rsplit("  ").next().unwrap())
        .collect();
    assert_eq!(paths, ["extra/labels.txt", "model.yml", "weights.bin"]);

    // minisign's signature file: untrusted comment, signature, trusted comment, global signature.
    let sig = fs::read_to_string(dir.join(SIGNATURE_FILE)).unwrap();
    let lines: Vec<&str> = sig.lines().collect();
    assert_eq!(lines.len(), 4, "{sig}");
    assert!(lines[0].starts_with("untrusted comment: "));
    assert!(
        lines[1].starts_with("RU"),
        "prehashed Ed25519 (\"ED\") base64: {}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "trusted comment: forgeline-model press-anomaly 1.2.0"
    );
}

#[test]
fn signing_again_after_a_change_gives_a_package_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    let first = sign(&dir, &sk).unwrap();
    fs::write(dir.join("weights.bin"), b"retrained").unwrap();
    let second = sign(&dir, &sk).unwrap();
    assert_ne!(first.manifest_sha256, second.manifest_sha256);
    assert_eq!(verify(&dir, &trusted).unwrap(), second);
}

#[test]
fn tampered_file_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    let path = dir.join("weights.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0x01; // one bit, same size
    fs::write(&path, bytes).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    let msg = err.to_string();
    let PackageError::Contents { problems, .. } = err else {
        panic!("{msg}")
    };
    assert!(
        matches!(&problems[..], [FileProblem::Modified { path, .. }] if path == "weights.bin"),
        "{problems:?}"
    );
    assert!(msg.contains("weights.bin: tampered"), "{msg}");
}

#[test]
fn truncated_file_is_refused_as_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("weights.bin"))
        .unwrap();
    f.set_len(1000).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    let PackageError::Contents { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        problems,
        &[FileProblem::Truncated {
            path: "weights.bin".into(),
            expected: 4096,
            actual: 1000
        }]
    );
    assert!(
        err.to_string()
            .contains("truncated (1000 bytes, the manifest says 4096)")
    );
}

#[test]
fn missing_and_extra_files_are_all_reported_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    fs::remove_file(dir.join("extra/labels.txt")).unwrap();
    fs::write(dir.join("backdoor.onnx"), b"x").unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    let PackageError::Contents { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        problems,
        &[
            FileProblem::Missing {
                path: "extra/labels.txt".into()
            },
            FileProblem::Extra {
                path: "backdoor.onnx".into()
            },
        ]
    );
}

#[test]
fn unsigned_package_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    let err = verify(&dir, &trusted).unwrap_err();
    assert!(matches!(err, PackageError::Unsigned { .. }), "{err}");
    assert!(err.to_string().contains("manifest.sig is missing"), "{err}");
}

#[test]
fn signature_without_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    assert!(matches!(err, PackageError::MissingManifest { .. }), "{err}");
}

#[test]
fn signature_by_an_untrusted_key_is_refused_naming_both_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, _) = keys(tmp.path(), "vendor");
    let (other_sk, other_trusted) = keys(tmp.path(), "plant");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    let err = verify(&dir, &other_trusted).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, PackageError::UntrustedKey { key_id, .. } if *key_id == sk.key_id()),
        "{msg}"
    );
    assert!(msg.contains(&sk.key_id().to_string()), "{msg}");
    assert!(msg.contains(&other_sk.key_id().to_string()), "{msg}");
    // An empty trust set refuses everything.
    assert!(matches!(
        verify(&dir, &TrustedKeys::new()),
        Err(PackageError::UntrustedKey { .. })
    ));
}

#[test]
fn re_hashed_manifest_without_the_key_is_a_bad_signature() {
    // An attacker who swaps a file and rewrites the manifest to match cannot re-sign it.
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    fs::write(dir.join("weights.bin"), b"evil").unwrap();
    let forged = forgeline_registry::Manifest::compute(&dir)
        .unwrap()
        .render();
    fs::write(dir.join(MANIFEST_FILE), forged).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    assert!(matches!(err, PackageError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("manifest.sha256"), "{err}");
}

#[test]
fn altered_trusted_comment_is_a_bad_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    let sig = fs::read_to_string(dir.join(SIGNATURE_FILE)).unwrap();
    let altered = sig.replace("forgeline-model m 1.0.0", "forgeline-model m 9.9.9");
    assert_ne!(sig, altered);
    fs::write(dir.join(SIGNATURE_FILE), altered).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    assert!(matches!(err, PackageError::BadSignature { .. }), "{err}");
}

#[test]
fn garbage_or_truncated_signature_is_malformed() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    let sig = fs::read_to_string(dir.join(SIGNATURE_FILE)).unwrap();
    fs::write(dir.join(SIGNATURE_FILE), &sig[..sig.len() / 3]).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    assert!(
        matches!(err, PackageError::MalformedSignature { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("manifest.sig"), "{err}");
}

#[test]
fn truncated_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "1.0.0");
    sign(&dir, &sk).unwrap();
    let m = fs::read(dir.join(MANIFEST_FILE)).unwrap();
    fs::write(dir.join(MANIFEST_FILE), &m[..m.len() - 20]).unwrap();
    let err = verify(&dir, &trusted).unwrap_err();
    assert!(matches!(err, PackageError::BadSignature { .. }), "{err}");
}

#[test]
fn model_yml_without_a_semver_version_cannot_be_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, _) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "latest");
    let err = sign(&dir, &sk).unwrap_err();
    assert!(matches!(err, PackageError::ModelIdentity { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.yml") && msg.contains("\"latest\""),
        "{msg}"
    );
    assert!(!dir.join(SIGNATURE_FILE).exists());
}

#[test]
fn real_model_signs_and_still_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = press_model(&tmp.path().join("m"), "press-tiny", "0.1.0");
    sign(&dir, &sk).unwrap();
    let id = verify(&dir, &trusted).unwrap();
    assert_eq!(
        (id.name.as_str(), id.version.to_string()),
        ("press-tiny", "0.1.0".into())
    );
    // Extra files beside the ONNX variants do not bother ModelDir::load.
    forgeline_inference::ModelDir::load(&dir).unwrap();
}

#[test]
fn tar_pack_unpack_round_trip_is_deterministic_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let (sk, trusted) = keys(tmp.path(), "k");
    let dir = fake_model(&tmp.path().join("m"), "m", "2.0.0");
    sign(&dir, &sk).unwrap();
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    pack(&dir, &trusted, &a).unwrap();
    pack(&dir, &trusted, &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let id = unpack(&a, tmp.path().join("out"), &trusted).unwrap();
    assert_eq!(id.version, Version::new(2, 0, 0));
    assert_eq!(
        fs::read(tmp.path().join("out/extra/labels.txt")).unwrap(),
        b"ok\nreject\n"
    );
    // A tar cut short in transit is refused.
    let bytes = fs::read(&a).unwrap();
    let cut = tmp.path().join("cut.tar");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(unpack(&cut, tmp.path().join("out2"), &trusted).is_err());
}

#[test]
fn tar_with_a_path_escaping_the_package_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, trusted) = keys(tmp.path(), "k");
    let evil = tmp.path().join("evil.tar");
    let mut builder = tar::Builder::new(fs::File::create(&evil).unwrap());
    let mut header = tar::Header::new_gnu();
    let data = b"pwned";
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    // set_path refuses "..", so write the name bytes directly as an attacker would.
    header.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../escaped");
    header.set_cksum();
    builder.append(&header, &data[..]).unwrap();
    builder.into_inner().unwrap();
    let err = unpack(&evil, tmp.path().join("out"), &trusted).unwrap_err();
    assert!(
        matches!(err, PackageError::UnsafeArchiveEntry { .. }),
        "{err}"
    );
    assert!(!tmp.path().join("escaped").exists());
}
