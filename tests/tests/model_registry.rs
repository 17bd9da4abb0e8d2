//! `forgeline model …` end to end on a real model directory: keys, signing, install, activate,
//! rollback; tampered and unsigned packages are refused and never touch the active model.
#![allow(clippy::unwrap_used)]

use forgeline_tests::{root, run_forgeline};
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn sign_install_activate_rollback_and_refuse_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p).to_str().unwrap().to_owned();
    let fl = |args: &[&str]| run_forgeline(args, &root());
    let (keys, reg) = (t("keys"), t("reg"));
    let reg_args = ["--registry", reg.as_str()];

    assert!(fl(&["model", "keygen", "--dir", &keys]).0);
    std::fs::create_dir_all(tmp.path().join("reg/trusted-keys")).unwrap();
    std::fs::copy(
        tmp.path().join("keys/forgeline.pub"),
        tmp.path().join("reg/trusted-keys/forgeline.pub"),
    )
    .unwrap();

    // Two versions of the shipped model, each signed.
    for (dir, version) in [("v1", "1.0.0"), ("v2", "1.1.0")] {
        let pkg = tmp.path().join(dir);
        copy_dir(&root().join("models/press-anomaly"), &pkg);
        let yml = std::fs::read_to_string(pkg.join("model.yml")).unwrap();
        std::fs::write(
            pkg.join("model.yml"),
            yml.replacen("version: 1.0.0", &format!("version: {version}"), 1),
        )
        .unwrap();
        let (ok, _, err) = fl(&[
            "model",
            "sign",
            pkg.to_str().unwrap(),
            "--key",
            &t("keys/forgeline.key"),
        ]);
        assert!(ok, "{err}");
        let (ok, _, err) =
            fl(&[&["model", "install", pkg.to_str().unwrap()][..], &reg_args].concat());
        assert!(ok, "{err}");
    }
    let (ok, out, err) = fl(&[
        &["model", "activate", "press-anomaly", "1.1.0"][..],
        &reg_args,
    ]
    .concat());
    assert!(ok, "{err}");
    assert!(out.contains("active press-anomaly@1.1.0"), "{out}");
    let (ok, out, err) = fl(&[
        &["model", "activate", "press-anomaly", "1.0.0"][..],
        &reg_args,
    ]
    .concat());
    assert!(ok && out.contains("1.0.0"), "{err}");
    let (ok, out, err) = fl(&[
        &["model", "rollback", "press-anomaly", "--reason", "test"][..],
        &reg_args,
    ]
    .concat());
    assert!(ok, "{err}");
    assert!(out.contains("was Some(\"1.0.0\")"), "{out}");
    let active = tmp
        .path()
        .join("reg/active/press-anomaly")
        .join(format!("{}-cpu", std::env::consts::ARCH));
    let yml = std::fs::read_to_string(active.join("model.yml")).unwrap();
    assert!(
        yml.contains("version: 1.1.0"),
        "rollback must restore 1.1.0"
    );

    // Tampered: refused naming the file; the active model is untouched.
    let bad = tmp.path().join("bad");
    copy_dir(&tmp.path().join("v2"), &bad);
    let yml = std::fs::read_to_string(bad.join("model.yml")).unwrap();
    std::fs::write(
        bad.join("model.yml"),
        yml.replacen("version: 1.1.0", "version: 1.2.0", 1),
    )
    .unwrap();
    let (ok, _, err) = fl(&[&["model", "install", bad.to_str().unwrap()][..], &reg_args].concat());
    assert!(!ok);
    assert!(
        err.contains("model.yml") && err.contains("tampered"),
        "{err}"
    );
    // Unsigned: refused.
    let unsigned = tmp.path().join("unsigned");
    copy_dir(&root().join("models/press-anomaly"), &unsigned);
    let _ = std::fs::remove_file(unsigned.join("manifest.sig"));
    let (ok, _, err) = fl(&[
        &["model", "install", unsigned.to_str().unwrap()][..],
        &reg_args,
    ]
    .concat());
    assert!(!ok, "an unsigned package must be refused");
    assert!(err.to_lowercase().contains("sign"), "{err}");
    let yml = std::fs::read_to_string(active.join("model.yml")).unwrap();
    assert!(
        yml.contains("version: 1.1.0"),
        "a refused package must not touch the active model"
    );
}
