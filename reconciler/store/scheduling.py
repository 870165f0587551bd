"""The Beat scheduler's statements: due slots, the claim, changes.

``reconciler.beat.ticker`` calls these inside one transaction per step. Every statement
works on a batch (one round trip for many slots), and what is due is read through the
``next_run_at`` index, so a tick costs the same with 100 or 100,000 tasks. On
PostgreSQL due rows are locked with ``FOR UPDATE SKIP LOCKED``: two beats split work
instead of waiting on each other; the compare-and-set on ``next_run_at`` and the unique
``(task_name, scheduled_for)`` key keep every slot single on SQLite too.

The execution rows written with each claim are the outbox's (``reconciler.store.outbox``);
each carries an owner and a lease (``reconciler.store.leases``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from reconciler.errors import DatabaseUnavailable
from reconciler.store.database import Database, first_line, unavailable
from reconciler.store.tables import ChangeMarker, Task, TaskExecution
from reconciler.vocabulary import Status

UNFINISHED = (Status.PENDING, Status.STARTED, Status.RETRY)
"""Statuses of an execution still queued or running (``overlap: skip`` waits for them)."""

_tasks: Table = Task.__table__  # type: ignore[assignment]
_executions: Table = TaskExecution.__table__  # type: ignore[assignment]


@contextmanager
def transaction(database: Database) -> Iterator[Session]:
    """A transaction whose connection failures surface as ``DatabaseUnavailable``."""
    try:
        with database.session() as session:
            yield session
    except (OperationalError, InterfaceError) as exc:
        if _contention(exc):
            raise DatabaseBusy(f"database busy: {first_line(exc)}") from exc
        raise unavailable(exc) from exc


class DatabaseBusy(DatabaseUnavailable):
    """A deadlock, lock timeout or SQLite busy error: the next attempt will most likely pass."""


def _contention(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(
        sign in text
        for sign in (
            "deadlock detected",
            "database is locked",
            "could not serialize",
            "lock timeout",
        )
    )


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSlot:
    """A task whose ``next_run_at`` has come: the row's identity and schedule state."""

    task_id: int
    name: str
    slot: dt.datetime
    anchor: dt.datetime | None
    change_seq: int


@dataclass(frozen=True)
class SpecRow:
    """A task's stored spec as of ``change_seq``; ``live`` is false once it is deleted."""

    name: str
    spec: dict[str, Any]
    change_seq: int
    live: bool


def change_marker(session: Session) -> int:
    """The apply counter: one indexed single-row read, polled every tick."""
    return int(session.scalar(select(ChangeMarker.seq).where(ChangeMarker.id == 1)) or 0)


