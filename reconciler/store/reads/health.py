"""Per-task health as lists, details and ``/metrics`` read it: last success, last
failure, failures in a row (kept on the task row by migration 0007), and for metrics
the oldest pending and longest running execution of each task.

An owner's token sees health worked out from the executions that ran under that owner
(index probes per task), as it sees its own last run (docs/security.md, "Access").
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session, aliased

from reconciler.store.reads.reader import plain
from reconciler.store.reads.records import pg_utc
from reconciler.store.tables import Task, TaskExecution
from reconciler.vocabulary import Status

HEALTH_FIELDS = ("last_success_at", "last_failure_at", "consecutive_failures")


def _status(status: str) -> ColumnElement[Any]:
    # Written into the SQL: SQLite uses the partial index of outcomes only for a literal.
    return literal_column(f"'{status}'")


def _viewers_last(name: ColumnElement[str], viewer: ColumnElement[str], status: str) -> Any:
    """The finish time of the newest execution of ``status`` under the task ``name``
    that ran under ``viewer``."""
    e = aliased(TaskExecution)
    return (
        select(e.finished_at)
        .where(
            e.task_name == name,
            e.status == _status(status),
            e.owner == viewer,
            e.finished_at.is_not(None),
        )
        .order_by(e.finished_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def health_columns(name: Any = None, viewer: Any = None) -> tuple[Any, Any, Any]:
    """The three health columns: the task row's own, or with ``viewer`` (a column
    expression) the viewer's, for the task named by ``name`` (``Task.name`` by default)."""
    if viewer is None:
        return Task.last_success_at, Task.last_failure_at, Task.consecutive_failures
    name = Task.name if name is None else name
    success = _viewers_last(name, viewer, Status.SUCCESS)
    f = aliased(TaskExecution)
    failures = (
        select(func.count())
        .select_from(f)
        .where(
            f.task_name == name,
            f.status == _status(Status.FAILURE),
            f.owner == viewer,
            func.coalesce(f.finished_at > _viewers_last(name, viewer, Status.SUCCESS), true()),
        )
        .scalar_subquery()
    )
    return (
        success,
        _viewers_last(name, viewer, Status.FAILURE),
        failures,
    )


class TaskHealth(NamedTuple):
    """One live task's health as ``/metrics`` serves it; times aware UTC."""

    name: str
    owner: str
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    consecutive_failures: int
    missed_count: int
    skipped_count: int
    calendar_skipped_count: int
    oldest_pending_at: dt.datetime | None  # queue time of the oldest pending execution
    oldest_started_at: dt.datetime | None  # start time of the longest running one


def task_health(session: Session, *, owner: str | None = None) -> list[TaskHealth]:
    """Every live task's health in one query: the task rows, and the pending and started
    executions (few, found through the status index) grouped by task.

    Compiled once per dialect and run on the driver, times sent naive in UTC: at 10,000
    tasks SQLAlchemy's result processing cost several times the query
    (docs/design/last-run.md, "Health")."""
    connection = plain(session)
    dialect = connection.dialect
    key = (dialect.name, owner is not None)
    compiled = _COMPILED.get(key)
    if compiled is None:
        stmt = _statement(dialect.name == "postgresql", owner is not None)
        compiled = _COMPILED[key] = stmt.compile(dialect=dialect)
    values = {**compiled.params, "viewer": owner}  # with the subqueries' LIMIT 1
    parameters: Any = values
    if compiled.positional:
        parameters = tuple(values[name] for name in compiled.positiontup or ())
    rows = connection.exec_driver_sql(compiled.string, parameters).all()
    return [
        TaskHealth(
            name,
            owner_,
            _utc(success),
            _utc(failure),
            int(failures or 0),
            int(missed or 0),
            int(skipped or 0),
            int(calendar or 0),
            _utc(pending),
            _utc(started),
        )
        for (
            name,
            owner_,
            success,
            failure,
            failures,
            missed,
            skipped,
            calendar,
            pending,
            started,
        ) in rows
    ]


_COMPILED: dict[tuple[str, bool], Any] = {}


def _statement(postgres: bool, viewer: bool) -> Select[Any]:
    e = TaskExecution
    waiting = (
        select(
            e.task_name,
            func.min(case((e.status == _status(Status.PENDING), e.queued_at))).label("pending"),
            func.min(case((e.status == _status(Status.STARTED), e.started_at))).label("started"),
        )
        .where(or_(e.status == _status(Status.PENDING), e.status == _status(Status.STARTED)))
        .group_by(e.task_name)
    )
    if viewer:
        waiting = waiting.where(e.owner == bindparam("viewer"))
    open_ = waiting.subquery("open")
    success, failure, failures = health_columns(viewer=bindparam("viewer") if viewer else None)
    times: tuple[Any, ...] = (success, failure, open_.c.pending, open_.c.started)
    if postgres:
        times = tuple(pg_utc(time) for time in times)
    stmt = (
        select(
            Task.name,
            Task.owner,
            times[0],
            times[1],
            failures,
            Task.missed_count,
            Task.skipped_count,
            Task.calendar_skipped_count,
            times[2],
            times[3],
        )
        .select_from(Task)
        .outerjoin(open_, open_.c.task_name == Task.name)
        .where(Task.deleted_at.is_(None))
        .order_by(Task.name)
    )
    if viewer:
        stmt = stmt.where(Task.owner == bindparam("viewer"))
    return stmt


def _utc(value: Any) -> dt.datetime | None:
    """A time as the driver sent it (naive UTC, or SQLite's text) as an aware UTC time."""
    if value is None:
        return None
    time: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if time.tzinfo is None:
        return time.replace(tzinfo=dt.UTC)
    return time.astimezone(dt.UTC)
