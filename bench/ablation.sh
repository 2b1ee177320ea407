#!/usr/bin/env bash
# The per-lever ablation of the closed-loop recipe (README, "What each lever gives"): arms
# trained at one small fixed budget, two at a time, each pinned to its own core with one
# OpenBLAS thread, then evaluated the same way (pinned likewise):
#   bash bench/ablation.sh ARM [ARM]        e.g. bash bench/ablation.sh full no_feedback
# Each arm is the full recipe (bench/quality_train.sh's flags) with one lever changed, trained
# for 1,100 steps of 128 molecules (~4.9 M tokens, the issue's prototype budget) on the first
# 150,000 molecules of data/full/moses_feedback.parquet, seed 0; then `core.evaluate --n 200`
# (the reference grid, 200 molecules per target, T = 1) -> bench/results/ablation/ARM.json.
# `python -m bench.ablation_table` prints the README's table from those files.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data/full/moses_feedback.parquet
# the open_end arm reads open-ended SELFIES (core.ordering) of the next slice of MOSES, the
# table bench/default_leg8.sh prepares (its first 150,000 molecules: the same size, other ones)
OPEN_END_DATA=data/full/moses_open_end_b.parquet
arm_data() { if [ "$1" = open_end ]; then echo "$OPEN_END_DATA"; else echo "$DATA"; fi; }
BASE=(--data "$DATA" --limit 150000 --max-steps 1100 --total-steps 1100 --batch-size 128
  --lr 1.5e-3 --warmup 100 --d-model 192 --n-heads 4 --n-layers 4 --d-ff 768
  --enc-d-model 128 --enc-heads 2 --enc-layers 2 --enc-d-ff 512 --latent-dim 16
  --beta 0.5 --free-bits 0.1 --kl-anneal 400 --cond-drop 0.1 --eval-every 1100
  --save-every 10 --seed 0)
arm_flags() {  # the recipe's lever flags, one of them changed
  local feedback=(--feedback) noise=0.1 uncond=0.1 fourier=6 extra=()
  case "$1" in
    full) ;;
    no_feedback) feedback=() ;;
    no_target_noise) noise=0 ;;
    target_noise_005) noise=0.05 ;;
    no_joint_drop) uncond=0 ;;
    fourier_16) fourier=16 ;;  # the earlier default: up to 90 rad per σ
    derivation) extra=(--derivation) ;;  # a new lever: positions read the SELFIES derivation
    open_end) extra=(--derivation) ;;  # derivation, on open-ended SELFIES (arm_data)
    *) echo "error: unknown arm '$1' (full, no_feedback, no_target_noise," \
         "target_noise_005, no_joint_drop, fourier_16, derivation, open_end)" >&2; exit 2 ;;
  esac
  echo "${feedback[@]}" --target-noise "$noise" --uncond-drop "$uncond" --n-fourier "$fourier" \
    "${extra[@]}"
}
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p runs/ablation bench/results/ablation
for arm in "$@"; do  # every name and table checked before any work
  arm_flags "$arm" > /dev/null
  data=$(arm_data "$arm")
  [ -f "$data" ] || { echo "error: $data is missing: see bench/quality_train.sh" \
    "(the open_end arm: bench/default_leg8.sh)" >&2; exit 2; }
done
run_arm() {  # ARM CORE: train (resumes a stopped run), then evaluate
  local arm=$1 core=$2 out=runs/ablation/$1
  local flags data
  data=$(arm_data "$arm")
  if [ -f "$out/state.json" ]; then  # resume: the recorded recipe, the same stop
    flags=(--resume --data "$data" --limit 150000 --max-steps 1100)
  else
    read -r -a flags <<< "${BASE[*]} $(arm_flags "$arm") --data $data"
  fi
  nice -n 10 taskset -c "$core" .venv/bin/python -m core.train --out "$out" "${flags[@]}" \
    >> "runs/ablation/$arm.log" 2>&1
  nice -n 10 taskset -c "$core" .venv/bin/python -m core.evaluate --checkpoint "$out" --n 200 \
    --out "bench/results/ablation/$arm.json" > "runs/ablation/$arm.eval.log" 2>&1
}
CORES=$(nproc)
pids=()
i=0
for arm in "$@"; do
  run_arm "$arm" $((i % CORES)) &
  pids+=($!)
  i=$((i + 1))
done
for pid in "${pids[@]}"; do wait "$pid"; done
