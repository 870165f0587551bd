"""Alert state: the rows the conditions read, and each alert recorded, claimed and marked
sent, so it is sent once and resolved once whichever beat sends it (docs/beat.md, "Alerts").

Every write is a compare-and-set: a new episode is an ``INSERT ... ON CONFLICT DO
NOTHING`` on (task, condition, episode), a resolution updates only an unresolved row,
and a send is claimed by moving a due ``next_try_at`` forward (on PostgreSQL with
``FOR UPDATE SKIP LOCKED``, so two beats take different rows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, case, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconciler.core.alerting import (
    ANNOUNCED,
    Clear,
    Condition,
    Execution,
    Fire,
    Health,
    Open,
    Resolution,
)
from reconciler.store.tables import OUTCOMES, Alert, Task, TaskExecution
from reconciler.vocabulary import Status

_alerts: Table = Alert.__table__  # type: ignore[assignment]
_tasks: Table = Task.__table__  # type: ignore[assignment]
_executions: Table = TaskExecution.__table__  # type: ignore[assignment]
_ANNOUNCED = [str(resolution) for resolution in ANNOUNCED]
FAILURES_PER_TASK = 20
"""Failed executions of one task alerted in one round at most (after an outage, the newest)."""


# --- what the conditions read ------------------------------------------------------------


def health(session: Session, names: Iterable[str] | None = None) -> list[Health]:
    """The health of every live task, or of ``names`` (deleted ones too)."""
    c = _tasks.c
    if names is None:
        return _health(session, c.deleted_at.is_(None))
    return _health(session, c.name.in_(list(names)))


def health_of_interest(
    session: Session,
    failed_since: dt.datetime,
    succeeded_before: dt.datetime | None,
    names: Iterable[str] = (),
) -> list[Health]:
    """The live tasks a condition may hold for now, a superset: failing, a failure since
    ``failed_since``, slots ever missed or skipped, no success (nor creation) since
    ``succeeded_before``; and ``names`` whatever their state. Between full sweeps this
    keeps a round's read to the few tasks not plainly healthy."""
    c = _tasks.c
    terms = [
        c.consecutive_failures > 0,
        c.last_failure_at > failed_since,
        c.missed_count > 0,
        c.skipped_count > 0,
    ]
    if succeeded_before is not None:
        terms.append(func.coalesce(c.last_success_at, c.created_at) < succeeded_before)
    listed = list(names)
    condition = and_(c.deleted_at.is_(None), or_(*terms))
    return _health(session, or_(condition, c.name.in_(listed)) if listed else condition)


def _health(session: Session, where: Any) -> list[Health]:
    c = _tasks.c
    query = select(
        c.name,
        c.owner,
        c.enabled,
        c.deleted_at,
        c.created_at,
        c.schedule_anchor,
        c.last_success_at,
        c.last_failure_at,
        c.consecutive_failures,
        c.missed_count,
        c.skipped_count,
        c.last_run_at,
    ).where(where)
    return [
        Health(
            name=row.name,
            owner=row.owner,
            enabled=bool(row.enabled),
            live=row.deleted_at is None,
            anchor=max(row.created_at, row.schedule_anchor or row.created_at),
            last_success_at=row.last_success_at,
            last_failure_at=row.last_failure_at,
            consecutive_failures=int(row.consecutive_failures or 0),
            missed_count=int(row.missed_count or 0),
            skipped_count=int(row.skipped_count or 0),
            last_run_at=row.last_run_at,
        )
        for row in session.execute(query).all()
    ]


_EXECUTION_COLUMNS = (
    _executions.c.id,
    _executions.c.task_name,
    _executions.c.celery_task_id,
    _executions.c.status,
    _executions.c.scheduled_for,
    _executions.c.started_at,
    _executions.c.finished_at,
    _executions.c.error,
    _executions.c.args,
    _executions.c.kwargs,
)


def _execution(row: Any) -> Execution:
    return Execution(
        id=int(row.id),
        task_name=row.task_name,
        celery_task_id=row.celery_task_id,
        status=row.status,
        scheduled_for=row.scheduled_for,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        args=row.args if isinstance(row.args, list) else [],
        kwargs=row.kwargs if isinstance(row.kwargs, dict) else {},
    )


