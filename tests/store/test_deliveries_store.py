"""A delivery's claim on its execution row, on SQLite and PostgreSQL.

Each case is a row as the publisher and earlier deliveries left it, and a delivery as a
worker starts it: whether the delivery may run, and what the row says afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from reconciler.store.database import Database
from reconciler.store.deliveries import (
    CLAIMED,
    DUPLICATE,
    UNAVAILABLE,
    UNRECORDED,
    Delivery,
    DeliveryClaims,
    claim,
    claims_engine,
)
from reconciler.store.executions import LOST_REASON
from reconciler.store.tables import TaskExecution
from tests.faultproxy import FaultProxy, through

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
ID = "0b7c8d2e-0000-4000-8000-0000000000c1"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def delivery(retries: int = 0, redelivered: bool = False) -> Delivery:
    return Delivery(ID, retries, redelivered)


def put_row(db: Database, status: str, retries: int = 0, error: str | None = None) -> None:
    """The row as beat writes it, then moved to ``status`` by an earlier delivery."""
    with db.session() as session:
        session.add(
            TaskExecution(
                task_name="report", celery_task_id=ID, trigger="schedule",
                scheduled_for=T0, status=status, queued_at=T0,
                started_at=None if status == "pending" else at(1),
                worker=None if status == "pending" else "w1@a",
                finished_at=at(2) if status in ("success", "failure") else None,
                retries=retries, error=error, args=[], kwargs={},
            )
        )  # fmt: skip


def row(db: Database) -> TaskExecution:
    with db.session() as session:
        found = session.scalar(select(TaskExecution).where(TaskExecution.celery_task_id == ID))
        assert found is not None
        return found


@pytest.fixture
def claims(db: Database) -> Iterator[DeliveryClaims]:
    """Claims as a worker makes them (on PostgreSQL, through the driver's cursor)."""
    made = DeliveryClaims(db.engine.url.render_as_string(hide_password=False))
    yield made
    made.close()


@pytest.mark.parametrize(
    ("status", "retries", "error", "incoming", "outcome"),
    [
        ("pending", 0, None, delivery(), CLAIMED),
        ("retry", 1, None, delivery(retries=1), CLAIMED),
        ("started", 0, None, delivery(retries=1), CLAIMED),  # a retry ahead of its step
        ("started", 0, None, delivery(redelivered=True), CLAIMED),  # worker lost
        ("failure", 0, LOST_REASON, delivery(redelivered=True), CLAIMED),  # reaped, redelivered
        ("started", 0, None, delivery(), DUPLICATE),  # running elsewhere
        ("success", 0, None, delivery(), DUPLICATE),  # finished elsewhere
        ("success", 0, None, delivery(redelivered=True), DUPLICATE),  # acked late, lost ack
        ("failure", 0, LOST_REASON, delivery(), DUPLICATE),
        ("revoked", 0, None, delivery(), DUPLICATE),
        ("retry", 2, None, delivery(retries=1), DUPLICATE),  # an older attempt, again
        ("started", 1, None, delivery(retries=1), DUPLICATE),
    ],
    ids=[
        "pending", "retry", "later-attempt", "redelivered-started", "redelivered-reaped",
        "started", "success", "redelivered-success", "reaped", "revoked", "older-attempt",
        "same-attempt-started",
    ],
)  # fmt: skip
def test_a_delivery_runs_only_when_its_row_lets_it(
    db: Database,
    claims: DeliveryClaims,
    status: str,
    retries: int,
    error: str | None,
    incoming: Delivery,
    outcome: str,
) -> None:
    put_row(db, status, retries, error)
    before = row(db)
    result = claims.claim(incoming)
    assert result.outcome == outcome
    after = row(db)
    if outcome == CLAIMED:
        assert (after.claimed_attempt, after.duplicates) == (incoming.retries, 0)
        # The claim marks the attempt only; tracking's writer records the start. A row
        # reaped as lost is reopened, so that start can be recorded.
        reopened = status == "failure"
        assert after.status == ("started" if reopened else before.status)
        assert (after.worker, after.started_at, after.retries) == (
            before.worker, before.started_at, before.retries,
        )  # fmt: skip
        assert (after.finished_at, after.error) == (
            (None, None) if reopened else (before.finished_at, before.error)
        )
    else:
        assert result.status == status
        assert after.duplicates == 1
        # Nothing else moves: the row still describes the execution that ran.
        assert (after.status, after.worker, after.started_at, after.retries, after.error) == (
            before.status, before.worker, before.started_at, before.retries, before.error,
        )  # fmt: skip


def test_each_refused_delivery_is_counted(db: Database, claims: DeliveryClaims) -> None:
    put_row(db, "pending")
    outcomes = [claims.claim(delivery()).outcome for _ in range(8)]  # psycopg prepares after 5
    assert outcomes == [CLAIMED] + [DUPLICATE] * 7
    assert row(db).duplicates == 7


def test_the_statements_agree_through_sqlalchemy_too(db: Database) -> None:
    put_row(db, "pending")
    engine = claims_engine(db.engine.url.render_as_string(hide_password=False), 2.0)
    with engine.connect() as connection:
        outcomes = [claim(connection, delivery()).outcome for _ in range(2)]
    engine.dispose()
    assert outcomes == [CLAIMED, DUPLICATE]
    assert (row(db).claimed_attempt, row(db).duplicates) == (0, 1)


def test_a_delivery_without_a_row_is_unrecorded_and_writes_nothing(
    db: Database, claims: DeliveryClaims
) -> None:
    assert claims.claim(delivery()).outcome == UNRECORDED
    with db.session() as session:
        assert session.scalars(select(TaskExecution)).all() == []


@pytest.mark.postgres
def test_of_simultaneous_deliveries_exactly_one_claims(postgres_url: str) -> None:
    database = Database.open(postgres_url)
    put_row(database, "pending")
    workers = [DeliveryClaims(postgres_url, wait=5.0) for _ in range(8)]
    outcomes: list[str] = []
    start = threading.Barrier(len(workers))

    def deliver(claims: DeliveryClaims) -> None:
        claims.start()  # connected before the race
        start.wait()
        outcomes.append(claims.claim(delivery()).outcome)

    threads = [threading.Thread(target=deliver, args=(claims,)) for claims in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for claims in workers:
        claims.close()
    assert sorted(outcomes) == [CLAIMED] + [DUPLICATE] * 7
    assert row(database).duplicates == 7
    database.dispose()


@contextlib.contextmanager
def claims_through(proxy: FaultProxy, postgres_url: str) -> Iterator[DeliveryClaims]:
    """A worker's claims over ``proxy``, each waiting 1.5 s for an answer at most."""
    claims = DeliveryClaims(through(postgres_url, proxy), wait=1.5)
    try:
        yield claims
    finally:
        claims.close()


@pytest.mark.postgres
def test_a_stalled_database_bounds_the_wait_and_claims_resume_after(
    postgres_url: str, postgres_db: Database, proxy: FaultProxy
) -> None:
    put_row(postgres_db, "pending")
    with claims_through(proxy, postgres_url) as claims:
        # Connected, and the claim prepared on the server (for these parameter types).
        warm_up = Delivery("warm-up", 0, False)
        assert claims.claim(warm_up).outcome == UNRECORDED
        proxy.pause("down")  # the server gets the claim; its answer never comes back
        began = time.monotonic()
        first = claims.claim(delivery())
        waited = time.monotonic() - began
        began = time.monotonic()
        second = claims.claim(delivery())
        second_waited = time.monotonic() - began
        assert (first.outcome, second.outcome) == (UNAVAILABLE, UNAVAILABLE)
        assert first.reason is not None and "no answer" in first.reason
        assert 1.0 <= waited < 3.0
        assert second_waited < 0.1  # the stall is known: the next claim does not wait
        proxy.resume()
        # The server ran the first claim: once claims resume, they see it started.
        deadline = time.monotonic() + 10
        while (outcome := claims.claim(delivery()).outcome) == UNAVAILABLE:
            assert time.monotonic() < deadline, "claims did not resume"
            time.sleep(0.05)
        assert outcome == DUPLICATE
    after = row(postgres_db)
    assert (after.claimed_attempt, after.duplicates) == (0, 1)


@pytest.mark.postgres
def test_a_refusal_whose_count_gets_no_answer_is_still_a_refusal(
    postgres_url: str, postgres_db: Database, proxy: FaultProxy
) -> None:
    put_row(postgres_db, "started")
    with claims_through(proxy, postgres_url) as claims:
        claims.start()
        stalled = proxy.pause_after(b"SET duplicates", "down")
        result = claims.claim(delivery())
        assert stalled.is_set()
        assert (result.outcome, result.status) == (DUPLICATE, None)
        assert result.reason is not None and "no answer" in result.reason
    assert row(postgres_db).duplicates == 1  # the server counted it; only the answer was lost
