#!/usr/bin/env bash
# Leg 9 of checkpoints/default: leg 8's recipe (bench/default_leg8.sh), 5,000 steps instead of
# 4,000, on the next 260,000 MOSES training molecules (520,000-780,000), prepared open-ended,
# trained from the shipped leg 8 on both cores (bench/default_leg4.sh: two pinned ranks):
#   bash bench/default_leg9.sh [OUT [ARGS...]]    (OUT defaults to runs/leg9; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_c.parquet
# Ship rule, fixed before it ran: leg 9 replaces checkpoints/default when its grid evaluation
# (core.evaluate, 1,000 per target) has TPSA MAD below leg 8's 3.88 with LogP MAD <= 0.170,
# joint hit >= 0.785, novelty >= 0.90 and Filters at test pairs >= 0.883 (leg 8's less 0.01).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/leg9}
shift || true
DATA=data/full/moses_open_end_c.parquet
[ -f "$DATA" ] || nice -n 10 .venv/bin/python -m core.data prepare --skip 520000 \
  --limit 260000 --open-end --descriptors logp,tpsa --prefix-features logp,tpsa --out "$DATA"
exec bash bench/default_leg4.sh "$OUT" --data "$DATA" --total-steps 5000 --lr 2.5e-4 \
  --target-noise 0.05 --seed 9 "$@"
