"""The write side of ``task_executions``: ordered, idempotent upserts and the lost-worker reaper.

``reconciler.tracking`` turns Celery signals into ``ExecutionUpdate`` values and hands
batches of them to ``apply_updates``; the Beat scheduler calls ``reap_lost``. Signals
from several processes arrive in any order, so every write is an upsert keyed by the
Celery task id whose guard lets a row only move forward (see ``PHASE`` below).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Table,
    and_,
    case,
    extract,
    func,
    literal_column,
    null,
    or_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from reconciler.store.tables import TaskExecution
from reconciler.vocabulary import FINISHED, Status, Trigger

# The order of an execution's life, within one attempt (``retries`` counts attempts):
# pending < retry (raised by the previous attempt) < started < a final state. A ``retry``
# row has ``retries`` already counting the next attempt, so ``started`` of attempt k+1
# comes after ``retry`` leading to it, and a late ``retry`` of attempt k cannot undo
# ``started`` of attempt k+1. Final states never change, except the reaper's guess.
PHASE: dict[str, int] = {Status.PENDING: 0, Status.RETRY: 1, Status.STARTED: 2}

LOST_REASON = "worker lost"
"""The error the reaper writes; a row holding it may still be completed by its worker."""

CHUNK = 16  # rows per round trip within a batch


@dataclass(frozen=True)
class ExecutionUpdate:
    """One observed step of an execution, ready to be upserted.

    ``task_name`` and the insert-only fields are used when no row exists yet (an
    execution published outside the reconciler); an existing row keeps them.
    """

    celery_task_id: str
    status: str
    at: dt.datetime
    task_name: str = ""
    retries: int = 0
    trigger: str = Trigger.EXTERNAL
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    started_at: dt.datetime | None = None
    worker: str | None = None
    deadline_at: dt.datetime | None = None
    duration_ms: int | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key that puts the steps of one execution in their natural order."""
        if self.status in FINISHED:
            return (1, 0, 0)
        return (0, self.retries, PHASE[self.status])

    def params(self) -> dict[str, Any]:
        """Bind parameters for the upsert statement (the same keys for every status)."""
        final = self.status in FINISHED
        return {
            "task_name": self.task_name,
            "celery_task_id": self.celery_task_id,
            "trigger": self.trigger,
            "status": self.status,
            "args": self.args,
            "kwargs": self.kwargs,
            # A row first written by its start or end (its pending step still on its
            # way) was queued no later than it started.
            "queued_at": self.at if self.started_at is None else min(self.at, self.started_at),
            "started_at": self.started_at if self.status != Status.PENDING else None,
            "finished_at": self.at if final else None,
            "duration_ms": self.duration_ms,
            "worker": self.worker,
            "result": self.result,
            "error": self.error,
            "traceback": self.traceback,
            "retries": self.retries,
            "deadline_at": self.deadline_at,
        }


def _dialect_insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"execution tracking supports SQLite and PostgreSQL, not {name}")


def milliseconds_between(
    dialect: str, start: ColumnElement[Any], end: ColumnElement[Any]
) -> ColumnElement[Any]:
    """``end - start`` in whole milliseconds, computed by the database."""
    if dialect == "postgresql":
        return func.round(extract("epoch", end - start) * constant(1000))
    return func.round((func.julianday(end) - func.julianday(start)) * constant(86400000))


_STATEMENTS: dict[tuple[str, str], Any] = {}


def constant(value: str | int) -> ColumnElement[Any]:
    """A constant written into the SQL rather than bound: fewer parameters per row, and
    an expanding ``IN`` (which executemany refuses) is never needed."""
    return literal_column(f"'{value}'" if isinstance(value, str) else str(int(value)))


def reaped(c: Any) -> ColumnElement[bool]:
    """The row of ``c`` (``task_executions``' columns) holds the reaper's guess, which a
    later report of the same execution replaces."""
    return and_(c.status == constant(Status.FAILURE), c.error == constant(LOST_REASON))


