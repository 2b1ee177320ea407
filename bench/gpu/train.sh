#!/usr/bin/env bash
# Train on the lent GPU machine (one H200; `device` tool), from what bench/gpu/pack.sh put in
# .gpu/ (carried). Two calls, since the MLX wheels and the full data set do not fit in one:
#   bash bench/gpu/train.sh setup                 install into /tmp, check the GPU, and time
#                                                 both arms on .gpu/smoke.parquet (the step rate
#                                                 goes to /tmp/molscope_rate)
#   bash bench/gpu/train.sh arms DATA SECONDS     both arms at once on DATA, each for about
#                                                 SECONDS of steps (the cosine's length from the
#                                                 measured rate); checkpoints go to $OUT/ARM/
# The arms (same sizes as checkpoints/default, batch 512, the recipe's flags):
#   scratch   from scratch, closed-loop and derivation-reading (--feedback --derivation)
#   continue  checkpoints/default trained on (--init-from)
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE=/tmp/molscope_site
OUT=${OUT:-/tmp/molscope_out}
SP=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export PYTHONPATH=$SITE:. MOLSCOPE_BLAS=reference PYTHONUNBUFFERED=1
LD_LIBRARY_PATH=$( (ls -d "$SP"/nvidia/*/lib 2>/dev/null || true) | paste -sd:):${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH
source bench/recipe.sh  # ARCH, REGULARISE
BATCH=512
COMMON=(--batch-size $BATCH "${REGULARISE[@]}" --target-noise 0.1 --save-every 2 --log-every 50)
SCRATCH=(--lr 2e-3 --warmup 300 --kl-anneal 1500 --seed 3 "${ARCH[@]}" --feedback --derivation)
CONTINUE=(--init-from checkpoints/default --lr 4e-4 --warmup 100 --kl-anneal 1 --seed 4)

arm() {  # arm NAME OUTDIR ARGS...: one training process in the background, log beside it
  local name=$1 dir=$2
  shift 2
  python3 bench/gpu/train_without_rdkit.py --out "$dir" --overwrite "${COMMON[@]}" "$@" \
    > "$dir.log" 2>&1 &
  echo "started $name (pid $!)"
}

steps_per_s() {  # steps_per_s METRICS...: the slowest arm's rate over its last logged steps
  python3 - "$@" <<'PY'
import json, sys
rates = []
for path in sys.argv[1:]:
    rows = [json.loads(l) for l in open(path)]
    rows = [r for r in rows if r.get("split") == "train"]
    a, b = rows[-3], rows[-1]
    rates.append((b["step"] - a["step"]) / (b["time"] - a["time"]))
print(f"{min(rates):.3f}")
PY
}

show() {  # the last lines of each log, progress bars flattened
  for f in "$@"; do echo "== $f"; tr '\r' '\n' < "$f" | grep -v '^\s*$' | tail -4; done
}

case ${1:-} in
  setup)
    rm -rf "$SITE"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      .gpu/wheels/*.whl
    tar -C "$SITE" -xJf .gpu/mlx_cuda_13_sm90.tar.xz
    ln -sfn "$SP/nvidia" "$SITE/nvidia"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 - <<'PY'
import time
import mlx.core as mx
print("mlx", mx.__version__, mx.default_device())
a = mx.random.normal((4096, 4096))
mx.eval(a @ a)
t = time.perf_counter()
for _ in range(20):
    mx.eval(a @ a)
print(f"fp32 4096^3 matmul: {20 * 2 * 4096**3 / (time.perf_counter() - t) / 1e12:.1f} TFLOP/s")
PY
    mkdir -p /tmp/smoke
    SMOKE=(--data .gpu/smoke.parquet --val-size 500 --eval-every 100000 --max-steps 200
      --total-steps 200 --log-every 25)
    arm scratch /tmp/smoke/scratch "${SMOKE[@]}" "${SCRATCH[@]}"
    arm continue /tmp/smoke/continue "${SMOKE[@]}" "${CONTINUE[@]}"
    t0=$(date +%s)
    wait
    echo "smoke: $(( $(date +%s) - t0 )) s for 200 steps of each arm"
    show /tmp/smoke/*.log
    steps_per_s /tmp/smoke/scratch/metrics.jsonl /tmp/smoke/continue/metrics.jsonl \
      | tee /tmp/molscope_rate
    ;;
  arms)
    DATA=$2 SECONDS_=$3
    RATE=$(cat /tmp/molscope_rate)
    STEPS=$(python3 -c "print(int($RATE * $SECONDS_))")
    CAP=$(python3 -c "print(round(($SECONDS_ + 45) / 60, 2))")
    echo "rate $RATE steps/s per arm -> $STEPS steps of $BATCH (cap $CAP min)"
    mkdir -p /tmp/arms "$OUT"
    RUN=(--data "$DATA" --total-steps "$STEPS" --max-steps "$STEPS" --eval-every 1000
      --max-minutes "$CAP")
    arm scratch /tmp/arms/scratch "${RUN[@]}" "${SCRATCH[@]}"
    arm continue /tmp/arms/continue "${RUN[@]}" "${CONTINUE[@]}"
    wait || true
    for a in scratch continue; do
      mkdir -p "$OUT/$a"
      cp /tmp/arms/$a/{config.json,model.safetensors,metrics.jsonl} "$OUT/$a/" || true
      grep '"val"' /tmp/arms/$a/metrics.jsonl | tail -2 || true
    done
    show /tmp/arms/*.log | tee "$OUT/log.txt"
    ;;
  *)
    echo "usage: bash bench/gpu/train.sh setup | arms DATA SECONDS" >&2
    exit 2
    ;;
esac
