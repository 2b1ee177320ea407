"""Load test: several headless-Chromium tabs step the decoder on the Generate page at once.

    .venv/bin/python -m bench.load_test [--tabs 8] [--minutes 3] [--out bench/results/load.json]

Starts ``streamlit run app.py`` on a free loopback port (no file watcher) and opens ``--tabs``
tabs, each in its own browser context (so its own Streamlit session and script thread), on
``/generate`` with a seed of its own. Every tab presses **Step** again and again for
``--minutes`` (**Reset** when its molecule is finished). Reported:

- ``molecules_finished``: molecules decoded to the end (counted when the tab resets them), the
  measure of work done; ``steps``: Step clicks answered (one symbol each), their rate and the
  server's CPU seconds per step;
- ``step_latency_ms``: p50 / p95 / max from the click to the SELFIES text changing (or the
  finished state showing); the next click waits until the script run has ended;
- ``errors``: exception elements on the page, and steps that got no answer in 30 s (must be 0);
- ``rss_mb``: the server's resident memory (``VmRSS`` from ``/proc``) every few seconds: start,
  end, max, and the slope per 100 steps fitted after the first fifth of the run, when caches
  and allocators have warmed up.

Not run in CI: it needs minutes and all the cores. Numbers from a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.procstat import stat_fields

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "bench" / "results" / "screens"  # a screenshot of each tab that timed out
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EXCEPTION = '[data-testid="stException"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STEP_TIMEOUT_MS = 30_000
PICKER = '[data-testid="stSidebar"] [data-testid="stSelectbox"]'  # app.py's frame is there
# what a tab shows of its decoding: the SELFIES text and the "Step N:" counter (the step that
# chooses [EOS] adds no symbol, so the text alone does not always change)
SHOWN = """() => [...document.querySelectorAll('[data-testid="stCode"]')]
    .map(e => e.innerText).join('|')
    + '#' + (document.body.innerText.match(/Step \\d+:/) || [''])[0]"""
STEPPED = f"before => ({SHOWN})() !== before"
STEP_ENABLED = """() => {
    const step = [...document.querySelectorAll('button')]
        .find(b => /Step$/.test(b.innerText.trim()));
    return step !== undefined && !step.disabled;
}"""


@dataclass
class Tally:
    """What all tabs measured; appended to from the event loop only."""

    latencies_ms: list[float] = field(default_factory=list)
    steps: int = 0  # Step clicks answered (one symbol each)
    molecules: int = 0  # finished (Reset pressed)
    exceptions: int = 0
    timeouts: int = 0
    frameless: int = 0  # tabs served without app.py's frame (pages-folder mode)
    messages: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on a free loopback port; the process and its URL once healthy."""
    port = free_port()
    argv = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    with open(log, "wb") as out:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return server, url
        except OSError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"streamlit did not start; see {log}")


