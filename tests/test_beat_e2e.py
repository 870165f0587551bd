"""Real ``celery beat -S reconciler.beat:DatabaseScheduler`` processes on PostgreSQL and Redis.

Two beats with a worker fire every slot exactly once; a beat killed with SIGKILL and
restarted sends no slot twice and catches up by policy; a broker cut by a TCP proxy is
survived and caught up by policy. Each test is bounded by ``wait_for`` deadlines.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reconciler.store.database import Database
from tests.beatsupport import executions, put_task, spec, task_row
from tests.support import Process, TcpProxy, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

SUCCEEDED = re.compile(r"Task app\.worker\.test_celery\[([0-9a-f-]+)\] succeeded")


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "reconciler.demo:app", *args]


def beat(tmp_path: Path, env: dict[str, str], label: str) -> Process:
    return Process(
        celery_argv("beat", "-S", "reconciler.beat:DatabaseScheduler", "-l", "info"),
        tmp_path / f"{label}.log",
        env=env,
        cwd=tmp_path,
    )


def queued_ids(redis_url: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)]
    finally:
        client.close()


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    database = Database.open(postgres_url)
    yield database
    database.dispose()


def test_two_beats_fire_every_slot_of_30_tasks_exactly_once(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    names = [f"sec{n:02d}" for n in range(30)]
    for name in names:
        put_task(db, spec(name, interval={"seconds": 1}, args=[name]), start)
    env = {"RECONCILER_DATABASE_URL": postgres_url, "RECONCILER_BROKER_URL": redis_url}
    worker = Process(
        celery_argv(
            "worker",
            "-l",
            "info",
            "-P",
            "threads",
            "-c",
            "8",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ),
        tmp_path / "worker.log",
        env=env,
        cwd=tmp_path,
    )
    beats = [beat(tmp_path, env, "beat-a"), beat(tmp_path, env, "beat-b")]
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
            lambda: ids <= set(SUCCEEDED.findall(worker.output())),
            timeout=30,
            message=f"the worker to run every message ({len(ids)} sent)",
        )
    finally:
        for process in beats:
            process.stop()
        worker.stop()
    per_task = collections.defaultdict(list)
    for row in rows:
        per_task[row.task_name].append(row.scheduled_for)
    for name in names:
        slots = sorted(slot for slot in per_task[name] if slot is not None)
        window = [s for s in slots if s <= end]
        expected = [start + dt.timedelta(seconds=k) for k in range(1, 31)]
        assert window == expected, name
        assert len(slots) == len(set(slots))
    # Every message reached the worker exactly once.
    consumed = collections.Counter(SUCCEEDED.findall(worker.output()))
    assert set(consumed) == ids
    assert max(consumed.values()) == 1
    assert all(row.published_at is not None for row in rows)
    # Both beats did part of the work.
    both = [p.output() for p in beats]
    assert all("scheduling from" in text for text in both)


def test_a_beat_killed_and_restarted_sends_no_slot_twice_and_catches_up_by_policy(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    for n in range(5):
        put_task(db, spec(f"skip{n}", interval={"seconds": 1}, catchup="skip"), start)
        put_task(db, spec(f"once{n}", interval={"seconds": 1}, catchup="once"), start)
    env = {
        "RECONCILER_DATABASE_URL": postgres_url,
        "RECONCILER_BROKER_URL": redis_url,
        "RECONCILER_BEAT_GRACE": "2",
    }
    first = beat(tmp_path, env, "first")
    try:
        wait_for(lambda: len(queued_ids(redis_url)) >= 30, timeout=30, message="first fires")
        first.kill(signal.SIGKILL)
        first.popen.wait(5)
        killed_at = dt.datetime.now(dt.UTC)
        # Stay down for longer than the grace, so the catch-up policy decides.
        wait_for(
            lambda: dt.datetime.now(dt.UTC) - killed_at > dt.timedelta(seconds=5),
            timeout=10,
        )
        second = beat(tmp_path, env, "second")
        try:
            restarted_at = dt.datetime.now(dt.UTC)
            wait_for(
                lambda: all(
                    (task_row(db, f"skip{n}").last_run_at or start)
                    > restarted_at + dt.timedelta(seconds=2)
                    for n in range(5)
                ),
                timeout=30,
                message="the restarted beat to fire",
            )
        finally:
            second.stop()
    finally:
        first.stop()
    rows = executions(db)
    sent = queued_ids(redis_url)
    assert len(sent) == len(set(sent)), "a message was sent twice"
    published = {row.celery_task_id for row in rows if row.published_at is not None}
    assert set(sent) == published
    for row in rows:
        assert row.published_at is not None or "not published" in (row.error or "")
    gap = (killed_at + dt.timedelta(seconds=1), restarted_at - dt.timedelta(seconds=3))
    for n in range(5):
        skip = [r.scheduled_for for r in rows if r.task_name == f"skip{n}" and r.published_at]
        once = [r.scheduled_for for r in rows if r.task_name == f"once{n}" and r.published_at]
        assert not [s for s in skip if s and gap[0] < s < gap[1]], "skip fired a missed slot"
        assert len([s for s in once if s and gap[0] < s < gap[1]]) <= 1
        assert task_row(db, f"skip{n}").missed_count > 0
        assert task_row(db, f"once{n}").missed_count > 0
        # catchup: once fired one run for the missed slots.
        assert [s for s in once if s and killed_at < s < restarted_at]


def test_beat_survives_a_broker_outage_and_catches_up_by_policy(
    tmp_path: Path, db: Database, postgres_url: str, redis_url: str
) -> None:
    start = dt.datetime.now(dt.UTC)
    for n in range(3):
        put_task(db, spec(f"skip{n}", interval={"seconds": 1}, catchup="skip"), start)
        put_task(db, spec(f"once{n}", interval={"seconds": 1}, catchup="once"), start)
    number = redis_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 6379) as proxy:
        env = {
            "RECONCILER_DATABASE_URL": postgres_url,
            "RECONCILER_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/{number}",
            "RECONCILER_BEAT_GRACE": "2",
        }
        process = beat(tmp_path, env, "beat")
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
            wait_for(
                lambda: all(
                    (task_row(db, f"skip{n}").last_run_at or start)
                    > restored_at + dt.timedelta(seconds=2)
                    for n in range(3)
                ),
                timeout=30,
                message="beat to fire again",
            )
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
    for n in range(3):
        skip = [r.scheduled_for for r in rows if r.task_name == f"skip{n}" and r.published_at]
        assert not [s for s in skip if s and gap[0] < s < gap[1]]
        assert task_row(db, f"skip{n}").missed_count > 0
        once = [r.scheduled_for for r in rows if r.task_name == f"once{n}" and r.published_at]
        assert len([s for s in once if s and gap[0] < s < gap[1]]) <= 1
