"""Property targets from a command line: ``--logp X --tpsa Y --target NAME=VALUE ...``.

A checkpoint is conditioned on the properties it was trained on (``bundle.properties``);
``cli_targets`` turns the flags of ``python -m core.generate`` into the targets dict that
``core.generate.generate`` takes, and refuses a property the checkpoint does not have in one
line naming those it has. ``csv_properties`` lists the columns its CSV scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.chem import DESCRIPTORS
from core.errors import UserError

ALWAYS_SCORED = ("logp", "tpsa")  # the CSV contract: these columns whatever the checkpoint


class TargetError(UserError, ValueError):
    """A target that cannot be used: malformed, not finite, or not one the model knows."""


def parse_target(text: str) -> tuple[str, float]:
    """``"qed=0.7"`` -> ``("qed", 0.7)``; TargetError when it is not NAME=NUMBER.

    >>> parse_target(" QED = 0.7 ")
    ('qed', 0.7)
    """
    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep or not name:
        raise TargetError(f"--target {text!r}: write NAME=VALUE, e.g. qed=0.7")
    try:
        number = float(value)
    except ValueError:
        raise TargetError(f"--target {text!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(number):
        raise TargetError(f"--target {name} must be a finite number, got {value.strip()}")
    return name, number


def cli_targets(
    properties: Sequence[str],
    logp: float | None = None,
    tpsa: float | None = None,
    pairs: Sequence[str] = (),
) -> dict[str, float]:
    """The targets of ``--logp``, ``--tpsa`` and each ``--target NAME=VALUE`` for a model
    conditioned on ``properties``; a property left out stays unconditioned.

    >>> cli_targets(["logp", "tpsa", "qed"], logp=2.0, pairs=["qed=0.8"])
    {'logp': 2.0, 'qed': 0.8}
    >>> cli_targets(["logp", "tpsa"], pairs=["sa=3"])
    Traceback (most recent call last):
    ...
    core.targets.TargetError: this checkpoint is not conditioned on sa; it has logp, tpsa
    """
    targets: dict[str, float] = {}
    flags = [("logp", logp), ("tpsa", tpsa)]
    for name, value in flags + [parse_target(text) for text in pairs]:
        if value is None:
            continue
        if not math.isfinite(value):
            raise TargetError(f"--{name} must be a finite number, got {value}")
        if name in targets:
            raise TargetError(f"{name} is given twice")
        if name not in properties:
            have = ", ".join(properties)
            if name in DESCRIPTORS:
                raise TargetError(f"this checkpoint is not conditioned on {name}; it has {have}")
            raise TargetError(f"unknown property {name!r}; this checkpoint has {have}")
        targets[name] = float(value)
    return targets


def csv_properties(properties: Sequence[str]) -> tuple[str, ...]:
    """The property columns of a generated table: LogP and TPSA always, then the model's
    other properties in its order.

    >>> csv_properties(["qed", "logp", "mw"])
    ('logp', 'tpsa', 'qed', 'mw')
    """
    return (*ALWAYS_SCORED, *(p for p in properties if p not in ALWAYS_SCORED))
