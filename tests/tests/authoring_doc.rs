//! docs/authoring-nodes.md is copy-paste correct: its files are the example's files, and its
//! commands build, check and run the example node in a graph under a real dora daemon.

use forgeline_tests::root;
use std::process::Command;

/// `(info string, body)` of every fenced block.
fn blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let mut body = String::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            out.push((info.to_owned(), body));
        }
    }
    out
}

#[test]
fn files_in_the_doc_are_the_example_files() {
    let doc = std::fs::read_to_string(root().join("docs/authoring-nodes.md")).unwrap();
    let mut checked = 0;
    for (info, body) in blocks(&doc) {
        if let Some(file) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            let on_disk = std::fs::read_to_string(root().join(file)).unwrap();
            assert_eq!(
                body, on_disk,
                "docs/authoring-nodes.md shows an outdated {file}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the doc must show the example's Cargo.toml and main.rs"
    );
}

#[test]
fn commands_in_the_doc_build_check_and_run_the_example() {
    let doc = std::fs::read_to_string(root().join("docs/authoring-nodes.md")).unwrap();
    let script: String = blocks(&doc)
        .into_iter()
        .filter(|(info, _)| info.trim() == "sh run")
        .map(|(_, body)| body)
        .collect();
    assert!(script.contains("dora run"), "no run command in the doc");
    assert!(
        script.contains("cargo build --release -p forgeline -p rms-gate"),
        "{script}"
    );
    // The test build has just built both binaries (`rms-gate` and `forgeline` have integration
    // tests); running the doc's `cargo build` here would rebuild every dependency with another
    // feature set (a package-only build unifies fewer features than the workspace's test build).
    // Every other command runs as written.
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .map(|l| format!("{l}\n"))
        .collect();
    for bin in ["target/release/rms-gate", "target/release/forgeline"] {
        assert!(root().join(bin).is_file(), "{bin} not built");
    }
    let out_dir = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(root())
        .env("DORA_LOG_DIR", out_dir.path())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "the doc's commands failed:\n{log}");
    assert!(
        log.contains("ok: examples/rms-gate/graph.yml"),
        "check did not pass:\n{log}"
    );
    // The gate ran as a node of the graph and strokes reached a decision through it.
    assert!(log.contains("gate"), "{log}");
    assert!(
        log.contains("stopped node=gate"),
        "the gate node did not run:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("stopped node=threshold") && l.contains("\"decision\":")),
        "no decision came through:\n{log}"
    );
}
