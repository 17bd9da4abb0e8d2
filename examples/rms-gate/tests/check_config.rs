//! The example node validates its own config (`--check-config`), which `forgeline check` uses.

use std::process::Command;

fn check(config: &str) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rms-gate"))
        .arg("--check-config")
        .env("FORGELINE_CONFIG", config)
        .env("FORGELINE_NODE_ID", "gate")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_good_config_passes_and_a_bad_one_names_node_and_field() {
    assert!(check("min_rms_g: 0.1\nmax_rms_g: 5.0\n").0);
    let (ok, err) = check("min_rms_g: 9.0\nmax_rms_g: 5.0\n");
    assert!(!ok);
    assert!(
        err.contains("node `gate`") && err.contains("min_rms_g"),
        "{err}"
    );
    let (ok, err) = check("max_rms: 5.0\n");
    assert!(!ok);
    assert!(err.contains("unknown field `max_rms`"), "{err}");
}
