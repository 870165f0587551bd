"""Pruning expired executions, task by task in short transactions, each holding the
pruners' turn (``store.retentionturn``) after the days are rolled up (``store.rollup``);
a task's latest execution, success, failure and unfinished rows are never candidates
(docs/tracking.md "Retention", docs/design/retention.md)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from reconciler.core.retention import (
    APPLIES_KEEP_LAST,
    STATS_KEEP_DAYS,
    Policy,
    policy_of,
)
from reconciler.store.database import Database
from reconciler.store.retentionturn import aware, turn
from reconciler.store.rollup import FINISHED_SQL, day_start, roll_up, roll_up_limit
from reconciler.store.tables import HistoryRetention, Task

Clock = Callable[[], dt.datetime]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- which rows go ------------------------------------------------------------------

# One task's expired rows, oldest first: beyond its ``keep_last`` newest, queued before the
# cutoff, finished on a rolled-up day, and none of its latest execution, latest success
# and latest failure.
_CANDIDATES = f"""
    FROM task_executions e
    WHERE e.task_name = :name
      AND e.status IN {FINISHED_SQL}
      AND e.queued_at < :cutoff
      AND e.finished_at < :rolled
      AND (:keep_last = 0 OR e.id < COALESCE((SELECT k.id FROM task_executions k
            WHERE k.task_name = :name ORDER BY k.id DESC LIMIT 1 OFFSET :keep_offset), 0))
      AND e.id <> COALESCE((SELECT t.last_execution_id FROM tasks t WHERE t.name = :name), 0)
      AND e.id <> COALESCE((SELECT s.id FROM task_executions s
            WHERE s.task_name = :name AND s.status = 'success'
              AND (s.status = 'success' OR s.status = 'failure')
            ORDER BY s.finished_at DESC, s.id DESC LIMIT 1), 0)
      AND e.id <> COALESCE((SELECT f.id FROM task_executions f
            WHERE f.task_name = :name AND f.status = 'failure'
              AND (f.status = 'success' OR f.status = 'failure')
            ORDER BY f.finished_at DESC, f.id DESC LIMIT 1), 0)
"""

# PostgreSQL: the same for a group of tasks in one statement each (fewer round trips
# while a backlog is pruned); the keepers are evaluated once per task. The locked rows are
# deleted by their ``ctid`` (a locked row stays where it is until the commit), and what
# went comes back per task, not per row.
_GROUP = 50
_PROBE_POSTGRES = f"""
    SELECT p.name FROM unnest(CAST(:names AS text[]), CAST(:cutoffs AS timestamptz[]))
        AS p(name, cutoff)
    WHERE EXISTS (SELECT 1 FROM (SELECT e.queued_at FROM task_executions e
        WHERE e.task_name = p.name AND e.status IN {FINISHED_SQL} ORDER BY e.id LIMIT 3) f
        WHERE f.queued_at < p.cutoff)
"""
_DELETE_POSTGRES = f"""
    WITH p AS (
        SELECT * FROM unnest(CAST(:names AS text[]), CAST(:cutoffs AS timestamptz[]),
            CAST(:keeps AS integer[])) AS p(name, cutoff, keep_last)
    ), doomed AS (
        SELECT c.ctid FROM p CROSS JOIN LATERAL (
            SELECT e.ctid FROM task_executions e
            WHERE e.task_name = p.name
              AND e.status IN {FINISHED_SQL}
              AND e.queued_at < p.cutoff
              AND e.finished_at < :rolled
              AND (p.keep_last = 0 OR e.id < COALESCE((SELECT k.id FROM task_executions k
                    WHERE k.task_name = p.name ORDER BY k.id DESC
                    LIMIT 1 OFFSET GREATEST(p.keep_last - 1, 0)), 0))
              AND e.id <> COALESCE((SELECT t.last_execution_id FROM tasks t
                    WHERE t.name = p.name), 0)
              AND e.id <> COALESCE((SELECT s.id FROM task_executions s
                    WHERE s.task_name = p.name AND s.status = 'success'
                      AND (s.status = 'success' OR s.status = 'failure')
                    ORDER BY s.finished_at DESC, s.id DESC LIMIT 1), 0)
              AND e.id <> COALESCE((SELECT f.id FROM task_executions f
                    WHERE f.task_name = p.name AND f.status = 'failure'
                      AND (f.status = 'success' OR f.status = 'failure')
                    ORDER BY f.finished_at DESC, f.id DESC LIMIT 1), 0)
            ORDER BY e.id LIMIT :per_task
            FOR UPDATE OF e SKIP LOCKED
        ) c
    ), gone AS (
        DELETE FROM task_executions x USING doomed WHERE x.ctid = doomed.ctid
        RETURNING x.task_name, x.queued_at
    )
    SELECT task_name, count(*), min(queued_at), max(queued_at) FROM gone GROUP BY task_name
