#!/usr/bin/env bash
# Leg 4 of checkpoints/default: the derivation-reading default (bench/derivation_finetune.sh)
# trained on, on both cores (two data-parallel ranks, one pinned per core, as
# bench/quality_train.sh), with the recipe's flags and a fresh short cosine:
#   bash bench/default_leg4.sh [OUT [ARGS...]]          start (OUT defaults to runs/default_leg4)
#   RESUME=1 bash bench/default_leg4.sh OUT [ARGS...]   continue after a stop (Ctrl+C saves)
# ARGS go to core.train as they are (e.g. --total-steps N).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default_leg4}
shift || true
DATA=data/full/moses_feedback.parquet
case " $* " in  # another table given with --data (a later flag wins) need not be this one
  *" --data "*) ;;
  *) [ -f "$DATA" ] || { echo "error: $DATA is missing: see bench/quality_train.sh" >&2; exit 2; } ;;
esac
ARGS=(--data "$DATA" --save-every 5 --eval-every 1000)
if [ "${RESUME:-0}" = 1 ]; then
  ARGS+=(--resume)
else
  ARGS+=(--init-from checkpoints/default --total-steps 9000 --batch-size 128
    --lr 3e-4 --warmup 100 --kl-anneal 1 --beta 0.5 --free-bits 0.1 --cond-drop 0.1
    --uncond-drop 0.1 --target-noise 0.1 --seed 2)
fi
ARGS+=("$@")
exec bash bench/two_ranks.sh "$OUT" "${ARGS[@]}"
