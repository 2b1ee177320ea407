"""The dashboard frame: navigation, the checkpoint picker, the URL and broken checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser_util import PAGES, app_test
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("fresh_app")


@pytest.fixture
def with_broken(tiny_checkpoints, tmp_path, monkeypatch):
    """A checkpoints folder with the tiny ``default`` and a ``broken`` one."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "default", root / "default")
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    (broken / "model.safetensors").write_bytes(b"\x00" * 16)
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(root))
    return root


def sidebar_text(at: AppTest) -> str:
    parts = [c.value for c in at.sidebar.caption] + [w.value for w in at.sidebar.warning]
    return "\n".join(parts + [e.value for e in at.sidebar.error])


def menu(at: AppTest) -> list[str]:
    """The page titles the sidebar lists."""
    return [link.proto.label for link in at.sidebar.get("page_link")]


def test_home_is_the_default_page(use_tiny_checkpoints):
    at = app_test().run()
    assert not at.exception
    assert at.title[0].value == "MolScope"
    picker = at.sidebar.selectbox(key="checkpoint")
    assert picker.value == "default" and picker.options == ["default"]
    assert at.query_params["checkpoint"] == "default"
    assert "parameters" in sidebar_text(at) and "Trained" in sidebar_text(at)
    assert menu(at) == list(PAGES.values())


def test_the_model_card_says_how_long_a_molecule_may_get(tiny_checkpoints, tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "default", root / "default")
    config = root / "default" / "config.json"
    text = json.loads(config.read_text())
    config.write_text(json.dumps({**text, "meta": {**text["meta"], "longest_trained": 49}}))
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(root))
    at = app_test().run()
    assert "Writes up to 50 SELFIES symbols (longest trained: 49)" in sidebar_text(at)


@pytest.mark.parametrize(
    "page, title",
    [
        ("pages/home.py", "MolScope"),
        ("pages/dataset.py", "Dataset"),
        ("pages/training.py", "Training"),
    ],
)
def test_my_pages_open_from_the_menu(use_tiny_checkpoints, tmp_path, monkeypatch, page, title):
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    at = app_test().run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.title[0].value == title
    assert at.sidebar.selectbox(key="checkpoint").value == "default"


def test_every_existing_page_runs(use_tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    at = app_test().run()
    for page in sorted((ROOT / "pages").glob("*.py")):
        if page.name == "common.py":
            continue
        at.switch_page(f"pages/{page.name}").run()
        assert not at.exception, page.name


def test_dotdot_in_the_url_is_refused(use_tiny_checkpoints):
    at = app_test()
    at.query_params["checkpoint"] = "../../etc"
    at.run()
    assert not at.exception
    assert at.session_state.checkpoint == "default"
    assert "Ignored ?checkpoint=../../etc" in sidebar_text(at)
    assert at.query_params["checkpoint"] == "default"


def test_unknown_checkpoint_in_the_url_falls_back(use_tiny_checkpoints):
    at = app_test()
    at.query_params["checkpoint"] = "nope"
    at.run()
    assert at.session_state.checkpoint == "default"
    assert "No checkpoint named 'nope'" in sidebar_text(at)


def test_url_selects_a_checkpoint(with_broken):
    at = app_test()
    at.query_params["checkpoint"] = "broken"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="checkpoint").value == "broken"


def test_broken_checkpoint_is_listed_and_the_app_keeps_working(with_broken, tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSCOPE_RUNS", str(tmp_path / "runs"))
    at = app_test().run()
    picker = at.sidebar.selectbox(key="checkpoint")
    assert set(picker.options) == {"default", "broken (broken)"}
    picker.select("broken").run()
    assert not at.exception
    assert at.query_params["checkpoint"] == "broken"
    assert "cannot be loaded" in sidebar_text(at)
    assert "config.json" in sidebar_text(at)  # the error names the file
    for page in ("pages/home.py", "pages/dataset.py", "pages/training.py"):
        at.switch_page(page).run()
        assert not at.exception, page
        assert not at.main.error, page
    if (ROOT / "pages/generate.py").exists():  # pages that need the model say so
        at.switch_page("pages/generate.py").run()
        assert not at.exception
        assert any("broken" in e.value for e in at.main.error)
    at.sidebar.selectbox(key="checkpoint").select("default").run()
    assert not at.exception and at.query_params["checkpoint"] == "default"


def test_no_checkpoints_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(tmp_path / "empty"))
    at = app_test().run()
    assert not at.exception
    assert any("No checkpoint in" in i.value for i in at.sidebar.info)


def widget_ids(at: AppTest) -> set[str]:
    kinds = ("button", "selectbox", "slider", "number_input", "toggle", "text_input", "radio")
    return {widget.id for kind in kinds for widget in at.get(kind)}


def test_a_page_run_without_app_py_draws_the_frame_itself(use_tiny_checkpoints, monkeypatch):
    """A fresh server runs its first requests in Streamlit's pages-folder mode: a deep link
    runs the page alone, without app.py. The page draws the frame in that same run (the six
    pages and the checkpoint picker in the sidebar), and every widget keeps its id in the
    next run, through app.py: a first click is not lost."""
    framed_init = PagesManager.__init__

    def pages_folder_mode(self, *args, **kwargs) -> None:  # as before st.navigation ever ran
        framed_init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = True

    monkeypatch.setattr(PagesManager, "__init__", pages_folder_mode)
    at = app_test()
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
    assert at.title[0].value == "Dataset"
    assert menu(at) == list(PAGES.values())
    assert at.sidebar.selectbox(key="checkpoint").value == "default"
    first = widget_ids(at)
    monkeypatch.setattr(PagesManager, "__init__", framed_init)  # the server's next runs
    at.run()
    assert at.title[0].value == "Dataset" and menu(at) == list(PAGES.values())
    assert len(first) > 3 and widget_ids(at) == first
