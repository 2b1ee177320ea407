"""MolScope's benchmark against PyTorch: ``python -m bench.run`` (see there).

Importing ``core`` first loads the fast BLAS, before any module here imports ``mlx.core``.
"""

import core  # noqa: F401
