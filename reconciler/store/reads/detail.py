"""One task with its whole definition and its latest execution: what a task's detail
and status show."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import literal, select
from sqlalchemy.orm import Session, aliased

from reconciler.store.reads.health import health_columns
from reconciler.store.reads.reader import plain
from reconciler.store.tables import Task, TaskExecution


class TaskRow(Protocol):
    """The columns of a ``tasks`` row, as a ``Task`` or as the row ``get_task`` selects."""

    @property
    def name(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def content_hash(self) -> str: ...
    @property
    def source_path(self) -> str: ...
    @property
    def source_line(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def updated_at(self) -> dt.datetime: ...
    @property
    def deleted_at(self) -> dt.datetime | None: ...
    @property
    def schedule_anchor(self) -> dt.datetime | None: ...
    @property
    def next_run_at(self) -> dt.datetime | None: ...
    @property
    def skipped_count(self) -> int: ...
    @property
    def missed_count(self) -> int: ...
    @property
    def calendar_skipped_count(self) -> int: ...


@dataclass(frozen=True)
class TaskSummary:
    """A task row with its whole definition and its latest execution (if any): what a
    task's detail and status show."""

    task: TaskRow
    # type, crontab, interval, at, timezone: the schedule part of the definition
    schedule: dict[str, Any]
    definition: dict[str, Any]
    last_execution_id: int | None
    last_status: str | None
    last_run_at: dt.datetime | None
    last_finished_at: dt.datetime | None
    # Health: the newest success's and failure's finish times, failures since that success.
    last_success_at: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    consecutive_failures: int = 0


_LastRun = aliased(TaskExecution, name="last_run")


def get_task(session: Session, name: str, *, owner: str | None = None) -> TaskSummary | None:
    """One task (deleted ones too, with ``deleted_at``) with its last execution; with
    ``owner``, only a task of that owner now, and its last execution under that owner
    (docs/security.md, "Access")."""
    finished = _LastRun.finished_at.label("last_finished_at")
    stmt = select(*Task.__table__.columns, finished).select_from(Task)
    stmt = stmt.outerjoin(_LastRun, _LastRun.id == Task.last_execution_id)
    stmt = stmt.where(Task.name == name)
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    row = plain(session).execute(stmt).first()
    if row is None:
        return None
    last: Any = (row.last_execution_id, row.last_status, row.last_queued_at, row.last_finished_at)
    if owner is not None:
        own = (
            select(
                TaskExecution.id,
                TaskExecution.status,
                TaskExecution.queued_at,
                TaskExecution.finished_at,
            )
            .where(TaskExecution.task_name == name, TaskExecution.owner == owner)
            .order_by(TaskExecution.id.desc())
            .limit(1)
        )
        last = plain(session).execute(own).first() or (None, None, None, None)
        health: Any = (
            plain(session).execute(select(*health_columns(literal(name), literal(owner)))).one()
        )
    else:
        health = (row.last_success_at, row.last_failure_at, row.consecutive_failures)
    definition = row.spec or {}
    schedule = {key: definition.get(key) for key in ("crontab", "interval", "at", "timezone")}
    schedule["type"] = row.type
    return TaskSummary(
        task=row,
        schedule=schedule,
        definition=definition,
        last_execution_id=last[0],
        last_status=last[1],
        last_run_at=last[2],
        last_finished_at=last[3],
        last_success_at=health[0],
        last_failure_at=health[1],
        consecutive_failures=int(health[2] or 0),
    )
