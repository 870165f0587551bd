"""What the timeline reads (docs/page.md, "Pictures"): the tasks that have slots to come,
and the last hours' scheduled executions counted per time bucket by the database, so a
fleet firing every minute sends back one row per bucket, not one per execution."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, cast, func, select
from sqlalchemy.orm import Session

from reconciler.core.timeline import Scheduled
from reconciler.store.executions import milliseconds_between
from reconciler.store.reads.reader import plain
from reconciler.store.tables import Task, TaskExecution, UTCDateTime
from reconciler.vocabulary import Trigger


def scheduled_tasks(session: Session, owner: str | None = None) -> list[Scheduled]:
    """Live, enabled tasks with a next slot (``owner``'s only, when given)."""
    stmt = select(Task.name, Task.spec, Task.schedule_anchor).where(
        Task.deleted_at.is_(None), Task.enabled.is_(True), Task.next_run_at.is_not(None)
    )
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    return [Scheduled(name, spec or {}, anchor) for name, spec, anchor in session.execute(stmt)]


@dataclass(frozen=True)
class StartBucket:
    """One bucket of slots that were due: rows written for them, how many started, and
    how late (milliseconds after the slot) they started and were queued."""

    start: dt.datetime
    planned: int
    started: int
    start_late_avg_ms: float | None
    start_late_max_ms: float | None
    queue_late_max_ms: float | None


def start_buckets(
    session: Session,
    since: dt.datetime,
    until: dt.datetime,
    size: dt.timedelta,
    owner: str | None = None,
) -> list[StartBucket]:
    """Scheduled executions whose slot is in ``[since, until)`` per bucket of ``size``
    counted from ``since``; only those that ran under ``owner`` when given. Buckets
    without a row are left out."""
    dialect = session.get_bind().dialect.name
    columns = TaskExecution.__table__.c
    slot = columns.scheduled_for
    start = bindparam("since", since, type_=UTCDateTime())
    offset = milliseconds_between(dialect, start, slot) / bindparam("size_ms", _ms(size))
    index: Any = func.floor(offset) if dialect == "postgresql" else offset
    inner = select(
        cast(index, Integer).label("bucket"),
        TaskExecution.started_at.label("started_at"),
        milliseconds_between(dialect, slot, columns.started_at).label("late"),
        milliseconds_between(dialect, slot, columns.queued_at).label("queue_late"),
    ).where(
        TaskExecution.trigger == Trigger.SCHEDULE.value,
        # queued_at is indexed, and a slot is queued when it is due or after
        TaskExecution.queued_at >= start,
        slot >= start,
        slot < bindparam("until", until, type_=UTCDateTime()),
    )
    if owner is not None:
        inner = inner.where(TaskExecution.owner == owner)
    rows = inner.subquery()
    stmt = (
        select(
            rows.c.bucket,
            func.count(),
            func.count(rows.c.started_at),
            func.avg(rows.c.late),
            func.max(rows.c.late),
            func.max(rows.c.queue_late),
        )
        .group_by(rows.c.bucket)
        .order_by(rows.c.bucket)
    )
    return [
        StartBucket(
            since + size * int(bucket),
            int(planned),
            int(started),
            _float(late_avg),
            _float(late_max),
            _float(queue_max),
        )
        for bucket, planned, started, late_avg, late_max, queue_max in plain(session).execute(stmt)
    ]


def _ms(size: dt.timedelta) -> int:
    return int(size.total_seconds() * 1000)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
