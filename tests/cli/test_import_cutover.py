"""Cutting over from another scheduler: an imported periodic task carries its last run
there, and its first run here is the slot after it, not one at the apply.

The end-to-end test imports from django-celery-beat tables made by its own migrations,
applies to PostgreSQL and watches a real beat and worker over Redis fire the task.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from reconciler.store.database import Database
from tests.beat.test_beat_e2e import runs, worker
from tests.beatsupport import beat_process, executions, task_row
from tests.cli.test_import_sources import project, run, run_django, specs
from tests.support import wait_for

__all__ = ["project"]  # the fixture, used by name

EVERY = 6
"""Seconds between runs of the imported task: short, so its first slot comes soon."""

OLD_ROWS = f"""
every = IntervalSchedule.objects.create(every={EVERY}, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(
    name="Sync stock", task="app.worker.test_celery", interval=every,
    args=json.dumps(["cutover"]), last_run_at=now)
before = ClockedSchedule.objects.create(clocked_time=now - dt.timedelta(hours=1))
PeriodicTask.objects.create(
    name="launch", task="app.worker.test_celery", clocked=before, one_off=True)
hourly = CrontabSchedule.objects.create(minute="0", hour="*")
PeriodicTask.objects.create(
    name="once", task="app.worker.test_celery", crontab=hourly, one_off=True,
    last_run_at=now - dt.timedelta(minutes=30), total_run_count=1)
"""
"""An interval task with a last run, a clocked one-off in the past, and a one-off crontab
that ran: what beat's own saves and the admin leave in django-celery-beat's tables."""


def set_last_run(path: Path, name: str, moment: dt.datetime) -> None:
    """What django-celery-beat's beat writes when it sends a task (naive UTC on SQLite)."""
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE django_celery_beat_periodictask SET last_run_at = ? WHERE name = ?",
            (moment.replace(tzinfo=None).isoformat(sep=" "), name),
        )


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.redis
def test_cut_over_from_django_celery_beat_fires_at_the_next_slot_not_at_once(
    project: Path, postgres_db: Database, postgres_url: str, redis_url: str
) -> None:
    old_db = project / "django.db"
    old_url = f"sqlite:///{old_db}"
    run_django(old_url, OLD_ROWS)
    env = {"RECONCILER_DATABASE_URL": postgres_url, "RECONCILER_BROKER_URL": redis_url}
    consumer = worker(project, env)
    beat = beat_process(project, env, "beat")
    try:
        wait_for(lambda: "scheduling from" in beat.output(), 30, message="beat to start")
        # The old beat has just sent it, and is stopped: then import, apply.
        last = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
        set_last_run(old_db, "Sync stock", last)
        result = run("import", "--from", "django-celery-beat", old_url, "--owner", "ops")
        assert result.exit_code == 0, result.output
        applied = dt.datetime.now(dt.UTC)
        result = run("--database-url", postgres_url, "--tasks-dir", "tasks.d")
        assert result.exit_code == 0, result.output
        slot = last + dt.timedelta(seconds=EVERY)
        assert slot > applied + dt.timedelta(seconds=1), "the slot must come after the apply"
        row = task_row(postgres_db, "sync-stock")
        assert (row.schedule_anchor, row.next_run_at) == (last, slot)
        first = wait_for(
            lambda: [e for e in executions(postgres_db) if e.published_at is not None],
            timeout=30,
            message="the first run of the imported task",
        )[0]
        wait_for(lambda: first.celery_task_id in runs(consumer), 30, message="it to run")
    finally:
        beat.stop()
        consumer.stop()
    assert (first.task_name, first.scheduled_for) == ("sync-stock", slot)
    assert first.published_at is not None and first.published_at >= slot
    assert first.args == ["cutover"]
    # The one-offs came in disabled: nothing fired them.
    tasks = specs(project)
    assert [tasks[name].enabled for name in ("launch", "once")] == [False, False]
    assert {e.task_name for e in executions(postgres_db)} == {"sync-stock"}
    assert task_row(postgres_db, "launch").next_run_at is None


