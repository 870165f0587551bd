"""Helpers for the Beat scheduler tests: task rows written as apply writes them, a fake
publisher at the ``reconciler.beat.message.Publisher`` seam, and a clock-driven run loop."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from reconciler.beat.message import Message, PublishFailed
from reconciler.beat.ticker import Ticker
from reconciler.core.schedule import first_slot
from reconciler.core.spec import TaskSpec
from reconciler.store.database import Database
from reconciler.store.leases import database_now
from reconciler.store.tables import ChangeMarker, Task, TaskExecution
from tests import factories
from tests.support import Process

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """An aware instant from ISO text (``Z`` or an offset)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def spec(name: str = "t", **fields: Any) -> TaskSpec:
    """A task of owner ``team``, every 10 s unless the fields give another schedule."""
    if fields.get("type", "periodic") == "periodic" and not {"crontab", "interval"} & set(fields):
        fields["interval"] = {"seconds": 10}
    return factories.spec(name, **{"owner": "team", **fields})


def bump_marker(session: Any, now: dt.datetime) -> int:
    row = session.execute(select(ChangeMarker).where(ChangeMarker.id == 1)).scalar_one_or_none()
    if row is None:
        session.execute(insert(ChangeMarker).values(id=1, seq=1, changed_at=now))
        return 1
    row.seq += 1
    row.changed_at = now
    return int(row.seq)


def put_task(
    db: Database,
    task: TaskSpec,
    now: dt.datetime,
    *,
    next_run_at: dt.datetime | str | None = "first",
) -> None:
    """Create or replace a task's row as apply does: anchor = now, next run = first slot."""
    if next_run_at == "first":
        next_run_at = first_slot(task, now) if task.enabled else None
    assert not isinstance(next_run_at, str)
    with db.session() as session:
        seq = bump_marker(session, now)
        values = {
            "owner": task.owner,
            "type": task.type,
            "task": task.task,
            "description": task.description,
            "enabled": task.enabled,
            "spec": task.canonical(),
            "content_hash": task.content_hash,
            "change_seq": seq,
            "updated_at": now,
            "deleted_at": None,
            "schedule_anchor": now,
            "next_run_at": next_run_at,
        }
        found = session.scalar(select(Task.id).where(Task.name == task.name))
        if found is None:
            session.execute(
                insert(Task).values(
                    name=task.name,
                    created_at=now,
                    source_path="tasks.d/x.yaml",
                    source_line=1,
                    version=1,
                    skipped_count=0,
                    missed_count=0,
                    **values,
                )
            )
        else:
            session.execute(update(Task).where(Task.id == found).values(**values))


def delete_task(db: Database, name: str, now: dt.datetime) -> None:
    with db.session() as session:
        seq = bump_marker(session, now)
        session.execute(
            update(Task)
            .where(Task.name == name)
            .values(deleted_at=now, next_run_at=None, change_seq=seq)
        )


def task_row(db: Database, name: str) -> Task:
    with db.session() as session:
        row: Task = session.execute(select(Task).where(Task.name == name)).scalar_one()
        session.expunge(row)
        return row


