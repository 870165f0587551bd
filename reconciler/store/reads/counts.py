"""The counts ``/metrics`` reads at scrape time: executions, duplicate deliveries, tasks,
the heartbeats of beats and watch loops, and the last apply."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reconciler.store import heartbeats as fleet
from reconciler.store.heartbeats import BeatState, WatchState
from reconciler.store.reads.reader import plain
from reconciler.store.tables import ApplyRecord, Task, TaskExecution
from reconciler.vocabulary import Outcome


def execution_counts(session: Session, *, owner: str | None = None) -> list[tuple[str, str, int]]:
    """(task, status, count) for every task and status that has executions."""
    stmt = select(TaskExecution.task_name, TaskExecution.status, func.count()).group_by(
        TaskExecution.task_name, TaskExecution.status
    )
    if owner is not None:
        stmt = stmt.where(TaskExecution.owner == owner)
    return [(name, status, count) for name, status, count in plain(session).execute(stmt)]


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
    return [(name, int(count)) for name, count in plain(session).execute(stmt)]


def task_counts(session: Session, *, owner: str | None = None) -> list[tuple[str, bool, int]]:
    """(type, enabled, count) of the live (not deleted) tasks."""
    stmt = (
        select(Task.type, Task.enabled, func.count())
        .where(Task.deleted_at.is_(None))
        .group_by(Task.type, Task.enabled)
    )
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    rows = plain(session).execute(stmt)
    return [(type_, bool(enabled), count) for type_, enabled, count in rows]


@dataclass(frozen=True)
class Fleet:
    beats: list[BeatState]
    watches: list[WatchState]


def heartbeats(session: Session) -> Fleet:
    """The heartbeats of the beats and of the watch loops, by name."""
    return Fleet(fleet.beats(session), fleet.watches(session))


def last_apply(session: Session) -> ApplyRecord | None:
    """The latest attempt that applied (failed attempts are in the log too)."""
    stmt = (
        select(ApplyRecord)
        .where(ApplyRecord.outcome == Outcome.APPLIED)
        .order_by(ApplyRecord.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()
