"""What ``reconcile doctor`` reads from the database: live tasks' schedule state, recent
workers, executions waiting in the broker.

Read-only; one query each, whatever the number of tasks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from reconciler.core.secretref import referenced_names
from reconciler.store.tables import Task, TaskExecution
from reconciler.vocabulary import Status, TaskType, Trigger


@dataclass(frozen=True)
class TaskState:
    name: str
    celery_name: str
    type: str
    enabled: bool
    next_run_at: dt.datetime | None
    last_fired_at: dt.datetime | None  # the slot beat last fired (``tasks.last_run_at``)
    at: str | None  # a scheduled task's ``at`` as stored in its spec
    source: str
    secret_env: tuple[str, ...] = ()  # variables its ``{secret_env: NAME}`` values name
    active_until: str | None = None  # a periodic task's ``active.until`` as stored
    timezone: str = "UTC"


def live_tasks(session: Session) -> list[TaskState]:
    """Every task defined in the files now (not deleted), by name."""
    query = (
        select(
            Task.name,
            Task.task,
            Task.type,
            Task.enabled,
            Task.next_run_at,
            Task.last_run_at,
            Task.spec,
            Task.source_path,
            Task.source_line,
        )
        .where(Task.deleted_at.is_(None))
        .order_by(Task.name)
    )
    return [
        TaskState(
            name=row.name,
            celery_name=row.task,
            type=row.type,
            enabled=row.enabled,
            next_run_at=row.next_run_at,
            last_fired_at=row.last_run_at,
            at=_at(row.spec) if row.type == TaskType.SCHEDULED else None,
            source=f"{row.source_path}:{row.source_line}" if row.source_path else "",
            secret_env=_secret_env(row.spec),
            active_until=_active_until(row.spec),
            timezone=str(row.spec.get("timezone") or "UTC")
            if isinstance(row.spec, dict)
            else "UTC",
        )
        for row in session.execute(query)
    ]


def _secret_env(spec: Any) -> tuple[str, ...]:
    if not isinstance(spec, dict):
        return ()
    return tuple(referenced_names([spec.get("args"), spec.get("kwargs")]))


def _active_until(spec: Any) -> str | None:
    active = spec.get("active") if isinstance(spec, dict) else None
    until = active.get("until") if isinstance(active, dict) else None
    return str(until) if until is not None else None


def _at(spec: Any) -> str | None:
    value = spec.get("at") if isinstance(spec, dict) else None
    return str(value) if value is not None else None


def recent_workers(session: Session, since: dt.datetime, owner: str | None = None) -> list[str]:
    """Workers of executions queued since ``since`` (evidence when they cannot be asked),
    of ``owner``'s executions only when given."""
    query = (
        select(TaskExecution.worker)
        .where(TaskExecution.queued_at >= since, TaskExecution.worker.is_not(None))
        .group_by(TaskExecution.worker)
        .order_by(TaskExecution.worker)
    )
    if owner is not None:
        query = query.where(TaskExecution.owner == owner)
    return [worker for worker in session.scalars(query) if worker]


@dataclass(frozen=True)
class Waiting:
    """Executions of one task waiting in the broker since before a threshold."""

    task: str
    queue: str | None  # its task's ``options.queue``; None: the app's default queue
    count: int
    oldest: dt.datetime  # the oldest one's queue time


def waiting_since(session: Session, before: dt.datetime) -> list[Waiting]:
    """Pending executions queued before ``before`` that are in the broker (published, or
    sent by other code), grouped by task: through the status index, whatever the history."""
    e = TaskExecution
    query = (
        select(e.task_name, func.count(), func.min(e.queued_at))
        .where(
            e.status == Status.PENDING,
            e.queued_at < before,
            or_(e.published_at.is_not(None), e.trigger == Trigger.EXTERNAL),
        )
        .group_by(e.task_name)
        .order_by(e.task_name)
    )
    rows = session.execute(query).all()
    names = [name for name, _count, _oldest in rows]
    specs: dict[str, Any] = {
        name: spec
        for name, spec in session.execute(select(Task.name, Task.spec).where(Task.name.in_(names)))
    }
    return [
        Waiting(name, _queue(specs.get(name)), int(count), oldest) for name, count, oldest in rows
    ]


def _queue(spec: Any) -> str | None:
    options = spec.get("options") if isinstance(spec, dict) else None
    queue = options.get("queue") if isinstance(options, dict) else None
    return str(queue) if queue else None


def workers_of(session: Session, names: list[str], since: dt.datetime) -> list[str]:
    """Workers of executions of these tasks queued since ``since`` (evidence that their
    queue is consumed, when workers cannot be asked)."""
    query = (
        select(TaskExecution.worker)
        .where(
            TaskExecution.task_name.in_(names),
            TaskExecution.queued_at >= since,
            TaskExecution.worker.is_not(None),
        )
        .group_by(TaskExecution.worker)
        .order_by(TaskExecution.worker)
    )
    return [worker for worker in session.scalars(query) if worker]
