"""``reconcile prune``, the statistics of ``reconcile status NAME``, the stats route and
metrics, and beat's pruning thread, on a database whose executions are days old."""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from reconciler.beat.pruning import PruneThread
from reconciler.cli import main
from reconciler.store.database import Database
from reconciler.store.tables import TaskExecution
from reconciler.web import create_app
from tests.webseed import add_execution, add_task

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


def seed(url: str) -> Database:
    """Task ``a`` keeps 5 days; one success a day for the last 20 days, and one failure."""
    database = Database.open(url)
    with database.session() as session:
        row = add_task(session, "a")
        row.spec = {**row.spec, "history": {"keep_days": 5}}
        add_task(session, "b")
        for n in range(20, 0, -1):
            add_execution(session, "a", queued_at=NOW - n * DAY, flush=False)
        add_execution(
            session, "a", status="failure", queued_at=NOW - 19 * DAY + dt.timedelta(hours=1)
        )
        add_execution(session, "b", queued_at=NOW - 3 * DAY)
    return database


def count(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(TaskExecution)) or 0)


def test_prune_by_hand_dry_run_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    database = seed(url)
    runner = CliRunner()
    try:
        dry = runner.invoke(main, ["prune", "--dry-run", "--database-url", url])
        assert dry.exit_code == 0, dry.output
        # 20 daily successes of a, 16 of them 5 days old or more; the failure stays.
        assert dry.output.startswith("Would remove 16 execution(s) of 1 task(s).")
        assert "\na    " in dry.output
        assert count(database) == 22

        one = runner.invoke(
            main, ["prune", "--task", "b", "--format", "json", "--database-url", url]
        )
        assert json.loads(one.output)["executions"] == 0

        done = runner.invoke(main, ["prune", "--format", "json", "--database-url", url])
        assert done.exit_code == 0, done.output
        report = json.loads(done.output)
        assert report["executions"] == 16 and report["tasks"][0]["task"] == "a"
        assert report["tasks"][0]["rows"] == 16 and report["finished"] is True
        assert count(database) == 6

        unknown = runner.invoke(main, ["prune", "--task", "nope", "--database-url", url])
        assert unknown.exit_code == 1 and "no task named 'nope'" in unknown.output

        status = runner.invoke(main, ["status", "a", "--database-url", url])
        assert status.exit_code == 0, status.output
        assert "Last 7 days (UTC):" in status.output
        assert f"  {(NOW - DAY).date().isoformat()}        1        0        0" in status.output
    finally:
        database.dispose()


def test_the_stats_route_and_metrics_serve_days_gone_from_the_history(database_url: str) -> None:
    database = seed(database_url)
    try:
        runner = CliRunner()
        assert runner.invoke(main, ["prune", "--database-url", database_url]).exit_code == 0
        with TestClient(create_app(database)) as client:
            body: dict[str, Any] = client.get("/api/v1/tasks/a/stats?days=30").json()
            assert client.get("/api/v1/tasks/nope/stats").status_code == 404
            assert client.get("/api/v1/tasks/a/stats?days=0").status_code == 422
            metrics = client.get("/metrics").text
        # Every day's success is still counted, pruned or not, and the failure.
        assert (body["successes"], body["failures"], body["revoked"]) == (20, 1, 0)
        first = body["days"][0]
        assert first["day"] == (NOW - 20 * DAY).date().isoformat()
        assert first["successes"] == 1 and first["duration_p50_ms"] == 2000.0
        samples = {
            (
                s.name,
                s.labels.get("task"),
                s.labels.get("status") or s.labels.get("quantile"),
            ): s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
            if s.name.startswith("reconciler_task_day")
        }
        assert samples[("reconciler_task_day_executions", "a", "success")] == 1
        assert samples[("reconciler_task_day_duration_seconds", "a", "0.95")] == 2.0
    finally:
        database.dispose()


def test_beat_prunes_on_its_own_thread(database_url: str) -> None:
    database = seed(database_url)
    pruner = PruneThread(database_url, every=0.1, default_days=90)
    pruner.start()
    try:
        deadline = time.monotonic() + 30
        while count(database) > 6:
            assert time.monotonic() < deadline, "beat's pruner removed nothing in 30 s"
            time.sleep(0.1)
    finally:
        pruner.stop(5)
        database.dispose()
    assert pruner.last is None or pruner.last.busy is False


def test_the_default_retention_comes_from_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    database = seed(url)
    runner = CliRunner()
    try:
        monkeypatch.setenv("RECONCILER_HISTORY_KEEP", "ninety")
        bad = runner.invoke(main, ["prune", "--dry-run", "--database-url", url])
        assert bad.exit_code != 0 and "Traceback" not in bad.output
        assert "RECONCILER_HISTORY_KEEP: 'ninety' is not a number of days" in bad.output
        # b sets no history: at 2 days its one execution (3 days old) is expired, but it is
        # b's latest, so it stays; a keeps 5 days whatever the environment says.
        monkeypatch.setenv("RECONCILER_HISTORY_KEEP", "2d")
        two = runner.invoke(main, ["prune", "--dry-run", "--format", "json", "--database-url", url])
        assert [t["task"] for t in json.loads(two.output)["tasks"]] == ["a"]
    finally:
        database.dispose()
