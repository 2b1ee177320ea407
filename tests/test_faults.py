"""Faults injected for real, and what must survive them.

A tiny ``python -m core.train`` is killed with SIGKILL at random moments, inside a checkpoint
write and between the two renames that swap a checkpoint in; it is stopped with SIGTERM; it
meets a non-finite loss and a full disk. After each fault the newest complete checkpoint loads,
``--resume`` goes on and ends with the same loss curve as an uninterrupted run, and
``metrics.jsonl`` has no broken line. Corrupt checkpoints picked in the dashboard give an
``st.error`` naming the file and the problem while everything else keeps working.

The random kill moments come from ``MOLSCOPE_FAULT_SEED`` (default: a fresh seed, printed).
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from browser_util import app_test
from mlx.utils import tree_flatten
from tiny import tiny_bundle

from core.checkpoint import (
    CONFIG,
    STATE,
    WEIGHTS,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_metrics,
    resolve,
    save_checkpoint,
)
from core.model import Model, ModelArgs

ROOT = Path(__file__).resolve().parent.parent
STEPS = 24
TINY = [
    "--limit", "400", "--val-size", "40", "--batch-size", "16", "--d-model", "32",
    "--n-heads", "2", "--n-layers", "1", "--d-ff", "64", "--enc-d-model", "16",
    "--enc-heads", "2", "--enc-layers", "1", "--enc-d-ff", "32", "--latent-dim", "4",
    "--log-every", "1", "--eval-every", "5", "--warmup", "2", "--kl-anneal", "5",
    "--max-steps", str(STEPS), "--total-steps", str(STEPS),
]  # fmt: skip
OFTEN = ["--save-every", "0"]  # a checkpoint after every step, however fast the machine

# Runs core.train with os.rename stalled right after the Nth rename of a checkpoint to
# NAME.old-PID: the trainer sits between the two renames of the swap until it is killed.
STALL_BETWEEN_RENAMES = """
import os, runpy, sys, time
rename, count = os.rename, 0
def rename_then_stall(src, dst):
    global count
    rename(src, dst)
    if ".old-" in os.fspath(dst):
        count += 1
        if count == int(os.environ["MOLSCOPE_STALL_AT"]):
            time.sleep(600)
os.rename = rename_then_stall
runpy.run_module("core.train", run_name="__main__")
"""


# ---------------------------------------------------------------- helpers


def start(out: Path, *extra: str, resume: bool = False, stall_at: int = 0) -> subprocess.Popen:
    """A trainer in the background; its output goes to ``out``'s sibling ``train.log``."""
    code = ["-c", STALL_BETWEEN_RENAMES] if stall_at else ["-m", "core.train"]
    argv = [sys.executable, *code, "--out", str(out), *TINY, *extra]
    env = dict(os.environ, MOLSCOPE_STALL_AT=str(stall_at))
    log = open(out.parent / "train.log", "ab")  # noqa: SIM115 (closed by the child's exit)
    if resume:
        argv.append("--resume")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def log_text(out: Path) -> str:
    return (out.parent / "train.log").read_text(errors="replace")


def wait_until(predicate, proc: subprocess.Popen, timeout: float = 120.0, every: float = 0.05):
    """Poll ``predicate`` until truthy; None if ``proc`` exits first. Fails on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            return None
        time.sleep(every)
    proc.kill()
    pytest.fail(f"timed out after {timeout} s")


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def saved_step(out: Path) -> int | None:
    """Step of the checkpoint that loading ``out`` picks (None when there is none)."""
    try:
        return int(json.loads((resolve(out) / STATE).read_text())["step"])
    except (CheckpointError, OSError, ValueError, KeyError):
        return None


def logged_step(out: Path) -> int:
    """The last training step in ``metrics.jsonl`` (0 without one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return max((r["step"] for r in read_metrics(out) if r["split"] == "train"), default=0)


def losses(out: Path) -> dict[int, float]:
    rows = [r for r in read_metrics(out) if r["split"] == "train"]
    steps = [r["step"] for r in rows]
    assert len(steps) == len(set(steps)), f"a step was logged twice: {steps}"
    return {r["step"]: r["loss"] for r in rows}


def assert_intact(out: Path, at_least: int = 0) -> int:
    """After a crash: the newest complete checkpoint loads with finite weights and its step
    never goes back; every line of metrics.jsonl parses (the last may be torn). Its step."""
    step = saved_step(out)
    assert step is not None and step >= at_least, (step, at_least, log_text(out)[-2000:])
    bundle = load_checkpoint(out)
    for name, value in tree_flatten(bundle.model.parameters()):
        assert bool(mx.all(mx.isfinite(value)).item()), name
    metrics = resolve(out) / "metrics.jsonl"
    if not metrics.exists():  # the fallback copy is in an .old-/.tmp- folder
        metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    for line in lines[:-1]:
        json.loads(line)
    return step


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f"{out.name}.*-*"))


