"""Generate the tiny model directories that the Rust tests of forgeline-inference load.

    PYTHONPATH=tools/python python -m forgeline_ml.make_test_models operators/inference/tests/data

Writes, deterministically (fixed seeds and creation time):
  press-tiny/       anomaly autoencoder over 30 synthetic features, FP32 + INT8
  press-tiny-samples.csv  100 held-out normal strokes with their FP32 score from Python
  classifier-tiny/  softmax classifier (good / dent / crack) over 30 features, FP32 only
"""

from __future__ import annotations

import argparse
import csv as csv_module
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .data import FeatureTable, synthetic_feature_names, synthetic_normal_strokes, write_features_csv
from .quantize import run_onnx
from .model_dir import variant_entry, write_model_yml
from .train_press import parse_args, train

CREATED = "2025-01-01T00:00:00Z"
N_FEATURES = 30
N_TRAIN = 1200
N_SAMPLES = 100


def make_press_tiny(out: Path, samples_csv: Path) -> None:
    """A small anomaly model trained with the real pipeline on synthetic strokes, plus
    ``samples_csv``: held-out normal strokes with the FP32 score onnxruntime (Python) gives them,
    so the Rust tests can check their normalisation and scoring against it."""
    strokes = synthetic_normal_strokes(N_TRAIN + N_SAMPLES, N_FEATURES, seed=7)
    train_part = FeatureTable(strokes.names, strokes.files[:N_TRAIN], strokes.seqs[:N_TRAIN], strokes.values[:N_TRAIN])
    samples = strokes.values[N_TRAIN:]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "press-tiny-features.csv"
        write_features_csv(csv, train_part)
        args = parse_args(
            [
                "--features", str(csv), "--out", str(out), "--seed", "0", "--version", "0.1.0",
                "--name", "press-tiny", "--hidden", "64", "--bottleneck", "6", "--epochs", "60",
                "--created", CREATED,
            ]
        )
        meta = train(args)
    norm = meta["inputs"][0]["normalization"]
    standardised = (samples - np.asarray(norm["mean"])) / np.asarray(norm["std"])
    expected = run_onnx(out / "model.fp32.onnx", "features", standardised)
    with samples_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["file", "seq", *strokes.names, "fp32_score"])
        for i, (row, score) in enumerate(zip(samples, expected)):
            writer.writerow([strokes.files[N_TRAIN + i], N_TRAIN + i, *(repr(float(v)) for v in row), repr(float(score))])


def make_classifier_tiny(out: Path) -> None:
    """Softmax regression with fixed random weights; only its wiring matters to the tests."""
    rng = np.random.default_rng(11)
    labels = ["good", "dent", "crack"]
    w = rng.normal(size=(N_FEATURES, len(labels))).astype(np.float32)
    b = np.array([1.0, 0.0, -0.5], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "weight", "bias"], ["logits"], name="Gemm"),
            helper.make_node("Softmax", ["logits"], ["probabilities"], name="Softmax", axis=1),
        ],
        "classifier_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(labels)])],
        initializer=[numpy_helper.from_array(w, "weight"), numpy_helper.from_array(b, "bias")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="forgeline_ml")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out / "model.fp32.onnx"))
    meta = {
        "name": "classifier-tiny",
        "version": "0.1.0",
        "created": CREATED,
        "task": "classification",
        "feature_set": "press-v1",
        "inputs": [
            {
                "name": "input",
                "shape": [-1, N_FEATURES],
                "dtype": "f32",
                "features": synthetic_feature_names(N_FEATURES),
                "normalization": {"mean": [0.0] * N_FEATURES, "std": [1.0] * N_FEATURES},
            }
        ],
        "outputs": [{"name": "probabilities", "shape": [-1, len(labels)], "dtype": "f32"}],
        "variants": {"fp32": variant_entry(out, "model.fp32.onnx")},
        "default_variant": "fp32",
        "thresholds": {"warning": 0.5, "critical": 0.9},
        "labels": labels,
        "training": {"source": "fixed random weights (test fixture)", "seed": 11},
    }
    write_model_yml(out, meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="forgeline_ml.make_test_models", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="directory to hold press-tiny/ and classifier-tiny/")
    args = p.parse_args(argv)
    make_press_tiny(args.out / "press-tiny", args.out / "press-tiny-samples.csv")
    make_classifier_tiny(args.out / "classifier-tiny")
    print(f"wrote {args.out / 'press-tiny'} and {args.out / 'classifier-tiny'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
