"""Model work on a few long-lived threads, for servers that start a thread per request.

MLX 0.32 gives every Python thread that evaluates arrays a stream of its own, with a
scheduler thread and buffers that stay for the life of the process. Streamlit runs each
script run (each click) in a new thread, so a dashboard that called the model directly would
gain an OS thread and some memory per click (docs/reliability.md). ``on_pool`` runs a call on
one of ``POOL_SIZE`` reused threads instead and hands back its result or exception, so the
number of MLX streams stays bounded however many clicks a server sees.
"""

from __future__ import annotations

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
    return _pool.submit(fn, *args, **kwargs).result()


def submit(fn: Callable[..., T], /, *args, **kwargs) -> Future[T]:
    """Start ``fn(*args, **kwargs)`` on a pool thread; the caller polls the future (for a
    progress bar drawn by the calling thread while the work runs)."""
    return _pool.submit(fn, *args, **kwargs)


def iterate_on_pool(make: Callable[..., Iterator[T]], /, *args, **kwargs) -> Iterator[T]:
    """The items of the iterator ``make(*args, **kwargs)``, each one computed on the pool.

    For generators such as ``core.generate.generate_step``: the caller may stop early, and
    the generator is closed on the pool (its ``finally`` blocks run there too).
    """
    it = on_pool(make, *args, **kwargs)
    try:
        while (item := on_pool(next, it, _DONE)) is not _DONE:
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            on_pool(close)
