"""Closed-loop batches two at a time, so one batch's model step overlaps the other's RDKit.

A closed-loop batch alternates two phases: the decoder's step (MLX, which releases the GIL
while it evaluates) and the chemistry of every unfinished molecule (SELFIES and RDKit in
Python, half of it on ``core.sidecar``'s helper process). One batch at a time leaves a core
idle in each phase; two independent batches on two threads fill it: while one evaluates its
step, the other works on its molecules. Each batch keeps its own seed, so the molecules are
the ones the batches give one after the other.

The second batch of each pair runs on one long-lived daemon thread per process. Long-lived,
because MLX 0.32 keeps an OS thread (a stream's scheduler) for every thread that ever
evaluated arrays, even after it ends (docs/reliability.md); a daemon, because a thread that
ended or was joined at exit tears its MLX state down while the interpreter finalizes, which
aborted such processes ("terminate called without an active exception") in 3 runs of 6 here.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

from core.blas import one_blas_thread
from core.sidecar import cores

T = TypeVar("T")

_NAME = "molscope-pair"


def in_pairs(
    fn: Callable[[int], T], items: Sequence[int], done: Callable[[T], None] | None = None
) -> list[T]:
    """``[fn(x) for x in items]``, two calls at a time where the process has two cores (the
    second on the pair thread); ``done`` sees each result in order as it is ready.

    >>> in_pairs(lambda x: x * x, [1, 2, 3])
    [1, 4, 9]
    """
    alone = cores() < 2 or len(items) < 2 or threading.current_thread().name == _NAME
    if alone:
        return _each(fn, items, done)
    with one_blas_thread():  # the two threads keep both cores busy: no BLAS thread spinning
        return _each(fn, items, done, step=2)


def _each(
    fn: Callable[[int], T],
    items: Sequence[int],
    done: Callable[[T], None] | None,
    step: int = 1,
) -> list[T]:
    """``in_pairs``'s loop: ``step`` calls at a time (1 or 2)."""
    results: list[T] = []
    for i in range(0, len(items), step):
        pair = list(items[i : i + step])
        other = _worker.submit(fn, pair[1]) if len(pair) == 2 else None
        try:
            values = [fn(pair[0])]
        finally:
            if other is not None:  # waits for it even when the first call failed
                values.append(other.result())
        for value in values:
            results.append(value)
            if done is not None:
                done(value)
    return results


class _Worker:
    """The pair thread: a daemon that runs submitted calls one after another, started on
    first use (and again should it ever have died)."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[int], T], item: int) -> Future:
        """``fn(item)`` queued for the pair thread; its future holds the result or error."""
        future: Future = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=_NAME, daemon=True)
                self._thread.start()
        self._queue.put((fn, item, future))
        return future

    def _serve(self) -> None:
        while True:
            fn, item, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(item))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by the future
                future.set_exception(exc)


_worker = _Worker()
