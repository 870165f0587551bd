"""Heartbeats under stable names (reconciler.store.heartbeats) on SQLite and PostgreSQL.

Each ``Naming`` stands for one process; time is passed in, so "a heartbeat that moves"
and "one that stands still" are steps of the test, not waits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from reconciler.store import heartbeats
from reconciler.store.database import Database
from reconciler.store.tables import BeatHeartbeat
from tests.beatsupport import at

T0 = at("2026-01-05T10:00:00Z")
SETTLE = dt.timedelta(seconds=5)


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def naming(wanted: str, instance: str, pid: int, hostname: str = "host") -> heartbeats.Naming:
    return heartbeats.Naming(
        heartbeats.BEATS, wanted, instance, hostname, pid, T0, settle=SETTLE,
        stale=heartbeats.BEAT_ALIVE_WITHIN,
    )  # fmt: skip


def beat(db: Database, who: heartbeats.Naming, now: dt.datetime) -> bool:
    with db.session() as session:
        return who.beat(session, now, {})


def rows(db: Database) -> dict[str | None, tuple[str, str | None, dt.datetime]]:
    """name -> (instance, wanted name, last tick)."""
    with db.session() as session:
        found = session.execute(select(BeatHeartbeat))
        return {
            row.name: (row.instance, row.wanted_name, row.last_tick_at) for row in found.scalars()
        }


def test_a_name_held_by_a_live_beat_makes_the_second_beat_report_as_name_pid(
    db: Database,
) -> None:
    first, second = naming("web-1", "i-1", 101), naming("web-1", "i-2", 202)
    assert beat(db, first, T0)
    # Held by a fresh heartbeat: whether its beat lives is not known yet.
    assert not beat(db, second, T0 + seconds(1))
    assert beat(db, first, T0 + seconds(1))
    # It moved: another live beat. The second reports as NAME-PID, saying what it wanted.
    assert beat(db, second, T0 + seconds(2))
    assert (first.name, second.name) == ("web-1", "web-1-202")
    assert rows(db) == {
        "web-1": ("i-1", None, T0 + seconds(1)),
        "web-1-202": ("i-2", "web-1", T0 + seconds(2)),
    }


def test_a_killed_beats_name_is_taken_over_once_its_heartbeat_stood_still(
    db: Database,
) -> None:
    killed, restarted = naming("web-1", "i-1", 101), naming("web-1", "i-2", 102)
    assert beat(db, killed, T0)
    assert not beat(db, restarted, T0 + seconds(1))
    assert not beat(db, restarted, T0 + seconds(5))
    assert beat(db, restarted, T0 + seconds(6))  # still for SETTLE: the holder is gone
    assert rows(db) == {"web-1": ("i-2", None, T0 + seconds(6))}
    # Had the old one only stalled, it finds its row gone and asks again: held, and moving.
    assert not beat(db, killed, T0 + seconds(7))
    assert killed.name is None
    assert not beat(db, killed, T0 + seconds(7))
    assert beat(db, restarted, T0 + seconds(8))
    assert beat(db, killed, T0 + seconds(9))
    assert killed.name == "web-1-101"


def test_a_stale_heartbeat_gives_its_name_up_at_once(db: Database) -> None:
    old, new = naming("web-1", "i-1", 101), naming("web-1", "i-2", 102)
    assert beat(db, old, T0)
    assert beat(db, new, T0 + heartbeats.BEAT_ALIVE_WITHIN + seconds(1))
    assert new.name == "web-1" and set(rows(db)) == {"web-1"}


def test_leaving_removes_the_row_and_forgetting_removes_rows_minutes_old(db: Database) -> None:
    stays, leaves, dies = naming("a", "i-a", 1), naming("b", "i-b", 2), naming("c", "i-c", 3)
    for who in (stays, leaves, dies):
        assert beat(db, who, T0)
    with db.session() as session:
        leaves.leave(session)
    assert set(rows(db)) == {"a", "c"}
    later = T0 + heartbeats.BEAT_FORGET_AFTER
    assert beat(db, stays, later)
    with db.session() as session:
        assert heartbeats.forget_beats(session, later) == []  # not older than the limit yet
        assert heartbeats.forget_beats(session, later + seconds(1)) == ["c"]
    assert set(rows(db)) == {"a"}


def test_the_reads_name_a_row_of_an_older_beat_by_its_instance(db: Database) -> None:
    with db.session() as session:
        session.execute(
            insert(BeatHeartbeat).values(
                instance="host:7:abc", hostname="host", pid=7, started_at=T0, last_tick_at=T0
            )
        )
    assert beat(db, naming("b", "i-b", 2), T0 + seconds(40))
    with db.session() as session:
        found = heartbeats.beats(session)
    assert [(b.name, b.alive(T0 + seconds(40))) for b in found] == [
        ("b", True),
        ("host:7:abc", False),
    ]
