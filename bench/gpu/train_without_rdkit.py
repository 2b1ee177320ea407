"""Run ``core.train`` on a machine without RDKit (the lent GPU machine has none, and its wheel
does not fit beside MLX's in one call's carry).

Training reads molecules, tokens and prefix properties from the prepared parquet and computes
no chemistry, but ``core.config`` imports ``core.chem`` for its table of descriptors. Where
``rdkit`` cannot be imported, this stands in an empty package for it whose every name raises
when called, so a chemistry call fails loudly instead of returning something wrong. Where RDKit
is installed, nothing is replaced (``MOLSCOPE_FAKE_NO_RDKIT=1`` forces the stand-in, to test).

    python bench/gpu/train_without_rdkit.py --out runs/x --data data.parquet ...
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import types


class _Missing:
    """Any name inside the absent RDKit: attributes chain, calls raise."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Missing:
        return _Missing(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{self._name} was called, but RDKit is not installed here")


class _MissingModule(types.ModuleType):
    def __getattr__(self, attr: str) -> _Missing:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self.__name__}.{attr}")


class _NoRDKit(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds every ``rdkit`` module as an empty package."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name == "rdkit" or name.startswith("rdkit."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _MissingModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []


def main() -> None:
    if os.environ.get("MOLSCOPE_FAKE_NO_RDKIT") == "1" or importlib.util.find_spec("rdkit") is None:
        sys.meta_path.insert(0, _NoRDKit())
        print("note: RDKit is absent here; training computes no chemistry", file=sys.stderr)
    sys.argv[0] = "core.train"
    runpy.run_module("core.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
