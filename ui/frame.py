"""The dashboard frame that every page is drawn in: page config, navigation over pages/, and
the shared sidebar (the list of pages, the checkpoint picker kept in the URL as
``?checkpoint=``, and a short model card).

``app.py`` draws it and runs the page. The sidebar lists the pages itself and Streamlit's
automatic menu stays hidden (``position="hidden"`` here, ``client.showSidebarNavigation =
false`` for its pages-folder mode), so every run shows the same six entries; a page that a
fresh server runs without app.py draws the frame itself (``ui.common.ensure_app_frame``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.checkpoint import CONFIG, METRICS, CheckpointError, read_config, read_metrics
from core.model import count_parameters
from core.runs import checkpoint_step
from ui.common import (
    DEFAULT_CHECKPOINT,
    available_checkpoints,
    checkpoints_root,
    folder_bundle,
    safe_checkpoint_name,
    selected_checkpoint,
)

ROOT = Path(__file__).resolve().parent.parent

# (file, title, icon); a page whose file is not there yet is left out of the menu
PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/dataset.py", "Dataset", ":material/table_chart:"),
    ("pages/training.py", "Training", ":material/monitoring:"),
    ("pages/attention.py", "Attention", ":material/grid_on:"),
    ("pages/generate.py", "Generate", ":material/science:"),
    ("pages/evaluate.py", "Evaluate", ":material/fact_check:"),
]


@st.cache_data(show_spinner=False)
def model_card(folder: str, stamp: tuple[float, float]) -> dict:
    """Size, training and data facts of a checkpoint, from its files (``stamp``: mtimes)."""
    config = read_config(folder)
    model, meta = config.get("model", {}), config.get("meta", {}) or {}
    train_rows = [r for r in read_metrics(folder) if r.get("split") == "train"]
    last = train_rows[-1] if train_rows else {}
    data = meta.get("data", {}) if isinstance(meta.get("data"), dict) else {}
    return {
        "parameters": meta.get("parameters"),
        "layers": model.get("n_layers"),
        "width": model.get("d_model"),
        "latent": model.get("latent_dim"),
        "step": checkpoint_step(Path(folder)) or last.get("step"),
        "seconds": meta.get("train_seconds", last.get("time")),
        "tokens": meta.get("tokens_seen", last.get("tokens")),
        "n_train": data.get("n_train"),
        "data": Path(str(data.get("path", ""))).name,
        "longest": meta.get("longest_trained"),  # SELFIES symbols; generation stops there
    }


def _stamp(folder: Path) -> tuple[float, float]:
    """Modification times of config and metrics: the cache key of the model card."""
    return tuple(  # type: ignore[return-value]
        (folder / name).stat().st_mtime if (folder / name).exists() else 0.0
        for name in (CONFIG, METRICS)
    )


def _duration(seconds: float | None) -> str:
    """`` · 12 min`` or `` · 3.5 h``; empty when unknown."""
    if not seconds:
        return ""
    minutes = seconds / 60
    return f" · {minutes:.0f} min" if minutes < 120 else f" · {minutes / 60:.1f} h"


def show_model_card(name: str) -> None:
    """A few lines about the selected checkpoint, under the picker."""
    folder = checkpoints_root() / name
    try:
        card = model_card(str(folder), _stamp(folder))
    except CheckpointError as exc:
        st.caption(f"No model card: {exc}")
        return
    parameters = card["parameters"]
    if parameters is None:
        try:
            parameters = count_parameters(folder_bundle(folder).model)
        except (CheckpointError, OSError):
            parameters = None
    size = f"{parameters / 1e6:.2f} M parameters" if parameters else "size unknown"
    lines = [
        f"**{size}** · decoder {card['layers']} × {card['width']} · latent {card['latent']}",
        f"Trained {card['step'] or 0:,} steps{_duration(card['seconds'])}"
        + (f" · {card['tokens'] / 1e6:.1f} M tokens" if card["tokens"] else ""),
    ]
    if card["n_train"]:
        lines.append(f"Data: {card['n_train']:,} training molecules ({card['data']})")
    if card["longest"]:
        longest = card["longest"]
        lines.append(f"Writes up to {longest + 1} SELFIES symbols (longest trained: {longest})")
    st.caption("  \n".join(lines))


def checkpoint_picker() -> None:
    """The shared checkpoint selector, kept in ``st.session_state.checkpoint`` and the URL."""
    raw = st.query_params.get("checkpoint")
    if raw is not None and safe_checkpoint_name(raw) is None:
        st.session_state.checkpoint_notice = (
            f"Ignored ?checkpoint={raw[:40]}: only a plain folder name under checkpoints/ "
            "is accepted."
        )
    name = selected_checkpoint()
    found = available_checkpoints()
    if not found:
        st.info(f"No checkpoint in {checkpoints_root()}: train one on the Training page.")
        return
    if name not in found:
        fallback = DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in found else next(iter(found))
        st.session_state.checkpoint_notice = (
            f"No checkpoint named '{name[:40]}'; showing '{fallback}'."
        )
        st.session_state.checkpoint = fallback
    st.selectbox(
        "Checkpoint",
        list(found),
        key="checkpoint",
        format_func=lambda n: f"{n} (broken)" if found[n] else n,
        help="The trained model the Attention, Generate and Evaluate pages use.",
        on_change=lambda: st.session_state.pop("checkpoint_notice", None),
    )
    if notice := st.session_state.get("checkpoint_notice"):
        st.warning(notice)
    name = st.session_state.checkpoint
    if st.query_params.get("checkpoint") != name:
        st.query_params["checkpoint"] = name
    if found[name]:
        st.error("This checkpoint cannot be loaded.")
        st.caption(found[name])
    else:
        show_model_card(name)


def draw_frame() -> StreamlitPage:
    """Page config, navigation and sidebar; returns the page this run shows (app.py runs it)."""
    # an emoji favicon is drawn locally; a :material/...: one is fetched from fonts.gstatic.com
    st.set_page_config(page_title="MolScope", page_icon="🧪", layout="wide")
    pages = [
        st.Page(path, title=title, icon=icon, default=(path == PAGES[0][0]))
        for path, title, icon in PAGES
        if (ROOT / path).is_file()
    ]
    navigation = st.navigation(pages, position="hidden")
    with st.sidebar:
        menu = st.container()  # above the picker, filled after it: links carry its choice
        checkpoint_picker()
        with menu:
            for page in pages:
                st.page_link(page, query_params={"checkpoint": st.session_state.checkpoint})
    return navigation
