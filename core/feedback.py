"""Closed-loop property feedback: the properties of the molecule decoded so far.

Every SELFIES prefix decodes to a valid molecule, and Crippen LogP and TPSA are (nearly) sums
of atom contributions. So at every decoder position the model also reads, per conditioned
property, the gap (target − property of the prefix's molecule) / σ: it steers like a
controller with feedback instead of keeping a running sum in its head.

``prefix_table`` computes the property of every prefix of a training molecule (for
``core.data`` and ``core.train``); ``PrefixTracker`` computes the same numbers one symbol at a
time during generation. Both go through ``prefix_properties``, so the model reads exactly the
same function in training and in generation (``tests/test_feedback.py`` checks it on real
molecules). RDKit is the slow part (~250 µs a prefix), so each distinct SMILES is described
once per process (``_describe_cached``); a symbol that leaves the molecule as it was (a
``[Branch…]`` waiting for its length, say) then costs only the selfies decoding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import selfies as sf

from core.chem import DESCRIPTORS, mol_from_smiles, rdkit_quiet

_EMPTY = 0.0  # every descriptor in the table is 0 for the empty molecule (no atoms)


@functools.lru_cache(maxsize=200_000)
def _describe_cached(smiles: str, names: tuple[str, ...]) -> tuple[float, ...]:
    """The descriptors ``names`` of one SMILES; zeros for "" (nothing decoded yet)."""
    if not smiles:
        return (_EMPTY,) * len(names)
    mol = mol_from_smiles(smiles)
    if mol is None:  # selfies output always parses; kept total so generation never stops
        return (_EMPTY,) * len(names)
    with rdkit_quiet():
        return tuple(float(DESCRIPTORS[name](mol)) for name in names)


def prefix_properties(selfies_prefix: str, names: Sequence[str]) -> tuple[str, tuple[float, ...]]:
    """(SMILES, descriptors) of the molecule a SELFIES prefix decodes to.

    >>> prefix_properties("[C][C][O]", ["tpsa"])
    ('CCO', (20.23,))
    >>> prefix_properties("", ["logp", "tpsa"])
    ('', (0.0, 0.0))
    """
    try:
        smiles = sf.decoder(selfies_prefix) if selfies_prefix else ""
    except sf.DecoderError:
        smiles = ""
    return smiles, _describe_cached(smiles, tuple(names))


class PrefixTracker:
    """The properties of each of ``n`` growing SELFIES strings, updated one symbol at a time.

    >>> t = PrefixTracker(1, ["tpsa"])
    >>> [round(float(t.push([s])[0, 0]), 2) for s in ("[C]", "[C]", "[O]")]
    [0.0, 0.0, 20.23]
    """

    def __init__(self, n: int, names: Sequence[str], prefix: Sequence[str] = ()):
        self.names = tuple(names)
        self.symbols: list[list[str]] = [list(prefix) for _ in range(n)]
        smiles, row = prefix_properties("".join(prefix), self.names)
        self.smiles = [smiles] * n
        self.values = np.tile(np.array(row, dtype=np.float32), (n, 1))  # (n, P)

    def push(self, symbols: Sequence[str | None]) -> np.ndarray:
        """Append one symbol per string (None: the string has ended, nothing changes);
        returns the properties (n, P) of every string's molecule so far."""
        for i, symbol in enumerate(symbols):
            if symbol is None:
                continue
            self.symbols[i].append(symbol)
            self.smiles[i], row = prefix_properties("".join(self.symbols[i]), self.names)
            self.values[i] = row
        return self.values


def prefix_table(selfies: str, names: Sequence[str]) -> np.ndarray:
    """Properties (L + 1, P) of the molecules of every prefix of a SELFIES string of L
    symbols: row 0 is the empty molecule, row j the first j symbols.

    >>> prefix_table("[C][C][O]", ["tpsa"])[:, 0].tolist()
    [0.0, 0.0, 0.0, 20.229999542236328]
    """
    symbols = list(sf.split_selfies(selfies))
    tracker = PrefixTracker(1, names)
    rows = [tracker.values[0].copy()]
    for symbol in symbols:
        rows.append(tracker.push([symbol])[0].copy())
    return np.stack(rows)
