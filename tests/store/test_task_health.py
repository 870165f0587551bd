"""Each task row's health (last success, last failure, failures in a row), kept by
database triggers (migration 0007) on SQLite and PostgreSQL, whoever writes executions:
tracking's steps with their retries, revokes, the reaper's ``worker lost`` and the real
report that replaces it, and hand edits."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from sqlalchemy import delete, select, update

from reconciler.store.database import Database
from reconciler.store.executions import LOST_REASON, ExecutionUpdate, apply_updates, reap_lost
from reconciler.store.tables import Task, TaskExecution
from tests.store.oldhistory import downgrade_and_write, seed_at
from tests.webseed import T0, add_execution, add_task

M = dt.timedelta(minutes=1)
Health = tuple[dt.datetime | None, dt.datetime | None, int]


def on_rows(db: Database) -> dict[str, Health]:
    """What each task row says its health is."""
    with db.session() as session:
        rows = session.execute(
            select(Task.name, Task.last_success_at, Task.last_failure_at, Task.consecutive_failures)
        )
        return {name: (success, failure, count) for name, success, failure, count in rows}


def in_history(db: Database) -> dict[str, Health]:
    """The health of each task worked out from its executions, by their finish times."""
    with db.session() as session:
        names = list(session.scalars(select(Task.name)))
        rows = session.execute(
            select(TaskExecution.task_name, TaskExecution.status, TaskExecution.finished_at)
        ).all()
    found: dict[str, Health] = {}
    for name in names:
        mine = [(status, finished) for task, status, finished in rows if task == name]
        successes = [f for s, f in mine if s == "success" and f is not None]
        failures = [f for s, f in mine if s == "failure"]
        success = max(successes, default=None)
        count = sum(1 for f in failures if success is None or f is None or f > success)
        found[name] = (success, max((f for f in failures if f is not None), default=None), count)
    return found


def step(celery_id: str, status: str, at: dt.datetime, **fields: Any) -> ExecutionUpdate:
    """A step of an execution of task ``a`` as tracking hands it to the store."""
    if status in ("started", "success", "failure"):
        fields.setdefault("started_at", at)
    return ExecutionUpdate(celery_task_id=celery_id, status=status, at=at, task_name="a", **fields)


def write(db: Database, *steps: ExecutionUpdate) -> None:
    with db.session() as session:
        apply_updates(session, list(steps))


def health(db: Database) -> Health:
    rows = on_rows(db)
    assert rows == in_history(db)
    return rows["a"]


def test_retries_revokes_and_the_reaper_keep_the_count(db: Database) -> None:
    with db.session() as session:
        add_task(session, "a")
    assert health(db) == (None, None, 0)

    # A retry is not a failure; the attempt after it succeeding is a success.
    first = str(uuid.uuid4())
    write(db, step(first, "pending", T0), step(first, "started", T0 + M))
    write(db, step(first, "retry", T0 + 2 * M, retries=1, error="Boom"))
    assert health(db) == (None, None, 0)
    write(db, step(first, "started", T0 + 3 * M, retries=1))
    write(db, step(first, "success", T0 + 4 * M, retries=1))
    assert health(db) == (T0 + 4 * M, None, 0)

    # Two failures in a row (the first after its own retry), then a revoke: it neither
    # counts nor resets the count.
    second, third, revoked = (str(uuid.uuid4()) for _ in range(3))
    write(db, step(second, "pending", T0 + 10 * M), step(second, "started", T0 + 10 * M))
    write(db, step(second, "retry", T0 + 11 * M, retries=1, error="Boom"))
    write(db, step(second, "failure", T0 + 12 * M, retries=1, error="Boom"))
    write(db, step(third, "pending", T0 + 20 * M), step(third, "failure", T0 + 21 * M))
    assert health(db) == (T0 + 4 * M, T0 + 21 * M, 2)
    write(db, step(revoked, "pending", T0 + 30 * M), step(revoked, "revoked", T0 + 31 * M))
    assert health(db) == (T0 + 4 * M, T0 + 21 * M, 2)

    # A worker lost: the reaper's failure counts, at the time it was decided ...
    lost = str(uuid.uuid4())
    write(db, step(lost, "pending", T0 + 40 * M))
    write(db, step(lost, "started", T0 + 41 * M, deadline_at=T0 + 45 * M))
    with db.session() as session:
        assert reap_lost(session, T0 + 50 * M) == 1
    assert health(db) == (T0 + 4 * M, T0 + 50 * M, 3)
    # ... until a redelivery of the same execution runs it again: no longer a failure.
    write(db, step(lost, "started", T0 + 52 * M, deadline_at=T0 + 60 * M))
    assert health(db) == (T0 + 4 * M, T0 + 21 * M, 2)
    with db.session() as session:
        assert reap_lost(session, T0 + 70 * M) == 1
    assert health(db) == (T0 + 4 * M, T0 + 70 * M, 3)
    # The real result of a worker that was not lost after all replaces the guess.
    write(db, step(lost, "success", T0 + 72 * M, started_at=T0 + 52 * M))
    assert health(db) == (T0 + 72 * M, T0 + 21 * M, 0)
    with db.session() as session:
        row = session.scalars(select(TaskExecution).where(TaskExecution.celery_task_id == lost))
        assert row.one().error is None

    # A failure that finishes after the last success counts; one queued before it but
    # finishing later counts too (by finish time), one finished before it does not.
    late = str(uuid.uuid4())
    write(db, step(late, "pending", T0 + 35 * M), step(late, "failure", T0 + 80 * M))
    assert health(db) == (T0 + 72 * M, T0 + 80 * M, 1)
    with db.session() as session:
        add_execution(session, "a", status="failure", queued_at=T0)  # finished at T0 + 3 s
    assert health(db) == (T0 + 72 * M, T0 + 80 * M, 1)

    # Reaped, then its real failure arrives: one failure, at the real time.
    real = str(uuid.uuid4())
    write(db, step(real, "pending", T0 + 90 * M))
    write(db, step(real, "started", T0 + 91 * M, deadline_at=T0 + 92 * M))
    with db.session() as session:
        assert reap_lost(session, T0 + 95 * M) == 1
        assert (
            session.scalar(select(TaskExecution.error).where(TaskExecution.celery_task_id == real))
            == LOST_REASON
        )
    assert health(db) == (T0 + 72 * M, T0 + 95 * M, 2)
    write(db, step(real, "failure", T0 + 93 * M, error="ValueError: bad"))
    assert health(db) == (T0 + 72 * M, T0 + 93 * M, 2)


def test_one_batch_of_many_executions_and_tasks(db: Database) -> None:
    """A tracking batch finishing executions of several tasks, some inserted already
    final (an external execution whose steps reached one batch)."""
    with db.session() as session:
        for name in ("a", "b", "c"):
            add_task(session, name)
    ids = {name: [str(uuid.uuid4()) for _ in range(3)] for name in ("a", "b", "c")}
    steps = []
    for name, outcomes in (("a", "FFS"), ("b", "SFF"), ("c", "FRF")):
        for index, (celery_id, outcome) in enumerate(zip(ids[name], outcomes, strict=True)):
            status = {"F": "failure", "S": "success", "R": "revoked"}[outcome]
            at = T0 + index * M
            steps.append(
                ExecutionUpdate(celery_id, status, at, task_name=name, started_at=at - M / 2)
            )
    write(db, *steps)
    rows = on_rows(db)
    assert rows == in_history(db)
    assert rows == {
        "a": (T0 + 2 * M, T0 + M, 0),
        "b": (T0, T0 + 2 * M, 2),
        "c": (None, T0 + 2 * M, 2),
    }


def test_every_kind_of_write_keeps_the_health_on_the_task_row(db: Database) -> None:
    """Random inserts, status and finish-time changes and deletes, across tasks and a
    name that only later becomes a task: after each, the rows agree with the history."""
    rng = random.Random(20261205)
    with db.session() as session:
        add_task(session, "a")
        add_task(session, "b")
    ids: list[int] = []
    statuses = ["pending", "started", "retry", "success", "failure", "revoked"]
    created_late = False
    for round_ in range(120):
        with db.session() as session:
            action = rng.choice(["insert", "insert", "status", "time", "delete"])
            if action == "insert" or not ids:
                row = add_execution(
                    session,
                    rng.choice(["a", "b", "late"]),
                    status=rng.choice(statuses),
                    queued_at=T0 + rng.randrange(50) * M,
                    trigger="manual",
                )
                ids.append(row.id)
            elif action == "status":
                status = rng.choice(statuses)
                finished = T0 + rng.randrange(60) * M
                session.execute(
                    update(TaskExecution)
                    .where(TaskExecution.id == rng.choice(ids))
                    .values(
                        status=status,
                        finished_at=finished if status in ("success", "failure") else None,
                    )
                )
            elif action == "time":
                session.execute(
                    update(TaskExecution)
                    .where(TaskExecution.id == rng.choice(ids))
                    .values(finished_at=T0 + rng.randrange(60) * M)
                )
            else:
                gone = rng.choice(ids)
                ids.remove(gone)
                session.execute(delete(TaskExecution).where(TaskExecution.id == gone))
        if round_ == 60:
            with db.session() as session:
                add_task(session, "late")  # its executions came first
            created_late = True
        assert on_rows(db) == in_history(db), f"after round {round_} ({action})"
    assert created_late
    with db.session() as session:
        session.execute(delete(TaskExecution))
    assert set(on_rows(db).values()) == {(None, None, 0)}


HISTORY = [("a", "failure"), ("a", "success"), ("a", "failure"), ("a", "revoked"),
           ("a", "failure"), ("ghost", "failure")]  # fmt: skip


def test_upgrade_fills_existing_rows_and_downgrade_drops_the_triggers(database_url: str) -> None:
    db = Database.open(database_url, upgrade=False)
    try:
        seed_at(
            db,
            "0006",
            [
                (name, status, T0 + i * M, T0 + i * M + M / 2)
                for i, (name, status) in enumerate(HISTORY)
            ],
        )
        assert db.upgrade() is True
        assert on_rows(db) == in_history(db)
        assert on_rows(db)["a"] == (T0 + M + M / 2, T0 + 4 * M + M / 2, 2)
        assert on_rows(db)["never"] == (None, None, 0)

        # Without the columns, writes to executions must not touch them any more.
        names = downgrade_and_write(db, "0006", "success")
        assert not names & {"last_success_at", "last_failure_at", "consecutive_failures"}
        assert db.upgrade() is True
        assert on_rows(db) == in_history(db)
        assert on_rows(db)["a"] == (T0 + 4 * M + M / 2, None, 0)
    finally:
        db.dispose()
