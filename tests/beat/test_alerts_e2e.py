"""Alerts end to end: real ``celery beat`` processes and a worker on PostgreSQL and Redis,
a failing task, and a local HTTP receiver (``tests.alertreceiver``).

A failing task alerts once with two beats running; a receiver that refuses connections
for a while gets the alert when it comes back; and beat fires on time while the receiver
hangs. Each test is bounded by ``wait_for`` deadlines.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from reconciler.store.database import Database
from reconciler.store.tables import Alert, NotifyTarget, TaskExecution
from tests.alertreceiver import Receiver, free_port
from tests.beat.test_beat_e2e import worker
from tests.beatsupport import beat_process as beat
from tests.beatsupport import executions, put_task, spec
from tests.support import Process, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    database = Database.open(postgres_url)
    with database.session() as session:
        session.execute(
            insert(NotifyTarget).values(
                owner="team",
                webhook_url_env="TEAM_HOOK",
                format="json",
                updated_at=dt.datetime.now(dt.UTC),
            )
        )
    yield database
    database.dispose()


def failing(db: Database, name: str, alerts: dict[str, object], every: int = 1) -> None:
    task_spec = spec(
        name, interval={"seconds": every}, kwargs={"fail": True, "api_key": "k-123"}, alerts=alerts
    )
    put_task(db, task_spec, dt.datetime.now(dt.UTC))


def failed_ids(db: Database, name: str) -> set[int]:
    return {row.id for row in executions(db, name) if row.status == "failure"}


def alert_rows(db: Database) -> list[Alert]:
    with db.session() as session:
        rows = list(session.scalars(select(Alert).order_by(Alert.id)))
        for row in rows:
            session.expunge(row)
        return rows


def services(postgres_url: str, redis_url: str, receiver: Receiver) -> dict[str, str]:
    """The environment beat and worker run with: the store, the broker, the team's hook."""
    return {
        "RECONCILER_DATABASE_URL": postgres_url,
        "RECONCILER_BROKER_URL": redis_url,
        "TEAM_HOOK": receiver.url,
    }


def stop(*processes: Process) -> None:
    for process in processes:
        process.stop()


def test_a_failing_task_alerts_once_with_two_beats(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    receiver = Receiver().start()
    failing(db, "in-a-row", {"failures_in_a_row": 2})
    failing(db, "each", {"on_failure": True})
    env = services(postgres_url, redis_url, receiver)
    consumer = worker(tmp_path, env)
    beats = [beat(tmp_path, env, "beat-a"), beat(tmp_path, env, "beat-b")]
    try:
        wait_for(lambda: len(failed_ids(db, "in-a-row")) >= 8, timeout=60, message="8 failures")
        consumer.stop()  # no more failures: every one so far must be alerted
        done = failed_ids(db, "each")
        wait_for(
            lambda: (
                done
                <= {
                    body["details"]["execution"]["id"]
                    for body in receiver.received("firing", task="each")
                }
            ),
            timeout=30,
            message=f"an alert for each of the {len(done)} failures",
        )
        for process in beats:
            assert process.popen.poll() is None, process.output()
    finally:
        stop(*beats, consumer)
        receiver.stop()
    in_a_row = receiver.received(task="in-a-row")
    assert [body["status"] for body in in_a_row] == ["firing"], in_a_row
    assert in_a_row[0]["details"]["consecutive_failures"] >= 2
    each = [body["details"]["execution"]["id"] for body in receiver.received(task="each")]
    assert sorted(each) == sorted(set(each)), "an alert sent twice"
    assert "k-123" not in str(receiver.bodies)
    assert receiver.received(task="each")[0]["details"]["execution"]["kwargs"]["api_key"] == "***"


def test_a_receiver_that_refuses_for_a_while_gets_the_alert_when_it_is_back(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    port = free_port()  # nothing listens there yet: connections are refused
    receiver = Receiver(port)
    failing(db, "nightly", {"failures_in_a_row": 1})
    env = services(postgres_url, redis_url, receiver)
    consumer = worker(tmp_path, env)
    one = beat(tmp_path, env, "beat")
    try:
        [refused] = wait_for(
            lambda: [row for row in alert_rows(db) if row.attempts >= 2],
            timeout=60,
            message="two refused sends",
        )
        assert refused.notified_at is None and "Connection refused" in (refused.last_error or "")
        receiver.start()
        wait_for(lambda: receiver.received("firing"), timeout=30, message="the alert")
    finally:
        stop(one, consumer)
        receiver.stop()
    [firing] = receiver.received("firing")
    assert firing["alert_id"] == refused.id and firing["task"] == "nightly"


def test_beat_fires_on_time_while_the_receiver_hangs(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    receiver = Receiver().start()
    receiver.mode = "hang"
    failing(db, "failing", {"on_failure": True})
    start = dt.datetime.now(dt.UTC)
    for n in range(20):
        put_task(db, spec(f"tick{n:02d}", interval={"seconds": 1}), start)
    env = services(postgres_url, redis_url, receiver)
    consumer = worker(tmp_path, env)
    one = beat(tmp_path, env, "beat")
    try:
        # Hanging sends time out (5 s each) while beat keeps firing every second.
        wait_for(
            lambda: [row for row in alert_rows(db) if "timed out" in (row.last_error or "")],
            timeout=60,
            message="a send to time out",
        )
        hang_from = dt.datetime.now(dt.UTC)
        wait_for(lambda: receiver.requests >= 3, timeout=60, message="three hanging sends")
        hang_to = dt.datetime.now(dt.UTC)
        receiver.mode = "ok"
        receiver.release()
        wait_for(lambda: receiver.received("firing"), timeout=60, message="alerts after the hang")
    finally:
        stop(one, consumer)
        receiver.stop()
    with db.session() as session:
        rows = session.execute(
            select(TaskExecution.scheduled_for, TaskExecution.queued_at).where(
                TaskExecution.task_name.like("tick%"),
                TaskExecution.scheduled_for >= hang_from,
                TaskExecution.scheduled_for <= hang_to,
            )
        ).all()
    late = sorted((queued - slot).total_seconds() for slot, queued in rows if slot is not None)
    assert len(late) >= 20 * 5, f"only {len(late)} fires during the hang"
    p99 = late[int(len(late) * 0.99) - 1]
    # A tick comes at least every 0.25 s: a hanging webhook does not hold it.
    assert p99 < 0.5, f"lateness p99 {p99:.3f} s during the hang; max {late[-1]:.3f} s"
    counts = collections.Counter(
        body["details"]["execution"]["id"] for body in receiver.received("firing")
    )
    assert max(counts.values()) == 1
