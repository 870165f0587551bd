"""``reconcile history NAME``: newest first, filters, three formats, deleted and unknown names."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.store.database import Database
from reconciler.store.executions import (
    ExecutionUpdate,
    apply_updates,
)
from reconciler.store.tables import Task
from reconciler.vocabulary import Status

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
KEYS = [
    "id", "task", "celery_task_id", "trigger", "scheduled_for", "status", "args", "kwargs",
    "queued_at", "started_at", "finished_at", "duration_ms", "worker", "result", "error",
    "traceback", "retries",
]  # fmt: skip


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def add_task(database: Database, name: str, deleted: bool = False) -> None:
    with database.session() as session:
        session.add(
            Task(
                name=name, owner="ops", type="periodic", task="app.worker.test_celery",
                spec={"name": name, "task": "app.worker.test_celery"}, content_hash="0" * 64,
                created_at=T0, updated_at=T0, deleted_at=at(1000) if deleted else None,
            )
        )  # fmt: skip


def run(task: str, index: int, outcome: str, **values: Any) -> list[ExecutionUpdate]:
    """The steps of one execution queued ``index`` minutes after T0."""
    cid = f"{task}-{index}"
    start = index * 60
    steps = [
        ExecutionUpdate(cid, Status.PENDING, at(start), task_name=task, trigger="schedule",
                        args=["x"], kwargs={"region": "eu", "api_key": "k"}),
        ExecutionUpdate(cid, Status.STARTED, at(start + 1), task_name=task,
                        started_at=at(start + 1), worker="celery@host",
                        deadline_at=at(start + 3600)),
    ]  # fmt: skip
    if outcome != Status.STARTED:
        steps.append(
            ExecutionUpdate(cid, outcome, at(start + 3.5), task_name=task, worker="celery@host",
                            started_at=at(start + 1), duration_ms=2500, **values)
        )  # fmt: skip
    return steps


@pytest.fixture
def url(database_url: str) -> str:
    database = Database.open(database_url)
    add_task(database, "report")
    add_task(database, "gone", deleted=True)
    add_task(database, "quiet")
    with database.session() as session:
        apply_updates(session, run("report", 1, Status.SUCCESS, result={"rows": 3}))
        failure = {
            "error": "ValueError: no rows",
            "traceback": "Traceback (most recent ...\n  boom",
        }
        apply_updates(session, run("report", 2, Status.FAILURE, **failure))
        apply_updates(session, run("report", 3, Status.SUCCESS, result="=cmd|' /C calc'!A0"))
        apply_updates(session, run("report", 4, Status.STARTED))
        apply_updates(session, run("gone", 1, Status.SUCCESS, result=None))
    database.dispose()
    return database_url


def history(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["history", "--database-url", url, *args])


def test_json_is_a_list_of_the_documented_objects_newest_first(url: str) -> None:
    result = history(url, "report", "--format", "json")
    assert result.exit_code == 0, result.output
    executions = json.loads(result.output)
    assert [list(e) for e in executions] == [KEYS] * 4
    assert [e["celery_task_id"] for e in executions] == [f"report-{i}" for i in (4, 3, 2, 1)]
    first = executions[-1]
    assert first == {
        "id": first["id"],
        "task": "report",
        "celery_task_id": "report-1",
        "trigger": "schedule",
        "scheduled_for": None,
        "status": "success",
        "args": ["x"],
        "kwargs": {"region": "eu", "api_key": "***"},
        "queued_at": "2026-03-01T12:01:00+00:00",
        "started_at": "2026-03-01T12:01:01+00:00",
        "finished_at": "2026-03-01T12:01:03.500000+00:00",
        "duration_ms": 2500,
        "worker": "celery@host",
        "result": {"rows": 3},
        "error": None,
        "traceback": None,
        "retries": 0,
    }


def test_limit_and_status_filter(url: str) -> None:
    result = history(url, "report", "--format", "json", "--limit", "2")
    assert [e["celery_task_id"] for e in json.loads(result.output)] == ["report-4", "report-3"]
    result = history(url, "report", "--format", "json", "--status", "failure")
    assert [e["celery_task_id"] for e in json.loads(result.output)] == ["report-2"]
    result = history(url, "report", "--status", "lost")
    assert result.exit_code == 2
    assert "'lost' is not one of" in result.output


def test_text_shows_one_line_per_execution_and_the_latest_traceback(url: str) -> None:
    result = history(url, "report")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "ID", "QUEUED", "STATUS", "TRIGGER", "DURATION", "RETRIES", "WORKER", "OUTCOME"
    ]  # fmt: skip
    assert lines[1].split()[1:6] == ["2026-03-01", "12:04:00", "UTC", "started", "schedule"]
    assert "ValueError: no rows" in lines[3] and "2.5 s" in lines[3]
    assert '{"rows": 3}' in lines[4]
    assert "Latest traceback" in result.output and "boom" in result.output


def test_csv_has_a_header_and_neutralised_formulas(url: str) -> None:
    result = history(url, "report", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == KEYS
    assert len(rows) == 5
    assert rows[2][KEYS.index("result")] == "'=cmd|' /C calc'!A0"
    assert json.loads(rows[4][KEYS.index("kwargs")]) == {"region": "eu", "api_key": "***"}


def test_the_history_of_a_deleted_task_stays_readable(url: str) -> None:
    result = history(url, "gone", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [e["celery_task_id"] for e in json.loads(result.output)] == ["gone-1"]


def test_a_task_without_executions_is_not_an_error(url: str) -> None:
    result = history(url, "quiet")
    assert (result.exit_code, result.output) == (0, "quiet: no executions recorded yet\n")
    assert json.loads(history(url, "quiet", "--format", "json").output) == []


def test_an_unknown_name_without_history_exits_1_with_a_clear_message(url: str) -> None:
    result = history(url, "nope")
    assert result.exit_code == 1
    assert result.output == (
        "error: no task named 'nope' and no executions recorded under that name; "
        "'reconcile status' lists the tasks\n"
    )
