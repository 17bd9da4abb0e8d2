//! `forgeline model update` end to end: a signed package with its reference set, served over
//! HTTP by a server that is not ours (Python's http.server on loopback), verified, validated on
//! the box, activated on probation; tampered and badly-validating packages are refused with the
//! reason and leave the active model alone; failed health checks during probation roll back by
//! themselves; the maximum-age policy alarms. Over HTTPS (a test CA and server certificate made
//! with the `openssl` CLI, Python's http.server wrapped in `ssl`): trusted only through
//! `--ca-cert`, an untrusted server is refused as a TLS verification failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forgeline_tests::model_box::ModelBox;
use forgeline_tests::{Guard, free_port, python, root, run_forgeline};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PROFILE: &str = "test-cpu";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn fl(args: &[&str]) -> (bool, String, String) {
    run_forgeline(args, &root())
}

/// The shipped model as `version`, with a reference set; `edit` runs before signing.
fn package(tmp: &Path, version: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let pkg = tmp.join(format!("pkg-{version}"));
    copy_dir(&root().join("models/press-anomaly"), &pkg);
    let yml = std::fs::read_to_string(pkg.join("model.yml")).unwrap();
    std::fs::write(
        pkg.join("model.yml"),
        yml.replacen("version: 1.0.0", &format!("version: {version}"), 1),
    )
    .unwrap();
    let p = pkg.to_str().unwrap();
    let (ok, out, err) = fl(&["model", "reference", p, "--per-label", "3"]);
    assert!(ok, "{out}{err}");
    edit(&pkg);
    let key = tmp.join("keys/forgeline.key");
    let (ok, _, err) = fl(&["model", "sign", p, "--key", key.to_str().unwrap()]);
    assert!(ok, "{err}");
    pkg
}

fn active(reg: &Path) -> String {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reg.join("registry.json")).unwrap()).unwrap();
    state["models"]["press-anomaly"]["slots"][PROFILE]["active"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn http_server(dir: &Path) -> (Guard, u16) {
    let port = free_port();
    let child = Command::new(python())
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    listening(Guard(child), port, "http.server")
}

/// `server` once it accepts connections on `port` (10 s at most).
fn listening(server: Guard, port: u16, what: &str) -> (Guard, u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, port);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what} did not start on port {port}");
}

