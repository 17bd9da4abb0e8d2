"""Feature tables: reading the extractor's CSV and seeded synthetic strokes.

The CSV written by the Rust feature extractor has the header ``file,seq,<feature names...>``
and one row per stroke. Only normal strokes are given to training.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class FeatureFileError(ValueError):
    """A feature CSV that cannot be used: names the file, line, column and what was expected."""


@dataclass
class FeatureTable:
    """Rows of features with their provenance."""

    names: list[str]
    files: list[str]
    seqs: list[int]
    values: np.ndarray  # float64 [n_rows, n_features]


def read_features_csv(path: str | Path) -> FeatureTable:
    """Read ``file,seq,<features...>``; every value must be a finite number."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise FeatureFileError(f"{path}: cannot open feature CSV: {err}") from err
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise FeatureFileError(f"{path}: empty file, expected header 'file,seq,<feature names...>'") from None
        header = [h.strip() for h in header]
        if len(header) < 3 or header[0] != "file" or header[1] != "seq":
            raise FeatureFileError(
                f"{path}:1: header starts with {header[:2]!r}, expected 'file,seq,<feature names...>'"
            )
        names = header[2:]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FeatureFileError(f"{path}:1: duplicate feature names {dupes}")
        files: list[str] = []
        seqs: list[int] = []
        rows: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise FeatureFileError(f"{path}:{line_no}: {len(row)} columns, expected {len(header)} (as in the header)")
            try:
                seq = int(row[1])
            except ValueError:
                raise FeatureFileError(f"{path}:{line_no}: column 'seq' = {row[1]!r}, expected an integer") from None
            values = []
            for name, cell in zip(names, row[2:]):
                try:
                    v = float(cell)
                except ValueError:
                    raise FeatureFileError(f"{path}:{line_no}: column {name!r} = {cell!r}, expected a number") from None
                if not math.isfinite(v):
                    raise FeatureFileError(
                        f"{path}:{line_no}: column {name!r} = {cell!r}, expected a finite number "
                        "(strokes with quality flags must be filtered out before training)"
                    )
                values.append(v)
            files.append(row[0])
            seqs.append(seq)
            rows.append(values)
    if not rows:
        raise FeatureFileError(f"{path}: no data rows after the header")
    return FeatureTable(names=names, files=files, seqs=seqs, values=np.asarray(rows, dtype=np.float64))


def write_features_csv(path: str | Path, table: FeatureTable) -> None:
    """Write a table in the extractor's CSV layout (used by the synthetic generator and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "seq", *table.names])
        for f, s, row in zip(table.files, table.seqs, table.values):
            writer.writerow([f, s, *(repr(float(v)) for v in row)])


def synthetic_feature_names(n_features: int) -> list[str]:
    """Plausible press feature names: a few time-domain statistics then frequency bands."""
    base = ["rms", "peak", "crest_factor", "kurtosis", "skewness"]
    names = base[: min(n_features, len(base))]
    names += [f"band_{i:02d}" for i in range(n_features - len(names))]
    return names


def synthetic_normal_strokes(n_rows: int, n_features: int = 29, seed: int = 0, n_latent: int = 4) -> FeatureTable:
    """Seeded synthetic normal strokes: features driven by a few latent process variables
    (press force, speed, die temperature, tool wear) through a smooth non-linear map, plus noise.
    The structure is low-dimensional, as real stroke features are, so an anomaly model can learn it."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_latent, n_features))
    quad = rng.normal(scale=0.3, size=(n_latent, n_features))
    offset = rng.uniform(1.0, 5.0, size=n_features)
    scale = rng.uniform(0.2, 2.0, size=n_features)
    latent = rng.normal(size=(n_rows, n_latent))
    values = np.tanh(latent @ mixing * 0.5) + (latent**2) @ quad * 0.1
    values = offset + scale * (values + rng.normal(scale=0.05, size=values.shape))
    files = [f"synthetic/stroke_{i // 100:04d}.wav" for i in range(n_rows)]
    seqs = list(range(n_rows))
    return FeatureTable(names=synthetic_feature_names(n_features), files=files, seqs=seqs, values=values)


def inject_anomalies(standardised: np.ndarray, seed: int, min_shift: float = 3.0, max_shift: float = 6.0) -> np.ndarray:
    """Synthetic faults for validation: each row gets 1-3 features shifted by 3-6 standard
    deviations (in standardised space), mimicking a bearing tone or a force spike."""
    rng = np.random.default_rng(seed)
    out = standardised.copy()
    n, f = out.shape
    for i in range(n):
        k = int(rng.integers(1, 4))
        cols = rng.choice(f, size=min(k, f), replace=False)
        out[i, cols] += rng.choice([-1.0, 1.0], size=len(cols)) * rng.uniform(min_shift, max_shift, size=len(cols))
    return out
