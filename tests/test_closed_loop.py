"""Between two decoding steps of a closed-loop model: a symbol that would close a ring of 8
atoms or more is drawn again, and a molecule that no symbol can change any more ends."""

from dataclasses import replace

import numpy as np
import pytest
import selfies as sf
from tiny import tiny_bundle

from core.closed_loop import FINISH_AFTER, MAX_REDRAWS, ClosedLoop
from core.tokenizer import Tokenizer

EIGHT_CARBONS = "[C]" * 8 + "[Ring1]"  # the next symbol is the ring's index Q (ring: Q + 2)


@pytest.fixture(scope="module")
def bundle():
    """A closed-loop bundle whose vocabulary holds every symbol of SELFIES's alphabet (the
    loop reads the tokenizer and the property scales, not the weights)."""
    alphabet = sorted(sf.get_semantic_robust_alphabet())
    return replace(tiny_bundle(feedback=True), tokenizer=Tokenizer.build([], alphabet))


def ids(bundle, *symbols: str) -> np.ndarray:
    return np.array([bundle.tokenizer.tokens.index(s) for s in symbols])


def test_a_large_ring_is_drawn_again_until_it_is_small(bundle):
    asked = []

    def redraw(row: int, refused: list[int]) -> int:
        asked.append(list(refused))
        # first another large ring (Q = 7: 9 atoms), then a 7-membered one (Q = 5)
        return int(ids(bundle, "[O]" if len(refused) == 1 else "[#Branch1]")[0])

    loop = ClosedLoop(bundle, 1, EIGHT_CARBONS, live=True)
    tokens, done, _ = loop.push(ids(bundle, "[Branch2]"), np.array([False]), 40, redraw)
    assert sf.decoder(EIGHT_CARBONS + "[Branch2]") == "C1CCCCCCC1"  # what was sampled: 8 atoms
    assert asked == [list(ids(bundle, "[Branch2]")), list(ids(bundle, "[Branch2]", "[O]"))]
    assert tokens.tolist() == ids(bundle, "[#Branch1]").tolist() and not done[0]
    assert loop.tracker.rings[0] == 7 and loop.tracker.smiles[0] == "CC1CCCCCC1"
    assert loop.refused == asked[-1:] and not loop.completed[0]  # what a Step reports


def test_a_molecule_ends_when_every_draw_closes_a_large_ring(bundle):
    large = ids(bundle, "[Branch2]", "[=Branch2]", "[#Branch2]", "[O]", "[N]", "[=N]", "[=C]",
                "[#C]", "[S]", "[P]")  # fmt: skip
    loop = ClosedLoop(bundle, 1, EIGHT_CARBONS, live=True)
    tokens, done, _ = loop.push(
        large[:1], np.array([False]), 40, lambda row, no: int(large[len(no)])
    )
    assert tokens[0] == bundle.tokenizer.eos_id and done[0]
    assert loop.tracker.smiles[0] == sf.decoder(EIGHT_CARBONS)  # the molecule before it
    assert MAX_REDRAWS < len(large)


def test_ring_limit_off_keeps_the_large_ring(bundle):
    loop = ClosedLoop(bundle, 1, EIGHT_CARBONS, live=True, max_ring=None)
    tokens, done, _ = loop.push(ids(bundle, "[Branch2]"), np.array([False]), 40, None)
    assert loop.tracker.rings[0] == 8 and tokens.tolist() == ids(bundle, "[Branch2]").tolist()


def test_a_molecule_that_cannot_change_ends_and_the_others_go_on(bundle):
    """Row 0 is F-F: its derivation has ended, so the next symbol becomes [EOS]; row 1's
    branch symbols change nothing for a while but more symbols would."""
    eos = bundle.tokenizer.eos_id
    loop = ClosedLoop(bundle, 2, "[F]", live=True)
    loop.push(ids(bundle, "[F]", "[C]"), np.array([False, False]), 40, None)
    tokens, done, reads = loop.push(ids(bundle, "[C]", "[Branch2]"), np.zeros(2, bool), 40, None)
    assert done.tolist() == [True, False] and loop.completed.tolist() == [1, 0]
    assert tokens.tolist() == [eos, ids(bundle, "[Branch2]")[0]]
    for symbol in ("[C]", "[C]"):  # [Branch2]'s two index symbols: still no change
        tokens, done, reads = loop.push(ids(bundle, "[O]", symbol), np.array([True, False]), 40,
                                        None)  # fmt: skip
        assert not done[1]
    assert loop.tracker.smiles == ["FF", "FC"] and loop.refused == [[], []]
    assert loop.tracker.symbols[0] == ["[F]", "[F]"]  # the symbol drawn after it made [EOS]
    assert reads.shape == (2, 1, len(bundle.properties))


def test_a_side_chain_longer_than_the_room_left_ends_after_quiet_symbols(bundle):
    """F-C then a branch whose chain ends at once ([F]) but whose length is 16 symbols: with
    only 5 symbols of room left nothing can change the molecule, which the probe sees once
    FINISH_AFTER symbols in a row changed nothing."""
    loop = ClosedLoop(bundle, 1, "[F][C][Branch1][#C][F]", live=True)
    for k in range(1, FINISH_AFTER + 1):
        _, done, _ = loop.push(ids(bundle, "[C]"), np.array([False]), 5, None)
        assert done[0] == (k == FINISH_AFTER) and loop.completed[0] == done[0]


def test_at_the_length_cap_a_molecule_that_did_not_change_ends_at_once(bundle):
    """With no room left, a symbol that changed nothing ends the molecule ([Branch1] would
    need more symbols to change it)."""
    loop = ClosedLoop(bundle, 1, "[F][C]", live=True)
    tokens, done, _ = loop.push(ids(bundle, "[Branch1]"), np.array([False]), 0, None)
    assert tokens.tolist() == [bundle.tokenizer.eos_id] and done[0]
    loop = ClosedLoop(bundle, 1, "[F][C]", live=True)
    tokens, done, _ = loop.push(ids(bundle, "[Branch1]"), np.array([False]), 5, None)
    assert not done[0]
