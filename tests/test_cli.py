"""The generate and evaluate command lines: output contract and one-line errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_generate_writes_csv_with_rdkit_properties(tiny_checkpoints, tmp_path):
    out = tmp_path / "mols.csv"
    ck = str(tiny_checkpoints / "default")
    args = ["--checkpoint", ck, "--logp", "2", "--n", "12", "--seed", "3", "--out", str(out)]
    result = run("core.generate", *args, "--prefix", "[C][C]")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and {"selfies", "smiles", "logp", "tpsa"} <= set(rows[0])
    assert all(r["selfies"].startswith("[C][C]") for r in rows)
    from core.chem import describe_smiles

    for r in rows:
        if r["smiles"]:
            assert float(r["logp"]) == pytest.approx(describe_smiles(r["smiles"])["logp"], abs=1e-4)
    again = tmp_path / "again.csv"
    assert run("core.generate", *args[:-1], str(again), "--prefix", "[C][C]").returncode == 0
    assert again.read_text() == out.read_text()  # same seed, same molecules


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--logp", "abc"], "invalid float value"),
        (["--tpsa", "nan"], "finite"),
        (["--n", "0"], "--n must be between"),
        (["--n", "100000000"], "--n must be between"),
        (["--prefix", "[C][Xyz]"], "invalid --prefix"),
        (["--prefix", "[C"], "malformed SELFIES"),
        (["--temperature", "-1"], "temperature"),
    ],
)
def test_generate_bad_input(tiny_checkpoints, tmp_path, extra, needle):
    out = tmp_path / "x.csv"
    ck = str(tiny_checkpoints / "default")
    result = run("core.generate", "--checkpoint", ck, "--n", "2", "--out", str(out), *extra)
    assert_one_line_error(result, needle)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("module", ["core.generate", "core.evaluate"])
def test_missing_or_corrupt_checkpoint(tmp_path, tiny_checkpoints, module):
    assert_one_line_error(run(module, "--checkpoint", str(tmp_path / "nope")), "no checkpoint")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoints / "default", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    assert_one_line_error(run(module, "--checkpoint", str(broken)), "model.safetensors")
    (broken / "config.json").write_text("{")
    assert_one_line_error(run(module, "--checkpoint", str(broken)), "config.json")


def test_evaluate_writes_report(tiny_checkpoints, tmp_path):
    out = tmp_path / "eval.json"
    ck = str(tiny_checkpoints / "default")
    result = run("core.evaluate", "--checkpoint", ck, "--n", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert len(report["targets"]) == 19
    assert 0 <= report["overall"]["validity"] <= 1
    assert {"logp_mad", "tpsa_mad", "joint_hit", "joint_hit_strict"} <= set(report["summary"])
    assert "teacher_forced_token_acc" in report["reconstruction"]
    assert_one_line_error(run("core.evaluate", "--checkpoint", ck, "--n", "-1"), "--n")


def test_generate_on_target_ends_derivations_inside_the_hit_window(
    tiny_feedback_checkpoints, tiny_checkpoints, tmp_path
):
    """``--on-target``: no molecule whose SELFIES derivation ended lies outside ±10 Å² of the
    TPSA target; a model without feedback says in one line that it cannot."""
    import selfies as sf

    from core.derivation import derive

    out = tmp_path / "aimed.csv"
    args = ["--tpsa", "40", "--n", "60", "--seed", "2", "--on-target", "--out", str(out)]
    result = run("core.generate", "--checkpoint", str(tiny_feedback_checkpoints / "default"), *args)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    ended = [r for r in rows if derive(list(sf.split_selfies(r["selfies"])))[-1].finished]
    assert len(rows) == 60 and all(abs(float(r["tpsa"]) - 40) <= 10 for r in ended)
    plain = run("core.generate", "--checkpoint", str(tiny_checkpoints / "default"), *args)
    assert_one_line_error(plain, "needs a closed-loop")
