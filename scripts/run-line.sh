#!/usr/bin/env bash
# Sets up whatever is missing, then runs a production line under dora:
#
#   scripts/run-line.sh                              # graphs/stamping_press.yml
#   scripts/run-line.sh graphs/stamping_press.yml
#
# Starts a local dora coordinator + daemon (`dora up`) if none is running, starts the graph
# (`dora start … --attach`) and streams its logs. Ctrl-C (or `dora stop` in another shell)
# stops the line cleanly. Decisions land in graphs/out/decisions.jsonl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
graph=${1:-graphs/stamping_press.yml}
[ -f "$graph" ] || { echo "no such graph: $graph" >&2; exit 1; }

scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
target/release/forgeline check "$graph"

if ! dora list >/dev/null 2>&1; then
  dora up
fi
name=$(basename "$graph" .yml)
echo "[run] starting $graph as '$name' (Ctrl-C to stop)" >&2
exec dora start "$graph" --name "$name" --attach
