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

# A cold test build writes about 7 GB under the target dir; a full disk otherwise shows up as
# a linker "Bus error" or "No space left on device" deep in the build. Say it first.
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
# Advisory only: a df or du that fails (a file vanishing under a concurrent build) skips it.
free_kb=$(df -Pk "$target_dir" 2>/dev/null | awk 'NR == 2 { print $4 }') || free_kb=
used_kb=$(du -sk "$target_dir" 2>/dev/null | awk '{ print $1 }') || used_kb=0
need_kb=$(( 7 * 1024 * 1024 - ${used_kb:-0} ))
if [ -n "$free_kb" ] && [ "$free_kb" -lt "$need_kb" ]; then
  printf '[test] warning: %s MB free on the filesystem of %s, and the test build may need %s MB more (a cold build writes about 7 GB): free some space or set CARGO_TARGET_DIR\n' \
    "$(( free_kb / 1024 ))" "$target_dir" "$(( need_kb / 1024 ))" >&2
fi

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