def rss_and_threads(pid: int) -> tuple[float, int]:
    """Resident memory (MB) and number of OS threads of ``pid``, from /proc (Linux)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from /proc (Linux)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_memory(pid: int, tally: Tally, every: float, stop: threading.Event, out: list):
    """Append (time, RSS MB, steps so far, threads) every ``every`` s until ``stop``."""
    while not stop.is_set():
        try:
            out.append((time.time(), *rss_and_threads(pid), tally.steps))
        except (OSError, KeyError, ValueError):
            return  # the server is gone
        stop.wait(every)


async def drive_tab(browser, url: str, index: int, go: Go, tally: Tally) -> None:
    """One user: open Generate with its own seed, then Step (Reset when finished) until the end."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{url}/generate?checkpoint=default&seed={index}", timeout=180_000)
    step = page.get_by_role("button", name=re.compile(r"^\W*Step$"))
    reset = page.get_by_role("button", name=re.compile(r"^\W*Reset$"))
    await step.wait_for(timeout=180_000)
    await page.wait_for_selector(IDLE, timeout=180_000)
    if not await page.locator(PICKER).count():
        tally.frameless += 1
        tally.messages.append(f"tab {index}: opened without app.py's frame (no sidebar picker)")
    deadline = await go.ready()
    while time.time() < deadline:
        try:
            if await step.is_disabled():  # finished: start another molecule
                await reset.click(timeout=STEP_TIMEOUT_MS)
                await page.wait_for_function(STEP_ENABLED, timeout=STEP_TIMEOUT_MS)
                await page.wait_for_selector(IDLE, timeout=STEP_TIMEOUT_MS)
                tally.molecules += 1
                continue
            before = await page.evaluate(SHOWN)
            clicked = time.perf_counter()
            await step.click(timeout=STEP_TIMEOUT_MS)
            await page.wait_for_function(STEPPED, arg=before, timeout=STEP_TIMEOUT_MS)
            tally.latencies_ms.append((time.perf_counter() - clicked) * 1000)
            tally.steps += 1
            await page.wait_for_selector(IDLE, timeout=STEP_TIMEOUT_MS)
            failed = await page.locator(EXCEPTION).count()
            if failed:
                tally.exceptions += failed
                text = await page.locator(EXCEPTION).first.inner_text()
                tally.messages.append(f"tab {index}: {text[:300]}")
        except Exception as exc:  # noqa: BLE001 (playwright's TimeoutError; counted)
            tally.timeouts += 1
            shot = SCREENS / f"load-tab{index}-{tally.timeouts}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shot))
            tally.messages.append(f"tab {index}: {str(exc).splitlines()[0]} ({shot.name})")
            failed = True
        if failed:  # start this tab afresh
            await page.reload()
            await step.wait_for(timeout=180_000)
    await context.close()


class Go:
    """Starts the clock once every tab has loaded its page; each tab then steps until the end."""

    def __init__(self, tabs: int, seconds: float, server_pid: int) -> None:
        self.waiting, self.seconds, self.server_pid = tabs, seconds, server_pid
        self.event = asyncio.Event()
        self.start = self.deadline = self.end = 0.0
        self.cpu_start = self.cpu_end = 0.0

    async def ready(self) -> float:
        self.waiting -= 1
        if self.waiting == 0:
            self.cpu_start = cpu_seconds(self.server_pid)
            self.start = time.time()
            self.deadline = self.start + self.seconds
            self.event.set()
        await self.event.wait()
        return self.deadline

    def stop(self) -> None:
        self.end = time.time()
        self.cpu_end = cpu_seconds(self.server_pid)


