"""Shared dashboard plumbing: the selected checkpoint, cached model and data, URL state.

Pages import from here; nothing in this module does model math (that lives in ``core``).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

import core  # noqa: F401  (fast BLAS before mlx)
from core.checkpoint import Bundle, CheckpointError, list_checkpoints, load_checkpoint
from core.data import DEFAULT_DATA, DataError, load_dataset
from core.pool import on_pool

ROOT = Path(__file__).resolve().parent.parent


def _leave_pages_folder_mode() -> None:
    """Serve deep links through app.py's navigation, even on a fresh server.

    Because a ``pages/`` folder sits beside app.py, Streamlit serves a fresh server's first
    request for a page URL (e.g. ``/generate?logp=3``) in its legacy folder mode: the page
    runs without app.py, so without the sidebar and the checkpoint picker. ``st.navigation``
    turns that mode off, but only once app.py has run. Turn it off here and rerun, so the
    same URL is served by app.py. (A private flag of Streamlit 1.67; absent -> no-op.)
    """
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_folder_mode()

FRAME_KEY = "_molscope_frame"  # set by app.py before it runs the page


def ensure_app_frame() -> None:
    """Rerun once through app.py if this page started in the legacy pages-folder mode.

    ``_leave_pages_folder_mode`` switches that mode off for the server, but tabs whose first
    run had already started in it (several tabs opening at once on a fresh server) would keep
    a page without the sidebar: their Step clicks are fragment runs, which never rerun app.py.
    A page run on its own (``AppTest`` on the page file) has no app.py to go through.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or Path(ctx.main_script_path).name != "app.py":
        return
    if not st.session_state.get(FRAME_KEY):
        st.session_state[FRAME_KEY] = True  # once per session, whatever happens next
        st.rerun()


def checkpoints_root() -> Path:
    """The folder holding checkpoints (``MOLSCOPE_CHECKPOINTS`` overrides, e.g. in tests)."""
    return Path(os.environ.get("MOLSCOPE_CHECKPOINTS", ROOT / "checkpoints"))


DEFAULT_CHECKPOINT = "default"


@st.cache_resource(show_spinner="Loading the model…")
def cached_bundle(folder: str, mtime: float) -> Bundle:
    """The model in ``folder``, loaded once and shared by every session (read-only).

    ``mtime`` (of its weights) is part of the cache key, so a retrained checkpoint reloads.
    """
    return on_pool(load_checkpoint, folder)


@st.cache_data(show_spinner="Loading the dataset…")
def cached_dataset(path: str = str(DEFAULT_DATA)):
    """The prepared molecule table (train and test splits)."""
    return load_dataset(path)


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
    folder = checkpoints_root() / name
    weights = folder / "model.safetensors"
    try:
        mtime = weights.stat().st_mtime if weights.exists() else 0.0
        return cached_bundle(str(folder), mtime)
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


def require_dataset():
    """The dataset table, or stop the page with an error."""
    try:
        return cached_dataset()
    except DataError as exc:
        st.error(f"The dataset cannot be loaded: {exc}")
        st.stop()


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
