"""Train a small CNN part classifier (good / defect) for the optical inspection line.

numpy only: the network is trained with hand-written forward/backward passes (im2col
convolutions), exported by building the ONNX graph with ``onnx.helper``, checked against the
numpy outputs with onnxruntime, INT8-quantized (static QDQ, calibration images) and compared
with the FP32 model on held-out images. Deterministic from ``--seed``: same data and seed give
the same ONNX bytes.

Input: ``--images`` is a folder written by ``forgeline train optical`` with the line's own Rust
preprocessing: ``images.npy`` (every image resized to ``S x S`` grey u8, ``[N, S, S]``),
``labels.npy`` (``[N]``, 0 good / 1 defect) and ``files.txt``. The model takes the ``image-preprocess`` node's
tensor ``[1, 1, S, S]`` f32 in 0..1 and does the rest in the graph:

    2x2 average pool (anti-aliasing) -> per-image standardisation (x - mean) / std
    -> 4 x [3x3 conv + ReLU (+ 2x2 max pool on the first three)]
    -> concat(global average pool, global max pool) -> dense -> softmax [good, defect]

Per-image standardisation makes the model indifferent to exposure and gain; the global max pool
lets a small defect anywhere in the image decide.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .model_dir import created_timestamp, variant_entry, write_model_yml

LABELS = ["good", "defect"]
EPS = 1e-5
OPSET = 17
MAX_INT8_DROP_POINTS = 2.0


# ---------------------------------------------------------------------------------------------
# Network (NHWC internally; weights stored OIHW as ONNX wants them)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    """Channel widths of the four conv layers."""

    channels: tuple[int, ...] = (8, 16, 32, 32)

    @property
    def pooled(self) -> tuple[bool, ...]:
        return tuple(i < len(self.channels) - 1 for i in range(len(self.channels)))


def init_params(arch: Arch, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-initialised conv weights, zero biases."""
    params: dict[str, np.ndarray] = {}
    cin = 1
    for i, cout in enumerate(arch.channels):
        fan_in = cin * 9
        params[f"conv{i}_w"] = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"conv{i}_b"] = np.zeros(cout, np.float32)
        cin = cout
    params["fc_w"] = (rng.standard_normal((len(LABELS), 2 * cin)) * np.sqrt(1.0 / (2 * cin))).astype(np.float32)
    params["fc_b"] = np.zeros(len(LABELS), np.float32)
    return params


def front(x: np.ndarray) -> np.ndarray:
    """The fixed front of the graph: ``x`` ``[N, S, S]`` in 0..1 -> 2x2 average pool -> per-image
    standardisation, ``[N, S/2, S/2, 1]`` float32."""
    n, h, w = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return ((x - mean) / np.sqrt(var + EPS)).astype(np.float32)[..., None]


def _windows(xp: np.ndarray, h: int, w: int) -> np.ndarray:
    """im2col of a padded NHWC batch: ``[N*H*W, C*9]`` in (c, kh, kw) order."""
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # N,H,W,C,3,3
    n, c = xp.shape[0], xp.shape[3]
    return win.reshape(n * h * w, c * 9)


