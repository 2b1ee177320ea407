"""Dataset page: filters drive every view, SMARTS search, the molecule grid and uploads."""

from __future__ import annotations

import re

import pytest
from browser_util import app_test

from core.data import load_dataset
from core.explore import filter_ranges

pytestmark = pytest.mark.usefixtures("fresh_app")


@pytest.fixture
def at(use_tiny_checkpoints):
    at = app_test().run()
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
    return at


def matching(at) -> int:
    """The number in "**N** of M molecules match the filters."."""
    for m in at.markdown:
        found = re.match(r"\*\*([\d,]+)\*\* of [\d,]+ molecules match", m.value)
        if found:
            return int(found.group(1).replace(",", ""))
    raise AssertionError("no match count on the page")


def test_page_shows_everything_at_first(at):
    table = load_dataset()
    assert matching(at) == len(table)
    assert len(at.get("plotly_chart")) >= 9  # 8 histograms + the LogP x TPSA density
    grid = at.dataframe[0].value
    assert len(grid) == 48 and {"structure", "LogP", "TPSA (Å²)", "smiles"} <= set(grid.columns)
    assert grid["structure"].iloc[0].startswith("data:image/png;base64,")


def test_sliders_filter_every_view(at):
    at.slider(key="range_logp").set_value((1.0, 3.0)).run()
    at.slider(key="range_tpsa").set_value((40.0, 80.0)).run()
    assert not at.exception
    table = load_dataset()
    expected = filter_ranges(table, {"logp": (1.0, 3.0), "tpsa": (40.0, 80.0)})
    assert matching(at) == len(expected)
    grid = at.dataframe[0].value
    assert grid["LogP"].between(1.0, 3.0).all() and grid["TPSA (Å²)"].between(40, 80).all()
    at.segmented_control(key="split").set_value("test").run()
    assert matching(at) == int((expected.split == "test").sum())
    at.button[0].click().run()  # Reset
    assert matching(at) == len(table)


def test_filters_that_match_nothing(at):
    at.slider(key="range_qed").set_value((0.94, 0.95)).run()
    at.slider(key="range_logp").set_value((-3.0, -2.9)).run()
    assert not at.exception
    assert matching(at) == 0
    assert any("No molecule matches" in i.value for i in at.info)


def test_order_by_a_descriptor(at):
    at.selectbox(key="order").set_value("mw").run()
    at.toggle(key="descending").set_value(True).run()
    grid = at.dataframe[0].value
    assert grid["MW (Da)"].is_monotonic_decreasing
    assert grid["MW (Da)"].iloc[0] == pytest.approx(float(load_dataset().mw.max()), abs=0.01)


def test_smarts_search(at):
    at.text_input(key="smarts").input("c1ccncc1").run()
    assert not at.exception
    note = next(m.value for m in at.markdown if "contain" in m.value)
    assert "c1ccncc1" in note
    grid = at.dataframe[0].value
    assert 0 < len(grid) <= 48
    assert all("n" in s for s in grid["smiles"])


def test_invalid_smarts_is_one_error_line(at):
    for pattern in ("c1cc(", "[Xx", "C)"):
        at.text_input(key="smarts").input(pattern).run()
        assert not at.exception
        assert len(at.error) == 1 and "not a valid SMARTS" in at.error[0].value
        assert "\n" not in at.error[0].value


def test_smarts_without_matches(at):
    at.text_input(key="smarts").input("[U]").run()
    assert not at.exception
    assert any("No molecule matches" in i.value for i in at.info)


def test_upload_csv_with_bad_rows(at):
    data = b"Name,SMILES\nethanol,CCO\nbroken,C1CC\nempty,\nphenol,c1ccccc1O\n"
    at.file_uploader(key="upload").upload("mine.csv", data, "text/csv").run()
    assert not at.exception
    summary = next(m.value for m in at.markdown if "rows could not be used" in m.value)
    assert "**2** molecules from 4 rows" in summary and "**2** rows" in summary
    assert at.expander[0].label.startswith("Rows that could not be used (2)")
    bad = at.expander[0].dataframe[0].value
    assert bad["line"].tolist() == [3, 4]
    assert any(m.key == "compare_logp" for m in at.get("plotly_chart"))
    assert any("outside the LogP/TPSA range" in m.value for m in at.markdown)


def test_upload_smiles_list(at):
    at.file_uploader(key="upload").upload("list.smi", b"CCO a\nc1ccccc1 b\n", "text/plain").run()
    assert not at.exception
    assert any("**2** molecules from 2 rows" in m.value for m in at.markdown)


def test_unusable_uploads_give_one_message_each(at):
    cases = [
        ("empty.csv", b"", "is empty"),
        ("bin.csv", b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        ("latin.smi", "CCO\ncafé\n".encode("latin-1"), "not UTF-8"),
        ("cols.csv", b"a,b\n1,2\n", "no 'smiles' column"),
    ]
    for name, data, message in cases:
        at.file_uploader(key="upload").set_value((name, data, "text/csv")).run()
        assert not at.exception
        assert len(at.error) == 1 and message in at.error[0].value, name
