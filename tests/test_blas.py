"""core.blas: an ``import mlx.core`` before ``import core`` is too late for the fast BLAS, and
``import core`` says so, once, with what to do."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOO_LATE = "mlx.core was imported before core"

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux", reason="the BLAS preload is Linux-only"
)


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that shows every warning each time it is raised."""
    environ = {k: v for k, v in os.environ.items() if k != "MOLSCOPE_BLAS"} | env
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        cwd=ROOT, capture_output=True, text=True, env=environ,
    )  # fmt: skip


def test_mlx_imported_first_warns_once_with_what_to_do():
    result = run(
        "import mlx.core, core, core.blas as b\n"
        "b.preload_blas(); b.preload_blas()\n"  # asked again: still one warning
        "print(b.blas_name())\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(TOO_LATE) == 1, result.stderr
    assert "RuntimeWarning" in result.stderr
    assert "import core (or any core module) before mlx" in result.stderr
    assert "MOLSCOPE_BLAS=reference" in result.stderr
    assert result.stdout.strip() == "reference BLAS bundled with mlx[cpu]"


def test_core_imported_first_loads_the_fast_blas_without_a_warning():
    result = run("import core, mlx.core, core.blas as b; print(b.blas_name())")
    assert result.returncode == 0, result.stderr
    assert TOO_LATE not in result.stderr
    assert result.stdout.startswith("OpenBLAS"), result.stdout


def test_reference_blas_chosen_on_purpose_is_silent():
    result = run("import mlx.core, core", MOLSCOPE_BLAS="reference")
    assert result.returncode == 0, result.stderr
    assert TOO_LATE not in result.stderr
