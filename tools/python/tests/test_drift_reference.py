"""The drift reference: format, exact shares, constant features, rejects."""

from __future__ import annotations

import numpy as np
import pytest

from forgeline_ml.drift_reference import DriftReferenceError, drift_reference


def test_deciles_give_tenths_and_searchsorted_right_bins():
    rows = np.arange(1000, dtype=np.float64).reshape(-1, 1)
    ref = drift_reference(["x"], rows)
    f = ref["features"][0]
    assert ref["format"] == 1 and ref["n_reference"] == 1000
    assert len(f["quantiles"]) == 101 and f["quantiles"][0] == 0.0 and f["quantiles"][-1] == 999.0
    assert len(f["edges"]) == 9 and len(f["proportions"]) == 10
    assert sum(f["proportions"]) == pytest.approx(1.0)
    assert f["proportions"] == pytest.approx([0.1] * 10, abs=0.002)


def test_constant_feature_has_one_edge_and_all_mass_above_it():
    rows = np.column_stack([np.ones(50), np.linspace(0, 1, 50)])
    f = drift_reference(["count", "x"], rows)["features"][0]
    assert f["edges"] == [1.0]
    assert f["proportions"] == [0.0, 1.0]


def test_bad_rows_are_refused_naming_the_feature():
    rows = np.ones((20, 2))
    rows[3, 1] = np.nan
    with pytest.raises(DriftReferenceError, match="'b'"):
        drift_reference(["a", "b"], rows)
    with pytest.raises(DriftReferenceError, match="at least 10"):
        drift_reference(["a"], np.ones((5, 1)))