def running(session: Session) -> list[Execution]:
    """Executions started and not finished (a retrying one included), through the status index."""
    query = select(*_EXECUTION_COLUMNS).where(
        _executions.c.status.in_([Status.STARTED, Status.RETRY])
    )
    return [_execution(row) for row in session.execute(query)]


def failures_after(session: Session, name: str, after: dt.datetime | None) -> list[Execution]:
    """Failed executions of ``name`` that finished after ``after``, oldest first; with no
    ``after``, only the newest failure (the counts so far are history)."""
    c = _executions.c
    query = (
        select(*_EXECUTION_COLUMNS)
        .where(c.task_name == name, c.status == Status.FAILURE, text(f"({OUTCOMES})"))
        .order_by(c.finished_at.desc())
        .limit(FAILURES_PER_TASK if after is not None else 1)
    )
    if after is not None:
        query = query.where(c.finished_at > after)
    return [_execution(row) for row in reversed(list(session.execute(query)))]


def alert_specs(session: Session, since: int) -> list[tuple[str, Any]]:
    """The ``alerts`` of the tasks applies touched after marker value ``since``, as
    stored (None for a task without, or deleted): only that part of each spec is read."""
    c = _tasks.c
    query = select(c.name, c.spec["alerts"], c.deleted_at).where(c.change_seq > since)
    return [(name, None if deleted else alerts) for name, alerts, deleted in session.execute(query)]


def open_alerts(session: Session) -> list[Open]:
    c = _alerts.c
    query = select(c.id, c.task_name, c.condition, c.episode, c.details).where(
        c.resolved_at.is_(None)
    )
    return [
        Open(int(row.id), row.task_name, row.condition, row.episode, row.details or {})
        for row in session.execute(query)
    ]


def missed_seen(session: Session) -> dict[str, str]:
    """The latest ``missed`` episode recorded for each task (its counts when last seen)."""
    c = _alerts.c
    latest = (
        select(func.max(c.id)).where(c.condition == Condition.MISSED).group_by(c.task_name)
    ).scalar_subquery()
    query = select(c.task_name, c.episode).where(c.id.in_(latest))
    return {row.task_name: row.episode for row in session.execute(query)}


def failures_alerted(session: Session) -> dict[str, dt.datetime]:
    """For each task, when the newest failure it was alerted on finished."""
    c = _alerts.c
    query = (
        select(c.task_name, func.max(c.since))
        .where(c.condition == Condition.ON_FAILURE)
        .group_by(c.task_name)
    )
    return {name: _aware(since) for name, since in session.execute(query)}


def _aware(value: Any) -> dt.datetime:
    # ``max()`` loses the column type on SQLite: the text comes back as it is stored.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# --- recording -------------------------------------------------------------------------


def record(
    session: Session, fires: Sequence[Fire], clears: Sequence[Clear], now: dt.datetime
) -> int:
    """Insert the new episodes (one row each, whoever inserts first) and resolve the
    cleared ones that are still open; returns how many episodes were new here."""
    inserted = 0
    if fires:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        rows = [_row(fire, now) for fire in fires]
        # One statement compiled once, its rows sent in batches (SQLAlchemy's
        # "insertmanyvalues"): a multi-row VALUES would be compiled row by row.
        statement = (
            insert(_alerts)
            .on_conflict_do_nothing(index_elements=["task_name", "condition", "episode"])
            .returning(_alerts.c.id)
        )
        inserted = len(session.execute(statement, rows).all())
    for resolution in {clear.resolution for clear in clears}:
        ids = [clear.alert_id for clear in clears if clear.resolution == resolution]
        session.execute(_resolve(ids, resolution, now))
    return inserted


