"""How closed-loop molecules end, and how close each kind gets to its targets.

    python -m bench.dead_ends [--checkpoint checkpoints/default] [--n 500] [--on-target]
                              [--out FILE]

A molecule ends either because the model wrote [EOS] (it judged the gap small) or because
its SELFIES derivation ran out: a symbol left the atom being extended no bond (an ``[=O]`` on
the main chain, say) and nothing after it could change the molecule (``Step.completed``), or
at the length cap. At three joint targets, ``n`` molecules each, T = 1, ring limit on, this
reports each kind's share, LogP and TPSA MAD and joint hit (±0.5 / ±10):
``bench/results/dead_ends.json`` (``--out`` to change). ``--on-target`` decodes with the
finish-on-target aid (``core.closed_loop.Aim``, the hit windows):
``bench/results/dead_ends_on_target.json``.
"""

from __future__ import annotations

import time

import numpy as np

import core  # noqa: F401  (fast BLAS before mlx)
from bench.common import save, script_parser
from core.checkpoint import load_checkpoint
from core.evaluate import hit_windows
from core.generate import generate_step, score

TARGETS = ({"logp": 2.0, "tpsa": 60.0}, {"logp": 3.0, "tpsa": 40.0}, {"logp": 1.0, "tpsa": 90.0})
WINDOWS = {"logp": 0.5, "tpsa": 10.0}


def aim(bundle, targets: dict[str, float], steps: list) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per molecule of a ``generate_step`` run: the absolute error per property (RDKit) and
    whether all are inside ``WINDOWS`` (the joint hit)."""
    ids = np.stack([s.tokens for s in steps], axis=1)
    table = score([bundle.tokenizer.decode(row) for row in ids])
    errors = {p: (table[p] - v).abs().to_numpy() for p, v in targets.items()}
    return errors, np.all([errors[p] <= WINDOWS[p] for p in targets], axis=0)


def ends(
    bundle, targets: dict[str, float], n: int, seed: int, finish_window: dict | None = None
) -> dict:
    """Per way of ending: share, MAD per property, joint hit."""
    completed = np.zeros(n, dtype=bool)
    steps = list(generate_step(bundle, targets, n=n, seed=seed, report_top=1,
                               finish_window=finish_window))  # fmt: skip
    for step in steps:
        completed |= step.completed
    errors, hit = aim(bundle, targets, steps)
    out = {}
    for kind, rows in (("model_eos", ~completed), ("derivation_ended", completed)):
        some = bool(rows.any())
        out[kind] = {
            "share": float(rows.mean()),
            **{f"mad_{p}": float(e[rows].mean()) if some else None for p, e in errors.items()},
            "joint_hit": float(hit[rows].mean()) if some else None,
        }
    out["all"] = {**{f"mad_{p}": float(e.mean()) for p, e in errors.items()},
                  "joint_hit": float(hit.mean())}  # fmt: skip
    return out


def main() -> dict:
    parser = script_parser(__doc__, 500, "molecules per target")
    parser.add_argument("--seed", type=int, default=3, help="random seed")
    parser.add_argument("--on-target", action="store_true", help="finish only on target")
    parser.add_argument("--out", help="JSON file (default: see above)")
    args = parser.parse_args()
    bundle = load_checkpoint(args.checkpoint)
    window = hit_windows(bundle.scales) if args.on_target else None
    start = time.perf_counter()
    rows = [{"targets": t, **ends(bundle, t, args.n, args.seed, window)} for t in TARGETS]
    result = {"checkpoint": args.checkpoint, "n": args.n, "seed": args.seed,
              "finish_window": window, "targets": rows,
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    save(result, "dead_ends_on_target" if args.on_target else "dead_ends", args.out)
    for r in rows:
        for kind in ("model_eos", "derivation_ended"):
            k = r[kind]
            print(r["targets"], kind, f"share {k['share']:.2f}", f"hit {k['joint_hit']}",
                  f"LogP MAD {k['mad_logp']}", f"TPSA MAD {k['mad_tpsa']}")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
