"""Training: a short run writes a loadable checkpoint; SIGINT checkpoints and --resume goes on
from the saved step with the same batches; a non-finite loss never reaches a checkpoint."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import selfies as sf

from core.checkpoint import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--limit", "400", "--val-size", "40", "--batch-size", "16", "--d-model", "32",
    "--n-heads", "2", "--n-layers", "1", "--d-ff", "64", "--enc-d-model", "16",
    "--enc-heads", "2", "--enc-layers", "1", "--enc-d-ff", "32", "--latent-dim", "4",
    "--log-every", "1", "--eval-every", "5", "--warmup", "2", "--kl-anneal", "5",
]  # fmt: skip


def train(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.train", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def losses(folder: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(folder) if r["split"] == "train"}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 12-step run."""
    out = tmp_path_factory.mktemp("ref") / "ck"
    result = train("--out", str(out), "--max-steps", "12", "--total-steps", "12", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_short_run_writes_checkpoint_and_metrics(reference_run):
    bundle = load_checkpoint(reference_run)
    state = json.loads((reference_run / "state.json").read_text())
    assert state["step"] == 12 and state["world_size"] == 1
    rows = read_metrics(reference_run)
    assert {r["split"] for r in rows} == {"train", "val"}
    assert all(math.isfinite(r["loss"]) for r in rows if r["split"] == "train")
    assert bundle.meta["data"]["n_train"] == 400
    # generation ends molecules where the training SELFIES ended (Bundle.token_limit)
    longest = max(sf.len_selfies(s) for s in _train_rows(bundle)["selfies"])
    assert bundle.meta["longest_trained"] == longest < bundle.args.max_len
    assert bundle.token_limit == longest + 1


def _train_rows(bundle):
    """The training split a checkpoint of the default data with ``--limit 400`` read."""
    from core.trainset import load_table, training_rows

    path = bundle.meta["data"]["path"]
    return training_rows(load_table(path), bundle.properties, path, 400, 40)[0]


def test_resume_continues_with_the_same_loss_curve(reference_run, tmp_path):
    out = tmp_path / "ck"
    first = train("--out", str(out), "--max-steps", "6", "--total-steps", "12", *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    second = train("--out", str(out), "--resume", "--max-steps", "12", *TINY)
    assert second.returncode == 0, second.stderr[-2000:]
    a, b = losses(reference_run), losses(out)
    assert sorted(b) == list(range(1, 13))
    for step in range(1, 13):
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), step


def test_sigint_saves_a_loadable_checkpoint_and_resume_goes_on(tmp_path):
    out = tmp_path / "ck"
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.train", "--out", str(out), "--max-steps", "100000",
         "--total-steps", "100000", *TINY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").exists() and len(losses(out)) >= 3:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "checkpoint saved" in err
    step = json.loads((out / "state.json").read_text())["step"]
    assert step >= 3
    load_checkpoint(out)
    resumed = train("--out", str(out), "--resume", "--max-steps", str(step + 2), *TINY)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "state.json").read_text())["step"] == step + 2


def test_non_finite_loss_stops_without_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "ck"
    monkeypatch.setenv("MOLSCOPE_FAULT_NAN_AT_STEP", "3")
    result = train("--out", str(out), "--max-steps", "5", *TINY)
    assert result.returncode == 1
    assert "non-finite loss at step 3" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-steps", "0"], "--max-steps must be positive"),
        (["--data", "/nonexistent.parquet", "--max-steps", "1"], "nonexistent"),
        (["--batch-size", "-3"], "--batch-size must be positive"),
    ],
)
def test_bad_input_one_line_error(tmp_path, args, message):
    result = train("--out", str(tmp_path / "ck"), *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ck" / "model.safetensors").exists()


def test_existing_checkpoint_needs_resume_or_overwrite(reference_run):
    result = train("--out", str(reference_run), "--max-steps", "1", *TINY)
    assert result.returncode != 0 and "--resume or --overwrite" in result.stderr
    assert os.path.exists(reference_run / "model.safetensors")


def test_resume_reads_older_and_newer_train_args(reference_run, tmp_path):
    """A state.json whose train_args lack fields added since (their defaults apply) or hold
    fields that no longer exist (ignored) still resumes."""
    out = tmp_path / "ck"
    shutil.copytree(reference_run, out)
    state = json.loads((out / "state.json").read_text())
    del state["train_args"]["prop_weight"], state["train_args"]["min_lr_ratio"]
    state["train_args"]["a_retired_option"] = 1
    (out / "state.json").write_text(json.dumps(state))
    result = train("--out", str(out), "--resume", "--max-steps", "14", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    train_args = json.loads((out / "state.json").read_text())["train_args"]
    assert json.loads((out / "state.json").read_text())["step"] == 14
    assert train_args["prop_weight"] == 0.1 and train_args["min_lr_ratio"] == 0.1
    assert "a_retired_option" not in train_args
    assert train_args["total_steps"] == 14  # --max-steps past the schedule lengthens it


def test_resume_with_a_new_lr_and_schedule_continues_from_there(reference_run, tmp_path):
    """--lr and --total-steps given with --resume start a new schedule from the saved step
    (to continue a finished run); the logged learning rate follows it."""
    out = tmp_path / "ck"
    shutil.copytree(reference_run, out)
    result = train(
        "--out", str(out), "--resume", "--lr", "5e-4", "--total-steps", "20", "--max-steps", "14",
        *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    train_args = json.loads((out / "state.json").read_text())["train_args"]
    assert train_args["lr"] == 5e-4 and train_args["total_steps"] == 20
    lrs = {r["step"]: r["lr"] for r in read_metrics(out) if r["split"] == "train"}
    assert lrs[12] < 1e-3 * 0.2  # the finished schedule ended at its floor
    assert 1e-4 < lrs[13] <= 5e-4  # the new one continues at most at its new peak
