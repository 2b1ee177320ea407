"""Many users at once on one loaded model.

Streamlit runs each browser tab's script in a thread of its own and shares the model through
``st.cache_resource``. Here one bundle, loaded once (as ``load_checkpoint`` leaves it: evaluated),
serves 12 fresh threads that start together on a barrier: batch generation, step-by-step
decoding as the Generate page does it, and attention maps. Each result must equal what the same
call gives when the calls run one after another.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.generate import generate, generate_step, make_sampler
from core.inspect import attention_maps, leak_check
from core.pool import POOL_SIZE, iterate_on_pool, on_pool, on_pool_thread

N_THREADS = 12
ROUNDS = 3


@pytest.fixture(scope="module")
def bundle(tiny_checkpoints):
    return load_checkpoint(tiny_checkpoints / "default")


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    table = load_dataset()
    return table.selfies[table.selfies.str.len() < 120].head(N_THREADS).tolist()


def together(jobs: list[Callable[[], object]], timeout: float = 300) -> list[object]:
    """Run each job in a new thread, all released at once; their results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(i: int, job: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 (reported below, with the thread's index)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, repr(errors[0])
    return results


def targets_of(i: int) -> dict[str, float | None]:
    return {"logp": [1.0, 2.0, 3.0, None][i % 4], "tpsa": [40.0, 60.0, 80.0][i % 3]}


def batch(bundle, i: int) -> list[str]:
    return generate(bundle, targets_of(i), 4, seed=i, temperature=1.0, top_k=[0, 5][i % 2])


def stepwise(bundle, i: int, n_steps: int = 12) -> list[tuple]:
    """Decode like the Generate page's Step button: one call per symbol, from the prefix."""
    sampler = make_sampler(temperature=1.0, top_k=10)
    symbols, seen = [], []
    for _ in range(n_steps):
        step = next(
            generate_step(
                bundle, targets_of(i), n=1, seed=100 + i, sampler=sampler,
                prefix="".join(symbols), max_tokens=1, report_top=10, return_attention=True,
            )
        )  # fmt: skip
        token = int(step.tokens[0])
        seen.append((token, step.top_ids[0].tolist(), step.top_probs[0], step.attention))
        if token == bundle.tokenizer.eos_id:
            break
        symbols.append(bundle.tokenizer.tokens[token])
    return seen


def test_threads_generating_at_once_give_the_sequential_molecules(bundle):
    expected = [batch(bundle, i) for i in range(N_THREADS)]
    assert len({tuple(m) for m in expected}) == N_THREADS  # different seeds, different output
    for _ in range(ROUNDS):
        got = together([lambda i=i: batch(bundle, i) for i in range(N_THREADS)])
        assert got == expected


def test_tracing_a_compiled_step_leaves_the_shared_decoder_weights_alone(
    tiny_checkpoints, monkeypatch
):
    """While a decoding step is traced, another thread may run the shared decoder: the trace
    must never swap placeholders into the weights that thread reads (MLX: "eval an array
    without a primitive")."""
    fresh = load_checkpoint(tiny_checkpoints / "default")  # no step traced for it yet

    def weights() -> list[int]:
        return [id(a) for _, a in tree_flatten(fresh.model.decoder.parameters())]

    before, during = weights(), []

    def spying_compile(fn, **kwargs):
        def traced(*args):  # runs while MLX traces fn
            during.append(weights())
            return fn(*args)

        return compile_(traced, **kwargs)

    compile_ = mx.compile
    monkeypatch.setattr(mx, "compile", spying_compile)
    first = generate(fresh, targets_of(0), 3, seed=1)
    assert during and all(seen == before for seen in during)
    monkeypatch.undo()
    assert generate(fresh, targets_of(0), 3, seed=1) == first  # the traced step, reused


def test_threads_stepping_at_once_give_the_sequential_steps(bundle):
    expected = [stepwise(bundle, i) for i in range(N_THREADS)]
    got = together([lambda i=i: stepwise(bundle, i) for i in range(N_THREADS)])
    for mine, theirs in zip(got, expected, strict=True):
        assert [s[:2] for s in mine] == [s[:2] for s in theirs]
        for (_, _, probs, attn), (_, _, want_probs, want_attn) in zip(mine, theirs, strict=True):
            assert np.array_equal(probs, want_probs)
            assert all(np.array_equal(a, b) for a, b in zip(attn, want_attn, strict=True))


def test_attention_maps_and_generation_mixed_across_threads(bundle, molecules):
    def maps(i: int):
        found = attention_maps(bundle, molecules[i], targets_of(i))
        return found.decoder + found.encoder + [found.z]

    def leak(i: int):
        report = leak_check(bundle, molecules[i], 2, targets_of(i))
        return report.row_delta, report.max_before

    jobs: list[Callable[[], object]] = []
    for i in range(N_THREADS):
        jobs.append([lambda i=i: maps(i), lambda i=i: batch(bundle, i), lambda i=i: leak(i)][i % 3])
    expected = [job() for job in jobs]
    for _ in range(ROUNDS):
        got = together(jobs)
        for i, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            if i % 3 == 0:
                assert all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))
            elif i % 3 == 1:
                assert mine == theirs
            else:
                assert np.array_equal(mine[0], theirs[0]) and mine[1] == theirs[1]