def finish_and_compare(out: Path, reference: Path) -> None:
    """Resume to the end; the loss curve must equal the uninterrupted run's, step for step."""
    proc = start(out, resume=True)
    assert proc.wait(timeout=240) == 0, log_text(out)[-3000:]
    assert saved_step(out) == STEPS
    got, want = losses(out), losses(reference)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in got:
        assert got[step] == pytest.approx(want[step], rel=1e-4, abs=1e-5), step
    assert leftovers(out) == [], "crash leftovers were not cleaned up"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of STEPS steps."""
    out = tmp_path_factory.mktemp("reference") / "ck"
    proc = start(out)
    assert proc.wait(timeout=240) == 0, log_text(out)[-3000:]
    return out


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("MOLSCOPE_FAULT_SEED", random.randrange(2**32)))
    print(f"MOLSCOPE_FAULT_SEED={seed}")  # shown by pytest when the test fails
    return random.Random(seed)


# ---------------------------------------------------------------- kill -9 and signals


def test_kill9_at_random_moments_loses_nothing(reference, tmp_path, rng):
    out = tmp_path / "ck"
    proc = start(out, *OFTEN)
    wait_until(lambda: saved_step(out), proc)  # before this there is nothing to keep
    time.sleep(rng.uniform(0.0, 1.0))
    kill9(proc)
    step = assert_intact(out)
    for _ in range(3):
        proc = start(out, *OFTEN, resume=True)
        # wait until the resumed run trains again, then pick a moment
        if wait_until(lambda s=step: logged_step(out) > s, proc) is None:
            break  # it reached the end before the kill
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        kill9(proc)
        step = assert_intact(out, at_least=step)
    proc.wait(timeout=240)
    finish_and_compare(out, reference)


def test_kill9_inside_a_checkpoint_write(reference, tmp_path):
    out = tmp_path / "ck"
    caught = None
    for attempt in range(5):  # the write takes milliseconds: the poll may miss it
        proc = start(out, *OFTEN, resume=attempt > 0)
        found = wait_until(lambda: list(tmp_path.glob("ck.tmp-*")), proc, every=0.001)
        if found is None:
            break
        kill9(proc)
        if any(p.name == f"ck.tmp-{proc.pid}" for p in tmp_path.glob("ck.tmp-*")):
            caught = proc.pid  # it died with the new checkpoint half written
            break
        if saved_step(out) is None:
            shutil.rmtree(out)  # killed before its first checkpoint: start afresh
    assert caught, "never killed the trainer while a checkpoint was being written"
    if saved_step(out) is not None:
        assert_intact(out)
    else:  # killed in the very first write: there is no checkpoint, and loading says so
        with pytest.raises(CheckpointError, match="config.json is missing"):
            load_checkpoint(out)
        shutil.rmtree(out)
        proc = start(out, *OFTEN)
        wait_until(lambda: saved_step(out), proc)
        kill9(proc)
    finish_and_compare(out, reference)


def test_kill9_between_the_renames_of_a_checkpoint_swap(reference, tmp_path):
    out = tmp_path / "ck"
    proc = start(out, *OFTEN, stall_at=2)  # the first swap replaces a folder of metrics only
    old = wait_until(lambda: list(tmp_path.glob("ck.old-*")) if not out.exists() else None, proc)
    assert old, log_text(out)[-2000:]
    time.sleep(0.2)
    kill9(proc)
    new = tmp_path / f"ck.tmp-{proc.pid}"
    assert not out.exists() and (old[0] / CONFIG).exists() and (new / CONFIG).exists()
    older = json.loads((old[0] / STATE).read_text())["step"]
    newer = json.loads((new / STATE).read_text())["step"]
    assert newer > older
    assert load_checkpoint(out).path == new  # the newest complete checkpoint
    assert assert_intact(out) == newer
    assert list_checkpoints(tmp_path) == {"ck": None}  # the dashboard still offers it
    finish_and_compare(out, reference)


def test_sigterm_saves_the_current_step_and_resume_gives_the_same_curve(reference, tmp_path):
    out = tmp_path / "ck"
    proc = start(out)  # default --save-every: the only checkpoint is the one SIGTERM writes
    wait_until(lambda: logged_step(out) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log_text(out)[-2000:]
    step = saved_step(out)
    assert f"interrupted: checkpoint saved at step {step}" in log_text(out)
    assert step == logged_step(out) and 3 <= step < STEPS
    finish_and_compare(out, reference)


def test_non_finite_loss_stops_and_no_nan_reaches_a_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "ck"
    monkeypatch.setenv("MOLSCOPE_FAULT_NAN_AT_STEP", "6")
    proc = start(out, "--save-every", "0")  # a checkpoint after every step
    assert proc.wait(timeout=240) == 1
    text = log_text(out)
    assert "error: non-finite loss at step 6" in text and "Traceback" not in text
    assert assert_intact(out) == 5
    rows = read_metrics(out)
    assert max(r["step"] for r in rows) == 5
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))


def test_torn_metrics_line_is_skipped_with_a_warning_and_resume_repairs_it(reference, tmp_path):
    out = tmp_path / "ck"
    proc = start(out, *OFTEN)
    wait_until(lambda: saved_step(out), proc)
    kill9(proc)
    metrics = out / "metrics.jsonl"
    good = len(metrics.read_text().splitlines())
    # a disk that fills up in the middle of an append: the kernel writes part of the line
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (metrics.stat().st_size + 25, hard))
    try:
        with pytest.raises(OSError) as info, open(metrics, "a") as fh:
            fh.write(json.dumps({"step": 999, "split": "train", "loss": 1.0, "pad": "x" * 99}))
            fh.write("\n")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.errno == errno.EFBIG
    with pytest.warns(UserWarning, match="metrics.jsonl: skipped 1 unreadable line"):
        rows = read_metrics(out)
    assert len(rows) == good and 999 not in [r["step"] for r in rows]
    finish_and_compare(out, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_metrics(out)  # resuming rewrote the file: no torn line left


# ---------------------------------------------------------------- disk errors


def _logits(bundle) -> np.ndarray:
    ids = mx.array([[4, 5, 6, 2]])
    valid = mx.ones((1, 4), dtype=mx.bool_)
    props, present = mx.array([[0.3, -0.2]]), mx.ones((1, 2))
    return np.array(bundle.model(ids, valid, props, present, mx.zeros((1, 4)), 1)[0])


def _assert_previous_intact(folder: Path, bundle) -> None:
    loaded = load_checkpoint(folder)
    assert loaded.path == folder
    assert np.array_equal(_logits(loaded), _logits(bundle))
    assert json.loads((folder / STATE).read_text())["step"] == 1
    assert leftovers(folder) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB tmpfs (needs mount privileges; skipped without them)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no privileges)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(small_disk):
    first = tiny_bundle(seed=0)
    save_checkpoint(small_disk / "ck", first, state={"step": 1})
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 20_000))  # room for a few kB only
    with pytest.raises(CheckpointError, match="could not write checkpoint .*ck"):
        save_checkpoint(small_disk / "ck", tiny_bundle(seed=1), state={"step": 2})
    _assert_previous_intact(small_disk / "ck", first)


def test_read_only_filesystem_gives_a_clear_error_and_keeps_the_previous_checkpoint(small_disk):
    """As root, chmod does not stop a write; a file system mounted read-only does."""
    first = tiny_bundle(seed=0)
    save_checkpoint(small_disk / "ck", first, state={"step": 1})
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(CheckpointError, match="could not write checkpoint .*Read-only file system"):
        save_checkpoint(small_disk / "ck", tiny_bundle(seed=1), state={"step": 2})
    _assert_previous_intact(small_disk / "ck", first)


def test_file_size_limit_gives_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path):
    first = tiny_bundle(seed=0)
    save_checkpoint(tmp_path / "ck", first, state={"step": 1})
    limit = (tmp_path / "ck" / WEIGHTS).stat().st_size // 2
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(CheckpointError, match="could not write checkpoint"):
            save_checkpoint(tmp_path / "ck", tiny_bundle(seed=1), state={"step": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    _assert_previous_intact(tmp_path / "ck", first)


def test_target_whose_parent_is_a_file_gives_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        save_checkpoint(tmp_path / "file" / "ck", tiny_bundle())


def test_stale_old_folder_of_a_reused_pid_does_not_block_saving(tmp_path):
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle, state={"step": 1})
    stale = tmp_path / f"ck.old-{os.getpid()}"  # left by a crashed process with our pid
    shutil.copytree(tmp_path / "ck", stale)
    save_checkpoint(tmp_path / "ck", bundle, state={"step": 2})
    assert json.loads((tmp_path / "ck" / STATE).read_text())["step"] == 2
    assert leftovers(tmp_path / "ck") == []


def test_leftover_of_a_pid_now_held_by_a_younger_process_is_removed(tmp_path):
    """Pids come round again: a finished leftover named after a pid that a process started
    since holds is not that process's save in progress, and goes; one named after a process
    that was already running when it was written stays (that process may be saving)."""
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle, state={"step": 1})
    hour_ago = time.time() - 3600
    younger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        reused = tmp_path / f"ck.old-{younger.pid}"
        writer = tmp_path / f"ck.old-{os.getppid()}"  # the parent ran before the folder
        for folder in (reused, writer):
            shutil.copytree(tmp_path / "ck", folder)
        os.utime(reused, (hour_ago, hour_ago))  # written an hour before the process started
        save_checkpoint(tmp_path / "ck", bundle, state={"step": 2})
        assert leftovers(tmp_path / "ck") == [writer.name]
    finally:
        younger.kill()
        younger.wait()


def test_trainer_on_a_full_disk_ends_in_one_line(tmp_path):
    """The first checkpoint does not fit (file size limit below the optimizer state)."""
    out = tmp_path / "ck"

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", "core.train", "--out", str(out), *TINY, "--max-steps", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, preexec_fn=limit_file_size,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not write checkpoint") and str(out) in last
    assert not (out / CONFIG).exists() and leftovers(out) == []


# ---------------------------------------------------------------- the dashboard


def _weights_of_another_shape(folder: Path) -> None:
    args = ModelArgs.from_dict(json.loads((folder / CONFIG).read_text())["model"])
    args.d_model, args.d_ff = 48, 96
    other = Model(args)
    mx.eval(other.parameters())
    other.save_weights(str(folder / WEIGHTS))


def _shorter_vocabulary(folder: Path) -> None:
    config = json.loads((folder / CONFIG).read_text())
    config["tokenizer"]["tokens"] = config["tokenizer"]["tokens"][:-3]
    (folder / CONFIG).write_text(json.dumps(config))


DAMAGES = {  # what is done to a copy of the tiny checkpoint -> words the error must hold
    "truncated weights": (
        lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:-100]),
        "model.safetensors is truncated",
    ),
    "garbage weights": (
        lambda d: (d / WEIGHTS).write_bytes(os.urandom(4096)),
        "model.safetensors is not a safetensors file",
    ),
    "config without fields": (
        lambda d: (d / CONFIG).write_text('{"model": {}}'),
        "config.json lacks 'model', 'tokenizer' or 'properties'",
    ),
    "weights of another shape": (_weights_of_another_shape, "model.safetensors does not fit"),
    "vocabulary mismatch": (_shorter_vocabulary, "config.json: vocabulary or properties"),
}


@pytest.fixture
def dashboard(tiny_checkpoints, tmp_path, monkeypatch, fresh_app):
    """A checkpoints folder with the tiny ``default`` (and a crash's leftovers beside it)."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "default", root / "default")
    shutil.copytree(tiny_checkpoints / "default", root / "default.tmp-99999")
    (root / "default.tmp-99999" / CONFIG).unlink()  # a write that was cut short
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(root))
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    return root


