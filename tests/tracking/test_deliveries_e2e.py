"""Deliveries at a real worker: a message of the reconciler's delivered twice runs once.

A real prefork worker (``tests.deliveryapp``) on a real Redis broker and PostgreSQL.
Each test writes the execution row as beat does, publishes the message with the
reconciler's header (as beat does), and counts the runs of the task body at the worker
(a Redis list), not only the rows.
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
import redis
from sqlalchemy import select

from reconciler.store.database import Database
from reconciler.store.tables import Task, TaskExecution
from reconciler.vocabulary import Header
from tests import deliveryapp
from tests.support import Process, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TASKS = {"count": "deliveries.count", "retry": "deliveries.retry", "hold": "deliveries.hold"}


class Stack:
    """PostgreSQL with the managed tasks, a Redis broker, and workers of the delivery app."""

    def __init__(
        self, database_url: str, broker_url: str, tmp_path: Path, notes_url: str | None = None
    ) -> None:
        self.database = Database.open(database_url)
        self.broker_url = broker_url
        self.tmp_path = tmp_path
        notes_url = notes_url or broker_url
        self.redis = redis.Redis.from_url(notes_url, decode_responses=True)
        self.env = {
            "RECONCILER_DATABASE_URL": database_url,
            "DELIVERY_BROKER_URL": broker_url,
            "DELIVERY_NOTES_URL": notes_url,
        }
        self.workers: list[Process] = []
        with self.database.session() as session:
            for name, celery_name in TASKS.items():
                session.add(
                    Task(
                        name=name, owner="ops", type="periodic", task=celery_name,
                        spec={"name": name, "task": celery_name}, content_hash="0" * 64,
                        created_at=T0, updated_at=T0,
                    )
                )  # fmt: skip

    def worker(self, name: str, **env: str) -> Process:
        argv = [
            sys.executable, "-m", "celery", "-A", "tests.deliveryapp:app", "worker",
            "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
            "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ]  # fmt: skip
        process = Process(argv, self.tmp_path / f"{name}.log", env={**self.env, **env})
        self.workers.append(process)
        wait_for(lambda: "ready." in process.output(), 30, message=f"worker {name} ready")
        return process

    def scheduled(self, name: str, args: list[Any] | None = None) -> str:
        """The row beat writes for a slot (claimed, then published); its Celery id."""
        celery_task_id = str(uuid.uuid4())
        with self.database.session() as session:
            session.add(
                TaskExecution(
                    task_name=name, celery_task_id=celery_task_id, trigger="schedule",
                    scheduled_for=T0 + dt.timedelta(minutes=len(self.rows())),
                    status="pending", queued_at=T0, published_at=T0,
                    args=args or [], kwargs={},
                )
            )  # fmt: skip
        return celery_task_id

    def publish(self, name: str, celery_task_id: str, args: list[Any], times: int = 1) -> None:
        """Send the same message ``times`` times, with the header beat's messages carry."""
        app = deliveryapp.app
        with app.connection_for_write(self.broker_url) as connection:
            for _ in range(times):
                app.send_task(
                    TASKS[name], args, task_id=celery_task_id, connection=connection,
                    headers={Header.TRIGGER: "schedule"},
                )  # fmt: skip

    def runs(self, celery_task_id: str) -> list[str]:
        """The runs of the task body for this execution, by attempt (``retries``)."""
        notes: list[str] = self.redis.lrange(deliveryapp.RUNS, 0, -1)  # type: ignore[assignment]
        return [note.rsplit(":", 1)[1] for note in notes if note.startswith(celery_task_id)]

    def rows(self) -> list[TaskExecution]:
        with self.database.session() as session:
            return list(session.scalars(select(TaskExecution)))

    def row(self, celery_task_id: str) -> TaskExecution:
        with self.database.session() as session:
            found = session.scalar(
                select(TaskExecution).where(TaskExecution.celery_task_id == celery_task_id)
            )
        assert found is not None
        return found

    def wait_row(self, celery_task_id: str, message: str, **values: Any) -> TaskExecution:
        def matches() -> TaskExecution | None:
            found = self.row(celery_task_id)
            ok = all(getattr(found, key) == value for key, value in values.items())
            return found if ok else None

        return wait_for(matches, 20, message=message)  # type: ignore[return-value]

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.database.dispose()


