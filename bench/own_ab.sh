#!/usr/bin/env bash
# A/B at a small fixed budget: does a leg that also reads the model's own molecules that hit
# their targets and pass MOSES's filters (bench.own_rollouts: one aimed at each of N MOSES
# training molecules from 940,000) beat the same leg on those N MOSES molecules alone?
#   bash bench/own_ab.sh [DIR [STEPS [N]]]     (DIR runs/own_ab, STEPS 600, N 20000)
# Both arms are prepared the same way (core.data prepare --input --open-end), start from
# checkpoints/default with leg 11's flags and seed 12, train one per core (one process, one
# OpenBLAS thread), then core.evaluate runs on each at 500 molecules per target, one per core,
# into bench/results/own_ab_{own_moses,moses}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-runs/own_ab} STEPS=${2:-600} N=${3:-20000}
PY=.venv/bin/python
export OPENBLAS_NUM_THREADS=1
mkdir -p "$DIR"
[ -f "$DIR/own_moses.smi" ] || $PY -m bench.own_rollouts --n "$N" --skip 940000 --with-moses \
  --out "$DIR/own_moses.smi"
KEPT=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['kept'])" "$DIR/own_moses.json")
tail -n +$((KEPT + 1)) "$DIR/own_moses.smi" > "$DIR/moses.smi"
for arm in own_moses moses; do
  [ -f "$DIR/$arm.parquet" ] || $PY -m core.data prepare --input "$DIR/$arm.smi" --open-end \
    --prefix-features logp,tpsa --test-fraction 0.05 --out "$DIR/$arm.parquet"
done
FLAGS=(--init-from checkpoints/default --total-steps "$STEPS" --batch-size 128 --lr 1.2e-4
  --warmup 100 --kl-anneal 1 --beta 0.5 --free-bits 0.1 --cond-drop 0.1 --uncond-drop 0.1
  --target-noise 0.05 --seed 12 --save-every 5 --eval-every 100000)
core=0
for arm in own_moses moses; do
  nice -n 10 taskset -c $core $PY -m core.train \
    --out "$DIR/ck_$arm" --data "$DIR/$arm.parquet" "${FLAGS[@]}" > "$DIR/train_$arm.log" 2>&1 &
  core=$((core + 1))
done
wait
core=0
for arm in own_moses moses; do
  taskset -c $core $PY -m core.evaluate --checkpoint "$DIR/ck_$arm" --n 500 \
    --moses-reference 20000 --out "bench/results/own_ab_$arm.json" > "$DIR/eval_$arm.log" 2>&1 &
  core=$((core + 1))
done
wait
