#!/usr/bin/env bash
# Sets up whatever is missing (scripts/setup.sh), then runs every test: all crates' unit and
# integration tests, the cross-crate tier that runs the real graphs under a real dora daemon
# with real peers (pymodbus as the PLC), and the Python tooling's tests. Idempotent.
#
# One release build serves everything: the graphs start target/release/forgeline, which cargo
# builds as part of the test build (the `forgeline` and `rms-gate` packages have integration
# tests), with the same features as every test, so no dependency is compiled twice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FORGELINE_SKIP_BUILD=1 scripts/setup.sh

echo "[test] Rust tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
  # --all-targets: the criterion benches run once each in test mode, so a bench that no longer
  # builds or panics fails CI; examples are built.
  cargo nextest run --release --locked --workspace --all-targets --no-tests=fail
else
  cargo test --release --locked --workspace --all-targets
fi

# The GPU execution providers are cargo features that no test build turns on; check that they
# still compile (about 30 s cold: only the inference crate and its few dependencies, in check
# mode). docs/inference.md says how they were run on a GPU.
echo "[test] GPU execution providers compile (cuda, tensorrt, openvino)" >&2
cargo check --release --locked -p forgeline-inference --features cuda,tensorrt,openvino

echo "[test] Python tooling tests" >&2
(cd tools/python && ../../.venv/bin/python -m pytest -q)
