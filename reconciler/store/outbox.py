"""The outbox: a ``pending`` execution row is written (claimed, under a lease) before its
message is published, and marked published once the broker took it; a row that will not
be sent is failed with the reason (docs/guarantees.md). Used by beat's tick and manual runs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import Table, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from reconciler.store.leases import Lease, host_now
from reconciler.store.pending import NewExecution as NewExecution  # beat builds them here
from reconciler.store.tables import TaskExecution
from reconciler.vocabulary import Status

_executions: Table = TaskExecution.__table__  # type: ignore[assignment]

# PostgreSQL statements take whole columns as arrays (``unnest``): one statement text
# whatever the batch size, so it is prepared once, and one round trip per batch.
_INSERT_PG = text(
    f"""
    INSERT INTO task_executions
        (task_name, celery_task_id, trigger, scheduled_for, status, args, kwargs, queued_at,
         retries, claimed_by, lease_until)
    SELECT v.task_name, v.celery_task_id, v.trigger, v.scheduled_for, '{Status.PENDING}',
           CAST(v.args AS JSON), CAST(v.kwargs AS JSON), v.queued_at, 0,
           CAST(:owner AS VARCHAR),
           clock_timestamp() + CAST(:lease AS DOUBLE PRECISION) * interval '1 second'
    FROM unnest(
        CAST(:names AS VARCHAR[]), CAST(:ids AS VARCHAR[]), CAST(:triggers AS VARCHAR[]),
        CAST(:slots AS TIMESTAMPTZ[]), CAST(:args AS TEXT[]), CAST(:kwargs AS TEXT[]),
        CAST(:queued AS TIMESTAMPTZ[])
    ) AS v(task_name, celery_task_id, trigger, scheduled_for, args, kwargs, queued_at)
    ON CONFLICT (task_name, scheduled_for) DO NOTHING
    RETURNING celery_task_id
    """
)

_MARK_PG = text(
    """
    UPDATE task_executions SET published_at = :at
    WHERE celery_task_id = ANY(CAST(:ids AS VARCHAR[])) AND published_at IS NULL
    """
)


def insert_executions(
    session: Session, rows: Sequence[NewExecution], lease: Lease | None = None
) -> set[str]:
    """Insert ``pending`` rows in bulk; a slot that already has a row is left alone.

    With ``lease`` the rows are claimed by its owner until the database's now plus its
    length. Returns the Celery task ids of the rows inserted: only those may be published.
    """
    if not rows:
        return set()
    owner, length = (lease.owner, lease.seconds) if lease else (None, None)
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "owner": owner,
            "lease": length,
            "names": [row.task_name for row in rows],
            "ids": [row.celery_task_id for row in rows],
            "triggers": [row.trigger for row in rows],
            "slots": [row.scheduled_for for row in rows],
            "args": [json.dumps(row.args) for row in rows],
            "kwargs": [json.dumps(row.kwargs) for row in rows],
            "queued": [row.queued_at for row in rows],
        }
        return set(session.scalars(_INSERT_PG, params))
    until = None if length is None else host_now() + dt.timedelta(seconds=length)
    statement = (
        sqlite.insert(_executions)
        .on_conflict_do_nothing(index_elements=["task_name", "scheduled_for"])
        .returning(_executions.c.celery_task_id)
    )
    many = [
        {
            "task_name": row.task_name,
            "celery_task_id": row.celery_task_id,
            "trigger": row.trigger,
            "scheduled_for": row.scheduled_for,
            "status": Status.PENDING,
            "args": row.args,
            "kwargs": row.kwargs,
            "queued_at": row.queued_at,
            "retries": 0,
            "claimed_by": owner,
            "lease_until": until,
        }
        for row in rows
    ]
    return set(session.scalars(statement, many))


def mark_published(session: Session, celery_task_ids: Sequence[str], at: dt.datetime) -> None:
    """Record that these executions' messages reached the broker."""
    if not celery_task_ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_MARK_PG, {"ids": list(celery_task_ids), "at": at})
        return
    c = _executions.c
    for start in range(0, len(celery_task_ids), 5000):
        chunk = list(celery_task_ids[start : start + 5000])
        session.execute(
            update(_executions)
            .where(c.celery_task_id.in_(chunk), c.published_at.is_(None))
            .values(published_at=at)
        )


def fail_unpublished(session: Session, ids: Sequence[int], reason: str, now: dt.datetime) -> None:
    """Close executions that will not be sent, saying why (they stay in the history)."""
    if not ids:
        return
    c = _executions.c
    session.execute(
        update(_executions)
        .where(c.id.in_(list(ids)), c.status == Status.PENDING)
        .values(status=Status.FAILURE, error=reason, finished_at=now)
    )


def execution_id(session: Session, celery_task_id: str) -> int | None:
    """The row id of the execution sent (or to be sent) as ``celery_task_id``."""
    found = session.scalar(
        select(_executions.c.id).where(_executions.c.celery_task_id == celery_task_id)
    )
    return None if found is None else int(found)
