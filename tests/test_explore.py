"""Dataset exploration helpers: filters, SMARTS search, histograms, upload parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.chem import DESCRIPTORS
from core.data import load_dataset
from core.explore import (
    MAX_UPLOAD_BYTES,
    ExploreError,
    bin_edges,
    density_2d,
    filter_ranges,
    histogram,
    parse_smarts,
    parse_upload,
    substructure_search,
)


@pytest.fixture(scope="module")
def table():
    return load_dataset().head(3000)


def test_filter_ranges_keeps_closed_intervals(table):
    kept = filter_ranges(table, {"logp": (1.0, 3.0), "tpsa": (40.0, 80.0)})
    assert 0 < len(kept) < len(table)
    assert kept.logp.between(1.0, 3.0).all() and kept.tpsa.between(40.0, 80.0).all()
    outside = table.drop(kept.index)
    assert (~(outside.logp.between(1, 3) & outside.tpsa.between(40, 80))).all()
    assert len(filter_ranges(table, {})) == len(table)


def test_filter_ranges_rejects_bad_input(table):
    with pytest.raises(ExploreError, match="no column"):
        filter_ranges(table, {"colour": (0, 1)})
    with pytest.raises(ExploreError, match="empty range"):
        filter_ranges(table, {"logp": (3, 1)})


@pytest.mark.parametrize("bad", ["", "   ", "c1ccc(", "[Xx", "C" * 600])
def test_invalid_smarts_is_one_clear_error(bad):
    with pytest.raises(ExploreError) as info:
        parse_smarts(bad)
    assert "\n" not in str(info.value)


def test_substructure_search_agrees_with_full_parsing(table):
    from rdkit import Chem

    query = Chem.MolFromSmarts("c1ccncc1")
    expected = [s for s in table.smiles if Chem.MolFromSmiles(s).HasSubstructMatch(query)]
    result = substructure_search(table, "c1ccncc1")
    assert result.rows.smiles.tolist() == expected
    assert result.n_searched == len(table) and not result.capped
    first = result.rows.iloc[0]
    assert len(first.atoms) == 6  # atom ids of the match, for highlighting


def test_substructure_search_stops_at_the_cap(table):
    result = substructure_search(table, "[#6]", max_matches=10)
    assert len(result.rows) == 10 and result.capped and result.n_searched == 10


def test_bin_edges_and_histogram():
    assert bin_edges("hbd", [0, 2]).tolist() == [-0.5, 0.5, 1.5, 2.5]
    edges = bin_edges("logp", [-1.0, 4.0], n_bins=5)
    assert edges[0] == -1.0 and edges[-1] == 4.0 and len(edges) == 6
    hist = histogram([-1.0, 0.1, 3.9, 10.0, np.nan], edges)
    assert hist["count"].sum() == 4  # the NaN is dropped, 10.0 goes to the last bin
    assert hist["fraction"].sum() == pytest.approx(1.0)
    assert len(bin_edges("logp", [])) == 41  # no values: still usable edges


def test_density_2d_counts_every_point(table):
    x_edges = bin_edges("logp", table.logp, 20)
    y_edges = bin_edges("tpsa", table.tpsa, 10)
    grid = density_2d(table.logp, table.tpsa, x_edges, y_edges)
    assert grid.shape == (10, 20) and grid.sum() == len(table)


def test_csv_upload_with_bad_rows():
    data = b"Name,SMILES,note\na,CCO,x\nb,,y\nc,C1CC,z\nd,c1ccccc1,w\n"
    report = parse_upload("mine.csv", data)
    assert report.table.smiles.tolist() == ["CCO", "c1ccccc1"]
    assert report.table.line.tolist() == [2, 5]
    assert set(DESCRIPTORS) <= set(report.table.columns)
    assert report.table.loc[0, "hbd"] == 1.0
    assert report.bad.to_dict("records") == [
        {"line": 3, "input": "", "reason": "empty"},
        {"line": 4, "input": "C1CC", "reason": "not a valid SMILES"},
    ]
    assert report.n_rows == 4


def test_csv_with_semicolons_and_bom():
    report = parse_upload("x.csv", "\ufeffsmiles;value\nCCN;1\n".encode())
    assert report.table.smiles.tolist() == ["CCN"]


def test_smiles_list_skips_header_comments_and_names():
    data = b"SMILES\n# a comment\nCCO ethanol\n\nc1ccccc1\tbenzene\nxyz\n"
    report = parse_upload("list.smi", data)
    assert report.table.smiles.tolist() == ["CCO", "c1ccccc1"]
    assert report.bad.line.tolist() == [6]


def test_row_cap_is_reported():
    data = ("\n".join(["CCO"] * 30)).encode()
    report = parse_upload("many.txt", data, max_rows=10)
    assert len(report.table) == 10 and report.n_dropped == 20
    assert "first 10 rows" in report.notes[0]


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("e.csv", b"", "empty"),
        ("blank.smi", b"\n  \n", "blank"),
        ("bin.csv", b"PK\x03\x04\x00\x00binary", "binary"),
        ("latin.csv", "smiles\nCCO\ncafé\n".encode("latin-1"), "not UTF-8"),
        ("nosmiles.csv", b"a,b\n1,2\n", "no 'smiles' column"),
        ("header.csv", b"smiles\n", "no data rows"),
        ("x.sdf", b"CCO\n", "expected a .csv"),
        ("big.smi", b"C" * (MAX_UPLOAD_BYTES + 1), "limit is 5 MB"),
    ],
)
def test_unusable_files_give_one_line(name, data, message):
    with pytest.raises(ExploreError, match=message) as info:
        parse_upload(name, data)
    assert "\n" not in str(info.value)


def test_progress_reaches_one():
    seen = []
    parse_upload("p.smi", b"CCO\nCCN\n", progress=seen.append)
    assert seen[-1] == 1.0


def test_parse_upload_table_is_empty_but_typed_when_all_rows_are_bad():
    report = parse_upload("bad.smi", b"xyz\nqq\n")
    assert report.table.empty and list(report.table.columns)[:2] == ["line", "smiles"]
    assert len(report.bad) == 2
    assert isinstance(report.table, pd.DataFrame)
