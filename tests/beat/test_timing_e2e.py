"""Calendars and spread with a real ``celery beat`` and worker on PostgreSQL and Redis: a
task whose calendar holds today does not fire and counts its slots as skipped; a spread
task's executions carry the times ``reconcile next`` shows, offset included."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.apply import reconcile
from reconciler.cli import main
from reconciler.store.database import Database
from tests.beatsupport import beat_process, executions, task_row
from tests.factories import task_yaml
from tests.support import Process, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def db(postgres_db: Database) -> Database:
    return postgres_db


def worker(tmp_path: Path, env: dict[str, str]) -> Process:
    argv = [
        sys.executable, "-m", "celery", "-A", "reconciler.demo:app", "worker", "-l", "info",
        "-P", "threads", "-c", "4", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return Process(argv, tmp_path / "worker.log", env=env, cwd=tmp_path)


def test_a_calendar_day_is_skipped_and_spread_slots_are_the_ones_next_shows(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    tasks = tmp_path / "tasks.d"
    (tasks / "calendars").mkdir(parents=True)
    # today and tomorrow, so a run across midnight (UTC) stays on the calendar
    (tasks / "calendars" / "closed.yaml").write_text(
        f"kind: calendar\nname: closed\ndates:\n  - {today.isoformat()}\n"
        f"  - {(today + dt.timedelta(days=1)).isoformat()}\n"
    )
    (tasks / "closed.yaml").write_text(task_yaml("closed-today", interval="1s", skip_on=["closed"]))
    # spread-c's offset of 4s is 2s (pinned by the name)
    (tasks / "spread.yaml").write_text(task_yaml("spread-c", interval="5s", spread="4s"))
    reconcile(db, tasks)
    shown = CliRunner().invoke(
        main,
        ["next", "spread-c", "-n", "3", "--format", "json", "--tasks-dir", str(tasks),
         "--database-url", postgres_url],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["spread_offset"] == "2s"
    anchor = task_row(db, "spread-c").schedule_anchor
    assert anchor is not None
    assert report["anchor"] == anchor.isoformat()
    expected = [dt.datetime.fromisoformat(text) for text in report["next"]]
    assert [(moment - anchor) % dt.timedelta(seconds=5) for moment in expected] == [
        dt.timedelta(seconds=2)
    ] * 3

    env = {"RECONCILER_DATABASE_URL": postgres_url, "RECONCILER_BROKER_URL": redis_url}
    consumer = worker(tmp_path, env)
    beat = beat_process(tmp_path, env, "beat")
    try:
        wait_for(
            lambda: (
                len(executions(db, "spread-c")) >= 3
                and task_row(db, "closed-today").calendar_skipped_count >= 3
            ),
            timeout=60,
            message="three spread executions and three skipped slots",
        )
        fired = sorted(
            row.scheduled_for for row in executions(db, "spread-c") if row.scheduled_for
        )[:3]
        ids = {row.celery_task_id for row in executions(db, "spread-c")}
        wait_for(
            lambda: ids <= set(consumer_runs(consumer)),
            timeout=30,
            message="the worker to run the spread executions",
        )
    finally:
        beat.stop()
        consumer.stop()
    assert fired == expected
    assert executions(db, "closed-today") == []
    assert task_row(db, "closed-today").missed_count == 0
    assert f"{today.isoformat()} is on calendar closed (skip_on)" in beat.output()


SUCCEEDED = re.compile(r"Task app\.worker\.test_celery\[([0-9a-f-]+)\] succeeded")


def consumer_runs(process: Process) -> list[str]:
    return SUCCEEDED.findall(process.output())