def changed_specs(session: Session, since: int) -> list[SpecRow]:
    """Tasks touched by applies after marker value ``since`` (deleted ones included)."""
    query = select(_tasks.c.name, _tasks.c.spec, _tasks.c.change_seq, _tasks.c.deleted_at).where(
        _tasks.c.change_seq > since
    )
    return [
        SpecRow(name, spec, int(seq), deleted is None)
        for name, spec, seq, deleted in session.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class ChangedTask:
    """A task touched by an apply, without its spec: ``changed_specs`` for a cache that
    re-reads only the specs it holds."""

    name: str
    change_seq: int
    live: bool


def changed_tasks(session: Session, since: int) -> Iterator[ChangedTask]:
    """Names and versions of the tasks touched by applies after marker value ``since``,
    one at a time (an apply may have touched every task)."""
    c = _tasks.c
    query = select(c.name, c.change_seq, c.deleted_at).where(c.change_seq > since)
    for name, seq, deleted in session.execute(query):
        yield ChangedTask(name, int(seq), deleted is None)


def specs_by_name(session: Session, names: Sequence[str]) -> list[SpecRow]:
    query = select(_tasks.c.name, _tasks.c.spec, _tasks.c.change_seq, _tasks.c.deleted_at).where(
        _tasks.c.name.in_(list(names))
    )
    return [
        SpecRow(name, spec, int(seq), deleted is None)
        for name, spec, seq, deleted in session.execute(query)
    ]


def due_slots(session: Session, now: dt.datetime, limit: int) -> list[DueSlot]:
    """Up to ``limit`` due tasks, oldest slot first, locked for this transaction.

    PostgreSQL skips rows another beat has locked, so concurrent beats take disjoint
    batches; SQLite has no row locks (its writers are serialised) and relies on the
    compare-and-set in ``claim``.
    """
    c = _tasks.c
    query = (
        select(c.id, c.name, c.next_run_at, c.schedule_anchor, c.change_seq)
        .where(c.next_run_at <= now, c.enabled.is_(True), c.deleted_at.is_(None))
        .order_by(c.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [
        DueSlot(int(task_id), name, slot, anchor, int(seq))
        for task_id, name, slot, anchor, seq in session.execute(query)
    ]


def next_due(session: Session) -> dt.datetime | None:
    """The earliest slot of any live task (an index lookup), to know how long to sleep."""
    c = _tasks.c
    earliest: dt.datetime | None = session.scalar(
        select(func.min(c.next_run_at)).where(c.enabled.is_(True), c.deleted_at.is_(None))
    )
    return earliest


def unfinished(session: Session, names: Sequence[str]) -> set[str]:
    """Which of ``names`` have an execution that is queued or running."""
    if not names:
        return set()
    c = _executions.c
    query = (
        select(c.task_name).where(c.task_name.in_(list(names)), c.status.in_(UNFINISHED)).distinct()
    )
    return set(session.scalars(query))


# --- claiming --------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """Move task ``task_id`` from ``slot`` to ``next_run_at`` (only if still at ``slot``)."""

    task_id: int
    slot: dt.datetime
    next_run_at: dt.datetime | None
    fired: dt.datetime | None
    missed: int = 0
    skipped: int = 0
    calendar_skipped: int = 0


def claim(session: Session, claims: Sequence[Claim]) -> set[int]:
    """Compare-and-set every claim; return the ids of the tasks actually moved.

    One ``UPDATE ... FROM unnest(...)`` on PostgreSQL; on SQLite (in-process, no round
    trips) one UPDATE per task.
    """
    if not claims:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return _claim_values(session, claims)
    moved: set[int] = set()
    c = _tasks.c
    for item in claims:
        result = session.execute(
            update(_tasks)
            .where(c.id == item.task_id, c.next_run_at == item.slot)
            .values(_assignments(item))
        )
        if result.rowcount:  # type: ignore[attr-defined]
            moved.add(item.task_id)
    return moved


def _assignments(item: Claim) -> dict[str, Any]:
    c = _tasks.c
    assignments: dict[str, Any] = {
        "next_run_at": item.next_run_at,
        "missed_count": c.missed_count + item.missed,
        "skipped_count": c.skipped_count + item.skipped,
        "calendar_skipped_count": c.calendar_skipped_count + item.calendar_skipped,
    }
    if item.fired is not None:
        assignments["last_run_at"] = item.fired
    return assignments


# The statement takes whole columns as arrays (``unnest``): one statement text whatever
# the batch size, so it is prepared once, and one round trip per batch.
_CLAIM_PG = text(
    """
    UPDATE tasks SET
        next_run_at = v.next_run,
        last_run_at = coalesce(v.fired, tasks.last_run_at),
        missed_count = tasks.missed_count + v.missed,
        skipped_count = tasks.skipped_count + v.skipped,
        calendar_skipped_count = tasks.calendar_skipped_count + v.calendar_skipped
    FROM unnest(
        CAST(:ids AS BIGINT[]), CAST(:slots AS TIMESTAMPTZ[]), CAST(:next_runs AS TIMESTAMPTZ[]),
        CAST(:fired AS TIMESTAMPTZ[]), CAST(:missed AS INTEGER[]), CAST(:skipped AS INTEGER[]),
        CAST(:calendar_skipped AS INTEGER[])
    ) AS v(id, slot, next_run, fired, missed, skipped, calendar_skipped)
    WHERE tasks.id = v.id AND tasks.next_run_at = v.slot
    RETURNING tasks.id
    """
)


def _claim_values(session: Session, claims: Sequence[Claim]) -> set[int]:
    params = {
        "ids": [item.task_id for item in claims],
        "slots": [item.slot for item in claims],
        "next_runs": [item.next_run_at for item in claims],
        "fired": [item.fired for item in claims],
        "missed": [item.missed for item in claims],
        "skipped": [item.skipped for item in claims],
        "calendar_skipped": [item.calendar_skipped for item in claims],
    }
    return {int(task_id) for task_id in session.scalars(_CLAIM_PG, params)}


# --- manual runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class LiveTask:
    name: str
    spec: dict[str, Any]
    deleted: bool


def find_task(session: Session, name: str) -> LiveTask | None:
    """A task row by name (deleted ones too, so callers can say which it is)."""
    row = session.execute(
        select(_tasks.c.name, _tasks.c.spec, _tasks.c.deleted_at).where(_tasks.c.name == name)
    ).first()
    if row is None:
        return None
    return LiveTask(row.name, row.spec, row.deleted_at is not None)
