"""Closed-loop generation rate of a checkpoint at batch 1,000, and the share spent in RDKit.

    python -m bench.closed_loop_speed [--checkpoint checkpoints/default] [--n 1000] [--rounds 2]

Alternates feedback on, feedback off (the same model and targets, one batch of n) and the n
molecules as two batches of n/2 at once (``core.generate.generate``, ``core.pairs``); the
fastest round of each counts. Prints one JSON line and writes
``bench/results/closed_loop_speed.json``. ``bench.run`` measures the same inside ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import time

import core  # noqa: F401  (fast BLAS before mlx)
from bench.common import save, script_parser
from bench.decode import generate_closed_loop, generate_two_batches
from core.checkpoint import load_checkpoint

TARGETS = {"logp": 2.5, "tpsa": 60.0}


def main(args: argparse.Namespace) -> dict:
    bundle = load_checkpoint(args.checkpoint)
    rates: dict[str, list[float]] = {"on": [], "off": [], "pairs": []}
    shares, steps = [], []
    for round_ in range(args.rounds):
        for mode in rates:
            start = time.perf_counter()
            if mode == "pairs":
                generate_two_batches(bundle, args.n, TARGETS, seed=round_)
            else:
                n_steps, rdkit = generate_closed_loop(
                    bundle, args.n, TARGETS, seed=round_, feedback=mode == "on"
                )
            seconds = time.perf_counter() - start
            rates[mode].append(args.n / seconds)
            if mode == "on":
                shares.append(rdkit / seconds)
                steps.append(n_steps)
    result = {
        "checkpoint": str(args.checkpoint),
        "n": args.n,
        "targets": TARGETS,
        "molecules_per_s": max(rates["on"]),
        "molecules_per_s_feedback_off": max(rates["off"]),
        "molecules_per_s_two_batches": max(rates["pairs"]),
        "rdkit_share": min(shares),
        "gen_steps": steps,
    }
    save(result, "closed_loop_speed")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = script_parser(__doc__, 1000, "molecules per batch")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (on, off)")
    main(parser.parse_args())
