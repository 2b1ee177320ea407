"""Model work on a few long-lived threads, for servers that start a thread per request.

MLX 0.32 gives every Python thread that evaluates arrays a stream of its own, with a
scheduler thread and buffers that stay for the life of the process. Streamlit runs each
script run (each click) in a new thread, so a dashboard that called the model directly would
gain an OS thread and some memory per click (docs/reliability.md). ``on_pool`` runs a call on
one of ``POOL_SIZE`` reused threads instead and hands back its result or exception, so the
number of MLX streams stays bounded however many clicks a server sees.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

POOL_SIZE = 4  # concurrent model calls; more users queue (2 cores do not go faster with more)
_PREFIX = "molscope-mlx"
_pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix=_PREFIX)
_DONE = object()


def on_pool_thread() -> bool:
    """Whether the calling thread is one of the pool's."""
    return threading.current_thread().name.startswith(_PREFIX)


def on_pool(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` run on a pool thread; the caller waits for it.

    A call made from a pool thread runs in place (no deadlock when pooled calls nest).
    """
    if on_pool_thread():
        return fn(*args, **kwargs)
    return submit(fn, *args, **kwargs).result()


def submit(fn: Callable[..., T], /, *args, **kwargs) -> Future[T]:
    """Start ``fn(*args, **kwargs)`` on a pool thread; the caller polls the future (for a
    progress bar drawn by the calling thread while the work runs)."""
    return _pool.submit(fn, *args, **kwargs)


def iterate_on_pool(
    make: Callable[..., Iterator[T]], /, *args, idle_timeout: float = 600.0, **kwargs
) -> Iterator[T]:
    """The items of the iterator ``make(*args, **kwargs)``, all computed on one pool thread.

    One thread for the whole iteration, because MLX ties an unevaluated array to the thread
    that built it: a generator may keep such arrays between its items. The pool thread makes
    an item only when asked for it; when the caller stops early (or goes away for
    ``idle_timeout`` seconds) the iterator is closed there, so its ``finally`` blocks run.
    """
    if on_pool_thread():
        yield from make(*args, **kwargs)
        return
    asks: queue.Queue[bool] = queue.Queue()
    answers: queue.Queue[tuple[str, object]] = queue.Queue()

    def serve() -> None:
        it = None
        try:
            while True:
                try:
                    if not asks.get(timeout=idle_timeout):
                        return
                except queue.Empty:
                    return
                try:
                    it = make(*args, **kwargs) if it is None else it
                    item = next(it, _DONE)
                except BaseException as exc:  # noqa: BLE001 (raised again in the caller)
                    answers.put(("error", exc))
                    return
                answers.put(("item", item))
                if item is _DONE:
                    return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    submit(serve)
    try:
        while True:
            asks.put(True)
            kind, item = answers.get()
            if kind == "error":
                raise item  # type: ignore[misc]
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        asks.put(False)
