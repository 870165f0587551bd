"""History retention (docs/tracking.md, "Retention") on SQLite and PostgreSQL with an
injected clock: the policy per task and by default, what is never pruned, two pruners at
once, the task list across pruning, and the daily statistics against the rows."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from sqlalchemy import select, update

from reconciler.core.retention import percentile
from reconciler.store import retention
from reconciler.store.database import Database
from reconciler.store.reads.stats import daily_stats
from reconciler.store.retention import Pruner, preview
from reconciler.store.tables import Alert, ApplyRecord, Task, TaskExecution
from tests.webseed import T0, add_apply, add_execution, add_task

DAY = dt.timedelta(days=1)
NOW = T0 + 60 * DAY
DEFAULT_DAYS = 30


def task(session: Any, name: str, history: dict[str, int] | None = None, **fields: Any) -> None:
    row = add_task(session, name, **fields)
    if history is not None:
        row.spec = {**row.spec, "history": history}


def daily(session: Any, name: str, days: Iterable[int], status: str = "success") -> None:
    """One execution a day, ``days`` after T0, with durations that differ from day to day."""
    for n in days:
        row = add_execution(session, name, status=status, queued_at=T0 + n * DAY, flush=False)
        row.duration_ms = 1000 + (n * 37) % 500
    session.flush()


def queued(db: Database, name: str) -> list[dt.datetime]:
    with db.session() as session:
        return list(
            session.scalars(
                select(TaskExecution.queued_at)
                .where(TaskExecution.task_name == name)
                .order_by(TaskExecution.id)
            )
        )


def pruner(db: Database, **kwargs: Any) -> Pruner:
    return Pruner(db, default_days=DEFAULT_DAYS, clock=lambda: NOW, **kwargs)


def test_the_policy_per_task_and_by_default(db: Database) -> None:
    with db.session() as session:
        task(session, "own", {"keep_days": 10})
        task(session, "default")
        task(session, "last", {"keep_days": 1, "keep_last": 5})
        task(session, "gone", deleted_at=T0 + 5 * DAY)
        for name in ("own", "default", "last", "gone"):
            daily(session, name, range(60))

    report = pruner(db).run()

    assert not report.busy and report.finished
    # Queued before now - keep_days goes; the newest (the latest success) always stays.
    assert queued(db, "own") == [T0 + n * DAY for n in range(50, 60)]
    assert queued(db, "default") == [T0 + n * DAY for n in range(30, 60)]
    assert queued(db, "last") == [T0 + n * DAY for n in range(55, 60)]
    # A deleted task keeps its history for the same period, then it goes.
    assert queued(db, "gone") == [T0 + n * DAY for n in range(30, 60)]
    assert report.tasks["own"].rows == 50
    assert report.tasks["own"].oldest == T0 and report.tasks["own"].newest == T0 + 49 * DAY
    assert report.executions == 50 + 30 + 55 + 30
    # A second pass finds nothing more.
    assert pruner(db).run().executions == 0


def test_a_pass_reads_the_tasks_a_page_at_a_time(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many tasks, a pass holds one page of their policies, and prunes as a whole."""
    monkeypatch.setattr(retention, "PAGE", 3)
    pages: list[int] = []
    read = retention.policies

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        page = read(*args, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(retention, "policies", counted)
    kept = {f"t{t}": 10 if t % 3 == 0 else DEFAULT_DAYS for t in range(8)}
    with db.session() as session:
        for name, days in kept.items():
            task(session, name, {"keep_days": days} if days != DEFAULT_DAYS else None)
            daily(session, name, range(60))
    expected = preview(db, DEFAULT_DAYS, NOW)
    assert pages == [3, 3, 2]

    pages.clear()
    report = pruner(db, batch_rows=70).run()

    assert not report.busy and report.finished
    assert pages == [3, 3, 2]
    for name, days in kept.items():
        assert queued(db, name) == [T0 + n * DAY for n in range(60 - days, 60)]
        assert report.tasks[name].rows == expected.tasks[name].rows == 60 - days
    assert pruner(db).run().executions == 0


def test_the_latest_success_and_failure_and_unfinished_rows_are_kept(db: Database) -> None:
    with db.session() as session:
        task(session, "a", {"keep_days": 5})
        daily(session, "a", [0], "success")
        daily(session, "a", [1], "failure")
        daily(session, "a", [2, 3], "pending")
        daily(session, "a", [4], "started")
        daily(session, "a", [5], "retry")
        daily(session, "a", range(6, 52), "revoked")
        last_success, last_failure = (
            session.scalars(select(Task.last_success_at).where(Task.name == "a")).one(),
            session.scalars(select(Task.last_failure_at).where(Task.name == "a")).one(),
        )

    expected = preview(db, DEFAULT_DAYS, NOW)
    report = pruner(db).run()

    # The revokes but the newest, the latest execution.
    assert report.executions == expected.executions == 45
    with db.session() as session:
        statuses = session.execute(
            select(TaskExecution.status, TaskExecution.queued_at)
            .where(TaskExecution.task_name == "a")
            .order_by(TaskExecution.id)
        ).all()
        row = session.scalars(select(Task).where(Task.name == "a")).one()
        assert (row.last_success_at, row.last_failure_at) == (last_success, last_failure)
        assert row.consecutive_failures == 1
    assert [s for s, _ in statuses] == [
        "success",
        "failure",
        "pending",
        "pending",
        "started",
        "retry",
        "revoked",
    ]


def test_the_task_list_stays_right_across_pruning(db: Database) -> None:
    with db.session() as session:
        task(session, "a", {"keep_days": 1})
        daily(session, "a", range(10), "failure")
        daily(session, "a", range(10, 20), "revoked")
        before = session.execute(
            select(Task.last_execution_id, Task.last_status, Task.last_queued_at)
        ).one()

    pruner(db).run()

    with db.session() as session:
        ids = list(session.scalars(select(TaskExecution.id).order_by(TaskExecution.id)))
        after = session.execute(
            select(Task.last_execution_id, Task.last_status, Task.last_queued_at)
        ).one()
        row = session.scalars(select(Task)).one()
    # The latest execution (a revoke, neither success nor failure) and the latest failure.
    assert after == before and before.last_execution_id == ids[-1]
    assert before.last_status == "revoked" and before.last_queued_at == T0 + 19 * DAY
    assert len(ids) == 2
    # The failures in a row are still counted, though most of their rows are gone.
    assert row.consecutive_failures == 10 and row.last_failure_at == T0 + 9 * DAY + 3 * (
        DAY / 86400
    )


def expected_days(
    rows: list[tuple[dt.datetime, str, int | None]],
) -> dict[dt.date, tuple[Any, ...]]:
    """The statistics worked out directly from (finished, status, duration) rows."""
    by_day: dict[dt.date, list[tuple[str, int | None]]] = {}
    for finished, status, duration in rows:
        by_day.setdefault(finished.date(), []).append((status, duration))
    found = {}
    for day, items in by_day.items():
        durations = sorted(d for s, d in items if s in ("success", "failure") and d is not None)
        found[day] = (
            sum(s == "success" for s, _ in items),
            sum(s == "failure" for s, _ in items),
            sum(s == "revoked" for s, _ in items),
            percentile(durations, 0.5),
            percentile(durations, 0.95),
            max(durations, default=None),
        )
    return found


def test_statistics_match_the_rows_and_survive_pruning(db: Database) -> None:
    with db.session() as session:
        task(session, "a", {"keep_days": 3})
        for n in range(40):
            for k in range(n % 7 + 1):
                status = ("success", "failure", "revoked")[(n + k) % 3]
                row = add_execution(
                    session,
                    "a",
                    status=status,
                    queued_at=T0 + n * DAY + k * dt.timedelta(hours=2),
                    flush=False,
                )
                row.duration_ms = (n * 1013 + k * 7919) % 5000
        session.flush()
        rows = [
            (f.astimezone(dt.UTC), s, d)
            for f, s, d in session.execute(
                select(TaskExecution.finished_at, TaskExecution.status, TaskExecution.duration_ms)
            )
            if f is not None
        ]
    expected = expected_days(rows)

    report = Pruner(db, default_days=DEFAULT_DAYS, clock=lambda: T0 + 40 * DAY).run()

    assert report.days_rolled_up == 40 and report.executions > 100
    with db.session() as session:
        served = daily_stats(session, "a", T0.date())
    got = {
        s.day: (
            s.successes,
            s.failures,
            s.revoked,
            s.duration_p50_ms,
            s.duration_p95_ms,
            s.duration_max_ms,
        )
        for s in served
    }
    assert got.keys() == expected.keys()
    for day, values in expected.items():
        assert got[day][:3] == values[:3]
        for mine, theirs in zip(got[day][3:], values[3:], strict=True):
            assert (mine is None and theirs is None) or abs(mine - theirs) < 1e-6


def test_two_pruners_at_once_remove_each_row_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PAGE", 7)  # each pruner reads its tasks in pages
    first = Database.open(database_url)
    second = Database.open(database_url, upgrade=False)
    try:
        with first.session() as session:
            for t in range(20):
                task(session, f"t{t}", {"keep_days": 1})
                daily(session, f"t{t}", range(50))
        expected = preview(first, DEFAULT_DAYS, NOW).executions
        assert expected == 20 * 49
        reports: list[Any] = []
        errors: list[BaseException] = []

        def prune(database: Database) -> None:
            try:
                p = Pruner(database, default_days=DEFAULT_DAYS, clock=lambda: NOW, batch_rows=50)
                while True:
                    report = p.run(budget=30)
                    reports.append(report)
                    if not report.busy and report.finished:
                        return
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=prune, args=(d,)) for d in (first, second)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert time.monotonic() - started < 60
        assert not errors
        assert sum(r.executions for r in reports) == expected
        for t in range(20):  # each task's rows once, across both pruners
            assert sum(r.tasks[f"t{t}"].rows for r in reports if f"t{t}" in r.tasks) == 49
        with first.session() as session:
            left = session.scalars(select(TaskExecution.task_name)).all()
        assert len(left) == 20
    finally:
        second.dispose()
        first.dispose()


def test_the_apply_log_alerts_and_old_statistics_have_a_retention_too(db: Database) -> None:
    with db.session() as session:
        for n in range(1005):
            add_apply(session, at=T0 + n * dt.timedelta(minutes=1))
        for episode, resolved_at in (("1", T0), ("2", None)):
            session.add(
                Alert(
                    task_name="a",
                    condition="failure",
                    episode=episode,
                    owner="o",
                    since=T0,
                    fired_at=T0,
                    summary="s",
                    details={},
                    resolved_at=resolved_at,
                )
            )
        session.execute(update(ApplyRecord).values(outcome="failed"))

    report = pruner(db).run()

    assert report.applies == 5 and report.alerts == 1
    with db.session() as session:
        assert session.query(ApplyRecord).count() == 1000
        assert session.query(Alert).count() == 1
