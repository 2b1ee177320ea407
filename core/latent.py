"""How much of its latent code a model uses beyond what training gives away: the dimensions
whose KL to the prior is over the free-bits floor.

Training charges no KL below ``TrainArgs.free_bits`` nats per dimension (``core.losses``), so
a dimension that carries only that much is free to hold noise; an "active" one (the mean
varies across molecules, ``core.evaluate``) may still sit at the floor. Both counts are
reported next to each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import mlx.core as mx

from core.checkpoint import STATE
from core.config import TrainArgs
from core.losses import paying_dimensions


def units_above_floor(kl_per_dim: Sequence[float], free_bits: float) -> int:
    """Latent dimensions whose mean KL is over ``free_bits`` (the ones training charges for,
    ``core.losses.paying_dimensions``).

    >>> units_above_floor([0.094, 0.1, 1.02, 0.65], 0.1)
    2
    >>> units_above_floor([], 0.1)
    0
    """
    if not len(kl_per_dim):
        return 0
    return int(paying_dimensions(mx.array(kl_per_dim), free_bits).sum().item())


def free_bits_of(folder: Path | str) -> float:
    """The free-bits floor a checkpoint was trained with: from its ``state.json``, else (a
    shipped checkpoint keeps no training state) ``TrainArgs``' default.

    >>> free_bits_of("/nonexistent") == TrainArgs().free_bits
    True
    """
    try:
        return float(json.loads((Path(folder) / STATE).read_text())["train_args"]["free_bits"])
    except (OSError, ValueError, KeyError, TypeError):
        return TrainArgs().free_bits
