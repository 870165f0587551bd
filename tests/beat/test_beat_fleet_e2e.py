"""Real ``celery beat`` processes and their heartbeats, on SQLite and PostgreSQL with Redis.

A beat stopped with SIGTERM removes its heartbeat before it exits; one killed with
SIGKILL leaves it, is taken over under the same name by a beat started in its place,
and is removed by a live beat once it is minutes old (that beat runs in the test with
an injected clock, so the minutes are not waited for).
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from reconciler.beat.ticker import Ticker
from reconciler.store.database import Database
from reconciler.store.heartbeats import BEAT_FORGET_AFTER
from reconciler.store.tables import BeatHeartbeat
from reconciler.web import metrics
from tests.beatsupport import Clock, FakePublisher
from tests.support import Process, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def beat(tmp_path: Path, database_url: str, redis_url: str, name: str, run: int = 0) -> Process:
    argv = [
        sys.executable, "-m", "celery", "-A", "reconciler.demo:app", "beat",
        "-S", "reconciler.beat:DatabaseScheduler", "-l", "info",
    ]  # fmt: skip
    env = {
        "RECONCILER_DATABASE_URL": database_url,
        "RECONCILER_BROKER_URL": redis_url,
        "RECONCILER_BEAT_NAME": name,
    }
    return Process(argv, tmp_path / f"beat-{name}-{run}.log", env=env, cwd=tmp_path)


def rows(db: Database) -> dict[str | None, int]:
    """name -> pid of every beat heartbeat."""
    with db.session() as session:
        return dict(session.execute(select(BeatHeartbeat.name, BeatHeartbeat.pid)).all())


def series(db: Database) -> list[str]:
    text = metrics.render(db, None).decode()
    return re.findall(r'^reconciler_beat_heartbeat_age_seconds\{beat="([^"]+)"\}', text, re.M)


def test_stopped_beats_go_killed_ones_are_taken_over_and_forgotten(
    tmp_path: Path, db: Database, database_url: str, redis_url: str
) -> None:
    a = beat(tmp_path, database_url, redis_url, "beat-a")
    b = beat(tmp_path, database_url, redis_url, "beat-b")
    with a, b:
        wait_for(lambda: rows(db) == {"beat-a": a.pid, "beat-b": b.pid}, 60, message="2 beats")
        assert series(db) == ["beat-a", "beat-b"]

        a.kill(signal.SIGTERM)
        assert a.popen.wait(10) == 0, a.output()
        assert rows(db) == {"beat-b": b.pid}  # removed before it exited

        b.kill(signal.SIGKILL)
        b.popen.wait(10)
        assert rows(db) == {"beat-b": b.pid}  # a killed beat cannot remove its heartbeat

        # Started again in its place: it takes the name over once the old heartbeat has
        # stood still for a few seconds, so the metric keeps its one series.
        with beat(tmp_path, database_url, redis_url, "beat-b", run=1) as again:
            wait_for(lambda: rows(db) == {"beat-b": again.pid}, 60, message="b taken over")
            assert series(db) == ["beat-b"]
            assert "held by another running beat" not in again.output()
            again.kill(signal.SIGKILL)
            again.popen.wait(10)
    assert rows(db) == {"beat-b": again.pid}

    # A live beat minutes later removes it.
    later = dt.datetime.now(dt.UTC) + BEAT_FORGET_AFTER + dt.timedelta(seconds=1)
    live = Ticker(db, FakePublisher(), clock=Clock(later), name="beat-c")
    live.tick(later)
    assert rows(db) == {"beat-c": live.pid}
    assert "Traceback" not in a.output() + b.output()
