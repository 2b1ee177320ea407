"""What the model-quality scripts of ``bench/`` share: where their results go, and their first
two flags."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(result: dict, name: str, out: str | None = None) -> Path:
    """Write ``result`` as JSON to ``out``, default ``bench/results/NAME.json``."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def script_parser(doc: str, n: int, n_help: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--checkpoint`` (default
    ``checkpoints/default``) and ``--n`` (default ``n``).

    >>> script_parser("Speed.\\n", 10, "molecules").parse_args([]).n
    10
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/default", help="checkpoint folder")
    parser.add_argument("--n", type=int, default=n, help=n_help)
    return parser


def run_reporting(work: Callable[[], str], errors: tuple[type[BaseException], ...]) -> int:
    """A script's exit status: 0 after ``work()`` (its one-line report goes to stderr), 2 with
    ``error: ...`` on one line for any of ``errors``.

    >>> run_reporting(lambda: "done", (ValueError,))
    0
    >>> run_reporting(lambda: int("x"), (ValueError,))
    2
    """
    try:
        report = work()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report, file=sys.stderr)
    return 0
