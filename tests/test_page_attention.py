"""Attention page (AppTest on a tiny checkpoint): heatmaps with the prefix labelled, typed
SMILES (valid, invalid, unreadable), condition toggles and the live causal-mask check."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_page
from streamlit.testing.v1 import AppTest

from core.chem import describe_smiles

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "attention.py")


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def as_array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return flat.reshape([int(n) for n in str(value["shape"]).split(",")])
    return np.array(value, dtype=float)


def tick_labels(at: AppTest) -> list[str]:
    return [t for fig in figures(at) for t in fig["layout"].get("yaxis", {}).get("ticktext", [])]


@pytest.fixture
def app(use_tiny_checkpoints):
    return run_page(PAGE)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_heatmaps_label_the_prefix_and_grey_the_mask(app):
    labels = tick_labels(app)
    assert any("LogP=" in t for t in labels) and any("TPSA=" in t for t in labels)
    assert any(">z<" in t for t in labels) and any("[BOS]" in t for t in labels)
    decoder = next(
        f for f in figures(app) if "Decoder" in f["layout"].get("title", {}).get("text", "")
    )
    mask_layer, weights = decoder["data"][0], decoder["data"][1]
    assert mask_layer["hoverinfo"] == "skip"
    mask, w = as_array(mask_layer["z"]), as_array(weights["z"])
    upper = np.triu(np.ones(mask.shape, dtype=bool), k=1)  # the future: masked
    assert np.all(mask[upper] == 1.0) and np.all(np.isnan(mask[~upper]))
    assert np.all(np.isnan(w[upper])) and np.all(w[~upper] > 0)


def test_leak_check_shows_exactly_zero_for_earlier_positions(app):
    assert metric(app, "Earlier positions: max |Δ logit|") == "0"
    assert metric(app, "Earlier positions: max |Δ attention|") == "0"
    assert float(metric(app, "Replaced and later positions: max |Δ logit|")) > 0
    assert app.success and "no leak" in app.success[0].value
    app.select_slider(key="att_leak_position").set_value(0).run()
    assert not app.exception
    assert metric(app, "Earlier positions: max |Δ logit|") == "0"


def test_typed_smiles_sets_targets_to_its_own_values(app):
    app.text_input(key="att_smiles").set_value("CC(=O)Nc1ccc(O)cc1").run()
    assert not app.exception and not app.error
    own = describe_smiles("CC(=O)Nc1ccc(O)cc1", ["logp", "tpsa"])
    assert app.number_input(key="att_logp").value == pytest.approx(round(own["logp"], 2))
    assert app.number_input(key="att_tpsa").value == pytest.approx(round(own["tpsa"], 2))


@pytest.mark.parametrize(
    ("smiles", "message"),
    [("C1CC(", "Not a valid SMILES"), ("C" * 90, "cannot read"), ("[Na+].[Cl-]", "cannot read")],
)
def test_bad_smiles_give_one_error_and_no_exception(app, smiles, message):
    app.text_input(key="att_smiles").set_value(smiles).run()
    assert not app.exception
    assert len(app.error) == 1 and message in app.error[0].value
    assert not app.get("plotly_chart")


def test_stereo_smiles_is_read_without_its_stereochemistry(app):
    app.text_input(key="att_smiles").set_value("C/C=C/c1ccccc1").run()
    assert not app.exception and not app.error
    assert any("Stereochemistry removed" in i.value for i in app.info)
    assert app.get("plotly_chart")


def test_unconditioned_property_is_labelled_free(app):
    app.toggle(key="att_use_logp").set_value(False).run()
    assert not app.exception
    assert any("LogP (free)" in t for t in tick_labels(app))
    app.segmented_control(key="att_dec_layer").set_value(2).run()
    assert not app.exception
    titles = [f["layout"].get("title", {}).get("text", "") for f in figures(app)]
    assert "Decoder layer 2, head 1" in titles


def test_open_loop_checkpoint_shows_no_gap_inputs(app):
    assert not any("gap" in c.value for c in app.caption)
    assert len(app.dataframe) == 0


def test_closed_loop_rows_read_the_gap_to_each_target(use_tiny_feedback_checkpoints):
    at = run_page(PAGE)
    at.text_input(key="att_smiles").set_value("CCO").run()
    at.number_input(key="att_tpsa").set_value(30.0).run()
    assert not at.exception and not at.error
    assert any("not an attention key" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert list(table.position) == ["[BOS]", "1: [C]", "2: [C]", "3: [O]"]
    assert list(table["molecule so far"]) == ["(empty)", "C", "CC", "CCO"]
    own = describe_smiles("CCO", ["tpsa"])["tpsa"]
    assert table["TPSA so far"].tolist() == pytest.approx([0.0, 0.0, 0.0, own], abs=0.01)
    assert table["gap TPSA"].tolist() == pytest.approx([30.0, 30.0, 30.0, 30.0 - own], abs=0.01)
    at.toggle(key="att_use_logp").set_value(False).run()
    assert "gap LogP" not in at.dataframe[0].value  # a free property reads no gap


def test_a_model_that_reads_the_derivation_shows_it_per_row(use_tiny_derivation_checkpoints):
    at = run_page(PAGE)
    at.text_input(key="att_smiles").set_value("CC=O").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.position) == ["[BOS]", "1: [C]", "2: [C]", "3: [=O]"]
    assert list(table["bonds left"]) == [
        "(no atom yet)",
        "3 or more",
        "3 or more",
        "none: the molecule is finished",
    ]
    assert any("derivation" in c.value for c in at.caption)
