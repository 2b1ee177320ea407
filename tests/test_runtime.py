"""The fast BLAS: after `import core`, MLX matmuls run on OpenBLAS on Linux."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(platform.system() != "Linux", reason="the BLAS preload is Linux-only")
def test_openblas_is_loaded_and_fast():
    result = subprocess.run(
        [sys.executable, "-m", "core.runtime"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "OpenBLAS" in result.stdout
    gflops = float(result.stdout.split("sgemm 1024^3:")[1].split()[0])
    # the bundled reference BLAS gives ~8 GFLOP/s; OpenBLAS ~170-250 on 2 cores
    assert gflops >= 100, result.stdout


def test_reference_blas_can_be_kept_for_comparison():
    result = subprocess.run(
        [sys.executable, "-c", "import core, core.blas as b; print(b.blas_name())"],
        cwd=ROOT, capture_output=True, text=True, env={"MOLSCOPE_BLAS": "reference"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "OpenBLAS" not in result.stdout
