"""The page at ``/`` in headless Chromium (Debian's, driven by Playwright) on a real server.

Loads the page, gives the token it asks for, searches, sorts, opens a task's executions
and expands a failure's traceback; the screenshot lands in the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import missing
from tests.webseed import TOKENS, seeded_state, tokens_yaml
from tests.webserve import serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Response

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def served_to_chromium(tmp_path: Path, *options: str) -> Iterator[tuple[str, Browser]]:
    """``reconcile serve`` with ``options`` on the seeded store, and headless Chromium: the
    server's base URL and the browser, closed on the way out."""
    if not os.path.exists(CHROMIUM):
        missing(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    from playwright.sync_api import sync_playwright

    url = seeded_state(tmp_path)
    with serving(url, tmp_path / "serve.log", *options) as (base, _), sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield base, browser
        finally:
            browser.close()


def test_page_search_sort_executions_and_traceback(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    tokens = ("--tokens-file", str(tmp_path / "tokens.yaml"))
    with served_to_chromium(tmp_path, *tokens) as (base, browser):
        from playwright.sync_api import expect

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
        health = page.locator('#tasks tr[data-task="daily-report"] td.health .failing')
        expect(health).to_have_text("1 failed in a row")

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
        expect(page.locator("#task-health")).to_have_text(
            re.compile(
                r"^last success 2025-01-01 12:00:03 \+00:00 \(\d+ d ago\) · last failure "
                r"2025-01-01 13:00:03 \+00:00 \(\d+ d ago\) · 1 failure\(s\) in a row$"
            )
        )
        executions.first.click()
        traceback = page.locator("#executions pre.traceback")
        expect(traceback).to_contain_text("ValueError: boom")
        href = page.locator("#executions-csv").get_attribute("href")
        assert href == "/api/v1/tasks/daily-report/executions?format=csv"
        # The token is kept for the session: a reload asks nothing.
        page.reload()
        expect(rows).to_have_count(3)
        expect(page.locator("#login")).to_be_hidden()
        # The open task and execution are in the URL (docs/page.md): the reload shows them.
        expect(traceback).to_be_visible()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


def test_page_works_under_its_security_headers(tmp_path: Path) -> None:
    """Served as ``make run`` serves it (no tokens, so loopback names only): the page and
    its script carry the headers, it lists and opens tasks with no policy violation, an
    injected inline script does not run, and another site cannot frame it."""
    with served_to_chromium(tmp_path) as (base, browser):
        from playwright.sync_api import expect

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.add_init_script(VIOLATIONS)
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        responses: dict[str, Response] = {}

        def keep(response: Response) -> None:
            responses.setdefault(response.url, response)

        page.on("response", keep)
        document = page.goto(f"{base}/")
        assert document is not None and document.status == 200
        rows = page.locator("#tasks tbody tr")
        expect(rows).to_have_count(3)
        page.click('#tasks tr[data-task="daily-report"]')
        executions = page.locator("#executions tbody tr.exec-row")
        expect(executions).to_have_count(2)
        executions.first.click()
        expect(page.locator("#executions pre.traceback")).to_contain_text("ValueError: boom")
        expect(page.locator("#applies tbody tr")).to_have_count(2)

        for path in ("/", "/static/app.js", "/static/style.css", "/api/v1/tasks/"):
            headers = next(r for u, r in responses.items() if u.split("?")[0] == base + path)
            fields = headers.all_headers()
            policy = fields["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
            assert fields["x-content-type-options"] == "nosniff", path
            assert fields["x-frame-options"] == "DENY", path
            assert fields["referrer-policy"] == "no-referrer", path
        assert page.evaluate("window.__violations") == []
        assert not [line for line in console if "Content Security Policy" in line], console

        # The policy holds: a script injected into the page does not run.
        ran = page.evaluate(
            """() => {
              const script = document.createElement("script");
              script.textContent = "window.__injected = true";
              document.body.append(script);
              return window.__injected === true;
            }"""
        )
        assert ran is False
        expect(page.locator("body")).to_be_visible()
        violations = page.evaluate("window.__violations")
        assert violations and violations[0].startswith("script-src"), violations

        # Another page cannot frame it: the browser refuses and says why.
        framing = browser.new_page()
        with framing.expect_console_message(
            lambda message: "frame-ancestors" in message.text, timeout=10_000
        ):
            framing.set_content(f'<iframe id="framed" src="{base}/"></iframe>')
        expect(framing.frame_locator("#framed").locator("#tasks")).to_have_count(0)
