//! `forgeline`: the built-in nodes of every line (`forgeline node <kind>`, one multi-call binary so
//! that CI and the edge box build and store one executable), plus the tools around them.

mod check;
mod registry;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "forgeline", version, about = "Edge-AI inspection lines on dora-rs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a built-in node (used by graphs: `path: …/forgeline`, `args: node <kind>`).
    Node {
        /// The node kind, e.g. `vibration-features`.
        kind: String,
        /// Validate the config in FORGELINE_CONFIG and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Validate graph files and every node's config.
    Check {
        /// Graph files to check.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        /// Do not run `dora validate --strict-types`.
        #[arg(long)]
        skip_dora: bool,
    },
    /// List the built-in node kinds.
    Nodes,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Node { kind, .. } => {
            let Some(node) = registry::find(&kind) else {
                eprintln!(
                    "error: unknown node kind `{kind}` (kinds: {})",
                    registry::names()
                );
                return ExitCode::from(2);
            };
            match (node.run)() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Check { graphs, skip_dora } => {
            let opts = check::CheckOptions { skip_dora };
            let mut errors = 0;
            for g in &graphs {
                let findings = check::check_graph(g, &opts);
                for f in &findings {
                    eprintln!("{f}");
                }
                let n = findings
                    .iter()
                    .filter(|f| f.level == check::Level::Error)
                    .count();
                if n == 0 {
                    println!("ok: {}", g.display());
                }
                errors += n;
            }
            if errors > 0 {
                eprintln!("{errors} error(s)");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Nodes => {
            for k in registry::kinds() {
                println!("{}", k.kind);
            }
            ExitCode::SUCCESS
        }
    }
}
