"""What ``reconcile doctor`` reads from the database: live tasks' schedule state, recent workers.

Read-only; one query each, whatever the number of tasks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reconciler.core.secretref import referenced_names
from reconciler.store.tables import BeatHeartbeat, Task, TaskExecution
from reconciler.vocabulary import TaskType


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
        )
        for row in session.execute(query)
    ]


def _secret_env(spec: Any) -> tuple[str, ...]:
    if not isinstance(spec, dict):
        return ()
    return tuple(referenced_names([spec.get("args"), spec.get("kwargs")]))


def _at(spec: Any) -> str | None:
    value = spec.get("at") if isinstance(spec, dict) else None
    return str(value) if value is not None else None


def last_tick(session: Session) -> dt.datetime | None:
    """The newest heartbeat of any Beat process."""
    return session.scalar(select(func.max(BeatHeartbeat.last_tick_at)))


def recent_workers(session: Session, since: dt.datetime) -> list[str]:
    """Workers of executions queued since ``since`` (evidence when they cannot be asked)."""
    query = (
        select(TaskExecution.worker)
        .where(TaskExecution.queued_at >= since, TaskExecution.worker.is_not(None))
        .group_by(TaskExecution.worker)
        .order_by(TaskExecution.worker)
    )
    return [worker for worker in session.scalars(query) if worker]
