//! `forgeline check`: every shipped graph validates (node configs and `dora validate
//! --strict-types`); a typo in a node's config key is reported with file, node and key.

use forgeline_tests::{root, run_forgeline};

#[test]
fn every_shipped_graph_validates() {
    let mut graphs: Vec<String> = std::fs::read_dir(root().join("graphs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") && !n.starts_with('_'))
        .map(|n| format!("graphs/{n}"))
        .collect();
    graphs.sort();
    assert!(graphs.iter().any(|g| g.ends_with("stamping_press.yml")));
    let args: Vec<&str> = std::iter::once("check")
        .chain(graphs.iter().map(String::as_str))
        .collect();
    let (ok, out, err) = run_forgeline(&args, &root());
    assert!(ok, "forgeline check failed:\n{out}\n{err}");
    for g in &graphs {
        assert!(
            out.contains(&format!("ok: {g}")),
            "{g} not reported ok:\n{out}"
        );
    }
    assert!(
        !err.contains("dora CLI not found"),
        "dora validate did not run:\n{err}"
    );
}

#[test]
fn a_config_typo_names_file_node_and_key() {
    let src = std::fs::read_to_string(root().join("graphs/stamping_press.yml")).unwrap();
    let typo = src.replacen("        from_model: true", "        from_modle: true", 1);
    assert_ne!(
        src, typo,
        "the threshold node's config moved; update this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yml");
    std::fs::write(&file, typo).unwrap();
    let (ok, out, err) = run_forgeline(&["check", "--skip-dora", file.to_str().unwrap()], &root());
    assert!(!ok, "a typo must fail the check:\n{out}\n{err}");
    let line = err
        .lines()
        .find(|l| l.contains("from_modle"))
        .unwrap_or_else(|| panic!("no line names the key:\n{err}"));
    assert!(line.contains("typo.yml"), "{line}");
    assert!(line.contains("node `threshold`"), "{line}");
    assert!(line.contains("unknown field"), "{line}");
}

#[test]
fn a_graph_wired_to_a_missing_output_is_refused() {
    let src = std::fs::read_to_string(root().join("graphs/stamping_press.yml")).unwrap();
    let bad = src.replacen("source: features/features", "source: features/feature", 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, bad).unwrap();
    let (ok, _out, err) = run_forgeline(&["check", "--skip-dora", file.to_str().unwrap()], &root());
    assert!(!ok);
    assert!(
        err.contains("node `inference`") && err.contains("no output `feature`"),
        "{err}"
    );
}
