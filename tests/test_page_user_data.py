"""Your own molecules in the dashboard (AppTest): an upload prepared in the background (a
real ``core.data`` process) shows up as a dataset; a tiny run trained on it with three
properties (a real ``core.train`` process) shows up in the checkpoint picker; the Generate
page of a three-property checkpoint has a control per property and scores all three."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import mlx.core as mx
import pytest
from browser_util import app_test
from conftest import run_page
from user_data import write_csv

from core import runs
from core.checkpoint import Bundle, load_checkpoint, save_checkpoint
from core.data import load_dataset, prepare_input
from core.evaluate import hit_windows
from core.model import Model, ModelArgs
from core.tokenizer import Tokenizer
from core.trainset import property_scales

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "generate.py")
THREE = ["logp", "tpsa", "qed"]

pytestmark = pytest.mark.usefixtures("fresh_app")


def three_property_checkpoint(folder: Path, table_path: Path) -> Bundle:
    """An untrained tiny model conditioned on LogP, TPSA and QED of a user's table."""
    table = load_dataset(table_path)
    train = table[table.split == "train"]
    tokenizer = Tokenizer.build(table.selfies)
    args = ModelArgs(
        vocab_size=len(tokenizer), max_len=72, d_model=32, n_heads=2, n_layers=1, d_ff=64,
        enc_d_model=16, enc_heads=2, enc_layers=1, enc_d_ff=32, latent_dim=4, properties=THREE,
    )  # fmt: skip
    mx.random.seed(0)
    model = Model(args)
    mx.eval(model.parameters())
    model.eval()
    data = {"path": str(table_path), "n_train": len(train), "name": "actives", "kind": "user"}
    bundle = Bundle(model, tokenizer, args, property_scales(train, THREE), {"data": data})
    save_checkpoint(folder, bundle, state={"step": 0})
    return bundle


@pytest.fixture
def roots(tiny_checkpoints, tmp_path, monkeypatch):
    """Writable checkpoints (the tiny ``default``), runs and data folders for the app."""
    found = {name: tmp_path / name for name in ("checkpoints", "runs", "data")}
    shutil.copytree(tiny_checkpoints / "default", found["checkpoints"] / "default")
    found["data"].mkdir()
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(found["checkpoints"]))
    monkeypatch.setenv("MOLSCOPE_RUNS", str(found["runs"]))
    monkeypatch.setenv("MOLSCOPE_DATA", str(found["data"]))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    return found


