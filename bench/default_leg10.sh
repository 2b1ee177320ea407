#!/usr/bin/env bash
# Leg 10 of checkpoints/default: leg 8's recipe (bench/open_end_leg.sh), 4,000 steps, seed 10,
# on the next 160,000 MOSES training molecules (780,000-940,000), prepared open-ended, trained
# from the shipped leg 9 on both cores (bench/default_leg4.sh: two pinned ranks):
#   bash bench/default_leg10.sh [OUT [ARGS...]]  (OUT defaults to runs/leg10; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_d.parquet
# Ship rule, fixed before it ran: leg 10 replaces checkpoints/default when its grid evaluation
# (core.evaluate, 1,000 per target) has TPSA MAD below leg 9's 3.53 with LogP MAD <= 0.160,
# joint hit >= 0.832, novelty >= 0.90 and Filters at test pairs >= 0.915 (leg 9's less 0.01).
set -euo pipefail
OUT=${1:-runs/leg10}
shift || true
exec bash "$(dirname "$0")/open_end_leg.sh" d 780000 160000 4000 10 "$OUT" "$@"
