"""Dataset: what a model learns from. Pick a prepared dataset (the MOSES subset, full MOSES,
your own); descriptor histograms, LogP × TPSA coverage, range filters that drive every view, a
molecule grid with SMARTS search, and your own molecules (uploaded CSV/TSV, SMILES list or
SDF) compared with the data and prepared as a dataset in the background."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core import runs
from core.checkpoint import CheckpointError, read_config
from core.chem import DESCRIPTOR_LABELS, DESCRIPTORS
from core.data import DatasetInfo, list_datasets, rejected_file
from core.explore import (
    MAX_MATCHES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_ROWS,
    ExploreError,
    SearchResult,
    bin_edges,
    density_2d,
    filter_ranges,
    histogram,
    parse_upload,
    substructure_search,
)
from core.molfile import MAX_INPUT_BYTES
from ui.charts import DATA, FILTERED, UPLOAD, coverage_figure, hist_figure, short_label
from ui.common import checkpoints_root, ensure_app_frame, require_dataset, selected_checkpoint
from ui.elements import drawing, molecule_table, name_is_valid

ensure_app_frame()

FILTERS = {  # name -> (slider label, step, number format)
    "logp": ("LogP", 0.1, "%.1f"),
    "tpsa": ("TPSA (Å²)", 1.0, "%.0f"),
    "mw": ("MW (Da)", 1.0, "%.0f"),
    "qed": ("QED", 0.01, "%.2f"),
    "sa": ("SA score", 0.1, "%.1f"),
}
GRID_ROWS = 48  # molecules drawn per page of the grid
FORMATS = {
    "logp": "%.2f",
    "tpsa": "%.1f",
    "mw": "%.1f",
    "qed": "%.2f",
    "sa": "%.2f",
    "hbd": "%d",
    "hba": "%d",
    "rings": "%d",
}  # grid column formats
DATA_ROOT = runs.default_data_root()  # where prepared datasets are listed and written
UPLOAD_TYPES = ["csv", "tsv", "smi", "txt", "sdf"]
COMPARABLE = (".csv", ".smi", ".txt")  # what core.explore.parse_upload reads
WIDGET_PREFIXES = ("range_", "grid_", "mine_", "smarts", "order", "descending", "split")


def described(table: pd.DataFrame) -> list[str]:
    """The descriptors the table has values for (a MOSES table prepared with
    ``--descriptors`` leaves the others empty)."""
    return [n for n in DESCRIPTORS if n in table and table[n].notna().any()]


def slider_bounds(table: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Slider limits: the data's min and max, widened to the slider's step."""
    bounds = {}
    for name, (_, step, _) in FILTERS.items():
        if name not in described(table):
            continue
        lo = math.floor(float(table[name].min()) / step) * step
        hi = math.ceil(float(table[name].max()) / step) * step
        bounds[name] = (round(lo, 2), round(hi, 2))
    return bounds


