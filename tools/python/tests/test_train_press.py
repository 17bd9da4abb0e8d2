"""Tests of the press training pipeline on synthetic features (small model, few epochs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgeline_ml import train_press
from forgeline_ml.data import (
    FeatureFileError,
    inject_anomalies,
    read_features_csv,
    synthetic_normal_strokes,
    write_features_csv,
)
from forgeline_ml.quantize import run_onnx

SMALL = ["--hidden", "48", "--bottleneck", "4", "--epochs", "80", "--created", "2025-01-01T00:00:00Z"]


@pytest.fixture(scope="module")
def features_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("features") / "features.csv"
    write_features_csv(path, synthetic_normal_strokes(900, n_features=12, seed=3))
    return path


@pytest.fixture(scope="module")
def trained(features_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "press"
    assert train_press.main(["--features", str(features_csv), "--out", str(out), *SMALL]) == 0
    return out


def load_meta(model_dir: Path) -> dict:
    return yaml.safe_load((model_dir / "model.yml").read_text())


def test_model_yml_lists_files_with_matching_sha256_and_size(trained):
    meta = load_meta(trained)
    assert meta["format"] == 1 and meta["task"] == "anomaly"
    assert set(meta["variants"]) == {"fp32", "int8"} and meta["default_variant"] == "int8"
    for entry in meta["variants"].values():
        data = (trained / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size"]
    inp = meta["inputs"][0]
    assert inp["shape"] == [-1, 12] and len(inp["features"]) == 12
    assert len(inp["normalization"]["mean"]) == 12 and min(inp["normalization"]["std"]) > 0


def test_thresholds_and_quantiles_are_ordered(trained):
    meta = load_meta(trained)
    q = meta["calibration"]["quantiles"]
    values = [q[k] for k in ("p50", "p90", "p99", "p99_5", "p99_9", "max")]
    assert values == sorted(values)
    t = meta["thresholds"]
    assert q["max"] < t["warning"] < t["critical"]
    assert t["warning"] == pytest.approx(q["max"] * meta["calibration"]["warning_margin"])


def test_int8_check_is_recorded(trained):
    check = load_meta(trained)["int8_check"]
    assert check["accepted"] and check["drop_points"] <= 1.5
    assert check["size_ratio"] == pytest.approx(check["fp32_size"] / check["int8_size"])
    assert check["calibration_rows"] == load_meta(trained)["training"]["train_rows"]  # < 500 rows: all used
    assert check["score_correlation"] > 0.9


def test_onnx_scores_one_float_per_row_and_flags_faults(trained, features_csv):
    meta = load_meta(trained)
    table = read_features_csv(features_csv)
    norm = meta["inputs"][0]["normalization"]
    x = (table.values[:200] - np.asarray(norm["mean"])) / np.asarray(norm["std"])
    for variant in ("fp32", "int8"):
        scores = run_onnx(trained / meta["variants"][variant]["file"], "features", x)
        assert scores.shape == (200,)
        faulty = run_onnx(trained / meta["variants"][variant]["file"], "features", inject_anomalies(x, seed=9))
        assert np.mean(faulty > meta["thresholds"]["warning"]) > 0.9
        assert np.mean(scores > meta["thresholds"]["warning"]) < 0.05


def test_same_seed_gives_identical_files_and_another_seed_does_not(features_csv, tmp_path, trained):
    again = tmp_path / "again"
    other = tmp_path / "other"
    assert train_press.main(["--features", str(features_csv), "--out", str(again), *SMALL]) == 0
    assert train_press.main(["--features", str(features_csv), "--out", str(other), "--seed", "1", *SMALL]) == 0
    for name in ("model.fp32.onnx", "model.int8.onnx", "model.yml"):
        assert (again / name).read_bytes() == (trained / name).read_bytes(), name
    assert (other / "model.fp32.onnx").read_bytes() != (trained / "model.fp32.onnx").read_bytes()


def test_int8_drop_over_limit_fails_or_falls_back(features_csv, tmp_path, capsys):
    strict = ["--features", str(features_csv), *SMALL, "--max-int8-drop", "-1"]
    assert train_press.main([*strict, "--out", str(tmp_path / "strict")]) == 3
    assert "quantization-aware training" in capsys.readouterr().err
    assert not (tmp_path / "strict" / "model.yml").exists()
    assert train_press.main([*strict, "--out", str(tmp_path / "fallback"), "--allow-fp32-fallback"]) == 0
    meta = load_meta(tmp_path / "fallback")
    assert meta["default_variant"] == "fp32" and set(meta["variants"]) == {"fp32"}
    assert not meta["int8_check"]["accepted"]
    assert not (tmp_path / "fallback" / "model.int8.onnx").exists()


def test_bad_csv_is_refused_with_line_and_column(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("file,seq,rms,peak\na.wav,0,1.0,2.0\na.wav,1,nan,2.0\n")
    with pytest.raises(FeatureFileError, match=r"bad.csv:3: column 'rms'"):
        read_features_csv(path)
    assert train_press.main(["--features", str(path), "--out", str(tmp_path / "m")]) == 2
    assert "bad.csv:3" in capsys.readouterr().err


def test_header_must_start_with_file_and_seq(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("seq,file,rms\n0,a,1\n")
    with pytest.raises(FeatureFileError, match="expected 'file,seq"):
        read_features_csv(path)


def test_bad_version_is_refused(features_csv, tmp_path, capsys):
    assert train_press.main(["--features", str(features_csv), "--out", str(tmp_path), "--version", "1.0"]) == 2
    assert "semver" in capsys.readouterr().err


def test_split_keeps_recordings_together():
    files = [f"f{i // 30}" for i in range(600)]
    s = train_press.split_rows(files, seed=0)
    assert s.by_file
    groups = [{files[i] for i in idx} for idx in (s.train, s.calibration, s.validation)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sorted(np.concatenate([s.train, s.calibration, s.validation]).tolist()) == list(range(600))