def conv_forward(x: np.ndarray, wgt: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 same conv, NHWC in and out. Returns (output, cols) for the backward pass."""
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = _windows(xp, h, w)
    out = cols @ wgt.reshape(wgt.shape[0], -1).T + b
    return out.reshape(n, h, w, -1), cols


def conv_backward(
    dout: np.ndarray, cols: np.ndarray, wgt: np.ndarray, x_shape: tuple[int, ...], need_dx: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of a 3x3 same conv: (dx, dw, db)."""
    n, h, w, c = x_shape
    d2 = dout.reshape(-1, dout.shape[-1])
    dw = (d2.T @ cols).reshape(wgt.shape)
    db = d2.sum(axis=0)
    if not need_dx:
        return None, dw, db
    dcols = (d2 @ wgt.reshape(wgt.shape[0], -1)).reshape(n, h, w, c, 3, 3)
    dxp = np.zeros((n, h + 2, w + 2, c), np.float32)
    for i in range(3):
        for j in range(3):
            dxp[:, i : i + h, j : j + w, :] += dcols[..., i, j]
    return dxp[:, 1:-1, 1:-1, :], dw, db


def pool_forward(x: np.ndarray) -> np.ndarray:
    """2x2 max pool, stride 2 (floor), NHWC."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def pool_backward(dout: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    h2, w2 = h // 2 * 2, w // 2 * 2
    xr = x[:, :h2, :w2, :].reshape(n, h // 2, 2, w // 2, 2, c)
    mask = xr == y[:, :, None, :, None, :]
    dx = np.zeros_like(x)
    dx[:, :h2, :w2, :] = (mask * dout[:, :, None, :, None, :]).reshape(n, h2, w2, c)
    return dx


def forward(params: dict[str, np.ndarray], arch: Arch, x: np.ndarray, keep: bool = False):
    """Logits ``[N, 2]`` from ``front`` output; with ``keep`` also the cache for backward."""
    cache = []
    h = x
    for i, pooled in enumerate(arch.pooled):
        z, cols = conv_forward(h, params[f"conv{i}_w"], params[f"conv{i}_b"])
        a = np.maximum(z, 0.0)
        p = pool_forward(a) if pooled else a
        if keep:
            cache.append((h.shape, cols, z, a, p))
        h = p
    gap = h.mean(axis=(1, 2))
    gmp = h.max(axis=(1, 2))
    feat = np.concatenate([gap, gmp], axis=1)
    logits = feat @ params["fc_w"].T + params["fc_b"]
    if keep:
        return logits, (cache, h, feat)
    return logits


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_grads(params, arch, x, y, class_weight):
    """Class-weighted cross entropy and its gradients."""
    logits, (cache, h, feat) = forward(params, arch, x, keep=True)
    prob = softmax(logits.astype(np.float64))
    wts = class_weight[y]
    n = len(y)
    loss = float(-(wts * np.log(prob[np.arange(n), y] + 1e-12)).sum() / wts.sum())
    dlogits = prob.copy()
    dlogits[np.arange(n), y] -= 1.0
    dlogits = (dlogits * (wts / wts.sum())[:, None]).astype(np.float32)
    grads = {"fc_w": dlogits.T @ feat, "fc_b": dlogits.sum(axis=0)}
    dfeat = dlogits @ params["fc_w"]
    c = h.shape[-1]
    hw = h.shape[1] * h.shape[2]
    dh = np.broadcast_to(dfeat[:, None, None, :c] / hw, h.shape).astype(np.float32)
    gmp = h.max(axis=(1, 2), keepdims=True)
    first_max = (h == gmp)
    # Route the max gradient to one position per channel (the first maximum), like ONNX's argmax.
    flat = first_max.reshape(h.shape[0], -1, c)
    idx = flat.argmax(axis=1)
    route = np.zeros_like(flat, dtype=np.float32)
    np.put_along_axis(route, idx[:, None, :], 1.0, axis=1)
    dh = dh + route.reshape(h.shape) * dfeat[:, None, None, c:]
    for i in reversed(range(len(arch.channels))):
        x_shape, cols, z, a, p = cache[i]
        if arch.pooled[i]:
            dh = pool_backward(dh, a, p)
        dz = dh * (z > 0)
        dx, dw, db = conv_backward(dz, cols, params[f"conv{i}_w"], x_shape, need_dx=i > 0)
        grads[f"conv{i}_w"] = dw
        grads[f"conv{i}_b"] = db
        dh = dx
    return loss, grads


class Adam:
    """Adam with decoupled weight decay on weights (not biases)."""

    def __init__(self, params, lr=3e-3, b1=0.9, b2=0.999, wd=1e-4):
        self.lr, self.b1, self.b2, self.wd = lr, b1, b2, wd
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        for k in params:
            g = grads[k].astype(np.float32)
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            mh = self.m[k] / (1 - self.b1**self.t)
            vh = self.v[k] / (1 - self.b2**self.t)
            if k.endswith("_w"):
                params[k] *= 1 - lr * self.wd
            params[k] -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flips, 90-degree turns (square images), small shifts, gamma and gain, sensor noise.
    ``batch`` ``[N, S, S]`` in 0..1."""
    out = np.empty_like(batch)
    n, h, w = batch.shape
    max_shift = max(1, h // 24)
    for i in range(n):
        img = batch[i]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if rng.random() < 0.5:
            img = img[::-1, :]
        if h == w:
            img = np.rot90(img, int(rng.integers(0, 4)))
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        img = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        gamma = float(np.exp(rng.normal(0.0, 0.15)))
        gain = float(rng.uniform(0.8, 1.2))
        img = np.clip(np.power(np.clip(img, 0.0, 1.0), gamma) * gain, 0.0, 1.0)
        img = img + rng.normal(0.0, rng.uniform(0.0, 0.02), size=img.shape)
        out[i] = img
    return out.astype(np.float32)


def stratified_split(labels: np.ndarray, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), each class split in the same proportion."""
    rng = np.random.default_rng(seed + 1)
    train, val = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        k = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        val.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def balanced_accuracy(y: np.ndarray, reject: np.ndarray) -> float:
    """Mean recall of good and defect, percent."""
    recalls = []
    for cls in (0, 1):
        m = y == cls
        if m.any():
            recalls.append(float(((reject[m] == 1) == (cls == 1)).mean()))
    return 100.0 * float(np.mean(recalls)) if recalls else float("nan")


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------


def build_onnx(params: dict[str, np.ndarray], arch: Arch, size: int) -> onnx.ModelProto:
    """The FP32 graph: input ``image`` ``[N, 1, S, S]`` (0..1), output ``probabilities`` ``[N, 2]``."""
    nodes = []
    inits = [numpy_helper.from_array(np.array([EPS], np.float32), "eps")]
    nodes.append(helper.make_node("AveragePool", ["image"], ["pooled_in"], kernel_shape=[2, 2], strides=[2, 2], name="antialias"))
    nodes.append(helper.make_node("ReduceMean", ["pooled_in"], ["img_mean"], axes=[1, 2, 3], keepdims=1, name="norm_mean"))
    nodes.append(helper.make_node("Sub", ["pooled_in", "img_mean"], ["centred"], name="norm_sub"))
    nodes.append(helper.make_node("Mul", ["centred", "centred"], ["sq"], name="norm_sq"))
    nodes.append(helper.make_node("ReduceMean", ["sq"], ["img_var"], axes=[1, 2, 3], keepdims=1, name="norm_var"))
    nodes.append(helper.make_node("Add", ["img_var", "eps"], ["img_var_eps"], name="norm_eps"))
    nodes.append(helper.make_node("Sqrt", ["img_var_eps"], ["img_std"], name="norm_sqrt"))
    nodes.append(helper.make_node("Div", ["centred", "img_std"], ["x0"], name="norm_div"))
    cur = "x0"
    for i, pooled in enumerate(arch.pooled):
        inits.append(numpy_helper.from_array(params[f"conv{i}_w"], f"conv{i}_w"))
        inits.append(numpy_helper.from_array(params[f"conv{i}_b"], f"conv{i}_b"))
        nodes.append(helper.make_node("Conv", [cur, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name=f"conv{i}"))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"))
        cur = f"relu{i}"
        if pooled:
            nodes.append(helper.make_node("MaxPool", [cur], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2], name=f"pool{i}"))
            cur = f"pool{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [cur], ["gap"], name="gap"))
    nodes.append(helper.make_node("GlobalMaxPool", [cur], ["gmp"], name="gmp"))
    nodes.append(helper.make_node("Concat", ["gap", "gmp"], ["pooled4"], axis=1, name="concat"))
    nodes.append(helper.make_node("Flatten", ["pooled4"], ["feat"], axis=1, name="flatten"))
    inits.append(numpy_helper.from_array(params["fc_w"], "fc_w"))
    inits.append(numpy_helper.from_array(params["fc_b"], "fc_b"))
    nodes.append(helper.make_node("Gemm", ["feat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"))
    graph = helper.make_graph(
        nodes,
        "optical_defects",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="forgeline_ml")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_onnx(path: Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Probabilities from an ONNX file on CPU (single thread, reproducible)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outs = []
    for i in range(0, len(x), batch):
        (p,) = session.run(None, {"image": x[i : i + batch, None, :, :].astype(np.float32)})
        outs.append(p)
    return np.concatenate(outs, axis=0)


def quantize(fp32: Path, int8: Path, calib: np.ndarray) -> None:
    """Static QDQ INT8: convs and the dense layer (int8 symmetric per-channel weights, uint8
    activations, MinMax ranges from the calibration images); the input standardisation and
    the softmax stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    try:  # Shared reader of the PTQ helpers, when present.
        from .quantize import RowsReader
    except ImportError:  # pragma: no cover - fallback keeps this module self-contained
        RowsReader = None  # type: ignore[assignment]
    x = calib[:, None, :, :].astype(np.float32)
    if RowsReader is not None:
        reader = RowsReader("image", x, batch=32)
    else:  # pragma: no cover
        from onnxruntime.quantization import CalibrationDataReader

        class _Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(x):
                    return None
                self.i += 32
                return {"image": x[self.i - 32 : self.i]}

        reader = _Reader()
    quantize_static(
        model_input=str(fp32),
        model_output=str(int8),
        calibration_data_reader=reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "Gemm", "MaxPool", "Relu"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=["CPUExecutionProvider"],
    )
    proto = onnx.load(str(int8))
    proto.producer_name = "forgeline_ml"
    proto.producer_version = ""
    onnx.checker.check_model(proto)
    onnx.save(proto, str(int8))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def load_prepared(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``images.npy`` (u8 ``[N, S, S]``), ``labels.npy`` (``[N]``, 0 good / 1 defect) and
    ``files.txt`` (one path a line) written by ``forgeline train optical``; pixels to 0..1."""
    images = np.load(folder / "images.npy", allow_pickle=False).astype(np.float32) / 255.0
    labels = np.load(folder / "labels.npy", allow_pickle=False).astype(np.int64)
    files = (folder / "files.txt").read_text(encoding="utf-8").splitlines()
    if len(images) != len(labels) or len(files) != len(labels):
        raise SystemExit(f"{folder}: {len(images)} images, {len(labels)} labels, {len(files)} files: expected equal counts")
    return images, labels, files


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="forgeline train optical", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=Path, required=True, help="folder of images.npy/labels.npy/files.txt from `forgeline train optical`")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--name", default="optical-defects")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--calibration", type=int, default=300, help="images for INT8 calibration")
    p.add_argument("--channels", default="8,16,32,32", help="conv widths")
    p.add_argument("--time-budget-s", type=float, default=900.0, help="stop adding epochs after this")
    p.add_argument("--created", default=None, help="RFC 3339 time for model.yml (reproducible builds)")
    p.add_argument("--source", default=None, help="where the images came from (for model.yml)")
    return p.parse_args(argv)


def choose_threshold(y: np.ndarray, p_defect: np.ndarray) -> float:
    """The P(defect) threshold with the best balanced accuracy on validation images, kept in
    [0.2, 0.8] and nearest 0.5 among ties (robust with few validation images)."""
    best, best_t = -1.0, 0.5
    for t in np.round(np.arange(0.2, 0.801, 0.02), 2):
        acc = balanced_accuracy(y, (p_defect >= t).astype(int))
        if acc > best + 1e-9 or (abs(acc - best) <= 1e-9 and abs(t - 0.5) < abs(best_t - 0.5)):
            best, best_t = acc, float(t)
    return best_t


def train(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    images, labels, files = load_prepared(args.images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise SystemExit(f"{args.images}: images must be [N, S, S], found {images.shape}")
    size = int(images.shape[1])
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 2:
        raise SystemExit(f"need at least 2 good and 2 defect images, found {counts[0]} good and {counts[1]} defect")
    arch = Arch(tuple(int(c) for c in args.channels.split(",")))
    rng = np.random.default_rng(args.seed)
    params = init_params(arch, rng)
    train_idx, val_idx = stratified_split(labels, args.seed, args.val_fraction)
    xtr, ytr = images[train_idx], labels[train_idx]
    xval, yval = images[val_idx], labels[val_idx]
    class_weight = (len(ytr) / (2.0 * np.maximum(np.bincount(ytr, minlength=2), 1))).astype(np.float64)
    opt = Adam(params, lr=args.lr)
    steps_per_epoch = max(1, int(np.ceil(len(xtr) / args.batch)))
    total = steps_per_epoch * args.epochs
    fval = front(xval)
    step, loss_ema, epochs_done = 0, None, 0
    print(f"training on {len(xtr)} images ({int((ytr == 0).sum())} good, {int((ytr == 1).sum())} defect), "
          f"validating on {len(xval)}, {size}x{size} input, {args.epochs} epochs", file=sys.stderr)
    for epoch in range(args.epochs):
        order = rng.permutation(len(xtr))
        for s in range(steps_per_epoch):
            idx = order[s * args.batch : (s + 1) * args.batch]
            xb = front(augment(xtr[idx], rng))
            loss, grads = loss_and_grads(params, arch, xb, ytr[idx], class_weight)
            warm = min(1.0, (step + 1) / max(1, steps_per_epoch))
            lr = args.lr * warm * 0.5 * (1 + np.cos(np.pi * step / total))
            opt.step(params, grads, lr)
            loss_ema = loss if loss_ema is None else 0.95 * loss_ema + 0.05 * loss
            step += 1
        epochs_done = epoch + 1
        pv = softmax(forward(params, arch, fval).astype(np.float64))[:, 1]
        acc = balanced_accuracy(yval, (pv >= 0.5).astype(int))
        elapsed = time.monotonic() - started
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_ema:.4f}, validation balanced accuracy {acc:.1f}% ({elapsed:.0f} s)", file=sys.stderr)
        if elapsed > args.time_budget_s and epoch + 1 < args.epochs:
            print(f"time budget {args.time_budget_s:.0f} s reached: stopping after {epoch + 1} epochs", file=sys.stderr)
            break

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    fp32_path, int8_path = out / "model.fp32.onnx", out / "model.int8.onnx"
    proto = build_onnx(params, arch, size)
    onnx.save(proto, str(fp32_path))

    p_np = softmax(forward(params, arch, fval).astype(np.float64))
    p_fp32 = run_onnx(fp32_path, xval)
    max_abs = float(np.abs(p_fp32 - p_np).max())
    if max_abs > 1e-3:
        raise SystemExit(f"ONNX export differs from numpy by {max_abs:.2e} (> 1e-3): export bug")
    threshold = choose_threshold(yval, p_fp32[:, 1])

    calib_n = min(args.calibration, len(xtr))
    calib_idx = np.sort(np.random.default_rng(args.seed + 2).choice(len(xtr), size=calib_n, replace=False))
    quantize(fp32_path, int8_path, xtr[calib_idx])
    p_int8 = run_onnx(int8_path, xval)
    rej_fp32 = (p_fp32[:, 1] >= threshold).astype(int)
    rej_int8 = (p_int8[:, 1] >= threshold).astype(int)
    acc_fp32 = balanced_accuracy(yval, rej_fp32)
    acc_int8 = balanced_accuracy(yval, rej_int8)
    drop = acc_fp32 - acc_int8
    accepted = bool(drop <= MAX_INT8_DROP_POINTS)
    corr = float(np.corrcoef(p_fp32[:, 1], p_int8[:, 1])[0, 1]) if len(yval) > 2 else float("nan")
    variants = {"fp32": variant_entry(out, fp32_path.name)}
    if accepted:
        variants["int8"] = variant_entry(out, int8_path.name)
    else:
        print(f"INT8 refused: balanced accuracy drops {drop:.2f} points (> {MAX_INT8_DROP_POINTS})", file=sys.stderr)
        int8_path.unlink(missing_ok=True)
    n_params = int(sum(v.size for v in params.values()))
    # The settings image-preprocess reads, inside model.yml so that the model's signature covers
    # them (a separate preprocess.yml was not). The model standardises each image itself: feed
    # pixel / 255.
    (out / "preprocess.yml").unlink(missing_ok=True)
    meta: dict[str, Any] = {
        "name": args.name,
        "version": args.version,
        "created": created_timestamp(args.created),
        "task": "classification",
        "feature_set": f"image-grey-{size}",
        "inputs": [{"name": "image", "shape": [-1, 1, size, size], "dtype": "f32", "layout": "nchw"}],
        "outputs": [{"name": "probabilities", "shape": [-1, len(LABELS)], "dtype": "f32"}],
        "variants": variants,
        "default_variant": "int8" if accepted else "fp32",
        "thresholds": {"warning": round(threshold / 2.0, 4), "critical": threshold},
        "labels": LABELS,
        "good_label": "good",
        "preprocess": {"resize": "stretch", "mean": [0.0], "std": [1.0]},
        "calibration": {
            "n_samples": int(len(yval)),
            "variant": "fp32",
            "quantiles": {
                "good_p50": float(np.median(p_fp32[yval == 0, 1])),
                "good_p99": float(np.quantile(p_fp32[yval == 0, 1], 0.99)),
                "defect_p01": float(np.quantile(p_fp32[yval == 1, 1], 0.01)),
                "defect_p50": float(np.median(p_fp32[yval == 1, 1])),
            },
            "validation_false_reject_pct": float(100.0 * rej_fp32[yval == 0].mean()),
        },
        "int8_check": {
            "metric": "balanced_accuracy_pct",
            "fp32": acc_fp32,
            "int8": acc_int8,
            "drop_points": drop,
            "max_drop_points": MAX_INT8_DROP_POINTS,
            "accepted": accepted,
            "decision_agreement_pct": float(100.0 * (rej_fp32 == rej_int8).mean()),
            "score_correlation": corr,
            "fp32_size": fp32_path.stat().st_size,
            "int8_size": int8_path.stat().st_size if accepted else 0,
            "size_ratio": fp32_path.stat().st_size / max(1, int8_path.stat().st_size if accepted else 1),
            "calibration_rows": int(calib_n),
            "per_channel": True,
        },
        "training": {
            "source": args.source or str(args.images.name),
            "rows": int(len(labels)),
            "files": int(len(set(files))),
            "split_by_file": True,
            "train_rows": int(len(xtr)),
            "calibration_rows": int(calib_n),
            "validation_rows": int(len(xval)),
            "seed": int(args.seed),
            "algorithm": f"cnn-numpy conv{'-'.join(str(c) for c in arch.channels)} gap+gmp softmax, {size}px grey",
            "parameters": n_params,
            "epochs": int(epochs_done),
            "final_loss": float(loss_ema if loss_ema is not None else float("nan")),
            "onnx_vs_numpy_max_abs": max_abs,
        },
    }
    write_model_yml(out, meta)
    print(f"wrote {out}: validation balanced accuracy FP32 {acc_fp32:.1f}%, INT8 {acc_int8:.1f}% "
          f"(threshold P(defect) >= {threshold}), {time.monotonic() - started:.0f} s", file=sys.stderr)
    return meta


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = train(args)
    print(json.dumps({"int8_check": meta["int8_check"], "thresholds": meta["thresholds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
