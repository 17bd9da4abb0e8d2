"""Latency of the ONNX Runtime Python API on one model: the baseline of `forgeline bench-model`.

Reads the same prebuilt input as the Rust side (raw little-endian f32, shape given), creates a
session with the same settings (CPU provider, intra/inter-op threads, graph optimisation level),
warms up, times `session.run` N times, and prints one JSON object on stdout:

    {"runs": N, "batch": B, "p50_ns": ..., "p95_ns": ..., "p99_ns": ..., "p999_ns": ...,
     "max_ns": ..., "throughput_rows_per_s": ..., "onnxruntime": "1.31.1", "first_output": x}

Usage: python -m forgeline_ml.bench_ort --model m.onnx --input x.f32 --shape 1,30 --runs 10000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import onnxruntime as ort

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "layout": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def nearest_rank(sorted_ns: list[int], q: float) -> int:
    """Nearest-rank percentile, the same rule as the Rust side (`latency::Latencies`)."""
    rank = min(max(math.ceil(q * len(sorted_ns)), 1), len(sorted_ns))
    return sorted_ns[rank - 1]


def bench(model: str, x: np.ndarray, runs: int, warmup: int, intra: int, inter: int, level: str) -> dict:
    """Warm up, then time `runs` calls of `session.run` on `x`."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = inter
    opts.graph_optimization_level = LEVELS[level]
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: x}
    for _ in range(warmup):
        session.run(None, feed)
    samples = [0] * runs
    clock = time.perf_counter_ns
    total0 = clock()
    for i in range(runs):
        t0 = clock()
        out = session.run(None, feed)
        samples[i] = clock() - t0
    total = clock() - total0
    samples.sort()
    return {
        "runs": runs,
        "batch": int(x.shape[0]),
        "p50_ns": nearest_rank(samples, 0.50),
        "p95_ns": nearest_rank(samples, 0.95),
        "p99_ns": nearest_rank(samples, 0.99),
        "p999_ns": nearest_rank(samples, 0.999),
        "max_ns": samples[-1],
        "throughput_rows_per_s": runs * x.shape[0] / (total / 1e9),
        "onnxruntime": ort.__version__,
        "first_output": float(np.asarray(out[0]).reshape(-1)[0]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="raw little-endian f32 values")
    p.add_argument("--shape", required=True, help="comma-separated, e.g. 1,30")
    p.add_argument("--runs", type=int, default=10000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--intra-threads", type=int, default=1)
    p.add_argument("--inter-threads", type=int, default=1)
    p.add_argument("--optimization-level", default="all", choices=sorted(LEVELS))
    a = p.parse_args(argv)
    shape = tuple(int(d) for d in a.shape.split(","))
    x = np.fromfile(a.input, dtype="<f4")
    if x.size != math.prod(shape):
        print(f"{a.input}: {x.size} values, shape {shape} needs {math.prod(shape)}", file=sys.stderr)
        return 2
    if a.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    result = bench(a.model, x.reshape(shape), a.runs, a.warmup, a.intra_threads, a.inter_threads, a.optimization_level)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
