"""The page's first render on PostgreSQL with 10,000 tasks and 1,000,000 executions, in
headless Chromium (Debian's, driven by Playwright), beside the same page on 100 tasks and
10,000 executions measured in the same run.

Two times from ``page.goto`` on, each load in a fresh browser context (no cache, no
storage): until the task table has rows (``#tasks tbody tr``), and until the timeline
holds a drawn picture (an ``svg`` with children in ``#timeline``). The first load of a
case finds the server's answers cold; the next ones find the timeline's answer kept
(``CACHE_SECONDS`` in reconciler/web/timeline.py), so both are shown. A page without a
timeline, or whose timeline shows a note instead of a picture, reports ``n/a`` and why.

Executions are seeded 7 s apart up to now (the timeline's last 24 hours hold about
12,000 of them). The tasks are a mixed fleet (``benchmarks.seeding.mixed_spec``: five
crontabs in three zones and two intervals, every other task with ``spread: 10m``), so the
timeline counts many schedules and spread offsets, not one crontab's slots.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.bench_http import seed
from benchmarks.services import free_port, fresh_postgres, stop, wait_serving
from benchmarks.table import print_table
from reconciler.store.database import Database

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RUNS = int(os.environ.get("BENCH_PAGE_RUNS", "3"))
TIMEOUT_S = 120.0  # per load and picture: a page slower than this is reported, not waited on
CASES = (("baseline", 100, 10_000), ("page", 10_000, 1_000_000))

TABLE = "#tasks tbody tr"
# What the timeline holds once it is done: a drawn picture, or a note (an error, no data).
TIMELINE_STATE = """() => {
  const box = document.getElementById("timeline");
  if (!box) return "absent";
  const svg = box.querySelector("svg");
  if (svg && svg.childElementCount > 0) return "drawn";
  const text = box.textContent.trim();
  return text ? "note: " + text.slice(0, 80) : "";
}"""


@dataclass
class Loads:
    """One case's loads: seconds to the task table and to the timeline (None: not drawn)."""

    table: list[float | None] = field(default_factory=list)
    timeline: list[float | None] = field(default_factory=list)
    why: str = ""  # why the timeline is n/a

    def cell(self, times: list[float | None], warm: bool) -> str:
        chosen = times[1:] if warm else times[:1]
        if not chosen or any(value is None for value in chosen):
            return "n/a"
        return f"{statistics.median(value for value in chosen if value is not None):.2f}"


@contextlib.contextmanager
def serving(url: str) -> Iterator[str]:
    """``reconcile serve`` (one worker) on ``url``: its base URL once /healthz answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_fd, log_name = tempfile.mkstemp(prefix="bench_page_", suffix=".log")
    argv = [sys.executable, "-m", "reconciler", "serve", "--database-url", url]
    server = subprocess.Popen(
        [*argv, "--port", str(port), "--no-access-log"],
        stdout=log_fd,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        wait_serving(base, server, lambda: f"; see {log_name}")
        yield base
    finally:
        stop(server)
        os.close(log_fd)


def load_once(browser: Browser, base: str, loads: Loads) -> None:
    """One first render in a fresh context: the two times into ``loads``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{base}/", wait_until="commit", timeout=TIMEOUT_S * 1000)
        page.wait_for_selector(TABLE, state="attached", timeout=TIMEOUT_S * 1000)
        loads.table.append(time.perf_counter() - started)
        try:
            state = page.wait_for_function(TIMELINE_STATE, timeout=TIMEOUT_S * 1000).json_value()
        except PlaywrightTimeout:
            state = f"not drawn within {TIMEOUT_S:.0f} s"
        if state == "drawn":
            loads.timeline.append(time.perf_counter() - started)
        else:
            loads.timeline.append(None)
            loads.why = "no #timeline on the page" if state == "absent" else str(state)
    finally:
        context.close()


def measure(browser: Browser, tasks: int, executions: int) -> Loads:
    loads = Loads()
    with fresh_postgres("bench_page") as url:
        Database.open(url).dispose()
        started = time.perf_counter()
        since = int(time.time()) - executions * 7
        seed(url, tasks=tasks, executions=executions, base=since, mixed=True)
        print(
            f"seeded {tasks:,} tasks and {executions:,} executions in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        with serving(url) as base:
            for _ in range(RUNS):
                load_once(browser, base, loads)
    return loads


def main() -> None:
    if not os.path.exists(CHROMIUM):
        print(f"skipped: {CHROMIUM} is not installed (Debian package 'chromium')")
        return
    from playwright.sync_api import sync_playwright

    measured: dict[str, Loads] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for label, tasks, executions in CASES:
                measured[label] = measure(browser, tasks, executions)
        finally:
            browser.close()
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    baseline = measured[CASES[0][0]]
    rows = []
    for label, tasks, executions in CASES:
        loads = measured[label]
        for what, times in (("task table", loads.table), ("timeline", loads.timeline)):
            for warm in (False, True):
                own, base = loads.cell(times, warm), baseline.cell(_of(baseline, what), warm)
                ratio = f"{float(own) / float(base):.2f}" if "n/a" not in (own, base) else "n/a"
                rows.append(
                    (
                        label,
                        f"{tasks:,}",
                        f"{executions:,}",
                        what,
                        f"median of {RUNS - 1}" if warm else "first",
                        own,
                        base,
                        ratio,
                    )
                )
    print_table(
        ("case", "tasks", "executions", "until", "load", "seconds", "baseline s", "ratio"),
        rows,
    )
    for label, loads in measured.items():
        if loads.why:
            print(f"{label}: timeline n/a: {loads.why}")


def _of(loads: Loads, what: str) -> list[float | None]:
    return loads.table if what == "task table" else loads.timeline


if __name__ == "__main__":
    main()
