"""Real ``celery beat -S reconciler.beat:DatabaseScheduler`` processes on PostgreSQL and Redis.

Two beats with a worker fire every slot exactly once; a beat killed with SIGKILL and
restarted sends no slot twice and catches up by policy; a beat whose broker connection
stalls for longer than its lease has no slot run twice; a broker cut by a TCP proxy is
survived and caught up by policy. Runs are counted at the worker, by the log line the
task body writes (with its Celery task id). Each test is bounded by ``wait_for`` deadlines.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from reconciler.beat.sending import LEASE
from reconciler.store.database import Database
from tests.beatsupport import (
    assert_caught_up_by_policy,
    beat_process,
    executions,
    put_by_policy,
    put_every_second,
    task_row,
    wait_ran_after,
)
from tests.faultproxy import FaultProxy
from tests.support import Process, TcpProxy, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

SUCCEEDED = re.compile(r"Task app\.worker\.test_celery\[([0-9a-f-]+)\] succeeded")
RECEIVED = re.compile(r"Task app\.worker\.test_celery\[([0-9a-f-]+)\] received")
RAN = re.compile(r"app\.worker\.test_celery\[([0-9a-f-]+)\]: test_celery:")
"""The line ``test_celery``'s body logs: one per run of the task at the worker."""


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "reconciler.demo:app", *args]


def worker(tmp_path: Path, env: dict[str, str]) -> Process:
    argv = celery_argv(
        "worker", "-l", "info", "-P", "threads", "-c", "8", "--without-gossip",
        "--without-mingle", "--without-heartbeat",
    )  # fmt: skip
    return Process(argv, tmp_path / "worker.log", env=env, cwd=tmp_path)


def runs(process: Process) -> collections.Counter[str]:
    """How many times the worker ran each Celery task id."""
    return collections.Counter(RAN.findall(process.output()))


def wait_published_ran(db: Database, consumer: Process) -> tuple[list[Any], set[str]]:
    """The executions, and the ids of those published, once the worker ran every one of those."""
    rows = executions(db)
    published = {row.celery_task_id for row in rows if row.published_at is not None}
    wait_for(
        lambda: published <= set(runs(consumer)),
        timeout=30,
        message=f"the worker to run every published execution ({len(published)})",
    )
    return rows, published


def delivered_twice(process: Process) -> list[str]:
    """The Celery task ids the worker received more than once."""
    received = collections.Counter(RECEIVED.findall(process.output()))
    return [task_id for task_id, count in received.items() if count > 1]


def assert_each_slot_ran_once(rows: list[Any], ran: collections.Counter[str]) -> None:
    """Every published execution ran exactly once, and no slot has two executions."""
    published = {row.celery_task_id for row in rows if row.published_at is not None}
    assert set(ran) <= {row.celery_task_id for row in rows}, "a run without a row"
    twice = {task_id: count for task_id, count in ran.items() if count > 1}
    assert not twice, f"ran more than once: {twice}"
    assert published <= set(ran), f"never ran: {published - set(ran)}"
    slots = [(row.task_name, row.scheduled_for) for row in rows]
    assert len(slots) == len(set(slots))


def queued_ids(redis_url: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)]
    finally:
        client.close()


@pytest.fixture
def db(postgres_db: Database) -> Database:
    """Beat and the worker need PostgreSQL here: the store on it alone."""
    return postgres_db


