"""The longest SELFIES a checkpoint's decoder was trained to write, from the MOSES slices it
read, for a checkpoint trained before ``core.trainrun`` recorded it.

    python -m bench.longest_trained SLICE [SLICE ...] [--workers 2] [--write CHECKPOINT]
    python -m bench.longest_trained --norms CHECKPOINT

A SLICE is ``START:STOP`` of MOSES's training file, or ``START:STOP:open`` for one prepared
with ``--open-end``. Each molecule is written as ``core.data prepare`` writes it (``_row``);
the most symbols of any is printed, and with ``--write`` stored as
``meta.longest_trained`` in the checkpoint's ``config.json``: generation then ends a molecule
there (``Bundle.token_limit``), as the decoder's positions after it were never trained. The
shipped default read 0:260000 (legs 1-6), 260000:520000:open (leg 8) and, if leg 9 shipped,
520000:780000:open. ``--norms`` prints the norm of the decoder's position embedding of each
symbol instead: the untrained ones keep the small, decayed norm of their initialisation.
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import core  # noqa: F401  (fast BLAS before mlx)
from core.data import _row, read_moses

CHUNK = 2_000


def _longest(task: tuple[list[str], bool]) -> int:
    """The most SELFIES symbols of one chunk of SMILES, written as ``prepare`` writes them."""
    smiles, open_end = task
    rows = (_row(s, names=(), open_end=open_end) for s in smiles)
    return max((row[2] for row in rows if not isinstance(row, str)), default=0)


def longest(slices: list[str], workers: int = 2) -> int:
    """The most symbols of any molecule in the MOSES training ``slices`` (see above)."""
    train = read_moses("train")
    tasks = []
    for text in slices:
        start, stop, *mode = text.split(":")
        part = train[int(start) : int(stop)]
        open_end = mode == ["open"]
        tasks += [(part[i : i + CHUNK], open_end) for i in range(0, len(part), CHUNK)]
    with Pool(workers) as pool:
        return max(pool.imap_unordered(_longest, tasks))


def position_norms(checkpoint: str) -> list[float]:
    """The norm of the decoder's position embedding of each symbol, the first symbol's first
    (the condition prefix and [BOS] come before it)."""
    import numpy as np

    from core.checkpoint import load_checkpoint

    bundle = load_checkpoint(checkpoint)
    table = np.array(bundle.model.decoder.pos.weight)
    first = bundle.args.n_prefix + 1  # after the conditions, z and [BOS]
    return np.linalg.norm(table[first:], axis=1).tolist()


def main() -> int | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("slices", nargs="*", help="START:STOP or START:STOP:open")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--write", help="checkpoint folder whose config.json records it")
    parser.add_argument("--norms", help="print this checkpoint's position-embedding norms")
    args = parser.parse_args()
    if args.norms:
        for symbol, norm in enumerate(position_norms(args.norms), start=1):
            print(f"symbol {symbol}: {norm:.2f}")
        return None
    if not args.slices:
        parser.error("give at least one SLICE, or --norms")
    value = longest(args.slices, args.workers)
    print(f"longest SELFIES in {' '.join(args.slices)}: {value} symbols")
    if args.write:
        path = Path(args.write) / "config.json"
        config = json.loads(path.read_text())
        config["meta"]["longest_trained"] = value
        path.write_text(json.dumps(config, indent=2, allow_nan=False))
    return value


if __name__ == "__main__":
    main()
