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
from core.derivation import derive
from core.sidecar import share

_EMPTY = 0.0  # every descriptor in the table is 0 for the empty molecule (no atoms)


@functools.lru_cache(maxsize=200_000)
def _describe_cached(smiles: str, names: tuple[str, ...]) -> tuple[tuple[float, ...], int]:
    """The descriptors ``names`` of one SMILES (zeros for "", nothing decoded yet) and the
    number of atoms in its largest ring (0 without rings)."""
    if not smiles:
        return (_EMPTY,) * len(names), 0
    mol = mol_from_smiles(smiles)
    if mol is None:  # selfies output always parses; kept total so generation never stops
        return (_EMPTY,) * len(names), 0
    with rdkit_quiet():
        values = tuple(float(DESCRIPTORS[name](mol)) for name in names)
    return values, max((len(ring) for ring in mol.GetRingInfo().AtomRings()), default=0)


def _decode(selfies_prefix: str) -> str:
    """The SMILES of a SELFIES prefix ("" for nothing, or for what selfies cannot decode)."""
    try:
        return sf.decoder(selfies_prefix) if selfies_prefix else ""
    except sf.DecoderError:
        return ""


def prefix_properties(selfies_prefix: str, names: Sequence[str]) -> tuple[str, tuple[float, ...]]:
    """(SMILES, descriptors) of the molecule a SELFIES prefix decodes to.

    >>> prefix_properties("[C][C][O]", ["tpsa"])
    ('CCO', (20.23,))
    >>> prefix_properties("", ["logp", "tpsa"])
    ('', (0.0, 0.0))
    """
    smiles, values, _ = describe_prefixes([selfies_prefix], tuple(names))[0]
    return smiles, values


def describe_prefixes(
    prefixes: list[str], names: tuple[str, ...]
) -> list[tuple[str, tuple[float, ...], int]]:
    """(SMILES, descriptors, atoms in the largest ring) of the molecule each SELFIES prefix
    decodes to; a module-level function of a list, so ``core.sidecar`` can share it out.

    >>> describe_prefixes(["[C][C][O]", "[C]"], ("tpsa",))
    [('CCO', (20.23,), 0), ('C', (0.0,), 0)]
    """
    out = []
    for prefix in prefixes:
        smiles = _decode(prefix)
        out.append((smiles, *_describe_cached(smiles, names)))
    return out


