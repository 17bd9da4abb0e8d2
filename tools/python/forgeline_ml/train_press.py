"""Train the press anomaly model on normal strokes, quantize it to INT8 and write a model directory.

    PYTHONPATH=tools/python python -m forgeline_ml.train_press \
        --features out/features.csv --out models/press-anomaly [--seed 0] [--version 1.0.0]

Steps: split the normal strokes (by recording file when there are enough files) into train /
calibration / validation; standardise with the training mean and std; train a dense autoencoder
(numpy); export FP32 ONNX; quantize to INT8 (QDQ, static, 500-1,000 calibration rows); set the
warning / critical thresholds from held-out normal strokes; compare FP32 and INT8 on the
validation split (normal strokes plus synthetic faults); write ``model.yml``.

Exit codes: 0 ok, 2 bad input, 3 INT8 lost too much accuracy (see ``--allow-fp32-fallback``).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .autoencoder import INPUT_NAME, OUTPUT_NAME, score_node_names, to_onnx, train_autoencoder
from .data import FeatureFileError, inject_anomalies, read_features_csv
from .drift_reference import drift_reference
from .model_dir import created_timestamp, variant_entry, write_model_yml
from .quantize import QuantizationRefused, calibration_rows, gate_int8, int8_check, quantize_int8, run_onnx

FP32_FILE = "model.fp32.onnx"
INT8_FILE = "model.int8.onnx"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99_5": 0.995, "p99_9": 0.999, "max": 1.0}
MIN_ROWS = 200
STD_FLOOR = 1e-9


class TrainError(Exception):
    """Training cannot go on; ``exit_code`` tells the CLI what to return."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Splits:
    """Row indices of each split."""

    train: np.ndarray
    calibration: np.ndarray
    validation: np.ndarray
    by_file: bool


def split_rows(files: list[str], seed: int, fractions=(0.7, 0.15)) -> Splits:
    """Split rows 70/15/15. Strokes of one recording are correlated, so when there are at least
    10 files whole files go to one split; otherwise rows are split individually."""
    rng = np.random.default_rng(seed)
    n = len(files)
    unique = sorted(set(files))
    if len(unique) >= 10:
        order = rng.permutation(len(unique))
        file_rows: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            file_rows.setdefault(f, []).append(i)
        buckets: list[list[int]] = [[], [], []]
        limits = [fractions[0] * n, (fractions[0] + fractions[1]) * n]
        seen = 0
        for k in order:
            rows = file_rows[unique[k]]
            bucket = 0 if seen < limits[0] else (1 if seen < limits[1] else 2)
            buckets[bucket].extend(rows)
            seen += len(rows)
        if all(buckets):
            return Splits(*(np.sort(np.asarray(b)) for b in buckets), by_file=True)
    perm = rng.permutation(n)
    a = int(round(fractions[0] * n))
    b = int(round((fractions[0] + fractions[1]) * n))
    return Splits(np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:]), by_file=False)


def quantiles(scores: np.ndarray) -> dict[str, float]:
    """Score quantiles recorded in model.yml."""
    return {k: float(np.quantile(scores, q)) for k, q in QUANTILES.items()}


def thresholds_from(scores: np.ndarray, warning_margin: float, critical_margin: float) -> dict[str, float]:
    """Warning at the largest held-out normal score times a margin; critical higher."""
    top = float(np.max(scores))
    return {"warning": top * warning_margin, "critical": top * critical_margin}


def detection_metric(normal: np.ndarray, faulty: np.ndarray, warning: float) -> float:
    """Balanced accuracy (percent) of the warning decision on normal vs faulty rows."""
    tnr = float(np.mean(normal <= warning))
    tpr = float(np.mean(faulty > warning))
    return 100.0 * (tnr + tpr) / 2.0


