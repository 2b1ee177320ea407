"""Data-parallel training: 2 ranks on 127.0.0.1 (ring backend, started by mlx.launch) follow
the one-process loss curve; resuming changes the number of ranks; a signal to one rank stops
them all at the same step with a checkpoint; MPI where OpenMPI is installed.

Tolerance: the per-step training loss (the global per-token mean, same formula as one process)
agrees to rel 1e-4. The ranks sum their parts in a different order than one process does, so
float32 rounding differs (about 1e-6 relative is typical); 1e-4 over 6 steps leaves room for
that to grow through the optimiser without hiding a real mismatch (a missing or doubled shard
changes the loss by percents).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import TINY

from core.checkpoint import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = Path(sys.executable).parent / "mlx.launch"
STEPS = ["--max-steps", "6", "--total-steps", "6"]
REL = 1e-4


def free_port_pair() -> int:
    """A port p with p and p + 1 free (the ring listens on one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


def launch_command(n: int, *args: str) -> list[str]:
    return [
        str(LAUNCH), "--backend", "ring", "-n", str(n), "-p", str(free_port_pair()), "--",
        sys.executable, "-m", "core.train", "--distributed", *args,
    ]  # fmt: skip


def run(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def check_ranks_ok(result: subprocess.CompletedProcess) -> None:
    """mlx.launch exits 0 even when a rank fails; it reports failures as warnings."""
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exited with code" not in result.stderr, result.stderr[-2000:]
    assert "error:" not in result.stderr, result.stderr[-2000:]


def train_rows(folder: Path) -> list[dict]:
    return [r for r in read_metrics(folder) if r["split"] == "train"]


def assert_same_curve(got: Path, want: Path, steps: range) -> None:
    a = {r["step"]: r for r in train_rows(want)}
    b = {r["step"]: r for r in train_rows(got)}
    assert sorted(b) == list(steps)  # rank 0 alone logs: every step exactly once
    for step in steps:
        for key in ("loss", "recon", "kl", "grad_norm"):
            assert b[step][key] == pytest.approx(a[step][key], rel=REL, abs=1e-6), (step, key)
        assert b[step]["tokens"] == a[step]["tokens"], step  # the same global batches


@pytest.fixture(scope="module")
def ring():
    """Skip the module when mlx.launch cannot start a 2-process ring on this machine."""
    if not LAUNCH.exists():
        pytest.skip(f"mlx.launch not found next to {sys.executable}")
    probe = (
        "import mlx.core as mx; g = mx.distributed.init(strict=True, backend='ring'); "
        "print('sum', mx.distributed.all_sum(mx.ones(1)).item())"
    )
    argv = [str(LAUNCH), "--backend", "ring", "-n", "2", "-p", str(free_port_pair()), "--"]
    try:
        result = run([*argv, sys.executable, "-c", probe], timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("mlx.launch --backend ring -n 2 did not finish in 60 s on this machine")
    if result.stdout.count("sum 2.0") != 2:
        pytest.skip(f"mlx.launch cannot start a ring here: {result.stderr.strip()[-300:]}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, 6 steps."""
    out = tmp_path_factory.mktemp("one") / "ck"
    result = run([sys.executable, "-m", "core.train", "--out", str(out), *STEPS, *TINY])
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_two_ranks_follow_the_one_process_loss_curve(ring, reference, tmp_path):
    out = tmp_path / "ck"
    started = time.perf_counter()
    result = run(launch_command(2, "--out", str(out), *STEPS, *TINY))
    check_ranks_ok(result)
    print(f"2 ranks, 6 steps: {time.perf_counter() - started:.1f} s")
    assert_same_curve(out, reference, range(1, 7))
    assert json.loads((out / "state.json").read_text())["world_size"] == 2
    assert result.stderr.count("checkpoint: ") == 1  # only rank 0 reports
    load_checkpoint(out)


def test_resume_with_another_number_of_ranks(ring, reference, tmp_path):
    out = tmp_path / "ck"
    check_ranks_ok(run(launch_command(2, "--out", str(out), "--max-steps", "3", *STEPS[2:], *TINY)))
    assert json.loads((out / "state.json").read_text())["step"] == 3
    resumed = run(
        [sys.executable, "-m", "core.train", "--out", str(out), "--resume", *STEPS, *TINY]
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_curve(out, reference, range(1, 7))
    assert json.loads((out / "state.json").read_text())["world_size"] == 1


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of rank ``rank`` among the children of mlx.launch (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"MLX_RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks through /proc")
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(ring, tmp_path):
    out = tmp_path / "ck"
    argv = launch_command(2, "--out", str(out), "--max-steps", "100000", *TINY)
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if (out / "metrics.jsonl").exists() and len(train_rows(out)) >= 2:
                break
            time.sleep(0.5)
        rank1 = _rank_pid(proc.pid, 1)
        assert rank1 is not None, "rank 1 not found"
        os.kill(rank1, signal.SIGTERM)  # rank 0 gets no signal: it must learn from rank 1
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "checkpoint saved at step" in err and "exited with code" not in err, err[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == max(r["step"] for r in train_rows(out)) >= 2
    assert state["world_size"] == 2
    load_checkpoint(out)


def test_distributed_without_a_launcher_is_a_one_line_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLX_")}
    result = subprocess.run(
        [sys.executable, "-m", "core.train", "--distributed", "--out", str(tmp_path / "ck"),
         "--max-steps", "1", *TINY],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "mlx.launch" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="OpenMPI (mpirun) is not installed")
def test_mpi_backend_follows_the_one_process_loss_curve(reference, tmp_path):
    # mpirun directly: mlx.launch --backend mpi passes `--output :raw`, which only OpenMPI 5 has
    out = tmp_path / "ck"
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    argv = [
        "mpirun", *root, "--oversubscribe", "-np", "2", sys.executable, "-m", "core.train",
        "--distributed", "--backend", "mpi", "--out", str(out), *STEPS, *TINY,
    ]  # fmt: skip
    result = run(argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_curve(out, reference, range(1, 7))
    assert json.loads((out / "state.json").read_text())["world_size"] == 2