def test_two_beats_fire_every_slot_of_30_tasks_exactly_once(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    names = [f"sec{n:02d}" for n in range(30)]
    put_every_second(db, names, start)
    env = {"RECONCILER_DATABASE_URL": postgres_url, "RECONCILER_BROKER_URL": redis_url}
    consumer = worker(tmp_path, env)
    beats = [beat_process(tmp_path, env, "beat-a"), beat_process(tmp_path, env, "beat-b")]
    try:
        end = start + dt.timedelta(seconds=30)
        # Poll the database until the 30-second window has been fired.
        wait_for(
            lambda: all((task_row(db, name).last_run_at or start) >= end for name in names[:1]),
            timeout=60,
            message="30 s of slots",
        )
        for process in beats:
            assert process.popen.poll() is None, process.output()
            process.stop()
        rows = executions(db)
        ids = {row.celery_task_id for row in rows}
        wait_for(
            lambda: ids <= set(SUCCEEDED.findall(consumer.output())),
            timeout=30,
            message=f"the worker to run every message ({len(ids)} sent)",
        )
    finally:
        for process in beats:
            process.stop()
        consumer.stop()
    per_task = collections.defaultdict(list)
    for row in rows:
        per_task[row.task_name].append(row.scheduled_for)
    for name in names:
        slots = sorted(slot for slot in per_task[name] if slot is not None)
        window = [s for s in slots if s <= end]
        expected = [start + dt.timedelta(seconds=k) for k in range(1, 31)]
        assert window == expected, name
        assert len(slots) == len(set(slots))
    # Every message reached the worker exactly once, and its task body ran exactly once.
    consumed = collections.Counter(SUCCEEDED.findall(consumer.output()))
    assert set(consumed) == ids
    assert max(consumed.values()) == 1
    ran = runs(consumer)
    assert set(ran) == ids
    assert_each_slot_ran_once(rows, ran)
    assert all(row.published_at is not None for row in rows)
    # Both beats did part of the work.
    both = [p.output() for p in beats]
    assert all("scheduling from" in text for text in both)


def test_a_beat_killed_and_restarted_sends_no_slot_twice_and_catches_up_by_policy(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    put_by_policy(db, 5, start)
    env = {
        "RECONCILER_DATABASE_URL": postgres_url,
        "RECONCILER_BROKER_URL": redis_url,
        "RECONCILER_BEAT_GRACE": "2",
    }
    consumer = worker(tmp_path, env)
    first = beat_process(tmp_path, env, "first")
    try:
        wait_for(lambda: sum(runs(consumer).values()) >= 30, timeout=30, message="first fires")
        first.kill(signal.SIGKILL)
        first.popen.wait(5)
        killed_at = dt.datetime.now(dt.UTC)
        # Stay down for longer than the grace, so the catch-up policy decides.
        wait_for(
            lambda: dt.datetime.now(dt.UTC) - killed_at > dt.timedelta(seconds=5),
            timeout=10,
        )
        second = beat_process(tmp_path, env, "second")
        try:
            restarted_at = dt.datetime.now(dt.UTC)
            skips = [f"skip{n}" for n in range(5)]
            wait_ran_after(db, skips, start, restarted_at, "the restarted beat to fire")
            # A claim the kill left unsent is taken over once its lease lapses.
            wait_for(
                lambda: all(
                    row.published_at is not None or row.status != "pending"
                    for row in executions(db)
                ),
                timeout=LEASE.total_seconds() + 15,
                message="claims left by the killed beat to be sent or closed",
            )
        finally:
            second.stop()
        rows, published = wait_published_ran(db, consumer)
    finally:
        first.stop()
        consumer.stop()
    ran = runs(consumer)
    assert set(ran) == published
    assert_each_slot_ran_once(rows, ran)
    for row in rows:
        assert row.published_at is not None or "not published" in (row.error or "")
    gap = (killed_at + dt.timedelta(seconds=1), restarted_at - dt.timedelta(seconds=3))
    assert_caught_up_by_policy(db, rows, 5, gap)
    # The restarted beat's first claims: it may start ticking well after its process did.
    resumed_at = min(row.queued_at for row in rows if row.queued_at > killed_at)
    for n in range(5):
        once = [r.scheduled_for for r in rows if r.task_name == f"once{n}" and r.published_at]
        assert task_row(db, f"once{n}").missed_count > 0
        # catchup: once fired one run for the missed slots, in the restarted beat's first tick.
        assert [s for s in once if s and killed_at < s <= resumed_at]


def test_a_beat_whose_broker_stalls_past_its_lease_has_no_slot_run_twice(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    names = [f"stall{n}" for n in range(3)]
    put_every_second(db, names, start)
    env = {"RECONCILER_DATABASE_URL": postgres_url, "RECONCILER_BROKER_URL": redis_url}
    number = redis_url.rsplit("/", 1)[1]
    with FaultProxy("127.0.0.1", 6379) as proxy:
        stalled_env = {**env, "RECONCILER_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/{number}"}
        consumer = worker(tmp_path, env)
        slow = beat_process(tmp_path, stalled_env, "beat-a")
        beats = [slow]
        try:
            wait_for(lambda: len(runs(consumer)) >= 6, timeout=30, message="beat A to fire")
            # A's broker stops answering (the connection stays open): A's next publish
            # is handed to its socket and stalls there.
            proxy.pause("both")
            paused = time.monotonic()
            healthy = beat_process(tmp_path, env, "beat-b")
            beats.append(healthy)
            wait_for(
                lambda: "broker unavailable" in slow.output(), 15, message="A's publish to fail"
            )
            # B takes A's claims over only once their lease has lapsed, and sends them.
            wait_for(lambda: "left unpublished" in healthy.output(), 40, message="B to take over")
            assert time.monotonic() - paused > LEASE.total_seconds()
            proxy.resume()  # what A had handed to its socket reaches Redis now
            wait_for(lambda: "broker is back" in slow.output(), 15, message="A to reconnect")
            resumed = dt.datetime.now(dt.UTC)
            wait_ran_after(db, names, start, resumed, "slots after the stall")
        finally:
            for process in beats:
                process.stop()
        try:
            rows, _ = wait_published_ran(db, consumer)
            # A's stalled messages arrived too: a second delivery of executions B sent.
            again = wait_for(
                lambda: delivered_twice(consumer),
                timeout=30,
                message="the stalled messages to be delivered again",
            )

            def settled() -> bool:
                rows_by_id = {row.celery_task_id: row for row in executions(db)}
                ran = runs(consumer)
                return all(rows_by_id[i].duplicates > 0 or ran[i] > 1 for i in again)

            wait_for(settled, timeout=30, message="the second deliveries to be refused or run")
        finally:
            consumer.stop()
    rows = executions(db)
    ran = runs(consumer)
    assert_each_slot_ran_once(rows, ran)
    assert {row.celery_task_id for row in rows} == set(ran)
    # No slot was lost: each task has one execution per second since it started.
    for name in names:
        slots = sorted(
            slot for row in rows if row.task_name == name and (slot := row.scheduled_for)
        )
        assert slots == [start + dt.timedelta(seconds=k) for k in range(1, len(slots) + 1)]
    assert {row.celery_task_id: row.duplicates for row in rows if row.duplicates} == {
        task_id: 1 for task_id in again
    }


def test_beat_survives_a_broker_outage_and_catches_up_by_policy(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    put_by_policy(db, 3, start)
    number = redis_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 6379) as proxy:
        env = {
            "RECONCILER_DATABASE_URL": postgres_url,
            "RECONCILER_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/{number}",
            "RECONCILER_BEAT_GRACE": "2",
        }
        process = beat_process(tmp_path, env, "beat")
        try:
            wait_for(lambda: len(queued_ids(redis_url)) >= 12, timeout=30, message="first fires")
            proxy.cut()
            cut_at = dt.datetime.now(dt.UTC)
            wait_for(lambda: "broker unavailable" in process.output(), timeout=15)
            before = len(queued_ids(redis_url))
            wait_for(lambda: dt.datetime.now(dt.UTC) - cut_at > dt.timedelta(seconds=5), timeout=10)
            assert process.popen.poll() is None, process.output()
            assert len(queued_ids(redis_url)) == before
            proxy.restore()
            restored_at = dt.datetime.now(dt.UTC)
            skips = [f"skip{n}" for n in range(3)]
            wait_ran_after(db, skips, start, restored_at, "beat to fire again")
            assert process.popen.poll() is None
            log = process.output()
        finally:
            process.stop()
    assert log.count("broker unavailable") == 1, log
    assert "broker is back" in log
    rows = executions(db)
    sent = queued_ids(redis_url)
    assert len(sent) == len(set(sent))
    assert set(sent) == {row.celery_task_id for row in rows if row.published_at is not None}
    gap = (cut_at + dt.timedelta(seconds=1), restored_at - dt.timedelta(seconds=3))
    assert_caught_up_by_policy(db, rows, 3, gap)
