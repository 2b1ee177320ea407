"""Best-of-k ("precise") generation: of k × n generated molecules keep the n whose RDKit
properties land closest to the targets.

A filter after the fact, not the model's own accuracy: whoever shows the kept molecules'
figures shows the raw figures of all k × n beside them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from core.evaluate import HIT


def target_miss(
    table: pd.DataFrame,
    targets: Mapping[str, float | None],
    windows: Mapping[str, float] = HIT,
) -> np.ndarray:
    """Per row of a scored table (``core.generate.score``), the sum over the targeted
    properties of |value − target| / hit window; inf for a molecule that did not decode
    (``smiles == ""``), 0 for every valid one when nothing is targeted.

    >>> table = pd.DataFrame({"smiles": ["CO", ""], "tpsa": [20.2, float("nan")]})
    >>> target_miss(table, {"tpsa": 25.0}).round(2).tolist()
    [0.48, inf]
    """
    miss = np.zeros(len(table))
    for name, target in targets.items():
        if target is not None:
            miss += np.abs(table[name].to_numpy(dtype=float) - target) / windows[name]
    return np.where(table.smiles.to_numpy() == "", np.inf, miss)


def best_of_k(
    table: pd.DataFrame,
    targets: Mapping[str, float | None],
    n: int,
    windows: Mapping[str, float] = HIT,
) -> pd.DataFrame:
    """The ``n`` rows of ``table`` with the smallest ``target_miss``, closest first; ties keep
    the generation order. Molecules that did not decode come last, so they are kept only
    when fewer than ``n`` did. The rows keep their index (mark them in the whole table with
    ``table.index.isin(best.index)``).

    >>> table = pd.DataFrame(
    ...     {"smiles": ["C", "CO", "", "CCO"], "logp": [0.6, -0.4, float("nan"), -0.0],
    ...      "tpsa": [0.0, 20.2, float("nan"), 20.2]}
    ... )
    >>> best_of_k(table, {"logp": 0.0, "tpsa": 20.0}, 2).smiles.tolist()
    ['CCO', 'CO']
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    order = np.argsort(target_miss(table, targets, windows), kind="stable")
    return table.iloc[order[:n]]