def executions(db: Database, name: str | None = None) -> list[TaskExecution]:
    with db.session() as session:
        query = select(TaskExecution).order_by(TaskExecution.id)
        if name is not None:
            query = query.where(TaskExecution.task_name == name)
        rows = list(session.execute(query).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def set_status(db: Database, celery_task_id: str, status: str) -> None:
    with db.session() as session:
        session.execute(
            update(TaskExecution)
            .where(TaskExecution.celery_task_id == celery_task_id)
            .values(status=status)
        )


def wait_lapsed(db: Database, timeout: float = 10) -> None:
    """Poll until every unpublished execution's lease has lapsed by the database's clock."""
    from tests.support import wait_for

    def lapsed() -> bool:
        with db.session() as session:
            now = database_now(session)
            leases = session.scalars(
                select(TaskExecution.lease_until).where(TaskExecution.published_at.is_(None))
            )
            return all(until is not None and until < now for until in leases)

    wait_for(lapsed, timeout, message="the leases to lapse")


@dataclass
class FakePublisher:
    """Records what would be sent; ``down`` makes every publish fail like a lost broker."""

    sent: list[Message] = field(default_factory=list)
    down: bool = False
    fail_after: int | None = None

    def publish(self, messages: Sequence[Message]) -> list[str]:
        if self.down:
            raise PublishFailed("broker: connection refused", [])
        ids: list[str] = []
        for message in messages:
            if self.fail_after is not None and len(self.sent) >= self.fail_after:
                self.down, self.fail_after = True, None
                raise PublishFailed("broker: connection reset", ids)
            self.sent.append(message)
            ids.append(message.task_id)
        return ids

    def reachable(self) -> bool:
        return not self.down

    def slots(self, name: str | None = None) -> list[dt.datetime | None]:
        return [m.scheduled_for for m in self.sent if name is None or m.name == name]


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


def run_until(ticker: Ticker, clock: Clock, end: dt.datetime, lag: float = 0.01) -> None:
    """Tick exactly when the next slot is due (``lag`` seconds after it) until ``end``."""
    from reconciler.store.scheduling import next_due

    for _ in range(100_000):
        ticker.tick(clock.now)
        with ticker.database.session() as session:
            upcoming = next_due(session)
        if upcoming is None or upcoming > end:
            clock.now = end
            ticker.tick(clock.now)
            return
        clock.now = max(clock.now, upcoming + dt.timedelta(seconds=lag))
    raise AssertionError("run_until did not reach the end")


def beat_process(directory: Path, env: dict[str, str], label: str) -> Process:
    """``celery beat`` of the demo app with the reconciler's scheduler, logging to
    ``directory/<label>.log``."""
    argv = [
        sys.executable, "-m", "celery", "-A", "reconciler.demo:app", "beat",
        "-S", "reconciler.beat:DatabaseScheduler", "-l", "info",
    ]  # fmt: skip
    return Process(argv, directory / f"{label}.log", env=env, cwd=directory)


def put_every_second(db: Database, names: Sequence[str], now: dt.datetime) -> None:
    """Tasks every second, each called with its own name."""
    for name in names:
        put_task(db, spec(name, interval={"seconds": 1}, args=[name]), now)


def put_by_policy(db: Database, count: int, now: dt.datetime) -> None:
    """Tasks ``skip{n}`` and ``once{n}`` for each ``n < count``: every second, each catching
    up by the policy it is named for."""
    for n in range(count):
        put_task(db, spec(f"skip{n}", interval={"seconds": 1}, catchup="skip"), now)
        put_task(db, spec(f"once{n}", interval={"seconds": 1}, catchup="once"), now)


def wait_ran_after(
    db: Database, names: Sequence[str], start: dt.datetime, moment: dt.datetime, message: str
) -> None:
    """Poll until every named task last ran more than 2 s after ``moment``."""
    from tests.support import wait_for

    wait_for(
        lambda: all(
            (task_row(db, name).last_run_at or start) > moment + dt.timedelta(seconds=2)
            for name in names
        ),
        timeout=30,
        message=message,
    )


def assert_caught_up_by_policy(
    db: Database, rows: Sequence[TaskExecution], count: int, gap: tuple[dt.datetime, dt.datetime]
) -> None:
    """Within ``gap``, no ``skip{n}`` sent a missed slot and each ``once{n}`` sent one at most;
    each ``skip{n}`` counted its missed runs."""
    for n in range(count):
        skip = [r.scheduled_for for r in rows if r.task_name == f"skip{n}" and r.published_at]
        once = [r.scheduled_for for r in rows if r.task_name == f"once{n}" and r.published_at]
        assert not [s for s in skip if s and gap[0] < s < gap[1]], "skip fired a missed slot"
        assert len([s for s in once if s and gap[0] < s < gap[1]]) <= 1
        assert task_row(db, f"skip{n}").missed_count > 0
