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


def test_an_end_refused_off_target_is_named_with_the_properties_it_would_have_had():
    """[=O] after propane ends the molecule (propanal, TPSA 17.1 Å²): the note says so,
    quoting each named property, not a ring."""
    notes = refusals_by_step(["[C]"] * 3 + ["[C]"], [[], [], [], [1]], ["[C]", "[=O]"],
                             ["logp", "tpsa"])  # fmt: skip
    assert list(notes) == [4] and "would end the molecule at LogP" in notes[4][0]
    assert "TPSA 17.1 Å²" in notes[4][0] and "ring" not in notes[4][0]
