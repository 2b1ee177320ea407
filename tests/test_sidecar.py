"""The helper process of ``core.sidecar``: same results as in place, and it never outlives
its parent (the reason an earlier worker pool was reverted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import core.sidecar as sidecar
from core.data import load_dataset
from core.feedback import describe_prefixes
from core.runs import _pid_alive

ROOT = Path(__file__).resolve().parent.parent


def _pid_of_helper() -> int:
    process = sidecar._helper.process
    assert process is not None and process.poll() is None
    return process.pid


def _alive(pid: int) -> bool:
    """A running (not zombie) helper process with that pid."""
    return _pid_alive(pid, b"core.sidecar")


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(sidecar, "cores", lambda: 2)
    monkeypatch.setattr(sidecar, "MIN_ITEMS", 4)


def test_shared_work_equals_work_in_place_and_is_in_order(two_cores):
    """Real prefixes of real molecules, half of them described on the helper."""
    selfies = load_dataset().selfies.head(30).tolist()
    prefixes = [s[: len(s) * k // 4] for s in selfies for k in (1, 2, 3, 4)]
    names = ("logp", "tpsa")
    assert sidecar.share(describe_prefixes, prefixes, names) == describe_prefixes(prefixes, names)
    _pid_of_helper()  # it answered from a live helper process


def test_a_failing_helper_side_falls_back_to_work_in_place(two_cores, monkeypatch):
    """A function the helper cannot find by name: its half is computed here instead, and the
    helper is dropped (the next call starts another)."""

    def local(items, offset):  # not importable by name in the helper
        return [i * i + offset for i in items]

    local.__qualname__ = "no_such_function"
    assert sidecar.share(local, list(range(10)), 1) == [i * i + 1 for i in range(10)]
    assert sidecar._helper.process is None  # dropped after it failed; the next call restarts


def test_a_busy_helper_is_not_waited_for(two_cores, monkeypatch):
    """While another thread's batch holds the helper, a batch is computed in place at once."""
    sent = []
    monkeypatch.setattr(sidecar._helper, "send", lambda *a: sent.append(a) or False)
    assert sidecar._helper.lock.acquire()
    try:
        assert sidecar.share(list, range(8)) == list(range(8))
    finally:
        sidecar._helper.lock.release()
    assert not sent
    assert sidecar.share(list, range(8)) == list(range(8))
    assert len(sent) == 1  # once free, it is asked


def test_the_helper_ends_when_its_parent_is_killed(tmp_path):
    """A parent that shares work, then dies by SIGKILL (no clean-up runs): its helper reads
    end-of-file on its pipe and exits within seconds."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "import core.sidecar as s\n"
        "s.cores = lambda: 2\n"
        "s.MIN_ITEMS = 4\n"
        "assert s.share(list, range(10)) == list(range(10))\n"
        "print(s._helper.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    helper = int(parent.stdout.readline())
    assert _alive(helper)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while _alive(helper) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(helper)


def test_the_helper_never_runs_its_parents_main_module(tmp_path):
    """Under ``streamlit run`` an earlier pool re-ran app.py in its workers: the helper is
    started with ``-m core.sidecar`` and imports only what it is sent."""
    marker = tmp_path / "ran"
    script = tmp_path / "main.py"
    script.write_text(
        "import pathlib, sys\n"
        "import core.sidecar as s\n"
        f"pathlib.Path({str(marker)!r}).open('a').write('x')\n"
        "s.cores = lambda: 2\n"
        "s.MIN_ITEMS = 4\n"
        "assert s.share(list, range(6)) == list(range(6))\n"
        "assert s._helper.process is not None\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, str(script)], check=True, cwd=ROOT, env=env, timeout=60)
    assert marker.read_text() == "x"  # once: in the parent only
