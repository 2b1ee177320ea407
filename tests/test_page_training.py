"""Training page: curves of several runs, collapse hints, and the background-run controls
(start is stubbed here; tests/test_runs.py trains for real)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from browser_util import app_test

from core import runs

pytestmark = pytest.mark.usefixtures("fresh_app")


@pytest.fixture
def roots(tiny_checkpoints, tmp_path, monkeypatch):
    """Writable checkpoints (tiny ``default`` and a collapsed ``flat``) and an empty runs/."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "default", root / "default")
    shutil.copytree(tiny_checkpoints / "default", root / "flat")
    rows = [
        {"step": s, "split": "train", "loss": 2.0, "recon": 2.0, "kl": 0.001, "beta": 0.5}
        for s in (10, 20, 30)
    ] + [{"step": 30, "split": "val", "val_active_units": 0, "val_kl": 0.0, "my_metric": 1}]
    (root / "flat" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(root))
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    return {"checkpoints": root, "runs": tmp_path / "runs"}


def open_training():
    at = app_test().run()
    at.switch_page("pages/training.py").run()
    assert not at.exception
    return at


def chart_keys(at) -> set[str]:
    return {c.key for c in at.get("plotly_chart")}


def test_curves_of_the_selected_checkpoint(roots):
    at = open_training()
    assert at.multiselect(key="compare").value == ["default"]
    keys = chart_keys(at)
    assert {"train_loss", "train_recon", "train_kl", "train_beta", "train_lr"} <= keys
    assert {"val_val_token_acc", "val_val_active_units", "val_val_mae_tpsa"} <= keys
    assert not at.warning
    assert any("No background run yet" in c.value for c in at.main.caption)


def test_runs_overlaid_and_collapse_flagged(roots):
    at = open_training()
    at.multiselect(key="compare").select("flat").run()
    assert not at.exception
    assert at.multiselect(key="compare").value == ["default", "flat"]
    warning = " ".join(w.value for w in at.warning)
    assert "flat: posterior collapse" in warning
    assert "default" not in warning


def test_start_builds_the_command(roots, monkeypatch):
    calls = []

    def fake_start(name, options, **kwargs):
        calls.append((name, dict(options), kwargs))
        folder = kwargs["runs_root"] / name
        folder.mkdir(parents=True)
        (folder / "train.log").write_text(f"{runs.START_MARK} now\n")
        return runs.RunStatus(name, "running")

    monkeypatch.setattr(runs, "start", fake_start)
    at = open_training()
    preview = at.code[0].value
    assert preview.startswith("python -m core.train --out ")
    assert "--max-steps 200" in preview and "--d-model 64" in preview
    at.text_input(key="run_name").input("tiny-run").run()
    at.number_input(key="max_steps").set_value(30)  # inside the form: sent on submit
    at.button(key="FormSubmitter:run_form-Start").click().run()
    assert not at.exception
    ((name, options, kwargs),) = calls
    assert name == "tiny-run" and options["max_steps"] == 30 and options["d_model"] == 64
    assert kwargs["runs_root"] == roots["runs"] and not kwargs["resume"]
    assert at.selectbox(key="watch").value == "tiny-run"


def test_bad_run_name_cannot_start(roots):
    at = open_training()
    at.text_input(key="run_name").input("../escape").run()
    assert not at.exception
    assert "not allowed" in at.error[0].value
    assert at.button(key="FormSubmitter:run_form-Start").disabled


def test_existing_checkpoint_needs_resume_or_overwrite(roots):
    at = open_training()
    at.text_input(key="run_name").input("default").run()
    replace = at.checkbox(key="overwrite")
    assert replace.disabled  # the shipped checkpoint is never replaced from the page
    at.segmented_control(key="run_mode").set_value("resume").run()
    assert any("is at step 0" in c.value for c in at.main.caption)
    assert "--resume" in at.code[0].value


def test_finished_run_from_disk(roots):
    folder = roots["runs"] / "done"
    folder.mkdir(parents=True)
    (folder / "train.log").write_text(
        f"{runs.START_MARK} x\ntraining: 100%| 5/5 [00:01<00:00]\ncheckpoint: ck/done\n"
    )
    at = open_training()
    assert at.selectbox(key="watch").value == "done"
    assert any(":green-badge[finished]" in m.value for m in at.markdown)
    assert "checkpoint: ck/done" in at.code[-1].value
    assert at.button(key="stop_run").disabled


def test_stop_a_running_process(roots):
    folder = roots["runs"] / "live"
    folder.mkdir(parents=True)
    (folder / "train.log").write_text(f"{runs.START_MARK} x\n")
    # a stand-in trainer: its command line names core.train, SIGINT ends it; like runs.start,
    # it leads its own process group (stop signals the group: every rank of a distributed run)
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "core.train"],
        start_new_session=True,
    )
    try:
        (folder / "pid").write_text(str(fake.pid))
        at = open_training()
        assert any(":blue-badge[running]" in m.value for m in at.markdown)
        at.button(key="stop_run").click().run()
        assert not at.exception
        assert fake.wait(timeout=10) != 0  # KeyboardInterrupt
        at.run()
        assert not any(":blue-badge[running]" in m.value for m in at.markdown)
    finally:
        fake.kill()
        fake.wait()
