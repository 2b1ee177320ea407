"""Home page: the model in a paragraph, headline metrics, a guide to the other pages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser_util import app_test

ROOT = Path(__file__).resolve().parent.parent
EVALUATION = {
    "checkpoint": "default",
    "n_per_target": 100,
    "temperature": 1.0,
    "seconds": 12.3,
    "overall": {"validity": 1.0, "uniqueness": 0.98, "novelty": 0.95, "internal_diversity": 0.86},
    "summary": {"logp_mad": 0.64, "tpsa_mad": 7.7, "joint_hit": 0.31, "joint_hit_strict": 0.2},
    "shuffled": {"logp_mad": 1.1, "tpsa_mad": 21.0, "joint_hit": 0.05},
    "reconstruction": {
        "teacher_forced_token_acc": 0.9,
        "free_running_exact_match": 0.4,
        "active_units": 3,
        "latent_dim": 4,
        "kl_per_dim": [0.05, 0.3, 1.0, 0.1],
    },
}


pytestmark = pytest.mark.usefixtures("fresh_app")


@pytest.fixture
def checkpoints(tiny_checkpoints, tmp_path, monkeypatch):
    """A writable copy of the tiny checkpoints folder."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(root))
    return root


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_without_evaluation_it_says_how_to_get_one(use_tiny_checkpoints):
    at = app_test().run()
    assert not at.exception
    assert "conditional Transformer VAE" in at.markdown[0].value
    info = " ".join(i.value for i in at.info)
    assert "Evaluate" in info and "python -m core.evaluate --checkpoint checkpoints/default" in info
    shown = metrics(at)
    assert shown["Training loss"] == "2.000"  # last train row of the fixture's metrics.jsonl
    assert shown["Val. token accuracy"] == "40.0%"
    assert shown["Active latent units"] == "2"


def test_headline_metrics_from_evaluation_json(checkpoints):
    (checkpoints / "default" / "evaluation.json").write_text(json.dumps(EVALUATION))
    at = app_test().run()
    assert not at.exception
    shown = metrics(at)
    assert shown["Validity"] == "100.0%"
    assert shown["Novelty"] == "95.0%"
    assert shown["LogP MAD"] == "0.64"
    assert shown["TPSA MAD (Å²)"] == "7.7"
    assert shown["Joint hit rate"] == "31.0%"
    notes = " ".join(c.value for c in at.main.caption)
    assert "shuffled targets" in notes and "1.10" in notes and "21.0" in notes
    assert "3 of 4 latent units active, 2 above the free-bits floor (0.1 nats)" in notes
    assert not at.info


def test_novelty_against_the_subset_is_labelled_so(checkpoints):
    report = {**EVALUATION, "novelty_vs": "subset", "novelty_note": "its training set is missing"}
    (checkpoints / "default" / "evaluation.json").write_text(json.dumps(report))
    at = app_test().run()
    assert not at.exception
    novelty = next(m for m in at.metric if m.label.startswith("Novelty"))
    assert novelty.label == "Novelty (vs subset)" and novelty.value == "95.0%"
    assert novelty.help == "its training set is missing"


def test_unreadable_evaluation_is_not_fatal(checkpoints):
    (checkpoints / "default" / "evaluation.json").write_text("{ truncated")
    at = app_test().run()
    assert not at.exception
    assert "cannot be read" in at.info[0].value


def test_every_existing_page_has_a_link_and_a_failure(use_tiny_checkpoints):
    at = app_test().run()
    links = at.main.get("page_link")  # the sidebar lists every page too
    expected = [
        name
        for name in ("dataset", "training", "attention", "generate", "evaluate")
        if (ROOT / "pages" / f"{name}.py").exists()
    ]
    assert len(links) == len(expected)
    guide = " ".join(m.value for m in at.markdown)
    assert "posterior collapse" in guide
    if "attention" in expected:
        assert "causal mask" in guide
    assert "targets outside the range" in guide


def test_missing_metrics_file(checkpoints):
    (checkpoints / "default" / "metrics.jsonl").unlink()
    at = app_test().run()
    assert not at.exception
    assert any("No training log" in c.value for c in at.main.caption)


def test_where_and_from_what_a_checkpoint_was_trained_is_shown(checkpoints):
    config_file = checkpoints / "default" / "config.json"
    config = json.loads(config_file.read_text())
    config.setdefault("meta", {})["init_from"] = {"path": "checkpoints/base", "step": 9000}
    config["meta"]["trained_on"] = "one NVIDIA H200, 7,653 steps of 512 molecules"
    config_file.write_text(json.dumps(config))
    at = app_test().run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "**Fine-tuned from** `checkpoints/base` at step 9,000" in text
    assert "**Trained on:** one NVIDIA H200, 7,653 steps of 512 molecules" in text
    assert ("open-ended" in text) == bool(config["meta"].get("data", {}).get("open_end"))
    config["meta"].setdefault("data", {})["open_end"] = True
    config_file.write_text(json.dumps(config))
    assert "**SELFIES written open-ended:**" in " ".join(m.value for m in app_test().run().markdown)
