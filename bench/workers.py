"""The benchmark's subprocesses, each printing one JSON line on stdout. They run apart from
``bench.run`` so that their peak memory is their own and the BLAS is chosen fresh at import
(``MOLSCOPE_BLAS=reference`` keeps MLX's bundled BLAS).

    python -m bench.workers train [--quick] [--steps N]   # MLX training steps
    python -m bench.workers app --checkpoint DIR          # what the dashboard process holds
    python -m bench.workers decode --checkpoint DIR       # batch-1 ms/token: cache, compile
    MLX_RANK=r MLX_HOSTFILE=F python -m bench.workers rank [--quick]   # one data-parallel rank
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

from core.blas import blas_name, sgemm_gflops


def peak_rss_mb() -> float:
    """This process's peak resident memory. Read from ``VmHWM`` on Linux: the parent's
    rusage would report at least the parent's own size, inherited by fork before exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024


def train(args: argparse.Namespace) -> dict:
    """Tokens/s of the compiled MLX training step: the median of ``--steps`` steps after one
    warm-up, or of those done in ``--seconds`` (at least ``--min-steps``)."""
    from bench.workload import build_workload, mlx_train_step, time_call

    work = build_workload(args.quick)
    _, run = mlx_train_step(work)
    run()  # compiles
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < args.steps:
        if len(times) >= args.min_steps and time.perf_counter() - start > args.seconds:
            break
        times.append(time_call(run))
    return {
        "tok_s": work.n_tokens / statistics.median(times),
        "steps": len(times),
        "blas": blas_name(),
        "sgemm_gflops": sgemm_gflops(n=256 if args.quick else 1024, repeats=3),
    }


def rank(args: argparse.Namespace) -> dict:
    """One rank of a data-parallel training step on the benchmark batch (started by
    ``bench.run`` with ``MLX_RANK``/``MLX_HOSTFILE``, as bench/quality_train.sh starts
    core.train): pinned to core ``rank % cores``, the median seconds of ``--steps`` steps
    after two warm-ups. Every rank times the same synchronised steps."""
    import os

    from bench.workload import build_workload, mlx_sharded_train_step, time_call
    from core.distributed import init_world

    world = init_world("ring")
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[world.rank % len(cores)]})
    work = build_workload(args.quick)
    run = mlx_sharded_train_step(work, world)
    for _ in range(2):
        run()  # compiles, warms the allocator
    times = [time_call(run) for _ in range(args.steps)]
    return {
        "tok_s": work.n_tokens / statistics.median(times),
        "steps": len(times),
        "rank": world.rank,
        "ranks": world.size,
    }


def app(args: argparse.Namespace) -> dict:
    """Import what the dashboard imports, load the checkpoint and the data set, generate and
    score a few molecules: the memory a dashboard process holds once a user has used it."""
    import streamlit  # noqa: F401

    from core.checkpoint import load_checkpoint
    from core.data import load_dataset
    from core.generate import generate, score

    bundle = load_checkpoint(args.checkpoint)
    data = load_dataset()
    scored = score(generate(bundle, {"logp": 2.5}, args.molecules, batch_size=args.molecules))
    return {"molecules": len(scored), "data_rows": len(data), "blas": blas_name()}


def decode(args: argparse.Namespace) -> dict:
    """Seconds per batch-1 run of ``--length`` tokens in alternating turns, in a process that
    holds only what a dashboard process holds (no PyTorch thread pools, no benchmark tables):
    ``cache``: ``generate_step`` (KV cache, compiled positions); ``cache_eager``: the same with
    ``mx.disable_compile``; ``nocache``: full recomputation per token, compiled (one trace per
    length, made in the warm-up runs). cache vs nocache is what the cache gives, cache vs
    cache_eager what compilation gives."""
    from bench.decode import decode_with_cache, decode_without_cache, recompute_position
    from bench.workload import alternate
    from core.checkpoint import load_checkpoint

    bundle = load_checkpoint(args.checkpoint)
    position = recompute_position(bundle, compiled=True)
    times = alternate(
        {
            "cache": lambda: decode_with_cache(bundle, args.length),
            "cache_eager": lambda: decode_with_cache(bundle, args.length, compiled=False),
            "nocache": lambda: decode_without_cache(bundle, args.length, position=position),
        },
        args.warmup,
        args.repeats,
        args.settle,
    )
    return {"seconds": times, "length": args.length, "blas": blas_name()}


def main(args: argparse.Namespace) -> int:
    print(json.dumps({**args.work(args), "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    from core.cli import run_cli

    parser = argparse.ArgumentParser(
        description="One measurement of bench.run, in its own process."
    )
    sub = parser.add_subparsers(required=True)
    p_train = sub.add_parser("train", help="time MLX training steps")
    p_train.add_argument("--quick", action="store_true", help="tiny configuration")
    p_train.add_argument("--steps", type=int, default=20, help="timed steps after one warm-up")
    p_train.add_argument("--min-steps", type=int, default=2, help="timed steps at least")
    p_train.add_argument(
        "--seconds", type=float, default=float("inf"), help="start no new step after this long"
    )
    p_train.set_defaults(work=train)
    p_app = sub.add_parser("app", help="load what the dashboard loads")
    p_app.add_argument("--checkpoint", required=True, help="checkpoint folder to load")
    p_app.add_argument("--molecules", type=int, default=8, help="molecules to generate")
    p_app.set_defaults(work=app)
    p_rank = sub.add_parser("rank", help="one rank of a data-parallel training step")
    p_rank.add_argument("--quick", action="store_true", help="tiny configuration")
    p_rank.add_argument("--steps", type=int, default=5, help="timed steps after two warm-ups")
    p_rank.set_defaults(work=rank)
    p_dec = sub.add_parser(
        "decode", help="time batch-1 decoding with and without the cache and compilation"
    )
    p_dec.add_argument("--checkpoint", required=True, help="checkpoint folder to load")
    p_dec.add_argument("--length", type=int, default=40, help="tokens per run")
    p_dec.add_argument("--repeats", type=int, default=7, help="timed runs of each variant")
    p_dec.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p_dec.add_argument("--settle", type=float, default=0.15, help="seconds of rest before a run")
    p_dec.set_defaults(work=decode)
    run_cli(main, parser)
