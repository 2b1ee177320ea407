"""The running app in headless Chromium: every page draws without an exception, offline;
a Dataset slider changes the counts; the Generate page's Step button writes a symbol; on a
fresh server, 8 tabs opened at once each list the six pages.

Skipped with a reason where /usr/bin/chromium is missing, except under CI=true.
"""

from __future__ import annotations

import re

import pytest
from browser_util import (
    ARTIFACTS,
    EXCEPTION,
    PAGES,
    ROOT,
    open_page,
    step_writes_a_symbol,
    streamlit_server,
    wait_idle,
)

pytestmark = pytest.mark.browser
PICKER = '[data-testid="stSidebar"] [data-testid="stSelectbox"]'
MENU = '[data-testid="stSidebar"] [data-testid="stPageLink"] a'  # the frame's list of pages
SKELETON = '[data-testid="stSkeleton"]'


def existing_pages() -> dict[str, str]:
    """URL path -> title of the pages whose file exists."""
    return {
        path: title
        for path, title in PAGES.items()
        if (ROOT / "pages" / f"{path or 'home'}.py").is_file()
    }


@pytest.fixture(scope="module")
def server_env(tiny_checkpoints, tmp_path_factory) -> dict[str, str]:
    return {
        "MOLSCOPE_CHECKPOINTS": str(tiny_checkpoints),
        "MOLSCOPE_RUNS": str(tmp_path_factory.mktemp("runs")),
    }


@pytest.fixture(scope="module")
def url(chromium, server_env):
    with streamlit_server(server_env) as base:
        yield base


def check_page(page, name: str, title: str | None) -> None:
    """No exception element, the sidebar picker present, the title right (if given)."""
    page.screenshot(path=str(ARTIFACTS / f"browser_{name}.png"))
    assert page.locator(EXCEPTION).count() == 0, f"exception on {name}"
    assert page.locator(PICKER).count() == 1, f"no checkpoint picker on {name}"
    if title:
        assert page.locator("h1").first.inner_text() == title


def test_every_page_draws_offline_without_exceptions(page, url):
    open_page(page, url, "")  # the entry page first, as `make run` users do
    check_page(page, "home", "MolScope")
    page.locator(MENU, has_text="Dataset").click()
    wait_idle(page)
    assert "/dataset" in page.url and "checkpoint=default" in page.url  # the menu keeps it
    mine = {"dataset", "training"}  # the other pages' titles are their authors' to test
    for path, title in existing_pages().items():
        if path:
            open_page(page, url, path, "?checkpoint=default")
            check_page(page, path, title if path in mine else None)
    assert page.outside == [], "requests left the machine"


def test_dataset_slider_filters(page, url):
    open_page(page, url, "dataset")

    def matching() -> int:
        text = page.get_by_text(re.compile(r"of [\d,]+ molecules match")).inner_text()
        return int(text.split()[0].replace(",", ""))

    before = matching()
    low_end = page.locator('[data-testid="stSlider"]').first.get_by_role("slider").first
    low_end.focus()
    for _ in range(3):  # raise the lower LogP bound a few big steps
        low_end.press("PageUp")
    page.wait_for_timeout(1000)
    wait_idle(page)
    after = matching()
    page.screenshot(path=str(ARTIFACTS / "browser_dataset_filtered.png"))
    assert 0 < after < before
    assert page.locator(EXCEPTION).count() == 0


@pytest.mark.skipif(
    not (ROOT / "pages" / "generate.py").is_file(), reason="pages/generate.py not there yet"
)
def test_generate_step_writes_a_symbol(page, url):
    open_page(page, url, "generate")
    step_writes_a_symbol(page)
    page.screenshot(path=str(ARTIFACTS / "browser_generate_step.png"))


# Every link text the sidebar shows, recorded at each change from the first paint on: what a
# user may see, not only where the page settles. Icons are ligature text: left out.
RECORD_SIDEBAR_LINKS = """
window.__sidebarLinks = [];
const record = () => {
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  const links = sidebar ? [...sidebar.querySelectorAll("a")] : [];
  const titles = links
    .filter(a => new URL(a.href, location.href).origin === location.origin)
    .map(a => {
      const copy = a.cloneNode(true);
      copy.querySelectorAll('[data-testid="stIconMaterial"]').forEach(icon => icon.remove());
      return copy.textContent.trim();
    });
  const seen = window.__sidebarLinks;
  if (seen.length === 0 || seen[seen.length - 1].join("|") !== titles.join("|")) {
    seen.push(titles);
  }
};
new MutationObserver(record).observe(document, {childList: true, subtree: true});
"""
COLD_START_PATHS = ["", "generate", "dataset", "training", "attention", "evaluate", "", "generate"]


def test_fresh_server_with_eight_tabs_at_once_lists_the_six_pages_in_each(chromium, server_env):
    """On a fresh server, 8 tabs opened at the same moment (the entry page and deep links):
    each sidebar ends with exactly the six pages and, from its first paint on, never shows a
    page twice, out of order, or from Streamlit's automatic pages-folder menu."""
    titles = list(PAGES.values())
    with streamlit_server(server_env) as base:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(RECORD_SIDEBAR_LINKS)
        tabs = [context.new_page() for _ in COLD_START_PATHS]
        for tab, path in zip(tabs, COLD_START_PATHS, strict=True):
            tab.goto(f"{base}/{path}", wait_until="commit")  # all started before any is drawn
        for i, (tab, path) in enumerate(zip(tabs, COLD_START_PATHS, strict=True)):
            # drawn: a title, no loading skeleton left (before a queued first run starts, the
            # app reads as idle too), and idle
            tab.wait_for_selector("h1", timeout=60_000)
            tab.wait_for_function(f"() => !document.querySelector('{SKELETON}')", timeout=60_000)
            wait_idle(tab, timeout=60_000)
            tab.screenshot(path=str(ARTIFACTS / f"browser_cold_start_{i}.png"))
            shown = tab.evaluate("window.__sidebarLinks")
            assert shown[-1] == titles, f"tab {i} (/{path}) ended with {shown[-1]}"
            for links in shown:  # while it loads: some of the six, in their order, none twice
                # (a rerun can drop the first links a moment before it draws the list again)
                assert links == [t for t in titles if t in links], f"tab {i} (/{path}): {links}"
            assert tab.locator(EXCEPTION).count() == 0, f"exception in tab {i} (/{path})"
        step_writes_a_symbol(tabs[COLD_START_PATHS.index("generate")])  # its first click counts
        context.close()
