"""The examples in the docstrings of ``core`` (and the bench's GPU packer) run and hold."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")
BENCH = [
    "bench.common",
    "bench.gpu.keep_arch",
    "bench.join_slices",
    "bench.own_rollouts",
    "bench.soup",
]
MODULES = [f"core.{stem}" for stem in CORE] + BENCH


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
