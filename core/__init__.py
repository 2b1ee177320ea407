"""MolScope core: data, model, training, generation and evaluation (no Streamlit here).

Importing ``core`` first loads a fast BLAS on Linux so MLX matmuls do not run on the
reference BLAS; this must happen before anything imports ``mlx.core`` (it warns, once,
where that came first).
"""

from core.blas import preload_blas

preload_blas()
