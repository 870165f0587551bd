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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    DateTime,
    Select,
    Text,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from reconciler.errors import DatabaseUnavailable, UsageError
from reconciler.redact import SECRET_KEY, redact
from reconciler.store.database import Database
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


class ExecutionLike(Protocol):
    """A ``TaskExecution`` or a row selected with the same column names."""

    id: int
    task_name: str
    celery_task_id: str
    trigger: str
    scheduled_for: dt.datetime | None
    status: str
    args: list[Any]
    kwargs: dict[str, Any]
    queued_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_ms: int | None
    worker: str | None
    result: Any
    error: str | None
    traceback: str | None
    retries: int


def _core(session: Session) -> Connection:
    """The session's connection, for plain-row statements: ``Session.execute`` would run
    them through the ORM's statement machinery, which costs more than the query here."""
    return session.connection()


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset (``2025-01-01T10:00:00+00:00``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat()


def execution_to_dict(row: ExecutionLike) -> dict[str, Any]:
    """One execution as served: the same object in the API and ``history --format json``."""
    return {
        "id": row.id,
        "task": row.task_name,
        "celery_task_id": row.celery_task_id,
        "trigger": row.trigger,
        "scheduled_for": iso(row.scheduled_for),
        "status": row.status,
        "args": list(row.args or []),
        "kwargs": redact(row.kwargs or {}),
        "queued_at": iso(row.queued_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "duration_ms": row.duration_ms,
        "worker": row.worker,
        "result": row.result,
        "error": row.error,
        "traceback": row.traceback,
        "retries": row.retries or 0,
    }


def encode_cursor(kind: str, *values: Any) -> str:
    text = json.dumps([kind, *values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, size: int) -> list[Any]:
    """The values of a cursor made by ``encode_cursor(kind, ...)``, or ``BadParameter``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    if not isinstance(decoded, list) or len(decoded) != size + 1 or decoded[0] != kind:
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    return decoded[1:]


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


def owned_task_names(owner: str) -> Select[str]:
    """Names of every task row (deleted ones too) that belongs to ``owner``."""
    return select(Task.name).where(Task.owner == owner)


def _execution_filters(
    *,
    task: str | None,
    status: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    owner: str | None,
) -> list[ColumnElement[bool]]:
    _check_status(status)
    since = _aware("since", since)
    until = _aware("until", until)
    filters: list[ColumnElement[bool]] = []
    if task is not None:
        filters.append(TaskExecution.task_name == task)
    if status is not None:
        filters.append(TaskExecution.status == status)
    if since is not None:
        filters.append(TaskExecution.queued_at >= since)
    if until is not None:
        filters.append(TaskExecution.queued_at < until)
    if owner is not None:
        filters.append(TaskExecution.task_name.in_(owned_task_names(owner)))
    return filters


def list_executions(
    session: Session,
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[TaskExecution], str | None]:
    """One page of executions, newest first, and the cursor of the next page (or None).

    ``since`` (inclusive) and ``until`` (exclusive) bound the queue time; ``owner`` keeps
    only executions of that owner's tasks. Pages are keyset on ``id``, so rows added
    while a client pages never shift or repeat what it sees.
    """
    filters = _execution_filters(task=task, status=status, since=since, until=until, owner=owner)
    stmt = select(TaskExecution).where(*filters, *_execution_cursor(cursor, limit))
    rows = list(session.scalars(stmt.order_by(TaskExecution.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], encode_cursor("e", rows[limit - 1].id)
    return rows, None


def list_execution_dicts(
    session: Session,
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """``list_executions`` already as ``execution_to_dict`` objects, read as plain rows
    (no ORM objects): what the HTTP endpoint serves."""
    filters = _execution_filters(task=task, status=status, since=since, until=until, owner=owner)
    stmt = select(*EXECUTION_COLUMNS).where(*filters, *_execution_cursor(cursor, limit))
    rows = _core(session).execute(stmt.order_by(TaskExecution.id.desc()).limit(limit + 1)).all()
    items = [execution_to_dict(row) for row in rows[:limit]]  # type: ignore[arg-type]
    return items, encode_cursor("e", rows[limit - 1].id) if len(rows) > limit else None


def _execution_cursor(cursor: str | None, limit: int) -> list[ColumnElement[bool]]:
    _check_limit(limit)
    if cursor is None:
        return []
    (before,) = decode_cursor(cursor, "e", 1)
    if type(before) is not int or not 0 < before <= _MAX_ID:
        raise BadParameter("cursor", "not a cursor returned by this list")
    return [TaskExecution.id < before]


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


def iter_executions(
    session: Session,
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    batch: int = 2000,
) -> Iterator[dict[str, Any]]:
    """Every matching execution as ``execution_to_dict``, newest first, in keyset batches."""
    filters = _execution_filters(task=task, status=status, since=since, until=until, owner=owner)
    for rows in _keyset_batches(session.connection(), select(*EXECUTION_COLUMNS), filters, batch):
        for row in rows:
            yield execution_to_dict(row)  # type: ignore[arg-type]


def iter_execution_records(
    session: Session,
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    batch: int = 5000,
) -> Iterator[list[str | int | None]]:
    """Every matching execution as a list of ``EXECUTION_KEYS`` values, for exports.

    The values of ``execution_to_dict``, with args, kwargs and a result that is not a
    string as JSON text (see ``_Records``). Memory stays at one batch.
    """
    filters = _execution_filters(task=task, status=status, since=since, until=until, owner=owner)
    connection = session.connection()
    records = _Records(connection.dialect.name)
    for rows in _keyset_batches(connection, records.select(), filters, batch):
        for row in rows:
            record = records.convert(row)
            result = record[_RESULT_INDEX]
            if isinstance(result, str) and result.startswith('"'):
                record[_RESULT_INDEX] = json.loads(result)
            yield record


class _Records:
    """Executions as records: the values of ``execution_to_dict`` in ``EXECUTION_KEYS``
    order, with args, kwargs and result as their JSON text (null: None), read as stored
    rather than decoded and encoded again; kwargs are decoded only when their text holds
    a secret-looking key, to redact it. Times are ISO 8601 text (PostgreSQL writes them
    itself, which spares a conversion per value here)."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        self.redacted: dict[str, str] = {}  # kwargs repeat from run to run: redact once

    def select(self) -> Select[Any]:
        columns: list[Any] = []
        for source in EXECUTION_COLUMNS:
            if source.key in ("args", "kwargs", "result"):
                columns.append(cast(source, Text).label(source.key))
            elif self.postgres and isinstance(source.type, UTCDateTime):
                columns.append(_pg_isoformat(source).label(source.key))
            else:
                columns.append(source)
        return select(*columns)

    def convert(self, row: Any) -> list[str | int | None]:
        record: list[str | int | None] = list(row)
        if not self.postgres:
            for index in _TIME_INDEXES:
                value = record[index]
                if value is not None:
                    record[index] = value.isoformat()  # type: ignore[union-attr]
        if record[_ARGS_INDEX] in (None, "null"):
            record[_ARGS_INDEX] = "[]"
        kwargs = record[_KWARGS_INDEX]
        if kwargs in (None, "null"):
            record[_KWARGS_INDEX] = "{}"
        elif isinstance(kwargs, str) and SECRET_KEY.search(kwargs):
            if kwargs not in self.redacted:
                if len(self.redacted) > 4096:
                    self.redacted.clear()
                self.redacted[kwargs] = json.dumps(redact(json.loads(kwargs)))
            record[_KWARGS_INDEX] = self.redacted[kwargs]
        if record[_RESULT_INDEX] == "null":
            record[_RESULT_INDEX] = None
        if record[_RETRIES_INDEX] is None:
            record[_RETRIES_INDEX] = 0
        return record


def _pg_isoformat(column: Any) -> ColumnElement[str]:
    """``datetime.isoformat()`` of a time in UTC, computed by PostgreSQL: microseconds
    only when there are some, as Python writes them."""
    value = func.timezone("UTC", type_coerce(column, DateTime(timezone=True)))
    fraction = case(
        (func.extract("microseconds", value) % 1_000_000 != 0, func.to_char(value, ".US")),
        else_="",
    )
    return func.to_char(value, 'YYYY-MM-DD"T"HH24:MI:SS') + fraction + "+00:00"


_TIME_INDEXES = tuple(
    EXECUTION_KEYS.index(key) for key in ("scheduled_for", "queued_at", "started_at", "finished_at")
)
_ARGS_INDEX = EXECUTION_KEYS.index("args")
_KWARGS_INDEX = EXECUTION_KEYS.index("kwargs")
_RETRIES_INDEX = EXECUTION_KEYS.index("retries")
_RESULT_INDEX = EXECUTION_KEYS.index("result")


def _keyset_batches(
    executor: Session | Connection,
    stmt: Select[Any],
    filters: list[ColumnElement[bool]],
    batch: int,
) -> Iterator[Sequence[Any]]:
    """``stmt`` under ``filters``, newest first, one batch of rows at a time (keyset on id);
    no server-side cursor stays open while the client reads."""
    before: int | None = None
    while True:
        page_filters = filters if before is None else [*filters, TaskExecution.id < before]
        rows = executor.execute(
            stmt.where(*page_filters).order_by(TaskExecution.id.desc()).limit(batch)
        ).all()
        yield rows
        if len(rows) < batch:
            return
        before = rows[-1].id


def get_execution_dict(
    session: Session, id: int, *, owner: str | None = None
) -> dict[str, Any] | None:
    """``execution_to_dict`` of one execution, read as a plain row; ``None`` when it does
    not exist or belongs to another owner."""
    stmt = select(*EXECUTION_COLUMNS).where(TaskExecution.id == id)
    if owner is not None:
        stmt = stmt.where(TaskExecution.task_name.in_(owned_task_names(owner)))
    row = _core(session).execute(stmt).first()
    return None if row is None else execution_to_dict(row)  # type: ignore[arg-type]


def get_execution(session: Session, id: int, *, owner: str | None = None) -> TaskExecution | None:
    """One execution by id; ``None`` when it does not exist or belongs to another owner."""
    stmt = select(TaskExecution).where(TaskExecution.id == id)
    if owner is not None:
        stmt = stmt.where(TaskExecution.task_name.in_(owned_task_names(owner)))
    return session.scalars(stmt).first()


# --- tasks ------------------------------------------------------------------------------


class TaskRow(Protocol):
    """The columns of a ``tasks`` row, as a ``Task`` or as a selected row (list rows carry
    only the columns a list shows: ``get_task`` rows carry them all)."""

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
    """A task row with its latest execution (if any): what lists and status lookups show."""

    task: TaskRow
    # type, crontab, interval, at, timezone: what a list needs of the definition
    schedule: dict[str, Any]
    definition: dict[str, Any] | None  # the whole spec; only from ``get_task``
    last_execution_id: int | None
    last_status: str | None
    last_run_at: dt.datetime | None
    last_finished_at: dt.datetime | None


_LastRun = aliased(TaskExecution, name="last_run")


_SCHEDULE_KEYS = ("crontab", "interval", "at", "timezone")
_LIST_COLUMNS = (
    Task.name,
    Task.description,
    Task.owner,
    Task.type,
    Task.task,
    Task.enabled,
    Task.next_run_at,
    Task.deleted_at,
)
# The schedule fields of a list row. crontab and interval come as JSON text, decoded by
# ``_schedule_part``: a decoder per row and column would be most of the cost of a page,
# and tasks share a few schedules.
_SCHEDULE_COLUMNS = (
    cast(Task.spec["crontab"], Text).label("spec_crontab"),
    cast(Task.spec["interval"], Text).label("spec_interval"),
    Task.spec["at"].as_string().label("spec_at"),
    Task.spec["timezone"].as_string().label("spec_timezone"),
)
# On PostgreSQL ``spec`` is a ``json`` column (text, kept as written), which every ``->``
# parses again: one ``json_to_record`` parses it once for all four fields (a function in
# FROM may refer to the tables before it).
_SPEC_RECORD = (
    func.json_to_record(Task.spec)
    .table_valued(
        column("crontab", JSON),
        column("interval", JSON),
        column("at", Text),
        column("timezone", Text),
    )
    .render_derived(name="spec_fields", with_types=True)
)
_PG_SCHEDULE_COLUMNS = (
    cast(_SPEC_RECORD.c.crontab, Text).label("spec_crontab"),
    cast(_SPEC_RECORD.c.interval, Text).label("spec_interval"),
    _SPEC_RECORD.c.at.label("spec_at"),
    _SPEC_RECORD.c.timezone.label("spec_timezone"),
)


def _tasks_with_last_run(*, detail: bool = False, postgres: bool = False) -> Select[Any]:
    """Tasks joined to their latest execution in one statement (no query per task).

    The latest execution is found per row through ``max(id)`` on the (task_name, id)
    index, which both SQLite and PostgreSQL answer with one index probe (an index-only
    scan). Plain rows, not ORM objects, and for lists only the columns shown (not the
    whole definition).
    """
    latest_id = (
        select(func.max(TaskExecution.id))
        .where(TaskExecution.task_name == Task.name)
        .correlate(Task)
        .scalar_subquery()
    )
    last_run = (
        _LastRun.id.label("last_execution_id"),
        _LastRun.status.label("last_status"),
        _LastRun.queued_at.label("last_queued_at"),
        _LastRun.finished_at.label("last_finished_at"),
    )
    if detail:
        stmt = select(*Task.__table__.columns, *last_run).select_from(Task)
    elif postgres:
        stmt = select(*_LIST_COLUMNS, *_PG_SCHEDULE_COLUMNS, *last_run).select_from(Task)
        stmt = stmt.join(_SPEC_RECORD, true())
    else:
        stmt = select(*_LIST_COLUMNS, *_SCHEDULE_COLUMNS, *last_run).select_from(Task)
    return stmt.outerjoin(_LastRun, _LastRun.id == latest_id)


@functools.lru_cache(maxsize=1024)
def _schedule_part(text: str | None) -> Any:
    """A list row's crontab or interval from its JSON text. Cached, so the same object is
    shared by every task with that schedule: it is read, never changed."""
    return None if text is None else json.loads(text)


def _summary(row: Any, *, detail: bool = False) -> TaskSummary:
    if detail:
        definition = row.spec or {}
        schedule = {key: definition.get(key) for key in _SCHEDULE_KEYS}
    else:
        definition = None
        schedule = {
            "crontab": _schedule_part(row.spec_crontab),
            "interval": _schedule_part(row.spec_interval),
            "at": row.spec_at,
            "timezone": row.spec_timezone,
        }
    schedule["type"] = row.type
    return TaskSummary(
        task=row,
        schedule=schedule,
        definition=definition,
        last_execution_id=row.last_execution_id,
        last_status=row.last_status,
        last_run_at=row.last_queued_at,
        last_finished_at=row.last_finished_at,
    )


def _sort_key(sort: str) -> tuple[ColumnElement[Any] | None, bool]:
    """The sort's key expression (None: by name only) and whether it is descending."""
    if sort in ("name", "-name"):
        return None, sort == "-name"
    if sort == "next_run":
        return func.coalesce(Task.next_run_at, literal(_LATEST, UTCDateTime())), False
    key = func.coalesce(_LastRun.queued_at, literal(_EARLIEST, UTCDateTime()))
    return key, sort == "-last_run"


def list_tasks(
    session: Session,
    *,
    q: str | None = None,
    owner: str | None = None,
    type: str | None = None,
    enabled: bool | None = None,
    sort: str = "name",
    limit: int = 50,
    cursor: str | None = None,
    include_deleted: bool = False,
) -> tuple[list[TaskSummary], str | None]:
    """One page of tasks with their last status and next run, and the next page's cursor.

    ``q`` matches a substring of the name, description or Celery task name (case-insensitive
    for ASCII; ``%`` and ``_`` match themselves). Pagination is keyset on the sort key with
    the (unique) name as tie-breaker: ``next_run`` puts tasks with nothing to fire last,
    ``last_run`` puts never-run tasks first (``-last_run``: last).
    """
    _check_limit(limit)
    if sort not in TASK_SORTS:
        raise BadParameter("sort", f"{sort!r} is not one of {', '.join(TASK_SORTS)}")
    if type is not None and type not in TASK_TYPES:
        raise BadParameter("type", f"{type!r} is not one of {', '.join(TASK_TYPES)}")
    stmt = _tasks_with_last_run(postgres=_core(session).dialect.name == "postgresql")
    if not include_deleted:
        stmt = stmt.where(Task.deleted_at.is_(None))
    if q:
        stmt = stmt.where(
            or_(
                Task.name.icontains(q, autoescape=True),
                Task.description.icontains(q, autoescape=True),
                Task.task.icontains(q, autoescape=True),
            )
        )
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    if type is not None:
        stmt = stmt.where(Task.type == type)
    if enabled is not None:
        stmt = stmt.where(Task.enabled.is_(enabled))

    key, descending = _sort_key(sort)
    if cursor is not None:
        stmt = stmt.where(_after_cursor(cursor, sort, key, descending))
    if key is None:
        stmt = stmt.order_by(Task.name.desc() if descending else Task.name.asc())
    elif descending:
        stmt = stmt.order_by(key.desc(), Task.name.desc())
    else:
        stmt = stmt.order_by(key.asc(), Task.name.asc())
    rows = [_summary(row) for row in _core(session).execute(stmt.limit(limit + 1)).all()]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    value: str | None = None
    if sort == "next_run":
        value = iso(last.task.next_run_at or _LATEST)
    elif sort in ("last_run", "-last_run"):
        value = iso(last.last_run_at or _EARLIEST)
    return rows, encode_cursor("t", sort, value, last.task.name)


def _after_cursor(
    cursor: str, sort: str, key: ColumnElement[Any] | None, descending: bool
) -> ColumnElement[bool]:
    cursor_sort, value, name = decode_cursor(cursor, "t", 3)
    if cursor_sort != sort or not isinstance(name, str):
        raise BadParameter("cursor", f"not a cursor of a list sorted by {sort}")
    if key is None:
        return Task.name < name if descending else Task.name > name
    try:
        instant = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    if descending:
        return or_(key < instant, and_(key == instant, Task.name < name))
    return or_(key > instant, and_(key == instant, Task.name > name))


def get_task(session: Session, name: str, *, owner: str | None = None) -> TaskSummary | None:
    """One task (deleted ones too, with ``deleted_at``) with its last execution."""
    stmt = _tasks_with_last_run(detail=True).where(Task.name == name)
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    row = _core(session).execute(stmt).first()
    return None if row is None else _summary(row, detail=True)


def iter_tasks(session: Session, *, batch: int = 500, **filters: Any) -> Iterator[TaskSummary]:
    """Every task matching ``list_tasks`` filters, page by page (for exports)."""
    cursor: str | None = None
    while True:
        rows, cursor = list_tasks(session, limit=batch, cursor=cursor, **filters)
        yield from rows
        if cursor is None:
            return


def task_owner(session: Session, name: str) -> str | None:
    """The owner of a task row (deleted or not), or None when no task has that name."""
    return _core(session).scalar(select(Task.owner).where(Task.name == name))


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
        stmt = stmt.where(TaskExecution.task_name.in_(owned_task_names(owner)))
    return [(name, status, count) for name, status, count in _core(session).execute(stmt)]


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
    """The same database and pool, in autocommit: a read then costs one round trip, not
    three (no BEGIN and ROLLBACK around it). Pages are keyset, so no list needs one
    snapshot across statements."""
    engine = database.engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(engine, sessionmaker(engine, expire_on_commit=False))


@contextmanager
def reading(database: Database) -> Iterator[Session]:
    """A session for reads only (rolled back at the end); an unreachable database is
    ``DatabaseUnavailable`` rather than a driver exception."""
    try:
        with database.sessions() as session:
            yield session
    except (OperationalError, InterfaceError) as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"database unavailable: {reason}") from exc
