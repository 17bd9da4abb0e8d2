#!/usr/bin/env bash
# Rebuilds the shipped default optical model (models/optical-defects) from simulated part images,
# reproducibly: fixed simulator seed, fixed training seed, fixed creation stamp.
#
#   scripts/make-optical-model.sh
#
# 1,500 training images (700 good, 200 of each defect kind: scratch, crack, spot, missing;
# 300x300 grey, simulator seed 1), then a held-out check on 400 images of another seed
# (200 good, 50 per defect kind) with the line's own stages (`forgeline score`), FP32 and INT8.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FL=${FORGELINE:-target/release/forgeline}
EPOCHS=${EPOCHS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$FL" simulate-images --out "$work/train" --seed 1 --good 700 --per-defect 200
"$FL" train optical --images "$work/train" --out models/optical-defects --seed 0 --version 1.0.0 \
  -- --created 2026-11-26T00:00:00Z --source "simulated seed 1 (scripts/make-optical-model.sh)" --epochs "$EPOCHS"
"$FL" simulate-images --out "$work/heldout" --seed 2 --good 200 --per-defect 50 --first-seq 100000
"$FL" score graphs/optical_inspection.yml --model models/optical-defects "$work/heldout" --out "$work/preds.int8.jsonl"
echo "held-out, INT8 (the graph's variant):"
"$FL" evaluate "$work/heldout" "$work/preds.int8.jsonl"
# The same with the FP32 variant: a copy of the graph with `variant: fp32`.
sed 's/variant: int8/variant: fp32/' graphs/optical_inspection.yml > graphs/.optical_fp32.tmp.yml
trap 'rm -rf "$work" graphs/.optical_fp32.tmp.yml' EXIT
"$FL" score graphs/.optical_fp32.tmp.yml --model models/optical-defects "$work/heldout" --out "$work/preds.fp32.jsonl"
echo "held-out, FP32:"
"$FL" evaluate "$work/heldout" "$work/preds.fp32.jsonl"