def _upsert_statement(session: Session, status: str) -> Any:
    """The upsert for one kind of step; built once per dialect and status."""
    dialect = session.get_bind().dialect.name
    key = (dialect, status)
    if key in _STATEMENTS:
        return _STATEMENTS[key]
    table: Table = TaskExecution.__table__  # type: ignore[assignment]
    c = table.c
    insert = _dialect_insert(session)(table)  # rows are bound by column name
    new = insert.excluded
    lost = reaped(c)
    open_row = or_(and_(*(c.status != constant(final) for final in sorted(FINISHED))), lost)
    existing_phase = case(
        (c.status == constant(Status.PENDING), constant(PHASE[Status.PENDING])),
        (c.status == constant(Status.RETRY), constant(PHASE[Status.RETRY])),
        else_=constant(PHASE[Status.STARTED]),  # started, or reaped (treated as still started)
    )
    set_: dict[str, Any]
    if status == Status.PENDING:
        # A pending step only ever creates the row: the publisher's row (trigger
        # schedule/manual) or any later step always knows more.
        statement = insert.on_conflict_do_nothing(index_elements=[c.celery_task_id])
        _STATEMENTS[key] = statement
        return statement
    if status in (Status.STARTED, Status.RETRY):
        phase = PHASE[status]
        guard = and_(
            open_row,
            or_(
                c.retries < new.retries,
                and_(c.retries == new.retries, existing_phase <= constant(phase)),
            ),
        )
        if status == Status.STARTED:
            set_ = {
                "status": new.status,
                "started_at": new.started_at,
                "worker": new.worker,
                "deadline_at": new.deadline_at,
                "retries": new.retries,
                # A redelivered or revived execution is running again, not finished.
                "finished_at": null(),
                "duration_ms": null(),
                "error": case((lost, null()), else_=c.error),
            }
        else:
            set_ = {
                "status": new.status,
                "retries": new.retries,
                "error": new.error,
                "traceback": new.traceback,
                "worker": func.coalesce(new.worker, c.worker),
            }
    else:
        guard = open_row
        started_at = func.coalesce(c.started_at, new.started_at)
        set_ = {
            "status": new.status,
            "finished_at": new.finished_at,
            "started_at": started_at,
            "worker": func.coalesce(new.worker, c.worker),
            "duration_ms": func.coalesce(
                new.duration_ms, milliseconds_between(dialect, started_at, new.finished_at)
            ),
            "result": new.result,
            "error": new.error,
            "traceback": new.traceback,
            "retries": case((c.retries > new.retries, c.retries), else_=new.retries),
            "deadline_at": null(),
        }
    statement = insert.on_conflict_do_update(
        index_elements=[c.celery_task_id], set_=set_, where=guard
    )
    _STATEMENTS[key] = statement
    return statement


def apply_updates(session: Session, updates: Iterable[ExecutionUpdate]) -> None:
    """Upsert a batch of steps, in each execution's natural order, with few round trips.

    The guard in each statement makes the outcome independent of the order in which
    batches from different processes reach the database: a row only moves forward.
    """
    ordered = sorted(coalesced(list(updates)), key=lambda update: update.order)
    connection = session.connection()
    driver = _driver_upserts(connection.dialect)
    raw: Any = connection.connection.driver_connection
    cursor = raw.cursor() if driver is not None else None
    for status, group in itertools.groupby(ordered, key=lambda update: update.status):
        # Only the step that counts of each execution is sent; on psycopg, one prepared
        # statement per chunk (its rows as one JSON document), elsewhere one executemany.
        rows = _one_per_execution(status, list(group))
        statement = _upsert_statement(session, status)
        # In chunks: each waits for the server without the GIL, so a worker process
        # that writes from a thread is never held up for the whole batch.
        for start in range(0, len(rows), CHUNK):
            params = [u.params() for u in rows[start : start + CHUNK]]
            if driver is not None:
                driver.run(cursor, status, statement, params)
            else:
                connection.execute(statement, params)


class _DriverUpserts:
    """The upserts as SQL text on psycopg's cursor: SQLAlchemy's execution machinery cost
    as much per row as the rest of the write. A chunk is one statement whose rows come
    from one JSON document (``json_to_recordset``): the server plans, runs and fires the
    statement's trigger once per chunk instead of once per row, and the client encodes
    the chunk in one ``json.dumps`` (docs/design/tracking-writes.md). Each value is
    converted by its column's own type first, JSON columns to the text SQLAlchemy sends."""

    def __init__(self, dialect: Any) -> None:
        table: Table = TaskExecution.__table__  # type: ignore[assignment]
        keys = list(ExecutionUpdate("", Status.PENDING, dt.datetime.now(dt.UTC)).params())
        self.dialect = dialect
        self.keys = keys
        self.convert: list[tuple[str, Any]] = []
        self.times: list[str] = []
        for key in keys:
            type_ = table.c[key].type
            if isinstance(type_, JSON):
                self.convert.append((key, dialect._json_serializer or json.dumps))
                continue
            processor = type_.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.convert.append((key, processor))
            if isinstance(getattr(type_, "impl", type_), DateTime):
                self.times.append(key)  # sent as ISO 8601 text, read as timestamptz
        # Columns the insert fills from their Python-side default, as SQLAlchemy would.
        self.defaults: dict[str, Any] = {}
        for column in table.c:
            default: Any = column.default
            if column.name not in keys and default is not None and default.is_scalar:
                self.defaults[column.name] = default.arg
        self.sql: dict[str, str] = {}

    def run(self, cursor: Any, status: str, statement: Any, rows: list[dict[str, Any]]) -> None:
        sql = self.sql.get(status)
        if sql is None:
            compiled = str(statement.compile(dialect=self.dialect, column_keys=self.keys))
            sql = self.sql[status] = _from_json(compiled)
        for row in rows:
            for key, processor in self.convert:
                row[key] = processor(row[key])
            for key in self.times:
                if row[key] is not None:
                    row[key] = row[key].isoformat()
            row.update(self.defaults)
        cursor.execute(sql, (json.dumps(rows, ensure_ascii=False),), prepare=True)


