"""Drawing helpers several pages share: a row of metrics, a table of molecule drawings, a
checked name for a new run or dataset."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core import runs
from core.chem import mol_to_png, png_data_uri


def metric_row(metrics: Sequence[tuple[str, str, str | None]], border: bool = False) -> None:
    """One row of ``st.metric``: (label, value, help or None) each."""
    for col, (label, value, note) in zip(st.columns(len(metrics)), metrics, strict=True):
        col.metric(label, value, border=border, help=note)


@st.cache_data(show_spinner=False)
def drawing(smiles: str, atoms: tuple[int, ...] = (), size: tuple[int, int] = (240, 150)) -> str:
    """A small RDKit drawing as a data URI (``atoms`` highlighted)."""
    return png_data_uri(mol_to_png(smiles, size=size, highlight_atoms=atoms))


def molecule_table(
    table: pd.DataFrame, key: str, columns: dict | None = None, label: str = "Structure", **kw
) -> None:
    """``table`` as a dataframe whose ``structure`` column (``drawing`` URIs) shows the
    molecules, with rows tall enough for them; ``columns``: configs of its other columns
    (``smiles`` is shown wide unless configured here)."""
    config = {
        "structure": st.column_config.ImageColumn(label, width="medium"),
        "smiles": st.column_config.TextColumn("SMILES", width="large"),
    }
    st.dataframe(
        table,
        hide_index=True,
        row_height=110,
        key=key,
        column_config=config | (columns or {}),
        **kw,
    )


def name_is_valid(name: str) -> bool:
    """Whether ``name`` can name a run or a dataset; when not, an ``st.error`` says why."""
    try:
        runs.validate_name(name)
    except runs.RunError as exc:
        st.error(str(exc))
        return False
    return True
