#!/usr/bin/env bash
# Rebuilds the shipped default press model (models/press-anomaly) from simulated normal strokes,
# reproducibly: fixed simulator seed, fixed training seed, fixed creation stamp.
#
#   scripts/make-default-model.sh
#
# Then checks it on a held-out set (another seed, every fault and sensor-fault family).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FL=${FORGELINE:-target/release/forgeline}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$FL" simulate --out "$work/train" --seed 1 --normal 600
"$FL" train press --normal "$work/train" --out models/press-anomaly --seed 0 --version 1.0.0 \
  --graph graphs/stamping_press.yml -- --created 2026-11-25T00:00:00Z --quiet
"$FL" simulate --out "$work/heldout" --seed 2 --normal 400 --per-fault 40 --first-seq 100000
"$FL" score graphs/stamping_press.yml "$work/heldout" --out "$work/preds.jsonl"
"$FL" evaluate "$work/heldout" "$work/preds.jsonl"
