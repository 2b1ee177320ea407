"""What a closed-loop model's decoding refused, in words: each symbol drawn and then refused
because it would have closed a ring larger than ``max_ring`` atoms, or ended the molecule
outside the hit window of a target (finishing on target, ``core.closed_loop``)."""

from __future__ import annotations

from collections.abc import Sequence

from core.chem import DESCRIPTOR_SHORT, DESCRIPTOR_UNITS
from core.closed_loop import MAX_RING
from core.feedback import PrefixTracker


def _after(symbols: Sequence[str], symbol: str, names: Sequence[str] = ()) -> PrefixTracker:
    """A tracker of the one molecule ``symbols`` + ``symbol`` decode to."""
    tracker = PrefixTracker(1, names, symbols)
    tracker.push([symbol])
    return tracker


def ring_after(symbols: Sequence[str], symbol: str) -> int:
    """Atoms in the largest ring of the molecule ``symbols`` + ``symbol`` decode to.

    >>> ring_after(["[C]"] * 9 + ["[Ring1]"], "[=Branch2]")
    9
    """
    return int(_after(symbols, symbol).rings[0])


def refusal_notes(
    symbols: Sequence[str], refused: Sequence[str], names: Sequence[str] = ()
) -> list[str]:
    """One line per symbol refused after ``symbols``, in the order drawn: which, and why
    (quoting the ``names`` properties where it would have ended the molecule off target).

    >>> refusal_notes(["[C]"] * 9 + ["[Ring1]"], ["[=Branch2]"])
    ['drew `[=Branch2]` → would close a 9-atom ring; refused']
    >>> refusal_notes(["[C]", "[C]", "[C]"], ["[=O]"], ["tpsa"])
    ['drew `[=O]` → would end the molecule at TPSA 17.1 Å², off target; refused']
    """
    notes = []
    for s in refused:
        t = _after(symbols, s, names)
        ring = int(t.rings[0])
        if ring <= MAX_RING and t.derivations[0].finished:
            pairs = zip(names, t.values[0], strict=True)
            values = ", ".join(f"{DESCRIPTOR_SHORT[p]} {v:.3g}{_unit(p)}" for p, v in pairs)
            notes.append(f"drew `{s}` → would end the molecule at {values}, off target; refused")
        else:
            notes.append(f"drew `{s}` → would close a {ring}-atom ring; refused")
    return notes


def _unit(p: str) -> str:
    return f" {DESCRIPTOR_UNITS[p]}" if p in DESCRIPTOR_UNITS else ""


def refusals_by_step(
    symbols: Sequence[str],
    refused: Sequence[Sequence[int]],
    tokens: Sequence[str],
    names: Sequence[str] = (),
) -> dict[int, list[str]]:
    """Step number (from 1) -> its ``refusal_notes``, for the steps that refused anything;
    ``symbols``: the symbols written, ``refused``: per step the token ids refused,
    ``tokens``: the tokenizer's symbols, ``names``: the properties to quote.

    >>> nine = ["[C]"] * 9 + ["[Ring1]", "[Branch1]"]  # step 11 wrote [Branch1]: a 5-ring
    >>> refusals_by_step(nine, [[]] * 10 + [[2]], ["[C]", "[Ring1]", "[=Branch2]"])
    {11: ['drew `[=Branch2]` → would close a 9-atom ring; refused']}
    """
    return {
        k: refusal_notes(symbols[: k - 1], [tokens[t] for t in ids], names)
        for k, ids in enumerate(refused, start=1)
        if ids
    }