class PrefixTracker:
    """The properties of each of ``n`` growing SELFIES strings, updated one symbol at a time.

    Beside the properties (``values``) it knows each molecule's SMILES, its largest ring
    (``rings``), whether the last symbol changed it (``changed``), whether any further
    symbols could (``finished``) and where the SELFIES derivation stands (``codes``, read by
    a model trained with ``derivation``): what generation needs to keep rings small and to
    stop a molecule that can no longer change.

    >>> t = PrefixTracker(1, ["tpsa"])
    >>> [round(float(t.push([s])[0, 0]), 2) for s in ("[C]", "[C]", "[O]")]
    [0.0, 0.0, 20.23]
    """

    def __init__(self, n: int, names: Sequence[str], prefix: Sequence[str] = ()):
        self.names = tuple(names)
        self.symbols: list[list[str]] = [list(prefix) for _ in range(n)]
        smiles, row, ring = describe_prefixes(["".join(prefix)], self.names)[0]
        self.smiles = [smiles] * n
        self.values = np.tile(np.array(row, dtype=np.float32), (n, 1))  # (n, P)
        self.rings = np.full(n, ring)  # atoms in each molecule's largest ring
        self.changed = np.zeros(n, dtype=bool)  # did the last symbol change the molecule?
        self.still = np.zeros(n, dtype=int)  # symbols in a row that changed nothing
        self._before = list(self.smiles)  # each molecule before the last symbol
        self._still_before = self.still.copy()
        self._values_before, self._rings_before = self.values.copy(), self.rings.copy()
        start = derive(prefix)[-1]
        self.derivations = [start] * n
        self._derivation_before = list(self.derivations)
        self.codes = np.tile(np.array(start.codes, dtype=np.int32), (n, 1))  # (n, 4)

    def push(self, symbols: Sequence[str | None]) -> np.ndarray:
        """Append one symbol per string (None: the string has ended, nothing changes);
        returns the properties (n, P) of every string's molecule so far. Many strings at
        once are decoded and described on two cores (``core.sidecar``)."""
        self._values_before, self._rings_before = self.values.copy(), self.rings.copy()
        grown = []
        for i, symbol in enumerate(symbols):
            self._before[i], self._still_before[i] = self.smiles[i], self.still[i]
            self._derivation_before[i] = self.derivations[i]
            if symbol is not None:
                self.symbols[i].append(symbol)
                self._derive(i, symbol)
                grown.append(i)
            else:
                self.changed[i] = False
        self._describe(grown)
        return self.values

    def replace_last(self, i: int, symbol: str | None) -> None:
        """Replace string ``i``'s last symbol (None: remove it), as if that had been pushed.

        >>> t = PrefixTracker(1, ["tpsa"], ["[C]"])
        >>> _ = t.push(["[O]"]); t.replace_last(0, "[C]"); t.smiles, t.changed.tolist()
        (['CC'], [True])
        >>> t.replace_last(0, None); t.smiles, t.changed.tolist()
        (['C'], [False])
        """
        self.symbols[i].pop()
        if symbol is not None:
            self.symbols[i].append(symbol)
        self._derive(i, symbol)
        self._describe([i])

    def finished(self, i: int, room: int) -> bool:
        """Whether no ``room`` more symbols can change string ``i``'s molecule: SELFIES
        ignores symbols once the atom being extended (and every open branch) has no valence
        left, and ``room`` carbons would otherwise change it.

        >>> t = PrefixTracker(2, ["tpsa"], ["[C]", "[Branch1]", "[C]"])
        >>> _ = t.push(["[F]", "[F]"]); _ = t.push(["[F]", "[C]"])
        >>> t.smiles, t.finished(0, 5), t.finished(1, 5)
        (['C(F)F', 'C(F)C'], True, False)
        """
        probe = _decode("".join(self.symbols[i]) + "[C]" * room)
        return room == 0 or probe == self.smiles[i]

    def ended_before(self, i: int) -> bool:
        """Whether string ``i``'s derivation had ended before its last symbol: no symbol
        could change its molecule any more (``core.derivation``).

        >>> t = PrefixTracker(1, ["tpsa"], ["[F]"])
        >>> _ = t.push(["[F]"]); t.ended_before(0)
        False
        >>> _ = t.push(["[C]"]); t.ended_before(0), t.smiles
        (True, ['FF'])
        """
        return self._derivation_before[i].finished

    def _derive(self, i: int, symbol: str | None) -> None:
        """Row ``i``'s derivation: the one before the last push, then ``symbol`` (if any)."""
        derivation = self._derivation_before[i]
        self.derivations[i] = derivation if symbol is None else derivation.push(symbol)
        self.codes[i] = self.derivations[i].codes

    def _describe(self, rows: list[int]) -> None:
        """Recompute these rows' molecules from their symbols (no decoding when a row's
        derivation says its last symbol cannot have changed it: a fifth of real molecules'
        symbols), then what changed."""
        decode = [i for i in rows if not self.derivations[i].inert]
        prefixes = ["".join(self.symbols[i]) for i in decode]
        found = dict(zip(decode, share(describe_prefixes, prefixes, self.names), strict=True))
        for i in rows:
            if i in found:
                self.smiles[i], self.values[i], self.rings[i] = found[i]
            else:  # as before the last symbol
                self.smiles[i] = self._before[i]
                self.values[i], self.rings[i] = self._values_before[i], self._rings_before[i]
            self.changed[i] = self.smiles[i] != self._before[i]
            self.still[i] = 0 if self.changed[i] else self._still_before[i] + 1


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
