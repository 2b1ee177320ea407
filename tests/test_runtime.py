"""The fast BLAS: after `import core`, MLX matmuls run on OpenBLAS on Linux."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(platform.system() != "Linux", reason="the BLAS preload is Linux-only")
def test_openblas_is_what_mlx_matmuls_bind_to():
    """Not timed (speed belongs to `make bench`, which reports sgemm GFLOP/s): the global
    `cblas_sgemm`, the one MLX binds to, must come from the renamed OpenBLAS, and a matmul
    through it must be right."""
    code = (
        "import core, core.blas as b, mlx.core as mx, numpy as np\n"
        "a = np.random.default_rng(0).normal(size=(300, 200)).astype(np.float32)\n"
        "w = np.random.default_rng(1).normal(size=(200, 100)).astype(np.float32)\n"
        "err = float(np.abs(np.array(mx.array(a) @ mx.array(w)) - a @ w).max())\n"
        "print(b.sgemm_provider(), err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    provider, err = result.stdout.split()
    # the vector-product shim where a C compiler built it, else OpenBLAS itself
    assert Path(provider).name in ("libmolscope_sgemm.so", "libopenblas_molscope.so"), provider
    assert float(err) < 1e-3


@pytest.mark.skipif(platform.system() != "Linux", reason="the BLAS preload is Linux-only")
def test_runtime_report_names_the_blas():
    result = subprocess.run(
        [sys.executable, "-m", "core.runtime", "--no-timing"], cwd=ROOT, capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "BLAS: OpenBLAS" in result.stdout
    assert "molscope" in result.stdout.split("resolves to:")[1]


def test_reference_blas_can_be_kept_for_comparison():
    code = "import core, core.blas as b, mlx.core; print(b.blas_name(), b.sgemm_provider())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, capture_output=True, text=True, env={"MOLSCOPE_BLAS": "reference"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "OpenBLAS" not in result.stdout
    assert "molscope" not in result.stdout
