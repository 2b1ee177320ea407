"""Shared dashboard plumbing: the selected checkpoint, cached model and data, URL state.

Pages import from here; nothing in this module does model math (that lives in ``core``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import streamlit as st

import core  # noqa: F401  (fast BLAS before mlx)
from core.checkpoint import Bundle, CheckpointError, list_checkpoints, load_checkpoint
from core.data import DEFAULT_DATA, DataError, checkpoint_data_path, load_dataset
from core.pool import on_pool

ROOT = Path(__file__).resolve().parent.parent
FRAME_KEY = "_molscope_frame"  # set by app.py for the page it runs next


def ensure_app_frame() -> None:
    """Draw the frame (``ui.frame``) unless app.py drew it in this run; every page calls it.

    Because a ``pages/`` folder sits beside app.py, a fresh server runs its first requests in
    Streamlit's legacy pages-folder mode, until ``st.navigation`` has been called once: a deep
    link (``/generate?logp=3``), or several tabs opening at once, run the page alone, without
    app.py. The page then draws the frame itself, in the same run, so every tab shows the same
    sidebar from its first paint. A page run on its own (``AppTest`` on the page file) has no
    frame to draw.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or Path(ctx.main_script_path).name != "app.py":
        return
    if not st.session_state.pop(FRAME_KEY, False):
        from ui.frame import draw_frame  # not at the top: ui.frame imports this module

        # drawn as app.py draws it, under the main script's hash: the frame's widgets and the
        # page's (back under the page's hash after it) keep their ids in the runs that follow
        with ctx.run_with_active_hash(ctx.pages_manager.main_script_hash):
            draw_frame()


def checkpoints_root() -> Path:
    """The folder holding checkpoints (``MOLSCOPE_CHECKPOINTS`` overrides, e.g. in tests)."""
    return Path(os.environ.get("MOLSCOPE_CHECKPOINTS", ROOT / "checkpoints"))


DEFAULT_CHECKPOINT = "default"
MAX_LOADED_MODELS = 4  # models kept in memory at once, least recently used dropped first


@st.cache_resource(max_entries=MAX_LOADED_MODELS, show_spinner="Loading the model…")
def cached_bundle(folder: str, mtime: float) -> Bundle:
    """The model in ``folder``, loaded once and shared by every session (read-only).

    ``mtime`` (of its weights) is part of the cache key, so a retrained checkpoint reloads;
    use ``folder_bundle``, which also drops the version it replaces.
    """
    return on_pool(load_checkpoint, folder)


_newest_mtime: dict[str, float] = {}  # folder -> mtime of the weights last asked for
_newest_lock = threading.Lock()


def folder_bundle(folder: Path) -> Bundle:
    """The model in ``folder`` as its weights are now (cached; CheckpointError when it cannot
    be loaded). A newer version replaces the older one in the cache: watching a run that
    saves every few minutes keeps one version of it, not one per save."""
    weights = folder / "model.safetensors"
    mtime = weights.stat().st_mtime if weights.exists() else 0.0
    with _newest_lock:
        previous = _newest_mtime.get(str(folder))
        _newest_mtime[str(folder)] = mtime
    if previous is not None and previous != mtime:
        cached_bundle.clear(str(folder), previous)
    return cached_bundle(str(folder), mtime)


@st.cache_data(show_spinner="Loading the dataset…")
def cached_dataset(path: str = str(DEFAULT_DATA)):
    """The prepared molecule table (train and test splits)."""
    return load_dataset(path)


@st.cache_resource(show_spinner=False)
def known_smiles(path_key: str) -> frozenset[str]:
    """Canonical SMILES of every dataset molecule (for the novelty check)."""
    return frozenset(cached_dataset(path_key).smiles)


@st.cache_data(show_spinner=False)
def dataset_cloud(path_key: str, n: int = 3000) -> pd.DataFrame:
    """A fixed random sample of the dataset's LogP/TPSA pairs (scatter background)."""
    table = cached_dataset(path_key)
    return table[["logp", "tpsa"]].sample(min(n, len(table)), random_state=0)


def available_checkpoints() -> dict[str, str | None]:
    """Checkpoint folder name -> None when it looks loadable, else what is wrong with it."""
    return list_checkpoints(checkpoints_root())


def safe_checkpoint_name(name: str | None) -> str | None:
    """``name`` if it is a plain folder name under checkpoints/, else None (no ``..``, no /)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or ".." in name:
        return None
    if not name.isprintable():  # a NUL (``%00`` in the URL) makes path functions raise
        return None
    root = checkpoints_root().resolve()
    try:
        return name if (root / name).resolve().parent == root else None
    except (OSError, ValueError):
        return None


def selected_checkpoint() -> str:
    """The checkpoint chosen in the sidebar (kept in the URL as ``?checkpoint=``)."""
    if "checkpoint" not in st.session_state:
        wanted = safe_checkpoint_name(st.query_params.get("checkpoint"))
        st.session_state.checkpoint = wanted or DEFAULT_CHECKPOINT
    return st.session_state.checkpoint


def current_bundle() -> Bundle | None:
    """The selected model, or None after showing an ``st.error`` naming what is wrong."""
    name = selected_checkpoint()
    try:
        return folder_bundle(checkpoints_root() / name)
    except CheckpointError as exc:
        st.error(f"Checkpoint '{name}' cannot be used: {exc}")
        return None


def require_bundle() -> Bundle:
    """The selected model, or stop the page with an error."""
    bundle = current_bundle()
    if bundle is None:
        st.info("Pick another checkpoint in the sidebar.")
        st.stop()
    return bundle


def require_dataset(path: str = str(DEFAULT_DATA)):
    """The prepared table at ``path`` (the MOSES subset by default), or stop the page with an
    error."""
    try:
        return cached_dataset(path)
    except DataError as exc:
        st.error(f"The dataset cannot be loaded: {exc}")
        st.stop()


def checkpoint_data(bundle: Bundle) -> str:
    """The table to show beside a checkpoint: its own data when that is a user's dataset that
    is here, else the MOSES subset (a MOSES checkpoint's full table would be a heavy load for
    a background)."""
    data, own = bundle.meta.get("data"), checkpoint_data_path(bundle.meta)
    user = isinstance(data, dict) and data.get("kind") == "user"
    if user and own is not None and own.is_file():
        return str(own)
    return str(DEFAULT_DATA)


def url_float(key: str, default: float, lo: float, hi: float) -> float:
    """A float from the URL, clamped to [lo, hi] with a notice; ``default`` when absent/bad."""
    raw = st.query_params.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        st.toast(f"Ignored ?{key}={raw[:20]}: not a number")
        return default
    if not lo <= value <= hi or value != value:
        clamped = min(max(value, lo), hi) if value == value else default
        st.toast(f"?{key}={raw[:20]} is outside [{lo:g}, {hi:g}]; using {clamped:g}")
        return clamped
    return value


def url_int(key: str, default: int, lo: int, hi: int) -> int:
    """An integer from the URL, clamped like ``url_float``."""
    return int(round(url_float(key, default, lo, hi)))
