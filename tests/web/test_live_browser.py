"""The page follows changes without a reload, in headless Chromium on a real server
(docs/page.md, "Live"): a new execution shows in the open task and in the task list
within seconds; when the connection drops the page says it is paused, and it comes back
by itself with what changed meanwhile."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reconciler.store.database import Database
from tests.support import TcpProxy
from tests.web.test_page_browser import served_to_chromium
from tests.webseed import TOKENS, add_execution, tokens_yaml

pytestmark = pytest.mark.browser


def _executed(url: str, status: str) -> None:
    database = Database.open(url)
    with database.session() as session:
        add_execution(session, "daily-report", status=status, queued_at=dt.datetime.now(dt.UTC))
    database.dispose()


def test_a_new_execution_appears_and_a_dropped_connection_resumes(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    tokens = ("--tokens-file", str(tmp_path / "tokens.yaml"))
    with served_to_chromium(tmp_path, *tokens) as (base, browser):
        from playwright.sync_api import expect

        url = f"sqlite:///{tmp_path / 'state.db'}"  # the state file served_to_chromium seeds
        port = int(base.rsplit(":", 1)[1])
        with TcpProxy("127.0.0.1", port) as proxy:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{proxy.port}/")
            page.fill("#token", TOKENS["alice"])  # an owner's token, from sessionStorage
            page.click("#login button")
            status = page.locator("#live-status")
            expect(status).to_have_text("live", timeout=15_000)
            page.click('#tasks tr[data-task="daily-report"]')
            executions = page.locator("#executions tbody tr.exec-row")
            expect(executions).to_have_count(2)
            last = page.locator('#tasks tr[data-task="daily-report"] .badge')
            expect(last).to_have_text("failure")

            _executed(url, "success")
            expect(executions).to_have_count(3, timeout=5_000)
            expect(last).to_have_text("success", timeout=5_000)

            proxy.cut()
            expect(status).to_have_text("paused, retrying…", timeout=5_000)
            expect(status).to_have_attribute("data-state", "paused")
            _executed(url, "failure")
            proxy.restore()
            expect(status).to_have_text("live", timeout=20_000)
            expect(executions).to_have_count(4, timeout=5_000)
            expect(last).to_have_text("failure", timeout=5_000)