#[test]
fn update_over_http_validates_activates_on_probation_and_rolls_back_on_failed_health() {
    // A key pair in `keys/` and a registry in `reg/` that trusts it.
    let tmp = ModelBox::new(PROFILE);
    let keys = tmp.dir().join("keys");
    let reg = tmp.dir().join("reg");
    let r = reg.to_str().unwrap();
    let reg_args = ["--registry", r, "--profile", PROFILE];
    let update = |source: &str| {
        let mut a = vec!["model", "update", source];
        a.extend(reg_args);
        fl(&a)
    };

    // 1.0.0 from a local package directory.
    let v1 = package(tmp.dir(), "1.0.0", |_| {});
    let (ok, out, err) = update(v1.to_str().unwrap());
    assert!(ok, "{out}{err}");
    assert!(out.contains("reference validation passed"), "{out}");
    assert_eq!(active(&reg), "1.0.0");

    // A tampered package (weights changed after signing) is refused; 1.0.0 stays active.
    let bad = package(tmp.dir(), "1.0.1", |_| {});
    let mut onnx = std::fs::read(bad.join("model.fp32.onnx")).unwrap();
    let n = onnx.len();
    onnx[n / 2] ^= 0x40;
    std::fs::write(bad.join("model.fp32.onnx"), onnx).unwrap();
    let (ok, out, err) = update(bad.to_str().unwrap());
    assert!(!ok, "tampered package accepted:\n{out}");
    assert!(
        err.contains("refused") && err.contains("model.fp32.onnx"),
        "{err}"
    );
    assert_eq!(active(&reg), "1.0.0");

    // Authentic but not good: its own reference scores do not reproduce (expected scores
    // shifted before signing), so validation refuses it; 1.0.0 stays active.
    let wrong = package(tmp.dir(), "1.0.2", |dir| {
        let path = dir.join("reference/reference.json");
        let mut set: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for scores in set["expected_scores"].as_object_mut().unwrap().values_mut() {
            let first = scores[0].as_f64().unwrap();
            scores[0] = serde_json::json!(first + 0.5);
        }
        std::fs::write(&path, set.to_string()).unwrap();
    });
    let (ok, out, err) = update(wrong.to_str().unwrap());
    assert!(!ok, "badly validating package accepted:\n{out}");
    assert!(
        err.contains("reference validation failed") && err.contains("row 0"),
        "{err}"
    );
    assert!(err.contains("active model is unchanged"), "{err}");
    assert_eq!(active(&reg), "1.0.0");
    assert!(!reg.join("store/press-anomaly/1.0.2").exists());

    // 1.1.0 published as a .tar on an HTTP server.
    let v2 = package(tmp.dir(), "1.1.0", |_| {});
    let serve = tmp.dir().join("serve");
    std::fs::create_dir_all(&serve).unwrap();
    let tar = serve.join("press-anomaly-1.1.0.tar");
    let (ok, _, err) = fl(&[
        "model",
        "pack",
        v2.to_str().unwrap(),
        "--out",
        tar.to_str().unwrap(),
        "--public-key",
        keys.join("forgeline.pub").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (_server, port) = http_server(&serve);
    let url = format!("http://127.0.0.1:{port}/press-anomaly-1.1.0.tar");
    let (ok, out, err) = update(&url);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("downloaded") && out.contains("on probation"),
        "{out}"
    );
    assert_eq!(active(&reg), "1.1.0");
    // A missing URL is refused with the server's answer.
    let (ok, _, err) = update(&format!("http://127.0.0.1:{port}/nope.tar"));
    assert!(!ok && err.contains("404"), "{err}");
    assert_eq!(active(&reg), "1.1.0");

    // Health failures during probation: the third rolls back to 1.0.0 by itself.
    let health = |status: &str, reason: &str| {
        let mut a = vec![
            "model",
            "health",
            status,
            "--name",
            "press-anomaly",
            "--reason",
            reason,
        ];
        a.extend(reg_args);
        fl(&a)
    };
    assert!(health("ok", "scores look normal").0);
    for i in 1..=2 {
        let (ok, out, err) = health("fail", &format!("no scores for 10 s ({i})"));
        assert!(ok, "{err}");
        assert!(out.contains(&format!("failure {i} of 3")), "{out}");
        assert_eq!(active(&reg), "1.1.0");
    }
    let (ok, out, err) = health("fail", "inference node crash-looping");
    assert!(ok, "{err}");
    assert!(out.contains("ROLLED BACK"), "{out}");
    assert_eq!(active(&reg), "1.0.0");
    let mut show = vec!["model", "show", "press-anomaly"];
    show.extend(reg_args);
    let (_, out, _) = fl(&show);
    assert!(
        out.contains("auto-rollback: 3 failed health check(s) during the probation of 1.1.0")
            && out.contains("inference node crash-looping"),
        "{out}"
    );

    // Maximum age: the shipped model was created 2026-11-25.
    let age = |days: &str| {
        let mut a = vec![
            "model",
            "check-age",
            "press-anomaly",
            "--max-age-days",
            days,
        ];
        a.extend(reg_args);
        Command::new(forgeline_tests::forgeline())
            .args(&a)
            .output()
            .unwrap()
    };
    let fresh = age("36500");
    assert!(fresh.status.success(), "{fresh:?}");
    let old = age("0.0001");
    assert_eq!(old.status.code(), Some(3), "{old:?}");
    assert!(String::from_utf8_lossy(&old.stderr).contains("ALARM"));
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the `openssl` command line tool (apt: openssl)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A private CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`), plus an unrelated CA (`other-ca.pem`), all in `dir`.
fn test_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (name, cn) in [
        ("ca", "forgeline test CA"),
        ("other-ca", "someone else's CA"),
    ] {
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        let (key, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
        );
        a.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &a);
    }
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &a);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// Python's http.server behind `ssl` (TLS with `cert`/`key`) serving `dir` on loopback.
fn https_server(dir: &Path, cert: &Path, key: &Path) -> (Guard, u16) {
    const SCRIPT: &str = r#"
import functools, http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    let port = free_port();
    let child = Command::new(python())
        .args(["-c", SCRIPT, &port.to_string()])
        .args([dir, cert, key])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    listening(Guard(child), port, "https server")
}

#[test]
fn update_over_https_verifies_the_server_against_the_given_ca() {
    // A key pair in `keys/` and a registry in `reg/` that trusts it.
    let tmp = ModelBox::new(PROFILE);
    let keys = tmp.dir().join("keys");
    let reg = tmp.dir().join("reg");
    let r = reg.to_str().unwrap();
    let update = |source: &str, extra: &[&str]| {
        let mut a = vec!["model", "update", source];
        a.extend(extra);
        a.extend(["--registry", r, "--profile", PROFILE]);
        fl(&a)
    };

    // 1.0.0 active from a local directory.
    let v1 = package(tmp.dir(), "1.0.0", |_| {});
    let (ok, out, err) = update(v1.to_str().unwrap(), &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(active(&reg), "1.0.0");

    // 1.1.0 as a .tar on an HTTPS server whose certificate a private CA signed.
    let v2 = package(tmp.dir(), "1.1.0", |_| {});
    let serve = tmp.dir().join("serve");
    std::fs::create_dir_all(serve.join("models")).unwrap();
    let (ok, _, err) = fl(&[
        "model",
        "pack",
        v2.to_str().unwrap(),
        "--out",
        serve.join("press-anomaly-1.1.0.tar").to_str().unwrap(),
        "--public-key",
        keys.join("forgeline.pub").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let pki = tmp.dir().join("pki");
    test_pki(&pki);
    let (_server, port) = https_server(&serve, &pki.join("server.pem"), &pki.join("server.key"));
    let url = format!("https://127.0.0.1:{port}/press-anomaly-1.1.0.tar");
    let ca = pki.join("ca.pem");
    let other = pki.join("other-ca.pem");

    // Untrusted: bundled roots only, or the wrong CA: refused as a TLS verification failure
    // naming the URL; nothing installed, 1.0.0 stays active.
    for extra in [vec![], vec!["--ca-cert", other.to_str().unwrap()]] {
        let (ok, out, err) = update(&url, &extra);
        assert!(!ok, "untrusted server accepted ({extra:?}):\n{out}");
        assert!(
            err.contains(&url) && err.contains("TLS verification") && err.contains("UnknownIssuer"),
            "{err}"
        );
        assert!(err.contains("active model is unchanged"), "{err}");
        assert_eq!(active(&reg), "1.0.0");
        assert!(!reg.join("store/press-anomaly/1.1.0").exists());
    }

    // Over the size limit: refused, naming the limit.
    let (ok, _, err) = update(
        &url,
        &["--ca-cert", ca.to_str().unwrap(), "--max-download-mb", "0"],
    );
    assert!(!ok && err.contains("limit of 0 bytes"), "{err}");
    // A redirect (http.server redirects a directory without its trailing slash): refused.
    let (ok, _, err) = update(
        &format!("https://127.0.0.1:{port}/models"),
        &["--ca-cert", ca.to_str().unwrap()],
    );
    assert!(
        !ok && err.contains("redirects are refused") && err.contains("/models/"),
        "{err}"
    );
    // A missing file: the server's status.
    let (ok, _, err) = update(
        &format!("https://127.0.0.1:{port}/nope.tar"),
        &["--ca-cert", ca.to_str().unwrap()],
    );
    assert!(!ok && err.contains("404"), "{err}");
    assert_eq!(active(&reg), "1.0.0");

    // Trusted through --ca-cert: downloaded, verified, validated, active on probation.
    let (ok, out, err) = update(&url, &["--ca-cert", ca.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("downloaded") && out.contains("on probation"),
        "{out}"
    );
    assert_eq!(active(&reg), "1.1.0");
    // The download's temporary file is gone.
    let leftovers: Vec<_> = std::fs::read_dir(reg.join(".downloads")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