"""

# The oldest row that could go, looked up before anything else: most tasks have none.
_FIRST = f"""
    SELECT e.queued_at FROM task_executions e
    WHERE e.task_name = :name AND e.status IN {FINISHED_SQL}
    ORDER BY e.id LIMIT 3
"""


def _params(name: str, policy: Policy, now: dt.datetime, rolled: dt.date) -> dict[str, Any]:
    return {
        "name": name,
        "cutoff": policy.cutoff(now),
        "rolled": day_start(rolled),
        "keep_last": policy.keep_last,
        "keep_offset": max(policy.keep_last - 1, 0),
    }


@dataclass
class TaskRemoval:
    """What a pass removed (or a dry run would remove) of one task's executions."""

    task_name: str
    rows: int = 0
    oldest: dt.datetime | None = None
    newest: dt.datetime | None = None


@dataclass
class PruneReport:
    """One pass: executions removed per task and the other tables' rows removed."""

    tasks: dict[str, TaskRemoval] = field(default_factory=dict)
    days_rolled_up: int = 0
    stats_days: int = 0
    applies: int = 0
    alerts: int = 0
    watch_heartbeats: int = 0
    busy: bool = False  # another pruner held the lease
    finished: bool = True  # False: the pass ran out of time with rows left

    @property
    def executions(self) -> int:
        return sum(item.rows for item in self.tasks.values())

    def merge(self, other: PruneReport) -> None:
        """Add a later pass's removals to this one; its outcome replaces this one's."""
        for item in other.tasks.values():
            self.add(item.task_name, item.rows, item.oldest, item.newest)
        self.days_rolled_up += other.days_rolled_up
        self.stats_days += other.stats_days
        self.applies += other.applies
        self.alerts += other.alerts
        self.watch_heartbeats += other.watch_heartbeats
        self.busy, self.finished = other.busy, other.finished

    def add(self, name: str, rows: int, oldest: Any, newest: Any) -> None:
        item = self.tasks.setdefault(name, TaskRemoval(name))
        item.rows += rows
        item.oldest = _earliest(item.oldest, aware(oldest))
        item.newest = _latest(item.newest, aware(newest))


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else max(a, b)


PAGE = 1000
"""Task names read at a time: a pass holds one page of policies, however many tasks."""


def policies(
    session: Session,
    default_days: int,
    name: str | None = None,
    *,
    after: str | None = None,
    limit: int | None = None,
) -> dict[str, Policy]:
    """Task names' policies (deleted tasks too) in name order, from the ``history`` in each
    stored spec: every name's, ``name``'s, or the ``limit`` names after ``after``."""
    query = select(Task.name, Task.spec["history"]).order_by(Task.name)
    if name is not None:
        query = query.where(Task.name == name)
    if after is not None:
        query = query.where(Task.name > after)
    if limit is not None:
        query = query.limit(limit)
    return {
        task_name: policy_of(stored if isinstance(stored, Mapping) else None, default_days)
        for task_name, stored in session.execute(query)
    }


