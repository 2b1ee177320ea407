"""Your own molecules in headless Chromium: an uploaded CSV prepared from the Dataset page
(a real background ``core.data`` process) becomes the dataset shown; the Generate page of a
checkpoint conditioned on three properties draws a control per property and steps.

Skipped with a reason where /usr/bin/chromium is missing, except under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from browser_util import CHROMIUM, ROOT, launch, open_page, streamlit_server, wait_idle
from test_page_user_data import THREE, three_property_checkpoint
from user_data import write_csv

from core.data import prepare_input

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"
EXCEPTION = '[data-testid="stException"]'


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


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


@pytest.fixture
def page(chromium, url):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.outside = []
    tab.on("request", lambda r: None if r.url.startswith(url) else tab.outside.append(r.url))
    yield tab
    context.close()


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
        assert page.get_by_text(re.compile(rf"^Target .*{p}", re.IGNORECASE)).count() >= 1, p
    codes = page.locator('[data-testid="stCode"]')
    before = codes.all_inner_texts()
    page.get_by_role("button", name=re.compile(r"^\W*Step$")).first.click()
    wait_idle(page)
    page.wait_for_function(
        "before => [...document.querySelectorAll('[data-testid=\"stCode\"]')]"
        ".map(e => e.innerText).join('|') !== before.join('|')",
        arg=before,
        timeout=20_000,
    )
    page.screenshot(path=str(ARTIFACTS / "browser_user_generate.png"))
    assert page.locator(EXCEPTION).count() == 0
    assert page.outside == [], "requests left the machine"
