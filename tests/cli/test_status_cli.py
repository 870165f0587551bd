"""``reconcile status [NAME]``: the task list with runs, and the beat heartbeat."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert, select, text, update

from reconciler.cli import main
from reconciler.cli.status import UNREADABLE
from reconciler.store.database import Database
from reconciler.store.tables import BeatHeartbeat, Task, TaskExecution
from reconciler.web import create_app
from tests.factories import task_yaml, write_tasks
from tests.webseed import add_execution

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

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
                        finished_at=T0 + dt.timedelta(minutes=i + 1),
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
                    calendar_skipped_count=4,
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
        "calendar_skipped_count": 4,
        "last_success_at": "2026-01-05T13:01:00+01:00",
        "last_failure_at": "2026-01-05T13:02:00+01:00",
        "consecutive_failures": 1,
    }
    assert "Europe/Berlin" in berlin["schedule"]
    assert berlin["source"].endswith("berlin.yaml:1")
    assert tasks["every"]["schedule"] == "every 1h30m"
    assert tasks["every"]["enabled"] is False and tasks["every"]["next_run_at"] is None
    assert tasks["alpha"]["last_status"] is None


def test_status_text(seeded: str) -> None:
    result = run("status", "--database-url", seeded)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines.pop(0).startswith("in sync with ")  # the sync line opens it
    # The seeded heartbeat (of a beat older than the stable names: named by its instance).
    assert lines[0].startswith("Beats: none alive (is beat running?); not ticking: b1 (")
    assert lines[1] == "3 tasks"
    assert lines[3].split() == [
        "NAME", "TYPE", "SCHEDULE", "ENABLED", "OWNER", "SOURCE", "NEXT", "RUN", "LAST", "QUEUED",
        "LAST", "STATUS", "LAST", "SUCCESS",
    ]  # fmt: skip
    berlin = next(line for line in lines if line.startswith("berlin"))
    assert "2026-01-06 02:30:00 CET" in berlin
    assert berlin.endswith("failure (1 failed in a row, 3 skipped)  2026-01-05 13:01:00 CET")


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
    assert result.stdout == (
        "never applied: run 'reconcile' (or 'reconcile watch') on the task files\n"
        "Beats: none alive (is beat running?)\n0 tasks\n"
    )


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


def store_spec_text(database_url: str, name: str, spec: str) -> None:
    """Write a task's stored definition as raw JSON text, past the store's own writes."""
    db = Database.open(database_url)
    try:
        value = "CAST(:spec AS JSON)" if db.dialect == "postgresql" else ":spec"
        with db.session() as session:
            session.execute(
                text(f"UPDATE tasks SET spec = {value} WHERE name = :name"),
                {"spec": spec, "name": name},
            )
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("stored", "where"),
    [('["periodic"]', "definition"), ('{"name": "alpha", "type": "periodic"}', "owner")],
    ids=["not an object", "a field missing"],
)
def test_a_stored_definition_that_does_not_validate_is_shown_from_its_row(
    seeded: str, stored: str, where: str
) -> None:
    store_spec_text(seeded, "alpha", stored)
    listed = run("status", "--database-url", seeded)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    alpha = next(line for line in lines if line.startswith("alpha"))
    assert alpha.split()[:2] == ["alpha", "periodic"]  # the row's own columns
    assert UNREADABLE in alpha
    problem = lines[-1]
    assert problem.startswith(
        f"task 'alpha': its stored definition does not pass this version's checks ({where}: "
    )
    assert problem.endswith("); run `reconcile` to apply the task files again")

    one = run("status", "alpha", "--database-url", seeded, "--format", "json")
    assert one.exit_code == 0, one.output
    (task,) = json.loads(one.stdout)["tasks"]
    assert (task["type"], task["owner"], task["enabled"]) == ("periodic", "billing", True)
    assert (task["schedule"], task["problem"]) == (UNREADABLE, problem)


def test_last_queued_is_the_latest_execution_as_the_api_serves_it(seeded: str) -> None:
    """A manual run after the slot beat last fired: status and the API both show it."""
    db = Database.open(seeded)
    try:
        with db.session() as session:
            add_execution(
                session,
                "berlin",
                status="started",
                queued_at=T0 + dt.timedelta(hours=2),
                trigger="manual",
            )
        with TestClient(create_app(db)) as client:
            served = client.get("/api/v1/tasks/berlin").json()
    finally:
        db.dispose()
    result = run("status", "berlin", "--database-url", seeded, "--format", "json")
    (berlin,) = json.loads(result.stdout)["tasks"]
    assert (berlin["last_run_at"], berlin["last_status"]) == (
        "2026-01-05T15:00:00+01:00",
        "started",
    )
    assert served["last_status"] == "started"
    assert dt.datetime.fromisoformat(served["last_run"]) == dt.datetime.fromisoformat(
        berlin["last_run_at"]
    )
    text_line = next(
        line
        for line in run("status", "--database-url", seeded).stdout.splitlines()
        if line.startswith("berlin")
    )
    assert "2026-01-05 15:00:00 CET" in text_line