def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated layer widths, e.g. 256,128") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be positive integers")
    return widths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="forgeline_ml.train_press", description=__doc__.split("\n\n")[0])
    p.add_argument("--features", required=True, type=Path, help="CSV: file,seq,<feature names...> (normal strokes)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write")
    p.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and calibration (default 0)")
    p.add_argument("--version", default="1.0.0", help="model version, semver (default 1.0.0)")
    p.add_argument("--name", default="press-anomaly", help="model name (default press-anomaly)")
    p.add_argument("--feature-set", default="press-v1", help="feature set the CSV holds (default press-v1)")
    p.add_argument("--hidden", type=_widths, default=[256, 128], help="encoder widths, decoder mirrors (default 256,128)")
    p.add_argument("--bottleneck", type=int, default=8, help="bottleneck width (default 8)")
    p.add_argument("--epochs", type=int, default=150, help="training epochs (default 150)")
    p.add_argument("--warning-margin", type=float, default=1.2, help="warning = max normal score x this (default 1.2)")
    p.add_argument("--critical-margin", type=float, default=2.0, help="critical = max normal score x this (default 2.0)")
    p.add_argument("--max-int8-drop", type=float, default=1.5, help="largest accepted INT8 metric drop, points (1.5)")
    p.add_argument("--per-channel", action="store_true", help="per-channel weight scales for INT8")
    p.add_argument(
        "--keep-fp32",
        "--allow-fp32-fallback",
        dest="allow_fp32_fallback",
        action="store_true",
        help="ship FP32 only when INT8 loses too much (default: fail)",
    )
    p.add_argument("--created", default=None, help="creation time to record (default SOURCE_DATE_EPOCH or now)")
    p.add_argument(
        "--source",
        default=None,
        help="training data source to record in model.yml (default the features CSV's file name; "
        "pass a fixed text for byte-identical rebuilds, the CSV may be a temporary file)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final summary line")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole pipeline; returns the metadata written to model.yml."""
    if not SEMVER.match(args.version):
        raise TrainError(f"--version {args.version!r} is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)")
    if args.warning_margin < 1.0 or args.critical_margin <= args.warning_margin:
        raise TrainError(
            f"margins: warning {args.warning_margin} must be >= 1 and critical {args.critical_margin} above it"
        )
    try:
        table = read_features_csv(args.features)
    except FeatureFileError as err:
        raise TrainError(str(err)) from err
    n, n_features = table.values.shape
    if n < MIN_ROWS:
        raise TrainError(f"{args.features}: {n} rows, expected at least {MIN_ROWS} normal strokes to train and calibrate")
    if not 1 <= args.bottleneck < n_features:
        raise TrainError(f"--bottleneck {args.bottleneck} must be between 1 and {n_features - 1} (number of features - 1)")

    splits = split_rows(table.files, args.seed)
    x_train_raw = table.values[splits.train]
    mean = x_train_raw.mean(axis=0)
    std = x_train_raw.std(axis=0)
    constant = [table.names[i] for i in np.flatnonzero(std < STD_FLOOR)]
    std = np.where(std < STD_FLOOR, 1.0, std)

    def standardise(rows: np.ndarray) -> np.ndarray:
        return (rows - mean) / std

    x_train = standardise(x_train_raw)
    x_cal = standardise(table.values[splits.calibration])
    x_val = standardise(table.values[splits.validation])
    # Many synthetic faults per validation row (20 draws), so the INT8-vs-FP32 comparison measures a
    # systematic loss rather than the luck of a few rows (75 rows: one row = 1.3 points).
    x_faulty = np.concatenate([inject_anomalies(x_val, seed=args.seed + 1 + k) for k in range(20)])

    model = train_autoencoder(x_train, args.hidden, args.bottleneck, seed=args.seed, epochs=args.epochs)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    proto = to_onnx(model, graph_name=args.name.replace("-", "_"))
    onnx.save(proto, str(out / FP32_FILE))
    cal_rows = calibration_rows(x_train, seed=args.seed + 2)
    quantize_int8(out / FP32_FILE, out / INT8_FILE, INPUT_NAME, cal_rows, score_node_names(proto), args.per_channel)

    scores: dict[str, dict[str, np.ndarray]] = {}
    for variant, file in (("fp32", FP32_FILE), ("int8", INT8_FILE)):
        scores[variant] = {
            split: run_onnx(out / file, INPUT_NAME, x)
            for split, x in (("calibration", x_cal), ("validation", x_val), ("faulty", x_faulty))
        }
    numpy_cal = model.score(x_cal)
    onnx_vs_numpy = float(np.max(np.abs(scores["fp32"]["calibration"] - numpy_cal)))

    metric = {}
    own_thresholds = {}
    for variant in ("fp32", "int8"):
        own_thresholds[variant] = thresholds_from(scores[variant]["calibration"], args.warning_margin, args.critical_margin)
        metric[variant] = detection_metric(
            scores[variant]["validation"], scores[variant]["faulty"], own_thresholds[variant]["warning"]
        )
    size_int8 = (out / INT8_FILE).stat().st_size

    try:
        int8_ok = gate_int8(
            metric["fp32"], metric["int8"], args.max_int8_drop, args.allow_fp32_fallback, "detection balanced accuracy"
        )
    except QuantizationRefused as err:
        (out / INT8_FILE).unlink(missing_ok=True)
        raise TrainError(f"{err} (limit set by --max-int8-drop)", exit_code=err.exit_code) from err
    default_variant = "int8" if int8_ok else "fp32"
    if not int8_ok:
        (out / INT8_FILE).unlink(missing_ok=True)
    thresholds = own_thresholds[default_variant]
    shipped = {v: scores[v] for v in ("fp32", "int8")}

    def decisions(s: np.ndarray) -> np.ndarray:
        return (s > thresholds["warning"]).astype(int) + (s > thresholds["critical"]).astype(int)

    all_fp32 = np.concatenate([shipped["fp32"]["validation"], shipped["fp32"]["faulty"]])
    all_int8 = np.concatenate([shipped["int8"]["validation"], shipped["int8"]["faulty"]])
    agreement = 100.0 * float(np.mean(decisions(all_fp32) == decisions(all_int8)))
    correlation = float(np.corrcoef(all_fp32, all_int8)[0, 1])
    false_rejects = 100.0 * float(np.mean(shipped[default_variant]["validation"] > thresholds["warning"]))
    cal_scores = shipped[default_variant]["calibration"]

    variants = {"fp32": variant_entry(out, FP32_FILE)}
    if int8_ok:
        variants["int8"] = variant_entry(out, INT8_FILE)
    sizes = model.layer_sizes
    meta: dict[str, Any] = {
        "name": args.name,
        "version": args.version,
        "created": created_timestamp(args.created),
        "task": "anomaly",
        "feature_set": args.feature_set,
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [-1, n_features],
                "dtype": "f32",
                "features": table.names,
                "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            }
        ],
        "outputs": [{"name": OUTPUT_NAME, "shape": [-1], "dtype": "f32"}],
        "variants": variants,
        "default_variant": default_variant,
        "thresholds": thresholds,
        "labels": [],
        "calibration": {
            "n_samples": int(len(cal_scores)),
            "variant": default_variant,
            "warning_margin": args.warning_margin,
            "critical_margin": args.critical_margin,
            "quantiles": quantiles(cal_scores),
            "validation_false_reject_pct": false_rejects,
        },
        "int8_check": int8_check(
            "balanced_accuracy_pct",
            metric["fp32"],
            metric["int8"],
            args.max_int8_drop,
            int8_ok,
            out / FP32_FILE,
            size_int8,
            len(cal_rows),
            args.per_channel,
            agreement,
            correlation,
        ),
        "training": {
            "source": args.source if args.source is not None else Path(args.features).name,
            "rows": int(n),
            "files": len(set(table.files)),
            "split_by_file": splits.by_file,
            "train_rows": int(len(splits.train)),
            "calibration_rows": int(len(splits.calibration)),
            "validation_rows": int(len(splits.validation)),
            "synthetic_faults": int(len(x_faulty)),
            "seed": int(args.seed),
            "algorithm": f"autoencoder {'-'.join(str(s) for s in sizes)} (tanh, linear bottleneck), score = mean squared error",
            "parameters": model.n_parameters,
            "epochs": int(args.epochs),
            "final_loss": float(model.history[-1]),
            "constant_features": constant,
            "onnx_vs_numpy_max_abs": onnx_vs_numpy,
        },
    }
    meta["drift"] = drift_reference(table.names, table.values)  # every normal stroke: drift detection's reference
    write_model_yml(out, meta)
    return meta


def summary(meta: dict[str, Any]) -> str:
    """Human-readable report printed on stdout."""
    c = meta["int8_check"]
    t = meta["thresholds"]
    lines = [
        f"model {meta['name']}@{meta['version']} ({meta['training']['algorithm']}, {meta['training']['parameters']} parameters)",
        f"  rows: {meta['training']['rows']} (train {meta['training']['train_rows']}, calibration "
        f"{meta['training']['calibration_rows']}, validation {meta['training']['validation_rows']}, by file: "
        f"{meta['training']['split_by_file']})",
        f"  thresholds: warning {t['warning']:.6g}, critical {t['critical']:.6g}; validation false rejects "
        f"{meta['calibration']['validation_false_reject_pct']:.2f}%",
        f"  fp32 {c['fp32']:.2f}% vs int8 {c['int8']:.2f}% balanced accuracy (drop {c['drop_points']:+.2f} points, "
        f"limit {c['max_drop_points']}); decision agreement {c['decision_agreement_pct']:.2f}%, score correlation "
        f"{c['score_correlation']:.5f}",
        f"  size: fp32 {c['fp32_size']} B, int8 {c['int8_size']} B ({c['size_ratio']:.2f}x smaller); "
        f"default variant {meta['default_variant']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        meta = train(args)
    except TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(summary(meta))
    print(f"wrote {args.out / 'model.yml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
