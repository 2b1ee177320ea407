"""Closed-loop batches two at a time (``core.pairs``): the two calls of a pair run at once,
results come back in order, an error on the pair thread reaches the caller, ``generate`` gives
the molecules of one batch after another, OpenBLAS runs on one thread meanwhile, a process
whose pair thread evaluated MLX arrays exits cleanly, and pairs add no OS threads.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import core.pairs as pairs
from core.checkpoint import load_checkpoint
from core.generate import generate
from core.pairs import in_pairs
from core.sidecar import cores

ROOT = Path(__file__).resolve().parent.parent


def test_the_two_calls_of_a_pair_run_at_once_and_come_back_in_order(monkeypatch):
    monkeypatch.setattr(pairs, "cores", lambda: 2)
    meet = threading.Barrier(2, timeout=20)  # raises in both calls unless they overlap
    seen = []

    def square(x: int) -> int:
        if x < 4:  # (0, 1) and (2, 3) are pairs; 4 runs alone
            meet.wait()
        return x * x

    assert in_pairs(square, range(5), seen.append) == [0, 1, 4, 9, 16]
    assert seen == [0, 1, 4, 9, 16]


def test_one_core_runs_the_calls_in_turn_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(pairs, "cores", lambda: 1)
    threads = in_pairs(lambda _: threading.get_ident(), range(4))
    assert set(threads) == {threading.get_ident()}


def test_an_error_on_the_pair_thread_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(pairs, "cores", lambda: 2)

    def batch(x: int) -> int:
        if x == 1:
            raise ValueError("batch 1 failed")
        return x

    with pytest.raises(ValueError, match="batch 1 failed"):
        in_pairs(batch, [0, 1])


def test_generate_gives_the_molecules_of_one_batch_after_another(
    tiny_feedback_checkpoints, monkeypatch
):
    bundle = load_checkpoint(tiny_feedback_checkpoints / "default")
    targets = {bundle.properties[0]: 2.0}
    monkeypatch.setattr(pairs, "cores", lambda: 2)
    together = generate(bundle, targets, 20, seed=3, batch_size=8)
    monkeypatch.setattr(pairs, "cores", lambda: 1)
    in_turn = generate(bundle, targets, 20, seed=3, batch_size=8)
    assert together == in_turn
    # each batch is seeded by its first row, whatever ran beside it
    assert together[8:16] == generate(bundle, targets, 8, seed=11, batch_size=8)
    assert len(set(together)) > 1


BLAS_SCRIPT = """
import core.blas as blas
if blas.blas_threads() is None:
    print("not loaded")
else:
    blas._openblas.openblas_set_num_threads(2)
    seen = []
    with blas.one_blas_thread():
        with blas.one_blas_thread():  # a second user (the other thread of a pair)
            seen.append(blas.blas_threads())
        seen.append(blas.blas_threads())  # one user still inside
    seen.append(blas.blas_threads())
    print(seen)
"""


def test_openblas_runs_one_thread_inside_and_the_count_from_before_after():
    """In a process of its own: the suite's runs on the reference BLAS (pyproject.toml)."""
    run = subprocess.run(
        [sys.executable, "-c", BLAS_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if run.stdout.strip() == "not loaded":
        pytest.skip("OpenBLAS is not loaded here (macOS, or MOLSCOPE_BLAS=reference)")
    assert run.stdout.strip() == "[1, 1, 2]", run.stderr[-500:]


SCRIPT = """
import core
import mlx.core as mx
from core.pairs import in_pairs
def product(_):  # draws from MLX's global key: an array made here outlives the call
    x = mx.random.normal((64, 64))
    return float(mx.maximum(x @ x, 0).sum())
print(len(in_pairs(product, [0, 1, 2, 3])))
"""


@pytest.mark.skipif(cores() < 2, reason="one core: no pair thread")
def test_a_process_whose_pair_thread_ran_mlx_exits_cleanly():
    """The pair thread is a daemon: with a thread of its own per pair (ended, then torn down as
    the interpreter finalized) this process aborted as it exited ("terminate called without an
    active exception", exit 134) in 3 runs of 6 here."""
    for _ in range(6):
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert (run.returncode, run.stdout.strip()) == (0, "4"), run.stderr[-500:]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts Linux threads")
def test_pairs_do_not_add_an_os_thread_each(monkeypatch):
    """MLX keeps an OS thread for every thread that evaluated arrays, even once it has ended:
    a new thread per pair left one more each time (50 pairs: 2 -> 53 threads)."""
    import mlx.core as mx

    monkeypatch.setattr(pairs, "cores", lambda: 2)

    def product(seed: int) -> float:
        x = mx.random.normal((32, 32), key=mx.random.key(seed))
        return float((x @ x).sum())

    def threads() -> int:
        return len(list(Path("/proc/self/task").iterdir()))

    in_pairs(product, [0, 1])  # the pair thread and its MLX stream exist from here on
    before = threads()
    for i in range(20):
        in_pairs(product, [i, i + 1])
    assert threads() <= before + 1


STEP_SCRIPT = """
import core.blas as blas
from core.checkpoint import load_checkpoint
from core.generate import generate_step
from core.sidecar import MIN_ITEMS
if blas.blas_threads() is None:
    print("not loaded")
else:
    blas._openblas.openblas_set_num_threads(2)
    bundle = load_checkpoint("checkpoints/default")
    seen = []
    for n in (MIN_ITEMS, 2):  # a batch that shares its RDKit work, and one too small to
        steps = generate_step(bundle, {"logp": 2.0}, n=n, seed=0, report_top=1)
        next(steps)
        seen.append(blas.blas_threads())
        steps.close()
        seen.append(blas.blas_threads())
    print(seen)
"""


def test_a_large_closed_loop_batch_runs_openblas_on_one_thread():
    """While a closed-loop batch shares its RDKit work with the sidecar, both cores are busy
    between steps: OpenBLAS's second thread would only spin (one batch of 1,000: 49 -> 57
    molecules/s without it, bench.closed_loop_speed)."""
    run = subprocess.run(
        [sys.executable, "-c", STEP_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if run.stdout.strip() == "not loaded":
        pytest.skip("OpenBLAS is not loaded here (macOS, or MOLSCOPE_BLAS=reference)")
    assert run.stdout.strip().splitlines()[-1] == "[1, 2, 2, 2]", run.stderr[-500:]
