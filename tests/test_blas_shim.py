"""The vector-product ``cblas_sgemm`` (core/sgemm_shim.c): MLX binds to it, and it computes
what a gemm must for every layout, whether it takes the sgemv path or passes the product on."""

import ctypes
import itertools
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.blas import blas_path, shim_path

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(platform.system() != "Linux", reason="the BLAS preload is Linux-only"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the shim is optional"),
]
ROW, COL, N, T = 101, 102, 111, 112
P = ctypes.POINTER(ctypes.c_float)


@pytest.fixture(scope="module")
def shim():
    assert shim_path().exists(), "make setup builds it when a C compiler is present"
    ctypes.CDLL(str(blas_path()), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(shim_path()))
    lib.molscope_sgemm_vector_calls.restype = ctypes.c_long
    return lib


def stored(rows: int, ld: int, rng) -> np.ndarray:
    """A row-major matrix of ``rows`` rows in a buffer whose rows are ``ld`` long."""
    return rng.normal(size=(rows, ld)).astype(np.float32)


def call(lib, order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    lib.cblas_sgemm(
        order, ta, tb, m, n, k, ctypes.c_float(alpha), a.ctypes.data_as(P), lda,
        b.ctypes.data_as(P), ldb, ctypes.c_float(beta), c.ctypes.data_as(P), ldc,
    )  # fmt: skip


SHAPES = [
    (1, 7, 5), (1, 1, 1), (1, 192, 768), (6, 5, 1), (40, 48, 1), (3, 4, 5), (17, 9, 33),
    (1, 640, 512), (700, 400, 1),
]  # fmt: skip


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_every_layout_matches_numpy(shim, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    for ta, tb, alpha, beta in itertools.product([N, T], [N, T], [1.0, -0.5], [0.0, 2.0]):
        ar, ac = (k, m) if ta == T else (m, k)
        br, bc = (n, k) if tb == T else (k, n)
        lda, ldb, ldc = ac + 3, bc + 2, n + 4  # padded rows: strides must be honoured
        a, b = stored(ar, lda, rng), stored(br, ldb, rng)
        c = stored(m, ldc, rng)
        if beta == 0.0:
            c[:] = np.nan  # beta 0: what the output held must not leak in
        before = c.copy()
        op_a = a[:, :ac].T if ta == T else a[:, :ac]
        op_b = b[:, :bc].T if tb == T else b[:, :bc]
        want = alpha * (op_a.astype(np.float64) @ op_b)
        if beta:
            want += beta * before[:, :n]
        call(shim, ROW, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        np.testing.assert_allclose(c[:, :n], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(c[:, n:], before[:, n:])  # padding untouched


def test_column_major_and_the_vector_path_counter(shim):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(5, 3)).astype(np.float32)  # column-major 3 x 5 (lda 3)
    b = rng.normal(size=(4, 5)).astype(np.float32)  # column-major 5 x 4 (ldb 5)
    c = np.zeros((4, 3), dtype=np.float32)  # column-major 3 x 4 (ldc 3)
    calls = shim.molscope_sgemm_vector_calls()
    call(shim, COL, N, N, 3, 4, 5, 1.0, a, 3, b, 5, 0.0, c, 3)
    np.testing.assert_allclose(c.T, a.T @ b.T, rtol=1e-5, atol=1e-5)
    assert shim.molscope_sgemm_vector_calls() == calls  # general products pass through
    x, w, y = np.ones((1, 3), np.float32), np.ones((3, 2), np.float32), np.zeros((1, 2), np.float32)
    call(shim, ROW, N, N, 1, 2, 3, 1.0, x, 3, w, 2, 0.0, y, 2)
    assert y.tolist() == [[3.0, 3.0]] and shim.molscope_sgemm_vector_calls() == calls + 1


def test_mlx_binds_to_the_shim_and_batch_one_products_use_it():
    code = """
import ctypes, core, core.blas as b, mlx.core as mx, numpy as np
lib = ctypes.CDLL(str(b.shim_path())); lib.molscope_sgemm_vector_calls.restype = ctypes.c_long
rng = np.random.default_rng(0)
x, w = rng.normal(size=(1, 192)).astype(np.float32), rng.normal(size=(192, 576)).astype(np.float32)
before = lib.molscope_sgemm_vector_calls()
err = np.abs(np.array(mx.array(x) @ mx.array(w)) - x.astype(np.float64) @ w).max()
print(b.sgemm_provider(), err, lib.molscope_sgemm_vector_calls() - before)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    provider, err, calls = result.stdout.split()
    assert provider == str(shim_path()) and float(err) < 1e-3 and int(calls) == 1
