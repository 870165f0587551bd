"""Per-task health served: the task list, detail, status and CSV, the page's data, and the
per-task metrics, on SQLite and PostgreSQL. An owner's token sees the health of the
executions that ran under its owner, as it sees its own last run."""

from __future__ import annotations

import csv
import datetime as dt
import io
import warnings
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, update

from reconciler.store.database import Database
from reconciler.store.tables import Task
from reconciler.web import create_app
from reconciler.web.metrics import task_health_text
from reconciler.web.tokens import load_tokens
from tests.webseed import T0, TOKENS, add_execution, add_task, tokens_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

H = dt.timedelta(hours=1)
S3 = dt.timedelta(seconds=3)  # add_execution finishes each execution 3 s after its queue time
ROOT = {"Authorization": f"Bearer {TOKENS['root']}"}
OLGA = {"Authorization": f"Bearer {TOKENS['olga']}"}  # owner ops


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def seed(database: Database) -> None:
    """``payroll`` succeeds and fails under billing, moves to ops and fails there once;
    ``idle`` (ops) never ran; ``late`` (ops) has a pending and a started execution."""
    with database.session() as session:
        add_task(session, "payroll", owner="billing")
        add_execution(session, "payroll", status="success", queued_at=T0)
        add_execution(session, "payroll", status="failure", queued_at=T0 + H)
        session.execute(update(Task).where(Task.name == "payroll").values(owner="ops"))
        add_execution(session, "payroll", status="failure", queued_at=T0 + 2 * H)
        add_execution(session, "payroll", status="revoked", queued_at=T0 + 3 * H)
        add_task(session, "idle", owner="ops")
        add_task(session, "late", owner="ops")
        add_execution(session, "late", status="pending", queued_at=T0 + 5 * H)
        add_execution(session, "late", status="pending", queued_at=T0 + 6 * H)
        add_execution(session, "late", status="started", queued_at=T0 + 4 * H)
        session.execute(
            update(Task)
            .where(Task.name == "late")
            .values(missed_count=2, skipped_count=5, calendar_skipped_count=7)
        )


def health(task: dict[str, Any]) -> tuple[Any, Any, Any]:
    return task["last_success_at"], task["last_failure_at"], task["consecutive_failures"]


ADMIN_PAYROLL = (iso(T0 + S3), iso(T0 + 2 * H + S3), 2)
OPS_PAYROLL = (None, iso(T0 + 2 * H + S3), 1)  # billing's success and failure are not ops'


def test_the_api_serves_each_tasks_health(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(tokens_yaml())
    database = Database.open(database_url)
    seed(database)
    try:
        with TestClient(
            create_app(database, tokens=load_tokens(tmp_path / "tokens.yaml"))
        ) as client:
            for who, expected in ((ROOT, ADMIN_PAYROLL), (OLGA, OPS_PAYROLL)):
                listed = client.get("/api/v1/tasks/", headers=who).json()["items"]
                by_name = {task["name"]: health(task) for task in listed}
                assert by_name == {"idle": (None, None, 0), "late": (None, None, 0),
                                   "payroll": expected}  # fmt: skip
                detail = client.get("/api/v1/tasks/payroll", headers=who).json()
                assert health(detail) == expected
                status = client.get("/api/v1/tasks/payroll/status", headers=who).json()
                assert health(status) == expected
            late = client.get("/api/v1/tasks/late", headers=ROOT).json()
            counts = ("skipped_count", "missed_count", "calendar_skipped_count")
            assert [late[key] for key in counts] == [5, 2, 7]

            exported = client.get("/api/v1/tasks/?format=csv", headers=ROOT).text
            rows = {row["name"]: row for row in csv.DictReader(io.StringIO(exported))}
            assert (rows["payroll"]["consecutive_failures"], rows["idle"]["last_success_at"]) == (
                "2",
                "",
            )
            assert rows["payroll"]["last_failure_at"].startswith("2025-01-01")

            metrics = families(client.get("/metrics", headers=OLGA).text)
            assert metrics["reconciler_task_consecutive_failures"] == {
                ("payroll", "ops"): 1.0, ("idle", "ops"): 0.0, ("late", "ops"): 0.0
            }  # fmt: skip
            assert "reconciler_task_last_success_timestamp_seconds" not in metrics  # none of ops
            assert families(client.get("/metrics", headers=ROOT).text)[
                "reconciler_task_last_success_timestamp_seconds"
            ] == {("payroll", "ops"): (T0 + S3).timestamp()}
    finally:
        database.dispose()


def families(text: str) -> dict[str, dict[tuple[str, str], float]]:
    """Per-task samples of the exposition: family -> (task, owner) -> value."""
    found: dict[str, dict[tuple[str, str], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "task" in sample.labels and "owner" in sample.labels:
                key = (sample.labels["task"], sample.labels["owner"])
                found.setdefault(sample.name, {})[key] = sample.value
    return found


def test_the_per_task_metrics_are_one_query(database_url: str) -> None:
    database = Database.open(database_url)
    seed(database)
    now = T0 + 10 * H
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "tasks" in statement:
            statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        text = task_health_text(database, None, now).decode()
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
        database.dispose()
    assert len(statements) == 1, statements
    metrics = families(text)
    late, payroll = ("late", "ops"), ("payroll", "ops")
    # The oldest pending was queued 5 h after T0; the started one began 4 h and 1 s after.
    assert metrics["reconciler_task_oldest_pending_age_seconds"][late] == 5 * 3600
    assert metrics["reconciler_task_longest_running_seconds"][late] == 6 * 3600 - 1
    assert metrics["reconciler_task_oldest_pending_age_seconds"][payroll] == 0
    assert metrics["reconciler_task_slots_missed_total"][late] == 2
    assert metrics["reconciler_task_slots_skipped_total"][late] == 5
    assert metrics["reconciler_task_slots_calendar_skipped_total"][late] == 7
    assert metrics["reconciler_task_last_failure_timestamp_seconds"][payroll] == (
        (T0 + 2 * H + S3).timestamp()
    )
    assert metrics["reconciler_task_consecutive_failures"][payroll] == 2
    assert ("idle", "ops") not in metrics["reconciler_task_last_failure_timestamp_seconds"]
    assert "# TYPE reconciler_task_slots_missed_total counter" in text
