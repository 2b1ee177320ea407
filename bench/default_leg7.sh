#!/usr/bin/env bash
# Leg 7 of checkpoints/default: the next 260,000 MOSES training molecules prepared beside the
# first 260,000 (core.data prepare --skip, ~22 min on 2 cores), the two slices joined into the
# table `prepare --limit 520000` would write (bench/join_slices.py), then the default trained
# on from there on both cores (bench/default_leg4.sh: two pinned data-parallel ranks):
#   bash bench/default_leg7.sh [OUT [ARGS...]]     (OUT defaults to runs/leg7; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_feedback_520k.parquet
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/leg7}
shift || true
FIRST=data/full/moses_feedback.parquet  # bench/quality_train.sh prepares it
NEXT=data/full/moses_feedback_b.parquet
DATA=data/full/moses_feedback_520k.parquet
[ -f "$FIRST" ] || { echo "error: $FIRST is missing: see bench/quality_train.sh" >&2; exit 2; }
[ -f "$NEXT" ] || .venv/bin/python -m core.data prepare --skip 260000 --limit 260000 \
  --descriptors logp,tpsa --prefix-features logp,tpsa --out "$NEXT"
[ -f "$DATA" ] || .venv/bin/python -m bench.join_slices "$FIRST" "$NEXT" --out "$DATA"
exec bash bench/default_leg4.sh "$OUT" --data "$DATA" --total-steps 7000 --lr 2.5e-4 \
  --target-noise 0.05 --seed 7 "$@"
