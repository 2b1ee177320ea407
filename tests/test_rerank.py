"""Best-of-k selection: the kept molecules are the closest to the targets, in units of each
property's hit window, invalid ones last, ties in generation order."""

import math

import numpy as np
import pandas as pd
import pytest

from core.evaluate import HIT
from core.rerank import best_of_k, target_miss


def scored(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """A table as ``core.generate.score`` returns it ("" and NaN: did not decode)."""
    return pd.DataFrame(rows, columns=["smiles", "logp", "tpsa"])


def test_miss_sums_the_deviations_in_hit_windows():
    table = scored([("CO", 1.0, 70.0), ("CCO", 3.0, 50.0)])
    miss = target_miss(table, {"logp": 2.0, "tpsa": 60.0})
    expected = [1.0 / HIT["logp"] + 10.0 / HIT["tpsa"], 1.0 / HIT["logp"] + 10.0 / HIT["tpsa"]]
    np.testing.assert_allclose(miss, expected)
    only_tpsa = target_miss(table, {"logp": None, "tpsa": 60.0})  # a free property costs nothing
    np.testing.assert_allclose(only_tpsa, [10.0 / HIT["tpsa"]] * 2)


def test_a_window_makes_properties_comparable():
    # A is 0.5 LogP off (1 window), B 5 Å² TPSA off (half a window)
    table = scored([("A", 2.5, 60.0), ("B", 2.0, 65.0)])
    best = best_of_k(table, {"logp": 2.0, "tpsa": 60.0}, 1)
    assert best.smiles.tolist() == ["B"]
    wide = best_of_k(table, {"logp": 2.0, "tpsa": 60.0}, 1, windows={"logp": 5.0, "tpsa": 10.0})
    assert wide.smiles.tolist() == ["A"]


def test_best_of_k_keeps_the_n_closest_with_their_index():
    rng = np.random.default_rng(0)
    table = scored([(f"C{i}", float(v), 60.0) for i, v in enumerate(rng.normal(2, 1, 40))])
    best = best_of_k(table, {"logp": 2.0}, 10)
    assert len(best) == 10
    kept = table.index.isin(best.index)
    dev = (table.logp - 2.0).abs()
    assert dev[kept].max() <= dev[~kept].min()
    assert list(best.logp.sub(2.0).abs()) == sorted(best.logp.sub(2.0).abs())  # closest first


def test_invalid_molecules_come_last_and_ties_keep_generation_order():
    table = scored([("", math.nan, math.nan), ("C", 1.0, 0.0), ("N", 1.0, 0.0), ("O", 3.0, 0.0)])
    assert best_of_k(table, {"logp": 1.0}, 2).smiles.tolist() == ["C", "N"]
    assert best_of_k(table, {"logp": 1.0}, 4).smiles.tolist() == ["C", "N", "O", ""]
    assert best_of_k(table, {}, 2).smiles.tolist() == ["C", "N"]  # nothing to rank: in order


def test_n_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        best_of_k(scored([("C", 1.0, 0.0)]), {"logp": 1.0}, 0)