def edges_for(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Histogram bins per descriptor, fixed on the whole dataset so views line up."""
    return {name: bin_edges(name, table[name].to_numpy()) for name in described(table)}


@st.cache_data(show_spinner="Searching substructures…", max_entries=32)
def search(smarts: str, ranges: tuple, split: str) -> SearchResult:
    """SMARTS matches among the filtered molecules (cached per pattern and filter)."""
    return substructure_search(select(dict(ranges), split), smarts)


def select(ranges: dict[str, tuple[float, float]], split: str) -> pd.DataFrame:
    """The molecules that pass the split choice and the range filters."""
    table = data if split == "all" else data[data["split"] == split]
    return filter_ranges(table, ranges)


def model_ranges() -> dict[str, tuple[float, float]]:
    """The LogP/TPSA range the selected model was trained on (0.5th–99.5th percentile)."""
    try:
        props = read_config(checkpoints_root() / selected_checkpoint()).get("properties", {})
        return {k: (float(v["lo"]), float(v["hi"])) for k, v in props.items()}
    except (CheckpointError, KeyError, TypeError, ValueError):
        return {}


def histogram_grid(
    traces_for: Callable[[str], list[tuple[str, pd.DataFrame, str]]], y: str, key: str
) -> None:
    """Four histograms per row, one per descriptor the dataset has."""
    names = described(data)
    for start in range(0, len(names), 4):
        for col, name in zip(st.columns(4), names[start : start + 4], strict=False):
            col.plotly_chart(hist_figure(name, traces_for(name), y), key=f"{key}_{name}")


def coverage(table: pd.DataFrame, upload: pd.DataFrame | None = None):
    """LogP × TPSA counts of ``table`` on the whole dataset's bins, the model's range, and
    the ``upload``'s molecules."""
    x_edges = bin_edges("logp", data["logp"], 50)
    y_edges = bin_edges("tpsa", data["tpsa"], 40)
    counts = density_2d(table["logp"], table["tpsa"], x_edges, y_edges)
    return coverage_figure(counts, x_edges, y_edges, model_ranges(), upload)


def molecule_grid(rows: pd.DataFrame, key: str, pager: DeltaGenerator | None = None) -> None:
    """A page of molecules (drawings and descriptors) as a dataframe with an image column;
    the page number input goes into ``pager`` (a column) when given."""
    n_pages = max(1, math.ceil(len(rows) / GRID_ROWS))
    page = (pager or st).number_input(
        f"Page (of {n_pages:,})",
        1,
        n_pages,
        1,
        key=f"{key}_page",
        disabled=n_pages == 1,
        help=f"{GRID_ROWS} molecules per page.",
    )
    shown = rows.iloc[(page - 1) * GRID_ROWS : page * GRID_ROWS]
    atoms = shown["atoms"] if "atoms" in shown else [()] * len(shown)
    grid = pd.DataFrame(
        {
            "structure": [
                drawing(s, tuple(a)) for s, a in zip(shown["smiles"], atoms, strict=True)
            ],
            **{short_label(n): shown[n].to_numpy() for n in DESCRIPTORS},
            **({"Split": shown["split"].to_numpy()} if "split" in shown else {}),
            "smiles": shown["smiles"].to_numpy(),
        }
    )
    number = {short_label(n): st.column_config.NumberColumn(format=f) for n, f in FORMATS.items()}
    molecule_table(grid, f"{key}_grid", number)


def dataset_label(info: DatasetInfo) -> str:
    return f"{info.name} · {info.n_rows:,} molecules"


def forget_view() -> None:
    """Another dataset: filters, search and pages start afresh (their bounds change)."""
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(WIDGET_PREFIXES):
            del st.session_state[key]


def describe_source(info: DatasetInfo, n_train: int) -> str:
    """Where the dataset's molecules come from, in a sentence or two."""
    held_out = f"{n_train:,} for training, {len(data) - n_train:,} held out"
    if info.kind != "user":
        return (
            f"{len(data):,} molecules from the MOSES benchmark (ZINC drug-like 'clean leads'): "
            f"{held_out}. Every descriptor is computed with RDKit from the same table the "
            "model's training labels come from."
        )
    source = info.source
    rules = source.get("standardization", {})
    steps = [
        "largest fragment" if rules.get("largest_fragment") else "all fragments kept",
        "neutralised" if rules.get("neutralize") else "charges kept",
    ]
    rejected = source.get("rejected", {})
    left_out = ""
    if rejected:
        why = ", ".join(f"{reason}: {n:,}" for reason, n in rejected.items())
        left_out = (
            f" {sum(rejected.values()):,} input rows were left out ({why}); they are listed "
            f"in `{rejected_file(info.path).name}`."
        )
    return (
        f"Your dataset **{info.name}**: {len(data):,} molecules from `{source.get('input')}` "
        f"({held_out}, seed {source.get('seed', 0)}), standardised with RDKit "
        f"({', '.join(steps)}), canonicalised and de-duplicated.{left_out}"
    )


# ---------------------------------------------------------------- page

st.title("Dataset")
datasets = {str(info.path): info for info in list_datasets(DATA_ROOT)}
if not datasets:
    st.error("No prepared dataset: run `python -m core.data subset` (or prepare your own).")
    st.stop()
if st.session_state.get("dataset_pending") in datasets:  # a preparation that just finished
    st.session_state.dataset = st.session_state.pop("dataset_pending")
    forget_view()
if st.session_state.get("dataset") not in datasets:
    st.session_state.dataset = next(iter(datasets))
chosen = st.selectbox(
    "Dataset",
    list(datasets),
    key="dataset",
    format_func=lambda path: dataset_label(datasets[path]),
    on_change=forget_view,
    help="The MOSES subset that ships with MolScope, full MOSES when prepared, and every "
    f"dataset prepared from your own files (in {DATA_ROOT}).",
)
data = require_dataset(chosen)
n_train = int((data["split"] == "train").sum())
st.caption(describe_source(datasets[chosen], n_train))

bounds = slider_bounds(data)


def reset_filters() -> None:
    """Back to the whole dataset (a button callback, so it runs before the sliders)."""
    for name, (lo, hi) in bounds.items():
        st.session_state[f"range_{name}"] = (lo, hi)
    st.session_state.split = "all"


with st.container(border=True):
    head, split_col, reset_col = st.columns([3, 3, 1], vertical_alignment="bottom")
    head.markdown("**Filters** — every view below shows only the molecules inside them")
    split = split_col.segmented_control(
        "Split", ["all", "train", "test"], default="all", key="split", required=True
    )
    reset_col.button("Reset", on_click=reset_filters, help="Back to the whole dataset.")
    ranges = {}
    filters = {name: spec for name, spec in FILTERS.items() if name in bounds}
    for col, (name, (label, step, fmt)) in zip(
        st.columns(len(filters)), filters.items(), strict=True
    ):
        lo, hi = bounds[name]
        ranges[name] = col.slider(
            label,
            lo,
            hi,
            (lo, hi),
            step=step,
            format=fmt,
            key=f"range_{name}",
            help=DESCRIPTOR_LABELS[name],
        )

filtered = select(ranges, split or "all")
st.markdown(f"**{len(filtered):,}** of {len(data):,} molecules match the filters.")

tab_hist, tab_density, tab_grid, tab_upload = st.tabs(
    ["Distributions", "LogP × TPSA", "Molecules", "Your molecules"]
)
edges = edges_for(data)

with tab_hist:
    st.caption("Grey: the whole dataset. Blue: the molecules inside the filters.")
    histogram_grid(
        lambda n: [
            ("dataset", histogram(data[n], edges[n]), DATA),
            ("filtered", histogram(filtered[n], edges[n]), FILTERED),
        ],
        "count",
        "hist",
    )

with tab_density:
    st.caption(
        "How many molecules sit at each (LogP, TPSA). Targets far from the dense region, or "
        "outside the dashed box, ask the model for molecules it has rarely or never seen."
    )
    st.plotly_chart(coverage(filtered), key="density")

with tab_grid:
    smarts_col, order_col, dir_col, page_col = st.columns(
        [4, 2, 1.6, 1.3], vertical_alignment="bottom"
    )
    smarts = smarts_col.text_input(
        "Substructure (SMARTS)",
        key="smarts",
        max_chars=500,
        placeholder="e.g. c1ccncc1 pyridine · C(=O)N amide · [F,Cl,Br,I] halogen",
        help="Matching atoms are highlighted. The search stops after "
        f"{MAX_MATCHES} matches. S(=O)(=O)N finds sulfonamides, [NX3;H2] primary amines.",
    )
    order = order_col.selectbox(
        "Order by",
        ["dataset order", *DESCRIPTORS],
        key="order",
        format_func=lambda n: DESCRIPTOR_LABELS.get(n, n),
    )
    descending = dir_col.toggle("Descending", key="descending")
    rows = filtered
    if smarts.strip():
        try:
            result = search(smarts.strip(), tuple(sorted(ranges.items())), split or "all")
        except ExploreError as exc:
            st.error(str(exc))
            rows = None
        else:
            rows = result.rows
            more = (
                f" (stopped at {MAX_MATCHES}; {result.n_searched:,} molecules searched)"
                if result.capped
                else ""
            )
            st.markdown(f"**{len(rows):,}** filtered molecules contain `{smarts.strip()}`{more}.")
    if rows is not None and len(rows):
        if order != "dataset order":
            rows = rows.sort_values(order, ascending=not descending, kind="stable")
        molecule_grid(rows, "grid", page_col)
    elif rows is not None:
        st.info("No molecule matches. Widen the filters or change the pattern.")


def suggested_name(filename: str) -> str:
    """A dataset name from an upload's file name: ``My actives.csv`` -> ``My_actives``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(filename).stem).strip("_-")
    return (stem or "molecules")[:64]


def start_preparing(uploaded, name: str, options: dict) -> None:
    """Start ``core.data prepare`` on the upload in the background; a refusal is an error."""
    try:
        runs.start_prepare(name, uploaded.name, uploaded.getvalue(), options, data_root=DATA_ROOT)
    except runs.RunError as exc:
        st.error(str(exc))
        return
    st.session_state.prepare_watch = name
    st.session_state.prepare_running = {**st.session_state.get("prepare_running", {}), name: True}


def prepare_form(uploaded) -> None:
    """Name, split and standardisation of the upload as a dataset, and the Prepare button."""
    st.markdown("**Prepare it as a dataset** — to browse it here and train on it")
    if st.session_state.get("prep_for") != uploaded.file_id:  # a new file: a new name
        st.session_state.prep_for = uploaded.file_id
        st.session_state.prep_name = suggested_name(uploaded.name)
    c_name, c_fraction, c_column = st.columns([2, 1, 2])
    name = c_name.text_input(
        "Dataset name",
        key="prep_name",
        max_chars=64,
        help="Letters, digits, '_' or '-'. Written as data/<name>.parquet.",
    )
    fraction = c_fraction.number_input(
        "Held out for testing",
        0.0,
        0.5,
        0.1,
        step=0.05,
        key="prep_test_fraction",
        help="A random share (seed 0) of the molecules, kept out of training.",
    )
    tabular = uploaded.name.lower().endswith((".csv", ".tsv"))
    column = c_column.text_input(
        "SMILES column",
        key="prep_column",
        disabled=not tabular,
        placeholder="found by its name" if tabular else "not a table",
        help="Only needed when the column is not called smiles, canonical_smiles, ...",
    )
    c_fragments, c_charges = st.columns(2)
    keep_fragments = c_fragments.checkbox(
        "Keep every fragment",
        key="prep_keep_fragments",
        help="Off (default): the largest organic fragment is kept; salts and solvents go.",
    )
    keep_charges = c_charges.checkbox(
        "Keep charges", key="prep_keep_charges", help="Off (default): charges are neutralised."
    )
    valid = name_is_valid(name)
    exists = valid and (DATA_ROOT / f"{name}.parquet").exists()
    overwrite = False
    if exists:
        overwrite = st.checkbox(f"Replace the dataset `{name}`", key="prep_overwrite")
    watched = st.session_state.get("prepare_watch")
    busy = watched is not None and runs.prepare_status(watched).running
    if st.button(
        "Prepare",
        key="prep_go",
        type="primary",
        disabled=not valid or (exists and not overwrite) or busy,
        help="Standardise, canonicalise, de-duplicate, encode and describe every molecule, "
        "in the background; it goes on if you leave the page.",
    ):
        options = {
            "test_fraction": float(fraction),
            "keep_fragments": keep_fragments,
            "keep_charges": keep_charges,
            "overwrite": overwrite,
            **({"smiles_column": column.strip()} if tabular and column.strip() else {}),
        }
        start_preparing(uploaded, name, options)


def watch_preparation(name: str) -> None:
    """Progress of a preparation, polled every second while it runs; when it has just
    finished, the page reruns showing the new dataset."""

    @st.fragment(run_every=1.0 if runs.prepare_status(name).running else None)
    def progress() -> None:
        status = runs.prepare_status(name)
        seen = dict(st.session_state.get("prepare_running", {}))
        was_running, seen[name] = seen.get(name, False), status.running
        st.session_state.prepare_running = seen
        if status.running:
            done, total = status.done or 0, status.total or 0
            text = f"Preparing {name}: {done:,} of {total:,} molecules" if total else "Reading…"
            st.progress(min(done / total, 1.0) if total else 0.0, text=text)
            return
        if was_running:  # it just ended: rerun the page, which lists (and shows) it
            if status.state == "finished":
                st.session_state.dataset_pending = str(DATA_ROOT / f"{name}.parquet")
            st.rerun(scope="app")
        if status.state == "failed":
            st.error(f"Preparing {name} failed: {status.message.removeprefix('error: ')}")
        elif status.state == "finished":
            detail = status.message.split("): ", 1)[-1]  # after "wrote PATH (SIZE)"
            st.success(f"Dataset **{name}** is ready: {detail}")
        elif status.state == "ended":
            st.warning(f"Preparing {name}: {status.message}")

    progress()


with tab_upload:
    st.caption(
        "A CSV/TSV with a SMILES column (found by its name), a .smi/.txt list with one SMILES "
        f"per line, or an SDF. At most {MAX_UPLOAD_BYTES >> 20} MB here (the server's upload "
        f"limit); a larger file, up to {MAX_INPUT_BYTES >> 20} MB: `python -m core.data "
        "prepare --input FILE`. The comparison below reads CSV and SMILES lists, its first "
        f"{MAX_UPLOAD_ROWS:,} rows; preparing reads the whole file. Rows that do not parse "
        "are counted and listed, not fatal."
    )
    uploaded = st.file_uploader(
        "Your molecules",
        type=UPLOAD_TYPES,
        key="upload",
        max_upload_size=MAX_UPLOAD_BYTES >> 20,
    )
    report = None
    if uploaded is None:
        st.session_state.pop("upload_report", None)
    elif not uploaded.name.lower().endswith(COMPARABLE):
        st.info(
            f"{Path(uploaded.name).suffix.upper()[1:]} files are not compared here; prepare "
            "the file below and pick it in the Dataset list to see its molecules."
        )
    else:
        stored = st.session_state.get("upload_report")
        if stored is None or stored[0] != uploaded.file_id:
            bar = st.progress(0.0, text="Computing descriptors…")
            try:
                report = parse_upload(
                    uploaded.name, uploaded.getvalue(), progress=lambda f: bar.progress(f)
                )
            except ExploreError as exc:
                report = str(exc)
            bar.empty()
            st.session_state.upload_report = (uploaded.file_id, report)
        report = st.session_state.upload_report[1]
    if isinstance(report, str):
        st.error(report)
    elif report is not None:
        mine = report.table
        st.markdown(
            f"**{len(mine):,}** molecules from {report.n_rows:,} rows; "
            f"**{len(report.bad):,}** rows could not be used."
        )
        for note in report.notes:
            st.warning(note)
        if len(report.bad):
            with st.expander(f"Rows that could not be used ({len(report.bad):,})"):
                st.dataframe(report.bad.head(500), hide_index=True)
        if len(mine):
            box = model_ranges()
            if {"logp", "tpsa"} <= set(box):
                outside = ~(mine["logp"].between(*box["logp"]) & mine["tpsa"].between(*box["tpsa"]))
                st.markdown(
                    f"{outside.mean():.0%} of your molecules lie outside the LogP/TPSA "
                    "range the selected model was trained on."
                )
            st.caption("Grey: the whole dataset. Red: your molecules. Share per bin.")
            histogram_grid(
                lambda n: [
                    (
                        "dataset",
                        histogram(data[n], bin_edges(n, np.r_[data[n], mine[n]])),
                        DATA,
                    ),
                    (
                        "yours",
                        histogram(mine[n], bin_edges(n, np.r_[data[n], mine[n]])),
                        UPLOAD,
                    ),
                ],
                "fraction",
                "compare",
            )
            st.plotly_chart(coverage(data, mine), key="upload_density")
            molecule_grid(mine, "mine")
    if uploaded is not None:  # preparing reads more than the comparison: TSV, SDF, any column
        with st.container(border=True):
            prepare_form(uploaded)
    if st.session_state.get("prepare_watch"):
        watch_preparation(st.session_state.prepare_watch)
