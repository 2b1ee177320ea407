"""Background training runs: real tiny trainer processes started, watched and stopped."""

from __future__ import annotations

import time

import pytest

from core import runs
from core.checkpoint import load_checkpoint

TINY = {
    "limit": 300, "batch_size": 16, "d_model": 32, "n_layers": 1, "d_ff": 64,
    "enc_d_model": 16, "enc_d_ff": 32, "latent_dim": 4, "val_size": 50, "eval_every": 5,
    "log_every": 5,
}  # fmt: skip


def wait_for(predicate, timeout: float = 120.0, every: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s")


@pytest.fixture
def roots(tmp_path):
    return {"runs_root": tmp_path / "runs", "checkpoints_root": tmp_path / "checkpoints"}


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", "a b", ".hidden", "x" * 65, "-x"])
def test_unsafe_names_are_refused(name, roots):
    with pytest.raises(runs.RunError):
        runs.start(name, {"max_steps": 1}, **roots)
    with pytest.raises(runs.RunError):
        runs.status(name, runs_root=roots["runs_root"])


def test_command_checks_options(tmp_path):
    argv = runs.train_command("r", {"max_steps": 5, "lr": 0.001}, checkpoints_root=tmp_path)
    assert argv[:3] == ["nice", "-n", "10"]
    assert argv[-4:] == ["--max-steps", "5", "--lr", "0.001"]
    with pytest.raises(runs.RunError, match="unknown"):
        runs.train_command("r", {"rm_rf": 1})
    with pytest.raises(runs.RunError, match="unusable"):
        runs.train_command("r", {"data": "--overwrite"})
    with pytest.raises(runs.RunError):
        runs.train_command("r", {}, resume=True, overwrite=True)


def test_unknown_run_has_no_state(roots):
    status = runs.status("nothing-here", **roots)
    assert status.state == "none" and not status.running
    assert runs.stop("nothing-here", runs_root=roots["runs_root"]) is False


def test_run_trains_to_the_end_then_resumes(roots):
    status = runs.start("tiny", {**TINY, "max_steps": 5}, **roots)
    assert status.running and status.pid
    assert (roots["runs_root"] / "tiny" / "pid").read_text() == str(status.pid)
    with pytest.raises(runs.RunError, match="already running"):
        runs.start("tiny", {**TINY, "max_steps": 5}, **roots)
    done = wait_for(lambda: (s := runs.status("tiny", **roots)).state != "running" and s)
    assert done.state == "finished", done.log_tail
    assert done.step == 5 and done.total == 5
    assert done.checkpoint_step == 5
    assert done.last_metrics["step"] == 5
    assert load_checkpoint(roots["checkpoints_root"] / "tiny").args.d_model == 32

    with pytest.raises(runs.RunError, match="already holds a checkpoint"):
        runs.start("tiny", {"max_steps": 5}, **roots)
    runs.start("tiny", {"max_steps": 8}, resume=True, **roots)
    done = wait_for(lambda: (s := runs.status("tiny", **roots)).state != "running" and s)
    assert done.state == "finished", done.log_tail
    assert done.checkpoint_step == 8
    log = (roots["runs_root"] / "tiny" / "train.log").read_text()
    assert log.count(runs.START_MARK) == 2


def test_stop_leaves_a_loadable_checkpoint(roots):
    runs.start("long", {**TINY, "max_steps": 100_000, "log_every": 1}, **roots)
    wait_for(lambda: (runs.status("long", **roots).step or 0) >= 2)
    assert runs.stop("long", runs_root=roots["runs_root"]) is True
    done = wait_for(lambda: (s := runs.status("long", **roots)).state != "running" and s)
    assert done.state == "stopped", done.log_tail
    assert "checkpoint saved" in done.message
    assert 2 <= done.checkpoint_step < 100_000
    load_checkpoint(roots["checkpoints_root"] / "long")


def test_failed_run_reports_the_error(roots):
    runs.start("bad", {"data": "does-not-exist.parquet", "max_steps": 1}, **roots)
    done = wait_for(lambda: (s := runs.status("bad", **roots)).state != "running" and s)
    assert done.state == "failed"
    assert done.message.startswith("error:")


def test_list_runs_only_lists_runs_started_here(roots):
    for name in ("a", "b", "other"):
        (roots["runs_root"] / name).mkdir(parents=True)
    (roots["runs_root"] / "a" / "train.log").write_text("")
    (roots["runs_root"] / "b" / "pid").write_text("1")
    (roots["runs_root"] / "other" / "config.json").write_text("{}")  # someone's checkpoint
    (roots["runs_root"] / "loose.log").write_text("")
    assert runs.list_runs(roots["runs_root"]) == ["a", "b"]


def test_hostfile_makes_a_distributed_command(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text('[{"ssh": "a", "ips": ["10.0.0.1"]}, {"ssh": "b", "ips": ["10.0.0.2"]}]')
    argv = runs.train_command(
        "dist", {"max_steps": 5}, checkpoints_root=tmp_path, hostfile=hostfile
    )
    assert "mlx.launch" in argv[4] and argv[5:8] == ["--backend", "ring", "--hostfile"]
    assert argv[-1] == "--distributed" and "core.train" in argv
    hostfile.write_text('[{"ssh": "a"}]')
    with pytest.raises(runs.RunError, match="at least 2 hosts"):
        runs.train_command("dist", {}, checkpoints_root=tmp_path, hostfile=hostfile)
