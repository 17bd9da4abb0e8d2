"""Static post-training INT8 quantization (QDQ) with onnxruntime, and FP32 vs INT8 comparison."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

MIN_CALIBRATION_ROWS = 500
MAX_CALIBRATION_ROWS = 1000


class RowsReader(CalibrationDataReader):
    """Feeds calibration rows to the quantizer in fixed batches."""

    def __init__(self, input_name: str, rows: np.ndarray, batch: int = 100):
        self._input_name = input_name
        self._batches = [rows[i : i + batch].astype(np.float32) for i in range(0, len(rows), batch)]
        self._next = 0

    def get_next(self):
        if self._next >= len(self._batches):
            return None
        batch = self._batches[self._next]
        self._next += 1
        return {self._input_name: batch}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._next = 0


def calibration_rows(x: np.ndarray, seed: int) -> np.ndarray:
    """Pick 500-1,000 rows (all of them when fewer than 500 exist, with a warning)."""
    n = len(x)
    if n < MIN_CALIBRATION_ROWS:
        logging.warning("only %d rows for INT8 calibration; %d or more are recommended", n, MIN_CALIBRATION_ROWS)
        return x
    take = min(n, MAX_CALIBRATION_ROWS)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=take, replace=False))
    return x[idx]


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    input_name: str,
    rows: np.ndarray,
    nodes_to_exclude: list[str],
    per_channel: bool = False,
) -> None:
    """QDQ static quantization: int8 weights (symmetric), uint8 activations, MinMax calibration.
    Only Gemm/MatMul are quantized; ``nodes_to_exclude`` stay float (the score arithmetic)."""
    quantize_static(
        model_input=str(fp32_path),
        model_output=str(int8_path),
        calibration_data_reader=RowsReader(input_name, rows),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Gemm", "MatMul"],
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=nodes_to_exclude,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=["CPUExecutionProvider"],
    )
    proto = onnx.load(str(int8_path))
    _restore_float_graph_inputs(proto, set(nodes_to_exclude))
    # Normalise the producer so the file depends only on the weights and the calibration rows.
    proto.producer_name = "forgeline_ml"
    proto.producer_version = ""
    onnx.checker.check_model(proto)
    onnx.save(proto, str(int8_path))


def _restore_float_graph_inputs(proto: onnx.ModelProto, float_nodes: set[str]) -> None:
    """The quantizer routes every consumer of a graph input through its Q/DQ pair. Nodes kept in
    float (the score arithmetic) must see the raw input instead: a fault far outside the
    calibration range would otherwise be clipped and its residual underestimated."""
    graph_inputs = {i.name for i in proto.graph.input}
    dq_source = {
        n.output[0]: proto_input
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear"
        for proto_input in [_quantized_source(proto, n.input[0])]
        if proto_input in graph_inputs
    }
    for node in proto.graph.node:
        if node.name in float_nodes:
            for k, name in enumerate(node.input):
                if name in dq_source:
                    node.input[k] = dq_source[name]


def _quantized_source(proto: onnx.ModelProto, tensor: str) -> str | None:
    """The float tensor that a QuantizeLinear output came from."""
    for n in proto.graph.node:
        if n.op_type == "QuantizeLinear" and n.output[0] == tensor:
            return n.input[0]
    return None


def run_onnx(path: Path, input_name: str, x: np.ndarray) -> np.ndarray:
    """Score rows with onnxruntime on CPU, single-threaded for reproducibility."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {input_name: x.astype(np.float32)})
    return np.asarray(out, dtype=np.float64)


class QuantizationRefused(Exception):
    """INT8 lost more accuracy than allowed and the caller did not ask to keep the float model."""

    exit_code = 3


def gate_int8(
    fp32_metric: float,
    int8_metric: float,
    max_drop_points: float = 1.5,
    keep_float: bool = False,
    metric_name: str = "accuracy",
) -> bool:
    """Decide whether the INT8 model may ship. Returns True when its drop (points of
    ``metric_name``) is within ``max_drop_points``; False when it is not but ``keep_float`` asks
    to ship the FP32/FP16 model instead; raises :class:`QuantizationRefused` otherwise, with a
    message that says what to do. Shared by every trainer (press, optical)."""
    drop = fp32_metric - int8_metric
    if drop <= max_drop_points:
        return True
    if keep_float:
        logging.warning(
            "INT8 %s dropped %.2f points (limit %.2f): shipping the float model only", metric_name, drop, max_drop_points
        )
        return False
    raise QuantizationRefused(
        f"INT8 {metric_name} dropped {drop:.2f} points (fp32 {fp32_metric:.2f}%, int8 {int8_metric:.2f}%), "
        f"more than the limit of {max_drop_points} points. Try per-channel scales, more calibration data, or "
        "quantization-aware training; or pass --keep-fp32 to ship the float model only."
    )


def int8_check(
    metric_name: str,
    fp32_metric: float,
    int8_metric: float,
    max_drop_points: float,
    accepted: bool,
    fp32_path: Path,
    int8_path_or_size: Path | int,
    calibration_rows: int,
    per_channel: bool,
    decision_agreement_pct: float,
    score_correlation: float,
) -> dict:
    """The ``int8_check`` block of model.yml (format 1): metric change and size reduction."""
    fp32_size = fp32_path.stat().st_size
    int8_size = int8_path_or_size if isinstance(int8_path_or_size, int) else int8_path_or_size.stat().st_size
    return {
        "metric": metric_name,
        "fp32": float(fp32_metric),
        "int8": float(int8_metric),
        "drop_points": float(fp32_metric - int8_metric),
        "max_drop_points": float(max_drop_points),
        "accepted": bool(accepted),
        "decision_agreement_pct": float(decision_agreement_pct),
        "score_correlation": float(score_correlation),
        "fp32_size": int(fp32_size),
        "int8_size": int(int8_size),
        "size_ratio": fp32_size / int8_size,
        "calibration_rows": int(calibration_rows),
        "per_channel": bool(per_channel),
    }
