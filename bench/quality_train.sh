#!/usr/bin/env bash
# The recipe of checkpoints/default (README, "Conditioning quality"): two data-parallel ranks,
# each pinned to one core with one OpenBLAS thread (the fastest layout on a 2-core machine,
# docs/distributed.md), started without mlx.launch (its output threads keep half a core busy).
#   bash bench/quality_train.sh [OUT [ARGS...]]           start (OUT defaults to runs/quality)
#   RESUME=1 bash bench/quality_train.sh OUT [ARGS...]    continue after a stop (Ctrl+C saves)
# ARGS go to core.train as they are (e.g. --total-steps N to change the schedule on resume).
# checkpoints/default took two legs: this start (its schedule shortened to --total-steps 4500
# on resume), then a second cosine from the finished run:
#   RESUME=1 bash bench/quality_train.sh OUT --total-steps 10500 --lr 6e-4
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quality}
shift || true
# the first 260,000 MOSES training molecules (and test in proportion) with the properties of
# every SELFIES prefix, which the closed-loop model reads (~20 min on 2 cores)
DATA=data/full/moses_feedback.parquet
[ -f "$DATA" ] || .venv/bin/python -m core.data prepare --limit 260000 --descriptors logp,tpsa \
  --prefix-features logp,tpsa --out "$DATA"
source bench/recipe.sh  # ARCH, REGULARISE
ARGS=(--data "$DATA")
if [ "${RESUME:-0}" = 1 ]; then
  ARGS+=(--resume)
else
  ARGS+=(--total-steps 6000 --batch-size 128 --lr 1.5e-3 --warmup 300 "${ARCH[@]}"
    "${REGULARISE[@]}" --kl-anneal 2000 --eval-every 500 --feedback --target-noise 0.1)
fi
ARGS+=("$@")
exec bash bench/two_ranks.sh "$OUT" "${ARGS[@]}"
