"""Shared fixtures: a tiny checkpoint folder whose tokenizer covers the shipped dataset."""

from __future__ import annotations

import os
import sys

import mlx.core as mx
import pytest

from core.checkpoint import Bundle, PropertyScale, save_checkpoint
from core.data import load_dataset
from core.model import Model, ModelArgs
from core.tokenizer import Tokenizer


def make_tiny_checkpoint(
    folder, seed: int = 0, feedback: bool = False, derivation: bool = False
) -> Bundle:
    """Save an untrained 2-layer model with the subset's vocabulary to ``folder``
    (``feedback``: a closed-loop one, whose positions read the gap to each target;
    ``derivation``: one that also reads the SELFIES derivation)."""
    table = load_dataset()
    tokenizer = Tokenizer.build(table.selfies.head(5000))
    args = ModelArgs(
        vocab_size=len(tokenizer), max_len=72, d_model=32, n_heads=2, n_layers=2, d_ff=64,
        enc_d_model=16, enc_heads=2, enc_layers=1, enc_d_ff=32, latent_dim=4, feedback=feedback,
        derivation=derivation,
    )  # fmt: skip
    mx.random.seed(seed)
    model = Model(args)
    mx.eval(model.parameters())
    model.eval()
    train = table[table.split == "train"]
    scales = {
        p: PropertyScale(
            float(train[p].mean()),
            float(train[p].std()),
            float(train[p].quantile(0.005)),
            float(train[p].quantile(0.995)),
        )  # fmt: skip
        for p in args.properties
    }
    meta = {"data": {"path": "data/moses_subset.parquet", "n_train": len(train)}, "tiny": True}
    bundle = Bundle(model, tokenizer, args, scales, meta)
    save_checkpoint(folder, bundle, state={"step": 0})
    (folder / "metrics.jsonl").write_text(
        "".join(
            f'{{"step": {s}, "split": "train", "loss": {3 - s / 100}, "recon": {2.5 - s / 100},'
            f' "kl": 1.0, "beta": 0.1, "prop_mse": 0.5, "lr": 0.001, "tok_s": 1000.0}}\n'
            for s in range(10, 110, 10)
        )
        + '{"step": 100, "split": "val", "val_recon": 2.0, "val_token_acc": 0.4, "val_kl": 1.0,'
        ' "val_active_units": 2, "val_mae_logp": 0.9, "val_mae_tpsa": 15.0}\n'
    )
    return bundle


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """A checkpoints/ folder holding a tiny model named ``default``."""
    root = tmp_path_factory.mktemp("checkpoints")
    make_tiny_checkpoint(root / "default")
    return root


@pytest.fixture(scope="session")
def tiny_feedback_checkpoints(tmp_path_factory):
    """A checkpoints/ folder holding a tiny closed-loop model named ``default``."""
    root = tmp_path_factory.mktemp("feedback_checkpoints")
    make_tiny_checkpoint(root / "default", feedback=True)
    return root


@pytest.fixture
def use_tiny_derivation_checkpoints(tmp_path, monkeypatch):
    """Point the dashboard at a tiny closed-loop checkpoint that reads the derivation."""
    make_tiny_checkpoint(tmp_path / "default", feedback=True, derivation=True)
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(tmp_path))
    return tmp_path


@pytest.fixture
def use_tiny_feedback_checkpoints(tiny_feedback_checkpoints, monkeypatch):
    """Point the dashboard at the tiny closed-loop checkpoint."""
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(tiny_feedback_checkpoints))
    return tiny_feedback_checkpoints


@pytest.fixture
def use_tiny_checkpoints(tiny_checkpoints, monkeypatch):
    """Point the dashboard at the tiny checkpoints (env var read by ui/common.py)."""
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(tiny_checkpoints))
    return tiny_checkpoints


@pytest.fixture
def fresh_app():
    """Empty Streamlit caches, and AppTest kept on ``st.navigation`` across page switches."""
    import streamlit as st
    from browser_util import v2_navigation

    st.cache_data.clear()
    st.cache_resource.clear()
    with v2_navigation():
        yield


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium under Playwright, one per test module; skipped with a reason where
    it is missing, except under CI=true."""
    from browser_util import ARTIFACTS, CHROMIUM, launch

    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, url):
    """A fresh browser tab on the module's ``url`` (its server) that records every request
    leaving that server (``tab.outside``)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.outside = []
    tab.on("request", lambda r: None if r.url.startswith(url) else tab.outside.append(r.url))
    yield tab
    context.close()


def run_page(path: str):
    """A page script run once under AppTest with empty Streamlit caches, without exceptions."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(path, default_timeout=60)
    at.run()
    assert not at.exception
    return at


_EXIT = {"status": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without interpreter finalization once the results are reported.

    MLX 0.32 can abort the process ("terminate called without an active exception", exit 134)
    when it destroys arrays during interpreter shutdown after any thread other than the main
    one evaluated a model (here: the concurrency and page tests; seen 1 exit in 4 to 5 in 6).
    The suite's outcome is final by now, so it is the exit status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT["status"])
