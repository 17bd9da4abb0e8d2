"""Tests of the shared INT8 gate and model.yml block (forgeline_ml.quantize)."""

from __future__ import annotations

import pytest

from forgeline_ml.quantize import QuantizationRefused, gate_int8, int8_check


def test_within_the_limit_int8_ships():
    assert gate_int8(90.0, 89.0, 1.5) is True
    assert gate_int8(90.0, 88.5, 1.5) is True  # exactly at the limit is accepted


def test_over_the_limit_fails_loudly_with_what_to_do():
    with pytest.raises(QuantizationRefused) as err:
        gate_int8(90.0, 88.4, 1.5, metric_name="defect recall")
    text = str(err.value)
    assert "1.60 points" in text and "defect recall" in text
    assert "quantization-aware training" in text and "--keep-fp32" in text
    assert QuantizationRefused.exit_code != 0


def test_over_the_limit_keeps_the_float_model_when_asked():
    assert gate_int8(90.0, 80.0, 1.5, keep_float=True) is False


def test_int8_check_reports_sizes_and_change(tmp_path):
    fp32 = tmp_path / "m.fp32.onnx"
    fp32.write_bytes(b"x" * 4000)
    int8 = tmp_path / "m.int8.onnx"
    int8.write_bytes(b"x" * 1000)
    block = int8_check("balanced_accuracy_pct", 80.0, 79.8, 1.5, True, fp32, int8, 600, False, 99.0, 0.99)
    assert block["size_ratio"] == pytest.approx(4.0)
    assert block["drop_points"] == pytest.approx(0.2)
    assert (block["fp32_size"], block["int8_size"], block["calibration_rows"]) == (4000, 1000, 600)
