"""A PostgreSQL that stops answering, behind ``tests.faultproxy.FaultProxy``: real ``watch``,
beat and ``serve`` processes log it once within their deadline, recover when it answers
again, and stop within 2 s of SIGTERM while it does not; a beat stalled in the middle of a
claim holds the other beat up by seconds only (docs/deadlines.md).

Each test is bounded by ``wait_for`` deadlines; the figures come from
``reconciler.store.deadlines``.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from benchmarks.services import free_port
from reconciler.store.database import Database
from reconciler.store.deadlines import BEAT, SERVE, WATCH
from reconciler.store.tables import BeatHeartbeat
from tests.beatsupport import beat_process, executions, put_task, spec, task_row
from tests.factories import write_tasks
from tests.faultproxy import FaultProxy, through
from tests.support import Process, reconcile_argv, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

STOP_WITHIN = 2.0
SLACK = 2.5
"""Seconds allowed past a deadline: the watchdog's poll, process scheduling on a busy host."""


@pytest.fixture
def direct(postgres_db: Database) -> Database:
    """The store on PostgreSQL, not through the proxy."""
    return postgres_db


def stop_within(process: Process, seconds: float) -> float:
    """SIGTERM; the seconds until the process exited (fails past ``seconds`` + 3)."""
    started = time.monotonic()
    process.kill(signal.SIGTERM)
    try:
        process.popen.wait(seconds + 3)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {seconds + 3} s after SIGTERM") from None
    return time.monotonic() - started


def stops_in_time(process: Process, name: str, while_: str) -> None:
    """SIGTERM stops ``process`` within ``STOP_WITHIN`` seconds (the time is printed)."""
    took = stop_within(process, STOP_WITHIN)
    print(f"{name} stopped {took:.2f} s after SIGTERM, {while_}")
    assert took <= STOP_WITHIN


def logged_within(process: Process, line: str, seconds: float) -> float:
    started = time.monotonic()
    wait_for(lambda: line in process.output(), seconds, message=repr(line))
    return time.monotonic() - started


def in_a_wait(proxy: FaultProxy) -> None:
    """Return once the client sent something after a pause: it now waits for the answer."""
    assert proxy.wait_for_traffic(proxy.bytes_up, 10), "no request after the pause"


# --- watch ------------------------------------------------------------------------------


def test_watch_logs_a_stalled_database_once_recovers_and_stops_on_sigterm(
    tmp_path: Path, postgres_url: str, direct: Database, proxy: FaultProxy
) -> None:
    tasks = tmp_path / "tasks.d"
    write_tasks(tasks, ["a"])
    argv = reconcile_argv(
        "watch", "--tasks-dir", str(tasks), "--database-url", through(postgres_url, proxy),
        "--resync-interval", "1", "--max-backoff", "1", "--debounce-ms", "50",
    )  # fmt: skip
    with Process(argv, tmp_path / "watch.log", cwd=tmp_path) as proc:
        wait_for(lambda: "applied: 1 created (a)" in proc.output(), 30, message="first apply")
        proxy.pause("down")
        limit = 1 + WATCH.read + WATCH.connect + SLACK  # the next resync, then its deadlines
        took = logged_within(proc, "database unavailable, retrying with backoff", limit)
        print(f"watch logged the stalled database after {took:.1f} s (limit {limit:g} s)")
        in_a_wait(proxy)  # it tried again since, and said nothing more
        assert proc.output().count("database unavailable, retrying") == 1
        proxy.resume()
        wait_for(lambda: "database is reachable again" in proc.output(), 10, message="recovery")
        proxy.pause("down")
        in_a_wait(proxy)
        stops_in_time(proc, "watch", "the database not answering")
        assert proc.popen.returncode == 0
    assert "Traceback" not in proc.output()


# --- beat -------------------------------------------------------------------------------


def beat(
    tmp_path: Path, database_url: str, redis_url: str, label: str, lookahead: str = "1"
) -> Process:
    env = {
        "RECONCILER_DATABASE_URL": database_url,
        "RECONCILER_BROKER_URL": redis_url,
        "RECONCILER_BEAT_LOOKAHEAD": lookahead,
    }
    return beat_process(tmp_path, env, label)


def heartbeats(database: Database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(BeatHeartbeat.instance)))


def last_tick(database: Database) -> dt.datetime | None:
    with database.session() as session:
        return session.scalar(select(BeatHeartbeat.last_tick_at))


@pytest.mark.redis
def test_beat_logs_a_stalled_database_once_keeps_ticking_and_stops_on_sigterm(
    tmp_path: Path, postgres_url: str, redis_url: str, direct: Database, proxy: FaultProxy
) -> None:
    put_task(direct, spec("every", interval={"seconds": 1}), dt.datetime.now(dt.UTC))
    with beat(tmp_path, through(postgres_url, proxy), redis_url, "beat") as proc:
        wait_for(lambda: last_tick(direct), 30, message="a heartbeat")
        proxy.pause("down")
        limit = BEAT.read + BEAT.connect + SLACK
        took = logged_within(proc, "beat: database unavailable, still ticking", limit)
        print(f"beat logged the stalled database after {took:.1f} s (limit {limit:g} s)")
        stale = last_tick(direct)
        in_a_wait(proxy)  # it ticks on, trying again, and says nothing more
        in_a_wait(proxy)
        assert proc.output().count("beat: database unavailable") == 1
        assert last_tick(direct) == stale
        proxy.resume()
        resumed = dt.datetime.now(dt.UTC)
        wait_for(lambda: (last_tick(direct) or resumed) > resumed, 15, message="heartbeat again")
        wait_for(lambda: "beat: database is back" in proc.output(), 5, message="back")
        proxy.pause("down")
        in_a_wait(proxy)
        stops_in_time(proc, "beat", "the database not answering")
    assert "Traceback" not in proc.output()