def page_errors(at) -> str:
    return "\n".join(
        [e.value for e in at.error] + [c.value for c in at.sidebar.caption if "/" in c.value]
    )


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_corrupt_checkpoint_in_the_dashboard_names_the_file(dashboard, damage):
    spoil, words = DAMAGES[damage]
    shutil.copytree(dashboard / "default", dashboard / "broken")
    spoil(dashboard / "broken")
    at = app_test()
    at.query_params["checkpoint"] = "broken"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="checkpoint").options[0] in ("broken", "broken (broken)")
    assert "default.tmp-99999" not in str(at.sidebar.selectbox(key="checkpoint").options)
    at.switch_page("pages/generate.py").run()
    assert not at.exception
    assert words in page_errors(at), page_errors(at)
    for page in ("pages/attention.py", "pages/evaluate.py", "pages/training.py"):
        at.switch_page(page).run()
        assert not at.exception, page
    at.sidebar.selectbox(key="checkpoint").select("default").run()
    at.switch_page("pages/generate.py").run()
    assert not at.exception and not at.error
    at.button(key="gen_step").click().run()
    assert not at.exception and at.session_state.gen_run.chosen


def test_checkpoint_caught_between_renames_still_opens_in_the_dashboard(dashboard):
    (dashboard / "default").rename(dashboard / "default.old-4242")
    at = app_test().run()
    assert not at.exception
    assert at.sidebar.selectbox(key="checkpoint").options == ["default"]
    at.switch_page("pages/generate.py").run()
    assert not at.exception and not at.error
