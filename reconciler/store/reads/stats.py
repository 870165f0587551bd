"""A task's per-day statistics (docs/tracking.md, "Statistics"): the rolled-up days from
``task_stats_daily``, the days not rolled up yet worked out from the rows."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.store.rollup import FINAL, DayStats, summarise
from reconciler.store.tables import HistoryRetention, Task, TaskExecution, TaskStatsDay


def daily_stats(session: Session, name: str, since: dt.date) -> list[DayStats]:
    """One task's days from ``since`` on, oldest first; days without executions are left out."""
    rolled = session.scalar(select(HistoryRetention.rolled_up_until))
    found: list[DayStats] = []
    if rolled is not None and rolled > since:
        for row in session.scalars(
            select(TaskStatsDay)
            .where(TaskStatsDay.task_name == name)
            .where(TaskStatsDay.day >= since, TaskStatsDay.day < rolled)
            .order_by(TaskStatsDay.day)
        ):
            found.append(_stored(row))
    live_from = max(since, rolled) if rolled is not None else since
    start = dt.datetime.combine(live_from, dt.time(), tzinfo=dt.UTC)
    rows = session.execute(
        select(TaskExecution.finished_at, TaskExecution.status, TaskExecution.duration_ms)
        .where(TaskExecution.task_name == name)
        .where(TaskExecution.finished_at.is_not(None), TaskExecution.finished_at >= start)
        .where(TaskExecution.status.in_(FINAL))
    ).all()
    by_day: dict[dt.date, list[tuple[str, int | None]]] = {}
    for finished, status, duration in rows:
        if finished is not None:
            by_day.setdefault(finished.astimezone(dt.UTC).date(), []).append((status, duration))
    found.extend(summarise(day, items) for day, items in sorted(by_day.items()))
    return found


def latest_days(session: Session, owner: str | None = None) -> list[tuple[str, str, DayStats]]:
    """Each live task's (name, owner, statistics) of the newest rolled-up day, for
    ``/metrics``; only ``owner``'s tasks when given."""
    rolled = session.scalar(select(HistoryRetention.rolled_up_until))
    if rolled is None:
        return []
    query = (
        select(TaskStatsDay, Task.owner)
        .join(Task, Task.name == TaskStatsDay.task_name)
        .where(TaskStatsDay.day == rolled - dt.timedelta(days=1), Task.deleted_at.is_(None))
        .order_by(TaskStatsDay.task_name)
    )
    if owner is not None:
        query = query.where(Task.owner == owner)
    return [(row.task_name, task_owner, _stored(row)) for row, task_owner in session.execute(query)]


def _stored(row: TaskStatsDay) -> DayStats:
    return DayStats(
        day=row.day,
        successes=row.successes,
        failures=row.failures,
        revoked=row.revoked,
        duration_p50_ms=row.duration_p50_ms,
        duration_p95_ms=row.duration_p95_ms,
        duration_max_ms=row.duration_max_ms,
    )


def day_dict(stats: DayStats) -> dict[str, object]:
    return {
        "day": stats.day.isoformat(),
        "successes": stats.successes,
        "failures": stats.failures,
        "revoked": stats.revoked,
        "duration_p50_ms": stats.duration_p50_ms,
        "duration_p95_ms": stats.duration_p95_ms,
        "duration_max_ms": stats.duration_max_ms,
    }


def stats_dict(name: str, days: list[DayStats], since: dt.date) -> dict[str, object]:
    """What the API and ``reconcile status NAME --format json`` serve: the days, and their
    counts summed (percentiles do not add up across days: each day has its own)."""
    return {
        "name": name,
        "since": since.isoformat(),
        "successes": sum(d.successes for d in days),
        "failures": sum(d.failures for d in days),
        "revoked": sum(d.revoked for d in days),
        "duration_max_ms": max(
            (d.duration_max_ms for d in days if d.duration_max_ms is not None), default=None
        ),
        "days": [day_dict(d) for d in days],
    }
