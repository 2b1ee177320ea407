"""Exploring a molecule table: range filters, SMARTS search, histograms and user uploads.

Everything the Dataset page does that is not drawing lives here, so it can be tested
without Streamlit. An upload is parsed into a table of descriptors (``core.chem.DESCRIPTORS``)
plus a report of the rows that could not be used; a bad row is counted, never fatal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rdkit import Chem

from core.chem import (
    DESCRIPTORS,
    MAX_SMILES_CHARS,
    canonical_smiles,
    describe,
    mol_from_smiles,
    rdkit_quiet,
)
from core.errors import UserError
from core.molfile import MolFileError, decode_text, smiles_column, text_table

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # the Streamlit server refuses bigger files too
MAX_UPLOAD_ROWS = 5_000  # descriptors cost ~3 ms per molecule (QED and SA dominate)
MAX_MATCHES = 500  # a SMARTS search stops after this many hits
INTEGER_DESCRIPTORS = ("hbd", "hba", "rings")


class ExploreError(UserError, ValueError):
    """A user input (upload, SMARTS, range) cannot be used; the message is one plain line."""


# ---------------------------------------------------------------- filters and search


def filter_ranges(table: pd.DataFrame, ranges: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """Rows of ``table`` whose every column in ``ranges`` lies in its closed ``(lo, hi)``.

    >>> t = pd.DataFrame({"logp": [0.0, 2.0, 4.0], "tpsa": [10.0, 50.0, 90.0]})
    >>> filter_ranges(t, {"logp": (1, 5), "tpsa": (0, 60)}).index.tolist()
    [1]
    """
    keep = np.ones(len(table), dtype=bool)
    for name, (lo, hi) in ranges.items():
        if name not in table:
            raise ExploreError(f"no column '{name}' to filter on")
        if lo > hi:
            raise ExploreError(f"empty range for {name}: {lo} > {hi}")
        values = table[name].to_numpy()
        keep &= (values >= lo) & (values <= hi)
    return table[keep]


def parse_smarts(smarts: str) -> Chem.Mol:
    """The query molecule for a SMARTS pattern; ``ExploreError`` when it does not parse.

    >>> parse_smarts("c1ccncc1").GetNumAtoms()
    6
    """
    text = (smarts or "").strip()
    if not text:
        raise ExploreError("the SMARTS pattern is empty")
    if len(text) > 500:
        raise ExploreError("the SMARTS pattern is longer than 500 characters")
    with rdkit_quiet():
        query = Chem.MolFromSmarts(text)
    if query is None or query.GetNumAtoms() == 0:
        raise ExploreError(f"'{text[:60]}' is not a valid SMARTS pattern")
    return query


def _trusted_mol(smiles: str) -> Chem.Mol | None:
    """Fast parse of a canonical RDKit SMILES (skips full sanitisation; ~5x faster)."""
    with rdkit_quiet():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


@dataclass
class SearchResult:
    """Matches of one SMARTS search over a table."""

    rows: pd.DataFrame  # the matching rows, with an ``atoms`` column (first match's atom ids)
    n_searched: int  # molecules looked at before stopping
    capped: bool  # True when the search stopped at ``max_matches``


def substructure_search(
    table: pd.DataFrame, smarts: str, max_matches: int = MAX_MATCHES
) -> SearchResult:
    """Rows of ``table`` (column ``smiles``, canonical RDKit SMILES) that contain ``smarts``.

    >>> t = pd.DataFrame({"smiles": ["CCO", "c1ccncc1", "CCN"]})
    >>> substructure_search(t, "[NX2,nX2]").rows.smiles.tolist()
    ['c1ccncc1']
    """
    query = parse_smarts(smarts)
    hits, atoms = [], []
    n_searched = 0
    for position, smiles in enumerate(table["smiles"].tolist()):
        n_searched += 1
        mol = _trusted_mol(smiles)
        if mol is None:
            continue
        match = mol.GetSubstructMatch(query)
        if match:
            hits.append(position)
            atoms.append(list(match))
            if len(hits) >= max_matches:
                break
    rows = table.iloc[hits].copy()
    rows["atoms"] = atoms
    return SearchResult(rows, n_searched, len(hits) >= max_matches)


# ---------------------------------------------------------------- histograms


def bin_edges(name: str, values: Sequence[float] | np.ndarray, n_bins: int = 40) -> np.ndarray:
    """Histogram edges for one descriptor: unit bins for counts, 5 Da for MW, else ``n_bins``.

    >>> bin_edges("rings", [0, 1, 3]).tolist()
    [-0.5, 0.5, 1.5, 2.5, 3.5]
    >>> bin_edges("mw", [251.2, 349.9]).tolist()[:3]
    [250.0, 255.0, 260.0]
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if name in INTEGER_DESCRIPTORS:
        return np.arange(math.floor(lo), math.ceil(hi) + 2) - 0.5
    if name == "mw":  # whole 5 Da bins: finer or fractional bins alias with nominal masses
        return np.arange(math.floor(lo / 5) * 5, math.floor(hi / 5) * 5 + 10, 5.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)


