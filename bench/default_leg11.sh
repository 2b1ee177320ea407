#!/usr/bin/env bash
# Leg 11 of checkpoints/default: leg 8's recipe (bench/open_end_leg.sh) at about half the
# learning rate (1.2e-4 instead of 2.5e-4), 4,000 steps, seed 11, on MOSES training molecules
# 520,000-940,000: leg 9's slice and leg 10's together, trained from the shipped leg 9 on both
# cores (bench/default_leg4.sh: two pinned ranks). Legs 7 and 10 lost aim on a fresh slice at
# 2.5e-4; this asks whether a gentler step over seen and fresh molecules keeps leg 9's aim.
# First leg to keep the base's normalisation (commit 3c47ddc; legs 7-10 renormalised to
# their slice), so leg 9 and leg 11 can also be averaged (bench.soup).
#   bash bench/default_leg11.sh [OUT [ARGS...]]  (OUT defaults to runs/leg11; ARGS to core.train)
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_cd.parquet
# The table is prepared when missing; with legs 9 and 10's slices at hand it is only joined:
#   python -m bench.join_slices data/full/moses_open_end_c.parquet \
#     data/full/moses_open_end_d.parquet --out data/full/moses_open_end_cd.parquet
# Ship rule, fixed before it ran: leg 11 replaces checkpoints/default when its grid evaluation
# (core.evaluate, 1,000 per target) has TPSA MAD below leg 9's 3.53 with LogP MAD <= 0.160,
# joint hit >= 0.832, novelty >= 0.90 and Filters at test pairs >= 0.915 (leg 9's less 0.01).
set -euo pipefail
OUT=${1:-runs/leg11}
shift || true
exec bash "$(dirname "$0")/open_end_leg.sh" cd 520000 420000 4000 11 "$OUT" --lr 1.2e-4 "$@"
