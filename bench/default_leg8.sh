#!/usr/bin/env bash
# Leg 8 of checkpoints/default: the next 260,000 MOSES training molecules (after the 260,000
# the default was trained on) prepared with open-ended SELFIES (core.data prepare --open-end,
# core/ordering.py: written from a root atom that leaves the derivation open after the last
# symbol, so the model learns to end molecules with [EOS], where it reads the gap), then the
# default trained on from there on both cores (bench/default_leg4.sh: two pinned ranks):
#   bash bench/default_leg8.sh [OUT [ARGS...]]    (OUT defaults to runs/leg8; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_b.parquet
# (bench/open_end_leg.sh holds the preparation and training lines every leg shares.)
# Ship rule, fixed before it ran: leg 8 replaces checkpoints/default when its grid evaluation
# (core.evaluate, 1,000 per target) beats leg 6's joint hit (0.746) with LogP MAD <= 0.249 and
# TPSA MAD <= 4.62, novelty >= 0.89 and Filters at test pairs >= 0.884 (leg 6's less 0.01).
set -euo pipefail
OUT=${1:-runs/leg8}
shift || true
exec bash "$(dirname "$0")/open_end_leg.sh" b 260000 260000 4000 8 "$OUT" "$@"
