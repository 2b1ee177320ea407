"""FCD/Test of a checkpoint at more samples than ``core.evaluate`` draws.

    PYTHONPATH=/path/to/fcd_torch python -m bench.fcd [--checkpoint checkpoints/default]
        [--n 5000] [--reference 10000]

FCD (Fréchet ChemNet Distance) needs the optional ``fcd_torch`` (and torch), which the app never
imports. ``n`` molecules unconditioned and ``n`` at the (LogP, TPSA) of MOSES test molecules
(drawn as ``core.evaluate.moses_section`` draws them), each against ``--reference`` MOSES test
molecules (a random draw with seed 0; the MOSES paper uses 30,000 samples and the whole test
set, and FCD grows as samples shrink, so this overstates it a little). Writes
``bench/results/fcd.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import core  # noqa: F401  (fast BLAS before mlx)
from bench.common import save, script_parser
from core.checkpoint import load_checkpoint
from core.chem import describe_smiles
from core.generate import generate, score
from core.moses import fcd_available, frechet_chemnet_distance, moses_test_smiles


def test_pairs(n: int, seed: int) -> dict[str, np.ndarray]:
    """The (LogP, TPSA) of ``n`` MOSES test molecules drawn with ``seed``."""
    smiles = moses_test_smiles()
    drawn = np.random.default_rng(seed).choice(len(smiles), size=n, replace=False)
    rows = [d for d in (describe_smiles(smiles[i], ["logp", "tpsa"]) for i in drawn) if d]
    return {p: np.array([r[p] for r in rows]) for p in ("logp", "tpsa")}


def main(args: argparse.Namespace) -> dict:
    if not fcd_available():
        raise SystemExit("error: fcd_torch is not installed (pip install fcd_torch)")
    bundle = load_checkpoint(args.checkpoint)
    reference = moses_test_smiles(args.reference)
    result: dict = {"checkpoint": args.checkpoint, "n": args.n, "reference": len(reference)}
    targets = test_pairs(args.n, args.seed)
    for mode, wanted in (("unconditioned", {}), ("conditioned_test_pairs", targets)):
        start = time.perf_counter()
        n = len(targets["logp"]) if wanted else args.n
        smiles = score(generate(bundle, wanted, n, seed=args.seed + 7), ()).smiles.tolist()
        result[mode] = {
            "FCD/Test": frechet_chemnet_distance(smiles, reference),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(mode, result[mode], flush=True)
    save(result, "fcd", args.out)
    return result


if __name__ == "__main__":
    parser = script_parser(__doc__, 5000, "molecules per mode")
    parser.add_argument("--reference", type=int, default=10_000, help="MOSES test molecules")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", help="JSON file (default bench/results/fcd.json)")
    main(parser.parse_args())
