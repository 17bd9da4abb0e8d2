"""The training-time reference distribution of every feature, for run-time drift detection.

Written into ``model.yml`` as the ``drift:`` section (read by the Rust crate ``forgeline-drift``,
``operators/drift/src/reference.rs``, which owns the format)::

    drift:
      format: 1
      n_reference: 600                 # training strokes
      features:
        - name: rms_log10_g
          edges: [...]                 # interior PSI bin edges: training deciles, deduplicated
          proportions: [...]           # share of training strokes per bin (len(edges) + 1)
          quantiles: [...]             # 101 quantiles, 0 %..100 % (numpy linear), for KS

A value ``x`` falls in bin ``searchsorted(edges, x, side="right")``. Values are rounded to 7
significant digits (the features are float32) before the shares are counted, so edges and shares
agree exactly. The run-time thresholds are calibrated from this by the drift node (simulated
no-drift windows), not stored here: they depend on the window size chosen in the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DRIFT_FORMAT = 1
QUANTILE_POINTS = 101
BINS = 10


class DriftReferenceError(ValueError):
    """The training rows cannot give a reference (what and why in the message)."""


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.7g}") for v in np.asarray(values, dtype=np.float64)]


def feature_reference(name: str, column: np.ndarray) -> dict[str, Any]:
    """Edges, shares and quantiles of one feature's training values."""
    values = np.asarray(column, dtype=np.float64)
    quantiles = _round(np.quantile(values, np.linspace(0.0, 1.0, QUANTILE_POINTS)))
    edges: list[float] = []
    for k in range(1, BINS):
        e = quantiles[k * (QUANTILE_POINTS - 1) // BINS]
        if not edges or e > edges[-1]:
            edges.append(e)
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    proportions = [float(c) / len(values) for c in counts]
    return {"name": name, "edges": edges, "proportions": proportions, "quantiles": quantiles}


def drift_reference(names: list[str], rows: np.ndarray) -> dict[str, Any]:
    """The ``drift:`` section for training ``rows`` (strokes x features, raw feature values)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise DriftReferenceError(f"rows of shape {rows.shape} do not match {len(names)} feature names")
    if rows.shape[0] < 10:
        raise DriftReferenceError(f"{rows.shape[0]} training rows, expected at least 10 for a drift reference")
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(rows).all(axis=0))]
    if bad:
        raise DriftReferenceError(f"non-finite training values in features {bad}")
    return {
        "format": DRIFT_FORMAT,
        "n_reference": int(rows.shape[0]),
        "features": [feature_reference(n, rows[:, i]) for i, n in enumerate(names)],
    }
