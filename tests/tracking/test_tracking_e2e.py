"""Execution tracking end to end: a real broker, a real worker, a real database.

The demo app's tasks run in ``celery -A reconciler.demo:app worker``; the test publishes
them as the reconciler does (``reconcile trigger``, trigger ``manual``) and as user code
does (``apply_async``, trigger ``external``) and reads what tracking recorded.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from reconciler import demo, tracking
from reconciler.beat.manual import trigger
from reconciler.store.database import Database
from reconciler.store.executions import LOST_REASON, reap_lost
from reconciler.store.tables import Task, TaskExecution
from tests.support import Process, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# name -> (Celery task, args, kwargs)
TASKS: dict[str, tuple[str, list[Any], dict[str, Any]]] = {
    "async-demo": ("app.api.tasks.demo_async_task", ["hi"], {}),
    "periodic-demo": ("app.api.tasks.demo_periodic_task", ["tick"], {}),
    "scheduled-demo": ("app.api.tasks.demo_scheduled_task", ["at noon"], {}),
    "dynamic-demo": ("app.api.tasks.demo_dynamic_task", [1, 2], {"region": "eu"}),
    "smoke": ("app.worker.test_celery", ["celery"], {}),
    "long": ("app.worker.long_running_task", [30], {}),
}


def add_tasks(database: Database) -> None:
    with database.session() as session:
        for name, (celery_name, args, kwargs) in TASKS.items():
            spec = {
                "name": name,
                "owner": "ops",
                "type": "async",
                "task": celery_name,
                "args": args,
                "kwargs": kwargs,
            }
            session.add(
                Task(
                    name=name,
                    owner="ops",
                    type="async",
                    task=celery_name,
                    spec=spec,
                    content_hash=uuid.uuid4().hex,
                    created_at=T0,
                    updated_at=T0,
                )
            )


class Stack:
    """The database, the broker and a worker for one test."""

    def __init__(self, database_url: str, broker_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.tmp_path = tmp_path
        self.database = Database.open(database_url)
        add_tasks(self.database)
        self.env = {"RECONCILER_DATABASE_URL": database_url, "RECONCILER_BROKER_URL": broker_url}
        self.workers: list[Process] = []

    def worker(self, name: str = "w1", *extra: str) -> Process:
        argv = [
            sys.executable, "-m", "celery", "-A", "reconciler.demo:app", "worker",
            "--loglevel", "INFO", "--hostname", f"{name}@%h", "--without-gossip",
            "--without-mingle", "--without-heartbeat", *extra,
        ]  # fmt: skip
        process = Process(argv, self.tmp_path / f"{name}.log", env=self.env)
        self.workers.append(process)
        wait_for(lambda: "ready." in process.output(), 30, message=f"worker {name} ready")
        return process

    def publish(self, name: str, **options: Any) -> str:
        """Send like user code does (``apply_async``): recorded with trigger ``external``."""
        celery_name, args, kwargs = TASKS[name]
        args, kwargs = options.pop("args", args), options.pop("kwargs", kwargs)
        with demo.app.connection_for_write(self.broker_url) as connection:
            result = demo.app.tasks[celery_name].apply_async(
                args, kwargs, connection=connection, **options
            )
        return str(result.id)

    def revoke(self, celery_task_id: str) -> None:
        with demo.app.connection_for_write(self.broker_url) as connection:
            demo.app.control.revoke(celery_task_id, connection=connection)

    def trigger(self, name: str) -> str:
        """Send as ``reconcile trigger`` does: the row exists first, trigger ``manual``."""
        demo.app.conf.broker_url = self.broker_url
        return trigger(self.database, demo.app, name).celery_task_id

    def row(self, celery_task_id: str) -> TaskExecution | None:
        with self.database.session() as session:
            return session.scalar(
                select(TaskExecution).where(TaskExecution.celery_task_id == celery_task_id)
            )

    def wait_status(self, celery_task_id: str, *statuses: str, timeout: float = 30) -> Any:
        def done() -> TaskExecution | None:
            found = self.row(celery_task_id)
            return found if found is not None and found.status in statuses else None

        return wait_for(done, timeout, message=f"{celery_task_id} to become {statuses}")

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        tracking.install(demo.app).flush()
        self.database.dispose()


@pytest.fixture
def stack(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    yield from _stack(postgres_url, redis_url, tmp_path, monkeypatch)


def _stack(
    database_url: str, broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", database_url)
    monkeypatch.setattr(demo.app.conf, "broker_url", broker_url)
    running = Stack(database_url, broker_url, tmp_path)
    try:
        yield running
    finally:
        running.close()


def assert_complete_success(row: TaskExecution, trigger_: str, args: list[Any]) -> None:
    assert row.status == "success"
    assert row.trigger == trigger_
    assert row.args == args
    assert row.queued_at is not None and row.started_at is not None
    assert row.finished_at is not None and row.queued_at <= row.started_at <= row.finished_at
    assert row.duration_ms is not None and row.duration_ms >= 0
    assert row.worker and row.worker.startswith("w1@")
    assert isinstance(row.result, dict) and row.result["task"]
    assert (row.error, row.traceback, row.retries, row.deadline_at) == (None, None, 0, None)


def test_every_demo_task_type_is_recorded_with_every_field(stack: Stack) -> None:
    stack.worker("w1", "--pool", "prefork", "--concurrency", "2")
    manual = {name: stack.trigger(name) for name in ("async-demo", "periodic-demo")}
    external = {name: stack.publish(name) for name in ("scheduled-demo", "dynamic-demo", "smoke")}
    tracking.install(demo.app).flush()
    for name, celery_task_id in manual.items():
        row = stack.wait_status(celery_task_id, "success")
        assert row.task_name == name
        assert_complete_success(row, "manual", TASKS[name][1])
    for name, celery_task_id in external.items():
        row = stack.wait_status(celery_task_id, "success")
        assert row.task_name == name
        assert_complete_success(row, "external", TASKS[name][1])
    dynamic = stack.row(external["dynamic-demo"])
    assert dynamic is not None
    assert dynamic.kwargs == {"region": "eu"}
    assert dynamic.result is not None
    assert dynamic.result["args"] == [1, 2]


def test_failures_retries_and_revokes_are_recorded(stack: Stack) -> None:
    stack.worker("w1", "--pool", "prefork", "--concurrency", "2")
    failing = stack.publish("smoke", kwargs={"fail": True})
    retrying = stack.publish("dynamic-demo", kwargs={"retries": 3})
    retrying_then_failing = stack.publish("dynamic-demo", kwargs={"retries": 1, "fail": True})
    revoked_id = str(uuid.uuid4())
    stack.revoke(revoked_id)
    stack.publish("smoke", task_id=revoked_id, countdown=1)
    tracking.install(demo.app).flush()

    seen: set[tuple[str, int]] = set()

    def retried_to_the_end() -> bool:
        row = stack.row(retrying)
        if row is not None:
            seen.add((row.status, row.retries))
        return row is not None and row.status == "success"

    wait_for(retried_to_the_end, 30, interval=0.01, message="the retrying task to finish")
    # The demo waits 0.2 s before each retry: long enough to see retry rows go by.
    assert {("retry", 1), ("retry", 2), ("retry", 3)} & seen
    row = stack.row(retrying)
    assert row is not None and row.result is not None
    assert (row.retries, row.result["retries"], row.error) == (3, 3, None)

    row = stack.wait_status(failing, "failure")
    assert row.error.startswith("DemoFailure: test_celery failed on purpose")
    assert "Traceback (most recent call last)" in row.traceback
    assert "DemoFailure" in row.traceback
    assert row.finished_at is not None and row.duration_ms is not None

    row = stack.wait_status(retrying_then_failing, "failure")
    assert row.retries == 1
    assert row.error.startswith("DemoFailure")

    row = stack.wait_status(revoked_id, "revoked")
    assert row.started_at is None and row.finished_at is not None


def test_workers_killed_mid_task_leave_no_row_started(stack: Stack) -> None:
    import psutil

    worker = stack.worker("w1", "--pool", "prefork", "--concurrency", "1")

    # A pool process killed (as by the OOM killer): its worker reports it at once.
    oom_id = stack.publish("long")
    stack.wait_status(oom_id, "started")
    psutil.Process(worker.pid).children()[0].send_signal(signal.SIGKILL)
    row = stack.wait_status(oom_id, "failure")
    assert row.error.startswith("WorkerLostError")

    # The whole worker killed: nothing reports it, the reaper does after the deadline.
    long_id = stack.publish("long", time_limit=5)
    row = stack.wait_status(long_id, "started")
    deadline = row.deadline_at
    assert deadline == row.started_at + dt.timedelta(seconds=5 + tracking.DEADLINE_GRACE)
    worker.kill(signal.SIGKILL)
    worker.popen.wait(10)
    with stack.database.session() as session:
        assert reap_lost(session, now=deadline - dt.timedelta(seconds=1)) == 0
    with stack.database.session() as session:
        assert reap_lost(session, now=deadline + dt.timedelta(seconds=1)) == 1
    row = stack.row(long_id)
    assert row is not None
    assert (row.status, row.error) == ("failure", LOST_REASON)
    with stack.database.session() as session:
        still_started = session.scalars(
            select(TaskExecution).where(TaskExecution.status == "started")
        ).all()
    assert still_started == []


@pytest.mark.rabbitmq
def test_the_smoke_run_passes_on_rabbitmq(
    postgres_url: str, rabbitmq_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for running in _stack(postgres_url, rabbitmq_url, tmp_path, monkeypatch):
        running.worker("w1", "--pool", "prefork", "--concurrency", "2")
        sent = {name: running.publish(name) for name in TASKS if name != "long"}
        sent["async-demo"] = running.trigger("async-demo")
        failing = running.publish("smoke", kwargs={"fail": True})
        tracking.install(demo.app).flush()
        for name, celery_task_id in sent.items():
            row = running.wait_status(celery_task_id, "success")
            trigger_ = "manual" if name == "async-demo" else "external"
            assert_complete_success(row, trigger_, TASKS[name][1])
        row = running.wait_status(failing, "failure")
        assert "Traceback" in row.traceback
