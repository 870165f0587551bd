"""The page's pictures (charts.js) in headless Chromium on a real server: the fleet's
timeline and a task's strip and duration chart drawn from recent rows, redrawn on a change
and at 400 px wide; the screenshots land in the test's tmp_path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.orm import Session

from reconciler.store.database import Database
from tests.web.test_page_browser import served_to_chromium
from tests.webseed import add_execution, add_task

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Page

pytestmark = pytest.mark.browser

HOUR = dt.timedelta(hours=1)
RUNS = 30


def recent(session: Session, name: str, slot: dt.datetime, index: int) -> None:
    """One run of ``name`` for ``slot``: started a few seconds late, some failing, slower
    and slower."""
    status = "failure" if index % 7 == 3 else "success"
    row = add_execution(session, name, status=status, queued_at=slot, flush=False)
    row.owner = "billing"
    row.queued_at = slot + dt.timedelta(seconds=1)
    row.started_at = slot + dt.timedelta(seconds=2 + index % 5)
    row.finished_at = row.started_at + dt.timedelta(milliseconds=400 + 150 * index)
    row.duration_ms = 400 + 150 * index


def add_recent_history(state: Path) -> None:
    """An hourly task run for the last ``RUNS`` hours, and a pile of tasks at the top of
    every hour, around the real clock (the server's)."""
    now = dt.datetime.now(dt.UTC)
    database = Database.open(f"sqlite:///{state}")
    with database.session() as session:
        add_task(session, "hourly-sync", crontab="0 * * * *", next_run_at=now + HOUR)
        for index in range(12):
            add_task(session, f"pile-{index:02d}", crontab="0 * * * *", next_run_at=now + HOUR)
        top = now.replace(minute=0, second=0, microsecond=0)
        for index in range(RUNS):
            recent(session, "hourly-sync", top - (RUNS - 1 - index) * HOUR, index)
    database.dispose()


def svg_box(page: Page, selector: str) -> FloatRect:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box


def test_timeline_and_task_charts_drawn_with_data(tmp_path: Path) -> None:
    with served_to_chromium(tmp_path) as (base, browser):
        from playwright.sync_api import expect

        add_recent_history(tmp_path / "state.db")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/")

        coming = page.locator("#timeline svg.chart-next")
        expect(coming).to_have_attribute("role", "img")
        expect(coming.locator("rect.chart-peak")).to_have_count(1, timeout=15_000)
        # The answer the page drew (kept by the server): a bar per bucket with slots; the
        # hourly tasks give 24 (23 or 25 when an hour turns meanwhile), 01:00 two more.
        data = page.evaluate("() => window.reconciler.api('/api/v1/timeline')")
        bars = len(data["next"]["buckets"])
        assert 23 <= bars <= 25, data["next"]
        expect(coming.locator("rect.chart-slots")).to_have_count(bars)
        expect(page.locator("#timeline .chart-caption").first).to_contain_text(
            "the busiest 5 minutes"
        )
        peak_tip = coming.locator("rect.chart-peak title")
        expect(peak_tip).to_contain_text(
            "15 slots of 15 tasks; most: daily-report (1), hourly-sync (1), ops-cleanup (1)"
        )
        last = page.locator("#timeline svg.chart-last")
        started = [bucket for bucket in data["last"]["buckets"] if bucket["started"]]
        assert 23 <= len(started) <= 24, data["last"]
        expect(last.locator("rect.chart-started")).to_have_count(len(started))
        expect(last.locator("rect.chart-late")).to_have_count(len(started))
        assert "aria-describedby" in last.evaluate("node => node.getAttributeNames().join(' ')")
        for selector in ("#timeline svg.chart-next", "#timeline svg.chart-last"):
            box = svg_box(page, selector)
            assert box["width"] > 600 and box["height"] > 100, (selector, box)

        page.click('#tasks tr[data-task="hourly-sync"]')
        strip = page.locator("#task-charts svg.chart-strip rect.chart-status")
        expect(strip).to_have_count(RUNS)
        expect(
            page.locator("#task-charts svg.chart-strip rect.chart-status-failure")
        ).to_have_count(len([index for index in range(RUNS) if index % 7 == 3]))
        chart = page.locator("#task-charts svg.chart-durations")
        expect(chart.locator("circle.chart-point")).to_have_count(RUNS)
        expect(chart.locator("line.chart-p50").first).to_be_attached()  # today's statistics
        expect(chart.locator("polyline.chart-line")).to_have_count(1)
        expect(page.locator("#task-charts .chart-caption").nth(1)).to_contain_text(
            f"the slowest {(400 + 150 * (RUNS - 1)) / 1000:.1f} s"
        )
        page.screenshot(path=str(tmp_path / "charts-1280.png"), full_page=True)
        page.locator("#task-charts").screenshot(path=str(tmp_path / "task-charts-1280.png"))
        page.locator("#timeline").screenshot(path=str(tmp_path / "timeline-1280.png"))

        # A change with new executions redraws the open task's charts.
        database = Database.open(f"sqlite:///{tmp_path / 'state.db'}")
        with database.session() as session:
            slot = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
            recent(session, "hourly-sync", slot, RUNS)
        database.dispose()
        page.evaluate(
            """() => document.dispatchEvent(new CustomEvent("reconciler:changed",
                 { detail: { topics: ["executions"] } }))"""
        )
        expect(strip).to_have_count(RUNS + 1)

        # 400 px wide: drawn again to the width, nothing wider than the window.
        page.set_viewport_size({"width": 400, "height": 900})
        expect(chart).to_be_visible()
        page.wait_for_function(
            "() => document.querySelector('#timeline svg.chart-next').viewBox.baseVal.width < 400"
        )
        for selector in (
            "#timeline svg.chart-next",
            "#timeline svg.chart-last",
            "#task-charts svg.chart-strip",
            "#task-charts svg.chart-durations",
        ):
            box = svg_box(page, selector)
            assert box["x"] >= 0 and box["x"] + box["width"] <= 400, (selector, box)
        widest = page.evaluate(
            """() => Math.max(...[...document.querySelectorAll('#timeline, #task-charts')]
                 .map((node) => node.scrollWidth))"""
        )
        assert widest <= 400
        page.screenshot(path=str(tmp_path / "charts-400.png"), full_page=True)
        page.locator("#task-charts").screenshot(path=str(tmp_path / "task-charts-400.png"))
        page.locator("#timeline").screenshot(path=str(tmp_path / "timeline-400.png"))
        assert errors == []
    assert (tmp_path / "charts-1280.png").stat().st_size > 10_000
    assert (tmp_path / "charts-400.png").stat().st_size > 5_000
