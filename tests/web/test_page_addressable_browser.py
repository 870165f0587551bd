"""The operator's page in headless Chromium on a real server (docs/page.md): what is shown
lives in the URL (reload, back and forward, shared links), the header at a glance, a
task's page, refreshing in place on ``reconciler:changed``, and small screens with
readable colours. Screenshots land in the test's tmp_path.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from reconciler.store.database import Database
from reconciler.store.tables import Task
from tests.web.test_page_browser import served_to_chromium
from tests.webseed import T0, add_execution, add_task

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def _add_rows(tmp_path: Path, work: Any) -> Any:
    """Run ``work(session)`` on the served state file (``seeded_state``'s)."""
    database = Database.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with database.session() as session:
            return work(session)
    finally:
        database.dispose()


def _closed_window_and_labels(session: Any) -> None:
    """A task whose active window ended, and labels on daily-report."""
    row = add_task(session, "spring-sale", owner="ops", next_run_at=None)
    row.spec = {**row.spec, "active": {"until": "2025-03-31"}}
    report = _task(session, "daily-report")
    report.spec = {**report.spec, "labels": {"team": "finance"}, "overlap": "skip"}


def _task(session: Any, name: str) -> Task:
    return session.scalars(select(Task).where(Task.name == name)).one()  # type: ignore[no-any-return]


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _wait_query(page: Page, expected: dict[str, str]) -> None:
    """Poll (bounded) until the page's URL query is exactly ``expected``."""
    want = {key: [value] for key, value in expected.items()}
    page.wait_for_function(
        "want => JSON.stringify([...new URLSearchParams(location.search)].sort())"
        " === JSON.stringify(Object.entries(want).sort())",
        arg={key: value[0] for key, value in want.items()},
        timeout=10_000,
    )
    assert _query(page) == want


def test_search_filter_sort_and_open_task_round_trip_through_the_url(tmp_path: Path) -> None:
    with served_to_chromium(tmp_path) as (base, browser):
        from playwright.sync_api import expect

        _add_rows(tmp_path, _closed_window_and_labels)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/")
        rows = page.locator("#tasks tbody tr[data-task]")
        expect(rows).to_have_count(4)

        # At a glance: sync, last apply, beats, workers and the counts by last status.
        expect(page.locator("#overview-sync")).to_have_text("in sync")
        expect(page.locator("#overview-apply")).to_contain_text("0123abc")
        expect(page.locator("#overview-apply")).to_contain_text("applied")
        expect(page.locator("#overview-beats")).to_have_text("0 of 1")
        expect(page.locator("#overview-counts .count-failure")).to_have_text("failure 1")
        # Disabled and out-of-window tasks stand out.
        expect(page.locator('tr[data-task="billing-async"]')).to_have_class(re.compile("disabled"))
        expect(page.locator('tr[data-task="billing-async"] .tag-disabled')).to_have_text("disabled")
        spring = page.locator('tr[data-task="spring-sale"]')
        expect(spring).to_have_class(re.compile("out-of-window"))
        expect(spring.locator(".tag-window")).to_have_text("outside its active window")
        # Times in the task's zone with the offset and a relative form; UTC on hover.
        next_run = page.locator('tr[data-task="daily-report"] td[data-label="Next run"] time')
        expect(next_run).to_have_text(re.compile(r"^2025-01-02 00:00:00 \+00:00 \(\d+ d ago\)$"))
        expect(next_run).to_have_attribute("title", "2025-01-02 00:00:00 UTC")

        # A filter by failure: from the header's count, into the URL.
        page.click("#overview-counts .count-failure")
        _wait_query(page, {"status": "failure"})
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-task", "daily-report")
        expect(page.locator("#filter-status")).to_have_value("failure")
        page.select_option("#filter-status", "")
        _wait_query(page, {})
        expect(rows).to_have_count(4)

        page.fill("#search", "report")
        _wait_query(page, {"q": "report"})
        expect(rows).to_have_count(1)
        page.fill("#filter-label", "team=finance")
        page.press("#filter-label", "Enter")
        _wait_query(page, {"q": "report", "label": "team=finance"})
        expect(rows).to_have_count(1)
        page.click('#tasks th[data-sort="name"] button')
        _wait_query(page, {"q": "report", "label": "team=finance", "sort": "-name"})
        page.click('#tasks tr[data-task="daily-report"] a.task-link')
        opened = {"q": "report", "label": "team=finance", "sort": "-name", "task": "daily-report"}
        _wait_query(page, opened)
        section = page.locator("#execution-section")
        expect(section).to_be_visible()
        expect(page.locator("#task-next li")).to_have_count(5)
        expect(page.locator("#task-definition")).to_contain_text("team=finance")
        expect(page.locator("#task-definition")).to_contain_text("skip")
        executions = page.locator("#executions tbody tr.exec-row")
        expect(executions).to_have_count(2)
        failed = executions.first.get_attribute("data-execution")
        assert failed is not None
        executions.first.click()
        _wait_query(page, {**opened, "execution": failed})
        traceback = page.locator("#executions pre.traceback")
        expect(traceback).to_contain_text("ValueError: boom")

        # Reload restores all of it.
        page.reload()
        expect(page.locator("#search")).to_have_value("report")
        expect(page.locator("#filter-label")).to_have_value("team=finance")
        expect(page.locator('#tasks th[data-sort="name"]')).to_have_class(re.compile("sorted-desc"))
        expect(rows).to_have_count(1)
        expect(section).to_be_visible()
        expect(traceback).to_contain_text("ValueError: boom")
        page.screenshot(path=str(tmp_path / "task-page.png"), full_page=True)

        # Back and forward walk the same states.
        page.go_back()
        _wait_query(page, opened)
        expect(traceback).to_have_count(0)
        expect(section).to_be_visible()
        page.go_back()
        _wait_query(page, {"q": "report", "label": "team=finance", "sort": "-name"})
        expect(section).to_be_hidden()
        page.go_back()
        _wait_query(page, {"q": "report", "label": "team=finance"})
        expect(page.locator('#tasks th[data-sort="name"]')).to_have_class(re.compile("sorted-asc"))
        page.go_back()
        _wait_query(page, {"q": "report"})
        expect(page.locator("#filter-label")).to_have_value("")
        page.go_back()
        _wait_query(page, {})
        expect(page.locator("#search")).to_have_value("")
        expect(rows).to_have_count(4)
        page.go_back()
        _wait_query(page, {"status": "failure"})
        expect(rows).to_have_count(1)
        for _ in range(5):
            page.go_forward()
        _wait_query(page, opened)
        expect(section).to_be_visible()
        expect(page.locator("#search")).to_have_value("report")

        # A shared link opens the task and the execution on a fresh page.
        other = browser.new_page(viewport={"width": 1280, "height": 900})
        other.goto(f"{base}/?task=daily-report&execution={failed}")
        expect(other.locator("#execution-section")).to_be_visible()
        expect(other.locator("#executions pre.traceback")).to_contain_text("ValueError: boom")
        expect(other.locator('#tasks tr[data-task="daily-report"]')).to_have_class(
            re.compile("selected")
        )
    assert (tmp_path / "task-page.png").stat().st_size > 10_000


def test_changes_refresh_the_list_executions_and_applies_in_place(tmp_path: Path) -> None:
    with served_to_chromium(tmp_path) as (base, browser):
        from playwright.sync_api import expect

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/?task=daily-report")
        executions = page.locator("#executions tbody tr.exec-row")
        expect(executions).to_have_count(2)
        executions.last.click()  # the success: its result opens
        expect(page.locator("#executions pre.result")).to_contain_text('"rows": 3')

        def succeed(session: Any) -> None:
            add_execution(session, "daily-report", queued_at=T0 + dt.timedelta(hours=6))
            _task(session, "daily-report").last_status = "success"

        _add_rows(tmp_path, succeed)
        page.evaluate(
            """() => document.dispatchEvent(new CustomEvent("reconciler:changed",
                 { detail: { topics: ["tasks", "executions", "applies"] } }))"""
        )
        expect(executions).to_have_count(3)
        expect(page.locator("#executions pre.result")).to_contain_text('"rows": 3')
        badge = page.locator('#tasks tr[data-task="daily-report"] .badge')
        expect(badge).to_have_text("success")
        expect(page.locator('#tasks tr[data-task="daily-report"]')).to_have_class(
            re.compile("selected")
        )
        expect(page.locator("#execution-section")).to_be_visible()


CONTRAST = """
() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (let at = node; at; at = at.parentElement) {
      const [r, g, b, a] = rgb(getComputedStyle(at).backgroundColor);
      if (a === undefined || a > 0) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const node = text.parentElement;
    if (!text.textContent.trim() || !node.checkVisibility()) continue;
    const a = lum(rgb(getComputedStyle(node).color));
    const b = lum(background(node));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const shown = text.textContent.trim().slice(0, 30);
    if (ratio < 4.5) low.push(`${node.tagName}.${node.className} "${shown}" ${ratio.toFixed(2)}`);
  }
  return low;
}
"""


def test_small_screens_contrast_favicon_and_focus(tmp_path: Path) -> None:
    with served_to_chromium(tmp_path) as (base, browser):
        from playwright.sync_api import expect

        _add_rows(tmp_path, _closed_window_and_labels)
        page = browser.new_page(viewport={"width": 400, "height": 800})
        page.goto(f"{base}/")
        expect(page.locator("#tasks tbody tr[data-task]")).to_have_count(4)
        expect(page.locator("#overview-counts .count")).to_have_count(3)
        width = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        scroll, client = page.evaluate(width)
        assert scroll <= client <= 400, (scroll, client)
        page.screenshot(path=str(tmp_path / "list-400.png"), full_page=True)
        assert page.evaluate(CONTRAST) == []

        page.click('#tasks tr[data-task="daily-report"] a.task-link')
        executions = page.locator("#executions tbody tr.exec-row")
        expect(executions).to_have_count(2)
        executions.first.click()
        expect(page.locator("#executions pre.traceback")).to_be_visible()
        scroll, client = page.evaluate(width)
        assert scroll <= client <= 400, (scroll, client)
        page.screenshot(path=str(tmp_path / "task-400.png"), full_page=True)
        assert page.evaluate(CONTRAST) == []

        # Keyboard focus is visible: the focused control has an outline.
        page.focus("#search")
        page.keyboard.press("Tab")
        outline = page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return [s.outlineStyle, s.outlineWidth]; }"
        )
        assert outline[0] != "none" and outline[1] != "0px", outline

        icon = page.locator('link[rel="icon"]').get_attribute("href")
        assert icon == "/static/favicon.svg"
        response = page.request.get(f"{base}{icon}")
        assert response.status == 200 and "<svg" in response.text()
    assert (tmp_path / "list-400.png").stat().st_size > 5_000
    assert (tmp_path / "task-400.png").stat().st_size > 5_000
