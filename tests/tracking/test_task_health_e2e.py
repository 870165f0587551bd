"""A task's health with a real worker over Redis and PostgreSQL: Celery's retries, a
revoke, failures in a row, the reaper's ``worker lost`` after a worker is killed, and
the success that resets the count, as tracking and the reaper write them."""

from __future__ import annotations

import datetime as dt
import signal
import uuid

import pytest
from sqlalchemy import select

from reconciler import demo, tracking
from reconciler.store.executions import reap_lost
from reconciler.store.tables import Task
from tests.support import wait_for
from tests.tracking.test_tracking_e2e import Stack, stack  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

Health = tuple[dt.datetime | None, dt.datetime | None, int]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def health(running: Stack, name: str) -> Health:
    with running.database.session() as session:
        row = session.execute(
            select(Task.last_success_at, Task.last_failure_at, Task.consecutive_failures).where(
                Task.name == name
            )
        ).one()
    return row.last_success_at, row.last_failure_at, row.consecutive_failures


def test_health_through_retries_revokes_and_a_lost_worker(stack: Stack) -> None:  # noqa: F811
    # A started execution without a time limit counts as lost 2 s after it started.
    stack.env["RECONCILER_LOST_AFTER"] = "2"
    worker = stack.worker("w1", "--pool", "prefork", "--concurrency", "1")

    # Retried twice by Celery, then a success: no failure at all.
    retried = stack.wait_status(stack.publish("dynamic-demo", kwargs={"retries": 2}), "success")
    assert health(stack, "dynamic-demo") == (retried.finished_at, None, 0)

    # Two failures in a row, the first after a retry of its own.
    first = stack.publish("dynamic-demo", kwargs={"retries": 1, "fail": True})
    first_row = stack.wait_status(first, "failure")
    second_row = stack.wait_status(stack.publish("dynamic-demo", kwargs={"fail": True}), "failure")
    assert first_row.retries == 1
    assert health(stack, "dynamic-demo") == (retried.finished_at, second_row.finished_at, 2)

    # A revoke neither counts nor resets.
    revoked_id = str(uuid.uuid4())
    stack.revoke(revoked_id)
    stack.publish("dynamic-demo", task_id=revoked_id, countdown=1)
    tracking.install(demo.app).flush()
    stack.wait_status(revoked_id, "revoked")
    assert health(stack, "dynamic-demo") == (retried.finished_at, second_row.finished_at, 2)

    # The worker killed outright mid-task: the reaper's failure counts.
    long_id = stack.publish("long", args=[60])
    started = stack.wait_status(long_id, "started")
    worker.kill(signal.SIGKILL)
    worker.popen.wait(10)
    wait_for(lambda: now() > started.deadline_at, 10, message="the deadline to pass")
    lost_at = now()
    with stack.database.session() as session:
        assert reap_lost(session, now=lost_at) == 1
    assert health(stack, "long") == (None, lost_at, 1)

    # A new worker; a success resets the count, the failure stays the last failure.
    stack.worker("w2", "--pool", "prefork", "--concurrency", "1")
    done = stack.wait_status(stack.publish("long", args=[0]), "success")
    assert health(stack, "long") == (done.finished_at, lost_at, 0)
    assert health(stack, "dynamic-demo")[2] == 2