def test_the_last_run_is_written_for_periodic_tasks_and_starts_them_once(
    project: Path, sqlite_url: str
) -> None:
    payloads = [
        {"name": "poll", "task_type": "periodic", "celery_task_name": "app.poll",
         "interval_minutes": 10},
        {"name": "nightly", "task_type": "periodic", "celery_task_name": "app.n",
         "crontab_minute": "0", "crontab_hour": "2"},
        {"name": "now", "task_type": "once", "celery_task_name": "app.once"},
    ]  # fmt: skip
    (project / "old.json").write_text(json.dumps(payloads))
    last = "2026-03-04T10:07:00Z"
    result = run("import", "old.json", "--owner", "ops", "--last-run-from", last)
    assert result.exit_code == 0, result.output
    text = (project / "tasks.d" / "imported" / "poll.yaml").read_text()
    assert "# last_run: when it last ran there; its first run here is the slot after it" in text
    document = yaml.safe_load(text)
    assert document["last_run"] == dt.datetime(2026, 3, 4, 10, 7, tzinfo=dt.UTC)
    assert "last_run" not in yaml.safe_load((project / "tasks.d/imported/now.yaml").read_text())
    tasks = specs(project)
    assert tasks["poll"].last_run == tasks["nightly"].last_run == dt.datetime.fromisoformat(last)
    # never stored: the spec's JSON form (and its hash) leaves it out
    assert "last_run" not in tasks["poll"].canonical()

    # Before the apply, `next` counts from the last run, as the apply will.
    Database.open(sqlite_url).dispose()
    result = run("next", "poll", "-n", "1", "--from", "2026-03-04T10:10:00Z", "--format", "json",
                 "--database-url", sqlite_url, "--tasks-dir", "tasks.d")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["next"] == ["2026-03-04T10:17:00+00:00"]
    assert report["anchor_from"] == "last_run (the task is not applied yet)"
    # The apply counts the interval from the last run; a crontab's slot follows it too.
    result = run("--database-url", sqlite_url, "--tasks-dir", "tasks.d")
    assert result.exit_code == 0, result.output
    database = Database.open(sqlite_url)
    try:
        poll = task_row(database, "poll")
        anchor = dt.datetime(2026, 3, 4, 10, 7, tzinfo=dt.UTC)
        assert (poll.schedule_anchor, poll.next_run_at) == (
            anchor,
            anchor + dt.timedelta(minutes=10),
        )
        nightly = task_row(database, "nightly")
        assert nightly.next_run_at == dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC)
        # Only the creation counts from it: a changed last_run is no change to the row.
        (project / "tasks.d" / "imported" / "poll.yaml").write_text(
            text.replace("2026-03-04T10:07:00Z", "2026-03-05T10:07:00Z")
        )
        result = run("--database-url", sqlite_url, "--tasks-dir", "tasks.d", "--detailed-exitcode")
        assert result.exit_code == 0, result.output  # 0: no changes
        assert task_row(database, "poll").schedule_anchor == anchor
    finally:
        database.dispose()


def test_last_run_from_takes_now_or_a_past_time_and_fits_periodic_tasks_only(
    project: Path,
) -> None:
    payload = {"name": "poll", "task_type": "periodic", "celery_task_name": "app.poll",
               "interval_seconds": 30}  # fmt: skip
    (project / "old.json").write_text(json.dumps([payload]))
    for bad, message in [
        ("soon", "error: --last-run-from: 'soon' is not an ISO 8601 time or 'now' (write it "
                 "like 2026-03-04T10:00:00Z)\n"),
        ("2999-01-01T00:00:00Z", "error: --last-run-from: 2999-01-01T00:00:00Z is in the "
                                 "future; give when it last ran\n"),
    ]:  # fmt: skip
        result = run("import", "old.json", "--owner", "ops", "--last-run-from", bad)
        assert (result.exit_code, result.stderr) == (2, message)
    before = dt.datetime.now(dt.UTC)
    result = run("import", "old.json", "--owner", "ops", "--last-run-from", "now", "--format",
                 "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    written = dt.datetime.fromisoformat(json.loads(result.stdout)["imported"][0]["last_run_at"])
    assert before <= written <= dt.datetime.now(dt.UTC)
    (project / "tasks.d" / "one.yaml").write_text(
        "name: one\nowner: ops\ntype: scheduled\ntask: app.t\nat: 2030-01-01T00:00:00Z\n"
        "last_run: 2026-01-01T00:00:00Z\n"
    )
    result = run("validate", "--tasks-dir", "tasks.d")
    assert result.exit_code == 1
    assert "last_run: is for periodic tasks, not 'scheduled'" in result.output
