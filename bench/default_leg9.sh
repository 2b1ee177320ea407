#!/usr/bin/env bash
# Leg 9 of checkpoints/default: leg 8's recipe (bench/default_leg8.sh), 5,000 steps instead of
# 4,000, on the next 260,000 MOSES training molecules (520,000-780,000), prepared open-ended,
# trained from the shipped leg 8 on both cores (bench/default_leg4.sh: two pinned ranks):
#   bash bench/default_leg9.sh [OUT [ARGS...]]    (OUT defaults to runs/leg9; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_c.parquet
# (bench/open_end_leg.sh holds the preparation and training lines every leg shares.)
# Ship rule, fixed before it ran: leg 9 replaces checkpoints/default when its grid evaluation
# (core.evaluate, 1,000 per target) has TPSA MAD below leg 8's 3.88 with LogP MAD <= 0.170,
# joint hit >= 0.785, novelty >= 0.90 and Filters at test pairs >= 0.883 (leg 8's less 0.01).
set -euo pipefail
OUT=${1:-runs/leg9}
shift || true
exec bash "$(dirname "$0")/open_end_leg.sh" c 520000 260000 5000 9 "$OUT" "$@"
