"""The page at ``/`` in headless Chromium (Debian's, driven by Playwright) on a real server.

Loads the page, gives the token it asks for, searches, sorts, opens a task's executions
and expands a failure's traceback; the screenshot lands in the test's tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.store.database import Database
from tests.conftest import missing
from tests.support import Process, reconcile_argv, wait_for
from tests.test_serve import free_port, healthy
from tests.webseed import TOKENS, seed_standard, tokens_yaml

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.browser


def test_page_search_sort_executions_and_traceback(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        missing(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    from playwright.sync_api import expect, sync_playwright

    url = f"sqlite:///{tmp_path / 'state.db'}"
    database = Database.open(url)
    with database.session() as session:
        seed_standard(session)
    database.dispose()
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = reconcile_argv(
        "serve",
        "--database-url",
        url,
        "--port",
        str(port),
        "--tokens-file",
        str(tmp_path / "tokens.yaml"),
    )
    with Process(argv, tmp_path / "serve.log"), sync_playwright() as playwright:
        wait_for(lambda: healthy(base), 30, message="reconcile serve to answer")
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/")
            # The API answered 401: the page asks for the token once.
            expect(page.locator("#login")).to_be_visible()
            page.fill("#token", TOKENS["root"])
            page.click("#login button")
            rows = page.locator("#tasks tbody tr")
            expect(rows).to_have_count(3)
            expect(page.locator("#applies tbody tr")).to_have_count(2)
            expect(rows.first).to_have_attribute("data-task", "billing-async")
            failure_badge = page.locator('#tasks tr[data-task="daily-report"] .status-failure')
            expect(failure_badge).to_have_text("failure")

            page.fill("#search", "revenue")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-task", "daily-report")
            page.fill("#search", "")
            expect(rows).to_have_count(3)

            page.click('#tasks th[data-sort="name"]')  # name ascending -> descending
            expect(rows.first).to_have_attribute("data-task", "ops-cleanup")
            page.click('#tasks th[data-sort="next_run"]')
            expect(rows.first).to_have_attribute("data-task", "ops-cleanup")
            expect(rows.last).to_have_attribute("data-task", "billing-async")

            page.click('#tasks tr[data-task="daily-report"]')
            executions = page.locator("#executions tbody tr.exec-row")
            expect(executions).to_have_count(2)
            expect(page.locator("#task-source")).to_contain_text("tasks.d/billing.yaml:3")
            executions.first.click()
            traceback = page.locator("#executions pre.traceback")
            expect(traceback).to_contain_text("ValueError: boom")
            href = page.locator("#executions-csv").get_attribute("href")
            assert href == "/api/v1/tasks/daily-report/executions?format=csv"
            # The token is kept for the session: a reload asks nothing.
            page.reload()
            expect(rows).to_have_count(3)
            expect(page.locator("#login")).to_be_hidden()
            page.click('#tasks tr[data-task="daily-report"]')
            executions.first.click()
            expect(traceback).to_be_visible()
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
