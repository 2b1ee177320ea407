"""Does z pull against the condition? Conditioning with three choices of z, no training.

    python -m bench.z_prior [--checkpoint checkpoints/default] [--n 300] [--k 100]

The decoder reads z and the targets; z is drawn from N(0, I) whatever the targets, although
the encoder puts some of a molecule's properties into ``mu``. At the three joint targets of
``bench.dead_ends``, ``n`` molecules each (T = 1, ring limit on, the same seed per arm), z is:

- ``prior``: drawn from N(0, I), as generation does;
- ``zero``: the prior's mean for every molecule;
- ``neighbours``: the encoder's ``mu`` of one of the ``k`` training molecules (the shipped
  data's train split) nearest to the targets in SD units, drawn at random per molecule: a
  nonparametric p(z | c). If it steers better than ``prior``, a learned conditional prior is
  worth training.

Writes LogP / TPSA MAD and joint hit (±0.5 / ±10) per arm and target:
``bench/results/z_prior.json`` (``--out`` to change).
"""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np
import pandas as pd

import core  # noqa: F401  (fast BLAS before mlx)
from bench.common import save, script_parser
from bench.dead_ends import TARGETS, aim
from core.checkpoint import load_checkpoint
from core.generate import generate_step
from core.inspect import encode_smiles

DATA = "data/moses_subset.parquet"


def neighbours(bundle, table: pd.DataFrame, targets: dict[str, float], k: int) -> np.ndarray:
    """The encoder's ``mu`` (k, latent_dim) of the ``k`` molecules nearest to ``targets``."""
    gap = sum(((table[p] - v) / bundle.scales[p].std) ** 2 for p, v in targets.items())
    nearest = table.iloc[np.argsort(gap.to_numpy())[:k]]
    return np.stack([encode_smiles(bundle, s) for s in nearest["smiles"]])


def steer(bundle, targets: dict[str, float], z: mx.array, seed: int) -> dict:
    """MAD per property and joint hit of molecules decoded from ``z`` at ``targets``."""
    steps = list(generate_step(bundle, targets, n=z.shape[0], seed=seed, z=z, report_top=1))
    errors, hit = aim(bundle, targets, steps)
    return {**{f"mad_{p}": float(e.mean()) for p, e in errors.items()},
            "joint_hit": float(hit.mean())}  # fmt: skip


def main() -> dict:
    parser = script_parser(__doc__, 300, "molecules per target and arm")
    parser.add_argument("--k", type=int, default=100, help="training molecules per target")
    parser.add_argument("--seed", type=int, default=3, help="random seed")
    parser.add_argument("--out", help="JSON file (default bench/results/z_prior.json)")
    args = parser.parse_args()
    bundle = load_checkpoint(args.checkpoint)
    data = pd.read_parquet(DATA)
    train = data[data["split"] == "train"]
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    dim = bundle.args.latent_dim
    rows = []
    for targets in TARGETS:
        mus = neighbours(bundle, train, targets, args.k)
        arms = {
            "prior": mx.array(rng.standard_normal((args.n, dim)).astype(np.float32)),
            "zero": mx.zeros((args.n, dim)),
            "neighbours": mx.array(mus[rng.integers(0, len(mus), args.n)]),
        }
        rows.append(
            {
                "targets": targets,
                **{arm: steer(bundle, targets, z, args.seed) for arm, z in arms.items()},
            }
        )
        print(rows[-1], flush=True)
    mean = {arm: {key: float(np.mean([r[arm][key] for r in rows])) for key in rows[0][arm]}
            for arm in ("prior", "zero", "neighbours")}  # fmt: skip
    result = {
        "checkpoint": args.checkpoint,
        "n": args.n,
        "k": args.k,
        "seed": args.seed,
        "mean": mean,
        "targets": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }
    save(result, "z_prior", args.out)
    for arm, m in mean.items():
        print(arm, {key: round(v, 3) for key, v in m.items()})
    return result


if __name__ == "__main__":
    main()