@pytest.fixture
def stack(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(postgres_url, redis_url, tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_the_same_message_delivered_twice_runs_once(stack: Stack) -> None:
    worker = stack.worker("w1")
    celery_task_id = stack.scheduled("count", [0.5])
    stack.publish("count", celery_task_id, [0.5], times=2)
    row = stack.wait_row(celery_task_id, "one run and one refusal", status="success", duplicates=1)
    assert stack.runs(celery_task_id) == ["0"]
    assert (row.trigger, row.result, row.retries) == ("schedule", "counted", 0)
    assert row.worker is not None and row.worker.startswith("w1@")
    refused = f"duplicate delivery of deliveries.count[{celery_task_id}] not run"
    assert worker.output().count(refused) == 1


def test_a_duplicate_of_a_finished_execution_does_not_run(stack: Stack) -> None:
    worker = stack.worker("w1")
    celery_task_id = stack.scheduled("count", [0])
    stack.publish("count", celery_task_id, [0])
    finished = stack.wait_row(celery_task_id, "the first run to finish", status="success")
    stack.publish("count", celery_task_id, [0])  # as a second beat's late publish would
    row = stack.wait_row(celery_task_id, "the duplicate to be refused", duplicates=1)
    assert stack.runs(celery_task_id) == ["0"]
    assert (row.status, row.finished_at) == ("success", finished.finished_at)
    assert row.worker == finished.worker
    assert f"deliveries.count[{celery_task_id}] not run: its execution ended (success)" in (
        worker.output()
    )


def test_a_celery_retry_runs_every_attempt(stack: Stack) -> None:
    stack.worker("w1")
    celery_task_id = stack.scheduled("retry", [2])
    stack.publish("retry", celery_task_id, [2])
    row = stack.wait_row(celery_task_id, "the last attempt to succeed", status="success")
    assert stack.runs(celery_task_id) == ["0", "1", "2"]
    assert (row.retries, row.result, row.duplicates) == (2, 2, 0)


@pytest.mark.parametrize("broker", ["redis", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def test_an_acks_late_redelivery_after_the_worker_was_killed_still_runs(
    broker: str, postgres_url: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Redis hands the unacknowledged message out again after its visibility timeout (2 s
    # here), RabbitMQ as soon as the dead worker's connection closes; both flag it.
    broker_url = redis_url if broker == "redis" else request.getfixturevalue("rabbitmq_url")
    stack = Stack(postgres_url, broker_url, tmp_path, notes_url=redis_url)
    request.addfinalizer(stack.close)
    visibility = {"DELIVERY_VISIBILITY_TIMEOUT": "2"} if broker == "redis" else {}
    first = stack.worker("w1", **visibility)
    stack.redis.set(deliveryapp.HOLD, "1")
    celery_task_id = stack.scheduled("hold")
    stack.publish("hold", celery_task_id, [])
    wait_for(lambda: stack.runs(celery_task_id) == ["0"], 20, message="the first run")
    stack.wait_row(celery_task_id, "the first run's claim", status="started")
    first.kill(signal.SIGKILL)  # the whole worker, mid-task: its message stays unacked
    first.popen.wait(10)
    stack.redis.delete(deliveryapp.HOLD)  # the second run returns at once
    second = stack.worker("w2", **visibility)
    row = stack.wait_row(celery_task_id, "the redelivery to run", status="success")
    assert stack.runs(celery_task_id) == ["0", "0"]
    assert (row.result, row.duplicates) == ("released", 0)
    assert row.worker is not None and row.worker.startswith("w2@")
    assert "duplicate delivery" not in second.output()
