"""Executions written before a trigger migration, to check that it fills the task rows
from them and that its downgrade leaves writes to the history alone."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from alembic import command

from reconciler.store.database import Database, alembic_config
from tests.cli.test_list_columns import TASKS_0001, row_0001
from tests.factories import spec

EXECUTIONS = sa.table(
    "task_executions",
    *(sa.column(name) for name in ("task_name", "celery_task_id", "trigger", "status")),
    *(sa.column(name) for name in ("args", "kwargs", "retries")),
    sa.column("queued_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
)


def seed_at(
    db: Database,
    revision: str,
    history: Iterable[tuple[str, str, dt.datetime, dt.datetime | None]],
) -> None:
    """Migrate to ``revision``, then write tasks ``a`` and ``never`` and the executions
    ``(task, status, queued_at, finished_at)`` (``finished_at`` left out where None)."""
    rows = []
    for name, status, queued_at, finished_at in history:
        row = {
            "task_name": name,
            "celery_task_id": str(uuid.uuid4()),
            "trigger": "schedule",
            "status": status,
            "args": "[]",
            "kwargs": "{}",
            "retries": 0,
            # SQLite keeps times as text, UTC without a zone
            "queued_at": queued_at.replace(tzinfo=None),
        }
        if finished_at is not None:
            row["finished_at"] = finished_at.replace(tzinfo=None)
        rows.append(row)
    with db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    with db.engine.begin() as connection:
        connection.execute(sa.insert(TASKS_0001), [row_0001(spec(n)) for n in ("a", "never")])
        connection.execute(sa.insert(EXECUTIONS), rows)


def downgrade_and_write(db: Database, revision: str, status: str) -> set[str]:
    """Migrate down to ``revision``, then set every execution of ``a`` to ``status`` and
    delete those of ``ghost``; the names of the columns ``tasks`` has left."""
    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
        names = {c["name"] for c in sa.inspect(connection).get_columns("tasks")}
        connection.execute(
            sa.update(EXECUTIONS).values(status=status).where(EXECUTIONS.c.task_name == "a")
        )
        connection.execute(sa.delete(EXECUTIONS).where(EXECUTIONS.c.task_name == "ghost"))
    return names