def os_threads() -> int:
    """Threads of this process, as the kernel counts them (MLX's own included)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


@pytest.mark.skipif(sys.platform != "linux", reason="counts threads in /proc")
@pytest.mark.xfail(
    strict=True,
    reason="MLX 0.32 keeps a stream and its scheduler thread for every Python thread that "
    "evaluates; Streamlit runs each script run in a new thread: why core.pool exists",
)
def test_short_lived_threads_calling_mlx_directly_leave_threads_behind(bundle):
    """What a server would see without core.pool: every click a thread that then ends."""
    before = os_threads()
    for i in range(20):
        thread = threading.Thread(target=batch, args=(bundle, i))
        thread.start()
        thread.join()
    assert os_threads() - before < 5


@pytest.mark.skipif(sys.platform != "linux", reason="counts threads in /proc")
def test_short_lived_threads_going_through_the_pool_leave_no_threads_behind(bundle):
    """The dashboard's way: each script-run thread hands its model call to core.pool."""
    on_pool(batch, bundle, 0)  # the pool's threads and their streams exist from here on
    for _ in range(2):  # POOL_SIZE calls at once: every pool thread is started
        together([lambda i=i: on_pool(batch, bundle, i) for i in range(POOL_SIZE)])
    before = os_threads()
    results = []
    for i in range(30):
        thread = threading.Thread(target=lambda i=i: results.append(on_pool(batch, bundle, i)))
        thread.start()
        thread.join()
    assert os_threads() - before <= 1
    assert results == [batch(bundle, i) for i in range(30)]


def test_pool_iterates_a_generator_like_a_direct_loop(bundle):
    def steps():
        return generate_step(bundle, targets_of(1), n=3, seed=5, report_top=2)

    direct = [(s.tokens.tolist(), s.top_ids.tolist()) for s in steps()]
    pooled = [(s.tokens.tolist(), s.top_ids.tolist()) for s in iterate_on_pool(steps)]
    assert pooled == direct
    first = next(iter_ := iterate_on_pool(steps))
    iter_.close()
    assert first.tokens.tolist() == direct[0][0]


def test_pool_iterates_on_one_thread_and_closes_there():
    seen, closed = [], threading.Event()

    def numbers():
        try:
            for i in range(100):
                seen.append(threading.current_thread().name)
                yield i
                if i == 3:
                    raise ValueError("four")
        finally:
            closed.set()

    early = iterate_on_pool(numbers)
    assert [next(early), next(early)] == [0, 1]
    early.close()  # the caller stops early: the generator is closed on its pool thread
    assert closed.wait(10)
    assert len(set(seen)) == 1 and seen[0].startswith("molscope-mlx")
    closed.clear()
    with pytest.raises(ValueError, match="four"):
        list(iterate_on_pool(numbers))
    assert closed.wait(10)


def test_pool_iteration_reports_an_iterator_that_cannot_be_made():
    def broken():
        raise KeyError("no such model")

    with pytest.raises(KeyError, match="no such model"):
        next(iterate_on_pool(broken))  # an error, not a caller waiting forever


def test_pool_passes_errors_back_and_allows_nested_calls():
    with pytest.raises(ZeroDivisionError):
        on_pool(lambda: 1 / 0)
    assert on_pool(lambda: on_pool(lambda: on_pool_thread())) is True
    assert not on_pool_thread()
