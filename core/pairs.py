"""Closed-loop batches two at a time, so one batch's model step overlaps the other's RDKit.

A closed-loop batch alternates two phases: the decoder's step (MLX, which releases the GIL
while it evaluates) and the chemistry of every unfinished molecule (SELFIES and RDKit in
Python, half of it on ``core.sidecar``'s helper process). One batch at a time leaves a core
idle in each phase; two independent batches on two threads fill it: while one evaluates its
step, the other works on its molecules. Each batch keeps its own seed, so the molecules are
the ones the batches give one after the other.

MLX gives each thread that evaluates arrays streams of its own; the helper thread releases
them when its batch ends (``mx.clear_streams``), as MLX asks of every thread but the main
one (a process can otherwise abort as it exits).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import mlx.core as mx

from core.blas import one_blas_thread
from core.sidecar import cores

T = TypeVar("T")


def in_pairs(
    fn: Callable[[int], T], items: Sequence[int], done: Callable[[T], None] | None = None
) -> list[T]:
    """``[fn(x) for x in items]``, two calls at a time where the process has two cores (the
    second on a thread of its own); ``done`` sees each result in order as it is ready.

    >>> in_pairs(lambda x: x * x, [1, 2, 3])
    [1, 4, 9]
    """
    step = 2 if cores() >= 2 and len(items) > 1 else 1
    if step == 1:
        return _each(fn, items, done)
    with one_blas_thread():  # the two threads keep both cores busy: no BLAS thread spinning
        return _each(fn, items, done, step)


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
        other = _Thread(fn, pair[1]) if len(pair) == 2 else None
        try:
            first = fn(pair[0])
        finally:
            second = other.result() if other is not None else None  # waits even on an error
        for value in [first] if other is None else [first, second]:
            results.append(value)
            if done is not None:
                done(value)
    return results


class _Thread:
    """``fn(item)`` started on a new thread; ``result`` waits for it and returns or raises
    what the call did."""

    def __init__(self, fn: Callable[[int], T], item: int):
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, item), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[int], T], item: int) -> None:
        try:
            self._value = fn(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by ``result``
            self._error = exc
        finally:
            mx.clear_streams()  # this thread's MLX streams, before it ends

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
