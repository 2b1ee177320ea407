"""The ring limit of closed-loop generation, on and off, at the same seeds.

    python -m bench.ring_guard [--checkpoint checkpoints/default] [--n 1000] [--reference 0]

For ``max_ring`` 7 (the default: a symbol that would close a ring of 8 atoms or more is drawn
again) and None (the model alone), ``core.evaluate.moses_section`` generates ``n`` molecules
unconditioned and ``n`` at the (LogP, TPSA) of MOSES test molecules and runs the MOSES suite on
both against ``--reference`` MOSES test molecules (0: all 176,074). Prints a table and writes
``bench/results/ring_guard.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import time

import core  # noqa: F401  (fast BLAS before mlx)
from bench.common import save, script_parser
from core.checkpoint import load_checkpoint
from core.closed_loop import MAX_RING
from core.evaluate import moses_section
from core.generate import generate, score
from core.moses import MACROCYCLE

KEPT = ("Filters", "SNN/Test", "Frag/Test", "Scaf/Test", "IntDiv1", "mad_logp", "mad_tpsa")


def arm(bundle, n: int, seed: int, reference: int | None, max_ring: int | None) -> dict:
    """The MOSES suite, unconditioned and at test pairs, of one ``max_ring``."""
    start = time.perf_counter()
    free = score(generate(bundle, {}, n, seed=seed + 99_999, max_ring=max_ring), ())
    section = moses_section(bundle, free.smiles.tolist(), n, seed, reference_size=reference,
                            max_ring=max_ring)  # fmt: skip
    out = {"max_ring": max_ring, "seconds": round(time.perf_counter() - start, 1)}
    for mode in ("unconditioned", "conditioned_test_pairs"):
        suite = section[mode]
        out[mode] = {key: suite[key] for key in KEPT if key in suite}
        out[mode]["macrocycles"] = suite["filter_failures"].get(MACROCYCLE, 0)
        out[mode]["filter_failures"] = suite["filter_failures"]
    return out


def main(args: argparse.Namespace) -> dict:
    bundle = load_checkpoint(args.checkpoint)
    reference = args.reference or None
    arms = [arm(bundle, args.n, args.seed, reference, m) for m in (MAX_RING, None)]
    result = {"checkpoint": str(args.checkpoint), "n": args.n, "seed": args.seed,
              "reference": reference or "all", "arms": arms}  # fmt: skip
    save(result, "ring_guard", args.out)
    header = ("max_ring", "mode", "Filters", "macrocycles", "MAD LogP", "MAD TPSA")
    print("  ".join(header))
    for a in arms:
        for mode in ("unconditioned", "conditioned_test_pairs"):
            m = a[mode]
            cells = (a["max_ring"], mode, f"{m['Filters']:.3f}", m["macrocycles"],
                     f"{m.get('mad_logp', float('nan')):.3f}",
                     f"{m.get('mad_tpsa', float('nan')):.2f}")  # fmt: skip
            print("  ".join(map(str, cells)))
    return result


if __name__ == "__main__":
    parser = script_parser(__doc__, 1000, "molecules per mode and arm")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--reference", type=int, default=0, help="MOSES test molecules (0: all)")
    parser.add_argument("--out", help="JSON file (default bench/results/ring_guard.json)")
    main(parser.parse_args())
