"""Per-molecule chemistry spread over the cores this process may use.

SELFIES decoding and RDKit work one molecule at a time in Python and hold the GIL, so threads
do not help; worker processes do. ``spread(fn, items, *args)`` returns ``fn(items, *args)``,
computed in chunks on a pool of worker processes when there are at least ``MIN_ITEMS`` items
and this process may use two cores or more (``os.sched_getaffinity``: a process pinned with
``taskset`` to one core computes in place). The workers start clean ("spawn": none of the
parent's MLX, BLAS or server threads), once per process, and stay. ``fn`` must be a pure
module-level function of a list; a failed pool is dropped and the work done in place, so
generation never stops because of it. As with any "spawn" pool, a script that generates
many molecules at once needs Python's ``if __name__ == "__main__":`` guard (the workers
import the main module); a child process never starts workers of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")

MIN_ITEMS = 96  # fewer go in place: a round trip to the workers costs about a millisecond

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def cores() -> int:
    """How many cores this process may run on.

    >>> cores() >= 1
    True
    """
    return len(os.sched_getaffinity(0))


def spread(fn: Callable[..., list[T]], items: Sequence, *args) -> list[T]:
    """``fn(list(items), *args)``, in chunks on worker processes when that pays.

    >>> spread(sorted, [3, 1, 2])
    [1, 2, 3]
    """
    workers = cores()
    inside = multiprocessing.parent_process() is not None  # a worker never starts workers
    if workers < 2 or len(items) < MIN_ITEMS or inside:
        return fn(list(items), *args)
    size = -(-len(items) // workers)  # contiguous chunks, one per worker
    chunks = [list(items[k : k + size]) for k in range(0, len(items), size)]
    try:
        pool = _workers(workers)
        futures = [pool.submit(fn, chunk, *args) for chunk in chunks]
        return [out for future in futures for out in future.result()]
    except (BrokenProcessPool, OSError, RuntimeError):
        _drop()
        return fn(list(items), *args)


def _workers(n: int) -> ProcessPoolExecutor:
    """The process's worker pool, started on first use."""
    global _pool
    with _lock:
        if _pool is None:
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(max_workers=n, mp_context=context)
        return _pool


def _drop() -> None:
    """Forget a pool that failed (its processes are told to stop)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
