"""Command line: which BLAS MLX uses in this environment, and how fast it multiplies.

python -m core.runtime          # which BLAS, and the measured GFLOP/s
python -m core.runtime --build  # (make setup) write the renamed OpenBLAS
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys

from core.blas import (
    BlasError,
    blas_name,
    build_blas,
    build_shim,
    sgemm_gflops,
    sgemm_provider,
)


def main(args: argparse.Namespace) -> int:
    if args.build:
        if platform.system() != "Linux":
            print("not Linux: nothing to build")
            return 0
        try:
            print(f"wrote {build_blas()}")
        except (BlasError, OSError, subprocess.CalledProcessError) as exc:
            print(f"error: could not build the fast BLAS: {exc}", file=sys.stderr)
            return 1
        try:
            print(f"wrote {build_shim()}")
        except (BlasError, OSError) as exc:  # optional: only batch-1 decoding is slower
            print(f"warning: {exc}", file=sys.stderr)
        return 0
    import mlx.core as mx

    print(f"mlx {mx.__version__} on {mx.default_device()}; BLAS: {blas_name()}")
    print(f"cblas_sgemm resolves to: {sgemm_provider() or 'the library bundled with mlx'}")
    if not args.no_timing:
        print(f"sgemm 1024^3: {sgemm_gflops():.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Report (or build) the BLAS that MLX uses.")
    parser.add_argument("--build", action="store_true", help="write the renamed OpenBLAS")
    parser.add_argument("--no-timing", action="store_true", help="skip the sgemm measurement")
    sys.exit(main(parser.parse_args()))
