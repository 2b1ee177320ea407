"""What a closed-loop model's decoding refused, in words: each symbol drawn and then refused
because it would have closed a ring larger than ``max_ring`` atoms (``core.closed_loop``)."""

from __future__ import annotations

from collections.abc import Sequence

from core.feedback import PrefixTracker


def ring_after(symbols: Sequence[str], symbol: str) -> int:
    """Atoms in the largest ring of the molecule ``symbols`` + ``symbol`` decode to.

    >>> ring_after(["[C]"] * 9 + ["[Ring1]"], "[=Branch2]")
    9
    """
    tracker = PrefixTracker(1, (), symbols)
    tracker.push([symbol])
    return int(tracker.rings[0])


def refusal_notes(symbols: Sequence[str], refused: Sequence[str]) -> list[str]:
    """One line per symbol refused after ``symbols``, in the order drawn: which, and why.

    >>> refusal_notes(["[C]"] * 9 + ["[Ring1]"], ["[=Branch2]"])
    ['drew `[=Branch2]` → would close a 9-atom ring; refused']
    """
    return [
        f"drew `{s}` → would close a {ring_after(symbols, s)}-atom ring; refused" for s in refused
    ]


def refusals_by_step(
    symbols: Sequence[str], refused: Sequence[Sequence[int]], tokens: Sequence[str]
) -> dict[int, list[str]]:
    """Step number (from 1) -> its ``refusal_notes``, for the steps that refused anything;
    ``symbols``: the symbols written, ``refused``: per step the token ids refused,
    ``tokens``: the tokenizer's symbols.

    >>> nine = ["[C]"] * 9 + ["[Ring1]", "[Branch1]"]  # step 11 wrote [Branch1]: a 5-ring
    >>> refusals_by_step(nine, [[]] * 10 + [[2]], ["[C]", "[Ring1]", "[=Branch2]"])
    {11: ['drew `[=Branch2]` → would close a 9-atom ring; refused']}
    """
    return {
        k: refusal_notes(symbols[: k - 1], [tokens[t] for t in ids])
        for k, ids in enumerate(refused, start=1)
        if ids
    }
