"""Rows for the read-side tests: tasks and executions inserted directly into the store.

Used by tests/store/test_queries.py, tests/test_web*.py, tests/web/test_serve.py and the browser
test, which need histories of a chosen shape without running beat or a worker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from benchmarks.seeding import spec_document
from reconciler.core.schedulefields import schedule_text
from reconciler.store.database import Database
from reconciler.store.tables import ApplyRecord, BeatHeartbeat, Task, TaskExecution

T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def add_task(
    session: Session,
    name: str,
    *,
    owner: str = "billing",
    type: str = "periodic",
    task: str = "app.worker.test_celery",
    description: str = "",
    enabled: bool = True,
    next_run_at: dt.datetime | None = None,
    deleted_at: dt.datetime | None = None,
    crontab: str | None = "0 1 * * *",
    kwargs: dict[str, Any] | None = None,
) -> Task:
    spec = spec_document(
        name,
        owner=owner,
        description=description,
        type=type,
        task=task,
        enabled=enabled,
        crontab=crontab,
        kwargs=kwargs,
    )
    row = Task(
        name=name,
        owner=owner,
        type=type,
        task=task,
        description=description,
        enabled=enabled,
        schedule_text=schedule_text(spec),
        timezone=spec["timezone"],
        spec=spec,
        content_hash=hashlib.sha256(name.encode()).hexdigest(),
        source_path=f"tasks.d/{owner}.yaml",
        source_line=3,
        version=1,
        change_seq=1,
        created_at=T0,
        updated_at=T0,
        deleted_at=deleted_at,
        schedule_anchor=T0,
        next_run_at=next_run_at,
        skipped_count=0,
        missed_count=0,
    )
    session.add(row)
    session.flush()
    return row


def add_execution(
    session: Session,
    task_name: str,
    *,
    status: str = "success",
    queued_at: dt.datetime = T0,
    kwargs: dict[str, Any] | None = None,
    result: Any = None,
    error: str | None = None,
    traceback: str | None = None,
    trigger: str = "schedule",
    worker: str | None = "worker-1",
    flush: bool = True,
) -> TaskExecution:
    finished = status in ("success", "failure", "revoked")
    row = TaskExecution(
        task_name=task_name,
        celery_task_id=str(uuid.uuid4()),
        trigger=trigger,
        scheduled_for=queued_at if trigger == "schedule" else None,
        status=status,
        args=["a"],
        kwargs=kwargs or {},
        queued_at=queued_at,
        started_at=queued_at + dt.timedelta(seconds=1) if status != "pending" else None,
        finished_at=queued_at + dt.timedelta(seconds=3) if finished else None,
        duration_ms=2000 if finished else None,
        worker=worker if status != "pending" else None,
        result=result,
        error=error,
        traceback=traceback,
        retries=1 if status == "retry" else 0,
    )
    session.add(row)
    if flush:
        session.flush()
    return row


def add_apply(
    session: Session,
    *,
    at: dt.datetime = T0,
    created: list[str] | None = None,
    deleted: list[str] | None = None,
) -> ApplyRecord:
    row = ApplyRecord(
        applied_at=at,
        created=len(created or []),
        updated=0,
        deleted=len(deleted or []),
        unchanged=0,
        created_names=created or [],
        updated_names=[],
        deleted_names=deleted or [],
        tasks_dir="tasks.d",
        git_commit="0123abc",
        git_dirty=False,
        duration_ms=12,
    )
    session.add(row)
    session.flush()
    return row


def add_heartbeat(session: Session, *, at: dt.datetime = T0) -> BeatHeartbeat:
    row = BeatHeartbeat(instance="beat-1", hostname="host", pid=1, started_at=at, last_tick_at=at)
    session.add(row)
    session.flush()
    return row


TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3\nValueError: boom'
TOKENS = {"alice": "alice-secret", "olga": "olga-secret", "root": "root-secret"}


def seeded_state(directory: Path) -> str:
    """The URL of a new SQLite state file in ``directory`` holding ``seed_standard``."""
    url = f"sqlite:///{directory / 'state.db'}"
    database = Database.open(url)
    with database.session() as session:
        seed_standard(session)
    database.dispose()
    return url


def seed_standard(session: Session) -> dict[str, int]:
    """Two owners' tasks, a deleted task with history, a failure with a traceback, applies.

    billing: daily-report (periodic), billing-async (async, disabled), old-report (deleted);
    ops: ops-cleanup. Returns the ids of a few executions by label.
    """
    h = dt.timedelta(hours=1)
    add_task(
        s := session, "daily-report", description="Nightly revenue report", next_run_at=T0 + 12 * h
    )
    add_task(s, "billing-async", type="async", enabled=False, crontab=None, task="app.api.tasks.x")
    add_task(s, "old-report", deleted_at=T0 + 5 * h)
    add_task(s, "ops-cleanup", owner="ops", description="Clean =tmp", next_run_at=T0 + 2 * h)
    ids = {
        "ok": add_execution(
            s,
            "daily-report",
            queued_at=T0,
            result={"rows": 3},
            kwargs={"region": "eu", "password": "hunter2"},
        ).id,
        "failed": add_execution(
            s,
            "daily-report",
            status="failure",
            queued_at=T0 + h,
            error="ValueError: boom",
            traceback=TRACEBACK,
        ).id,
        "old": add_execution(s, "old-report", queued_at=T0 + 2 * h).id,
        "ops": add_execution(
            s,
            "ops-cleanup",
            queued_at=T0 + 3 * h,
            result="=cmd|' /C calc'!A0",
            error="@SUM(1+1)*cmd|' /C calc'!A0",
            traceback="-2+3",
        ).id,
        "running": add_execution(s, "ops-cleanup", status="started", queued_at=T0 + 4 * h).id,
    }
    add_apply(session, at=T0, created=["daily-report", "ops-cleanup", "old-report"])
    add_apply(session, at=T0 + 5 * h, deleted=["old-report"])
    add_heartbeat(session, at=T0)
    return ids


def tokens_yaml() -> str:
    """A tokens file: alice owns billing, olga owns ops, root is an admin."""

    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    return (
        "tokens:\n"
        f"  - {{name: alice, sha256: {digest(TOKENS['alice'])}, owner: billing}}\n"
        f"  - {{name: olga, sha256: {digest(TOKENS['olga'])}, owner: ops}}\n"
        f"  - {{name: root, sha256: {digest(TOKENS['root'])}, admin: true}}\n"
    )


def backend_url(backend: str, directory: Path) -> Iterator[str]:
    """A database URL shared by a whole test module: a SQLite file, or a fresh PostgreSQL
    database dropped afterwards (creating one per test would cost seconds each)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'state.db'}"
        return
    from benchmarks.services import fresh_postgres
    from tests.conftest import missing, port_open

    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL is not listening on 127.0.0.1:5432")
    with fresh_postgres("rt") as url:
        yield url


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
