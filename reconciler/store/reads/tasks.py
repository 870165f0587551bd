"""Pages of tasks with their last run, keyset on the sort key and the name, and a
task's owner; each statement built once per sort and combination of filters."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import aliased
from sqlalchemy.types import JSON, String

from reconciler.core.redact import is_secret_key
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
from reconciler.vocabulary import Status, TaskType

NEVER_RUN = "never"
"""The ``last_status`` filter's word for tasks that have no execution."""

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
    # The definition's ``active`` window as stored (JSON text on SQLite), or None.
    active: Any


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
        _spec_field(postgres, "active"),
    )
    return select(*(c.label(key) for c, key in zip(columns, TaskListRow._fields, strict=True)))


def _spec_field(postgres: bool, field: str) -> Any:
    """A top-level field of the listed task's stored definition, as JSON. A subquery by
    name, so that PostgreSQL reads the definitions of the page's rows only, after the
    sort and limit, not of every row it sorts (three times the cost of a page sorted by
    next run, at 10,000 tasks)."""
    own = aliased(Task)
    value: ColumnElement[Any]
    if postgres:
        value = own.spec.op("->")(literal_column(f"'{field}'"))
    else:
        value = func.json_extract(own.spec, literal_column(f"'$.{field}'"))
    return type_coerce(select(value).where(own.name == Task.name).scalar_subquery(), JSON)


def _label_match(postgres: bool, value: bool) -> ColumnElement[bool]:
    """The task has the label bound as ``label_key`` (with the value ``label_value``)."""
    if postgres:
        labels = Task.spec.op("->")(literal_column("'labels'"))
        key = bindparam("label_key", type_=String())
        if value:
            text = labels.op("->>", return_type=String())(key)
            return text == bindparam("label_value", type_=String())
        return labels.op("->")(key).is_not(None)
    each = func.json_each(Task.spec, literal_column("'$.labels'")).table_valued("key", "value")
    found: Select[Any] = (
        select(literal_column("1")).select_from(each).where(each.c.key == bindparam("label_key"))
    )
    if value:
        found = found.where(each.c.value == bindparam("label_value"))
    return found.exists()


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
    ``type``, ``enabled``, ``last_status`` or ``never_run``, ``label_key`` with or without
    ``label_value``, ``after_*`` of a cursor, ``deleted`` to include deleted tasks,
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
    if "last_status" in keys or "never_run" in keys:
        status: Any = _viewers_last(TaskExecution.status) if viewer else Task.last_status
        if "never_run" in keys:
            stmt = stmt.where(status.is_(None))
        else:
            stmt = stmt.where(status == bindparam("last_status"))
    if "label_key" in keys:
        stmt = stmt.where(_label_match(postgres, "label_value" in keys))
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
    last_status: str | None = None,
    label: str | None = None,
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
    owner's token), last runs are those that ran under that owner. ``last_status`` is a
    status, or ``never`` for tasks never run; ``label`` is ``key`` (the task has the label)
    or ``key=value``.
    """
    check_limit(limit)
    check_choice("sort", sort, TASK_SORTS)
    check_choice("type", type, tuple(TaskType))
    check_choice("last_status", last_status, (*Status, NEVER_RUN))
    params: dict[str, Any] = {"limit": limit + 1}
    if last_status == NEVER_RUN:
        params["never_run"] = True
    elif last_status is not None:
        params["last_status"] = last_status
    if label:
        key, equals, value = label.partition("=")
        params["label_key"] = key
        if equals:
            if is_secret_key(key):  # its value is redacted wherever shown: not probed either
                raise BadParameter(
                    "label", f"{key!r} looks secret, so its value is hidden; give the key alone"
                )
            params["label_value"] = value
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


@functools.lru_cache(maxsize=8)
def _status_counts(postgres: bool, keys: frozenset[str]) -> Select[Any]:
    viewer = "viewer" in keys
    status: Any = _viewers_last(TaskExecution.status) if viewer else Task.last_status
    live = select(status.label("status"), Task.enabled.label("enabled")).where(
        Task.deleted_at.is_(None)
    )
    if "owner" in keys:
        live = live.where(Task.owner == bindparam("owner"))
    rows = live.subquery("live")
    return select(rows.c.status, rows.c.enabled, func.count()).group_by(
        rows.c.status, rows.c.enabled
    )


def status_counts(
    *, owner: str | None = None, viewer: str | None = None
) -> Read[list[tuple[str | None, bool, int]]]:
    """(last status or None, enabled, count) of the live tasks (``owner``'s only when
    given); with ``viewer``, last statuses are those that ran under that owner."""
    params: dict[str, Any] = {}
    if owner is not None:
        params["owner"] = owner
    if viewer is not None:
        params["viewer"] = viewer
    return Read(
        functools.partial(_status_counts, keys=frozenset(params)),
        params,
        lambda rows: [(status, bool(enabled), int(count)) for status, enabled, count in rows],
    )


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
