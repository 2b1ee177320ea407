#!/usr/bin/env bash
# Pack what the lent GPU machine lacks into .gpu/ (ignored; `carry` it): the MLX wheel and
# mlx-cuda-13 of the version pinned here (its libmlx.so cut to sm_90 code by keep_arch.py, then
# xz'd, since the wheel alone is over the 64 MiB a call carries), and selfies. The machine has
# Python 3.12, PyTorch's CUDA 13 libraries, numpy, pandas and pyarrow, and no RDKit. Also a
# 20,000-molecule slice of data/full/moses_feedback.parquet for the timing run.
#   bash bench/gpu/pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MLX=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('mlx'))")
SELFIES=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('selfies'))")
rm -rf .gpu && mkdir -p .gpu/wheels
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PLATFORMS=(--platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$WORK" "mlx==$MLX" "mlx-cuda-13==$MLX" \
  "selfies==$SELFIES"
mv "$WORK"/mlx-"$MLX"-*.whl "$WORK"/selfies-*.whl .gpu/wheels/
mkdir "$WORK/cuda" && (cd "$WORK/cuda" && unzip -q "$WORK"/mlx_cuda_13-*.whl)
.venv/bin/python bench/gpu/keep_arch.py "$WORK/cuda/mlx/lib/libmlx.so" --sm 90
tar -C "$WORK/cuda" -cf - . | xz -T2 -6 > .gpu/mlx_cuda_13_sm90.tar.xz
# 20,000 molecules of the training set for setup's timing run
.venv/bin/python -c "import pyarrow.parquet as pq, sys; t = pq.read_table(sys.argv[1]); \
pq.write_table(t.slice(0, 20000), sys.argv[2], compression='zstd')" \
  data/full/moses_feedback.parquet .gpu/smoke.parquet
du -sh .gpu/*
