"""Heartbeats of beats and watch loops: one row per running process, under a stable name.

A process holds its row by ``instance`` (unique per process; a beat's claims carry it)
and reports under ``name``: the host name, or the name it was given. A name held by
another process that is still alive is not taken: the process reports as
``NAME-PID`` instead (docs/beat.md, "Heartbeats and names"). A process that stops
removes its row; any beat removes beat rows that stopped minutes ago. ``status``,
``doctor`` and ``/metrics`` read the rows through ``beats`` and ``watches``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from reconciler.store.database import Database, unavailable
from reconciler.store.tables import BeatHeartbeat, WatchHeartbeat

log = logging.getLogger("reconciler.heartbeats")

BEAT_ALIVE_WITHIN = dt.timedelta(seconds=30)
"""Beat writes its heartbeat every second; one older than this is a beat not running."""
BEAT_FORGET_AFTER = dt.timedelta(minutes=5)
"""Any live beat removes the rows of beats that have not ticked for this long."""
WATCH_ALIVE_WITHIN = dt.timedelta(minutes=3)
"""Watch writes every 10 s between applies and pulls; a git pull may take 2 min."""

BEATS: Table = BeatHeartbeat.__table__  # type: ignore[assignment]
WATCHES: Table = WatchHeartbeat.__table__  # type: ignore[assignment]
_TIME = {"beat_heartbeats": "last_tick_at", "watch_heartbeats": "last_seen_at"}


@dataclass
class Naming:
    """One process's hold on its name in ``table``.

    ``take`` writes the process's row under the name it wants unless another live
    process holds it. A holder whose heartbeat is older than ``stale`` is gone; a
    fresher one is watched: if its heartbeat moves it is alive (the next candidate,
    ``NAME-PID``, is tried), if it stands still for ``settle`` it stopped without
    removing its row (a killed process restarted at once) and the name is taken over.
    """

    table: Table
    wanted: str
    instance: str
    hostname: str
    pid: int
    started_at: dt.datetime
    settle: dt.timedelta
    stale: dt.timedelta
    name: str | None = None
    """The name this process's row is under now; None until taken (and when lost)."""
    _seen: dict[str, tuple[str, dt.datetime, dt.datetime]] = field(default_factory=dict)

    @property
    def _time(self) -> str:
        return _TIME[self.table.name]

    def candidates(self) -> list[str]:
        return [self.wanted, f"{self.wanted}-{self.pid}", self.instance[:200]]

    def take(self, session: Session, now: dt.datetime, values: Mapping[str, Any]) -> str | None:
        """Write this process's row under the first name free for it; None while it is not
        yet known whether the holder of the wanted name is alive (the next call decides)."""
        table, column = self.table, self.table.c[self._time]
        for candidate in self.candidates():
            holder = session.execute(
                select(table.c.instance, column).where(table.c.name == candidate)
            ).first()
            if holder is not None and holder.instance != self.instance:
                verdict = self._holder(candidate, holder.instance, holder[1], now)
                if verdict == "alive":
                    continue
                if verdict == "unknown":
                    return None
            session.execute(
                delete(table).where(
                    or_(table.c.name == candidate, table.c.instance == self.instance)
                )
            )
            row = {
                "instance": self.instance,
                "name": candidate,
                "wanted_name": None if candidate == self.wanted else self.wanted,
                "hostname": self.hostname,
                "pid": self.pid,
                "started_at": self.started_at,
                self._time: now,
                **values,
            }
            if not _insert_unless_taken(session, table, row):
                return None  # another process took it in the meantime: decided next time
            if self.name != candidate:
                self._announce(candidate)
            self.name = candidate
            self._seen.clear()
            return candidate
        raise AssertionError("the instance is unique to this process")

    def touch(self, session: Session, now: dt.datetime, values: Mapping[str, Any]) -> bool:
        """Move this process's heartbeat on; False (and the name dropped) when its row is
        gone: removed after a long stall, or taken over. ``take`` writes it again."""
        if self.name is None:
            return False
        result = session.execute(
            update(self.table)
            .where(self.table.c.instance == self.instance)
            .values({self._time: now, **values})
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
        log.warning("%s heartbeat %r was removed; writing it again", self._kind, self.name)
        self.name = None
        return False

    def beat(self, session: Session, now: dt.datetime, values: Mapping[str, Any]) -> bool:
        """``touch``, else ``take``: True when the heartbeat was written."""
        return self.touch(session, now, values) or self.take(session, now, values) is not None

    def leave(self, session: Session) -> None:
        """Remove this process's row (a clean stop)."""
        session.execute(delete(self.table).where(self.table.c.instance == self.instance))
        self.name = None

    def _holder(self, candidate: str, instance: str, last: dt.datetime, now: dt.datetime) -> str:
        if now - last > self.stale:
            return "gone"
        seen = self._seen.get(candidate)
        if seen is None or seen[0] != instance:
            self._seen[candidate] = (instance, last, now)
            return "unknown"
        if seen[1] != last:
            return "alive"
        return "gone" if now - seen[2] >= self.settle else "unknown"

    @property
    def _kind(self) -> str:
        return "beat" if self.table is BEATS else "watch"

    def _announce(self, name: str) -> None:
        if name == self.wanted:
            log.info("%s: heartbeat as %r", self._kind, name)
            return
        variable = "RECONCILER_BEAT_NAME" if self.table is BEATS else "RECONCILER_WATCH_NAME"
        log.warning(
            "%s: the name %r is held by another running %s, so this one reports as %r; "
            "give each its own %s (docs/beat.md)",
            self._kind,
            self.wanted,
            self._kind,
            name,
            variable,
        )


def _insert_unless_taken(session: Session, table: Table, row: Mapping[str, Any]) -> bool:
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(table).values(**row).on_conflict_do_nothing().returning(table.c.instance)
    return session.execute(statement).first() is not None


def write(database: Database, naming: Naming, now: dt.datetime, values: Mapping[str, Any]) -> bool:
    """``naming.beat`` in a transaction of its own; a failing database raises
    ``DatabaseUnavailable``."""
    try:
        with database.session() as session:
            return naming.beat(session, now, values)
    except SQLAlchemyError as exc:
        raise unavailable(exc) from exc


def leave(database: Database, naming: Naming) -> None:
    """``naming.leave`` in a transaction of its own."""
    try:
        with database.session() as session:
            naming.leave(session)
    except SQLAlchemyError as exc:
        raise unavailable(exc) from exc


def forget_beats(session: Session, now: dt.datetime) -> list[str]:
    """Remove the rows of beats that have not ticked for ``BEAT_FORGET_AFTER``; their names."""
    rows = session.execute(
        delete(BEATS)
        .where(BEATS.c.last_tick_at < now - BEAT_FORGET_AFTER)
        .returning(BEATS.c.name, BEATS.c.instance)
    )
    return sorted(name or instance for name, instance in rows)


# --- reads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BeatState:
    name: str
    hostname: str
    pid: int
    started_at: dt.datetime
    last_tick_at: dt.datetime
    wanted_name: str | None

    def age(self, now: dt.datetime) -> dt.timedelta:
        return max(now - self.last_tick_at, dt.timedelta(0))

    def alive(self, now: dt.datetime) -> bool:
        return self.age(now) <= BEAT_ALIVE_WITHIN


@dataclass(frozen=True)
class WatchState:
    name: str
    hostname: str
    pid: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    tasks_dir: str
    wanted_name: str | None
    git_pull_every: float | None
    git_commit: str | None
    last_pull_at: dt.datetime | None
    pull_failures: int
    pull_failing_since: dt.datetime | None
    pull_error: str | None

    def age(self, now: dt.datetime) -> dt.timedelta:
        return max(now - self.last_seen_at, dt.timedelta(0))

    def alive(self, now: dt.datetime) -> bool:
        return self.age(now) <= WATCH_ALIVE_WITHIN


def beats(session: Session) -> list[BeatState]:
    """Every beat's heartbeat, by name (a beat older than migration 0006: its instance)."""
    rows = session.execute(select(BEATS))
    found = [
        BeatState(
            row.name or row.instance,
            row.hostname,
            row.pid,
            row.started_at,
            row.last_tick_at,
            row.wanted_name,
        )
        for row in rows
    ]
    return sorted(found, key=lambda beat: beat.name)


def watches(session: Session) -> list[WatchState]:
    """Every watch loop's heartbeat, by name."""
    rows = session.execute(select(WATCHES).order_by(WATCHES.c.name))
    return [
        WatchState(
            **{name: getattr(row, name) for name in WatchState.__dataclass_fields__},
        )
        for row in rows
    ]