def run_until(at, done, timeout: float = 240.0, every: float = 1.0):
    """Rerun the app until ``done(at)`` (what a user sees when they come back)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception
        if done(at):
            return at
        time.sleep(every)
    pytest.fail(f"not done after {timeout} s")


def test_upload_prepare_then_train_on_three_properties(roots):
    at = app_test(timeout=120).run()
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
    write_csv(roots["data"].parent / "actives.csv", n=150)
    content = (roots["data"].parent / "actives.csv").read_bytes()
    at.file_uploader(key="upload").upload("actives.csv", content, "text/csv").run()
    assert not at.exception
    assert at.text_input(key="prep_name").value == "actives"
    assert any("200 MB" in c.value and "5 MB" in c.value for c in at.caption)  # limits stated
    at.button(key="prep_go").click().run()
    assert not at.exception and not at.error

    table = str(roots["data"] / "actives.parquet")
    run_until(at, lambda at: at.selectbox(key="dataset").value == table)
    caption = " ".join(c.value for c in at.caption)
    assert "Your dataset **actives**" in caption and "left out" in caption
    assert any("ready" in s.value for s in at.success)
    assert at.selectbox(key="dataset").options[-1].startswith("actives · 154 molecules")

    at.switch_page("pages/training.py").run()
    assert not at.exception
    at.text_input(key="run_name").input("mine").run()
    at.selectbox(key="data").set_value(table)  # inside the form: sent on submit
    at.multiselect(key="properties").set_value(THREE)
    at.number_input(key="max_steps").set_value(10)
    at.number_input(key="batch_size").set_value(16)
    at.selectbox(key="d_model").set_value(32)
    at.number_input(key="n_layers").set_value(1)
    at.selectbox(key="latent_dim").set_value(2)
    at.button(key="FormSubmitter:run_form-Start").click().run()
    assert not at.exception and not at.error
    assert "--properties logp,tpsa,qed" in at.code[0].value
    assert f"--data {table}" in at.code[0].value

    def saved(at) -> bool:
        return runs.status("mine").state in ("finished", "failed")

    run_until(at, saved)
    assert runs.status("mine").state == "finished", runs.status("mine").log_tail
    at.run()
    assert "mine" in at.selectbox(key="checkpoint").options  # in the sidebar picker
    bundle = load_checkpoint(roots["checkpoints"] / "mine")
    assert bundle.properties == THREE
    assert bundle.meta["data"]["name"] == "actives"
    assert bundle.meta["data"]["n_molecules"] == 154


def test_a_failed_preparation_is_one_error(roots):
    at = app_test(timeout=120).run()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader(key="upload").upload("broken.smi", b"C1CC\nnope\n", "text/plain").run()
    assert not at.exception
    at.button(key="prep_go").click().run()
    run_until(at, lambda at: bool(at.error), timeout=120)
    assert len(at.error) == 1
    assert "Preparing broken failed: none of the 2 rows of broken.smi" in at.error[0].value
    assert not (roots["data"] / "broken.parquet").exists()


def test_name_taken_and_unknown_type_are_refused(roots):
    (roots["data"].parent / "a.csv").write_text("smiles\nCCO\nCCN\nCCC\n")
    prepare_input(roots["data"].parent / "a.csv", roots["data"] / "taken.parquet", workers=1)
    at = app_test(timeout=120).run()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader(key="upload").upload("taken.csv", b"smiles\nCCO\n", "text/csv").run()
    assert not at.exception
    assert at.button(key="prep_go").disabled  # the name is taken ...
    at.checkbox(key="prep_overwrite").check().run()
    assert not at.button(key="prep_go").disabled  # ... unless it is to be replaced
    with pytest.raises(runs.RunError, match="unknown file type"):
        runs.start_prepare("x", "mols.xlsx", b"smiles\nCCO\n", data_root=roots["data"])


@pytest.fixture
def three(roots, tmp_path):
    """The Generate page on a checkpoint conditioned on LogP, TPSA and QED of a user table."""
    write_csv(tmp_path / "actives.csv", n=120)
    table = prepare_input(tmp_path / "actives.csv", roots["data"] / "actives.parquet", workers=1)
    shutil.rmtree(roots["checkpoints"] / "default")
    bundle = three_property_checkpoint(roots["checkpoints"] / "default", table.out)
    return bundle, run_page(PAGE)


def figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_generate_page_has_a_control_per_property(three):
    bundle, at = three
    for p in THREE:
        slider = at.slider(key=f"gen_{p}_slider")
        assert slider.min <= bundle.scales[p].lo and slider.max >= bundle.scales[p].hi
    assert at.number_input(key="gen_qed_num").format == "%.3f"
    assert len(figures(at)) == 3  # one density per property, of the checkpoint's own data
    densities = [sum(f["data"][0]["y"]) for f in figures(at)]
    n_train = bundle.meta["data"]["n_train"]
    assert all(0 < d <= n_train for d in densities) and max(densities) > 0.9 * n_train
    at.toggle(key="gen_use_qed").set_value(False).run()
    assert not at.exception and at.query_params["qed"] == "free"
    at.button(key="gen_step").click().run()
    at.button(key="gen_step").click().run()
    assert not at.exception
    partial = [q for q in at.session_state.gen_run.partial if q is not None]
    assert all(set(THREE) <= set(q) for q in partial)


def test_generate_batch_scores_every_property(three):
    bundle, at = three
    at.number_input(key="gen_batch_n").set_value(6).run()
    at.button(key="gen_batch_go").click().run()
    assert not at.exception
    table = at.session_state.gen_batch["table"]
    assert {"logp", "tpsa", "qed"} <= set(table.columns) and len(table) == 6
    labels = [m.label for m in at.metric]
    window = hit_windows(bundle.scales)["qed"]
    assert "QED MAD" in labels and f"QED within ±{window:g}" in labels
    assert "Both within" in labels


def test_fine_tuning_from_the_page_keeps_the_base_sizes(roots):
    at = app_test(timeout=120).run()
    at.switch_page("pages/training.py").run()
    assert not at.exception
    at.text_input(key="run_name").input("tuned").run()
    at.selectbox(key="init_from").set_value("default").run()
    assert at.selectbox(key="d_model").disabled and at.selectbox(key="latent_dim").disabled
    command = at.code[0].value
    base = roots["checkpoints"] / "default"
    assert f"--init-from {base}" in command and "--properties logp,tpsa" in command
    assert "--d-model" not in command and "--latent-dim" not in command
    at.multiselect(key="properties").set_value([])
    at.button(key="FormSubmitter:run_form-Start").click().run()
    assert any("at least one property" in e.value for e in at.error)
    assert not (roots["runs"] / "tuned").exists()
