"""The shipped checkpoints/default uses its conditions: molecules land nearer their own
target than the other target of the same property (the shuffled control), for LogP and for
TPSA separately."""

import numpy as np
import pytest

from core.checkpoint import load_checkpoint
from core.data import DATA_DIR
from core.generate import generate, score

N = 64  # molecules per target


@pytest.fixture(scope="module")
def bundle():
    return load_checkpoint(DATA_DIR.parent / "checkpoints" / "default")


@pytest.mark.parametrize(("name", "low", "high"), [("logp", 1.0, 3.5), ("tpsa", 40.0, 100.0)])
def test_condition_is_used(bundle, name, low, high):
    values = {}
    for target in (low, high):
        table = score(generate(bundle, {name: target}, N, seed=11), (name,))
        values[target] = table.loc[table.smiles != "", name].to_numpy()
        assert len(values[target]) == N  # SELFIES: every string is a molecule
    real = np.mean([np.abs(values[low] - low).mean(), np.abs(values[high] - high).mean()])
    shuffled = np.mean([np.abs(values[low] - high).mean(), np.abs(values[high] - low).mean()])
    assert real < 0.4 * shuffled, (real, shuffled)
    assert values[high].mean() - values[low].mean() > 0.6 * (high - low)
