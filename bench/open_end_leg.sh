#!/usr/bin/env bash
# One leg of checkpoints/default on a fresh slice of MOSES training molecules, prepared
# open-ended (core.data prepare --open-end), trained from the shipped default with leg 8's
# recipe on both cores (bench/default_leg4.sh: two pinned ranks). The legs' own scripts
# (bench/default_leg8.sh ...) record which slice, how many steps and which seed each used:
#   bash bench/open_end_leg.sh NAME SKIP LIMIT STEPS SEED OUT [ARGS...]
# NAME names the table data/full/moses_open_end_NAME.parquet (prepared when missing);
# ARGS go to core.train. Continue a stopped leg with
#   RESUME=1 bash bench/default_leg4.sh OUT --data data/full/moses_open_end_NAME.parquet
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 6 ] || { echo "usage: $0 NAME SKIP LIMIT STEPS SEED OUT [ARGS...]" >&2; exit 2; }
NAME=$1 SKIP=$2 LIMIT=$3 STEPS=$4 SEED=$5 OUT=$6
shift 6
DATA=data/full/moses_open_end_$NAME.parquet
[ -f "$DATA" ] || nice -n 10 .venv/bin/python -m core.data prepare --skip "$SKIP" \
  --limit "$LIMIT" --open-end --descriptors logp,tpsa --prefix-features logp,tpsa --out "$DATA"
exec bash bench/default_leg4.sh "$OUT" --data "$DATA" --total-steps "$STEPS" --lr 2.5e-4 \
  --target-noise 0.05 --seed "$SEED" "$@"
