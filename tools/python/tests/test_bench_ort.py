"""bench_ort: the Python baseline of `forgeline bench-model` prints the agreed JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from forgeline_ml import bench_ort

MODEL = Path(__file__).resolve().parents[3] / "operators/inference/tests/data/classifier-tiny/model.fp32.onnx"


def test_prints_percentiles_and_the_first_output(tmp_path, capsys):
    x = np.linspace(-1, 1, 2 * 30, dtype="<f4")
    (tmp_path / "x.f32").write_bytes(x.tobytes())
    args = ["--model", str(MODEL), "--input", str(tmp_path / "x.f32"), "--shape", "2,30", "--runs", "50", "--warmup", "5"]
    assert bench_ort.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == 50 and out["batch"] == 2
    assert 0 < out["p50_ns"] <= out["p95_ns"] <= out["p99_ns"] <= out["p999_ns"] <= out["max_ns"]
    assert out["throughput_rows_per_s"] > 0 and out["onnxruntime"].startswith("1.31")
    assert 0.0 <= out["first_output"] <= 1.0  # a class probability


def test_wrong_input_size_is_refused(tmp_path, capsys):
    (tmp_path / "x.f32").write_bytes(np.zeros(29, dtype="<f4").tobytes())
    args = ["--model", str(MODEL), "--input", str(tmp_path / "x.f32"), "--shape", "1,30"]
    assert bench_ort.main(args) == 2
    assert "needs 30" in capsys.readouterr().err


def test_nearest_rank_matches_the_rust_rule():
    samples = list(range(1, 101))
    assert [bench_ort.nearest_rank(samples, q) for q in (0.5, 0.95, 0.99)] == [50, 95, 99]
