"""Shared command-line plumbing: user errors end in one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from core.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """Reports a usage error as one ``error: ...`` line (``--help`` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


# the project's own error classes and OS errors (a path the user gave); anything else is a bug
# and keeps its traceback
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)


class StopFlag:
    """Set by SIGINT/SIGTERM, so a long command can stop cleanly (save, then exit 0) at its
    next step instead of dying mid-write."""

    def __init__(self) -> None:
        self.signal: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._set)

    def _set(self, signum, _frame) -> None:
        self.signal = signum


def run_cli(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser) -> None:
    """Parse arguments, run ``main`` and exit with its code; errors become ``error: ...``."""
    args = parser.parse_args()
    try:
        code = main(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
