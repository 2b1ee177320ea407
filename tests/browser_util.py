"""Running the dashboard in tests: under AppTest, and for real (a ``streamlit run`` server
driven by headless Debian Chromium).

The browser part is used by tests/test_browser.py and for the README screenshots
(``python tests/browser_util.py --out docs/screens``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PAGES = {  # url path -> title
    "": "Home",
    "dataset": "Dataset",
    "training": "Training",
    "attention": "Attention",
    "generate": "Generate",
    "evaluate": "Evaluate",
}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'  # a traceback drawn in the page
ARTIFACTS = ROOT / "tests" / "artifacts"  # server logs and screenshots


def app_test(timeout: float = 60) -> AppTest:
    """An AppTest of the whole app (frame + pages); see ``v2_navigation``."""
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)


@contextlib.contextmanager
def v2_navigation() -> Iterator[None]:
    """Keep AppTest on ``st.navigation`` after ``switch_page``.

    A folder named ``pages/`` next to app.py makes Streamlit treat a script run as a
    version-1 multipage app (the page file runs alone, without app.py and its sidebar) until
    ``st.navigation`` has been called once. A server calls it on its first run of app.py and
    stays on version 2; AppTest forgets it before every run, so each switched page would run
    without the frame. This puts AppTest in the state of a server that has run app.py.
    """
    original = PagesManager.__init__

    def init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init
    try:
        yield
    finally:
        PagesManager.__init__ = original
        PagesManager.uses_pages_directory = None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Run ``streamlit run app.py`` on a free local port; yields its base URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"streamlit-{port}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def launch(playwright):
    """Debian's Chromium, headless (Playwright cannot download browsers here)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def wait_idle(page, timeout: float = 30_000) -> None:
    """Wait until the script run triggered by the last action has finished and drawn."""
    page.wait_for_timeout(300)  # let a rerun that is about to start begin
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(300)


def wait_charts(page, timeout: float = 30_000) -> None:
    """Wait until every visible Plotly chart has drawn its SVG (they load lazily)."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                 .filter(c => c.offsetParent !== null)
                 .every(c => c.querySelector('.main-svg'))""",
        timeout=timeout,
    )


def open_page(page, url: str, path: str, query: str = "") -> None:
    """Load one dashboard page and wait until it is drawn, charts included."""
    page.goto(f"{url}/{path}{query}", wait_until="domcontentloaded")
    # Every page opens with its st.title: once it is drawn the page's first run has begun, so
    # the idle wait below cannot pass on the blank page before the websocket's first run.
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
    wait_idle(page, timeout=60_000)
    wait_charts(page)


def step_writes_a_symbol(page) -> None:
    """Click the Generate page's Step: the decoded SELFIES (a code block) changes."""
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
    assert codes.all_inner_texts() != before
    assert page.locator(EXCEPTION).count() == 0


def screenshots(out: Path, width: int = 1200, height: int = 800) -> list[Path]:
    """Viewport screenshots of Home, Dataset and Training with the real checkpoints, as
    256-colour PNGs (small enough for the README)."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    files = []
    with streamlit_server() as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": width, "height": height})
        for path, name in [("", "home"), ("dataset", "dataset"), ("training", "training")]:
            open_page(page, url, path)
            file = out / f"{name}.png"
            page.screenshot(path=str(file))
            Image.open(file).convert("RGB").quantize(256).save(file, optimize=True)
            files.append(file)
        browser.close()
    return files


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshots of Home, Dataset and Training.")
    parser.add_argument("--out", default="tests/artifacts", help="folder for the PNG files")
    parser.add_argument("--width", type=int, default=1200, help="browser width in pixels")
    parser.add_argument("--height", type=int, default=800, help="browser height in pixels")
    opts = parser.parse_args()
    for file in screenshots(Path(opts.out), opts.width, opts.height):
        print(file)
