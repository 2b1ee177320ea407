"""Average the weights of checkpoints of one model (a "model soup": Wortsman et al., ICML 2022,
found that averaging models fine-tuned from one start often beats each of them).

    python -m bench.soup CHECKPOINT CHECKPOINT [...] [--weights 0.5,0.5] --out DIR

The checkpoints must be the same model (sizes, vocabulary, properties) reading the same
normalisation (legs fine-tuned since ``core.trainrun`` keeps the base's; older legs each
renormalised to their slice, and averaging those would mix two readings of every target).
The soup keeps the first checkpoint's config and records what it averaged in ``meta.soup_of``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.common import run_reporting
from core.checkpoint import Bundle, CheckpointError, load_checkpoint, save_checkpoint


def soup(bundles: list[Bundle], weights: list[float]) -> Bundle:
    """The weighted average of ``bundles`` (weights summing to 1), as a new bundle on the
    first one's config; ValueError if they are not one model read in one normalisation.

    >>> soup([], [0.5, 0.4])
    Traceback (most recent call last):
    ValueError: need one weight per checkpoint, summing to 1; got [0.5, 0.4]
    """
    import mlx.core as mx  # after core (imported above), which loads the fast BLAS first
    from mlx.utils import tree_flatten

    if len(bundles) != len(weights) or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"need one weight per checkpoint, summing to 1; got {weights}")
    first = bundles[0]
    for i, other in enumerate(bundles[1:], start=2):
        if other.args != first.args or other.tokenizer.tokens != first.tokenizer.tokens:
            raise ValueError(f"checkpoint {i} is another model (sizes or vocabulary differ)")
        for name, scale in first.scales.items():
            s = other.scales[name]
            if (s.mean, s.std) != (scale.mean, scale.std):
                raise ValueError(
                    f"checkpoint {i} normalises {name} otherwise (mean {s.mean:g}, σ {s.std:g};"
                    f" checkpoint 1: {scale.mean:g}, {scale.std:g})"
                )
    params = [dict(tree_flatten(b.model.parameters())) for b in bundles]
    averaged = {
        name: sum(w * p[name] for w, p in zip(weights, params, strict=True)) for name in params[0]
    }
    model = type(first.model)(first.args)
    model.load_weights(list(averaged.items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    longest = [b.meta.get("longest_trained") for b in bundles]
    meta = {
        **first.meta,
        "soup_of": [
            {"path": str(b.path), "weight": w, "init_from": b.meta.get("init_from")}
            for b, w in zip(bundles, weights, strict=True)
        ],
    }
    if None not in longest:
        meta["longest_trained"] = max(longest)
    return replace(first, model=model, meta=meta, path=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders")
    parser.add_argument("--weights", help="comma-separated, summing to 1 (default: equal)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    args = parser.parse_args()
    n = len(args.checkpoints)

    def work() -> str:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else [1 / n] * n
        bundles = [load_checkpoint(p) for p in args.checkpoints]
        save_checkpoint(args.out, soup(bundles, weights))
        return f"wrote the soup of {n} checkpoints to {args.out}"

    return run_reporting(work, (CheckpointError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