async def run_tabs(
    url: str, tabs: int, seconds: float, tally: Tally, server_pid: int, warm: bool
) -> Go:
    """All tabs at once; the clock starts once every tab has loaded its page."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # a first visit, as after `make run`: tabs opened at once on a server nobody has visited
        # yet are served without app.py's frame (see docs/reliability.md); --cold tries that
        if warm:
            first = await browser.new_page()
            await first.goto(url, timeout=180_000)
            await first.wait_for_selector(PICKER, timeout=180_000)
            await first.close()
        go = Go(tabs, seconds, server_pid)
        await asyncio.gather(*(drive_tab(browser, url, i, go, tally) for i in range(tabs)))
        go.stop()
        await browser.close()
    return go


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def slope_per_100(samples: list[tuple[float, float, int, int]]) -> float | None:
    """Least-squares MB per 100 steps over the samples after the first fifth."""
    tail = samples[len(samples) // 5 :]
    if len(tail) < 3 or tail[-1][2] == tail[0][2]:
        return None
    xs, ys = [s[2] for s in tail], [s[1] for s in tail]
    return statistics.linear_regression(xs, ys).slope * 100


def load_test(args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.checkpoints:
        env["MOLSCOPE_CHECKPOINTS"] = str(Path(args.checkpoints).resolve())
    log = Path(tempfile.gettempdir()) / f"molscope-load-{os.getpid()}.log"
    server, url = start_server(env, log)
    tally, samples, stop = Tally(), [], threading.Event()
    sampler = threading.Thread(
        target=sample_memory, args=(server.pid, tally, args.sample_seconds, stop, samples)
    )
    load_before = os.getloadavg()
    try:
        sampler.start()
        go = asyncio.run(
            run_tabs(url, args.tabs, args.minutes * 60, tally, server.pid, not args.cold)
        )
    finally:
        stop.set()
        sampler.join()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    lat = tally.latencies_ms
    elapsed = go.end - go.start
    loaded = next((s[1] for s in reversed(samples) if s[0] <= go.start), None)
    samples = [(round(t - go.start, 1), m, g, n) for t, m, n, g in samples if t >= go.start]
    rss = [s[1] for s in samples]
    threads = [s[3] for s in samples]
    slope = slope_per_100(samples)
    server_cpu = go.cpu_end - go.cpu_start
    return {
        "tabs": args.tabs,
        "seconds": round(elapsed, 1),
        "molecules_finished": tally.molecules,
        "molecules_per_minute": round(tally.molecules / elapsed * 60, 2),
        "steps": tally.steps,
        "steps_per_s": round(tally.steps / elapsed, 2),
        "server_cpu_s_per_step": round(server_cpu / max(tally.steps, 1), 3),
        "server_cpu_share": round(server_cpu / elapsed, 2),  # cores the server kept busy
        "step_latency_ms": {
            "p50": round(percentile(lat, 50)),
            "p95": round(percentile(lat, 95)),
            "max": round(max(lat)),
        }
        if lat
        else None,
        "errors": {
            "exceptions": tally.exceptions,
            "timeouts": tally.timeouts,
            "tabs_without_frame": tally.frameless,
        },
        "error_messages": tally.messages[:20],
        "rss_mb": {
            "pages_loaded": None if loaded is None else round(loaded, 1),
            "start": round(rss[0], 1),
            "end": round(rss[-1], 1),
            "max": round(max(rss), 1),
            "slope_per_100_steps": None if slope is None else round(slope, 3),
            "samples (s, MB, steps, threads)": [(t, round(m, 1), g, n) for t, m, g, n in samples],
        }
        if rss
        else None,
        "server_threads": {"start": threads[0], "end": threads[-1]} if threads else None,
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "cpus": os.cpu_count(),
        "server_log": str(log),
    }


def main(args: argparse.Namespace) -> int:
    result = load_test(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lat, rss, errors = result["step_latency_ms"] or {}, result["rss_mb"] or {}, result["errors"]
    print(
        f"{result['tabs']} tabs, {result['seconds']:.0f} s: {result['molecules_finished']} "
        f"molecules finished ({result['molecules_per_minute']}/min) in {result['steps']} Step "
        f"clicks ({result['steps_per_s']}/s)\n"
        f"step latency p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, max {lat.get('max')} ms\n"
        f"errors: {errors['exceptions']} exceptions, {errors['timeouts']} timeouts, "
        f"{errors['tabs_without_frame']} tabs without the app frame\n"
        f"server CPU {result['server_cpu_s_per_step']} s per step "
        f"({result['server_cpu_share']} cores busy)\n"
        f"server RSS: start {rss.get('start')} MB, end {rss.get('end')} MB, max {rss.get('max')} "
        f"MB, slope {rss.get('slope_per_100_steps')} MB per 100 steps\n"
        f"server threads: {result['server_threads']}\n"
        f"load average {result['load_average']['start']} -> {result['load_average']['end']} "
        f"on {result['cpus']} CPUs; wrote {out}"
    )
    failed = any(errors.values()) or result["steps"] == 0
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Concurrent browser tabs stepping the decoder.")
    parser.add_argument("--tabs", type=int, default=8, help="browser tabs (sessions) at once")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long every tab steps")
    parser.add_argument(
        "--sample-seconds", type=float, default=3.0, help="seconds between RSS samples"
    )
    parser.add_argument("--checkpoints", help="checkpoints folder (default: the repository's)")
    parser.add_argument(
        "--cold", action="store_true", help="open the tabs at once on an unvisited server"
    )
    parser.add_argument("--out", default=str(ROOT / "bench/results/load.json"), help="JSON file")
    sys.exit(main(parser.parse_args()))
