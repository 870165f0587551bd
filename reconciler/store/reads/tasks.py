"""Pages of tasks with their last run, keyset on the sort key and the name, and a
task's owner; each statement built once per sort and combination of filters."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, literal, or_, select

from reconciler.core.times import iso
from reconciler.store.reads.cursors import (
    BadParameter,
    check_choice,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from reconciler.store.reads.health import health_columns
from reconciler.store.reads.reader import Read, Reader, Row
from reconciler.store.reads.records import pg_utc
from reconciler.store.tables import Task, TaskExecution, UTCDateTime
from reconciler.vocabulary import TaskType

TaskSort = Literal["name", "-name", "next_run", "last_run", "-last_run"]
TASK_SORTS: tuple[str, ...] = get_args(TaskSort)

# Stand-ins for NULL in task sort keys so that keyset comparisons stay two-valued:
# a task with nothing to fire sorts after every next run; one never run before every last run.
_LATEST = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)


class TaskListRow(NamedTuple):
    """One task of a list with its last run, its fields named as the API's keys; times
    are datetimes in UTC (naive from PostgreSQL, as execution records' are)."""

    name: str
    description: str
    owner: str
    type: str
    task: str
    enabled: bool
    schedule: str | None  # ``core.schedulefields.schedule_text``, stored by apply
    timezone: str
    next_run: dt.datetime | None
    deleted_at: dt.datetime | None
    last_execution_id: int | None
    last_status: str | None
    last_run: dt.datetime | None
    # Health (``reconciler.store.reads.health``): finish times of the newest success and
    # failure, and the failures since that success.
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    consecutive_failures: int


def _viewers_last(column: Any) -> Any:
    """``column`` of the latest execution of the listed task that ran under the owner
    bound as ``viewer`` (an index probe per task): an owner's token sees its own last
    run, never one that ran under the task's previous owner (docs/security.md)."""
    return (
        select(column)
        .where(TaskExecution.task_name == Task.name, TaskExecution.owner == bindparam("viewer"))
        .order_by(TaskExecution.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _list_select(postgres: bool, viewer: bool = False) -> Select[Any]:
    """Tasks with their last run, the columns of ``TaskListRow`` in its order, all from
    the task row: apply stores the schedule as the list shows it, and the database keeps
    the latest execution on the row (migration 0003). With ``viewer``, the last run is
    the viewer's own (``_viewers_last``)."""
    last_queued: Any = _viewers_last(TaskExecution.queued_at) if viewer else Task.last_queued_at
    success, failure, failures = health_columns(viewer=bindparam("viewer") if viewer else None)
    times: tuple[Any, ...] = (Task.next_run_at, Task.deleted_at, last_queued, success, failure)
    if postgres:
        times = tuple(pg_utc(time) for time in times)
    columns = (
        Task.name,
        Task.description,
        Task.owner,
        Task.type,
        Task.task,
        Task.enabled,
        Task.schedule_text,
        Task.timezone,
        times[0],
        times[1],
        _viewers_last(TaskExecution.id) if viewer else Task.last_execution_id,
        _viewers_last(TaskExecution.status) if viewer else Task.last_status,
        times[2],
        times[3],
        times[4],
        failures,
    )
    return select(*(c.label(key) for c, key in zip(columns, TaskListRow._fields, strict=True)))


def _sort_key(sort: str, viewer: bool = False) -> tuple[ColumnElement[Any] | None, bool]:
    """The sort's key expression (None: by name only) and whether it is descending."""
    if sort in ("name", "-name"):
        return None, sort == "-name"
    if sort == "next_run":
        return func.coalesce(Task.next_run_at, literal(_LATEST, UTCDateTime())), False
    last_queued = _viewers_last(TaskExecution.queued_at) if viewer else Task.last_queued_at
    key = func.coalesce(last_queued, literal(_EARLIEST, UTCDateTime()))
    return key, sort == "-last_run"


@functools.lru_cache(maxsize=512)
def _task_page(postgres: bool, sort: str, keys: frozenset[str]) -> Select[Any]:
    """The list statement for one sort and set of bound parameters (``q``, ``owner``,
    ``type``, ``enabled``, ``after_*`` of a cursor, ``deleted`` to include deleted tasks,
    ``viewer``: an owner token's own last runs), built once and reused with new values."""
    viewer = "viewer" in keys
    stmt = _list_select(postgres, viewer)
    if "deleted" not in keys:
        stmt = stmt.where(Task.deleted_at.is_(None))
    if "q" in keys:
        stmt = stmt.where(
            or_(
                Task.name.icontains(bindparam("q"), escape=_LIKE_ESCAPE),
                Task.description.icontains(bindparam("q"), escape=_LIKE_ESCAPE),
                Task.task.icontains(bindparam("q"), escape=_LIKE_ESCAPE),
            )
        )
    for name in ("owner", "type", "enabled"):
        if name in keys:
            stmt = stmt.where(getattr(Task, name) == bindparam(name))
    key, descending = _sort_key(sort, viewer)
    if "after_name" in keys:
        stmt = stmt.where(_after(key, descending))
    if key is None:
        stmt = stmt.order_by(Task.name.desc() if descending else Task.name.asc())
    elif descending:
        stmt = stmt.order_by(key.desc(), Task.name.desc())
    else:
        stmt = stmt.order_by(key.asc(), Task.name.asc())
    return stmt.limit(bindparam("limit"))


_LIKE_ESCAPE = "/"


def _like_literal(text: str) -> str:
    """``text`` with LIKE's wildcards escaped, so that it matches only itself."""
    for char in (_LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, _LIKE_ESCAPE + char)
    return text


def _after(key: ColumnElement[Any] | None, descending: bool) -> ColumnElement[bool]:
    """Rows after the cursor's (``after_value``, ``after_name``) in the sort's order."""
    name: ColumnElement[str] = bindparam("after_name")
    if key is None:
        return Task.name < name if descending else Task.name > name
    value = bindparam("after_value", type_=UTCDateTime())
    if descending:
        return or_(key < value, and_(key == value, Task.name < name))
    return or_(key > value, and_(key == value, Task.name > name))


def task_page(
    *,
    q: str | None = None,
    owner: str | None = None,
    type: str | None = None,
    enabled: bool | None = None,
    sort: str = "name",
    limit: int = 50,
    cursor: str | None = None,
    include_deleted: bool = False,
    viewer: str | None = None,
) -> Read[tuple[list[TaskListRow], str | None]]:
    """One page of tasks with their last status and next run, and the next page's cursor.

    ``q`` matches a substring of the name, description or Celery task name (case-insensitive
    for ASCII; ``%`` and ``_`` match themselves). Pagination is keyset on the sort key with
    the (unique) name as tie-breaker: ``next_run`` puts tasks with nothing to fire last,
    ``last_run`` puts never-run tasks first (``-last_run``: last). With ``viewer`` (an
    owner's token), last runs are those that ran under that owner.
    """
    check_limit(limit)
    check_choice("sort", sort, TASK_SORTS)
    check_choice("type", type, tuple(TaskType))
    params: dict[str, Any] = {"limit": limit + 1}
    if q:
        params["q"] = _like_literal(q)
    for key, given in (("owner", owner), ("type", type), ("enabled", enabled)):
        if given is not None:
            params[key] = given
    if viewer is not None:
        params["viewer"] = viewer
    if include_deleted:
        params["deleted"] = True
    if cursor is not None:
        params.update(_task_cursor(cursor, sort))

    def page(found: list[Row]) -> tuple[list[TaskListRow], str | None]:
        rows = list(map(TaskListRow._make, found[:limit]))
        if len(found) <= limit:
            return rows, None
        last = rows[-1]
        value: str | None = None
        if sort == "next_run":
            value = iso(last.next_run or _LATEST)
        elif sort in ("last_run", "-last_run"):
            value = iso(last.last_run or _EARLIEST)
        return rows, encode_cursor("t", sort, value, last.name)

    return Read(functools.partial(_task_page, sort=sort, keys=frozenset(params)), params, page)


def _task_cursor(cursor: str, sort: str) -> dict[str, Any]:
    cursor_sort, value, name = decode_cursor(cursor, "t", 3)
    if cursor_sort != sort or not isinstance(name, str):
        raise BadParameter("cursor", f"not a cursor of a list sorted by {sort}")
    if sort in ("name", "-name"):
        return {"after_name": name}
    try:
        instant = dt.datetime.fromisoformat(value)
        if instant.tzinfo is None:
            raise ValueError("no UTC offset")
        instant = instant.astimezone(dt.UTC)  # OverflowError: outside years 1..9999 in UTC
    except (TypeError, ValueError, OverflowError):
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    return {"after_name": name, "after_value": instant}


def iter_tasks(reader: Reader, *, batch: int = 500, **filters: Any) -> Iterator[TaskListRow]:
    """Every task matching ``task_page`` filters, page by page (for exports)."""
    cursor: str | None = None
    while True:
        rows, cursor = reader.run(task_page(limit=batch, cursor=cursor, **filters))
        yield from rows
        if cursor is None:
            return


_OWNER_OF = select(Task.owner).where(Task.name == bindparam("name"))


_ZONE_OF = select(Task.timezone).where(Task.name == bindparam("name"))


def task_zone(name: str) -> Read[str | None]:
    """The time zone of a task row (deleted or not), or None when no task has that name."""
    return Read(
        lambda postgres: _ZONE_OF,
        {"name": name},
        lambda rows: (rows[0][0] or "UTC") if rows else None,
    )


def task_owner(name: str) -> Read[str | None]:
    """The owner of a task row (deleted or not), or None when no task has that name."""
    return Read(
        lambda postgres: _OWNER_OF,
        {"name": name},
        lambda rows: rows[0][0] if rows else None,
    )
