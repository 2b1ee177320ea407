"""ui.refusals: the notes on symbols a closed loop refused name the ring each would close,
measured on the molecule written before that step."""

from ui.refusals import refusals_by_step, ring_after

NINE = ["[C]"] * 9 + ["[Ring1]"]  # the next symbol says how far back the ring closes


def test_ring_after_measures_the_ring_the_symbol_closes():
    assert ring_after(NINE, "[=Branch2]") == 9
    assert ring_after(NINE, "[Branch1]") == 5
    assert ring_after(["[C]", "[C]"], "[O]") == 0


def test_refusals_by_step_numbers_steps_from_one_and_skips_clean_ones():
    tokens = ["[C]", "[Ring1]", "[=Branch2]", "[Branch1]"]
    written = [*NINE, "[Branch1]", "[C]"]
    refused = [[]] * 10 + [[2]] + [[]]
    notes = refusals_by_step(written, refused, tokens)
    assert notes == {11: ["drew `[=Branch2]` → would close a 9-atom ring; refused"]}
    assert refusals_by_step(written, [[]] * 12, tokens) == {}
