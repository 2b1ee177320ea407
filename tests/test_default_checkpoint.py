"""The shipped checkpoints/default uses its conditions: molecules land nearer their own
target than the other target of the same property (the shuffled control), for LogP and for
TPSA separately; and its generation never closes a ring of 8 atoms or more, which the model
alone does now and then."""

import numpy as np
import pytest

from core.checkpoint import load_checkpoint
from core.chem import selfies_to_mol
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


def largest_rings(selfies: list[str]) -> list[int]:
    mols = [selfies_to_mol(s) for s in selfies]  # alive while their ring info is read
    return [max(map(len, m.GetRingInfo().AtomRings()), default=0) for m in mols]


def test_generation_closes_no_ring_of_eight_atoms_or_more(bundle):
    targets = {"logp": 2.5, "tpsa": 60.0}
    free = largest_rings(generate(bundle, targets, 2 * N, seed=3, max_ring=None))
    kept = largest_rings(generate(bundle, targets, 2 * N, seed=3))
    assert sum(size >= 8 for size in free) >= 3  # the model alone writes some
    assert max(kept) <= 7 and sum(size >= 5 for size in kept) > N  # rings, none large
