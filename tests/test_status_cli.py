"""``reconcile status [NAME]``: the task list with runs, and the beat heartbeat."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert, select, update

from reconciler.cli import main
from reconciler.store.database import Database
from reconciler.store.tables import BeatHeartbeat, Task, TaskExecution
from tests.test_apply import task_yaml, write_tasks

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def seeded(tmp_path: Path, database_url: str) -> str:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["alpha", "gone"])
    (tasks / "berlin.yaml").write_text(
        task_yaml("berlin", crontab="30 2 * * *", timezone="Europe/Berlin", owner="ops")
    )
    (tasks / "every.yaml").write_text(
        task_yaml("every", crontab=None, interval={"hours": 1, "minutes": 30}, enabled=False)
    )
    assert run("--tasks-dir", str(tasks), "--database-url", database_url).exit_code == 0
    (tasks / "gone.yaml").unlink()
    assert run("--tasks-dir", str(tasks), "--database-url", database_url).exit_code == 0
    db = Database.open(database_url)
    try:
        with db.session() as session:
            for i, status in enumerate(["success", "failure"]):
                session.execute(
                    insert(TaskExecution).values(
                        task_name="berlin",
                        celery_task_id=f"c{i}",
                        trigger="schedule",
                        status=status,
                        args=[],
                        kwargs={},
                        queued_at=T0,
                        retries=0,
                    )
                )
            session.execute(
                update(Task)
                .where(Task.name == "berlin")
                .values(
                    next_run_at=dt.datetime(2026, 1, 6, 1, 30, tzinfo=dt.UTC),
                    last_run_at=T0,
                    skipped_count=3,
                )
            )
            session.execute(
                insert(BeatHeartbeat).values(
                    instance="b1", hostname="h", pid=1, started_at=T0, last_tick_at=T0
                )
            )
    finally:
        db.dispose()
    return database_url


def test_status_json(seeded: str) -> None:
    result = run("status", "--database-url", seeded, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["beat"]["last_tick_at"] == "2026-01-05T12:00:00+00:00"
    assert data["beat"]["age_seconds"] > 0
    tasks = {task["name"]: task for task in data["tasks"]}
    assert sorted(tasks) == ["alpha", "berlin", "every"]
    berlin = tasks["berlin"]
    assert berlin == {
        "name": "berlin",
        "type": "periodic",
        "schedule": berlin["schedule"],
        "enabled": True,
        "owner": "ops",
        "source": berlin["source"],
        "next_run_at": "2026-01-06T02:30:00+01:00",
        "last_run_at": "2026-01-05T13:00:00+01:00",
        "last_status": "failure",
        "skipped_count": 3,
        "missed_count": 0,
    }
    assert "Europe/Berlin" in berlin["schedule"]
    assert berlin["source"].endswith("berlin.yaml:1")
    assert tasks["every"]["schedule"] == "every 1 hour 30 minutes"
    assert tasks["every"]["enabled"] is False and tasks["every"]["next_run_at"] is None
    assert tasks["alpha"]["last_status"] is None


def test_status_text(seeded: str) -> None:
    result = run("status", "--database-url", seeded)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Beat heartbeat: ") and lines[0].endswith(" s ago")
    assert lines[1] == "3 tasks"
    assert lines[3].split() == [
        "NAME", "TYPE", "SCHEDULE", "ENABLED", "OWNER", "SOURCE", "NEXT", "RUN", "LAST", "RUN",
        "STATUS",
    ]  # fmt: skip
    berlin = next(line for line in lines if line.startswith("berlin"))
    assert "2026-01-06 02:30:00 CET" in berlin
    assert berlin.endswith("failure (3 skipped)")


def test_status_of_one_task_and_unknown_names(seeded: str) -> None:
    one = run("status", "berlin", "--database-url", seeded)
    assert one.exit_code == 0, one.output
    assert "owner:          ops" in one.stdout
    assert "last_status:    failure" in one.stdout
    unknown = run("status", "nope", "--database-url", seeded)
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: no task named 'nope'; 'reconcile status' lists them\n"
    deleted = run("status", "gone", "--database-url", seeded)
    assert deleted.exit_code == 1
    assert "was deleted from the task files; its history is kept" in deleted.stderr


def test_status_without_beat(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = run("status", "--database-url", url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Beat heartbeat: none recorded (is beat running?)\n0 tasks\n"


def _store_an_older_versions_spec(database_url: str, name: str) -> None:
    """A definition an older version stored: its zone is one this version refuses."""
    db = Database.open(database_url)
    try:
        with db.session() as session:
            spec = session.scalar(select(Task.spec).where(Task.name == name))
            assert spec is not None
            session.execute(
                update(Task).where(Task.name == name).values(spec={**spec, "timezone": "localtime"})
            )
    finally:
        db.dispose()


def test_a_stored_definition_this_version_refuses_is_named_not_a_traceback(
    seeded: str,
) -> None:
    _store_an_older_versions_spec(seeded, "alpha")
    listed = run("status", "--database-url", seeded)
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if line.startswith("alpha"))
    assert "unreadable: apply the task files again" in line
    assert any(line.startswith("berlin") for line in listed.output.splitlines())

    one = run("status", "alpha", "--database-url", seeded, "--format", "json")
    assert one.exit_code == 0, one.output
    (task,) = json.loads(one.output)["tasks"]
    assert task["problem"].startswith("task 'alpha': its stored definition does not pass")
    assert "timezone" in task["problem"]
