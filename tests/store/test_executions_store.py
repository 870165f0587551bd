"""The write side of task_executions on SQLite and PostgreSQL: ordering rules and the reaper.

Each row of ``SEQUENCES`` is a series of steps as they might reach the database from
several processes, and the state the row must end in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from reconciler.store.database import Database
from reconciler.store.executions import (
    LOST_REASON,
    ExecutionUpdate,
    apply_updates,
    reap_lost,
    upsert,
)
from reconciler.store.managed import managed_tasks, pick_by_arguments
from reconciler.store.tables import Task, TaskExecution
from reconciler.vocabulary import Status

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
ID = "0b7c8d2e-0000-4000-8000-000000000001"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def pending(trigger: str = "schedule") -> ExecutionUpdate:
    return ExecutionUpdate(ID, Status.PENDING, at(0), task_name="report", trigger=trigger, args=[1])


def started(retries: int = 0, second: float = 1, worker: str = "celery@a") -> ExecutionUpdate:
    return ExecutionUpdate(
        ID,
        Status.STARTED,
        at(second),
        task_name="report",
        retries=retries,
        started_at=at(second),
        worker=worker,
        deadline_at=at(second + 60),
    )


def retry(retries: int, second: float = 2) -> ExecutionUpdate:
    return ExecutionUpdate(
        ID,
        Status.RETRY,
        at(second),
        task_name="report",
        retries=retries,
        error=f"Boom: try {retries}",
    )


def success(second: float = 3, retries: int = 0) -> ExecutionUpdate:
    return ExecutionUpdate(
        ID,
        Status.SUCCESS,
        at(second),
        task_name="report",
        retries=retries,
        started_at=at(1),
        worker="celery@a",
        result={"ok": True},
        duration_ms=2000,
    )


def failure(second: float = 3, error: str = "ValueError: bad") -> ExecutionUpdate:
    return ExecutionUpdate(
        ID, Status.FAILURE, at(second), task_name="report", error=error, traceback="Traceback ..."
    )


def revoked(second: float = 3) -> ExecutionUpdate:
    return ExecutionUpdate(ID, Status.REVOKED, at(second), task_name="report", error="revoked")


def row(db: Database) -> TaskExecution:
    with db.session() as session:
        found = session.scalar(select(TaskExecution).where(TaskExecution.celery_task_id == ID))
        assert found is not None
        return found


# (label, steps in arrival order, expected status, expected retries, expected trigger)
SEQUENCES: list[tuple[str, list[ExecutionUpdate], str, int, str]] = [
    ("in order", [pending(), started(), success()], Status.SUCCESS, 0, "schedule"),
    ("success before started", [pending(), success(), started()], Status.SUCCESS, 0, "schedule"),
    ("started before pending", [started(), pending(), success()], Status.SUCCESS, 0, "external"),
    ("everything before pending", [success(), started(), pending()], Status.SUCCESS, 0, "external"),
    ("failure is final", [pending(), started(), failure(), started(second=5)], Status.FAILURE, 0,
     "schedule"),
    ("revoked before start", [pending(), revoked(), started()], Status.REVOKED, 0, "schedule"),
    ("revoked then success", [pending(), revoked(), success()], Status.REVOKED, 0, "schedule"),
    ("success then failure", [pending(), success(), failure()], Status.SUCCESS, 0, "schedule"),
    ("retry in order", [pending(), started(), retry(1), started(1, 3), retry(2),
                        started(2, 5), success(6, 2)], Status.SUCCESS, 2, "schedule"),
    ("late retry after next start", [pending(), started(), started(1, 3), retry(1)],
     Status.STARTED, 1, "schedule"),
    ("retry after its own start", [pending(), started(1, 3), retry(2, 4)], Status.RETRY, 2,
     "schedule"),
    ("stale start after retry", [pending(), retry(1), started(0)], Status.RETRY, 1, "schedule"),
    ("duplicate steps", [pending(), pending(), started(), started(), success(), success()],
     Status.SUCCESS, 0, "schedule"),
    ("pending never overwrites", [pending("manual"), pending("external")], Status.PENDING, 0,
     "manual"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "status", "retries", "trigger"),
    [pytest.param(steps, s, r, t, id=label) for label, steps, s, r, t in SEQUENCES],
)
def test_steps_arriving_in_any_order_only_move_a_row_forward(
    db: Database, steps: list[ExecutionUpdate], status: str, retries: int, trigger: str
) -> None:
    for step in steps:  # each step its own transaction, as from different processes
        with db.session() as session:
            upsert(session, step)
    found = row(db)
    assert (found.status, found.retries, found.trigger) == (status, retries, trigger)


@pytest.mark.parametrize(
    "steps",
    [
        [pending(), started(), success()],
        [success(), started(), pending()],
        [started(), success(), pending()],
    ],
    ids=["in order", "reversed", "mixed"],
)
def test_a_success_records_every_field(db: Database, steps: list[ExecutionUpdate]) -> None:
    for step in steps:
        with db.session() as session:
            upsert(session, step)
    found = row(db)
    assert found.status == Status.SUCCESS
    assert found.started_at == at(1)
    assert found.finished_at == at(3)
    assert found.duration_ms == 2000
    assert found.worker == "celery@a"
    assert found.result == {"ok": True}
    assert found.error is None
    assert found.deadline_at is None


def test_one_batch_is_applied_in_the_natural_order_whatever_its_order(db: Database) -> None:
    with db.session() as session:
        last = dataclasses.replace(success(6, 2), started_at=at(5))  # as the worker sends it
        apply_updates(session, [last, retry(2), started(2, 5), retry(1), started()])
    found = row(db)
    assert (found.status, found.retries, found.started_at) == (Status.SUCCESS, 2, at(5))


def test_duration_is_computed_by_the_database_when_the_finisher_did_not_time_the_run(
    db: Database,
) -> None:
    with db.session() as session:
        upsert(session, pending())
        upsert(session, started(second=1))
        upsert(session, failure(second=4.5))
    found = row(db)
    assert found.duration_ms == 3500
    assert (found.error, found.traceback) == ("ValueError: bad", "Traceback ...")


def test_a_retry_records_the_count_and_the_error(db: Database) -> None:
    with db.session() as session:
        upsert(session, pending())
        upsert(session, started())
        upsert(session, retry(1))
    found = row(db)
    assert (found.status, found.retries, found.error) == (Status.RETRY, 1, "Boom: try 1")


def test_the_reaper_marks_only_started_rows_past_their_deadline(db: Database) -> None:
    ids = {"late": 10, "fresh": 1000, "pending": None, "retry": None}
    with db.session() as session:
        for key, deadline in ids.items():
            status = Status.PENDING if deadline is None else Status.STARTED
            if key == "retry":
                status = Status.RETRY
            session.add(
                TaskExecution(
                    task_name="report",
                    celery_task_id=key,
                    trigger="schedule",
                    status=status,
                    queued_at=at(0),
                    started_at=at(1) if deadline else None,
                    deadline_at=at(deadline) if deadline else None,
                )
            )
    with db.session() as session:
        assert reap_lost(session, now=at(60)) == 1
    with db.session() as session:
        statuses = dict(
            session.execute(select(TaskExecution.celery_task_id, TaskExecution.status)).all()
        )
        late = session.scalar(select(TaskExecution).where(TaskExecution.celery_task_id == "late"))
    assert statuses == {
        "late": Status.FAILURE,
        "fresh": Status.STARTED,
        "pending": Status.PENDING,
        "retry": Status.RETRY,
    }
    assert late is not None
    assert (late.error, late.finished_at) == (LOST_REASON, at(60))
    with db.session() as session:
        assert reap_lost(session, now=at(60)) == 0


@pytest.mark.parametrize(
    ("late", "status"),
    [
        (started(second=100, worker="celery@b"), Status.STARTED),
        (success(second=100), Status.SUCCESS),
    ],
    ids=["redelivered", "finished after all"],
)
def test_a_reaped_row_is_completed_by_its_worker_when_it_was_not_lost_after_all(
    db: Database, late: ExecutionUpdate, status: str
) -> None:
    with db.session() as session:
        upsert(session, pending())
        upsert(session, started())
    with db.session() as session:
        assert reap_lost(session, now=at(90)) == 1
    with db.session() as session:
        upsert(session, late)
    found = row(db)
    assert found.status == status
    assert found.error is None
    if status == Status.STARTED:
        assert (found.worker, found.finished_at) == ("celery@b", None)


def test_managed_tasks_include_deleted_ones_and_arguments_pick_among_several(
    db: Database,
) -> None:
    with db.session() as session:
        for name, args, deleted in (("a", [1], None), ("b", [2], None), ("c", [], at(5))):
            session.add(task_row(name, "app.worker.test_celery", args=args, deleted_at=deleted))
    with db.session() as session:
        _, tasks = managed_tasks(session)
        assert [(t.name, t.celery_name, t.live) for t in tasks] == [
            ("a", "app.worker.test_celery", True),
            ("b", "app.worker.test_celery", True),
            ("c", "app.worker.test_celery", False),
        ]
        assert pick_by_arguments(session, ["a", "b"], [2], {}) == "b"
        assert pick_by_arguments(session, ["a", "b"], [3], {}) is None


def task_row(name: str, celery_name: str, *, args: list[Any] | None = None, **values: Any) -> Task:
    spec = {
        "name": name,
        "owner": "ops",
        "type": "async",
        "task": celery_name,
        "args": args or [],
        "kwargs": {},
    }
    return Task(
        name=name,
        owner="ops",
        type="async",
        task=celery_name,
        spec=spec,
        content_hash="0" * 64,
        created_at=T0,
        updated_at=T0,
        **values,
    )
