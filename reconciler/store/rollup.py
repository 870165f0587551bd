"""Daily statistics per task, rolled up from whole days of executions before any of
their rows may be pruned (docs/tracking.md "Statistics", docs/design/retention.md)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from reconciler.core.retention import percentile
from reconciler.store.database import Database
from reconciler.store.retentionturn import aware, turn
from reconciler.store.tables import HistoryRetention, TaskExecution
from reconciler.vocabulary import FINISHED, Status

# A day is rolled up once it ended this long ago (late reports of its executions).
ROLL_UP_GRACE = dt.timedelta(hours=1)
FINAL = tuple(sorted(FINISHED))
FINISHED_SQL = "(" + ", ".join(f"'{status}'" for status in FINAL) + ")"


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def roll_up_limit(now: dt.datetime) -> dt.date:
    """The first day that is not yet complete enough to roll up."""
    return (now - ROLL_UP_GRACE).date()


@dataclass(frozen=True)
class DayStats:
    """One task's executions that finished on one UTC day."""

    day: dt.date
    successes: int
    failures: int
    revoked: int
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    duration_max_ms: int | None

    @property
    def total(self) -> int:
        return self.successes + self.failures + self.revoked


def summarise(day: dt.date, rows: list[tuple[str, int | None]]) -> DayStats:
    """The statistics of (status, duration) pairs; durations of successes and failures."""
    timed = (Status.SUCCESS, Status.FAILURE)
    durations = [d for s, d in rows if s in timed and d is not None]
    return DayStats(
        day=day,
        successes=sum(1 for s, _ in rows if s == Status.SUCCESS),
        failures=sum(1 for s, _ in rows if s == Status.FAILURE),
        revoked=sum(1 for s, _ in rows if s == Status.REVOKED),
        duration_p50_ms=percentile(durations, 0.5),
        duration_p95_ms=percentile(durations, 0.95),
        duration_max_ms=max(durations, default=None),
    )


_ROLL_UP_POSTGRES = f"""
    INSERT INTO task_stats_daily (task_name, day, successes, failures, revoked,
        duration_p50_ms, duration_p95_ms, duration_max_ms)
    SELECT task_name, CAST(:day AS date),
        count(*) FILTER (WHERE status = 'success'),
        count(*) FILTER (WHERE status = 'failure'),
        count(*) FILTER (WHERE status = 'revoked'),
        percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
            FILTER (WHERE status IN ('success', 'failure')),
        percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
            FILTER (WHERE status IN ('success', 'failure')),
        max(duration_ms) FILTER (WHERE status IN ('success', 'failure'))
    FROM task_executions
    WHERE finished_at IS NOT NULL AND finished_at >= :start AND finished_at < :end
      AND status IN {FINISHED_SQL}
    GROUP BY task_name
    ON CONFLICT DO NOTHING
"""


def _roll_up_day(session: Session, dialect: str, day: dt.date) -> None:
    start, end = day_start(day), day_start(day + dt.timedelta(days=1))
    if dialect == "postgresql":
        session.execute(text(_ROLL_UP_POSTGRES), {"day": day, "start": start, "end": end})
        return
    rows = session.execute(
        select(TaskExecution.task_name, TaskExecution.status, TaskExecution.duration_ms)
        .where(TaskExecution.finished_at.is_not(None))
        .where(TaskExecution.finished_at >= start, TaskExecution.finished_at < end)
        .where(TaskExecution.status.in_(FINAL))
    ).all()
    grouped: dict[str, list[tuple[str, int | None]]] = {}
    for name, status, duration in rows:
        grouped.setdefault(name, []).append((status, duration))
    for name, items in grouped.items():
        stats = summarise(day, items)
        session.execute(
            text(
                "INSERT OR IGNORE INTO task_stats_daily (task_name, day, successes, failures, "
                "revoked, duration_p50_ms, duration_p95_ms, duration_max_ms) VALUES (:n, :d, "
                ":s, :f, :r, :p50, :p95, :max)"
            ),
            {
                "n": name,
                "d": day.isoformat(),
                "s": stats.successes,
                "f": stats.failures,
                "r": stats.revoked,
                "p50": stats.duration_p50_ms,
                "p95": stats.duration_p95_ms,
                "max": stats.duration_max_ms,
            },
        )


def roll_up(database: Database, now: dt.datetime, deadline: float) -> tuple[int, dt.date | None]:
    """Roll up complete days, one per transaction, until done or ``deadline`` (monotonic);
    the days rolled up and the first day not rolled up (None: another pruner's turn)."""
    limit = roll_up_limit(now)
    days = 0
    while True:
        with turn(database) as session:
            if session is None:
                return days, None
            until = session.scalar(select(HistoryRetention.rolled_up_until))
            if until is None or until < limit:
                start = day_start(until) if until is not None else None
                first = session.scalar(
                    select(func.min(TaskExecution.finished_at))
                    .where(TaskExecution.finished_at.is_not(None))
                    .where(TaskExecution.finished_at >= start if start else text("1 = 1"))
                )
                day = min(aware(first).date(), limit) if first is not None else limit  # type: ignore[union-attr]
                if day < limit:
                    _roll_up_day(session, database.dialect, day)
                    days += 1
                    until = day + dt.timedelta(days=1)
                else:
                    until = limit
                session.execute(
                    HistoryRetention.__table__.update().values(rolled_up_until=until)  # type: ignore[attr-defined]
                )
        if until >= limit or time.monotonic() >= deadline:
            return days, until