_BOUND = re.compile(r"%\((\w+)\)s::([A-Z ]+)")


def _from_json(sql: str) -> str:
    """``INSERT ... VALUES (%(a)s::T, ...) ON CONFLICT ...`` with its rows read from one
    JSON array of objects instead, without the RETURNING nothing reads. JSON columns
    arrive as their text, cast as the VALUES form casts it."""
    head, values_, rest = sql.partition(" VALUES (")
    values, conflict, tail = rest.partition(") ON CONFLICT ")
    bound = _BOUND.findall(values)
    if not values_ or not conflict or ", ".join(f"%({k})s::{t}" for k, t in bound) != values:
        raise ValueError(f"unexpected upsert statement: {sql}")
    picked = ", ".join(f"r.{key}::{type_}" for key, type_ in bound)
    record = ", ".join(f"{key} {'TEXT' if type_ == 'JSON' else type_}" for key, type_ in bound)
    tail = tail.partition(" RETURNING ")[0]
    return (
        f"{head} SELECT {picked} FROM json_to_recordset(%s::JSON) AS r({record}) ON CONFLICT {tail}"
    )


_DRIVER: dict[Any, _DriverUpserts] = {}


def _driver_upserts(dialect: Any) -> _DriverUpserts | None:
    """The driver-level upserts for psycopg on PostgreSQL; None elsewhere (SQLite)."""
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None
    key = type(dialect)
    if key not in _DRIVER:
        _DRIVER[key] = _DriverUpserts(dialect)
    return _DRIVER[key]


def _one_per_execution(status: str, group: list[ExecutionUpdate]) -> list[ExecutionUpdate]:
    """The step of each execution that counts in a group of one status, in order.

    ``started``/``retry``: the latest attempt (the group is in natural order); pending
    and final steps: the first, as when they are applied one by one.
    """
    chosen: dict[str, ExecutionUpdate] = {}
    for step in group:
        if status in (Status.STARTED, Status.RETRY) or step.celery_task_id not in chosen:
            chosen[step.celery_task_id] = step
    return list(chosen.values())


def coalesced(updates: list[ExecutionUpdate]) -> list[ExecutionUpdate]:
    """Drop the steps a final step of the same batch makes moot (it carries their fields).

    A fast task's ``started`` and ``success`` usually reach one batch together: writing
    only the final step halves the writes and leaves the row exactly as both would.
    """
    finished = {
        update.celery_task_id
        for update in updates
        if update.status in FINISHED and update.started_at is not None
    }
    if not finished:
        return updates
    return [
        update
        for update in updates
        if update.status in FINISHED
        or update.status == Status.PENDING  # it may create the row, with its trigger
        or update.celery_task_id not in finished
    ]


def upsert(session: Session, update_: ExecutionUpdate) -> None:
    """One step on its own (tests and single writes)."""
    apply_updates(session, [update_])


def reap_lost(session: Session, now: dt.datetime) -> int:
    """Mark ``started`` executions past their deadline as lost; return how many.

    A worker killed outright (SIGKILL, OOM of the whole worker, a machine gone) sends
    no signal, so its executions would stay ``started`` forever. ``pending`` and
    ``retry`` rows are left alone: their message is still in the broker.
    """
    table: Table = TaskExecution.__table__  # type: ignore[assignment]
    statement = (
        update(table)
        .where(table.c.status == Status.STARTED, table.c.deadline_at < now)
        .values(status=Status.FAILURE, error=LOST_REASON, finished_at=now, deadline_at=None)
    )
    result = session.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
