"""The read side of the store: executions, tasks with their last run, the apply log, counts.

Used by the HTTP endpoint (``reconciler.web``), ``reconcile history`` and ``/metrics``.
Every list is newest-first or sorted with keyset pagination behind an opaque cursor,
so a page stays stable while rows are added; every filter is a bound parameter.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, aliased

from reconciler.core.redact import might_hold_secrets, redact_json, redact_text
from reconciler.core.times import iso
from reconciler.errors import DatabaseUnavailable, UsageError
from reconciler.store import stall
from reconciler.store.database import Database, unavailable
from reconciler.store.reads.reader import Read, Reader, Row
from reconciler.store.tables import (
    ApplyRecord,
    BeatHeartbeat,
    Task,
    TaskExecution,
    UTCDateTime,
)

STATUSES = ("pending", "started", "success", "failure", "retry", "revoked")
TASK_TYPES = ("async", "scheduled", "periodic")
TASK_SORTS = ("name", "-name", "next_run", "last_run", "-last_run")
TaskSort = Literal["name", "-name", "next_run", "last_run", "-last_run"]
ReadSession: TypeAlias = Session
"""What ``reading`` yields; callers outside the store name the type through this alias."""
_T = TypeVar("_T")

EXECUTION_KEYS = (
    "id",
    "task",
    "celery_task_id",
    "trigger",
    "scheduled_for",
    "status",
    "args",
    "kwargs",
    "queued_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "worker",
    "result",
    "error",
    "traceback",
    "retries",
)

# Stand-ins for NULL in task sort keys so that keyset comparisons stay two-valued:
# a task with nothing to fire sorts after every next run; one never run before every last run.
_MAX_ID = 2**63 - 1
_LATEST = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)


class BadParameter(UsageError):
    """A query parameter (filter, sort, cursor, limit) that cannot be used; names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.detail = message


# --- executions -------------------------------------------------------------------------


def _core(session: Session) -> Connection:
    """The session's connection, for plain-row statements: ``Session.execute`` would run
    them through the ORM's statement machinery, which costs more than the query here."""
    return session.connection()


def execution_dict(record: Sequence[Any]) -> dict[str, Any]:
    """An execution record (``execution_page``) as the object ``reconcile history
    --format json`` prints: its JSON text decoded, its times ISO text. The HTTP endpoint
    serves the same record without decoding it (``reconciler.web.body``), and its JSON
    encoder writes the times the same way."""
    item = dict(zip(EXECUTION_KEYS, record, strict=True))
    for key in EXECUTION_JSON_KEYS:
        if item[key] is not None:
            item[key] = json.loads(item[key])
    for key in EXECUTION_TIME_KEYS:
        item[key] = iso(item[key])
    return item


