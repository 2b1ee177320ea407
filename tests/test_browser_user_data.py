"""Your own molecules in headless Chromium: an uploaded CSV prepared from the Dataset page
(a real background ``core.data`` process) becomes the dataset shown; the Generate page of a
checkpoint conditioned on three properties draws a control per property and steps.

Skipped with a reason where /usr/bin/chromium is missing, except under CI=true.
"""

from __future__ import annotations

import re
import shutil

import pytest
from browser_util import (
    ARTIFACTS,
    EXCEPTION,
    open_page,
    step_writes_a_symbol,
    streamlit_server,
    wait_idle,
)
from test_page_user_data import THREE, three_property_checkpoint
from user_data import write_csv

from core.data import prepare_input

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def folders(tiny_checkpoints, tmp_path_factory):
    """Checkpoints (tiny ``default`` and ``three``, on LogP, TPSA and QED of a user table),
    runs and data folders, and the CSV to upload."""
    root = tmp_path_factory.mktemp("browser_user")
    found = {name: root / name for name in ("checkpoints", "runs", "data")}
    shutil.copytree(tiny_checkpoints / "default", found["checkpoints"] / "default")
    found["data"].mkdir()
    write_csv(root / "base.csv", n=120)
    base = prepare_input(root / "base.csv", found["data"] / "base.parquet", workers=1)
    three_property_checkpoint(found["checkpoints"] / "three", base.out)
    found["upload"] = root / "actives.csv"
    write_csv(found["upload"], n=100)
    return found


@pytest.fixture(scope="module")
def url(chromium, folders):
    env = {
        "MOLSCOPE_CHECKPOINTS": str(folders["checkpoints"]),
        "MOLSCOPE_RUNS": str(folders["runs"]),
        "MOLSCOPE_DATA": str(folders["data"]),
        "OPENBLAS_NUM_THREADS": "1",
    }
    with streamlit_server(env) as base:
        yield base


def test_upload_prepare_and_generate_on_three_properties(page, url, folders):
    open_page(page, url, "dataset")
    page.get_by_role("tab", name="Your molecules").click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        str(folders["upload"])
    )
    wait_idle(page)
    name = page.get_by_role("textbox", name="Dataset name")
    assert name.input_value() == "actives"
    page.get_by_role("button", name=re.compile(r"^\W*Prepare$")).click()
    page.get_by_text(re.compile(r"Dataset actives is ready")).wait_for(timeout=180_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "browser_user_prepared.png"))
    assert page.get_by_role("combobox", name="Dataset").input_value() == "actives · 104 molecules"
    assert page.get_by_text(re.compile(r"Your dataset actives")).count() == 1
    assert page.locator(EXCEPTION).count() == 0

    open_page(page, url, "generate", "?checkpoint=three")
    for p in THREE:
        target = page.get_by_text(re.compile(rf"^Target .*{p}", re.IGNORECASE))
        target.first.wait_for(timeout=30_000)  # fails with a timeout when a control is missing
        assert target.count() >= 1, p
    step_writes_a_symbol(page)
    page.screenshot(path=str(ARTIFACTS / "browser_user_generate.png"))
    assert page.outside == [], "requests left the machine"
