#!/usr/bin/env bash
# checkpoints/default taught to read the SELFIES derivation (core.derivation): `--init-from`
# the closed-loop default with `--derivation` (its derivation tables start at zero, so the
# run starts from the default's own outputs), then the recipe's training flags on the same
# data, with a short warmup and no KL warmup (the model is trained already):
#   bash bench/derivation_finetune.sh [OUT [CORE [ARGS...]]]   one rank pinned to CORE (default 1)
#   RESUME=1 bash bench/derivation_finetune.sh OUT CORE          continue after a stop
# ARGS go to core.train as they are (e.g. --total-steps N).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/derivation_ft}
CORE=${2:-1}
shift 2 || shift $# || true
DATA=data/full/moses_feedback.parquet
[ -f "$DATA" ] || { echo "error: $DATA is missing: see bench/quality_train.sh" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
ARGS=(--out "$OUT" --data "$DATA" --save-every 5 --eval-every 500)
if [ "${RESUME:-0}" = 1 ]; then
  ARGS+=(--resume)
else
  ARGS+=(--init-from checkpoints/default --derivation --total-steps 3400 --batch-size 128
    --lr 3e-4 --warmup 100 --kl-anneal 1 --beta 0.5 --free-bits 0.1 --cond-drop 0.1
    --uncond-drop 0.1 --target-noise 0.1 --seed 1)
fi
mkdir -p runs
nice -n 10 taskset -c "$CORE" .venv/bin/python -m core.train "${ARGS[@]}" "$@" \
  >> "runs/$(basename "$OUT").log" 2>&1
