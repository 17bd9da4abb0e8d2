"""Tests of the optical CNN trainer on small synthetic part images (few epochs, 48 px)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgeline_ml import train_optical as t

SMALL = ["--epochs", "15", "--batch", "16", "--channels", "4,8,8,8", "--calibration", "40", "--created", "2026-01-01T00:00:00Z"]


def synthetic_parts(folder: Path, n: int = 120, size: int = 48, seed: int = 0) -> Path:
    """Textured grey parts; the defect half has a dark blob somewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size), np.uint8)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        img = 120 + 30 * np.sin(xx / rng.uniform(2, 5)) + rng.normal(0, 6, (size, size))
        if i % 2:
            labels[i] = 1
            cy, cx = rng.integers(6, size - 6, 2)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(6, 16)] = 20
        images[i] = np.clip(img, 0, 255)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", labels)
    (folder / "files.txt").write_text("\n".join(f"part_{i}.png" for i in range(n)))
    return folder


def test_backward_pass_matches_numerical_gradients():
    rng = np.random.default_rng(1)
    arch = t.Arch((3, 4, 4, 5))
    params = {k: v.astype(np.float64) for k, v in t.init_params(arch, rng).items()}
    x = t.front(rng.random((3, 32, 32))).astype(np.float64)
    y = np.array([0, 1, 1])
    cw = np.array([1.0, 2.0])
    _, grads = t.loss_and_grads(params, arch, x, y, cw)
    for key in ["conv0_w", "conv1_b", "conv3_w", "fc_w", "fc_b"]:
        idx = tuple(int(rng.integers(0, s)) for s in params[key].shape)
        old, h = params[key][idx], 1e-5
        params[key][idx] = old + h
        plus, _ = t.loss_and_grads(params, arch, x, y, cw)
        params[key][idx] = old - h
        minus, _ = t.loss_and_grads(params, arch, x, y, cw)
        params[key][idx] = old
        numeric = (plus - minus) / (2 * h)
        assert abs(numeric - grads[key][idx]) < 1e-4 * max(1.0, abs(numeric)), key


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("optical")
    data = synthetic_parts(root / "data")
    out = root / "model"
    meta = t.train(t.parse_args(["--images", str(data), "--out", str(out), "--seed", "5", *SMALL]))
    return data, out, meta


def test_model_directory_is_complete_and_consistent(trained):
    data, out, meta = trained
    doc = yaml.safe_load((out / "model.yml").read_text())
    assert doc["task"] == "classification"
    assert doc["labels"] == ["good", "defect"]
    assert doc["inputs"][0]["shape"] == [-1, 1, 48, 48]
    assert doc["inputs"][0]["layout"] == "nchw"
    assert 0.2 <= doc["thresholds"]["critical"] <= 0.8
    for variant in doc["variants"].values():
        blob = (out / variant["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == variant["sha256"]
        assert len(blob) == variant["size"] < 1_000_000
    assert doc["training"]["onnx_vs_numpy_max_abs"] < 1e-3
    assert doc["preprocess"] == {"resize": "stretch", "mean": [0.0], "std": [1.0]}
    assert not (out / "preprocess.yml").exists(), "preprocessing lives in model.yml (signed), not beside it"


def test_learns_the_synthetic_defects(trained):
    data, out, meta = trained
    images, labels, _ = t.load_prepared(data)
    p = t.run_onnx(out / "model.fp32.onnx", images)
    acc = t.balanced_accuracy(labels, (p[:, 1] >= meta["thresholds"]["critical"]).astype(int))
    assert acc >= 80.0, acc
    assert meta["int8_check"]["fp32"] >= 80.0


def test_same_seed_gives_the_same_onnx_bytes(trained, tmp_path):
    data, out, _ = trained
    again = tmp_path / "again"
    t.train(t.parse_args(["--images", str(data), "--out", str(again), "--seed", "5", *SMALL]))
    for name in ["model.fp32.onnx", "model.yml"]:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_refuses_a_set_without_both_classes(tmp_path):
    data = synthetic_parts(tmp_path / "data", n=10)
    np.save(data / "labels.npy", np.zeros(10, np.int64))
    with pytest.raises(SystemExit, match="at least 2 good and 2 defect"):
        t.train(t.parse_args(["--images", str(data), "--out", str(tmp_path / "m"), *SMALL]))