def _row(fire: Fire, now: dt.datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_name": fire.task_name,
        "condition": str(fire.condition),
        "episode": fire.episode,
        "owner": fire.owner,
        "since": fire.since,
        "fired_at": now,
        "summary": fire.summary,
        "details": fire.details,
        "attempts": 0,
        "resolved_at": None,
        "resolution": None,
        "notified_at": None,
        "next_try_at": now,
    }
    if fire.silent:
        row.update(resolved_at=now, resolution=str(Resolution.BASELINE), next_try_at=None)
    elif fire.superseded:
        row.update(resolved_at=now, resolution=str(Resolution.SUPERSEDED))
    return row


def _resolve(ids: list[int], resolution: Resolution, now: dt.datetime) -> Any:
    c = _alerts.c
    values: dict[str, Any] = {"resolved_at": now, "resolution": str(resolution)}
    if resolution in ANNOUNCED:
        # The firing message went out: the resolved one is due now. Not sent yet: the
        # row is still pending for it, and the resolved message follows.
        values["next_try_at"] = case((c.notified_at.is_not(None), now), else_=c.next_try_at)
    return update(_alerts).where(c.id.in_(ids), c.resolved_at.is_(None)).values(values)


# --- sending ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A claimed alert and the message it owes: ``firing`` first, then ``resolved``."""

    id: int
    task_name: str
    owner: str
    condition: str
    episode: str
    since: dt.datetime
    fired_at: dt.datetime
    summary: str
    details: dict[str, Any]
    resolved_at: dt.datetime | None
    resolution: str | None
    attempts: int
    claimed_until: dt.datetime
    claimed_kind: str = "firing"  # the message owed: "firing", then "resolved"


def claim(session: Session, now: dt.datetime, hold: dt.timedelta, limit: int) -> list[Pending]:
    """Claim up to ``limit`` alerts whose message is due, for ``hold``: another beat
    claims them only after that (so a beat that died mid-send does not lose them)."""
    c = _alerts.c
    until = now + hold
    due = (
        select(c.id)
        .where(c.next_try_at <= now)
        .order_by(c.next_try_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(_alerts)
        .where(c.id.in_(due.scalar_subquery()), c.next_try_at <= now)
        .values(next_try_at=until)
        .returning(
            c.id,
            c.task_name,
            c.owner,
            c.condition,
            c.episode,
            c.since,
            c.fired_at,
            c.summary,
            c.details,
            c.resolved_at,
            c.resolution,
            c.attempts,
            c.notified_at,
        )
    )
    claimed = [
        Pending(
            id=int(row.id),
            task_name=row.task_name,
            owner=row.owner,
            condition=row.condition,
            episode=row.episode,
            since=row.since,
            fired_at=row.fired_at,
            summary=row.summary,
            details=row.details or {},
            resolved_at=row.resolved_at,
            resolution=row.resolution,
            attempts=int(row.attempts),
            claimed_until=until,
            claimed_kind="firing" if row.notified_at is None else "resolved",
        )
        for row in session.execute(statement)
    ]
    return sorted(claimed, key=lambda pending: pending.id)


def sent(session: Session, pending: Pending, now: dt.datetime) -> bool:
    """Mark ``pending``'s message sent, if this beat still holds the claim; the row stays
    due when a resolved message is owed next."""
    c = _alerts.c
    mine = and_(c.id == pending.id, c.next_try_at == pending.claimed_until)
    if pending.claimed_kind == "firing":
        owes_resolved = and_(c.resolved_at.is_not(None), c.resolution.in_(_ANNOUNCED))
        values: dict[str, Any] = {
            "notified_at": now,
            "next_try_at": case((owes_resolved, now), else_=None),
        }
    else:
        values = {"resolved_notified_at": now, "next_try_at": None}
    values.update(attempts=0, last_error=None)
    result = session.execute(update(_alerts).where(mine).values(values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def failed(
    session: Session, pending: Pending, error: str, retry_at: dt.datetime, *, attempted: bool = True
) -> None:
    """The send failed (or was not tried, ``attempted=False``): due again at ``retry_at``."""
    c = _alerts.c
    values: dict[str, Any] = {"next_try_at": retry_at, "last_error": error[:1000]}
    if attempted:
        values["attempts"] = c.attempts + 1
    session.execute(
        update(_alerts)
        .where(c.id == pending.id, c.next_try_at == pending.claimed_until)
        .values(values)
    )
