"""Where a closed-loop batch spends its time, and when its molecules end.

    python -m bench.closed_loop_profile [--checkpoint checkpoints/default] [--n 1000] [--top 15]

One batch of ``n`` molecules at LogP 2.5 / TPSA 60 (as ``bench.closed_loop_speed``) under
cProfile, after a small warm-up batch. Prints the functions with the most cumulative time and
how many molecules have ended after every 10 steps; writes
``bench/results/closed_loop_profile.json`` (seconds, steps, ended per step, top functions).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import core  # noqa: F401  (fast BLAS before mlx)
from bench.common import save, script_parser
from core.checkpoint import load_checkpoint
from core.generate import generate_step

TARGETS = {"logp": 2.5, "tpsa": 60.0}


def main(args: argparse.Namespace) -> dict:
    bundle = load_checkpoint(args.checkpoint)
    list(generate_step(bundle, TARGETS, n=50, seed=9, report_top=1))  # compile, fill caches
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    ended = [int(s.done.sum()) for s in generate_step(bundle, TARGETS, n=args.n, seed=1,
                                                        report_top=1)]  # fmt: skip
    profile.disable()
    seconds = time.perf_counter() - start
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(args.top)
    result = {
        "checkpoint": str(args.checkpoint), "n": args.n, "seconds_profiled": round(seconds, 1),
        "steps": len(ended), "ended_after_step": ended, "top_functions": text.getvalue(),
    }  # fmt: skip
    save(result, "closed_loop_profile")
    print(text.getvalue())
    print("ended after step:", {k: ended[k - 1] for k in range(10, len(ended) + 1, 10)})
    return result


if __name__ == "__main__":
    parser = script_parser(__doc__, 1000, "molecules in the batch")
    parser.add_argument("--top", type=int, default=15, help="functions to list")
    main(parser.parse_args())
