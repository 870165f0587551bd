"""The page's out-of-sync banner in headless Chromium on a real server: a refused apply
shows it with its errors and its row in the apply log; the next applied attempt clears it
(docs/http-api.md, "The page")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.apply import InvalidTasks, reconcile
from reconciler.store.database import Database
from tests.factories import task_yaml, write_tasks
from tests.test_apply import git
from tests.web.test_page_browser import served_to_chromium

pytestmark = pytest.mark.browser


def test_the_banner_shows_an_out_of_sync_state_and_goes_when_applied(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tasks = repo / "tasks.d"
    write_tasks(tasks, ["daily-report"])
    (tasks / "bad.yaml").write_text(task_yaml("bad", crontab="61 * * * *", colour="red"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "broken")
    bad = git(repo, "rev-parse", "HEAD").strip()

    def attempt(allow_mass_delete: bool = False) -> None:
        """Apply the files to the served state (``seeded_state``'s file)."""
        database = Database.open(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            reconcile(database, tasks, allow_mass_delete=allow_mass_delete)
        finally:
            database.dispose()

    with served_to_chromium(tmp_path) as (base, browser):
        from playwright.sync_api import expect

        with pytest.raises(InvalidTasks) as invalid:
            attempt()
        errors = [str(d) for d in invalid.value.diagnostics]
        assert len(errors) == 2
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/")
        banner = page.locator("#sync-banner")
        expect(banner).to_be_visible()
        expect(page.locator("#sync-line")).to_have_text(
            re.compile(
                rf"^OUT OF SYNC: 2 errors at {bad[:7]} since \d{{4}}-\d\d-\d\d "
                r"\d\d:\d\d:\d\d UTC; last applied 0123abc$"
            )
        )
        expect(page.locator("#sync-errors li")).to_have_text(errors)
        applies = page.locator("#applies tbody tr")
        expect(applies).to_have_count(3)
        expect(applies.first).to_have_attribute("data-outcome", "invalid")
        expect(applies.first.locator(".outcome")).to_have_text("invalid: 2 errors")
        page.screenshot(path=str(tmp_path / "out-of-sync.png"), full_page=True)

        (tasks / "bad.yaml").unlink()
        attempt(allow_mass_delete=True)
        page.reload()
        expect(applies).to_have_count(4)
        expect(applies.first).to_have_attribute("data-outcome", "applied")
        expect(banner).to_be_hidden()
    assert (tmp_path / "out-of-sync.png").stat().st_size > 10_000