def histogram(values: Sequence[float] | np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    """Counts and fractions per bin (values outside the edges go to the first/last bin).

    >>> histogram([0.1, 0.2, 0.9], np.array([0.0, 0.5, 1.0]))["count"].tolist()
    [2, 1]
    """
    values = np.asarray(values, dtype=np.float64)
    values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
    counts, _ = np.histogram(values, bins=edges)
    total = max(int(counts.sum()), 1)
    return pd.DataFrame(
        {
            "left": edges[:-1],
            "right": edges[1:],
            "center": (edges[:-1] + edges[1:]) / 2,
            "count": counts,
            "fraction": counts / total,
        }
    )


def density_2d(
    x: Sequence[float], y: Sequence[float], x_edges: np.ndarray, y_edges: np.ndarray
) -> np.ndarray:
    """Counts on a 2-D grid, shape ``(len(y_edges) - 1, len(x_edges) - 1)`` (rows are y).

    >>> density_2d([0.2, 0.7], [0.2, 0.2], np.array([0, .5, 1]), np.array([0, .5, 1])).tolist()
    [[1.0, 1.0], [0.0, 0.0]]
    """
    counts, _, _ = np.histogram2d(
        np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64), bins=[y_edges, x_edges]
    )
    return counts


# ---------------------------------------------------------------- uploads


@dataclass
class UploadReport:
    """An upload parsed into molecules: descriptors per good row, reasons per bad row."""

    table: pd.DataFrame  # line, smiles (canonical), input, + one column per descriptor
    bad: pd.DataFrame  # line, input, reason
    n_rows: int  # data rows read (after the cap)
    n_dropped: int = 0  # rows beyond ``MAX_UPLOAD_ROWS`` that were not read
    notes: list[str] = field(default_factory=list)  # things the user should know


def _decode(name: str, data: bytes) -> str:
    if len(data) == 0:
        raise ExploreError(f"{name} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        size = len(data) / 1024**2
        raise ExploreError(f"{name} is {size:.1f} MB; the limit is {MAX_UPLOAD_BYTES >> 20} MB")
    return decode_text(
        name, data, ExploreError, what="a text CSV or SMILES list",
        hint="; save it as UTF-8 and upload again",
    )  # fmt: skip


def _rows_from_csv(name: str, text: str) -> list[tuple[int, str]]:
    """(line number, SMILES cell) for each data row of a CSV with a SMILES column
    (``core.molfile.smiles_column``: ``smiles``, ``canonical_smiles``, ...)."""
    frame = text_table(name, text, "csv", ExploreError)
    try:  # found by name as preparing finds it: smiles, canonical_smiles, ...
        column = smiles_column([str(c) for c in frame.columns])
    except MolFileError as exc:
        raise ExploreError(f"{name} has {exc}") from None
    cells = frame[column].tolist()
    return [(i + 2, str(cell)) for i, cell in enumerate(cells)]  # line 1 is the header


def _rows_from_smi(text: str) -> list[tuple[int, str]]:
    """(line number, first field) of each non-blank, non-comment line of a SMILES list."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not rows and fields[0].lower() == "smiles":  # a header line
            continue
        rows.append((number, fields[0]))
    return rows


def parse_upload(
    name: str,
    data: bytes,
    max_rows: int = MAX_UPLOAD_ROWS,
    progress: Callable[[float], None] | None = None,
) -> UploadReport:
    """Parse an uploaded ``.csv`` (with a SMILES column found by name) or ``.smi``/``.txt``.

    Every usable molecule gets the descriptors of ``core.chem.DESCRIPTORS``; rows that are
    empty or do not parse are listed in ``bad``. Only the first ``max_rows`` rows are read.
    Raises ``ExploreError`` (one line) for an empty, binary, non-UTF-8, oversized or
    unreadable file.

    >>> report = parse_upload("x.smi", b"CCO ethanol\\nnot-a-smiles\\n")
    >>> len(report.table), report.bad.reason.tolist()
    (1, ['not a valid SMILES'])
    """
    text = _decode(name, data)
    lower = name.lower()
    if lower.endswith(".csv"):
        rows = _rows_from_csv(name, text)
    elif lower.endswith((".smi", ".txt", ".smiles")):
        rows = _rows_from_smi(text)
    else:
        raise ExploreError(f"{name}: expected a .csv, .smi or .txt file")
    if not rows:
        raise ExploreError(f"{name} has no data rows")
    notes = []
    n_dropped = max(len(rows) - max_rows, 0)
    if n_dropped:
        rows = rows[:max_rows]
        notes.append(f"only the first {max_rows:,} rows were read ({n_dropped:,} more ignored)")
    good, bad = [], []
    for index, (line, cell) in enumerate(rows):
        text_cell = cell.strip()
        if not text_cell:
            bad.append({"line": line, "input": cell, "reason": "empty"})
            continue
        if len(text_cell) > MAX_SMILES_CHARS:
            reason = f"longer than {MAX_SMILES_CHARS} characters"
            bad.append({"line": line, "input": text_cell[:200], "reason": reason})
            continue
        mol = mol_from_smiles(text_cell)
        if mol is None:
            bad.append({"line": line, "input": text_cell[:200], "reason": "not a valid SMILES"})
            continue
        good.append(
            {"line": line, "smiles": canonical_smiles(text_cell), "input": text_cell[:200]}
            | describe(mol)
        )
        if progress is not None and index % 100 == 0:
            progress(index / len(rows))
    if progress is not None:
        progress(1.0)
    table = pd.DataFrame(good, columns=["line", "smiles", "input", *DESCRIPTORS])
    bad_table = pd.DataFrame(bad, columns=["line", "input", "reason"])
    return UploadReport(table, bad_table, len(rows), n_dropped, notes)