def encode_cursor(kind: str, *values: Any) -> str:
    text = json.dumps([kind, *values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, size: int) -> list[Any]:
    """The values of a cursor made by ``encode_cursor(kind, ...)``, or ``BadParameter``:
    a flat list of null, integers and text a database can hold (no NUL, no lone
    surrogate), whatever a client made up."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    if not isinstance(decoded, list) or len(decoded) != size + 1 or decoded[0] != kind:
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    values = decoded[1:]
    if not all(value is None or type(value) is int or _storable(value) for value in values):
        raise BadParameter("cursor", "not a cursor returned by this list")
    return values


def _storable(value: Any) -> bool:
    if type(value) is not str or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a JSON \ud800 escape)
        return False
    return True


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise BadParameter("status", f"{status!r} is not one of {', '.join(STATUSES)}")


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise BadParameter("limit", f"must be at least 1, got {limit}")


def _aware(parameter: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise BadParameter(parameter, "needs a UTC offset (e.g. 2025-01-01T00:00:00Z)")
    return value


def _execution_params(
    *,
    task: str | None,
    status: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    owner: str | None,
) -> dict[str, Any]:
    """The bound values of the filters that are given (checked; ``BadParameter``)."""
    _check_status(status)
    values = {
        "task": task,
        "status": status,
        "since": _aware("since", since),
        "until": _aware("until", until),
        "owner": owner,
    }
    return {key: value for key, value in values.items() if value is not None}


def _execution_conditions(keys: Iterable[str]) -> list[ColumnElement[bool]]:
    """The WHERE conditions for the bound parameters ``keys`` (see ``_execution_params``;
    ``before``: ids below a page cursor's), each value a bound parameter of that name."""
    conditions: dict[str, Callable[[], ColumnElement[bool]]] = {
        "task": lambda: TaskExecution.task_name == bindparam("task"),
        "status": lambda: TaskExecution.status == bindparam("status"),
        "since": lambda: TaskExecution.queued_at >= bindparam("since"),
        "until": lambda: TaskExecution.queued_at < bindparam("until"),
        # the owner the execution ran under, not its task's owner of today (docs/http-api.md)
        "owner": lambda: TaskExecution.owner == bindparam("owner"),
        "before": lambda: TaskExecution.id < bindparam("before"),
    }
    return [conditions[key]() for key in keys if key in conditions]


def execution_page(
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Read[tuple[list[list[Any]], str | None]]:
    """One page of executions as records (see ``_Records``), newest first, and the cursor
    of the next page (or None).

    ``since`` (inclusive) and ``until`` (exclusive) bound the queue time; ``owner`` keeps
    only executions that ran under that owner (``task_executions.owner``). Pages are
    keyset on ``id``, so rows added while a client pages never shift or repeat what it
    sees. The statement for each combination of filters is built once and reused with
    new values, so a request costs the query and the rows, not building and compiling
    SQL.
    """
    params = _execution_params(task=task, status=status, since=since, until=until, owner=owner)
    params.update(_execution_cursor(cursor, limit))
    params["limit"] = limit + 1

    def page(postgres: bool, rows: list[Row]) -> tuple[list[list[Any]], str | None]:
        items = [_RECORDS.convert(row) for row in rows[:limit]]
        return items, encode_cursor("e", rows[limit - 1][0]) if len(rows) > limit else None

    return Read(functools.partial(_record_page, keys=frozenset(params)), params, page)


def _execution_cursor(cursor: str | None, limit: int) -> dict[str, int]:
    _check_limit(limit)
    if cursor is None:
        return {}
    (before,) = decode_cursor(cursor, "e", 1)
    if type(before) is not int or not 0 < before <= _MAX_ID:
        raise BadParameter("cursor", "not a cursor returned by this list")
    return {"before": before}


@functools.lru_cache(maxsize=256)
def _record_page(postgres: bool, keys: frozenset[str]) -> Select[Any]:
    """Records under the conditions for ``keys``, newest first, ``limit`` of them."""
    stmt = _Records.columns(postgres).where(*_execution_conditions(sorted(keys)))
    return stmt.order_by(TaskExecution.id.desc()).limit(bindparam("limit"))


@functools.lru_cache(maxsize=64)
def _record_lookup(postgres: bool, owned: bool) -> Select[Any]:
    """One record by ``id`` (and, when ``owned``, only one that ran under ``owner``)."""
    keys = ["owner"] if owned else []
    return _Records.columns(postgres).where(
        TaskExecution.id == bindparam("id"), *_execution_conditions(keys)
    )


EXECUTION_COLUMNS = (
    TaskExecution.id,
    TaskExecution.task_name,
    TaskExecution.celery_task_id,
    TaskExecution.trigger,
    TaskExecution.scheduled_for,
    TaskExecution.status,
    TaskExecution.args,
    TaskExecution.kwargs,
    TaskExecution.queued_at,
    TaskExecution.started_at,
    TaskExecution.finished_at,
    TaskExecution.duration_ms,
    TaskExecution.worker,
    TaskExecution.result,
    TaskExecution.error,
    TaskExecution.traceback,
    TaskExecution.retries,
)
EXECUTION_JSON_KEYS = ("args", "kwargs", "result")
"""The keys whose values records carry as JSON text."""
EXECUTION_TEXT_KEYS = ("task", "celery_task_id", "worker", "result", "error", "traceback")
"""The keys whose values can be any text (the others are numbers, ISO times, fixed words,
or JSON arrays and objects)."""


def iter_execution_records(
    reader: Reader,
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    batch: int = 5000,
) -> Iterator[list[str | int | None]]:
    """Every matching execution as a record for exports: times as ISO text, and a result
    that is a JSON string decoded, so a spreadsheet shows the text. Memory stays at one
    batch."""
    params = _execution_params(task=task, status=status, since=since, until=until, owner=owner)
    for rows in _keyset_batches(reader, params, batch):
        for row in rows:
            record = _RECORDS.convert(row)
            for index in _TIME_INDEXES:
                record[index] = iso(record[index])
            result = record[_RESULT_INDEX]
            if isinstance(result, str) and result.startswith('"'):
                record[_RESULT_INDEX] = json.loads(result)
            yield record


def execution_record(id: int, *, owner: str | None = None) -> Read[list[Any] | None]:
    """The record of one execution; ``None`` when it does not exist or ran under another
    owner."""
    params: dict[str, Any] = {"id": id}
    if owner is not None:
        params["owner"] = owner

    def record(postgres: bool, rows: list[Row]) -> list[Any] | None:
        return _RECORDS.convert(rows[0]) if rows else None

    return Read(functools.partial(_record_lookup, owned=owner is not None), params, record)


class _Records:
    """Executions as records: their values in ``EXECUTION_KEYS`` order, with args, kwargs
    and result as their JSON text (result null: None), read as stored rather than decoded
    and encoded again. Args, kwargs, result, error and traceback go through
    ``reconciler.core.redact``: one search for secret-looking words each, and decoded only
    when one appears (args and kwargs repeat from run to run: cached). Times are
    datetimes in UTC: naive ones from PostgreSQL (``_pg_utc``), aware ones from SQLite;
    ``execution_dict`` and the exports write them as ISO text, the endpoint's JSON
    encoder as the same text."""

    def __init__(self) -> None:
        # args or kwargs text -> as shown: each distinct text is checked once
        self.redacted: dict[str, str] = {}

    @staticmethod
    @functools.cache
    def columns(postgres: bool) -> Select[Any]:
        columns: list[Any] = []
        for source in EXECUTION_COLUMNS:
            if source.key in EXECUTION_JSON_KEYS:
                columns.append(cast(source, Text).label(source.key))
            elif postgres and isinstance(source.type, UTCDateTime):
                columns.append(_pg_utc(source).label(source.key))
            else:
                columns.append(source)
        return select(*columns)

    def convert(self, row: Any) -> list[Any]:
        record: list[Any] = list(row)
        args = record[_ARGS_INDEX]
        if args in (None, "null"):
            record[_ARGS_INDEX] = "[]"
        elif args != "[]":
            record[_ARGS_INDEX] = self._shown(args)
        kwargs = record[_KWARGS_INDEX]
        if kwargs in (None, "null"):
            record[_KWARGS_INDEX] = "{}"
        else:
            record[_KWARGS_INDEX] = self._shown(kwargs)
        result = record[_RESULT_INDEX]
        if result == "null":
            record[_RESULT_INDEX] = None
        elif result is not None and might_hold_secrets(result):
            record[_RESULT_INDEX] = redact_json(result)
        for index in _FREE_TEXT_INDEXES:
            text = record[index]
            if text:
                record[index] = redact_text(text)
        if record[_RETRIES_INDEX] is None:
            record[_RETRIES_INDEX] = 0
        return record

    def _shown(self, text: str) -> str:
        shown = self.redacted.get(text)
        if shown is None:
            if len(self.redacted) > 4096:
                self.redacted.clear()
            shown = redact_json(text)
            self.redacted[text] = shown
        return shown


_RECORDS = _Records()
"""The one converter (records look the same on every backend), shared, so its redaction
cache serves every request."""


def _pg_utc(column: Any) -> ColumnElement[dt.datetime]:
    """A time column as PostgreSQL's naive UTC time: the cheapest form to have it send
    and the driver load (a ``timestamptz`` comes with a zone the driver converts every
    value to; formatting ISO text with ``to_char`` had been most of what a page cost the
    database). Naive times in these records are UTC, for ``iso`` and the endpoint's
    JSON encoder alike."""
    aware = type_coerce(column, DateTime(timezone=True))
    return func.timezone(literal_column("'UTC'"), aware, type_=DateTime())


EXECUTION_TIME_KEYS = ("scheduled_for", "queued_at", "started_at", "finished_at")
_TIME_INDEXES = tuple(EXECUTION_KEYS.index(key) for key in EXECUTION_TIME_KEYS)
_ARGS_INDEX = EXECUTION_KEYS.index("args")
_KWARGS_INDEX = EXECUTION_KEYS.index("kwargs")
_RETRIES_INDEX = EXECUTION_KEYS.index("retries")
_RESULT_INDEX = EXECUTION_KEYS.index("result")
_FREE_TEXT_INDEXES = (EXECUTION_KEYS.index("error"), EXECUTION_KEYS.index("traceback"))


def _keyset_batches(reader: Reader, params: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    """Records under the conditions for ``params``, newest first, one batch of rows at a
    time (keyset on id); no connection stays checked out while the client reads.

    The next batch is queried in a helper thread while the caller works through the
    current one, so the database's time and ours overlap; the pending query is waited
    for before the generator ends.
    """
    params = {**params, "limit": batch}

    def fetch(values: dict[str, Any]) -> list[Row]:
        build = functools.partial(_record_page, keys=frozenset(values))
        return reader.run(Read(build, values, lambda postgres, rows: rows))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as prefetch:
        pending: Future[list[Row]] | None = prefetch.submit(fetch, params)
        while pending is not None:
            rows = pending.result()
            pending = None
            if len(rows) == batch:
                pending = prefetch.submit(fetch, {**params, "before": rows[-1][0]})
            yield rows


# --- tasks ------------------------------------------------------------------------------


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


class TaskListRow(NamedTuple):
    """One task of a list with its last run, its fields named as the API's keys; times
    are datetimes in UTC (naive from PostgreSQL, as execution records' are)."""

    name: str
    description: str
    owner: str
    type: str
    task: str
    enabled: bool
    schedule: str | None  # ``reconciler.core.spec.schedule_text``, stored by apply
    timezone: str
    next_run: dt.datetime | None
    deleted_at: dt.datetime | None
    last_execution_id: int | None
    last_status: str | None
    last_run: dt.datetime | None


_LastRun = aliased(TaskExecution, name="last_run")


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
    times: tuple[Any, ...] = (Task.next_run_at, Task.deleted_at, last_queued)
    if postgres:
        times = tuple(_pg_utc(time) for time in times)
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
    _check_limit(limit)
    if sort not in TASK_SORTS:
        raise BadParameter("sort", f"{sort!r} is not one of {', '.join(TASK_SORTS)}")
    if type is not None and type not in TASK_TYPES:
        raise BadParameter("type", f"{type!r} is not one of {', '.join(TASK_TYPES)}")
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

    def page(postgres: bool, found: list[Row]) -> tuple[list[TaskListRow], str | None]:
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
    row = _core(session).execute(stmt).first()
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
        last = _core(session).execute(own).first() or (None, None, None, None)
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
    )


def iter_tasks(reader: Reader, *, batch: int = 500, **filters: Any) -> Iterator[TaskListRow]:
    """Every task matching ``task_page`` filters, page by page (for exports)."""
    cursor: str | None = None
    while True:
        rows, cursor = reader.run(task_page(limit=batch, cursor=cursor, **filters))
        yield from rows
        if cursor is None:
            return


_OWNER_OF = select(Task.owner).where(Task.name == bindparam("name"))


def task_owner(name: str) -> Read[str | None]:
    """The owner of a task row (deleted or not), or None when no task has that name."""
    return Read(
        lambda postgres: _OWNER_OF,
        {"name": name},
        lambda postgres, rows: rows[0][0] if rows else None,
    )


# --- the apply log ----------------------------------------------------------------------


def list_applies(
    session: Session, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[ApplyRecord], str | None]:
    """One page of the apply log, newest first (keyset on id)."""
    _check_limit(limit)
    stmt = select(ApplyRecord).order_by(ApplyRecord.id.desc()).limit(limit + 1)
    if cursor is not None:
        (before,) = decode_cursor(cursor, "a", 1)
        if type(before) is not int or not 0 < before <= _MAX_ID:
            raise BadParameter("cursor", "not a cursor returned by this list")
        stmt = stmt.where(ApplyRecord.id < before)
    rows = list(session.scalars(stmt))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor("a", rows[-1].id)
    return rows, None


def owned_names(session: Session, owner: str, names: Sequence[str]) -> set[str]:
    """Which of ``names`` are tasks of ``owner`` (to filter the apply log for an owner)."""
    if not names:
        return set()
    stmt = select(Task.name).where(Task.owner == owner, Task.name.in_(list(names)))
    return set(_core(session).scalars(stmt))


# --- counts for /metrics ------------------------------------------------------------------


def execution_counts(session: Session, *, owner: str | None = None) -> list[tuple[str, str, int]]:
    """(task, status, count) for every task and status that has executions."""
    stmt = select(TaskExecution.task_name, TaskExecution.status, func.count()).group_by(
        TaskExecution.task_name, TaskExecution.status
    )
    if owner is not None:
        stmt = stmt.where(TaskExecution.owner == owner)
    return [(name, status, count) for name, status, count in _core(session).execute(stmt)]


def duplicate_deliveries(session: Session, *, owner: str | None = None) -> list[tuple[str, int]]:
    """(task, count) of deliveries workers refused to run: their execution had started or
    finished elsewhere (``task_executions.duplicates``), for every task that had any."""
    stmt = (
        select(TaskExecution.task_name, func.sum(TaskExecution.duplicates))
        .where(TaskExecution.duplicates > 0)
        .group_by(TaskExecution.task_name)
    )
    if owner is not None:
        stmt = stmt.where(TaskExecution.owner == owner)
    return [(name, int(count)) for name, count in _core(session).execute(stmt)]


def task_counts(session: Session, *, owner: str | None = None) -> list[tuple[str, bool, int]]:
    """(type, enabled, count) of the live (not deleted) tasks."""
    stmt = (
        select(Task.type, Task.enabled, func.count())
        .where(Task.deleted_at.is_(None))
        .group_by(Task.type, Task.enabled)
    )
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    rows = _core(session).execute(stmt)
    return [(type_, bool(enabled), count) for type_, enabled, count in rows]


def heartbeats(session: Session) -> list[BeatHeartbeat]:
    return list(session.scalars(select(BeatHeartbeat).order_by(BeatHeartbeat.instance)))


def last_apply(session: Session) -> ApplyRecord | None:
    return session.scalars(select(ApplyRecord).order_by(ApplyRecord.id.desc()).limit(1)).first()


# --- sessions for readers ---------------------------------------------------------------


def for_reading(database: Database) -> Database:
    """A handle of its own on the same database for a reader that serves many requests:
    its own pool, in autocommit, so that a read costs one round trip, not three (no BEGIN
    and ROLLBACK around it; pages are keyset, so no list needs one snapshot across
    statements), and no ping before each checkout (a round trip per request: a connection
    that died with a database restart is replaced by one retry instead, see ``read`` and
    ``Reader``). The schema is not upgraded again."""
    url = database.engine.url.render_as_string(hide_password=False)
    return Database.open(
        url,
        upgrade=False,
        deadlines=database.deadlines,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,
    )


@contextmanager
def reading(database: Database) -> Iterator[Session]:
    """A session for reads only (rolled back at the end); an unreachable database is
    ``DatabaseUnavailable`` rather than a driver exception."""
    try:
        with database.sessions() as session:
            yield session
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(exc) from exc


def read(database: Database, work: Callable[[Session], _T]) -> _T:
    """``work(session)`` in ``reading``, once more when the pooled connection it got was
    dead (the database restarted since it was last used): reads can be repeated, so a pool
    without a ping before every checkout costs a caller nothing when that happens."""
    try:
        with reading(database) as session:
            return work(session)
    except DatabaseUnavailable as exc:
        cause = exc.__cause__
        if not (isinstance(cause, DBAPIError) and cause.connection_invalidated):
            raise
        if stall.no_answer(cause):
            raise  # it stalled rather than died: again would only wait as long again
    with reading(database) as session:
        return work(session)
