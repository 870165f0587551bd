"""``reconcile status`` shows a task's spread offset, window and calendars, and says when
its window has ended (docs/task-files.md, "Spread, windows and calendars")."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.apply import reconcile
from reconciler.cli import main
from reconciler.store.database import Database
from tests.factories import task_yaml


def test_status_shows_spread_and_an_ended_window(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "cal.yaml").write_text("kind: calendar\nname: closed\ndates: [2026-12-25]\n")
    (tmp_path / "a.yaml").write_text(task_yaml("a", spread="10m", skip_on=["closed"]))
    (tmp_path / "old.yaml").write_text(task_yaml("old", active={"until": "2020-01-01"}))
    reconcile(db, tmp_path)
    result = CliRunner().invoke(
        main, ["status", "--database-url", database_url, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    tasks = {task["name"]: task for task in json.loads(result.stdout)["tasks"]}
    assert tasks["a"]["schedule"] == "At 01:00 (UTC); spread 10m (offset 2m23s); skip_on closed"
    assert "problem" not in tasks["a"]
    assert tasks["old"]["schedule"] == "At 01:00 (UTC); active until 2020-01-01"
    assert tasks["old"]["next_run_at"] is None
    assert tasks["old"]["problem"] == (
        "old: its active window ended (2020-01-01); it fires no more (move active.until or "
        "remove the task)"
    )
    text = CliRunner().invoke(main, ["status", "--database-url", database_url, "--wide"])
    assert "old: its active window ended (2020-01-01)" in text.stdout
