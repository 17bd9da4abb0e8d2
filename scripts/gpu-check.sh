#!/usr/bin/env bash
# GPU check of the ONNX Runtime execution providers from the Rust binary (issue #5).
#
#   scripts/gpu-check.sh BIN ORT_LIBS OUT
#
# BIN      the forgeline binary built with the GPU providers:
#          cargo build --release -p forgeline --features cuda,tensorrt
# ORT_LIBS a directory holding the ONNX Runtime GPU libraries of the PyPI wheel
#          onnxruntime-gpu==1.31.1 (onnxruntime/capi/: libonnxruntime.so.1.31.1,
#          libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so,
#          libonnxruntime_providers_tensorrt.so)
# OUT      where to write the scored images and predictions
#
# Runs from the repository root on a machine with an NVIDIA GPU and its CUDA 13 / cuDNN 9
# libraries. It prints: the GPU; which libraries each provider still lacks; the optical graph's
# provider chain (tensorrt, cuda, openvino, cpu) scoring simulated images, with the log lines that
# say why each provider was skipped and which one ran, and the provider recorded in the
# predictions; then `forgeline bench-model` for both shipped models on each provider, so CUDA and
# CPU are measured by the same binary in the same run; last, when `.venv/bin/dora` exists and BIN
# is target/release/forgeline with the GPU libraries in the venv's onnxruntime/capi/ (nodes do
# not inherit this shell's environment; they find ONNX Runtime by the venv search), the optical
# line under a real dora daemon for LINE_SECONDS (default 60) per run: provider chain INT8, chain
# FP32, CPU-only INT8, each printing the PLC node's frame -> PLC latency.
# docs/performance.md ("GPU") has one run.
set -uo pipefail
bin=${1:?forgeline binary}
ort=${2:?directory with the onnxruntime-gpu libraries}
out=${3:?output directory}
export ORT_DYLIB_PATH="$ort/libonnxruntime.so.1.31.1"
export LD_LIBRARY_PATH="$ort${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$out"

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
echo "== libraries each provider lacks (none listed: all found)"
for p in cuda tensorrt; do
    echo "-- $p:"
    ldd "$ort/libonnxruntime_providers_$p.so" | grep "not found" || true
done

echo "== provider chain of graphs/optical_inspection.yml (forgeline score, 100 images)"
"$bin" simulate-images --out "$out/images" --good 60 --per-defect 10 >/dev/null
RUST_LOG=info,ort=warn "$bin" score graphs/optical_inspection.yml "$out/images" --out "$out/preds.jsonl" 2>&1 \
    | grep -iE "provider|skipp|error" | sed -E 's/\x1b\[[0-9;]*m//g' | head -20
echo "-- first prediction:"
head -n 1 "$out/preds.jsonl"
echo "-- providers recorded in the predictions:"
grep -oE '"provider":"[a-z]+"' "$out/preds.jsonl" | sort | uniq -c

echo "== bench-model, optical-defects, batch 1"
"$bin" bench-model models/optical-defects --providers tensorrt,cuda,cpu --no-python --runs 5000 --warmup 500
echo "== bench-model, optical-defects, batch 32"
"$bin" bench-model models/optical-defects --providers cuda,cpu --no-python --runs 1000 --warmup 100 --batch 32
echo "== bench-model, press-anomaly, batch 1"
"$bin" bench-model models/press-anomaly --providers cuda,cpu --no-python --runs 5000 --warmup 500

if [ -x .venv/bin/dora ]; then
    secs=${LINE_SECONDS:-60}
    sed -e 's#tick: dora/timer/millis/20#tick: dora/timer/millis/5#' -e 's#fps: 10  #fps: 30  #' \
        graphs/optical_inspection.yml > graphs/_gpu_optical.yml
    sed -e 's#variant: int8#variant: fp32#' graphs/_gpu_optical.yml > graphs/_gpu_optical_fp32.yml
    sed -e 's#providers: \[tensorrt, cuda, openvino, cpu\]#providers: [cpu]#' graphs/_gpu_optical.yml \
        > graphs/_gpu_optical_cpu.yml
    for g in _gpu_optical _gpu_optical_fp32 _gpu_optical_cpu; do
        echo "== optical line under dora, 30 parts/s, ${secs} s: graphs/$g.yml"
        timeout $((secs + 60)) .venv/bin/dora run "graphs/$g.yml" --stop-after "${secs}s" 2>&1 \
            | grep -E "LATENCY|model loaded|ERROR|panicked" \
            | sed -E 's/.*(LATENCY|model loaded|ERROR|panicked)/\1/' | cut -c1-200
    done
fi
