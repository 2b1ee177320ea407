"""The model's own molecules to train on (filtered behaviour cloning, as in expert iteration):
generate one molecule at the (LogP, TPSA) of each of N MOSES training molecules, keep those
that hit their targets (the evaluation's ±0.5 / ±10 Å² windows) and pass MOSES's filters, and
write them as a SMILES list, followed by those N MOSES molecules themselves (``--with-moses``),
for ``core.data prepare --input FILE --open-end --prefix-features logp,tpsa``:

    python -m bench.own_rollouts --n 40000 --skip 940000 --out data/full/own.smi [--with-moses]

A leg trained on the table then reads the model's own trajectories that ended on target beside
the data it imitates. ``FILE.json`` beside the list says how many were made and kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem
from tqdm import tqdm

from bench.common import run_reporting
from core.checkpoint import load_checkpoint
from core.chem import canonical_smiles, describe, mol_from_smiles, selfies_to_smiles
from core.data import read_moses
from core.errors import UserError
from core.evaluate import hit_windows
from core.generate import generate
from core.moses import passes_filters

PROPERTIES = ("logp", "tpsa")


def targets_of(smiles: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The molecules of ``smiles`` that RDKit reads (canonical) and their LogP and TPSA.

    >>> kept, values = targets_of(["CCO", "not a molecule", "c1ccccc1O"])
    >>> kept, [round(float(v), 2) for v in values["tpsa"]]
    (['CCO', 'Oc1ccccc1'], [20.23, 20.23])
    """
    kept, rows = [], []
    for text in smiles:
        mol = mol_from_smiles(text)
        if mol is not None:
            kept.append(Chem.MolToSmiles(mol))
            values = describe(mol, PROPERTIES)
            rows.append([values[p] for p in PROPERTIES])
    table = np.array(rows, dtype=np.float64).reshape(-1, len(PROPERTIES))
    return kept, {p: table[:, i] for i, p in enumerate(PROPERTIES)}


def keep_own(
    smiles: list[str], targets: dict[str, np.ndarray], windows: dict[str, float]
) -> tuple[list[bool], dict[str, int]]:
    """Which generated molecules to keep (on target in every window and through MOSES's
    filters) and how many passed each test.

    >>> keep_own(["CCO", "CCCCCCO"], {"tpsa": np.array([20.0, 60.0])}, {"tpsa": 10})
    ([True, False], {'n': 2, 'on_target': 1, 'filters': 2, 'kept': 1})
    """
    keep, counts = [], {"n": len(smiles), "on_target": 0, "filters": 0, "kept": 0}
    for i, text in enumerate(smiles):
        mol = mol_from_smiles(text) if text else None  # parsed once for both tests
        values = None if mol is None else describe(mol, list(windows))
        hit = values is not None and all(
            abs(values[p] - targets[p][i]) <= w for p, w in windows.items()
        )
        clean = mol is not None and passes_filters(mol)
        counts["on_target"] += hit
        counts["filters"] += clean
        keep.append(hit and clean)
    counts["kept"] = sum(keep)
    return keep, counts


def own_rollouts(args: argparse.Namespace) -> str:
    """Generate, keep and write; returns the one-line report."""
    start = time.perf_counter()
    bundle = load_checkpoint(args.checkpoint)
    if list(bundle.properties) != list(PROPERTIES):
        raise UserError(f"{args.checkpoint} is conditioned on {bundle.properties}, not logp,tpsa")
    moses, targets = targets_of(read_moses("train")[args.skip : args.skip + args.n])
    bar = tqdm(total=len(moses), desc="own molecules", unit="mol")
    selfies = generate(
        bundle, targets, len(moses), seed=args.seed, batch_size=args.batch_size,
        progress=lambda done: bar.update(done - bar.n),
    )  # fmt: skip
    bar.close()
    own = [canonical_smiles(selfies_to_smiles(s)) or "" for s in selfies]
    keep, counts = keep_own(own, targets, hit_windows(bundle.scales))
    kept = [s for s, k in zip(own, keep, strict=True) if k]
    lines = kept + (moses if args.with_moses else [])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{s}\n" for s in lines))
    summary = {
        "checkpoint": str(args.checkpoint), "skip": args.skip, "seed": args.seed,
        "moses_molecules": len(moses), **counts, "with_moses": args.with_moses,
        "lines": len(lines), "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return (
        f"kept {counts['kept']:,} of {counts['n']:,} own molecules (on target "
        f"{counts['on_target']:,}, through the filters {counts['filters']:,}); wrote "
        f"{len(lines):,} SMILES to {out}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/default", help="checkpoint folder")
    parser.add_argument("--n", type=int, default=40000, help="MOSES training molecules to aim at")
    parser.add_argument("--skip", type=int, default=0, help="start after this many of them")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--batch-size", type=int, default=1000, help="molecules per batch")
    parser.add_argument("--with-moses", action="store_true", help="append the MOSES molecules")
    parser.add_argument("--out", required=True, help="SMILES list to write (.smi)")
    args = parser.parse_args()
    return run_reporting(lambda: own_rollouts(args), (UserError,))


if __name__ == "__main__":
    sys.exit(main())