@dataclass
class _Queue:
    """The tasks a pass has still to prune: those read and not done, then the next page."""

    default_days: int
    name: str | None
    pending: list[tuple[str, Policy]] = field(default_factory=list)
    after: str | None = None
    read_all: bool = False

    def head(self, session: Session, count: int) -> list[tuple[str, Policy]]:
        """The first ``count`` tasks still to prune, reading pages as needed."""
        while len(self.pending) < count and not self.read_all:
            page = policies(session, self.default_days, self.name, after=self.after, limit=PAGE)
            self.pending.extend(page.items())
            self.read_all = len(page) < PAGE
            if page:
                self.after = next(reversed(page))
        return self.pending[:count]


def each_policy(
    session: Session, default_days: int, name: str | None = None
) -> Iterator[tuple[str, Policy]]:
    """Every task name's policy (or ``name``'s), read a page at a time."""
    queue = _Queue(default_days, name)
    while queue.head(session, 1):
        yield queue.pending.pop(0)


# --- the prune ----------------------------------------------------------------------


@dataclass
class Pruner:
    """Prunes in transactions of at most ``batch_rows`` rows and ``batch_seconds``."""

    database: Database
    default_days: int
    batch_rows: int = 10_000
    batch_seconds: float = 0.5
    clock: Clock = _utc_now

    def run(
        self,
        *,
        task: str | None = None,
        budget: float = 60.0,
        pause: float = 0.0,
        stop: threading.Event | None = None,
    ) -> PruneReport:
        """One pass: roll up, then prune every task (or ``task``) until done, ``budget``
        seconds or ``stop``; ``pause`` seconds between transactions leave the database to
        others."""
        stop = stop or threading.Event()
        report = PruneReport()
        deadline = time.monotonic() + budget
        now = self.clock()
        days, rolled = roll_up(self.database, now, deadline)
        report.days_rolled_up = days
        if rolled is None:
            report.busy = True
            return report
        queue = _Queue(self.default_days, task)
        while True:
            if time.monotonic() >= deadline or stop.is_set():
                report.finished = False
                return report
            with turn(self.database) as session:
                if session is None:
                    report.busy = True
                    return report
                self._batch(session, queue, now, rolled, report)
                more = bool(queue.head(session, 1))
            if not more:
                break
            if pause:
                stop.wait(pause)
        if task is None:
            self._others(now, report)
        with self.database.session() as session:
            session.execute(
                HistoryRetention.__table__.update().values(last_pass_at=self.clock())  # type: ignore[attr-defined]
            )
        return report

    def _batch(
        self,
        session: Session,
        queue: _Queue,
        now: dt.datetime,
        rolled: dt.date,
        report: PruneReport,
    ) -> None:
        """Delete from the tasks at the head of ``queue`` until the batch is full, taking
        each task off when it is done (the last one stays when it may have more)."""
        if self.database.dialect == "postgresql":
            self._batch_postgres(session, queue, now, rolled, report)
            return
        pending = queue.pending
        started = time.monotonic()
        room = self.batch_rows
        while (
            room > 0 and time.monotonic() - started < self.batch_seconds and queue.head(session, 1)
        ):
            name, policy = pending[0]
            params = _params(name, policy, now, rolled)
            firsts = session.execute(text(_FIRST), {"name": name}).scalars().all()
            if not any(aware(q) < params["cutoff"] for q in firsts):  # type: ignore[operator]
                pending.pop(0)
                continue
            doomed = f"SELECT e.id {_CANDIDATES} ORDER BY e.id LIMIT :room"
            asked = room
            rows = (
                session.execute(
                    text(f"DELETE FROM task_executions WHERE id IN ({doomed}) RETURNING queued_at"),
                    {**params, "room": asked},
                )
                .scalars()
                .all()
            )
            if rows:
                report.add(name, len(rows), min(rows), max(rows))
                room -= len(rows)
            if len(rows) < asked:
                pending.pop(0)

    def _batch_postgres(
        self,
        session: Session,
        queue: _Queue,
        now: dt.datetime,
        rolled: dt.date,
        report: PruneReport,
    ) -> None:
        """As ``_batch``, a group of tasks per statement: the probe of their oldest rows
        for all of them, then one delete over those with expired rows."""
        pending = queue.pending
        started = time.monotonic()
        room = self.batch_rows
        while room > 0 and time.monotonic() - started < self.batch_seconds:
            group = queue.head(session, _GROUP)
            if not group:
                return
            names = [name for name, _ in group]
            cutoffs = [policy.cutoff(now) for _, policy in group]
            expired = set(
                session.execute(
                    text(_PROBE_POSTGRES), {"names": names, "cutoffs": cutoffs}
                ).scalars()
            )
            del pending[: len(group)]
            todo = [(name, policy) for name, policy in group if name in expired]
            if not todo:
                continue
            per_task = max(room // len(todo), 1)
            rows = session.execute(
                text(_DELETE_POSTGRES),
                {
                    "names": [name for name, _ in todo],
                    "cutoffs": [policy.cutoff(now) for _, policy in todo],
                    "keeps": [policy.keep_last for _, policy in todo],
                    "rolled": day_start(rolled),
                    "per_task": per_task,
                },
            ).all()
            found: dict[str, int] = {}
            for name, count, oldest, newest in rows:
                found[name] = count
                report.add(name, count, oldest, newest)
            room -= sum(found.values())
            # A task that filled its share may have more: it goes again.
            pending[:0] = [(n, p) for n, p in todo if found.get(n, 0) >= per_task]

    def _others(self, now: dt.datetime, report: PruneReport) -> None:
        """The statistics past a year, and the apply log, resolved alerts and dead watch
        loops' heartbeats past the default retention."""
        cutoff = now - dt.timedelta(days=self.default_days)
        with self.database.session() as session:
            report.stats_days = _count(
                session.execute(
                    text("DELETE FROM task_stats_daily WHERE day < :day"),
                    {"day": (now - dt.timedelta(days=STATS_KEEP_DAYS)).date()},
                )
            )
            report.applies = _count(
                session.execute(
                    text(
                        "DELETE FROM applies WHERE COALESCE(last_attempt_at, applied_at) < :cutoff "
                        "AND id < COALESCE((SELECT k.id FROM applies k ORDER BY k.id DESC "
                        "LIMIT 1 OFFSET :offset), 0) "
                        "AND id <> COALESCE((SELECT max(a.id) FROM applies a "
                        "WHERE a.outcome = 'applied'), 0)"
                    ),
                    {"cutoff": cutoff, "offset": APPLIES_KEEP_LAST - 1},
                )
            )
            report.alerts = _count(
                session.execute(
                    text("DELETE FROM alerts WHERE resolved_at < :cutoff AND next_try_at IS NULL"),
                    {"cutoff": cutoff},
                )
            )
            report.watch_heartbeats = _count(
                session.execute(
                    text("DELETE FROM watch_heartbeats WHERE last_seen_at < :cutoff"),
                    {"cutoff": cutoff},
                )
            )


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


def preview(
    database: Database, default_days: int, now: dt.datetime, task: str | None = None
) -> PruneReport:
    """What a pass would remove now, removing nothing (days still to roll up count as
    rolled up: a pass rolls them up first)."""
    report = PruneReport()
    rolled = roll_up_limit(now)
    with database.session() as session:
        for name, policy in each_policy(session, default_days, task):
            row = session.execute(
                text(f"SELECT count(*), min(e.queued_at), max(e.queued_at) {_CANDIDATES}"),
                _params(name, policy, now, rolled),
            ).one()
            if row[0]:
                report.add(name, int(row[0]), row[1], row[2])
    return report
