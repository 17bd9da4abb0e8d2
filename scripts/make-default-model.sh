#!/usr/bin/env bash
# Rebuilds the shipped default press model (models/press-anomaly) from simulated normal strokes,
# reproducibly: fixed simulator seed, fixed training seed, fixed creation stamp.
# 3,600 normal strokes: the 15% calibration split (540 rows) and the INT8 calibration sample
# (1,000 of the 2,520 training rows) both hold >= 500 rows (issue #5).
#
#   scripts/make-default-model.sh
#
# Then checks it on a held-out set (another seed, every fault and sensor-fault family).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FL=${FORGELINE:-target/release/forgeline}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$FL" simulate --out "$work/train" --seed 1 --normal 3600
"$FL" train press --normal "$work/train" --out models/press-anomaly --seed 0 --version 1.0.0 \
  --graph graphs/stamping_press.yml -- --created 2026-11-25T00:00:00Z --quiet \
  --source "forgeline simulate --seed 1 --normal 3600"
"$FL" simulate --out "$work/heldout" --seed 2 --normal 400 --per-fault 40 --first-seq 100000
"$FL" score graphs/stamping_press.yml "$work/heldout" --out "$work/preds.jsonl"
"$FL" evaluate "$work/heldout" "$work/preds.jsonl"
