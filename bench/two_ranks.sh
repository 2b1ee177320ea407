#!/usr/bin/env bash
# core.train as two data-parallel ranks, each pinned to one core with one OpenBLAS thread (the
# fastest layout on a 2-core machine, docs/distributed.md), started without mlx.launch (its
# output threads keep half a core busy), niced so other work can go on beside it:
#   bash bench/two_ranks.sh OUT [core.train ARGS...]      logs: runs/$(basename OUT)_rank{0,1}.log
# Ctrl+C (or SIGTERM) stops both ranks, which save a checkpoint first.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1
shift
mkdir -p runs
HOSTS=runs/hosts_local2.json
echo '["127.0.0.1:32423", "127.0.0.1:32424"]' > "$HOSTS"
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE MLX_HOSTFILE=$HOSTS
CORES=$(nproc)
pids=()
trap 'kill -INT "${pids[@]}" 2>/dev/null; wait' INT TERM
for rank in 1 0; do
  MLX_RANK=$rank nice -n 10 taskset -c $((rank % CORES)) \
    .venv/bin/python -m core.train --distributed --out "$OUT" "$@" \
    > "runs/$(basename "$OUT")_rank$rank.log" 2>&1 &
  pids+=($!)
done
wait
