"""ui/common.py: the dashboard's model cache stays bounded while a run saves new versions."""

from __future__ import annotations

import gc
import os
import shutil
import weakref

import pytest
import streamlit as st
from conftest import make_tiny_checkpoint

from ui.common import MAX_LOADED_MODELS, folder_bundle


@pytest.fixture
def empty_model_cache():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def alive(refs: list[weakref.ref]) -> int:
    gc.collect()
    return sum(ref() is not None for ref in refs)


def test_a_run_saving_new_versions_keeps_one_in_memory(tmp_path, empty_model_cache):
    folder = tmp_path / "run"
    make_tiny_checkpoint(folder)
    weights = folder / "model.safetensors"
    start = weights.stat().st_mtime
    loaded = []
    for version in range(10):  # the run saved again: same folder, newer weights
        os.utime(weights, (start + version, start + version))
        bundle = folder_bundle(folder)
        assert folder_bundle(folder) is bundle  # cached while it is the newest
        loaded.append(weakref.ref(bundle))
        del bundle
    assert alive(loaded) == 1
    assert loaded[-1]() is not None  # the newest one


def test_many_checkpoints_keep_at_most_max_loaded_models(tmp_path, empty_model_cache):
    make_tiny_checkpoint(tmp_path / "ckpt0")
    folders = [tmp_path / "ckpt0"]
    for i in range(1, MAX_LOADED_MODELS + 3):
        folders.append(shutil.copytree(folders[0], tmp_path / f"ckpt{i}"))
    loaded = [weakref.ref(folder_bundle(folder)) for folder in folders]
    assert alive(loaded) == MAX_LOADED_MODELS
    assert all(ref() is not None for ref in loaded[-MAX_LOADED_MODELS:])  # the recent ones
