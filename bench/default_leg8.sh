#!/usr/bin/env bash
# Leg 8 of checkpoints/default: the next 260,000 MOSES training molecules (after the 260,000
# the default was trained on) prepared with open-ended SELFIES (core.data prepare --open-end,
# core/ordering.py: written from a root atom that leaves the derivation open after the last
# symbol, so the model learns to end molecules with [EOS], where it reads the gap), then the
# default trained on from there on both cores (bench/default_leg4.sh: two pinned ranks):
#   bash bench/default_leg8.sh [OUT [ARGS...]]    (OUT defaults to runs/leg8; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_b.parquet
# Ship rule, fixed before it ran: leg 8 replaces checkpoints/default when its grid evaluation
# (core.evaluate, 1,000 per target) beats leg 6's joint hit (0.746) with LogP MAD <= 0.249 and
# TPSA MAD <= 4.62, novelty >= 0.89 and Filters at test pairs >= 0.884 (leg 6's less 0.01).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/leg8}
shift || true
DATA=data/full/moses_open_end_b.parquet
[ -f "$DATA" ] || nice -n 10 .venv/bin/python -m core.data prepare --skip 260000 \
  --limit 260000 --open-end --descriptors logp,tpsa --prefix-features logp,tpsa --out "$DATA"
exec bash bench/default_leg4.sh "$OUT" --data "$DATA" --total-steps 4000 --lr 2.5e-4 \
  --target-noise 0.05 --seed 8 "$@"
