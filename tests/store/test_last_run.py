"""Each task row's latest execution, kept by database triggers (migration 0003), on
SQLite and PostgreSQL: whatever writes executions, the row agrees with the history."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, func, select, update

from reconciler.store.database import Database
from reconciler.store.executions import ExecutionUpdate, apply_updates, reap_lost
from reconciler.store.tables import Task, TaskExecution
from tests.store.oldhistory import downgrade_and_write, seed_at
from tests.webseed import T0, add_execution, add_task

H = dt.timedelta(hours=1)
Latest = tuple[int, str | None, dt.datetime | None] | None


def on_rows(db: Database) -> dict[str, Latest]:
    """What each task row says its latest execution is."""
    with db.session() as session:
        rows = session.execute(
            select(Task.name, Task.last_execution_id, Task.last_status, Task.last_queued_at)
        )
        return {
            name: None if ident is None else (ident, status, queued)
            for name, ident, status, queued in rows
        }


def in_history(db: Database) -> dict[str, Latest]:
    """The latest execution of each task, from the executions themselves."""
    with db.session() as session:
        names = list(session.scalars(select(Task.name)))
        found: dict[str, Latest] = {}
        for name in names:
            row = session.execute(
                select(TaskExecution.id, TaskExecution.status, TaskExecution.queued_at)
                .where(TaskExecution.task_name == name)
                .order_by(TaskExecution.id.desc())
                .limit(1)
            ).first()
            found[name] = None if row is None else (row.id, row.status, row.queued_at)
        return found


def test_every_kind_of_write_keeps_the_latest_on_the_task_row(db: Database) -> None:
    """Random inserts, status and time changes and deletes, across tasks and a name that
    only later becomes a task: after each, the rows agree with the history."""
    rng = random.Random(20261128)
    with db.session() as session:
        add_task(session, "a")
        add_task(session, "b")
    ids: list[int] = []
    created_late = False
    for step in range(80):
        with db.session() as session:
            action = rng.choice(["insert", "insert", "status", "time", "delete"])
            if action == "insert" or not ids:
                name = rng.choice(["a", "b", "late"])
                status = rng.choice(["pending", "started", "success", "failure"])
                queued = T0 + rng.randrange(100) * H
                row = add_execution(
                    session, name, status=status, queued_at=queued, trigger="manual"
                )
                ids.append(row.id)
            elif action == "status":
                session.execute(
                    update(TaskExecution)
                    .where(TaskExecution.id == rng.choice(ids))
                    .values(status=rng.choice(["started", "success", "failure", "revoked"]))
                )
            elif action == "time":
                session.execute(
                    update(TaskExecution)
                    .where(TaskExecution.id == rng.choice(ids))
                    .values(queued_at=T0 + rng.randrange(100) * H)
                )
            else:
                gone = rng.choice(ids)
                ids.remove(gone)
                session.execute(delete(TaskExecution).where(TaskExecution.id == gone))
        if step == 40 and not created_late:
            with db.session() as session:
                add_task(session, "late")  # its executions came first
            created_late = True
        assert on_rows(db) == in_history(db), f"after step {step} ({action})"
    assert created_late and on_rows(db)["late"] is not None
    with db.session() as session:
        session.execute(delete(TaskExecution))
    assert set(on_rows(db).values()) == {None}


def step(celery_id: str, status: str, at: dt.datetime, **fields: Any) -> ExecutionUpdate:
    return ExecutionUpdate(celery_task_id=celery_id, status=status, at=at, task_name="a", **fields)


def test_tracking_and_the_reaper_keep_it(db: Database) -> None:
    with db.session() as session:
        add_task(session, "a")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with db.session() as session:
        apply_updates(session, [step(first, "pending", T0), step(first, "started", T0)])
    assert on_rows(db)["a"] is not None and on_rows(db)["a"][1] == "started"  # type: ignore[index]
    with db.session() as session:
        apply_updates(session, [step(second, "pending", T0 + H)])
    with db.session() as session:
        # The older one finishes late: the newer stays the latest.
        apply_updates(session, [step(first, "success", T0 + 2 * H, result=1)])
    latest = on_rows(db)["a"]
    assert latest is not None and latest[1:] == ("pending", T0 + H)
    with db.session() as session:
        deadline = T0 + 3 * H
        apply_updates(session, [step(second, "started", T0 + H, deadline_at=deadline)])
        assert reap_lost(session, deadline + H) == 1
    latest = on_rows(db)["a"]
    assert latest is not None and latest[1] == "failure"
    assert on_rows(db) == in_history(db)


def test_upgrade_fills_existing_rows_and_downgrade_drops_the_triggers(database_url: str) -> None:
    db = Database.open(database_url, upgrade=False)
    try:
        seed_at(
            db,
            "0002",
            [
                (name, status, T0 + i * H, None)
                for i, (name, status) in enumerate(
                    [("a", "success"), ("a", "failure"), ("ghost", "success")]
                )
            ],
        )
        assert db.upgrade() is True
        rows = on_rows(db)
        assert rows == in_history(db)
        assert rows["never"] is None and rows["a"] is not None and rows["a"][1] == "failure"

        # Without the columns, writes to executions must not touch them any more.
        names = downgrade_and_write(db, "0002", "revoked")
        assert not names & {"last_execution_id", "last_status", "last_queued_at"}
        assert db.upgrade() is True
        assert on_rows(db) == in_history(db)
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(TaskExecution)) == 2
    finally:
        db.dispose()


def test_one_statement_inserting_many_executions_leaves_the_newest(db: Database) -> None:
    """Beat inserts the slots it fires in one statement: per task, the row with the
    highest id is the latest, and an older one inserted later does not displace it."""
    with db.session() as session:
        add_task(session, "a")
        add_task(session, "b")
    rows = [
        {
            "task_name": name,
            "celery_task_id": str(uuid.uuid4()),
            "trigger": "manual",
            "status": status,
            "args": [],
            "kwargs": {},
            "queued_at": T0 + hours * H,
            "retries": 0,
        }
        for name, status, hours in [
            ("a", "pending", 3),
            ("b", "pending", 1),
            ("a", "started", 1),  # inserted after, so a higher id, though queued earlier
            ("b", "success", 5),
            ("ghost", "pending", 9),
        ]
    ]
    with db.session() as session:
        session.execute(sa.insert(TaskExecution), rows)
    latest = on_rows(db)
    assert latest == in_history(db)
    assert latest["a"] is not None and latest["a"][1:] == ("started", T0 + H)
    assert latest["b"] is not None and latest["b"][1:] == ("success", T0 + 5 * H)