@pytest.mark.redis
def test_a_beat_stalled_mid_claim_delays_the_other_beat_by_seconds(
    tmp_path: Path, postgres_url: str, redis_url: str, direct: Database, proxy: FaultProxy
) -> None:
    """Beat A's connection stalls right after its claim's INSERT (so it surely holds due
    slots, locked ``FOR UPDATE``); PostgreSQL ends A's session after BEAT's idle-in-transaction
    timeout and beat B, connected directly, fires those slots then."""
    start = dt.datetime.now(dt.UTC)
    names = [f"sec{n}" for n in range(10)]
    for name in names:
        put_task(direct, spec(name, interval={"seconds": 1}), start)
    # B claims each slot only when it is due, so A (claiming a second ahead) gets slots
    # to hold although its connection is the slower one.
    b = beat(tmp_path, postgres_url, redis_url, "beat-b", lookahead="0")
    a = beat(tmp_path, through(postgres_url, proxy), redis_url, "beat-a")
    with b, a:
        # Both beats firing (a baseline of lateness), then A's next claim stalls.
        wait_for(lambda: len(heartbeats(direct)) == 2, 30, message="two beats ticking")
        wait_for(lambda: len(executions(direct)) >= 3 * len(names), 30, message="a baseline")
        steady = dt.datetime.now(dt.UTC)
        held = proxy.pause_after(b"INSERT INTO task_executions", "down")
        assert held.wait(30), "beat A claimed no slot"
        stalled_at = dt.datetime.now(dt.UTC)
        until = stalled_at + dt.timedelta(seconds=BEAT.idle_in_transaction + 5)
        wait_for(
            lambda: all((task_row(direct, n).last_run_at or start) >= until for n in names),
            30,
            message="the slots after the stall",
        )
        wait_for(lambda: "beat: database is back" in a.output(), 15, message="A back")
    rows = [row for row in executions(direct) if row.scheduled_for is not None]
    late = {
        (row.task_name, row.scheduled_for): (row.queued_at - row.scheduled_for).total_seconds()
        for row in rows
        if row.scheduled_for is not None
    }
    # The slots A held were due by the end of its look-ahead when it stalled, and fired
    # (by B) only after that.
    held_to = stalled_at + dt.timedelta(seconds=1)
    stuck = {
        slot: delay
        for slot, delay in late.items()
        if slot[1] <= held_to and slot[1] + dt.timedelta(seconds=delay) > held_to
    }
    before = [
        delay
        for slot, delay in late.items()
        if steady - dt.timedelta(seconds=2) <= slot[1] < stalled_at - dt.timedelta(seconds=1)
    ]
    print(
        f"slots held by the stalled beat: {len(stuck)}, fired {max(stuck.values()):.2f} s late "
        f"at most (idle_in_transaction_session_timeout {BEAT.idle_in_transaction:g} s); "
        f"slots of the 2 s before, both beats firing: at most {max(before):.3f} s late"
    )
    assert stuck, "no slot was held by the stalled beat"
    assert 1.0 <= max(stuck.values()) <= BEAT.idle_in_transaction + 3
    slots = [(row.task_name, row.scheduled_for) for row in rows]
    assert len(slots) == len(set(slots))
    assert "beat: database unavailable, still ticking" in a.output()
    assert "Traceback" not in a.output() + b.output()


# --- serve ------------------------------------------------------------------------------


def test_serve_answers_503_within_its_deadline_recovers_and_stops_on_sigterm(
    tmp_path: Path, postgres_url: str, direct: Database, proxy: FaultProxy
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = reconcile_argv(
        "serve", "--database-url", through(postgres_url, proxy), "--port", str(port)
    )
    paths = ("/api/v1/tasks/", "/metrics")

    def status(path: str) -> int:
        return httpx.get(f"{base}{path}", timeout=SERVE.read + SERVE.connect + 10).status_code

    with Process(argv, tmp_path / "serve.log") as proc:
        wait_for(lambda: _answers(f"{base}/healthz"), 30, message="serve to answer")
        assert [status(path) for path in paths] == [200, 200]
        with direct.session() as session:
            from sqlalchemy import text

            names = session.scalars(
                text("SELECT application_name FROM pg_stat_activity WHERE datname = :db"),
                {"db": make_url(postgres_url).database},
            ).all()
        assert "reconciler-serve" in names
        proxy.pause("down")
        limit = SERVE.read + SERVE.connect + SLACK
        for path in paths:
            started = time.monotonic()
            assert status(path) == 503
            took = time.monotonic() - started
            print(f"{path} answered 503 after {took:.1f} s (limit {limit:g} s)")
            assert took <= limit
        assert _answers(f"{base}/healthz")  # touches no database: answers at once
        proxy.resume()
        assert [status(path) for path in paths] == [200, 200]
        assert proc.output().count("database unavailable, answering 503") == 1
        assert "database answers again" in proc.output()
        proxy.pause("down")
        in_flight = threading.Thread(target=lambda: _answers(f"{base}/api/v1/tasks/"))
        in_flight.start()
        in_a_wait(proxy)
        stops_in_time(proc, "serve", "a request waiting on the database")
        in_flight.join(10)
    assert "Traceback" not in proc.output()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=20).status_code in (200, 503)
    except httpx.HTTPError:
        return False
