"""Where a SELFIES string's derivation stands after each symbol, as a few small codes a
closed-loop decoder can read.

SELFIES decodes left to right with a state: the bonds the atom being extended has left. A
``[Branch…]`` symbol takes its length from the next index symbols and derives that many
symbols as a side chain, a ``[Ring…]`` symbol takes its target from its index symbols and
uses one of those bonds, and once the atom being extended has no bond left, everything up to
the end of its branch (or of the string) is ignored. So the same symbol, ``[=O]`` say, is a
carbonyl inside a branch but ends the molecule on the main chain, and the model would have
to count branch lengths from index symbols to know which. ``Derivation`` follows the
derivation exactly as ``selfies.decoder`` does (with its own grammar functions), one symbol at
a time, and ``codes`` says, after each symbol:

- ``VALENCE``: bonds left on the atom being extended (1, 2, 3 or more), nothing derived yet
  (0), a side chain that has ended and whose remaining symbols are ignored (4), or a main
  chain that has ended: no further symbol can change the molecule (5);
- ``PENDING``: index symbols still to read, of a branch (1-3) or a ring (4-6), or none (0);
- ``DEPTH``: open branches (0-3, 3 for more);
- ``LEFT``: symbols left in the innermost open branch (1-8, 9 for more; 0 on the main chain).

``derivation_codes`` gives them for every prefix of a string (training); generation pushes
one symbol at a time (``core.feedback.PrefixTracker``): the same function either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from selfies.grammar_rules import (
    get_index_from_selfies,
    next_atom_state,
    next_branch_state,
    next_ring_state,
    process_atom_symbol,
    process_branch_symbol,
    process_ring_symbol,
)

CODE_SIZES = (6, 7, 4, 10)  # values of VALENCE, PENDING, DEPTH, LEFT
START, SIDE_ENDED, ENDED = 0, 4, 5  # VALENCE codes beside the bonds left (1-3)


@dataclass(frozen=True)
class _Frame:
    """One chain being derived: its state (None once ended; 0 before its first atom) and,
    for a branch, how many of its symbols are left (None on the main chain)."""

    state: int | None
    left: int | None


@dataclass(frozen=True)
class _Pending:
    """Index symbols still to read after a ``[Branch…]`` or ``[Ring…]`` symbol."""

    ring: bool
    need: int
    got: tuple[str, ...] = ()
    branch_state: int = 0  # the side chain's first state (a branch)


@dataclass(frozen=True)
class Derivation:
    """The derivation after some symbols; ``push`` returns the next one (never changes this
    one, so a tracker can keep each step to go back to).

    >>> d = Derivation()
    >>> for s in ["[C]", "[Branch1]", "[C]", "[O]", "[=O]"]:
    ...     d = d.push(s)
    ...     print(s, d.codes)
    [C] (3, 0, 0, 0)
    [Branch1] (3, 1, 0, 0)
    [C] (1, 0, 1, 1)
    [O] (3, 0, 0, 0)
    [=O] (5, 0, 0, 0)
    """

    frames: tuple[_Frame, ...] = (_Frame(0, None),)
    pending: _Pending | None = None
    # the last symbol cannot have changed the molecule decoded so far: read by an ended
    # chain, a [Branch…] symbol or its index symbols (no atom yet), an ignored [Ring…] symbol
    inert: bool = False

    @property
    def finished(self) -> bool:
        """Whether no further symbol can change the molecule: the main chain has ended."""
        return len(self.frames) == 1 and self.frames[0].state is None and self.pending is None

    @property
    def codes(self) -> tuple[int, int, int, int]:
        """(VALENCE, PENDING, DEPTH, LEFT) as the module docstring defines them."""
        top = self.frames[-1]
        if top.state is None:
            valence = ENDED if len(self.frames) == 1 else SIDE_ENDED
        else:
            valence = min(top.state, 3)
        pending = 0
        if self.pending is not None:
            pending = self.pending.need + (3 if self.pending.ring else 0)
        left = 0 if top.left is None else min(top.left, 9)
        return valence, pending, min(len(self.frames) - 1, 3), left

    def push(self, symbol: str) -> Derivation:
        """The derivation after one more symbol (as ``selfies.decoder`` reads it)."""
        frames, pending = list(self.frames), self.pending
        top = frames[-1]
        if pending is not None:  # an index symbol
            inert = not pending.ring
            pending = _Pending(pending.ring, pending.need - 1, (*pending.got, symbol),
                               pending.branch_state)  # fmt: skip
            if pending.need == 0:
                if not pending.ring:  # the side chain starts after its index symbols
                    length = get_index_from_selfies(*pending.got) + 1
                    frames = _count(frames)
                    side = _Frame(pending.branch_state, length)
                    return Derivation((*frames, side), None, inert)
                pending = None
        elif top.state is not None:
            frames[-1], pending = _read(top, symbol)
            kind = symbol[-4:-2]
            inert = kind == "ch" or (kind == "ng" and top.state == 0)
        else:
            inert = True
        return Derivation(tuple(_close(_count(frames))), pending, inert)


def _read(top: _Frame, symbol: str) -> tuple[_Frame, _Pending | None]:
    """The chain after one branch, ring or atom symbol, and the index symbols it waits for."""
    state = top.state
    if symbol[-4:-2] == "ch":  # [Branch…]: ignored unless a bond is left beside the chain's
        branch_type, n = process_branch_symbol(symbol)
        if state <= 1:
            return top, None
        first, after = next_branch_state(branch_type, state)
        return _Frame(after, top.left), _Pending(False, n, (), first)
    if symbol[-4:-2] == "ng":  # [Ring…]: ignored before the first atom
        ring_type, n, _ = process_ring_symbol(symbol)
        if state == 0:
            return top, None
        return _Frame(next_ring_state(ring_type, state)[1], top.left), _Pending(True, n)
    (bond_order, _), atom = process_atom_symbol(symbol)
    return _Frame(next_atom_state(bond_order, atom.bonding_capacity, state)[1], top.left), None


def _count(frames: list[_Frame]) -> list[_Frame]:
    """Every open branch has one symbol fewer left."""
    return [f if f.left is None else _Frame(f.state, f.left - 1) for f in frames]


def _close(frames: list[_Frame]) -> list[_Frame]:
    """Branches whose symbols are used up return to the chain they left."""
    while len(frames) > 1 and frames[-1].left <= 0:
        frames.pop()
    return frames


def code_labels(codes: Sequence[int]) -> dict[str, str]:
    """The four codes in words, for a table a person reads.

    >>> list(code_labels((2, 4, 1, 3)).values())
    ['2', '1 (ring)', '1', '3']
    >>> code_labels((ENDED, 0, 0, 0))["bonds left"]
    'none: the molecule is finished'
    """
    valence, pending, depth, left = (int(c) for c in codes)
    words = {
        START: "(no atom yet)",
        SIDE_ENDED: "none: side chain over, its symbols ignored",
        ENDED: "none: the molecule is finished",
        3: "3 or more",
    }
    bonds = words.get(valence, str(valence))
    due = (
        "none"
        if pending == 0
        else f"{(pending - 1) % 3 + 1} ({'ring' if pending > 3 else 'branch'})"
    )
    return {
        "bonds left": bonds,
        "index symbols due": due,
        "open branches": "3 or more" if depth == 3 else str(depth),
        "left in branch": "" if depth == 0 else ("9 or more" if left == 9 else str(left)),
    }


def derive(symbols: Sequence[str]) -> list[Derivation]:
    """The derivation before any symbol and after each of ``symbols`` (L + 1 states).

    >>> [d.finished for d in derive(["[C]", "[F]"])]
    [False, False, True]
    """
    states = [Derivation()]
    for symbol in symbols:
        states.append(states[-1].push(symbol))
    return states


def derivation_codes(symbols: Sequence[str]) -> np.ndarray:
    """Codes (L + 1, 4) before any symbol and after each of ``symbols``.

    >>> derivation_codes(["[C]", "[F]"]).tolist()
    [[0, 0, 0, 0], [3, 0, 0, 0], [5, 0, 0, 0]]
    """
    return np.array([d.codes for d in derive(symbols)], dtype=np.int32)
