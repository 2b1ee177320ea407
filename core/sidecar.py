"""A second process for per-molecule chemistry, so a large batch's RDKit work uses two cores.

SELFIES decoding and RDKit run one molecule at a time in Python and hold the GIL, so threads
do not help. ``share(fn, items, *args)`` returns ``fn(items, *args)``; with at least
``MIN_ITEMS`` items, and two cores for this process, the second half is sent to a helper
process while this one computes the first half.

The helper is a plain child process, ``python -m core.sidecar``, that answers requests read
from its stdin pipe: when the pipe closes (its parent exited, was killed or dropped it) it
reads end-of-file and exits, so it never outlives its parent. It imports this module and the
modules of the functions it is sent, never its parent's ``__main__`` (under ``streamlit run``
it does not run the app). One helper per process, started on first use; a caller that finds
it busy (another thread's batch) or broken computes in place, so generation never waits on it
or stops because of it. ``fn`` must be a module-level function of a list that works item by
item, pure, whose items, arguments and results are numbers, strings and tuples of them: they
travel as one line of JSON each way (no pickle: nothing the helper reads can run code), and
sequences come back as tuples, so in place or shared the results are the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")

MIN_ITEMS = 96  # fewer go in place: a round trip costs a few hundred microseconds
IN_HELPER = "MOLSCOPE_SIDECAR"  # set in the helper's environment: it never starts one itself
_ROOT = Path(__file__).resolve().parent.parent


def cores() -> int:
    """How many cores this process may run on (``taskset`` pins lower it).

    >>> cores() >= 1
    True
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def share(fn: Callable[..., list[T]], items: Sequence, *args) -> list[T]:
    """``fn(list(items), *args)``, the second half on the helper process when that pays;
    ``fn`` works item by item (``fn(a + b) == fn(a) + fn(b)``).

    >>> share(list, [3, 1, 2])
    [3, 1, 2]
    """
    items = list(items)
    if len(items) < MIN_ITEMS or cores() < 2 or os.environ.get(IN_HELPER):
        return fn(items, *args)
    if not _helper.lock.acquire(blocking=False):  # another thread's batch is using it
        return fn(items, *args)
    try:
        half = len(items) // 2
        sent = _helper.send(fn, items[half:], args)
        mine = fn(items[:half], *args)
        theirs = _helper.receive() if sent else None
        return mine + (theirs if theirs is not None else fn(items[half:], *args))
    finally:
        _helper.lock.release()


class _Helper:
    """The helper process of this process, with the lock that one batch at a time holds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def send(self, fn: Callable, items: list, args: tuple) -> bool:
        """Send one request; False (and the helper dropped) if it cannot be sent."""
        try:
            if self.process is None or self.process.poll() is not None:
                self.process = _start()
            _write(self.process.stdin, [fn.__module__, fn.__qualname__, items, list(args)])
            return True
        except (OSError, TypeError, ValueError):
            self.drop()
            return False

    def receive(self) -> list | None:
        """The answer to the request sent; None (and the helper dropped) if there is none."""
        try:
            ok, value = _read(self.process.stdout)
        except (OSError, EOFError, ValueError, TypeError):
            ok, value = False, None
        if not ok:
            self.drop()
            return None
        return [_tuples(item) for item in value]

    def drop(self) -> None:
        """Close the helper's pipes (it exits on end-of-file) and forget it."""
        process, self.process = self.process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            process.kill()
            process.wait()


def _start() -> subprocess.Popen:
    """A helper process, reading requests from a pipe."""
    env = dict(os.environ, **{IN_HELPER: "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "core.sidecar"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_ROOT, env=env,
    )  # fmt: skip


def _tuples(value: Any) -> Any:
    """``value`` with every list made a tuple (JSON has only lists).

    >>> _tuples(["CCO", [0.25, 20.23], 0])
    ('CCO', (0.25, 20.23), 0)
    """
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _write(pipe: BinaryIO, value: object) -> None:
    """One message: a line of JSON (floats as Python writes them: they read back exactly)."""
    pipe.write(json.dumps(value).encode() + b"\n")
    pipe.flush()


def _read(pipe: BinaryIO) -> Any:
    line = pipe.readline()
    if not line.endswith(b"\n"):
        raise EOFError("the pipe closed")
    return json.loads(line)


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The helper's loop: answer [module, name, items, args] with [true, result] or
    [false, error text] until ``requests`` ends."""
    while True:
        try:
            module, name, items, args = _read(requests)
        except (EOFError, ValueError):
            return
        try:
            fn = import_module(module)
            for part in name.split("."):
                fn = getattr(fn, part)
            answer = (True, fn([_tuples(item) for item in items], *map(_tuples, args)))
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the loop goes on
            answer = (False, f"{type(exc).__name__}: {exc}")
        try:
            _write(answers, answer)
        except (BrokenPipeError, OSError):
            return


_helper = _Helper()

if __name__ == "__main__":
    answers = os.fdopen(os.dup(1), "wb")  # the answers go on a private copy of stdout...
    os.dup2(2, 1)  # ...so whatever a library prints lands on stderr, not in an answer
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)
