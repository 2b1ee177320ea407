"""Data-parallel training on MLX's own distributed engine (``mx.distributed``).

Processes are started by ``mlx.launch``, which gives each one its rank through the
environment (ring: ``MLX_RANK`` and ``MLX_HOSTFILE``; MPI: ``mpirun``'s own variables)::

    mlx.launch --backend ring -n 2 -- python -m core.train --distributed --out ck/run ...

Every rank holds the whole model and the whole training set, derives the same global batch
order from (seed, epoch), and works on rows ``rank::size`` of each global batch. This module
holds the process group (``World``) and a measurement of the all-reduce cost:
``mlx.launch --backend ring -n 2 -- python -m core.distributed`` prints it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map

from core.errors import UserError

BACKENDS = ("ring", "mpi")


class DistributedError(UserError, RuntimeError):
    """The process group cannot be set up (not started by mlx.launch, backend missing...)."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; a world of one never communicates."""

    group: mx.distributed.Group | None = None  # None: a single process

    @property
    def rank(self) -> int:
        return self.group.rank() if self.group is not None else 0

    @property
    def size(self) -> int:
        return self.group.size() if self.group is not None else 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch; the shards of all ranks partition ``rows``.

        >>> World().shard(np.arange(4)).tolist()
        [0, 1, 2, 3]
        """
        return rows[self.rank :: self.size]

    def agree(self, values: list[float]) -> bool:
        """Whether every rank passed the same ``values`` (one all_max and one all_min)."""
        if self.size == 1:
            return True
        local = mx.array(values, dtype=mx.float32)
        high = mx.distributed.all_max(local, group=self.group)
        low = mx.distributed.all_min(local, group=self.group)
        return bool(mx.all(high == low).item())

    def broadcast(self, tree):
        """``tree`` (of arrays) as rank 0 holds it, on every rank: an all_sum of rank 0's
        arrays and the other ranks' zeros."""
        if self.size == 1:
            return tree

        def from_main(x: mx.array) -> mx.array:
            mine = x if self.is_main else mx.zeros_like(x)
            return mx.distributed.all_sum(mine, group=self.group)

        return tree_map(from_main, tree)

    def replicate(self, model, optimizer) -> None:
        """Every rank's ``model`` weights and ``optimizer`` state made rank 0's: the replicas
        start identical even where random init differs between machines."""
        model.update(self.broadcast(model.parameters()))
        optimizer.state = self.broadcast(optimizer.state)
        mx.eval(model.parameters(), optimizer.state)


def init_world(backend: str = "ring") -> World:
    """Join the process group that ``mlx.launch --backend BACKEND`` started.

    Raises DistributedError with a one-line reason when this process was not started by
    ``mlx.launch`` or the backend cannot be used here.
    """
    if backend not in BACKENDS:
        raise DistributedError(f"unknown distributed backend {backend!r}: use one of {BACKENDS}")
    if not mx.distributed.is_available(backend):
        hint = " (it needs OpenMPI's libmpi)" if backend == "mpi" else ""
        raise DistributedError(f"the {backend} backend is not available here{hint}")
    if backend == "ring":
        hostfile = os.environ.get("MLX_HOSTFILE")
        if not hostfile or "MLX_RANK" not in os.environ:
            raise DistributedError(
                "--distributed needs processes started by mlx.launch, e.g. "
                "mlx.launch --backend ring -n 2 -- python -m core.train --distributed ..."
            )
        # mlx.launch writes an empty hostfile for a single process, which the ring rejects
        if not Path(hostfile).read_text().strip():
            return World()
    try:
        group = mx.distributed.init(strict=True, backend=backend)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(f"cannot join the {backend} process group: {first}") from exc
    return World(group) if group.size() > 1 else World()


def allreduce_seconds(world: World, n_floats: int, repeats: int = 10) -> list[float]:
    """Wall time of each of ``repeats`` all_sum calls on ``n_floats`` float32 values.

    Every call starts on all ranks together (a one-float all_sum first), so a slow rank's
    earlier work is not counted as communication.
    """
    x = mx.ones((n_floats,), dtype=mx.float32)
    mx.eval(x)
    times = []
    for _ in range(repeats + 1):  # the first call sets up buffers and is not timed
        mx.eval(mx.distributed.all_sum(mx.ones(1), group=world.group))
        t0 = time.perf_counter()
        mx.eval(mx.distributed.all_sum(x, group=world.group))
        times.append(time.perf_counter() - t0)
    return times[1:]


def main(opts: argparse.Namespace) -> int:
    world = init_world(opts.backend)
    if world.size == 1:
        raise DistributedError("measure under mlx.launch with 2 or more processes")
    for n in opts.floats:
        times = allreduce_seconds(world, n, opts.repeats)
        if world.is_main:
            ms = [t * 1000 for t in times]
            print(
                f"all_sum of {n:,} float32 ({n * 4 / 2**20:.1f} MiB) on {world.size} ranks: "
                f"median {statistics.median(ms):.2f} ms, min {min(ms):.2f}, max {max(ms):.2f}"
                f" ({opts.repeats} calls)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    from core.cli import OneLineParser, run_cli

    parser = OneLineParser(description="Measure the all-reduce time of the distributed backend.")
    parser.add_argument("--backend", choices=BACKENDS, default="ring", help="mlx.launch backend")
    parser.add_argument(
        "--floats", type=int, nargs="+", default=[4_000_000], help="array sizes to all_sum"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per size")
    run_cli(main, parser)
